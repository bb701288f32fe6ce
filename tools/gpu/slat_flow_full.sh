#!/usr/bin/env bash
# slat_flow_full.sh OUT [COORDS] - sam3d-slat-flow on the GPU machine, in one call (~6 min on
# an H100; builds nothing):
#   1. the GPU tests of this stage (S3D_REQUIRE_GPU=1: a skip is a failure): test_slat_flow
#      (CUDA forward fp32/fp16 and the CUDA sampler against the CPU on the tiny fixture),
#      test_op_sparse, test_op_attention, tests/test_slat_flow_cli.sh;
#   2. full size against the official SLAT generator (tools/ref/plugin_slat_flow.py): the
#      released configuration with seeded random weights (one slat_generator.ckpt for both),
#      ~30k voxels (two nested bumpy shells at 64^3 through the official prune and downsample;
#      COORDS: a safetensors with 'coords' instead, e.g. ss_decode.safetensors of the official
#      chain), a 5496-token condition, the same noise: one evaluation fp32 and fp16 (issue 10:
#      <= 1e-3 / <= 1e-2 relative L2, also 2 v_cond - v_uncond), the whole 25-step sampler in
#      fp16 (<= 2e-2), times per evaluation and per sampler against the official module, the
#      driver's per-process peak of our stage at ~30k voxels and at the 42,000-voxel ceiling
#      (with and without the condition K/V cache), our per-op profile of 2 steps.
# Everything goes to OUT (logs, slat_flow_results.json, slat_flow_summary.txt) and
# OUT/slat_flow_full.tar.gz (all of it, one file to fetch).
#
# Needs, carried with the call: the binaries in $S3D_BIN (default build-gpu: build/ with its
# objects is over the 64 MiB carry limit), made on the development machine with
#   make -j2 CUDA_ARCH=90 build/sam3d-slat-flow build/tests/test_slat_flow \
#       build/tests/test_op_sparse build/tests/test_op_attention &&
#   mkdir -p build-gpu/tests && cp build/sam3d-slat-flow build-gpu/ &&
#   cp build/tests/test_slat_flow build/tests/test_op_sparse build/tests/test_op_attention \
#      build-gpu/tests/ && strip build-gpu/sam3d-* build-gpu/tests/*
# (git-ignored, ~5 MB); .whl/ (sh tools/ref/fetch_wheels.sh) and in it spconv.tar.xz
# (tools/gpu/spconv_pack/pack.sh .whl/spconv.tar.xz: the official SLAT flow's submanifold
# convolutions need the real spconv on the GPU; $S3D_SPCONV names another file, or leave it
# out where /tmp/site already has spconv); .gl/ (sh tools/ref/pack_ref.sh: the official
# sam3d_objects package and the released yaml files); .deb/ (tools/gpu/README.md). The GPU
# machine's PyTorch runs the official module; its flash_attn calls are served by PyTorch's
# FlashAttention-2 varlen kernel (tools/ref/flash_shim.py).
set -u
OUT=${1:?usage: slat_flow_full.sh OUT [COORDS]}
COORDS=${2:-}
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
    tar -czf "$OUT/slat_flow_full.tar.gz" -C "$OUT" --exclude slat_flow_full.tar.gz . &&
        echo "results: $OUT/slat_flow_full.tar.gz"
}

# 1. tests
full_tests "$OUT" "$BIN" 240 test_slat_flow test_op_sparse test_op_attention || fail=1
BUILD=$BIN timeout 200 bash tests/test_slat_flow_cli.sh >"$OUT/test_slat_flow_cli.log" 2>&1 || fail=1
grep -c "^ok" "$OUT/test_slat_flow_cli.log" | sed 's/^/test_slat_flow_cli.sh: ok lines /'
grep "^FAIL" "$OUT/test_slat_flow_cli.log"

# 2. full size against the official generator
if ! full_spconv "$SPCONV"; then
    pack
    exit 1
fi
mkdir -p "$OUT/plugin"
PYTHONUNBUFFERED=1 timeout 540 python3 tools/ref/plugin_slat_flow.py --bin "$BIN" \
    --work /tmp/slf_full --out "$OUT/plugin" --s3d .gl/ref/s3d --config-dir .gl/ref/hf \
    --voxels 30000 --ceiling 42000 --time 5 --repeat 3 ${COORDS:+--coords "$COORDS"} \
    >"$OUT/plugin/plugin.log" 2>&1
rc=$?
echo "== plugin_slat_flow.py: exit $rc"
grep -vE "is_fx_tracing|\| INFO |slat_flow: step [0-9]+/" "$OUT/plugin/plugin.log" | tail -60
[ $rc = 0 ] || fail=1
pack
echo "slat_flow_full: $([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
