#!/usr/bin/env bash
# run_tests.sh BUILD [gpu] - run every test program and test script, print a summary.
#
# A test program exits 0 (pass), 77 (skipped, reason printed) or anything else (fail).
# Programs: BUILD/tests/test_*. Scripts: tests/test_*.sh, run with BUILD in $BUILD.
# With "gpu" (make test-gpu, on the GPU machine), every test program runs verbosely
# (the op tests and the stage tests compare their CUDA path with the CPU path), no
# scripts, and S3D_REQUIRE_GPU=1 turns a skip into a failure.
set -u
build=${1:-build}
only=${2:-}
cd "$(dirname "$0")/.." || exit 1
export BUILD=$build
pass=0; fail=0; skip=0; failed=()

run_one() {   # name, command...
    local name=$1; shift
    local log; log=$(mktemp)
    local t0=$SECONDS
    "$@" >"$log" 2>&1
    local rc=$?
    if [ $rc -eq 77 ] && [ "${S3D_REQUIRE_GPU:-0}" != 1 ]; then
        skip=$((skip + 1))
        printf 'SKIP %-34s %s\n' "$name" "$(grep -m1 -i 'skip' "$log")"
    elif [ $rc -eq 0 ]; then
        pass=$((pass + 1))
        printf 'PASS %-34s (%ds)\n' "$name" $((SECONDS - t0))
    else
        fail=$((fail + 1)); failed+=("$name")
        printf 'FAIL %-34s rc=%d; last lines:\n' "$name" $rc
        tail -n 25 "$log" | sed 's/^/    /'
    fi
    [ -n "${S3D_TEST_VERBOSE:-}" ] && cat "$log"
    rm -f "$log"
}

for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.o|*.d) continue ;; esac
    name=$(basename "$t")
    if [ "$only" = gpu ]; then
        S3D_TEST_VERBOSE=1 run_one "$name" "$t"
    else
        run_one "$name" "$t"
    fi
done
if [ "$only" != gpu ]; then
    for t in tests/test_*.sh; do
        [ -f "$t" ] || continue
        run_one "$(basename "$t")" bash "$t"
    done
fi
echo
[ $fail -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
