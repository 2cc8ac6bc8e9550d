#!/bin/sh
# Build what tests/test_tokenizer needs under tests/work/tok/ (python3 stdlib only):
#   mistral32k.bin, rakuten48k.bin, small.bin   exported from tokenizer.json
#   small-model.bin                              exported from tokenizer.model only
#   byteslast.bin, nobytes.bin, asciibytes.bin   other byte-piece layouts (tokenizer.json)
#   byteslast-model.bin                          byteslast from tokenizer.model only
#   *.tsv                                        the gzipped expected sets, unpacked
# Run from the repository root: sh tests/tokenizer/prepare.sh
set -e
PY=${PYTHON:-python3}
T=tests/tokenizer
W=tests/work/tok
mkdir -p "$W/src/mistral32k" "$W/src/rakuten48k" "$W/src/small-model"
gunzip_py() { "$PY" -c 'import gzip,shutil,sys; shutil.copyfileobj(gzip.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; }
for v in mistral32k rakuten48k; do
    gunzip_py "$T/$v/tokenizer.json.gz" "$W/src/$v/tokenizer.json"
    cp "$T/$v/tokenizer_config.json" "$W/src/$v/"
    "$PY" export/tokenizer_export.py "$W/src/$v" "$W/$v.bin"
done
"$PY" export/tokenizer_export.py "$T/small-spm" "$W/small.bin"
cp "$T/small-spm/tokenizer.model" "$T/small-spm/tokenizer_config.json" "$W/src/small-model/"
"$PY" export/tokenizer_export.py "$W/src/small-model" "$W/small-model.bin"
for v in byteslast nobytes asciibytes; do
    "$PY" export/tokenizer_export.py "$T/$v" "$W/$v.bin"
done
mkdir -p "$W/src/byteslast-model"
cp "$T/byteslast/tokenizer.model" "$T/byteslast/tokenizer_config.json" "$W/src/byteslast-model/"
"$PY" export/tokenizer_export.py "$W/src/byteslast-model" "$W/byteslast-model.bin"
for f in "$T"/expected/*.tsv.gz; do
    b=$(basename "$f" .gz)
    gunzip_py "$f" "$W/$b"
done
