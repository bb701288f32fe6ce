#!/usr/bin/env bash
# install_deps.sh - install the Debian/Ubuntu packages sam3d builds against, if missing.
# Uses sudo when not root. The CUDA toolkit (nvcc, cuBLAS, cuDNN) must already be installed.
set -eu
pkgs=(build-essential libzmq3-dev libmsgpack-dev libpng-dev libjpeg62-turbo-dev)
# Ubuntu names libjpeg-turbo's dev package libjpeg-turbo8-dev; both provide jpeglib.h
if ! apt-cache show libjpeg62-turbo-dev >/dev/null 2>&1; then
    pkgs=("${pkgs[@]/libjpeg62-turbo-dev/libjpeg-turbo8-dev}")
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all present (${pkgs[*]})"
else
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "deps: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
nvcc_bin=${CUDA_HOME:-/usr/local/cuda}/bin/nvcc
if [ ! -x "$nvcc_bin" ] && ! command -v nvcc >/dev/null; then
    echo "error: the CUDA toolkit is not installed (no nvcc at $nvcc_bin); HINT: install CUDA 12.x or 13.x and cuDNN 9, or set CUDA_HOME" >&2
    exit 1
fi
