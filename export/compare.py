#!/usr/bin/env python3
"""Compare two logits (or hidden-state) dumps: raw little-endian float32 files.

  compare.py REF OUT [--vocab V | --meta JSON] [--preset fp32|bf16|q8]
             [--tol-max X] [--tol-kl X] [--min-argmax F] [--per-position]
  compare.py REF OUT --hidden [--layers L --tokens T | --meta JSON] [--tol-max X]

REF is the reference (e.g. tests/fixtures/t48k.logits.f32 from transformers),
OUT the file under test.  Logits files are [n_tokens, vocab] row-major; the
vocab comes from --vocab, from --meta (a reference.py JSON: logits_shape), or
from REF's sibling PREFIX.json when REF is PREFIX.logits.f32.

Logits: per position max |d|, mean |d|, argmax of each, top-5 overlap and
KL(softmax(REF) || softmax(OUT)); then a summary and PASS/FAIL.  PASS needs
  max |d| <= tol-max  over every value,
  max KL <= tol-kl    (when a tol-kl is set),
  argmax agreement >= min-argmax (a fraction of positions; a mismatch counts as
                      agreement when REF's two candidates are within tol-max of
                      each other, i.e. a tie the tolerance cannot resolve).
Presets (explicit --tol-* flags override them):
  fp32 (default)  tol-max 1e-4, argmax identical.  An fp32 implementation and
                  transformers' fp32 differ only by summation order: ~1e-6..1e-5
                  on logits of magnitude ~5-10; 1e-4 leaves 10x headroom while
                  real bugs (RoPE layout, window off-by-one, GQA mapping) give
                  errors >= 1e-2.
  bf16            tol-max 0.1, tol-kl 1e-3, argmax >= 0.95: bf16 activations keep
                  8 significant bits (relative 2^-9), ~0.01-0.05 on such logits.
  q8              tol-max 0.5, tol-kl 1e-2, argmax >= 0.90: 8-bit weights.

Hidden states (--hidden, implied when REF ends in .hidden.f32): files [n_layers+1, n_tokens, hidden] (HF
output_hidden_states: [0] embeddings, [k] output of layer k-1, last entry after
the final RMSNorm).  Prints error growth layer by layer and the first
(entry, position) where they part beyond tol-max; PASS iff none does.

Exit status: 0 PASS, 1 FAIL, 2 usage or I/O error.  Standard library only;
numpy is used (for speed) when importable.
"""
import argparse
import array
import heapq
import json
import math
import os
import sys

try:
    import numpy as np
except ImportError:  # stdlib path
    np = None

PRESETS = {
    "fp32": {"tol_max": 1e-4, "tol_kl": None, "min_argmax": 1.0},
    "bf16": {"tol_max": 0.1, "tol_kl": 1e-3, "min_argmax": 0.95},
    "q8": {"tol_max": 0.5, "tol_kl": 1e-2, "min_argmax": 0.90},
}


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise UsageError(message)


# ----------------------------------------------------------------- I/O
def read_f32(path):
    """Whole file as a flat sequence of floats (array('f') or numpy array)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}")
    if len(raw) % 4:
        raise UsageError(f"{path}: size {len(raw)} is not a multiple of 4 (float32)")
    if np is not None:
        return np.frombuffer(raw, dtype="<f4").astype(np.float64)
    a = array.array("f")
    a.frombytes(raw)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def load_meta(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}")
    except ValueError:
        raise UsageError(f"{path}: not valid JSON")


def sibling_meta(path):
    for suf in (".logits.f32", ".hidden.f32"):
        if path.endswith(suf):
            j = path[: -len(suf)] + ".json"
            if os.path.isfile(j):
                return j
    return None


def rows(data, n_rows, width):
    for r in range(n_rows):
        yield data[r * width:(r + 1) * width]


# ----------------------------------------------------------------- math
def bad(x):
    return math.isnan(x) or math.isinf(x)


def row_stats(a, b, k=5):
    """Per-row statistics of reference row a vs row b."""
    if np is not None:
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        finite = bool(np.isfinite(b).all() and np.isfinite(a).all())
        d = np.abs(a - b)
        mx = float(d.max()) if finite else math.inf
        mean = float(d.mean()) if finite else math.inf
        am_a, am_b = int(a.argmax()), int(b.argmax())
        top_a = set(int(i) for i in np.argsort(-a, kind="stable")[:k])
        top_b = set(int(i) for i in np.argsort(-b, kind="stable")[:k])
        if finite:
            la = a - a.max()
            lb = b - b.max()
            lse_a = math.log(float(np.exp(la).sum()))
            lse_b = math.log(float(np.exp(lb).sum()))
            lpa, lpb = la - lse_a, lb - lse_b
            kl = float((np.exp(lpa) * (lpa - lpb)).sum())
        else:
            kl = math.inf
    else:
        a = list(a)
        b = list(b)
        finite = not any(bad(x) for x in a) and not any(bad(x) for x in b)
        if finite:
            d = [abs(x - y) for x, y in zip(a, b)]
            mx = max(d)
            mean = math.fsum(d) / len(d)
        else:
            mx = mean = math.inf
        am_a = max(range(len(a)), key=a.__getitem__)
        am_b = max(range(len(b)), key=b.__getitem__)
        top_a = set(heapq.nlargest(k, range(len(a)), key=a.__getitem__))
        top_b = set(heapq.nlargest(k, range(len(b)), key=b.__getitem__))
        if finite:
            ma, mb = max(a), max(b)
            lse_a = ma + math.log(math.fsum(math.exp(x - ma) for x in a))
            lse_b = mb + math.log(math.fsum(math.exp(x - mb) for x in b))
            kl = math.fsum(math.exp(x - lse_a) * ((x - lse_a) - (y - lse_b)) for x, y in zip(a, b))
        else:
            kl = math.inf
    if finite:
        kl = max(kl, 0.0)  # rounding can make a ~0 KL slightly negative
    return {"max": mx, "mean": mean, "argmax_ref": am_a, "argmax_out": am_b,
            "gap": float(a[am_a]) - float(a[am_b]), "top5": len(top_a & top_b), "kl": kl}


def diff_stats(a, b):
    """max |d|, mean |d|, index of max, max |a| of two equal-length blocks."""
    if np is not None:
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        d = np.abs(a - b)
        d[~np.isfinite(d)] = math.inf
        i = int(d.argmax())
        return float(d[i]), float(d.mean()), i, float(np.abs(a).max())
    d = [math.inf if bad(x - y) else abs(x - y) for x, y in zip(a, b)]
    i = max(range(len(d)), key=d.__getitem__)
    return d[i], math.fsum(d) / len(d), i, max(abs(x) for x in a)


# ----------------------------------------------------------------- modes
def fmt(x):
    return "inf" if math.isinf(x) else f"{x:.3e}"


def compare_logits(a, b, vocab, tol_max, tol_kl, min_argmax, per_position=False, out=None):
    """Returns (passed, summary dict)."""
    out = out or sys.stdout
    if len(a) % vocab:
        raise UsageError(f"reference holds {len(a)} floats, not a multiple of vocab {vocab}")
    if len(b) != len(a):
        raise UsageError(f"sizes differ: reference {len(a)} floats, output {len(b)} floats")
    n = len(a) // vocab
    if n == 0:
        raise UsageError("empty files")
    stats = [row_stats(ra, rb) for ra, rb in zip(rows(a, n, vocab), rows(b, n, vocab))]
    agree = ties = 0
    for s in stats:
        if s["argmax_ref"] == s["argmax_out"]:
            s["argmax_ok"] = "yes"
            agree += 1
        elif s["gap"] <= tol_max:
            s["argmax_ok"] = "tie"
            ties += 1
        else:
            s["argmax_ok"] = "NO"
    if per_position or n <= 64:
        print(f"{'pos':>5} {'max|d|':>10} {'mean|d|':>10} {'argmax ref':>10} {'out':>8} {'ok':>4} "
              f"{'top5':>4} {'KL':>10}", file=out)
        for p, s in enumerate(stats):
            print(f"{p:>5} {fmt(s['max']):>10} {fmt(s['mean']):>10} {s['argmax_ref']:>10} "
                  f"{s['argmax_out']:>8} {s['argmax_ok']:>4} {s['top5']:>4} {fmt(s['kl']):>10}", file=out)
    worst = max(range(n), key=lambda p: stats[p]["max"])
    summ = {
        "positions": n, "vocab": vocab,
        "max_abs": stats[worst]["max"], "worst_position": worst,
        "mean_abs": sum(s["mean"] for s in stats) / n,
        "argmax_agree": agree, "argmax_ties": ties,
        "argmax_frac": (agree + ties) / n,
        "min_top5": min(s["top5"] for s in stats),
        "max_kl": max(s["kl"] for s in stats),
    }
    reasons = []
    if not summ["max_abs"] <= tol_max:
        reasons.append(f"max|d| {fmt(summ['max_abs'])} > {tol_max:g} (position {worst})")
    if tol_kl is not None and not summ["max_kl"] <= tol_kl:
        reasons.append(f"max KL {fmt(summ['max_kl'])} > {tol_kl:g}")
    if summ["argmax_frac"] < min_argmax:
        first = next(p for p, s in enumerate(stats) if s["argmax_ok"] == "NO")
        reasons.append(f"argmax agrees at {agree + ties}/{n} positions < {min_argmax:g} "
                       f"(first mismatch at position {first})")
    print(f"positions {n}, vocab {vocab}: max|d| {fmt(summ['max_abs'])} (position {worst}), "
          f"mean|d| {fmt(summ['mean_abs'])}, argmax {agree}/{n}" + (f" (+{ties} ties)" if ties else "")
          + f", min top-5 overlap {summ['min_top5']}/5, max KL {fmt(summ['max_kl'])}", file=out)
    summ["pass"] = not reasons
    summ["reasons"] = reasons
    print(("PASS" if not reasons else "FAIL: " + "; ".join(reasons))
          + f"  [tol max|d| {tol_max:g}" + (f", KL {tol_kl:g}" if tol_kl is not None else "")
          + f", argmax >= {min_argmax:g}]", file=out)
    return not reasons, summ


def compare_hidden(a, b, entries, tokens, tol_max, out=None):
    """entries = n_layers + 1. Returns (passed, summary dict)."""
    out = out or sys.stdout
    if len(b) != len(a):
        raise UsageError(f"sizes differ: reference {len(a)} floats, output {len(b)} floats")
    block = entries * tokens
    if block <= 0 or len(a) % block or len(a) == 0:
        raise UsageError(f"{len(a)} floats is not a multiple of (layers+1)*tokens = {block}")
    dim = len(a) // block
    print(f"{'entry':>5} {'what':<12} {'max|d|':>10} {'mean|d|':>10} {'max|ref|':>10} {'rel':>10} "
          f"{'growth':>8} {'worst pos':>9}", file=out)
    first = None
    table = []
    prev = None
    for e in range(entries):
        what = "embeddings" if e == 0 else ("final norm" if e == entries - 1 else f"layer {e - 1}")
        lo, hi = e * tokens * dim, (e + 1) * tokens * dim
        mx, mean, i, ref_max = diff_stats(a[lo:hi], b[lo:hi])
        pos = i // dim
        rel = mx / ref_max if ref_max > 0 else math.inf
        growth = (mx / prev) if prev and prev > 0 and not math.isinf(mx) else None
        table.append({"entry": e, "what": what, "max_abs": mx, "mean_abs": mean, "rel": rel, "worst_position": pos})
        print(f"{e:>5} {what:<12} {fmt(mx):>10} {fmt(mean):>10} {fmt(ref_max):>10} {fmt(rel):>10} "
              f"{(f'x{growth:.1f}' if growth is not None else '-'):>8} {pos:>9}", file=out)
        prev = mx
        if first is None and not mx <= tol_max:
            # first position (in order) of this entry that exceeds the tolerance
            for p in range(tokens):
                pm, _, j, _ = diff_stats(a[lo + p * dim:lo + (p + 1) * dim], b[lo + p * dim:lo + (p + 1) * dim])
                if not pm <= tol_max:
                    first = (e, what, p, j, pm)
                    break
    summ = {"entries": entries, "tokens": tokens, "dim": dim, "table": table}
    if first is None:
        summ["pass"] = True
        print(f"PASS: all {entries} entries x {tokens} positions within max|d| {tol_max:g}", file=out)
        return True, summ
    e, what, p, j, pm = first
    summ.update(first_entry=e, first_position=p)
    summ["pass"] = False
    print(f"FAIL: first divergence at entry {e} ({what}), position {p}, dim {j}: |d| {fmt(pm)} > {tol_max:g}",
          file=out)
    return False, summ


# ----------------------------------------------------------------- main
def main(argv=None):
    ap = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ref", help="reference file (raw LE float32)")
    ap.add_argument("out", help="file under test (raw LE float32)")
    ap.add_argument("--vocab", type=int, help="logits row width")
    ap.add_argument("--meta", help="reference.py JSON giving logits_shape / hidden_shape")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="fp32")
    ap.add_argument("--tol-max", type=float, help="max |d| allowed (preset default)")
    ap.add_argument("--tol-kl", type=float, help="max KL(ref||out) allowed per position")
    ap.add_argument("--min-argmax", type=float, help="fraction of positions whose argmax must agree")
    ap.add_argument("--per-position", action="store_true", help="print the per-position table always")
    ap.add_argument("--hidden", action="store_true", help="compare hidden-state files")
    ap.add_argument("--layers", type=int, help="n_layers (the file holds n_layers+1 entries)")
    ap.add_argument("--tokens", type=int, help="n_tokens")
    try:
        a = ap.parse_args(argv)
        p = dict(PRESETS[a.preset])
        for k in ("tol_max", "tol_kl", "min_argmax"):
            if getattr(a, k) is not None:
                p[k] = getattr(a, k)
        if p["tol_max"] < 0 or not 0 <= p["min_argmax"] <= 1:
            raise UsageError("--tol-max must be >= 0 and --min-argmax within [0, 1]")
        meta_path = a.meta or sibling_meta(a.ref)
        meta = load_meta(meta_path) if meta_path and (a.meta or
                                                      (a.vocab is None and a.layers is None)) else None
        ref = read_f32(a.ref)
        got = read_f32(a.out)
        if not a.hidden and a.ref.endswith(".hidden.f32") and a.vocab is None:
            a.hidden = True  # PREFIX.hidden.f32: hidden-state mode
        if a.hidden:
            if a.layers is not None and a.tokens is not None:
                entries, tokens = a.layers + 1, a.tokens
            elif meta and "hidden_shape" in meta:
                entries, tokens = meta["hidden_shape"][0], meta["hidden_shape"][1]
                if entries * tokens * meta["hidden_shape"][2] != len(ref):
                    raise UsageError(f"{a.ref} holds {len(ref)} floats, but {meta_path} says "
                                     f"hidden_shape {meta['hidden_shape']}")
            else:
                raise UsageError("--hidden needs --layers and --tokens (or --meta JSON with hidden_shape)")
            if entries < 2 or tokens < 1:
                raise UsageError("--layers must be >= 1 and --tokens >= 1")
            ok, _ = compare_hidden(ref, got, entries, tokens, p["tol_max"])
        else:
            if a.vocab is not None:
                vocab = a.vocab
            elif meta and "logits_shape" in meta:
                vocab = meta["logits_shape"][1]
            elif meta and "vocab" in meta:
                vocab = meta["vocab"]
            else:
                raise UsageError("give --vocab V or --meta JSON (no PREFIX.json next to the reference)")
            if vocab <= 0:
                raise UsageError("--vocab must be positive")
            if meta and a.vocab is None and "logits_shape" in meta and \
                    meta["logits_shape"][0] * meta["logits_shape"][1] != len(ref):
                raise UsageError(f"{a.ref} holds {len(ref)} floats, but {meta_path} says "
                                 f"logits_shape {meta['logits_shape']}")
            ok, _ = compare_logits(ref, got, vocab, p["tol_max"], p["tol_kl"], p["min_argmax"], a.per_position)
    except UsageError as e:
        print(f"compare.py: error: {e}", file=sys.stderr)
        return 2
    except (KeyError, IndexError, TypeError) as e:
        print(f"compare.py: error: bad metadata ({type(e).__name__}: {e})", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        sys.exit(1)
