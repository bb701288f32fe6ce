#!/usr/bin/env bash
# test_install.sh - `make install PREFIX=... DESTDIR=...` and sam3d run from the installed tree
# (issue 14), with the tiny random-weight model on the CPU path:
#   1. make install PREFIX=TMP/usr: every executable in bin/, the pipeline files in
#      share/sam3d/pipelines/; DESTDIR=TMP/stage PREFIX=/opt/sam3d stages the same tree under
#      TMP/stage/opt/sam3d;
#   2. the installed sam3d run from a directory without pipelines/ finds its pipeline at
#      ../share/sam3d/pipelines (report.json names it) and its stages beside itself; the same
#      from the DESTDIR tree;
#   3. tools/demo.sh on the installed bin/ (the demo, tiny weights, CPU): exit 0;
#   4. S3D_PIPELINE overrides the installed pipeline; a copied sam3d with no pipeline anywhere
#      fails with one error naming --pipeline and S3D_PIPELINE;
#   5. --version from the installed binary; make uninstall removes what install put there.
# Env: BUILD (default build).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
ex=$PWD/examples/human_object
. tests/lib.sh
need_exec "install needs sam3d and its first stage" "$build/sam3d" "$build/sam3d-depth"
need_example "$ex"
command -v make >/dev/null || { echo "SKIP: make is not installed"; exit 77; }
test_tmp

inst() {   # make ARGS...: a sub-make of this tree's install rules on the binaries of $build
    env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make --no-print-directory -s BUILD="$build" "$@"
}
tiny_chain "$tmp" sam3d-depth
w=$tmp/weights
mkdir -p "$tmp/elsewhere"

# ---------------------------------------------------------------- 1. the trees
inst install PREFIX="$tmp/usr" >"$tmp/install.log" 2>&1; rc=$?
n_bin=$(ls "$build"/sam3d "$build"/sam3d-* 2>/dev/null | wc -l)
n_inst=$(ls "$tmp/usr/bin" 2>/dev/null | wc -l)
if [ $rc -eq 0 ] && [ "$n_inst" -eq "$n_bin" ] && [ -x "$tmp/usr/bin/sam3d" ] &&
   cmp -s pipelines/sam3d_objects.pipe "$tmp/usr/share/sam3d/pipelines/sam3d_objects.pipe" &&
   cmp -s pipelines/sam3d_objects.needs "$tmp/usr/share/sam3d/pipelines/sam3d_objects.needs"; then
    ok "make install PREFIX=TMP/usr: $n_inst executables in bin/, pipelines in share/sam3d/"
else
    bad "make install PREFIX: exit $rc, $n_inst of $n_bin executables"; cat "$tmp/install.log"
fi
inst install DESTDIR="$tmp/stage" PREFIX=/opt/sam3d >"$tmp/install2.log" 2>&1; rc=$?
if [ $rc -eq 0 ] && [ -x "$tmp/stage/opt/sam3d/bin/sam3d" ] &&
   [ -f "$tmp/stage/opt/sam3d/share/sam3d/pipelines/sam3d_objects.pipe" ] && [ ! -e /opt/sam3d/bin/sam3d-depth ]; then
    ok "make install DESTDIR=TMP/stage PREFIX=/opt/sam3d: staged under TMP/stage/opt/sam3d"
else bad "make install DESTDIR: exit $rc"; cat "$tmp/install2.log"; fi

# ---------------------------------------------------------------- 2. run from the installed tree
run_from() {   # BINDIR OUT: the installed sam3d, from a directory without pipelines/; rc
    (cd "$tmp/elsewhere" && S3D_JOB_ROOT=$tmp/jobs "$1/sam3d" run -i "$ex/image.png" \
        -m "$ex/0.png" -w "$w" -o "$2" -d cpu --steps 2 --timeout 120 >"$2.log" 2>&1)
}
for root in "$tmp/usr" "$tmp/stage/opt/sam3d"; do
    label=${root#"$tmp"/}
    run_from "$root/bin" "$tmp/out_${label//\//_}"; rc=$?
    rep=$tmp/out_${label//\//_}/report.json
    if { [ $rc -eq 0 ] || [ $rc -eq 3 ]; } &&
       grep -q "\"pipeline\": \"$root/bin/../share/sam3d/pipelines/sam3d_objects.pipe\"" "$rep" &&
       grep -q "\"name\": \"depth\", \"exe\": \"sam3d-depth\", \"state\": \"done\"" "$rep"; then
        ok "TMP/$label/bin/sam3d run from elsewhere: exit $rc, share/sam3d pipeline, installed stages"
    else
        bad "TMP/$label/bin/sam3d run: exit $rc"; tail -5 "$tmp/out_${label//\//_}.log"
        grep '"pipeline"' "$rep"
    fi
done

# ---------------------------------------------------------------- 3. the demo from there
env -u S3D_WEIGHTS S3D_DEMO_DEVICE=cpu S3D_DEMO_OUT="$tmp/demo" tools/demo.sh "$tmp/usr/bin" \
    >"$tmp/demo.log" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q "\"pipeline\": \"$tmp/usr/bin/../share/sam3d" "$tmp/demo/report.json" &&
   grep -q "sam3d run \(completed every stage\|ran every stage that is built\)" "$tmp/demo.log"; then
    ok "tools/demo.sh on the installed bin/: exit 0 ($(grep -o 'sam3d run [a-z ]*[a-z]' "$tmp/demo.log" | tail -1))"
else bad "demo from the install: exit $rc"; tail -8 "$tmp/demo.log"; fi

# ---------------------------------------------------------------- 4. S3D_PIPELINE, no pipeline
sed '/^stage cond_ss/,$d' pipelines/sam3d_objects.pipe >"$tmp/only_depth.pipe"
(cd "$tmp/elsewhere" && S3D_PIPELINE=$tmp/only_depth.pipe S3D_JOB_ROOT=$tmp/jobs \
    "$tmp/usr/bin/sam3d" run -i "$ex/image.png" -m "$ex/0.png" -w "$w" -o "$tmp/o_env" -d cpu \
    >"$tmp/o_env.log" 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "\"pipeline\": \"$tmp/only_depth.pipe\"" "$tmp/o_env/report.json"; then
    ok "S3D_PIPELINE overrides the installed pipeline (a depth-only run completes)"
else bad "S3D_PIPELINE: exit $rc"; tail -5 "$tmp/o_env.log"; fi
mkdir -p "$tmp/lone"
cp "$build/sam3d" "$tmp/lone/sam3d"
(cd "$tmp/elsewhere" && S3D_JOB_ROOT=$tmp/jobs "$tmp/lone/sam3d" run -i "$ex/image.png" \
    -m "$ex/0.png" -w "$w" -o "$tmp/o_lone" >"$tmp/o_lone.log" 2>&1); rc=$?
if [ $rc -eq 1 ] && grep -q " E .*pipeline 'pipelines/sam3d_objects.pipe': No such file.*HINT: .*--pipeline FILE .*S3D_PIPELINE" "$tmp/o_lone.log"; then
    ok "a copied sam3d without a pipeline: exit 1 naming --pipeline and S3D_PIPELINE"
else bad "copied sam3d without a pipeline: exit $rc"; cat "$tmp/o_lone.log"; fi

# ---------------------------------------------------------------- 5. version, uninstall
if "$tmp/usr/bin/sam3d" run --version | grep -q "^sam3d run [0-9.]* (git " &&
   "$tmp/usr/bin/sam3d-depth" --version | grep -q "^sam3d-depth [0-9.]* (git "; then
    ok "installed --version: $("$tmp/usr/bin/sam3d" run --version)"
else bad "installed --version"; fi
rm -rf "$tmp/usr/bin/demo-weights"      # the demo's tiny model, assembled next to its binaries
inst uninstall PREFIX="$tmp/usr" >"$tmp/un.log" 2>&1; rc=$?
if [ $rc -eq 0 ] && [ -z "$(ls -A "$tmp/usr/bin")" ] && [ ! -e "$tmp/usr/share/sam3d" ]; then
    ok "make uninstall removes bin/ executables and share/sam3d"
else bad "make uninstall: exit $rc, left: $(ls "$tmp/usr/bin" "$tmp/usr/share" 2>&1 | tr '\n' ' ')"; fi
exit $fail
