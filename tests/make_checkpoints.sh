#!/bin/sh
# Create every test checkpoint under OUT_ROOT/NAME with tests/make_checkpoint.py
# (standard-library Python), then verify the sha256 of each model file against
# tests/fixtures/checkpoints.sha256, so that any change in generation fails loudly
# (the committed reference outputs in tests/fixtures were computed from exactly
# these bytes).
#
#   tests/make_checkpoints.sh OUT_ROOT            make + verify (exit 1 on mismatch)
#   tests/make_checkpoints.sh --update OUT_ROOT   make + rewrite checkpoints.sha256
#
# PYTHON (default python3) picks the interpreter. Takes a few seconds.
set -eu
UPDATE=0
if [ "${1:-}" = "--update" ]; then UPDATE=1; shift; fi
if [ $# -ne 1 ]; then
  echo "usage: $0 [--update] OUT_ROOT" >&2
  exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$1
PY=${PYTHON:-python3}
MK="$HERE/make_checkpoint.py"
SUMS="$HERE/fixtures/checkpoints.sha256"
mkdir -p "$OUT"

# name | arguments. All: hidden 64, heads 4, kv-heads 2, intermediate 160 unless said.
T48="--hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 160 --vocab 48000 --seed 1"
mk() { name=$1; shift; rm -rf "$OUT/$name"; "$PY" "$MK" "$OUT/$name" "$@"; }
# One set of values (seed 1), five containers: they share the reference t48k.
mk t48k-bf16    $T48 --sliding-window 4096 --dtype bf16
mk t48k-fp16    $T48 --sliding-window 4096 --dtype fp16
mk t48k-fp32    $T48 --sliding-window 4096 --dtype fp32
mk t48k-sharded $T48 --sliding-window 4096 --dtype fp32 --shards 2
mk t48k-llama   $T48 --arch llama --sliding-window none --dtype bf16
# Sliding window 8 over 40 tokens (and 40-token greedy generation).
mk sw8  --hidden 64 --layers 3 --heads 4 --kv-heads 2 --intermediate 160 --vocab 512 \
        --sliding-window 8 --dtype bf16 --seed 2
# Tied embeddings (no lm_head.weight).
mk tied --hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 160 --vocab 512 \
        --sliding-window 4096 --tied --dtype bf16 --seed 3
# Wider heads/GQA 4:1, window 16, fp32.
mk wide --hidden 128 --layers 2 --heads 8 --kv-heads 2 --intermediate 256 --vocab 1000 \
        --sliding-window 16 --dtype fp32 --seed 4
# The 7B's head_dim 128 (GQA 2:1, window 12 over 30 tokens), and sizes that
# are not multiples of 8 (intermediate 500, vocab 1001): attention's
# 64-dimension value sums and the matmul tiles' partial edges.
mk hd128 --hidden 256 --layers 2 --heads 2 --kv-heads 1 --intermediate 500 --vocab 1001 \
        --sliding-window 12 --dtype bf16 --seed 5 --std 0.08
# Long runs (tests/fixtures long, far): vocab 256 keeps the fixtures small;
# a window of 100 (< the prefill chunk of 128) makes the second chunk read
# the first one's keys from the ring, which wraps every 100 positions.
mk long --hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 160 --vocab 256 \
        --sliding-window 100 --dtype bf16 --seed 6
# Not the defaults: rope_theta 1e6 and rms_norm_eps 1e-6 (Mistral-7B-Instruct-
# v0.2's), with embeddings of std 0.002 so that the first RMSNorm's eps
# matters (mean(x^2) ~ 4e-6: eps 1e-5 instead of 1e-6 moves its scale by 38%).
mk theta --hidden 64 --layers 2 --heads 4 --kv-heads 2 --intermediate 160 --vocab 256 \
        --sliding-window 4096 --dtype bf16 --seed 7 --rope-theta 1e6 --rms-norm-eps 1e-6 --embed-std 0.002

if command -v sha256sum >/dev/null 2>&1; then SHA="sha256sum"; else SHA="shasum -a 256"; fi
LIST=$(cd "$OUT" && find t48k-bf16 t48k-fp16 t48k-fp32 t48k-sharded t48k-llama sw8 tied wide hd128 long theta \
        -type f \( -name '*.safetensors' -o -name '*.json' \) | LC_ALL=C sort)
if [ "$UPDATE" = 1 ]; then
  (cd "$OUT" && $SHA $LIST) > "$SUMS"
  echo "wrote $SUMS"
  exit 0
fi
if (cd "$OUT" && $SHA $LIST) | cmp -s - "$SUMS"; then
  echo "checkpoints OK: $(echo "$LIST" | wc -l) files in $OUT match $SUMS"
else
  echo "ERROR: generated checkpoints under $OUT differ from $SUMS:" >&2
  (cd "$OUT" && $SHA $LIST) | diff "$SUMS" - >&2 || true
  echo "(generation changed: the committed reference outputs no longer apply)" >&2
  exit 1
fi
