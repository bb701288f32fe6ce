#!/bin/sh
# Copy only what tools/ref imports from the .ref/ checkouts into .gl/ref (git-ignored) so it
# fits the device call's carry limit: sam3d_objects, moge, dinov2 (+ its hubconf.py) and the
# released yaml configs. Use with --s3d .gl/ref/s3d --moge .gl/ref/moge --dinov2 .gl/ref/dinov2
# --config-dir .gl/ref/hf and carry ".gl".
set -eu
cd "$(dirname "$0")/../.."
rm -rf .gl/ref
mkdir -p .gl/ref/s3d .gl/ref/moge .gl/ref/dinov2 .gl/ref/hf
cp -r .ref/sam-3d-objects/sam3d_objects .gl/ref/s3d/
cp -r .ref/MoGe/moge .gl/ref/moge/
cp -r .ref/dinov2/dinov2 .ref/dinov2/hubconf.py .gl/ref/dinov2/
cp .ref/Fast-SAM3D/checkpoints/hf/*.yaml .gl/ref/hf/
find .gl/ref -name __pycache__ -prune -exec rm -rf {} +
du -sh .gl/ref
