#!/usr/bin/env python3
"""Full-size parity and timing driver for the conditioning side, run on the GPU machine.

For each selected stage: build the official module with the released configuration, write
full-size random weights in the official container to --work, run the official forward on a
real example image and dump it (dump_moge.py / dump_cond.py); time the official forward (CUDA
events, warm-up, median) and report torch.cuda.max_memory_allocated; then, when --bin names our
build directory and the stage executable exists there, run it with --once on an input directory
built from the dump and compare (compare.py), printing the table and a docs/parity.md row.

  # reference only (works before our stages exist)
  python3 tools/ref/full_parity.py --stages depth,cond-ss,cond-slat --work /tmp/parity \
      --example examples/human_object --device cuda --precision fp16 --time 5
  # with our stages
  python3 tools/ref/full_parity.py ... --bin build
  # op-level checks only (our op tests, GPU)
  python3 tools/ref/full_parity.py --ops-only --bin build
  # on this CPU machine, tiny configuration, end to end
  python3 tools/ref/full_parity.py --size tiny --work /tmp/p --example examples/human_object

On the GPU machine (device README "Notes"): run tools/ref/fetch_wheels.sh here, copy the example
from examples/ (tracked), and carry
[".whl", ".ref", "build"]; start the command with the wheel install line printed by
fetch_wheels.sh. A stage plug-in is an entry of STAGES: the executable name, a function that
writes the --once input directory from the reference dump, the output file our stage writes,
and a name map {our name: reference name}.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import refutil  # noqa: E402
import compare  # noqa: E402


# ---------------------------------------------------------------------------------------------
# stage plug-ins

def depth_inputs(ref, in_dir):
    """--once input of sam3d-depth: image.safetensors {image: (3,H,W) f32 in [0,1]}."""
    refutil.save_tensors(os.path.join(in_dir, "image.safetensors"), {"image": ref["image"]})


def cond_inputs(ref, in_dir):
    """--once input of sam3d-cond: cond_input.safetensors with the fuser keyword inputs
    (image, rgb_image, mask, rgb_image_mask and for SS pointmap, rgb_pointmap), (1,C,S,S) f32."""
    keys = ["image", "rgb_image", "mask", "rgb_image_mask", "pointmap", "rgb_pointmap"]
    refutil.save_tensors(os.path.join(in_dir, "cond_input.safetensors"),
                         {k: ref[k] for k in keys if k in ref})


STAGES = {
    "depth": {"dump": "moge", "exe": "sam3d-depth", "weights": "model.pt",
              "inputs": depth_inputs, "output": "depth.safetensors", "map": {},
              "final": "pointmap"},
    "cond-ss": {"dump": "cond", "variant": "ss", "exe": "sam3d-cond",
                "weights": "ss_generator.ckpt", "inputs": cond_inputs,
                "output": "cond.safetensors", "map": {}, "final": "cond"},
    "cond-slat": {"dump": "cond", "variant": "slat", "exe": "sam3d-cond",
                  "weights": "slat_generator.ckpt", "inputs": cond_inputs,
                  "output": "cond.safetensors", "map": {}, "final": "cond"},
}


# ---------------------------------------------------------------------------------------------

def cuda_time(fn, warmup, iters):
    """Median wall time (ms) of fn() over iters runs after warmup runs, with CUDA events when
    CUDA is available (perf_counter otherwise), and the peak allocated bytes."""
    import torch
    cuda = torch.cuda.is_available()
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iters):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    peak = torch.cuda.max_memory_allocated() if cuda else 0
    return statistics.median(times), peak


def reference(stage, spec, args, out_dir):
    """Build, dump and optionally time the official module. Returns (ref tensors, timing row)."""
    import torch
    common = ["--size", args.size, "--example", args.example, "--device", args.device,
              "--precision", args.precision, "--seed", str(args.seed), "--out", out_dir]
    if args.no_acts:
        common.append("--no-acts")
    if spec["dump"] == "moge":
        import dump_moge
        model, image = dump_moge.run(dump_moge.parse(common + ["--moge", args.moge]))
        fn = lambda: model.infer(image.to(args.device), force_projection=False,  # noqa: E731
                                 use_fp16=args.precision == "fp16")
    else:
        import dump_cond
        cargs = common + ["--variant", spec["variant"], "--s3d", args.s3d, "--dinov2", args.dinov2]
        if args.config_dir:
            cargs += ["--config", os.path.join(args.config_dir, f"{spec['variant']}_generator.yaml")]
        fuser, inputs = dump_cond.run(dump_cond.parse(cargs))
        dev = torch.device(args.device)
        inputs = {k: v.to(dev) for k, v in inputs.items()}
        amp = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]

        def fn():
            with torch.no_grad(), torch.autocast(dev.type, dtype=amp or torch.float32,
                                                 enabled=amp is not None):
                return fuser(**inputs)
    timing = None
    if args.time:
        ms, peak = cuda_time(fn, args.warmup, args.time)
        timing = (f"| {stage} | official PyTorch | {args.precision} | {args.size} | "
                  f"{ms:.1f} ms (median of {args.time}) | {peak / 2**30:.2f} GiB |")
        print(f"official {stage}: {ms:.1f} ms median, peak allocated {peak / 2**30:.2f} GiB")
    ref, _ = refutil.load_tensors(os.path.join(out_dir, "ref.safetensors"))
    return ref, timing


def ours(stage, spec, args, ref, out_dir):
    """Run our stage with --once on inputs built from the reference dump; compare. Returns
    (ok, parity row) or (None, reason) when our stage is not available."""
    exe = os.path.join(args.bin, spec["exe"]) if args.bin else None
    if not exe or not os.access(exe, os.X_OK):
        return None, f"our {spec['exe']} not found in {args.bin!r}: reference only"
    in_dir, res_dir = os.path.join(out_dir, "once_in"), os.path.join(out_dir, "once_out")
    os.makedirs(in_dir, exist_ok=True)
    os.makedirs(res_dir, exist_ok=True)
    spec["inputs"](ref, in_dir)
    cmd = [exe, "--weights", os.path.join(out_dir, spec["weights"]), "--device",
           "cuda:0" if args.device.startswith("cuda") else "cpu", "--once", in_dir, res_dir]
    if args.precision == "fp32":
        cmd += ["--precision", "fp32"]
    if args.stage_args:
        cmd += args.stage_args.split()
    print("running:", " ".join(cmd), flush=True)
    t = time.perf_counter()
    r = subprocess.run(cmd)
    print(f"our {spec['exe']}: exit {r.returncode}, {time.perf_counter() - t:.2f} s wall")
    if r.returncode != 0:
        return False, f"our {spec['exe']} exited {r.returncode}"
    mine, _ = refutil.load_tensors(os.path.join(res_dir, spec["output"]))
    ref_to_ours = {v: k for k, v in spec["map"].items()}
    ok, rows = compare.run_compare(mine, ref, args.precision, ref_to_ours)
    return ok, compare.parity_row(stage, args.precision, args.size, rows, spec["final"])


def run_ops(args):
    """Run our op tests (build/tests/test_op*) and print one line each; returns failures."""
    tests = sorted(t for t in glob.glob(os.path.join(args.bin or "build", "tests", args.ops_glob))
                   if os.path.isfile(t) and os.access(t, os.X_OK) and "." not in os.path.basename(t))
    if not tests:
        print(f"no op tests match {args.ops_glob} under {args.bin or 'build'}/tests")
        return 1
    fails = 0
    for t in tests:
        r = subprocess.run([t], capture_output=True, text=True)
        status = {0: "PASS", 77: "SKIP"}.get(r.returncode, f"FAIL ({r.returncode})")
        fails += status.startswith("FAIL")
        last = (r.stdout + r.stderr).strip().splitlines()[-1:] or [""]
        print(f"{os.path.basename(t):40s} {status:10s} {last[0][:100]}")
    return fails


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", default="depth,cond-ss,cond-slat")
    ap.add_argument("--size", choices=["tiny", "full"], default="full")
    ap.add_argument("--work", default="/tmp/s3d-parity")
    ap.add_argument("--s3d", default=os.path.join(ROOT, ".ref/sam-3d-objects"))
    ap.add_argument("--moge", default=os.path.join(ROOT, ".ref/MoGe"))
    ap.add_argument("--dinov2", default=os.path.join(ROOT, ".ref/dinov2"))
    ap.add_argument("--config-dir", default=os.path.join(ROOT, ".ref/Fast-SAM3D/checkpoints/hf"))
    ap.add_argument("--example", default=os.path.join(ROOT, "examples/human_object"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", choices=["fp32", "fp16"], default="fp16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-acts", action="store_true", help="dump only inputs and outputs")
    ap.add_argument("--time", type=int, default=0, help="timed iterations of the official forward")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bin", help="our build directory (sam3d-<stage> executables)")
    ap.add_argument("--stage-args", help="extra arguments for our stage executable")
    ap.add_argument("--ops-only", action="store_true", help="only run our op tests")
    ap.add_argument("--ops", action="store_true", help="also run our op tests")
    ap.add_argument("--ops-glob", default="test_op*")
    ap.add_argument("--parity-out", help="append parity rows to this file")
    args = ap.parse_args(argv)
    if args.ops_only:
        return 1 if run_ops(args) else 0
    if not os.path.isdir(args.example):
        print(f"error: example {args.example} not found (HINT: --example DIR with image.png and 0.png; "
              f"the repo ships examples/human_object)", file=sys.stderr)
        return 2
    failed = 0
    rows, timings = [], []
    for stage in args.stages.split(","):
        if stage not in STAGES:
            print(f"error: unknown stage {stage} (known: {', '.join(STAGES)})", file=sys.stderr)
            return 2
        spec = STAGES[stage]
        out_dir = os.path.join(args.work, stage)
        print(f"=== {stage} ({args.size}, {args.precision}, {args.device})", flush=True)
        ref, timing = reference(stage, spec, args, out_dir)
        if timing:
            timings.append(timing)
        ok, row = ours(stage, spec, args, ref, out_dir)
        if ok is None:
            print(row)
            continue
        failed += not ok
        rows.append(row)
        print(row)
    if args.ops:
        failed += run_ops(args)
    if rows or timings:
        print("\nparity rows (docs/parity.md):")
        print("\n".join(rows) or "(none: our stages not run)")
        print("\nofficial timings (docs/performance.md):")
        print("\n".join(timings) or "(none: --time 0)")
        if args.parity_out and rows:
            with open(args.parity_out, "a") as f:
                f.write("\n".join(rows) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
