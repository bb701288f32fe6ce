#!/usr/bin/env bash
# test_deploy.sh - deploy/ stays true to the pipeline:
#   1. deploy/k8s/sam3d.yaml parses (PyYAML), holds Deployments with a GPU request, a Service
#      per stage endpoint and the orchestrator Job; every --endpoint NAME=tcp://HOST:PORT of
#      the Job names a stage of pipelines/sam3d_objects.pipe, a Service HOST annotated with
#      that stage and serving PORT, whose Deployment starts that stage's executable with its
#      weights on that port; every stage of the pipeline has one endpoint, except the ones
#      reading $IMAGE/$MASK (they run in the Job); the Secret keys read are the ones
#      make-secret.sh writes;
#   2. make-secret.sh hands `sam3d keygen`'s four keys to kubectl (a stub on PATH);
#   3. deploy/slurm/sam3d-array.sh: task k takes lines k*CHUNK+1.. of the list (comments and
#      blank lines skipped, paths made absolute) and runs `sam3d batch` on them (a stub);
#      a task past the end exits 0 with nothing to do.
# Env: BUILD (default build).
set -u
cd "$(dirname "$0")/.." || exit 1
build=${BUILD:-build}
. tests/lib.sh
need_python3 "to read the manifests"
python3 -c 'import yaml' 2>/dev/null || { echo "SKIP: PyYAML is needed to parse the manifests"; exit 77; }
test_tmp

# ---------------------------------------------------------------- 1. the manifest
if python3 - deploy/k8s/sam3d.yaml pipelines/sam3d_objects.pipe deploy/k8s/make-secret.sh \
    >"$tmp/k8s.out" 2>&1 <<'PY'
import re, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
stages, cur = {}, None
for line in open(sys.argv[2]):
    w = line.split("#")[0].split()
    if not w:
        continue
    if w[0] == "stage":
        cur = stages.setdefault(w[1], {"exe": None, "weights": None, "local": False})
    elif cur is not None and w[0] in ("exe", "weights"):
        cur[w[0]] = w[1]
    elif cur is not None and w[0] == "param" and any(v in w[2] for v in ("$IMAGE", "$MASK")):
        cur["local"] = True
kinds = [d["kind"] for d in docs]
deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
svcs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
jobs = [d for d in docs if d["kind"] == "Job"]
assert deps and svcs and len(jobs) == 1, kinds
for n, d in deps.items():
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1, n
    assert d["spec"]["selector"]["matchLabels"] == {k: v for k, v in
        d["spec"]["template"]["metadata"]["labels"].items()}, n
job = jobs[0]["spec"]["template"]["spec"]["containers"][0]
args = job["command"] + job["args"]
eps = {}
for i, a in enumerate(args):
    if a == "--endpoint":
        name, url = args[i + 1].split("=", 1)
        assert name not in eps, f"{name}: two endpoints"
        eps[name] = url
for name, url in eps.items():
    assert name in stages, f"--endpoint {name}: no such stage in the pipeline file"
    m = re.fullmatch(r"tcp://([a-z0-9-]+):(\d+)", url)
    assert m, url
    host, port = m.group(1), int(m.group(2))
    svc = svcs.get(host)
    assert svc, f"{name}: no Service {host}"
    assert svc["metadata"]["annotations"]["sam3d/stage"] == name, (host, name)
    assert [p["port"] for p in svc["spec"]["ports"]] == [port], (host, port)
    sel = svc["spec"]["selector"]
    dep = [d for d in deps.values() if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v
                                           for k, v in sel.items())]
    assert len(dep) == 1, f"{host}: selects {len(dep)} Deployments"
    script = dep[0]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    want = (f"{stages[name]['exe']} --weights /weights/{stages[name]['weights']} "
            f"--device cuda:0 --listen tcp://0.0.0.0:{port} ")
    assert want in script, f"{name}: '{want}' not in {dep[0]['metadata']['name']}"
for name, st in stages.items():
    assert (name in eps) != st["local"], f"stage {name}: endpoint {name in eps}, local {st['local']}"
made = set(re.findall(r"--from-literal=([a-z-]+)=", open(sys.argv[3]).read()))
used = set(re.findall(r"key: ([a-z-]+)", open(sys.argv[1]).read()))
assert used <= made and used, (used, made)
print(f"{len(deps)} Deployments, {len(svcs)} Services, {len(eps)} endpoints = the pipeline's "
      f"stages but {[n for n, s in stages.items() if s['local']]}")
PY
then ok "k8s manifest: $(cat "$tmp/k8s.out")"; else bad "k8s manifest"; cat "$tmp/k8s.out"; fi

# ---------------------------------------------------------------- 2. make-secret.sh
bash -n deploy/k8s/make-secret.sh deploy/slurm/sam3d-array.sh || bad "bash -n on deploy scripts"
if [ -x "$build/sam3d" ]; then
    mkdir -p "$tmp/bin"
    printf '#!/bin/sh\nprintf "%%s\\n" "$@" >"%s/kubectl.args"\n' "$tmp" >"$tmp/bin/kubectl"
    chmod +x "$tmp/bin/kubectl"
    PATH=$tmp/bin:$PATH deploy/k8s/make-secret.sh "$build/sam3d" 2>"$tmp/ms.log"
    n=$(grep -c -- '--from-literal=\(stage-secret\|stage-public\|client-secret\|client-public\)=.\{40\}$' \
        "$tmp/kubectl.args" 2>/dev/null)
    [ "$n" = 4 ] && ok "make-secret.sh: four 40-character Z85 keys to kubectl" ||
        { bad "make-secret.sh: $n keys"; cat "$tmp/ms.log" "$tmp/kubectl.args"; }
fi

# ---------------------------------------------------------------- 3. the Slurm array
mkdir -p "$tmp/in"
printf '# pairs\na.png a_m.png\n\nb.png b_m.png\n/abs/c.png /abs/c_m.png\nd.png d_m.png\ne.png e_m.png\n' \
    >"$tmp/in/list.txt"
printf '#!/bin/sh\nprintf "%%s\\n" "$@" >"%s/sam3d.args"\n' "$tmp" >"$tmp/sam3d-stub"
chmod +x "$tmp/sam3d-stub"
SLURM_ARRAY_TASK_ID=1 CHUNK=2 SAM3D=$tmp/sam3d-stub SAM3D_ARGS="--preset fast" \
    deploy/slurm/sam3d-array.sh "$tmp/in/list.txt" /w "$tmp/out" >"$tmp/slurm.log" 2>&1; rc=$?
if [ $rc -eq 0 ] && [ "$(cat "$tmp/out/task1/list.txt")" = "/abs/c.png /abs/c_m.png
$(cd "$tmp/in" && pwd)/d.png $(cd "$tmp/in" && pwd)/d_m.png" ] &&
    [ "$(tr '\n' ' ' <"$tmp/sam3d.args")" = "batch $tmp/out/task1/list.txt --weights /w --out $tmp/out/task1 --preset fast " ]; then
    ok "slurm array: task 1 of CHUNK 2 runs sam3d batch on lines 3-4, paths absolute"
else
    bad "slurm array task 1 (rc=$rc)"; cat "$tmp/slurm.log" "$tmp/out/task1/list.txt" "$tmp/sam3d.args"
fi
rm -f "$tmp/sam3d.args"
SLURM_ARRAY_TASK_ID=3 CHUNK=2 SAM3D=$tmp/sam3d-stub deploy/slurm/sam3d-array.sh "$tmp/in/list.txt" \
    /w "$tmp/out" >"$tmp/slurm3.log" 2>&1; rc=$?
[ $rc -eq 0 ] && [ ! -e "$tmp/sam3d.args" ] && grep -q "task 3: no jobs" "$tmp/slurm3.log" &&
    ok "slurm array: a task past the end exits 0, nothing run" || bad "task past the end (rc=$rc)"
exit $fail
