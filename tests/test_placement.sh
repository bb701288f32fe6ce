#!/usr/bin/env bash
# test_placement.sh - the pipelines placed over several GPUs (pipelines/sam3d_objects_2gpu.pipe,
# _4gpu.pipe; issue 17) and the 'include' / 'place' directives (orchestrator/pipeline.h):
#   1. each placement file places every stage of the base pipeline, on as many GPUs as named;
#   2. a run through the 2-GPU file, its devices moved to the CPU by --stage-device (this
#      machine has no GPU: the file's own devices are checked on the GPU machine), gives the
#      artifacts of the base pipeline bit for bit, and report.json names the placed file;
#   3. errors: 'place' of an unknown stage, 'include' after a stage, an include inside an
#      included file, a missing included file - each exit 1 with FILE:LINE and the reason.
# Only sam3d-depth and sam3d-cond are offered (a stages dir of links): the chain is the same
# whatever later stages are built. Env: BUILD (default build).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
sam3d=$build/sam3d
ex=examples/human_object
. tests/lib.sh
need_exec "needs sam3d, sam3d-depth and sam3d-cond" "$sam3d" "$build/sam3d-cond" "$build/sam3d-depth"
need_example "$ex"
test_tmp

# ---------------------------------------------------------------- 1. every stage placed
base=$(awk '$1 == "stage" { print $2 }' pipelines/sam3d_objects.pipe | sort | tr '\n' ' ')
for n in 2 4; do
    f=pipelines/sam3d_objects_${n}gpu.pipe
    placed=$(awk '$1 == "place" { print $2 }' "$f" | sort | tr '\n' ' ')
    gpus=$(awk '$1 == "place" { print $3 }' "$f" | sort -u | wc -l)
    if [ "$placed" = "$base" ] && [ "$gpus" -eq "$n" ]; then
        ok "$f: every stage placed, on $n GPUs"
    else
        bad "$f: placed '$placed' on $gpus devices; the base has '$base'"
    fi
done

# ---------------------------------------------------------------- 2. a run through it
tiny_chain "$tmp" sam3d-depth sam3d-cond
w=$tmp/weights
run() {   # OUT LOG [args...]
    local out=$1 log=$2; shift 2
    S3D_JOB_ROOT=$tmp/jobs "$sam3d" run --image "$ex/image.png" --mask "$ex/0.png" \
        --weights "$w" --out "$out" --stages-dir "$tmp/bin" --timeout 300 "$@" 2>"$log"
}
run "$tmp/base" "$tmp/base.log" --device cpu
cpu=()
for s in $base; do cpu+=(--stage-device "$s=cpu"); done
run "$tmp/placed" "$tmp/placed.log" --pipeline pipelines/sam3d_objects_2gpu.pipe "${cpu[@]}"
rc=$?
if [ $rc -eq 3 ] && grep -q "stage cond_slat done in" "$tmp/placed.log"; then
    ok "run through sam3d_objects_2gpu.pipe (devices moved to the CPU): exit 3 as the base"
else
    bad "placed run: exit $rc"; tail -8 "$tmp/placed.log"
fi
sha() { "$sam3d" inspect --sha256 "$1" | cut -f1,4; }
good=1
for f in depth cond_ss cond_slat; do
    [ -n "$(sha "$tmp/base/artifacts/$f.safetensors")" ] &&
        [ "$(sha "$tmp/base/artifacts/$f.safetensors")" = "$(sha "$tmp/placed/artifacts/$f.safetensors")" ] ||
        { good=0; echo "     $f differs"; }
done
if [ $good = 1 ]; then ok "artifacts bit-identical to the base pipeline's"; else bad "artifacts differ"; fi
if grep -q "sam3d_objects_2gpu.pipe" "$tmp/placed/report.json"; then
    ok "report.json names the placement file"
else
    bad "report.json does not name sam3d_objects_2gpu.pipe"
fi

# ---------------------------------------------------------------- 3. errors
bad_pipe() {   # label WANT-IN-MESSAGE FILE-CONTENT
    local label=$1 want=$2 p=$tmp/p/bad.pipe rc
    mkdir -p "$tmp/p"
    cp pipelines/sam3d_objects.pipe "$tmp/p/"
    printf '%b\n' "$3" >"$p"
    run "$tmp/o_bad" "$tmp/bad.log" --pipeline "$p" --device cpu
    rc=$?
    if [ $rc -eq 1 ] && grep -q "bad.pipe:[0-9]*: .*$want" "$tmp/bad.log"; then
        ok "$label: exit 1, '$(grep -m1 -o "bad.pipe:[0-9]*: .*" "$tmp/bad.log")'"
    else
        bad "$label: exit $rc"; tail -3 "$tmp/bad.log"
    fi
}
bad_pipe "place of an unknown stage" "not defined above" "include sam3d_objects.pipe\nplace nosuch cuda:1"
bad_pipe "place with a bad device" "expected 'place NAME" "include sam3d_objects.pipe\nplace depth gpu1"
bad_pipe "include after a stage" "once, before any stage" "stage a\n    exe sam3d-depth\ninclude sam3d_objects.pipe"
printf 'include sam3d_objects.pipe\n' >"$tmp/p2.pipe"; mkdir -p "$tmp/p"; cp "$tmp/p2.pipe" "$tmp/p/inner.pipe"
cp pipelines/sam3d_objects.pipe "$tmp/p/"
bad_pipe "include inside an included file" "included pipeline has errors" "include inner.pipe"
grep -q "'include' inside an included file" "$tmp/bad.log" && ok "  ... and the inner file's line named" ||
    bad "inner include not named"
bad_pipe "missing included file" "included pipeline has errors" "include nowhere.pipe"
# 'place' takes effect: one stage placed on a device this machine lacks fails there, named
mkdir -p "$tmp/q" && cp pipelines/sam3d_objects.pipe "$tmp/q/"
printf 'include sam3d_objects.pipe\nplace cond_slat cuda:7\n' >"$tmp/q/one.pipe"
run "$tmp/o_q" "$tmp/q.log" --pipeline "$tmp/q/one.pipe" --device cpu
rc=$?
if [ $rc -ne 0 ] && grep -q "cond_slat .*failed.*device cuda:7" "$tmp/q.log" &&
   grep -q "stage cond_ss done in" "$tmp/q.log"; then
    ok "place cond_slat cuda:7: cond_ss ran on the CPU, cond_slat failed on cuda:7 (exit $rc)"
else
    bad "place did not take effect: exit $rc"; tail -4 "$tmp/q.log"
fi
# the failed run (cond_ss done) keeps its job for `sam3d run --job` (test_faults.sh)
for d in "$tmp"/jobs/s3d-*; do [ -e "$d/.s3d-keep" ] && rm -rf "$d"; done
if [ -z "$(ls -A "$tmp/jobs")" ]; then ok "no job directory left"; else
    bad "left in the job root: $(ls -A "$tmp/jobs")"; fi
left=$(pgrep -f "$tmp/bin/sam3d-" || true)
if [ -z "$left" ]; then ok "no stage process left"; else bad "stage processes left: $left"; fi
exit $fail
