#!/usr/bin/env bash
# chain_full.sh OUT - the conditioning half of the pipeline through the orchestrator on the GPU
# machine, at full size: random weights in the official layout (MoGe ViT-L model.pt, the SS and
# SLAT condition embedders in ss_generator.ckpt / slat_generator.ckpt, written by the official
# code via tools/ref/dump_*.py), then `sam3d run --device cuda:0` on human_object: depth ->
# cond_ss -> cond_slat as separate processes over ZeroMQ, inside the default VRAM budget
# (the free memory at start). Prints report.json (per stage: wall, load, run, device peak, RSS).
# Then `make demo`'s script on CUDA with the tiny fixture weights.
#
# Set-up (tools/ref/README.md "GPU run"): wheels in .whl, .gl/ref from pack_ref.sh,
# examples/human_object, binaries in build/ (or a link to them), tools/gpu/device_env.sh.
set -u
out=${1:?usage: chain_full.sh OUT}
w=/tmp/s3d-chain-weights
mkdir -p "$w/moge-vitl" "$out"
ref="--s3d .gl/ref/s3d --dinov2 .gl/ref/dinov2"
python3 tools/ref/dump_moge.py --size full --device cuda --no-acts --moge .gl/ref/moge \
    --example examples/human_object --out "$w/moge-vitl" >"$out/weights.log" 2>&1 || exit 1
for v in ss slat; do
    python3 tools/ref/dump_cond.py --variant $v --size full --device cuda --no-acts $ref \
        --config .gl/ref/hf/${v}_generator.yaml --example examples/human_object \
        --out "$w/$v" >>"$out/weights.log" 2>&1 || exit 1
    ln -sf "$w/$v/${v}_generator.ckpt" "$w/${v}_generator.ckpt"
done
ls -la "$w" "$w/moge-vitl"
img=examples/human_object/image.png
mask=examples/human_object/0.png
build/sam3d run --image $img --mask $mask --weights "$w" --out "$out/chain" --device cuda:0 \
    2>"$out/chain.log"
echo "sam3d run exit status $? (non-zero expected: only the depth and condition weights are written, so ss_flow stops the chain)"
tail -n 5 "$out/chain.log"
cat "$out/chain/report.json"
echo
S3D_DEMO_IMAGE=$img S3D_DEMO_MASK=$mask S3D_DEMO_DEVICE=cuda:0 S3D_DEMO_OUT="$out/demo" tools/demo.sh build \
    >"$out/demo.log" 2>&1
echo "demo exit status $?"
tail -n 25 "$out/demo.log"
