#!/bin/sh
# Run the test programs named as arguments (Check suites), then the Python
# unittests, and close with one line: "tests: N passed, M failed".
# Exit status 0 only when everything passed.
PY=${PYTHON:-python3}
passed=0 failed=0 status=0
log=$(mktemp)
for t in "$@"; do
  echo "== $t"
  ./"$t" 2>&1 | tee "$log" || status=1
  # Check's summary: "100%: Checks: 37, Failures: 0, Errors: 0"
  line=$(grep -E "Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+" "$log" | tail -n 1)
  if [ -z "$line" ]; then echo "$t: no Check summary (crashed?)"; failed=$((failed + 1)); status=1; continue; fi
  n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
  f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
  e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
  passed=$((passed + n - f - e)); failed=$((failed + f + e))
done
for py in tests/test_*.py; do
  [ -f "$py" ] || continue
  echo "== $py"
  "$PY" -m unittest "$py" 2>&1 | tee "$log"
  # unittest: "Ran 11 tests in 0.02s" then "OK" or "FAILED (failures=1, errors=2)"
  n=$(grep -E "^Ran [0-9]+ test" "$log" | sed -E 's/^Ran ([0-9]+).*/\1/')
  n=${n:-0}
  if grep -q "^OK" "$log"; then passed=$((passed + n)); else
    f=0
    for k in $(grep -E "^FAILED" "$log" | grep -oE "(failures|errors)=[0-9]+" | cut -d= -f2); do f=$((f + k)); done
    [ "$f" -gt 0 ] || f=1; [ "$n" -ge "$f" ] || n=$f
    passed=$((passed + n - f)); failed=$((failed + f)); status=1
  fi
done
rm -f "$log"
echo "tests: $passed passed, $failed failed"
exit $status
