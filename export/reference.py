#!/usr/bin/env python3
"""Reference logits, hidden states and module dumps from Hugging Face transformers.

  reference.py HF_DIR (--ids "1 2 3" | --ids-file F | --text "...") [-o PREFIX] [--npy]
               [--dump DIR] [--dtype float32|float64] [--generate N]
               [--loader auto|safetensors|builtin] [--threads T]

Runs transformers' own MistralForCausalLM (or LlamaForCausalLM, per
config.json), eager attention, float32 on the CPU, sliding window as in the
config, over the whole token sequence in one forward (batch 1, positions
0..n-1, no cache), and writes:

  PREFIX.logits.f32  raw little-endian float32 [n_tokens, vocab], every position
  PREFIX.hidden.f32  raw little-endian float32 [n_layers+1, n_tokens, hidden] with
                     HF output_hidden_states meaning: [0] = embeddings, [k] =
                     output of layer k-1, the LAST entry after the final RMSNorm
  PREFIX.ids         the token ids, one line, space separated
  PREFIX.json        ids, shapes, versions, argmax per position, timings

--npy (or -o PREFIX.npy) writes PREFIX.logits.npy and PREFIX.hidden.npy instead
of the raw files: NumPy .npy, '<f4', C order, the shape in the header.

--dump DIR writes one .npy per module output, named by its Hugging Face module
path, from forward hooks on that same forward (notes/verification.md has the
table): DIR/model.embed_tokens.npy, for every layer L model.layers.L.
{input_layernorm, self_attn.q_proj, .k_proj, .v_proj, .q_rope, .k_rope,
.attn_weights, .attn_output, .o_proj, post_attention_layernorm, mlp.gate_proj,
.up_proj, .act_fn, .down_proj} and model.layers.L (the layer's output),
model.norm, lm_head; [n_tokens, features] float32, attn_weights [n_heads, n, n].
q_rope/k_rope are what transformers' own apply_rotary_pos_emb returns inside
the attention (captured by wrapping that function of the loaded modeling
module), attn_weights are output_attentions (eager softmax, 0 where masked),
attn_output is o_proj's input (a forward pre-hook).  DIR/dump.json lists the
names in forward order with the ids and versions.

--dtype float64 runs the model in double (model.double()) and writes '<f8'
.npy files (--npy implied): a measuring aid, not an exact float64 truth, since
transformers itself keeps some steps in float32 (4.38: RMSNorm's variance and
normalization, the eager softmax, the RoPE cos/sin tables): those steps carry
float32 rounding (~6e-8 relative).

With --generate N it first runs HF greedy generation
(generate(do_sample=False, max_new_tokens=N)) from the given ids, records the
generated ids, and then does the forward over prompt + generated tokens.  It
also reports whether the greedy ids equal the argmax chain of that forward.

Checkpoints: config.json + model.safetensors, or shards named by
model.safetensors.index.json; BF16/F16/F32 tensors (widened exactly to fp32);
tied embeddings (no lm_head.weight) are tied with model.tie_weights().
The `safetensors` package is used when importable (--loader auto), otherwise a
small built-in reader.

Installing (Debian/Ubuntu; torch from the distribution, transformers pinned):
  sudo apt-get install python3-torch python3-numpy python3-venv
  python3 -m venv --system-site-packages ~/hfref && ~/hfref/bin/pip install "transformers==4.38.2"
  ~/hfref/bin/python export/reference.py HF_DIR --ids "1 2 3" -o ref
transformers 4.39, 4.40 and 4.41 are refused: their Mistral sliding window
lets position p see W+1 keys (p-W..p) instead of W, so every position from W
on is wrong.  4.38.2 made the committed fixtures; 4.44.2 was checked too.
Without torch at all, use the committed fixtures (tests/fixtures/README.md):
transformers' outputs for random-weight checkpoints that tests/make_checkpoint.py
regenerates bit for bit with the standard library.

RAKTN_HF_PATH (a list of directories separated by os.pathsep) is put in front
of sys.path first, e.g. RAKTN_HF_PATH=/tmp/hfref/transformers/src:/tmp/hfref/site
(a source tree and its support packages).  When the `tokenizers` package is
absent, the `sentencepiece` module is hidden from transformers while it imports
(otherwise transformers 4.38 believes slow tokenizers work and its models
package fails to import `tokenizers`); --text then falls back to sentencepiece
on HF_DIR/tokenizer.model directly ([BOS] + encode(text), which is what
LlamaTokenizer does for the Mistral/RakutenAI family).

Needs torch and numpy; tested with transformers 4.38.2 and 4.44.2, torch 1.13.
"""
import argparse
import json
import os
import re
import struct
import sys
import time

ST_DTYPES = ("BF16", "F16", "F32")


def die(msg, code=2):
    print(f"reference.py: error: {msg}", file=sys.stderr)
    sys.exit(code)


# ----------------------------------------------------------------- imports
def import_stack():
    """Import torch, numpy and transformers; returns (torch, np, transformers, spm or None)."""
    extra = os.environ.get("RAKTN_HF_PATH")
    if extra:
        sys.path[:0] = [p for p in extra.split(os.pathsep) if p]
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        import numpy as np
        import torch
    except ImportError as e:
        die(f"needs torch and numpy ({e})")
    spm = None
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        try:
            import sentencepiece as spm  # kept for --text; hidden from transformers
        except ImportError:
            spm = None
        sys.modules["sentencepiece"] = None
    try:
        import transformers
    except Exception as e:  # ImportError, or a version check inside transformers
        die(f"cannot import transformers ({type(e).__name__}: {e}); install it or set RAKTN_HF_PATH")
    return torch, np, transformers, spm


BROKEN_WINDOW = ((4, 39), (4, 41))  # W+1 keys in the Mistral sliding window


def check_version(transformers, allow):
    """Refuse transformers 4.39-4.41 (wrong sliding window) unless allow."""
    v = transformers.__version__
    m = re.match(r"(\d+)\.(\d+)", v)
    if not m:
        print(f"reference.py: warning: cannot parse transformers version {v!r}", file=sys.stderr)
        return None
    mm = (int(m.group(1)), int(m.group(2)))
    if BROKEN_WINDOW[0] <= mm <= BROKEN_WINDOW[1]:
        msg = (f"transformers {v} gets Mistral's sliding window wrong (W+1 keys: position p sees p-W..p), "
               "so its output is wrong from position W on; use 4.38.2 (pinned) or 4.42+")
        if not allow:
            die(msg + " (--allow-broken-window to run it anyway)")
        print(f"reference.py: warning: {msg}", file=sys.stderr)
        return msg
    return None


def transformers_commit(transformers):
    """The git commit of a source tree, when it says (a COMMIT file next to src/)."""
    d = os.path.dirname(os.path.abspath(transformers.__file__))
    for up in (os.path.join(d, "..", "..", "COMMIT"), os.path.join(d, "..", "COMMIT")):
        if os.path.isfile(up):
            with open(up) as f:
                return f.read().strip()
    return None


# ----------------------------------------------------------------- weights
def read_safetensors_builtin(path, torch):
    """Our own reader: {name: fp32 tensor}."""
    out = {}
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            die(f"{path}: not a safetensors file")
        n = struct.unpack("<Q", head)[0]
        try:
            hdr = json.loads(f.read(n))
        except ValueError:
            die(f"{path}: bad safetensors header")
        data = f.read()
    tdt = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
    for name, e in hdr.items():
        if name == "__metadata__":
            continue
        if e["dtype"] not in ST_DTYPES:
            die(f"{path}: {name}: dtype {e['dtype']} not supported (BF16, F16, F32)")
        a, b = e["data_offsets"]
        if b > len(data) or a > b:
            die(f"{path}: {name}: data offsets beyond the file")
        if sys.byteorder != "little":
            die("the built-in safetensors reader needs a little-endian machine")
        raw = bytearray(data[a:b])
        t = torch.frombuffer(raw, dtype=tdt[e["dtype"]]) if raw else torch.empty(0, dtype=tdt[e["dtype"]])
        out[name] = t.reshape(e["shape"]).float()
    return out


def read_safetensors(path, torch, loader):
    if loader in ("auto", "safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError:
            if loader == "safetensors":
                die("--loader safetensors: the safetensors package is not importable")
        else:
            return {k: v.float() for k, v in load_file(path).items()}, "safetensors"
    return read_safetensors_builtin(path, torch), "builtin"


def load_state_dict(d, torch, loader):
    idx = os.path.join(d, "model.safetensors.index.json")
    single = os.path.join(d, "model.safetensors")
    if os.path.isfile(idx):
        with open(idx) as f:
            wmap = json.load(f)["weight_map"]
        sd = {}
        used = None
        for fn in sorted(set(wmap.values())):
            part, used = read_safetensors(os.path.join(d, fn), torch, loader)
            for k in part:
                if wmap.get(k) != fn:
                    die(f"{fn}: tensor {k} is not mapped to this shard by the index")
            sd.update(part)
        missing = sorted(set(wmap) - set(sd))
        if missing:
            die(f"index names tensors missing from the shards: {missing[:3]}")
        return sd, used, sorted(set(wmap.values()))
    if os.path.isfile(single):
        sd, used = read_safetensors(single, torch, loader)
        return sd, used, ["model.safetensors"]
    die(f"{d}: neither model.safetensors nor model.safetensors.index.json")


def build_model(d, torch, transformers, loader, dtype="float32"):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    mt = cfg.get("model_type")
    classes = {"mistral": ("MistralConfig", "MistralForCausalLM"),
               "llama": ("LlamaConfig", "LlamaForCausalLM")}
    if mt not in classes:
        die(f"model_type {mt!r} not supported (mistral, llama)")
    config_cls = getattr(transformers, classes[mt][0])
    model_cls = getattr(transformers, classes[mt][1])
    ckpt_dtype = cfg.get("torch_dtype")
    config = config_cls(**dict(cfg, torch_dtype="float32"))
    config._attn_implementation = "eager"
    torch.set_default_dtype(torch.float32)
    try:
        from transformers.modeling_utils import no_init_weights
    except ImportError:  # older/newer layouts: just pay for the random init
        import contextlib
        no_init_weights = contextlib.nullcontext
    with no_init_weights():
        model = model_cls(config)
    sd, used, files = load_state_dict(d, torch, loader)
    res = model.load_state_dict(sd, strict=False)
    missing = list(res.missing_keys)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    if tied and "lm_head.weight" in missing:
        missing.remove("lm_head.weight")
    unexpected = [k for k in res.unexpected_keys if not k.endswith("rotary_emb.inv_freq")]
    if missing or unexpected:
        die(f"state dict mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    if tied:
        model.tie_weights()
        if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
            die("tie_weights() did not tie lm_head to embed_tokens")
    del sd
    model.to(torch.float64 if dtype == "float64" else torch.float32).eval()
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        die(f"attention implementation is {model.config._attn_implementation}, wanted eager")
    return model, dict(cfg, checkpoint_dtype=ckpt_dtype), used, files


# ----------------------------------------------------------------- dumps
# Inside a decoder layer, in forward order ("" is the layer's own output). Keep
# identical to raktn's --dump and to LAYER_ORDER in export/compare.py.
LAYER_DUMP = ["input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
              "self_attn.q_rope", "self_attn.k_rope", "self_attn.attn_weights",
              "self_attn.attn_output", "self_attn.o_proj", "post_attention_layernorm",
              "mlp.gate_proj", "mlp.up_proj", "mlp.act_fn", "mlp.down_proj", ""]


def dump_names(n_layers):
    names = ["model.embed_tokens"]
    for layer in range(n_layers):
        names += [f"model.layers.{layer}" + (f".{sub}" if sub else "") for sub in LAYER_DUMP]
    return names + ["model.norm", "lm_head"]


class Dumper:
    """Forward hooks (and pre-hooks where the tensor is a module's input) that
    keep every dumped tensor of one forward as [n_tokens, features]."""

    def __init__(self, model, torch):
        self.t = {}
        self.handles = []
        self.current = None  # the layer whose self_attn is running (for q_rope/k_rope)
        inner = model.model
        self.modeling = sys.modules[type(model).__module__]
        self.n_layers = len(inner.layers)

        def keep(name, x):
            if name in self.t:
                raise RuntimeError(f"{name} produced twice in one forward")
            self.t[name] = x.detach()[0].clone()  # batch 1: drop the batch axis

        def out_hook(name):
            def h(mod, inp, out):
                keep(name, out[0] if isinstance(out, tuple) else out)
            return h

        def in_hook(name):
            def h(mod, inp):
                keep(name, inp[0])
            return h

        def hook(mod, name, pre=False):
            self.handles.append(mod.register_forward_pre_hook(in_hook(name)) if pre
                                else mod.register_forward_hook(out_hook(name)))

        hook(inner.embed_tokens, "model.embed_tokens")
        acts = set()
        for i, layer in enumerate(inner.layers):
            pre = f"model.layers.{i}"
            at, mlp = layer.self_attn, layer.mlp
            hook(layer.input_layernorm, pre + ".input_layernorm")
            for lin in ("q_proj", "k_proj", "v_proj", "o_proj"):
                hook(getattr(at, lin), f"{pre}.self_attn.{lin}")
            hook(at.o_proj, pre + ".self_attn.attn_output", pre=True)
            hook(layer.post_attention_layernorm, pre + ".post_attention_layernorm")
            for lin in ("gate_proj", "up_proj", "down_proj"):
                hook(getattr(mlp, lin), f"{pre}.mlp.{lin}")
            if id(mlp.act_fn) in acts:
                raise RuntimeError("layers share one act_fn module: its hook cannot tell them apart")
            acts.add(id(mlp.act_fn))
            hook(mlp.act_fn, pre + ".mlp.act_fn")
            hook(layer, pre)
            self.handles.append(at.register_forward_pre_hook(self._enter(i)))
        hook(inner.norm, "model.norm")
        hook(model.lm_head, "lm_head")

        # q/k after RoPE: wrap the modeling module's own apply_rotary_pos_emb,
        # which the attention calls on the q_proj/k_proj outputs ([1, heads, n, head_dim]).
        self.orig_rope = getattr(self.modeling, "apply_rotary_pos_emb", None)
        if self.orig_rope is None:
            raise RuntimeError(f"{self.modeling.__name__} has no apply_rotary_pos_emb")
        orig = self.orig_rope

        def rope(q, k, *args, **kwargs):
            qe, ke = orig(q, k, *args, **kwargs)
            if self.current is None:
                raise RuntimeError("apply_rotary_pos_emb called outside a self_attn forward")
            for nm, x in (("q_rope", qe), ("k_rope", ke)):
                b, h, n, d = x.shape
                keep(f"model.layers.{self.current}.self_attn.{nm}", x.transpose(1, 2).reshape(b, n, h * d))
            self.current = None
            return qe, ke
        self.modeling.apply_rotary_pos_emb = rope

    def _enter(self, i):
        def h(mod, inp):
            self.current = i
        return h

    def close(self):
        for h in self.handles:
            h.remove()
        self.modeling.apply_rotary_pos_emb = self.orig_rope

    def finish(self, attentions):
        """Add output_attentions' [n_heads, n, n] per layer; check every name is there."""
        if attentions is None or len(attentions) != self.n_layers:
            raise RuntimeError("output_attentions gave no attention weights (eager attention needed)")
        for i, w in enumerate(attentions):
            self.t[f"model.layers.{i}.self_attn.attn_weights"] = w.detach()[0]
        want = dump_names(self.n_layers)
        missing = [n for n in want if n not in self.t]
        extra = [n for n in self.t if n not in set(want)]
        if missing or extra:
            raise RuntimeError(f"dump incomplete: missing {missing[:4]} extra {extra[:4]}")
        return want


def write_npy(path, arr, np):
    """NumPy .npy (format 1.0, little-endian, C order)."""
    arr = np.ascontiguousarray(arr)
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    np.save(path, arr, allow_pickle=False)


# ----------------------------------------------------------------- tokens
def parse_ids(s):
    try:
        return [int(t) for t in s.replace(",", " ").split()]
    except ValueError:
        die("--ids: token ids must be integers")


def tokenize(d, text, transformers, spm):
    try:
        tok = transformers.AutoTokenizer.from_pretrained(d)
        return tok(text)["input_ids"], f"AutoTokenizer ({type(tok).__name__})"
    except Exception as e:
        msg = str(e).strip().splitlines()
        why = f"{type(e).__name__}: {msg[0] if msg else 'no message'}"
    model_file = os.path.join(d, "tokenizer.model")
    if spm is not None and os.path.isfile(model_file):
        sp = spm.SentencePieceProcessor(model_file=model_file)
        print(f"note: AutoTokenizer unavailable ({why}); using sentencepiece on {model_file}: "
              "[BOS] + encode(text)", file=sys.stderr)
        return [sp.bos_id()] + sp.encode(text, out_type=int), "sentencepiece fallback ([BOS] + encode)"
    die(f"--text needs AutoTokenizer (failed: {why}) or sentencepiece + {model_file}; pass --ids instead")


# ----------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hf_dir")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--ids", help='token ids, e.g. "1 2 3"')
    g.add_argument("--ids-file", help="file holding the token ids (whitespace/comma separated)")
    g.add_argument("--text", help="text to tokenize (AutoTokenizer, or sentencepiece fallback)")
    ap.add_argument("-o", "--out", metavar="PREFIX",
                    help="output prefix (PREFIX.logits.f32 ...; PREFIX.npy means --npy)")
    ap.add_argument("--npy", action="store_true", help="write PREFIX.logits.npy / PREFIX.hidden.npy")
    ap.add_argument("--dump", metavar="DIR", help="write every module's output as DIR/<HF module path>.npy")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                    help="compute dtype (float64: a measuring aid, see above; implies --npy)")
    ap.add_argument("--allow-broken-window", action="store_true",
                    help="run transformers 4.39-4.41 anyway (their sliding window is wrong)")
    ap.add_argument("--generate", type=int, default=0, metavar="N",
                    help="greedy-generate N new tokens with HF generate() first")
    ap.add_argument("--loader", choices=["auto", "safetensors", "builtin"], default="auto")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--name", help="checkpoint name for the JSON (default: basename of HF_DIR)")
    a = ap.parse_args()
    if not os.path.isfile(os.path.join(a.hf_dir, "config.json")):
        die(f"{a.hf_dir}: no config.json")
    if a.generate < 0:
        die("--generate must be >= 0")
    if not a.out and not a.dump:
        die("give -o PREFIX and/or --dump DIR")
    if a.out and a.out.endswith(".npy"):
        a.out, a.npy = a.out[:-4], True
    if a.dtype == "float64":
        a.npy = True

    torch, np, transformers, spm = import_stack()
    version_warning = check_version(transformers, a.allow_broken_window)
    torch.set_num_threads(max(1, a.threads))

    tok_note = None
    if a.text is not None:
        ids, tok_note = tokenize(a.hf_dir, a.text, transformers, spm)
    elif a.ids_file is not None:
        try:
            with open(a.ids_file) as f:
                ids = parse_ids(f.read())
        except OSError as e:
            die(f"{a.ids_file}: {e.strerror}")
    else:
        ids = parse_ids(a.ids)
    if not ids:
        die("no token ids")

    t0 = time.time()
    model, cfg, loader_used, files = build_model(a.hf_dir, torch, transformers, a.loader, a.dtype)
    t_load = time.time() - t0
    config = model.config
    V, H, L = config.vocab_size, config.hidden_size, config.num_hidden_layers
    if min(ids) < 0 or max(ids) >= V:
        die(f"token id out of range [0, {V})")

    prompt = list(ids)
    gen = None
    t_gen = None
    if a.generate:
        t1 = time.time()
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt], dtype=torch.long),
                                 attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                 do_sample=False, num_beams=1, max_new_tokens=a.generate,
                                 eos_token_id=config.eos_token_id,
                                 pad_token_id=config.eos_token_id if config.eos_token_id is not None else 0)
        t_gen = time.time() - t1
        full = [int(t) for t in out[0]]
        if full[:len(prompt)] != prompt:
            die("generate() output does not start with the prompt")
        gen = full[len(prompt):]
        ids = full

    if a.dtype == "float64":
        torch.set_default_dtype(torch.float64)  # the masks transformers builds in the forward
    dumper = None
    if a.dump:
        try:
            dumper = Dumper(model, torch)
        except RuntimeError as e:
            die(f"--dump: {e}")
    # lm_head's own output: transformers casts the returned logits to float32
    # (logits.float()), which would round a float64 run
    head_out = []
    h_head = model.lm_head.register_forward_hook(lambda mod, inp, o: head_out.append(o.detach()[0]))
    t2 = time.time()
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False,
                        output_hidden_states=True, output_attentions=bool(a.dump), return_dict=True)
        names = dumper.finish(out.attentions) if dumper else None
    except RuntimeError as e:
        die(f"--dump: {e}" if dumper else str(e))
    finally:
        h_head.remove()
        if dumper:
            dumper.close()
    t_fwd = time.time() - t2

    odt = "<f8" if a.dtype == "float64" else "<f4"
    if len(head_out) != 1 or not torch.equal(head_out[0].float(), out.logits[0].float()):
        die("lm_head's output and the forward's logits differ")
    logits = head_out[0].contiguous().numpy().astype(odt)
    hidden = np.stack([h[0].numpy() for h in out.hidden_states]).astype(odt)
    if logits.shape != (len(ids), V) or hidden.shape != (L + 1, len(ids), H):
        die(f"unexpected output shapes {logits.shape} {hidden.shape}")
    argmax = [int(t) for t in logits.argmax(-1)]
    ext = ".npy" if a.npy else ".f32"
    if a.out:
        d = os.path.dirname(a.out)
        if d:
            os.makedirs(d, exist_ok=True)
        if a.npy:
            write_npy(a.out + ".logits.npy", logits, np)
            write_npy(a.out + ".hidden.npy", hidden, np)
        else:
            logits.tofile(a.out + ".logits.f32")
            hidden.tofile(a.out + ".hidden.f32")
        with open(a.out + ".ids", "w") as f:
            f.write(" ".join(str(t) for t in ids) + "\n")
    if a.dump:
        os.makedirs(a.dump, exist_ok=True)
        for nm in names:
            write_npy(os.path.join(a.dump, nm + ".npy"), dumper.t[nm].numpy().astype(odt), np)
        # the dump's logits and final hidden state are the forward's own outputs
        if not (np.array_equal(dumper.t["lm_head"].numpy().astype(odt), logits)
                and np.array_equal(dumper.t["model.norm"].numpy().astype(odt), hidden[-1])):
            die("--dump: hooked lm_head/model.norm differ from the forward's logits/hidden states")

    meta = {
        "generator": "export/reference.py",
        "checkpoint": a.name or os.path.basename(os.path.normpath(a.hf_dir)),
        "model_class": type(model).__name__,
        "model_type": cfg.get("model_type"),
        "checkpoint_dtype": cfg.get("checkpoint_dtype"),
        "checkpoint_files": files,
        "loader": loader_used,
        "transformers": transformers.__version__,
        "transformers_commit": transformers_commit(transformers),
        "torch": torch.__version__,
        "attn_implementation": "eager",
        "compute_dtype": ("float32 (weights widened exactly to fp32), CPU" if a.dtype == "float32" else
                          "float64 (model.double(); transformers' own float32 steps stay float32), CPU"),
        "sliding_window": getattr(config, "sliding_window", None),
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "n_layers": L, "hidden": H, "vocab": V, "n_tokens": len(ids),
        "ids": ids,
        "logits_file": os.path.basename(a.out) + ".logits" + ext if a.out else None,
        "logits_shape": [len(ids), V],
        "logits_format": (f"NumPy .npy '{odt}' C order" if a.npy else "raw little-endian float32")
                         + ", row-major [n_tokens, vocab]",
        "hidden_file": os.path.basename(a.out) + ".hidden" + ext if a.out else None,
        "hidden_shape": [L + 1, len(ids), H],
        "hidden_format": (f"NumPy .npy '{odt}' C order" if a.npy else "raw little-endian float32")
                         + " [n_layers+1, n_tokens, hidden]; [0]=embeddings, "
                         "[k]=output of layer k-1, last entry after the final RMSNorm (HF output_hidden_states)",
        "argmax": argmax,
        "logits_absmax": float(np.abs(logits).max()),
        "timing_s": {"load": round(t_load, 3), "forward": round(t_fwd, 3)},
    }
    if version_warning:
        meta["version_warning"] = version_warning
    if a.dump:
        meta["dump_dir"] = a.dump
        meta["dump_names"] = names
        meta["dump_format"] = (f"DIR/<name>.npy, '{odt}' C order, [n_tokens, features]; "
                               "*.self_attn.attn_weights [n_heads, n_tokens, n_tokens]")
    if tok_note:
        meta["text"] = a.text
        meta["tokenizer"] = tok_note
    if gen is not None:
        n0 = len(prompt)
        chain = argmax[n0 - 1:len(ids) - 1]
        mism = [i for i, (g_, c) in enumerate(zip(gen, chain)) if g_ != c]
        meta["generate"] = {
            "call": f"generate(do_sample=False, num_beams=1, max_new_tokens={a.generate}, "
                    f"eos_token_id={config.eos_token_id}) with KV cache",
            "prompt_ids": prompt,
            "generated_ids": gen,
            "stopped_at_eos": len(gen) < a.generate,
            "equals_full_forward_argmax_chain": not mism,
            "first_mismatch_step": mism[0] if mism else None,
        }
        meta["timing_s"]["generate"] = round(t_gen, 3)
    for path in ([a.out + ".json"] if a.out else []) + ([os.path.join(a.dump, "dump.json")] if a.dump else []):
        with open(path, "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")

    print(f"transformers {transformers.__version__} ({meta['transformers_commit'] or 'commit unknown'}), "
          f"torch {torch.__version__}, {type(model).__name__}, eager {a.dtype}, "
          f"sliding_window={meta['sliding_window']}, loader={loader_used}")
    print(f"n_tokens={len(ids)} vocab={V} layers={L} hidden={H} load={t_load:.2f}s forward={t_fwd:.3f}s"
          + (f" generate={t_gen:.2f}s" if t_gen is not None else ""))
    if gen is not None:
        print("generated:", " ".join(map(str, gen)))
        print("greedy ids == argmax chain of the full forward:", meta["generate"]["equals_full_forward_argmax_chain"])
    print("argmax:", " ".join(map(str, argmax)))
    if a.out:
        print(f"wrote {a.out}.logits{ext} {a.out}.hidden{ext} {a.out}.ids {a.out}.json")
    if a.dump:
        print(f"wrote {len(names)} modules to {a.dump}/ (and {a.dump}/dump.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
