#!/usr/bin/env bash
# pack.sh OUT.tar.xz - spconv-cu126 2.3.8 + cumm-cu126 0.7.11 (+ their pure-Python needs,
# plyfile, easydict) for the GPU machine's Python 3.12, small enough to carry in one device
# call (~7 MB instead of ~45 MB): the sm_90 cubins only (fatbin_keep.py) and, for cumm's
# NVRTC (58 MB, used only to compile kernels at run time, which spconv's shipped kernels never
# need), a stub library with the same soname and symbol versions whose calls fail with
# "NVRTC stub". On the GPU machine: tar -xJf OUT.tar.xz -C /tmp/site; PYTHONPATH=/tmp/site.
# Checked there by .../spconv_check.py (SubMConv3d and a strided conv, GPU vs CPU).
set -eu
out=$(realpath -m "${1:?usage: pack.sh OUT.tar.xz}")
here=$(cd "$(dirname "$0")" && pwd)
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$w/whl" spconv-cu126==2.3.8 cumm-cu126==0.7.11 \
    pccm==0.4.16 ccimport==0.4.4 fire==0.7.1 lark==1.3.1 termcolor==3.3.0 portalocker==4.4.2 \
    plyfile==1.1.5 easydict==1.14
mkdir "$w/site"
for f in "$w"/whl/*.whl; do (cd "$w/site" && unzip -qo "$f"); done
so=$w/site/spconv/core_cc.cpython-312-x86_64-linux-gnu.so
python3 "$here/fatbin_keep.py" "$so" "$so.new" 90 && mv "$so.new" "$so"
libs=$w/site/cumm_cu126.libs
echo 'libnvrtc.so.12 { global: nvrtc*; local: *; };' >"$w/v.map"
cc -shared -fPIC -O1 -w -o "$libs/libnvrtc-a1f1e7d6.so.12.6.85" \
    -Wl,-soname,libnvrtc-a1f1e7d6.so.12.6.85 -Wl,--version-script="$w/v.map" "$here/nvrtc_stub.c"
echo 'void s3d_nvrtc_builtins_stub(void) {}' >"$w/b.c"
cc -shared -fPIC -o "$libs/libnvrtc-builtins-a1d5fce3.so.12.6.85" \
    -Wl,-soname,libnvrtc-builtins-a1d5fce3.so.12.6.85 "$w/b.c"
# cumm's headers and device runtime serve run-time compilation only; cumm asserts the
# folders exist, so they stay, empty
rm -rf "$w/site/cumm/include" "$w/site/cumm/lib" && mkdir "$w/site/cumm/include" "$w/site/cumm/lib"
tar -cf - -C "$w/site" . | xz -T2 -9 >"$out"
ls -la "$out"
