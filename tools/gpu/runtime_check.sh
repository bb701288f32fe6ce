#!/usr/bin/env bash
# runtime_check.sh OUT - the stage runtime, the copy ops and the per-context cuDNN/cuBLASLt
# state on the GPU machine, in one call (~6 min):
#   1. every GPU test program (as `make test-gpu`: S3D_REQUIRE_GPU=1, a skip is a failure):
#      among them test_op_copy (copy/zero/upload/download bit-identical to the CPU),
#      test_op_conv2d / test_op_conv3d (cuDNN through the op context's handle and algorithm
#      cache), test_op_gemm (cuBLASLt's per-context cache), test_stage_rt (cuda:0 fp16/fp32,
#      the workspace from the runtime's arena), the stage tests' CUDA parts;
#   2. the stage command line with a GPU present (tests/test_stage_cli.sh: a cuda:N that does
#      not exist is one error line and exit 1) and sam3d-ss-decode's CUDA path
#      (tests/test_ss_decode_cli.sh: fp32 logits and coords exact, fp16 close);
#   3. the memory line and the timed loop on CUDA: sam3d-ss-decode --once on its fixture,
#      fp16 and fp32, repeat 5 with S3D_PROFILE=1 (the per-op table, the driver's count);
#   4. activation arenas sized by the forwards' plan mode: step 1 already runs the CUDA paths
#      of test_vit / test_cond / test_depth / test_gs_decode / test_slat_dec in arenas of
#      <net>_act_bytes, and test_op_conv2d / _groupnorm / _resize, whose CUDA ops ASSERT that
#      they took exactly op_*_scratch_bytes (what a planning arena counts); here
#      tests/test_gs_decode_cli.sh (sam3d-gs-decode --once on cuda:0) and sam3d-depth --once on
#      cuda:0 (fp16, fp32) with the tiny MoGe on examples/human_object (1600x898) at 36 tokens
#      and at the released 2551 (the released geometry), with their memory lines.
# Everything goes to OUT (one log per test, summary.txt).
#
# Needs, carried with the call: the binaries in $S3D_BIN (default build; build/ with its
# objects is over the carry limit, so: make -j2 CUDA_ARCH=90, then
#   mkdir -p build-gpu/tests/tools && cp build/sam3d build/sam3d-* build-gpu/ &&
#   for t in build/tests/test_*; do case $t in *.o|*.d) ;; *) cp "$t" build-gpu/tests/ ;; esac; done &&
#   cp build/tests/tools/echo_stage build-gpu/tests/tools/ && strip build-gpu/sam3d* build-gpu/tests/test_* build-gpu/tests/tools/*
# about 56 MB; carry build-gpu with S3D_BIN=build-gpu) and .deb/ (tools/gpu/README.md). No
# Python packages beyond the standard library.
set -u
OUT=${1:?usage: runtime_check.sh OUT}
BIN=${S3D_BIN:-build}
mkdir -p "$OUT"
# shellcheck disable=SC1091
. tools/gpu/device_env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
fail=0

# 1. every test program, GPU required
S3D_REQUIRE_GPU=1 timeout 1200 tests/run_tests.sh "$BIN" gpu >"$OUT/test_gpu.log" 2>&1 || fail=1
grep -E "^(PASS|FAIL|SKIP)|passed," "$OUT/test_gpu.log" | tee "$OUT/summary.txt"

# 2. scripts with a GPU part
for t in test_stage_cli test_ss_decode_cli; do
    BUILD=$BIN timeout 300 bash "tests/$t.sh" >"$OUT/$t.log" 2>&1
    rc=$?
    echo "$t: exit $rc, $(grep -c '^ok' "$OUT/$t.log") ok, $(grep -c '^FAIL' "$OUT/$t.log") FAIL" |
        tee -a "$OUT/summary.txt"
    grep '^FAIL' "$OUT/$t.log" | head -20
    [ $rc = 0 ] || fail=1
done

# 3. the timed loop, the per-op profile and the memory line on CUDA
fx=tests/fixtures/ss_decoder_tiny
mkdir -p "$OUT/ssd_in"
python3 - "$fx/ref.safetensors" "$OUT/ssd_in/in.safetensors" <<'PY' || fail=1
import json, struct, sys
raw = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", raw[:8])[0]
e = json.loads(raw[8:8 + n])["shape_latent"]; d = raw[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]]
h = json.dumps({"shape_latent": {"dtype": "F32", "shape": e["shape"], "data_offsets": [0, len(d)]}}).encode()
h += b" " * (-len(h) % 8); open(sys.argv[2], "wb").write(struct.pack("<Q", len(h)) + h + d)
PY
for prec in fp16 fp32; do
    mkdir -p "$OUT/ssd_$prec"
    S3D_PROFILE=1 "$BIN/sam3d-ss-decode" --weights "$fx/ss_decoder.ckpt" --device cuda:0 \
        --precision $prec --once "$OUT/ssd_in" "$OUT/ssd_$prec" --param repeat=5 \
        >"$OUT/ssd_$prec.log" 2>&1 || fail=1
    echo "ss_decode $prec:" | tee -a "$OUT/summary.txt"
    grep -E "latent .* logits|memory: device peak" "$OUT/ssd_$prec.log" | sed 's/^.* I [0-9:.]* /  /' |
        tee -a "$OUT/summary.txt"
    grep -q "memory: device peak .* driver: .* MiB in use on cuda:0" "$OUT/ssd_$prec.log" || {
        echo "  FAIL no memory line with the driver's count" | tee -a "$OUT/summary.txt"; fail=1; }
    grep -A12 "ss_decode forward" "$OUT/ssd_$prec.log" | head -14
done
# 4. plan-sized activation arenas on CUDA (an under-sized arena aborts in arena_must_alloc)
BUILD=$BIN timeout 300 bash tests/test_gs_decode_cli.sh >"$OUT/test_gs_decode_cli.log" 2>&1
rc=$?
echo "test_gs_decode_cli: exit $rc, $(grep -c '^ok' "$OUT/test_gs_decode_cli.log") ok," \
     "$(grep -c '^FAIL' "$OUT/test_gs_decode_cli.log") FAIL" | tee -a "$OUT/summary.txt"
[ $rc = 0 ] || { fail=1; grep '^FAIL' "$OUT/test_gs_decode_cli.log" | head -20; }
mkdir -p "$OUT/depth_in"
cp examples/human_object/image.png "$OUT/depth_in/image.png" &&
    cp examples/human_object/0.png "$OUT/depth_in/mask.png" || fail=1
for prec in fp16 fp32; do
    for tok in 36 2551; do
        o="$OUT/depth_${prec}_$tok"
        mkdir -p "$o"
        "$BIN/sam3d-depth" --weights tests/fixtures/moge_tiny/model.pt --device cuda:0 \
            --precision $prec --once "$OUT/depth_in" "$o" --param image="$OUT/depth_in/image.png" \
            --param mask="$OUT/depth_in/mask.png" --param num_tokens=$tok --param repeat=3 \
            >"$o.log" 2>&1
        rc=$?
        echo "depth $prec, $tok tokens: exit $rc" | tee -a "$OUT/summary.txt"
        grep -E "memory: device peak" "$o.log" | sed 's/^.* I [0-9:.]* /  /' | tee -a "$OUT/summary.txt"
        [ $rc = 0 ] || { fail=1; tail -n 8 "$o.log"; }
    done
done
echo "runtime_check: $([ $fail = 0 ] && echo PASS || echo FAIL)" | tee -a "$OUT/summary.txt"
exit $fail
