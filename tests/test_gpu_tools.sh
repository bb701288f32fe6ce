#!/usr/bin/env bash
# test_gpu_tools.sh - the GPU-call tooling (tools/gpu/README.md "One call") works here, where
# no GPU is: every tools/gpu/*.sh parses (bash -n); tools/gpu/call.sh, run in a scratch copy
# of the repo layout with two stand-in scripts, unpacks .gpubin/bin.tar.xz into build-gpu/,
# passes each script OUT/NAME, S3D_BIN=build-gpu and its VAR=VALUE settings, cuts a script at
# the time left (exit 124 reported), does not start one with under CALL_MIN_START seconds left, packs NAME.tgz
# after each, and exits 1 when a script failed or was not run.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
test_tmp

for f in tools/gpu/*.sh tools/gpu/spconv_pack/*.sh; do
    bash -n "$f" 2>"$tmp/syn" || bad "bash -n $f: $(head -1 "$tmp/syn")"
done
[ $fail = 0 ] && ok "every tools/gpu script parses"

r=$tmp/root
mkdir -p "$r/tools/gpu" "$r/build-gpu" "$r/.gpubin" "$tmp/out"
cp tools/gpu/call.sh tools/gpu/device_env.sh "$r/tools/gpu/"
echo '#!/bin/sh' >"$r/build-gpu/sam3d" && chmod +x "$r/build-gpu/sam3d"
(cd "$r" && tar -cJf .gpubin/bin.tar.xz build-gpu) && rm -rf "$r/build-gpu"
cat >"$r/tools/gpu/good.sh" <<'SH'
echo "OUT=$1 BIN=$S3D_BIN A=${A:-} B=${B:-}"; [ -x "$S3D_BIN/sam3d" ] && echo "bin unpacked"
echo result >"$1/result.txt"
head -c 5000000 /dev/zero >"$1/big.bin"
SH
cat >"$r/tools/gpu/slow.sh" <<'SH'
echo started; sleep 30; echo never
SH
(cd "$r" && PATH="/usr/bin:/bin" OUT=$tmp/out CALL_MIN_START=3 timeout 30 bash tools/gpu/call.sh 6 good=A=1,B=two slow good) \
    >"$tmp/call.log" 2>&1
rc=$?
log=$tmp/call.log
grep -q "OUT=$tmp/out/good BIN=build-gpu A=1 B=two" "$log" && grep -q "bin unpacked" "$log" &&
    ok "a script gets OUT/NAME, S3D_BIN=build-gpu, its settings, the binaries" ||
    bad "good.sh's environment: $(head -5 "$log")"
grep -q "slow: exit 124 (cut: time)" "$log" && ! grep -q never "$log" &&
    ok "a script is cut at the time left" || bad "slow.sh not cut: $(grep slow "$log")"
grep -q "good: not run" "$log" && ok "no script starts with under CALL_MIN_START s left" ||
    bad "the third script ran with under CALL_MIN_START s left"
tar -tzf "$tmp/out/good.tgz" 2>/dev/null | grep -q good/result.txt && [ -f "$tmp/out/slow.tgz" ] &&
    ok "NAME.tgz packed after each script" || bad "no good.tgz / slow.tgz"
! tar -tzf "$tmp/out/good.tgz" | grep -q big.bin &&
    tar -xzOf "$tmp/out/good.tgz" good/left_out.txt | grep -q "over 4 MiB.*good/big.bin" &&
    ok "files over 4 MiB are left out of NAME.tgz and named in NAME/left_out.txt" ||
    bad "good.tgz: $(tar -tzf "$tmp/out/good.tgz" | tr '\n' ' ')"
[ "$(cd "$tmp/out" && ls | tr '\n' ' ')" = "good.tgz gpu.txt slow.tgz " ] &&
    ok "nothing loose beside the archives and gpu.txt (the device tool returns 8 files)" ||
    bad "left in OUT: $(ls "$tmp/out" | tr '\n' ' ')"
[ $rc = 1 ] && ok "exit 1 when a script failed or did not run" || bad "call.sh exit $rc, want 1"
exit $fail
