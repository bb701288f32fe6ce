#!/usr/bin/env bash
# bench_depth_host.sh - where the host time of the depth stage goes at full image resolution
# (issue 16): a 6000x4500 JPEG + mask made from examples/human_object, run through
# `sam3d-depth --once` and through `sam3d run` with a depth-only pipeline, RUNS times each;
# prints the median of every phase the stage logs (the image's decode, the wait for the mask
# decoded beside it and MoGe plus its checks, MoGe forward, full-resolution post-processing,
# SS preprocessing, the rest of the request = the image upload and the artifact write) and the `sam3d run` wall time (processes started, job
# directory, the artifact copied to OUT/artifacts).
#
#   tools/bench_depth_host.sh [--bin DIR] [--runs N] [--work DIR] [--weights FILE]
#                             [--device cpu|cuda:N] [--size WxH]
#
# Defaults: build/, 3 runs, work in /dev/shm/s3d-bench-depth (removed at the end), the tiny
# MoGe of tests/fixtures/moge_tiny on the CPU (the network then costs little and the host work
# at full resolution dominates; --weights moge-vitl/model.pt --device cuda:0 times the real
# model). Host threads: S3D_THREADS (default: every core). Needs python3 with Pillow to write
# the JPEG. The depth artifacts of every run must be the same bytes (their tensors), else it
# fails: compare the printed digest across builds to check an optimisation changed nothing.
set -eu
cd "$(dirname "$0")/.."
bin=build runs=3 work=/dev/shm/s3d-bench-depth weights=tests/fixtures/moge_tiny/model.pt
device=cpu size=6000x4500
while [ $# -gt 0 ]; do
    case $1 in
    --bin) bin=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --weights) weights=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench_depth_host.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for x in "$bin/sam3d-depth" "$bin/sam3d"; do
    [ -x "$x" ] || { echo "bench_depth_host.sh: $x is not built (make CUDA_ARCH=90 $x)" >&2; exit 1; }
done
python3 -c 'import PIL' 2>/dev/null ||
    { echo "bench_depth_host.sh: needs python3 with Pillow (pip install pillow)" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work/in"
chmod 700 "$work" "$work/in"
trap 'rm -rf "$work"' EXIT
python3 - "$work/in" "${size%x*}" "${size#*x}" <<'PY'
import sys
from PIL import Image
d, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
Image.open("examples/human_object/image.png").convert("RGB").resize((w, h), Image.BICUBIC) \
    .save(d + "/image.jpg", quality=92)
Image.open("examples/human_object/0.png").convert("L").resize((w, h), Image.NEAREST) \
    .save(d + "/mask.png")
PY
sed -n '/^stage depth/,/^$/p' pipelines/sam3d_objects.pipe >"$work/depth.pipe"

digest() {   # the tensors of a safetensors file (not its metadata: version, paths)
    python3 - "$1" <<'PY'
import hashlib, json, struct, sys
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
print(hashlib.sha256(json.dumps(h, sort_keys=True).encode() + b[8 + n:]).hexdigest()[:16])
PY
}
num() { sed -n "s/.*$1 \([0-9.]*\) ms.*/\1/p" "$2" | head -1; }
median() { sort -n | awk '{a[NR] = $1} END {print (NR ? a[int((NR + 1) / 2)] : "-")}'; }

first=""
: >"$work/t"
for r in $(seq "$runs"); do
    out=$work/once$r
    mkdir -m 700 "$out"
    "$bin/sam3d-depth" --weights "$weights" --device "$device" --once "$work/in" "$out" \
        --param image="$work/in/image.jpg" --param mask="$work/in/mask.png" 2>"$work/log"
    dec=$(sed -n 's/.*: image [0-9]*x[0-9]* decoded in \([0-9.]*\) ms.*/\1/p' "$work/log")
    mwait=$(sed -n 's/.*joined and checked in \([0-9.]*\) ms.*/\1/p' "$work/log")
    moge=$(sed -n 's/.*: MoGe \([0-9.]*\) ms (forward \([0-9.]*\) + post-processing \([0-9.]*\) ms.*/\1 \2 \3/p' "$work/log")
    pre=$(num "preprocessing" "$work/log")
    req=$(num "outputs in" "$work/log")
    [ -n "$dec" ] && [ -n "$mwait" ] && [ -n "$moge" ] && [ -n "$pre" ] && [ -n "$req" ] ||
        { echo "bench_depth_host.sh: no timing lines in the stage log:" >&2; tail "$work/log" >&2; exit 1; }
    d=$(digest "$out/depth.safetensors")
    [ -z "$first" ] && first=$d
    [ "$d" = "$first" ] || { echo "bench_depth_host.sh: run $r gave other tensors ($d != $first)" >&2; exit 1; }
    rm -rf "$out"
    rm -rf "$work/run"
    t0=$(date +%s.%N)
    "$bin/sam3d" run --image "$work/in/image.jpg" --mask "$work/in/mask.png" --weights "$work" \
        --moge "$weights" --device "$device" --pipeline "$work/depth.pipe" --out "$work/run" \
        -q 2>"$work/runlog" >/dev/null || { cat "$work/runlog" >&2; exit 1; }
    t1=$(date +%s.%N)
    set -- $moge
    echo "$dec $mwait $2 $3 $pre $req $(echo "$req $dec $mwait $1 $pre" |
        awk '{print $1 - $2 - $3 - $4 - $5}') \
$(echo "$t0 $t1" | awk '{print ($2 - $1) * 1000}')" >>"$work/t"
done
echo "depth host benchmark: $size JPEG + mask, weights $weights on $device," \
     "S3D_THREADS=${S3D_THREADS:-all cores ($(nproc))}, median of $runs runs (ms)"
printf '%-44s %10s\n' "phase" "ms"
col=1
for name in "decode image" "mask: join + check after MoGe" "MoGe forward" "post-processing (full resolution)" \
            "SS preprocessing" "sam3d-depth request" "  of it: upload + artifact write" \
            "sam3d run to depth (wall, cold processes)"; do
    printf '%-44s %10s\n' "$name" "$(awk -v c=$col '{print $c}' "$work/t" | median)"
    col=$((col + 1))
done
echo "tensors digest $first (the same in every run)"
