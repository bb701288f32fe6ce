# full_lib.sh - sourced by the GPU scripts (ss_decode_full.sh, gs_decode_full.sh,
# slat_flow_full.sh, slat_perf.sh, budget_full.sh, stream_full.sh) from the repository root on
# the GPU machine.
#
# full_setup OUT: the carried wheels (.whl/*.whl) into /tmp/site on PYTHONPATH, the carried
#   Debian packages (tools/gpu/device_env.sh), the GPU's name and driver into OUT/gpu.txt.
# full_tests OUT BIN SECONDS TEST...: each test program BIN/tests/TEST with S3D_REQUIRE_GPU=1
#   (a skip is a failure), its log in OUT/TEST.log, one summary line each and its FAIL / cuda
#   lines; returns 1 when any failed.
# full_weights W OUT WORK: the full-size random weights in the official layout in W
#   (tools/ref/bench_official.py --weights-only, ~12 GB; kept when W has all six files from an
#   earlier call on the same warm machine), its log in OUT/weights.log, WORK its scratch;
#   returns 1 (the log's tail printed) when they cannot be made.
# full_tiny DIR OUT LABEL: a script's CPU check with the tiny model of the committed fixtures
#   (tests/lib.sh): sets dev=cpu, W=DIR/tiny_weights, extra=(--pipeline DIR/tiny.pipe) (the
#   pipeline with few steps) and writes "cpu (LABEL: tiny model)" to OUT/gpu.txt.
# full_model OUT WORK SUB LABEL TINY: the model a whole-pipeline script runs (budget_full.sh,
#   stream_full.sh): TINY 1, full_tiny WORK/SUB OUT LABEL; else the GPU machine: full_setup OUT,
#   dev=cuda:0, extra=(), W=WORK/weights made by full_weights (scratch WORK/SUB). 0, or 1 when
#   the set-up or the weights failed.
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

full_weights() {
    local w=$1 out=$2 work=$3 f have=1 src=examples/human_object
    for f in moge-vitl/model.pt ss_generator.ckpt slat_generator.ckpt ss_decoder.ckpt \
             slat_decoder_gs.ckpt slat_decoder_mesh.ckpt; do [ -f "$w/$f" ] || have=0; done
    [ $have = 1 ] && return 0
    PYTHONUNBUFFERED=1 timeout 400 python3 tools/ref/bench_official.py --size full --device cuda \
        --s3d .gl/ref/s3d --moge .gl/ref/moge --dinov2 .gl/ref/dinov2 --hf .gl/ref/hf \
        --image "$src/image.png" --mask "$src/0.png" --weights-out "$w" --out "$work" \
        --weights-only >"$out/weights.log" 2>&1 || { tail -20 "$out/weights.log"; return 1; }
}

full_tiny() {
    . tests/lib.sh
    dev=cpu
    W=$1/tiny_weights
    tiny_weights "$W"
    few_steps_pipe "$1/tiny.pipe"
    extra=(--pipeline "$1/tiny.pipe")
    echo "cpu ($3: tiny model)" >"$2/gpu.txt"
}

full_model() {
    if [ "$5" = 1 ]; then
        full_tiny "$2/$3" "$1" "$4"
        return 0
    fi
    dev=cuda:0
    extra=()
    W=$2/weights
    full_setup "$1" >/dev/null && full_weights "$W" "$1" "$2/$3"
}

full_spconv() {
    [ -n "${1:-}" ] && [ -f "$1" ] && tar -xJf "$1" -C /tmp/site
    python3 -c "import spconv.pytorch, cumm; print('spconv', spconv.__version__)" && return 0
    echo "error: spconv is not importable: the official SLAT flow and mesh decoder cannot run"
    echo "       (HINT: carry .gpuw/spconv.tar.xz made by tools/gpu/spconv_pack/pack.sh)"
    return 1
}
