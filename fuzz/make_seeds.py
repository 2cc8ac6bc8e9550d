#!/usr/bin/env python3
"""Write the fuzz seed corpora (committed under fuzz/corpus/; re-run to regenerate).

  fuzz/corpus/model/      tiny well-formed model.bin files (fp32/bf16, tied,
                          GQA, sliding window) plus a few near misses
  fuzz/corpus/tokenizer/  small tokenizer.bin files: tests/work/tok/small.bin
                          when present (run `make test` first) and a
                          hand-built 300-piece vocabulary with byte fallback
  fuzz/corpus/encode/     texts and id lists (first byte = tokenizer/mode)

Stdlib only; deterministic.
"""
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "export"))
import export  # noqa: E402  (header layout, padding)


def model_bytes(dim, hidden, layers, heads, kv, head_dim, vocab, seq, window, tied, dtype, rng):
    c = dict(dim=dim, hidden_dim=hidden, n_layers=layers, n_heads=heads, n_kv_heads=kv,
             head_dim=head_dim, vocab_size=vocab, max_seq_len=seq, sliding_window=window,
             bos_id=1 if vocab > 1 else -1, eos_id=2 if vocab > 2 else -1, tied=tied,
             rope_theta=10000.0, rms_norm_eps=1e-5)
    esize = 4 if dtype == "f32" else 2
    q, k = heads * head_dim, kv * head_dim
    shapes = [(vocab, dim)]
    for _ in range(layers):
        shapes += [(1, dim), (q, dim), (k, dim), (k, dim), (dim, q), (1, dim),
                   (hidden, dim), (hidden, dim), (dim, hidden)]
    shapes.append((1, dim))
    if not tied:
        shapes.append((vocab, dim))
    body = b""
    for r, cc in shapes:
        n = r * cc
        if dtype == "f32":
            raw = struct.pack(f"<{n}f", *(rng.uniform(-0.5, 0.5) for _ in range(n)))
        else:
            raw = struct.pack(f"<{n}H", *(struct.unpack("<I", struct.pack("<f", rng.uniform(-0.5, 0.5)))[0] >> 16
                                          for _ in range(n)))
        body += raw + bytes(export.padded(len(raw)) - len(raw))
    size = export.HEADER_SIZE + len(body)
    return export.header_bytes(c, dtype, size) + body


def write(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tokenizer_bytes(pieces, merges, added, bos, eos, unk, flags):
    """pieces: [(str, type)], merges: [(a, b, m, rank)], added: [(id, special)]"""
    out = b"RKTNTOK\0" + struct.pack("<IIIIiiiI", 1, len(pieces), len(merges), len(added), bos, eos, unk, flags)
    for s, t in pieces:
        b = s.encode()
        out += struct.pack("<IfI", len(b), 0.0, t) + b
    for m in merges:
        out += struct.pack("<IIII", *m)
    for a in added:
        out += struct.pack("<II", *a)
    return out


def main():
    rng = random.Random(7)
    md = os.path.join(HERE, "corpus", "model")
    write(md, "tiny-f32", model_bytes(8, 16, 2, 2, 1, 4, 16, 8, 0, 0, "f32", rng))
    write(md, "tiny-bf16", model_bytes(8, 16, 1, 2, 2, 4, 16, 8, 0, 0, "bf16", rng))
    write(md, "tiny-tied-window", model_bytes(8, 12, 2, 4, 2, 2, 10, 16, 3, 1, "f32", rng))
    write(md, "tiny-headdim", model_bytes(6, 8, 1, 3, 1, 8, 5, 2, 1, 0, "bf16", rng))
    write(md, "one-layer-vocab1", model_bytes(2, 2, 1, 1, 1, 2, 1, 1, 0, 1, "f32", rng))
    good = model_bytes(4, 4, 1, 1, 1, 4, 4, 4, 0, 0, "f32", rng)
    write(md, "near-truncated", good[:-1])
    write(md, "near-header-only", good[:256])
    write(md, "near-short", good[:100])

    td = os.path.join(HERE, "corpus", "tokenizer")
    small = os.path.join(ROOT, "tests", "work", "tok", "small.bin")
    if os.path.exists(small) and os.path.getsize(small) < 200_000:
        with open(small, "rb") as f:
            write(td, "small", f.read())
    # a hand-built vocabulary: specials, 256 byte pieces, letters, a few merges
    pieces = [("<unk>", 2), ("<s>", 3), ("</s>", 3)]
    pieces += [(f"<0x{b:02X}>", 6) for b in range(256)]
    base = len(pieces)
    letters = ["\u2581", "a", "b", "c", "h", "i", "日", "本"]
    pieces += [(ch, 1) for ch in letters]
    ids = {s: i for i, (s, _) in enumerate(pieces)}
    merges = []
    for a, b in [("\u2581", "h"), ("\u2581h", "i"), ("a", "b"), ("ab", "c"), ("日", "本")]:
        ids[a + b] = len(pieces)
        pieces.append((a + b, 1))
        merges.append((ids[a], ids[b], ids[a + b], len(merges)))
    added = [(0, 1), (1, 1), (2, 1)]
    write(td, "hand", tokenizer_bytes(pieces, merges, added, 1, 2, 0, 1))
    write(td, "hand-no-unk", tokenizer_bytes(pieces[:base] + pieces[base:], merges, added, 1, 2, -1, 3))
    nobytes = [("<unk>", 2), ("<s>", 3), ("</s>", 3), ("\u2581", 1), ("a", 1), ("\u2581a", 1)]
    write(td, "no-bytes", tokenizer_bytes(nobytes, [(3, 4, 5, 0)], [(0, 1), (1, 1), (2, 1)], 1, 2, 0, 1))
    write(td, "no-bytes-no-unk", tokenizer_bytes(nobytes[1:], [(2, 3, 4, 0)], [(0, 1), (1, 1)], 0, 1, -1, 1))

    ed = os.path.join(HERE, "corpus", "encode")
    texts = [b"Hello world", b"  leading and  double  spaces ", b"<s>special</s> tokens <unk>",
             "日本語のテキストです。".encode(), b"\xff\xfe\xc3 invalid utf-8 \xed\xa0\x80",
             b"nul\0bytes\0", "emoji \U0001F600 and \u2581 mark".encode(), b"\n\t\r", b""]
    for i, t in enumerate(texts):
        for sel in (0x00, 0x02, 0x14):    # tokenizer 0/1/2 (mode 0), bos bit
            write(ed, f"text{i}-{sel:02x}", bytes([sel]) + t)
    ids = struct.pack("<8H", 1, 15043, 3186, 29871, 13, 2, 300, 0x8005)
    write(ed, "ids-mixed", bytes([0x01]) + ids)
    write(ed, "ids-bytes", bytes([0x03]) + struct.pack("<6H", 0xE6 + 3, 0x97 + 3, 0xA5 + 3, 0xF0 + 3, 65, 0x80 + 3))


if __name__ == "__main__":
    main()
