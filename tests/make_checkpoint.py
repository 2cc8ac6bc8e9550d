#!/usr/bin/env python3
"""Write a random-weight Hugging Face checkpoint (config.json + safetensors).

Standard library only (CI regenerates the test checkpoints with it).

  make_checkpoint.py OUT_DIR --hidden H --layers L --heads N --kv-heads K
      --intermediate I --vocab V --seed S [--sliding-window W|none]
      [--dtype bf16|fp16|fp32] [--shards S] [--tied] [--arch mistral|llama]
      [--std X] [--norm-std X] [--embed-std X] [--rope-theta T] [--rms-norm-eps E]

Values
------
Every value is a bfloat16 number whose magnitude is 0 or lies in
[2^-14, 65280], so it is exactly representable in bf16, fp16 AND fp32.  The
values depend only on (seed, tensor name, shape, std): the bf16, fp16, fp32
and sharded checkpoints of one seed hold bit-identical numbers and share one
reference output.

Each tensor gets its own generator random.Random("<seed>:<tensor name>")
(string seeds are hashed with SHA-512, stable across Python versions and
platforms).  Its stream is consumed in chunks of CHUNK elements, each chunk
being getrandbits(16*n).to_bytes(2*n, "little"), read as little-endian uint16
u.  u indexes a 65536-entry table: value = bf16_round(mean + std *
Phi^-1((u + 0.5) / 65536)) (double rounded once to bf16, ties to even) (Phi^-1 = the standard normal quantile), flushed
to 0 below 2^-14 in magnitude.  So the values are an (inverse-CDF) sample of
N(mean, std^2): matrices use mean 0 and --std (default 0.16, see below), the
RMSNorm weights mean 1 and --norm-std (default 0.1); with --embed-std the
embedding matrix has its own std (so small that rms_norm_eps matters: mean(x^2)
of an embedding row is about std^2).

Why std 0.16 at hidden 64: 0.02 * sqrt(4096 / 64) keeps the attention scores
as peaked as in the 7B shapes at std 0.02; at 0.02 a 64-wide model's attention
is nearly uniform and the tests get weak.

Tensors use HF names (model.embed_tokens.weight, model.layers.{l}.self_attn.
{q,k,v,o}_proj.weight, model.layers.{l}.mlp.{gate,up,down}_proj.weight,
model.layers.{l}.{input,post_attention}_layernorm.weight, model.norm.weight,
lm_head.weight unless --tied) and HF shapes ([out_features, in_features]).
"""
import argparse
import array
import json
import math
import os
import struct
import sys
from random import Random
from statistics import NormalDist

CHUNK = 1 << 20  # elements drawn per getrandbits call (part of the format)

DTYPES = {  # our name -> (safetensors dtype, bytes per element, torch_dtype)
    "bf16": ("BF16", 2, "bfloat16"),
    "fp16": ("F16", 2, "float16"),
    "fp32": ("F32", 4, "float32"),
}

FP16_MIN_NORMAL = 2.0 ** -14
BF16_FP16_MAX = 65280.0  # largest bf16 value that fp16 holds exactly


def bf16_round(x):
    """Round a Python float straight to the nearest bfloat16 value (8 significant
    bits, ties to even) and return it as a float.  Rounding the double directly
    (not via float32, which would round twice) keeps every table entry far
    (>= 2e-8 relative) from a rounding tie, so a last-bit difference in a
    platform's log/sqrt cannot change any generated value."""
    if x == 0.0:
        return 0.0
    m, e = math.frexp(x)  # x = m * 2**e, 0.5 <= |m| < 1
    return math.ldexp(round(m * 256.0), e - 8)  # round(): ties to even


def value_table(mean, std):
    """65536 values (floats) exactly representable in bf16, fp16 and fp32."""
    nd = NormalDist()
    tab = []
    for u in range(65536):
        x = bf16_round(mean + std * nd.inv_cdf((u + 0.5) / 65536.0))
        if abs(x) < FP16_MIN_NORMAL:
            x = 0.0
        if abs(x) > BF16_FP16_MAX:
            raise SystemExit(f"error: std {std} too large: value {x} does not fit fp16")
        tab.append(x)
    return tab


def encoded_table(values, dtype):
    """Table of integer bit patterns of each value in the output dtype."""
    if dtype == "fp32":
        return [struct.unpack("<I", struct.pack("<f", v))[0] for v in values]
    if dtype == "bf16":
        return [struct.unpack("<I", struct.pack("<f", v))[0] >> 16 for v in values]
    return [struct.unpack("<H", struct.pack("<e", v))[0] for v in values]


class Encoder:
    """Turns per-tensor random streams into little-endian bytes of one dtype."""

    def __init__(self, dtype, std, norm_std, embed_std=None):
        self.dtype = dtype
        self.tables = {}
        kinds = {"matrix": (0.0, std), "norm": (1.0, norm_std)}
        if embed_std is not None:
            kinds["embed"] = (0.0, embed_std)
        for kind, (mean, s) in kinds.items():
            enc = encoded_table(value_table(mean, s), dtype)
            self.tables[kind] = enc

    def tensor_bytes(self, seed, name, numel, kind):
        rng = Random(f"{seed}:{name}")
        tab = self.tables[kind]
        typecode = "I" if self.dtype == "fp32" else "H"
        out = []
        left = numel
        while left > 0:
            n = min(left, CHUNK)
            raw = rng.getrandbits(16 * n).to_bytes(2 * n, "little")
            u = array.array("H")
            u.frombytes(raw)
            if sys.byteorder != "little":
                u.byteswap()
            v = array.array(typecode, map(tab.__getitem__, u))
            if v.itemsize != (4 if typecode == "I" else 2):
                raise SystemExit("error: unexpected array item size on this platform")
            if sys.byteorder != "little":
                v.byteswap()
            out.append(v.tobytes())
            left -= n
        return b"".join(out)


def tensor_specs(a):
    """[(name, shape, kind)] in file order."""
    h, i, v = a.hidden, a.intermediate, a.vocab
    hd = h // a.heads
    kvd = a.kv_heads * hd
    specs = [("model.embed_tokens.weight", [v, h], "matrix" if a.embed_std is None else "embed")]
    for l in range(a.layers):
        p = f"model.layers.{l}."
        specs += [
            (p + "input_layernorm.weight", [h], "norm"),
            (p + "self_attn.q_proj.weight", [h, h], "matrix"),
            (p + "self_attn.k_proj.weight", [kvd, h], "matrix"),
            (p + "self_attn.v_proj.weight", [kvd, h], "matrix"),
            (p + "self_attn.o_proj.weight", [h, h], "matrix"),
            (p + "post_attention_layernorm.weight", [h], "norm"),
            (p + "mlp.gate_proj.weight", [i, h], "matrix"),
            (p + "mlp.up_proj.weight", [i, h], "matrix"),
            (p + "mlp.down_proj.weight", [h, i], "matrix"),
        ]
    specs.append(("model.norm.weight", [h], "norm"))
    if not a.tied:
        specs.append(("lm_head.weight", [v, h], "matrix"))
    return specs


def write_safetensors(path, tensors, st_dtype, elsize, enc, seed):
    """tensors: [(name, shape, kind)]; data generated on the fly."""
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, shape, _ in tensors:
        n = math.prod(shape) * elsize
        header[name] = {"dtype": st_dtype, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)  # pad so the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, shape, kind in tensors:
            data = enc.tensor_bytes(seed, name, math.prod(shape), kind)
            f.write(data)
    return off


def make_config(a):
    arch = {"mistral": ("MistralForCausalLM", "mistral"), "llama": ("LlamaForCausalLM", "llama")}[a.arch]
    cfg = {
        "architectures": [arch[0]],
        "model_type": arch[1],
        "hidden_size": a.hidden,
        "intermediate_size": a.intermediate,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads,
        "vocab_size": a.vocab,
        "hidden_act": "silu",
        "rope_theta": a.rope_theta,
        "rms_norm_eps": a.rms_norm_eps,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": bool(a.tied),
        "torch_dtype": DTYPES[a.dtype][2],
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    if a.arch == "mistral":
        cfg["sliding_window"] = a.sliding_window
    cfg["_random_init"] = {"generator": "tests/make_checkpoint.py", "seed": a.seed,
                           "std": a.std, "norm_std": a.norm_std}
    if a.embed_std is not None:
        cfg["_random_init"]["embed_std"] = a.embed_std
    return cfg


def parse_window(s):
    if s.lower() in ("none", "null"):
        return None
    w = int(s)
    if w <= 0:
        raise argparse.ArgumentTypeError("sliding window must be > 0 or 'none'")
    return w


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--kv-heads", type=int, required=True)
    ap.add_argument("--intermediate", type=int, required=True)
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--sliding-window", type=parse_window, default=4096,
                    help="window in tokens or 'none' (mistral only; default 4096)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--tied", action="store_true", help="tie lm_head to embed_tokens (no lm_head.weight)")
    ap.add_argument("--arch", choices=["mistral", "llama"], default="mistral")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--std", type=float, default=0.16, help="std of the weight matrices (default 0.16)")
    ap.add_argument("--norm-std", type=float, default=0.1, help="std of the RMSNorm weights around 1 (default 0.1)")
    ap.add_argument("--embed-std", type=float, default=None, help="std of embed_tokens (default: --std)")
    ap.add_argument("--rope-theta", type=float, default=10000.0, help="config.json rope_theta (default 10000.0)")
    ap.add_argument("--rms-norm-eps", type=float, default=1e-05, help="config.json rms_norm_eps (default 1e-05)")
    a = ap.parse_args(argv)

    for k in ("hidden", "layers", "heads", "kv_heads", "intermediate", "vocab", "shards"):
        if getattr(a, k) <= 0:
            ap.error(f"--{k.replace('_', '-')} must be positive")
    if a.hidden % a.heads or a.heads % a.kv_heads:
        ap.error("hidden must be a multiple of heads, heads a multiple of kv-heads")
    if (a.hidden // a.heads) % 2:
        ap.error("head_dim must be even (RoPE)")
    if a.arch == "llama" and a.sliding_window not in (None, 4096):
        ap.error("--sliding-window is mistral only")
    if a.arch == "llama":
        a.sliding_window = None

    st_dtype, elsize, _ = DTYPES[a.dtype]
    specs = tensor_specs(a)
    if a.shards > len(specs):
        ap.error(f"--shards {a.shards} > number of tensors {len(specs)}")
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "config.json"), "w") as f:
        json.dump(make_config(a), f, indent=2)
        f.write("\n")

    enc = Encoder(a.dtype, a.std, a.norm_std, a.embed_std)
    if a.shards == 1:
        write_safetensors(os.path.join(a.out_dir, "model.safetensors"), specs, st_dtype, elsize, enc, a.seed)
        return 0

    # Split in file order into S groups of roughly equal byte size.
    sizes = [math.prod(s) * elsize for _, s, _ in specs]
    total = sum(sizes)
    # Contiguous split in file order: a tensor goes to the shard its byte
    # midpoint falls in, never skipping a shard, and leaving at least one
    # tensor for every later shard.
    groups = [[] for _ in range(a.shards)]
    cur, acc = 0, 0
    for idx, (spec, sz) in enumerate(zip(specs, sizes)):
        want = min(int((acc + sz / 2) * a.shards / total), a.shards - 1)
        if groups[cur] and (want > cur or len(specs) - idx == a.shards - 1 - cur):
            cur += 1
        groups[cur].append(spec)
        acc += sz
    if any(not g for g in groups):
        ap.error(f"cannot split {len(specs)} tensors into {a.shards} non-empty shards")
    weight_map = {}
    for k, g in enumerate(groups, 1):
        fn = f"model-{k:05d}-of-{a.shards:05d}.safetensors"
        write_safetensors(os.path.join(a.out_dir, fn), g, st_dtype, elsize, enc, a.seed)
        for name, _, _ in g:
            weight_map[name] = fn
    with open(os.path.join(a.out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
