#!/usr/bin/env bash
# bench_full.sh OUT - the whole-pipeline benchmark on the GPU machine, in one call (~5-7 min
# on one H100/H200; issue 16, docs/performance.md "Whole pipeline"):
#   0. the input: examples/human_object upscaled to a 6000x4500 JPEG (the issue's size) and
#      its mask (BENCH_IMAGE / BENCH_MASK: another pair; BENCH_SIZE=WxH another size, "native"
#      the example as it is);
#   1. the official pipeline (tools/ref/bench_official.py): full-size random weights drawn on
#      the GPU and written in the official layout to /tmp/s3d-bench/weights (~12 GB), loaded as
#      the official pipeline loads them (timed), then run cold, warm and in the distillation
#      mode (--fast) with every network resident, from our seeded noise;
#   2. ours on the same weights and image: `sam3d bench --runs 2` (cold: processes started,
#      weights from the page cache; warm) and `sam3d bench --runs 2 --preset fast`;
#   2b. the levers of issue 16, each an A/B against the default (BENCH_LEVERS=0 skips them):
#      S3D_GEMM_EPILOGUE=0 (the GELU epilogue off), the SS flow's K/V cache on, and
#      S3D_WARMUP=0 (no warm-up after the loads ahead: compared on the cold run);
#   2b'. BENCH_ATTN="v4 ..." (default empty): each attention kernel named, through
#      S3D_ATTN_KERNEL, as one more A/B variant of the default;
#   2c. BENCH_PROFILE=1 (default 1): `sam3d bench --runs 2` again with S3D_PROFILE=1, so each
#      stage's log has its per-op device time table (kernels/prof.h) of the warm run, in
#      OUT/ours_profile/ours_profile.log (the timings of this run are not used);
#   3. tools/ref/bench_report.py: the side-by-side table (per stage: TFLOP, compute floor,
#      official and our warm time, achieved TFLOP/s, speed-up, device memory, load time), the
#      totals against the issue's targets, --preset fast's speed and its output difference
#      from the default, ours vs the official outputs.
# OUT gets gpu.txt, official/official.json + log, ours/ and ours_fast/ (bench.json, the table,
# each run's report.json, the logs; the artifacts stay in /tmp/s3d-bench), bench_report.md/.json.
# BENCH_TINY=1: the same steps on the CPU of a development machine with the tiny configurations
# (bench_official.py --size tiny --device cpu, .ref/ checkouts, at most 400 voxels, our flows
# with 3 + 2 steps from a pipeline copy): checks the script end to end (~15 min on 2 cores).
# BENCH_SKIP_OFFICIAL=1 reuses /tmp/s3d-bench (weights + official.json) of an earlier call on
# the same warm machine and runs only ours and the report.
# BENCH_PRECISION=fp32: both sides in fp32 (issue 16: `--precision fp32` not slower than the
# official modules in fp32): bench_official.py --precision fp32 (no autocast, fp32 torsos;
# official_fp32.json; the weights of an earlier call reused) and `sam3d bench --precision
# fp32`; no --preset fast run, no levers, no profile; the report's floors at
# BENCH_PEAK_TFLOPS (default 67: the H100/H200 fp32 rate without tensor cores).
#
# Needs, carried with the call (tools/gpu/README.md, tools/ref/README.md "GPU run"):
#   $S3D_BIN (default build): sam3d and every sam3d-* stage, x86-64 sm_90. build/ with its
#     objects is over the 64 MiB carry limit; here: make -j2 CUDA_ARCH=90, then
#     mkdir -p build-gpu && cp build/sam3d build/sam3d-* build-gpu/ && strip build-gpu/*
#     and carry build-gpu with S3D_BIN=build-gpu;
#   .whl/ (sh tools/ref/fetch_wheels.sh), .gl/ (sh tools/ref/pack_ref.sh), .deb/
#     (tools/gpu/README.md), examples/human_object (tracked, so carried with the tree);
#   the official sparse convolution in $WHEELS (default /tmp/s3d-wheels) on the machine:
#     spconv-cu126 2.3.8 + cumm-cu126 0.7.11 and their pure-python needs, brought in parts on a
#     warm machine as tools/ref/README.md "GPU run" describes (the SLAT flow and the mesh decoder
#     of the official pipeline use it; without it the official half stops with a clear error
#     and only our half and its table run).
set -u
OUT=${1:?usage: bench_full.sh OUT}
BIN=${S3D_BIN:-build}
WH=${WHEELS:-/tmp/s3d-wheels}
WORK=${BENCH_WORK:-/tmp/s3d-bench}
mkdir -p "$OUT" "$WORK"
t_start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t_start )) s] $*"; }

if [ "${BENCH_TINY:-0}" = 1 ]; then
    dev=cpu
    official=(--size tiny --device cpu --max-voxels 400 --s3d .ref/sam-3d-objects --moge .ref/MoGe
              --dinov2 .ref/dinov2 --hf .ref/Fast-SAM3D/checkpoints/hf)
    pipe=$WORK/tiny.pipe
    awk '/^stage /{st=$2} st=="ss_flow" && $1=="param" && $2=="steps"{$0="    param   steps 3"}
         st=="slat_flow" && $1=="param" && $2=="steps"{$0="    param   steps 2"}
         {print} /^stage ss_decode/{print "    param   max_coords 400"}' \
        pipelines/sam3d_objects.pipe >"$pipe"
    cp pipelines/sam3d_objects.needs "${pipe%.pipe}.needs"
    ours_args=(--pipeline "$pipe")
    echo "cpu (BENCH_TINY: tiny configurations)" >"$OUT/gpu.txt"
else
    dev=cuda:0
    official=(--size full --device cuda --s3d .gl/ref/s3d --moge .gl/ref/moge --dinov2 .gl/ref/dinov2
              --hf .gl/ref/hf)
    ours_args=()
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl $(ls "$WH"/*.whl 2>/dev/null) || exit 1
    export PYTHONPATH=/tmp/site
    # shellcheck disable=SC1091
    . tools/gpu/device_env.sh
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >"$OUT/gpu.txt"
fi
cat "$OUT/gpu.txt"
gpu=$(head -1 "$OUT/gpu.txt" | cut -d, -f1)
for b in sam3d sam3d-depth sam3d-cond sam3d-ss-flow sam3d-ss-decode sam3d-slat-flow \
         sam3d-gs-decode sam3d-mesh-decode; do
    [ -x "$BIN/$b" ] || echo "warning: $BIN/$b missing: the pipeline stops before it"
done
python3 -c "import spconv.pytorch, cumm; print('spconv', spconv.__version__)" ||
    echo "warning: spconv is not importable: the official SLAT flow and mesh decoder cannot run"

# ---------------------------------------------------------------- 0. the input
img=${BENCH_IMAGE:-}
mask=${BENCH_MASK:-}
if [ -z "$img" ]; then
    size=${BENCH_SIZE:-6000x4500}
    src=${BENCH_EXAMPLE:-examples/human_object}
    if [ "$size" = native ]; then
        img=$src/image.png mask=$src/0.png
    else
        img=$WORK/image_$size.jpg mask=$WORK/mask_$size.png
        python3 - "$src" "$size" "$img" "$mask" <<'PY' || exit 1
import sys
from PIL import Image
src, size, img, mask = sys.argv[1:]
w, h = map(int, size.split("x"))
Image.open(src + "/image.png").convert("RGB").resize((w, h), Image.BICUBIC).save(img, quality=92)
Image.open(src + "/0.png").resize((w, h), Image.NEAREST).save(mask)
PY
    fi
fi
stamp "input $img ($(python3 -c "from PIL import Image; print('%dx%d' % Image.open('$img').size)"))"

# ---------------------------------------------------------------- 1. the official pipeline
prec=${BENCH_PRECISION:-fp16}
case $prec in fp16|fp32) ;; *) echo "BENCH_PRECISION=$prec: fp16 or fp32"; exit 2 ;; esac
ojson=official.json oargs=(--fast)
if [ "$prec" = fp32 ]; then
    ojson=official_fp32.json oargs=(--precision fp32 --reuse-weights)
    BENCH_LEVERS=0 BENCH_PROFILE=0
    ours_args+=(--precision fp32)
fi
mkdir -p "$OUT/official"
if [ "${BENCH_SKIP_OFFICIAL:-0}" != 1 ]; then
    PYTHONUNBUFFERED=1 timeout "${OFFICIAL_TIMEOUT:-420}" python3 tools/ref/bench_official.py \
        "${official[@]}" --image "$img" --mask "$mask" --weights-out "$WORK/weights" \
        --out "$OUT/official" --work "$WORK/official" --runs 2 "${oargs[@]}" \
        >"$OUT/official/bench_official.log" 2>&1
    rc=$?
    grep "^\[" "$OUT/official/bench_official.log" | tail -30
    stamp "bench_official.py: exit $rc"
    [ $rc = 0 ] || tail -30 "$OUT/official/bench_official.log"
    [ "$ojson" != official.json ] && [ -f "$OUT/official/official.json" ] &&
        mv "$OUT/official/official.json" "$OUT/official/$ojson"
else
    cp "$WORK/$ojson" "$OUT/official/" 2>/dev/null
fi
[ -f "$OUT/official/$ojson" ] && cp "$OUT/official/$ojson" "$WORK/"
[ -f "$WORK/weights/ss_generator.ckpt" ] || { echo "no weights in $WORK/weights"; exit 1; }

# ---------------------------------------------------------------- 2. ours
ours() {  # ours NAME ARGS...
    local name=$1; shift
    rm -rf "${WORK:?}/$name"
    timeout 600 "$BIN/sam3d" bench --image "$img" --mask "$mask" --weights "$WORK/weights" \
        --out "$WORK/$name" --device "$dev" --runs 2 "${ours_args[@]}" "$@" \
        >"$WORK/$name.txt" 2>"$WORK/$name.log"
    local rc=$?
    mkdir -p "$OUT/$name"
    cp "$WORK/$name.txt" "$WORK/$name.log" "$OUT/$name/"
    cp "$WORK/$name/bench.json" "$OUT/$name/" 2>/dev/null
    for r in "$WORK/$name"/run*; do
        [ -d "$r" ] && mkdir -p "$OUT/$name/$(basename "$r")" &&
            cp "$r/report.json" "$OUT/$name/$(basename "$r")/" 2>/dev/null
    done
    stamp "sam3d bench $name: exit $rc"
    cat "$WORK/$name.txt"
    [ $rc = 0 ] || grep -E " E |error" "$WORK/$name.log" | tail -10
}
ours ours
[ "$prec" = fp16 ] && ours ours_fast --preset fast
# the levers, each against the default (BENCH_LEVERS=0 skips them): the cuBLASLt GELU epilogue
# off (S3D_GEMM_EPILOGUE=0: fc1 then a separate GELU pass), the SS flow's condition K/V cache on
variants=()
if [ "${BENCH_LEVERS:-1}" = 1 ]; then
    S3D_GEMM_EPILOGUE=0 ours ours_no_gelu_epilogue
    variants+=(--variant "GELU epilogue off=$WORK/ours_no_gelu_epilogue")
    kvpipe=$WORK/kv_cache.pipe
    awk '{print} /^stage ss_flow/{print "    param   cache_kv 1"}' \
        "${pipe:-pipelines/sam3d_objects.pipe}" >"$kvpipe"
    cp pipelines/sam3d_objects.needs "${kvpipe%.pipe}.needs"
    ours_args_saved=("${ours_args[@]}")
    ours_args=(--pipeline "$kvpipe")
    ours ours_kv_cache
    ours_args=("${ours_args_saved[@]}")
    variants+=(--variant "ss_flow K/V cache on=$WORK/ours_kv_cache")
    S3D_WARMUP=0 ours ours_no_warmup
    variants+=(--variant-cold "warm-up off=$WORK/ours_no_warmup")
fi
# attention kernels to A/B against the default (BENCH_ATTN="v4 ...": S3D_ATTN_KERNEL of each,
# ~10 s a run; empty by default)
for k in ${BENCH_ATTN:-}; do
    S3D_ATTN_KERNEL=$k ours "ours_attn_$k"
    variants+=(--variant "attention $k=$WORK/ours_attn_$k")
done
if [ "${BENCH_PROFILE:-1}" = 1 ]; then
    S3D_PROFILE=1 ours ours_profile
    grep -c "S3D_PROFILE" "$OUT/ours_profile/ours_profile.log" 2>/dev/null |
        sed 's/^/per-op tables in ours_profile.log: /'
fi

# ---------------------------------------------------------------- 3. the tables
args=(--ours "$WORK/ours" --gpu "$gpu" --out "$OUT/bench_report" "${variants[@]}")
[ "$prec" = fp32 ] && args+=(--peak-tflops "${BENCH_PEAK_TFLOPS:-67}")
[ "$prec" = fp16 ] && [ -f "$WORK/ours_fast/bench.json" ] && args+=(--fast "$WORK/ours_fast")
[ -f "$WORK/$ojson" ] && args+=(--official "$WORK/$ojson" --official-work "$WORK/official")
timeout 300 python3 tools/ref/bench_report.py "${args[@]}" 2>&1 | tee "$OUT/bench_report.log"
stamp "done"
