#!/usr/bin/env bash
# test_run_cli.sh - the command line of `sam3d run` / `sam3d stage` (orchestrator/cli.h, issue 14),
# with the tiny random-weight model (the demo's, from the committed fixtures) on the CPU path:
#   1. --opt=VALUE and short forms (-i -m -w -o -s -d -q) run; --version / -V; --help lists the
#      settings; usage errors (--precision fp8, --seed abc, --steps 0, --cfg -1, --gaussians 8,
#      --device gpu7, an unknown option, a missing value) exit 2 with one "error:" line and
#      the usage, before anything starts;
#   2. the settings reach the stages that use them, the pipeline file keeping the defaults:
#      --seed 42 / --cfg 7,1 (the defaults, stated) give the default run's SS flow artifact bit
#      for bit; --seed 7, --steps 3 and --cfg 2,1 each change it;
#   3. --param STAGE.KEY=VALUE: a misspelt key fails the run (exit 1) with the stage's list of
#      known params; an unknown stage or a wrong number of --steps values fails before any
#      stage runs, naming the stages;
#   4. --gaussians 4 switches the gs_decode weights to slat_decoder_gs_4.ckpt (a weights dir
#      without it: exit 1 naming that file; with it: the run goes on);
#   5. devices (no GPU here): --device cuda:0 is one error line naming the device, why and the
#      fix, exit 1, no restart and no abort; without --device the CPU fall-back is logged at
#      info level with the reason;
#   6. report.json's provenance: version, argv as given, start time, precision, the input and
#      weight files' sizes and mtimes, every stage's params (pipeline lines + overrides) and
#      the device it used; every artifact's safetensors __metadata__: the stage, the
#      version, its weights, device and precision, every request param with the value it ran
#      with (ss_flow's seed 7 and steps 2 from the flags, cfg from the pipeline, the rest its
#      defaults).
# Env: BUILD (default build).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
sam3d=$build/sam3d
ex=examples/human_object
. tests/lib.sh
need_exec "needs sam3d and the stages up to the SS flow" "$sam3d" "$build/sam3d-depth" \
    "$build/sam3d-cond" "$build/sam3d-ss-flow"
need_example "$ex"
test_tmp

# the tiny model in the official layout (as tools/demo.sh assembles it), the stages up to ss_flow
tiny_chain "$tmp" sam3d-depth sam3d-cond sam3d-ss-flow
w=$tmp/weights
fx=tests/fixtures
export S3D_JOB_ROOT=$tmp/jobs
run() {   # OUT [args...]: sam3d run on the example into $tmp/OUT (log $tmp/OUT.log); rc
    local out=$1; shift
    "$sam3d" run --image="$ex/image.png" -m "$ex/0.png" --weights="$w" -o "$tmp/$out" \
        --stages-dir "$tmp/bin" --timeout=120 "$@" >"$tmp/$out.log" 2>&1
}
sha() { "$sam3d" inspect --sha256 "$1" | awk -F'\t' -v n="$2" '$1 == n { print $4 }'; }
latent() { sha "$tmp/$1/artifacts/ss_flow.safetensors" shape_latent; }

# ---------------------------------------------------------------- 1. options
if "$sam3d" run --version | grep -q "^sam3d run [0-9]*\.[0-9]*\.[0-9]* (git " &&
   "$sam3d" run -V | grep -q "^sam3d run "; then ok "sam3d run --version / -V"; else
    bad "sam3d run --version"; fi
"$sam3d" run --help >"$tmp/help" 2>&1
miss=
for o in "--seed N" "--steps N" "--cfg X" "--gaussians 32|4" "--outputs LIST" \
         "--param STAGE.KEY=VALUE" "--image IMG" "-V, --version" "--stage-weights NAME=FILE"; do
    grep -q -- "$o" "$tmp/help" || miss="$miss '$o'"
done
if [ -z "$miss" ]; then ok "sam3d run --help lists the settings"; else
    bad "sam3d run --help lacks$miss"; fi
usage() {   # LABEL ARGS...: exit 2, one error line, the usage, no job started
    local label=$1; shift
    "$sam3d" run "$@" >"$tmp/u" 2>&1; local rc=$?
    if [ $rc -eq 2 ] && [ "$(grep -c '^error: ' "$tmp/u")" -eq 1 ] &&
       grep -q "^usage: sam3d run" "$tmp/u" && ! grep -q "started" "$tmp/u"; then
        ok "$label: usage error ($(grep '^error: ' "$tmp/u" | cut -c1-70))"
    else
        bad "$label: exit $rc"; cat "$tmp/u"
    fi
}
base=(-i "$ex/image.png" -m "$ex/0.png" -w "$w" -o "$tmp/u_out")
usage "--precision fp8" "${base[@]}" --precision fp8
usage "--seed abc" "${base[@]}" --seed abc
usage "--steps 0" "${base[@]}" --steps=0
usage "--cfg -1" "${base[@]}" --cfg -1
usage "--gaussians 8" "${base[@]}" --gaussians 8
usage "--device gpu7" "${base[@]}" --device gpu7
usage "--bogus" "${base[@]}" --bogus
usage "--out without a value" -i "$ex/image.png" -m "$ex/0.png" -w "$w" --out
"$sam3d" stage ss_flow --job "$tmp/nojob" --seed 1 >"$tmp/u" 2>&1; rc=$?
if [ $rc -eq 2 ] && grep -q "^error: unknown option or missing value: --seed" "$tmp/u"; then
    ok "sam3d stage --seed: usage error (its params go through --param)"
else bad "sam3d stage --seed: exit $rc"; cat "$tmp/u"; fi

# ---------------------------------------------------------------- 2. settings reach the stages
# (2 flow steps keep it short: the pipeline's 25 take ~8 s on the CPU path)
run def -d cpu --steps 2;                   rc_def=$?
run same -d cpu -s 42 --steps=2 --cfg=7,1;  rc_same=$?
run seed -d cpu --steps 2 --seed=7
run steps -d cpu --steps 3
run cfg -d cpu --steps 2 --cfg 2,1
if [ $rc_def -eq 3 ] && [ $rc_same -eq 3 ] && [ -n "$(latent def)" ]; then
    ok "runs with the flags: exit 3 (the stages after ss_decode not offered)"
else
    bad "default run exit $rc_def, stated-defaults run exit $rc_same"; tail -5 "$tmp/def.log"
fi
if [ -n "$(latent def)" ] && [ "$(latent def)" = "$(latent same)" ]; then
    ok "--seed 42 --cfg 7,1 (the pipeline's values): the same shape latent"
else bad "the stated defaults changed the shape latent"; fi
for k in seed steps cfg; do
    if [ -n "$(latent $k)" ] && [ "$(latent $k)" != "$(latent def)" ]; then
        ok "--$k: a different shape latent (the value reached ss_flow)"
    else bad "--$k did not change the shape latent"; tail -3 "$tmp/$k.log"; fi
done

# ---------------------------------------------------------------- 3. --param
run typo -d cpu --param ss_flow.sed=7; rc=$?
if [ $rc -eq 1 ] && grep -q "unknown param 'sed' (known: steps, cfg, seed" "$tmp/typo.log"; then
    ok "--param ss_flow.sed=7: exit 1, the known params named"
else bad "--param ss_flow.sed=7: exit $rc"; tail -5 "$tmp/typo.log"; fi
rm -rf "$tmp"/jobs/s3d-*     # the failed run kept its job for `sam3d run --job` (depth was done)
run nostage -d cpu --param nosuch.steps=3; rc=$?
if [ $rc -eq 1 ] && grep -q "param nosuch.steps=3: no such stage" "$tmp/nostage.log" &&
   ! grep -q "depth started" "$tmp/nostage.log"; then
    ok "--param nosuch.steps=3: exit 1 before any stage runs"
else bad "--param nosuch.steps=3: exit $rc"; tail -5 "$tmp/nostage.log"; fi
run three -d cpu --steps 1,2,3; rc=$?
if [ $rc -eq 1 ] && grep -q "3 values for 2 stages (ss_flow, slat_flow)" "$tmp/three.log" &&
   ! grep -q "depth started" "$tmp/three.log"; then
    ok "--steps 1,2,3: exit 1 naming the two flows"
else bad "--steps 1,2,3: exit $rc"; tail -5 "$tmp/three.log"; fi
run pstep -d cpu --param ss_flow.steps=3
if [ "$(latent pstep)" = "$(latent steps)" ]; then
    ok "--param ss_flow.steps=3 = --steps 3 for the SS flow"
else bad "--param ss_flow.steps=3 differs from --steps 3"; fi

# ---------------------------------------------------------------- 4. --gaussians
if [ -x "$build/sam3d-gs-decode" ]; then
    ln -s "$(realpath "$build/sam3d-gs-decode")" "$tmp/bin/sam3d-gs-decode"
    run g4 -d cpu --gaussians 4; rc=$?
    if [ $rc -eq 1 ] && grep -q "slat_decoder_gs_4.ckpt': No such file" "$tmp/g4.log"; then
        ok "--gaussians 4 without slat_decoder_gs_4.ckpt: exit 1 naming it"
    else bad "--gaussians 4 (file absent): exit $rc"; tail -5 "$tmp/g4.log"; fi
    cp "$fx/gs_decoder_tiny/g4/slat_decoder_gs_4.ckpt" "$w/"
    rm "$w/slat_decoder_gs.ckpt"
    run g4b -d cpu --steps 2 --gaussians=4; rc=$?
    if [ $rc -eq 3 ]; then ok "--gaussians 4 with slat_decoder_gs_4.ckpt (and no 32): runs"; else
        bad "--gaussians 4: exit $rc"; tail -5 "$tmp/g4b.log"; fi
    cp "$fx/gs_decoder_tiny/g32/slat_decoder_gs.ckpt" "$w/"
    rm "$tmp/bin/sam3d-gs-decode"
fi

# ---------------------------------------------------------------- 5. devices
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    echo "device checks skipped: a CUDA device is usable here"
else
    t0=$SECONDS
    run dev -d cuda:0; rc=$?
    if [ $rc -eq 1 ] && grep -q "stage depth failed: device cuda:0 cannot be used: .*HINT: .*--device cpu" "$tmp/dev.log" &&
       ! grep -qi "restart\|abort\|fatal" "$tmp/dev.log" && [ $((SECONDS - t0)) -lt 60 ]; then
        ok "--device cuda:0 without a GPU: exit 1, $(grep -m1 'stage depth failed' "$tmp/dev.log" | sed 's/.*failed: //' | cut -c1-80)..."
    else bad "--device cuda:0 without a GPU: exit $rc"; tail -8 "$tmp/dev.log"; fi
    run auto --steps 3
    if grep -q "\[depth [0-9]*\] I .*no usable CUDA device (.*): running on the CPU reference path" "$tmp/auto.log" &&
       [ "$(latent auto)" = "$(latent steps)" ]; then
        ok "no --device: the CPU fall-back at info level, with the reason"
    else bad "no info line for the CPU fall-back"; grep depth "$tmp/auto.log" | head -3; fi
fi
# ---------------------------------------------------------------- 6. provenance in report.json
if command -v python3 >/dev/null; then
    got=$(python3 - "$tmp/seed/report.json" "$ex/image.png" "$w/ss_generator.ckpt" "$("$sam3d" --version)" <<'PY' 2>&1
import json, os, re, sys
r = json.load(open(sys.argv[1]))
img, ckpt, version = sys.argv[2], sys.argv[3], sys.argv[4]
st = {s["name"]: s for s in r["stages"]}
f = st["ss_flow"]
checks = [
    ("version", "sam3d " + r["version"] == version),
    ("argv as given", "--seed=7" in r["argv"] and r["argv"][1] == "run"),
    ("started", re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["started"]) is not None),
    ("precision", r["precision"] in ("fp16", "fp32")),
    ("input image", r["inputs"]["image"]["bytes"] == os.path.getsize(img)),
    ("input mask", r["inputs"]["mask"]["bytes"] > 0 and "mtime" in r["inputs"]["mask"]),
    ("ss_flow params", f["params"] == {"steps": "2", "cfg": "7.0", "seed": "7"}),
    ("ss_flow weights", f["weights"]["bytes"] == os.path.getsize(ckpt)),
    ("device used", all(s.get("device_used") == "cpu" for s in st.values() if s["state"] == "done")),
]
print(" ".join(n for n, good in checks if not good) or "all")
PY
)
    if [ "$got" = all ]; then
        ok "report.json: version, argv, start, precision, input and weight sizes + mtimes, every stage's params and device"
    else bad "report.json provenance: failed: $got"; fi
    got=$(python3 - "$tmp/seed/artifacts" "$w" "$("$sam3d" --version)" <<'PY' 2>&1
import json, os, struct, sys
arts, w, version = sys.argv[1], sys.argv[2], sys.argv[3]
def meta(name):
    with open(os.path.join(arts, name + ".safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))["__metadata__"]
bad = []
for st in ("depth", "cond_ss", "ss_flow"):
    m = meta(st)
    p = json.loads(m["params"])
    if (m["stage"] != {"cond_ss": "cond"}.get(st, st) or "sam3d " + m["version"] != version or m["device"] != "cpu" or
            m["precision"] != "fp32" or not m["weights"].startswith(w)):
        bad.append(st + " " + repr({k: v for k, v in m.items() if k != "params"}))
    if st == "ss_flow" and not (p["seed"] == 7 and p["steps"] == 2 and p["cfg"] == 7 and
                                p["rescale_t"] == 3 and p["cache_kv"] is False and p["repeat"] == 1):
        bad.append("ss_flow params " + m["params"])
print("; ".join(bad) or "all")
PY
)
    if [ "$got" = all ]; then
        ok "artifacts' __metadata__: stage, version, weights, device, precision, every param (seed 7, steps 2)"
    else bad "artifact __metadata__: $got"; fi
fi
[ -z "$(ls -A "$tmp/jobs")" ] && ok "no job directory left" || bad "job directories left: $(ls "$tmp/jobs")"
exit $fail
