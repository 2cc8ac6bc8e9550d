#!/usr/bin/env python3
"""export.py - turn a Hugging Face Mistral/Llama checkpoint into raktn's files.

    python3 export/export.py HF_DIR OUT_DIR [--dtype f32|bf16] [--quiet]
    python3 export/export.py MODEL.gguf OUT_DIR [...]

Writes OUT_DIR/model.bin (layout: notes/format.md) and, when the checkpoint
has tokenizer files, OUT_DIR/tokenizer.bin (export/tokenizer_export.py).
A GGUF file (llama.cpp's format) is read by export/gguf.py: its tensors
dequantized exactly as ggml does, so raktn runs the weights llama.cpp runs.

Plain Python 3, standard library only. The export streams: each tensor is
copied from the safetensors file(s) to model.bin in chunks, so memory stays
small and flat whatever the checkpoint size. Once written and synced, model.bin
is dropped from the page cache, so that the first run reads it back in large
pages (see the comment in write_model).

Nothing lost, nothing silent (notes/robustness.md, "The exporter"):
  - every input is read and checked first, against the limits raktn's loader
    checks, so that what export accepts raktn loads; inputs must be regular
    files (a FIFO is refused before it is opened, not waited on);
  - model.bin and tokenizer.bin are written to temporaries in OUT_DIR, checked
    again as written, and only then renamed over the old files, tokenizer.bin
    first (if the second rename fails, the first is undone);
  - an error, SIGINT, SIGTERM or SIGHUP before the renames leaves OUT_DIR byte
    for byte as it was: the temporaries and any folder the export created are
    removed. During the renames these signals are held until both are done.

Exit status: 0 on success; 1 on any error (one line on stderr, naming the file
and the field or tensor at fault); after SIGINT/SIGTERM/SIGHUP the process
ends by that signal once OUT_DIR is clean (a shell sees 128 + N).
"""
import argparse
import errno
import json
import math
import os
import signal
import stat
import struct
import sys
import time

try:
    import fcntl
except ImportError:     # not a Unix: exports into one folder are not serialised
    fcntl = None

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_export as te  # noqa: E402  (beside this file)
import gguf  # noqa: E402

MAGIC = b"raktnMDL"
VERSION = 1
HEADER_SIZE = 256          # bytes; the tensors start here
ALIGN = 64                 # every tensor starts at a multiple of 64 bytes
DTYPE_CODES = {"f32": 0, "bf16": 1}
# model.bin's header after the magic, field by field (name, struct code):
# notes/format.md's table; raktn.c's parse_header reads the same offsets
HEADER_FIELDS = (
    ("version", "I"), ("dtype", "I"), ("dim", "I"), ("hidden_dim", "I"), ("n_layers", "I"),
    ("n_heads", "I"), ("n_kv_heads", "I"), ("head_dim", "I"), ("vocab_size", "I"),
    ("max_seq_len", "I"), ("sliding_window", "I"), ("bos_id", "i"), ("eos_id", "i"),
    ("tied", "I"), ("rope_theta", "f"), ("rms_norm_eps", "f"), ("data_offset", "Q"),
    ("file_size", "Q"), ("rope_theta_exact", "d"), ("rms_norm_eps_exact", "d"))
HEADER_FORMAT = "<" + "".join(code for _, code in HEADER_FIELDS)


def unpack_header(h):
    """{field: value} of a model.bin header (bytes 8 on; the magic unchecked)"""
    return dict(zip((name for name, _ in HEADER_FIELDS), struct.unpack_from(HEADER_FORMAT, h, 8)))
CHUNK = 8 << 20            # bytes of source read at a time

# safetensors dtypes we can widen exactly to fp32, with their element size
SRC_DTYPES = {"F32": 4, "BF16": 2, "F16": 2}


class ExportError(Exception):
    pass


_mid_line = False      # the progress line is waiting for its end


def log(msg):
    """One line on stderr (after ending a progress line). A stderr that
    cannot be written to changes nothing: the exit status still tells."""
    global _mid_line
    try:
        sys.stderr.write(("\n" if _mid_line else "") + msg + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    _mid_line = False


# --------------------------------------------------------------------------
# raktn's limits: parse_header() in raktn.c refuses a model.bin outside them,
# so the exporter refuses the checkpoint first (tests/test_export.py checks
# every one at, just inside and just outside the limit against ./raktn).

LIMITS = {                      # header field: (config.json key, lowest, highest)
    "dim": ("hidden_size", 1, 1 << 16),
    "hidden_dim": ("intermediate_size", 1, 1 << 20),
    "n_layers": ("num_hidden_layers", 1, 1 << 12),
    "n_heads": ("num_attention_heads", 1, 1 << 12),
    "n_kv_heads": ("num_key_value_heads", 1, 1 << 12),
    "head_dim": ("head_dim", 1, 1 << 12),
    "vocab_size": ("vocab_size", 1, 1 << 24),
    "max_seq_len": ("max_position_embeddings", 1, 1 << 24),
    "sliding_window": ("sliding_window", 0, 1 << 24),
}


def as_f32(v):
    """The float32 that struct (and raktn's header) makes of v; +-inf where v
    is beyond float32's range (struct refuses those with OverflowError, and
    an integer too large even for a double, a 401-digit rope_theta, with
    struct.error)."""
    try:
        return struct.unpack("<f", struct.pack("<f", v))[0]
    except (OverflowError, struct.error):
        return math.inf if v > 0 else -math.inf


def read_json(path, what, pairs_hook=None):
    """A regular file's JSON, or ExportError naming the file."""
    try:
        raw = te.read_regular(path, 100 << 20)
        return json.loads(raw.decode("utf-8"), object_pairs_hook=pairs_hook)
    except FileNotFoundError:
        raise ExportError(f"{path}: no {what} in the checkpoint directory")
    except OSError as e:
        raise ExportError(f"{path}: cannot read ({e.strerror or e})")
    except DuplicateKey as e:
        raise ExportError(f"{path}: key {ascii(e.key)[:80]} appears twice; refusing to guess "
                          "which one is meant")
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        msg = str(e)
        if msg.startswith(path + ":"):          # from read_regular: not a regular file
            raise ExportError(msg)
        raise ExportError(f"{path}: not valid JSON ({msg[:200]})")


class DuplicateKey(Exception):
    def __init__(self, key):
        super().__init__(key)
        self.key = key


def no_duplicates(pairs):
    """json object_pairs_hook: a key twice in one object is an error (json's
    default keeps the last one silently)."""
    d = {}
    for k, v in pairs:
        if k in d:
            raise DuplicateKey(k)
        d[k] = v
    return d


# --------------------------------------------------------------------------
# config.json -> the fields the forward pass uses (refusing what it lacks)

def read_config(hf_dir):
    path = os.path.join(hf_dir, "config.json")
    cfg = read_json(path, "config.json")
    if not isinstance(cfg, dict):
        raise ExportError(f"{path}: top level is not a JSON object")

    def show(v):
        s = repr(v)
        return s if len(s) <= 60 else s[:57] + "..."

    archs = cfg.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs else None
    if arch not in ("MistralForCausalLM", "LlamaForCausalLM"):
        raise ExportError(f"{path}: architectures={show(archs)}; raktn implements "
                          "MistralForCausalLM and LlamaForCausalLM only")

    def need_int(field, v=None):
        key, lo, hi = LIMITS[field]
        if v is None:
            v = cfg.get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ExportError(f"{path}: missing or non-integer '{key}' ({show(v)})")
        if not lo <= v <= hi:
            raise ExportError(f"{path}: '{key}' = {show(v)} is outside {lo}..{hi} "
                              "(raktn's limit)")
        return v

    def need_float(key, default, lo_open, hi_open):
        """a number whose float32 (what model.bin stores) lies in (lo, hi)"""
        v = cfg.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ExportError(f"{path}: missing or non-numeric '{key}' ({show(v)})")
        f = as_f32(v)
        if not (lo_open < f < hi_open):      # also NaN, and Infinity (Python's json takes both)
            rounded = "" if f == v else f" (as a float32: {f!r})"
            raise ExportError(f"{path}: '{key}' = {show(v)}{rounded} is not inside "
                              f"({lo_open:g}, {hi_open:g}) as raktn needs")
        return f

    c = {"arch": arch, "notes": []}
    mistral = arch == "MistralForCausalLM"

    def hf_default(key, value):
        """transformers' value for a key config.json leaves out
        (MistralConfig's or LlamaConfig's; tests/fixtures/hf_config_defaults.json)"""
        if key in cfg:
            return cfg[key]
        c["notes"].append(f"export: note: {path}: no '{key}': transformers' default {value!r}")
        return value

    c["dim"] = need_int("dim")
    c["hidden_dim"] = need_int("hidden_dim")
    c["n_layers"] = need_int("n_layers")
    c["n_heads"] = need_int("n_heads")
    # absent: MistralConfig has 8, LlamaConfig num_attention_heads; null: num_attention_heads
    kv = hf_default("num_key_value_heads", 8) if mistral else cfg.get("num_key_value_heads")
    c["n_kv_heads"] = c["n_heads"] if kv is None else need_int("n_kv_heads", kv)
    c["vocab_size"] = need_int("vocab_size")
    c["max_seq_len"] = need_int("max_seq_len", hf_default("max_position_embeddings", 131072 if mistral else 2048))
    theta, eps = hf_default("rope_theta", 10000.0), hf_default("rms_norm_eps", 1e-6)
    c["rope_theta"] = need_float("rope_theta", theta, 0.0, math.inf)
    c["rms_norm_eps"] = need_float("rms_norm_eps", eps, 0.0, 1.0)
    # and exactly, as transformers reads them (float64), for the truth build
    c["rope_theta64"], c["rms_norm_eps64"] = float(theta), float(eps)

    if c["dim"] % c["n_heads"]:
        raise ExportError(f"{path}: hidden_size {c['dim']} is not a multiple of "
                          f"num_attention_heads {c['n_heads']}")
    c["head_dim"] = c["dim"] // c["n_heads"]
    if c["head_dim"] % 2:
        raise ExportError(f"{path}: head_dim {c['head_dim']} (hidden_size/num_attention_heads)"
                          " is odd; RoPE needs an even head_dim")
    if c["head_dim"] > LIMITS["head_dim"][2]:
        raise ExportError(f"{path}: head_dim {c['head_dim']} (hidden_size/num_attention_heads)"
                          f" is above {LIMITS['head_dim'][2]} (raktn's limit)")
    if c["n_heads"] % c["n_kv_heads"]:
        raise ExportError(f"{path}: num_attention_heads {c['n_heads']} is not a multiple of "
                          f"num_key_value_heads {c['n_kv_heads']}")
    hd = cfg.get("head_dim")
    if hd is not None and (isinstance(hd, bool) or hd != c["head_dim"]):
        raise ExportError(f"{path}: head_dim {show(hd)} != hidden_size/num_attention_heads "
                          f"({c['head_dim']}); not implemented")
    act = hf_default("hidden_act", "silu")
    if act != "silu":
        raise ExportError(f"{path}: hidden_act {show(act)} is not implemented (only silu)")
    if cfg.get("rope_scaling") is not None:
        raise ExportError(f"{path}: rope_scaling {show(cfg['rope_scaling'])} is not implemented")
    for key in ("attention_bias", "mlp_bias"):
        if cfg.get(key):
            raise ExportError(f"{path}: {key}={show(cfg[key])} is not implemented "
                              "(no biases in raktn)")
    if cfg.get("pretraining_tp", 1) not in (1, None):
        # pretraining_tp > 1 changes only how HF splits matmuls, not the math,
        # but it is rare enough that we say so rather than assume.
        c["notes"].append(f"export: note: {path}: pretraining_tp={show(cfg['pretraining_tp'])} "
                          "ignored (same math)")

    # absent: MistralConfig's 4096; null: no window
    sw = hf_default("sliding_window", 4096) if mistral else None
    if sw is None:
        sw = 0
    sw = need_int("sliding_window", sw)
    if cfg.get("use_sliding_window") is False:   # Qwen-style switch; honour it
        sw = 0
    c["sliding_window"] = sw

    def token_id(key, default):
        v = hf_default(key, default)
        if isinstance(v, list):       # some configs list several eos ids
            v = v[0] if v else None
        if v is None:
            return -1
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < c["vocab_size"]:
            raise ExportError(f"{path}: {key} {show(v)} is outside the vocabulary "
                              f"(vocab_size {c['vocab_size']})")
        return v

    c["bos_id"] = token_id("bos_token_id", 1)
    c["eos_id"] = token_id("eos_token_id", 2)
    tied = hf_default("tie_word_embeddings", False)
    if tied is not None and not isinstance(tied, bool):
        raise ExportError(f"{path}: tie_word_embeddings {show(tied)} is not true or false")
    c["tied"] = bool(tied)
    c["path"] = path
    return c


def check_model_header(h, where):
    """parse_header() and layout_weights() of raktn.c on a 256-byte header:
    ExportError("WHERE: raktn would refuse it: ...") at the first field raktn
    refuses, else the file size the header's shapes imply."""
    def bad(msg):
        raise ExportError(f"{where}: raktn would refuse it: {msg}")
    if h[:8] != MAGIC:
        bad("bad magic")
    f = unpack_header(h)
    if f["version"] != VERSION:
        bad("unsupported version")
    if f["dtype"] not in DTYPE_CODES.values():
        bad("unknown weight dtype")
    for name in ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "head_dim",
                 "vocab_size", "max_seq_len", "sliding_window"):
        _, lo, hi = LIMITS[name]
        if not lo <= f[name] <= hi:
            bad(f"header field {name} = {f[name]} is out of range")
    dim, hidden, layers, heads, kv, hd, vocab = (f[k] for k in ("dim", "hidden_dim", "n_layers", "n_heads",
                                                                 "n_kv_heads", "head_dim", "vocab_size"))
    bos, eos, theta, eps = f["bos_id"], f["eos_id"], f["rope_theta"], f["rms_norm_eps"]
    data_offset, file_size = f["data_offset"], f["file_size"]
    theta64, eps64 = f["rope_theta_exact"], f["rms_norm_eps_exact"]
    if heads % kv:
        bad("n_heads is not a multiple of n_kv_heads")
    if hd % 2:
        bad("head_dim is odd")
    if heads * hd > 1 << 20:
        bad("n_heads * head_dim is too large")
    if not -1 <= bos < vocab or not -1 <= eos < vocab:
        bad("bos_id or eos_id is outside the vocabulary")
    if f["tied"] not in (0, 1):
        bad("tied flag is neither 0 nor 1")
    if not (theta > 0 and math.isfinite(theta)):
        bad("rope_theta is not a positive number")
    if not 0 < eps < 1:
        bad("rms_norm_eps is not in (0, 1)")
    if (theta64 != 0 and as_f32(theta64) != theta) or (eps64 != 0 and as_f32(eps64) != eps):
        bad("rope_theta or rms_norm_eps as float64 does not round to its float32 value")
    if data_offset != HEADER_SIZE:
        bad("tensor data offset is not 256")
    esize = 4 if f["dtype"] == DTYPE_CODES["f32"] else 2
    q, kvd = heads * hd, kv * hd
    per_layer = [dim, q * dim, kvd * dim, kvd * dim, dim * q, dim, hidden * dim,
                 hidden * dim, dim * hidden]
    size = HEADER_SIZE + padded(vocab * dim * esize) \
        + layers * sum(padded(n * esize) for n in per_layer) + padded(dim * esize) \
        + (0 if f["tied"] else padded(vocab * dim * esize))
    if size >= 1 << 64:
        bad("tensor sizes overflow 64 bits")
    if file_size != size:
        bad(f"header says {file_size} bytes but its shapes need {size}")
    return size


# --------------------------------------------------------------------------
# the tensors model.bin holds, in file order (documented in notes/format.md)

def tensor_plan(c):
    D, F, V = c["dim"], c["hidden_dim"], c["vocab_size"]
    q_dim = c["n_heads"] * c["head_dim"]
    kv_dim = c["n_kv_heads"] * c["head_dim"]
    plan = [("model.embed_tokens.weight", (V, D))]
    for l in range(c["n_layers"]):
        p = f"model.layers.{l}."
        plan += [
            (p + "input_layernorm.weight", (D,)),
            (p + "self_attn.q_proj.weight", (q_dim, D)),
            (p + "self_attn.k_proj.weight", (kv_dim, D)),
            (p + "self_attn.v_proj.weight", (kv_dim, D)),
            (p + "self_attn.o_proj.weight", (D, q_dim)),
            (p + "post_attention_layernorm.weight", (D,)),
            (p + "mlp.gate_proj.weight", (F, D)),
            (p + "mlp.up_proj.weight", (F, D)),
            (p + "mlp.down_proj.weight", (D, F)),
        ]
    plan.append(("model.norm.weight", (D,)))
    if not c["tied"]:
        plan.append(("lm_head.weight", (V, D)))
    return plan


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def padded(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


# --------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, JSON header, raw data

def read_safetensors_header(path):
    """Return {name: (dtype, shape, abs_begin, abs_end)} after checking that
    every tensor lies inside the file and no two overlap."""
    try:
        with te.open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise ExportError(f"{path}: too short to be a safetensors file ({size} bytes)")
            (hlen,) = struct.unpack("<Q", head)
            if hlen > 100 << 20 or 8 + hlen > size:
                raise ExportError(f"{path}: header length {hlen} runs past the end of "
                                  f"the file ({size} bytes)")
            raw = f.read(hlen)
    except OSError as e:
        raise ExportError(f"{path}: cannot read ({e.strerror or e})")
    except ValueError as e:                  # te.open_regular: not a regular file
        raise ExportError(str(e))
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except DuplicateKey as e:
        raise ExportError(f"{path}: safetensors header has the key {ascii(e.key)[:80]} twice "
                          "(refusing to guess which entry is meant)")
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ExportError(f"{path}: safetensors header is not valid JSON ({str(e)[:200]})")
    if not isinstance(header, dict):
        raise ExportError(f"{path}: safetensors header is not a JSON object")
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shown = ascii(name)[1:-1][:120]      # one line, whatever the name holds
        if not isinstance(info, dict):
            raise ExportError(f"{path}: tensor '{shown}': entry is not an object")
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str):
            raise ExportError(f"{path}: tensor '{shown}': bad dtype {ascii(dtype)[:60]}")
        if not (isinstance(shape, list) and all(isinstance(s, int) and not isinstance(s, bool)
                                                and s >= 0 for s in shape)):
            raise ExportError(f"{path}: tensor '{shown}': bad shape {ascii(shape)[:60]}")
        if not (isinstance(offs, list) and len(offs) == 2 and
                all(isinstance(o, int) and not isinstance(o, bool) for o in offs) and
                0 <= offs[0] <= offs[1]):
            raise ExportError(f"{path}: tensor '{shown}': bad data_offsets {ascii(offs)[:60]}")
        if base + offs[1] > size:
            raise ExportError(f"{path}: tensor '{shown}': data_offsets {offs} run past the "
                              f"end of the file ({size} bytes)")
        if dtype in SRC_DTYPES and offs[1] - offs[0] != numel(shape) * SRC_DTYPES[dtype]:
            raise ExportError(f"{path}: tensor '{shown}': {offs[1] - offs[0]} bytes of data "
                              f"for shape {ascii(shape)[:60]} in {dtype}")
        out[name] = (dtype, tuple(shape), base + offs[0], base + offs[1])
    spans = sorted((b, e, n) for n, (_, _, b, e) in out.items() if e > b)
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ExportError(f"{path}: tensors '{n0}' and '{n1}' overlap")
    return out


def locate_tensors(hf_dir):
    """Map tensor name -> (file, dtype, shape, begin, end) over one file or
    the shards named by model.safetensors.index.json."""
    index = os.path.join(hf_dir, "model.safetensors.index.json")
    single = os.path.join(hf_dir, "model.safetensors")
    # With both, transformers loads model.safetensors (from_pretrained looks
    # for it before the index: modeling_utils.py, v4.38.2); so does this.
    if os.path.lexists(index) and not os.path.lexists(single):
        idx = read_json(index, "index", no_duplicates)
        wmap = idx.get("weight_map") if isinstance(idx, dict) else None
        if not isinstance(wmap, dict) or not all(isinstance(v, str) for v in wmap.values()):
            raise ExportError(f"{index}: no 'weight_map' object of file names")
        files = sorted(set(wmap.values()))
        for fn in files:
            if os.path.basename(fn) != fn or fn in ("", ".", ".."):
                raise ExportError(f"{index}: shard name {ascii(fn)[:80]} is not a plain file name")
    elif os.path.lexists(single):
        wmap, files = None, ["model.safetensors"]
    else:
        if any(n.endswith(".bin") and n.startswith("pytorch_model") for n in os.listdir(hf_dir)):
            raise ExportError(f"{hf_dir}: only pytorch_model*.bin (pickle) weights found; "
                              "raktn reads safetensors (convert with transformers first)")
        raise ExportError(f"{hf_dir}: no model.safetensors or model.safetensors.index.json")
    found = {}
    for fn in files:
        path = os.path.join(hf_dir, fn)
        if not os.path.lexists(path):
            raise ExportError(f"{path}: shard named by the index is missing")
        for name, (dtype, shape, b, e) in read_safetensors_header(path).items():
            if wmap is not None and wmap.get(name, fn) != fn:
                continue   # the index says this tensor lives elsewhere
            if name in found:
                raise ExportError(f"{path}: tensor {ascii(name)[:80]} also appears in "
                                  f"{found[name][0]}")
            found[name] = (path, dtype, shape, b, e)
    if wmap is not None:
        for name, fn in wmap.items():
            if name not in found:
                raise ExportError(f"{os.path.join(hf_dir, fn)}: tensor {ascii(name)[:80]} named "
                                  "by the index is not in this shard")
    return found


def check_tensors(plan, found, c):
    wanted = {name for name, _ in plan}
    for name, shape in plan:
        if name not in found:
            raise ExportError(f"{c['hf_dir']}: tensor '{name}' is missing from the checkpoint")
        path, dtype, got, _, _ = found[name]
        if dtype not in SRC_DTYPES:
            raise ExportError(f"{path}: tensor '{name}': dtype {ascii(dtype)[:40]} is not "
                              "supported (BF16, F16, F32)")
        if tuple(got) != tuple(shape):
            raise ExportError(f"{path}: tensor '{name}': shape {list(got)}, config implies "
                              f"{list(shape)}")
    for name in found:
        if name in wanted or name.endswith("rotary_emb.inv_freq"):
            continue            # inv_freq buffers are recomputed by raktn
        if name == "lm_head.weight" and c["tied"]:
            continue            # tied: HF ignores the stored copy and uses embed_tokens
        raise ExportError(f"{found[name][0]}: unexpected tensor '{ascii(name)[1:-1][:120]}' "
                          f"(not part of {c['arch']}; refusing to guess what it does)")


# --------------------------------------------------------------------------
# converting a chunk of source bytes to the output dtype

def convert(raw, src, dst):
    """raw: little-endian bytes of `src` elements -> bytes of `dst` elements."""
    if src == "F32" and dst == "f32":
        return raw
    if src == "BF16" and dst == "bf16":
        return raw
    if src == "BF16" and dst == "f32":
        # bf16 is the top half of an fp32: widening is exact, a byte shuffle
        out = bytearray(2 * len(raw))
        out[2::4] = raw[0::2]
        out[3::4] = raw[1::2]
        return out
    if src == "F16" and dst == "f32":
        n = len(raw) // 2
        return struct.pack(f"<{n}f", *struct.unpack(f"<{n}e", raw))
    raise ExportError(f"cannot convert {src} to {dst} losslessly")


# bytes -> 1 where the byte could be the top of a NaN or Inf (exponent bits
# all ones: the sign bit aside, 0x7F), and where the next byte down has its
# top bit set (the exponent's last bit)
_TOP = bytes(1 if b & 0x7F == 0x7F else 0 for b in range(256))
_NEXT = bytes(1 if b & 0x80 else 0 for b in range(256))


def count_nonfinite(data, esize):
    """(how many, index of the first) of the NaN or Inf values among the
    little-endian float32 (esize 4) or bf16 (2) values in data"""
    top = bytes(data[esize - 1::esize]).translate(_TOP)
    if b"\x01" not in top:
        return 0, None
    both = int.from_bytes(top, "little") & int.from_bytes(bytes(data[esize - 2::esize]).translate(_NEXT),
                                                          "little")
    if not both:
        return 0, None
    return bin(both).count("1"), ((both & -both).bit_length() - 1) // 8


def header_bytes(c, dtype, file_size):
    values = dict(c, version=VERSION, dtype=DTYPE_CODES[dtype], tied=1 if c["tied"] else 0,
                  data_offset=HEADER_SIZE, file_size=file_size,
                  # theta and eps exactly (float64), for the truth build; 0 = not given
                  rope_theta_exact=c.get("rope_theta64", 0.0), rms_norm_eps_exact=c.get("rms_norm_eps64", 0.0))
    h = MAGIC + struct.pack(HEADER_FORMAT, *(values[name] for name, _ in HEADER_FIELDS))
    return h + bytes(HEADER_SIZE - len(h))


class Progress:
    def __init__(self, total, quiet):
        self.total, self.done, self.quiet = total, 0, quiet
        self.t0 = self.last = time.monotonic()

    def add(self, n):
        global _mid_line
        self.done += n
        now = time.monotonic()
        if self.quiet or (now - self.last < 0.5 and self.done < self.total):
            return
        self.last = now
        dt = max(now - self.t0, 1e-9)
        rate = self.done / dt
        eta = (self.total - self.done) / rate if rate > 0 else 0
        try:
            sys.stderr.write(f"\rexport: {self.done / 1e6:9.1f} / {self.total / 1e6:.1f} MB read"
                             f"  {rate / 1e6:7.1f} MB/s  ETA {eta:5.0f} s ")
            _mid_line = True
            if self.done >= self.total:
                sys.stderr.write("\n")
                _mid_line = False
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


# --------------------------------------------------------------------------
# signals: SIGINT, SIGTERM and SIGHUP stop the export and leave OUT_DIR as it
# was. Python's default turns only SIGINT into an exception (SIGTERM and
# SIGHUP would kill the process with a partial temporary left behind).

class Interrupted(BaseException):
    """A signal, raised where the export was (a BaseException, so that no
    `except Exception` on the way can swallow it)."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


class Signals:
    """Turns SIGINT, SIGTERM and SIGHUP into Interrupted wherever the export
    is, except inside `with signals.deferred():` (creating or removing a
    temporary, the renames, the clean-up): there a signal is remembered and
    raised when the outermost such block ends, so that the record of what
    exists on disk is never cut in half. A signal that was ignored when the
    export started (nohup, `cmd &` in a script) stays ignored."""

    def __init__(self):
        self.depth = 0
        self.pending = None
        self.saved = {}

    def install(self):
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            num = getattr(signal, name, None)
            if num is None or signal.getsignal(num) == signal.SIG_IGN:
                continue
            try:
                self.saved[num] = signal.signal(num, self._handler)
            except ValueError:      # not the main thread: no handlers there
                return

    def restore(self):
        for num, old in self.saved.items():
            signal.signal(num, old if old is not None else signal.SIG_DFL)
        self.saved = {}

    def _handler(self, signum, frame):
        if self.depth:
            if self.pending is None:
                self.pending = signum
            return
        raise Interrupted(signum)

    def deferred(self):
        return _Deferred(self)


class _Deferred:
    def __init__(self, signals):
        self.s = signals

    def __enter__(self):
        self.s.depth += 1

    def __exit__(self, etype, value, tb):
        self.s.depth -= 1
        if self.s.depth == 0 and etype is None and self.s.pending is not None:
            signum, self.s.pending = self.s.pending, None
            raise Interrupted(signum)
        return False


# --------------------------------------------------------------------------
# test hooks (tests/test_export.py): RAKTN_EXPORT_TEST_PAUSE=POINT[:SECONDS]
# prints "export: test pause at POINT" and waits there (30 s by default) so
# that a test can send a signal at that point; RAKTN_EXPORT_TEST_FAIL=P1,P2
# makes an I/O error happen at those points. Points, in order: mkdir,
# tokenizer-tmp, model-tmp (after the first tensor), after-model (both
# temporaries complete and checked), rename-tokenizer.bin, between-renames,
# rename-model.bin, restore-tokenizer.bin (undoing the first rename).

def test_point(point):
    if point in os.environ.get("RAKTN_EXPORT_TEST_FAIL", "").split(","):
        raise OSError(errno.EIO, f"I/O error injected at '{point}' by RAKTN_EXPORT_TEST_FAIL")
    name, _, secs = os.environ.get("RAKTN_EXPORT_TEST_PAUSE", "").partition(":")
    if name == point:
        log(f"export: test pause at {point}")
        try:
            secs = float(secs or 30)
        except ValueError:
            secs = 30.0
        end = time.monotonic() + secs
        while time.monotonic() < end:       # a signal's handler interrupts it
            time.sleep(max(0.0, end - time.monotonic()))


# --------------------------------------------------------------------------
# the output folder as one transaction

class CommitError(Exception):
    pass


class Output:
    """OUT_DIR/model.bin and OUT_DIR/tokenizer.bin, written as temporaries
    beside them (NAME.XXXXXXXX.tmp, created exclusively, so no file of the
    user's is ever opened for writing) and renamed over the old files only
    when both are complete and checked. Until commit() nothing the user had
    is touched, and abort() removes every temporary and every folder this
    export created (and only those). The two renames cannot be one atomic
    step: commit() keeps a hard link to each file it replaces, so that if the
    second rename fails the first is undone; with signals deferred, only
    SIGKILL or a crash between the two renames (microseconds) can leave a
    new tokenizer.bin beside the old model.bin."""

    def __init__(self, out_dir, signals):
        self.dir = out_dir
        self.sig = signals
        self.made_dirs = []       # folders this export created, outermost first
        self.temps = {}           # final path -> its temporary (exists, ours)
        self.backups = {}         # final path -> hard link to the file it replaces
        self.renamed = []         # final paths now holding the new files
        self.committed = False

    def path(self, name):
        return os.path.join(self.dir, name)

    def lock(self):
        """Hold OUT_DIR against other exports until this one ends: two
        exports into one folder could otherwise pair one's model.bin with the
        other's tokenizer.bin. An advisory lock (flock) on the folder itself,
        so nothing is added to it; released when the process ends."""
        if getattr(self, "lock_fd", None) is not None or fcntl is None:
            return
        try:
            fd = os.open(self.dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return                      # not there (yet): make_dirs comes first
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ExportError(f"{self.dir}: another export is writing into this folder; "
                              "run this one when it has finished")
        except OSError:
            pass                        # no locks on this file system: go on unlocked
        self.lock_fd = fd

    def unlock(self):
        fd, self.lock_fd = getattr(self, "lock_fd", None), None
        if fd is not None:
            os.close(fd)

    def check_targets(self, finals):
        """Refuse, before anything is written, what the renames would fail
        on or should not replace: OUT_DIR not a folder, a target that is a
        folder, a FIFO or a device (a symlink is replaced, as by mv)."""
        if os.path.lexists(self.dir) and not os.path.isdir(self.dir):
            raise ExportError(f"{self.dir}: exists and is not a directory")
        for final in finals:
            try:
                mode = os.lstat(final).st_mode
            except FileNotFoundError:
                continue
            except OSError as e:
                raise ExportError(f"{final}: cannot check it ({e.strerror or e})")
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                raise ExportError(f"{final}: exists and is not a regular file; refusing to "
                                  "replace it")

    def make_dirs(self):
        todo = []
        d = self.dir.rstrip(os.sep) or os.sep
        while not os.path.isdir(d):
            if os.path.lexists(d):
                raise ExportError(f"{d}: exists and is not a directory")
            todo.append(d)
            parent = os.path.dirname(d)
            if parent in ("", d):
                break
            d = parent
        for d in reversed(todo):
            with self.sig.deferred():
                try:
                    os.mkdir(d)
                except FileExistsError:
                    if not os.path.isdir(d):
                        raise
                    continue            # made meanwhile by someone else: not ours
                self.made_dirs.append(d)

    def _unique(self, final, suffix, make):
        for _ in range(100):
            name = f"{final}.{os.urandom(4).hex()}{suffix}"
            try:
                return name, make(name)
            except FileExistsError:
                continue
        raise OSError(errno.EEXIST, "no free temporary name", final)

    def create(self, final):
        """A new temporary for final, open for writing (binary)."""
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        with self.sig.deferred():
            tmp, fd = self._unique(final, ".tmp", lambda n: os.open(n, flags, 0o666))
            self.temps[final] = tmp
        return tmp, os.fdopen(fd, "wb", buffering=0)

    def commit(self, finals):
        """Rename each temporary over its final name, in this order."""
        with self.sig.deferred():
            for final in finals:
                if os.path.lexists(final):
                    def link(name, final=final):
                        os.link(final, name, follow_symlinks=False)
                    try:
                        self.backups[final] = self._unique(final, ".old", link)[0]
                    except OSError:
                        pass    # no hard links here: a failed second rename cannot be undone
            done = []
            for k, final in enumerate(finals):
                try:
                    if k:
                        test_point("between-renames")
                    test_point("rename-" + os.path.basename(final))
                    os.replace(self.temps[final], final)
                except OSError as e:
                    raise CommitError(self._undo(done, final, e))
                del self.temps[final]
                done.append(final)
            self.renamed = done
            self.committed = True
            try:
                fd = os.open(self.dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.EBADF, errno.EACCES):
                    log(f"export: warning: {self.dir}: cannot sync the folder ({e.strerror}); "
                        "the new files are in place, but a crash soon could lose the renames")
            self._drop_backups()

    def _undo(self, done, final, err):
        """After the rename of `final` failed: put back what `done` replaced.
        Returns the message for the error, saying where things stand."""
        why = f"{final}: cannot rename the new file into place ({err.strerror or err})"
        for prev in reversed(done):
            try:
                test_point("restore-" + os.path.basename(prev))
                if prev in self.backups:
                    os.replace(self.backups.pop(prev), prev)
                else:
                    os.unlink(prev)
            except OSError as e2:
                keep = self.backups.pop(prev, None)
                self.made_dirs = []     # not empty: keep them
                return (f"{why}; putting back the old {prev} failed too ({e2.strerror or e2}): "
                        f"{prev} is the NEW file" + (f", the old one is {keep}" if keep else
                                                     " and there was no old one to keep")
                        + f"; {final} is unchanged")
        return f"{why}; nothing in {self.dir} was changed"

    def _drop_backups(self):
        for b in list(self.backups.values()):
            try:
                os.unlink(b)
            except OSError:
                pass
        self.backups = {}

    def abort(self):
        """Remove every temporary and every folder this export made."""
        with self.sig.deferred():
            for tmp in list(self.temps.values()):
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    log(f"export: warning: cannot remove the temporary {tmp} ({e.strerror})")
            self.temps = {}
            if not self.committed:
                self._drop_backups()
            for d in reversed(self.made_dirs):
                try:
                    os.rmdir(d)
                except OSError:
                    break               # not empty: someone else's files are in it
            self.made_dirs = []


# --------------------------------------------------------------------------
# the export

def write_all(f, data):
    """f.write(data) on an unbuffered file, whose write may be partial; a
    full disk raises here, in the write of the tensor at fault."""
    view = memoryview(data)
    while view:
        n = f.write(view)
        view = view[n:]


def write_tokenizer(out, final, data):
    tmp, f = out.create(final)
    try:
        with f:
            write_all(f, data)
            os.fsync(f.fileno())
        back = te.read_regular(tmp)
    except OSError as e:
        raise ExportError(f"{final}: {e.strerror or e} (while writing its temporary {tmp})")
    if back != data:
        raise ExportError(f"{tmp}: reads back {len(back)} bytes that differ from the "
                          f"{len(data)} written")


def read_converted(handles, path, name, src, begin, end, dtype):
    """A checkpoint tensor's bytes converted to dtype, a chunk at a time:
    (converted bytes, bytes read)"""
    if path not in handles:
        handles[path] = te.open_regular(path)
    g = handles[path]
    g.seek(begin)
    left = end - begin
    while left > 0:
        raw = g.read(min(CHUNK, left))
        if not raw:
            raise ExportError(f"{path}: tensor '{name}': file ended early (changed while being read?)")
        left -= len(raw)
        yield convert(raw, src, dtype), len(raw)


def write_model(out, final, c, plan, found, dtype, header, file_size, progress, nonfinite):
    esize = 4 if dtype == "f32" else 2
    tmp, f = out.create(final)
    name = "(header)"
    try:
        with f:
            write_all(f, header)
            handles = {}
            try:
                for k, (name, shape) in enumerate(plan):
                    path, src, _, begin, end = found[name]
                    bad, first, done = 0, None, 0
                    if isinstance(src, gguf.Tensor):     # dequantized, rows in HF order
                        chunks = gguf.chunk_source(found[name], c, dtype)
                    else:
                        chunks = read_converted(handles, path, name, src, begin, end, dtype)
                    for data, n_in in chunks:
                        n_bad, at = count_nonfinite(data, esize)
                        if n_bad and first is None:
                            first = done + at
                        bad += n_bad
                        done += len(data) // esize
                        write_all(f, data)
                        progress.add(n_in)
                    if bad:
                        nonfinite.append(f"export: warning: {path}: tensor '{name}' holds {bad} "
                                         f"NaN or Inf value{'s' if bad > 1 else ''} (the first at "
                                         f"element {first}); raktn stops with an error when they "
                                         "reach the logits")
                    pad = padded(numel(shape) * esize) - numel(shape) * esize
                    write_all(f, bytes(pad))
                    if k == 0:
                        test_point("model-tmp")
            finally:
                for g in handles.values():
                    g.close()
            name = "(fsync)"
            os.fsync(f.fileno())
            size = os.fstat(f.fileno()).st_size
            if size != file_size:
                raise ExportError(f"{tmp}: wrote {size} bytes, expected {file_size}")
            head = os.pread(f.fileno(), HEADER_SIZE, 0) if hasattr(os, "pread") else header
            # The pages just written stay in the page cache as small folios,
            # which raktn's mapping then maps with 4 KB pages for as long as
            # they stay cached (decode ~5% slower). Now that the data is on
            # disk they are dropped: the first run reads model.bin back in
            # 2 MB folios (Linux 6.x; notes/performance.md).
            if hasattr(os, "posix_fadvise"):
                try:
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                except OSError:
                    pass    # a hint: a file system without it still has the file
    except OSError as e:
        # a full disk (ENOSPC, EFBIG), a failing read, an injected error: say where
        where = e.filename if e.filename and e.filename != tmp else final
        raise ExportError(f"{where}: {e.strerror or e} (while writing tensor '{name}' to "
                          f"its temporary {tmp})") from e
    except ValueError as e:             # te.open_regular: a shard is no longer a regular file
        raise ExportError(str(e))     # (or gguf.GGUFError: a GGUF that changed while read)
    # what raktn's loader checks, on what is now on disk
    if check_model_header(head, tmp) != size:
        raise ExportError(f"{tmp}: the header does not match the file's size")


def export(args, out, info):
    """Everything is read and checked first; only then are the two
    temporaries written, checked again, and renamed together."""
    hf_dir = args.hf_dir
    out.lock()      # OUT_DIR as it is now stays ours (if it exists: else after make_dirs)
    if os.path.isfile(hf_dir) and gguf.is_gguf(hf_dir):
        return export_gguf(args, out, info)
    if args.sliding_window is not None:
        raise ExportError("--sliding-window is for GGUF files; a checkpoint's config.json has its own")
    if not os.path.isdir(hf_dir):
        raise ExportError(f"{hf_dir}: not a directory (nor a GGUF file)")
    c = read_config(hf_dir)
    c["hf_dir"] = hf_dir
    plan = tensor_plan(c)
    found = locate_tensors(hf_dir)
    if all(os.path.lexists(os.path.join(hf_dir, n)) for n in ("model.safetensors",
                                                               "model.safetensors.index.json")):
        c["notes"].append(f"export: note: {hf_dir} has both model.safetensors and "
                          "model.safetensors.index.json; model.safetensors was used, as "
                          "transformers does")
    check_tensors(plan, found, c)
    if args.dtype == "bf16":
        not_bf16 = [n for n, _ in plan if found[n][1] != "BF16"]
        if not_bf16:
            raise ExportError(f"{found[not_bf16[0]][0]}: --dtype bf16 is lossless only for a "
                              f"bf16 checkpoint; '{not_bf16[0]}' is {found[not_bf16[0]][1]}")
    try:
        tok = te.build_tokenizer(hf_dir)
    except ValueError as e:
        msg = str(e)
        raise ExportError(msg if msg.startswith(hf_dir) else f"{hf_dir}: tokenizer: {msg}")
    except OSError as e:
        raise ExportError(f"{e.filename or hf_dir}: cannot read ({e.strerror or e})")
    write_export(args, out, info, c, plan, found, tok, c["path"], "no tokenizer.json or tokenizer.model")


def export_gguf(args, out, info):
    """export() for a GGUF file (export/gguf.py): its metadata, its tensors
    dequantized exactly as ggml defines them, q/k rows in HF's order, and
    tokenizer.bin from tokenizer.ggml.*; written as export() writes."""
    path = args.hf_dir
    try:
        c, plan, found, tok = gguf.plan_gguf(path, ExportError)
        if args.dtype == "bf16":
            gguf.check_bf16(found, ExportError)
    except gguf.GGUFError as e:
        raise ExportError(str(e))
    if args.sliding_window is None:
        c["notes"].append(f"export: note: {path}: a GGUF carries no sliding window; exported "
                          "without one, as llama.cpp runs it (--sliding-window W for Mistral's)")
    else:
        if not 0 <= args.sliding_window <= LIMITS["sliding_window"][2]:
            raise ExportError(f"--sliding-window {args.sliding_window} is outside 0.."
                              f"{LIMITS['sliding_window'][2]}")
        c["sliding_window"] = args.sliding_window
    if gguf.C_DEQUANT is None and any(found[n][1].type in gguf.PER_BLOCK for n, _ in plan):
        log("export: note: export/gguf_dequant.so is not built (make): dequantizing in Python, "
            "~0.3 us a weight (a 7B: most of an hour)")
    types = {}
    for n, _ in plan:
        types[found[n][1].type_name] = types.get(found[n][1].type_name, 0) + 1
    write_export(args, out, info, c, plan, found, tok, path, "no tokenizer.ggml.* vocabulary",
                 "; from GGUF tensors " + ", ".join(f"{k} x{v}" for k, v in sorted(types.items())))


def write_export(args, out, info, c, plan, found, tok, source, no_tokenizer, detail=""):
    """What every export does once its source is read and checked: the
    header checked as raktn will check it, the output paths, then the two
    temporaries written and renamed together. tok: tokenizer.bin's bytes,
    where they came from and a summary, or None."""
    esize = 4 if args.dtype == "f32" else 2
    file_size = HEADER_SIZE + sum(padded(numel(s) * esize) for _, s in plan)
    header = header_bytes(c, args.dtype, file_size)
    check_model_header(header, f"{source} (the model.bin made from it)")
    model_bin, tok_bin = out.path("model.bin"), out.path("tokenizer.bin")
    if tok is not None:
        n_pieces = struct.unpack_from("<I", tok[0], 12)[0]
        if n_pieces > c["vocab_size"]:
            raise ExportError(f"{source}: vocab_size {c['vocab_size']} is smaller than the "
                              f"{n_pieces} pieces of {tok[1]}; raktn refuses a tokenizer larger "
                              "than the model's vocabulary")
    out.check_targets([model_bin] + ([tok_bin] if tok else []))
    if tok is None:
        info["notes"].append(f"export: warning: {c.get('hf_dir', source)} has {no_tokenizer}; "
                             "no tokenizer.bin written")
        if os.path.lexists(tok_bin):
            check_stale_tokenizer(tok_bin, c, info)

    out.make_dirs()
    out.lock()
    test_point("mkdir")
    if tok is not None:
        write_tokenizer(out, tok_bin, tok[0])
        test_point("tokenizer-tmp")
    total_in = sum(found[n][4] - found[n][3] for n, _ in plan)
    t0 = time.monotonic()
    nonfinite = []
    write_model(out, model_bin, c, plan, found, args.dtype, header, file_size,
                Progress(total_in, args.quiet), nonfinite)
    test_point("after-model")
    out.commit(([tok_bin] if tok else []) + [model_bin])
    dt = time.monotonic() - t0
    info["done"] = [
        f"export: wrote {model_bin} ({file_size} bytes, {args.dtype}; {c['n_layers']} layers, "
        f"dim {c['dim']}, vocab {c['vocab_size']}{detail}) in {dt:.1f} s, "
        f"{total_in / 1e6 / max(dt, 1e-9):.1f} MB/s of input"]
    if tok is not None:
        info["done"].append(f"export: wrote {tok_bin} from {tok[1]} ({tok[2]})")
    info["notes"] = c["notes"] + info["notes"] + nonfinite


def check_stale_tokenizer(tok_bin, c, info):
    """A tokenizer.bin from an earlier export stays when the checkpoint has
    none; raktn reads it beside model.bin, so the pair must still load."""
    try:
        n = te.check_tokenizer_bin(te.read_regular(tok_bin, 1 << 32), tok_bin)
    except (OSError, ValueError) as e:
        raise ExportError(f"{tok_bin}: left from an earlier export, and raktn could not load "
                          f"it ({getattr(e, 'strerror', None) or e}); the checkpoint has no "
                          "tokenizer to replace it: remove it, or add the checkpoint's tokenizer")
    if n > c["vocab_size"]:
        raise ExportError(f"{tok_bin}: left from an earlier export, has {n} pieces, more than "
                          f"the new vocab_size {c['vocab_size']} (raktn would refuse the pair); "
                          "the checkpoint has no tokenizer to replace it: remove it, or add "
                          "the checkpoint's tokenizer")
    info["notes"].append(f"export: note: {tok_bin} from an earlier export was kept "
                         f"({n} pieces; it loads with the new model.bin)")


def one_line(msg):
    return str(msg).replace("\r", "\\r").replace("\n", "\\n")


def main(argv=None):
    """Returns the exit status: 0, 1 (an error), or 128 + N after signal N
    (main.signal is then N: the command line re-raises it, so that the
    caller sees the signal, as a shell does)."""
    main.signal = None
    ap = argparse.ArgumentParser(
        description="Export a Hugging Face Mistral/Llama checkpoint to raktn's model.bin "
                    "(+ tokenizer.bin).")
    ap.add_argument("hf_dir", help="checkpoint directory (config.json + *.safetensors), or a "
                    "GGUF file (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K tensors; export/gguf.py)")
    ap.add_argument("out_dir", help="where model.bin and tokenizer.bin are written")
    ap.add_argument("--dtype", choices=("f32", "bf16"), default="f32",
                    help="weight storage: f32 (default) or bf16 (only from a bf16 "
                         "checkpoint; lossless, half the size)")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    ap.add_argument("--sliding-window", type=int, metavar="W",
                    help="GGUF input only: the model's sliding window (a GGUF does not carry it; "
                         "Mistral-7B and RakutenAI-7B: 4096); default none")
    args = ap.parse_args(argv)
    for what, name in (("HF_DIR", args.hf_dir), ("OUT_DIR", args.out_dir)):
        if not name:
            log(f"export: error: {what} is an empty name")
            return 1
    sig = Signals()
    sig.install()
    out = Output(args.out_dir, sig)
    out_existed = os.path.lexists(args.out_dir)
    info = {"notes": [], "done": []}
    try:
        try:
            export(args, out, info)
        finally:
            out.abort()         # temporaries and folders that are not needed now
            out.unlock()
    except Interrupted as e:
        main.signal = e.signum
        if out.committed:
            log(f"export: {e.name} came while the files were renamed into place; the export "
                f"had completed: {' and '.join(out.renamed)} are the new files")
        else:
            log(f"export: interrupted ({e.name}); " + (
                f"nothing in {args.out_dir} was changed" if out_existed else
                f"nothing was written ({args.out_dir} did not exist and still does not)"))
        return 128 + e.signum
    except (ExportError, CommitError) as e:
        log(f"export: error: {one_line(e)}")
        return finish_pending(sig, 1)
    except OSError as e:
        log(f"export: error: {one_line(e.filename or args.out_dir)}: {one_line(e.strerror or e)}"
            f"; nothing in {args.out_dir} was changed")
        return finish_pending(sig, 1)
    except Exception as e:      # a bug: still one line, the folder still untouched
        log(f"export: error: internal error ({type(e).__name__}: {one_line(e)[:300]}); "
            f"nothing in {args.out_dir} was changed; please report this")
        return finish_pending(sig, 1)
    finally:
        sig.restore()
    for line in info["notes"] + info["done"]:
        log(one_line(line))
    return 0


def finish_pending(sig, rc):
    """A signal that came during the clean-up after an error: report its status."""
    if sig.pending is not None:
        main.signal = sig.pending
        return 128 + sig.pending
    return rc


if __name__ == "__main__":
    rc = main()
    if main.signal is not None:     # die of the signal, now that OUT_DIR is clean
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        signal.signal(main.signal, signal.SIG_DFL)
        os.kill(os.getpid(), main.signal)
    sys.exit(rc)
