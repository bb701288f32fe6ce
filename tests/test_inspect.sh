#!/usr/bin/env bash
# test_inspect.sh - `sam3d inspect` through the real CLI: every fixture's listing
# equals the one Python computed (tests/fixtures/ckpt/*.inspect), FILE:KEY, the
# plain listing without --sha256, and every unreadable or hostile file exits 1
# with exactly one "error: FILE: reason" line on stderr and nothing executed;
# issue 15: a DAG-shaped pickle and a FIFO return at once, tensor names with
# newlines and terminal escapes are listed escaped.
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
# a cycle without tensors is read (its tensor beside it is listed)
if [ "$("$bin" inspect "$fx/cycle.pt" 2>&1 | cut -f1)" = w ]; then
    echo "ok   cycle.pt: the list holding itself has no tensor; 'w' listed"
else
    echo "FAIL cycle.pt"; fail=1
fi
# issue 15, finding 5: lists that each hold the one before twice (2^60 paths)
python3 - "$tmp" <<'PY'
import struct, sys, zipfile
def put(i): return b"r" + struct.pack("<I", i)
def get(i): return b"j" + struct.pack("<I", i)
def dag(leaf, depth=60):
    p = b"\x80\x02" + leaf + put(0) + b"0"
    for i in range(1, depth + 1):
        p += b"](" + get(i - 1) + get(i - 1) + b"e" + put(i) + b"0"
    return p + b"}(X\x01\x00\x00\x00a" + get(depth) + b"u."
tensor = (b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage"
          b"ctorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQ"
          b"K\x00K\x01\x85K\x01\x85\x89tR")
for name, leaf in (("dag", b"]"), ("dag_tensor", tensor)):
    with zipfile.ZipFile(f"{sys.argv[1]}/{name}.pt", "w", zipfile.ZIP_STORED) as z:
        z.writestr("a/data.pkl", dag(leaf))
        z.writestr("a/byteorder", "little")
        z.writestr("a/data/0", b"\0" * 4)
PY
if [ -f "$tmp/dag.pt" ]; then
    if timeout 10 "$bin" inspect --sha256 "$tmp/dag.pt" >"$tmp/out" 2>"$tmp/err" &&
       [ ! -s "$tmp/out" ]; then
        echo "ok   DAG of 60 lists, no tensor: listed (empty) at once"
    else
        echo "FAIL DAG of 60 lists: rc $?"; cat "$tmp/err"; fail=1
    fi
    timeout 10 "$bin" inspect "$tmp/dag_tensor.pt" >/dev/null 2>&1
    [ $? -eq 124 ] && { echo "FAIL DAG with a tensor leaf hangs"; fail=1; }
    refused "$tmp/dag_tensor.pt" "shared over and over"
else
    echo "FAIL python3 could not write the DAG files"; fail=1
fi
# finding 7: a FIFO is refused without waiting for a writer
mkfifo "$tmp/fifo.pt"
timeout 10 "$bin" inspect "$tmp/fifo.pt" >/dev/null 2>&1
[ $? -eq 124 ] && { echo "FAIL inspect of a FIFO hangs"; fail=1; }
refused "$tmp/fifo.pt" "is a FIFO, not a regular file"
# finding 10: names with a newline, a tab and a terminal escape are listed escaped
python3 - "$tmp/names.safetensors" <<'PY'
import json, struct, sys
h = json.dumps({"evil\nfake\tF32\t[1]": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                "\x1b[31mred\\": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + b"\0\0")
PY
if "$bin" inspect "$tmp/names.safetensors" >"$tmp/out" 2>&1 && [ "$(wc -l <"$tmp/out")" -eq 2 ] &&
   grep -qF 'evil\nfake\tF32\t[1]	U8	[1]' "$tmp/out" && grep -qF '\x1b[31mred\\	U8' "$tmp/out" &&
   ! grep -q $'\x1b' "$tmp/out"; then
    echo "ok   names with a newline, tabs and an escape sequence listed escaped, one line each"
else
    echo "FAIL escaped names:"; cat -A "$tmp/out"; fail=1
fi
"$bin" inspect >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL no FILE: want usage exit 2"; fail=1; }
"$bin" inspect --bogus x >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL bad option: want 2"; fail=1; }
[ $fail -eq 0 ] && echo "test_inspect: ok"
exit $fail
