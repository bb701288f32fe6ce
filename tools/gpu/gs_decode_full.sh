#!/usr/bin/env bash
# gs_decode_full.sh OUT [SLAT] - sam3d-gs-decode on the GPU machine, in one call (~5 min):
#   1. the GPU tests this decoder touches (S3D_REQUIRE_GPU=1: a skip is a failure):
#      test_op_window (windowed attention, APE), test_op_attention (the flash kernels now read
#      rows through attn_params.rows), test_op_sparse (the row gather / scatter of the trunk's
#      attention groups), test_slat_dec, test_gs_decode, test_gs_decode_cli.sh;
#   2. full-size parity, time and memory against the official decoder
#      (tools/ref/plugin_gs_decode.py): G = 32, ~30k voxels, fp16 and fp32, then G = 4 fp16,
#      then G = 32 fp16 at ~42k voxels;
#      with SLAT (a slat_flow.safetensors of the official chain, e.g. $E2E/slat_flow.safetensors
#      of tools/gpu/e2e_full.sh: 'coords' + 'slat_feats') also on that real latent. Each
#      run's summary splits our driver-measured peak: what the driver held before the stage's
#      first allocation (the CUDA context), the arenas (weights, activations, workspace), the
#      rest (cuBLASLt handle and kernels);
#   0. first, on the idle GPU, when $S3D_BIN/tests/tools/ctx_probe was carried
#      (tests/tools/ctx_probe.c): where a stage's device memory goes before its arenas, step by step.
# Everything goes to OUT (logs, gs_decode_results.json, gs_decode_summary.txt per run).
#
# Needs, carried with the call: the binaries in $S3D_BIN (default build; build/ is ~100 MB with
# its objects, over the 64 MiB carry limit, so here: make -j2 CUDA_ARCH=90, then
#   mkdir -p build-gpu/tests && cp build/sam3d-gs-decode build-gpu/ &&
#   cp build/tests/test_op_window build/tests/test_op_attention build/tests/test_op_sparse \
#      build/tests/test_slat_dec build/tests/test_gs_decode build-gpu/tests/ && strip build-gpu/sam3d-* build-gpu/tests/*
# and carry build-gpu with S3D_BIN=build-gpu, git-ignored, ~6 MB), .whl/
# (sh tools/ref/fetch_wheels.sh: hydra-core, omegaconf, antlr4, loguru, optree, astor), .gl/
# (sh tools/ref/pack_ref.sh: the official sam3d_objects package and the released yaml files),
# .deb/ (tools/gpu/README.md: libzmq5 libmsgpackc2 libsodium23 libpgm-5.3-0 libnorm1
# libjpeg62-turbo). Not needed: spconv (tools/ref/shims/spconv stands in for its tensor
# container; the Gaussian decoder has no convolution), flash-attn (PyTorch's FlashAttention-2
# varlen kernel serves the official flash_attn call, see plugin_gs_decode.py). The GPU machine's
# PyTorch (2.11) runs the official module.
set -u
OUT=${1:?usage: gs_decode_full.sh OUT [SLAT]}
SLAT=${2:-}
BIN=${S3D_BIN:-build}
mkdir -p "$OUT"
# shellcheck disable=SC1091
. tools/gpu/full_lib.sh
full_setup "$OUT" || exit 1
fail=0

# 0. the context's share (before anything else runs on the GPU)
probe=$BIN/tests/tools/ctx_probe          # tests/tools/ctx_probe.c (pack.sh carries it)
[ -x "$probe" ] || probe=$BIN/dev/ctx_probe
if [ -x "$probe" ]; then
    timeout 60 "$probe" 2>&1 | tee "$OUT/ctx_probe.txt"
else
    echo "note: ctx_probe not carried: the context's share is only in the plugin summary"
fi

# 1. tests
full_tests "$OUT" "$BIN" 300 test_op_window test_op_attention test_op_sparse test_slat_dec \
    test_gs_decode ||
    fail=1
BUILD=$BIN timeout 300 bash tests/test_gs_decode_cli.sh >"$OUT/test_gs_decode_cli.log" 2>&1 ||
    fail=1
tail -8 "$OUT/test_gs_decode_cli.log"

# 2. full size against the official decoder
plugin() {  # plugin NAME ARGS...
    local name=$1; shift
    mkdir -p "$OUT/$name"
    PYTHONUNBUFFERED=1 timeout 900 python3 tools/ref/plugin_gs_decode.py --bin "$BIN" \
        --work "/tmp/gsd_$name" --out "$OUT/$name" --s3d .gl/ref/s3d --config-dir .gl/ref/hf \
        "$@" >"$OUT/$name/plugin.log" 2>&1
    local rc=$?
    echo "== plugin $name ($*): exit $rc"
    grep -vE "is_fx_tracing|\| INFO |^running:|^\[gs_decode .* I .*(trunk|Gaussians per)" \
        "$OUT/$name/plugin.log" | tail -70
    [ $rc = 0 ] || fail=1
}
plugin g32 --gaussians 32 --voxels 30000 --precisions fp16,fp32 --time 10 --repeat 10
plugin g4 --gaussians 4 --voxels 30000 --precisions fp16 --time 10 --repeat 10
plugin g32_42k --gaussians 32 --voxels 42000 --precisions fp16 --time 5 --repeat 5
[ -n "$SLAT" ] && plugin chain --gaussians 32 --slat "$SLAT" --precisions fp16,fp32 --time 10 \
    --repeat 10
echo "gs_decode_full: $([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
