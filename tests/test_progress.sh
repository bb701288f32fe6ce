#!/usr/bin/env bash
# test_progress.sh - what `sam3d run` shows while it works (orchestrator/progress.h), over real
# stage processes (build/tests/tools/echo_stage) and ZeroMQ:
#   1. on a terminal (a pty from script(1)): a live line per stage that counts up, a line that
#      stays when the stage ends, the log in OUT/sam3d.log instead of the terminal, and a
#      stage's error still shown;
#   2. not a terminal: the log as before plus "sam3d: [k/n] stage started/done" lines;
#   3. --json: one JSON object a line on stdout, events in order, nothing else on stdout;
#   4. -q / --quiet: no info lines (ours or the stages'), errors still shown.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
BUILD=${BUILD:-build}
need_exec "" "$BUILD/sam3d" "$BUILD/tests/tools/echo_stage"
SAM3D=$(realpath "$BUILD/sam3d")
TOOLS=$(realpath "$BUILD/tests/tools")
test_tmp
export S3D_JOB_ROOT=$tmp/root
mkdir -p "$S3D_JOB_ROOT"
cd "$tmp" || exit 1
printf 'IMAGE' > img.png
printf 'MASK' > mask.png
printf 'w' > w.bin
pipe() {   # FILE [extra line for stage second]
    printf 'stage first\n  exe echo_stage\n  weights w.bin\n  out echo_first.safetensors\n  param file $IMAGE\n  param sleep_ms 700\n' > "$1"
    printf 'stage second\n  exe echo_stage\n  out echo_second.safetensors\n  input echo_first.safetensors:file_bytes as bytes\n%s\n' "${2:-}" >> "$1"
}
pipe ok.pipe
pipe err.pipe "  param fail no-good-input"
run() {   # out pipe [args]
    local out=$1 p=$2
    shift 2
    "$SAM3D" run --image img.png --mask mask.png --weights . --out "$out" --pipeline "$p" \
        --stages-dir "$TOOLS" --timeout 10 "$@"
}

# ---------------------------------------------------------------- 1. a terminal
if command -v script >/dev/null && script -qec true /dev/null >/dev/null 2>&1; then
    script -qec "$SAM3D run --image img.png --mask mask.png --weights . --out o1 --pipeline ok.pipe --stages-dir $TOOLS" /dev/null > tty1.txt
    rc=$?
    tr -d '\r' < tty1.txt > tty1.clean
    if [ $rc -eq 0 ] && grep -q '^sam3d: log in o1/sam3d.log' tty1.clean &&
       grep -q '\[1/2\] first        0\.[2-6] s' tty1.clean &&
       grep -q '\[1/2\] first        done 0\.[7-9] s' tty1.clean &&
       grep -q '\[2/2\] second       done' tty1.clean && grep -q '^sam3d: complete in' tty1.clean &&
       grep -q $'\e\[1A\e\[2K' tty1.clean && ! grep -q '\] I ' tty1.clean; then
        ok "terminal: live line counting up, lines that stay, no log lines"
    else
        bad "terminal output (rc=$rc):"; cat -A tty1.txt | head -20
    fi
    grep -q '\[sam3d [0-9]*\] I .*stage first done in' o1/sam3d.log &&
        grep -q '\[echo [0-9]*\] I .*serving on' o1/sam3d.log &&
        ok "terminal: our log and the stages' in o1/sam3d.log" || bad "log file: $(head -3 o1/sam3d.log)"
    script -qec "$SAM3D run --image img.png --mask mask.png --weights . --out o1e --pipeline err.pipe --stages-dir $TOOLS" /dev/null > tty1e.txt
    rc=$?
    tr -d '\r' < tty1e.txt > tty1e.clean
    [ $rc -eq 1 ] && grep -q '\[2/2\] second       failed .*: no-good-input' tty1e.clean &&
        grep -q '\] E .*no-good-input' tty1e.clean &&
        ok "terminal: a failed stage and its error shown" || { bad "terminal error (rc=$rc)"; cat tty1e.clean; }
else
    echo "SKIP 1: script(1) cannot make a terminal here"
fi

# ---------------------------------------------------------------- 2. not a terminal
run o2 ok.pipe 2>o2.log; rc=$?
[ $rc -eq 0 ] && grep -q '^sam3d: \[1/2\] first started' o2.log &&
    grep -q '^sam3d: \[1/2\] first        done' o2.log && grep -q '^sam3d: complete in .* -> o2' o2.log &&
    grep -q '\] I .*stage second done in' o2.log && [ ! -e o2/sam3d.log ] &&
    ok "not a terminal: plain progress lines among the log" || { bad "plain (rc=$rc)"; cat o2.log; }

# ---------------------------------------------------------------- 3. --json
run o3 ok.pipe --json >o3.json 2>o3.log; rc=$?
need_python3 "to read the JSON events"
got=$(python3 -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
print(" ".join(e["event"] + ("/" + e["stage"] if "stage" in e else "") for e in ev))
print(ev[-1]["status"], ev[2]["state"], ev[2]["index"], ev[2]["of"])' o3.json 2>&1)
want="job_start stage_start/first stage_done/first stage_start/second stage_done/second job_done
complete done 1 2"
[ $rc -eq 0 ] && [ "$got" = "$want" ] && ok "--json: six events in order, each a JSON object" ||
    bad "--json (rc=$rc): $got"

# ---------------------------------------------------------------- 4. quiet
run o4 ok.pipe -q 2>o4.log; rc=$?
[ $rc -eq 0 ] && [ ! -s o4.log ] && ok "-q: nothing on stderr for a good run" ||
    { bad "-q (rc=$rc)"; cat o4.log; }
run o4e err.pipe --quiet 2>o4e.log; rc=$?
[ $rc -eq 1 ] && grep -q '\] E .*stage second failed: no-good-input' o4e.log && ! grep -q '\] I ' o4e.log &&
    ok "--quiet: the error still shown, no info lines" || { bad "--quiet error (rc=$rc)"; cat o4e.log; }

# the failed runs (err.pipe: its first stage done) keep their job for `sam3d run --job`
for d in "$S3D_JOB_ROOT"/s3d-*; do [ -e "$d/.s3d-keep" ] && rm -rf "$d"; done
[ -z "$(ls -A "$S3D_JOB_ROOT")" ] || bad "job dirs left: $(ls "$S3D_JOB_ROOT")"
exit $fail
