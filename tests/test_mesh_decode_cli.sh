#!/usr/bin/env bash
# test_mesh_decode_cli.sh - sam3d-mesh-decode through its real CLI (--once, CPU) on the tiny
# fixture tests/fixtures/mesh_decoder_tiny (the official SLatMeshDecoder + FlexiCubes at
# resolution 16, so the cubes are at 64^3: --param resolution=16):
#   1. the fixture's structured latent (coords + feats, as slat_flow.safetensors holds them)
#      gives the official mesh: the same vertex and face counts, the same faces in the same
#      order, vertices and colours (vertex_attrs[:, :3]) within 1e-5; repeat=2 gives the same
#      bytes; keep_cubes=3 writes the official out_layer rows of the first 3 voxels; the log
#      has the timing line and the memory line;
#   2. `sam3d export` turns the artifact into mesh.glb (and mesh.ply): the structural glTF 2.0
#      validator (build/tests/test_glb FILE: header, chunks, 4-byte alignment, accessor and
#      view bounds, index range, POSITION min/max) passes, and pygltflib (when installed)
#      loads it: one triangle primitive with POSITION, COLOR_0 and as many indices as faces;
#   3. bad inputs, each one clear error line and exit 1: a latent of the wrong width, feats
#      rows != coords rows, coords outside the resolution, no voxel, a missing input, more
#      faces than max_faces, params out of range, a checkpoint that is not a mesh decoder;
#   4. with a GPU, the CUDA path: fp32 as the CPU (same counts, positions within 1e-5),
#      fp16 with face counts within 1% of the official.
# Inputs are cut out of the fixture with a stdlib-only Python helper. Env: BUILD.
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
bin=$build/sam3d-mesh-decode
. tests/lib.sh
need_exec "" "$bin" "$build/sam3d" "$build/tests/test_glb"
need_python3 "to cut the fixture inputs"
test_tmp
fx=tests/fixtures/mesh_decoder_tiny
ck=$fx/slat_decoder_mesh.ckpt

# md.py in REF DST [wide|rows|range|empty|nofeats]  |  md.py mesh OUT REF TOL [FACE_TOL]
#  | md.py same A B  |  md.py gltf GLB FACES
cat >"$tmp/md.py" <<'PY'
import sys
from array import array
sys.path.insert(0, "tests")
from stmin import latent_case, read, write, values
a = sys.argv
if a[1] == "in":                            # the fixture's latent, or a bad case at resolution 16
    write(a[3], latent_case(read(a[2]), a[4] if len(a) > 4 else "", 16))
elif a[1] == "mesh":                        # ours vs the official FlexiCubes mesh
    o, r = read(a[2]), read(a[3]); tol = float(a[4])
    V, F = r["vertices"][1][0], r["faces"][1][0]
    if o["vertices"][:2] != ["F32", [o["vertices"][1][0], 3]] or o["faces"][0] != "I32" \
            or o["colors"][:2] != ["F32", o["vertices"][1]]:
        print("dtypes/shapes", {k: o[k][:2] for k in o}); sys.exit(1)
    v, f, c = (values(*o[k][::2]) for k in ("vertices", "faces", "colors"))
    nv, nf = len(v) // 3, len(f) // 3
    if len(a) > 5:                          # only the counts: face count within FACE_TOL
        rel = abs(nf - F) / F
        print(f"  {nv} vertices, {nf} faces; official {V}, {F} ({100 * rel:.2f}% apart)")
        sys.exit(0 if rel <= float(a[5]) else 1)
    if (nv, nf) != (V, F):
        print(f"  {nv} vertices, {nf} faces; official {V}, {F}"); sys.exit(1)
    rv, rf, ra = (values(*r[k][::2]) for k in ("vertices", "faces", "vertex_attrs"))
    rc = [ra[i * 6 + j] for i in range(V) for j in range(3)]
    dv = max(abs(x - y) for x, y in zip(v, rv)); dc = max(abs(x - y) for x, y in zip(c, rc))
    same_f = list(f) == list(rf)
    print(f"  {nv} vertices, {nf} faces (official {V}, {F}); faces {'the same' if same_f else 'DIFFER'}; "
          f"max |dv| {dv:.1e}, max |dcolour| {dc:.1e} (tol {tol})")
    sys.exit(0 if same_f and dv <= tol and dc <= tol else 1)
elif a[1] == "cubes":                       # cube_feats = the official out_layer's first rows
    o, r = read(a[2]), read(a[3]); dt, shape, data = o["cube_feats"]
    x = values(dt, data); y = values("F32", r["out_layer"][2])[:len(x)]
    err = max(abs(p - q) for p, q in zip(x, y))
    print(f"  cube_feats {dt} {shape}, max |d| {err:.1e} against the official out_layer")
    sys.exit(0 if dt == "F32" and shape == [64 * int(a[4]), 101] and err <= 1e-5 else 1)
elif a[1] == "same":                        # two artifacts with equal bytes per tensor
    x, y = read(a[2]), read(a[3]); sys.exit(0 if x == y else 1)
elif a[1] == "gltf":                        # pygltflib loads it: one triangle primitive
    from pygltflib import GLTF2
    g = GLTF2().load_binary(a[2]); p = g.meshes[0].primitives[0]; acc = g.accessors
    pos, col, idx = acc[p.attributes.POSITION], acc[p.attributes.COLOR_0], acc[p.indices]
    ok = (g.asset.version == "2.0" and len(g.meshes) == 1 and p.mode == 4 and pos.type == "VEC3"
          and col.componentType == 5121 and col.normalized and idx.count == 3 * int(a[3])
          and col.count == pos.count and len(g.binary_blob()) >= sum(v.byteLength for v in g.bufferViews))
    print(f"  pygltflib: {pos.count} positions, {idx.count // 3} triangles, COLOR_0 "
          f"{col.type} normalised uint8"); sys.exit(0 if ok else 1)
PY
md() { python3 "$tmp/md.py" "$@"; }
run() {  # run OUT_DIR IN_DIR CKPT [args...]: --once on the CPU at resolution 16, log in OUT_DIR.log
    local out=$1 in=$2 w=$3; shift 3
    mkdir -p "$out"
    "$bin" --weights "$w" --device cpu --param resolution=16 "$@" --once "$in" "$out" 2>"$out.log"
}
mkin() {  # mkin NAME [how]: IN dir $tmp/in_NAME with slat_flow.safetensors cut from the fixture
    mkdir -p "$tmp/in_$1"
    md in "$fx/ref.safetensors" "$tmp/in_$1/slat_flow.safetensors" ${2:-} ||
        { echo "FAIL cut inputs $1"; exit 1; }
}

# 1. the fixture's latent: the official mesh
mkin ok
o=$tmp/out
if run "$o" "$tmp/in_ok" "$ck"; then
    ok "--once ($(grep -o '[0-9]* voxels -> [0-9]* vertices, [0-9]* faces' "$o.log"))"
    if md mesh "$o/mesh_decode.safetensors" "$fx/ref.safetensors" 1e-5; then
        ok "the official FlexiCubes mesh (counts, faces, vertices, colours)"
    else
        bad "mesh values"
    fi
    if grep -q "mesh_decode: .* ms (maps + state" "$o.log" && grep -q "memory: " "$o.log"; then
        ok "timing and memory logged"
    else
        bad "log lines"
    fi
else
    bad "--once"; tail -5 "$o.log"
fi
if run "$tmp/rep" "$tmp/in_ok" "$ck" --param repeat=2 &&
   md same "$o/mesh_decode.safetensors" "$tmp/rep/mesh_decode.safetensors"; then
    ok "repeat=2: the same mesh ($(grep -o 'repeat 2: [0-9.]* / [0-9.]* / [0-9.]* ms' "$tmp/rep.log"))"
else
    bad "repeat=2"; tail -3 "$tmp/rep.log"
fi

if run "$tmp/keep" "$tmp/in_ok" "$ck" --param keep_cubes=3 &&
   md cubes "$tmp/keep/mesh_decode.safetensors" "$fx/ref.safetensors" 3; then
    ok "keep_cubes=3: cube_feats = the official out_layer rows of the first 3 voxels"
else
    bad "keep_cubes"; tail -3 "$tmp/keep.log"
fi

# 2. mesh.glb from the artifact: the structural validator and pygltflib
x=$tmp/export
if "$build/sam3d" export --job "$o" --out "$x" --outputs mesh,mesh_ply 2>"$x.log" &&
   [ -f "$x/mesh.glb" ] && [ -f "$x/mesh.ply" ]; then
    ok "sam3d export: mesh.glb ($(wc -c <"$x/mesh.glb") bytes) and mesh.ply"
    if r=$("$build/tests/test_glb" "$x/mesh.glb"); then ok "$r"; else bad "$r"; fi
    if python3 -c "import pygltflib" 2>/dev/null; then
        F=$(grep -o '[0-9]* faces' "$o.log" | head -1 | cut -d' ' -f1)
        if md gltf "$x/mesh.glb" "$F"; then ok "pygltflib loads mesh.glb"; else bad "pygltflib"; fi
    else
        echo "pygltflib check skipped: python3 module pygltflib is not installed"
    fi
else
    bad "sam3d export of the mesh"; tail -3 "$x.log"
fi

# 3. bad inputs and params: one clear error each, exit 1
expect_fail() {  # expect_fail LABEL PATTERN OUT IN CKPT [args...]
    local label=$1 pat=$2; shift 2
    if run "$@"; then
        bad "$label accepted"
    elif [ "$(grep -c " E " "$1.log")" -ge 1 ] && grep -q "$pat" "$1.log"; then
        ok "$label: $(grep -o " E .*" "$1.log" | grep -m1 "$pat" | cut -c1-160)"
    else
        bad "$label message"; tail -3 "$1.log"
    fi
}
for how in wide rows range empty nofeats; do mkin $how $how; done
F=$(python3 -c "import sys; sys.path.insert(0, 'tests'); from stmin import read
print(read('$fx/ref.safetensors')['faces'][1][0])")           # the official face count
expect_fail "latent width 7"        "feats.*HINT"              "$tmp/bad_w" "$tmp/in_wide" "$ck"
expect_fail "feats rows != coords"  "feats.*HINT"              "$tmp/bad_r" "$tmp/in_rows" "$ck"
expect_fail "coords outside 16^3"   "coords.*outside.*HINT"    "$tmp/bad_c" "$tmp/in_range" "$ck"
expect_fail "no voxel"              "no voxel.*HINT"           "$tmp/bad_e" "$tmp/in_empty" "$ck"
expect_fail "feats missing"         "'feats'"                  "$tmp/bad_m" "$tmp/in_nofeats" "$ck"
expect_fail "more faces than max_faces" "$F faces, more than max_faces $((F - 1)).*HINT" \
    "$tmp/bad_f" "$tmp/in_ok" "$ck" --param max_faces=$((F - 1))
expect_fail "param resolution=65"   "param resolution"         "$tmp/bad_p" "$tmp/in_ok" "$ck" --param resolution=65
expect_fail "param max_faces=0"     "param max_faces"          "$tmp/bad_q" "$tmp/in_ok" "$ck" --param max_faces=0
expect_fail "a Gaussian decoder"    "upsample.*HINT"           "$tmp/bad_k" "$tmp/in_ok" \
    tests/fixtures/gs_decoder_tiny/g32/slat_decoder_gs.ckpt
if run "$tmp/at_f" "$tmp/in_ok" "$ck" --param max_faces="$F"; then
    ok "max_faces = the face count is accepted"
else
    bad "max_faces = $F refused"; tail -3 "$tmp/at_f.log"
fi

# 4. with a GPU: the CUDA path
if have_gpu "GPU part"; then
    for prec in fp32 fp16; do
        out=$tmp/gpu_$prec
        mkdir -p "$out"
        if "$bin" --weights "$ck" --device cuda:0 --precision $prec --param resolution=16 \
            --once "$tmp/in_ok" "$out" 2>"$out.log"; then
            if [ $prec = fp32 ]; then
                md mesh "$out/mesh_decode.safetensors" "$fx/ref.safetensors" 1e-5 0 &&
                    ok "cuda fp32: the official counts" || bad "cuda fp32 counts"
            else
                md mesh "$out/mesh_decode.safetensors" "$fx/ref.safetensors" 1e-5 0.01 &&
                    ok "cuda fp16: face count within 1% of the official" || bad "cuda fp16 counts"
            fi
            grep -o "mesh_decode: [0-9]* voxels.*" "$out.log" | head -1
        else
            bad "cuda $prec --once"; tail -5 "$out.log"
        fi
    done
fi
exit $fail
