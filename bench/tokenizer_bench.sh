#!/bin/sh
# Encode throughput of raktn's tokenizer.c vs Debian's spm_encode, same vocabulary, same text.
#
#   sh bench/tokenizer_bench.sh [HF_TOKENIZER_DIR] [MB]
#
# HF_TOKENIZER_DIR must hold tokenizer.json (exported to tokenizer.bin for raktn) and
# tokenizer.model (for spm_encode); default: the RakutenAI-like 48k vocabulary in
# ../shared/tokenizers/rakuten-like-48k (beside the repository). The text (about MB megabytes, default 4) is
# mixed Japanese/English: tests/tokenizer/train.txt plus the 48k fuzz-set texts, one
# case per line. Both tools encode it line by line; spm_encode writes ids to /dev/null.
set -e
cd "$(dirname "$0")/.."
DIR=${1:-../shared/tokenizers/rakuten-like-48k}
MB=${2:-4}
W=bench/work/tok
PY=${PYTHON:-python3}
CC=${CC:-cc}
mkdir -p "$W"
[ -f tests/work/tok/rakuten48k_fuzz.tsv ] || sh tests/tokenizer/prepare.sh >/dev/null 2>&1
"$PY" export/tokenizer_export.py "$DIR" "$W/tokenizer.bin" 2>/dev/null
"$PY" - "$W/text.txt" "$MB" <<'PYEOF'
import sys
out, mb = sys.argv[1], float(sys.argv[2])
lines = open("tests/tokenizer/train.txt", encoding="utf-8").read().splitlines()
for l in open("tests/work/tok/rakuten48k_fuzz.tsv", encoding="utf-8"):
    t = l.rstrip("\n").split("\t", 1)[1]
    t = t.replace("\\n", " ").replace("\\t", "\t").replace("\\r", " ").replace("\\\\", "\\")
    if "\\x" not in t:
        lines.append(t)
data, i = [], 0
size = 0
while size < mb * 1e6:
    s = lines[i % len(lines)]
    data.append(s)
    size += len(s.encode()) + 1
    i += 1
open(out, "w", encoding="utf-8").write("\n".join(data) + "\n")
PYEOF
$CC -O3 -march=native -std=c11 -Wall -Wextra -D_POSIX_C_SOURCE=200809L \
    -o "$W/tok_bench" bench/tok/tok_bench.c tokenizer.c
BYTES=$(wc -c < "$W/text.txt")
echo "text: $W/text.txt, $BYTES bytes; vocabulary: $DIR"
"$W/tok_bench" "$W/tokenizer.bin" "$W/text.txt" 3
best=""
for r in 1 2 3; do
    s=$(date +%s.%N)
    spm_encode --model "$DIR/tokenizer.model" --output_format=id < "$W/text.txt" > /dev/null
    e=$(date +%s.%N)
    best=$(echo "$s $e $best" | awk '{d=$2-$1; if ($3=="" || d<$3) print d; else print $3}')
done
: > "$W/empty.txt"
s=$(date +%s.%N)
spm_encode --model "$DIR/tokenizer.model" --output_format=id < "$W/empty.txt" > /dev/null
e=$(date +%s.%N)
load=$(echo "$s $e" | awk '{print $2-$1}')
echo "$BYTES $best $load" | awk '{printf "spm_encode: load %.1f ms; best of 3 (without load): %.3f s = %.2f MB/s\n", $3*1e3, $2-$3, $1/($2-$3)/1e6}'
echo "$BYTES $best" | awk '{printf "spm_encode: best of 3: %.3f s = %.2f MB/s (includes model load and writing ids)\n", $2, $1/$2/1e6}'
