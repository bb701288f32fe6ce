#!/usr/bin/env bash
# test_faults.sh - faults of `sam3d run` and how a run recovers from them, over real
# stage processes (build/tests/tools/echo_stage, and the tiny-weight real stages where
# they are built) and ZeroMQ:
#   1. a stage killed mid-request (no retries): a clear failure naming the stage, the job
#      directory kept and named; `sam3d run --job` resumes it: the stages before are
#      "kept" (not run again), the killed one and those after it run, the run completes;
#   2. resume validates, not just finds: a truncated (corrupt) artifact and a stale one
#      (older than the artifact it was made from) run again, with the reason logged;
#   3. `sam3d stage NAME --job --param` re-runs one stage with a new param (recorded in its
#      report.json), and the next resume re-runs what depends on it (stale);
#   4. --job on what is not a job, or on a job in use, is one clear error; a resumed run
#      stopped by SIGINT keeps its job (only a completed resume removes it);
#   5. a corrupt input artifact: the stage reading it fails with one line naming the file;
#   6. the wrong checkpoint for a stage (the tiny SS decoder given as ss_generator.ckpt, with
#      the real depth and cond stages): exit 1, the stage and the file named, job kept;
#   7. SIGINT during a batch: exit 130, no stage process and no job directory left.
# After every case: no stage process of ours and no job directory left unless expected.
# Env: BUILD (default build).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
. tests/lib.sh
need_exec "the fault tests need sam3d and the echo stage" "$build/sam3d" \
    "$build/tests/tools/echo_stage"
test_tmp
sam3d=$(realpath "$build/sam3d")
tools=$(realpath "$build/tests/tools")
export S3D_JOB_ROOT=$tmp/root
mkdir -p "$S3D_JOB_ROOT"
trap 'pkill -f "ipc://$S3D_JOB_ROOT" 2>/dev/null; rm -rf "$tmp"' EXIT

printf 'IMAGEBYTES-0123456789' > "$tmp/img.png"
printf 'MASK' > "$tmp/mask.png"
printf 'weights' > "$tmp/w.bin"

clean() {   # label [kept-job-dir allowed]
    sleep 0.3
    if pgrep -f "ipc://$S3D_JOB_ROOT" >/dev/null; then
        bad "$1: stage processes left: $(pgrep -af "ipc://$S3D_JOB_ROOT")"
        pkill -f "ipc://$S3D_JOB_ROOT"
    fi
    local left; left=$(ls -A "$S3D_JOB_ROOT")
    if [ -n "$left" ] && [ "${2:-}" != "$left" ]; then
        bad "$1: job dirs left: $left"
    fi
}

# three echo stages: first reads $IMAGE, second reads first, third reads second
pipe() {   # file [extra lines for stage third]
    cat > "$1" <<P
stage first
    exe     echo_stage
    weights w.bin
    out     echo_first.safetensors
    param   file \$IMAGE
stage second
    exe     echo_stage
    weights none
    out     echo_second.safetensors
    input   echo_first.safetensors:file_bytes as bytes
    param   prefix s_
stage third
    exe     echo_stage
    weights none
    out     echo_third.safetensors
    input   echo_second.safetensors:s_bytes
    param   prefix t_
$2
P
}
run() {   # out pipe [args]
    local out=$1 p=$2; shift 2
    "$sam3d" run --weights "$tmp" --out "$out" --pipeline "$p" --stages-dir "$tools" \
        --timeout 20 "$@" 2>"$out.log"
}
state() {   # report stage -> its state
    sed -n "s/.*\"name\": \"$2\", \"exe\": \"[^\"]*\", \"state\": \"\([^\"]*\)\".*/\1/p" "$1"
}

# ---------------------------------------------------------------- 1. killed, then resumed
pipe "$tmp/slow.pipe" "    param sleep_ms 30000"
pipe "$tmp/ok.pipe" ""
run "$tmp/o1" "$tmp/slow.pipe" --image "$tmp/img.png" --mask "$tmp/mask.png" --retries 0 &
pid=$!
for _ in $(seq 100); do pgrep -f "$S3D_JOB_ROOT/.*third.sock" >/dev/null && grep -q "stage third: run" \
    "$tmp/o1.log" 2>/dev/null && break; sleep 0.1; done
sleep 0.3
pkill -KILL -f "ipc://$S3D_JOB_ROOT/.*/third.sock"
wait $pid; rc=$?
job=$(sed -n 's/^sam3d: the run failed; its job directory is kept for `sam3d run --job \([^ ]*\) .*/\1/p' "$tmp/o1.log")
if [ $rc -eq 1 ] && [ -d "$job" ] && grep -q "stage third failed.*killed by SIGKILL" "$tmp/o1.log"; then
    ok "stage killed mid-request: exit 1, the stage and signal named, job kept ($job)"
else
    bad "killed stage: rc=$rc job='$job'"; tail -5 "$tmp/o1.log"; grep " E " "$tmp/o1.log"
fi
[ "$(state "$tmp/o1/report.json" second)" = done ] && [ "$(state "$tmp/o1/report.json" third)" = failed ] \
    || bad "report of the killed run: $(cat "$tmp/o1/report.json")"
clean "killed" "$(basename "$job")"

run "$tmp/o1r" "$tmp/ok.pipe" --job "$job"; rc=$?
r=$tmp/o1r/report.json
if [ $rc -eq 0 ] && [ "$(state "$r" first)" = kept ] && [ "$(state "$r" second)" = kept ] &&
    [ "$(state "$r" third)" = done ] && grep -q '"status": "complete"' "$r" &&
    grep -q 'IMAGEBYTES' "$tmp/o1r/artifacts/echo_third.safetensors" &&
    [ -f "$tmp/o1r/artifacts/echo_first.safetensors" ] && ! pgrep -f "$S3D_JOB_ROOT/.*first.sock" >/dev/null; then
    ok "sam3d run --job: first, second kept (not started), third run, complete"
else
    bad "resume: rc=$rc"; tail -5 "$tmp/o1r.log"; cat "$r"
fi
[ -d "$job" ] && bad "a completed resume removes the job directory"
clean "resume"

# ---------------------------------------------------------------- 2. corrupt and stale artifacts
keep_run() {   # out -> sets job
    run "$1" "$tmp/ok.pipe" --image "$tmp/img.png" --mask "$tmp/mask.png" --keep-job
    job=$(sed -n 's/^sam3d: job directory kept: //p' "$1.log")
}
keep_run "$tmp/o2"
head -c 40 "$job/echo_second.safetensors" > "$job/x" && mv "$job/x" "$job/echo_second.safetensors"
run "$tmp/o2r" "$tmp/ok.pipe" --job "$job" --keep-job; rc=$?
r=$tmp/o2r/report.json
if [ $rc -eq 0 ] && [ "$(state "$r" first)" = kept ] && [ "$(state "$r" second)" = done ] &&
    [ "$(state "$r" third)" = done ] &&
    grep -q "resume: from stage second (echo_second.safetensors is not a complete safetensors" "$tmp/o2r.log"; then
    ok "a truncated artifact is not kept: its stage and the later ones run again"
else
    bad "corrupt artifact: rc=$rc"; grep resume "$tmp/o2r.log"; cat "$r"
fi
sleep 0.05; touch "$job/echo_first.safetensors"
run "$tmp/o2s" "$tmp/ok.pipe" --job "$job" --keep-job; rc=$?
r=$tmp/o2s/report.json
if [ $rc -eq 0 ] && [ "$(state "$r" first)" = kept ] && [ "$(state "$r" second)" = done ] &&
    grep -q "echo_second.safetensors is older than its input echo_first.safetensors" "$tmp/o2s.log"; then
    ok "a stale artifact (older than its input) runs again"
else
    bad "stale artifact: rc=$rc"; grep resume "$tmp/o2s.log"
fi

# ---------------------------------------------------------------- 3. sam3d stage --param, then resume
"$sam3d" stage second --job "$job" --pipeline "$tmp/ok.pipe" --stages-dir "$tools" \
    --param prefix=s_ --param scale=2 --out "$tmp/o3" 2>"$tmp/o3.log"; rc=$?
grep -q '"params": {"prefix": "s_", "scale": "2"}' "$tmp/o3/report.json" &&
    ok "sam3d stage --param: report.json records the params it ran with" ||
    bad "stage params in report.json: $(grep -o '"params": {[^}]*}' "$tmp/o3/report.json")"
run "$tmp/o3r" "$tmp/ok.pipe" --job "$job"; rc2=$?
r=$tmp/o3r/report.json
if [ $rc -eq 0 ] && [ $rc2 -eq 0 ] && [ "$(state "$r" second)" = kept ] &&
    [ "$(state "$r" third)" = done ]; then
    ok "sam3d stage --param re-runs one stage; the next resume re-runs what reads it"
else
    bad "stage --param / resume: rc=$rc rc2=$rc2"; tail -3 "$tmp/o3.log"; cat "$r"
fi
clean "stage"

# ---------------------------------------------------------------- 4. --job refusals
run "$tmp/o4" "$tmp/ok.pipe" --job /tmp; rc=$?
[ $rc -eq 1 ] && grep -q "'/tmp' is not a job directory" "$tmp/o4.log" \
    && ok "--job on a non-job directory: exit 1, named" || bad "--job /tmp: rc=$rc $(cat "$tmp/o4.log")"
run "$tmp/o4b" "$tmp/ok.pipe" --job "$tmp/root/s3d-1-1" --image "$tmp/img.png"; rc=$?
[ $rc -eq 2 ] && ok "--job with --image: usage error" || bad "--job --image: rc=$rc"
keep_run "$tmp/o4c"
sleep 0.05; touch "$job/echo_second.safetensors"      # third is stale: it runs (slowly)
"$sam3d" run --weights "$tmp" --out "$tmp/o4d" --pipeline "$tmp/slow.pipe" --stages-dir "$tools" \
    --timeout 20 --job "$job" 2>"$tmp/o4d.log" &        # sam3d itself: $! gets the signal
pid=$!
for _ in $(seq 100); do grep -q "stage third: run" "$tmp/o4d.log" 2>/dev/null && break; sleep 0.1; done
run "$tmp/o4e" "$tmp/ok.pipe" --job "$job"; rc=$?
[ $rc -eq 1 ] && grep -q "is in use by another sam3d" "$tmp/o4e.log" \
    && ok "--job on a job in use: exit 1, named" || bad "--job in use: rc=$rc $(cat "$tmp/o4e.log")"
kill -INT $pid; wait $pid; rc=$?
[ $rc -eq 130 ] && [ -d "$job" ] && ok "SIGINT to a resumed run: exit 130, its job stays for the next --job" ||
    bad "SIGINT to a resumed run: rc=$rc, job dir there: $([ -d "$job" ] && echo yes || echo no)"
rm -rf "$job"
clean "refusals"

# ---------------------------------------------------------------- 5. a corrupt input artifact
keep_run "$tmp/o5"
printf 'garbage, not safetensors' > "$job/echo_first.safetensors"
"$sam3d" stage second --job "$job" --pipeline "$tmp/ok.pipe" --stages-dir "$tools" 2>"$tmp/o5s.log"; rc=$?
[ $rc -eq 1 ] && grep -q "stage second failed: input artifact 'echo_first.safetensors' is missing or unreadable" "$tmp/o5s.log" &&
    ok "a corrupt input artifact: exit 1, the stage and file named" ||
    { bad "corrupt input: rc=$rc"; tail -3 "$tmp/o5s.log"; }
rm -rf "$job"
clean "corrupt input"

# ---------------------------------------------------------------- 6. the wrong checkpoint
if [ -x "$build/sam3d-depth" ] && [ -x "$build/sam3d-cond" ] && [ -d examples/human_object ]; then
    w=$tmp/wrong
    tiny_weights "$w"
    cp tests/fixtures/ss_decoder_tiny/ss_decoder.ckpt "$w/ss_generator.ckpt"
    awk '/^stage cond_slat/{exit} {print}' pipelines/sam3d_objects.pipe >"$tmp/dc.pipe"
    "$sam3d" run --image examples/human_object/image.png --mask examples/human_object/0.png \
        --weights "$w" --out "$tmp/o6" --pipeline "$tmp/dc.pipe" --device cpu --timeout 120 \
        2>"$tmp/o6.log"; rc=$?
    job=$(sed -n 's/^sam3d: the run failed; its job directory is kept for `sam3d run --job \([^ ]*\) .*/\1/p' "$tmp/o6.log")
    if [ $rc -eq 1 ] && grep -q "stage cond_ss failed: .*ss_generator.ckpt" "$tmp/o6.log" && [ -d "$job" ]; then
        ok "the wrong checkpoint for cond_ss: exit 1, the stage and file named ($(grep -o 'stage cond_ss failed: .\{0,90\}' "$tmp/o6.log" | head -1)...), job kept"
    else
        bad "wrong checkpoint: rc=$rc"; grep " E " "$tmp/o6.log" | head -3
    fi
    rm -rf "$job"
    clean "wrong checkpoint"
else
    echo "SKIP 6: sam3d-depth / sam3d-cond not built"
fi

# ---------------------------------------------------------------- 7. SIGINT during a batch
printf 'img.png mask.png\nimg.png mask.png\n' >"$tmp/list.txt"
"$sam3d" batch "$tmp/list.txt" --weights "$tmp" --out "$tmp/o7" --pipeline "$tmp/slow.pipe" \
    --stages-dir "$tools" --timeout 60 2>"$tmp/o7.log" &
pid=$!
for _ in $(seq 100); do grep -q "stage third: run" "$tmp/o7.log" 2>/dev/null && break; sleep 0.1; done
kill -INT $pid; wait $pid; rc=$?
[ $rc -eq 130 ] && grep -q '"status": "interrupted"' "$tmp/o7/001_img/report.json" &&
    ok "SIGINT during a batch: exit 130, the jobs reported interrupted" ||
    { bad "batch SIGINT: rc=$rc"; tail -3 "$tmp/o7.log"; }
clean "batch SIGINT"
exit $fail
