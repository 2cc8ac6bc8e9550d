#!/bin/sh
# Build everything the test suite reads, under tests/work (git-ignored):
#   tests/work/hf/NAME      random-weight HF checkpoints (tests/make_checkpoints.sh,
#                           verified against tests/fixtures/checkpoints.sha256)
#   tests/work/models/NAME  their export/export.py output (model.bin [+ tokenizer.bin])
#   tests/work/tok/         tokenizer.bin files for the tokenizer tests
#   (t48k-nobos: t48k-bf16 with add_bos_token false)
# Only python3 (standard library) is needed. Re-running is cheap: a stamp file
# records the inputs' hash and skips the work when nothing changed.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
W=tests/work
STAMP=$W/.stamp
inputs=$( (cat tests/make_checkpoint.py tests/make_checkpoints.sh tests/fixtures/checkpoints.sha256 \
          export/export.py export/tokenizer_export.py tests/prepare.sh models/stories260K/*; \
          find tests/tokenizer -type f | LC_ALL=C sort | xargs cat) | cksum)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$inputs" ]; then
  echo "prepare: tests/work is up to date"
  exit 0
fi
rm -rf "$W"
mkdir -p "$W/models"
PYTHON=$PY sh tests/make_checkpoints.sh "$W/hf"

# Tokenizer fixtures first (tests/tokenizer/prepare.sh unpacks the 48k
# RakutenAI-like tokenizer.json). t48k-bf16 gets that tokenizer so that the
# text modes (chat, generation from text) run on a model whose vocabulary
# matches it.
sh tests/tokenizer/prepare.sh
cp "$W/tok/src/rakuten48k/tokenizer.json" "$W/tok/src/rakuten48k/tokenizer_config.json" "$W/hf/t48k-bf16/"

# t48k-nobos: t48k-bf16 with the same tokenizer told not to add BOS
# (tokenizer_config.json add_bos_token false: the text modes must then start
# without <s>, as AutoTokenizer does)
mkdir -p "$W/hf/t48k-nobos"
cp "$W/hf/t48k-bf16/config.json" "$W/hf/t48k-bf16/model.safetensors" "$W/hf/t48k-bf16/tokenizer.json" "$W/hf/t48k-nobos/"
sed 's/"add_bos_token": true/"add_bos_token": false/' "$W/hf/t48k-bf16/tokenizer_config.json" > "$W/hf/t48k-nobos/tokenizer_config.json"
grep -q '"add_bos_token": false' "$W/hf/t48k-nobos/tokenizer_config.json"

for name in t48k-bf16 t48k-fp16 t48k-fp32 t48k-sharded t48k-llama sw8 tied wide hd128 long theta t48k-nobos; do
  "$PY" export/export.py --quiet "$W/hf/$name" "$W/models/$name" 2>"$W/export-$name.log" || {
    cat "$W/export-$name.log" >&2; exit 1; }
done
# the trained model (models/stories260K) for tests/test_explain.py
"$PY" export/export.py --quiet models/stories260K "$W/models/stories260K" 2>"$W/export-stories260K.log" || {
  cat "$W/export-stories260K.log" >&2; exit 1; }
# lossless bf16 storage of a bf16 checkpoint (must give bit-identical logits)
"$PY" export/export.py --quiet --dtype bf16 "$W/hf/t48k-bf16" "$W/models/t48k-bf16-b16" 2>"$W/export-b16.log"
"$PY" export/export.py --quiet --dtype bf16 "$W/hf/sw8" "$W/models/sw8-b16" 2>>"$W/export-b16.log"

echo "$inputs" > "$STAMP"
echo "prepare: done"
