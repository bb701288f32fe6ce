# lib.sh - the opening every tests/test_*.sh script shares; sourced, never run
# (run_tests.sh and `make test` run tests/test_*.sh only). After
#     . "$(dirname "$0")/lib.sh"
# a script has:
#   need_exec WHY FILE...  "SKIP: FILE not built (WHY)" and exit 77 unless every
#                          FILE is executable (WHY "" leaves out the parenthesis)
#   need_python3 WHY       "SKIP: python3 (stdlib only) is needed WHY", exit 77,
#                          unless python3 is on PATH
#   need_example DIR       "SKIP: example DIR/{image,0}.png not present", exit 77,
#                          unless both files exist
#   have_gpu WHAT          true when a CUDA device is usable (nvidia-smi lists one); else
#                          prints "WHAT skipped: no CUDA device on this machine" and, with
#                          S3D_REQUIRE_GPU=1, records a failure (bad) - the one "GPU
#                          required" check of the scripts (harness_gpu in C)
#   test_tmp               tmp=$(mktemp -d), removed on exit by an EXIT trap (a
#                          script with more to clean up sets its own trap, which
#                          must remove "$tmp" too)
#   tiny_weights DIR       the tiny random-weight model (the committed fixtures) in the
#                          official file layout into DIR, for CPU runs of the whole chain
#   few_steps_pipe FILE    pipelines/sam3d_objects.pipe (and its .needs) copied to FILE with
#                          3 SS flow steps, 2 SLAT flow steps and at most 400 voxels
#   ok LABEL, bad LABEL    print "ok   LABEL" / "FAIL LABEL"; bad sets fail=1
#   expect_refused NAME SUB CMD...  run CMD (stderr in $tmp/r_err): ok when it exits
#                          non-zero with an error line (" E ") containing SUB, else bad
#   fail=0                 so a script ends with `exit $fail`

fail=0

need_exec() {
    local why=$1 b
    shift
    for b in "$@"; do
        if [ ! -x "$b" ]; then
            echo "SKIP: $b not built${why:+ ($why)}"
            exit 77
        fi
    done
}

need_python3() {
    if ! command -v python3 >/dev/null; then
        echo "SKIP: python3 (stdlib only) is needed $1"
        exit 77
    fi
}

need_example() {
    if [ ! -f "$1/image.png" ] || [ ! -f "$1/0.png" ]; then
        echo "SKIP: example $1/{image,0}.png not present"
        exit 77
    fi
}

have_gpu() {
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
        return 0
    fi
    if [ "${S3D_REQUIRE_GPU:-0}" = 1 ]; then
        bad "$1: S3D_REQUIRE_GPU=1 but no CUDA device"
    else
        echo "$1 skipped: no CUDA device on this machine"
    fi
    return 1
}

# same_tensors A B: the two safetensors files hold the same tensors (names, dtypes, shapes and
# bytes), whatever their __metadata__ (the stage, version and params that made them:
# docs/formats.md "Artifacts"); exit 1 when they differ or cannot be read.
same_tensors() {
    python3 - "$1" "$2" <<'PY'
import json, struct, sys
def tensors(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in h.items()}
try:
    sys.exit(0 if tensors(sys.argv[1]) == tensors(sys.argv[2]) else 1)
except (OSError, ValueError, KeyError, struct.error):
    sys.exit(1)
PY
}

test_tmp() {
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
}

tiny_weights() {
    local f
    mkdir -p "$1/moge-vitl"
    cp tests/fixtures/moge_tiny/model.pt "$1/moge-vitl/model.pt"
    cp tests/fixtures/cond_ss_tiny/ss_generator.ckpt tests/fixtures/cond_slat_tiny/slat_generator.ckpt \
        tests/fixtures/ss_decoder_tiny/ss_decoder.ckpt "$1/"
    for f in tests/fixtures/gs_decoder_tiny/g32/slat_decoder_gs.ckpt \
             tests/fixtures/mesh_decoder_tiny/slat_decoder_mesh.ckpt; do
        [ -f "$f" ] && cp "$f" "$1/"
    done
    return 0
}

few_steps_pipe() {
    awk '/^stage /{st=$2} st=="ss_flow" && $1=="param" && $2=="steps"{$0="    param   steps 3"}
         st=="slat_flow" && $1=="param" && $2=="steps"{$0="    param   steps 2"}
         {print} /^stage ss_decode/{print "    param   max_coords 400"}' \
        pipelines/sam3d_objects.pipe >"$1"
    cp pipelines/sam3d_objects.needs "${1%.pipe}.needs" 2>/dev/null
    return 0
}

# tiny_chain DIR EXE...: the tiny random-weight model of the committed fixtures in the
# official layout under DIR/weights (tiny_weights), DIR/bin with links to the named stage executables of $build only
# (so a chain stays the same while later stages are added), and an empty DIR/jobs
tiny_chain() {
    local d=$1 e; shift
    mkdir -p "$d/bin" "$d/jobs"
    tiny_weights "$d/weights"
    for e in "$@"; do ln -s "$(realpath "$build/$e")" "$d/bin/$e"; done
}

ok()  { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }

expect_refused() {
    local name=$1 sub=$2
    shift 2
    if "$@" 2>"$tmp/r_err"; then
        bad "$name: accepted"
    elif grep -q " E .*$sub" "$tmp/r_err"; then
        ok "$name: refused ($(grep -m1 " E " "$tmp/r_err" | sed 's/.* E [0-9:.]* //' | cut -c1-120))"
    else
        bad "$name: no error line with '$sub'"; cat "$tmp/r_err"
    fi
}
