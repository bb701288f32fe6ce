#!/usr/bin/env bash
# test_orchestrator.sh - `sam3d run` / `sam3d stage` / `sam3d check-weights` over
# real stage processes (build/tests/tools/echo_stage) and ZeroMQ: a complete run,
# the stage processes starting side by side, a failed copy of the artifacts to --out, the
# built prefix of a longer pipeline (exit 3), a stage error, a stage that
# crashes once (restarted, run recovers), one that always crashes, one that hangs
# (timeout), SIGINT and SIGTERM mid-run, re-running one stage on a kept job, and
# pipeline syntax errors. After every case: no stage process and no job dir left.
set -u
BUILD=${BUILD:-build}
SAM3D=$BUILD/sam3d
TOOLS=$(cd "$BUILD/tests/tools" 2>/dev/null && pwd)
if [ ! -x "$SAM3D" ] || [ ! -x "$TOOLS/echo_stage" ]; then
    echo "SKIP: $SAM3D or $BUILD/tests/tools/echo_stage not built"; exit 77
fi
SAM3D=$(cd "$(dirname "$SAM3D")" && pwd)/sam3d
T=$(mktemp -d /tmp/s3d-orch-test.XXXXXX)
export S3D_JOB_ROOT=$T/root
mkdir -p "$S3D_JOB_ROOT"
fails=0
trap 'rm -rf "$T"' EXIT

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok()   { echo "ok: $*"; }

# no echo_stage process with our job root in its command line, no job dir left
check_clean() {   # label
    sleep 0.3
    if pgrep -f "ipc://$S3D_JOB_ROOT" >/dev/null; then
        fail "$1: stage processes left: $(pgrep -af "ipc://$S3D_JOB_ROOT")"
    fi
    if [ -n "$(ls -A "$S3D_JOB_ROOT")" ]; then
        fail "$1: job dirs left: $(ls "$S3D_JOB_ROOT")"
        rm -rf "${S3D_JOB_ROOT:?}"/*
    fi
}

# a failed run that completed a stage keeps its job directory for `sam3d run --job`
# (test_faults.sh resumes one): the log names it; it is removed here
kept_job() {   # label log
    local job
    job=$(sed -n 's/^sam3d: the run failed; its job directory is kept for `sam3d run --job \([^ ]*\) .*/\1/p' "$2")
    if [ -d "$job" ]; then rm -rf "$job"; else fail "$1: job directory not kept and named"; fi
}

printf 'IMAGEBYTES-0123456789' > "$T/img.png"
printf 'MASK' > "$T/mask.png"
printf 'weights' > "$T/w.bin"

# pipe FILE [extra params for stage "second"] [third stage exe]
pipe() {
    cat > "$1" <<P
# test pipeline
stage first
    exe     echo_stage
    weights w.bin
    out     echo_first.safetensors
    param   file \$IMAGE       # the job's copy of --image
stage second
    exe     echo_stage
    weights none
    out     echo_second.safetensors
    input   echo_first.safetensors:file_bytes as bytes
    param   prefix s_
$2
P
    if [ -n "${3:-}" ]; then
        printf 'stage third\n    exe %s\n    input echo_second.safetensors:s_bytes\n' "$3" >> "$1"
    fi
}

run() {   # out-dir pipe [extra args]
    local out=$1 p=$2; shift 2
    "$SAM3D" run --image "$T/img.png" --mask "$T/mask.png" --weights "$T" --out "$out" \
        --pipeline "$p" --stages-dir "$TOOLS" --timeout 5 "$@" 2>"$out.log"
}

# 1. complete run
pipe "$T/ok.pipe" ""
run "$T/o1" "$T/ok.pipe"; rc=$?
[ $rc -eq 0 ] || fail "complete run rc=$rc: $(tail -3 "$T/o1.log")"
grep -q '"status": "complete"' "$T/o1/report.json" || fail "report status complete"
grep -q '"name": "s_bytes", "dtype": "U8", "shape": \[21\]' "$T/o1/report.json" \
    || fail "report lists s_bytes U8 [21]: $(cat "$T/o1/report.json")"
# the image bytes went through two stages unchanged: they are in the artifact
grep -q 'IMAGEBYTES-0123456789' "$T/o1/artifacts/echo_second.safetensors" || fail "artifact data"
grep -q '"restarts": 0, "params": {"file": "$IMAGE"}' "$T/o1/report.json" &&
    grep -q '"restarts": 0, "params": {"prefix": "s_"}' "$T/o1/report.json" ||
    fail "report.json records each stage's params: $(grep -o '"params": {[^}]*}' "$T/o1/report.json")"
[ -f "$T/o1/artifacts/echo_first.safetensors" ] || fail "first artifact copied"
check_clean "complete run"; ok "complete run"

# 1b. the stage processes start side by side: three stages that each take 1.5 s to start
# (S3D_ECHO_START_MS) are all up in about 1.5 s, not 4.5 s one after another. The bound
# (4 s) leaves 2.5 s for the run itself under the sanitizers on a busy 2-core CI box
# and still fails any start-up one after another.
pipe "$T/three.pipe" ""
printf 'stage third\n    exe echo_stage\n    out echo_third.safetensors\n    input echo_second.safetensors:s_bytes\n' >> "$T/three.pipe"
t0=$(date +%s%N)
S3D_ECHO_START_MS=1500 run "$T/o1b" "$T/three.pipe"; rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
if [ $rc -eq 0 ] && [ $ms -lt 4000 ]; then
    ok "three stages of 1.5 s start-up each: the run took $ms ms (started side by side)"
else
    fail "parallel start: rc=$rc, $ms ms for three 1.5 s start-ups (one after another: 4.5 s)"
fi
check_clean "parallel start"

# 2. the built prefix of a longer pipeline: exit 3, names what is still to come
pipe "$T/partial.pipe" "" sam3d-not-built-yet
run "$T/o2" "$T/partial.pipe"; rc=$?
[ $rc -eq 3 ] || fail "partial run rc=$rc (want 3)"
grep -q 'still to come: third (sam3d-not-built-yet)' "$T/o2.log" || fail "missing stage named"
grep -q '"state": "not built"' "$T/o2/report.json" || fail "report says not built"
grep -q '"status": "partial"' "$T/o2/report.json" || fail "report status partial"
check_clean "partial"; ok "partial pipeline -> exit 3"

# 2b. OUT/artifacts cannot take the artifacts (a file in its place): the copies, made beside
# the next stages' work, fail the run at its end with the reason and the --out named, exit 1;
# the job directory, whose artifacts are complete, is kept for a resume with another --out
mkdir -p "$T/o2b"
printf 'not a directory' > "$T/o2b/artifacts"
run "$T/o2b" "$T/ok.pipe"; rc=$?
if [ $rc -eq 1 ] && grep -q "cannot copy '.*echo_first.safetensors' to '$T/o2b/artifacts/echo_first.safetensors'.*HINT: check the space left where --out is" "$T/o2b.log" &&
   grep -q '"status": "failed"' "$T/o2b/report.json" &&
   grep -q "\"error\": \"cannot copy the artifact to '$T/o2b'\"" "$T/o2b/report.json"; then
    ok "artifacts not copyable to --out: run failed, reason and --out named"
else
    fail "copy failure: rc=$rc: $(grep -i 'copy\|error' "$T/o2b.log" | head -5)"
fi
[ "$(cat "$T/o2b/artifacts")" = "not a directory" ] || fail "copy failure: the file in the way was changed"
kept_job "copy failure" "$T/o2b.log"
check_clean "copy failure"

# 3. a stage that answers with an error: run fails at once (no retry), exit 1
pipe "$T/err.pipe" "    param fail bad-input-for-test"
run "$T/o3" "$T/err.pipe"; rc=$?
[ $rc -eq 1 ] || fail "stage error rc=$rc"
grep -q 'stage second failed: bad-input-for-test' "$T/o3.log" || fail "error text relayed"
grep -q '"restarts": 0' "$T/o3/report.json" || fail "no restart on an error reply"
kept_job "stage error" "$T/o3.log"
check_clean "stage error"; ok "stage error reply -> exit 1"

# 4. a stage that crashes once: restarted, the run completes
pipe "$T/crash1.pipe" "    param crash_marker crashed.once"
run "$T/o4" "$T/crash1.pipe" --retries 2; rc=$?
[ $rc -eq 0 ] || fail "crash-once rc=$rc: $(tail -5 "$T/o4.log")"
grep -q 'killed by SIGABRT' "$T/o4.log" || fail "crash reported: $(tail -5 "$T/o4.log")"
grep -q '"restarts": 1' "$T/o4/report.json" || fail "one restart recorded"
check_clean "crash once"; ok "stage crashes once -> restarted, run completes"

# 5. a stage that always crashes: exit 1 after retries
pipe "$T/crash.pipe" "    param abort true"
run "$T/o5" "$T/crash.pipe" --retries 1; rc=$?
[ $rc -eq 1 ] || fail "always-crash rc=$rc"
grep -q '"restarts": 1' "$T/o5/report.json" || fail "restarts 1 with --retries 1"
kept_job "always crash" "$T/o5.log"
check_clean "always crash"; ok "stage always crashes -> exit 1, nothing left"

# 6. a stage that hangs: timeout, killed, exit 1
pipe "$T/hang.pipe" "    param sleep_ms 60000"
t0=$SECONDS
run "$T/o6" "$T/hang.pipe" --timeout 1 --retries 1; rc=$?
[ $rc -eq 1 ] || fail "hang rc=$rc"
[ $((SECONDS - t0)) -lt 20 ] || fail "hang took $((SECONDS - t0)) s"
grep -q 'no reply' "$T/o6.log" || fail "timeout reported"
kept_job "hang" "$T/o6.log"
check_clean "hang"; ok "stage hangs -> timeout, exit 1"

# 7/8. SIGINT and SIGTERM while a stage works: exit 130, nothing left
for sig in INT TERM; do
    "$SAM3D" run --image "$T/img.png" --mask "$T/mask.png" --weights "$T" --out "$T/o7$sig" \
        --pipeline "$T/hang.pipe" --stages-dir "$TOOLS" --timeout 60 2>"$T/o7$sig.log" &
    pid=$!
    sleep 1.5
    kill -$sig $pid
    wait $pid; rc=$?
    [ $rc -eq 130 ] || fail "SIG$sig rc=$rc: $(tail -3 "$T/o7$sig.log")"
    grep -q '"status": "interrupted"' "$T/o7$sig/report.json" || fail "SIG$sig report"
    check_clean "SIG$sig"; ok "SIG$sig -> exit 130, stages and job dir gone"
done

# 9. --keep-job, then `sam3d stage` re-runs one stage on it
run "$T/o9" "$T/ok.pipe" --keep-job; rc=$?
job=$(sed -n 's/^sam3d: job directory kept: //p' "$T/o9.log")
[ $rc -eq 0 ] && [ -d "$job" ] || fail "--keep-job rc=$rc job='$job'"
rm -f "$job/echo_second.safetensors"
"$SAM3D" stage second --job "$job" --pipeline "$T/ok.pipe" --stages-dir "$TOOLS" \
    --weights "$T" 2>"$T/o9s.log"; rc=$?
[ $rc -eq 0 ] || fail "sam3d stage rc=$rc: $(tail -3 "$T/o9s.log")"
grep -q 'IMAGEBYTES' "$job/echo_second.safetensors" 2>/dev/null || fail "stage re-ran"
rm -f "$job/echo_first.safetensors"
"$SAM3D" stage second --job "$job" --pipeline "$T/ok.pipe" --stages-dir "$TOOLS" \
    2>"$T/o9m.log"; rc=$?
[ $rc -eq 1 ] || fail "stage with a missing artifact rc=$rc"
grep -q "input artifact 'echo_first.safetensors' is missing" "$T/o9m.log" || fail "missing artifact named"
"$SAM3D" stage second --job /tmp --pipeline "$T/ok.pipe" --stages-dir "$TOOLS" 2>/dev/null
[ $? -eq 1 ] || fail "stage on a non-job dir must fail"
rm -rf "$job"
check_clean "stage"; ok "sam3d stage on a kept job"

# 10. check-weights: one OK, one failing (missing weights file), one not built
cat > "$T/cw.pipe" <<P
stage a
    exe echo_stage
    weights w.bin
stage b
    exe echo_stage
    weights nothere.bin
stage c
    exe sam3d-not-built-yet
P
"$SAM3D" check-weights "$T" --pipeline "$T/cw.pipe" --stages-dir "$TOOLS" >"$T/cw.out" 2>"$T/cw.log"; rc=$?
[ $rc -eq 1 ] || fail "check-weights rc=$rc"
grep -q '^a .*OK' "$T/cw.out" && grep -q '^b .*FAILED' "$T/cw.out" && grep -q '^c .*not built yet' "$T/cw.out" \
    || fail "check-weights lines: $(cat "$T/cw.out")"
ok "check-weights"

# the shipped pipeline parses: with no stages built, every stage is listed, exit 3
mkdir -p "$T/nostages"
"$SAM3D" check-weights "$T" --pipeline pipelines/sam3d_objects.pipe --stages-dir "$T/nostages" \
    >"$T/cw2.out" 2>"$T/cw2.log"; rc=$?
[ $rc -eq 3 ] && grep -q '^8 stages: 0 OK, 0 failed, 8 not built yet' "$T/cw2.out" \
    || fail "shipped pipeline: rc=$rc $(cat "$T/cw2.out" "$T/cw2.log")"
ok "shipped pipelines/sam3d_objects.pipe parses"

# 11. bad pipelines and options: one clear error line, exit 1/2, nothing left
bad() {   # label expected-text pipeline-text
    printf '%b' "$3" > "$T/bad.pipe"
    run "$T/ob" "$T/bad.pipe"; local rc=$?
    [ $rc -eq 1 ] || fail "$1: rc=$rc"
    grep -q "$2" "$T/ob.log" || fail "$1: message: $(cat "$T/ob.log")"
}
bad "unknown directive" "unknown directive" 'stage a\n  exe echo_stage\n  bogus 1\n'
bad "input from nowhere" "no earlier stage writes" 'stage a\n  exe echo_stage\n  input x.safetensors:t\n'
bad "no exe" "without an 'exe'" 'stage a\n  weights none\n'
bad "bad name" "stage NAME" 'stage A-b\n'
bad "reserved param" "set by the orchestrator" 'stage a\n  exe echo_stage\n  param job x\n'
bad "empty" "no stages" '# nothing\n'
"$SAM3D" run --image "$T/nope.png" --mask "$T/mask.png" --out "$T/ob2" --pipeline "$T/ok.pipe" \
    --stages-dir "$TOOLS" 2>"$T/ob2.log"; rc=$?
[ $rc -eq 1 ] && grep -q "nope.png" "$T/ob2.log" || fail "missing image: rc=$rc $(cat "$T/ob2.log")"
"$SAM3D" run --image x 2>/dev/null; [ $? -eq 2 ] || fail "usage exit 2"
check_clean "bad inputs"; ok "bad pipelines and inputs"

[ $fails -eq 0 ] && echo "test_orchestrator: ok" || echo "test_orchestrator: $fails failures"
[ $fails -eq 0 ]
