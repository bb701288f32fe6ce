#!/bin/sh
# Download the Python wheels the official reference code needs and the GPU machine lacks
# (it has torch, timm, numpy, scipy, opencv, safetensors, huggingface_hub, lightning), into
# .whl/ (git-ignored), as tools/gpu/README.md describes. Versions are the
# official pins (S3D:requirements.txt) where they exist. utils3d has no usable wheel (MoGe pins
# a git commit): tools/ref/shims/utils3d stands in (tools/ref/README.md).
# Usage: sh tools/ref/fetch_wheels.sh            (then carry ".whl" in the device call)
# On the device: python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
#     --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -eu
# A pure-python sdist (antlr4-python3-runtime 4.9.3, the version omegaconf 2.3 requires) is
# built here into a py3-none-any wheel.
cd "$(dirname "$0")/../.."
mkdir -p .whl
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux1_x86_64"
for pkg in hydra-core==1.3.2 omegaconf==2.3.0 antlr4-python3-runtime==4.9.3 loguru==0.7.2 \
           optree==0.14.1 astor==0.8.1; do
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp $PLAT -d .whl "$pkg" 2>/dev/null ||
    python3 -m pip wheel -q --no-deps -w .whl "$pkg"   # sdist only (antlr4 4.9.3): pure python
done
ls -l .whl
