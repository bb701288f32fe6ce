#!/usr/bin/env bash
# run_fuzz.sh FUZZ_DIR SECONDS - run every FUZZ_DIR/fuzz_* libFuzzer target for
# SECONDS each (the `make fuzz` driver). Seeds come from tests/fuzz/corpus/<target>/
# when present; they are copied to a scratch corpus so the tracked seeds never change.
# Crashing inputs are kept in FUZZ_DIR/crashes-<target>/. Exit 1 if any target fails.
set -u
dir=${1:-build/fuzz}
secs=${2:-30}
cd "$(dirname "$0")/../.." || exit 1
status=0
ran=0
nfail=0
for bin in "$dir"/fuzz_*; do
    [ -x "$bin" ] && [ -f "$bin" ] || continue
    case "$bin" in *.o|*.d|*.log) continue ;; esac
    name=$(basename "$bin")
    work=$(mktemp -d)
    seeds=tests/fuzz/corpus/$name
    [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
    mkdir -p "$dir/crashes-$name"
    log="$dir/$name.log"
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$dir/crashes-$name/" "$work" >"$log" 2>&1
    rc=$?
    runs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    if [ $rc -eq 0 ]; then
        printf 'PASS %-24s %ss, %s runs, seeds: %s\n' "$name" "$secs" "${runs:-?}" \
            "$([ -d "$seeds" ] && ls "$seeds" | wc -l || echo none)"
    else
        printf 'FAIL %-24s rc=%d; crashing input in %s; last lines of %s:\n' "$name" $rc \
            "$dir/crashes-$name/" "$log"
        tail -n 30 "$log" | sed 's/^/    /'
        status=1
        nfail=$((nfail + 1))
    fi
    rm -rf "$work"
    ran=$((ran + 1))
done
[ $ran -gt 0 ] || { echo "no fuzz targets in $dir"; exit 1; }
echo "fuzz: $((ran - nfail)) passed, $nfail failed"
exit $status
