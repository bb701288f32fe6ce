#!/usr/bin/env bash
# test_outputs_py.sh - the files `sam3d export` writes, opened by independent readers
# (the libraries a user would use), on the fixture job tests/fixtures/outputs_tiny/job:
#   1. plyfile reads splat.ply: one element "vertex" with the 17 float32 properties of the
#      official save_ply in order, as many rows as gs_decode holds Gaussians, the values
#      of the artifact, zero normals; and mesh.ply: vertex (x y z float, red green blue
#      alpha uchar) and face (vertex_indices list) elements;
#   2. pygltflib loads mesh.glb: glTF 2.0, one mesh, one triangle primitive with POSITION
#      (float32 VEC3, min/max) and COLOR_0 (normalised uint8 VEC4), uint32 indices; the
#      buffer views fit the binary blob;
#   3. trimesh loads mesh.glb and the official file (trimesh's export of the official
#      to_glb mesh, outputs_tiny/mesh.glb): equal vertices, faces and vertex colours; with
#      --placed the vertices are the official placed ones (2e-6).
# Skipped (77) when python3 lacks numpy, safetensors, plyfile, pygltflib or trimesh. Env: BUILD.
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
. tests/lib.sh
need_exec "" "$build/sam3d"
need_python3 "to load the files"
for m in numpy safetensors plyfile pygltflib trimesh; do
    if ! python3 -c "import $m" 2>/dev/null; then
        echo "SKIP: python3 module $m is not installed (pip install numpy safetensors plyfile pygltflib trimesh)"
        exit 77
    fi
done
test_tmp
fx=tests/fixtures/outputs_tiny
"$build/sam3d" export --job "$fx/job" --out "$tmp/o" --outputs splat,mesh,mesh_ply 2>"$tmp/log" ||
    { cat "$tmp/log"; echo "FAIL sam3d export"; exit 1; }
"$build/sam3d" export --job "$fx/job" --out "$tmp/p" --outputs mesh --placed 2>"$tmp/log" ||
    { cat "$tmp/log"; echo "FAIL sam3d export --placed"; exit 1; }

python3 - "$tmp/o" "$tmp/p" "$fx" <<'PY'
import sys
import numpy as np
from plyfile import PlyData
from pygltflib import GLTF2
import trimesh
from safetensors.numpy import load_file

out, placed, fx = sys.argv[1:4]
fail = 0
def check(cond, what):
    global fail
    print(("ok   " if cond else "FAIL ") + what)
    fail |= not cond

# 1. plyfile
ply = PlyData.read(f"{out}/splat.ply")
el = ply.elements
names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
         "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
art = load_file(f"{fx}/job/gs_decode.safetensors")
v = el[0].data
check(len(el) == 1 and el[0].name == "vertex" and [p.name for p in el[0].properties] == names
      and all(v.dtype[n] == np.dtype("<f4") for n in names),
      f"plyfile: splat.ply has one 'vertex' element with the 17 save_ply float32 properties")
M = art["xyz"].shape[0]
cols = np.stack([v[n] for n in names], 1)
ref = np.concatenate([art["xyz"], np.zeros((M, 3), np.float32), art["f_dc"], art["opacity"],
                      art["scale"], art["rotation"]], 1)
check(len(v) == M and np.array_equal(cols, ref),
      f"plyfile: {len(v)} Gaussians (gs_decode holds {M}), values equal, normals zero")
mp = PlyData.read(f"{out}/mesh.ply")
check([e.name for e in mp.elements] == ["vertex", "face"] and
      [p.name for p in mp["vertex"].properties] == ["x", "y", "z", "red", "green", "blue", "alpha"]
      and len(mp["face"]["vertex_indices"]) == 1540,
      "plyfile: mesh.ply vertex (x y z rgba) and 1540 faces")

# 2. pygltflib
g = GLTF2().load_binary(f"{out}/mesh.glb")
prim = g.meshes[0].primitives[0]
acc = g.accessors
blob = g.binary_blob()
pos, col, idx = acc[prim.attributes.POSITION], acc[prim.attributes.COLOR_0], acc[prim.indices]
views_ok = all(bv.byteOffset + bv.byteLength <= len(blob) for bv in g.bufferViews)
check(g.asset.version == "2.0" and len(g.meshes) == 1 and prim.mode == 4 and
      pos.componentType == 5126 and pos.type == "VEC3" and pos.min and pos.max and
      col.componentType == 5121 and col.normalized and col.type == "VEC4" and
      idx.componentType == 5125 and idx.type == "SCALAR" and views_ok,
      f"pygltflib: glTF {g.asset.version}, POSITION {pos.count} float32 VEC3 with min/max, "
      f"COLOR_0 uint8 normalised, {idx.count} uint32 indices, views inside the {len(blob)}-byte blob")

# 3. trimesh
def load(p):
    return trimesh.load(p, force="mesh", process=False)
mine, off = load(f"{out}/mesh.glb"), load(f"{fx}/mesh.glb")
check(np.array_equal(mine.vertices, off.vertices) and np.array_equal(mine.faces, off.faces)
      and np.array_equal(mine.visual.vertex_colors, off.visual.vertex_colors),
      f"trimesh: mesh.glb = the official to_glb mesh ({len(mine.vertices)} vertices, "
      f"{len(mine.faces)} faces, colours equal)")
pm = load(f"{placed}/mesh.glb")
ref = load_file(f"{fx}/placed.safetensors")["vertices"]
d = np.abs(pm.vertices - ref).max()
check(d <= 2e-6 + 2e-6 * np.abs(ref).max(), f"trimesh: --placed mesh.glb = the official placed "
      f"vertices (max diff {d:.1e})")
sys.exit(fail)
PY
