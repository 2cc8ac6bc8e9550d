#!/usr/bin/env python3
"""bench/ab.py - two raktn binaries side by side, interleaved in one run.

    python3 bench/ab.py OLD_BINARY NEW_BINARY [--models 1b,7b2l] [--dtypes f32,bf16]
                        [--threads 1,2] [--prompt 512] [--gen 64] [--repeat 3]

On a shared machine speed moves from one minute to the next, so the two
binaries take turns (old, new, old, new, ...) on the same model file, prompt
and thread count, and the table gives each one's median prefill and decode
tok/s and new / old. The models are bench.py's (bench/work/NAME-DTYPE, made
by bench/bench.py). Standard library only; prints a markdown table.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench", "work")


def run(binary, model, ids, gen, threads, ctx):
    p = subprocess.run([binary, model, "--ids", ids, "-n", str(gen), "-t", "0", "-T", str(threads), "-c", str(ctx)],
                       capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    m = re.search(r"prefill (\d+) tok ([\d.]+) tok/s, decode (\d+) tok ([\d.]+) tok/s", p.stderr)
    if p.returncode != 0 or not m:
        raise SystemExit(f"ab: {binary} failed:\n{p.stderr}")
    return float(m.group(2)), float(m.group(4))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--models", default="1b,7b2l")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    x, ids = 12345, []
    for _ in range(a.prompt):  # bench.py's prompt
        x = (x * 1103515245 + 12345) % (1 << 31)
        ids.append(3 + x % (48000 - 3))
    ids = " ".join(map(str, ids))
    ctx = a.prompt + a.gen + 1
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [f"# bench/ab.py {time.strftime('%Y-%m-%d %H:%M')}, {cpu}; prompt {a.prompt} ids, decode {a.gen}, "
             f"{a.repeat} interleaved runs each (medians)",
             f"# old: {a.old}", f"# new: {a.new}", "",
             "| model | storage | threads | prefill old | prefill new | new/old | decode old | decode new | new/old |",
             "|" + "---|" * 9]
    for t in [int(v) for v in a.threads.split(",")]:
        for m in a.models.split(","):
            for dt in a.dtypes.split(","):
                model = os.path.join(WORK, f"{m}-{dt}", "model.bin")
                with open(model, "rb") as f:  # into the page cache
                    while f.read(64 << 20):
                        pass
                res = {"old": [], "new": []}
                for _ in range(a.repeat):
                    for k in ("old", "new"):
                        res[k].append(run(getattr(a, k), model, ids, a.gen, t, ctx))
                med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in res.items()}
                row = (f"| {m} | {dt} | {t} | {med['old'][0]:.2f} | {med['new'][0]:.2f} | {med['new'][0] / med['old'][0]:.3f} "
                       f"| {med['old'][1]:.2f} | {med['new'][1]:.2f} | {med['new'][1] / med['old'][1]:.3f} |")
                print(row, file=sys.stderr, flush=True)
                lines.append(row)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
