# shellcheck shell=bash
# Helpers for .ci/run: run a part, time it, keep its result line, and total the tests every
# suite counted, so the log ends with one line per part and a closing "N passed, N failed".

RESULTS=()
TESTS_PASSED=0
TESTS_FAILED=0
PARTS_FAILED=0
CI_START=$SECONDS

duration() {
  printf '%dm %02ds' $(($1 / 60)) $(($1 % 60))
}

# "node 22.23.3 (OpenSSL 3.5.8)" for the node binary given.
node_label() {
  "$1" -p '`node ${process.versions.node} (OpenSSL ${process.versions.openssl})`'
}

# part NAME COMMAND...: runs the command, keeps "NAME: passed|FAILED (exit N) in T", returns its status.
part() {
  local name=$1 start=$SECONDS status
  shift
  echo "== $name"
  "$@"
  status=$?
  if [ $status -eq 0 ]; then
    RESULTS+=("$name: passed in $(duration $((SECONDS - start)))")
  else
    RESULTS+=("$name: FAILED (exit $status) in $(duration $((SECONDS - start)))")
    PARTS_FAILED=$((PARTS_FAILED + 1))
    TESTS_FAILED=$((TESTS_FAILED + 1))
  fi
  echo "== $name: exit $status after $(duration $((SECONDS - start)))"
  return $status
}

# The tests a run's output counted: Vitest's "Tests  2 failed | 861 passed (863)" lines and plain
# "40 passed, 0 failed" lines (the conformance runner). Prints "passed failed".
count_tests() {
  sed 's/\x1b\[[0-9;]*m//g' "$1" | awk '
    /^[[:space:]]*Tests[[:space:]]/ || /^[0-9]+ passed, [0-9]+ failed/ {
      for (i = 1; i <= NF; i++) {
        word = $(i + 1); sub(/[,|]$/, "", word)
        if (word == "passed" && $i ~ /^[0-9]+$/) passed += $i
        if (word == "failed" && $i ~ /^[0-9]+$/) failed += $i
      }
    }
    END { print passed + 0, failed + 0 }'
}

# suite LABEL WHAT COMMAND...: a part whose output is also counted; its result line names the
# Node version, what ran and the counts. A run that failed without counting a failure (it
# crashed, or type-check or lint failed) counts as one failure.
suite() {
  local label=$1 what=$2 start=$SECONDS status log passed failed
  shift 2
  log=$(mktemp "${TMPDIR:-/tmp}/allmende-ci-XXXXXX")
  echo "== $label: $what"
  "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  read -r passed failed < <(count_tests "$log")
  rm -f "$log"
  if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  TESTS_PASSED=$((TESTS_PASSED + passed))
  TESTS_FAILED=$((TESTS_FAILED + failed))
  local verdict=passed
  if [ "$status" -ne 0 ]; then
    verdict="FAILED (exit $status)"
    PARTS_FAILED=$((PARTS_FAILED + 1))
  fi
  RESULTS+=("$label, $what: $verdict, $passed tests passed, $failed failed, in $(duration $((SECONDS - start)))")
  return "$status"
}

# Prints the result lines and the closing count, and exits non-zero if any part failed.
finish() {
  echo
  echo "== results"
  printf '%s\n' "${RESULTS[@]}"
  echo "all parts: $(duration $((SECONDS - CI_START)))"
  echo "ci: $TESTS_PASSED passed, $TESTS_FAILED failed"
  [ "$PARTS_FAILED" -eq 0 ]
  exit $?
}
