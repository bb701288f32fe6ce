# full_lib.sh - sourced by the GPU scripts (ss_decode_full.sh, gs_decode_full.sh,
# slat_flow_full.sh, slat_perf.sh) from the repository root on the GPU machine.
#
# full_setup OUT: the carried wheels (.whl/*.whl) into /tmp/site on PYTHONPATH, the carried
#   Debian packages (tools/gpu/device_env.sh), the GPU's name and driver into OUT/gpu.txt.
# full_tests OUT BIN SECONDS TEST...: each test program BIN/tests/TEST with S3D_REQUIRE_GPU=1
#   (a skip is a failure), its log in OUT/TEST.log, one summary line each and its FAIL / cuda
#   lines; returns 1 when any failed.
# full_spconv [TAR]: the official sparse convolution (tools/gpu/spconv_pack/pack.sh's TAR, when
#   the file is there, unpacked into /tmp/site; call.sh has already done it from .gpuw/), then
#   checks that it imports; returns 1 with the reason when it does not.
full_setup() {
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || return 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    # shellcheck disable=SC1091
    . tools/gpu/device_env.sh
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader |
        tee "$1/gpu.txt"
}

full_tests() {
    local out=$1 bin=$2 secs=$3 t rc bad=0
    shift 3
    for t in "$@"; do
        S3D_REQUIRE_GPU=1 timeout "$secs" "$bin/tests/$t" >"$out/$t.log" 2>&1
        rc=$?
        echo "$t: exit $rc; $(grep -c ' OK$\| OK ' "$out/$t.log") OK lines," \
            "$(grep -c FAIL "$out/$t.log") FAIL"
        grep -E "FAIL|cuda" "$out/$t.log" | grep -v "^\[" | head -40
        [ $rc = 0 ] || bad=1
    done
    return $bad
}

full_spconv() {
    [ -n "${1:-}" ] && [ -f "$1" ] && tar -xJf "$1" -C /tmp/site
    python3 -c "import spconv.pytorch, cumm; print('spconv', spconv.__version__)" && return 0
    echo "error: spconv is not importable: the official SLAT flow and mesh decoder cannot run"
    echo "       (HINT: carry .gpuw/spconv.tar.xz made by tools/gpu/spconv_pack/pack.sh)"
    return 1
}
