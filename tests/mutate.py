#!/usr/bin/env python3
"""tests/mutate.py - how strong is the test suite? Mutation testing.

Each mutant below is one small, deliberate bug (exact old text -> new text in
one file). For each, the script copies the repository into a scratch folder,
applies the mutant, rebuilds (make raktn + the Check programs of the
Makefile's TESTS), runs the suite and reports whether the suite notices
(the mutant is "killed": some test fails, crashes or times out) and which
test noticed first. A mutant that survives is a bug the suite would let
through, unless it is equivalent (marked so below, with the reason).

Usage (from anywhere; standard-library Python 3, needs what `make test` needs):
    python3 tests/mutate.py               all mutants, one at a time (~15-40 min)
    python3 tests/mutate.py --list        the list, and whether each applies
    python3 tests/mutate.py --only S1,G2  a subset
    python3 tests/mutate.py -j 2          two scratch copies in parallel
Options: --keep (leave the scratch folders), --timeout S (per test program,
default 300), --verbose (print each failing test's output).

Not run by `make test` or CI (too slow). Run it after every restructuring:
a mutant whose old text is no longer found exactly once (or exactly its
`count` times) is reported NOT APPLIED, so the list must then be edited
(MUTANTS, below) to follow the code: keep each mutant's intent, change its
text.

The fast path: the test programs run in FAST_ORDER (quick ones first), then
the Python unittests, and a mutant's run stops at the first failing program.
tests/work (the generated checkpoints, tests/prepare.sh) is shared with the
scratch copies through symbolic links, so `make test` (or tests/prepare.sh)
must have been run once in this checkout; the folders the tests write to
(tests/work/cli, tests/work/robust) are the scratch copy's own.
Mutants of code that has an AVX-512 and a portable version (v_load_bf16,
v_sum, ...) only test the version this machine compiles (-march=native).
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each mutant: id, file, old (exact text, must occur exactly once, or
# exactly `count` times if given: all are replaced), new, desc, cls (the
# class of bug), and optionally equivalent="why" for a mutant that cannot
# change any output (kept to document that the code allows it).
# Part 1 (the plain model) and Part 2 (the fast twins) of raktn.c each get
# their mutants: the full build runs Part 2, test_model_plain and test_truth
# Part 1.
MUTANTS = [
    # ---- sampling (raktn.c, section 5)
    dict(id="S1", file="raktn.c", cls="temperature", desc="temperature multiplies the logits",
         old="logits[i] = (logits[i] - max) / sp->temperature;", new="logits[i] = (logits[i] - max) * sp->temperature;"),
    dict(id="S2", file="raktn.c", cls="top-p cutoff", desc="nucleus stops at mass > top_p, not >= (boundary exactly at p)",
         old="if (mass >= sp->top_p) { last = i; break; }",
         new="if (mass > sp->top_p) { last = i; break; }"),
    dict(id="S3", file="raktn.c", cls="top-p renormalization", desc="the draw is not scaled to the nucleus mass",
         old="r *= mass; /* a draw within the nucleus */", new="/* r *= mass: no draw within the nucleus */"),
    dict(id="S4", file="raktn.c", cls="top-p cutoff", desc="one token more than the nucleus (and its mass)",
         old="if (mass >= sp->top_p) { last = i; break; }",
         new="if (mass >= sp->top_p) { last = i + 1 < m ? i + 1 : i; if (last > i) mass += logits[sp->idx[last]]; break; }"),
    dict(id="S4e", file="raktn.c", cls="top-p cutoff", desc="last index one past the nucleus, mass unchanged",
         old="if (mass >= sp->top_p) { last = i; break; }",
         new="if (mass >= sp->top_p) { last = i + 1 < m ? i + 1 : i; break; }",
         equivalent="the draw r * mass < mass never reaches the extra token (only if r * mass rounds up to mass, "
                    "for r within 2^-24 of 1)"),
    dict(id="S14", file="raktn.c", cls="top-p cutoff", desc="one token fewer than the nucleus (its mass kept)",
         old="if (mass >= sp->top_p) { last = i; break; }",
         new="if (mass >= sp->top_p) { last = i > 0 ? i - 1 : 0; break; }"),
    dict(id="S5", file="raktn.c", cls="top-p cutoff", desc="pre-filter bound top_p/(n-1) instead of (1-top_p)/(n-1)",
         old="real cutoff = (1.0f - sp->top_p) / (real)(n - 1 > 0 ? n - 1 : 1);",
         new="real cutoff = sp->top_p / (real)(n - 1 > 0 ? n - 1 : 1);"),
    dict(id="S6", file="raktn.c", cls="top-p cutoff", desc="top-p ignored (always the full distribution)",
         old="if (sp->top_p <= 0.0f || sp->top_p >= 1.0f) {", new="if (1) {"),
    dict(id="S7", file="raktn.c", cls="top-p cutoff", desc="nucleus sorted least probable first",
         old="return pa < pb ? 1 : pa > pb ? -1 :", new="return pa < pb ? -1 : pa > pb ? 1 :"),
    dict(id="S8", file="raktn.c", cls="sampler", desc="full-distribution draw returns the token before",
         old="            if (r < cdf) return i;\n", new="            if (r < cdf) return i > 0 ? i - 1 : 0;\n"),
    dict(id="S9", file="raktn.c", cls="argmax ties", desc="argmax ties go to the last index",
         old="if (x[i] > x[best]) best = i;", new="if (x[i] >= x[best]) best = i;"),
    dict(id="S10", file="raktn.c", cls="rng", desc="random_f32 in [0, 0.5)",
         old="(random_u32(state) >> 8) / 16777216.0f", new="(random_u32(state) >> 9) / 16777216.0f"),
    dict(id="S11", file="raktn.c", cls="rng", desc="xorshift shift 25 -> 24",
         old="*state ^= *state << 25;", new="*state ^= *state << 24;"),
    dict(id="S12p", file="raktn.c", cls="softmax tail", desc="softmax (Part 1, sampling) max loop skips the last element",
         old="    for (int i = 1; i < n; i++)\n        if (x[i] > max) max = x[i];",
         new="    for (int i = 1; i < n - 1; i++)\n        if (x[i] > max) max = x[i];"),
    dict(id="S12", file="raktn.c", cls="softmax tail", desc="softmax_fast (attention) max loop skips the last element",
         old="for (; i < n; i++) max = x[i] > max ? x[i] : max;",
         new="for (; i < n - 1; i++) max = x[i] > max ? x[i] : max;"),
    dict(id="S13", file="raktn.c", cls="softmax", desc="softmax_fast's sum misses the scalar tail",
         old="    for (; i < n; i++) sum += x[i];\n", new="\n"),
    # ---- generation and chat (raktn.c, section 6)
    dict(id="G1", file="raktn.c", cls="EOS vs BOS stop", desc="generation stops on BOS instead of EOS",
         old="if (next == c->eos_id) break;", new="if (next == c->bos_id) break;"),
    dict(id="G2", file="raktn.c", cls="context end", desc="context-end check > instead of >=",
         old="if (*pos >= s->ctx) {", new="if (*pos > s->ctx) {"),
    dict(id="G3", file="raktn.c", cls="EOS stop", desc="EOS is not counted among the generated tokens",
         old="        if (out_ids) out_ids[produced] = next;\n        produced++;\n        if (next == c->eos_id) break;\n",
         new="        if (next == c->eos_id) break;\n        if (out_ids) out_ids[produced] = next;\n        produced++;\n"),
    dict(id="G4", file="raktn.c", cls="context end", desc="a prompt that fills the context exactly is refused",
         old="if (*pos + n_prompt > s->ctx) die(", new="if (*pos + n_prompt >= s->ctx) die("),
    dict(id="G5", file="raktn.c", cls="EOS stop", desc="generation ignores EOS",
         old="if (next == c->eos_id) break;", new="if (next == -2) break;"),
    dict(id="C1", file="raktn.c", cls="chat BOS", desc="chat adds BOS on every turn",
         old="(size_t)tlen, turn == 0 && tokenizer_add_bos(tok),", new="(size_t)tlen, tokenizer_add_bos(tok),"),
    dict(id="C2", file="raktn.c", cls="chat template", desc="first turn's template with a space after ASSISTANT:",
         old='"%s USER: %s ASSISTANT:"', new='"%s USER: %s ASSISTANT: "'),
    dict(id="C3", file="raktn.c", cls="chat template", desc="later turns start with a space",
         old='snprintf(text, cap, "USER: %s ASSISTANT:", line)', new='snprintf(text, cap, " USER: %s ASSISTANT:", line)'),
    dict(id="C4", file="raktn.c", cls="chat template", desc="system sentence loses a comma",
         old='"detailed, and polite answers', new='"detailed and polite answers'),
    dict(id="C5", file="raktn.c", cls="chat template", desc="an answer cut short is closed with BOS, not EOS",
         old="int eos = c->eos_id;", new="int eos = c->bos_id;"),
    dict(id="C6", file="raktn.c", cls="chat BOS", desc="every turn is a first turn (system sentence and BOS again)",
         old="        turn++;\n    }\n    free(line);", new="    }\n    free(line);"),
    dict(id="P1", file="raktn.c", cls="ppl", desc="ppl scores each token against its own position",
         old="nll += (log(sum) + max) - row[ids[i + b + 1]];", new="nll += (log(sum) + max) - row[ids[i + b]];"),
    # ---- tokenizer (tokenizer.c)
    dict(id="T1", file="tokenizer.c", cls="byte fallback", desc="byte-fallback id hard-coded as byte + 3",
         old="if (work_add_symbol(w, t->byte_id[c[i]]) < 0) return -1;",
         new="if (work_add_symbol(w, c[i] + 3) < 0) return -1;"),
    dict(id="T2", file="tokenizer.c", cls="unknown fusion", desc="adjacent unknown characters not fused into one <unk>",
         old="if (t->unk >= 0) w->unk_pending = 1;", new="if (t->unk >= 0) return work_add_symbol(w, t->unk);"),
    dict(id="T2b", file="tokenizer.c", cls="unknown fusion",
         desc="<unk> added at the first unknown (fused), so before later byte-fallback symbols",
         old="if (t->unk >= 0) w->unk_pending = 1;",
         new="if (t->unk >= 0 && !(w->n > 0 && w->id[w->n - 1] == t->unk)) return work_add_symbol(w, t->unk);"),
    dict(id="T3", file="tokenizer.c", cls="streaming decoder", desc="a lead byte after a broken sequence is dropped",
         old="sink_pending_as_fffd(k);          /* broken sequence; c starts afresh */",
         new="sink_pending_as_fffd(k); return; /* broken sequence; c dropped */"),
    dict(id="T4", file="tokenizer.c", cls="decoder", desc="one U+FFFD per invalid byte run instead of per byte",
         old=r'for (size_t i = 0; i < n; i++) buf_put(b, "\xef\xbf\xbd", 3);',
         new=r'if (n > 0) buf_put(b, "\xef\xbf\xbd", 3);'),
    dict(id="T5", file="tokenizer.c", cls="decoder", desc="decode keeps the leading space",
         old="size_t skip = b.n > 0 && b.v[0] == ' ';", new="size_t skip = 0;"),
    dict(id="T6", file="tokenizer.c", cls="byte fallback", desc="a character with some byte pieces missing still falls back to bytes",
         old="for (int i = 0; i < len; i++) all_bytes &= t->byte_id[c[i]] >= 0;",
         new="for (int i = 0; i < len; i++) all_bytes |= t->byte_id[c[i]] >= 0;"),
    # ---- forward pass (raktn.c, sections 2-4)
    dict(id="F1", file="raktn.c", cls="rmsnorm", desc="RMSNorm without eps",
         old="real inv = 1 / sqrt((real)(ss / n) + eps);", new="real inv = 1 / sqrt((real)(ss / n));"),
    dict(id="F2", file="raktn.c", cls="rmsnorm", desc="RMSNorm mean over n - 1",
         old="real inv = 1 / sqrt((real)(ss / n) + eps);",
         new="real inv = 1 / sqrt((real)(ss / (n - 1)) + eps);"),
    dict(id="F3", file="raktn.c", cls="RoPE pairing", desc="RoPE pairs neighbours (Meta layout) instead of i, i + head_dim/2",
         old="            real x0 = v[i], x1 = v[i + half];\n            v[i] = x0 * cos_p[i] - x1 * sin_p[i];\n"
             "            v[i + half] = x1 * cos_p[i] + x0 * sin_p[i];\n",
         new="            real x0 = v[2 * i], x1 = v[2 * i + 1];\n            v[2 * i] = x0 * cos_p[i] - x1 * sin_p[i];\n"
             "            v[2 * i + 1] = x1 * cos_p[i] + x0 * sin_p[i];\n"),
    # RoPE is relative (q.k depends on the difference of the two angles), so F4
    # leaves the logits as they are up to rounding; the q_rope/k_rope module
    # dumps (tests/test_compare.py) are what catch it.
    dict(id="F4", file="raktn.c", cls="RoPE angle", desc="RoPE angle of position p + 1 (logits unchanged: RoPE is relative)",
         old="real angle = (real)(pos + b) * s->inv_freq[i];", new="real angle = (real)(pos + b + 1) * s->inv_freq[i];"),
    dict(id="F4b", file="raktn.c", cls="RoPE angle", desc="every position of a chunk gets the chunk's first angle",
         old="real angle = (real)(pos + b) * s->inv_freq[i];", new="real angle = (real)(pos) * s->inv_freq[i];"),
    dict(id="F5", file="raktn.c", cls="RoPE angle", desc="RoPE inv_freq exponent i/head_dim instead of 2i/head_dim",
         old="pow((real)c->rope_theta, (real)(2 * i) / (real)c->head_dim)",
         new="pow((real)c->rope_theta, (real)(i) / (real)c->head_dim)"),
    dict(id="F6", file="raktn.c", cls="RoPE pairing", desc="RoPE rotates the wrong way (sign of sin)",
         old="v[i + half] = x1 * cos_p[i] + x0 * sin_p[i];", new="v[i + half] = x1 * cos_p[i] - x0 * sin_p[i];"),
    dict(id="F7", file="raktn.c", cls="sliding window", desc="window of W+1 keys (transformers 4.39-4.41)",
         old="p - c->sliding_window + 1 > 0 ? p - c->sliding_window + 1 : 0",
         new="p - c->sliding_window > 0 ? p - c->sliding_window : 0"),
    dict(id="F8", file="raktn.c", cls="sliding window", desc="window of W-1 keys",
         old="p - c->sliding_window + 1 > 0 ? p - c->sliding_window + 1 : 0",
         new="p - c->sliding_window + 2 > 0 ? p - c->sliding_window + 2 : 0"),
    dict(id="F9", file="raktn.c", cls="GQA mapping", desc="attention_fast decode: query heads of KV head kvh start at kvh, not kvh*group",
         old="int n_keys = p - first + 1, h0 = kvh * group;", new="int n_keys = p - first + 1, h0 = kvh;"),
    dict(id="F9p", file="raktn.c", cls="GQA mapping", desc="attention (Part 1): query head h reads KV head h % n_kv_heads",
         old="int kvh = h / group;", new="int kvh = h % c->n_kv_heads;", count=2),
    dict(id="F10", file="raktn.c", cls="GQA mapping", desc="attention_fast prefill: query head h reads KV head h % n_kv_heads",
         old="(size_t)(kvh * group + l % group) * hd + i]", new="(size_t)(kvh + (l % group) * c->n_kv_heads) * hd + i]"),
    dict(id="F11", file="raktn.c", cls="KV ring", desc="keys written one slot late in the ring",
         old="size_t at = kv_offset(s, c, layer, kvh, pos + b),", new="size_t at = kv_offset(s, c, layer, kvh, pos + b + 1),"),
    dict(id="F12", file="raktn.c", cls="KV ring", desc="ring one slot shorter than the window",
         old="c->sliding_window < ctx) ? c->sliding_window : ctx;", new="c->sliding_window < ctx) ? c->sliding_window - 1 : ctx;"),
    dict(id="F13", file="raktn.c", cls="KV ring", desc="ring slot (t+1) % cache_len, for reads and writes alike",
         old="(size_t)(t % s->cache_len)) * c->head_dim;", new="(size_t)((t + 1) % s->cache_len)) * c->head_dim;",
         equivalent="kv_offset is the only map from position to slot, used by every read and write: any "
                    "permutation of slots gives the same keys"),
    dict(id="F14", file="raktn.c", cls="matmul edges", desc="matmul_fast batched: drops the last row of a partial tile",
         old="int rows = d - i0 < TILE_ROWS ? d - i0 : TILE_ROWS;", new="int rows = d - i0 < TILE_ROWS ? d - i0 - 1 : TILE_ROWS;"),
    dict(id="F15", file="raktn.c", cls="matmul edges", desc="matmul_fast batched: drops the last position of the batch",
         old="for (int b = 0; b < 16 * nv && b0 + b < batch; b++) {", new="for (int b = 0; b < 16 * nv && b0 + b < batch - 1; b++) {"),
    dict(id="F16", file="raktn.c", cls="matmul edges", desc="matmul_fast decode: skips the last column of a row (n % 16 leftovers)",
         old="for (; kk < n; kk++) s += weight_at(", new="for (; kk < n - 1; kk++) s += weight_at("),
    dict(id="F17", file="raktn.c", cls="matmul edges", desc="matmul_fast batched: padding columns are ones, not zeros",
         old="b < t->batch ? t->x[(size_t)b * t->n + k] : 0.0f;", new="b < t->batch ? t->x[(size_t)b * t->n + k] : 1.0f;",
         equivalent="padding columns only feed outputs past the batch, which are computed but never stored"),
    dict(id="F16p", file="raktn.c", cls="matmul edges", desc="matmul (Part 1) skips the last column",
         old="for (int k = 0; k < n; k++) sum += weight_at(w, (size_t)i * n + k, dtype)",
         new="for (int k = 0; k < n - 1; k++) sum += weight_at(w, (size_t)i * n + k, dtype)"),
    dict(id="F23", file="raktn.c", cls="matmul panels", desc="matmul_fast batched: the last panel laid out as wide as a full one",
         old="int b0 = b / PANEL * PANEL, pw = t->bp - b0 < PANEL ? t->bp - b0 : PANEL;",
         new="int b0 = b / PANEL * PANEL, pw = PANEL;"),
    dict(id="F24", file="raktn.c", cls="matmul groups", desc="matmul_fast batched: bf16 widening leaves out a group's last row",
         old="for (size_t i = 0; i < (size_t)(r1 - r0) * t->n; i++) wide[i] = bf16_to_f32(h[i]);",
         new="for (size_t i = 0; i < (size_t)(r1 - r0 - 1) * t->n; i++) wide[i] = bf16_to_f32(h[i]);"),
    dict(id="F25", file="raktn.c", cls="matmul groups", desc="matmul_fast batched: a group's last panel is not run",
         old="for (int b0 = 0; b0 < t->bp; b0 += PANEL) /* one panel",
         new="for (int b0 = 0; b0 < t->bp - PANEL; b0 += PANEL) /* one panel"),
    dict(id="F26", file="raktn.c", cls="matmul groups", desc="matmul_fast batched: every group reads the first group's rows",
         old="const float *w = (const float *)t->w + (size_t)r0 * t->n;",
         new="const float *w = (const float *)t->w + (size_t)(r0 - g0 * TILE_ROWS + begin * TILE_ROWS) * t->n;"),
    dict(id="F18", file="raktn.c", cls="bf16", desc="bf16 widened with a shift of 15",
         old="uint32_t u = (uint32_t)h << 16;", new="uint32_t u = (uint32_t)h << 15;"),
    dict(id="F19", file="raktn.c", cls="bf16", desc="bf16 widened with half an ulp added (rounds instead of exact)",
         old="uint32_t u = (uint32_t)h << 16;", new="uint32_t u = (uint32_t)h << 16 | 0x8000;"),
    dict(id="F20", file="raktn.c", cls="attention", desc="attention (Part 1) scaled by 1/head_dim, not 1/sqrt(head_dim)",
         old="s->scores[t - first] = dot / sqrt((real)hd);", new="s->scores[t - first] = dot / (real)hd;", count=2),
    dict(id="F20f", file="raktn.c", cls="attention", desc="attention_fast (both paths) scaled by 1/head_dim",
         old="float scale = sqrtf((float)hd);", new="float scale = (float)hd;", count=2),
    dict(id="F21", file="raktn.c", cls="MLP", desc="silu (Part 1) with the sign of the exponent flipped",
         old="x[i] = x[i] / (1 + exp(-x[i]));", new="x[i] = x[i] / (1 + exp(x[i]));"),
    dict(id="F21f", file="raktn.c", cls="MLP", desc="silu_fast with the sign of the exponent flipped",
         old="t->x[i] = t->x[i] / (1.0f + expf(-t->x[i]));", new="t->x[i] = t->x[i] / (1.0f + expf(t->x[i]));"),
    dict(id="F22", file="raktn.c", cls="attention", desc="prefill always takes the per-position attention (blocked path unused)",
         old="if (n > 1 && c->n_heads / c->n_kv_heads <= 16) attention_blocked(", new="if (0) attention_blocked(",
         equivalent="attention() computes the same function; only the speed changes (bits may differ in the last place)"),
    # ---- issue 23: classes of behaviour users reach (every program over
    # several prefill chunks, configurations other than the default, output
    # files read back, long positions, chat input, sampler and loader edges)
    # -- multi-chunk runs (chunks of 128; test_cli's long fixture: 260 ids)
    dict(id="K1", file="raktn.c", cls="chunks: ppl", desc="ppl: every chunk reads the first chunk's ids",
         old="forward_chunk(m, s, ids + i, len, i, logits, 1, NULL);", new="forward_chunk(m, s, ids, len, i, logits, 1, NULL);"),
    dict(id="K2", file="raktn.c", cls="chunks: logits", desc="logits: every chunk run at position 0",
         old="forward_chunk(m, s, ids + i, len, i, logits, 1, tr);", new="forward_chunk(m, s, ids + i, len, 0, logits, 1, tr);"),
    dict(id="K3", file="raktn.c", cls="chunks: logits -o", desc="-o: only the first chunk's rows written",
         old="if (o->out_path) out_write(&out, logits,", new="if (o->out_path && i == 0) out_write(&out, logits,"),
    dict(id="K4", file="raktn.c", cls="chunks: --hidden", desc="--hidden: every chunk's rows written at position 0",
         old="memcpy(hs->h + ((size_t)k * hs->n + pos) * hs->dim,", new="memcpy(hs->h + ((size_t)k * hs->n) * hs->dim,"),
    dict(id="K5", file="raktn.c", cls="chunks: --dump", desc="--dump: every chunk's rows written at position 0",
         old="memcpy(t->data + (size_t)pos * cols, x,", new="memcpy(t->data, x,"),
    dict(id="K6", file="raktn.c", cls="chunks: generate", desc="a prompt's chunks all run at the prompt's first position",
         old="forward_chunk(m, s, tokens + i, len, pos + i, i + len == n", new="forward_chunk(m, s, tokens + i, len, pos, i + len == n"),
    dict(id="K7", file="raktn.c", cls="chunks: generate", desc="a long prompt's next token from its first chunk's logits",
         old="i + len == n ? s->logits : NULL, 0, NULL);", new="i == 0 ? s->logits : NULL, 0, NULL);"),
    dict(id="K8", file="raktn.c", cls="chunks: chat", desc="every turn's prompt fed at position 0 (later turns overwrite the first)",
         old="real *logits = forward(m, s, prompt, n_prompt, *pos);", new="real *logits = forward(m, s, prompt, n_prompt, 0);"),
    dict(id="K9", file="raktn.c", cls="chunks: KV ring", desc="a chunk longer than the ring stores its keys last-first (the earlier win)",
         old="    for (int b = 0; b < n; b++)\n        for (int kvh = 0; kvh < c->n_kv_heads; kvh++) {\n            size_t at = kv_offset",
         new="    for (int b = n - 1; b >= 0; b--)\n        for (int kvh = 0; kvh < c->n_kv_heads; kvh++) {\n            size_t at = kv_offset"),
    # -- configurations other than the default
    dict(id="N1", file="raktn.c", cls="config: rope_theta", desc="raktn ignores the file's rope_theta (10000)",
         old="c->rope_theta = theta64 != 0 ? theta64 : theta32;", new="c->rope_theta = 10000.0;"),
    dict(id="N2", file="raktn.c", cls="config: rms_norm_eps", desc="raktn ignores the file's rms_norm_eps (1e-5)",
         old="c->rms_norm_eps = eps64 != 0 ? eps64 : eps32;", new="c->rms_norm_eps = 1e-5;"),
    dict(id="N3", file="export/export.py", cls="config: defaults", desc="export: a missing rope_theta means 1e6",
         old='hf_default("rope_theta", 10000.0)', new='hf_default("rope_theta", 1e6)'),
    dict(id="N4", file="export/export.py", cls="config: defaults", desc="export: a missing tie_word_embeddings means true",
         old='tied = hf_default("tie_word_embeddings", False)', new='tied = hf_default("tie_word_embeddings", True)'),
    dict(id="N5", file="export/tokenizer_export.py", cls="config: defaults", desc="tokenizer export: a missing add_bos_token means false",
         old="add_bos, add_eos = True, False  # LlamaTokenizer defaults", new="add_bos, add_eos = False, False  # LlamaTokenizer defaults"),
    dict(id="N6", file="export/export.py", cls="config: defaults", desc="export: a Mistral config without sliding_window has no window",
         old='sw = hf_default("sliding_window", 4096) if mistral else None', new='sw = cfg.get("sliding_window") if mistral else None'),
    dict(id="N7", file="export/export.py", cls="config: defaults", desc="export: a Mistral config without num_key_value_heads takes num_attention_heads",
         old='kv = hf_default("num_key_value_heads", 8) if mistral else', new='kv = cfg.get("num_key_value_heads") if mistral else'),
    dict(id="N8", file="export/export.py", cls="config: defaults", desc="export: a missing rms_norm_eps means 1e-5",
         old='hf_default("rms_norm_eps", 1e-6)', new='hf_default("rms_norm_eps", 1e-5)'),
    dict(id="N9", file="export/export.py", cls="config: defaults", desc="export: a missing max_position_embeddings means 32768",
         old="131072 if mistral else 2048", new="32768 if mistral else 2048"),
    dict(id="N10", file="raktn.c", cls="config: no BOS", desc="the prompt gets BOS whatever the tokenizer says",
         old="tokenizer_encode(tok, src, len, tokenizer_add_bos(tok), &ids, &nids)", new="tokenizer_encode(tok, src, len, 1, &ids, &nids)"),
    dict(id="N11", file="raktn.c", cls="config: no BOS", desc="chat's first turn gets BOS whatever the tokenizer says",
         old="(size_t)tlen, turn == 0 && tokenizer_add_bos(tok),", new="(size_t)tlen, turn == 0,"),
    dict(id="N12", file="raktn.c", cls="config: header", desc="raktn ignores the file's sliding window",
         old="{\"sliding_window\", H_SLIDING_WINDOW, 0, 1 << 24, &c->sliding_window},",
         new="{\"sliding_window\", H_SLIDING_WINDOW + 200, 0, 1 << 24, &c->sliding_window},"),  # a reserved (zero) word
    # -- output files read back (tests/test_outputs.py, test_model's read_npy)
    dict(id="O1", file="raktn.c", cls="outputs: combined", desc="--dump with --hidden: the hidden file all zeros",
         old="c->n_heads, o->hidden_path ? &hs.trace : NULL};", new="c->n_heads, NULL};"),
    dict(id="O2", file="raktn.c", cls="outputs: .npy header", desc=".npy header with the shape reversed",
         old='"%ld,%s", shape[i], i + 1 < ndim', new='"%ld,%s", shape[ndim - 1 - i], i + 1 < ndim'),
    dict(id="O3", file="raktn.c", cls="outputs: .npy dtype", desc="the truth build labels its float64 data <f4",
         old='sizeof(real) == 8 ? "<f8" : "<f4"', new='"<f4"'),
    dict(id="O4", file="raktn.c", cls="outputs: .npy header", desc=".npy header padded to 16 bytes, not 64",
         old="int total = (10 + len + 1 + 63) / 64 * 64;", new="int total = (10 + len + 1 + 15) / 16 * 16;"),
    dict(id="O5", file="raktn.c", cls="outputs: .npy header", desc=".npy header says fortran_order True",
         old="'fortran_order': False, 'shape'", new="'fortran_order': True, 'shape'"),
    dict(id="O6", file="raktn.c", cls="outputs: --dump", desc="--dump: the attention weights' header 2-d (heads, n)",
         old="out_open_floats(&f, path, t->shape, t->ndim, 0);", new="out_open_floats(&f, path, t->shape, 2, 0);"),
    # -- long positions
    dict(id="L1", file="raktn.c", cls="long positions: RoPE angle", desc="RoPE angle p * inv_freq in double, not HF's float32",
         old="real angle = (real)(pos + b) * s->inv_freq[i];", new="double angle = (double)(pos + b) * s->inv_freq[i];"),
    dict(id="L2", file="raktn.c", cls="long positions: RoPE angle", desc="sin as cos(angle - pi/2) in float (exact at small angles only)",
         old="s->rope_sin[(size_t)b * half + i] = sin(angle);", new="s->rope_sin[(size_t)b * half + i] = cos(angle - (real)1.5707963267948966);"),
    # -- chat input
    dict(id="I1", file="raktn.c", cls="chat input: CRLF", desc="a CRLF line keeps its \\r",
         old="while (len > 0 && (line[len - 1] == '\\n' || line[len - 1] == '\\r')) line[--len] = 0;",
         new="while (len > 0 && line[len - 1] == '\\n') line[--len] = 0;"),
    dict(id="I2", file="raktn.c", cls="chat input: empty line", desc="an empty line ends the conversation",
         old="if (len == 0) continue;", new="if (len == 0) break;"),
    dict(id="I3", file="raktn.c", cls="chat input: spaces", desc="a line of only spaces is skipped",
         old="if (len == 0) continue;", new="if (strspn(line, \" \") == (size_t)len) continue;"),
    dict(id="I4", file="raktn.c", cls="chat input: EOF", desc="a last line without a newline is dropped",
         old="if (len < 0) { /* the end of input", new="if (len < 0 || line[len - 1] != '\\n') { /* the end of input"),
    # -- sampler and loader edges
    dict(id="E1", file="raktn.c", cls="sampler: tiny T", desc="logit / T (overflows to NaN probabilities at T = 1.2e-38)",
         old="logits[i] = (logits[i] - max) / sp->temperature;", new="logits[i] = logits[i] / sp->temperature;"),
    dict(id="E2", file="raktn.c", cls="header: tied flag", desc="tied flag 0xFFFFFFFF (-1) accepted",
         old="if (c->tied != 0 && c->tied != 1) return", new="if (c->tied > 1) return"),
    dict(id="E3", file="tokenizer.c", cls="UTF-8", desc="U+10FFFF refused", old="v > 0x10FFFF ||", new="v >= 0x10FFFF ||"),
    dict(id="E4", file="tokenizer.c", cls="UTF-8", desc="surrogates accepted",
         old="if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;", new="if (v < min || v > 0x10FFFF) return 0;"),
    dict(id="E5", file="tokenizer.c", cls="special tokens", desc="EOS added when BOS is not requested",
         old="if (rc == 0 && add_bos && t->add_eos && t->eos >= 0)", new="if (rc == 0 && t->add_eos && t->eos >= 0)"),
    # ---- -m explain (raktn.c Part 4): tests/test_explain.py
    dict(id="X1", file="raktn.c", cls="explain lens", desc="lens rows of later chunks stored in the first chunk's rows",
         old="size_t at = ((size_t)layer * e->n_rows + e->row[pos + b0 + b]) * e->k;",
         new="size_t at = ((size_t)layer * e->n_rows + e->row[b0 + b]) * e->k;"),
    dict(id="X2", file="raktn.c", cls="explain lens", desc="the lens skips model.norm (lm_head on the raw stream)",
         old="matmul(e->logits, e->normed, w->lm_head, cnt, c->dim, c->vocab_size, c->dtype);",
         new="matmul(e->logits, x + (size_t)b0 * c->dim, w->lm_head, cnt, c->dim, c->vocab_size, c->dtype);"),
    dict(id="X3", file="raktn.c", cls="explain lens", desc="layer L's lens shown as layer L+1's",
         old="if (!module[0] && layer >= 0 && layer < e->m->config.n_layers - 1) explain_lens(e, layer, pos, x, rows);",
         new="if (!module[0] && layer >= 0 && layer < e->m->config.n_layers - 1) explain_lens(e, layer + 1 < e->m->config.n_layers - 1 ? layer + 1 : layer, pos, x, rows);"),
    dict(id="X4", file="raktn.c", cls="explain probabilities", desc="probabilities not normalized by the sum",
         old="for (int j = 0; j < k; j++) probs[j] = exp((double)logits[ids[j]] - max) / sum;",
         new="for (int j = 0; j < k; j++) probs[j] = exp((double)logits[ids[j]] - max);"),
    dict(id="X5", file="raktn.c", cls="explain top-k", desc="ties go to the higher id",
         old="if (m == k && !(x[v] > x[best[k - 1]])) continue;",
         new="if (m == k && !(x[v] >= x[best[k - 1]])) continue;"),
    dict(id="X6", file="raktn.c", cls="explain attention", desc="weights stored one key to the left",
         old="memcpy(e->attn + at + first, w, (size_t)n_keys * sizeof(real));",
         new="memcpy(e->attn + at + (first > 0 ? first - 1 : 0), w, (size_t)n_keys * sizeof(real));"),
    dict(id="X7", file="raktn.c", cls="explain rms", desc="mid_rms is the stream before attention's addition",
         old="real mid = sb[i] + xb[i];", new="real mid = sb[i];"),
    dict(id="X8", file="raktn.c", cls="explain page", desc="the page's float32 bytes big-endian",
         old="buf[have++] = (unsigned char)(u >> (8 * b));", new="buf[have++] = (unsigned char)(u >> (8 * (3 - b)));"),
    dict(id="X9", file="raktn.c", cls="explain json", desc="a quote in a piece is not escaped",
         old="if (*p == '\"' || *p == '\\\\') fprintf(f, \"\\\\%c\", *p);", new="if (*p == '\\\\') fprintf(f, \"\\\\%c\", *p);"),
    dict(id="X10", file="raktn.c", cls="explain page", desc="the page's script paints no layer but the last",
         old="for(var i=0;i<cs.length;i++){paint(cs[i],-1);", new="for(var i=cs.length-1;i<cs.length;i++){paint(cs[i],-1);"),
]

# Test programs that finish fastest run first (a mutant's run stops at the
# first failure); any other program in the Makefile's TESTS follows.
FAST_ORDER = ["tests/test_sample", "tests/test_cli", "tests/test_truth", "tests/test_model_plain", "tests/test_tokenizer",
              "tests/test_robust", "tests/test_model"]


def makefile_tests():
    with open(os.path.join(ROOT, "Makefile")) as f:
        for line in f:
            m = re.match(r"^TESTS\s*=\s*(.*)$", line)
            if m:
                tests = m.group(1).split()
                return [t for t in FAST_ORDER if t in tests] + [t for t in tests if t not in FAST_ORDER]
    sys.exit("mutate.py: no TESTS line in the Makefile")


def python_tests(scratch):
    d = os.path.join(scratch, "tests")
    return sorted("tests/" + f for f in os.listdir(d) if f.startswith("test_") and f.endswith(".py"))


def check_applies(m):
    """None if the mutant's old text occurs exactly once, else why not"""
    path = os.path.join(ROOT, m["file"])
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        return "cannot read %s: %s" % (m["file"], e)
    n, want = text.count(m["old"]), m.get("count", 1)
    return None if n == want else "old text found %d times, %d expected" % (n, want)


def make_scratch(keep):
    """a copy of the tracked (and untracked, not ignored) files, with
    tests/work linked to this checkout's"""
    work = os.path.join(ROOT, "tests", "work")
    if not os.path.isdir(os.path.join(work, "models")):
        sys.exit("mutate.py: tests/work/models is missing: run `make test` (or tests/prepare.sh) once first")
    scratch = tempfile.mkdtemp(prefix="raktn-mutate-")
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in files:
        src = os.path.join(ROOT, rel)
        if not rel or not os.path.isfile(src) or rel.startswith("tests/work/"):
            continue
        dst = os.path.join(scratch, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
    os.makedirs(os.path.join(scratch, "tests", "work"))
    # the tests write into cli/, robust/, dump-hd128/ and tok/'s exp/ and
    # export.log: each copy has its own (shared, two copies running at once
    # under -j 2 broke each other's tokenizer exporter tests)
    written = {"cli": (), "robust": (), "dump-hd128": (), "tok": ("exp", "export.log")}
    for entry in os.listdir(work):
        dst = os.path.join(scratch, "tests", "work", entry)
        if entry in written:
            os.makedirs(dst)
            if written[entry]:
                for sub in os.listdir(os.path.join(work, entry)):
                    if sub not in written[entry]:
                        os.symlink(os.path.join(work, entry, sub), os.path.join(dst, sub))
        else:
            os.symlink(os.path.join(work, entry), dst)
    return scratch


def first_failure(prog, out):
    """the first failing test named in a Check or unittest log"""
    m = re.search(r"^[^\n:]*:\d+:[FE]:[^:\n]*:([^:\n]+):(\d+):", out, re.M)
    if m:
        return "%s:%s" % (os.path.basename(prog), m.group(1) + ("[%s]" % m.group(2) if m.group(2) != "0" else ""))
    m = re.search(r"^(?:FAIL|ERROR): (\S+) \(([^)]*)\)", out, re.M)
    if m:
        return "%s:%s" % (os.path.basename(prog), m.group(1))
    return os.path.basename(prog)


def run_suite(scratch, tests, timeout, stop_first=True):
    """run the suite in scratch; returns (None, '') if it passes, else
    (name of the first failing test, its output)"""
    env = dict(os.environ)
    for t in tests:
        try:
            r = subprocess.run(["./" + t], cwd=scratch, env=env, capture_output=True, text=True,
                               errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            return "%s (timeout %d s)" % (os.path.basename(t), timeout), ""
        out = r.stdout + r.stderr
        summary = re.findall(r"Checks: (\d+), Failures: (\d+), Errors: (\d+)", out)
        if r.returncode < 0:
            return "%s (signal %d)" % (os.path.basename(t), -r.returncode), out
        if not summary:
            return "%s (no summary, exit %d)" % (os.path.basename(t), r.returncode), out
        if r.returncode != 0 or summary[-1][1] != "0" or summary[-1][2] != "0":
            return first_failure(t, out), out
    for py in python_tests(scratch):
        try:
            r = subprocess.run([sys.executable, "-m", "unittest", py], cwd=scratch, env=env, capture_output=True,
                               text=True, errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            return "%s (timeout %d s)" % (os.path.basename(py), timeout), ""
        out = r.stdout + r.stderr
        if r.returncode != 0 or not re.search(r"^OK", out, re.M) or re.search(r"^Ran 0 tests", out, re.M):
            return first_failure(py, out), out
    return None, ""


def build(scratch, tests):
    # what make test builds: the three builds, test_robust's aids, the dequantizer, the Check programs
    aids = ["tests/rename_shim.so", "tests/raktn-fast-math", "export/gguf_dequant.so"]
    r = subprocess.run(["make", "-s", "-j2", "raktn", "raktn-plain", "raktn-truth"] + aids + tests, cwd=scratch,
                       capture_output=True, text=True, errors="replace")
    return r.returncode == 0, r.stdout + r.stderr


def run_mutant(m, scratch, tests, timeout, verbose):
    path = os.path.join(scratch, m["file"])
    with open(path, encoding="utf-8") as f:
        original = f.read()
    t0 = time.time()
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original.replace(m["old"], m["new"]))  # check_applies saw exactly count of them
        ok, log = build(scratch, tests)
        if not ok:
            return "BUILD FAILED", log[-2000:] if verbose else "", time.time() - t0
        killer, out = run_suite(scratch, tests, timeout)
        return killer or "SURVIVED", (out[-3000:] if verbose else ""), time.time() - t0
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--list", action="store_true", help="list the mutants and whether they apply")
    ap.add_argument("--only", help="comma-separated mutant ids")
    ap.add_argument("-j", type=int, default=1, help="scratch copies run in parallel")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per test program")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders")
    ap.add_argument("--verbose", action="store_true", help="print the output of the test that killed each mutant")
    a = ap.parse_args()

    ids = [m["id"] for m in MUTANTS]
    assert len(ids) == len(set(ids)), "duplicate mutant ids"
    chosen = MUTANTS
    if a.only:
        want = a.only.split(",")
        unknown = [w for w in want if w not in ids]
        if unknown:
            sys.exit("mutate.py: unknown mutant ids: " + ",".join(unknown))
        chosen = [m for m in MUTANTS if m["id"] in want]

    if a.list:
        for m in chosen:
            why = check_applies(m)
            print("%-4s %-12s %-22s %-12s %s%s" % (m["id"], m["file"], m["cls"], "NOT APPLIED" if why else "ok",
                                                 m["desc"], " [equivalent]" if m.get("equivalent") else ""))
            if why:
                print("     (%s)" % why)
        return 0

    tests = makefile_tests()
    t_start = time.time()
    results = {}
    runnable = []
    for m in chosen:
        why = check_applies(m)
        if why:
            results[m["id"]] = ("NOT APPLIED (%s)" % why, 0.0)
        else:
            runnable.append(m)

    scratches = [make_scratch(a.keep) for _ in range(max(1, min(a.j, len(runnable) or 1)))]
    try:
        print("baseline: building and running the unmutated suite in %s" % scratches[0], flush=True)
        for s in scratches:
            ok, log = build(s, tests)
            if not ok:
                sys.exit("mutate.py: the unmutated code does not build:\n" + log)
        killer, out = run_suite(scratches[0], tests, a.timeout)
        if killer:
            sys.exit("mutate.py: the unmutated suite fails (%s); fix that first:\n%s" % (killer, out[-3000:]))
        free = list(scratches)
        lock = threading.Lock()

        def job(m):
            with lock:
                s = free.pop()
            try:
                verdict, out, secs = run_mutant(m, s, tests, a.timeout, a.verbose)
            finally:
                with lock:
                    free.append(s)
            with lock:
                print("%-4s %-38s %5.0f s  %s" % (m["id"], verdict, secs, m["desc"]), flush=True)
                if out:
                    print(out)
            return m["id"], verdict, secs

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(scratches)) as ex:
            for mid, verdict, secs in ex.map(job, runnable):
                results[mid] = (verdict, secs)
    finally:
        if a.keep:
            print("scratch copies kept: " + " ".join(scratches))
        else:
            for s in scratches:
                shutil.rmtree(s, ignore_errors=True)

    # the table
    print()
    print("| id | file | class | description | killed by |")
    print("|---|---|---|---|---|")
    killed = survived = equiv = equiv_killed = not_applied = build_failed = 0
    for m in chosen:
        verdict, _ = results[m["id"]]
        eq = m.get("equivalent")
        if verdict.startswith("NOT APPLIED"):
            not_applied += 1
        elif verdict == "BUILD FAILED":
            build_failed += 1
        elif verdict == "SURVIVED":
            if eq:
                equiv += 1
                verdict = "survived (equivalent: %s)" % eq
            else:
                survived += 1
                verdict = "**SURVIVED**"
        else:
            killed += 1
            if eq:
                equiv_killed += 1
                verdict += " (marked equivalent, but killed: fix its label)"
        print("| %s | %s | %s | %s | %s |" % (m["id"], m["file"], m["cls"], m["desc"], verdict))
    considered = killed + survived
    print()
    print("mutants: %d; killed %d, survived %d (non-equivalent), equivalent %d, not applied %d, build failed %d"
          % (len(chosen), killed, survived, equiv, not_applied, build_failed))
    print("run time: %.0f s with -j %d" % (time.time() - t_start, a.j))
    if considered:
        print("kill rate (killed / non-equivalent applied): %d/%d = %.0f%%"
              % (killed, considered, 100.0 * killed / considered))
    return 0 if survived == 0 and not_applied == 0 and build_failed == 0 and equiv_killed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
