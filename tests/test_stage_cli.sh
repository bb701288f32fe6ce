#!/usr/bin/env bash
# test_stage_cli.sh - the command line every stage executable shares (common/stage_opts.c,
# issue "a command line that behaves like the tools users know"), on the echo test stage and
# on every built sam3d-* stage:
#   --help lists every option and every request param with its range and default, under the
#   executable's real name; --version prints the build's version; --opt=value and short forms
#   work; --precision fp8 and a bad --device are usage errors (exit 2); a misspelt --param is
#   exit 2 naming the known params, before anything loads; --device cuda:N that cannot be used
#   (no driver here, or a device number that does not exist on a GPU machine) is exit 1 with
#   one error line naming the device, the reason and the fix, never an abort; without --device
#   on a machine with no usable GPU the fall-back to the CPU is logged at info level.
set -u
build=${BUILD:-build}
echo_bin=$build/tests/tools/echo_stage
. "$(dirname "$0")/lib.sh"
need_exec "" "$echo_bin"
need_python3 "to write a safetensors input"
test_tmp

# a GPU here? then the unusable device is one that does not exist (no GPU is no failure:
# both cases are tested, so S3D_REQUIRE_GPU does not apply)
if S3D_REQUIRE_GPU=0 have_gpu "the cuda:0 device case" >/dev/null; then
    gpu=1; baddev=cuda:63
else
    gpu=0; baddev=cuda:0
fi

printf 'weights' >"$tmp/w.bin"
mkdir -p "$tmp/in" "$tmp/out"
python3 - "$tmp/in/x.safetensors" <<'PY' 2>/dev/null || printf '' >/dev/null
import json, struct, sys
d = struct.pack("<3f", 1, 2, 3); h = json.dumps({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}).encode()
h += b" " * (-len(h) % 8); open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + d)
PY

# --- echo: option forms
if "$echo_bin" --weights="$tmp/w.bin" --device=cpu --once="$tmp/in" "$tmp/out" -p scale=2 \
    --param=prefix=12 -q 2>"$tmp/e1"; then
    if [ -s "$tmp/out/echo.safetensors" ] && grep -q '"12x"' "$tmp/out/echo.safetensors" &&
        ! grep -q " I " "$tmp/e1"; then
        ok "--opt=value, -p, -q (no info lines), a string param keeps its text (prefix=12)"
    else
        bad "--opt=value forms"; cat "$tmp/e1"
    fi
else
    bad "--opt=value forms: exit $?"; cat "$tmp/e1"
fi
"$echo_bin" --weights "$tmp/w.bin" --device cpu -v --once "$tmp/in" "$tmp/out" 2>"$tmp/e2"
if grep -q " D " "$tmp/e2"; then ok "-v: debug lines"; else bad "-v"; fi

# --- echo: a misspelt param: exit 2 before loading, the known ones named
"$echo_bin" --weights "$tmp/w.bin" --device cpu --once "$tmp/in" "$tmp/out" --param scal=2 \
    2>"$tmp/e3"
rc=$?
if [ $rc -eq 2 ] && grep -q "unknown param 'scal' (known: scale, prefix, file" "$tmp/e3" &&
    ! grep -q "loaded" "$tmp/e3"; then
    ok "--param scal=2: exit 2, $(grep -o "unknown param 'scal'[^)]*)" "$tmp/e3" | cut -c1-60)..."
else
    bad "--param scal=2: exit $rc"; cat "$tmp/e3"
fi

# --- every stage: help, version, usage errors, an unusable device, a misspelt param
for b in "$echo_bin" "$build"/sam3d-*; do
    [ -x "$b" ] || continue
    exe=$(basename "$b")
    [ "$exe" = sam3d ] && continue
    "$b" --help >"$tmp/h" 2>&1; rc=$?
    if [ $rc -eq 0 ] && grep -q "^usage: $exe --weights" "$tmp/h" && grep -q -- "--version" "$tmp/h" &&
        grep -q -- "--device DEV" "$tmp/h" && grep -q "^request params" "$tmp/h" &&
        ! grep -q "sam3d-[a-z]*_[a-z]" "$tmp/h"; then
        ok "$exe --help ($(sed -n '/^request params/,$p' "$tmp/h" | grep -c '^  [a-z]') params)"
    else
        bad "$exe --help (exit $rc)"; head -5 "$tmp/h"
    fi
    if "$b" --version >"$tmp/v" 2>&1 && grep -q "^$exe [0-9]*\.[0-9]*\.[0-9]* (git " "$tmp/v"; then
        ok "$exe --version: $(cat "$tmp/v")"
    else
        bad "$exe --version"; cat "$tmp/v"
    fi
    for args in "--precision fp8" "--device gpu7" "--bogus" "--weights"; do
        "$b" --once "$tmp/in" "$tmp/out" $args >"$tmp/u" 2>&1; rc=$?
        if [ $rc -eq 2 ] && grep -q "$exe: error: " "$tmp/u" && grep -q "Try '$exe --help'" "$tmp/u"; then
            :
        else
            bad "$exe $args: exit $rc, want 2 with one error line"; cat "$tmp/u"
        fi
    done
    ok "$exe: --precision fp8, --device gpu7, --bogus, --weights (no value): usage errors, exit 2"
    "$b" --weights "$tmp/w.bin" --device "$baddev" --once "$tmp/in" "$tmp/out" >"$tmp/d" 2>&1; rc=$?
    if [ $rc -eq 1 ] && [ "$(grep -c " E " "$tmp/d")" -eq 1 ] &&
        grep -q " E .*device $baddev cannot be used: .*HINT: .*--device cpu" "$tmp/d" &&
        ! grep -qi "fatal\|abort" "$tmp/d"; then
        ok "$exe --device $baddev: exit 1, one line: $(grep " E " "$tmp/d" | sed 's/.* E [0-9:.]* //' | cut -c1-90)..."
    else
        bad "$exe --device $baddev: exit $rc"; cat "$tmp/d"
    fi
    if [ $gpu -eq 0 ]; then
        "$b" --weights "$tmp/w.bin" --once "$tmp/in" "$tmp/out" >"$tmp/a" 2>&1
        if grep -q " I .*no usable CUDA device (.*): running on the CPU reference path" "$tmp/a"; then
            ok "$exe without --device: the CPU fall-back logged at info level with the reason"
        else
            bad "$exe: no info line for the CPU fall-back"; head -3 "$tmp/a"
        fi
    fi
    "$b" --weights "$tmp/w.bin" --device cpu --once "$tmp/in" "$tmp/out" --param sed=7 \
        >"$tmp/p" 2>&1; rc=$?
    if [ $rc -eq 2 ] && grep -q "unknown param 'sed' (known: .*job, out)" "$tmp/p"; then
        ok "$exe --param sed=7: exit 2 naming the known params"
    else
        bad "$exe --param sed=7: exit $rc"; cat "$tmp/p"
    fi
done
exit $fail
