#!/usr/bin/env bash
# test_gs_decode_cli.sh - sam3d-gs-decode through its real CLI (--once, CPU) on the tiny
# fixtures (tests/fixtures/gs_decoder_tiny/{g32,g4}): the fixture's structured latent
# (coords + feats, as slat_flow.safetensors holds them) gives the five arrays of the
# official splat.ply (x y z, f_dc, opacity, scale, rot; relative L2 below 1e-5) for 32 and
# for 4 Gaussians per voxel, G chosen by the checkpoint alone; bad inputs (latent of the
# wrong width, feats rows != coords rows, coords outside 64^3, no voxel, a missing input),
# a bad param and a checkpoint that is not a Gaussian decoder are each one clear error.
# With a GPU also the CUDA path in fp32 and fp16.
# Inputs are cut out of the fixture with a stdlib-only Python helper.
set -u
build=${BUILD:-build}
bin=$build/sam3d-gs-decode
. "$(dirname "$0")/lib.sh"
need_exec "" "$bin"
need_python3 "to cut the fixture inputs"
test_tmp
fx=tests/fixtures/gs_decoder_tiny

# gd.py in REF DST [wide|rows|range|empty|nofeats]  |  gd.py ply OUT PLY TOL
cat >"$tmp/gd.py" <<'PY'
import math, os, sys
from array import array
sys.path.insert(0, os.environ["S3D_TESTS"])
from stmin import latent_case, read, write    # tests/stmin.py
a = sys.argv
if a[1] == "in":
    write(a[3], latent_case(read(a[2]), a[4] if len(a) > 4 else ""))
elif a[1] == "ply":                         # ours vs the official save_ply records
    o = read(a[2]); raw = open(a[3], "rb").read(); i = raw.index(b"end_header\n") + 11
    rec = array("f", raw[i:]); n = len(rec) // 17
    cols = {"xyz": (0, 3), "f_dc": (6, 3), "opacity": (9, 1), "scale": (10, 3), "rotation": (13, 4)}
    worst = 0.0
    for k, (c0, d) in cols.items():
        dt, shape, data = o[k]
        if dt != "F32" or shape != [n, d]:
            print(k, dt, shape, "expected F32", [n, d]); sys.exit(1)
        x = array("f", data); y = [rec[m * 17 + c0 + j] for m in range(n) for j in range(d)]
        err = sum((p - q) ** 2 for p, q in zip(x, y)); norm = sum(q * q for q in y)
        rel = math.sqrt(err / norm) if norm else math.sqrt(err); worst = max(worst, rel)
        print(f"  {k:8s} F32 {shape} rel_l2 {rel:.2e}")
    print(f"  {n} Gaussians, worst rel_l2 {worst:.2e} (tol {a[4]})"); sys.exit(0 if worst <= float(a[4]) else 1)
PY
gd() { S3D_TESTS="$(dirname "$0")" python3 "$tmp/gd.py" "$@"; }
run() {  # run OUT_DIR IN_DIR CKPT [args...]: --once on the CPU, log in OUT_DIR.log
    local out=$1 in=$2 w=$3; shift 3
    mkdir -p "$out"
    "$bin" --weights "$w" --device cpu "$@" --once "$in" "$out" 2>"$out.log"
}
mkin() {  # mkin NAME [how]: IN dir $tmp/in_NAME with slat_flow.safetensors cut from g32
    mkdir -p "$tmp/in_$1"
    gd in "$fx/g32/ref.safetensors" "$tmp/in_$1/slat_flow.safetensors" ${2:-} ||
        { echo "FAIL cut inputs $1"; exit 1; }
}

# 1. both checkpoints on the fixture's latent: the official splat.ply values
mkin ok
for g in 32 4; do
    ck=$fx/g$g/slat_decoder_gs.ckpt; [ $g = 4 ] && ck=$fx/g4/slat_decoder_gs_4.ckpt
    if run "$tmp/out$g" "$tmp/in_ok" "$ck"; then
        ok "G=$g --once ($(grep -o '[0-9]* voxels -> [0-9]* Gaussians (G [0-9]*)' "$tmp/out$g.log"))"
        if gd ply "$tmp/out$g/gs_decode.safetensors" "$fx/g$g/splat.ply" 1e-5; then
            ok "G=$g: the official save_ply values"; else bad "G=$g values"; fi
        if grep -q "memory: " "$tmp/out$g.log"; then ok "G=$g: timing and memory logged"
        else bad "G=$g log line"; fi
    else
        bad "G=$g --once"; tail -5 "$tmp/out$g.log"
    fi
done
ck=$fx/g32/slat_decoder_gs.ckpt

# 2. bad inputs: one clear error each, exit 1
expect_fail() {  # expect_fail LABEL PATTERN OUT IN CKPT [args...]
    local label=$1 pat=$2; shift 2
    if run "$@"; then
        bad "$label accepted"
    elif grep -q "$pat" "$1.log"; then
        ok "$label: $(grep -o "E .*" "$1.log" | grep -m1 "$pat" | cut -c1-150)"
    else
        bad "$label message"; tail -3 "$1.log"
    fi
}
for how in wide rows range empty nofeats; do mkin $how $how; done
expect_fail "latent width 7"        "feats.*HINT"            "$tmp/bad_w" "$tmp/in_wide" "$ck"
expect_fail "feats rows != coords"  "feats.*HINT"            "$tmp/bad_r" "$tmp/in_rows" "$ck"
expect_fail "coords outside 64^3"   "coords.*HINT"           "$tmp/bad_c" "$tmp/in_range" "$ck"
expect_fail "no voxel"              "no voxel.*HINT"         "$tmp/bad_e" "$tmp/in_empty" "$ck"
expect_fail "feats missing"         "'feats'"                "$tmp/bad_m" "$tmp/in_nofeats" "$ck"
expect_fail "param repeat=0"        "param repeat"           "$tmp/bad_p" "$tmp/in_ok" "$ck" --param repeat=0
expect_fail "a mesh decoder"        "not a Gaussian decoder" "$tmp/bad_k" "$tmp/in_ok" \
    tests/fixtures/mesh_decoder_tiny/slat_decoder_mesh.ckpt

# 3. with a GPU: the CUDA path (fp32 as the CPU; fp16 trunk within 1e-2)
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    for prec in fp32 fp16; do
        out=$tmp/gpu_$prec
        mkdir -p "$out"
        if "$bin" --weights "$ck" --device cuda:0 --precision $prec --once "$tmp/in_ok" "$out" \
            2>"$out.log"; then
            tol=1e-5; [ $prec = fp16 ] && tol=1e-2
            if gd ply "$out/gs_decode.safetensors" "$fx/g32/splat.ply" $tol; then
                ok "cuda $prec: the official save_ply values"; else bad "cuda $prec values"; fi
            grep -o "gs_decode: [0-9]* voxels.*" "$out.log" | head -1
        else
            bad "cuda $prec --once"; tail -5 "$out.log"
        fi
    done
else
    echo "GPU part skipped: no CUDA device on this machine"
fi
exit $fail
