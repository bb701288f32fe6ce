#!/usr/bin/env bash
# test_clone.sh - the repository stands alone (issue 9): a `git clone` of HEAD into an empty
# folder, with no sibling folder, runs `make demo` (build + the tiny random-weight pipeline on
# the example shipped in examples/), and no tracked file outside tests/ names ../shared or a
# path of a development machine. `make test` on a clean clone is what CI (.ci/run) runs.
# Slow (a whole build in the clone): S3D_SKIP_CLONE=1 skips it. Env: BUILD (unused: the clone
# builds its own).
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
[ "${S3D_SKIP_CLONE:-0}" = 1 ] && { echo "SKIP: S3D_SKIP_CLONE=1"; exit 77; }
command -v git >/dev/null && git rev-parse --git-dir >/dev/null 2>&1 ||
    { echo "SKIP: not a git checkout"; exit 77; }
test_tmp

hits=$(git grep -n -I -E '\.\./shared|/work/|/home/[a-z]' -- ':!tests/' | head -3)
if [ -z "$hits" ]; then ok "no tracked file outside tests/ points outside the repo"; else
    bad "paths outside the repo: $hits"; fi

mkdir -p "$tmp/empty"
git clone -q --no-local "$PWD" "$tmp/empty/sam3d" || { bad "git clone failed"; exit 1; }
[ "$(ls -A "$tmp/empty")" = sam3d ] && ok "cloned into an empty folder ($(git rev-parse --short HEAD))"
# the clone's make must not inherit this make's variables (BUILD=build-san under test-sanitize)
( cd "$tmp/empty/sam3d" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -j"$(nproc)" CUDA_ARCH=90 demo ) >"$tmp/demo.log" 2>&1
rc=$?
out=$tmp/empty/sam3d/build/demo-out
if [ $rc -eq 0 ] && [ -f "$out/report.json" ] && [ -d "$out/artifacts" ]; then
    ok "make demo in the clone: exit 0, report.json and artifacts/ in build/demo-out"
else
    bad "make demo in the clone: exit $rc"; tail -15 "$tmp/demo.log"
fi
exit $fail
