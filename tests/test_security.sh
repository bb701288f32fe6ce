#!/usr/bin/env bash
# test_security.sh - issue 15's findings through `sam3d run` and real stage processes
# (build/tests/tools/echo_stage; docs/security.md). Each reproduction is refused or handled:
#   F8  --image /dev/zero, a FIFO, a directory: one error line naming the input, exit 1,
#       nothing copied, no job directory left
#   F9  `kill -9` of the orchestrator, idle and busy stages: every stage process exits within
#       a few seconds (5 rounds); the next `sam3d run` removes the dead one's job directory,
#       and a kept one survives
#  F10  an error about the image names the user's file, not the job's deleted copy; a
#       144-Mpixel image is refused before anything starts, with the limit and --max-pixels;
#       a stopped (SIGSTOP) stage that times out is described as stopped
# Env: BUILD (default build).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
. tests/lib.sh
need_exec "the orchestrator and the echo stage" "$build/sam3d" "$build/tests/tools/echo_stage"
need_python3 "to write the test images"
test_tmp
sam3d=$(cd "$build" && pwd)/sam3d
tools=$(cd "$build/tests/tools" && pwd)
export S3D_JOB_ROOT=$tmp/root
mkdir -p "$S3D_JOB_ROOT"
printf 'IMAGEBYTES' >"$tmp/img.png"
printf 'MASK' >"$tmp/mask.png"
printf 'weights' >"$tmp/w.bin"
cat >"$tmp/p.pipe" <<P
stage first
    exe     echo_stage
    weights w.bin
    out     echo_first.safetensors
    param   file \$IMAGE
stage second
    exe     echo_stage
    out     echo_second.safetensors
    input   echo_first.safetensors:file_bytes as bytes
P
sed 's/^    param   file \$IMAGE/    param   file $IMAGE\n    param   sleep_ms 60000/' \
    "$tmp/p.pipe" >"$tmp/hang.pipe"
run() {   # LOG PIPE [args]: sam3d run on the echo pipeline
    local log=$1 p=$2; shift 2
    "$sam3d" run --image "$tmp/img.png" --mask "$tmp/mask.png" --weights "$tmp" \
        --out "$tmp/out" --pipeline "$p" --stages-dir "$tools" --timeout 10 "$@" 2>"$log"
}
stage_pids() { pgrep -f "ipc://$S3D_JOB_ROOT" | tr '\n' ' '; }

# ---------------------------------------------------------------- F8
mkfifo "$tmp/fifo.png"
for bad_in in /dev/zero "$tmp/fifo.png" "$tmp"; do
    timeout 20 "$sam3d" run --image "$bad_in" --mask "$tmp/mask.png" --weights "$tmp" \
        --out "$tmp/o8" --pipeline "$tmp/p.pipe" --stages-dir "$tools" 2>"$tmp/o8.log"
    rc=$?
    if [ $rc -eq 1 ] && grep -q -- "--image '$bad_in' is a" "$tmp/o8.log" &&
       [ -z "$(ls -A "$S3D_JOB_ROOT")" ]; then
        ok "F8 --image $bad_in: $(grep -m1 -- '--image' "$tmp/o8.log" | sed 's/.*E [0-9:.]* //')"
    else
        bad "F8 --image $bad_in: exit $rc"; tail -3 "$tmp/o8.log"
    fi
done

# ---------------------------------------------------------------- F9
survivors=0
for round in 1 2 3 4 5; do
    pipe=$tmp/hang.pipe                      # 'first' busy (sleeping), 'second' idle
    "$sam3d" run --image "$tmp/img.png" --mask "$tmp/mask.png" --weights "$tmp" \
        --out "$tmp/o9" --pipeline "$pipe" --stages-dir "$tools" --timeout 60 \
        --keep-job 2>"$tmp/o9.log" &
    orch=$!
    for _ in $(seq 50); do [ -n "$(stage_pids)" ] && break; sleep 0.1; done
    sleep 1                                  # stages up; on hang.pipe 'first' is busy
    kill -9 $orch
    wait $orch 2>/dev/null
    for _ in $(seq 50); do [ -z "$(stage_pids)" ] && break; sleep 0.1; done
    if [ -n "$(stage_pids)" ]; then
        survivors=$((survivors + 1))
        pgrep -af "ipc://$S3D_JOB_ROOT" | sed 's/^/     left: /'
        kill -9 $(stage_pids) 2>/dev/null
    fi
done
if [ $survivors -eq 0 ]; then
    ok "F9 kill -9 of the orchestrator, 5 rounds (busy and idle stages): no stage survived"
else
    bad "F9 stages survived the orchestrator in $survivors of 5 rounds"
fi
# the dead orchestrators' job directories (kept by --keep-job) stay; an unkept one goes
kept=$(ls "$S3D_JOB_ROOT" | wc -l)
"$sam3d" run --image "$tmp/img.png" --mask "$tmp/mask.png" --weights "$tmp" \
    --out "$tmp/o9b" --pipeline "$tmp/hang.pipe" --stages-dir "$tools" --timeout 60 \
    2>"$tmp/o9b.log" &
orch=$!
for _ in $(seq 50); do [ -n "$(stage_pids)" ] && break; sleep 0.1; done
kill -9 $orch
wait $orch 2>/dev/null
sleep 1
dead=$(ls "$S3D_JOB_ROOT" | wc -l)
run "$tmp/o9c.log" "$tmp/p.pipe"
rc=$?
left=$(ls "$S3D_JOB_ROOT" | wc -l)
if [ $rc -eq 0 ] && [ "$dead" -eq $((kept + 1)) ] && [ "$left" -eq "$kept" ] &&
   grep -q "removed the job directory of an orchestrator that died" "$tmp/o9c.log"; then
    ok "F9 the next run removed the dead orchestrator's job directory; $kept kept ones stay"
else
    bad "F9 stale job directory: rc $rc, $kept kept, $dead after the kill, $left after the run"
fi
rm -rf "${S3D_JOB_ROOT:?}"/*

# ---------------------------------------------------------------- F10
# an error about the image names the user's file
sed 's/^    param   file \$IMAGE/    param   fail $IMAGE/' "$tmp/p.pipe" >"$tmp/fail.pipe"
run "$tmp/o10.log" "$tmp/fail.pipe"
rc=$?
if [ $rc -eq 1 ] && grep -q "stage first failed: $tmp/img.png" "$tmp/o10.log" &&
   ! grep -q "input_image" "$tmp/out/report.json"; then
    ok "F10 a stage's error names --image as given, not the job's copy"
else
    bad "F10 user's path: exit $rc"; grep -m2 'failed' "$tmp/o10.log"
fi
# 144 Mpixels: refused before anything starts, with the fix
python3 - "$tmp/big.png" <<'PY'
import struct, sys, zlib
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" +
    chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b""))
PY
"$sam3d" run --image "$tmp/big.png" --mask "$tmp/mask.png" --weights "$tmp" --out "$tmp/o11" \
    --pipeline "$tmp/p.pipe" --stages-dir "$tools" 2>"$tmp/o11.log"
rc=$?
if [ $rc -eq 1 ] && grep -q "is 12000x12000, 144.0 Mpixels, over the limit of 80.0 Mpixels" \
       "$tmp/o11.log" && grep -q -- "--max-pixels" "$tmp/o11.log" &&
   [ -z "$(ls -A "$S3D_JOB_ROOT")" ] && [ -z "$(stage_pids)" ]; then
    ok "F10 a 144-Mpixel image: refused before any stage starts, limit and --max-pixels named"
else
    bad "F10 144 Mpixels: exit $rc"; tail -2 "$tmp/o11.log"
fi
"$sam3d" run --max-pixels 2X --image "$tmp/img.png" --mask "$tmp/mask.png" --out "$tmp/o12" \
    2>/dev/null
[ $? -eq 2 ] && ok "F10 --max-pixels with a bad value: usage (exit 2)" ||
    bad "--max-pixels 2X accepted"
# a stopped stage that times out is described as stopped
"$sam3d" run --image "$tmp/img.png" --mask "$tmp/mask.png" --weights "$tmp" --out "$tmp/o13" \
    --pipeline "$tmp/hang.pipe" --stages-dir "$tools" --timeout 4 --retries 0 2>"$tmp/o13.log" &
orch=$!
for _ in $(seq 50); do grep -q "stage first: run" "$tmp/o13.log" && break; sleep 0.1; done
kill -STOP $(pgrep -f "first.sock") 2>/dev/null
wait $orch
rc=$?
if [ $rc -eq 1 ] && grep -q "the process was stopped (SIGSTOP or a debugger), not answering" \
       "$tmp/o13.log" && [ -z "$(stage_pids)" ]; then
    ok "F10 a stopped stage: 'no reply ...; the process was stopped ... and is killed'"
else
    bad "F10 stopped stage: exit $rc"; grep -m2 'stage first' "$tmp/o13.log"
    kill -9 $(stage_pids) 2>/dev/null
fi
if [ -z "$(stage_pids)" ] && [ -z "$(ls -A "$S3D_JOB_ROOT")" ]; then
    ok "no stage process and no job directory left"
else
    bad "left behind: $(stage_pids) $(ls -A "$S3D_JOB_ROOT")"
fi
exit $fail
