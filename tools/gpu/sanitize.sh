#!/usr/bin/env bash
# sanitize.sh OUT - compute-sanitizer (memcheck and racecheck) over the GPU tests, on the GPU
# machine (issue 15; docs/security.md "GPU code"). Each test program runs under each tool with
# S3D_REQUIRE_GPU=1 (a skip is a failure) and --error-exitcode, its log goes to
# OUT/sanitize/<test>.<tool>.log, and OUT/sanitize_summary.txt gets one line per run:
#     <test> <tool> rc=<exit> <seconds>s <the tool's "ERROR SUMMARY" or "RACECHECK SUMMARY" line>
# with, when it reports any, how many of them are inside cuBLASLt's own kernels (nvjet_*: NVIDIA's
# Hopper GEMMs, whose warp-specialised pipelines racecheck reports; not our code) and how many in
# ours, then "clean: N of M runs, K more with reports only inside cuBLASLt's kernels" (clean = exit
# 0 and no error or hazard in that line). Exit 0 when every run was clean or had reports only
# inside cuBLASLt's kernels.
#
# Which tests: SANITIZE_TESTS (space-separated names, default every $S3D_BIN/tests/test_op_*,
# the kernels), SANITIZE_TOOLS (default "memcheck racecheck"). Each run is cut at
# SANITIZE_TIMEOUT seconds (default 300), and no run starts after SANITIZE_BUDGET seconds
# (default 900; the rest are listed as "not run (budget)"), so the script fits a short lease.
# S3D_TEST_SMALL=1 (passed on to the tests) leaves test_op_attention's cases of more than 2^20
# query x key pairs out: racecheck instruments every shared-memory access, and those take minutes.
#
# compute-sanitizer: taken from PATH, $CUDA_HOME/bin or /usr/local/cuda/bin, else from the
# nvidia-cuda-sanitizer-api wheel: carry .whl/nvidia_cuda_sanitizer_api-13.0.*.whl (14 MB,
# `pip download --no-deps -d .whl "nvidia-cuda-sanitizer-api>=13.0,<13.1"` on the dev machine),
# unpacked here into /tmp/s3d-sanitizer. Needs $S3D_BIN (default build; call.sh sets build-gpu) made
# with CUDA_ARCH=90, and .deb/ like every
# script here (tools/gpu/README.md).
set -u
out=${1:?usage: sanitize.sh OUT}
cd "$(dirname "$0")/../.." || exit 1
[ -f tools/gpu/device_env.sh ] && . tools/gpu/device_env.sh
mkdir -p "$out/sanitize"
summary=$out/sanitize_summary.txt
: >"$summary"

san=$(command -v compute-sanitizer 2>/dev/null)
for d in "${CUDA_HOME:-/usr/local/cuda}/bin" /usr/local/cuda/bin; do
    [ -z "$san" ] && [ -x "$d/compute-sanitizer" ] && san=$d/compute-sanitizer
done
if [ -z "$san" ]; then
    whl=$(ls .whl/nvidia_cuda_sanitizer_api-*.whl 2>/dev/null | head -1)
    if [ -n "$whl" ]; then
        python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
            "$whl" /tmp/s3d-sanitizer
        san=$(ls /tmp/s3d-sanitizer/nvidia/cu*/bin/compute-sanitizer 2>/dev/null | head -1)
        [ -n "$san" ] && chmod +x "$san"
    fi
fi
if [ -z "$san" ]; then
    echo "no compute-sanitizer: not in PATH or the CUDA toolkit, and no .whl/nvidia_cuda_sanitizer_api-*.whl" |
        tee -a "$summary"
    exit 1
fi
"$san" --version | tail -1 | tee -a "$summary"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | tee -a "$summary"

bin=${S3D_BIN:-build}
tests=${SANITIZE_TESTS:-$(cd "$bin/tests" && ls test_op_* 2>/dev/null | grep -v '\.[od]$')}
tools=${SANITIZE_TOOLS:-memcheck racecheck}
limit=${SANITIZE_TIMEOUT:-300}
budget=${SANITIZE_BUDGET:-900}
t_start=$SECONDS
n=0
clean=0
lib_only=0
for t in $tests; do
    for tool in $tools; do
        n=$((n + 1))
        if [ $((SECONDS - t_start)) -ge "$budget" ]; then
            echo "$t $tool not run (budget of ${budget}s spent)" | tee -a "$summary"
            continue
        fi
        log=$out/sanitize/$t.$tool.log
        t0=$SECONDS
        S3D_REQUIRE_GPU=1 timeout "$limit" "$san" --tool "$tool" --error-exitcode 99 \
            --print-limit 100 "$bin/tests/$t" >"$log" 2>&1
        rc=$?
        # memcheck ends with "ERROR SUMMARY: N errors", racecheck with
        # "RACECHECK SUMMARY: N hazards displayed (E errors, W warnings)"
        errs=$(grep -m1 -E '(ERROR|RACECHECK) SUMMARY' "$log" | sed 's/^=* *//')
        [ $rc -eq 124 ] && errs="timed out after ${limit}s"
        # where each reported error is: cuBLASLt's own kernels (nvjet_*, cutlass*, sm*_xmma*:
        # NVIDIA's library code, not ours) or one of ours
        where=$(grep -E '^=+ (Error|Warning): ' "$log" | sed -E 's/.* at ([A-Za-z0-9_]+).*/\1/' |
                awk '/^(nvjet_|cutlass|sm[0-9]+_xmma)/{lib++; next} {own++}
                     END{if (lib + own) printf "%d in cuBLASLt kernels, %d in ours", lib, own}')
        echo "$t $tool rc=$rc $((SECONDS - t0))s ${errs:-no ERROR SUMMARY line}${where:+ ($where)}" |
            tee -a "$summary"
        if [ $rc -eq 0 ] && echo "$errs" | grep -qE 'ERROR SUMMARY: 0 errors|RACECHECK SUMMARY: 0 hazards'; then
            clean=$((clean + 1))
        elif [ $rc -ne 124 ] && echo "$where" | grep -q ', 0 in ours$'; then
            lib_only=$((lib_only + 1))
            echo "    (every report is inside cuBLASLt's kernels: see $log)"
        else
            tail -n 30 "$log" | sed 's/^/    /'
        fi
    done
done
echo "clean: $clean of $n runs, $lib_only more with reports only inside cuBLASLt's kernels ($((SECONDS - t_start))s)" |
    tee -a "$summary"
[ $((clean + lib_only)) -eq $n ]
