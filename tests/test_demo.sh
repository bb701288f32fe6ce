#!/usr/bin/env bash
# test_demo.sh - `make demo` (tools/demo.sh, README's first command) with the tiny random-weight
# model it assembles from the committed fixtures, on the CPU path:
#   1. exit 0, and the run reached every stage that is built (sam3d exit 0 or 3);
#   2. report.json: every stage whose executable exists in BUILD, up to the first one that
#      does not, is "done", every other one "not built" and listed under "stages still to
#      come" (so the tiny weights chain: the SS condition tokens fit the SS flow generator,
#      its shape latent fits the SS decoder, ...); when the mesh decoder ran, mesh.glb passes
#      the structural glTF 2.0 validator (test_glb FILE);
#   3. the assembled ss_generator.ckpt and slat_generator.ckpt each hold both official halves
#      (condition embedder and generator), as the released files do; every result line
#      carries [RANDOM WEIGHTS].
# Env: BUILD (default build).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
ex=examples/human_object
. tests/lib.sh
need_exec "the demo needs sam3d and at least its first stage" "$build/sam3d" "$build/sam3d-depth"
need_example "$ex"
test_tmp

# ---------------------------------------------------------------- 1. the demo
env -u S3D_WEIGHTS -u S3D_DEMO_IMAGE -u S3D_DEMO_MASK S3D_DEMO_DEVICE=cpu S3D_DEMO_OUT="$tmp/out" \
    tools/demo.sh "$build" >"$tmp/demo.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "sam3d run \(completed every stage\|ran every stage that is built\)" "$tmp/demo.log"; then
    ok "tools/demo.sh exit 0 ($(grep -o 'sam3d run [a-z ]*[a-z]' "$tmp/demo.log" | tail -1))"
else
    bad "tools/demo.sh exit $rc"; tail -20 "$tmp/demo.log"
fi

# ---------------------------------------------------------------- 2. every built stage ran
rep=$tmp/out/report.json
todo=$(sed -n '/^stages still to come:/,$p' "$tmp/demo.log")
n_done=0 fail0=$fail gap=0     # gap: a stage before this one is not built (it cannot run)
for s in depth cond_ss cond_slat ss_flow ss_decode slat_flow gs_decode mesh_decode; do
    line=$(grep "\"name\": \"$s\"" "$rep" 2>/dev/null)
    exe=$(printf '%s' "$line" | sed -n 's/.*"exe": "\([^"]*\)".*/\1/p')
    state=$(printf '%s' "$line" | sed -n 's/.*"state": "\([^"]*\)".*/\1/p')
    if [ -z "$exe" ]; then bad "$s: not in report.json"; continue; fi
    [ -x "$build/$exe" ] || gap=1
    if [ -x "$build/$exe" ] && [ $gap = 0 ]; then
        if [ "$state" = done ]; then n_done=$((n_done + 1)); else
            bad "$s: $exe is built but its state is '$state' (the tiny weights do not chain?)"
            grep " E " "$tmp/out/sam3d.log" | head -5
        fi
    elif [ "$state" != "not built" ]; then
        bad "$s: $exe is not built but its state is '$state'"
    elif ! printf '%s\n' "$todo" | grep -q "^  $s .*not built ($exe)"; then
        bad "$s: not listed under 'stages still to come'"
    fi
done
[ $fail -eq "$fail0" ] && [ $n_done -ge 1 ] &&
    ok "every built stage done ($n_done), the others listed as still to come"

# the mesh decoder ran: the export step wrote mesh.glb, a valid glTF 2.0 file
if grep -q '"name": "mesh_decode", "exe": "[^"]*", "state": "done"' "$rep" 2>/dev/null; then
    if [ ! -f "$tmp/out/mesh.glb" ]; then
        bad "mesh_decode done but no mesh.glb in the demo's output"
    elif [ -x "$build/tests/test_glb" ]; then
        if r=$("$build/tests/test_glb" "$tmp/out/mesh.glb"); then ok "${r#"$tmp/out/"}"; else bad "$r"; fi
    fi
fi

# preview.png was drawn while mesh_decode ran (export.h "preview drawn ahead"), and it is the
# same bytes as `sam3d export` draws afterwards from the run's artifacts
if grep -q '"name": "gs_decode", "exe": "[^"]*", "state": "done"' "$rep" 2>/dev/null &&
   grep -q '"name": "mesh_decode", "exe": "[^"]*", "state": "done"' "$rep" 2>/dev/null; then
    if grep -q 'preview.png (.*drawn ahead, as gs_decode finished)' "$tmp/out/sam3d.log" &&
       "$build/sam3d" export --job "$tmp/out" --out "$tmp/reexport" --outputs preview \
           >"$tmp/reexport.log" 2>&1 &&
       cmp -s "$tmp/out/preview.png" "$tmp/reexport/preview.png"; then
        ok "preview.png drawn while mesh_decode ran, the same bytes as drawn by sam3d export"
    else
        bad "preview drawn ahead: $(grep -h 'preview' "$tmp/out/sam3d.log" "$tmp/reexport.log" 2>/dev/null | head -3)"
    fi
fi

# ---------------------------------------------------------------- 3. weights and labels
for g in ss slat; do
    w=$build/demo-weights/${g}_generator.ckpt
    if "$build/sam3d" inspect "$w:state_dict" >"$tmp/$g.txt" 2>&1 &&
        grep -q "^_base_models\.condition_embedder\." "$tmp/$g.txt" &&
        grep -q "^_base_models\.generator\.reverse_fn\.backbone\." "$tmp/$g.txt"; then
        ok "${g}_generator.ckpt: condition embedder and generator in one file"
    else
        bad "${g}_generator.ckpt does not hold both halves"; head -3 "$tmp/$g.txt"
    fi
done
unlabeled=$(grep -E "(done +wall|F32|I32|U8)" "$tmp/demo.log" | grep -vc "\[RANDOM WEIGHTS\]")
if [ "$unlabeled" -eq 0 ]; then ok "every result line says [RANDOM WEIGHTS]"; else
    bad "$unlabeled result lines without [RANDOM WEIGHTS]"; fi

# ---------------------------------------------------------------- 4. the warm-ups change nothing
# S3D_WARMUP=all: every stage loaded ahead runs its warm-up (stage_ops.warm) on the host too;
# each says so, report.json counts it, and every output is the same bytes as run 1's
if grep -q '"name": "mesh_decode", "exe": "[^"]*", "state": "done"' "$rep" 2>/dev/null; then
    env -u S3D_WEIGHTS -u S3D_DEMO_IMAGE -u S3D_DEMO_MASK S3D_WARMUP=all S3D_DEMO_DEVICE=cpu \
        S3D_DEMO_OUT="$tmp/warm" tools/demo.sh "$build" >"$tmp/warm.log" 2>&1
    rc=$? n_warm=0 fail0=$fail
    for s in cond_ss cond_slat ss_flow ss_decode slat_flow gs_decode mesh_decode; do
        if grep -q "stage $s: loaded ahead in [0-9.]* ms (+ warm-up [0-9.]* ms)" \
               "$tmp/warm/sam3d.log" 2>/dev/null &&
           grep -A1 "\"name\": \"$s\"" "$tmp/warm/report.json" | grep -q '"preloaded": true' &&
           grep "\"name\": \"$s\"" "$tmp/warm/report.json" | grep -q '"warmup_ms": [0-9]'; then
            n_warm=$((n_warm + 1))
        fi
    done
    [ "$(grep -c "warmed up in" "$tmp/warm/sam3d.log" 2>/dev/null)" -ge 7 ] || n_warm=0
    for f in $(cd "$tmp/out" && find . -name '*.safetensors' -o -name '*.ply' -o -name '*.glb' \
               -o -name pose.json | sort); do
        cmp -s "$tmp/out/$f" "$tmp/warm/$f" || bad "S3D_WARMUP=all: $f differs from run 1's"
    done
    if [ $rc -eq 0 ] && [ $n_warm -eq 7 ] && [ $fail -eq "$fail0" ]; then
        ok "S3D_WARMUP=all: 7 stages warmed up after loading ahead, every output unchanged"
    else
        bad "S3D_WARMUP=all: exit $rc, $n_warm of 7 stages warmed up"; grep -h "warm" "$tmp/warm/sam3d.log" | tail -5
    fi
fi
exit $fail
