#!/usr/bin/env python3
"""bench/synth7b.py - a model.bin of the full RakutenAI-7B shape with random
bf16 weights, written directly (no HF checkpoint in between), for speed and
memory measurements only.

    python3 bench/synth7b.py OUT.bin [--layers 32] [--dtype bf16|f32]

The shapes are RakutenAI-7B's config.json (hidden 4096, 32 layers, 32/8
heads of 128, intermediate 14336, vocab 48000, sliding window 4096, 32768
positions, untied lm_head); the header and the tensor order are the
exporter's own (export/export.py's header_bytes and tensor_plan), so raktn
loads it as it loads an exported RakutenAI-7B. The weights are N(0, 0.02)
values from a fixed pool of 1M samples (seed 0), each tensor starting at
another place in the pool; norm weights are 1. Not a reference for
correctness: tests/ checks the forward pass against transformers on
checkpoints of the same layer shapes. Standard library only; about 14.7 GB
in bf16 (29.5 GB in f32), written to OUT.bin.tmp and renamed when complete.
"""
import argparse
import array
import os
import random
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "export"))
import export  # noqa: E402  (export/export.py: the file format's one definition)

RAKUTEN_7B = dict(dim=4096, hidden_dim=14336, n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128,
                  vocab_size=48000, max_seq_len=32768, sliding_window=4096, bos_id=1, eos_id=2,
                  tied=False, rope_theta=10000.0, rms_norm_eps=1e-5)
POOL = 1 << 20


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--dtype", choices=("bf16", "f32"), default="bf16")
    a = ap.parse_args()
    c = dict(RAKUTEN_7B, n_layers=a.layers)
    rng = random.Random(0)
    vals = [rng.gauss(0.0, 0.02) for _ in range(POOL)]
    f32 = array.array("f", vals).tobytes()
    if a.dtype == "bf16":  # rounded to nearest even
        u = array.array("I", f32)
        pool = array.array("H", [((x + 0x7FFF + ((x >> 16) & 1)) >> 16) & 0xFFFF for x in u])
        one = struct.pack("<H", 0x3F80)
    else:
        pool = array.array("f", vals)
        one = struct.pack("<f", 1.0)
    if sys.byteorder != "little":
        pool.byteswap()
    pool = pool.tobytes() * 2  # any window of POOL values wraps around
    es = 2 if a.dtype == "bf16" else 4
    plan = export.tensor_plan(c)
    size = export.HEADER_SIZE + sum(export.padded(export.numel(s) * es) for _, s in plan)
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(export.header_bytes(c, a.dtype, size))
        start = 0
        for name, shape in plan:
            n = export.numel(shape)
            if len(shape) == 1:
                f.write(one * n)
            else:
                left = n
                while left:
                    take = min(left, POOL)
                    f.write(pool[start * es:(start + take) * es])
                    left -= take
                    start = (start + 7919) % POOL
            f.write(bytes(export.padded(n * es) - n * es))
            sys.stderr.write(f"\r{name:45s} {f.tell() / 1e9:6.2f} / {size / 1e9:.2f} GB")
    sys.stderr.write("\n")
    if os.path.getsize(tmp) != size:
        sys.exit(f"synth7b: wrote {os.path.getsize(tmp)} bytes, expected {size}")
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
