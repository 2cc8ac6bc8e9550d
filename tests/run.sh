#!/bin/sh
# Run the test programs named as arguments (Check suites), then the Python
# unittests, and close with one line: "tests: N passed, M failed".
# Exit status 0 only when everything passed: a test program that exits
# non-zero, dies on a signal, reports a failure or error, or prints no
# summary line fails the run (tests/test_runner.py proves it).
#   TEST_PY="tests/test_a.py ..." replaces the list of Python unittests.
PY=${PYTHON:-python3}
passed=0 failed=0 status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "$@"; do
  echo "== $t"
  # the program's own exit status (not a pipeline's): run it into the log
  ./"$t" >"$log" 2>&1
  rc=$?
  cat "$log"
  # Check's summary: "100%: Checks: 37, Failures: 0, Errors: 0"
  line=$(grep -E "Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+" "$log" | tail -n 1)
  if [ -z "$line" ]; then
    echo "$t: no Check summary (exit status $rc: crashed?)"
    failed=$((failed + 1)); status=1; continue
  fi
  n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+).*/\1/')
  f=$(echo "$line" | sed -E 's/.*Failures: ([0-9]+).*/\1/')
  e=$(echo "$line" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
  passed=$((passed + n - f - e)); failed=$((failed + f + e))
  if [ "$f" -ne 0 ] || [ "$e" -ne 0 ]; then status=1; fi
  if [ "$rc" -ne 0 ]; then
    echo "$t: exit status $rc"
    status=1
    # a non-zero exit with a clean summary still counts as one failure
    if [ "$f" -eq 0 ] && [ "$e" -eq 0 ]; then failed=$((failed + 1)); fi
  fi
done
for py in ${TEST_PY-tests/test_*.py}; do
  [ -f "$py" ] || continue
  echo "== $py"
  "$PY" -m unittest "$py" >"$log" 2>&1
  rc=$?
  cat "$log"
  # unittest: "Ran 11 tests in 0.02s" then "OK" or "FAILED (failures=1, errors=2)"
  n=$(grep -E "^Ran [0-9]+ test" "$log" | tail -n 1 | sed -E 's/^Ran ([0-9]+).*/\1/')
  n=${n:-0}
  if [ "$rc" -eq 0 ] && grep -q "^OK" "$log" && [ "$n" -gt 0 ]; then
    passed=$((passed + n))
  else
    f=0
    for k in $(grep -E "^FAILED" "$log" | grep -oE "(failures|errors)=[0-9]+" | cut -d= -f2); do f=$((f + k)); done
    [ "$f" -gt 0 ] || f=1
    [ "$n" -ge "$f" ] || n=$f
    echo "$py: exit status $rc"
    passed=$((passed + n - f)); failed=$((failed + f)); status=1
  fi
done
echo "tests: $passed passed, $failed failed"
exit $status
