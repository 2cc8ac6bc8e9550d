#!/usr/bin/env python3
"""Compare an implementation's output (OUT) with a reference (REF).

  compare.py REF OUT [options]          the reference FIRST, the file under test second

REF and OUT are two files of one kind, or two dump folders:

  logits         [n_tokens, vocab]: .npy, or raw little-endian float32 (.f32)
                 whose vocab comes from --vocab, --meta JSON (reference.py's
                 logits_shape) or REF's sibling PREFIX.json
  hidden states  [n_layers+1, n_tokens, hidden] (HF output_hidden_states: [0]
                 embeddings, [k] output of layer k-1, the last entry after the
                 final RMSNorm): PREFIX.hidden.npy / .hidden.f32, or --hidden
                 (raw files: --layers L --tokens T, or --meta JSON)
  a module       one file of a dump (model.layers.3.mlp.up_proj.npy ...)
  dump folders   DIR/<HF module path>.npy as written by `reference.py --dump`
                 and `raktn --dump` (notes/verification.md lists the names);
                 every name in both folders is compared, in forward order

.npy files (NumPy format 1.0/2.0, '<f4' or '<f8', C order) carry their shape:
a shape that differs between REF and OUT, or from --vocab/--layers/--tokens,
is an error (exit 2).  Raw files must have the same size.

How each kind is judged (the per-vector quantity is computed for every row:
every position, and for attention weights every head and query position):
  logits         absolute: max|ref-out| <= tol-max, argmax agreement >=
                 min-argmax (a mismatch where REF's top two are within
                 TIE_MARGIN, 1e-3, is a tie and counts as agreement; the raw
                 count is printed too), KL(softmax(REF) ||
                 softmax(OUT)) <= tol-kl when set
  hidden states  relative to the vector's size: max|ref-out| / rms(ref) <= tol-rel
  and modules    (rms(ref) = sqrt(mean of the squared REF row); hidden states
                 grow through the residual stream, so an absolute tolerance
                 fails correct deep models and misses faults in small vectors)
  attn_weights   relative to the row's largest probability ("relmax"):
                 max|ref-out| / max(ref row) <= tol-rel, per head and query
                 position.  (Not the RMS: a row's RMS depends on how many keys
                 are masked; a softmax row's errors scale with its largest
                 entry, and a fault scaling the row by 1+e shows as e.)

The verdict names the FIRST thing out of tolerance in forward order (module or
hidden-state entry, then position), and the worst:
  FAIL: first model.layers.3.self_attn.q_proj (layer 3), position 5, dim 17: rel 1.0e-03 > 0.0002; ...
"layer L" is HF's 0-based layer; "embeddings", "final norm", "logits".

Presets (explicit --tol-* flags override them), measured with llama.cpp
c392e509 on 16- and 32-layer models against raktn-truth on the same GGUF's
weights rounding where llama.cpp rounds (notes/verification.md, "Presets";
the README's table says which preset and which raktn-truth --round/--kv):
  preset  tol-max  tol-kl  min-argmax  tol-rel  tol-local
  fp32    1e-4     -       1.0         2e-4     1e-4      F32 weights, f32 KV cache
  f16kv   1e-2     2e-6    1.0         2e-2     1e-4      F32, f16 KV (--kv f16)
  bf16    0.25     1e-3    0.85        0.4      1e-4      BF16 (--round bf16)
  q8      1.6      6e-2    0.6         2.5      1e-4      Q8_0, Q4_0 (--round q8_0)
  q4_k    0.6      6e-3    0.85        1.0      1e-4      Q4_K_M, Q4_K, Q6_K (--round q8_k)
Each is about 2x the worst correct run (5x at fp32); a mismatched argmax is a
tie only when REF's top two logits are within 1e-3 (TIE_MARGIN), and the
raw count is always printed.

--model model.bin (dump folders): every module of OUT is also recomputed from
OUT's own dumped inputs with that model's weights, in float64, rounding as the
preset says ("local checks", tol-local): a correct peer differs only by its
float32 summation order at any depth and precision, so the first failing
module is where the fault is.  A folder written by tools/llama-dump.c is read
as it is: its ggml node names are mapped to the HF names, q/k columns put
back in HF order, llama.cpp's padded keys cropped.  A FAIL is followed by a
"hint:" line when the pattern says where to look.

--json prints one JSON object (the verdict, first, worst and a row per item)
instead of text; non-finite numbers appear as the strings "inf" / "nan".

Exit status: 0 PASS, 1 FAIL, 2 usage or I/O error (one line on stderr).
Standard library only; numpy is used for speed when importable (same verdicts
and figures; compare.py says when it ran without it).
"""
import argparse
import array
import ast
import heapq
import json
import math
import os
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402  (beside this file: model.bin's header, HEADER_FIELDS)

try:
    import numpy as np
except ImportError:  # stdlib path
    np = None

# tol_rel None: not measured for that preset (--tol-rel must be given)
PRESETS = {
    "fp32": {"tol_max": 1e-4, "tol_kl": None, "min_argmax": 1.0, "tol_rel": 2e-4, "tol_local": 1e-4},
    "f16kv": {"tol_max": 1e-2, "tol_kl": 2e-6, "min_argmax": 1.0, "tol_rel": 2e-2, "tol_local": 1e-4},
    "bf16": {"tol_max": 0.25, "tol_kl": 1e-3, "min_argmax": 0.85, "tol_rel": 0.4, "tol_local": 1e-4},
    "q8": {"tol_max": 1.6, "tol_kl": 6e-2, "min_argmax": 0.6, "tol_rel": 2.5, "tol_local": 1e-4},
    "q4_k": {"tol_max": 0.6, "tol_kl": 6e-3, "min_argmax": 0.85, "tol_rel": 1.0, "tol_local": 1e-4},
}

# A mismatched argmax is a tie, not a disagreement, only when REF's own top
# two logits are within this (a fixed margin in logit units, not tol-max: a
# preset with tol-max 1.5 would otherwise excuse nearly every flip)
TIE_MARGIN = 1e-3

# The dump's module names inside one decoder layer, in forward order; "" is the
# layer's own output (model.layers.L).  See notes/verification.md.
LAYER_ORDER = ["input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
               "self_attn.q_rope", "self_attn.k_rope", "self_attn.attn_weights",
               "self_attn.attn_output", "self_attn.o_proj", "post_attention_layernorm",
               "mlp.gate_proj", "mlp.up_proj", "mlp.act_fn", "mlp.down_proj", ""]
LAYER_RE = re.compile(r"^model\.layers\.(\d+)(?:\.(.+))?$")


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise UsageError(message)


# ----------------------------------------------------------------- I/O
def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}")


def _floats(raw, offset, code, path):
    """raw[offset:] as little-endian floats (code 'f' or 'd'): numpy float64 or array."""
    if np is not None:
        return np.frombuffer(raw, dtype="<f4" if code == "f" else "<f8", offset=offset).astype(np.float64)
    a = array.array(code)
    a.frombytes(raw[offset:])
    if sys.byteorder != "little":
        a.byteswap()
    return a


def read_f32(path):
    """A raw little-endian float32 file as a flat sequence of floats."""
    raw = _read(path)
    if len(raw) % 4:
        raise UsageError(f"{path}: size {len(raw)} is not a multiple of 4 (float32)")
    return _floats(raw, 0, "f", path)


def parse_npy_header(raw, path):
    """(shape, code 'f'|'d', data offset) of a .npy file's bytes."""
    if raw[:6] != b"\x93NUMPY" or len(raw) < 10:
        raise UsageError(f"{path}: not a .npy file (no \\x93NUMPY magic)")
    major = raw[6]
    if major == 1:
        (hlen,), start = struct.unpack("<H", raw[8:10]), 10
    elif major in (2, 3):
        if len(raw) < 12:
            raise UsageError(f"{path}: truncated .npy header")
        (hlen,), start = struct.unpack("<I", raw[8:12]), 12
    else:
        raise UsageError(f"{path}: .npy format version {major}.{raw[7]} not supported (1.0, 2.0)")
    try:
        hdr = ast.literal_eval(raw[start:start + hlen].decode("latin1" if major < 3 else "utf8"))
        descr, fortran, shape = hdr["descr"], hdr["fortran_order"], tuple(hdr["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError):
        raise UsageError(f"{path}: bad .npy header")
    if descr not in ("<f4", "<f8"):
        raise UsageError(f"{path}: dtype {descr!r} not supported ('<f4' float32 or '<f8' float64)")
    if fortran:
        raise UsageError(f"{path}: Fortran-order .npy not supported (write C order)")
    if not all(isinstance(d, int) and d >= 0 for d in shape):
        raise UsageError(f"{path}: bad shape {shape}")
    size = 4 if descr == "<f4" else 8
    count = 1
    for d in shape:
        count *= d
    off = start + hlen
    if len(raw) - off != count * size:
        raise UsageError(f"{path}: {len(raw) - off} data bytes, shape {list(shape)} of {descr} needs "
                         f"{count * size}")
    return shape, "f" if size == 4 else "d", off


def read_npy(path):
    """(flat floats, shape) of a .npy file."""
    raw = _read(path)
    shape, code, off = parse_npy_header(raw, path)
    return _floats(raw, off, code, path), shape


def read_any(path):
    """(flat floats, shape or None): .npy carries a shape, raw float32 does not."""
    raw = _read(path)
    if raw[:6] == b"\x93NUMPY" or path.endswith(".npy"):
        shape, code, off = parse_npy_header(raw, path)
        return _floats(raw, off, code, path), shape
    if len(raw) % 4:
        raise UsageError(f"{path}: size {len(raw)} is not a multiple of 4 (float32)")
    return _floats(raw, 0, "f", path), None


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


# ----------------------------------------------------------------- names
def module_info(name):
    """(what, layer, kind, order key) of a dump name."""
    if name == "model.embed_tokens":
        return "embeddings", None, "rel", (0,)
    if name == "model.norm":
        return "final norm", None, "rel", (2,)
    if name == "lm_head":
        return "logits", None, "logits", (3,)
    m = LAYER_RE.match(name)
    if m:
        layer, sub = int(m.group(1)), m.group(2) or ""
        kind = "prob" if sub.endswith("attn_weights") else "rel"
        i = LAYER_ORDER.index(sub) if sub in LAYER_ORDER else len(LAYER_ORDER) - 1.5
        return f"layer {layer}", layer, kind, (1, layer, i, sub)
    return name, None, "rel", (4, name)


def entry_what(e, entries):
    return "embeddings" if e == 0 else ("final norm" if e == entries - 1 else f"layer {e - 1}")


# ----------------------------------------------------------------- math
def bad(x):
    return math.isnan(x) or math.isinf(x)


def fmt(x):
    if x is None:
        return "-"
    return ("inf" if x > 0 else "-inf") if math.isinf(x) else ("nan" if math.isnan(x) else f"{x:.3e}")


def row_diffs(a, b, rows, width):
    """Per row: (max |a-b| (inf if any value is not finite), its column, rms(a), mean |a-b|, max |a|)."""
    if np is not None:
        A = np.asarray(a, dtype=np.float64).reshape(rows, width)
        B = np.asarray(b, dtype=np.float64).reshape(rows, width)
        with np.errstate(invalid="ignore", over="ignore"):
            d = np.abs(A - B)
            d[~np.isfinite(d)] = math.inf
            rms = np.sqrt(np.mean(A * A, axis=1))
            amax = np.abs(A).max(axis=1)
            amax[~np.isfinite(rms)] = math.nan
        idx = d.argmax(axis=1)
        mx = d[np.arange(rows), idx]
        mean = d.mean(axis=1)
        return [(float(mx[r]), int(idx[r]), float(rms[r]), float(mean[r]), float(amax[r])) for r in range(rows)]
    res = []
    for r in range(rows):
        lo = r * width
        ra, rb = a[lo:lo + width], b[lo:lo + width]
        d = [math.inf if bad(x - y) else abs(x - y) for x, y in zip(ra, rb)]
        i = max(range(width), key=d.__getitem__)
        s = math.fsum(x * x for x in ra) if not any(bad(x) for x in ra) else math.nan
        res.append((d[i], i, math.sqrt(s / width) if not math.isnan(s) else math.nan,
                    math.fsum(d) / width if not math.isinf(d[i]) else math.inf,
                    max(abs(x) for x in ra) if not math.isnan(s) else math.nan))
    return res


def relative(mx, rms):
    if math.isnan(rms) or math.isinf(rms):
        return math.inf
    if rms == 0:
        return 0.0 if mx == 0 else math.inf
    return mx / rms


def row_stats(a, b, k=5):
    """Per-row statistics of reference logits row a vs row b."""
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


# ----------------------------------------------------------------- judging
class Tol:
    def __init__(self, tol_max, tol_kl, min_argmax, tol_rel):
        self.max, self.kl, self.argmax, self.rel = tol_max, tol_kl, min_argmax, tol_rel

    def dict(self):
        return {"tol_max": self.max, "tol_kl": self.kl, "min_argmax": self.argmax, "tol_rel": self.rel}


def where(it, pos, head=None):
    """'model.layers.3.mlp.up_proj (layer 3), position 5' / 'layer 2, position 1'."""
    s = it["name"] if it["name"] == it["what"] else f"{it['name']} ({it['what']})"
    s += f", position {pos}"
    if head is not None:
        s += f", head {head}"
    return s


def judge_rows(name, what, layer, kind, a, b, shape, tol):
    """A module / hidden entry judged row by row. kind 'rel' (rows = positions,
    max|d| / rms(ref row)) or 'prob' ([heads, n, n], rows = (head, query position),
    max|d| / max(ref row)).  Returns the item dict."""
    width = shape[-1] if shape else 0
    rows = len(a) // width if width else 0
    limit = tol.rel
    it = {"name": name, "what": what, "layer": layer, "kind": kind, "shape": list(shape),
          "metric": "rel" if kind == "rel" else "relmax", "tol": limit}
    if rows == 0:
        it.update(max_abs=0.0, value=0.0, worst=None, first=None, bad_rows=0, per_position=[])
        return it
    per_pos = len(shape) == 3 and kind == "prob"
    n = shape[-2] if per_pos else rows
    diffs = row_diffs(a, b, rows, width)
    best = None
    first = None
    nbad = 0
    pos_vals = [0.0] * n  # the largest value at each position (over heads)
    dims_bad = {}         # column -> failing rows whose largest difference is there
    for r, (mx, j, rms, _, amax) in enumerate(diffs):
        v = relative(mx, rms if kind == "rel" else amax)
        pos, head = (r % n, r // n) if per_pos else (r, None)
        if not v <= pos_vals[pos]:
            pos_vals[pos] = v
        rec = {"position": pos, "head": head, "dim": j, "value": v, "max_abs": mx}
        rec["rms_ref" if kind == "rel" else "max_ref"] = rms if kind == "rel" else amax
        if best is None or v > best["value"] or (math.isnan(v) and not math.isnan(best["value"])):
            best = rec
        if not v <= limit:
            nbad += 1
            dims_bad[j] = dims_bad.get(j, 0) + 1
            if first is None or (pos, head) < (first["position"], first["head"]):
                first = rec
    it.update(max_abs=max(d[0] for d in diffs), value=best["value"], worst=best, first=first,
              bad_rows=nbad, per_position=pos_vals)
    it["dims_bad"] = dims_bad
    return it


def judge_logits(a, b, vocab, tol, name="logits", what="logits"):
    if vocab <= 0 or len(a) % vocab:
        raise UsageError(f"reference holds {len(a)} floats, not a multiple of vocab {vocab}")
    if len(b) != len(a):
        raise UsageError(f"sizes differ: reference {len(a)} floats, output {len(b)} floats")
    n = len(a) // vocab
    if n == 0:
        raise UsageError("empty files")
    stats = [row_stats(a[p * vocab:(p + 1) * vocab], b[p * vocab:(p + 1) * vocab]) for p in range(n)]
    agree = ties = 0
    for s in stats:
        if s["argmax_ref"] == s["argmax_out"]:
            s["argmax_ok"] = "yes"
            agree += 1
        elif s["gap"] <= TIE_MARGIN:
            s["argmax_ok"] = "tie"
            ties += 1
        else:
            s["argmax_ok"] = "NO"
    worst = max(range(n), key=lambda p: stats[p]["max"])
    frac = (agree + ties) / n
    argmax_fails = frac < tol.argmax
    first = None
    for p, s in enumerate(stats):
        why = []
        if not s["max"] <= tol.max:
            why.append(f"max|d| {fmt(s['max'])} > {tol.max:g}")
        if tol.kl is not None and not s["kl"] <= tol.kl:
            why.append(f"KL {fmt(s['kl'])} > {tol.kl:g}")
        if argmax_fails and s["argmax_ok"] == "NO":
            why.append(f"argmax {s['argmax_ref']} vs {s['argmax_out']}")
        if why:
            first = {"position": p, "head": None, "value": s["max"], "why": "; ".join(why)}
            break
    reasons = []
    if not stats[worst]["max"] <= tol.max:
        reasons.append(f"worst position {worst}: max|d| {fmt(stats[worst]['max'])} > {tol.max:g}")
    max_kl = max(s["kl"] for s in stats)
    if tol.kl is not None and not max_kl <= tol.kl:
        kp = max(range(n), key=lambda p: stats[p]["kl"])
        reasons.append(f"max KL {fmt(max_kl)} > {tol.kl:g} (position {kp})")
    if argmax_fails:
        fm = next(p for p, s in enumerate(stats) if s["argmax_ok"] == "NO")
        reasons.append(f"argmax agrees at {agree + ties}/{n} positions < {tol.argmax:g} "
                       f"(first mismatch at position {fm})")
    return {"name": name, "what": what, "layer": None, "kind": "logits", "shape": [n, vocab],
            "metric": "abs", "tol": tol.max, "positions": n, "vocab": vocab,
            "max_abs": stats[worst]["max"], "value": stats[worst]["max"],
            "worst": {"position": worst, "head": None, "value": stats[worst]["max"]},
            "worst_position": worst, "mean_abs": sum(s["mean"] for s in stats) / n,
            "argmax_agree": agree, "argmax_ties": ties, "argmax_frac": frac,
            "min_top5": min(s["top5"] for s in stats), "max_kl": max_kl,
            "first": first, "reasons": reasons, "pass": not reasons, "stats": stats}


def item_passed(it):
    return it["pass"] if it["kind"] == "logits" else it["first"] is None


def verdict(items):
    """(passed, first failing item and its record, worst item and its record)."""
    first = None
    for it in items:
        if not item_passed(it):
            first = it
            break
    # the worst: the largest value relative to its own tolerance
    def score(it):
        v, t = it["value"], it["tol"]
        if math.isnan(v):
            return math.inf
        return v / t if t else (0.0 if v == 0 else math.inf)
    worst = max(items, key=score) if items else None
    return first is None, first, worst


def describe(it, rec):
    """'<where>: rel 1.0e-03 > 0.0002' for a record of item it."""
    if rec is None:
        return it["name"]
    s = where(it, rec["position"], rec.get("head"))
    if it["kind"] == "logits":
        if rec.get("why"):
            return f"{s}: {rec['why']}"
        return f"{s}: max|d| {fmt(rec['value'])}" + ("" if rec['value'] <= it['tol'] else f" > {it['tol']:g}")
    if rec.get("dim") is not None:
        s += f", {'key' if it['kind'] == 'prob' else 'dim'} {rec['dim']}"
    cmp = "<=" if rec["value"] <= it["tol"] else ">"
    return f"{s}: {it['metric']} {fmt(rec['value'])} {cmp} {it['tol']:g}"


# ----------------------------------------------------------------- printing
def print_logits(it, tol, per_position, out):
    stats, n = it["stats"], it["positions"]
    if per_position or n <= 64:
        print(f"{'pos':>5} {'max|d|':>10} {'mean|d|':>10} {'argmax ref':>10} {'out':>8} {'ok':>4} "
              f"{'top5':>4} {'KL':>10}", file=out)
        for p, s in enumerate(stats):
            print(f"{p:>5} {fmt(s['max']):>10} {fmt(s['mean']):>10} {s['argmax_ref']:>10} "
                  f"{s['argmax_out']:>8} {s['argmax_ok']:>4} {s['top5']:>4} {fmt(s['kl']):>10}", file=out)
    ties = it["argmax_ties"]
    print(f"positions {n}, vocab {it['vocab']}: max|d| {fmt(it['max_abs'])} (position {it['worst_position']}), "
          f"mean|d| {fmt(it['mean_abs'])}, argmax {it['argmax_agree']}/{n} raw"
          + (f" (+{ties} ties within {TIE_MARGIN:g})" if ties else "")
          + f", min top-5 overlap {it['min_top5']}/5, max KL {fmt(it['max_kl'])}", file=out)
    tol_s = f"  [tol max|d| {tol.max:g}" + (f", KL {tol.kl:g}" if tol.kl is not None else "") \
        + f", argmax >= {tol.argmax:g}]"
    if it["pass"]:
        print("PASS" + tol_s, file=out)
    else:
        f = it["first"]
        head = [f"first position {f['position']}: {f['why']}"] if f else []
        same = f"worst position {f['position']}: " if f else None  # already said by the first
        print("FAIL: " + "; ".join(head + [r for r in it["reasons"] if not (same and r.startswith(same))])
              + tol_s, file=out)


def print_table(items, out, name_w=None):
    name_w = name_w or max(12, max(len(it["name"]) for it in items))
    print(f"{'name':<{name_w}} {'what':<11} {'max|d|':>10} {'metric':>6} {'worst':>10} {'at pos':>7} "
          f"{'1st bad':>7}  tol", file=out)
    for it in items:
        w = it["worst"] or {}
        pos = w.get("position", "-")
        if w.get("head") is not None:
            pos = f"{pos}h{w['head']}"
        first = it["first"]["position"] if it["first"] else "-"
        extra = ""
        if it["kind"] == "logits":
            extra = f"  argmax {it['argmax_agree']}/{it['positions']} raw, max KL {fmt(it['max_kl'])}"
        print(f"{it['name']:<{name_w}} {it['what']:<11} {fmt(it['max_abs']):>10} {it['metric']:>6} "
              f"{fmt(it['value']):>10} {pos:>7} {first:>7}  {it['tol']:g}"
              + ("" if item_passed(it) else "  FAIL") + extra, file=out)


def print_verdict(items, unit, out):
    ok, first, worst = verdict(items)
    if ok:
        print(f"PASS: {len(items)} {unit} within tolerance; closest to its tolerance: "
              + describe(worst, worst["worst"]), file=out)
    else:
        nbad = sum(1 for it in items if not item_passed(it))
        f, w = first["first"], worst["worst"]
        same = worst is first and w is not None and (w["position"], w.get("head")) == (f["position"], f.get("head"))
        print(f"FAIL: first {describe(first, f)}; " + ("also the worst" if same else f"worst {describe(worst, w)}")
              + f" ({nbad}/{len(items)} {unit} out of tolerance)", file=out)
    return ok


# ----------------------------------------------------------------- JSON
def clean(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    return x


def item_json(it):
    keep = ("name", "what", "layer", "kind", "shape", "metric", "tol", "max_abs", "value", "worst", "first",
            "bad_rows", "per_position")
    d = {k: it[k] for k in keep if k in it}
    if it["kind"] == "logits":
        d["pass"] = it["pass"]
        d["reasons"] = it["reasons"]
        for k in ("positions", "vocab", "mean_abs", "argmax_agree", "argmax_ties", "argmax_frac",
                  "min_top5", "max_kl"):
            d[k] = it[k]
        d["per_position"] = [{"position": p, "max_abs": s["max"], "argmax_ref": s["argmax_ref"],
                              "argmax_out": s["argmax_out"], "argmax_ok": s["argmax_ok"],
                              "top5": s["top5"], "kl": s["kl"]} for p, s in enumerate(it["stats"])]
    else:
        d["pass"] = it["first"] is None
    return d


def result_json(mode, ref, out, tol, items, extra=None):
    ok, first, worst = verdict(items)
    res = {"mode": mode, "ref": ref, "out": out, "pass": ok, "tolerances": tol.dict(),
           "first": None, "worst": None, "items": [item_json(it) for it in items]}
    for key, it in (("first", first), ("worst", worst)):
        if it is not None:
            rec = it["first"] if key == "first" else it["worst"]
            res[key] = dict({"name": it["name"], "what": it["what"], "layer": it["layer"], "metric": it["metric"],
                             "tol": it["tol"], "text": describe(it, rec)}, **(rec or {}))
    if extra:
        res.update(extra)
    return clean(res)


# ----------------------------------------------------------------- llama.cpp dumps
# tools/llama-dump writes llama.cpp's graph nodes under their ggml names (one
# .npy each, "#2" for the second node of a name in one graph) and dump.json
# with the op of each.  Names of llama.cpp c392e509's build_llama() (checked
# there; notes/verification.md has the table), per layer L:
GGML_LAYER = {                       # (ggml name, op or None): the HF module
    ("attn_norm", None): "input_layernorm",
    ("Qcur", "MUL_MAT"): "self_attn.q_proj",
    ("Kcur", "MUL_MAT"): "self_attn.k_proj",
    ("Vcur", "MUL_MAT"): "self_attn.v_proj",
    ("Qcur", "ROPE"): "self_attn.q_rope",
    ("Kcur", "ROPE"): "self_attn.k_rope",
    ("kq_soft_max_ext", None): "self_attn.attn_weights",
    ("kqv_merged_cont", None): "self_attn.attn_output",
    ("kqv_out", None): "self_attn.o_proj",
    ("ffn_norm", None): "post_attention_layernorm",
    ("ffn_gate", None): "mlp.gate_proj",
    ("ffn_up", None): "mlp.up_proj",
    ("ffn_silu", None): "mlp.act_fn",
    ("ffn_out", "MUL_MAT"): "mlp.down_proj",
    ("l_out", None): "",
}
GGML_GLOBAL = {"inp_embd": "model.embed_tokens", "result_norm": "model.norm"}
# The GGUF tensor whose rows make each HF module's output dimensions (hints)
GGUF_TENSOR = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.q_rope": "attn_q", "self_attn.k_rope": "attn_k", "self_attn.o_proj": "attn_output",
               "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.act_fn": "ffn_gate",
               "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
               "post_attention_layernorm": "ffn_norm", "": "ffn_down"}
GGML_NAME_RE = re.compile(r"^(.*?)(?:-(\d+))?(?:#(\d+))?$")


def _unpermute(x, rows, width, head_dim):
    """Columns of q/k from GGUF's order (the two halves of each head
    interleaved, for llama.cpp's adjacent-pair RoPE) back to HF's: HF column
    h*hd + j*hd/2 + i is GGUF column h*hd + 2i + j."""
    half = head_dim // 2
    if np is not None:
        a = np.asarray(x).reshape(rows, width // head_dim, half, 2)
        return a.transpose(0, 1, 3, 2).reshape(-1)
    idx = [h * head_dim + 2 * i + j for h in range(width // head_dim) for j in (0, 1) for i in range(half)]
    out = array.array(x.typecode)
    for r in range(rows):
        base = r * width
        out.extend(x[base + k] for k in idx)
    return out


def _crop_keys(x, heads, n, n_kv):
    """[heads, n, n_kv] -> [heads, n, n]: the keys of llama.cpp's padded KV
    cache past the last token (masked, so 0 in a correct run)."""
    if np is not None:
        a = np.asarray(x).reshape(heads, n, n_kv)
        return a[:, :, :n].reshape(-1), float(np.abs(a[:, :, n:]).max()) if n_kv > n else 0.0
    out, extra = array.array(x.typecode), 0.0
    for r in range(heads * n):
        row = x[r * n_kv:(r + 1) * n_kv]
        out.extend(row[:n])
        for v in row[n:]:
            extra = max(extra, abs(v))
    return out, extra


def llama_dump_names(folder, meta):
    """{HF module name: loader() -> (flat, shape)} of a llama-dump folder."""
    nodes = meta.get("nodes")
    if not isinstance(nodes, list):
        raise UsageError(f"{folder}/dump.json: no node list")
    head_dim = None
    for nd in nodes:        # RoPE's output is [n, heads, head_dim]
        if nd.get("op") == "ROPE" and isinstance(nd.get("shape"), list) and len(nd["shape"]) == 3:
            head_dim = nd["shape"][2]
            break
    found = {}
    for nd in nodes:
        m = GGML_NAME_RE.match(str(nd.get("file", ""))[:-4])
        base, layer = m.group(1), m.group(2)
        op = nd.get("op")
        if layer is None:
            hf = GGML_GLOBAL.get(base)
        else:
            sub = GGML_LAYER.get((base, op), GGML_LAYER.get((base, None)))
            hf = None if sub is None else (f"model.layers.{layer}" + (f".{sub}" if sub else ""))
        if hf is None or hf in found:
            continue
        path = os.path.join(folder, nd["file"])
        found[hf] = (lambda path=path, hf=hf: _llama_node(path, hf, head_dim))
    logits = os.path.join(folder, "logits.npy")
    if os.path.isfile(logits):
        found["lm_head"] = lambda: read_npy(logits)
    return found


def _llama_node(path, hf, head_dim):
    x, shape = read_npy(path)
    sub = hf.split(".", 3)[-1] if hf.startswith("model.layers.") else hf
    if sub in ("self_attn.q_rope", "self_attn.k_rope"):       # [n, heads, hd]
        shape = (shape[0], shape[1] * shape[2])
    if sub in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.q_rope", "self_attn.k_rope"):
        if not head_dim or shape[1] % head_dim:
            raise UsageError(f"{path}: cannot tell the head size (no RoPE node in dump.json)")
        x = _unpermute(x, shape[0], shape[1], head_dim)
    if sub == "self_attn.attn_weights":
        heads, n, n_kv = shape
        x, extra = _crop_keys(x, heads, n, n_kv)
        if extra > 0:
            print(f"compare.py: note: {path}: attention weight {extra:.3g} on keys past the last "
                  "token (llama.cpp's padded cache; a correct mask gives 0)", file=sys.stderr)
        shape = (heads, n, n)
    return x, tuple(shape)


def dump_names(folder):
    """{module name: loader() -> (flat, shape)} of a dump folder: HF names
    (reference.py, raktn --dump), or a llama-dump folder mapped to them."""
    try:
        files = os.listdir(folder)
    except OSError as e:
        raise UsageError(f"{folder}: {e.strerror}")
    meta_path = os.path.join(folder, "dump.json")
    if "dump.json" in files:
        meta = load_meta(meta_path)
        if isinstance(meta, dict) and meta.get("tool") == "llama-dump":
            return llama_dump_names(folder, meta), "llama.cpp"
    return {f[:-4]: (lambda p=os.path.join(folder, f): read_npy(p))
            for f in files if f.endswith(".npy") and os.path.isfile(os.path.join(folder, f))}, None


# ----------------------------------------------------------------- local checks
# compare.py REF OUT --model model.bin: every module of OUT recomputed from
# OUT's OWN inputs (its dumped tensors) with the model's weights, in float64,
# rounding where the peer rounds (the preset's ROUNDING; f32 sums of two
# dumped f32 tensors as the peer makes them).  A correct peer then differs
# only by the order of its float32 sums, whatever its precision: quantized
# activations are quantized from the very float32 values the peer used, so
# they are bit for bit the peer's.  Errors do not travel downstream, so each
# module's tolerance is tight at any depth, and a fault is named where it is.
ROUNDING = {"fp32": (None, False), "f16kv": (None, True), "bf16": ("bf16", False),
            "q8": ("q8_0", False), "q4_k": ("q8_k", False)}


class Model:
    """model.bin (notes/format.md): the header and each tensor, read on demand."""
    def __init__(self, path):
        raw = _read(path) if os.path.getsize(path) < (1 << 20) else None
        try:
            with open(path, "rb") as f:
                h = f.read(256)
        except OSError as e:
            raise UsageError(f"{path}: {e.strerror}")
        if len(h) < 256 or h[:8] != b"raktnMDL":
            raise UsageError(f"{path}: not a raktn model.bin")
        self.c = export.unpack_header(h)
        self.theta = self.c["rope_theta_exact"] or self.c["rope_theta"]
        self.eps = self.c["rms_norm_eps_exact"] or self.c["rms_norm_eps"]
        self.path, self.raw = path, raw
        c = self.c
        es = 4 if c["dtype"] == 0 else 2
        D, F, V = c["dim"], c["hidden_dim"], c["vocab_size"]
        Q, KV = c["n_heads"] * c["head_dim"], c["n_kv_heads"] * c["head_dim"]
        self.offsets, off = {}, 256
        names = [("model.embed_tokens", V, D)]
        for l in range(c["n_layers"]):
            p = f"model.layers.{l}."
            names += [(p + "input_layernorm", 1, D), (p + "self_attn.q_proj", Q, D),
                      (p + "self_attn.k_proj", KV, D), (p + "self_attn.v_proj", KV, D),
                      (p + "self_attn.o_proj", D, Q), (p + "post_attention_layernorm", 1, D),
                      (p + "mlp.gate_proj", F, D), (p + "mlp.up_proj", F, D), (p + "mlp.down_proj", D, F)]
        names.append(("model.norm", 1, D))
        if not c["tied"]:
            names.append(("lm_head", V, D))
        for name, r, k in names:
            self.offsets[name] = (off, r, k)
            off += (r * k * es + 63) // 64 * 64
        if c["tied"]:
            self.offsets["lm_head"] = self.offsets["model.embed_tokens"]
        if off != c["file_size"]:
            raise UsageError(f"{path}: header and tensor sizes disagree")

    def weight(self, name):
        off, r, k = self.offsets[name]
        es = 4 if self.c["dtype"] == 0 else 2
        with open(self.path, "rb") as f:
            f.seek(off)
            b = f.read(r * k * es)
        if es == 2:     # bf16: the top half of a float32
            w = bytearray(2 * len(b))
            w[2::4], w[3::4] = b[0::2], b[1::2]
            b = bytes(w)
        x = _floats(b, 0, "f", self.path)
        if np is not None:
            return x.reshape(r, k) if r > 1 else x
        return [x[i * k:(i + 1) * k] for i in range(r)] if r > 1 else list(x)


def _f32(v):
    """float32 rounding of every value (numpy array or list)."""
    if np is not None:
        return np.asarray(v, dtype=np.float64).astype(np.float32).astype(np.float64)
    return list(array.array("f", v))


def _round_f16(v):
    if np is not None:
        return np.asarray(v).astype(np.float32).astype(np.float16).astype(np.float64)
    return [struct.unpack("<e", struct.pack("<e", x))[0] if abs(x) < 65520 else math.copysign(math.inf, x)
            for x in _f32(v)]


def _round_bf16(v):
    """float32, then bfloat16 with nearest-even (GGML_FP32_TO_BF16)."""
    if np is not None:
        u = np.asarray(v, dtype=np.float32).view(np.uint32).astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
        return u.astype(np.uint32).view(np.float32).astype(np.float64)
    out = []
    for x in _f32(v):
        u = struct.unpack("<I", struct.pack("<f", x))[0]
        u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
        out.append(struct.unpack("<f", struct.pack("<I", u))[0])
    return out


def _rint32(x):
    """nearest-even integer of a float32 value"""
    return float(round(x))     # Python's round() is half-to-even


def _quant_row(x, mode):
    """One row of activations as the peer quantizes it (raktn.c's round_q8_0
    and round_q8_k, from llama.cpp's quantize_row_q8_0 (x86) and
    quantize_row_q8_K_ref), from float32 values."""
    if mode == "bf16":
        return _round_bf16(x)
    if np is not None:
        y = np.asarray(x, dtype=np.float32)
        bs = 32 if mode == "q8_0" else 256
        y = y.reshape(-1, bs)
        amax = np.abs(y).max(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            if mode == "q8_0":
                idv = np.where(amax != 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
                d = (amax / np.float32(127)).astype(np.float32).astype(np.float16).astype(np.float64)
                q = np.rint((y * idv).astype(np.float32)).astype(np.float64)
            else:
                mx = np.take_along_axis(y, np.abs(y).argmax(axis=1)[:, None], axis=1)
                isc = np.where(amax != 0, np.float32(-127) / mx, np.float32(0)).astype(np.float32)
                d = np.where(amax != 0, (np.float32(1) / isc), 0).astype(np.float32).astype(np.float64)
                q = np.minimum(np.rint((isc * y).astype(np.float32)), 127).astype(np.float64)
        return (q * d).reshape(-1)
    y = _f32(x)
    out = []
    bs = 32 if mode == "q8_0" else 256
    for b in range(0, len(y), bs):
        blk = y[b:b + bs]
        amax = max(abs(v) for v in blk)
        if mode == "q8_0":
            idv = _f32([127.0 / _f32([amax])[0]])[0] if amax else 0.0
            d = _round_f16([_f32([amax / 127.0])[0]])[0]
            out += [_rint32(_f32([v * idv])[0]) * d for v in blk]
        else:
            if not amax:
                out += [0.0] * len(blk)
                continue
            mx = next(v for v in blk if abs(v) == amax)
            isc = _f32([-127.0 / mx])[0]
            d = _f32([1.0 / isc])[0]
            out += [min(_rint32(_f32([isc * v])[0]), 127.0) * d for v in blk]
    return out


def _rows(x, n, width):
    if np is not None:
        return np.asarray(x, dtype=np.float64).reshape(n, width)
    return [list(x[i * width:(i + 1) * width]) for i in range(n)]


def _matmul(rows, w, act):
    """rows [n][k] (the peer's float32 inputs) times W^T, inputs rounded as the peer does."""
    if act:
        rows = [_quant_row(r, act) for r in rows]
    if np is not None:
        return np.asarray(rows, dtype=np.float64) @ np.asarray(w, dtype=np.float64).T
    return [[math.fsum(a * b for a, b in zip(r, wr)) for wr in w] for r in rows]


def _rmsnorm(rows, w, eps):
    if np is not None:
        x = np.asarray(rows, dtype=np.float64)
        return x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * np.asarray(w, dtype=np.float64)
    out = []
    for r in rows:
        s = 1 / math.sqrt(math.fsum(v * v for v in r) / len(r) + eps)
        out.append([v * s * g for v, g in zip(r, w)])
    return out


def _rope(rows, heads, hd, theta):
    half = hd // 2
    inv = [1.0 / theta ** (2 * i / hd) for i in range(half)]
    out = []
    for p, r in enumerate(rows):
        r = list(r)
        o = list(r)
        for h in range(heads):
            b = h * hd
            for i in range(half):
                a = p * inv[i]
                c, s_ = math.cos(a), math.sin(a)
                x0, x1 = r[b + i], r[b + i + half]
                o[b + i], o[b + i + half] = x0 * c - x1 * s_, x1 * c + x0 * s_
        out.append(o)
    return out


def _attention_weights(q, k, n, heads, kv_heads, hd, window, kv16):
    group = heads // kv_heads
    out = []
    for h in range(heads):
        kvh = h // group
        for p in range(n):
            first = max(0, p - window + 1) if window else 0
            qv = q[p][h * hd:(h + 1) * hd]
            if kv16:
                qv = _round_f16(qv)
            sc = []
            for t in range(first, p + 1):
                kv = k[t][kvh * hd:(kvh + 1) * hd]
                if kv16:
                    kv = _round_f16(kv)
                sc.append(math.fsum(a * b for a, b in zip(qv, kv)) / math.sqrt(hd))
            m = max(sc)
            e = [math.exp(v - m) for v in sc]
            tot = math.fsum(e)
            out.append([0.0] * first + [v / tot for v in e] + [0.0] * (n - p - 1))
    return out


def _attention_output(wts, v, n, heads, kv_heads, hd, kv16):
    group = heads // kv_heads
    out = [[0.0] * (heads * hd) for _ in range(n)]
    for h in range(heads):
        kvh = h // group
        for p in range(n):
            row = wts[h * n + p]
            if kv16:
                row = _round_f16(row)
            for i in range(hd):
                vals = [v[t][kvh * hd + i] for t in range(n)]
                if kv16:
                    vals = _round_f16(vals)
                out[p][h * hd + i] = math.fsum(a * b for a, b in zip(row, vals))
    return out


def local_checks(model_path, src, tol_rel, preset):
    """Items: each module of the dump src recomputed from src's own inputs."""
    mdl = Model(model_path)
    c = mdl.c
    act, kv16 = ROUNDING[preset]
    cache = {}

    def get(name):
        if name not in cache:
            if name not in src:
                return None
            x, shape = src[name]()
            cache[name] = (x, shape)
        return cache[name]

    def rows_of(name):
        g = get(name)
        if g is None:
            return None
        x, shape = g
        return _rows(x, shape[0], len(x) // shape[0]) if len(shape) == 2 else None

    def flat(rows):
        if np is not None:
            return np.asarray(rows, dtype=np.float64).reshape(-1)
        return [v for r in rows for v in r]

    def add(x, y):            # the peer's float32 sum of two float32 tensors
        if np is not None:
            return _f32(np.asarray(x) + np.asarray(y))
        return [_f32([a + b for a, b in zip(r1, r2)]) for r1, r2 in zip(x, y)]

    def mul(x, y):
        if np is not None:
            return _f32(np.asarray(x) * np.asarray(y))
        return [_f32([a * b for a, b in zip(r1, r2)]) for r1, r2 in zip(x, y)]

    items = []

    def judge(name, expect, layer, kind="rel"):
        g = get(name)
        if g is None or expect is None:
            return
        got, shape = g
        what = module_info(name)[0]
        ex = flat(expect)
        if np is None:
            ex = array.array("d", ex)
        it = judge_rows("local " + name, what, layer, kind, ex, got, shape,
                        Tol(None, None, 1.0, tol_rel))
        items.append(it)

    H, KVH, hd, W = c["n_heads"], c["n_kv_heads"], c["head_dim"], c["sliding_window"]
    stream = rows_of("model.embed_tokens")
    for l in range(c["n_layers"]):
        p = f"model.layers.{l}."
        if stream is not None:
            judge(p + "input_layernorm", _rmsnorm(stream, mdl.weight(p + "input_layernorm"), mdl.eps), l)
        xn = rows_of(p + "input_layernorm")
        if xn is not None:
            for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                judge(p + m, _matmul(xn, mdl.weight(p + m), act), l)
        for m, heads in (("q", H), ("k", KVH)):
            r = rows_of(p + f"self_attn.{m}_proj")
            if r is not None:
                judge(p + f"self_attn.{m}_rope", _rope(r, heads, hd, mdl.theta), l)
        qr, kr = rows_of(p + "self_attn.q_rope"), rows_of(p + "self_attn.k_rope")
        if qr is not None and kr is not None and get(p + "self_attn.attn_weights") is not None:
            n = len(qr)
            qr = [list(r) for r in qr]
            kr = [list(r) for r in kr]
            judge(p + "self_attn.attn_weights",
                  _attention_weights(qr, kr, n, H, KVH, hd, W, kv16), l, "prob")
        aw, vv = get(p + "self_attn.attn_weights"), rows_of(p + "self_attn.v_proj")
        if aw is not None and vv is not None:
            x, shape = aw
            n = shape[1]
            wl = [list(x[i * n:(i + 1) * n]) for i in range(shape[0] * n)]
            judge(p + "self_attn.attn_output",
                  _attention_output(wl, [list(r) for r in vv], n, H, KVH, hd, kv16), l)
        ao = rows_of(p + "self_attn.attn_output")
        if ao is not None:
            judge(p + "self_attn.o_proj", _matmul(ao, mdl.weight(p + "self_attn.o_proj"), act), l)
        op = rows_of(p + "self_attn.o_proj")
        mid = add(stream, op) if stream is not None and op is not None else None
        if mid is not None:
            judge(p + "post_attention_layernorm",
                  _rmsnorm(mid, mdl.weight(p + "post_attention_layernorm"), mdl.eps), l)
        hn = rows_of(p + "post_attention_layernorm")
        if hn is not None:
            for m in ("mlp.gate_proj", "mlp.up_proj"):
                judge(p + m, _matmul(hn, mdl.weight(p + m), act), l)
        gp, up, af = rows_of(p + "mlp.gate_proj"), rows_of(p + "mlp.up_proj"), rows_of(p + "mlp.act_fn")
        if gp is not None:
            if np is not None:
                g = np.asarray(gp)
                judge(p + "mlp.act_fn", g / (1 + np.exp(-g)), l)
            else:
                judge(p + "mlp.act_fn", [[v / (1 + math.exp(-v)) for v in r] for r in gp], l)
        if af is not None and up is not None:
            judge(p + "mlp.down_proj", _matmul(mul(af, up), mdl.weight(p + "mlp.down_proj"), act), l)
        dn = rows_of(p + "mlp.down_proj")
        if mid is not None and dn is not None:
            judge(f"model.layers.{l}", add(mid, dn), l)
        stream = rows_of(f"model.layers.{l}")
    if stream is not None:
        judge("model.norm", _rmsnorm(stream, mdl.weight("model.norm"), mdl.eps), None)
    fn = rows_of("model.norm")
    if fn is not None and get("lm_head") is not None:
        judge("lm_head", _matmul(fn, mdl.weight("lm_head"), act), None)
    return items


# ----------------------------------------------------------------- modes
def need(tol, preset):
    if tol.rel is None:
        raise UsageError(f"preset {preset} has no measured relative tolerance for hidden states and "
                         "modules yet: give --tol-rel")


def compare_dirs(ref_dir, out_dir, tol, preset, as_json, out, model=None, tol_local=None):
    rsrc, rkind = dump_names(ref_dir)
    osrc, okind = dump_names(out_dir)
    rn, on = set(rsrc), set(osrc)
    if not rn:
        raise UsageError(f"{ref_dir}: no .npy files")
    common = sorted(rn & on, key=lambda n: module_info(n)[3])
    if not common:
        raise UsageError(f"no module name is in both folders ({ref_dir}: {len(rn)} .npy, {out_dir}: {len(on)})")
    if any(module_info(n)[2] != "logits" for n in common):
        need(tol, preset)
    items = []
    for name in common:
        what, layer, kind, _ = module_info(name)
        a, sa = rsrc[name]()
        b, sb = osrc[name]()
        if sa != sb:
            raise UsageError(f"{name}: shapes differ: REF {list(sa)}, OUT {list(sb)}")
        if kind == "logits":
            if len(sa) != 2:
                raise UsageError(f"{name}: logits must be [n_tokens, vocab], not {list(sa)}")
            items.append(judge_logits(a, b, sa[1], tol, name=name, what=what))
        else:
            if kind == "prob" and len(sa) != 3:
                raise UsageError(f"{name}: attention weights must be [n_heads, n, n], not {list(sa)}")
            if len(sa) < 2:
                raise UsageError(f"{name}: want [n_tokens, features], got {list(sa)}")
            items.append(judge_rows(name, what, layer, kind, a, b, sa, tol))
    only_ref = sorted(rn - on, key=lambda n: module_info(n)[3])
    only_out = sorted(on - rn, key=lambda n: module_info(n)[3])
    hint = fail_hint(items)
    local = local_checks(model, osrc, tol_local, preset) if model else []
    lhint = local_hint(local)
    if as_json:
        ok, _, _ = verdict(items)
        lok = verdict(local)[0] if local else True
        extra = {"only_in_ref": only_ref, "only_in_out": only_out, "hint": hint,
                 "growth": growth_rows(items)}
        if model:
            res_l = result_json("local", model, out_dir, Tol(None, None, 1.0, tol_local), local)
            extra.update(local=res_l, local_hint=lhint)
        res = result_json("dump", ref_dir, out_dir, tol, items, extra)
        res["pass"] = ok and lok
        print(json.dumps(clean(res), indent=1), file=out)
        return ok and lok
    for lbl, kindname in (("REF", rkind), ("OUT", okind)):
        if kindname:
            print(f"{lbl} is a {kindname} dump: ggml node names mapped to HF modules, q/k columns "
                  "un-permuted, padded keys cropped", file=out)
    print_table(items, out)
    print_growth(items, out)
    for lbl, lst in (("only in REF (not compared)", only_ref), ("only in OUT (not compared)", only_out)):
        if lst:
            print(f"{lbl}: {len(lst)}: " + " ".join(lst[:8]) + (" ..." if len(lst) > 8 else ""), file=out)
    ok = print_verdict(items, "modules", out)
    if hint:
        print("hint: " + hint, file=out)
    if model:
        act, kv16 = ROUNDING[preset]
        print(f"local checks: each module of OUT recomputed from OUT's own inputs with {model}'s weights "
              f"in float64 (rounding as the peer: activations {act or 'none'}, KV {'f16' if kv16 else 'f32'}):",
              file=out)
        lok = print_verdict(local, "modules (local)", out) if local else True
        if lhint:
            print("hint: " + lhint, file=out)
        ok = ok and lok
    return ok


def local_hint(items):
    ok, first, _ = verdict(items) if items else (True, None, None)
    if ok or first is None:
        return None
    name = first["name"][len("local "):]
    sub, layer = _sub(name), first["layer"]
    t = GGUF_TENSOR.get(sub)
    dims = first.get("dims_bad") or {}
    bad_pos = [p for p, v in enumerate(first["per_position"]) if not v <= first["tol"]]
    if sub in ("self_attn.q_rope", "self_attn.k_rope"):
        return (f"{name} differs from RoPE applied to OUT's own {sub[:-5]}_proj: rope_theta "
                "(the GGUF's llama.rope.freq_base), the rotation layout or the positions")
    if sub == "self_attn.attn_weights":
        w = bad_pos[0] if bad_pos else 0
        return (f"{name} differs from softmax(q k / sqrt(d)) of OUT's own q and k from position {w} on: "
                "the mask or the sliding window" if w else f"{name}: the scores, the scale or the mask")
    if sub in ("input_layernorm", "post_attention_layernorm", "model.norm"):
        return (f"{name} differs from RMSNorm of OUT's own input: rms_norm_eps (the GGUF's "
                f"llama.attention.layer_norm_rms_epsilon), the norm weight"
                + (f" (GGUF blk.{layer}.{t}.weight)" if layer is not None and t else "")
                + " or the norm's arithmetic (the mean of squares, the scale)")
    if dims and len(bad_pos) >= 2:
        d, cnt = max(dims.items(), key=lambda kv: kv[1])
        if cnt >= 0.8 * len(bad_pos):
            row = f"row {d}" + (f" of GGUF blk.{layer}.{t}.weight" if t else "")
            if sub in ("self_attn.q_proj", "self_attn.k_proj"):
                row += " (HF order: GGUF row h*hd + 2i + j holds HF row h*hd + j*hd/2 + i)"
            return f"{name}: dimension {d} at every failing position: one weight row, {row}"
    if sub in ("self_attn.q_proj", "self_attn.k_proj"):
        return (f"{name} differs from OUT's own input times the weights at most dimensions: the GGUF q/k "
                "row permutation (or its un-permutation), or the weights")
    return f"{name} differs from its own inputs through the model's weights" + \
        (f" (GGUF blk.{layer}.{t}.weight)" if t and layer is not None else "") + ": its weights or its arithmetic"


def growth_rows(items):
    """Per layer: the largest value / tolerance over its modules (and which)."""
    rows, prev = [], None
    by_layer = {}
    for it in items:
        if it["layer"] is not None and it["kind"] != "logits":
            by_layer.setdefault(it["layer"], []).append(it)
    for layer in sorted(by_layer):
        its = by_layer[layer]
        worst = max(its, key=lambda it: it["value"] if not math.isnan(it["value"]) else math.inf)
        rel = max((it["value"] for it in its if it["kind"] == "rel"), default=0.0)
        prob = max((it["value"] for it in its if it["kind"] == "prob"), default=0.0)
        stream = next((it["value"] for it in its if it["name"] == f"model.layers.{layer}"), None)
        rows.append({"layer": layer, "max_rel": rel, "max_relmax": prob, "worst": worst["name"],
                     "stream": stream,
                     "growth": (stream / prev) if stream is not None and prev else None,
                     "bad": sum(1 for it in its if not item_passed(it))})
        if stream is not None:
            prev = stream
    return rows


def print_growth(items, out):
    rows = growth_rows(items)
    if len(rows) < 2:
        return
    print("per-layer error growth (largest rel over the layer's modules; stream = the layer's output):",
          file=out)
    print(f"{'layer':>5} {'max rel':>10} {'attn relmax':>11} {'stream rel':>10} {'growth':>7} {'bad':>4}  worst module",
          file=out)
    for r in rows:
        g = "-" if r["growth"] is None else f"x{r['growth']:.1f}"
        print(f"{r['layer']:>5} {fmt(r['max_rel']):>10} {fmt(r['max_relmax']):>11} {fmt(r['stream']):>10} "
              f"{g:>7} {r['bad']:>4}  {r['worst']}", file=out)


def _sub(name):
    return name.split(".", 3)[-1] if name.startswith("model.layers.") else name


def fail_hint(items):
    """Where to look next, from the pattern of the failures (None if none says)."""
    ok, first, _ = verdict(items)
    if ok or first is None or first["kind"] == "logits" or first["first"] is None:
        return None
    by_name = {it["name"]: it for it in items}
    name, layer, sub = first["name"], first["layer"], _sub(first["name"])
    bad_pos = [p for p, v in enumerate(first["per_position"]) if not v <= first["tol"]]

    def passes(s):
        it = by_name.get(f"model.layers.{layer}.{s}" if s else f"model.layers.{layer}")
        return it is not None and item_passed(it)
    # RoPE: the projections pass, the rotated q/k do not
    if sub in ("self_attn.q_rope", "self_attn.k_rope"):
        other = "self_attn.q_proj" if sub == "self_attn.q_rope" else "self_attn.k_proj"
        if passes(other):
            p0 = " (position 0, not rotated, passes)" if bad_pos and bad_pos[0] > 0 else ""
            return (f"only q/k after RoPE fail{p0}: RoPE itself: rope_theta, the rotation layout "
                    "(rotate_half vs adjacent pairs), or the positions")
    if sub in ("self_attn.q_proj", "self_attn.k_proj") and passes("self_attn.v_proj"):
        return ("q/k fail while v passes: the GGUF q/k row permutation (rows left in llama.cpp's "
                f"interleaved order, or permuted twice), or the weights of blk.{layer}."
                + ("attn_q" if sub.endswith("q_proj") else "attn_k"))
    # the sliding window: attention fails from position W on
    if sub == "self_attn.attn_weights" and bad_pos and bad_pos[0] > 0 \
            and bad_pos == list(range(bad_pos[0], len(first["per_position"]))):
        w = bad_pos[0]
        return (f"attention weights fail from position {w} on, every position before passes: the "
                f"sliding window (window {w}: position p sees keys p-{w - 1}..p), or the mask")
    # one weight row: the same output dimension at (nearly) every failing position
    if first["kind"] == "rel" and len(bad_pos) >= 2:
        dims = first.get("dims_bad") or {}
        if dims:
            d, cnt = max(dims.items(), key=lambda kv: kv[1])
            if cnt >= 0.8 * len(bad_pos):
                t = GGUF_TENSOR.get(sub)
                row = f"row {d} of {name}'s weight" + (f" (GGUF blk.{layer}.{t}.weight)" if t else "")
                if sub in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.q_rope", "self_attn.k_rope"):
                    row += " (HF row order; GGUF row h*hd + 2i + j for HF row h*hd + j*hd/2 + i)"
                if sub in ("input_layernorm", "post_attention_layernorm"):
                    return f"dimension {d} fails at every failing position: element {d} of the norm weight {t}"
                return f"dimension {d} fails at every failing position: one weight row, {row}"
    prev = {"input_layernorm": None, "self_attn.o_proj": "self_attn.attn_output",
            "post_attention_layernorm": "self_attn.o_proj", "mlp.gate_proj": "post_attention_layernorm",
            "mlp.up_proj": "post_attention_layernorm", "mlp.act_fn": "mlp.gate_proj",
            "mlp.down_proj": "mlp.act_fn", "self_attn.q_proj": "input_layernorm",
            "self_attn.k_proj": "input_layernorm", "self_attn.v_proj": "input_layernorm",
            "": "mlp.down_proj"}
    if sub in ("input_layernorm", "post_attention_layernorm"):
        before = (f"model.layers.{layer - 1}" if layer else "model.embed_tokens") \
            if sub == "input_layernorm" else None
        if before is None or (before in by_name and item_passed(by_name[before])):
            return (f"{name} fails while its input passes: the norm's weight "
                    f"(GGUF blk.{layer}.{GGUF_TENSOR[sub]}.weight) or rms_norm_eps")
    if sub in prev and prev[sub] and passes(prev[sub]):
        t = GGUF_TENSOR.get(sub)
        return (f"{name} fails while its input ({prev[sub] or 'the layer input'}) passes: that module's "
                f"weights" + (f" (GGUF blk.{layer}.{t}.weight)" if t else "") + " or its arithmetic")
    return None


def compare_hidden(a, b, entries, tokens, tol, out=None, as_json=False, paths=("", "")):
    """[entries, tokens, dim] hidden states, each entry judged relative per position."""
    out = out or sys.stdout
    if len(b) != len(a):
        raise UsageError(f"sizes differ: reference {len(a)} floats, output {len(b)} floats")
    block = entries * tokens
    if block <= 0 or len(a) % block or len(a) == 0:
        raise UsageError(f"{len(a)} floats is not a multiple of (layers+1)*tokens = {block}")
    dim = len(a) // block
    items = []
    for e in range(entries):
        lo, hi = e * tokens * dim, (e + 1) * tokens * dim
        what = entry_what(e, entries)
        items.append(judge_rows(what, what, e - 1 if 0 < e < entries - 1 else None, "rel",
                                a[lo:hi], b[lo:hi], (tokens, dim), tol))
    ok, _, _ = verdict(items)
    if as_json:
        print(json.dumps(result_json("hidden", paths[0], paths[1], tol, items,
                                     {"entries": entries, "tokens": tokens, "dim": dim}), indent=1), file=out)
        return ok, items
    print(f"{'entry':>5} {'what':<11} {'max|d|':>10} {'rel':>10} {'growth':>7} {'worst pos':>9} {'1st bad':>7}",
          file=out)
    prev = None
    for e, it in enumerate(items):
        v = it["value"]
        growth = f"x{v / prev:.1f}" if prev and not math.isinf(v) and not math.isnan(v) else "-"
        first = it["first"]["position"] if it["first"] else "-"
        print(f"{e:>5} {it['what']:<11} {fmt(it['max_abs']):>10} {fmt(v):>10} {growth:>7} "
              f"{it['worst']['position']:>9} {first:>7}", file=out)
        prev = v
    print(f"rel = max|ref-out| / rms(ref) per position; tol-rel {tol.rel:g}", file=out)
    print_verdict(items, f"entries x {tokens} positions", out)
    return ok, items


def compare_logits(a, b, vocab, tol_max, tol_kl, min_argmax, per_position=False, out=None):
    """Logits [n, vocab] (flat). Returns (passed, item)."""
    out = out or sys.stdout
    tol = Tol(tol_max, tol_kl, min_argmax, None)
    it = judge_logits(a, b, vocab, tol)
    print_logits(it, tol, per_position, out)
    return it["pass"], it


# ----------------------------------------------------------------- main
def _shape_str(s):
    return "[" + ", ".join(map(str, s)) + "]"


def main(argv=None):
    ap = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ref", help="the reference: a file, or a dump folder")
    ap.add_argument("out", help="the output under test: a file, or a dump folder")
    ap.add_argument("--vocab", type=int, help="raw logits: row width")
    ap.add_argument("--meta", help="reference.py JSON giving logits_shape / hidden_shape (raw files)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="fp32")
    ap.add_argument("--tol-max", type=float, help="logits: max |d| allowed")
    ap.add_argument("--tol-kl", type=float, help="logits: max KL(ref||out) allowed per position")
    ap.add_argument("--min-argmax", type=float, help="logits: fraction of positions whose argmax must agree")
    ap.add_argument("--tol-rel", type=float, help="hidden states and modules: max|d| / rms(ref) per vector "
                    "(attention weights: / the row's largest probability)")
    ap.add_argument("--per-position", action="store_true", help="logits: print the per-position table always")
    ap.add_argument("--hidden", action="store_true", help="compare hidden-state files")
    ap.add_argument("--layers", type=int, help="raw hidden states: n_layers (the file holds n_layers+1 entries)")
    ap.add_argument("--tokens", type=int, help="raw hidden states: n_tokens")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ap.add_argument("--model", help="dump folders: also recompute every module of OUT from OUT's own "
                    "inputs with this model.bin's weights (local checks; the preset says the rounding)")
    ap.add_argument("--tol-local", type=float, help="local checks: max|d| / rms per vector")
    try:
        a = ap.parse_args(argv)
        p = dict(PRESETS[a.preset])
        p.pop("tol_local")
        for k in ("tol_max", "tol_kl", "min_argmax", "tol_rel"):
            if getattr(a, k) is not None:
                p[k] = getattr(a, k)
        if p["tol_max"] < 0 or not 0 <= p["min_argmax"] <= 1 or \
                any(p[k] is not None and p[k] < 0 for k in ("tol_rel", "tol_kl")):
            raise UsageError("tolerances must be >= 0 and --min-argmax within [0, 1]")
        tol = Tol(p["tol_max"], p["tol_kl"], p["min_argmax"], p["tol_rel"])
        out = sys.stdout
        rd, od = os.path.isdir(a.ref), os.path.isdir(a.out)
        if a.model and not (rd and od):
            raise UsageError("--model is for dump folders (local checks of OUT's modules)")
        if rd or od:
            if not (rd and od):
                raise UsageError(f"{a.ref if rd else a.out} is a folder but {a.out if rd else a.ref} is not "
                                 "(compare two dump folders, or two files)")
            tl = a.tol_local if a.tol_local is not None else PRESETS[a.preset]["tol_local"]
            ok = compare_dirs(a.ref, a.out, tol, a.preset, a.json, out, a.model, tl)
            return 0 if ok else 1

        ref, rshape = read_any(a.ref)
        got, oshape = read_any(a.out)
        if rshape is not None and oshape is not None and rshape != oshape:
            raise UsageError(f"shapes differ: REF {a.ref} {_shape_str(rshape)}, OUT {a.out} {_shape_str(oshape)}")
        shape = rshape or oshape
        if shape is not None and len(got) != len(ref):
            raw = a.out if oshape is None else a.ref
            raise UsageError(f"sizes differ: {raw} holds {len(got) if oshape is None else len(ref)} floats, "
                             f"the .npy shape {_shape_str(shape)} needs {len(ref) if oshape is None else len(got)}")
        base = os.path.basename(a.ref if rshape is not None else a.out)
        stem = base[:-4] if base.endswith(".npy") else base
        hidden_name = any(x.endswith((".hidden.f32", ".hidden.npy")) for x in (a.ref, a.out))

        # which kind of file
        if a.hidden or (a.vocab is None and hidden_name):
            kind = "hidden"
        elif shape is not None and len(shape) == 3:
            kind = "prob" if stem.endswith("attn_weights") else "hidden"
        elif shape is not None and stem.startswith("model."):
            kind = module_info(stem)[2]  # one file of a dump
        else:
            kind = "logits"

        if shape is not None:
            if a.meta:
                raise UsageError("--meta is for raw files; a .npy file carries its shape")
            if kind == "hidden":
                if len(shape) != 3:
                    raise UsageError(f"hidden states must be [n_layers+1, n_tokens, hidden], not {_shape_str(shape)}")
                if a.layers is not None and a.layers + 1 != shape[0]:
                    raise UsageError(f"--layers {a.layers} but the file holds {shape[0]} entries {_shape_str(shape)}")
                if a.tokens is not None and a.tokens != shape[1]:
                    raise UsageError(f"--tokens {a.tokens} but the file's shape is {_shape_str(shape)}")
            elif kind == "logits":
                if len(shape) != 2:
                    raise UsageError(f"logits must be [n_tokens, vocab], not {_shape_str(shape)} "
                                     "(use --hidden for hidden states)")
                if a.vocab is not None and a.vocab != shape[1]:
                    raise UsageError(f"--vocab {a.vocab} but the file's shape is {_shape_str(shape)}")
        if kind == "hidden":
            if a.tol_max is not None:
                raise UsageError("hidden states are judged relative to each vector's RMS: use --tol-rel "
                                 "(--tol-max is for logits)")
            need(tol, a.preset)
            if shape is not None:
                entries, tokens = shape[0], shape[1]
            else:
                meta_path = a.meta or (sibling_meta(a.ref) if a.layers is None else None)
                meta = load_meta(meta_path) if meta_path else None
                if a.layers is not None and a.tokens is not None:
                    entries, tokens = a.layers + 1, a.tokens
                elif meta and "hidden_shape" in meta:
                    hs = meta["hidden_shape"]
                    entries, tokens = hs[0], hs[1]
                    if entries * tokens * hs[2] != len(ref):
                        raise UsageError(f"{a.ref} holds {len(ref)} floats, but {meta_path} says "
                                         f"hidden_shape {hs}")
                else:
                    raise UsageError("--hidden needs --layers and --tokens (or --meta JSON with hidden_shape)")
                if entries < 2 or tokens < 1:
                    raise UsageError("--layers must be >= 1 and --tokens >= 1")
            ok, _ = compare_hidden(ref, got, entries, tokens, tol, out, a.json, (a.ref, a.out))
        elif kind in ("rel", "prob"):
            need(tol, a.preset)
            what, layer, _, _ = module_info(stem)
            it = judge_rows(stem, what, layer, kind, ref, got, shape, tol)
            ok = it["first"] is None
            if a.json:
                print(json.dumps(result_json("module", a.ref, a.out, tol, [it]), indent=1), file=out)
            else:
                print(f"{'pos':>5} {'max ' + it['metric']:>10}", file=out)
                for pos, v in enumerate(it["per_position"]):
                    print(f"{pos:>5} {fmt(v):>10}" + ("" if v <= it["tol"] else "  > tol"), file=out)
                print_verdict([it], "module", out)
        else:
            if shape is not None:
                vocab = shape[1]
                meta_path = None
            else:
                meta_path = a.meta or sibling_meta(a.ref)
                meta = load_meta(meta_path) if meta_path and (a.meta or a.vocab is None) else None
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
            it = judge_logits(ref, got, vocab, tol)
            ok = it["pass"]
            if a.json:
                print(json.dumps(result_json("logits", a.ref, a.out, tol, [it]), indent=1), file=out)
            else:
                print_logits(it, tol, a.per_position, out)
    except UsageError as e:
        print(f"compare.py: error: {e}", file=sys.stderr)
        return 2
    except (KeyError, IndexError, TypeError) as e:
        print(f"compare.py: error: bad metadata ({type(e).__name__}: {e})", file=sys.stderr)
        return 2
    if np is None:
        print("compare.py: note: numpy is not installed; the standard-library path gave the same verdict "
              "and figures, slower (a 16-layer dump: 4 s instead of 0.5 s; with --model 110 s instead "
              "of 4 s)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        sys.exit(1)
