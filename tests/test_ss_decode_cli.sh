#!/usr/bin/env bash
# test_ss_decode_cli.sh - sam3d-ss-decode through its real CLI (--once, CPU) on the
# tiny fixture (tests/fixtures/ss_decoder_tiny): the fixture's shape latent gives
# the official logits (relative L2 below 1e-4) and exactly the official coords,
# coords_original and downsample_factor; logits only with keep_logits; max_coords
# below N takes the downsample path (factor 2, sorted unique rows); a decoder whose
# logits are all negative (out_layer.2.bias set to -1e4 in a copy of the checkpoint)
# is one clear error, as are a latent of the wrong shape and bad params. With a GPU
# also the CUDA path in fp32 and fp16.
# Inputs are cut out of the fixture with a stdlib-only Python helper.
set -u
build=${BUILD:-build}
bin=$build/sam3d-ss-decode
. "$(dirname "$0")/lib.sh"
need_exec "" "$bin"
need_python3 "to cut the fixture inputs"
test_tmp
fx=tests/fixtures/ss_decoder_tiny
ck=$fx/ss_decoder.ckpt

# sd.py in REF DST [--bad]  |  sd.py cmp OUT name REF refname tol  |  sd.py eq OUT name REF refname
# sd.py has OUT name  |  sd.py down OUT max  |  sd.py bias CKPT DST value
cat >"$tmp/sd.py" <<'PY'
import json, math, pickle, struct, sys, zipfile
from array import array
def read(path):
    raw = open(path, "rb").read(); hl = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + hl]); head.pop("__metadata__", None); base = 8 + hl
    return {k: [e["dtype"], e["shape"], raw[base + e["data_offsets"][0]:base + e["data_offsets"][1]]]
            for k, e in head.items()}
def write(path, tensors):
    head, blob = {}, bytearray()
    for k, (dt, shape, data) in tensors.items():
        head[k] = {"dtype": dt, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    hj = json.dumps(head).encode(); hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + bytes(blob))
def values(dt, data):
    return list(array("f" if dt == "F32" else "i", data))
a = sys.argv
if a[1] == "in":
    t = read(a[2])["shape_latent"]
    if len(a) > 4:                              # a latent of the wrong width
        t = [t[0], [1, t[1][1] * 2, t[1][2] // 2], t[2]]
    write(a[3], {"shape_latent": t})
elif a[1] in ("cmp", "eq"):
    o, r = read(a[2])[a[3]], read(a[4])[a[5]]
    if o[1] != r[1] and math.prod(o[1]) != math.prod(r[1]):
        print(a[3], "shape", o[1], "vs", r[1]); sys.exit(1)
    if a[1] == "eq":
        same = o[0] == r[0] and o[2] == r[2]
        print(f"{a[3]} {o[0]} {o[1]} {'equal' if same else 'differ'}"); sys.exit(0 if same else 1)
    x, y = values(o[0], o[2]), values(r[0], r[2])
    err = sum((p - q) ** 2 for p, q in zip(x, y)); norm = sum(q * q for q in y)
    rel = math.sqrt(err / norm) if norm else math.sqrt(err)
    print(f"{a[3]} {o[0]} {o[1]} rel_l2 {rel:.2e} (tol {a[6]})"); sys.exit(0 if rel <= float(a[6]) else 1)
elif a[1] == "has":
    sys.exit(0 if a[3] in read(a[2]) else 1)
elif a[1] == "down":                            # factor 2, at most max rows, sorted, unique
    t = read(a[2]); f = values("I32", t["downsample_factor"][2])[0]
    v = values("I32", t["coords"][2]); rows = [tuple(v[i:i + 4]) for i in range(0, len(v), 4)]
    good = f == 2 and 0 < len(rows) <= int(a[3]) and all(p < q for p, q in zip(rows, rows[1:]))
    print(f"factor {f}, {len(rows)} rows, sorted unique {good}"); sys.exit(0 if good else 1)
elif a[1] == "bias":                            # copy CKPT with out_layer.2.bias = value
    class U(pickle.Unpickler):
        def find_class(self, mod, name):
            if name == "_rebuild_tensor_v2":
                return lambda st, off, size, stride, *r: (st, off)
            if mod == "collections" and name == "OrderedDict":
                return dict
            return lambda *r, **k: None
        def persistent_load(self, pid):
            return pid[2]                       # ('storage', type, key, location, numel)
    z = zipfile.ZipFile(a[2]); names = z.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl")][0]; root = pkl[:-len("data.pkl")]
    key, off = U(z.open(pkl)).load()["out_layer.2.bias"]
    info = z.getinfo(root + "data/" + key); raw = bytearray(open(a[2], "rb").read())
    nl, xl = struct.unpack_from("<HH", raw, info.header_offset + 26)
    at = info.header_offset + 30 + nl + xl + 4 * off
    raw[at:at + 4] = struct.pack("<f", float(a[4]))
    open(a[3], "wb").write(raw)
PY
sd() { python3 "$tmp/sd.py" "$@"; }
run() {  # run OUT_DIR IN_DIR [--weights W] [--param ...]: --once on the CPU, log in OUT_DIR.log
    local out=$1 in=$2 w=$ck; shift 2
    if [ "${1:-}" = --weights ]; then w=$2; shift 2; fi
    mkdir -p "$out"
    "$bin" --weights "$w" --device cpu "$@" --once "$in" "$out" 2>"$out.log"
}

# 1. the fixture's latent: the official logits, coords and factor
mkdir -p "$tmp/in"
sd in "$fx/ref.safetensors" "$tmp/in/in.safetensors" || { echo "FAIL cut inputs"; exit 1; }
if run "$tmp/out" "$tmp/in" --param keep_logits=true; then
    o=$tmp/out/ss_decode.safetensors
    ok "--once ($(grep -o '[0-9]* occupied.*factor [0-9]*)' "$tmp/out.log"))"
    if sd cmp "$o" logits "$fx/ref.safetensors" logits 1e-4; then ok "logits"; else bad "logits"; fi
    for k in coords downsample_factor; do
        if sd eq "$o" $k "$fx/ref.safetensors" $k; then ok "$k exact"; else bad "$k"; fi
    done
    # the fixture omits coords_original: pruning removed nothing (meta coords_equal_original)
    if sd eq "$o" coords_original "$fx/ref.safetensors" coords; then ok "coords_original exact"
    else bad "coords_original"; fi
    if grep -q "memory: host arenas" "$tmp/out.log"; then ok "timing and memory logged"; else bad "log line"; fi
else
    bad "--once"; tail -5 "$tmp/out.log"
fi

# 2. without keep_logits: no logits, the same coords
if run "$tmp/nol" "$tmp/in" && ! sd has "$tmp/nol/ss_decode.safetensors" logits &&
    sd eq "$tmp/nol/ss_decode.safetensors" coords "$fx/ref.safetensors" coords >/dev/null; then
    ok "no logits by default"
else
    bad "default output set"
fi

# 3. max_coords below N: the downsample path
if run "$tmp/ds" "$tmp/in" --param max_coords=2000 &&
    sd down "$tmp/ds/ss_decode.safetensors" 2000; then
    ok "max_coords=2000: downsampled"
else
    bad "max_coords=2000"; tail -3 "$tmp/ds.log"
fi

# 4. empty occupancy: one clear error, exit 1
sd bias "$ck" "$tmp/neg.ckpt" -1e4
if run "$tmp/empty" "$tmp/in" --weights "$tmp/neg.ckpt"; then
    bad "all-negative logits accepted"
elif grep -q "no occupied voxel.*HINT" "$tmp/empty.log"; then
    ok "empty occupancy: $(grep -o 'no occupied voxel[^(]*' "$tmp/empty.log" | head -1)"
else
    bad "empty occupancy message"; tail -3 "$tmp/empty.log"
fi

# 5. bad inputs and params
mkdir -p "$tmp/inbad"
sd in "$fx/ref.safetensors" "$tmp/inbad/in.safetensors" --bad
if ! run "$tmp/bad1" "$tmp/inbad" && grep -q "shape_latent" "$tmp/bad1.log"; then
    ok "latent of the wrong shape rejected"
else
    bad "wrong-shape latent"; tail -3 "$tmp/bad1.log"
fi
for p in keep_logits=maybe prune_dist=-1 max_coords=0; do
    if ! run "$tmp/badp" "$tmp/in" --param $p && grep -q "param ${p%%=*}" "$tmp/badp.log"; then
        ok "param $p rejected"
    else
        bad "param $p"; tail -3 "$tmp/badp.log"
    fi
done

# 6. with a GPU: the CUDA path (fp32: the official logits and coords; fp16: close, a few
#    threshold flips allowed as in tools/ref/check_e2e_chain.py, at most 0.1%)
if have_gpu "GPU part"; then
    for prec in fp32 fp16; do
        out=$tmp/gpu_$prec
        mkdir -p "$out"
        if "$bin" --weights "$ck" --device cuda:0 --precision $prec --once "$tmp/in" "$out" \
            --param keep_logits=true 2>"$out.log"; then
            tol=1e-5; [ $prec = fp16 ] && tol=1e-2
            if sd cmp "$out/ss_decode.safetensors" logits "$fx/ref.safetensors" logits $tol; then
                ok "cuda $prec logits"; else bad "cuda $prec logits"; fi
            if [ $prec = fp32 ]; then
                if sd eq "$out/ss_decode.safetensors" coords "$fx/ref.safetensors" coords; then
                    ok "cuda fp32 coords exact"; else bad "cuda fp32 coords"; fi
            fi
            grep -o "logits .* in [0-9.]* ms\|memory: device peak [0-9.]* MiB" "$out.log" | head -2
        else
            bad "cuda $prec --once"; tail -5 "$out.log"
        fi
    done
fi
exit $fail
