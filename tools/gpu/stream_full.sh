#!/usr/bin/env bash
# stream_full.sh OUT - the flow transformers' blocks streamed from pinned host memory
# (stream_blocks=1, common/stage_blocks.h; issue 16's `--vram-budget 2G`) on the GPU machine,
# in one call (~6-8 min on one H100/H200 with the weights already in /tmp/s3d-bench):
#   1. test_ss_flow and test_slat_flow with S3D_REQUIRE_GPU=1: their CUDA parts include the
#      5-block copies of the tiny fixtures run resident and streamed (2 and 3 slots, K/V
#      cached) in fp16, the final latents the same bytes;
#   2. full-size random weights in the official layout (tools/ref/bench_official.py
#      --weights-only into /tmp/s3d-bench/weights, as budget_full.sh / bench_full.sh make
#      them; kept from an earlier call on the same warm machine);
#   3. `sam3d run --keep-job` on the example (default budget: every stage resident) for the
#      inputs and the default time; then `sam3d stage ss_flow` and `sam3d stage slat_flow` on
#      its job, each resident and with stream_blocks=1 (repeat=STREAM_REPEAT, default 3):
#      the artifacts' tensors compared (same bytes expected: the same kernels on the same
#      data), the sampler's median ms of each from the stage log and their ratio, and the
#      driver-measured device bytes of each process (report.json device_bytes, NVML);
#   4. `sam3d run --vram-budget 2G` (and STREAM_BUDGETS, default "2G"): exit status, which
#      stages ran streamed (report.json params), the run's driver peak against the budget,
#      the end-to-end time against the default run's.
# OUT gets gpu.txt, the test logs, stream.md (the tables), stream.json, stream_full.tar.gz
# (reports and logs). Exit 1 when a test failed, the outputs differ or a run failed.
# STREAM_TINY=1: the same steps on a development machine's CPU with the tiny model (no budget
# applies without a GPU), to check the script end to end (~2 min on 2 cores).
#
# Needs, carried with the call (tools/gpu/README.md): $S3D_BIN (default build) with sam3d,
# every sam3d-* stage and tests/test_ss_flow, tests/test_slat_flow; .whl/ and .gl/ (the
# official code for the weights: tools/ref/README.md "GPU run"), .deb/.
set -u
OUT=${1:?usage: stream_full.sh OUT}
BIN=${S3D_BIN:-build}
WORK=${STREAM_WORK:-/tmp/s3d-bench}
REP=${STREAM_REPEAT:-3}
BUDGETS=${STREAM_BUDGETS:-2G}
mkdir -p "$OUT" "$WORK/stream"
OUT=$(cd "$OUT" && pwd)
t_start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t_start )) s] $*"; }
now() { date +%s%N; }
secs() { echo "$(( ($(now) - $1) / 1000000 ))" | sed 's/\(...\)$/.\1/; s/^\./0./'; }
. tests/lib.sh                       # same_tensors
# shellcheck source=tools/gpu/full_lib.sh
. tools/gpu/full_lib.sh
src=examples/human_object
bad=0

full_model "$OUT" "$WORK" stream STREAM_TINY "${STREAM_TINY:-0}" || exit 1
if [ "${STREAM_TINY:-0}" != 1 ]; then
    full_tests "$OUT" "$BIN" 300 test_ss_flow test_slat_flow || bad=1
    grep -h "5 blocks" "$OUT/test_ss_flow.log" "$OUT/test_slat_flow.log"
fi
cat "$OUT/gpu.txt"
stamp "weights in $W"
R=$WORK/stream/runs
rm -rf "$R" && mkdir -p "$R"

run() {   # NAME [args]: one sam3d run; exit status and wall seconds in R/NAME.time
    local name=$1; shift
    local t0; t0=$(now)
    timeout 300 "$BIN/sam3d" run --image "$src/image.png" --mask "$src/0.png" --weights "$W" \
        --out "$R/$name" --device "$dev" "${extra[@]}" "$@" 2>"$R/$name.log"
    echo "$? $(secs "$t0")" >"$R/$name.time"
    stamp "run $name: exit $(cat "$R/$name.time")"
}
stage() {  # NAME STAGE [--param ...]: sam3d stage on the kept job; its artifact copied out
    local name=$1 st=$2; shift 2
    local t0; t0=$(now)
    timeout 200 "$BIN/sam3d" stage "$st" --job "$JOB" --weights "$W" --device "$dev" \
        "${extra[@]}" --out "$R/$name" --param "repeat=$REP" "$@" 2>"$R/$name.log"
    echo "$? $(secs "$t0")" >"$R/$name.time"
    stamp "stage $name: exit $(cat "$R/$name.time")"
}

# ---------------------------------------------------------------- 3. resident vs streamed
run default --keep-job
JOB=$(sed -n 's/^sam3d: job directory kept: //p' "$R/default.log" | head -1)
if [ -z "$JOB" ] || [ ! -d "$JOB" ]; then
    echo "error: the default run kept no job directory (log: $R/default.log)"; tail -5 "$R/default.log"
    exit 1
fi
stamp "job $JOB"
for st in ss_flow slat_flow; do
    stage "${st}_resident" "$st"
    stage "${st}_streamed" "$st" --param stream_blocks=1
    a=$R/${st}_resident/artifacts/$st.safetensors b=$R/${st}_streamed/artifacts/$st.safetensors
    if [ -f "$a" ] && [ -f "$b" ] && same_tensors "$a" "$b"; then
        echo "$st: streamed output = resident output (same tensors, bit for bit)" | tee "$R/$st.same"
    else
        echo "$st: OUTPUTS DIFFER (or missing): $a $b" | tee "$R/$st.same"
        bad=1
    fi
done

# ---------------------------------------------------------------- 4. the small budgets
for b in $BUDGETS; do run "budget_$b" --vram-budget "$b"; done

# ---------------------------------------------------------------- tables
python3 - "$R" "$OUT" "$(head -1 "$OUT/gpu.txt" | cut -d, -f1)" "$BUDGETS" <<'PY' || bad=1
import json, os, re, sys
R, OUT, gpu, budgets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split()
M = 1024 ** 2
def t(name):
    rc, s = open(os.path.join(R, name + ".time")).read().split()
    return int(rc), float(s)
def rep(name):
    p = os.path.join(R, name, "report.json")
    return json.load(open(p)) if os.path.exists(p) else {}
def stage_of(r, st):
    return next((x for x in r.get("stages", []) if x.get("name") == st), {})
def median_ms(name, st):      # the stage's own log line (sam3d stage's stderr, or OUT/sam3d.log)
    log = ""
    for p in [os.path.join(R, name + ".log"), os.path.join(R, name, "sam3d.log")]:
        log += open(p, errors="replace").read() if os.path.exists(p) else ""
    m = re.findall(r"%s: .*?: ([0-9.]+) ms(?: median of \d+)?" % st, log)
    return float(m[-1]) if m else None
def mib(b):
    return f"{b / M:.0f} MiB" if b else "n/a"
out = {"gpu": gpu, "stages": {}, "runs": []}
md = [f"# Blocks streamed from host memory ({gpu})", "",
      "| stage | resident sampler ms | streamed sampler ms | ratio | resident device | "
      "streamed device | outputs |", "|---|---|---|---|---|---|---|"]
ok = True
for st in ["ss_flow", "slat_flow"]:
    row = {}
    for how in ["resident", "streamed"]:
        name = f"{st}_{how}"
        rc, s = t(name)
        x = stage_of(rep(name), st)
        row[how] = {"exit": rc, "wall_s": s, "sampler_ms": median_ms(name, st),
                    "device_bytes": x.get("device_bytes"),
                    "params": x.get("params", {})}
        ok &= rc == 0
    same = open(os.path.join(R, st + ".same")).read().strip()
    row["same"] = "DIFFER" not in same
    ok &= row["same"]
    a, b = row["resident"]["sampler_ms"], row["streamed"]["sampler_ms"]
    ratio = b / a if a and b else None
    row["ratio"] = ratio
    md.append(f"| {st} | {a} | {b} | {ratio:.2f}x | {mib(row['resident']['device_bytes'])} | "
              f"{mib(row['streamed']['device_bytes'])} | "
              f"{'same bytes' if row['same'] else 'DIFFER'} |" if ratio else
              f"| {st} | {a} | {b} | n/a | {mib(row['resident']['device_bytes'])} | "
              f"{mib(row['streamed']['device_bytes'])} | {'same bytes' if row['same'] else 'DIFFER'} |")
    out["stages"][st] = row
md += ["", "| sam3d run | exit | status | streamed stages | driver peak | budget | within | "
       "end to end | vs default |", "|---|---|---|---|---|---|---|---|---|"]
rc0, s0 = t("default")
for name in ["default"] + [f"budget_{b}" for b in budgets]:
    rc, s = t(name)
    r = rep(name)
    d = (r.get("vram", {}).get("devices") or [{}])[0]
    streamed = [x["name"] for x in r.get("stages", [])
                if str(x.get("params", {}).get("stream_blocks", "")).lower() in ("1", "true")]
    ok &= rc == 0 and d.get("within_budget") is not False
    md.append(f"| {name} | {rc} | {r.get('status', '-')} | {', '.join(streamed) or '-'} | "
              f"{mib(d.get('peak_bytes'))} | {mib(d.get('budget_bytes'))} | "
              f"{d.get('within_budget', 'n/a')} | {s:.1f} s | {s / s0:.2f}x |")
    out["runs"].append({"name": name, "exit": rc, "status": r.get("status"),
                        "streamed": streamed, "peak_bytes": d.get("peak_bytes"),
                        "budget_bytes": d.get("budget_bytes"),
                        "within_budget": d.get("within_budget"), "wall_s": s,
                        "vs_default": s / s0})
open(os.path.join(OUT, "stream.md"), "w").write("\n".join(md) + "\n")
json.dump(out, open(os.path.join(OUT, "stream.json"), "w"), indent=1)
print("\n".join(md))
sys.exit(0 if ok else 1)
PY
(cd "$WORK/stream" && tar czf "$OUT/stream_full.tar.gz" --exclude='*.safetensors' \
    --exclude='*.ply' --exclude='*.glb' --exclude='*.png' runs)
[ -n "${JOB:-}" ] && rm -rf "$JOB"
stamp "done ($([ $bad = 0 ] && echo ok || echo FAILED)): $OUT/stream.md, stream.json, stream_full.tar.gz"
exit $bad
