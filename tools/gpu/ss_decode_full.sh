#!/usr/bin/env bash
# ss_decode_full.sh OUT [LATENT] - sam3d-ss-decode on the GPU machine, in one call (~3 min on
# an H100; builds nothing):
#   1. the GPU tests this stage touches (S3D_REQUIRE_GPU=1: a skip is a failure):
#      test_op_conv3d (cuDNN NDHWC conv, direct kernel, pixel shuffle), test_ss_decode (CUDA
#      fp32 / fp16 against the CPU on the tiny fixture), tests/test_ss_decode_cli.sh;
#   2. full size against the official SS decoder (tools/ref/plugin_ss_decode.py; issue 10's
#      last proof item): the released ss_decoder.yaml with seeded random weights written as
#      the official flat ss_decoder.ckpt, a (1, 4096, 8) shape latent (LATENT: a safetensors
#      with 'shape_latent' or 'final.shape' instead, e.g. ss_flow.safetensors of the official
#      chain), two cases (the output bias shifted so that the official prune leaves ~30,000
#      voxels: no downsample; ~60,000: downsampled by 2), fp16 and fp32: logits relative L2
#      (<= 1e-2 fp16), occupied-voxel IoU (>= 0.99), the pruned + downsampled coordinates,
#      the official forward time (CUDA events, 20 after 2 warm-ups) against our stage's median
#      of 20, both processes' driver-measured peak (nvidia-smi), our per-op profile.
# Everything goes to OUT (logs, ss_decode_results.json, ss_decode_summary.txt) and
# OUT/ss_decode_full.tar.gz (all of it, one file to fetch).
#
# Needs, carried with the call: the binaries in $S3D_BIN (default build-gpu: build/ with its
# objects is over the 64 MiB carry limit), made on the development machine with
#   make -j2 CUDA_ARCH=90 build/sam3d-ss-decode build/tests/test_ss_decode \
#       build/tests/test_op_conv3d &&
#   mkdir -p build-gpu/tests && cp build/sam3d-ss-decode build-gpu/ &&
#   cp build/tests/test_ss_decode build/tests/test_op_conv3d build-gpu/tests/ &&
#   strip build-gpu/sam3d-* build-gpu/tests/*
# (git-ignored; a build-gpu/ with more in it, e.g. runtime_check.sh's, serves as well); .whl/
# (sh tools/ref/fetch_wheels.sh: hydra-core, omegaconf, antlr4, loguru, optree, astor), .gl/
# (sh tools/ref/pack_ref.sh: the official sam3d_objects package and the released yaml files),
# .deb/ (tools/gpu/README.md). No spconv or flash-attn wheel: the SS decoder is dense
# (tools/ref/shims/spconv stands in for the sparse modules' imports). The GPU machine's
# PyTorch runs the official module.
set -u
OUT=${1:?usage: ss_decode_full.sh OUT [LATENT]}
LATENT=${2:-}
BIN=${S3D_BIN:-build-gpu}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
# shellcheck disable=SC1091
. tools/gpu/full_lib.sh
full_setup "$OUT" || exit 1
fail=0
pack() {
    tar -czf "$OUT/ss_decode_full.tar.gz" -C "$OUT" --exclude ss_decode_full.tar.gz . &&
        echo "results: $OUT/ss_decode_full.tar.gz"
}

# 1. tests
full_tests "$OUT" "$BIN" 240 test_op_conv3d test_ss_decode || fail=1
BUILD=$BIN timeout 200 bash tests/test_ss_decode_cli.sh >"$OUT/test_ss_decode_cli.log" 2>&1 ||
    fail=1
tail -4 "$OUT/test_ss_decode_cli.log"
grep "^FAIL" "$OUT/test_ss_decode_cli.log"

# 2. full size against the official decoder
mkdir -p "$OUT/plugin"
PYTHONUNBUFFERED=1 timeout 400 python3 tools/ref/plugin_ss_decode.py --bin "$BIN" \
    --work /tmp/ssd_full --out "$OUT/plugin" --s3d .gl/ref/s3d --config-dir .gl/ref/hf \
    --pruned 30000,60000 --precisions fp16,fp32 --time 20 --repeat 20 \
    ${LATENT:+--latent "$LATENT"} >"$OUT/plugin/plugin.log" 2>&1
rc=$?
echo "== plugin_ss_decode.py: exit $rc"
grep -vE "is_fx_tracing|\| INFO |^running:" "$OUT/plugin/plugin.log" | tail -80
[ $rc = 0 ] || fail=1
pack
echo "ss_decode_full: $([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
