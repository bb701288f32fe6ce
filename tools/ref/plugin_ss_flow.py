#!/usr/bin/env python3
"""Full-size parity + timing of sam3d-ss-flow against the official SS flow sampler (the MoT DiT
of ss_generator.yaml with seeded random weights written as ss_generator.ckpt), on the GPU.

Per precision: tools/ref/dump_ss_flow.py --size full builds, saves and runs the official
generator (one evaluation + the whole 25-step sampler with CFG 7, under the pipeline's fp16
autocast for fp16; --time N more sampler runs timed), then our stage runs --once on the same
condition tokens and the official noise (noise.<latent> inputs) and its five outputs are
compared with the official final latents (tools/ref/compare.py tolerances).

  python3 tools/ref/plugin_ss_flow.py --bin build --work /tmp/ssf --s3d .gl/ref/s3d \
      --config .gl/ref/hf/ss_generator.yaml [--precisions fp16,fp32] [--time 3] [--repeat 3]

Prints the comparison, docs/parity.md rows and docs/performance.md rows (official: median of
--time sampler runs and torch's peak; ours: the stage's warm median of --repeat runs and its
device arena peak). Exit 0 when every comparison passes. Budget: ~2 min per precision on one
H200 (building and initialising 960 M parameters on the CPU dominates).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402
import refutil  # noqa: E402

LATENTS = ["6drotation_normalized", "scale", "shape", "translation", "translation_scale"]
OURS = {f"final.{k}": ("shape_latent" if k == "shape" else k) for k in LATENTS}


def log_number(log, pattern):
    m = re.search(pattern, log)
    return float(m.group(1)) if m else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build")
    ap.add_argument("--work", default="/tmp/s3d-ssf")
    ap.add_argument("--s3d", default=".ref/sam-3d-objects")
    ap.add_argument("--config", default=".ref/Fast-SAM3D/checkpoints/hf/ss_generator.yaml")
    ap.add_argument("--precisions", default="fp16,fp32")
    ap.add_argument("--size", choices=["tiny", "full"], default="full")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--time", type=int, default=3, help="timed official sampler runs")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of our stage")
    args = ap.parse_args(argv)
    exe = os.path.join(args.bin, "sam3d-ss-flow")
    if not os.access(exe, os.X_OK):
        print(f"error: {exe} not built (HINT: make CUDA_ARCH=90 {exe})", file=sys.stderr)
        return 2
    fails, rows, timings = 0, [], []
    for prec in args.precisions.split(","):
        print(f"\n===== ss_flow, {prec} =====", flush=True)
        d = os.path.join(args.work, prec)
        cmd = [sys.executable, os.path.join(HERE, "dump_ss_flow.py"), "--size", args.size,
               "--device", args.device, "--precision", prec, "--out", d, "--s3d", args.s3d,
               "--config", args.config, "--time", str(args.time if args.device == "cuda" else 0)]
        print("running:", " ".join(cmd), flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True)
        print("\n".join(l for l in (r.stdout + r.stderr).splitlines()
                        if "official sampler" in l or "built" in l or "rror" in l))
        if r.returncode != 0:
            print((r.stdout + r.stderr)[-3000:])
            fails += 1
            continue
        sm, _ = refutil.load_tensors(os.path.join(d, "sampler.safetensors"))
        in_dir, out_dir = os.path.join(d, "once_in"), os.path.join(d, "once_out")
        os.makedirs(in_dir, exist_ok=True)
        os.makedirs(out_dir, exist_ok=True)
        inputs = {"cond_ss": sm["cond"]}
        inputs.update({f"noise.{k}": sm[f"noise.{k}"] for k in LATENTS})
        refutil.save_tensors(os.path.join(in_dir, "input.safetensors"), inputs)
        cmd = [exe, "--weights", os.path.join(d, "ss_generator.ckpt"), "--device",
               "cpu" if args.device == "cpu" else "cuda:0", "--once", in_dir, out_dir,
               "--param", f"repeat={args.repeat}"]
        if prec == "fp32":
            cmd += ["--precision", "fp32"]
        print("running:", " ".join(cmd), flush=True)
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True)
        print("\n".join(l for l in r.stderr.splitlines() if " E " in l or "ss_flow:" in l))
        print(f"our sam3d-ss-flow: exit {r.returncode}, {time.perf_counter() - t:.2f} s wall "
              f"(cold, incl. loading)")
        if r.returncode != 0:
            fails += 1
            continue
        outs = [f for f in os.listdir(out_dir) if f.endswith(".safetensors")]
        ours, _ = refutil.load_tensors(os.path.join(out_dir, outs[0]))
        ref = refutil.OrderedDict((k, sm[k]) for k in OURS)
        ok, crow = compare.run_compare(ours, ref, prec, OURS, require_all=True)
        fails += not ok
        rows.append(compare.parity_row("ss_flow (25 steps)", prec, args.size, crow, "final.shape"))
        with open(os.path.join(d, "meta.json")) as f:
            meta = json.load(f)
        off = meta.get("official_sampler_ms") or meta.get("sampler", {}).get("official_sampler_ms")
        opeak = meta.get("official_peak_bytes") or meta.get("sampler", {}).get("official_peak_bytes", 0)
        if off:
            off = sorted(off)[len(off) // 2]
            timings.append(f"| ss_flow sampler (44 evals) | PyTorch | {prec} | {args.size} | "
                           f"{off:.1f} ms (median of {args.time}) | {opeak / 2**30:.2f} GiB |")
        ms = log_number(r.stderr, r"([0-9.]+) ms median")
        peak = log_number(r.stderr, r"device peak ([0-9.]+) MiB")
        timings.append(f"| ss_flow sampler (44 evals) | sam3d | {prec} | {args.size} | {ms:.1f} ms "
                       f"(median of {args.repeat}) | {peak / 1024:.2f} GiB |")
    print("\nparity rows (docs/parity.md):")
    print("\n".join(rows) or "(none)")
    print("\ntimings (docs/performance.md):")
    print("\n".join(timings) or "(none)")
    print(f"\n{'PASS' if not fails else f'FAIL ({fails})'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
