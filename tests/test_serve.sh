#!/usr/bin/env bash
# test_serve.sh - `sam3d serve` and `sam3d run --server`, on the CPU with the tiny model
# (the committed fixtures in the official layout) and real stage processes over ZeroMQ:
#   1. a server on an ipc socket loads its stages before any job (S3D_WARMUP=all: and warms
#      them up, depth included: the first job's depth turn is "preloaded" with warmup_ms);
#      two clients at once (the example and its mirror): both complete (exit 0/3) with
#      report.json and artifacts in their --out; the job that ran second found every stage
#      loaded (warm, no load time), each stage loaded once;
#   2. a client killed right after its job was accepted: the job goes on, its --out
#      appears whole (renamed into place: report.json and artifacts; no part dir left);
#   3. an --out that exists and is not empty is refused (exit 1, the reason named);
#      a client with no server: exit 1 after its wait, naming the address;
#   4. SIGTERM stops the server: exit 0, no stage process, job directory or socket left.
# Stages: whatever is built (as test_demo); the flows run few steps. Env: BUILD.
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
sam3d=$build/sam3d
ex=examples/human_object
. tests/lib.sh
need_exec "serve runs the built stages" "$sam3d" "$build/sam3d-depth" "$build/sam3d-cond"
need_python3 "to read the reports"
need_example "$ex"
test_tmp
export S3D_JOB_ROOT=$tmp/jobs
mkdir -p "$S3D_JOB_ROOT"
srv_pid=
trap '[ -n "$srv_pid" ] && kill $srv_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT

w=$tmp/weights
tiny_weights "$w"
pipe=$tmp/few_steps.pipe        # 3 SS steps, 2 SLAT steps, at most 400 voxels
few_steps_pipe "$pipe"
if ! python3 - "$ex" "$tmp" <<'PY'
import sys
from PIL import Image, ImageOps
ex, d = sys.argv[1:]
ImageOps.mirror(Image.open(f"{ex}/image.png")).save(f"{d}/mirror.png")
ImageOps.mirror(Image.open(f"{ex}/0.png")).save(f"{d}/mirror_mask.png")
PY
then echo "SKIP: PIL cannot write the test images"; exit 77; fi
addr=ipc://$tmp/serve.sock

# ---------------------------------------------------------------- 1. two clients
S3D_WARMUP=all "$sam3d" serve --listen "$addr" --weights "$w" --device cpu --pipeline "$pipe" \
    --timeout 600 2>"$tmp/serve.log" &
srv_pid=$!
for _ in $(seq 100); do grep -qs "^sam3d: serving on" "$tmp/serve.log" && break; sleep 0.1; done
grep -q "^sam3d: serving on $addr" "$tmp/serve.log" || { bad "server did not start"; tail "$tmp/serve.log"; exit 1; }
# before any job: the stages load ahead in pipeline order (depth first) and warm up
for _ in $(seq 600); do grep -q "stage depth: loaded ahead in" "$tmp/serve.log" && break; sleep 0.1; done
if grep -q "stage depth: loaded ahead in [0-9.]* ms (+ warm-up [1-9][0-9.]* ms)" "$tmp/serve.log" &&
   grep -q "\[depth [0-9]*\] I .* warmed up in" "$tmp/serve.log"; then
    ok "serve loads and warms up its stages before any job (depth: $(grep -o 'stage depth: loaded ahead in .*' "$tmp/serve.log"))"
else bad "serve did not load depth ahead before the first job"; tail -20 "$tmp/serve.log"; fi
client() {   # out image mask
    "$sam3d" run --server "$addr" --image "$2" --mask "$3" --out "$1" 2>"$1.log"
}
client "$tmp/c1" "$ex/image.png" "$ex/0.png" & p1=$!
client "$tmp/c2" "$tmp/mirror.png" "$tmp/mirror_mask.png" & p2=$!
wait $p1; rc1=$?
wait $p2; rc2=$?
if { [ $rc1 -eq 0 ] || [ $rc1 -eq 3 ]; } && { [ $rc2 -eq 0 ] || [ $rc2 -eq 3 ]; }; then
    ok "two clients at once: exit $rc1 and $rc2"
else bad "clients: rc $rc1 $rc2"; tail -3 "$tmp/c1.log" "$tmp/c2.log"; tail -20 "$tmp/serve.log"; fi
if python3 - "$tmp/c1" "$tmp/c2" >"$tmp/c.check" 2>&1 <<'PY'
import json, os, sys
reps = [json.load(open(os.path.join(d, "report.json"))) for d in sys.argv[1:]]
for r in reps:
    assert r["status"] in ("complete", "partial"), r["status"]
first, second = sorted(reps, key=lambda r: [s for s in r["stages"] if s["state"] == "done"][0]["warm"])
done = [s for s in first["stages"] if s["state"] == "done"]
assert len(done) >= 2 and done[0]["name"] == "depth", done
for s in done:
    assert not s["warm"] and s["load_ms"] > 0 and s["loads"] == 1 and s["starts"] == 1, s
for s in second["stages"]:
    if s["state"] == "done":
        assert s["warm"] and s["load_ms"] == 0 and s["loads"] == 1 and s["starts"] == 1, s
assert done[0]["preloaded"] and done[0]["warmup_ms"] > 0, done[0]   # depth, loaded before it
for d in sys.argv[1:]:
    assert os.path.exists(os.path.join(d, "artifacts", "depth.safetensors")), d
print(len(done), "stages; the second job found every one loaded")
PY
then ok "the second job pays no load: $(cat "$tmp/c.check")"; else bad "warm check"; cat "$tmp/c.check"; fi
grep -q "job 1 accepted by $addr" "$tmp/c1.log" "$tmp/c2.log" && ok "the client says its job was accepted" ||
    bad "no 'accepted' line"
# the warm-ups (depth's too) and the warm stages change no output: the example's job gives the
# same bytes as a plain `sam3d run` of it
"$sam3d" run --image "$ex/image.png" --mask "$ex/0.png" --weights "$w" --device cpu \
    --pipeline "$pipe" --out "$tmp/plain" 2>"$tmp/plain.log"; rc=$?
n_same=0 n_diff=0
for f in $(cd "$tmp/plain/artifacts" 2>/dev/null && ls *.safetensors); do
    if cmp -s "$tmp/plain/artifacts/$f" "$tmp/c1/artifacts/$f"; then n_same=$((n_same + 1)); else
        n_diff=$((n_diff + 1)); echo "    differs: $f"; fi
done
{ [ $rc -eq 0 ] || [ $rc -eq 3 ]; } && [ $n_same -ge 2 ] && [ $n_diff -eq 0 ] &&
    ok "served after warm-ups = plain sam3d run: $n_same artifacts, the same bytes" ||
    bad "served vs plain run: exit $rc, $n_same same, $n_diff different"

# ---------------------------------------------------------------- 2. a client that goes away
"$sam3d" run --server "$addr" --image "$ex/image.png" --mask "$ex/0.png" --out "$tmp/c3" \
    2>"$tmp/c3.log" &
p3=$!
for _ in $(seq 100); do grep -q "accepted by" "$tmp/c3.log" && break; sleep 0.05; done
kill -KILL $p3; wait $p3 2>/dev/null
[ -e "$tmp/c3" ] && bad "c3 exists before its job ended (not renamed whole)"
for _ in $(seq 600); do [ -f "$tmp/c3/report.json" ] && break; sleep 0.1; done
if grep -q '"status": "\(complete\|partial\)"' "$tmp/c3/report.json" 2>/dev/null &&
    [ -f "$tmp/c3/artifacts/depth.safetensors" ] && [ -z "$(ls -d "$tmp"/c3.s3d-part-* 2>/dev/null)" ]; then
    ok "a client killed after acceptance: the job went on, its --out appeared whole"
else bad "disconnected client's job"; ls "$tmp"; tail -5 "$tmp/serve.log"; fi

# ---------------------------------------------------------------- 3. refusals
mkdir -p "$tmp/full" && touch "$tmp/full/x"
"$sam3d" run --server "$addr" --image "$ex/image.png" --mask "$ex/0.png" --out "$tmp/full" \
    2>"$tmp/c4.log"; rc=$?
[ $rc -eq 1 ] && grep -q "refused the job: out '.*full' exists and is not an empty directory" "$tmp/c4.log" &&
    ok "an --out that is not empty: refused, exit 1" || bad "non-empty out: rc=$rc $(cat "$tmp/c4.log")"
"$sam3d" run --server "ipc://$tmp/nobody.sock" --image "$ex/image.png" --mask "$ex/0.png" \
    --out "$tmp/c5" 2>"$tmp/c5.log"; rc=$?
[ $rc -eq 1 ] && grep -q "nobody.sock: no answer in 10 s" "$tmp/c5.log" &&
    ok "no server: exit 1, the address named" || bad "no server: rc=$rc $(cat "$tmp/c5.log")"

# ---------------------------------------------------------------- 4. SIGTERM
kill -TERM $srv_pid; wait $srv_pid; rc=$?; srv_pid=
sleep 0.3
[ $rc -eq 0 ] && ok "SIGTERM: the server exits 0" || bad "server exit $rc"
if pgrep -f "ipc://$S3D_JOB_ROOT" >/dev/null; then bad "stage processes left"; pkill -f "ipc://$S3D_JOB_ROOT"; fi
[ -z "$(ls -A "$S3D_JOB_ROOT")" ] && [ ! -e "$tmp/serve.sock" ] && ok "no job directory or socket left" ||
    bad "left: $(ls -A "$S3D_JOB_ROOT") $(ls "$tmp"/serve.sock 2>/dev/null)"
exit $fail
