#!/usr/bin/env python3
"""tests/ref64.py - MistralForCausalLM's forward pass in float64 with numpy,
written from the model's definition (transformers' modeling_mistral.py),
independently of raktn.c: the reference that raktn's truth build
(make truth: every quantity in double) is held to.

    /usr/bin/python3 tests/ref64.py HF_DIR "1 2 3 ..." OUT.logits.f64

Reads config.json and model.safetensors (bf16, fp16 or fp32, one file) of
a checkpoint, runs the whole sequence at positions 0..n-1 and writes every
position's logits as raw little-endian float64, [n, vocab]. Every quantity
is float64: the weights widened exactly, RoPE's inverse frequencies and
angles, the eps as config.json gives it. Needs numpy (Debian:
python3-numpy); the suite reads the committed outputs and needs nothing.
"""
import json
import struct
import sys

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        raw = data[a:b]
        if t["dtype"] == "BF16":
            x = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif t["dtype"] == "F16":
            x = np.frombuffer(raw, "<f2")
        elif t["dtype"] == "F32":
            x = np.frombuffer(raw, "<f4")
        else:
            raise SystemExit(f"{path}: {name}: dtype {t['dtype']} not handled")
        out[name] = x.astype(np.float64).reshape(t["shape"])
    return out


def rmsnorm(x, w, eps):
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def forward(cfg, W, ids, keep=None):
    """The logits [n, vocab]; keep (a dict) also gets, per layer, what
    explain shows: "embed", and lists "attn_weights" [H, n, n], "o_proj",
    "down_proj", "layer" (each [n, dim])."""
    n = len(ids)
    D, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = D // H
    eps = float(cfg["rms_norm_eps"])
    window = cfg.get("sliding_window") or 0
    inv_freq = 1.0 / (float(cfg.get("rope_theta", 10000.0)) ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    angles = np.outer(np.arange(n, dtype=np.float64), inv_freq)  # [n, hd/2]
    emb = np.concatenate([angles, angles], axis=-1)
    cos, sin = np.cos(emb), np.sin(emb)
    # position p sees keys max(0, p - window + 1) .. p
    p = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    visible = (t <= p) & ((t > p - window) if window else True)
    x = W["model.embed_tokens.weight"][ids]
    if keep is not None:
        keep.update(embed=x, attn_weights=[], o_proj=[], down_proj=[], layer=[])
    for l in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{l}."
        h = rmsnorm(x, W[pre + "input_layernorm.weight"], eps)
        q = (h @ W[pre + "self_attn.q_proj.weight"].T).reshape(n, H, hd).transpose(1, 0, 2)
        k = (h @ W[pre + "self_attn.k_proj.weight"].T).reshape(n, KV, hd).transpose(1, 0, 2)
        v = (h @ W[pre + "self_attn.v_proj.weight"].T).reshape(n, KV, hd).transpose(1, 0, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, H // KV, axis=0)  # repeat_kv: head h reads KV head h // (H / KV)
        v = np.repeat(v, H // KV, axis=0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        s = np.where(visible, s, -np.inf)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s = s / s.sum(axis=-1, keepdims=True)
        att = (s @ v).transpose(1, 0, 2).reshape(n, H * hd)
        o = att @ W[pre + "self_attn.o_proj.weight"].T
        x = x + o
        h = rmsnorm(x, W[pre + "post_attention_layernorm.weight"], eps)
        g = h @ W[pre + "mlp.gate_proj.weight"].T
        u = h @ W[pre + "mlp.up_proj.weight"].T
        d = ((g / (1 + np.exp(-g))) * u) @ W[pre + "mlp.down_proj.weight"].T
        x = x + d
        if keep is not None:
            for name, value in (("attn_weights", s), ("o_proj", o), ("down_proj", d), ("layer", x)):
                keep[name].append(value)
    x = rmsnorm(x, W["model.norm.weight"], eps)
    lm = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return x @ lm.T


def main():
    args = sys.argv[1:]
    if len(args) != 3:
        raise SystemExit(__doc__)
    hf, ids, out = args[0], [int(t) for t in args[1].split()], args[2]
    cfg = json.load(open(f"{hf}/config.json"))
    logits = forward(cfg, load_safetensors(f"{hf}/model.safetensors"), np.array(ids))
    logits.astype("<f8").tofile(out)


if __name__ == "__main__":
    main()
