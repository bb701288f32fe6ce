#!/usr/bin/env bash
# test_remote.sh - stages served elsewhere and per-stage devices in `sam3d run` (README "Stages on
# other machines or GPUs"), with the tiny random-weight model on the CPU path:
#   1. cond_ss served on tcp://127.0.0.1:PORT and cond_slat on an ipc:// socket outside the job,
#      both started by hand (--endpoint NAME=URL): tensors travel inline, and the artifacts are
#      bit-identical (sha256 of every tensor) to an all-local run, with the same __metadata__
#      (stage, version, device, precision, params; sent as meta_* reply fields); report.json names the
#      endpoints and devices; the remote stages are still serving afterwards (not ours to stop);
#   2. the same through `endpoint` / `device` lines of a pipeline file, and `sam3d stage` re-running
#      one remote stage on a kept job;
#   CURVE: key pairs from `sam3d keygen`, a stage with the secret and the client's public key
#      on its --curve-clients list, the run with the stage's public key and the client's secret
#      (same artifact); without the key, or with a client key not on the list, the run fails
#      and the stage keeps serving; a CURVE stage without a client list refuses to start;
#   3. faults: nobody at the endpoint (exit 1 within the timeout, the stage and address named),
#      an unknown stage or a malformed value in --endpoint / --stage-device (exit 1 or 2, one
#      line), and the pipeline file's `device` / `endpoint` syntax errors.
# Env: BUILD (default build).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
sam3d=$build/sam3d
ex=examples/human_object
. tests/lib.sh
need_exec "needs sam3d, sam3d-depth and sam3d-cond" "$sam3d" "$build/sam3d-cond" "$build/sam3d-depth"
need_example "$ex"
test_tmp
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

w=$tmp/weights
fx=tests/fixtures
mkdir -p "$w/moge-vitl" "$tmp/bin" "$tmp/jobs"
cp "$fx/moge_tiny/model.pt" "$w/moge-vitl/model.pt"
cp "$fx/cond_ss_tiny/ss_generator.ckpt" "$fx/cond_slat_tiny/slat_generator.ckpt" "$w/"
ln -s "$(realpath "$build/sam3d-depth")" "$tmp/bin/sam3d-depth"
ln -s "$(realpath "$build/sam3d-cond")" "$tmp/bin/sam3d-cond"
run() {   # OUT LOG [args...]: sam3d run on the example, CPU, into OUT
    local out=$1 log=$2; shift 2
    S3D_JOB_ROOT=$tmp/jobs "$sam3d" run --image "$ex/image.png" --mask "$ex/0.png" \
        --weights "$w" --out "$out" --stages-dir "$tmp/bin" --timeout 120 "$@" 2>"$log"
}
sha() { "$sam3d" inspect --sha256 "$1" | awk -F'\t' -v n="$2" '$1 == n { print $4 }'; }
same_artifacts() {   # label DIR_A DIR_B: every tensor of cond_ss/cond_slat identical
    local f n a b good=1
    for f in cond_ss cond_slat; do
        for n in $("$sam3d" inspect "$2/artifacts/$f.safetensors" | cut -f1); do
            a=$(sha "$2/artifacts/$f.safetensors" "$n"); b=$(sha "$3/artifacts/$f.safetensors" "$n")
            [ -n "$a" ] && [ "$a" = "$b" ] || { good=0; echo "     $f:$n differs ($a vs $b)"; }
        done
    done
    if [ $good = 1 ]; then ok "$1"; else bad "$1"; fi
}

# ---------------------------------------------------------------- the all-local reference
run "$tmp/local" "$tmp/local.log" --device cpu
[ $? -eq 3 ] || { bad "local run: exit not 3"; tail -5 "$tmp/local.log"; }

# ---------------------------------------------------------------- 1. remote stages by flag
port=$((20000 + RANDOM % 20000))
tcp=tcp://127.0.0.1:$port
ipc=ipc://$tmp/slat.sock
"$build/sam3d-cond" --weights "$w/ss_generator.ckpt" --device cpu --listen "$tcp" \
    2>"$tmp/srv_ss.log" & pids+=($!)
"$build/sam3d-cond" --weights "$w/slat_generator.ckpt" --device cpu --listen "$ipc" \
    2>"$tmp/srv_slat.log" & pids+=($!)
run "$tmp/remote" "$tmp/remote.log" --endpoint "cond_ss=$tcp" --endpoint "cond_slat=$ipc" \
    --stage-device depth=cpu
rc=$?
# the number of inputs cond_ss is sent: its `input` lines in the pipeline file
n_in=$(awk '$1 == "stage" { s = $2 } s == "cond_ss" && $1 == "input" { n++ } END { print n + 0 }' \
    pipelines/sam3d_objects.pipe)
if [ $rc -eq 3 ] && grep -q "stage cond_ss: remote at $tcp" "$tmp/remote.log" &&
   grep -q "stage cond_ss: run ($n_in inputs, inline)" "$tmp/remote.log"; then
    ok "run with cond_ss at $tcp and cond_slat at ipc://: exit 3, inputs sent inline"
else
    bad "remote run: exit $rc"; tail -8 "$tmp/remote.log"
fi
same_artifacts "remote artifacts bit-identical to the all-local run" "$tmp/local" "$tmp/remote"
got=$(python3 - "$tmp/local/artifacts" "$tmp/remote/artifacts" <<'PY' 2>&1
import json, struct, sys
def meta(d, name):
    with open(f"{d}/{name}.safetensors", "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})
bad = []
for a in ("cond_ss", "cond_slat"):
    l, r = meta(sys.argv[1], a), meta(sys.argv[2], a)
    if not r or {k: v for k, v in l.items() if k != "weights"} != \
            {k: v for k, v in r.items() if k != "weights"} or \
            l["weights"].split("/")[-1] != r["weights"].split("/")[-1]:
        bad.append(f"{a}: local {l} remote {r}")
print("; ".join(bad) or "all")
PY
)
[ "$got" = all ] && ok "the remote artifacts carry the stage's __metadata__ (as the local ones)" ||
    bad "remote __metadata__: $got"
if grep -q "\"name\": \"cond_ss\".*\"endpoint\": \"$tcp\"" "$tmp/remote/report.json" &&
   grep -q '"name": "depth", "exe": "sam3d-depth", "state": "done", "device": "cpu"' \
       "$tmp/remote/report.json"; then
    ok "report.json names the endpoint and the device"
else
    bad "report.json lacks endpoint/device"; grep '"name"' "$tmp/remote/report.json" | head -4
fi
if kill -0 "${pids[0]}" 2>/dev/null && kill -0 "${pids[1]}" 2>/dev/null; then
    ok "the remote stages still serve after the run"
else
    bad "a remote stage was stopped by the run"
fi

# ---------------------------------------------------------------- 2. pipeline lines, sam3d stage
sed -e "/^stage cond_ss/a\\    endpoint $tcp" -e "/^stage cond_slat/a\\    endpoint $ipc" \
    -e "/^stage depth/a\\    device cpu" pipelines/sam3d_objects.pipe >"$tmp/remote.pipe"
run "$tmp/remote2" "$tmp/remote2.log" --pipeline "$tmp/remote.pipe" --keep-job
rc=$?
job=$(sed -n 's/^sam3d: job directory kept: //p' "$tmp/remote2.log")
if [ $rc -eq 3 ]; then ok "endpoint/device lines of a pipeline file: exit 3"; else
    bad "pipeline-file run: exit $rc"; tail -5 "$tmp/remote2.log"; fi
same_artifacts "pipeline-file artifacts identical too" "$tmp/local" "$tmp/remote2"
if [ -n "$job" ] && "$sam3d" stage cond_slat --job "$job" --pipeline "$tmp/remote.pipe" \
       --stages-dir "$tmp/bin" --out "$tmp/stage_out" 2>"$tmp/stage.log" &&
   [ "$(sha "$tmp/stage_out/artifacts/cond_slat.safetensors" cond_slat)" = \
     "$(sha "$tmp/local/artifacts/cond_slat.safetensors" cond_slat)" ]; then
    ok "sam3d stage re-runs the remote cond_slat on the kept job"
else
    bad "sam3d stage on a remote stage"; tail -5 "$tmp/stage.log"
fi
[ -n "$job" ] && rm -rf "$job"

# ---------------------------------------------------------------- CURVE (as beyond loopback)
keys=$("$sam3d" keygen) && eval "$keys"
if [ -n "${S3D_CURVE_SECRET:-}" ] && [ -n "${S3D_CURVE_SERVERKEY:-}" ]; then
    port2=$((port + 2))
    echo "$S3D_CURVE_CLIENT_KEY" >"$tmp/clients"
    S3D_CURVE_SECRET=$S3D_CURVE_SECRET "$build/sam3d-cond" --weights "$w/ss_generator.ckpt" \
        --device cpu --listen tcp://127.0.0.1:$port2 --curve-clients "$tmp/clients" \
        2>"$tmp/srv_curve.log" & pids+=($!)
    S3D_CURVE_SERVERKEY=$S3D_CURVE_SERVERKEY S3D_CURVE_CLIENT_SECRET=$S3D_CURVE_CLIENT_SECRET \
        run "$tmp/curve" "$tmp/curve.log" --device cpu --endpoint cond_ss=tcp://127.0.0.1:$port2
    rc=$?
    a=$(sha "$tmp/curve/artifacts/cond_ss.safetensors" cond_ss 2>/dev/null)
    if [ $rc -eq 3 ] && [ -n "$a" ] && [ "$a" = "$(sha "$tmp/local/artifacts/cond_ss.safetensors" cond_ss)" ] &&
       grep -qF "CURVE on; clients need S3D_CURVE_SERVERKEY=$S3D_CURVE_SERVERKEY" "$tmp/srv_curve.log"; then
        ok "CURVE: keys from sam3d keygen, the stage prints its public key, same cond_ss"
    else
        bad "CURVE run: exit $rc"; tail -4 "$tmp/curve.log"
    fi
    run "$tmp/nokey" "$tmp/nokey.log" --device cpu --timeout 3 --retries 0 \
        --endpoint cond_ss=tcp://127.0.0.1:$port2
    rc=$?
    if [ $rc -eq 1 ]; then ok "CURVE stage without the key: refused (exit 1)"; else
        bad "CURVE stage without the key: exit $rc"; fi
    # a client with its own key pair, not on the stage's --curve-clients list (issue 15, F4)
    other=$("$sam3d" keygen | sed -n "s/^S3D_CURVE_CLIENT_SECRET='\(.*\)'$/\1/p")
    S3D_CURVE_SERVERKEY=$S3D_CURVE_SERVERKEY S3D_CURVE_CLIENT_SECRET=$other \
        run "$tmp/unlisted" "$tmp/unlisted.log" --device cpu --timeout 3 --retries 0 \
        --endpoint cond_ss=tcp://127.0.0.1:$port2
    rc=$?
    if [ $rc -eq 1 ] && grep -q "refused: its public key is not on the --curve-clients list" \
           "$tmp/srv_curve.log" && kill -0 "${pids[-1]}" 2>/dev/null; then
        ok "CURVE client not on the stage's list: refused by the stage, which keeps serving"
    else
        bad "unlisted CURVE client: exit $rc"; tail -3 "$tmp/srv_curve.log"
    fi
    S3D_CURVE_SECRET=$S3D_CURVE_SECRET "$build/sam3d-cond" --weights "$w/ss_generator.ckpt" \
        --device cpu --listen tcp://127.0.0.1:$((port2 + 1)) 2>"$tmp/srv_nolist.log"
    rc=$?
    if [ $rc -eq 2 ] && grep -q "needs --curve-clients" "$tmp/srv_nolist.log"; then
        ok "a CURVE stage without --curve-clients refuses to start (exit 2)"
    else
        bad "CURVE stage without a client list: exit $rc"
    fi
else
    bad "sam3d keygen printed no keys: $keys"
fi

# ---------------------------------------------------------------- 3. faults
t0=$SECONDS
run "$tmp/nobody" "$tmp/nobody.log" --device cpu --timeout 3 --retries 0 \
    --endpoint cond_ss=tcp://127.0.0.1:$((port + 1))
rc=$?
if [ $rc -eq 1 ] && [ $((SECONDS - t0)) -lt 60 ] &&
   grep -q "remote stage 'cond_ss' at tcp://127.0.0.1:$((port + 1)) did not answer" "$tmp/nobody.log"; then
    ok "nobody at the endpoint: exit 1 in $((SECONDS - t0)) s, stage and address named"
else
    bad "nobody at the endpoint: exit $rc after $((SECONDS - t0)) s"; tail -4 "$tmp/nobody.log"
fi
check_usage() {   # label expected-exit pattern args...
    local label=$1 want=$2 pat=$3; shift 3
    run "$tmp/u" "$tmp/u.log" "$@"
    local rc=$?
    if [ $rc -eq "$want" ] && grep -q "$pat" "$tmp/u.log"; then ok "$label"; else
        bad "$label: exit $rc"; tail -3 "$tmp/u.log"; fi
}
check_usage "--endpoint of an unknown stage" 1 "no such stage" --endpoint nosuch=$tcp
check_usage "--endpoint with a bad URL" 1 "expected tcp://HOST:PORT" --endpoint cond_ss=http://x
check_usage "--stage-device with a bad device" 1 "expected cuda:N or cpu" --stage-device depth=gpu0
check_usage "--stage-device without NAME=" 2 "wants NAME=VALUE" --stage-device cpu
for bad_line in "device gpu" "endpoint http://x" "endpoint"; do
    sed -e "/^stage depth/a\\    $bad_line" pipelines/sam3d_objects.pipe >"$tmp/bad.pipe"
    check_usage "pipeline line '$bad_line' refused" 1 "bad.pipe:1[0-9]: expected" \
        --pipeline "$tmp/bad.pipe"
done
if [ -z "$(ls -A "$tmp/jobs")" ]; then ok "no job directory left"; else
    bad "left in the job root: $(ls -A "$tmp/jobs")"; fi
exit $fail
