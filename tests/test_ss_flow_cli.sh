#!/usr/bin/env bash
# test_ss_flow_cli.sh - sam3d-ss-flow through its real CLI (--once, CPU) on the
# tiny fixture (tests/fixtures/ss_flow_tiny; weights: the generator half of
# tests/fixtures/cond_ss_tiny/ss_generator.ckpt): with the fixture's condition and
# noise the five outputs equal the official sampler's final latents (relative L2
# below 1e-5) and nothing else is written (no pass-through), an F16 condition is
# accepted; without noise inputs our seeded noise is deterministic per seed; param
# repeat reruns the sampler (same output, median logged), cache_kv=1 and
# stream_blocks=1 give the same bytes as the default; bad inputs and params
# exit non-zero with one clear error line.
# Inputs are cut out of the fixture with a stdlib-only Python helper.
set -u
build=${BUILD:-build}
bin=$build/sam3d-ss-flow
. "$(dirname "$0")/lib.sh"
need_exec "" "$bin"
need_python3 "to cut the fixture inputs"
test_tmp
fx=tests/fixtures/ss_flow_tiny
ck=tests/fixtures/cond_ss_tiny/ss_generator.ckpt    # embedder + generator, as released

# sf.py in SRC DST [--f16] [--drop NAME]... [--narrow]  |  sf.py cmp OUT name REF refname tol
cat >"$tmp/sf.py" <<'PY'
import json, math, struct, sys
from array import array
LAT = ["6drotation_normalized", "scale", "shape", "translation", "translation_scale"]
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
    if dt == "F32": return list(array("f", data))
    return [struct.unpack_from("<e", data, 2 * i)[0] for i in range(len(data) // 2)]
a = sys.argv
if a[1] == "in":
    src, opts = read(a[2]), a[4:]
    out = {"cond_ss": src["cond"]}
    if "--f16" in opts:
        vals = values("F32", src["cond"][2])
        out["cond_ss"] = ["F16", src["cond"][1], b"".join(struct.pack("<e", v) for v in vals)]
    if "--narrow" in opts:                      # a condition of the wrong width
        dt, sh, data = out["cond_ss"]; out["cond_ss"] = [dt, [1, sh[1] * 2, sh[2] // 2], data]
    for k in LAT:
        out["noise." + k] = src["noise." + k]
    for i, o in enumerate(opts):
        if o == "--drop":
            out.pop(opts[i + 1])
    write(a[3], out)
else:
    _, _, outp, name, refp, refname, tol = a
    o, r = read(outp)[name], read(refp)[refname]
    if o[1] != r[1]:
        print(name, "shape", o[1], "vs", r[1]); sys.exit(1)
    x, y = values(o[0], o[2]), values(r[0], r[2])
    err = sum((p - q) ** 2 for p, q in zip(x, y)); norm = sum(q * q for q in y)
    rel = math.sqrt(err / norm) if norm else math.sqrt(err)
    print(f"{name} {o[0]} {o[1]} rel_l2 {rel:.2e} (tol {tol})"); sys.exit(0 if rel <= float(tol) else 1)
PY
sf() { python3 "$tmp/sf.py" "$@"; }
run() {  # run OUT_DIR IN_DIR [--param ...]: --once on the CPU, log in OUT_DIR.log
    local out=$1 in=$2; shift 2
    mkdir -p "$out"
    "$bin" --weights "$ck" --device cpu "$@" --once "$in" "$out" 2>"$out.log"
}

# 1. the fixture's condition and noise: the official sampler's final latents
mkdir -p "$tmp/in"
sf in "$fx/sampler.safetensors" "$tmp/in/inputs.safetensors" || { echo "FAIL cut inputs"; exit 1; }
if run "$tmp/out" "$tmp/in"; then
    ok "--once with given noise ($(grep -o '[0-9]* evaluations' "$tmp/out.log"))"
    o=$tmp/out/ss_flow.safetensors
    for k in 6drotation_normalized scale translation translation_scale; do
        if sf cmp "$o" $k "$fx/sampler.safetensors" final.$k 1e-5; then ok "$k"; else bad "$k"; fi
    done
    if sf cmp "$o" shape_latent "$fx/sampler.safetensors" final.shape 1e-5; then
        ok "shape_latent"; else bad "shape_latent"; fi
    if python3 -c 'import json, struct, sys; r = open(sys.argv[1], "rb").read()
h = json.loads(r[8:8 + struct.unpack("<Q", r[:8])[0]]); h.pop("__metadata__", None)
sys.exit(0 if sorted(h) == sorted(sys.argv[2:]) else 1)' "$o" shape_latent \
        6drotation_normalized scale translation translation_scale; then
        ok "outputs: the five latents alone (nothing passed through)"
    else
        bad "outputs: more than the five latents"
    fi
else
    bad "--once with given noise"; tail -5 "$tmp/out.log"
fi

# 2. an F16 condition (what fp16 sam3d-cond writes): accepted, close to the fp32 result
mkdir -p "$tmp/in16"
sf in "$fx/sampler.safetensors" "$tmp/in16/inputs.safetensors" --f16
if run "$tmp/out16" "$tmp/in16" &&
    sf cmp "$tmp/out16/ss_flow.safetensors" shape_latent "$fx/sampler.safetensors" final.shape 1e-2; then
    ok "F16 cond_ss accepted"
else
    bad "F16 cond_ss"; tail -3 "$tmp/out16.log"
fi

# 3. seeded noise: the same seed gives the same bytes, another seed other latents
mkdir -p "$tmp/ins"
sf in "$fx/sampler.safetensors" "$tmp/ins/inputs.safetensors" --drop noise.6drotation_normalized \
    --drop noise.scale --drop noise.shape --drop noise.translation --drop noise.translation_scale
run "$tmp/s7a" "$tmp/ins" --param seed=7 --param steps=3 &&
    run "$tmp/s7b" "$tmp/ins" --param seed=7 --param steps=3 &&
    run "$tmp/s8" "$tmp/ins" --param seed=8 --param steps=3
if same_tensors "$tmp/s7a/ss_flow.safetensors" "$tmp/s7b/ss_flow.safetensors" &&
    ! same_tensors "$tmp/s7a/ss_flow.safetensors" "$tmp/s8/ss_flow.safetensors" &&
    grep -q "noise seeded" "$tmp/s7a.log"; then
    ok "seeded noise: deterministic per seed"
else
    bad "seeded noise"; tail -3 "$tmp/s7a.log"
fi

# 4. repeat: same output, median logged
if run "$tmp/rep" "$tmp/in" --param repeat=2 &&
    same_tensors "$tmp/rep/ss_flow.safetensors" "$tmp/out/ss_flow.safetensors" &&
    grep -q "ms median of 2" "$tmp/rep.log" && grep -q "memory: " "$tmp/rep.log"; then
    ok "repeat=2: same output"
else
    bad "repeat=2"; tail -3 "$tmp/rep.log"
fi

# 5. cache_kv=1 (the condition's K/V projected once; the default projects it in every
#    evaluation): the same bytes
if grep -q "K/V per evaluation" "$tmp/out.log" && run "$tmp/kv" "$tmp/in" --param cache_kv=1 &&
    same_tensors "$tmp/kv/ss_flow.safetensors" "$tmp/out/ss_flow.safetensors" &&
    grep -q "K/V cached" "$tmp/kv.log"; then
    ok "cache_kv=1: same output as the default (no cache)"
else
    bad "cache_kv=1"; tail -3 "$tmp/kv.log"
fi

# 5b. stream_blocks=1 (the blocks in host memory, copied into two device slots before
#     they run; common/stage_blocks.h): the same bytes
if run "$tmp/sb" "$tmp/in" --param stream_blocks=1 &&
    same_tensors "$tmp/sb/ss_flow.safetensors" "$tmp/out/ss_flow.safetensors" &&
    grep -q "streamed from the host memory through 2 device slots" "$tmp/sb.log"; then
    ok "stream_blocks=1: same output as the blocks resident"
else
    bad "stream_blocks=1"; tail -3 "$tmp/sb.log"
fi

# 6. refused: non-zero exit and an error line containing SUBSTRING
refused() {  # refused NAME INDIR SUBSTRING [--param ...] [--weights-file FILE]
    local name=$1 in=$2 sub=$3 w=$ck; shift 3
    if [ "${1:-}" = "--weights-file" ]; then w=$2; shift 2; fi
    mkdir -p "$tmp/r_out"
    if "$bin" --weights "$w" --device cpu "$@" --once "$in" "$tmp/r_out" 2>"$tmp/r_err"; then
        bad "$name: accepted"
    elif grep -q " E .*$sub" "$tmp/r_err"; then
        ok "$name: refused ($(grep -m1 " E " "$tmp/r_err" | sed 's/.* E [0-9:.]* //'))"
    else
        bad "$name: no error line with '$sub'"; cat "$tmp/r_err"
    fi
}
mkdir -p "$tmp/nocond" "$tmp/narrow" "$tmp/partial"
sf in "$fx/sampler.safetensors" "$tmp/nocond/inputs.safetensors" --drop cond_ss
sf in "$fx/sampler.safetensors" "$tmp/narrow/inputs.safetensors" --narrow
sf in "$fx/sampler.safetensors" "$tmp/partial/inputs.safetensors" --drop noise.scale
refused "missing cond_ss" "$tmp/nocond" "cond_ss"
refused "cond_ss of the wrong width" "$tmp/narrow" "cond_ss"
refused "4 of 5 noise latents" "$tmp/partial" "noise.scale"
refused "steps=0" "$tmp/in" "steps" --param steps=0
refused "cfg=-1" "$tmp/in" "cfg" --param cfg=-1
refused "cache_kv=2" "$tmp/in" "cache_kv" --param cache_kv=2
refused "stream_blocks=2" "$tmp/in" "stream_blocks" --param stream_blocks=2
refused "wrong checkpoint (MoGe)" "$tmp/in" "model.pt" --weights-file tests/fixtures/moge_tiny/model.pt
refused "checkpoint without the generator (SLAT embedder only)" "$tmp/in" "slat_generator.ckpt" \
    --weights-file tests/fixtures/cond_slat_tiny/slat_generator.ckpt
exit $fail
