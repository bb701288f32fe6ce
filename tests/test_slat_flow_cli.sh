#!/usr/bin/env bash
# test_slat_flow_cli.sh - sam3d-slat-flow through its real CLI (--once, CPU) on the
# tiny fixture (tests/fixtures/slat_flow_tiny, tools/ref/dump_slat_flow.py): with the
# fixture's coords, condition and noise the output feats equal the official
# de-normalised sample (slat_feats) and coords pass through; without noise our seeded
# noise is deterministic per seed and is the stream of tools/ref/s3d_rng.py (given that
# noise, the same bytes); an F16 condition is accepted; repeat, cache_kv=1 and
# stream_blocks=1 give the
# same bytes; bad inputs (coords outside the grid, duplicated, none, above 42,000; a
# condition of the wrong width; noise of the wrong shape) and params exit non-zero
# with one clear error line. Inputs are cut out of the fixture with tests/stmin.py.
set -u
build=${BUILD:-build}
bin=$build/sam3d-slat-flow
. "$(dirname "$0")/lib.sh"
need_exec "" "$bin"
need_python3 "to cut the fixture inputs"
test_tmp
fx=tests/fixtures/slat_flow_tiny
ck=$fx/slat_generator.ckpt

# sl.py in SRC DIR [how]  |  sl.py cmp OUT REF refname tol  |  sl.py rng SEED N DST
cat >"$tmp/sl.py" <<'PY'
import math, os, struct, sys
from array import array
sys.path.insert(0, os.environ["S3D_TESTS"]); sys.path.insert(0, os.environ["S3D_REF"])
from stmin import read, write, values           # tests/stmin.py
a = sys.argv
if a[1] == "in":                                # ss_decode / cond_slat / noise files in DIR
    t, d = read(a[2]), a[3]; how = a[4] if len(a) > 4 else ""
    c, cond, z = t["coords"], t["cond"], t["noise"]
    n = c[1][0]
    if how == "f16":
        cond = ["F16", cond[1], b"".join(struct.pack("<e", v) for v in values("F32", cond[2]))]
    elif how == "narrow":                       # a condition of half the width
        cond = [cond[0], [1, cond[1][1] * 2, cond[1][2] // 2], cond[2]]
    elif how == "range":                        # z = 64 in the last row
        v = array("i", c[2]); v[-1] = 64; c = ["I32", c[1], v.tobytes()]
    elif how == "dup":                          # the last row repeats the first
        v = array("i", c[2]); v[-4:] = v[:4]; c = ["I32", c[1], v.tobytes()]
    elif how == "empty":
        c, z = ["I32", [0, 4], b""], ["F32", [1, 0, 8], b""]
    elif how == "big":                          # 42,001 distinct voxels
        m = 42001
        c = ["I32", [m, 4], array("i", [w for i in range(m)
                                        for w in (0, i // 4096, i // 64 % 64, i % 64)]).tobytes()]
    elif how == "badnoise":                     # one row fewer than coords
        z = ["F32", [1, n - 1, 8], z[2][:-32]]
    write(os.path.join(d, "ss_decode.safetensors"), {"coords": c})
    write(os.path.join(d, "cond_slat.safetensors"), {"cond_slat": cond})
    if how not in ("seeded", "f16", "big", "empty"):
        write(os.path.join(d, "noise.safetensors"), {"noise": z})
elif a[1] == "cmp":
    _, _, outp, name, refp, refname, tol = a
    o, r = read(outp)[name], read(refp)[refname]
    if o[1] != r[1]:
        print(name, "shape", o[1], "vs", r[1]); sys.exit(1)
    x, y = values(o[0], o[2]), values(r[0], r[2])
    err = sum((p - q) ** 2 for p, q in zip(x, y)); norm = sum(q * q for q in y)
    rel = math.sqrt(err / norm) if norm else math.sqrt(err)
    print(f"{name} {o[0]} {o[1]} rel_l2 {rel:.2e} (tol {tol})"); sys.exit(0 if rel <= float(tol) else 1)
elif a[1] == "rng":                             # our seeded noise, from the Python port
    import s3d_rng
    n = int(a[3])
    write(a[4], {"noise": ["F32", [n, 8], s3d_rng.normal_bytes(int(a[2]), n * 8)]})
PY
sl() { S3D_TESTS="$(dirname "$0")" S3D_REF=tools/ref python3 "$tmp/sl.py" "$@"; }
run() {  # run OUT_DIR IN_DIR [--param ...]: --once on the CPU, log in OUT_DIR.log
    local out=$1 in=$2; shift 2
    mkdir -p "$out"
    "$bin" --weights "$ck" --device cpu "$@" --once "$in" "$out" 2>"$out.log"
}
cutin() {  # cutin DIR [how]
    mkdir -p "$1" && sl in "$fx/sampler.safetensors" "$@" || { echo "FAIL cut inputs $*"; exit 1; }
}

# 1. the fixture's coords, condition and noise: the official de-normalised sample
cutin "$tmp/in"
if run "$tmp/out" "$tmp/in"; then
    ok "--once with given noise ($(grep -o '[0-9]* evaluations' "$tmp/out.log"))"
    o=$tmp/out/slat_flow.safetensors
    if sl cmp "$o" feats "$fx/sampler.safetensors" slat_feats 1e-6; then ok "feats"; else bad "feats"; fi
    if sl cmp "$o" coords "$fx/sampler.safetensors" coords 0; then ok "coords pass through"
    else bad "coords"; fi
    if [ "$(grep -c 'slat_flow: step [0-9]*/25' "$tmp/out.log")" = 25 ]; then
        ok "progress: one log line per step"; else bad "progress lines"; fi
else
    bad "--once with given noise"; tail -5 "$tmp/out.log"
fi

# 2. seeded noise: the same seed gives the same bytes, another seed another sample, and the
#    stream is tools/ref/s3d_rng.py's (given as noise: the same bytes)
cutin "$tmp/ins" seeded
run "$tmp/s7a" "$tmp/ins" --param seed=7 --param steps=3 &&
    run "$tmp/s7b" "$tmp/ins" --param seed=7 --param steps=3 &&
    run "$tmp/s8" "$tmp/ins" --param seed=8 --param steps=3
if same_tensors "$tmp/s7a/slat_flow.safetensors" "$tmp/s7b/slat_flow.safetensors" &&
    ! same_tensors "$tmp/s7a/slat_flow.safetensors" "$tmp/s8/slat_flow.safetensors" &&
    grep -q "noise seeded" "$tmp/s7a.log"; then
    ok "seeded noise: deterministic per seed"
else
    bad "seeded noise"; tail -3 "$tmp/s7a.log"
fi
mkdir -p "$tmp/inr" && cp "$tmp/ins"/*.safetensors "$tmp/inr/" &&
    sl rng 7 "$(grep -o '^[0-9]*' <<<"$(grep -o '[0-9]* voxels' "$tmp/s7a.log")")" "$tmp/inr/noise.safetensors"
if run "$tmp/r7" "$tmp/inr" --param steps=3 &&
    same_tensors "$tmp/r7/slat_flow.safetensors" "$tmp/s7a/slat_flow.safetensors"; then
    ok "seed 7 noise = tools/ref/s3d_rng.py normal(7, N*8)"
else
    bad "seeded noise vs s3d_rng.py"; tail -3 "$tmp/r7.log"
fi

# 3. an F16 condition (what fp16 sam3d-cond writes): accepted, close to the F32 one's sample
cutin "$tmp/in16" f16
run "$tmp/o16" "$tmp/in16" --param seed=7 --param steps=3
if sl cmp "$tmp/o16/slat_flow.safetensors" feats "$tmp/s7a/slat_flow.safetensors" feats 1e-2; then
    ok "F16 cond_slat accepted"
else
    bad "F16 cond_slat"; tail -3 "$tmp/o16.log"
fi

# 4. repeat=2 and cache_kv=1 (K/V once per request): the same bytes
if run "$tmp/rep" "$tmp/ins" --param seed=7 --param steps=3 --param repeat=2 &&
    same_tensors "$tmp/rep/slat_flow.safetensors" "$tmp/s7a/slat_flow.safetensors" &&
    grep -q "ms median of 2" "$tmp/rep.log" && grep -q "memory: " "$tmp/rep.log"; then
    ok "repeat=2: same output"
else
    bad "repeat=2"; tail -3 "$tmp/rep.log"
fi
if run "$tmp/kv" "$tmp/ins" --param seed=7 --param steps=3 --param cache_kv=1 &&
    same_tensors "$tmp/kv/slat_flow.safetensors" "$tmp/s7a/slat_flow.safetensors" &&
    grep -q "K/V cached" "$tmp/kv.log" && grep -q "K/V per evaluation" "$tmp/s7a.log"; then
    ok "cache_kv=1: same output as the K/V per evaluation (the default)"
else
    bad "cache_kv=1"; tail -3 "$tmp/kv.log"
fi

if run "$tmp/sb" "$tmp/ins" --param seed=7 --param steps=3 --param stream_blocks=1 &&
    same_tensors "$tmp/sb/slat_flow.safetensors" "$tmp/s7a/slat_flow.safetensors" &&
    grep -q "2 blocks of .* streamed from the host memory through 2 device slots" "$tmp/sb.log"; then
    ok "stream_blocks=1 (blocks copied into two slots before they run): same output"
else
    bad "stream_blocks=1"; tail -3 "$tmp/sb.log"
fi

# 5. refused: non-zero exit and an error line containing SUBSTRING (lib.sh expect_refused)
refused() {  # refused NAME INDIR SUBSTRING [--param ...] [--weights-file FILE]
    local name=$1 in=$2 sub=$3 w=$ck; shift 3
    if [ "${1:-}" = "--weights-file" ]; then w=$2; shift 2; fi
    mkdir -p "$tmp/r_out"
    expect_refused "$name" "$sub" "$bin" --weights "$w" --device cpu "$@" --once "$in" "$tmp/r_out"
}
for how in range dup empty big narrow badnoise; do cutin "$tmp/$how" "$how"; done
mkdir -p "$tmp/nocond" && cp "$tmp/in/ss_decode.safetensors" "$tmp/nocond/"
refused "coords outside the grid" "$tmp/range" "outside the 64^3 grid"
refused "duplicated coords" "$tmp/dup" "are both"
refused "no voxel" "$tmp/empty" "no voxel"
refused "42,001 voxels" "$tmp/big" "above the limit of 42000"
refused "cond_slat of the wrong width" "$tmp/narrow" "cond_slat"
refused "missing cond_slat" "$tmp/nocond" "cond_slat"
refused "noise of the wrong shape" "$tmp/badnoise" "input 'noise'"
refused "steps=0" "$tmp/in" "steps" --param steps=0
refused "cfg=-1" "$tmp/in" "cfg" --param cfg=-1
refused "cfg_lo > cfg_hi" "$tmp/in" "cfg_lo" --param cfg_lo=600 --param cfg_hi=500
refused "cache_kv=2" "$tmp/in" "cache_kv" --param cache_kv=2
refused "stream_blocks=2" "$tmp/in" "stream_blocks" --param stream_blocks=2
refused "wrong checkpoint (SS generator)" "$tmp/in" "ss_generator.ckpt" \
    --weights-file tests/fixtures/cond_ss_tiny/ss_generator.ckpt
exit $fail
