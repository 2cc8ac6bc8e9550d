#!/bin/sh
# tests/cross.sh - raktn on other architectures: right, or clearly refused.
#
# For each target it cross-builds static binaries with the Makefile
# (make raktn CC=TARGET-gcc LDFLAGS=-static, in a scratch copy of the
# sources) and runs them under qemu-user (i686 natively):
#   - the logits fixtures (tests/fixtures, from transformers) through -m logits:
#     within 1e-4 and the same argmax everywhere, as on x86-64 (long: three
#     prefill chunks; theta: rope_theta 1e6, rms_norm_eps 1e-6); far: 4100
#     positions, the rows far.json lists within 2e-5 of HF's (test_cli's
#     tolerance: this target's RoPE angles at positions in the thousands);
#   - the tokenizer: ids of a few texts equal to the x86-64 build's;
#   - the demo's greedy text (make demo's model, -t 0) equal to x86-64's;
#   - the trained stories260K: its 100 greedy ids equal float64's, and
#     -m explain's numbers within 1e-5 of float64 (tests/fixtures);
#   - tests/exp_check.c: the softmax exp against libm over the floats in
#     [-87, 0] (every float natively, every 7th under qemu: ~1 minute less);
# big-endian s390x must refuse every model with one line naming the byte
# order (exit 1) and still tokenize exactly.
# Needs: the cross compilers and qemu-user-static (Debian: gcc-aarch64-linux-gnu
# gcc-arm-linux-gnueabihf gcc-i686-linux-gnu gcc-s390x-linux-gnu
# qemu-user-static; .ci/run installs them), tests/prepare.sh's models and
# make demo's. Prints a table and "cross: N passed, M failed"; exit 1 on any
# failure. Run from the repository root: sh tests/cross.sh [TARGET...]
set -u
PY=${PYTHON:-python3}
TARGETS=${*:-"aarch64-linux-gnu arm-linux-gnueabihf i686-linux-gnu s390x-linux-gnu"}
W=tests/work/cross
rm -rf "$W" && mkdir -p "$W/src"
cp Makefile raktn.c tokenizer.c tokenizer.h "$W/src/"
mkdir -p "$W/src/tests" && cp tests/exp_check.c "$W/src/tests/"
passed=0 failed=0
ok() { passed=$((passed + 1)); printf '  %-22s ok   %s\n' "$1" "$2"; }
bad() { failed=$((failed + 1)); printf '  %-22s FAIL %s\n' "$1" "$2"; }

TOK=tests/work/models/t48k-bf16/tokenizer.bin
TEXTS="楽天は東京に本社を置く企業です。|Hello, world! 123|  spaces and
newlines|émoji 🎉 and 中文"
DEMO=demo/model/model.bin
DEMO_PROMPT="日本の首都は"
[ -f "$DEMO" ] || { echo "cross: $DEMO missing (make demo first)"; exit 1; }

# what x86-64 gives (the reference for the tokenizer and the demo)
native_tok() { printf '%s' "$TEXTS" | tr '|' '\0' | xargs -0 -n1 ./raktn -m tokenize -z "$TOK" -i; }
native_tok > "$W/tok.x86_64"
./raktn "$DEMO" -i "$DEMO_PROMPT" -n 24 -t 0 2>/dev/null > "$W/demo.x86_64"

for target in $TARGETS; do
  arch=${target%%-*}
  case $arch in
    i686) run="" ; stride=1 ;;
    aarch64) run="qemu-aarch64-static" ; stride=7 ;;
    arm) run="qemu-arm-static" ; stride=7 ;;
    s390x) run="qemu-s390x-static" ; stride=7 ;;
    *) echo "cross: unknown target $target"; exit 2 ;;
  esac
  echo "== $target${run:+ (under $run)}"
  if ! command -v "$target-gcc" >/dev/null 2>&1 || { [ -n "$run" ] && ! command -v "$run" >/dev/null 2>&1; }; then
    bad "$arch toolchain" "$target-gcc or $run not installed"; continue
  fi
  if ! make -s -C "$W/src" -B raktn CC="$target-gcc" LDFLAGS=-static >"$W/build-$arch.log" 2>&1; then
    bad "$arch build" "see $W/build-$arch.log"; continue
  fi
  mv "$W/src/raktn" "$W/raktn-$arch"
  "$target-gcc" -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -static -o "$W/exp-$arch" "$W/src/tests/exp_check.c" \
      "$W/src/tokenizer.c" -lm -pthread >>"$W/build-$arch.log" 2>&1 || { bad "$arch exp build" ""; continue; }
  file "$W/raktn-$arch" 2>/dev/null | grep -q "statically linked" && ok "$arch static build" "$(file -b "$W/raktn-$arch" | cut -d, -f1-2)" \
      || { command -v file >/dev/null 2>&1 && bad "$arch static build" "not static" || ok "$arch build" ""; }
  bin="$W/raktn-$arch"
  # a 64-bit kernel without 32-bit support (no IA32 emulation) cannot run
  # i686 programs itself: then qemu-i386 runs them, as qemu runs the others
  if [ "$arch" = i686 ] && ! "$bin" -h >/dev/null 2>&1; then
    if command -v qemu-i386-static >/dev/null 2>&1; then
      run="qemu-i386-static"; stride=7
      echo "  (this kernel runs no i686 programs itself: under $run)"
    fi
  fi

  if out=$($run "$W/exp-$arch" $stride 2>&1); then ok "$arch exp" "$out"; else bad "$arch exp" "$out"; fi

  if [ "$arch" = s390x ]; then
    $run "$bin" tests/work/models/sw8/model.bin -m logits --ids "1 2" -o "$W/x.f32" >"$W/out" 2>"$W/err"
    st=$?
    if [ $st -eq 1 ] && grep -q "^raktn: error: .*big-endian" "$W/err" && [ "$(wc -l <"$W/err")" -eq 1 ] && [ ! -e "$W/x.f32" ]; then
      ok "$arch logits" "refused: $(cut -c1-90 "$W/err")..."
    else
      bad "$arch logits" "exit $st: $(cat "$W/err")"
    fi
  else
    for name in sw8 hd128 wide tied t48k long theta; do
      model=tests/work/models/$name/model.bin
      [ "$name" = t48k ] && model=tests/work/models/t48k-bf16/model.bin
      ids=$(cat tests/fixtures/$name.ids)
      if $run "$bin" "$model" -m logits --ids "$ids" -o "$W/$name.f32" >/dev/null 2>"$W/err"; then
        if r=$("$PY" - "$W/$name.f32" "tests/fixtures/$name.logits.f32" "tests/fixtures/$name.json" <<'EOF'
import array, json, sys
a, b = array.array("f"), array.array("f")
a.frombytes(open(sys.argv[1], "rb").read()); b.frombytes(open(sys.argv[2], "rb").read())
vocab = json.load(open(sys.argv[3]))["logits_shape"][1]
if len(a) != len(b): sys.exit(f"{len(a)} values, wanted {len(b)}")
d = max(abs(x - y) for x, y in zip(a, b))
am = lambda v, p: max(range(vocab), key=lambda i: (v[p * vocab + i], -i))
bad = [p for p in range(len(a) // vocab) if am(a, p) != am(b, p)]
print(f"max |dlogit| {d:.2e}, argmax {len(a) // vocab - len(bad)}/{len(a) // vocab}")
sys.exit(0 if d <= 1e-4 and not bad else 1)
EOF
); then ok "$arch $name" "$r"; else bad "$arch $name" "$r"; fi
      else
        bad "$arch $name" "exit $?: $(head -c 200 "$W/err")"
      fi
    done
    if $run "$bin" tests/work/models/long/model.bin -m logits --ids "$(cat tests/fixtures/far.ids)" -o "$W/far.f32" \
        >/dev/null 2>"$W/err"; then
      if r=$("$PY" - "$W/far.f32" tests/fixtures/far.rows.f32 tests/fixtures/far.json <<'EOF'
import array, json, sys
a, b = array.array("f"), array.array("f")
a.frombytes(open(sys.argv[1], "rb").read()); b.frombytes(open(sys.argv[2], "rb").read())
rows, vocab = json.load(open(sys.argv[3]))["rows"], 256
d = max(abs(a[p * vocab + v] - b[k * vocab + v]) for k, p in enumerate(rows) for v in range(vocab))
print(f"positions {rows[0]}..{rows[-1]}: max |dlogit| {d:.2e}")
sys.exit(0 if d <= 2e-5 else 1)
EOF
); then ok "$arch far" "$r"; else bad "$arch far" "$r"; fi
    else
      bad "$arch far" "exit $?: $(head -c 200 "$W/err")"
    fi
  fi

  if [ "$arch" != s390x ]; then
    # the trained model: float64's greedy story, and explain within 1e-5 of float64
    S=tests/work/models/stories260K/model.bin
    G=tests/fixtures/stories260K.greedy.json
    prompt=$("$PY" -c 'import json, sys; print(*json.load(open(sys.argv[1]))["prompt"])' "$G")
    want=$("$PY" -c 'import json, sys; print(*json.load(open(sys.argv[1]))["greedy"])' "$G")
    got=$($run "$bin" "$S" --ids "$prompt" -n 100 -t 0 -v 2>&1 >/dev/null | sed -n 's/^generated ids: //p')
    if [ "$got" = "$want" ]; then ok "$arch story" "100 greedy ids = float64's"; else bad "$arch story" "greedy ids differ"; fi
    eids=$("$PY" -c 'import json; print(*json.load(open("tests/fixtures/stories260K.explain.json"))["ids"])')
    r=""
    if $run "$bin" "$S" -m explain --ids "$eids" --json "$W/explain.json" >/dev/null 2>"$W/err" &&
       r=$("$PY" tests/test_explain.py --check "$W/explain.json" tests/fixtures/stories260K.explain.json 1e-5 2>&1); then
      ok "$arch explain" "$r"
    else bad "$arch explain" "$(tail -c 300 "$W/err") $r"; fi
  fi
  printf '%s' "$TEXTS" | tr '|' '\0' | xargs -0 -n1 $run "$bin" -m tokenize -z "$TOK" -i > "$W/tok.$arch" 2>&1
  if cmp -s "$W/tok.$arch" "$W/tok.x86_64"; then ok "$arch tokenizer" "$(wc -l <"$W/tok.$arch") texts, same ids"
  else bad "$arch tokenizer" "ids differ from x86-64 ($W/tok.$arch)"; fi

  if [ "$arch" = s390x ]; then
    $run "$bin" "$DEMO" -i "$DEMO_PROMPT" -n 24 -t 0 >/dev/null 2>"$W/err"
    st=$?
    if [ $st -eq 1 ] && grep -q "big-endian" "$W/err"; then ok "$arch demo" "refused"; else bad "$arch demo" "exit $st"; fi
  else
    $run "$bin" "$DEMO" -i "$DEMO_PROMPT" -n 24 -t 0 2>/dev/null > "$W/demo.$arch"
    if cmp -s "$W/demo.$arch" "$W/demo.x86_64"; then ok "$arch demo" "greedy text equal to x86-64's"
    else bad "$arch demo" "text differs from x86-64's"; fi
  fi
done
echo "cross: $passed passed, $failed failed" | tee "$W/summary"
[ "$failed" -eq 0 ]
