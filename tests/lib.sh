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
#   ok LABEL, bad LABEL    print "ok   LABEL" / "FAIL LABEL"; bad sets fail=1
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

test_tmp() {
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
}

# tiny_chain DIR EXE...: the tiny random-weight model of the committed fixtures in the
# official layout under DIR/weights (moge-vitl/model.pt, ss_generator.ckpt,
# slat_generator.ckpt), DIR/bin with links to the named stage executables of $build only
# (so a chain stays the same while later stages are added), and an empty DIR/jobs
tiny_chain() {
    local d=$1 e; shift
    mkdir -p "$d/weights/moge-vitl" "$d/bin" "$d/jobs"
    cp tests/fixtures/moge_tiny/model.pt "$d/weights/moge-vitl/model.pt"
    cp tests/fixtures/cond_ss_tiny/ss_generator.ckpt \
        tests/fixtures/cond_slat_tiny/slat_generator.ckpt "$d/weights/"
    for e in "$@"; do ln -s "$(realpath "$build/$e")" "$d/bin/$e"; done
}

ok()  { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }
