#!/usr/bin/env bash
# slat_perf.sh OUT - sam3d-slat-flow speed and memory against the official SLAT generator, in
# one GPU call (~5 min on an H100; builds nothing; issue 10's targets: the 38-evaluation fp16
# sampler >= 1.5x faster than the official module at ~30k voxels, driver-measured peak of the
# stage process <= 1.2 GB of fp16 weights + 0.6 GB at 42,000 voxels):
#   1. the GPU tests of the ops and the stage the performance work touches (S3D_REQUIRE_GPU=1:
#      a skip is a failure): test_slat_flow (CUDA forward/sampler fp32 and fp16 against the
#      CPU), test_op_layernorm (+ the fused LayerNorm + modulation), test_op_rmsnorm,
#      test_op_flow (the sampler update on the device),
#      test_op_elementwise, test_op_sparse_tap (the tap-wise conv), test_op_gemm, test_op_act,
#      test_op_sparse, test_op_attention (also the S3D_ATTN_MT=2 kernel);
#   2. the CUDA context probe (tests/tools/ctx_probe): the device memory of a bare context, of
#      cuBLASLt, of the first kernel and of the per-thread stack reservation, to split the
#      stage's driver count into context / libraries / arenas;
#   3. tools/ref/plugin_slat_flow.py --evals fp16: the same seeded random weights, ~30k voxels,
#      5496 condition tokens and noise for both: one fp16 evaluation (v_cond and the CFG
#      combination <= 1e-2), the official fp16 sampler (2 timed runs after a warm-up) against
#      ours (median of 3 in one process, feats <= 2e-2; again with S3D_ATTN_MT=2, the attention
#      kernel with two m-tiles per warp, or with each setting of $SLAT_PERF_VARIANTS, space-
#      separated VAR=VALUE), our per-op profile of a warm whole
#      sampler (S3D_PROFILE=1, second run of 2), the driver's peak of our process at ~30k and
#      at the 42,000-voxel ceiling with cache_kv=1 and cache_kv=0.
# Everything goes to OUT (logs, plugin/slat_flow_results.json, plugin/slat_flow_summary.txt)
# and OUT/slat_perf.tar.gz (all of it).
#
# Run it through tools/gpu/call.sh (tools/gpu/README.md "One call": make -j2 CUDA_ARCH=90,
# bash tools/gpu/pack.sh, carry what it prints, then on the device
#   bash tools/gpu/call.sh 585 slat_perf
# which unpacks build-gpu/ and spconv into /tmp/site and sets S3D_BIN=build-gpu), or alone with
# S3D_BIN naming a folder with sam3d-slat-flow, tests/test_* and tests/tools/ctx_probe, .whl/,
# .gl/, .deb/ carried and spconv in /tmp/site (or .whl/spconv.tar.xz, $S3D_SPCONV).
set -u
OUT=${1:?usage: slat_perf.sh OUT}
BIN=${S3D_BIN:-build-gpu}
SPCONV=${S3D_SPCONV:-.whl/spconv.tar.xz}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
# shellcheck source=tools/gpu/full_lib.sh
. tools/gpu/full_lib.sh
mkdir -p /tmp/site
full_setup "$OUT" || exit 1
fail=0
pack() {
    tar -czf "$OUT/slat_perf.tar.gz" -C "$OUT" --exclude slat_perf.tar.gz . &&
        echo "results: $OUT/slat_perf.tar.gz"
}

# 1. tests
full_tests "$OUT" "$BIN" 240 test_slat_flow test_op_layernorm test_op_rmsnorm test_op_flow \
    test_op_elementwise test_op_sparse_tap test_op_gemm test_op_act test_op_sparse \
    test_op_attention || fail=1

# 2. where the device memory of a process goes before any arena
if [ -x "$BIN/tests/tools/ctx_probe" ]; then
    timeout 60 "$BIN/tests/tools/ctx_probe" 2>&1 | tee "$OUT/ctx_probe.log"
else
    echo "ctx_probe: not in $BIN/tests/tools (skipped)"
fi

# 3. against the official generator
if ! full_spconv "$SPCONV"; then
    pack
    exit 1
fi
mkdir -p "$OUT/plugin"
# the workshop settings our sampler also runs with (space-separated VAR=VALUE; e.g. the attention
# kernel candidates: SLAT_PERF_VARIANTS="S3D_ATTN_KERNEL=v2 S3D_ATTN_KERNEL=v2b")
variants=()
for v in ${SLAT_PERF_VARIANTS:-S3D_ATTN_MT=2}; do variants+=(--variant "$v"); done
PYTHONUNBUFFERED=1 timeout 480 python3 tools/ref/plugin_slat_flow.py --bin "$BIN" \
    --work /tmp/slf_perf --out "$OUT/plugin" --s3d .gl/ref/s3d --config-dir .gl/ref/hf \
    --voxels 30000 --ceiling 42000 --time 4 --repeat 3 --evals fp16 "${variants[@]}" \
    >"$OUT/plugin/plugin.log" 2>&1
rc=$?
echo "== plugin_slat_flow.py: exit $rc"
grep -vE "is_fx_tracing|\| INFO |slat_flow: step [0-9]+/" "$OUT/plugin/plugin.log" | tail -40
echo "== our warm sampler's profile"
sed -n '/S3D_PROFILE/,/^\[/p' "$OUT/plugin/ours_profile_fp16.log" | head -40
[ $rc = 0 ] || fail=1
pack
echo "slat_perf: $([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
