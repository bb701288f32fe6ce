#!/usr/bin/env bash
# test_beat.sh - `--timeout` means "no sign of life", not "slow" (common/beat.h, issue 14): a
# busy stage writes the count of its progress points to the beat file sam3d made for it, and
# sam3d restarts the request's clock whenever the count moves. With the echo stage
# (build/tests/tools/echo_stage):
#   1. a stage that works 4 s (a progress point every 20 ms) under --timeout 1: not given up,
#      exit 0, no restart, its beat file gone after the run;
#   2. a stage that hangs 30 s (no progress point) under --timeout 1 --retries 0: given up
#      after ~1 s with "no sign of life", exit 1, its process stopped;
#   3. a stage started by hand with --beat on a file that does not exist: one error line
#      naming it, exit 1;
#   4. the real stages on the CPU path (the tiny random-weight model, the example image) under
#      --timeout 1.5 --retries 0: the SS flow's 25 steps take ~4 s here (without beats it was
#      killed after 1 s, the issue's reproduction): exit 3, no restart.
# Env: BUILD (default build).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
. tests/lib.sh
need_exec "needs sam3d and the echo stage" "$build/sam3d" "$build/tests/tools/echo_stage"
test_tmp
sam3d=$(realpath "$build/sam3d")
tools=$(realpath "$build/tests/tools")
export S3D_JOB_ROOT=$tmp/jobs
mkdir -p "$S3D_JOB_ROOT"
printf 'IMAGE' >"$tmp/img.png"
printf 'MASK' >"$tmp/mask.png"
printf 'weights' >"$tmp/w.bin"
pipe() {   # FILE PARAM-LINE: one echo stage reading $IMAGE
    printf 'stage first\n    exe     echo_stage\n    weights w.bin\n    out     echo_first.safetensors\n    param   file $IMAGE\n%s\n' "$2" >"$1"
}
run() {   # OUT PIPE [args]: sam3d run into $tmp/OUT (log $tmp/OUT.log); rc
    local out=$1 p=$2; shift 2
    "$sam3d" run --image "$tmp/img.png" --mask "$tmp/mask.png" --weights "$tmp" --out "$tmp/$out" \
        --pipeline "$p" --stages-dir "$tools" "$@" 2>"$tmp/$out.log"
}

# ---------------------------------------------------------------- 1. busy
pipe "$tmp/busy.pipe" "    param   work_ms 4000"
t0=$SECONDS
run busy "$tmp/busy.pipe" --timeout 1 --retries 0; rc=$?
if [ $rc -eq 0 ] && [ $((SECONDS - t0)) -ge 4 ] && grep -q '"restarts": 0' "$tmp/busy/report.json" &&
   ! grep -q "no reply" "$tmp/busy.log" && [ -z "$(ls -A "$S3D_JOB_ROOT")" ]; then
    ok "a stage busy 4 s under --timeout 1 (beating): done, exit 0, no restart, nothing left"
else bad "busy stage: exit $rc after $((SECONDS - t0)) s, left: $(ls -A "$S3D_JOB_ROOT")"; grep " E \| W " "$tmp/busy.log" | tail -3; fi

# ---------------------------------------------------------------- 2. hung
pipe "$tmp/hang.pipe" "    param   sleep_ms 30000"
t0=$SECONDS
run hang "$tmp/hang.pipe" --timeout 1 --retries 0; rc=$?
sleep 0.3
if [ $rc -eq 1 ] && [ $((SECONDS - t0)) -lt 15 ] &&
   grep -q "no reply from .* and no sign of life (beat) within 1.0 s" "$tmp/hang.log" &&
   ! pgrep -f "ipc://$S3D_JOB_ROOT" >/dev/null; then
    ok "a stage hung 30 s under --timeout 1: given up after $((SECONDS - t0)) s (no sign of life), exit 1, stopped"
else bad "hung stage: exit $rc after $((SECONDS - t0)) s"; grep " E " "$tmp/hang.log" | tail -3; fi
pkill -f "ipc://$S3D_JOB_ROOT" 2>/dev/null
rm -rf "${S3D_JOB_ROOT:?}"/s3d-*       # the failed run may keep its job

# ---------------------------------------------------------------- 3. --beat by hand
"$tools/echo_stage" --weights "$tmp/w.bin" --listen "ipc://$tmp/x.sock" --beat "$tmp/nosuch.beat" \
    >"$tmp/hand.log" 2>&1; rc=$?
if [ $rc -eq 1 ] && [ "$(grep -c ' E ' "$tmp/hand.log")" -eq 1 ] &&
   grep -q "\-\-beat '$tmp/nosuch.beat': No such file or directory" "$tmp/hand.log"; then
    ok "--beat on a missing file: one error line naming it, exit 1"
else bad "--beat missing file: exit $rc"; cat "$tmp/hand.log"; fi
# ---------------------------------------------------------------- 4. real stages, slower than --timeout
ex=examples/human_object
if [ -x "$build/sam3d-depth" ] && [ -x "$build/sam3d-cond" ] && [ -x "$build/sam3d-ss-flow" ] &&
   [ -f "$ex/image.png" ]; then
    tiny_chain "$tmp" sam3d-depth sam3d-cond sam3d-ss-flow
    "$sam3d" run -i "$ex/image.png" -m "$ex/0.png" -w "$tmp/weights" -o "$tmp/o4" \
        --stages-dir "$tmp/bin" -d cpu --timeout 1.5 --retries 0 >"$tmp/o4.log" 2>&1; rc=$?
    got=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); f=[s for s in r["stages"] if s["name"]=="ss_flow"][0]; print(f["state"], f["restarts"], int(f["wall_ms"]))' "$tmp/o4/report.json" 2>&1)
    if [ $rc -eq 3 ] && [ "${got% *}" = "done 0" ] && [ "${got##* }" -gt 1000 ]; then
        ok "the CPU SS flow (${got##* } ms) under --timeout 1.5: done, no restart, exit 3"
    else bad "real stages under --timeout 1.5: exit $rc, ss_flow: $got"; grep " E " "$tmp/o4.log" | tail -3; fi
else
    echo "SKIP 4: sam3d-depth, sam3d-cond, sam3d-ss-flow or the example are not there"
fi
exit $fail
