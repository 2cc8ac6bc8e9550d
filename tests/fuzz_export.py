#!/usr/bin/env python3
"""tests/fuzz_export.py - fuzz export/export.py against raktn's loader (issue #16).

    make raktn && python3 tests/fuzz_export.py [--seconds S] [--cases N] [--seed K]
        [--targets config,tokjson,tokconfig,tokmodel,safetensors] [--save DIR]
        [--exporter OTHER/export.py]

Standard library only. Each case takes a tiny, good checkpoint (config.json,
model.safetensors and a tokenizer: tests/tokenizer/small-spm's tokenizer.json
or tokenizer.model, 700 pieces), mutates one of its files (a JSON-aware
change to a value, a key or an entry, or raw byte flips), exports it into a
folder that already holds a good earlier export, and checks:

  - the exporter never raises (no traceback) and never says "internal error";
  - export accepts (exit 0)  =>  ./raktn loads the result: model.bin and the
    tokenizer.bin beside it (`-m logits --ids 0 --top 1 -c 1`), and no
    temporary is left;
  - export refuses            =>  exit 1, exactly one line on stderr,
    "export: error: ...", naming a file in the checkpoint or the output
    folder, and the output folder byte for byte as it was.

The exporter runs in this process (fast); with --exporter another export.py
(e.g. an older version) runs as a subprocess instead, to compare. Failing
inputs are kept under --save DIR (one folder per case) when given. Exit 1 if
any case broke a rule. tests/test_export.py runs a short, fixed-seed version.
"""
import argparse
import contextlib
import importlib.util
import io
import json
import os
import random
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORT_PY = os.path.join(ROOT, "export", "export.py")
RAKTN = os.path.join(ROOT, "raktn")
SMALL_SPM = os.path.join(ROOT, "tests", "tokenizer", "small-spm")

BASE_CONFIG = {
    "architectures": ["MistralForCausalLM"],
    "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
    "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 704,
    "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "hidden_act": "silu", "tie_word_embeddings": False, "sliding_window": 16,
    "bos_token_id": 1, "eos_token_id": 2,
}


# ---------------------------------------------------------------- checkpoints

def tensor_shapes(cfg):
    """HF names and shapes for a config (the config must be sane)."""
    D, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H = cfg["num_attention_heads"]
    K = cfg.get("num_key_value_heads") or H
    hd = D // H
    out = [("model.embed_tokens.weight", [V, D])]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out += [(p + "input_layernorm.weight", [D]), (p + "self_attn.q_proj.weight", [H * hd, D]),
                (p + "self_attn.k_proj.weight", [K * hd, D]), (p + "self_attn.v_proj.weight", [K * hd, D]),
                (p + "self_attn.o_proj.weight", [D, H * hd]), (p + "post_attention_layernorm.weight", [D]),
                (p + "mlp.gate_proj.weight", [F, D]), (p + "mlp.up_proj.weight", [F, D]),
                (p + "mlp.down_proj.weight", [D, F])]
    out.append(("model.norm.weight", [D]))
    if not cfg.get("tie_word_embeddings"):
        out.append(("lm_head.weight", [V, D]))
    return out


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def st_header(cfg, dtype="F32"):
    """(header dict, data size) of a safetensors file for cfg, tensors packed
    in order."""
    esize = {"F32": 4, "BF16": 2, "F16": 2}[dtype]
    h, off = {}, 0
    for name, shape in tensor_shapes(cfg):
        n = numel(shape) * esize
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    return h, off


def st_bytes(header, data, header_text=None):
    hj = header_text if header_text is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(hj)) + hj + data


def st_data(size, seed=0):
    """Deterministic, finite little fp32/bf16 values (any size, 4-byte aligned
    patterns: 0x3C00 0x3C00 is a small positive number in both)."""
    pat = bytes([0x00, 0x3C, 0x80, 0xBC, 0x00, 0x3D, 0x80, 0x3B])
    pat = pat[seed % 8:] + pat[:seed % 8]
    return (pat * (size // len(pat) + 1))[:size]


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


def write_checkpoint(hf, cfg, dtype="F32", tokenizer="json", sparse=False):
    """A good checkpoint for cfg in hf: config.json, model.safetensors and,
    when tokenizer is "json" or "model", small-spm's tokenizer. sparse: the
    tensor data is a hole (zeros that take no disk)."""
    os.makedirs(hf, exist_ok=True)
    write_file(os.path.join(hf, "config.json"), json.dumps(cfg).encode())
    header, size = st_header(cfg, dtype)
    hj = json.dumps(header).encode()
    path = os.path.join(hf, "model.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj)
        if sparse:
            f.truncate(8 + len(hj) + size)
        else:
            f.write(st_data(size))
    if tokenizer == "json":
        shutil.copy(os.path.join(SMALL_SPM, "tokenizer.json"), hf)
        shutil.copy(os.path.join(SMALL_SPM, "tokenizer_config.json"), hf)
    elif tokenizer == "model":
        shutil.copy(os.path.join(SMALL_SPM, "tokenizer.model"), hf)
        shutil.copy(os.path.join(SMALL_SPM, "tokenizer_config.json"), hf)


def snapshot(folder):
    """{relative path: bytes, or "<dir>"} of everything under folder (None if
    it does not exist): what "byte for byte as it was" compares."""
    if not os.path.lexists(folder):
        return None
    snap = {}
    for dirpath, dirs, files in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        snap[rel + "/"] = "<dir>"
        for f in files:
            p = os.path.join(dirpath, f)
            mode = os.lstat(p).st_mode
            if stat.S_ISLNK(mode):
                snap[os.path.join(rel, f)] = "<link " + os.readlink(p) + ">"
            elif not stat.S_ISREG(mode):        # a FIFO: never opened here
                snap[os.path.join(rel, f)] = f"<mode {mode:o}>"
            else:
                with open(p, "rb") as fh:
                    snap[os.path.join(rel, f)] = fh.read()
    return snap


# ---------------------------------------------------------------- running

def load_exporter(path=EXPORT_PY):
    spec = importlib.util.spec_from_file_location("raktn_export_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Harness:
    """Runs the exporter on a checkpoint folder into an output folder that
    holds an earlier good export, and judges the outcome (see the module
    docstring). check() returns (accepted, problem or None, stderr)."""

    def __init__(self, work, exporter=None, raktn=RAKTN):
        self.work = work
        self.raktn = raktn
        self.external = exporter        # a path: run it as a subprocess
        self.exp = None if exporter else load_exporter()
        # the earlier export every case lands on
        base = os.path.join(work, "base-hf")
        write_checkpoint(base, BASE_CONFIG)
        self.old = os.path.join(work, "old-out")
        rc, err, exc = self.export(base, self.old)
        if rc != 0:
            raise RuntimeError(f"the base checkpoint does not export: {err}{exc or ''}")
        with open(os.path.join(self.old, "keep.txt"), "wb") as f:
            f.write(b"a file of the user's\n")
        self.old_snap = snapshot(self.old)

    def export(self, hf, out, extra=()):
        """(exit status, stderr, traceback text or None)"""
        argv = ["--quiet", *extra, hf, out]
        if self.external:
            r = subprocess.run([sys.executable, self.external, *argv], capture_output=True,
                               text=True, timeout=300)
            tb = r.stderr if "Traceback (most recent call last)" in r.stderr else None
            return r.returncode, r.stderr, tb
        buf = io.StringIO()
        try:
            with contextlib.redirect_stderr(buf):
                rc = self.exp.main(argv)
        except BaseException:
            return None, buf.getvalue(), traceback.format_exc()
        return rc, buf.getvalue(), None

    def raktn_loads(self, model_bin, cheap=False):
        """None if raktn loads model_bin (and the tokenizer.bin beside it),
        else its message. cheap: for a model too big to run (a sparse file):
        `-m ppl` with one id stops right after loading, with an error that is
        not about the file."""
        if cheap:
            r = subprocess.run([self.raktn, model_bin, "-m", "ppl", "--ids", "0", "-c", "1",
                                "-T", "1"], capture_output=True, text=True, timeout=120)
            if r.returncode in (0, 1) and model_bin not in r.stderr:
                return None
            return f"exit {r.returncode}: {r.stderr.strip()}"
        r = subprocess.run([self.raktn, model_bin, "-m", "logits", "--ids", "0", "--top", "1",
                            "-c", "1", "-T", "1"], capture_output=True, text=True, timeout=120)
        return None if r.returncode == 0 else f"exit {r.returncode}: {r.stderr.strip()}"

    def fresh_out(self, name="out"):
        out = os.path.join(self.work, name)
        if os.path.lexists(out):
            shutil.rmtree(out)
        shutil.copytree(self.old, out)
        return out

    def check(self, hf, extra=(), out=None):
        out = out or self.fresh_out()
        before = snapshot(out)
        rc, err, tb = self.export(hf, out, extra)
        if tb:
            return False, "traceback: " + tb.strip().splitlines()[-1], err
        lines = err.splitlines()
        if rc == 0:
            left = [n for n in os.listdir(out) if n.endswith((".tmp", ".old"))]
            if left:
                return True, f"temporaries left: {left}", err
            why = self.raktn_loads(os.path.join(out, "model.bin"))
            if why:
                return True, "export accepted, raktn refused: " + why, err
            return True, None, err
        problem = None
        if rc != 1:
            problem = f"exit status {rc}"
        elif len(lines) != 1 or not lines[0].startswith("export: error: "):
            problem = f"want one 'export: error:' line, got {err!r}"
        elif "internal error" in lines[0]:
            problem = "internal error: " + lines[0]
        elif hf not in lines[0] and out not in lines[0]:
            problem = "the message names no file: " + lines[0]
        elif snapshot(out) != before:
            problem = "the output folder changed"
        return False, problem, err


# ---------------------------------------------------------------- mutations

INTS = [0, 1, 2, 3, -1, -2, 7, 8, 16, 699, 700, 701, 704, 4095, 4096, 4097, 65535, 65536,
        65537, 2**20 - 1, 2**20, 2**20 + 1, 2**24 - 1, 2**24, 2**24 + 1, 2**25, 2**31 - 1,
        2**31, 2**32, 2**40, 2**63, 2**64, -2**31, 10**30, 10**400, -10**400]  # (a double holds neither)
FLOATS = [0.0, -0.0, 1e-50, 1e-45, 2.0**-149, 2.0**-150, 1e-38, 1e-6, 1e-5, 0.5, 1 - 2.0**-24,
          1 - 2.0**-26, 1.0, 2.0, 10000.0, 1e6, 3.4028234663852886e38, 3.4028235e38,
          3.4028235677973366e38, 1e39, 1e308, float("inf"), float("-inf"), float("nan"), 8.0,
          -1e-5]
OTHERS = [None, True, False, "", "8", "silu", "gelu", [], [1], [1, 2], [None], {}, {"a": 1},
          "MistralForCausalLM", ["LlamaForCausalLM"], ["MistralForCausalLM"], "x" * 300,
          "\u2581", "\ud800", "a\nb"]
CONFIG_KEYS = list(BASE_CONFIG) + ["head_dim", "rope_scaling", "attention_bias", "mlp_bias",
                                   "pretraining_tp", "use_sliding_window", "torch_dtype"]


def rand_value(rng):
    r = rng.random()
    if r < 0.45:
        v = rng.choice(INTS)
        return v + rng.choice((0, 0, 0, 1, -1)) if isinstance(v, int) else v
    if r < 0.75:
        return rng.choice(FLOATS)
    return rng.choice(OTHERS)


def dumps(obj):
    return json.dumps(obj, ensure_ascii=rnd.random() < 0.5).encode("utf-8", "surrogatepass")


rnd = random.Random()   # for dumps' choice only; reseeded per case


def byte_mutate(rng, data, n=None):
    b = bytearray(data)
    for _ in range(n or rng.choice((1, 1, 2, 3, 8))):
        if not b:
            break
        op = rng.random()
        i = rng.randrange(len(b))
        if op < 0.4:
            b[i] ^= 1 << rng.randrange(8)
        elif op < 0.6:
            b[i] = rng.choice((0, 0xFF, 0x7F, 0x80, ord('"'), ord('0'), ord('9'), ord('-')))
        elif op < 0.75:
            del b[i:i + rng.randrange(1, 16)]
        elif op < 0.9:
            j = rng.randrange(len(b))
            b[i:i] = b[j:j + rng.randrange(1, 32)]
        else:
            del b[i:]
    return bytes(b)


def dup_key_text(obj):
    """JSON text of obj (a dict) with its first key written twice (the second
    time with a changed value): what json.loads silently collapses."""
    if not obj:
        return b'{"a": 1, "a": 2}'
    k = next(iter(obj))
    text = json.dumps(obj)
    extra = json.dumps({k: obj[k]})[1:-1]
    return ("{" + extra + ", " + text[1:]).encode()


def mutate_config(rng, hf):
    cfg = dict(BASE_CONFIG)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.random()
        if op < 0.7:
            cfg[rng.choice(CONFIG_KEYS)] = rand_value(rng)
        elif op < 0.85:
            cfg.pop(rng.choice(list(cfg) or ["x"]), None)
        else:
            cfg["extra_" + str(rng.randrange(5))] = rand_value(rng)
    if rng.random() < 0.1:
        raw = byte_mutate(rng, dumps(cfg))
    elif rng.random() < 0.05:
        raw = dup_key_text(cfg)
    else:
        raw = dumps(cfg)
    write_file(os.path.join(hf, "config.json"), raw)


PIECES = ["\0", "a\0b", "x" * 4096, "x" * 4097, "\u3042" * 1366, "\u3042" * 1365, "\ud800",
          "\udfff", "<0x+1>", "<0x-1>", "<0x 1>", "<0xZZ>", "<0x41>", "<0xff>", "", "\u2581",
          "\u2581the", " ", "<s>", "</s>", "<unk>", "\U0010ffff", "\x7f", "new-piece"]


def mutate_tokjson(rng, hf):
    path = os.path.join(hf, "tokenizer.json")
    with open(path, "rb") as f:
        text = f.read()
    if rng.random() < 0.15:
        write_file(path, byte_mutate(rng, text))
        return
    tj = json.loads(text)
    model = tj["model"]
    vocab = model["vocab"]
    for _ in range(rng.choice((1, 1, 2, 3))):
        op = rng.randrange(14)
        pieces = list(vocab)
        if op == 0:     # a piece's id
            vocab[rng.choice(pieces)] = rand_value(rng)
        elif op == 1:   # a new piece at the next id (or a random one)
            vocab[rng.choice(PIECES)] = len(vocab) if rng.random() < 0.7 else rand_value(rng)
        elif op == 2:   # drop a piece
            del vocab[rng.choice(pieces)]
        elif op == 3:   # swap two ids
            a, b = rng.choice(pieces), rng.choice(pieces)
            vocab[a], vocab[b] = vocab[b], vocab[a]
        elif op == 4:   # a merge
            m = model["merges"]
            k = rng.randrange(len(m))
            c = rng.randrange(6)
            if c == 0:
                del m[k]
            elif c == 1:
                m.append(m[k])
            elif c == 2:
                m[k] = rng.choice(["a b c", 5, ["a"], "a  b", "", None, ["\u2581", "t"],
                                   "\u2581 t", [1, 2]])
            elif c == 3:
                m.insert(rng.randrange(len(m)), rng.choice(pieces) + " " + rng.choice(pieces))
            elif c == 4:
                m[k] = m[k].split(" ") if isinstance(m[k], str) else m[k]
            else:
                m.reverse()
        elif op in (5, 6):   # an added token
            added = tj.setdefault("added_tokens", [])
            if not added or rng.random() < 0.3:
                added.append({"id": len(vocab), "content": rng.choice(PIECES), "special": True,
                              "lstrip": False, "rstrip": False, "normalized": False,
                              "single_word": False})
            t = rng.choice(added)
            key = rng.choice(["id", "id", "content", "special", "lstrip", "normalized",
                              "single_word", "rstrip"])
            if key == "id":
                t["id"] = rng.choice([-1, -2, 2**24, 2**24 - 1, len(vocab), len(vocab) + 1, True,
                                      1.5, "1", None, 0, 3])
            elif key == "content":
                t["content"] = rng.choice(PIECES + [None, 5])
            else:
                t[key] = rand_value(rng)
        elif op == 7:
            model["unk_token"] = rng.choice(PIECES + [None, 5, "<unk>"])
        elif op == 8:
            model[rng.choice(["byte_fallback", "type", "dropout", "ignore_merges",
                              "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk"])] \
                = rand_value(rng)
        elif op == 9:
            tj[rng.choice(["normalizer", "pre_tokenizer", "decoder", "added_tokens",
                           "post_processor"])] = rand_value(rng)
        elif op == 10:   # break the normalizer or decoder a little
            seq = tj["normalizer"]["normalizers"] if rng.random() < 0.5 else tj["decoder"]["decoders"]
            seq[rng.randrange(len(seq))][rng.choice(["type", "content", "prepend", "pattern"])] \
                = rand_value(rng)
        elif op == 11:
            model["vocab"] = rand_value(rng) if rng.random() < 0.3 else {}
            return write_file(path, dumps(tj))
        elif op == 12:
            model["merges"] = rand_value(rng)
        else:           # many long pieces
            for k in range(rng.randrange(1, 4)):
                vocab["\u2581" + "y" * rng.choice((4093, 4094, 4095, 5000)) + str(k)] = len(vocab)
    write_file(path, dumps(tj))


def mutate_tokconfig(rng, hf):
    path = os.path.join(hf, "tokenizer_config.json")
    with open(path, "rb") as f:
        tc = json.loads(f.read())
    for _ in range(rng.choice((1, 2))):
        key = rng.choice(["bos_token", "eos_token", "add_bos_token", "add_eos_token",
                          "unk_token", "extra"])
        if key.endswith("_token") and rng.random() < 0.6:
            tc[key] = rng.choice(PIECES + [{"content": "</s>"}, {"content": 5}, None])
        else:
            tc[key] = rand_value(rng)
    raw = dumps(tc)
    if rng.random() < 0.1:
        raw = byte_mutate(rng, raw)
    write_file(path, raw)


def mutate_tokmodel(rng, hf):
    path = os.path.join(hf, "tokenizer.model")
    with open(os.path.join(SMALL_SPM, "tokenizer.model"), "rb") as f:
        data = bytearray(f.read())
    r = rng.random()
    if r < 0.6:             # bit flips, the classic
        for _ in range(rng.choice((1, 1, 1, 2, 4))):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    else:
        data = bytearray(byte_mutate(rng, bytes(data)))
    write_file(path, bytes(data))


def mutate_safetensors(rng, hf):
    header, size = st_header(BASE_CONFIG)
    data = st_data(size)
    names = list(header)
    text = None
    for _ in range(rng.choice((1, 1, 2))):
        op = rng.randrange(10)
        name = rng.choice(names)
        e = header.get(name)
        if e is None:
            continue
        if op == 0:
            e["dtype"] = rng.choice(["F32", "BF16", "F16", "I32", "F64", "", 5, None, ["F32"],
                                     "f32"])
        elif op == 1:
            s = e["shape"]
            e["shape"] = rng.choice([s[::-1], s + [1], s[:-1], [], [0], [s[0] + 1] + s[1:],
                                     [2**40], [True] + s[1:], [1.0 * s[0]] + s[1:],
                                     [str(s[0])] + s[1:], [-s[0]] + s[1:], None, 5])
        elif op == 2:
            b, en = e["data_offsets"]
            e["data_offsets"] = rng.choice([[en, b], [b - 1, en - 1], [b + 4, en + 4], [-4, en],
                                            [b, 2**64], [b, en, en], [b], [float(b), en],
                                            [b, en + size], [0, en - b], None, "0,4"])
        elif op == 3:
            del header[name]
        elif op == 4:
            header["model.extra." + str(rng.randrange(3))] = dict(e)
        elif op == 5:
            header["__metadata__"] = rand_value(rng)
        elif op == 6:
            header[name.replace("weight", rng.choice(["bias", "weight\n", "w\u00e9ight"]))] = \
                header.pop(name)
        elif op == 7:
            text = dup_key_text({name: e, **{k: v for k, v in header.items() if k != name}})
        elif op == 8:
            header[name] = rand_value(rng)
        else:
            text = byte_mutate(rng, json.dumps(header).encode())
    raw = st_bytes(header, data, text)
    r = rng.random()
    if r < 0.1:      # the length field
        n = struct.unpack_from("<Q", raw)[0]
        raw = struct.pack("<Q", rng.choice([n - 1, n + 1, n + size, 0, 2**63, len(raw)])) + raw[8:]
    elif r < 0.15:   # the file cut short
        raw = raw[:rng.randrange(len(raw))]
    write_file(os.path.join(hf, "model.safetensors"), raw)


TARGETS = {
    "config": ("json", mutate_config),
    "tokjson": ("json", mutate_tokjson),
    "tokconfig": ("json", mutate_tokconfig),
    "tokmodel": ("model", mutate_tokmodel),
    "safetensors": ("json", mutate_safetensors),
}


def run(work, seed=1, cases=None, seconds=None, targets=None, save=None, exporter=None,
        report=print):
    """Run cases until `cases` or `seconds` is reached; returns
    {target: {"cases", "accepted", "refused", "problems": [...]}}."""
    targets = targets or list(TARGETS)
    h = Harness(work, exporter)
    stats = {t: {"cases": 0, "accepted": 0, "refused": 0, "problems": []} for t in targets}
    t_end = time.monotonic() + seconds if seconds else None
    k = 0
    while (cases is None or k < cases) and (t_end is None or time.monotonic() < t_end):
        target = targets[k % len(targets)]
        rng = random.Random(f"{seed}:{k}")
        rnd.seed(f"{seed}:{k}:dumps")
        hf = os.path.join(work, "hf")
        if os.path.lexists(hf):
            shutil.rmtree(hf)
        tok, mutate = TARGETS[target]
        write_checkpoint(hf, BASE_CONFIG, tokenizer=tok)
        try:
            mutate(rng, hf)
        except (TypeError, KeyError, IndexError, AttributeError, ValueError):
            pass    # a mutation that tripped over an earlier one: the file stays as it was
        accepted, problem, err = h.check(hf)
        s = stats[target]
        s["cases"] += 1
        s["accepted" if accepted else "refused"] += 1
        if problem:
            s["problems"].append((k, problem))
            report(f"case {k} ({target}): {problem}")
            if save:
                dst = os.path.join(save, f"case-{k}-{target}")
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(hf, dst)
                with open(os.path.join(dst, "PROBLEM.txt"), "w") as f:
                    f.write(f"{problem}\n--- stderr\n{err}")
        k += 1
    return stats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--cases", type=int, default=None)
    ap.add_argument("--seed", default="1")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--save", default=None, help="keep failing checkpoints here")
    ap.add_argument("--exporter", default=None, help="another export.py, run as a subprocess")
    a = ap.parse_args(argv)
    if a.seconds is None and a.cases is None:
        a.seconds = 60
    if not os.access(RAKTN, os.X_OK):
        sys.exit("build raktn first (make raktn)")
    work = tempfile.mkdtemp(prefix="raktn-fuzz-export-")
    t0 = time.monotonic()
    try:
        stats = run(work, a.seed, a.cases, a.seconds, a.targets.split(","), a.save, a.exporter)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    dt = time.monotonic() - t0
    total = {"cases": 0, "accepted": 0, "refused": 0, "problems": 0}
    print(f"{'target':12} {'cases':>7} {'accepted':>9} {'refused':>8} {'problems':>9}")
    for t, s in stats.items():
        print(f"{t:12} {s['cases']:7} {s['accepted']:9} {s['refused']:8} {len(s['problems']):9}")
        for key in ("cases", "accepted", "refused"):
            total[key] += s[key]
        total["problems"] += len(s["problems"])
    print(f"{'total':12} {total['cases']:7} {total['accepted']:9} {total['refused']:8} "
          f"{total['problems']:9}   ({dt:.0f} s, seed {a.seed})")
    kinds = {}
    for s in stats.values():
        for _, p in s["problems"]:
            kind = p.split(":")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
    for kind, n in sorted(kinds.items(), key=lambda x: -x[1]):
        print(f"  {n:6}  {kind}")
    return 1 if total["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
