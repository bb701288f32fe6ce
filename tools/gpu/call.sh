#!/usr/bin/env bash
# call.sh SECONDS SCRIPT[=ENV,ENV...] ... - one GPU call (run on the GPU machine, in the repo
# root, with the folders of tools/gpu/pack.sh carried): unpacks the binaries into build-gpu/
# and spconv into /tmp/site, sources device_env.sh, then runs each tools/gpu/SCRIPT.sh in turn
# with OUT=$OUT/SCRIPT, S3D_BIN=build-gpu and the given VAR=VALUE settings, each cut at the
# time left of SECONDS (keep it under the call's limit: 585 of 600), and packs $OUT/SCRIPT.tgz
# after each (files over 4 MiB left out and named in SCRIPT/left_out.txt; the loose files
# removed, since the device tool returns 8 files), so a call cut short still brings back what
# finished. A script is not started
# with under CALL_MIN_START seconds left (default 60). Example (tools/gpu/README.md "One call"):
#   bash tools/gpu/call.sh 585 bench_full=BENCH_LEVERS=0,OFFICIAL_TIMEOUT=330 runtime_check
set -u
[ $# -ge 2 ] || { echo "usage: call.sh SECONDS SCRIPT[=VAR=VALUE,...] ..." >&2; exit 2; }
: "${OUT:?call.sh runs on the GPU machine, where OUT is set}"
total=$1; shift
t0=$(date +%s)
left() { echo $(( total - ($(date +%s) - t0) )); }
[ -f .gpubin/bin.tar.xz ] && tar -xJf .gpubin/bin.tar.xz
mkdir -p /tmp/site
if [ -f .gpuw/spconv.tar.xz ]; then
    tar -xJf .gpuw/spconv.tar.xz -C /tmp/site && mkdir -p /tmp/site/cumm/include /tmp/site/cumm/lib
fi
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 S3D_BIN=build-gpu
[ -f build-gpu/COMMIT ] && S3D_COMMIT=$(cat build-gpu/COMMIT) && export S3D_COMMIT
# shellcheck disable=SC1091
. tools/gpu/device_env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
rc_all=0
for spec in "$@"; do
    name=${spec%%=*}
    envs=; [ "$name" != "$spec" ] && envs=${spec#*=}
    t=$(left)
    if [ "$t" -lt "${CALL_MIN_START:-60}" ]; then echo "[$(( total - t )) s] $name: not run ($t s left)"; rc_all=1; continue; fi
    echo "[$(( total - t )) s] $name (${envs:-defaults}), cut at $t s"
    mkdir -p "$OUT/$name"
    IFS=, read -r -a kv <<<"$envs"
    env "${kv[@]}" timeout "$t" bash "tools/gpu/$name.sh" "$OUT/$name" >"$OUT/$name.log" 2>&1
    rc=$?
    [ $rc = 0 ] || rc_all=1
    echo "[$(( total - $(left) )) s] $name: exit $rc$([ $rc = 124 ] && echo ' (cut: time)')"
    tail -40 "$OUT/$name.log"
    # the device tool brings back 8 files of at most 16 MiB: one archive per script, without
    # its files over 4 MiB (named in NAME/left_out.txt), and nothing loose beside it
    (cd "$OUT" && find "$name" -type f -size +4M >"$name.big" && sed 's/^/left out (over 4 MiB): /' "$name.big" \
         >>"$name/left_out.txt" && tar -czf "$name.tgz" -X "$name.big" "$name" "$name.log" \
         && rm -rf "$name" "$name.log" "$name.big")
done
exit $rc_all
