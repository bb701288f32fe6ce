#!/usr/bin/env bash
# e2e_full.sh OUT [WHEELS] - the full-size end-to-end chain of the official pipeline on the GPU
# machine (tools/ref/dump_e2e_chain.py --size full --device cuda, random weights written as the
# six official checkpoint files), then our stages on that chain's artifacts
# (tools/ref/check_e2e_chain.py). Logs and a summary of every artifact go to OUT.
#
# Needs, in the repo copy on the GPU machine: build/ (our binaries, x86-64, sm_90), .whl/
# (tools/ref/fetch_wheels.sh), .gl/ref (tools/ref/pack_ref.sh), examples/human_object, .deb/
# (tools/gpu/README.md); and in WHEELS (default /tmp/s3d-wheels) the real sparse convolution:
# spconv-cu126 2.3.8 + cumm-cu126 0.7.11 and their pure-python needs (pccm ccimport fire lark
# portalocker termcolor pybind11 ninja, plus plyfile easydict for the decoders). spconv's wheel
# is 70 MB, over one call's carry limit: bring it in parts on a warm machine
# (tools/ref/README.md "GPU run").
# Measured on one H200 (2026-11-28): 140 s for the chain (random init of ~3.2 B parameters on the
# CPU dominates), ~10 s for the check.
set -u
OUT=${1:?usage: e2e_full.sh OUT [WHEELS]}
WH=${2:-/tmp/s3d-wheels}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl "$WH"/*.whl || exit 1
export PYTHONPATH=/tmp/site
# shellcheck disable=SC1091
. tools/gpu/device_env.sh
python3 -c "import spconv.pytorch, cumm; print('spconv', spconv.__version__)" || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
CHAIN=/tmp/e2e_full
rm -rf "$CHAIN"
t0=$(date +%s)
PYTHONUNBUFFERED=1 ATTN_BACKEND=sdpa SPARSE_ATTN_BACKEND=sdpa \
timeout "${E2E_TIMEOUT:-480}" python3 tools/ref/dump_e2e_chain.py --size full --device cuda \
    --example examples/human_object --out "$CHAIN" --weights-out "$CHAIN/weights" \
    --s3d .gl/ref/s3d --dinov2 .gl/ref/dinov2 --hf .gl/ref/hf 2>&1 | tee "$OUT/e2e_chain.log" |
    grep -E "^\[|rror" | tail -40
rc=${PIPESTATUS[0]}
echo "dump_e2e_chain: exit $rc after $(( $(date +%s) - t0 )) s"
[ "$rc" = 0 ] || exit 1
cp "$CHAIN/meta.json" "$OUT/" 2>/dev/null
python3 -c "import json,sys; m=json.load(open(sys.argv[1])); [print(f'official {k}: {m[\"official_cold_s\"][k]:.3f} s cold, torch peak {m[\"official_peak_bytes\"][k]/2**30:.2f} GiB') for k in m['official_cold_s']]" "$CHAIN/meta.json"
ls -la "$CHAIN" "$CHAIN/weights" > "$OUT/e2e_files.txt"
python3 - "$CHAIN" > "$OUT/e2e_summary.txt" <<'EOF'
import glob, os, sys
sys.path.insert(0, "tools/ref")
import refutil, torch
for f in sorted(glob.glob(sys.argv[1] + "/*.safetensors")):
    print(f"== {os.path.basename(f)}")
    for k, v in refutil.load_tensors(f)[0].items():
        x = v.double()
        fin = x[torch.isfinite(x)] if v.is_floating_point() else x
        print(f"  {k:28s} {str(tuple(v.shape)):22s} {str(v.dtype):14s} "
              f"mean {float(fin.mean()) if fin.numel() else float('nan'):+.4e} "
              f"std {float(fin.std()) if fin.numel() > 1 else 0.0:.4e}")
EOF
cat "$OUT/e2e_summary.txt"
PYTHONUNBUFFERED=1 python3 tools/ref/check_e2e_chain.py "$CHAIN" --bin build --device cuda \
    --precision "${E2E_PRECISION:-fp16}" 2>&1 | tee "$OUT/e2e_check.log" | grep -v "^\[.*\] I "
exit "${PIPESTATUS[0]}"
