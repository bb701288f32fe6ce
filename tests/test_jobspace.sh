#!/usr/bin/env bash
# test_jobspace.sh - the job root's room checked before a run starts (orchestrator/jobspace.h,
# issue 14: Docker's 64 MB /dev/shm), with the tiny random-weight model on the CPU path. A
# 64 MB tmpfs is mounted in a private mount namespace (unshare -m as root, unshare -rm
# otherwise; skipped where neither may mount):
#   1. S3D_JOB_ROOT on the 64 MB tmpfs: exit 1 before any stage starts, one error line naming
#      S3D_JOB_ROOT, its room and the job's need;
#   2. /dev/shm of 64 MB and S3D_JOB_ROOT unset: a warning naming the fallback ($TMPDIR here),
#      the run goes on there (exit 3, the artifacts in --out) and leaves no job directory;
#   3. a job root with room: no warning, as before;
#   4. a job root that fills up anyway (a kept job resumed on the 64 MB tmpfs, filled to 256 KB
#      free by something else; resumed jobs are not checked up front): the stage's failure
#      keeps its reason (No space left on device) and names S3D_JOB_ROOT, the free space and
#      the fix; exit 1 (three echo stages, the first copying a 1.5 MB image).
# Env: BUILD (default build).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
ex=$PWD/examples/human_object
. tests/lib.sh
need_exec "needs sam3d and its first stage" "$build/sam3d" "$build/sam3d-depth"
need_example "$ex"
test_tmp
tiny_chain "$tmp" sam3d-depth
w=$tmp/weights
sam3d=$(realpath "$build/sam3d")
mkdir -p "$tmp/small" "$tmp/disk"

# small CMD...: CMD in a private mount namespace where $tmp/small and /dev/shm are 64 MB tmpfs
if [ "$(id -u)" = 0 ]; then ns=(unshare -m --propagation private); else ns=(unshare -rm --propagation private); fi
small() {
    "${ns[@]}" sh -c 'mount -t tmpfs -o size=64m tmpfs "$0" && mount -t tmpfs -o size=64m tmpfs /dev/shm &&
                      exec "$@"' "$tmp/small" "$@"
}
if ! small true 2>"$tmp/ns.log"; then
    echo "SKIP: cannot mount a 64 MB tmpfs in a private mount namespace here ($(head -1 "$tmp/ns.log"))"
    exit 77
fi
run() {   # OUT [env...]: sam3d run (2 flow steps) on the example into $tmp/OUT, in the namespace
    local out=$1; shift
    small env "$@" "$sam3d" run -i "$ex/image.png" -m "$ex/0.png" -w "$w" -o "$tmp/$out" \
        --stages-dir "$tmp/bin" -d cpu --timeout 120 >"$tmp/$out.log" 2>&1
}

# ---------------------------------------------------------------- 1. S3D_JOB_ROOT too small
run o1 S3D_JOB_ROOT="$tmp/small"; rc=$?
if [ $rc -eq 1 ] && [ "$(grep -c ' E ' "$tmp/o1.log")" -eq 1 ] &&
   grep -q " E .*S3D_JOB_ROOT=$tmp/small has [0-9.]* [KMG]iB free, and a job on a 1600x898 image needs up to [0-9.]* [KMG]iB.*HINT: point S3D_JOB_ROOT" "$tmp/o1.log" &&
   ! grep -q "stage depth up" "$tmp/o1.log"; then
    ok "S3D_JOB_ROOT of 64 MB: exit 1 before any stage, $(grep ' E ' "$tmp/o1.log" | sed 's/.* E [0-9:.]* //' | cut -c1-100)..."
else bad "S3D_JOB_ROOT of 64 MB: exit $rc"; cat "$tmp/o1.log"; fi

# ---------------------------------------------------------------- 2. /dev/shm too small
run o2 -u S3D_JOB_ROOT TMPDIR="$tmp/disk"; rc=$?
if [ $rc -eq 3 ] && grep -q " W .*job root /dev/shm has [0-9.]* [KMG]iB free.*using $tmp/disk" "$tmp/o2.log" &&
   [ -f "$tmp/o2/artifacts/depth.safetensors" ] && [ -z "$(ls -A "$tmp/disk")" ] &&
   grep -q "\"job\": \"$tmp/disk/s3d-" "$tmp/o2/report.json"; then
    ok "/dev/shm of 64 MB: the warning, the job in \$TMPDIR, exit 3, nothing left there"
else bad "/dev/shm of 64 MB: exit $rc, left in TMPDIR: $(ls "$tmp/disk")"; tail -5 "$tmp/o2.log"; fi

# ---------------------------------------------------------------- 3. room enough
run o3 S3D_JOB_ROOT="$tmp/disk"; rc=$?
if [ $rc -eq 3 ] && ! grep -q " W .*job root" "$tmp/o3.log"; then
    ok "a job root with room: no warning, exit 3"
else bad "a job root with room: exit $rc"; tail -5 "$tmp/o3.log"; fi
# ---------------------------------------------------------------- 4. a job root that fills up
if [ -x "$build/tests/tools/echo_stage" ]; then
    tools=$(realpath "$build/tests/tools")
    head -c 1500000 /dev/urandom >"$tmp/big.png"
    printf 'MASK' >"$tmp/mask.png"
    printf 'weights' >"$tmp/w.bin"
    cat >"$tmp/echo.pipe" <<'P'
stage first
    exe     echo_stage
    weights w.bin
    out     echo_first.safetensors
    param   file $IMAGE
P
    echo4=("$sam3d" run --weights "$tmp" --pipeline "$tmp/echo.pipe" --stages-dir "$tools" --timeout 20)
    S3D_JOB_ROOT=$tmp/disk "${echo4[@]}" --out "$tmp/o4a" --image "$tmp/big.png" --mask "$tmp/mask.png" \
        --keep-job >"$tmp/o4a.log" 2>&1
    job=$(sed -n 's/^  "job": "\(.*\)",$/\1/p' "$tmp/o4a/report.json" 2>/dev/null)
    if [ -d "$job" ]; then
        # in the namespace: the job copied onto the tmpfs, its artifact removed (so the
        # resume runs the stage again), the tmpfs filled but for 256 KB, then the resume
        small sh -c 'j=$1 r=$2; shift 2; cp -a "$j" "$r/" && rm "$r/${j##*/}/echo_first.safetensors" &&
                     head -c 256k /dev/zero >"$r/pad" && { head -c 64m /dev/zero >"$r/fill" 2>/dev/null; true; } &&
                     rm "$r/pad" && S3D_JOB_ROOT=$r exec "$@" --job "$r/${j##*/}"' \
            _ "$job" "$tmp/small" "${echo4[@]}" --out "$tmp/o4" >"$tmp/o4.log" 2>&1; rc=$?
        if [ $rc -eq 1 ] &&
           grep -q " E .*stage first failed: .*No space left on device; the job root $tmp/small (S3D_JOB_ROOT) has only [0-9.]* [KMG]*i*B free. HINT: free space there, or set S3D_JOB_ROOT" "$tmp/o4.log"; then
            ok "a job root that fills up: exit 1, the reason kept, S3D_JOB_ROOT, its free space and the fix named"
        else bad "a job root that fills up: exit $rc"; grep -v " [ID] " "$tmp/o4.log" | tail -5; fi
        rm -rf "$job"
    else bad "the echo job for case 4 was not kept: $(tail -3 "$tmp/o4a.log")"; fi
else
    echo "SKIP 4: build/tests/tools/echo_stage is not built"
fi
exit $fail
