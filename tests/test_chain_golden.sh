#!/usr/bin/env bash
# test_chain_golden.sh - a whole `sam3d run` against the official tiny chain, artifact by
# artifact: the golden chain tests/fixtures/chain_tiny (tools/ref/dump_chain_golden.py: the
# official modules on the committed tiny weights, with the noise and voxel subset our stages
# draw from the pipeline's seeds) starts at the condition inputs, so the run starts there too:
# those inputs (tests/fixtures/cond_ss_tiny/ref.safetensors) are the depth artifact of a job
# directory, and `sam3d run --job` continues from it through real stage processes over ZeroMQ
# (CPU, fp32, the few-steps pipeline of tests/lib.sh with the golden's max_coords).
#   1. the run completes: depth kept, every other stage done (report.json); its --outputs
#      splat,mesh,pose writes those three files and nothing else (no preview.png);
#   2. every tensor of cond_ss, cond_slat, ss_flow, ss_decode, slat_flow, gs_decode and
#      mesh_decode equals the golden one within tests/chain_compare.py's tolerances (integers
#      equal; floats relative L2 <= 1e-4; mesh vertices max 1e-5, colours max 1e-3);
#   3. the comparison fails on a golden copy with one Gaussian coordinate moved by 0.01 and on
#      one with a voxel coordinate off by one (so the test can fail);
#   4. nothing left behind: the job directory is removed, no stage process is left.
# Python: standard library only (tests/stmin.py). Env: BUILD (default build).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
sam3d=$build/sam3d
gold=tests/fixtures/chain_tiny
. tests/lib.sh
chain=(sam3d-depth sam3d-cond sam3d-ss-flow sam3d-ss-decode sam3d-slat-flow sam3d-gs-decode
       sam3d-mesh-decode)
need_exec "the whole chain" "$sam3d" "${chain[@]/#/$build/}"
need_python3 "to compare the artifacts"
test_tmp

tiny_chain "$tmp/c" "${chain[@]}"
few_steps_pipe "$tmp/few.pipe"
# the golden's settings are the few-steps pipeline's (its max_coords is passed below)
read -r ss slat maxv seed < <(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))
print(m["ss_steps"], m["slat_steps"], m["max_voxels"], m["seed"])' "$gold/meta.json")
pipe_of() { awk -v s="$1" -v k="$2" '/^stage /{st=$2} st==s && $1=="param" && $2==k {print $3}' "$tmp/few.pipe"; }
if [ "$ss,$slat,$seed,$seed" = "$(pipe_of ss_flow steps),$(pipe_of slat_flow steps),$(pipe_of ss_flow seed),$(pipe_of slat_flow seed)" ]; then
    ok "golden settings = the few-steps pipeline's (steps $ss,$slat, seed $seed; max_coords $maxv)"
else
    bad "golden meta.json (steps $ss,$slat seed $seed) is not the few-steps pipeline's"
fi

# ---------------------------------------------------------------- 1. the run
job=$tmp/jobs/s3d-golden
mkdir -p -m 700 "$tmp/jobs" "$job"
python3 tests/chain_compare.py depth tests/fixtures/cond_ss_tiny/ref.safetensors "$job/depth.safetensors"
out=$tmp/out
t0=$(date +%s)
S3D_JOB_ROOT=$tmp/jobs "$sam3d" run --job "$job" --weights "$tmp/c/weights" --out "$out" \
    --stages-dir "$tmp/c/bin" --pipeline "$tmp/few.pipe" --device cpu \
    --param ss_decode.max_coords="$maxv" --outputs splat,mesh,pose --timeout 300 2>"$tmp/run.log"
rc=$?
if [ $rc -eq 0 ]; then ok "sam3d run --job from the golden condition inputs: exit 0 in $(( $(date +%s) - t0 )) s"
else bad "sam3d run --job: exit $rc"; grep " E " "$tmp/run.log" | head -5; fi
if python3 - "$out/report.json" <<'PY'
import json, sys
st = {s["name"]: s["state"] for s in json.load(open(sys.argv[1]))["stages"]}
want = {n: "done" for n in ("cond_ss", "cond_slat", "ss_flow", "ss_decode", "slat_flow",
                            "gs_decode", "mesh_decode")}
want["depth"] = "kept"
sys.exit(0 if st == want else print(st) or 1)
PY
then ok "report.json: depth kept, the seven later stages done"; else bad "report.json stage states"; fi
if [ -s "$out/splat.ply" ] && [ -s "$out/mesh.glb" ] && [ -s "$out/pose.json" ] &&
   [ ! -e "$out/preview.png" ] && [ ! -e "$out/mesh.ply" ]; then
    ok "sam3d run --outputs splat,mesh,pose: those three files, no preview.png"
else bad "sam3d run --outputs splat,mesh,pose wrote: $(ls "$out" | tr '\n' ' ')"; fi

# ---------------------------------------------------------------- 2. artifact by artifact
if python3 tests/chain_compare.py compare "$out/artifacts" "$gold" >"$tmp/cmp.log"; then
    ok "every artifact matches the official tiny chain ($(grep -c '^ok' "$tmp/cmp.log") checks)"
    sed 's/^/     /' "$tmp/cmp.log"
else
    bad "artifacts differ from the official tiny chain"; sed 's/^/     /' "$tmp/cmp.log"
fi

# ---------------------------------------------------------------- 3. it can fail
perturbed() {   # label FILE NAME INDEX DELTA: the comparison on a golden copy so changed must fail
    rm -rf "$tmp/g2"; cp -r "$gold" "$tmp/g2"
    python3 tests/chain_compare.py perturb "$tmp/g2/$2" "$3" "$4" "$5"
    if python3 tests/chain_compare.py compare "$out/artifacts" "$tmp/g2" >"$tmp/cmp2.log"; then
        bad "$1: the comparison still passes"
    else
        ok "$1: fails ($(grep -m1 '^FAIL' "$tmp/cmp2.log" | cut -c6-110))"
    fi
}
perturbed "a Gaussian x moved by 0.01" gs_decode.safetensors xyz 0 0.01
perturbed "a voxel coordinate off by one" slat_flow.safetensors coords 5 1

# ---------------------------------------------------------------- 4. nothing left behind
if [ ! -e "$job" ]; then ok "job directory removed"; else bad "job directory left: $(ls "$job")"; fi
left=$(pgrep -f "$tmp/c/bin/sam3d-" || true)
if [ -z "$left" ]; then ok "no stage process left"; else bad "stage processes left: $left"; fi
exit $fail
