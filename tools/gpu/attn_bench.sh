#!/usr/bin/env bash
# attn_bench.sh OUT - the fused attention kernel's variants (issue 16: S3D_ATTN_KERNEL=v1|v2|v2b|v2s|v3|v4|split,
# kernels/cuda/attention.cu) checked and timed in one GPU call (~2 min on an H100; builds
# nothing; binaries from $S3D_BIN, default build-gpu, as tools/gpu/pack.sh packs them):
#   1. S3D_REQUIRE_GPU=1 (a skip is a failure): test_op_attention (every variant - v1 with one
#      and two m-tiles per warp, v2, v2b, v2s, v3, v4, split - on every shape against the CPU reference:
#      DINOv2, SS flow self/cross, varlen windows, fp32 fallbacks); test_op_window under
#      S3D_ATTN_KERNEL=v1, v2, v2b, v2s, v3 and v4 (swin windows through a row permutation against the
#      CPU); test_slat_flow under v2, v2s, v3 and v4 (the SLAT flow network and sampler in fp16 and fp32 on the
#      GPU against the CPU and the official fixture, with the variant inside the stage code);
#   2. $S3D_BIN/dev/attention_bench 3 4 9 10 11 12 13 14 15 (`make CUDA_ARCH=90 dev`): at the flow
#      transformers' shapes (SLAT flow self 5941 / cross 5941x5496 / self 9116, SS flow self
#      4096 / cross 4096x7528 with the CFG batch, DINOv2 1374, the pose stream's 4-query
#      blocks over 4100 and 7528 keys (where split applies), swin
#      windows), per version: ms, TFLOP/s (4 B H Tq Tk 64), max error against the CPU
#      reference and against the current kernel (v1) on the same data; WRONG marks a bound
#      broken (exit 1).
# Everything goes to OUT: one log per step, summary.txt (the GPU, the commit, the verdict lines
# and the bench table).
#
# ATTN_TINY=1 runs the same steps on a development machine without a GPU (tests without
# S3D_REQUIRE_GPU: they run their CPU parts and skip; the bench must say "no CUDA device"),
# with S3D_BIN=build by default - the CPU-safe check of this script.
#
# Through tools/gpu/call.sh (tools/gpu/README.md "One call"):
#   make -j2 CUDA_ARCH=90 && make -j2 CUDA_ARCH=90 dev && bash tools/gpu/pack.sh
#   bash tools/gpu/call.sh 585 attn_bench          (on the device; carry .gpubin and .deb)
set -u
OUT=${1:?usage: attn_bench.sh OUT}
TINY=${ATTN_TINY:-0}
if [ "$TINY" = 1 ]; then BIN=${S3D_BIN:-build}; else BIN=${S3D_BIN:-build-gpu}; fi
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
fail=0
S=$OUT/summary.txt
: >"$S"
if [ "$TINY" != 1 ]; then
    # shellcheck disable=SC1091
    . tools/gpu/device_env.sh
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader |
        tee "$OUT/gpu.txt" | tee -a "$S"
fi
echo "attn_bench at $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%FT%TZ)" | tee -a "$S"

# run NAME SECONDS ENV... -- PROGRAM ARGS...: one test program, its log in OUT/NAME.log and a
# verdict line (exit status, OK / FAIL counts) in summary.txt
run() {
    local name=$1 secs=$2 rc envs=()
    shift 2
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    if [ ! -x "$1" ]; then
        echo "$name: $1 missing (HINT: make -j2 CUDA_ARCH=90, bash tools/gpu/pack.sh)" | tee -a "$S"
        fail=1
        return
    fi
    [ "$TINY" = 1 ] || envs+=(S3D_REQUIRE_GPU=1)
    env "${envs[@]}" timeout "$secs" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "$name: exit $rc; $(grep -c ' OK$' "$OUT/$name.log") OK, $(grep -c 'FAIL' "$OUT/$name.log") FAIL" \
         "$(grep -m1 '^SKIP' "$OUT/$name.log")" | tee -a "$S"
    grep -E "FAIL|WRONG|cuda error|CUDA error" "$OUT/$name.log" | head -20 | tee -a "$S"
    [ $rc = 0 ] || { [ "$TINY" = 1 ] && [ $rc = 77 ]; } || fail=1   # 77: skipped (no GPU)
}

# 1. correctness of every variant
t0=$(date +%s)
run test_op_attention 150 -- "$BIN/tests/test_op_attention"
for k in v1 v2 v2b v2s v3 v4; do
    run "test_op_window.$k" 60 S3D_ATTN_KERNEL=$k -- "$BIN/tests/test_op_window"
done
for k in v2 v2s v3 v4; do
    run "test_slat_flow.$k" 90 S3D_ATTN_KERNEL=$k -- "$BIN/tests/test_slat_flow"
done
echo "tests: $(( $(date +%s) - t0 )) s" | tee -a "$S"

# 2. timings at the real shapes (f16 v1 MT2 / v2 / v2s / v3 / v4 / split, bf16 v3 / v4 / split)
B=$BIN/dev/attention_bench
if [ ! -x "$B" ]; then
    echo "attention_bench: $B missing (HINT: make -j2 CUDA_ARCH=90 dev before tools/gpu/pack.sh)" | tee -a "$S"
    fail=1
else
    timeout 150 "$B" 3 4 9 10 11 12 13 14 15 >"$OUT/attention_bench.log" 2>&1
    rc=$?
    if [ "$TINY" = 1 ]; then
        # no GPU here: the bench must refuse cleanly, after checking its arguments
        "$B" 0 >/dev/null 2>&1
        arg_rc=$?
        if [ $rc = 1 ] && grep -q "no CUDA device" "$OUT/attention_bench.log" && [ $arg_rc = 2 ]; then
            echo "attention_bench: no CUDA device (as expected here); argument check ok" | tee -a "$S"
        else
            echo "attention_bench: unexpected exit $rc without a GPU" | tee -a "$S"
            fail=1
        fi
    else
        echo "attention_bench: exit $rc" | tee -a "$S"
        cat "$OUT/attention_bench.log" >>"$S"
        [ $rc = 0 ] || fail=1
    fi
fi
echo "attn_bench: $([ $fail = 0 ] && echo 'all steps passed' || echo 'SOME STEP FAILED') (total $(( $(date +%s) - t0 )) s)" | tee -a "$S"
exit $fail
