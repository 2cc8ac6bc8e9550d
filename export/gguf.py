"""gguf.py - read a GGUF file of a Llama/Mistral model for export.py.

    python3 export/export.py MODEL.gguf OUT_DIR      (export.py calls this module)

GGUF is llama.cpp's file format: a header of typed key/value metadata, a
table of tensors (name, shape, ggml type, offset), then the tensor data
(ggml/docs/gguf.md in llama.cpp). This module turns one into what export.py
writes for an HF checkpoint:

- the config from the `llama.*` metadata (the same fields config.json gives);
- each tensor as float32 rows, dequantized EXACTLY as ggml's reference
  functions define it (ggml/src/ggml-quants.c: dequantize_row_q8_0,
  _q4_0, _q4_K, _q6_K; F16 and BF16 widened; F32 copied). Every value ggml
  computes is a product of a float16 scale and small integers, which is
  exact in float32, or (Q4_K) one such product minus another, rounded once
  to float32: computed here exactly in double (both terms are exact and
  their difference fits in 53 bits because float16 exponents span less than
  30 binades) and rounded once, so the result is ggml's bit for bit;
- q and k rows put back in Hugging Face's order: llama.cpp's converter
  (convert_hf_to_gguf.py, LlamaModel.permute) interleaves each head's two
  halves for its adjacent-pair RoPE, GGUF row h*hd + 2i + j = HF row
  h*hd + j*hd/2 + i; raktn rotates halves as transformers does;
- tokenizer.bin from `tokenizer.ggml.*` (SentencePiece-style "llama"
  vocabularies: pieces, scores, types; the merges follow from the scores as
  in llama.cpp's SPM tokenizer and sentencepiece), written by
  tokenizer_export.py's writer.

Standard library only, like the rest of export/. The dequantization is
vectorised with bytes.translate, slice assignment, big-integer additions and
map(operator.mul), and still takes ~0.3 us per weight (most of an hour for a
7B); export/gguf_dequant.c, which make builds as export/gguf_dequant.so and
this module loads with ctypes when present, computes the same bytes in a few
seconds (notes/verification.md, "GGUF in").
"""
import array
import itertools
import math
import operator
import os
import struct
import sys

import tokenizer_export as te

GGUF_MAGIC = b"GGUF"

# ggml types this module reads: name, elements per block, bytes per block
F32, F16, Q4_0, Q8_0, Q4_K, Q6_K, BF16 = 0, 1, 2, 8, 12, 14, 30
TYPES = {F32: ("F32", 1, 4), F16: ("F16", 1, 2), Q4_0: ("Q4_0", 32, 18), Q8_0: ("Q8_0", 32, 34),
         Q4_K: ("Q4_K", 256, 144), Q6_K: ("Q6_K", 256, 210), BF16: ("BF16", 1, 2)}
# names of the other ggml types, for messages
OTHER_TYPES = {3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 13: "Q5_K",
               15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL",
               21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64",
               28: "F64", 29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0"}

# metadata value types: struct code (None: string, array)
VT = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 8: None, 9: None,
      10: "Q", 11: "q", 12: "d"}

LITTLE = sys.byteorder == "little"


class GGUFError(ValueError):
    pass


# --------------------------------------------------------------------------
# reading the header

class Reader:
    def __init__(self, f, path, size):
        self.f, self.path, self.size, self.pos = f, path, size, 0

    def take(self, n):
        if n < 0 or self.pos + n > self.size:
            raise GGUFError(f"{self.path}: truncated header (wanted {n} bytes at offset {self.pos})")
        b = self.f.read(n)
        if len(b) != n:
            raise GGUFError(f"{self.path}: file ended early at offset {self.pos}")
        self.pos += n
        return b

    def scalar(self, code):
        return struct.unpack("<" + code, self.take(struct.calcsize(code)))[0]

    def string(self):
        n = self.scalar("Q")
        if n > 1 << 24:
            raise GGUFError(f"{self.path}: a string of {n} bytes at offset {self.pos}: corrupt header")
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"{self.path}: a string at offset {self.pos - n} is not UTF-8")

    def value(self, vt, depth=0):
        if vt == 8:
            return self.string()
        if vt == 9:
            et, n = self.scalar("I"), self.scalar("Q")
            if depth or et not in VT:
                raise GGUFError(f"{self.path}: bad array element type {et} at offset {self.pos}")
            if n > self.size:
                raise GGUFError(f"{self.path}: an array of {n} elements: corrupt header")
            if VT[et] is not None:      # numbers in one read
                code = VT[et]
                return list(struct.unpack(f"<{n}{code}", self.take(n * struct.calcsize(code))))
            return [self.value(et, depth + 1) for _ in range(n)]
        if vt not in VT:
            raise GGUFError(f"{self.path}: unknown metadata type {vt} at offset {self.pos}")
        return self.scalar(VT[vt])


class Tensor:
    def __init__(self, name, dims, gtype, offset):
        self.name, self.dims, self.type, self.offset = name, dims, gtype, offset
        self.rows = 1
        for d in dims[1:]:
            self.rows *= d
        self.cols = dims[0] if dims else 1
        _, be, bs = TYPES[gtype]
        self.row_bytes = self.cols // be * bs
        self.nbytes = self.row_bytes * self.rows

    @property
    def type_name(self):
        return TYPES[self.type][0]


def is_gguf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def read_gguf(path):
    """(metadata dict, {name: Tensor}, data start, file size) of a GGUF file."""
    try:
        f = te.open_regular(path)
    except OSError as e:
        raise GGUFError(f"{path}: cannot read ({e.strerror or e})")
    with f:
        size = os.fstat(f.fileno()).st_size
        r = Reader(f, path, size)
        if r.take(4) != GGUF_MAGIC:
            raise GGUFError(f"{path}: not a GGUF file (no GGUF magic)")
        version = r.scalar("I")
        if version not in (2, 3):
            raise GGUFError(f"{path}: GGUF version {version} is not supported (2, 3)")
        n_tensors, n_kv = r.scalar("Q"), r.scalar("Q")
        if n_tensors > 1 << 20 or n_kv > 1 << 20:
            raise GGUFError(f"{path}: {n_tensors} tensors, {n_kv} keys: corrupt header")
        meta = {}
        for _ in range(n_kv):
            key = r.string()
            meta[key] = r.value(r.scalar("I"))
        tensors = {}
        for _ in range(n_tensors):
            name = r.string()
            nd = r.scalar("I")
            if not 1 <= nd <= 4:
                raise GGUFError(f"{path}: tensor {name!r} has {nd} dimensions")
            dims = list(struct.unpack(f"<{nd}Q", r.take(8 * nd)))
            gtype, off = r.scalar("I"), r.scalar("Q")
            if gtype not in TYPES:
                raise GGUFError(f"{path}: tensor {name!r} is of ggml type "
                                f"{OTHER_TYPES.get(gtype, gtype)}; raktn's export reads "
                                + ", ".join(v[0] for v in TYPES.values()))
            if any(d < 1 or d > 1 << 32 for d in dims) or dims[0] % TYPES[gtype][1]:
                raise GGUFError(f"{path}: tensor {name!r}: bad shape {dims} for {TYPES[gtype][0]}")
            if name in tensors:
                raise GGUFError(f"{path}: tensor {name!r} appears twice")
            tensors[name] = Tensor(name, dims, gtype, off)
        align = meta.get("general.alignment", 32)
        if not isinstance(align, int) or align < 1 or align & (align - 1):
            raise GGUFError(f"{path}: general.alignment {align!r} is not a power of two")
        start = (r.pos + align - 1) // align * align
    for t in tensors.values():
        if t.offset % align or start + t.offset + t.nbytes > size:
            raise GGUFError(f"{path}: tensor {t.name!r} lies outside the file (offset {t.offset}, "
                            f"{t.nbytes} bytes, file {size})")
        t.begin = start + t.offset
        t.end = t.begin + t.nbytes
    return meta, tensors, start, size


# --------------------------------------------------------------------------
# dequantization: bytes of whole blocks -> float32 bytes (little-endian)

def _f16(lo, hi):
    """Half floats whose low and high bytes are the byte strings lo and hi."""
    b = bytearray(2 * len(lo))
    b[0::2], b[1::2] = lo, hi
    return struct.unpack(f"<{len(lo)}e", b)


def _repeat(values, k):
    """Each value k times, in order (C-level iteration)."""
    return itertools.chain.from_iterable(map(itertools.repeat, values, itertools.repeat(k, len(values))))


def _f32_bytes(values):
    a = array.array("f", values)        # each double rounded once to float32
    if not LITTLE:
        a.byteswap()
    return a.tobytes()


def _check_scales(scales, what):
    for s in scales:
        if not math.isfinite(s):
            raise GGUFError(f"{what}: a block scale is {s} (not finite)")


LOW = bytes(i & 15 for i in range(256))
HIGH = bytes(i >> 4 for i in range(256))
LOW6 = bytes(i & 63 for i in range(256))
TOP2 = bytes((i >> 6) << 4 for i in range(256))        # (q >> 6) << 4
SHIFT = [bytes(((i >> s) & 3) << 4 for i in range(256)) for s in (0, 2, 4, 6)]


def _gather(raw, bsize, nb, offsets):
    """bytes: for every block, the bytes at the given offsets within it."""
    k = len(offsets)
    out = bytearray(k * nb)
    for i, o in enumerate(offsets):
        out[i::k] = raw[o::bsize][:nb]
    return out


def _add(a, b):
    """Bytewise a + b where no sum exceeds 255 (one big-integer addition)."""
    n = len(a)
    return (int.from_bytes(a, "little") + int.from_bytes(b, "little")).to_bytes(n, "little")


def _signed(b, bias):
    """Bytes b minus bias, as signed integers (bias 8 or 32)."""
    return memoryview(bytes(b).translate(bytes((i - bias) & 255 for i in range(256)))).cast("b")


def deq_q8_0(raw, what=""):
    nb = len(raw) // 34
    d = _f16(raw[0::34], raw[1::34])
    _check_scales(d, what)
    q = memoryview(bytes(_gather(raw, 34, nb, range(2, 34)))).cast("b")
    return _f32_bytes(map(operator.mul, _repeat(d, 32), q))


def deq_q4_0(raw, what=""):
    nb = len(raw) // 18
    d = _f16(raw[0::18], raw[1::18])
    _check_scales(d, what)
    qs = _gather(raw, 18, nb, range(2, 18))
    nib = bytearray(32 * nb)      # per block: the 16 low nibbles, then the 16 high ones
    for j in range(16):
        nib[j::32] = qs[j::16].translate(LOW)
        nib[16 + j::32] = qs[j::16].translate(HIGH)
    return _f32_bytes(map(operator.mul, _repeat(d, 32), _signed(nib, 8)))


def deq_q4_k(raw, what=""):
    nb = len(raw) // 144
    d = _f16(raw[0::144], raw[1::144])
    dmin = _f16(raw[2::144], raw[3::144])
    _check_scales(d, what)
    _check_scales(dmin, what)
    s = [raw[4 + i::144][:nb] for i in range(12)]          # scales[i] of every block
    # get_scale_min_k4: 8 (scale, min) pairs of 6 bits per block
    sc, mn = [], []
    for j in range(8):
        if j < 4:
            sc.append(s[j].translate(LOW6))
            mn.append(s[j + 4].translate(LOW6))
        else:
            sc.append(_add(s[j + 4].translate(LOW), s[j - 4].translate(TOP2)))
            mn.append(_add(s[j + 4].translate(HIGH), s[j].translate(TOP2)))
    scb, mnb = bytearray(8 * nb), bytearray(8 * nb)
    for j in range(8):
        scb[j::8], mnb[j::8] = sc[j], mn[j]
    d1 = list(map(operator.mul, _repeat(d, 8), scb))        # d * sc: exact
    m1 = list(map(operator.mul, _repeat(dmin, 8), mnb))     # dmin * m: exact
    qs = _gather(raw, 144, nb, range(16, 144))
    # sub-block 2c: low nibbles of qs[32c .. 32c+31]; 2c+1: their high nibbles
    nib = bytearray(256 * nb)
    for c in range(4):
        for l in range(32):
            col = qs[32 * c + l::128]
            nib[64 * c + l::256] = col.translate(LOW)
            nib[64 * c + 32 + l::256] = col.translate(HIGH)
    prod = map(operator.mul, _repeat(d1, 32), nib)          # exact
    return _f32_bytes(map(operator.sub, prod, _repeat(m1, 32)))   # exact in double, rounded once


def deq_q6_k(raw, what=""):
    nb = len(raw) // 210
    d = _f16(raw[208::210], raw[209::210])
    _check_scales(d, what)
    sc = memoryview(bytes(_gather(raw, 210, nb, range(192, 208)))).cast("b")
    dsc = list(map(operator.mul, _repeat(d, 16), sc))       # d * sc: exact
    lo, hi = bytearray(256 * nb), bytearray(256 * nb)
    for h in range(2):
        for l in range(32):
            a, b = raw[64 * h + l::210][:nb], raw[64 * h + l + 32::210][:nb]
            qh = raw[128 + 32 * h + l::210][:nb]
            p = 128 * h + l
            lo[p::256], hi[p::256] = a.translate(LOW), qh.translate(SHIFT[0])
            lo[p + 32::256], hi[p + 32::256] = b.translate(LOW), qh.translate(SHIFT[1])
            lo[p + 64::256], hi[p + 64::256] = a.translate(HIGH), qh.translate(SHIFT[2])
            lo[p + 96::256], hi[p + 96::256] = b.translate(HIGH), qh.translate(SHIFT[3])
    q = _signed(_add(lo, hi), 32)
    return _f32_bytes(map(operator.mul, _repeat(dsc, 16), q))   # (d * sc) * q: exact


def deq_f16(raw, what=""):
    n = len(raw) // 2
    return _f32_bytes(struct.unpack(f"<{n}e", raw))


def deq_bf16(raw, what=""):
    out = bytearray(2 * len(raw))       # the top half of a float32: exact
    out[2::4], out[3::4] = raw[0::2], raw[1::2]
    return bytes(out)


def deq_f32(raw, what=""):
    return bytes(raw)


DEQUANT = {F32: deq_f32, F16: deq_f16, BF16: deq_bf16, Q8_0: deq_q8_0, Q4_0: deq_q4_0,
           Q4_K: deq_q4_k, Q6_K: deq_q6_k}
PER_BLOCK = {Q4_0: 32 / 18, Q8_0: 32 / 34, Q4_K: 256 / 144, Q6_K: 256 / 210}


def _c_dequant():
    """export/gguf_dequant.so (make builds it), through ctypes: the same
    values ~100x faster; None where it is not built or cannot load (then the
    Python above computes them; RAKTN_GGUF_PYTHON=1 asks for that)."""
    if not LITTLE or os.environ.get("RAKTN_GGUF_PYTHON"):
        return None
    try:
        import ctypes
        lib = ctypes.CDLL(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gguf_dequant.so"))
        fn = lib.gguf_dequant
        fn.restype = ctypes.c_long
        fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    except (ImportError, OSError, AttributeError):
        return None

    def run(gtype, raw):
        n = round(len(raw) * PER_BLOCK[gtype])
        out = bytearray(4 * n)
        buf = (ctypes.c_char * len(out)).from_buffer(out)
        got = fn(gtype, bytes(raw), len(raw), ctypes.addressof(buf))
        del buf
        return bytes(out) if got == n else None
    return run


C_DEQUANT = _c_dequant()


def dequantize(gtype, raw, what=""):
    if C_DEQUANT is not None and gtype in PER_BLOCK:
        out = C_DEQUANT(gtype, raw)
        if out is not None:
            return out
    return DEQUANT[gtype](raw, what)        # (also where C refuses: it says why)


def rows_to_bf16(f32_bytes, what):
    """float32 bytes -> bf16 bytes, when every value is a bf16 (else GGUFError)."""
    lo = f32_bytes[0::4] + f32_bytes[1::4]
    if lo.count(0) != len(lo):
        raise GGUFError(f"{what}: a value is not exactly a bf16; export with --dtype f32")
    out = bytearray(len(f32_bytes) // 2)
    out[0::2], out[1::2] = f32_bytes[2::4], f32_bytes[3::4]
    return bytes(out)


# --------------------------------------------------------------------------
# q/k rows: GGUF order -> Hugging Face order

def hf_row_order(rows, head_dim):
    """The GGUF row that holds each HF row (LlamaModel.permute inverted)."""
    half = head_dim // 2
    order = []
    for r in range(rows):
        h, k = divmod(r, head_dim)
        j, i = divmod(k, half)
        order.append(h * head_dim + 2 * i + j)
    return order


# --------------------------------------------------------------------------
# config and tensors

def shortest_decimal(f):
    """The shortest decimal whose float32 is f: config.json's value, which
    the converter stored as a float32 (1e-05 for 9.99999974737875e-06)."""
    for p in range(1, 18):
        v = float("%.*g" % (p, f))
        if struct.unpack("<f", struct.pack("<f", v))[0] == f:
            return v
    return f


def config_from_gguf(path, meta, tensors, err):
    """The fields export.py's read_config returns, from GGUF metadata."""
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise err(f"{path}: general.architecture {arch!r}; raktn exports 'llama' GGUFs "
                  "(Llama and Mistral models)")

    def key(k, kind=int, need=True, default=None):
        v = meta.get(f"llama.{k}", default)
        if v is None and not need:
            return None
        if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
            raise err(f"{path}: metadata llama.{k} is missing or not an integer ({v!r})")
        if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise err(f"{path}: metadata llama.{k} is missing or not a number ({v!r})")
        return v

    emb = tensors.get("token_embd.weight")
    if emb is None or len(emb.dims) != 2:
        raise err(f"{path}: no 2-D tensor token_embd.weight")
    c = {"arch": "LlamaForCausalLM", "notes": [], "path": path}
    c["dim"] = key("embedding_length")
    c["hidden_dim"] = key("feed_forward_length")
    c["n_layers"] = key("block_count")
    c["n_heads"] = key("attention.head_count")
    kv = key("attention.head_count_kv", need=False)
    c["n_kv_heads"] = c["n_heads"] if kv is None else kv
    c["vocab_size"] = key("vocab_size", need=False) or emb.dims[1]
    c["max_seq_len"] = key("context_length")
    theta = key("rope.freq_base", float, default=10000.0)
    eps = key("attention.layer_norm_rms_epsilon", float)
    for k, v in (("llama.rope.freq_base", theta), ("llama.attention.layer_norm_rms_epsilon", eps)):
        if not (math.isfinite(v) and v > 0):
            raise err(f"{path}: metadata {k} = {v!r} is not a positive number")
    c["rope_theta"], c["rms_norm_eps"] = float(theta), float(eps)
    c["rope_theta64"], c["rms_norm_eps64"] = shortest_decimal(theta), shortest_decimal(eps)
    for bad in ("rope.scaling.type", "expert_count"):
        v = meta.get(f"llama.{bad}")
        if v not in (None, 0, "none"):
            raise err(f"{path}: llama.{bad} = {v!r} is not implemented in raktn")
    if "rope_freqs.weight" in tensors:
        raise err(f"{path}: rope_freqs.weight (Llama 3 RoPE scaling) is not implemented in raktn")
    for k in ("dim", "n_heads"):
        if not isinstance(c[k], int) or c[k] < 1:
            raise err(f"{path}: bad {k} {c[k]!r}")
    if c["dim"] % c["n_heads"]:
        raise err(f"{path}: embedding_length {c['dim']} is not a multiple of head_count {c['n_heads']}")
    c["head_dim"] = c["dim"] // c["n_heads"]
    rd = key("rope.dimension_count", need=False)
    if rd is not None and rd != c["head_dim"]:
        raise err(f"{path}: llama.rope.dimension_count {rd} != head dimension {c['head_dim']} "
                  "(partial RoPE is not implemented)")
    if emb.dims[1] != c["vocab_size"]:
        raise err(f"{path}: token_embd.weight has {emb.dims[1]} rows, vocab_size is {c['vocab_size']}")
    # GGUF carries no sliding window: llama.cpp attends to every earlier key
    c["sliding_window"] = 0
    c["tied"] = "output.weight" not in tensors
    c["bos_id"] = meta.get("tokenizer.ggml.bos_token_id", -1)
    c["eos_id"] = meta.get("tokenizer.ggml.eos_token_id", -1)
    for k in ("bos_id", "eos_id"):
        if not isinstance(c[k], int) or not -1 <= c[k] < c["vocab_size"]:
            raise err(f"{path}: tokenizer.ggml.{k[:3]}_token_id {c[k]!r} is outside the vocabulary")
    return c


def tensor_names(c):
    """(GGUF name, HF name, HF shape) in model.bin's order."""
    D, F, V = c["dim"], c["hidden_dim"], c["vocab_size"]
    Q, KV = c["n_heads"] * c["head_dim"], c["n_kv_heads"] * c["head_dim"]
    out = [("token_embd.weight", "model.embed_tokens.weight", (V, D))]
    for l in range(c["n_layers"]):
        g, h = f"blk.{l}.", f"model.layers.{l}."
        out += [(g + "attn_norm.weight", h + "input_layernorm.weight", (D,)),
                (g + "attn_q.weight", h + "self_attn.q_proj.weight", (Q, D)),
                (g + "attn_k.weight", h + "self_attn.k_proj.weight", (KV, D)),
                (g + "attn_v.weight", h + "self_attn.v_proj.weight", (KV, D)),
                (g + "attn_output.weight", h + "self_attn.o_proj.weight", (D, Q)),
                (g + "ffn_norm.weight", h + "post_attention_layernorm.weight", (D,)),
                (g + "ffn_gate.weight", h + "mlp.gate_proj.weight", (F, D)),
                (g + "ffn_up.weight", h + "mlp.up_proj.weight", (F, D)),
                (g + "ffn_down.weight", h + "mlp.down_proj.weight", (D, F))]
    out.append(("output_norm.weight", "model.norm.weight", (D,)))
    if not c["tied"]:
        out.append(("output.weight", "lm_head.weight", (V, D)))
    return out


ROWS_PER_CHUNK_BYTES = 4 << 20      # raw bytes dequantized at a time


def tensor_chunks(path, t, hf_shape, head_dim, dtype, what):
    """A function yielding (output bytes, input bytes consumed) for tensor t
    in HF's row order and the output dtype ('f32' or 'bf16')."""
    permuted = t.name.endswith(("attn_q.weight", "attn_k.weight"))

    def gen():
        f = te.open_regular(path)
        with f:
            rows = t.rows
            order = hf_row_order(rows, head_dim) if permuted else None
            per = max(1, ROWS_PER_CHUNK_BYTES // t.row_bytes)
            r = 0
            while r < rows:
                n = min(per, rows - r)
                if order is None:
                    f.seek(t.begin + r * t.row_bytes)
                    raw = f.read(n * t.row_bytes)
                else:
                    parts = []
                    for g in order[r:r + n]:
                        f.seek(t.begin + g * t.row_bytes)
                        parts.append(f.read(t.row_bytes))
                    raw = b"".join(parts)
                if len(raw) != n * t.row_bytes:
                    raise GGUFError(f"{path}: tensor {t.name!r}: file ended early")
                out = dequantize(t.type, raw, what)
                if dtype == "bf16":
                    out = rows_to_bf16(out, what)
                yield out, len(raw)
                r += n
    return gen


def plan_gguf(path, err):
    """Everything export.py needs from a GGUF, read and checked: (config,
    plan [(HF name, shape)], found {HF name: (path, chunk function, shape,
    begin, end)}, tokenizer (data, source, summary) or None)."""
    try:
        meta, tensors, _, _ = read_gguf(path)
    except GGUFError as e:
        raise err(str(e))
    c = config_from_gguf(path, meta, tensors, err)
    names = tensor_names(c)
    plan, found = [], {}
    used = set()
    for g, h, shape in names:
        t = tensors.get(g)
        if t is None:
            raise err(f"{path}: tensor {g!r} ({h}) is missing")
        want = list(reversed(shape))            # ggml's ne0 is the row length
        if t.dims != want:
            raise err(f"{path}: tensor {g!r}: shape {t.dims} (ggml order), the metadata implies {want}")
        if g.endswith(("attn_q.weight", "attn_k.weight")) and t.rows % c["head_dim"]:
            raise err(f"{path}: tensor {g!r}: rows are not whole heads")
        plan.append((h, shape))
        found[h] = (path, t, shape, t.begin, t.end)
        used.add(g)
    extra = sorted(set(tensors) - used)
    if extra:
        raise err(f"{path}: unexpected tensor {extra[0]!r} (not part of a Llama model; "
                  "refusing to guess what it does)")
    tok = tokenizer_from_gguf(path, meta, c, err)
    return c, plan, found, tok


def chunk_source(entry, c, dtype):
    """found[name] of plan_gguf -> the chunk generator for export.py's writer."""
    path, t, shape, _, _ = entry
    return tensor_chunks(path, t, shape, c["head_dim"], dtype, f"{path}: tensor {t.name!r}")()


def check_bf16(found, err):
    """--dtype bf16 from a GGUF: 2-D tensors must be BF16 (1-D norms may be
    F32 or F16 holding bf16 values, as the converter writes them)."""
    for name, (path, t, shape, _, _) in found.items():
        if t.type == BF16:
            continue
        if len(shape) == 1 and t.type in (F32, F16):
            with te.open_regular(path) as f:
                f.seek(t.begin)
                try:
                    rows_to_bf16(dequantize(t.type, f.read(t.nbytes)), f"{path}: tensor {t.name!r}")
                except GGUFError as e:
                    raise err(str(e))
            continue
        raise err(f"{path}: --dtype bf16 is lossless only when every matrix is BF16; "
                  f"{t.name!r} is {t.type_name}")


# --------------------------------------------------------------------------
# tokenizer.bin from tokenizer.ggml.*

def tokenizer_from_gguf(path, meta, c, err):
    model = meta.get("tokenizer.ggml.model")
    if model is None:
        return None
    if model != "llama":
        raise err(f"{path}: tokenizer.ggml.model {model!r}; raktn's tokenizer is SentencePiece "
                  "BPE with byte fallback ('llama')")
    pieces = meta.get("tokenizer.ggml.tokens")
    n = len(pieces) if isinstance(pieces, list) else 0
    scores = meta.get("tokenizer.ggml.scores", [0.0] * n)
    types = meta.get("tokenizer.ggml.token_type", [te.NORMAL] * n)
    if not n or len(scores) != n or len(types) != n:
        raise err(f"{path}: tokenizer.ggml.tokens/scores/token_type are missing or differ in length")
    types = [te.NORMAL if t == 0 else t for t in types]     # 0: undefined in llama.cpp
    unk = meta.get("tokenizer.ggml.unknown_token_id", 0)
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", True))   # llama.cpp's SPM defaults
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
    try:
        merges, added = te.spm_vocab(pieces, scores, types, unk, path)
        data, summary = te.tokenizer_bytes(pieces, scores, types, merges, added, unk, add_bos,
                                           add_eos, c["bos_id"], c["eos_id"], path)
    except ValueError as e:
        msg = str(e)
        raise err(msg if msg.startswith(path) else f"{path}: tokenizer: {msg}")
    if n > c["vocab_size"]:
        raise err(f"{path}: {n} tokens but vocab_size {c['vocab_size']}")
    return data, path + " (tokenizer.ggml.*)", summary
