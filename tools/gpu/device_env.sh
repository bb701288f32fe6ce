# device_env.sh - source on the GPU machine before running binaries built here.
#
# The GPU machine (Ubuntu 24.04, CUDA 13, PyTorch) lacks ZeroMQ, msgpack-c and
# libjpeg62; they travel as Debian packages in .deb/ (see tools/gpu/README.md) and
# are unpacked into a private prefix, never into /. cuDNN and cuBLAS are taken
# from the CUDA install or from PyTorch's nvidia-* wheels, whichever has them.
_s3d_root=${S3D_DEB_ROOT:-/tmp/s3d-debroot}
if [ -d .deb ]; then
    mkdir -p "$_s3d_root"
    for _f in .deb/*.deb; do dpkg -x "$_f" "$_s3d_root"; done
fi
_s3d_libs="$_s3d_root/usr/lib/x86_64-linux-gnu"
for _lib in libcudnn.so.9 libcublasLt.so.13 libcudart.so.13; do
    if ! ldconfig -p | grep -q "$_lib" && [ ! -e /usr/local/cuda/lib64/$_lib ]; then
        _d=$(python3 - "$_lib" <<'PY' 2>/dev/null
import sys, glob, os, site
for sp in site.getsitepackages():
    for p in glob.glob(os.path.join(sp, "nvidia", "**", sys.argv[1]), recursive=True):
        print(os.path.dirname(p)); raise SystemExit
PY
)
        [ -n "$_d" ] && _s3d_libs="$_s3d_libs:$_d"
    fi
done
export LD_LIBRARY_PATH="$_s3d_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset _s3d_root _s3d_libs _lib _d _f
