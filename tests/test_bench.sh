#!/usr/bin/env bash
# test_bench.sh - the whole-pipeline benchmark's pieces on the CPU with the tiny model:
#   1. tools/ref/s3d_rng.py (our noise in Python, which the official benchmark run starts
#      from) equals the flow stage's own draw: sam3d-ss-flow given that noise writes the
#      bytes of its seeded run;
#   2. the shortcut mode: sam3d-ss-flow shortcut=1 runs 4 evaluations for 4 steps (d = 1/4,
#      no CFG whatever cfg says) and differs from the default sampler;
#   3. `sam3d bench --runs 2`: bench.json, run1/ and run2/ with report.json, artifacts and
#      the exported files (pose.json: the stages that exist make it);
#      run 1 loads every stage, run 2 finds them loaded (warm, no load); both runs'
#      artifacts are bit-identical (same seed); the table names every stage, and run 2's
#      total is its stages, the time between their turns and the export;
#   4. `sam3d bench --preset fast` and `sam3d run --preset fast`: the SS flow runs the
#      shortcut mode with 4 steps (its log line);
#   5. tools/ref/bench_report.py on the bench folders (when torch is importable): the table
#      with the FLOP model, --preset fast's speed and output difference (and for an fp32
#      bench the fp32 floors and targets);
#   6. bad arguments: exit 2 and one error line.
# The flows run with few steps (a copy of the pipeline file) to keep the CPU run short.
# Env: BUILD (default build), S3D_EXAMPLE (default examples/human_object).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
sam3d=$build/sam3d
ex=${S3D_EXAMPLE:-examples/human_object}
. tests/lib.sh
need_exec "the benchmark runs the built stages" "$sam3d" "$build/sam3d-depth" "$build/sam3d-cond" \
    "$build/sam3d-ss-flow" "$build/sam3d-ss-decode"
need_python3 "to write the noise and read the reports"
need_example "$ex"
test_tmp
export S3D_JOB_ROOT=$tmp/jobs
mkdir -p "$S3D_JOB_ROOT"
ck=tests/fixtures/cond_ss_tiny/ss_generator.ckpt
fx=tests/fixtures/ss_flow_tiny

# ---------------------------------------------------------------- 1. the noise port
# in.py SAMPLER OUT [noise SEED]: cond_ss (the fixture's condition) + pointmap scale/shift,
# and with "noise SEED" the five latents from tools/ref/s3d_rng.py, in the stage's order
cat >"$tmp/in.py" <<'PY'
import os, struct, sys
sys.path[:0] = ["tests", "tools/ref"]
import stmin, s3d_rng
src = stmin.read(sys.argv[1])
out = {"cond_ss": src["cond"],
       "pointmap_scale": ["F32", [1, 3], struct.pack("<3f", 1.5, 0.25, -2.0)],
       "pointmap_shift": ["F32", [1, 3], struct.pack("<3f", 0.125, -3.0, 7.5)]}
if len(sys.argv) > 3:
    lat = ["6drotation_normalized", "scale", "shape", "translation", "translation_scale"]
    shapes = [src["noise." + k][1] for k in lat]
    sizes = [s[0] * s[1] * s[2] for s in shapes]
    raw = s3d_rng.normal_bytes(int(sys.argv[4]), sum(sizes))
    off = 0
    for k, sh, n in zip(lat, shapes, sizes):
        out["noise." + k] = ["F32", sh, raw[4 * off:4 * (off + n)]]
        off += n
stmin.write(sys.argv[2], out)
PY
mkdir -p "$tmp/seeded" "$tmp/given"
python3 "$tmp/in.py" "$fx/sampler.safetensors" "$tmp/seeded/in.safetensors" &&
    python3 "$tmp/in.py" "$fx/sampler.safetensors" "$tmp/given/in.safetensors" noise 42 ||
    { echo "FAIL could not write the inputs"; exit 1; }
once() {   # once NAME IN_DIR PARAM...: sam3d-ss-flow --once on the CPU into $tmp/NAME.out
    local name=$1 in=$2; shift 2
    mkdir -p "$tmp/$name.out"
    "$build/sam3d-ss-flow" --weights "$ck" --device cpu --once "$in" "$tmp/$name.out" "$@" \
        2>"$tmp/$name.log"
}
if once seeded "$tmp/seeded" --param seed=42 --param steps=2 &&
   once given "$tmp/given" --param seed=42 --param steps=2 &&
   grep -q "noise seeded" "$tmp/seeded.log" && grep -q "noise given" "$tmp/given.log" &&
   same_tensors "$tmp/seeded.out/ss_flow.safetensors" "$tmp/given.out/ss_flow.safetensors"; then
    ok "s3d_rng.py noise = the stage's seeded noise (outputs bit-identical)"
else
    bad "s3d_rng.py noise differs from the stage's draw"; tail -2 "$tmp/given.log"
fi

# ---------------------------------------------------------------- 2. the shortcut mode
if once short "$tmp/given" --param shortcut=1 --param steps=4 --param cfg=7 &&
   grep -q "4 steps (shortcut, d = 1/steps), 4 evaluations" "$tmp/short.log" &&
   once plain "$tmp/given" --param steps=4 &&
   grep -q "4 steps, 8 evaluations" "$tmp/plain.log" &&
   ! same_tensors "$tmp/short.out/ss_flow.safetensors" "$tmp/plain.out/ss_flow.safetensors"; then
    ok "shortcut=1: 4 evaluations for 4 steps (no CFG), another result than the default"
else
    bad "shortcut mode"; grep "evaluations" "$tmp/short.log" "$tmp/plain.log"
fi

# ---------------------------------------------------------------- 3. sam3d bench
w=$tmp/weights
mkdir -p "$w/moge-vitl"
cp tests/fixtures/moge_tiny/model.pt "$w/moge-vitl/model.pt"
cp "$ck" tests/fixtures/cond_slat_tiny/slat_generator.ckpt \
    tests/fixtures/ss_decoder_tiny/ss_decoder.ckpt "$w/"
for f in tests/fixtures/gs_decoder_tiny/g32/slat_decoder_gs.ckpt \
         tests/fixtures/mesh_decoder_tiny/slat_decoder_mesh.ckpt; do
    [ -f "$f" ] && cp "$f" "$w/"
done
pipe=$tmp/fast_steps.pipe        # 3 SS steps, 2 SLAT steps, at most 400 voxels
awk '/^stage /{st=$2} st=="ss_flow" && $1=="param" && $2=="steps"{$0="    param   steps 3"}
     st=="slat_flow" && $1=="param" && $2=="steps"{$0="    param   steps 2"}
     {print} /^stage ss_decode/{print "    param   max_coords 400"}' \
    pipelines/sam3d_objects.pipe >"$pipe"
cp pipelines/sam3d_objects.needs "$tmp/fast_steps.needs" 2>/dev/null
bench() {  # bench OUT [args...]
    local out=$1; shift
    "$sam3d" bench --image "$ex/image.png" --mask "$ex/0.png" --weights "$w" --out "$out" \
        --device cpu --pipeline "$pipe" --timeout 600 "$@" >"$out.txt" 2>"$out.log"
}
bench "$tmp/b" --runs 2
rc=$?
if [ $rc -eq 0 ] || [ $rc -eq 3 ]; then ok "sam3d bench --runs 2: exit $rc"; else
    bad "sam3d bench exit $rc"; tail -15 "$tmp/b.log"; fi
if python3 - "$tmp/b" >"$tmp/b.check" 2>&1 <<'PY'
import json, os, sys
d = sys.argv[1]
b = json.load(open(os.path.join(d, "bench.json")))
assert [r["dir"] for r in b["runs"]] == ["run1", "run2"], b["runs"]
assert [r["kind"] for r in b["runs"]] == ["cold", "warm"] and b["start_ms"] > 0
assert b["preset"] == "default" and len(b["image_hw"]) == 2 and b["image_hw"][0] > 0
assert all(r["export_ms"] > 0 for r in b["runs"]), b["runs"]
for r in b["runs"]:         # the export step ran: the pose needs ss_flow + ss_decode + depth
    assert os.path.exists(os.path.join(d, r["dir"], "pose.json")), r["dir"]
reps = [json.load(open(os.path.join(d, r["dir"], "report.json"))) for r in b["runs"]]
done = [s["name"] for s in reps[0]["stages"] if s["state"] == "done"]
assert done[:5] == ["depth", "cond_ss", "cond_slat", "ss_flow", "ss_decode"], done
for s in reps[0]["stages"]:
    if s["state"] == "done":
        assert s["load_ms"] > 0 and not s["warm"] and s["loads"] == 1, s
for s in reps[1]["stages"]:
    if s["state"] == "done":
        assert s["warm"] and s["load_ms"] == 0 and s["loads"] == 1 and s["starts"] == 1, s
        assert s["name"] in done
for n in done:
    f = [os.path.join(d, r["dir"], "artifacts", n + ".safetensors") for r in b["runs"]]
    out = next(s["outputs"][0]["file"] for s in reps[0]["stages"] if s["name"] == n)
    f = [os.path.join(d, r["dir"], "artifacts", out) for r in b["runs"]]
    assert open(f[0], "rb").read() == open(f[1], "rb").read(), f"{n}: runs differ"
print("stages", done)
PY
then ok "bench.json and two reports: run 1 loads, run 2 warm, the same artifacts ($(cat "$tmp/b.check"))"
else
    bad "bench outputs"; cat "$tmp/b.check"
fi
if grep -q "^sam3d bench: 2 runs" "$tmp/b.txt" && grep -q "^ss_decode " "$tmp/b.txt" &&
   grep -q "^export " "$tmp/b.txt" && grep -q "^total " "$tmp/b.txt" &&
   python3 - "$tmp/b.txt" <<'PY'
import sys
# run 2's column: total = the stages' walls + between + export (each printed to 0.1 ms)
rows = {}
for line in open(sys.argv[1]):
    parts = [p.split() for p in line.split("|")]
    if len(parts) == 3 and parts[0] and parts[2] and parts[0][0] != "stage":
        rows[parts[0][0]] = float(parts[2][0])
stages = sum(v for k, v in rows.items() if k not in ("between", "export", "total"))
assert rows["between"] >= 0, rows
assert abs(stages + rows["between"] + rows["export"] - rows["total"]) < 0.5, rows
PY
then
    ok "the table: every stage, the time between turns, the export and the total"
else
    bad "the table"; cat "$tmp/b.txt"
fi

# ---------------------------------------------------------------- 4. --preset fast
bench "$tmp/f" --runs 1 --preset fast
rc=$?
if { [ $rc -eq 0 ] || [ $rc -eq 3 ]; } &&
   grep -q "ss_flow: 4 steps (shortcut, d = 1/steps), 4 evaluations" "$tmp/f.log" &&
   grep -q '"preset": "fast"' "$tmp/f/bench.json"; then
    ok "sam3d bench --preset fast: the SS flow in the shortcut mode, 4 steps"
else
    bad "bench --preset fast (exit $rc)"; grep "ss_flow:" "$tmp/f.log" | tail -2
fi
"$sam3d" run --image "$ex/image.png" --mask "$ex/0.png" --weights "$w" --out "$tmp/r" \
    --device cpu --pipeline "$pipe" --preset fast 2>"$tmp/r.log"
rc=$?
if { [ $rc -eq 0 ] || [ $rc -eq 3 ]; } &&
   { grep -q "shortcut, d = 1/steps" "$tmp/r.log" ||
     grep -q "shortcut, d = 1/steps" "$tmp/r/sam3d.log" 2>/dev/null; }; then
    ok "sam3d run --preset fast: the shortcut mode"
else
    bad "sam3d run --preset fast (exit $rc)"; tail -3 "$tmp/r.log"
fi

# ---------------------------------------------------------------- 5. bench_report.py
if python3 -c "import torch, safetensors, numpy" 2>/dev/null; then
    # the official half's script imports what it uses (the GPU run is its only other check)
    if (cd tools/ref && python3 -c "import bench_official, flash_shim, cost_model; print(len(bench_official.FILES))") \
            >"$tmp/imp.txt" 2>&1; then
        ok "bench_official.py, flash_shim.py, cost_model.py import"
    else
        bad "tools/ref imports"; tail -5 "$tmp/imp.txt"
    fi
    if python3 tools/ref/bench_report.py --ours "$tmp/b" --fast "$tmp/f" --out "$tmp/rep" \
           >"$tmp/rep.txt" 2>&1 &&
       grep -q "^| ss_flow | 269.297 " "$tmp/rep.txt" && grep -q "^| \*\*total\*\* " "$tmp/rep.txt" &&
       grep -q "^--preset fast" "$tmp/rep.txt" &&
       grep -q "Output difference, ours --preset fast vs ours default" "$tmp/rep.txt" &&
       [ -s "$tmp/rep.json" ]; then
        ok "bench_report.py: FLOP table, fast preset speed and output difference"
    else
        bad "bench_report.py"; tail -15 "$tmp/rep.txt"
    fi
    # BENCH_PRECISION=fp32 (tools/gpu/bench_full.sh): both halves take --precision fp32; the
    # report's floors and targets are the fp32 ones
    bench "$tmp/b32" --runs 1 --precision fp32
    if (cd tools/ref && python3 bench_official.py --help) 2>/dev/null | grep -q -- "--precision {fp16,fp32}" &&
       python3 tools/ref/bench_report.py --ours "$tmp/b32" --peak-tflops 67 --out "$tmp/rep32" \
           >"$tmp/rep32.txt" 2>&1 &&
       grep -q "floors at 67 TFLOP/s dense fp32" "$tmp/rep32.txt" &&
       grep -q "fp32 warm not slower than official fp32: n/a" "$tmp/rep32.txt"; then
        ok "fp32: bench_official.py --precision, the report's fp32 floors and targets"
    else
        bad "fp32 bench report"; tail -5 "$tmp/rep32.txt" "$tmp/b32.log"
    fi
else
    echo "skip bench_report.py: torch/safetensors/numpy not importable"
fi

# ---------------------------------------------------------------- 6. bad arguments
usage() {  # usage LABEL PATTERN ARGS...: exit 2 and PATTERN on stderr
    local label=$1 pat=$2; shift 2
    "$sam3d" bench "$@" >/dev/null 2>"$tmp/u.log"
    local rc=$?
    if [ $rc -eq 2 ] && grep -q "$pat" "$tmp/u.log"; then ok "$label: exit 2"; else
        bad "$label: exit $rc"; head -3 "$tmp/u.log"; fi
}
usage "--runs 0" "error: --runs wants 1..16" --runs 0 --image a --mask b --weights c --out d
usage "--preset bogus" "error: --preset wants one of default, fast" --preset bogus
usage "no --image" "error: --image, --mask, --weights and --out are required" --out d
usage "unknown option" "error: unknown option: --frobnicate" --frobnicate 1
exit $fail
