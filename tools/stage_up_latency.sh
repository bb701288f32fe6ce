#!/usr/bin/env bash
# stage_up_latency.sh [RUNS] - how long `sam3d run` waits for stage processes that are already
# listening: RUNS (default 3) demo runs (tools/demo.sh, the CPU path), and for each the ms from
# the last stage's "serving on" line to the last "stage NAME up" line of sam3d and to depth's
# turn. docs/performance.md ("a local stage's socket retried every 5 ms") has the numbers.
set -u
cd "$(dirname "$0")/.." || exit 1
out=${TMPDIR:-/tmp}/s3d-up-latency
for _ in $(seq "${1:-3}"); do
    S3D_DEMO_OUT=$out bash tools/demo.sh >/dev/null 2>&1
    python3 - "$out/sam3d.log" <<'P'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
def ms(line):
    h, m, s = re.search(r' (\d+):(\d+):(\d+\.\d+) ', line).groups()
    return (int(h) * 3600 + int(m) * 60 + float(s)) * 1000
serving = max(ms(l) for l in lines if 'serving on' in l)
up = max(ms(l) for l in lines if ' up (pid' in l)
run = min(ms(l) for l in lines if 'stage depth: run' in l)
print("last stage listening -> last 'up' %.0f ms, -> depth's turn %.0f ms" % (up - serving, run - serving))
P
done
