#!/usr/bin/env python3
"""export.py - turn a Hugging Face Mistral/Llama checkpoint into raktn's files.

    python3 export/export.py HF_DIR OUT_DIR [--dtype f32|bf16] [--quiet]

Writes OUT_DIR/model.bin (layout: notes/format.md) and, when the checkpoint
has tokenizer files, OUT_DIR/tokenizer.bin (export/tokenizer_export.py).

Plain Python 3, standard library only. The export streams: each tensor is
copied from the safetensors file(s) to model.bin in chunks, so memory stays
small and flat whatever the checkpoint size. Output goes to a temporary file
that is renamed only when complete, so a failed or interrupted export never
leaves a model.bin that looks valid. Once written and synced, model.bin is
dropped from the page cache, so that the first run reads it back in large
pages (see the comment near the end of export_model).

Exit status: 0 on success, 1 on any error (one line on stderr, naming the file
and tensor at fault).
"""
import argparse
import json
import os
import struct
import sys
import time

MAGIC = b"raktnMDL"
VERSION = 1
HEADER_SIZE = 256          # bytes; the tensors start here
ALIGN = 64                 # every tensor starts at a multiple of 64 bytes
DTYPE_CODES = {"f32": 0, "bf16": 1}
CHUNK = 8 << 20            # bytes of source read at a time

# safetensors dtypes we can widen exactly to fp32, with their element size
SRC_DTYPES = {"F32": 4, "BF16": 2, "F16": 2}


class ExportError(Exception):
    pass


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------
# config.json -> the fields the forward pass uses (refusing what it lacks)

def read_config(hf_dir):
    path = os.path.join(hf_dir, "config.json")
    try:
        with open(path, "r", encoding="utf-8") as f:
            cfg = json.load(f)
    except FileNotFoundError:
        raise ExportError(f"{path}: no config.json in the checkpoint directory")
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ExportError(f"{path}: not valid JSON ({e})")
    if not isinstance(cfg, dict):
        raise ExportError(f"{path}: top level is not a JSON object")

    archs = cfg.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs else None
    if arch not in ("MistralForCausalLM", "LlamaForCausalLM"):
        raise ExportError(f"{path}: architectures={archs!r}; raktn implements "
                          "MistralForCausalLM and LlamaForCausalLM only")

    def need_int(key, lo=1, hi=1 << 24):
        v = cfg.get(key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ExportError(f"{path}: missing or non-integer '{key}' ({v!r})")
        if not lo <= v <= hi:
            raise ExportError(f"{path}: '{key}' = {v} is outside {lo}..{hi}")
        return v

    def need_float(key, default=None, hi=3.0e38):
        v = cfg.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ExportError(f"{path}: missing or non-positive '{key}' ({v!r})")
        if not v < hi:   # also Infinity/NaN, which Python's json accepts
            raise ExportError(f"{path}: '{key}' = {v!r} is not below {hi:g}")
        return float(v)

    c = {"arch": arch}
    c["dim"] = need_int("hidden_size")
    c["hidden_dim"] = need_int("intermediate_size")
    c["n_layers"] = need_int("num_hidden_layers", 1, 4096)
    c["n_heads"] = need_int("num_attention_heads", 1, 4096)
    c["n_kv_heads"] = cfg.get("num_key_value_heads") or c["n_heads"]
    if not isinstance(c["n_kv_heads"], int) or c["n_kv_heads"] < 1:
        raise ExportError(f"{path}: bad num_key_value_heads {cfg.get('num_key_value_heads')!r}")
    c["vocab_size"] = need_int("vocab_size", 1, 1 << 24)
    c["max_seq_len"] = need_int("max_position_embeddings", 1, 1 << 24)
    c["rope_theta"] = need_float("rope_theta", 10000.0)
    c["rms_norm_eps"] = need_float("rms_norm_eps", hi=1.0)

    if c["dim"] % c["n_heads"]:
        raise ExportError(f"{path}: hidden_size {c['dim']} is not a multiple of "
                          f"num_attention_heads {c['n_heads']}")
    c["head_dim"] = c["dim"] // c["n_heads"]
    if c["head_dim"] % 2:
        raise ExportError(f"{path}: head_dim {c['head_dim']} is odd; RoPE needs an even head_dim")
    if c["n_heads"] % c["n_kv_heads"]:
        raise ExportError(f"{path}: num_attention_heads {c['n_heads']} is not a multiple of "
                          f"num_key_value_heads {c['n_kv_heads']}")
    hd = cfg.get("head_dim")
    if hd is not None and hd != c["head_dim"]:
        raise ExportError(f"{path}: head_dim {hd} != hidden_size/num_attention_heads "
                          f"({c['head_dim']}); not implemented")
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise ExportError(f"{path}: hidden_act '{act}' is not implemented (only silu)")
    if cfg.get("rope_scaling") is not None:
        raise ExportError(f"{path}: rope_scaling {cfg['rope_scaling']!r} is not implemented")
    for key in ("attention_bias", "mlp_bias"):
        if cfg.get(key):
            raise ExportError(f"{path}: {key}=true is not implemented (no biases in raktn)")
    if cfg.get("pretraining_tp", 1) not in (1, None):
        # pretraining_tp > 1 changes only how HF splits matmuls, not the math,
        # but it is rare enough that we say so rather than assume.
        log(f"export: note: {path}: pretraining_tp={cfg['pretraining_tp']} ignored (same math)")

    sw = cfg.get("sliding_window") if arch == "MistralForCausalLM" else None
    if sw is None:
        sw = 0
    if isinstance(sw, bool) or not isinstance(sw, int) or sw < 0:
        raise ExportError(f"{path}: bad sliding_window {cfg.get('sliding_window')!r}")
    if cfg.get("use_sliding_window") is False:   # Qwen-style switch; honour it
        sw = 0
    c["sliding_window"] = sw

    def token_id(key, default):
        v = cfg.get(key, default)
        if isinstance(v, list):       # some configs list several eos ids
            v = v[0] if v else None
        if v is None:
            return -1
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < c["vocab_size"]:
            raise ExportError(f"{path}: {key} {v!r} is outside the vocabulary")
        return v

    c["bos_id"] = token_id("bos_token_id", 1)
    c["eos_id"] = token_id("eos_token_id", 2)
    c["tied"] = bool(cfg.get("tie_word_embeddings", False))
    return c


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
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ExportError(f"{path}: too short to be a safetensors file ({size} bytes)")
            (hlen,) = struct.unpack("<Q", head)
            if hlen > 100 << 20 or 8 + hlen > size:
                raise ExportError(f"{path}: header length {hlen} runs past the end of "
                                  f"the file ({size} bytes)")
            raw = f.read(hlen)
    except OSError as e:
        raise ExportError(f"{path}: cannot read ({e.strerror})")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ExportError(f"{path}: safetensors header is not valid JSON ({e})")
    if not isinstance(header, dict):
        raise ExportError(f"{path}: safetensors header is not a JSON object")
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise ExportError(f"{path}: tensor '{name}': entry is not an object")
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str):
            raise ExportError(f"{path}: tensor '{name}': bad dtype {dtype!r}")
        if not (isinstance(shape, list) and all(isinstance(s, int) and not isinstance(s, bool)
                                                and s >= 0 for s in shape)):
            raise ExportError(f"{path}: tensor '{name}': bad shape {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2 and
                all(isinstance(o, int) and not isinstance(o, bool) for o in offs) and
                0 <= offs[0] <= offs[1]):
            raise ExportError(f"{path}: tensor '{name}': bad data_offsets {offs!r}")
        if base + offs[1] > size:
            raise ExportError(f"{path}: tensor '{name}': data_offsets {offs} run past the "
                              f"end of the file ({size} bytes)")
        if dtype in SRC_DTYPES and offs[1] - offs[0] != numel(shape) * SRC_DTYPES[dtype]:
            raise ExportError(f"{path}: tensor '{name}': {offs[1] - offs[0]} bytes of data "
                              f"for shape {shape} in {dtype}")
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
    if os.path.exists(index):
        try:
            with open(index, "r", encoding="utf-8") as f:
                wmap = json.load(f).get("weight_map")
        except (ValueError, UnicodeDecodeError, AttributeError, RecursionError) as e:
            raise ExportError(f"{index}: not a valid index ({e})")
        if not isinstance(wmap, dict) or not all(isinstance(v, str) for v in wmap.values()):
            raise ExportError(f"{index}: no 'weight_map' object of file names")
        files = sorted(set(wmap.values()))
        for fn in files:
            if os.path.basename(fn) != fn:
                raise ExportError(f"{index}: shard name '{fn}' is not a plain file name")
    elif os.path.exists(single):
        wmap, files = None, ["model.safetensors"]
    else:
        if any(n.endswith(".bin") and n.startswith("pytorch_model") for n in os.listdir(hf_dir)):
            raise ExportError(f"{hf_dir}: only pytorch_model*.bin (pickle) weights found; "
                              "raktn reads safetensors (convert with transformers first)")
        raise ExportError(f"{hf_dir}: no model.safetensors or model.safetensors.index.json")
    found = {}
    for fn in files:
        path = os.path.join(hf_dir, fn)
        if not os.path.exists(path):
            raise ExportError(f"{path}: shard named by the index is missing")
        for name, (dtype, shape, b, e) in read_safetensors_header(path).items():
            if wmap is not None and wmap.get(name, fn) != fn:
                continue   # the index says this tensor lives elsewhere
            if name in found:
                raise ExportError(f"{path}: tensor '{name}' also appears in {found[name][0]}")
            found[name] = (path, dtype, shape, b, e)
    if wmap is not None:
        for name, fn in wmap.items():
            if name not in found:
                raise ExportError(f"{os.path.join(hf_dir, fn)}: tensor '{name}' named by the "
                                  "index is not in this shard")
    return found


def check_tensors(plan, found, c):
    wanted = {name for name, _ in plan}
    for name, shape in plan:
        if name not in found:
            raise ExportError(f"tensor '{name}' is missing from the checkpoint")
        path, dtype, got, _, _ = found[name]
        if dtype not in SRC_DTYPES:
            raise ExportError(f"{path}: tensor '{name}': dtype {dtype} is not supported "
                              "(BF16, F16, F32)")
        if tuple(got) != tuple(shape):
            raise ExportError(f"{path}: tensor '{name}': shape {list(got)}, config implies "
                              f"{list(shape)}")
    for name in found:
        if name in wanted or name.endswith("rotary_emb.inv_freq"):
            continue            # inv_freq buffers are recomputed by raktn
        if name == "lm_head.weight" and c["tied"]:
            continue            # tied: HF ignores the stored copy and uses embed_tokens
        raise ExportError(f"{found[name][0]}: unexpected tensor '{name}' (not part of "
                          f"{c['arch']}; refusing to guess what it does)")


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


def header_bytes(c, dtype, file_size):
    h = MAGIC + struct.pack(
        "<IIIIIIIIIIIiiIffQQ",
        VERSION, DTYPE_CODES[dtype],
        c["dim"], c["hidden_dim"], c["n_layers"], c["n_heads"], c["n_kv_heads"],
        c["head_dim"], c["vocab_size"], c["max_seq_len"], c["sliding_window"],
        c["bos_id"], c["eos_id"], 1 if c["tied"] else 0,
        c["rope_theta"], c["rms_norm_eps"],
        HEADER_SIZE, file_size)
    return h + bytes(HEADER_SIZE - len(h))


class Progress:
    def __init__(self, total, quiet):
        self.total, self.done, self.quiet = total, 0, quiet
        self.t0 = self.last = time.monotonic()

    def add(self, n):
        self.done += n
        now = time.monotonic()
        if self.quiet or (now - self.last < 0.5 and self.done < self.total):
            return
        self.last = now
        dt = max(now - self.t0, 1e-9)
        rate = self.done / dt
        eta = (self.total - self.done) / rate if rate > 0 else 0
        sys.stderr.write(f"\rexport: {self.done / 1e6:9.1f} / {self.total / 1e6:.1f} MB read"
                         f"  {rate / 1e6:7.1f} MB/s  ETA {eta:5.0f} s ")
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def export_model(hf_dir, out_path, dtype="f32", quiet=False):
    c = read_config(hf_dir)
    plan = tensor_plan(c)
    found = locate_tensors(hf_dir)
    check_tensors(plan, found, c)
    if dtype == "bf16":
        not_bf16 = [n for n, _ in plan if found[n][1] != "BF16"]
        if not_bf16:
            raise ExportError(f"--dtype bf16 is lossless only for a bf16 checkpoint; "
                              f"'{not_bf16[0]}' is {found[not_bf16[0]][1]}")
    esize = 4 if dtype == "f32" else 2
    file_size = HEADER_SIZE + sum(padded(numel(s) * esize) for _, s in plan)
    total_in = sum(found[n][4] - found[n][3] for n, _ in plan)

    tmp = out_path + ".tmp"
    progress = Progress(total_in, quiet)
    name = "(header)"
    try:
        with open(tmp, "wb") as out:
            out.write(header_bytes(c, dtype, file_size))
            handles = {}
            try:
                for name, shape in plan:
                    path, src, _, begin, end = found[name]
                    f = handles.get(path) or handles.setdefault(path, open(path, "rb"))
                    f.seek(begin)
                    left = end - begin
                    while left > 0:
                        raw = f.read(min(CHUNK, left))
                        if not raw:
                            raise ExportError(f"{path}: tensor '{name}': file ended early")
                        left -= len(raw)
                        out.write(convert(raw, src, dtype))
                        progress.add(len(raw))
                    pad = padded(numel(shape) * esize) - numel(shape) * esize
                    out.write(bytes(pad))
            finally:
                for f in handles.values():
                    f.close()
            name = "(flush)"
            out.flush()
            os.fsync(out.fileno())
            if out.tell() != file_size:
                raise ExportError(f"{tmp}: wrote {out.tell()} bytes, expected {file_size}")
            # The pages just written stay in the page cache as small folios,
            # which raktn's mapping then maps with 4 KB pages for as long as
            # they stay cached (decode ~5% slower). Now that the data is on
            # disk they are dropped: the first run reads model.bin back in
            # 2 MB folios (Linux 6.x; notes/performance.md).
            if hasattr(os, "posix_fadvise"):
                try:
                    os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                except OSError:
                    pass    # a hint: a file system without it still has the file
        os.replace(tmp, out_path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            # a full disk (ENOSPC, EFBIG) or a failing read: say where
            where = e.filename or tmp
            raise ExportError(f"{where}: {e.strerror or e} (while writing tensor '{name}' "
                              f"to {tmp})") from e
        raise
    return c, file_size, total_in


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Export a Hugging Face Mistral/Llama checkpoint to raktn's model.bin "
                    "(+ tokenizer.bin).")
    ap.add_argument("hf_dir", help="checkpoint directory (config.json + *.safetensors)")
    ap.add_argument("out_dir", help="where model.bin and tokenizer.bin are written")
    ap.add_argument("--dtype", choices=("f32", "bf16"), default="f32",
                    help="weight storage: f32 (default) or bf16 (only from a bf16 "
                         "checkpoint; lossless, half the size)")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)
    try:
        if not os.path.isdir(args.hf_dir):
            raise ExportError(f"{args.hf_dir}: not a directory")
        os.makedirs(args.out_dir, exist_ok=True)
        t0 = time.monotonic()
        model_path = os.path.join(args.out_dir, "model.bin")
        c, size, total_in = export_model(args.hf_dir, model_path, args.dtype, args.quiet)
        dt = time.monotonic() - t0
        log(f"export: wrote {model_path} ({size} bytes, {args.dtype}; {c['n_layers']} layers, "
            f"dim {c['dim']}, vocab {c['vocab_size']}) in {dt:.1f} s, "
            f"{total_in / 1e6 / max(dt, 1e-9):.1f} MB/s of input")
        try:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from tokenizer_export import export_tokenizer
        except ImportError:
            log("export: warning: tokenizer export unavailable; model.bin only")
        else:
            export_tokenizer(args.hf_dir, os.path.join(args.out_dir, "tokenizer.bin"), log)
    except ExportError as e:
        log(f"export: error: {e}")
        return 1
    except ValueError as e:         # tokenizer_export reports bad input this way
        log(f"export: error: {e}")
        return 1
    except OSError as e:
        log(f"export: error: {e.filename or ''}: {e.strerror}")
        return 1
    except KeyboardInterrupt:
        log("export: interrupted; nothing written")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
