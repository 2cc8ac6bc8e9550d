#!/usr/bin/env python3
"""bench/bench.py - raktn's speed against this machine's limits (issue #6).

    python3 bench/bench.py [--models 1b,7b2l] [--threads 1,N] [--prompt 512] [--gen 64] [--repeat 1]

1. Generates Mistral-shaped random checkpoints once (cached in bench/work/,
   git-ignored) with tests/make_checkpoint.py and exports each as fp32 and
   bf16 model.bin:
     1b    hidden 2048, 16 layers, 16/4 heads, intermediate 7168, vocab 48000
     7b2l  the exact 7B layer shapes (4096, 32/8 heads, 14336, vocab 48000), 2 layers
     7b    all 32 layers of them, bf16 only (14.7 GB), written by bench/synth7b.py
2. Measures raktn's prefill (a --prompt-token prompt given as ids) and decode
   (--gen greedy tokens) tok/s, as raktn prints them on stderr, and its peak
   RSS, for each model, storage and thread count.
3. Measures the memory read bandwidth (bench/stream.c, built with the same
   --cflags as raktn) with the same thread counts and prints the decode roofline = bandwidth / bytes read per token
   (every weight except the embedding table, one embedding row, and the
   key/value cache at the mean decode position) and raktn's fraction of it.
   Bandwidth is measured right before and right after each raktn run (best
   of 8 passes over 2 GiB each time), since on a shared machine it moves
   with other load from one minute to the next; each run's roofline uses
   the higher of the two (the stricter test). With --repeat R every raktn
   run (and its two bandwidth measurements) is done R times; the table
   gives the medians, and the range of the decode/roofline fractions and
   of the bandwidths seen.
4. With LLAMA_BENCH=/path/to/llama-bench GGUF=/path/to/model.gguf (an F32
   GGUF of the same weights; GGUF_OF names which benchmark model, default
   1b) runs llama-bench with the same prompt/gen lengths and threads in the
   same run and prints raktn / llama.cpp. llama.cpp is not a dependency.
5. Measures the FP32 FMA peak (bench/fma_peak.c, built with the same
   --cflags as raktn) for each thread count and prints prefill GFLOPS (2
   flops per weight and per attention multiply-add, at the prompt's mean
   position) and their fraction of the peak: prefill's limit.
--cflags "-O3 -march=x86-64-v3" benchmarks a build for another instruction
set (raktn is rebuilt with them into bench/work/raktn; default: make's).

The table goes to stdout and to bench/work/results.md. Standard library only.
"""
import argparse
import csv
import io
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench", "work")
sys.path.insert(0, os.path.join(ROOT, "export"))
import export  # noqa: E402  (export/export.py: model.bin's header)
MODELS = {  # name -> make_checkpoint.py shape arguments
    "1b": dict(hidden=2048, layers=16, heads=16, kv=4, inter=7168),
    "7b2l": dict(hidden=4096, layers=2, heads=32, kv=8, inter=14336),
    "7b": None,  # the full RakutenAI-7B shape, bf16 only: bench/synth7b.py (14.7 GB, no HF checkpoint)
}
VOCAB = 48000


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def ensure_model(name):
    """bench/work/NAME-{f32,bf16}/model.bin, generated and exported once."""
    s = MODELS[name]
    if s is None:
        out = os.path.join(WORK, f"{name}-bf16")
        if not os.path.exists(os.path.join(out, "model.bin")):
            os.makedirs(out, exist_ok=True)
            run([sys.executable, os.path.join(ROOT, "bench", "synth7b.py"), os.path.join(out, "model.bin")])
        return
    hf = os.path.join(WORK, "hf-" + name)
    if not os.path.exists(os.path.join(hf, "config.json")):
        log(f"generating {hf} (stdlib Python: a few minutes)")
        t = time.time()
        tmp = hf + ".tmp"
        run([sys.executable, os.path.join(ROOT, "tests", "make_checkpoint.py"), tmp,
             "--hidden", str(s["hidden"]), "--layers", str(s["layers"]), "--heads", str(s["heads"]),
             "--kv-heads", str(s["kv"]), "--intermediate", str(s["inter"]), "--vocab", str(VOCAB),
             "--sliding-window", "4096", "--dtype", "bf16", "--seed", "7", "--std", "0.02"])
        os.replace(tmp, hf)
        log(f"  {time.time() - t:.0f} s")
    for dt in ("f32", "bf16"):
        out = os.path.join(WORK, f"{name}-{dt}")
        if not os.path.exists(os.path.join(out, "model.bin")):
            run([sys.executable, os.path.join(ROOT, "export", "export.py"), hf, out, "--dtype", dt, "--quiet"])


def header(path):
    """The model.bin header's fields (export/export.py's HEADER_FIELDS)."""
    with open(path, "rb") as f:
        return export.unpack_header(f.read(256))


def bytes_per_token(h, mean_pos):
    """Bytes one decode step reads: all weights but the embedding table, one
    embedding row, and keys+values of mean_pos positions in every layer."""
    es = 4 if h["dtype"] == 0 else 2
    emb = h["vocab_size"] * h["dim"] * es
    kv = 2 * h["n_layers"] * mean_pos * h["n_kv_heads"] * h["head_dim"] * 4
    weights = h["file_size"] - 256 - (0 if h["tied"] else emb) + h["dim"] * es
    return weights + kv


def kv_cache_bytes(h, ctx):
    return 2 * h["n_layers"] * ctx * h["n_kv_heads"] * h["head_dim"] * 4


def stream_bw(threads):
    exe = os.path.join(WORK, "stream")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = run([exe, "2048", "8"], env=env, capture_output=True, text=True).stdout
    return float(re.search(r"([\d.]+) GB/s", out).group(1)) * 1e9


_fresh = set()


def warm(path):
    """Read a model file once so that the timed run finds it in the page
    cache (both programs mmap their file; a cold read would be timed as
    prefill). The first time, the file is dropped from the page cache
    before, so that every file is cached the way a read from disk caches
    it: in 2 MB folios on Linux 6.x, which both programs' mappings then map
    with 2 MB pages. Pages left over from writing the file are 4 KB folios,
    and decode on them ran ~5% slower (notes/performance.md)."""
    with open(path, "rb") as f:
        if path not in _fresh and hasattr(os, "posix_fadvise"):
            try:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            _fresh.add(path)
        while f.read(64 << 20):
            pass


def raktn(model, threads, ids, gen, ctx):
    """(prefill tok/s, decode tok/s, peak RSS bytes) of one run."""
    warm(model)
    cmd = ["/usr/bin/time", "-f", "maxrss_kb %M", RAKTN, model, "--ids", ids,
           "-n", str(gen), "-t", "0", "-T", str(threads), "-c", str(ctx)]
    p = run(cmd, capture_output=True, text=True)
    m = re.search(r"prefill (\d+) tok ([\d.]+) tok/s, decode (\d+) tok ([\d.]+) tok/s", p.stderr)
    rss = int(re.search(r"maxrss_kb (\d+)", p.stderr).group(1)) * 1024
    if not m or int(m.group(3)) < 1:
        raise SystemExit(f"bench: unexpected raktn output:\n{p.stderr}")
    return float(m.group(2)), float(m.group(4)), rss


RAKTN = os.path.join(ROOT, "raktn")


def flops_per_token(h, mean_pos):
    """Prefill arithmetic per position: 2 flops per weight of every layer
    matrix (not the embedding table, nor lm_head, which a prompt runs for
    its last position only), and 2 x 2 per query-key and weight-value
    multiply-add of attention over mean_pos keys."""
    es = 4 if h["dtype"] == 0 else 2
    matrices = (h["file_size"] - 256) / es - h["vocab_size"] * h["dim"] * (1 if h["tied"] else 2)
    attention = 4 * h["n_layers"] * h["n_heads"] * h["head_dim"] * mean_pos
    return 2 * matrices + attention


def fma_peak(threads):
    exe = os.path.join(WORK, "fma_peak")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = run([exe], env=env, capture_output=True, text=True).stdout
    return float(re.search(r"([\d.]+) GFLOPS", out).group(1)) * 1e9


def llama(threads, prompt, gen):
    """llama-bench's (pp tok/s, tg tok/s) for the GGUF."""
    warm(os.environ["GGUF"])
    cmd = [os.environ["LLAMA_BENCH"], "-m", os.environ["GGUF"], "-p", str(prompt), "-n", str(gen),
           "-t", str(threads), "-r", "2", "-o", "csv"]
    out = run(cmd, capture_output=True, text=True).stdout
    pp = tg = None
    for row in csv.DictReader(io.StringIO(out)):
        if int(row["n_prompt"]) > 0:
            pp = float(row["avg_ts"])
        else:
            tg = float(row["avg_ts"])
    return pp, tg


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="1b,7b2l")
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--cflags", default=None, help="build raktn and fma_peak with these instead of make's")
    a = ap.parse_args()
    global RAKTN
    models = a.models.split(",")
    threads = [int(t) for t in a.threads.split(",")]
    os.makedirs(WORK, exist_ok=True)
    for m in models:
        ensure_model(m)
    if a.cflags:
        RAKTN = os.path.join(WORK, "raktn")
        run(["make", "-s", "-C", ROOT, "-B", "raktn", f"CFLAGS={a.cflags}"])
        os.replace(os.path.join(ROOT, "raktn"), RAKTN)
        run(["make", "-s", "-C", ROOT, "-B", "raktn"])
    else:
        run(["make", "-s", "-C", ROOT, "raktn"])
    # the machine's limits as the build's own instructions reach them: stream.c
    # and fma_peak.c get raktn's --cflags (on the Intel Xeon of 2026-11-30, 256-bit loads
    # streamed 6-7% less than 512-bit ones: 27.3-27.7 against 29.4-29.5 GB/s)
    fflags = (a.cflags or "-O2 -march=native").split()
    run(["cc"] + (a.cflags or "-O3 -march=native").split() + ["-fopenmp", "-o", os.path.join(WORK, "stream"),
                                                             os.path.join(ROOT, "bench", "stream.c")])
    run(["cc"] + fflags + ["-fopenmp", "-o", os.path.join(WORK, "fma_peak"), os.path.join(ROOT, "bench", "fma_peak.c")])
    cpu = "unknown CPU"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass

    # a fixed pseudo-random prompt of ids (no tokenizer involved)
    x, ids = 12345, []
    for _ in range(a.prompt):
        x = (x * 1103515245 + 12345) % (1 << 31)
        ids.append(3 + x % (VOCAB - 3))
    ids = " ".join(map(str, ids))
    ctx = a.prompt + a.gen + 1
    use_llama = bool(os.environ.get("LLAMA_BENCH") and os.environ.get("GGUF"))
    gguf_of = os.environ.get("GGUF_OF", "1b")

    rows = []
    for t in threads:
        bw = stream_bw(t)
        peak = fma_peak(t)
        log(f"threads {t}: read bandwidth {bw / 1e9:.1f} GB/s, FMA peak {peak / 1e9:.1f} GFLOPS")
        lpp = ltg = None
        if use_llama:
            lload = os.getloadavg()[0]
            lpp, ltg = llama(t, a.prompt, a.gen)
            log(f"  llama.cpp {gguf_of} F32: pp {lpp:.2f} tg {ltg:.2f} (load average before: {lload:.2f})")
        for m in models:
            for dt in ("f32", "bf16") if MODELS[m] else ("bf16",):
                path = os.path.join(WORK, f"{m}-{dt}", "model.bin")
                h = header(path)
                runs = []
                for _ in range(a.repeat):
                    load = os.getloadavg()[0]
                    bw0 = stream_bw(t)   # right before and after each run: the machine is shared
                    pp, tg, rss = raktn(path, t, ids, a.gen, ctx)
                    bw1 = stream_bw(t)
                    roof = max(bw0, bw1) / bytes_per_token(h, a.prompt + a.gen // 2)
                    runs.append(dict(pp=pp, tg=tg, frac=tg / roof, roof=roof, bws=(bw0, bw1), rss=rss, load=load))
                    log(f"  {m} {dt}: pp {pp:.2f} tg {tg:.2f} ({100 * tg / roof:.0f}% of {roof:.2f}; "
                        f"read GB/s before/after {bw0 / 1e9:.1f}/{bw1 / 1e9:.1f}) "
                        f"rss {rss / 1e9:.2f} GB (load average before: {load:.2f})")
                med = lambda key: statistics.median(r[key] for r in runs)
                bws = [b for r in runs for b in r["bws"]]
                fracs = [r["frac"] for r in runs]
                row = dict(model=m, dtype=dt, threads=t, pp=med("pp"), tg=med("tg"), frac=med("frac"),
                           frac_lo=min(fracs), frac_hi=max(fracs), bw_lo=min(bws), bw_hi=max(bws),
                           roof=med("roof"), rss=max(r["rss"] for r in runs), load=max(r["load"] for r in runs),
                           file=h["file_size"], kv=kv_cache_bytes(h, ctx), lpp=None, ltg=None,
                           gflops=med("pp") * flops_per_token(h, a.prompt / 2), peak=peak)
                if use_llama and m == gguf_of and dt == "f32":
                    row["lpp"], row["ltg"] = lpp, ltg
                rows.append(row)

    lines = [f"# raktn bench, {time.strftime('%Y-%m-%d %H:%M')}, prompt {a.prompt} ids, decode {a.gen} tokens, "
             f"{a.repeat} run(s) each (medians; ranges over the runs)",
             f"# {cpu}; raktn built with {a.cflags or 'make defaults'}",
             "",
             "| model | storage | threads | prefill tok/s | decode tok/s | read GB/s seen | decode roofline tok/s "
             "| decode / roofline | its range | llama.cpp F32 pp | llama.cpp F32 tg | pp raktn/llama | tg raktn/llama "
             "| peak RSS GB | file + KV GB | RSS / (file+KV) | max load avg | prefill GFLOPS | FMA peak GFLOPS "
             "| prefill / peak |",
             "|" + "---|" * 20]
    for r in rows:
        f = lambda v, fmt="{:.2f}": "-" if v is None else fmt.format(v)
        lines.append("| " + " | ".join([
            r["model"], r["dtype"], str(r["threads"]), f(r["pp"]), f(r["tg"]),
            f"{r['bw_lo'] / 1e9:.1f}-{r['bw_hi'] / 1e9:.1f}", f(r["roof"]), f(r["frac"], "{:.0%}"),
            f"{r['frac_lo']:.0%}-{r['frac_hi']:.0%}", f(r["lpp"]), f(r["ltg"]),
            f(r["lpp"] and r["pp"] / r["lpp"]), f(r["ltg"] and r["tg"] / r["ltg"]),
            f(r["rss"] / 1e9), f((r["file"] + r["kv"]) / 1e9), f(r["rss"] / (r["file"] + r["kv"])), f(r["load"]),
            f(r["gflops"] / 1e9, "{:.1f}"), f(r["peak"] / 1e9, "{:.1f}"), f(r["gflops"] / r["peak"], "{:.0%}")]) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(WORK, "results.md"), "w") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
