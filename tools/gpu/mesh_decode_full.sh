#!/usr/bin/env bash
# mesh_decode_full.sh OUT [SLAT] - sam3d-mesh-decode on the GPU machine, in one call (~8 min;
# MESH_QUICK=1 ~5 min, see below):
#   1. the GPU tests this decoder touches (S3D_REQUIRE_GPU=1: a skip is a failure):
#      test_op_sparse (submanifold conv, 1x1 conv, GroupNorm with split statistics),
#      test_slat_dec (the shared trunk), test_mesh_decode (subdivided maps, the head, FlexiCubes:
#      CUDA against the CPU), test_glb, test_mesh_decode_cli.sh (the stage's CUDA path on the
#      fixture, fp32 and fp16);
#   2. full-size parity, time and memory against the official decoder
#      (tools/ref/plugin_mesh_decode.py, full-size random weights): ~30k voxels fp16 and fp32
#      (out_layer rows, the mesh: counts, Chamfer, colours; time; driver peaks), then 42k voxels
#      (the pipeline's ceiling) in fp16 with the 1.5 GB driver-peak target checked; with SLAT
#      (a slat_flow.safetensors of the official chain, 'coords' + 'slat_feats', e.g.
#      $E2E/slat_flow.safetensors of tools/gpu/e2e_full.sh) also on that real latent.
# Everything goes to OUT (logs, per run mesh_decode_results.json + mesh_decode_summary.txt)
# and OUT/mesh_decode_results.tar.gz.
# MESH_REPEAT=N (default 7): runs of our stage per timing (its median; the first run of a
# process is cold, so N >= 5 makes the median a warm run).
# MESH_QUICK=1 (~6 min): only the GPU tests of the decoder's speed work (test_mesh_decode,
# test_op_sparse, test_mesh_decode_cli.sh), 30k voxels fp16 against the official decoder
# (parity, time, profile), 42k voxels fp16 with the 1.5 GB driver-peak target (official
# --time 2), then on the 30k weights and latent our stage with S3D_MESH_SUBCONV=taps (the
# 27 child taps, the CPU's form; the CUDA default is the subdivided convs over the parents:
# timed, profiled and its mesh against the default in the same call), with S3D_SPARSE_IGEMM=1 (the implicit-GEMM sparse conv, off by default until
# measured: timed, profiled, its mesh against the default's) and with
# CUDA_MODULE_LOADING=EAGER (how much of the first, cold run is lazy module loading).
#
# Needs, carried with the call (builds nothing): the binaries in $S3D_BIN (default build-gpu;
# make -j2 CUDA_ARCH=90 build/sam3d-mesh-decode build/sam3d build/tests/test_op_sparse \
#   build/tests/test_slat_dec build/tests/test_mesh_decode build/tests/test_glb, then
#   mkdir -p build-gpu/tests && cp build/sam3d-mesh-decode build/sam3d build-gpu/ &&
#   cp build/tests/test_op_sparse build/tests/test_slat_dec build/tests/test_mesh_decode \
#      build/tests/test_glb build-gpu/tests/ && strip build-gpu/sam3d* build-gpu/tests/*
# and carry build-gpu, git-ignored), .whl/ (sh tools/ref/fetch_wheels.sh: hydra-core,
# omegaconf, antlr4, loguru, optree, astor), .gl/ (sh tools/ref/pack_ref.sh: the official
# sam3d_objects package and the released yaml files), .deb/ (tools/gpu/README.md), and the
# real spconv for the official sparse convolutions (spconv-cu126 2.3.8 + cumm-cu126 0.7.11):
# S3D_SPCONV=FILE.tar.xz made by tools/gpu/spconv_pack/pack.sh (carried; unpacked into
# /tmp/site), or S3D_SITE=DIR, a site directory holding them (put on PYTHONPATH after the
# wheels); the script stops when spconv is still the shim. kaolin: tools/ref/shims/kaolin provides the one
# function the official FlexiCubes imports (check_tensor). flash-attn: PyTorch's
# FlashAttention-2 serves the official call (tools/ref/flash_shim.py). The GPU machine's
# PyTorch runs the official module.
set -u
OUT=${1:?usage: mesh_decode_full.sh OUT [SLAT]}
SLAT=${2:-}
BIN=${S3D_BIN:-build-gpu}
REP=${MESH_REPEAT:-7}
QUICK=${MESH_QUICK:-0}
mkdir -p "$OUT"
for f in "$BIN/sam3d-mesh-decode" "$BIN/sam3d" "$BIN/tests/test_mesh_decode"; do
    [ -x "$f" ] || { echo "error: $f missing (HINT: see this script's header; S3D_BIN=DIR)"; exit 2; }
done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
if [ -n "${S3D_SPCONV:-}" ]; then
    tar -xJf "$S3D_SPCONV" -C /tmp/site || { echo "error: cannot unpack S3D_SPCONV=$S3D_SPCONV"; exit 2; }
    mkdir -p /tmp/site/cumm/include /tmp/site/cumm/lib
fi
export PYTHONPATH=/tmp/site${S3D_SITE:+:$S3D_SITE}${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import spconv.pytorch, cumm; print('spconv', spconv.__version__)" ||
    { echo "error: no real spconv (HINT: S3D_SPCONV=spconv.tar.xz of tools/gpu/spconv_pack/pack.sh, or S3D_SITE=DIR)"; exit 2; }
# shellcheck disable=SC1091
. tools/gpu/device_env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
fail=0

# 1. tests (the shell test wants build/-style names: sam3d-mesh-decode, sam3d, tests/test_glb)
tests="test_op_sparse test_slat_dec test_mesh_decode test_glb"
[ "$QUICK" = 1 ] && tests="test_mesh_decode test_op_sparse"
for t in $tests; do
    [ -x "$BIN/tests/$t" ] || { echo "$t: not carried"; fail=1; continue; }
    S3D_REQUIRE_GPU=1 timeout 300 "$BIN/tests/$t" >"$OUT/$t.log" 2>&1
    rc=$?
    echo "$t: exit $rc; $(grep -c ' OK$\| OK \|^ok' "$OUT/$t.log") OK lines, $(grep -c FAIL "$OUT/$t.log") FAIL"
    grep -E "FAIL|cuda" "$OUT/$t.log" | grep -v "^\[" | head -40
    [ $rc = 0 ] || fail=1
done
S3D_REQUIRE_GPU=1 BUILD=$BIN timeout 300 bash tests/test_mesh_decode_cli.sh \
    >"$OUT/test_mesh_decode_cli.log" 2>&1 || fail=1
grep -E "^ok|^FAIL|mesh_decode: [0-9]+ voxels" "$OUT/test_mesh_decode_cli.log" | tail -12

# 2. full size against the official decoder
plugin() {  # plugin NAME ARGS...
    local name=$1; shift
    mkdir -p "$OUT/$name"
    PYTHONUNBUFFERED=1 timeout 1200 python3 tools/ref/plugin_mesh_decode.py --bin "$BIN" \
        --work "/tmp/mdd_$name" --out "$OUT/$name" --s3d .gl/ref/s3d --config-dir .gl/ref/hf \
        "$@" >"$OUT/$name/plugin.log" 2>&1
    local rc=$?
    echo "== plugin $name ($*): exit $rc"
    grep -vE "is_fx_tracing|\| INFO |^running:|^\[mesh_decode .* I .*(trunk [0-9]+ wide|SLAT decoder trunk)" \
        "$OUT/$name/plugin.log" | tail -60
    [ $rc = 0 ] || fail=1
}
# ab NAME ENV...: our stage on n30k's weights and fp16 latent with ENV, repeat REP
ab() {
    local name=$1; shift
    mkdir -p "/tmp/mdd_ab_$name"
    env "$@" timeout 180 "$BIN/sam3d-mesh-decode" --weights /tmp/mdd_n30k/slat_decoder_mesh.ckpt \
        --device cuda:0 --once /tmp/mdd_n30k/in_fp16 "/tmp/mdd_ab_$name" --param repeat="$REP" \
        >"$OUT/ab_$name.log" 2>&1 || { echo "ab $name: FAIL"; tail -5 "$OUT/ab_$name.log"; fail=1; }
    echo "== ours fp16, $*:"
    grep -vE "^\[mesh_decode .* I .*(output |loaded |SLAT decoder trunk)" "$OUT/ab_$name.log" | tail -40
}
# abmesh NAME WHAT: ab NAME's mesh against the default run's (plugin n30k, fp16)
abmesh() {
    python3 - "/tmp/mdd_ab_$1" /tmp/mdd_n30k/out_fp16_timed "$2" <<'PY' 2>&1 | tee -a "$OUT/ab_mesh.txt"
import sys
sys.path.insert(0, "tools/ref")
import mesh_compare, refutil
a = refutil.load_tensors(sys.argv[1] + "/mesh_decode.safetensors")[0]
b = refutil.load_tensors(sys.argv[2] + "/mesh_decode.safetensors")[0]
b["vertex_attrs"] = b["colors"]
print(f"mesh, {sys.argv[3]} vs the default (fp16):",
      mesh_compare.summary(mesh_compare.compare(a, b)))
PY
}
if [ "$QUICK" = 1 ]; then
    plugin n30k --voxels 30000 --precisions fp16 --time 5 --repeat "$REP"
    plugin n42k --voxels 42000 --precisions fp16 --time 2 --repeat "$REP" --peak-target
    if [ -f /tmp/mdd_n30k/slat_decoder_mesh.ckpt ]; then      # A/B last: cut first by a timeout
        ab taps S3D_MESH_SUBCONV=taps                 # timed (the profile's events off)
        ab igemm S3D_SPARSE_IGEMM=1
        abmesh igemm "implicit-GEMM sparse convs (S3D_SPARSE_IGEMM=1)"
        ab taps_prof S3D_MESH_SUBCONV=taps S3D_PROFILE=1
        ab igemm_prof S3D_SPARSE_IGEMM=1 S3D_PROFILE=1
        abmesh taps "the 27 child taps (S3D_MESH_SUBCONV=taps)"
        ab eager CUDA_MODULE_LOADING=EAGER
    fi
else
    plugin n30k --voxels 30000 --precisions fp16,fp32 --time 5 --repeat "$REP"
    plugin n42k --voxels 42000 --precisions fp16 --time 5 --repeat "$REP" --peak-target
    [ -n "$SLAT" ] && plugin chain --slat "$SLAT" --precisions fp16,fp32 --time 5 --repeat "$REP"
fi
tar -czf /tmp/mesh_decode_results.tar.gz -C "$OUT" . && mv /tmp/mesh_decode_results.tar.gz "$OUT/"
echo "mesh_decode_full: $([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
