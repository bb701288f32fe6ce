#!/usr/bin/env bash
# budget_full.sh OUT - the VRAM budget and warm throughput on the GPU machine, in one call
# (issue 13, docs/performance.md "VRAM budget" and "Many objects"; ~6-9 min on one H100/H200):
#   1. full-size random weights in the official layout (tools/ref/bench_official.py
#      --weights-only, ~12 GB in /tmp/s3d-bench/weights; kept from an earlier bench_full.sh or
#      budget_full.sh call on the same warm machine);
#   2. `sam3d run` on the example with --vram-budget 3G, 8G, 12G and none (the default: the
#      free memory): exit status, end-to-end time, each report.json's driver-measured peak
#      (vram.devices[0].peak_bytes, NVML per process) against its budget and within_budget;
#      a budget below a stage's need must be refused before any work, naming the stage;
#   3. BUDGET_OBJECTS (default 8) objects: `sam3d batch` of that many pairs (the example and its
#      mirror, alternating) through warm stages against as many cold `sam3d run`s, objects per
#      minute each;
#   4. the needs table measured: per stage the largest driver-measured device_bytes of every
#      report and its median warm run time, as rows for pipelines/sam3d_objects.needs.
# OUT gets gpu.txt, budget.md (the tables), budget.json, needs_measured.txt, and
# budget_full.tar.gz (every report.json, summary.json and log).
# BUDGET_TINY=1: the same steps on a development machine's CPU with the tiny model (the
# committed fixtures; no budget applies without a GPU: the peaks read "n/a"), to check the
# script end to end (~3 min on 2 cores).
#
# Needs, carried with the call (tools/gpu/README.md): $S3D_BIN (default build) with sam3d and
# every sam3d-* stage (build-gpu: cp build/sam3d build/sam3d-* build-gpu/ && strip build-gpu/*),
# .whl/ and .gl/ (the official code for the weights: tools/ref/README.md "GPU run"), .deb/.
set -u
OUT=${1:?usage: budget_full.sh OUT}
BIN=${S3D_BIN:-build}
WORK=${BUDGET_WORK:-/tmp/s3d-bench}
N=${BUDGET_OBJECTS:-8}
mkdir -p "$OUT" "$WORK/budget"
OUT=$(cd "$OUT" && pwd)
t_start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t_start )) s] $*"; }
now() { date +%s%N; }
secs() { echo "$(( ($(now) - $1) / 1000000 ))" | sed 's/\(...\)$/.\1/; s/^\./0./'; }   # since T0 (ns)

src=examples/human_object
# shellcheck source=tools/gpu/full_lib.sh
. tools/gpu/full_lib.sh
full_model "$OUT" "$WORK" budget BUDGET_TINY "${BUDGET_TINY:-0}" || exit 1
cat "$OUT/gpu.txt"
for b in sam3d sam3d-depth sam3d-cond sam3d-ss-flow sam3d-ss-decode sam3d-slat-flow \
         sam3d-gs-decode sam3d-mesh-decode; do
    [ -x "$BIN/$b" ] || echo "warning: $BIN/$b missing: the pipeline stops before it"
done
stamp "weights in $W"
python3 - "$src" "$WORK/budget" <<'PY' || exit 1
import sys
from PIL import Image, ImageOps
src, d = sys.argv[1:]
ImageOps.mirror(Image.open(f"{src}/image.png")).save(f"{d}/mirror.png")
ImageOps.mirror(Image.open(f"{src}/0.png")).save(f"{d}/mirror_mask.png")
PY
R=$WORK/budget/runs
rm -rf "$R" && mkdir -p "$R"
run() {   # NAME [args]: one sam3d run, its wall time in R/NAME.time
    local name=$1; shift
    local t0; t0=$(now)
    timeout 300 "$BIN/sam3d" run --image "$src/image.png" --mask "$src/0.png" --weights "$W" \
        --out "$R/$name" --device "$dev" "${extra[@]}" "$@" 2>"$R/$name.log"
    local rc=$?
    echo "$rc $(secs "$t0")" >"$R/$name.time"
    stamp "run $name: exit $rc in $(cut -d' ' -f2 "$R/$name.time") s"
}

# ---------------------------------------------------------------- 2. the budgets
for b in 3G 8G 12G; do run "budget_$b" --vram-budget "$b"; done
run budget_default

# ---------------------------------------------------------------- 3. warm batch vs cold runs
for k in $(seq "$N"); do
    if [ $((k % 2)) = 1 ]; then echo "$(realpath $src/image.png) $(realpath $src/0.png)"
    else echo "$WORK/budget/mirror.png $WORK/budget/mirror_mask.png"; fi
done >"$R/list.txt"
t0=$(now)
timeout 900 "$BIN/sam3d" batch "$R/list.txt" --weights "$W" --out "$R/batch" --device "$dev" \
    "${extra[@]}" 2>"$R/batch.log"
echo "$? $(secs "$t0")" >"$R/batch.time"
stamp "batch of $N: $(cat "$R/batch.time")"
t0=$(now)
for k in $(seq "$N"); do run "cold_$k"; done
echo "0 $(secs "$t0")" >"$R/cold.time"

# ---------------------------------------------------------------- 4. tables
python3 - "$R" "$N" "$OUT" "$(head -1 "$OUT/gpu.txt" | cut -d, -f1)" <<'PY'
import glob, json, os, statistics, sys
R, N, OUT, gpu = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
G = 1024 ** 3
def t(name):
    rc, s = open(os.path.join(R, name + ".time")).read().split()
    return int(rc), float(s)
def rep(name):
    p = os.path.join(R, name, "report.json")
    return json.load(open(p)) if os.path.exists(p) else None
rows, out = [], {"gpu": gpu, "budgets": [], "objects": N}
md = [f"# VRAM budget and warm throughput ({gpu})", "",
      "| --vram-budget | exit | status | driver peak | budget | within | end to end |",
      "|---|---|---|---|---|---|---|"]
for b in ["3G", "8G", "12G", "default"]:
    rc, s = t("budget_" + b)
    r = rep("budget_" + b)
    d = (r or {}).get("vram", {}).get("devices", [])
    d = d[0] if d else {}
    peak, bud = d.get("peak_bytes"), d.get("budget_bytes")
    refused = ""
    if rc != 0:
        log = open(os.path.join(R, f"budget_{b}.log")).read()
        refused = next((l.strip() for l in log.splitlines() if "is below what stage" in l), "")
    status = (r or {}).get("status") or ("refused" if refused else "-")
    cells = [f"{peak / G:.2f} GiB" if peak else "n/a", f"{bud / G:.2f} GiB" if bud else "n/a",
             str(d.get("within_budget", "n/a"))]
    md.append(f"| {b} | {rc} | {status} | {' | '.join(cells)} | {s:.1f} s |")
    if refused:
        md.append(f"|  | refused before any work: {refused[:160]} |||||")
    out["budgets"].append({"budget": b, "exit": rc, "status": (r or {}).get("status"),
                           "peak_bytes": peak, "budget_bytes": bud,
                           "within_budget": d.get("within_budget"), "wall_s": s,
                           "refused": refused or None})
brc, bs = t("batch")
summ = json.load(open(os.path.join(R, "batch", "summary.json"))) if os.path.exists(
    os.path.join(R, "batch", "summary.json")) else {}
_, cs = t("cold")
colds = [rep(f"cold_{k}") for k in range(1, N + 1)]
n_cold = sum(1 for r in colds if r and r["status"] in ("complete", "partial"))
loads = ", ".join("%s %d" % (x["name"], x["loads"]) for x in summ.get("stages", []) if x["starts"])
md += ["", f"## {N} objects: warm batch against cold runs", "",
       "| how | done | wall | objects per minute | stage loads |", "|---|---|---|---|---|",
       f"| sam3d batch (warm stages) | {summ.get('done', 0)}/{N} | {bs:.1f} s | "
       f"{summ.get('done', 0) * 60 / bs:.2f} | "
       f"{loads} |",
       f"| {N} x sam3d run (cold) | {n_cold}/{N} | {cs:.1f} s | {n_cold * 60 / cs:.2f} | each run loads every stage |"]
out["batch"] = {"exit": brc, "wall_s": bs, "done": summ.get("done"),
                "objects_per_minute": summ.get("done", 0) * 60 / bs, "summary": summ}
out["cold"] = {"wall_s": cs, "done": n_cold, "objects_per_minute": n_cold * 60 / cs}
# the needs table: the largest driver-measured device_bytes, the median warm run time
need, ms, prec = {}, {}, {}
for p in glob.glob(os.path.join(R, "**", "report.json"), recursive=True):
    r = json.load(open(p))
    for st in r["stages"]:
        if st.get("state") != "done":
            continue
        if st.get("device_bytes"):
            need[st["name"]] = max(need.get(st["name"], 0), st["device_bytes"])
        if st.get("warm"):
            ms.setdefault(st["name"], []).append(st["run_ms"])
lines = ["# measured by tools/gpu/budget_full.sh on " + gpu + " (driver peak per process, "
         "median warm run)", "# stage               precision  size   run_ms  source"]
for name, b in need.items():
    lines.append(f"{name:<21} fp16       {b / G + 0.05:.1f}G   "
                 f"{statistics.median(ms.get(name, [0])):<7.0f} measured driver peak {b / G:.2f} GiB ({gpu})")
open(os.path.join(OUT, "needs_measured.txt"), "w").write("\n".join(lines) + "\n")
md += ["", "## Needs measured (rows for pipelines/sam3d_objects.needs)", "", "```", *lines, "```"]
open(os.path.join(OUT, "budget.md"), "w").write("\n".join(md) + "\n")
json.dump(out, open(os.path.join(OUT, "budget.json"), "w"), indent=1)
print("\n".join(md))
bad = [x for x in out["budgets"] if x["within_budget"] is False]
if bad:
    print("BUDGET EXCEEDED:", bad)
PY
(cd "$WORK/budget" && tar czf "$OUT/budget_full.tar.gz" --exclude='*.safetensors' --exclude='*.ply' \
    --exclude='*.glb' --exclude='*.png' runs)
stamp "done: $OUT/budget.md, budget.json, needs_measured.txt, budget_full.tar.gz"
