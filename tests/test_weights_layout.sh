#!/usr/bin/env bash
# test_weights_layout.sh - `--weights DIR` in the official layouts (orchestrator/pipeline.h
# pipeline_weights_path, README "Getting the official weights"), with the tiny random-weight
# model on the CPU path (depth and cond only):
#   1. the download before the move (DIR/checkpoints/*.ckpt) and a sam-3d-objects checkout
#      (DIR/checkpoints/hf/*.ckpt, MoGe in DIR/checkpoints/hf/moge-vitl/): sam3d run finds every
#      file and gives the flat layout's cond_ss artifact bit for bit;
#   2. sam3d check-weights --weights DIR (and the positional DIR) binds them from there;
#   3. a missing file: the run fails (exit 1) and check-weights says FAILED (missing), both naming the
#      file and every place looked in.
# Env: BUILD (default build).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
sam3d=$build/sam3d
ex=examples/human_object
. tests/lib.sh
need_exec "needs sam3d, sam3d-depth and sam3d-cond" "$sam3d" "$build/sam3d-depth" "$build/sam3d-cond"
need_example "$ex"
test_tmp
tiny_chain "$tmp" sam3d-depth sam3d-cond
export S3D_JOB_ROOT=$tmp/jobs
run() {   # WEIGHTS OUT: sam3d run into $tmp/OUT; rc
    "$sam3d" run -i "$ex/image.png" -m "$ex/0.png" -w "$1" -o "$tmp/$2" --stages-dir "$tmp/bin" \
        -d cpu --timeout 120 >"$tmp/$2.log" 2>&1
}
sha() { "$sam3d" inspect --sha256 "$tmp/$1/artifacts/cond_ss.safetensors" | awk -F'\t' '$1 == "cond_ss" { print $4 }'; }

run "$tmp/weights" flat; rc=$?
[ $rc -eq 3 ] && [ -n "$(sha flat)" ] || { bad "flat layout: exit $rc"; tail -5 "$tmp/flat.log"; }
mkdir -p "$tmp/dl" "$tmp/repo/checkpoints"
cp -r "$tmp/weights" "$tmp/dl/checkpoints"
cp -r "$tmp/weights" "$tmp/repo/checkpoints/hf"
for d in dl repo; do
    run "$tmp/$d" "o_$d"; rc=$?
    if [ $rc -eq 3 ] && [ "$(sha "o_$d")" = "$(sha flat)" ]; then
        ok "--weights in the $d layout: exit 3, cond_ss identical to the flat layout's"
    else bad "--weights in the $d layout: exit $rc"; tail -5 "$tmp/o_$d.log"; fi
done

"$sam3d" check-weights --weights "$tmp/repo" --stages-dir "$tmp/bin" >"$tmp/cw" 2>&1; rc=$?
"$sam3d" check-weights "$tmp/repo" --stages-dir "$tmp/bin" >"$tmp/cw2" 2>&1; rc2=$?
if [ $rc -eq 3 ] && [ $rc2 -eq 3 ] && [ "$(grep -c '^[a-z_]* *OK ' "$tmp/cw")" -eq 3 ] &&
   grep -q "cond_ss .*OK .*$tmp/repo/checkpoints/hf/ss_generator.ckpt" "$tmp/cw"; then
    ok "check-weights --weights DIR (and DIR): 3 stages OK from checkpoints/hf/, exit 3"
else bad "check-weights --weights: exit $rc / $rc2"; cat "$tmp/cw"; fi

rm "$tmp/repo/checkpoints/hf/ss_generator.ckpt"
run "$tmp/repo" miss; rc=$?
looked="ss_generator.ckpt in $tmp/repo, checkpoints/, hf/ and checkpoints/hf/"
if [ $rc -eq 1 ] && grep -q "E .*stage cond_ss: weights '$tmp/repo/ss_generator.ckpt': No such file or directory (looked for $looked)" "$tmp/miss.log"; then
    ok "a missing file: exit 1 naming it and the 4 places looked in"
else bad "missing file: exit $rc"; grep " E " "$tmp/miss.log"; fi
"$sam3d" check-weights -w "$tmp/repo" --stages-dir "$tmp/bin" >"$tmp/cw3" 2>&1; rc=$?
if [ $rc -eq 1 ] && grep -q "cond_ss .*FAILED  missing, looked for $looked" "$tmp/cw3"; then
    ok "check-weights: FAILED, missing, with the places looked in, exit 1"
else bad "check-weights on a missing file: exit $rc"; cat "$tmp/cw3"; fi
exit $fail
