#!/usr/bin/env bash
# pack.sh [BUILD] - everything one GPU call carries, made on the development machine
# (tools/gpu/README.md "One call"): the binaries of BUILD (default build, built with
# `make -j2 CUDA_ARCH=90`) stripped into build-gpu/ and packed as .gpubin/bin.tar.xz (every
# stage, sam3d, every test program and tests/tools helper, and the kernel workshops of
# build/dev when `make dev` made them: ~180 MB stripped, ~4 MB of xz), and
# a check that the other carried folders exist: .deb/ (the Debian libraries), .whl/
# (tools/ref/fetch_wheels.sh), .gl/ref (tools/ref/pack_ref.sh), .gpuw/spconv.tar.xz
# (spconv_pack/pack.sh; only the official SLAT flow and mesh decoder need it). Prints the
# `carry` list for the device call. All these folders are git-ignored.
set -eu
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
[ -x "$BUILD/sam3d" ] || { echo "pack.sh: no $BUILD/sam3d: run make -j2 CUDA_ARCH=90 first" >&2; exit 1; }
rm -rf build-gpu
mkdir -p build-gpu/tests/tools .gpubin
cp "$BUILD"/sam3d "$BUILD"/sam3d-* build-gpu/
for t in "$BUILD"/tests/test_* "$BUILD"/tests/tools/*; do
    case $t in *.o|*.d) ;; *) [ -f "$t" ] && cp "$t" "build-gpu/${t#"$BUILD"/}" ;; esac
done
# the kernel workshops too, when built (make CUDA_ARCH=90 dev: tools/gpu/attn_bench.sh times them)
if [ -d "$BUILD/dev" ]; then
    mkdir -p build-gpu/dev
    for t in "$BUILD"/dev/*; do [ -f "$t" ] && cp "$t" build-gpu/dev/; done
fi
strip build-gpu/sam3d* build-gpu/tests/test_* build-gpu/tests/tools/* build-gpu/dev/* 2>/dev/null || true
# the commit the binaries come from: the device's copy of the tree may carry an older git HEAD,
# so the parity rows (tools/ref/compare.py) take it from here (call.sh exports S3D_COMMIT)
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!build-gpu' || echo '+changes')" \
    >build-gpu/COMMIT
# one xz block with a dictionary larger than the tree: every binary links the same kernels,
# so the window finds them again (~4 MB instead of ~19 MB with the default 8 MiB window)
tar -cf - build-gpu | xz -T1 --lzma2=preset=6,dict=192MiB >.gpubin/bin.tar.xz
echo "build-gpu: $(du -sh build-gpu | cut -f1) -> .gpubin/bin.tar.xz $(du -sh .gpubin/bin.tar.xz | cut -f1)" \
     "($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!build-gpu' || echo ', uncommitted changes'))"
carry='".gpubin"'
for d in .deb .whl .gl .gpuw; do
    if [ -d "$d" ]; then carry="$carry, \"$d\""; else echo "note: no $d/ (tools/gpu/README.md says how to make it)"; fi
done
[ -f .gpuw/spconv.tar.xz ] || echo "note: no .gpuw/spconv.tar.xz: the official SLAT flow and mesh decoder will not run"
# the device tool's 64 MiB counts the tracked tree as well as the carried folders
tree_kb=$(git ls-files -z | du -kc --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carry_kb=$(du -kc .gpubin .deb .whl .gl .gpuw 2>/dev/null | tail -1 | cut -f1)
echo "carry: [$carry]  ($(( carry_kb / 1024 )) MiB + the tracked tree's $(( tree_kb / 1024 )) MiB" \
     "= $(( (carry_kb + tree_kb) / 1024 )) of the 64 MiB limit)"
[ $(( carry_kb + tree_kb )) -lt $(( 64 * 1024 )) ] ||
    echo "warning: over 64 MiB: leave a folder out of carry (a sanitizer wheel in .whl/, .gpuw)"
