#!/usr/bin/env python3
"""GPU parity + benchmark of the cond stage (sam3d-cond) against the official EmbedderFuser, both
variants, full size (released config, random weights), on a real example image: a plug-in over
tools/ref/full_parity.py that fixes the cond entries for what sam3d-cond reads and writes
(docs/formats.md "cond": the SS inputs include pointmap_scale/shift, the outputs are named
cond_ss / cond_slat) and runs fp16 and fp32 in one go.

One command on the GPU machine (after the set-up in full_parity.py's docstring: wheels, .ref,
tests/data/human_object, `make CUDA_ARCH=90 build/sam3d-cond`):

  python3 tools/ref/plugin_cond.py --bin build --work /tmp/s3d-cond

It prints, per variant and precision, the parity table (relative error of cond vs the official
module under the same autocast), the official forward's median time (CUDA events, 2 warm-up, 5
timed) and torch.cuda.max_memory_allocated, and our stage's wall time and the arena peak it logs
("peak" in the stage's status line). Budget: ~4 minutes on one H200 (two full-size fusers are
built twice, ~2.5 GB of random weights each).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import full_parity  # noqa: E402
import refutil  # noqa: E402

SIDE = ["pointmap_scale", "pointmap_shift"]
KEYS = ["image", "rgb_image", "mask", "rgb_image_mask", "pointmap", "rgb_pointmap"] + SIDE


def cond_inputs(ref, in_dir):
    """--once input of sam3d-cond: the fuser's keyword inputs (1,C,S,S) f32 and, for SS, the
    point-map normalisation's scale/shift (1,3), which the stage passes through."""
    refutil.save_tensors(os.path.join(in_dir, "cond_input.safetensors"),
                         {k: ref[k] for k in KEYS if k in ref})


def patch_stages():
    for v in ("ss", "slat"):
        spec = full_parity.STAGES[f"cond-{v}"]
        spec["inputs"] = cond_inputs
        spec["output"] = "cond.safetensors"
        spec["map"] = {f"cond_{v}": "cond"}
        spec["final"] = "cond"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    patch_stages()
    base = ["--stages", "cond-ss,cond-slat", "--time", "5", "--no-acts"]
    fails = 0
    for prec in ("fp16", "fp32"):
        work = []
        if "--work" not in argv:
            work = ["--work", f"/tmp/s3d-cond-{prec}"]
        print(f"\n===== cond, {prec} =====", flush=True)
        fails += full_parity.main(base + ["--precision", prec] + work + argv) != 0
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
