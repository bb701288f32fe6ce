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
module under the same autocast), then the rows for docs/performance.md: the official forward's
median (CUDA events, 2 warm-up, --repeat timed) and torch.cuda.max_memory_allocated next to our
stage's warm median over --repeat forwards (sam3d-cond param repeat; the first forward is the
cold one and does not move the median), its weight-loading time and its device peak (arena
high-water: weights + activations, the same quantity as max_memory_allocated). Budget: ~4
minutes on one H200 (two full-size fusers are built twice, ~2.5 GB of random weights each).
S3D_PROFILE=1 in the environment also prints our per-op table (kernels/cuda/prof.cu).

  python3 tools/ref/plugin_cond.py --bin build --repeat 10      (default 10)
"""
import os
import re
import subprocess
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


class TeeRun:
    """Stands in for the subprocess module inside full_parity: our stage's stderr is
    captured (and echoed) so that its timing lines can be read; other calls pass through."""

    def __init__(self):
        self.logs = []

    def run(self, cmd, **kw):
        if "capture_output" in kw or "stderr" in kw:
            return subprocess.run(cmd, **kw)
        r = subprocess.run(cmd, stderr=subprocess.PIPE, text=True, **kw)
        sys.stderr.write(r.stderr)
        self.logs.append(r.stderr)
        return r

    def __getattr__(self, name):
        return getattr(subprocess, name)


def ours_from_log(log):
    """(warm median ms, load ms, device peak MiB) from a sam3d-cond log, None where absent."""
    med = re.search(r"cond: forward ([0-9.]+) ms median of (\d+)", log)
    load = re.search(r"loaded \S+ in ([0-9.]+) ms", log)
    peak = re.search(r"device peak ([0-9.]+) MiB", log)
    return (float(med.group(1)) if med else None, int(med.group(2)) if med else 0,
            float(load.group(1)) if load else None, float(peak.group(1)) if peak else None)


def official_from_row(row):
    """(median ms, peak GiB) from full_parity's official timing row."""
    m = re.search(r"\| ([0-9.]+) ms \(median of \d+\) \| ([0-9.]+) GiB", row or "")
    return (float(m.group(1)), float(m.group(2))) if m else (None, None)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    repeat = 10
    if "--repeat" in argv:
        i = argv.index("--repeat")
        repeat = int(argv[i + 1])
        del argv[i:i + 2]
    patch_stages()
    tee = TeeRun()
    full_parity.subprocess = tee
    official = {}
    reference = full_parity.reference

    def reference_kept(stage, spec, args, out_dir):
        ref, timing = reference(stage, spec, args, out_dir)
        official[(stage, args.precision)] = timing
        return ref, timing

    full_parity.reference = reference_kept
    base = ["--stages", "cond-ss,cond-slat", "--time", str(repeat), "--no-acts",
            "--stage-args", f"--param repeat={repeat}"]
    fails, perf = 0, []
    for prec in ("fp16", "fp32"):
        work = []
        if "--work" not in argv:
            work = ["--work", f"/tmp/s3d-cond-{prec}"]
        print(f"\n===== cond, {prec} =====", flush=True)
        tee.logs.clear()
        fails += full_parity.main(base + ["--precision", prec] + work + argv) != 0
        for stage, log in zip(("cond-ss", "cond-slat"), tee.logs + [""] * 2):
            o_ms, o_gib = official_from_row(official.get((stage, prec)))
            ms, n, load, peak = ours_from_log(log)
            fmt = lambda v, f: "n/a" if v is None else f % v  # noqa: E731
            gib = None if peak is None else peak / 1024
            perf.append(f"| {stage} | {prec} | {fmt(o_ms, '%.1f')} | {fmt(ms, '%.1f')} | "
                        f"{fmt(o_ms / ms if o_ms and ms else None, '%.2fx')} | "
                        f"{fmt(o_gib, '%.2f')} | {fmt(gib, '%.2f')} | "
                        f"{fmt(load, '%.0f')} | {repeat} / {n} |")
    print("\nperformance rows (docs/performance.md, cond section):")
    print("| stage | precision | official ms (median) | ours ms (warm median) | speed-up | "
          "official peak GiB | our peak GiB (arenas) | our load ms | repeats (official / ours) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(perf))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
