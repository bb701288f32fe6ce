#!/usr/bin/env bash
# test_budget.sh - the VRAM budget and driver-measured device memory of `sam3d run`, on
# machines without a GPU: real stage processes (build/tests/tools/echo_stage) over ZeroMQ,
# and a fake NVML (build/tests/tools/libfake_nvml.so, loaded through S3D_NVML_LIB) that
# shows what each echo stage "holds on the device" (1 MiB context + its weights file while
# loaded + param act_bytes). Stages a, b, c need 4, 6 and 3 MiB (needs table beside the
# pipeline); the fake device has 64 MiB. No --device is given: the orchestrator takes the
# stages' default, cuda:0 when the driver shows a GPU (the fake one), while the echo stages
# themselves run on the CPU of a machine without one (they never touch the device).
#   1. a budget below a stage's need is refused before any work, naming stage and size;
#   2. the default budget (the free memory): every stage stays loaded, report.json has
#      each stage's driver-measured bytes and the run's peak (the sum) within the budget;
#      b and c load ahead of their turns while a runs (engine.h "Loading ahead");
#   3. 8M: stages are unloaded (farthest next use first) before the next one loads; none
#      loads ahead (none fits beside the stage in its turn);
#   4. 6.5M: unloading is not enough, a stage process is stopped; the peak stays inside;
#   5. a stage that needs more than its table row says: the need is learned, report shows it;
#      a table variant (b[act_bytes=0], b[stream_blocks=1]) runs a stage inside a budget below
#      its plain row; below every row of a stage, the refusal names the least need; a variant
#      is also picked where it lets a neighbour load ahead beside the stage (loaded ahead
#      with its placement), and idle stages needed later are unloaded for a load ahead;
#   6. NVML cannot see our pids (container PID namespace): the device's used memory
#      minus what was used at start stands for our processes;
#   7. the needs table: a malformed line is one error naming FILE:LINE;
#   8. without NVML and without a GPU: method "none", no budget, the run completes.
# After every case: no stage process and no job directory left.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
BUILD=${BUILD:-build}
SAM3D=$BUILD/sam3d
need_exec "" "$SAM3D" "$BUILD/tests/tools/echo_stage" "$BUILD/tests/tools/libfake_nvml.so"
SAM3D=$(realpath "$SAM3D")
TOOLS=$(realpath "$BUILD/tests/tools")
test_tmp
export S3D_JOB_ROOT=$tmp/root S3D_FAKE_NVML_DIR=$tmp/nvml S3D_FAKE_NVML_TOTAL=$((64 << 20))
mkdir -p "$S3D_JOB_ROOT" "$S3D_FAKE_NVML_DIR"
printf 'IMAGE' > "$tmp/img.png"
printf 'MASK' > "$tmp/mask.png"
truncate -s 3M "$tmp/wa.bin"
truncate -s 5M "$tmp/wb.bin"
truncate -s 2M "$tmp/wc.bin"
cat > "$tmp/p.pipe" <<'P'
stage a
    exe     echo_stage
    weights wa.bin
    out     echo_a.safetensors
    param   file $IMAGE
stage b
    exe     echo_stage
    weights wb.bin
    out     echo_b.safetensors
    input   echo_a.safetensors:file_bytes as bytes
stage c
    exe     echo_stage
    weights wc.bin
    out     echo_c.safetensors
    input   echo_b.safetensors:bytes
P
cat > "$tmp/p.needs" <<'N'
# stage  precision  size  run_ms  source
context  fp16       1M    0       the fake context
a        fp16       4M    10      test
b        fp16       6M    10      test
c        fp16       3M    10      test
N

clean() {   # label: no stage process of ours, no job dir, fresh fake-device files
    sleep 0.3
    if pgrep -f "ipc://$S3D_JOB_ROOT" >/dev/null; then
        bad "$1: stage processes left: $(pgrep -af "ipc://$S3D_JOB_ROOT")"
        pkill -f "ipc://$S3D_JOB_ROOT"
    fi
    if [ -n "$(ls -A "$S3D_JOB_ROOT")" ]; then
        bad "$1: job dirs left: $(ls "$S3D_JOB_ROOT")"
        rm -rf "${S3D_JOB_ROOT:?}"/*
    fi
    rm -f "$S3D_FAKE_NVML_DIR"/*
}

run() {   # out [args]: a run on the fake device
    local out=$1
    shift
    S3D_NVML_LIB=$TOOLS/libfake_nvml.so "$SAM3D" run --image "$tmp/img.png" \
        --mask "$tmp/mask.png" --weights "$tmp" --out "$out" --pipeline "$tmp/p.pipe" \
        --stages-dir "$TOOLS" --timeout 10 "$@" 2>"$out.log"
}

# json FILE EXPR: evaluate a python expression on the parsed report (r)
json() {
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"
}
MiB=$((1 << 20))

# ---------------------------------------------------------------- 1. refusal
run "$tmp/o1" --vram-budget 5M; rc=$?
if [ $rc -eq 1 ] && grep -q 'vram-budget 5.0 MiB is below what stage b needs on cuda:0: 6.0 MiB .*HINT: pass --vram-budget 6M or more' "$tmp/o1.log" &&
   ! grep -q 'stage a up\|stage a: run' "$tmp/o1.log"; then
    ok "budget below stage b's need: refused before any stage started"
else
    bad "refusal: rc=$rc"; cat "$tmp/o1.log"
fi
grep -q '"status": "failed"' "$tmp/o1/report.json" || bad "refusal: report status failed"
clean refusal

need_python3 "to read report.json"

# ---------------------------------------------------------------- 2. default budget
run "$tmp/o2"; rc=$?
[ $rc -eq 0 ] || { bad "default budget rc=$rc"; tail "$tmp/o2.log"; }
r=$tmp/o2/report.json
got=$(json "$r" '[s["device_bytes"] for s in r["stages"]]')
want="[$((4 * MiB)), $((6 * MiB)), $((3 * MiB))]"
[ "$got" = "$want" ] && ok "driver-measured bytes per stage $got" || bad "device_bytes $got, want $want"
got=$(json "$r" '(r["vram"]["method"], r["vram"]["devices"][0]["budget_bytes"], r["vram"]["devices"][0]["peak_bytes"], r["vram"]["devices"][0]["peak_of"], r["vram"]["devices"][0]["within_budget"])')
want="('nvml', $((64 * MiB)), $((13 * MiB)), 'our processes', True)"
[ "$got" = "$want" ] && ok "default budget = free memory; peak 13 MiB = all three loaded" ||
    bad "vram $got, want $want"
got=$(json "$r" '(r["vram"]["devices"][0]["name"], r["vram"]["devices"][0]["driver"])')
[ "$got" = "('Fake NVML GPU', '555.42.fake')" ] &&
    ok "report.json: the GPU's name and driver (NVML)" ||
    bad "GPU name/driver $got"
grep -q 'budget: unloaded\|budget: stopped' "$tmp/o2.log" && bad "default budget evicted a stage"
# loading ahead: b and c load while a runs (their turns count the load: not warm, preloaded)
got=$(json "$r" '[(s["warm"], s["preloaded"], s["loads"], s["load_ms"] > 0) for s in r["stages"]]')
want="[(False, False, 1, True), (False, True, 1, True), (False, True, 1, True)]"
if [ "$got" = "$want" ] && grep -q 'stage b: loading its weights ahead of its turn' "$tmp/o2.log" &&
   grep -q 'stage c: loaded ahead in' "$tmp/o2.log" && grep -q 'stage c: run (1 inputs, loaded ahead)' "$tmp/o2.log"; then
    ok "default budget: b and c loaded ahead while a ran (preloaded, one load each)"
else
    bad "loading ahead: $got, want $want"; grep 'ahead\|: run' "$tmp/o2.log"
fi
clean default

# ---------------------------------------------------------------- 3. unloads
run "$tmp/o3" --vram-budget 8M; rc=$?
[ $rc -eq 0 ] || { bad "8M rc=$rc"; tail "$tmp/o3.log"; }
if grep -q 'budget: unloaded a' "$tmp/o3.log" && grep -q 'budget: unloaded b' "$tmp/o3.log" &&
   ! grep -q 'budget: stopped' "$tmp/o3.log"; then
    ok "8M: a unloaded before b, b before c, no process stopped"
else
    bad "8M evictions:"; grep budget "$tmp/o3.log"
fi
got=$(json "$tmp/o3/report.json" '(r["vram"]["devices"][0]["peak_bytes"] <= 8 * 2**20, r["vram"]["devices"][0]["within_budget"])')
[ "$got" = "(True, True)" ] && ok "8M: measured peak inside the budget" || bad "8M peak: $got"
# a (4M) runs: b (6M) does not fit beside it; b (its need) runs: c (3M) does not fit beside it
got=$(json "$tmp/o3/report.json" '[s["preloaded"] for s in r["stages"]]')
[ "$got" = "[False, False, False]" ] && ! grep -q 'ahead' "$tmp/o3.log" &&
    ok "8M: nothing loaded ahead (no stage fits beside the one running)" ||
    { bad "8M loaded ahead: $got"; grep ahead "$tmp/o3.log"; }
clean unloads

# ---------------------------------------------------------------- 4. stops
run "$tmp/o4" --vram-budget 6.5M; rc=$?
[ $rc -eq 0 ] || { bad "6.5M rc=$rc"; tail "$tmp/o4.log"; }
grep -q 'budget: stopped a' "$tmp/o4.log" && ok "6.5M: a's process stopped to make room for b" ||
    { bad "6.5M: a not stopped"; grep budget "$tmp/o4.log"; }
got=$(json "$tmp/o4/report.json" 'r["vram"]["devices"][0]["within_budget"]')
[ "$got" = True ] && ok "6.5M: measured peak inside the budget" || bad "6.5M within_budget $got"
clean stops

# ---------------------------------------------------------------- 5. learned need
sed -i 's/^stage b$/stage b\n    param act_bytes 2097152/' "$tmp/p.pipe"
run "$tmp/o5" --vram-budget 9M; rc=$?
[ $rc -eq 0 ] || { bad "learned rc=$rc"; tail "$tmp/o5.log"; }
got=$(json "$tmp/o5/report.json" 'r["stages"][1]["device_bytes"]')
[ "$got" = $((8 * MiB)) ] && ok "b used 8 MiB (2 MiB of activations over its table row)" ||
    bad "b device_bytes $got"
clean learned

# ---------------------------------------------------------------- 5b. a memory-saving variant
# b with act_bytes 2 MiB needs 8M; the table's variant b[act_bytes=0] needs 6M: a 7M budget
# picks the variant instead of refusing
printf 'b[act_bytes=0] fp16 6M 20 test variant\nb fp16 8M 10 test\n' > "$tmp/p.needs2"
grep -v '^b ' "$tmp/p.needs" >> "$tmp/p.needs2"
cp "$tmp/p.needs" "$tmp/p.needs.good"
mv "$tmp/p.needs2" "$tmp/p.needs"
run "$tmp/o5b" --vram-budget 7M; rc=$?
got=$(json "$tmp/o5b/report.json" 'r["stages"][1]["device_bytes"]' 2>&1)
if [ $rc -eq 0 ] && grep -q 'budget: stage b runs with act_bytes=0 (needs 6.0 MiB on cuda:0, 8.0 MiB without' "$tmp/o5b.log" &&
   [ "$got" = $((6 * MiB)) ]; then
    ok "7M: b runs its memory-saving variant act_bytes=0 (6 MiB) instead of being refused"
else
    bad "variant: rc=$rc device_bytes=$got"; grep -i 'budget\|error' "$tmp/o5b.log"
fi
mv "$tmp/p.needs.good" "$tmp/p.needs"
sed -i '/act_bytes/d' "$tmp/p.pipe"
clean variant

# ---------------------------------------------------------------- 5c. blocks streamed
# b's variant with stream_blocks=1 (stage.h; the echo stage then holds a quarter of its
# 5 MiB weights: 1 + 1.25 MiB): a 5M budget, below b's 6M, runs b with its blocks
# streamed; report.json records the param and b's measured bytes inside the budget
cp "$tmp/p.needs" "$tmp/p.needs.good"
printf 'b[stream_blocks=1] fp16 2.5M 30 test streamed\n' >> "$tmp/p.needs"
run "$tmp/o5c" --vram-budget 5M; rc=$?
got=$(json "$tmp/o5c/report.json" '(r["stages"][1]["params"].get("stream_blocks"), r["stages"][1]["device_bytes"], r["vram"]["devices"][0]["within_budget"])' 2>&1)
want="('1', $((MiB + 5 * MiB / 4)), True)"
if [ $rc -eq 0 ] && [ "$got" = "$want" ] &&
   grep -q 'budget: stage b runs with stream_blocks=1 (needs 2.5 MiB on cuda:0, 6.0 MiB without' "$tmp/o5c.log"; then
    ok "5M: b runs with its blocks streamed (stream_blocks=1 in report.json, 2.25 MiB measured)"
else
    bad "streamed: rc=$rc got $got, want $want"; grep -i 'budget\|error' "$tmp/o5c.log"
fi
clean streamed
# below the streamed need too: refused before any work, naming both needs; the HINT's
# budget is the streamed one
sed -i 's/^b\[stream_blocks=1\] fp16 2.5M/b[stream_blocks=1] fp16 5M/' "$tmp/p.needs"
run "$tmp/o5d" --vram-budget 4M; rc=$?
if [ $rc -eq 1 ] && grep -q 'vram-budget 4.0 MiB is below what stage b needs on cuda:0: 6.0 MiB (fp16; 5.0 MiB with stream_blocks=1, needs table .*HINT: pass --vram-budget 5M or more' "$tmp/o5d.log" &&
   ! grep -q 'stage a up\|stage a: run' "$tmp/o5d.log"; then
    ok "4M: refused, naming b's need resident and streamed (pass 5M)"
else
    bad "streamed refusal: rc=$rc"; cat "$tmp/o5d.log"
fi
mv "$tmp/p.needs.good" "$tmp/p.needs"
clean streamed_refusal

# ---------------------------------------------------------------- 5e. a variant for overlap
# 8M: b fits resident (6M) but not beside a (4M); streamed (2.5M) it does, so b runs streamed
# and loads ahead (with stream_blocks=1) while a runs; in b's turn, c (3M) fits only once a (no
# job needs it again) is unloaded: a is unloaded for that and c loads ahead too
cp "$tmp/p.needs" "$tmp/p.needs.good"
cp "$tmp/p.pipe" "$tmp/p.pipe.good"
printf 'b[stream_blocks=1] fp16 2.5M 30 test streamed\n' >> "$tmp/p.needs"
sed -i 's/^stage a$/stage a\n    param sleep_ms 300/; s/^stage b$/stage b\n    param sleep_ms 300/' "$tmp/p.pipe"
run "$tmp/o5e" --vram-budget 8M; rc=$?
got=$(json "$tmp/o5e/report.json" '([s["preloaded"] for s in r["stages"]], r["stages"][1]["params"].get("stream_blocks"), r["stages"][1]["device_bytes"], r["stages"][1]["loads"], r["vram"]["devices"][0]["within_budget"])' 2>&1)
want="([False, True, True], '1', $((MiB + 5 * MiB / 4)), 1, True)"
if [ $rc -eq 0 ] && [ "$got" = "$want" ] &&
   grep -q 'budget: stage b runs with stream_blocks=1 (needs 2.5 MiB on cuda:0, 6.0 MiB without; budget 8.0 MiB), so that it and a fit side by side' "$tmp/o5e.log" &&
   grep -q 'stage b: loading its weights ahead of its turn (its blocks streamed' "$tmp/o5e.log" &&
   grep -q 'budget: unloaded a (it held 4.0 MiB; to load c ahead' "$tmp/o5e.log" &&
   ! grep -q 'reloading the weights' "$tmp/o5e.log"; then
    ok "8M: b streamed so that it loads ahead beside a; a unloaded so that c loads ahead beside b"
else
    bad "overlap variant: rc=$rc got $got, want $want"; grep -i 'budget\|ahead\|error\|reload' "$tmp/o5e.log"
fi
mv "$tmp/p.needs.good" "$tmp/p.needs"
mv "$tmp/p.pipe.good" "$tmp/p.pipe"
clean overlap

# 5f. 6.2M: a (4M) and b (6M) fit beside each other only with both streamed (2M + 2.5M; one
# alone does not: 2.5 + 4 = 6.5, 2 + 6 = 8): both take their variants, and b and c load ahead
cp "$tmp/p.needs" "$tmp/p.needs.good"
cp "$tmp/p.pipe" "$tmp/p.pipe.good"
printf 'a[stream_blocks=1] fp16 2M 30 test streamed\nb[stream_blocks=1] fp16 2.5M 30 test streamed\n' >> "$tmp/p.needs"
sed -i 's/^stage a$/stage a\n    param sleep_ms 300/; s/^stage b$/stage b\n    param sleep_ms 300/' "$tmp/p.pipe"
run "$tmp/o5f" --vram-budget 6.2M; rc=$?
got=$(json "$tmp/o5f/report.json" '([s["params"].get("stream_blocks") for s in r["stages"]], [s["preloaded"] for s in r["stages"]], r["vram"]["devices"][0]["within_budget"])' 2>&1)
want="(['1', '1', None], [False, True, True], True)"
if [ $rc -eq 0 ] && [ "$got" = "$want" ] &&
   grep -q 'budget: stage b runs with stream_blocks=1 .*so that it and a fit side by side' "$tmp/o5f.log" &&
   grep -q 'budget: stage a runs with stream_blocks=1 .*so that it and b fit side by side' "$tmp/o5f.log"; then
    ok "6.2M: a and b both streamed (neither alone fits beside the other); b and c loaded ahead"
else
    bad "both variants: rc=$rc got $got, want $want"; grep -i 'budget\|ahead\|error' "$tmp/o5f.log"
fi
mv "$tmp/p.needs.good" "$tmp/p.needs"
mv "$tmp/p.pipe.good" "$tmp/p.pipe"
clean both_variants

# ---------------------------------------------------------------- 6. pids not visible
S3D_FAKE_NVML_HIDE_PIDS=1 S3D_FAKE_NVML_BASE=$((10 * MiB)) run "$tmp/o6"; rc=$?
[ $rc -eq 0 ] || { bad "hidden pids rc=$rc"; tail "$tmp/o6.log"; }
got=$(json "$tmp/o6/report.json" '(r["vram"]["devices"][0]["peak_bytes"], r["vram"]["devices"][0]["peak_of"], r["vram"]["devices"][0]["budget_bytes"], r["stages"][0]["device_bytes"])')
want="($((13 * MiB)), 'device used - at start', $((54 * MiB)), None)"
[ "$got" = "$want" ] && ok "pids hidden: the device's used memory minus the start (13 MiB)" ||
    bad "hidden pids: $got, want $want"
clean hidden

# ---------------------------------------------------------------- 7. bad needs table
cp "$tmp/p.needs" "$tmp/p.needs.good"
printf 'b fp16 lots\n' >> "$tmp/p.needs"
run "$tmp/o7"; rc=$?
[ $rc -eq 1 ] && grep -q 'p.needs:6: a stage name, a precision and a size expected' "$tmp/o7.log" &&
    ok "malformed needs table: FILE:LINE named" || { bad "bad table rc=$rc"; cat "$tmp/o7.log"; }
mv "$tmp/p.needs.good" "$tmp/p.needs"
clean table

# ---------------------------------------------------------------- 8. no NVML, no GPU
if [ -e /dev/nvidia0 ]; then
    echo "SKIP 8: a GPU is present (method none needs a machine without one)"
else
    S3D_NVML_LIB=/nonexistent/libnvidia-ml.so.1 "$SAM3D" run --image "$tmp/img.png" \
        --mask "$tmp/mask.png" --weights "$tmp" --out "$tmp/o8" --pipeline "$tmp/p.pipe" \
        --stages-dir "$TOOLS" --timeout 10 2>"$tmp/o8.log"; rc=$?
    got=$(json "$tmp/o8/report.json" '(r["status"], r["vram"]["method"], r["vram"]["devices"])')
    [ $rc -eq 0 ] && [ "$got" = "('complete', 'none', [])" ] &&
        ok "no NVML, no GPU: method none, no budget, run complete" || bad "no GPU: rc=$rc $got"
fi
clean nonvml

# ---------------------------------------------------------------- 9. sizes on the command line
"$SAM3D" run --image x --mask y --out "$tmp/o9" --vram-budget 10X 2>"$tmp/o9.log"; rc=$?
[ $rc -eq 2 ] && grep -q "vram-budget wants a size like 10G or 512M, got '10X'" "$tmp/o9.log" &&
    ok "--vram-budget 10X: usage error" || bad "--vram-budget 10X rc=$rc"
run "$tmp/o9b" --vram-budget 0.25GiB; rc=$?
got=$(json "$tmp/o9b/report.json" 'r["vram"]["devices"][0]["budget_bytes"]' 2>&1)
[ $rc -eq 0 ] && [ "$got" = $((256 * MiB)) ] && ok "--vram-budget 0.25GiB = 256 MiB" ||
    bad "0.25GiB: rc=$rc budget=$got"
clean sizes

# ---------------------------------------------------------------- 10. the shipped table parses
mkdir -p "$tmp/nostages"
"$SAM3D" run --image "$tmp/img.png" --mask "$tmp/mask.png" --weights "$tmp" --out "$tmp/o10" \
    --pipeline pipelines/sam3d_objects.pipe --stages-dir "$tmp/nostages" 2>"$tmp/o10.log"; rc=$?
[ $rc -eq 3 ] && ! grep -q 'needs:' "$tmp/o10.log" &&
    ok "pipelines/sam3d_objects.needs parses (nothing built: exit 3)" ||
    { bad "shipped needs table: rc=$rc"; cat "$tmp/o10.log"; }
clean shipped

exit $fail
