#!/usr/bin/env bash
# test_batch.sh - many jobs through warm stages, on the CPU with the tiny model (the
# committed fixtures in the official layout) and real stage processes over ZeroMQ:
#   1. `sam3d batch LIST` with three image/mask pairs (the example, its mirror image, its
#      half-size copy): exit 0/3, OUT/<k>_<image>/ with report.json, artifacts and
#      pose.json for each, summary.json with three done jobs, objects per minute, and one
#      process start and one weight load per stage; jobs 2 and 3 find every stage warm;
#      job 1's artifacts are bit-identical to a plain `sam3d run` of the same pair;
#   2. `sam3d run --mask A --mask B` (two objects of one image: the example's mask and its
#      mirror): depth's MoGe runs once (the second object's depth request takes the first
#      one's point map: "MoGe not run"), every artifact of the second object is
#      bit-identical to a plain run with mask B alone, OUT/summary.json, and OUT/scene.glb
#      when the mesh decoder is built; `--mask FOLDER` takes every PNG in it;
#   3. `sam3d export --scene` on the official-code export fixture twice: one scene.glb with
#      both objects placed (twice the vertices and faces of the placed mesh);
#   4. a bad LIST line and a missing LIST: exit 2, one error line; a pair whose image is
#      missing fails alone, the other jobs run.
# Stages: whatever is built, up to the first one that is not (as test_demo); the flows run
# few steps. Env: BUILD (default build).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
sam3d=$build/sam3d
ex=examples/human_object
. tests/lib.sh
need_exec "a batch runs the built stages" "$sam3d" "$build/sam3d-depth" "$build/sam3d-cond"
need_python3 "to read the reports"
need_example "$ex"
test_tmp
export S3D_JOB_ROOT=$tmp/jobs
mkdir -p "$S3D_JOB_ROOT"

w=$tmp/weights
tiny_weights "$w"
pipe=$tmp/few_steps.pipe        # 3 SS steps, 2 SLAT steps, at most 400 voxels
few_steps_pipe "$pipe"
opts=(--weights "$w" --device cpu --pipeline "$pipe" --timeout 600)

# the inputs: the example, its mirror image, its half-size copy; the mirrored mask
mkdir -p "$tmp/in/masks"
if ! python3 - "$ex" "$tmp/in" <<'PY'
import sys
from PIL import Image, ImageOps
ex, d = sys.argv[1:]
img, mask = Image.open(f"{ex}/image.png"), Image.open(f"{ex}/0.png")
ImageOps.mirror(img).save(f"{d}/mirror.png"); ImageOps.mirror(mask).save(f"{d}/mirror_mask.png")
h = (img.width // 2, img.height // 2)
img.resize(h, Image.BILINEAR).save(f"{d}/half.png"); mask.resize(h, Image.NEAREST).save(f"{d}/half_mask.png")
mask.save(f"{d}/masks/a.png"); ImageOps.mirror(mask).save(f"{d}/masks/b.png")
PY
then echo "SKIP: PIL cannot write the test images"; exit 77; fi
cp "$ex/image.png" "$ex/0.png" "$tmp/in/"
# sha256 of every tensor of every artifact of a run's OUT (name -> hash lines)
hashes() { python3 - "$1" <<'PY'
import hashlib, os, sys
sys.path.insert(0, "tests")
import stmin
d = os.path.join(sys.argv[1], "artifacts")
for f in sorted(os.listdir(d)):
    for k, (dt, sh, raw) in sorted(stmin.read(os.path.join(d, f)).items()):
        print(f, k, dt, sh, hashlib.sha256(raw).hexdigest()[:16])
PY
}

# ---------------------------------------------------------------- 1. sam3d batch
cat >"$tmp/in/list.txt" <<L
# image mask
image.png 0.png
mirror.png   mirror_mask.png

half.png half_mask.png
L
"$sam3d" batch "$tmp/in/list.txt" --out "$tmp/b" "${opts[@]}" 2>"$tmp/b.log"; rc=$?
if [ $rc -eq 0 ] || [ $rc -eq 3 ]; then ok "sam3d batch of three: exit $rc"; else
    bad "sam3d batch exit $rc"; tail -15 "$tmp/b.log"; fi
if python3 - "$tmp/b" >"$tmp/b.check" 2>&1 <<'PY'
import json, os, sys
d = sys.argv[1]
s = json.load(open(os.path.join(d, "summary.json")))
names = [i["name"] for i in s["items"]]
assert names == ["001_image", "002_mirror", "003_half"], names
assert s["what"] == "batch" and s["jobs"] == 3 and s["done"] == 3 and s["failed"] == 0, s
assert s["objects_per_minute"] > 0 and s["overlap"], s
ran = [st["name"] for st in s["stages"] if st["starts"]]
assert ran[:2] == ["depth", "cond_ss"], ran
for st in s["stages"]:
    if st["starts"]:
        assert st["starts"] == 1 and st["loads"] == 1, st      # one start, one load per stage
for k, n in enumerate(names):
    r = json.load(open(os.path.join(d, n, "report.json")))
    assert r["status"] in ("complete", "partial"), (n, r["status"])
    done = [x for x in r["stages"] if x["state"] == "done"]
    assert [x["name"] for x in done] == ran, (n, done)
    for x in done:
        assert x["warm"] == (k > 0), (n, x["name"], x["warm"])
    assert os.path.exists(os.path.join(d, n, "pose.json")) or "ss_decode" not in ran, n
print(len(ran), "stages, each started and loaded once; jobs 2 and 3 warm;",
      "%.1f objects per minute" % s["objects_per_minute"])
PY
then ok "summary.json and three reports: $(cat "$tmp/b.check")"
else bad "batch outputs"; cat "$tmp/b.check"; fi
"$sam3d" run --image "$tmp/in/image.png" --mask "$tmp/in/0.png" --out "$tmp/solo1" "${opts[@]}" \
    2>"$tmp/solo1.log"
if [ "$(hashes "$tmp/solo1")" = "$(hashes "$tmp/b/001_image")" ] && [ -n "$(hashes "$tmp/solo1")" ]; then
    ok "batch job 1's artifacts are bit-identical to sam3d run's"
else bad "batch job 1 differs from sam3d run"; diff <(hashes "$tmp/solo1") <(hashes "$tmp/b/001_image") | head; fi
[ -z "$(ls -A "$S3D_JOB_ROOT")" ] || bad "batch: job dirs left: $(ls "$S3D_JOB_ROOT")"

# ---------------------------------------------------------------- 2. two objects of one image
"$sam3d" run --image "$tmp/in/image.png" --mask "$tmp/in/masks/a.png" --mask "$tmp/in/masks/b.png" \
    --out "$tmp/m" "${opts[@]}" 2>"$tmp/m.log"; rc=$?
if [ $rc -eq 0 ] || [ $rc -eq 3 ]; then ok "sam3d run --mask a --mask b: exit $rc"; else
    bad "two masks: exit $rc"; tail -15 "$tmp/m.log"; fi
n_moge=$(grep -c "depth: .* -> .* patches, budget" "$tmp/m.log")
n_reuse=$(grep -c "depth: MoGe not run" "$tmp/m.log")
[ "$n_moge" = 1 ] && [ "$n_reuse" = 1 ] && ok "depth: MoGe ran once for two objects" ||
    bad "MoGe runs: $n_moge, reuses: $n_reuse"
"$sam3d" run --image "$tmp/in/image.png" --mask "$tmp/in/masks/b.png" --out "$tmp/solo_b" \
    "${opts[@]}" 2>"$tmp/solo_b.log"
if [ "$(hashes "$tmp/solo_b")" = "$(hashes "$tmp/m/b")" ] && [ -n "$(hashes "$tmp/m/b")" ]; then
    ok "object b's artifacts (its depth from a's point map) = a run with mask b alone"
else bad "object b differs from its solo run"; diff <(hashes "$tmp/solo_b") <(hashes "$tmp/m/b") | head; fi
python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert s["what"] == "objects" and [i["name"] for i in s["items"]] == ["a", "b"] and s["done"] == 2, s
' "$tmp/m/summary.json" && ok "summary.json: objects a and b" || bad "objects summary.json"
if [ -x "$build/sam3d-mesh-decode" ] && grep -q '"name": "mesh_decode".*"state": "done"' "$tmp/m/a/report.json"; then
    [ -s "$tmp/m/scene.glb" ] && ok "scene.glb written" || bad "no scene.glb though the meshes exist"
else
    grep -q "scene.glb: not written (no object has a mesh" "$tmp/m.log" &&
        ok "scene.glb: not written, said so (the mesh decoder is not built yet)" ||
        bad "scene.glb without meshes: not said"
fi
awk '/^stage cond_ss/{exit} {print}' "$pipe" >"$tmp/depth_only.pipe"
"$sam3d" run --image "$tmp/in/image.png" --mask "$tmp/in/masks" --out "$tmp/mf" "${opts[@]}" \
    --pipeline "$tmp/depth_only.pipe" 2>"$tmp/mf.log"; rc=$?
[ $rc -eq 0 ] && [ -f "$tmp/mf/a/artifacts/depth.safetensors" ] && [ -f "$tmp/mf/b/artifacts/depth.safetensors" ] &&
    ok "--mask FOLDER: one object per PNG" || { bad "--mask folder: rc=$rc"; tail -5 "$tmp/mf.log"; }
[ -z "$(ls -A "$S3D_JOB_ROOT")" ] || bad "objects: job dirs left: $(ls "$S3D_JOB_ROOT")"

# ---------------------------------------------------------------- 3. scene.glb from the fixture
fx=tests/fixtures/outputs_tiny/job
if "$sam3d" export --scene "$fx" --scene "$fx" --out "$tmp/scene" 2>"$tmp/scene.log" &&
    "$sam3d" export --job "$fx" --out "$tmp/placed" --placed --outputs mesh 2>/dev/null &&
    python3 - "$tmp/scene/scene.glb" "$tmp/placed/mesh.glb" <<'PY'
import json, struct, sys
def glb(p):
    b = open(p, "rb").read()
    n = struct.unpack_from("<I", b, 12)[0]
    j = json.loads(b[20:20 + n])
    return {a["type"] + str(i): a for i, a in enumerate(j["accessors"])}, b
s, sb = glb(sys.argv[1]); p, pb = glb(sys.argv[2])
sc = [a["count"] for a in s.values()]; pc = [a["count"] for a in p.values()]
assert sc == [2 * c for c in pc], (sc, pc)
pos = [a for a in s.values() if a["type"] == "VEC3"][0]; pp = [a for a in p.values() if a["type"] == "VEC3"][0]
assert pos["min"] == pp["min"] and pos["max"] == pp["max"], (pos, pp)
PY
then ok "export --scene: two placed objects in one scene.glb (twice the counts, the placed bounds)"
else bad "export --scene"; cat "$tmp/scene.log"; fi

# ---------------------------------------------------------------- 4. bad lists
printf 'image.png\n' >"$tmp/in/bad.txt"
"$sam3d" batch "$tmp/in/bad.txt" --out "$tmp/bad" "${opts[@]}" 2>"$tmp/bad.log"; rc=$?
[ $rc -eq 2 ] && grep -q "bad.txt' line 1: want \"IMAGE MASK\"" "$tmp/bad.log" &&
    ok "a bad LIST line: exit 2, the line named" || bad "bad list: rc=$rc $(cat "$tmp/bad.log")"
"$sam3d" batch "$tmp/nolist.txt" --out "$tmp/bad" "${opts[@]}" 2>"$tmp/bad2.log"; rc=$?
[ $rc -eq 2 ] && grep -q "nolist.txt': cannot open it" "$tmp/bad2.log" &&
    ok "a missing LIST: exit 2, named" || bad "missing list: rc=$rc $(cat "$tmp/bad2.log")"
printf 'nothere.png 0.png\nimage.png 0.png\n' >"$tmp/in/half_bad.txt"
"$sam3d" batch "$tmp/in/half_bad.txt" --out "$tmp/hb" "${opts[@]}" --pipeline "$tmp/depth_only.pipe" \
    2>"$tmp/hb.log"; rc=$?
[ $rc -eq 1 ] && grep -q "nothere.png" "$tmp/hb.log" && [ -f "$tmp/hb/002_image/artifacts/depth.safetensors" ] &&
    ok "a job whose image is missing fails alone (exit 1, named); the next one runs" ||
    { bad "half-bad list: rc=$rc"; tail -5 "$tmp/hb.log"; }
[ -z "$(ls -A "$S3D_JOB_ROOT")" ] || bad "bad lists: job dirs left: $(ls "$S3D_JOB_ROOT")"
exit $fail
