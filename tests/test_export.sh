#!/usr/bin/env bash
# test_export.sh - `sam3d export` (orchestrator/export.c) on the fixture job directory
# tests/fixtures/outputs_tiny/job (artifacts made from the official tiny fixtures by
# tools/ref/dump_outputs.py), and the export step at the end of `sam3d run`:
#   1. defaults: splat.ply byte-identical to the official save_ply file of the same Gaussians,
#      pose.json equal to the official pose decoder's output (1e-6), mesh.glb a GLB whose
#      BIN chunk is byte-identical to trimesh's export of the official to_glb mesh,
#      preview.png a 1024x384 RGB PNG (two 512x384 panels of the 64x48 image);
#   2. --placed: splat.ply against the official make_scene + save_ply (placed_splat.ply) and
#      mesh.glb's positions against the official transform of the vertices (2e-6);
#   3. --outputs: only what is named (pose; mesh_ply gives mesh.ply);
#   4. missing artifacts: skipped by default (the rest written), an error when named or
#      with --placed; an empty directory is one error; a run's --out folder works as --job;
#   5. a corrupt mesh artifact: exit 1 naming the file and the face, the other files still
#      written, and an existing mesh.glb kept as it was (nothing already written is lost);
#   6. usage errors: exit 2;
#   7. `sam3d run` through depth, cond and the SS stages (tiny weights, CPU) writes
#      pose.json at its end, equal to `sam3d export` on its artifacts, and skips the files
#      whose stages did not run.
# Python (stdlib only, tests/stmin.py) compares values. Env: BUILD (default build).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
sam3d=$build/sam3d
. tests/lib.sh
need_exec "" "$sam3d"
need_python3 "to compare the files with the official values"
test_tmp
fx=tests/fixtures/outputs_tiny
job=$fx/job

# py CHECK ARGS...: the checks below, in one stdlib-only helper
cat >"$tmp/chk.py" <<'PY'
import json, math, os, struct, sys
from array import array
sys.path.insert(0, "tests")
from stmin import read, values

def records(path):                       # save_ply records: (M, 17) floats
    raw = open(path, "rb").read()
    i = raw.index(b"end_header\n") + 11
    return array("f", raw[i:]), raw[:i]

def glb(path):                           # (json, bin) of a GLB
    b = open(path, "rb").read()
    magic, ver, n = struct.unpack("<III", b[:12])
    assert magic == 0x46546C67 and ver == 2 and n == len(b), "GLB header"
    jl, jt = struct.unpack("<II", b[12:20])
    bl, bt = struct.unpack("<II", b[20 + jl:28 + jl])
    assert jt == 0x4E4F534A and bt == 0x004E4942, "chunk types"
    return json.loads(b[20:20 + jl]), b[28 + jl:28 + jl + bl]

def positions(path):
    j, bn = glb(path)
    a = j["accessors"][j["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    v = j["bufferViews"][a["bufferView"]]
    o = v.get("byteOffset", 0) + a.get("byteOffset", 0)
    return array("f", bn[o:o + 12 * a["count"]])

def close(a, b, atol, rtol):
    worst = max((abs(x - y) - rtol * abs(y) for x, y in zip(a, b)), default=0.0)
    return len(a) == len(b) and worst <= atol, max((abs(x - y) for x, y in zip(a, b)), default=0)

cmd = sys.argv[1]
if cmd == "pose":                        # pose.json vs case 0 of pose.safetensors
    p = json.load(open(sys.argv[2])); ref = read(sys.argv[3])
    worst = 0.0
    for k, n in (("rotation", 4), ("translation", 3), ("scale", 3)):
        r = values(*ref[k][::2])[:n]
        if len(p[k]) != n: sys.exit(f"{k}: {p[k]}")
        worst = max(worst, max(abs(a - b) for a, b in zip(p[k], r)))
    for k in ("frame", "object_frame", "apply"):
        if k not in p: sys.exit(f"no {k}")
    print(f"max diff {worst:.1e}"); sys.exit(0 if worst <= 1e-6 else 1)
elif cmd == "same_pose":                 # two pose.json files with equal values
    a, b = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
    sys.exit(0 if all(a[k] == b[k] for k in ("rotation", "translation", "scale")) else 1)
elif cmd == "glb":                       # BIN chunk identical to the official file's
    j1, b1 = glb(sys.argv[2]); j2, b2 = glb(sys.argv[3])
    a1 = [(a["componentType"], a["type"], a["count"], a.get("normalized", False)) for a in j1["accessors"]]
    a2 = [(a["componentType"], a["type"], a["count"], a.get("normalized", False)) for a in j2["accessors"]]
    print(f"{len(b1)} BIN bytes, accessors {a1}")
    sys.exit(0 if b1 == b2 and a1 == a2 else 1)
elif cmd == "png":                       # width height colour type
    b = open(sys.argv[2], "rb").read(33)
    assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR"
    w, h, depth, ct = struct.unpack(">IIBB", b[16:26])
    print(f"{w}x{h} depth {depth} type {ct}")
    sys.exit(0 if (w, h, depth, ct) == tuple(map(int, sys.argv[3:7])) else 1)
elif cmd == "placed_splat":              # ours vs make_scene + save_ply
    a, ha = records(sys.argv[2]); b, hb = records(sys.argv[3])
    ok, m = close(a, b, 2e-6, 2e-6)
    print(f"max diff {m:.1e} over {len(a) // 17} records"); sys.exit(0 if ok and ha == hb else 1)
elif cmd == "placed_mesh":               # mesh.glb positions vs the official placed vertices
    ok, m = close(positions(sys.argv[2]), values(*read(sys.argv[3])["vertices"][::2]), 2e-6, 2e-6)
    print(f"max diff {m:.1e}"); sys.exit(0 if ok else 1)
elif cmd == "corrupt":                   # mesh_decode with face 5 using vertex V
    t = read(sys.argv[2]); dt, shape, data = t["faces"]
    f = array("i", data); f[15] = t["vertices"][1][0]; t["faces"] = [dt, shape, f.tobytes()]
    from stmin import write
    write(sys.argv[3], t)
PY
chk() { python3 "$tmp/chk.py" "$@"; }
ex() { "$sam3d" export "$@" 2>>"$tmp/log"; }

# ---------------------------------------------------------------- 1. defaults
o=$tmp/o1
if ex --job "$job" --out "$o"; then ok "export exit 0"; else bad "export exit $?"; tail -5 "$tmp/log"; fi
for f in splat.ply mesh.glb pose.json preview.png; do
    [ -f "$o/$f" ] || bad "$f not written"
done
if cmp -s "$o/splat.ply" tests/fixtures/gs_decoder_tiny/g4/splat.ply; then
    ok "splat.ply byte-identical to the official save_ply file ($(wc -c <"$o/splat.ply") bytes)"
else bad "splat.ply differs from the official file"; fi
r=$(chk pose "$o/pose.json" "$fx/pose.safetensors") && ok "pose.json = official pose decoder ($r)" ||
    bad "pose.json: $r"
r=$(chk glb "$o/mesh.glb" "$fx/mesh.glb") && ok "mesh.glb: BIN chunk and accessors as trimesh's export of the official to_glb ($r)" ||
    bad "mesh.glb: $r"
r=$(chk png "$o/preview.png" 1024 384 8 2) && ok "preview.png $r" || bad "preview.png: $r"
[ -z "$(ls "$o" | grep -v -x -e splat.ply -e mesh.glb -e pose.json -e preview.png)" ] ||
    bad "other files in --out: $(ls "$o")"

# ---------------------------------------------------------------- 2. --placed
o=$tmp/o2
if ex --job "$job" --out "$o" --placed; then
    r=$(chk placed_splat "$o/splat.ply" "$fx/placed_splat.ply") &&
        ok "--placed splat.ply = official make_scene + save_ply ($r)" || bad "--placed splat: $r"
    r=$(chk placed_mesh "$o/mesh.glb" "$fx/placed.safetensors") &&
        ok "--placed mesh.glb positions = official transform_points ($r)" || bad "--placed mesh: $r"
    r=$(chk same_pose "$o/pose.json" "$tmp/o1/pose.json") && ok "--placed: the same pose.json" ||
        bad "--placed pose.json differs"
else bad "--placed exit $?"; tail -5 "$tmp/log"; fi

# ---------------------------------------------------------------- 3. --outputs
o=$tmp/o3
if ex --job "$job" --out "$o" --outputs pose && [ "$(ls "$o")" = pose.json ]; then
    ok "--outputs pose: only pose.json"; else bad "--outputs pose: $(ls "$o")"; fi
o=$tmp/o3b
if ex --job "$job" --out "$o" --outputs mesh_ply,mesh && [ "$(ls "$o" | tr '\n' ' ')" = "mesh.glb mesh.ply " ] &&
   head -c 400 "$o/mesh.ply" | grep -qa "element face 1540"; then
    ok "--outputs mesh_ply,mesh: mesh.glb and mesh.ply (1540 faces)"
else bad "--outputs mesh_ply,mesh: $(ls "$o")"; fi

# ---------------------------------------------------------------- 4. missing artifacts
j=$tmp/j_gs; mkdir -p "$j"; cp "$job/gs_decode.safetensors" "$j/"
o=$tmp/o4
if ex --job "$j" --out "$o" && [ "$(ls "$o")" = splat.ply ] &&
   grep -q "pose: skipped (no ss_flow.safetensors + ss_decode.safetensors" "$tmp/log"; then
    ok "only gs_decode: splat.ply written, the rest skipped with a reason"
else bad "only gs_decode: $(ls "$o")"; fi
: >"$tmp/log"
if ! ex --job "$j" --out "$tmp/o4b" --outputs pose && grep -q "E .*pose: no ss_flow.safetensors" "$tmp/log"; then
    ok "--outputs pose without the pose artifacts: exit 1, named"
else bad "--outputs pose without artifacts"; cat "$tmp/log"; fi
: >"$tmp/log"
if ! ex --job "$j" --out "$tmp/o4c" --placed && grep -q "E .*splat: no ss_flow.safetensors.*--placed" "$tmp/log"; then
    ok "--placed without the pose: exit 1, named"
else bad "--placed without the pose"; cat "$tmp/log"; fi
mkdir -p "$tmp/empty"; : >"$tmp/log"
if ! ex --job "$tmp/empty" --out "$tmp/o4d" && grep -q "E .*nothing to export" "$tmp/log"; then
    ok "an empty directory: exit 1, 'nothing to export'"
else bad "empty directory"; cat "$tmp/log"; fi
mkdir -p "$tmp/run_out/artifacts"; cp "$job"/*.safetensors "$tmp/run_out/artifacts/"
if ex --job "$tmp/run_out" --out "$tmp/run_out" --outputs pose && [ -f "$tmp/run_out/pose.json" ]; then
    ok "--job a run's --out folder: its artifacts/ used"
else bad "--job a run's --out folder"; fi

# ---------------------------------------------------------------- 5. a corrupt artifact
j=$tmp/j_bad; mkdir -p "$j"; cp "$job"/*.safetensors "$j/"
chk corrupt "$job/mesh_decode.safetensors" "$j/mesh_decode.safetensors"
o=$tmp/o5; mkdir -p "$o"; echo OLD >"$o/mesh.glb"; : >"$tmp/log"
ex --job "$j" --out "$o"; rc=$?
if [ $rc -eq 1 ] && grep -q "E .*$j/mesh_decode.safetensors: face 5 uses vertex 786 of 786" "$tmp/log" &&
   [ "$(cat "$o/mesh.glb")" = OLD ] && [ -f "$o/splat.ply" ] && [ -f "$o/pose.json" ] && [ -f "$o/preview.png" ]; then
    ok "corrupt mesh: exit 1, file and face named, old mesh.glb kept, the other files written"
else bad "corrupt mesh: exit $rc, $(ls "$o")"; cat "$tmp/log"; fi
[ -z "$(ls -a "$o" | grep '\.tmp\.')" ] || bad "temporary left: $(ls -a "$o")"

# ---------------------------------------------------------------- 6. usage
"$sam3d" export --job "$job" 2>/dev/null; rc1=$?
"$sam3d" export --job "$job" --out "$tmp/o6" --outputs splat,glb 2>"$tmp/u.log"; rc2=$?
if [ $rc1 -eq 2 ] && [ $rc2 -eq 2 ] && grep -q "unknown output 'glb'" "$tmp/u.log"; then
    ok "usage errors: exit 2 (no --out; unknown output named)"
else bad "usage: exit $rc1 / $rc2"; fi

# ---------------------------------------------------------------- 7. the end of sam3d run
ex_dir=${S3D_EXAMPLES:-examples}/human_object
if [ -x "$build/sam3d-ss-decode" ] && [ -x "$build/sam3d-ss-flow" ] && [ -x "$build/sam3d-cond" ] &&
   [ -x "$build/sam3d-depth" ] && [ -f "$ex_dir/image.png" ]; then
    w=$tmp/weights; f=tests/fixtures
    mkdir -p "$w/moge-vitl" "$tmp/bin" "$tmp/jobs"
    cp "$f/moge_tiny/model.pt" "$w/moge-vitl/model.pt"
    cp "$f/cond_ss_tiny/ss_generator.ckpt" "$f/cond_slat_tiny/slat_generator.ckpt" \
        "$f/ss_decoder_tiny/ss_decoder.ckpt" "$w/"
    for s in depth cond ss-flow ss-decode; do
        ln -s "$(realpath "$build/sam3d-$s")" "$tmp/bin/sam3d-$s"
    done
    o=$tmp/run
    S3D_JOB_ROOT=$tmp/jobs "$sam3d" run --image "$ex_dir/image.png" --mask "$ex_dir/0.png" \
        --weights "$w" --out "$o" --stages-dir "$tmp/bin" --device cpu --timeout 600 2>"$tmp/run.log"
    rc=$?
    if [ $rc -eq 3 ] && [ -f "$o/pose.json" ] && [ ! -e "$o/splat.ply" ] && [ ! -e "$o/mesh.glb" ] &&
       grep -q "splat: skipped (no gs_decode.safetensors" "$tmp/run.log" &&
       ex --job "$o" --out "$tmp/run_export" --outputs pose &&
       chk same_pose "$o/pose.json" "$tmp/run_export/pose.json"; then
        ok "sam3d run (to ss_decode): exit 3, pose.json written = sam3d export on its artifacts"
    else bad "sam3d run: exit $rc, $(ls "$o")"; tail -8 "$tmp/run.log"; fi
else
    echo "SKIP part 7: the SS stages or the example image are not there"
fi
exit $fail
