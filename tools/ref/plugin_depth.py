#!/usr/bin/env python3
"""GPU parity + benchmark of the depth stage (sam3d-depth) against the official MoGe v1 module,
full size (moge-vitl model_config, random weights written as model.pt), on a real example image:
a plug-in over tools/ref/full_parity.py (its reference() builds, dumps and times the official
MoGeModel.infer exactly as SAM 3D calls it), with the depth comparison done here because our
stage takes PNG paths (params image/mask) and writes the MoGe point map as `points` (H,W,3)
(docs/formats.md "depth").

One command on the GPU machine (after the set-up in full_parity.py's docstring: wheels, .ref,
examples/human_object, `make CUDA_ARCH=90 build/sam3d-depth`):

  python3 tools/ref/plugin_depth.py --bin build --work /tmp/s3d-depth

Per precision (fp16 = the official autocast, then fp32), against the official module in the same
precision, over pixels valid in both:
  - point map relative L2 error   <= 1e-3 (fp32), 1e-2 (fp16)       (issue 4)
  - validity mask: at most 0.1% of the pixels differ
  - focal and shift: relative error <= 1e-3 (recover_focal_shift's values, captured)
and the timing: the official infer() median (CUDA events, 2 warm-up, --time runs) and
torch.cuda.max_memory_allocated; ours: the median of --repeat warm runs of MoGe inside one
--once process (the stage's `repeat` param: forward + host post-processing, image already
decoded), and the stage's device arena peak (weights included, as torch's number includes them).
Then a 6000x4500 upscale of the example through our stage (fp16): its device peak must stay
within the fp16 weights + 0.5 GiB (issue 4). Budget: ~3 minutes on one H200.
Exit status 0 when every check passes.
"""
import argparse
import os
import re
import subprocess
import sys
import time
from types import SimpleNamespace

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import full_parity  # noqa: E402
import refutil  # noqa: E402

THRESH = {"fp32": 1e-3, "fp16": 1e-2}
FOCAL_SHIFT_REL = 1e-3
MASK_FRAC = 1e-3
BUDGET_EXTRA = 0.5 * 2**30


def capture_focal_shift(moge_path):
    """Wrap moge.model.v1.recover_focal_shift (what infer() calls) to record (focal, shift)."""
    refutil.add_ref_paths(moge=moge_path)
    import moge.model.v1 as v1
    seen = []
    orig = v1.recover_focal_shift

    def wrapped(*a, **k):
        focal, shift = orig(*a, **k)
        seen.append((float(focal.flatten()[0]), float(shift.flatten()[0])))
        return focal, shift
    v1.recover_focal_shift = wrapped
    return seen


def write_inputs(in_dir, rgb, mask):
    """The --once inputs: the image and mask as PNG files (what the pipeline passes)."""
    from PIL import Image
    os.makedirs(in_dir, exist_ok=True)
    ip, mp = os.path.join(in_dir, "image.png"), os.path.join(in_dir, "mask.png")
    Image.fromarray(rgb).save(ip, compress_level=1)          # lossless; level 1: fast at 27 MP
    Image.fromarray(mask.astype("uint8") * 255).save(mp, compress_level=1)
    return ip, mp


def run_ours(args, weights, in_dir, out_dir, ip, mp, precision, repeat):
    """Run sam3d-depth --once; returns (ok, log text, outputs dict)."""
    exe = os.path.join(args.bin, "sam3d-depth")
    os.makedirs(out_dir, exist_ok=True)
    cmd = [exe, "--weights", weights, "--device", "cpu" if args.device == "cpu" else "cuda:0",
           "--once", in_dir, out_dir,
           "--param", f"image={ip}", "--param", f"mask={mp}", "--param", f"repeat={repeat}"]
    if precision == "fp32":
        cmd += ["--precision", "fp32"]
    print("running:", " ".join(cmd), flush=True)
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    log = r.stderr
    print("\n".join(l for l in log.splitlines() if "depth:" in l or " E " in l))
    print(f"our sam3d-depth: exit {r.returncode}, {time.perf_counter() - t:.2f} s wall (cold, "
          f"incl. loading)")
    if r.returncode != 0:
        return False, log, None
    outs, _ = refutil.load_tensors(os.path.join(out_dir, "depth.safetensors"))
    return True, log, outs


def log_number(log, pattern):
    m = re.search(pattern, log)
    return float(m.group(1)) if m else float("nan")


def rel_err(a, b):
    """|a - b| / |b|; 0 when equal (MoGe returns shift 0 when its solve finds no valid
    points), inf when only b is 0."""
    return 0.0 if a == b else abs(a - b) / abs(b) if b else float("inf")


def compare(ours, ref, official_fs, precision):
    """Checks of issue 4; returns (ok, lines, row values)."""
    import torch
    pts = ours["points"].float()                           # (H,W,3), NaN invalid
    valid = ours["valid"].bool()
    rpts = ref["pointmap"].float().permute(1, 2, 0)        # (3,H,W) -> (H,W,3)
    rvalid = ref["mask"].bool()
    both = valid & rvalid
    d = (pts[both] - rpts[both]).double()
    rel = float(d.norm() / rpts[both].double().norm())
    maxabs = float(d.abs().max()) if d.numel() else float("nan")
    mdiff = int((valid != rvalid).sum())
    frac = mdiff / valid.numel()
    nan_ok = bool(torch.isnan(pts[~valid]).all()) and bool(torch.isfinite(pts[valid]).all())
    focal, shift = float(ours["focal"][0]), float(ours["shift"][0])
    rf, rs = official_fs
    ef, es = rel_err(focal, rf), rel_err(shift, rs)
    checks = [
        (f"point map rel L2 {rel:.2e} (max abs {maxabs:.2e}) over {int(both.sum())} pixels",
         rel <= THRESH[precision], f"<= {THRESH[precision]:g}"),
        (f"mask: {mdiff} of {valid.numel()} pixels differ ({100 * frac:.4f}%)",
         frac <= MASK_FRAC, f"<= {100 * MASK_FRAC:g}%"),
        (f"focal {focal:.7g} vs {rf:.7g} (rel {ef:.2e})", ef <= FOCAL_SHIFT_REL,
         f"<= {FOCAL_SHIFT_REL:g}"),
        (f"shift {shift:.7g} vs {rs:.7g} (rel {es:.2e})", es <= FOCAL_SHIFT_REL,
         f"<= {FOCAL_SHIFT_REL:g}"),
        ("points NaN exactly where invalid", nan_ok, ""),
    ]
    lines = [f"  {'ok  ' if ok else 'FAIL'} {what} {lim}" for what, ok, lim in checks]
    return all(ok for _, ok, _ in checks), lines, (rel, maxabs)


def big_image(args, weights, rgb, mask):
    """The example upscaled to --big (WxH) through our stage in fp16: device peak vs budget."""
    from PIL import Image
    W, H = (int(v) for v in args.big.split("x"))
    big_rgb = Image.fromarray(rgb).resize((W, H), Image.BICUBIC)
    big_mask = Image.fromarray(mask.astype("uint8") * 255).resize((W, H), Image.NEAREST)
    import numpy as np
    d = os.path.join(args.work, "big")
    ip, mp = write_inputs(os.path.join(d, "in"), np.array(big_rgb), np.array(big_mask) > 0)
    ok, log, outs = run_ours(args, weights, os.path.join(d, "in"), os.path.join(d, "out"), ip, mp,
                             "fp16", 3)
    if not ok:
        return False, f"| depth {W}x{H} | ours | fp16 | failed |"
    wmb = log_number(log, r"([0-9.]+) MB of F16 weights")
    peak = log_number(log, r"device peak ([0-9.]+) MiB")
    ms = log_number(log, r"MoGe ([0-9.]+) ms median")
    limit = wmb * 1e6 / 2**20 + BUDGET_EXTRA / 2**20
    good = peak <= limit and tuple(outs["points"].shape) == (H, W, 3)
    print(f"  {'ok  ' if good else 'FAIL'} {W}x{H}: device peak {peak:.0f} MiB <= fp16 weights "
          f"{wmb / 1.048576:.0f} MiB + 512 MiB = {limit:.0f} MiB; MoGe {ms:.1f} ms median")
    return good, (f"| depth {W}x{H} | sam3d | fp16 | {ms:.1f} ms (median of 3, incl. host "
                  f"post-processing) | {peak / 1024:.2f} GiB |")


def cross_check(fs, args, pm=None):
    """Focal/shift (and, with pm {key: ((H,W,3) points, (H,W) valid)}, the point map over pixels
    valid in both) of every run against every other, relative, so a reader sees how far the
    official module's own fp16 result sits from its fp32 one next to ours. Printed as one
    'focal-shift' line per pair, for grepping over several examples/seeds."""
    keys = [k for k in (("official", "fp32"), ("official", "fp16"), ("sam3d", "fp32"),
                        ("sam3d", "fp16")) if k in fs]
    ex = os.path.basename(os.path.normpath(args.example))
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            (fa, sa), (fb, sb) = fs[b], fs[a]
            pts = ""
            if pm and a in pm and b in pm:
                (pa, va), (pb, vb) = pm[a], pm[b]
                both = va & vb
                d = (pb[both] - pa[both]).double().norm() / pa[both].double().norm()
                pts = f", point map rel {float(d):.2e}"
            print(f"focal-shift {ex} seed {args.seed}: {b[0]}-{b[1]} vs {a[0]}-{a[1]}: focal "
                  f"rel {rel_err(fa, fb):.2e}, shift rel {rel_err(sa, sb):.2e}{pts} "
                  f"(shift {sa:.7g} vs {sb:.7g})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build")
    ap.add_argument("--work", default="/tmp/s3d-depth")
    ap.add_argument("--example", default=os.path.join(ROOT, "examples/human_object"))
    ap.add_argument("--moge", default=os.path.join(ROOT, ".ref/MoGe"))
    ap.add_argument("--size", choices=["tiny", "full"], default="full")
    ap.add_argument("--precisions", default="fp16,fp32")
    ap.add_argument("--time", type=int, default=10, help="timed official runs")
    ap.add_argument("--repeat", type=int, default=10, help="timed runs of our stage")
    ap.add_argument("--big", default="6000x4500", help="WxH of the large-image check, or 0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu: a local check of this script (--size tiny --precisions fp32)")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.example):
        print(f"error: example {args.example} not found (HINT: --example DIR with image.png and 0.png; "
              f"the repo ships examples/human_object)", file=sys.stderr)
        return 2
    if not os.access(os.path.join(args.bin, "sam3d-depth"), os.X_OK):
        print(f"error: {args.bin}/sam3d-depth not built (HINT: make CUDA_ARCH=90 "
              f"{args.bin}/sam3d-depth)", file=sys.stderr)
        return 2
    seen = capture_focal_shift(args.moge)
    rgb, mask = refutil.load_example(args.example)
    if args.size == "tiny":              # dump_moge's tiny input: resized to 96 wide (bilinear)
        import dump_moge
        import numpy as np
        from PIL import Image
        W = dump_moge.TINY_IMAGE_WIDTH
        H = round(rgb.shape[0] * W / rgb.shape[1])
        rgb = np.array(Image.fromarray(rgb).resize((W, H), Image.BILINEAR))
        mask = np.array(Image.fromarray(mask.astype("uint8")).resize((W, H), Image.NEAREST)) > 0
    fails, rows, timings = 0, [], []
    weights = None
    fs = {}                              # (who, precision) -> (focal, shift)
    pm = {}                              # (who, precision) -> (points (H,W,3), valid (H,W))
    for prec in args.precisions.split(","):
        print(f"\n===== depth, {prec} =====", flush=True)
        out_dir = os.path.join(args.work, prec)
        ns = SimpleNamespace(size=args.size, example=args.example, device=args.device,
                             precision=prec,
                             seed=args.seed, no_acts=True, moge=args.moge, time=args.time,
                             warmup=2)
        del seen[:]
        ref, timing = full_parity.reference("depth", full_parity.STAGES["depth"], ns, out_dir)
        official_fs = seen[0]                              # the dump run, before the timed ones
        fs[("official", prec)] = official_fs
        pm[("official", prec)] = (ref["pointmap"].float().permute(1, 2, 0), ref["mask"].bool())
        timings.append(timing)
        weights = os.path.join(out_dir, "model.pt")
        in_dir = os.path.join(out_dir, "once_in")
        ip, mp = write_inputs(in_dir, rgb, mask)
        ok, log, outs = run_ours(args, weights, in_dir, os.path.join(out_dir, "once_out"), ip, mp,
                                 prec, args.repeat)
        if not ok:
            fails += 1
            continue
        fs[("sam3d", prec)] = (float(outs["focal"][0]), float(outs["shift"][0]))
        pm[("sam3d", prec)] = (outs["points"].float(), outs["valid"].bool())
        good, lines, (rel, maxabs) = compare(outs, ref, official_fs, prec)
        print("\n".join(lines))
        fails += not good
        ms = log_number(log, r"MoGe ([0-9.]+) ms median")
        peak = log_number(log, r"device peak ([0-9.]+) MiB")
        import compare as cmpmod
        rows.append(f"| depth | {prec} | {args.size} | {rel:.2e} | {maxabs:.2e} | "
                    f"{time.strftime('%Y-%m-%d')} | {cmpmod.git_commit()} |")
        timings.append(f"| depth | sam3d | {prec} | {args.size} | {ms:.1f} ms (median of "
                       f"{args.repeat}) | {peak / 1024:.2f} GiB |")
    if args.big != "0" and weights and args.device == "cuda":
        fp16_w = os.path.join(args.work, "fp16", "model.pt")
        good, row = big_image(args, fp16_w if os.path.exists(fp16_w) else weights, rgb, mask)
        fails += not good
        timings.append(row)
    cross_check(fs, args, pm)
    print("\nparity rows (docs/parity.md):")
    print("\n".join(rows) or "(none)")
    print("\ntimings (docs/performance.md):")
    print("\n".join(t for t in timings if t) or "(none)")
    print(f"\n{'PASS' if not fails else f'FAIL ({fails})'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
