#!/usr/bin/env python3
"""tests/explain_ref.py - the float64 expectation for raktn's -m explain and
for the trained model's greedy continuation, from tests/ref64.py's numpy
forward pass (written from transformers' modeling_mistral.py, independently
of raktn.c).

    /usr/bin/python3 tests/explain_ref.py HF_DIR --ids "1 2 3" [--explain OUT.json]
        [--greedy N --logits OUT.f32]

--explain: for every layer and position what explain reports, in float64:
  embed_rms, and per layer resid_rms, mid_rms, attn_rms, mlp_rms (RMS of the
  stream after the layer, after attention, of o_proj's and of down_proj's
  output), attention [H][n][n] (0 where masked) and the logit lens: the top
  10 ids and probabilities of softmax(lm_head(model.norm(layer output))).
--greedy N: N greedy tokens after the ids (argmax of the float64 logits,
  each step a full forward), with the smallest top-1/top-2 logit gap seen
  along the way; --logits writes the float64 logits of ids + continuation,
  rounded to float32, [n, vocab] little-endian.
Needs numpy (Debian: python3-numpy); the suite reads the committed outputs.
"""
import argparse
import json

import numpy as np

import ref64

TOP = 10


def rms(x):
    return np.sqrt(np.mean(x * x, axis=-1))


def explain(cfg, W, ids):
    keep = {}
    logits = ref64.forward(cfg, W, np.array(ids), keep=keep)
    eps = float(cfg["rms_norm_eps"])
    lm = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    layers, before = [], keep["embed"]
    for l, out in enumerate(keep["layer"]):
        o, d = keep["o_proj"][l], keep["down_proj"][l]
        z = ref64.rmsnorm(out, W["model.norm.weight"], eps) @ lm.T
        assert l < len(keep["layer"]) - 1 or np.allclose(z, logits)
        p = np.exp(z - z.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        top = np.argsort(-p, axis=-1, kind="stable")[:, :TOP]
        layers.append({
            "resid_rms": rms(out).tolist(), "mid_rms": rms(before + o).tolist(),
            "attn_rms": rms(o).tolist(), "mlp_rms": rms(d).tolist(),
            "lens": [{"ids": t.tolist(), "probs": p[i, t].tolist()} for i, t in enumerate(top)],
            "attention": keep["attn_weights"][l].tolist(),
        })
        before = out
    return {"source": "tests/explain_ref.py: float64 numpy (tests/ref64.py's forward)", "ids": ids,
            "embed_rms": rms(keep["embed"]).tolist(), "layers": layers}


def rounded(x):
    if isinstance(x, float):
        return float(f"{x:.13g}")
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [rounded(v) for v in x]
    return x


def greedy(cfg, W, ids, steps):
    seq, gap = list(ids), float("inf")
    for _ in range(steps):
        z = ref64.forward(cfg, W, np.array(seq))[-1]
        a, b = np.sort(z)[-2:]
        gap = min(gap, float(b - a))
        seq.append(int(np.argmax(z)))
    return seq, gap


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hf")
    ap.add_argument("--ids", required=True)
    ap.add_argument("--explain")
    ap.add_argument("--greedy", type=int, default=0)
    ap.add_argument("--logits")
    a = ap.parse_args()
    cfg = json.load(open(f"{a.hf}/config.json"))
    W = ref64.load_safetensors(f"{a.hf}/model.safetensors")
    ids = [int(t) for t in a.ids.split()]
    if a.explain:
        with open(a.explain, "w") as f:  # 13 digits: far below any tolerance, half the bytes
            json.dump(rounded(explain(cfg, W, ids)), f)
    if a.greedy:
        seq, gap = greedy(cfg, W, ids, a.greedy)
        print(json.dumps({"prompt": ids, "greedy": seq[len(ids):], "min_top2_gap": gap}))
        if a.logits:
            ref64.forward(cfg, W, np.array(seq)).astype("<f4").tofile(a.logits)


if __name__ == "__main__":
    main()
