#!/usr/bin/env bash
# test_ref_outputs.sh - the export fixture (tests/fixtures/outputs_tiny) is what the official
# code makes: tools/ref/dump_outputs.py is run again into a temporary folder and every file
# must equal the committed one (safetensors tensor by tensor, the PLY and GLB files byte
# for byte). Needs the reference checkout (.ref/sam-3d-objects), python3 with torch,
# safetensors, hydra, plyfile, trimesh, and pytorch3d: installed, or a source checkout of
# the commit sam-3d-objects pins (75ebeeae) named by S3D_PYTORCH3D=DIR (the folder holding
# pytorch3d/). Skipped (77) without them.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
p3d=${S3D_PYTORCH3D:-}
if [ ! -d .ref/sam-3d-objects ]; then
    echo "SKIP: the reference checkout .ref/sam-3d-objects is not there"; exit 77; fi
if ! PYTHONPATH=${p3d:+$p3d:}${PYTHONPATH:-} python3 -c \
    "import torch, safetensors, hydra, plyfile, trimesh, pytorch3d.transforms" 2>/dev/null; then
    echo "SKIP: python3 with torch, safetensors, hydra, plyfile, trimesh and pytorch3d is needed" \
         "(pytorch3d: S3D_PYTORCH3D=DIR of a source checkout at 75ebeeae)"
    exit 77
fi
test_tmp
fx=tests/fixtures/outputs_tiny
if ! python3 tools/ref/dump_outputs.py ${p3d:+--pytorch3d "$p3d"} --out "$tmp/o" >"$tmp/log" 2>&1; then
    bad "dump_outputs.py failed"; tail -20 "$tmp/log"; exit 1
fi
python3 - "$fx" "$tmp/o" <<'PY'
import os, sys
from safetensors.numpy import load_file
import numpy as np
a, b = sys.argv[1:3]
bad = 0
for root, _, files in os.walk(a):
    for f in sorted(files):
        if f in ("README.md", "meta.json"):
            continue
        pa = os.path.join(root, f); pb = os.path.join(b, os.path.relpath(pa, a))
        if f.endswith(".safetensors"):
            ta, tb = load_file(pa), load_file(pb)
            same = ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)
        else:
            same = open(pa, "rb").read() == open(pb, "rb").read()
        print(("ok   " if same else "FAIL ") + os.path.relpath(pa, a) + " regenerated from the official code")
        bad |= not same
sys.exit(bad)
PY
