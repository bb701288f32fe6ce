#!/usr/bin/env bash
# test_inspect.sh - `sam3d inspect` through the real CLI: every fixture's listing
# equals the one Python computed (tests/fixtures/ckpt/*.inspect), FILE:KEY, the
# plain listing without --sha256, and every unreadable or hostile file exits 1
# with exactly one "error: FILE: reason" line on stderr and nothing executed.
set -u
build=${BUILD:-build}
bin=$build/sam3d
fx=tests/fixtures/ckpt
marker=/tmp/s3d_pickle_pwned_marker
if [ ! -x "$bin" ]; then
    echo "SKIP: $bin not built (it links once every orchestrator command exists)"
    exit 77
fi
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

listing() {   # arg expected_file
    if "$bin" inspect --sha256 "$1" >"$tmp/out" 2>"$tmp/err" && cmp -s "$tmp/out" "$2" &&
       [ ! -s "$tmp/err" ]; then
        echo "ok   inspect --sha256 $1"
    else
        echo "FAIL inspect --sha256 $1 (differs from $2)"; diff "$tmp/out" "$2" | head; cat "$tmp/err"
        fail=1
    fi
}
refused() {   # arg reason_substring
    "$bin" inspect "$1" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    local lines; lines=$(wc -l <"$tmp/err")
    if [ $rc -eq 1 ] && [ "$lines" -eq 1 ] && grep -q "^error: $1: .*$2" "$tmp/err" &&
       [ ! -s "$tmp/out" ]; then
        echo "ok   refused $1: $(cat "$tmp/err")"
    else
        echo "FAIL $1: rc=$rc, $lines stderr lines, want one 'error: $1: ...$2'"; cat "$tmp/err"
        fail=1
    fi
}

rm -f "$marker"
for f in plain.pt lightning.ckpt moge_like.pt bare_list.pt all_dtypes.safetensors; do
    listing "$fx/$f" "$fx/$f.inspect"
done
listing "$fx/zip64.pt" "$fx/plain.pt.inspect"
listing "$fx/lightning.ckpt:state_dict" "$fx/lightning.ckpt.state_dict.inspect"
listing "$fx/lightning.ckpt:lists.layers" "$fx/lightning.ckpt.lists.layers.inspect"
listing "$fx/moge_like.pt:model" "$fx/moge_like.pt.model.inspect"
listing "$fx/all_dtypes.safetensors:c" "$fx/all_dtypes.safetensors.c.inspect"

# without --sha256: the first three columns
if "$bin" inspect "$fx/lightning.ckpt" >"$tmp/out" 2>"$tmp/err" &&
   cut -f1-3 "$fx/lightning.ckpt.inspect" | cmp -s - "$tmp/out"; then
    echo "ok   inspect (no hash) = first three columns"
else
    echo "FAIL inspect without --sha256"; fail=1
fi

refused "$fx/legacy.pt" "legacy.*torch.save"
refused "$fx/compressed.pt" "compressed"
refused "$fx/hostile_root.pt" "posix.system"
refused "$fx/hostile_p2.pkl" "bare pickle"
refused "$fx/cycle.pt" "nested deeper"
refused "$fx/nope.pt" "cannot open"
refused "$fx/lightning.ckpt:nope" "no tensors under key"
head -c 1000 "$fx/lightning.ckpt" >"$tmp/trunc.ckpt"
refused "$tmp/trunc.ckpt" "end-of-central-directory"
printf '\0\0\0\0\0\0\0\x10{"a":1}' >"$tmp/huge.safetensors"
refused "$tmp/huge.safetensors" "header length"
"$bin" inspect --sha256 "$fx/hostile.pt" >"$tmp/out" 2>&1
if [ $? -eq 0 ] && [ "$(cut -f1 "$tmp/out")" = w ]; then
    echo "ok   hostile.pt lists only its tensor"
else
    echo "FAIL hostile.pt"; cat "$tmp/out"; fail=1
fi
if [ -e "$marker" ]; then
    echo "FAIL a pickle executed os.system ($marker exists)"; fail=1
fi
"$bin" inspect >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL no FILE: want usage exit 2"; fail=1; }
"$bin" inspect --bogus x >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL bad option: want 2"; fail=1; }
[ $fail -eq 0 ] && echo "test_inspect: ok"
exit $fail
