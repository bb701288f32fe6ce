#!/usr/bin/env python3
"""GPU parity + benchmark of the cond stage (sam3d-cond) against the official EmbedderFuser, both
variants, full size (released config, random weights), on a real example image: a plug-in over
tools/ref/full_parity.py that fixes the cond entries for what sam3d-cond reads and writes
(docs/formats.md "cond": the outputs are named cond_ss / cond_slat) and runs fp16 and fp32 in one go.

One command on the GPU machine (after the set-up in full_parity.py's docstring: wheels, .ref,
examples/human_object, `make CUDA_ARCH=90 build/sam3d-cond`):

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
  python3 tools/ref/plugin_cond.py --cost        the FLOP/byte model and floors only (no GPU)
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import full_parity  # noqa: E402
import refutil  # noqa: E402

KEYS = ["image", "rgb_image", "mask", "rgb_image_mask", "pointmap", "rgb_pointmap"]


def cond_inputs(ref, in_dir):
    """--once input of sam3d-cond: the fuser's keyword inputs (1,C,S,S) f32."""
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


# ---------------------------------------------------------------------------- cost model

PEAK_FLOPS = 700e12     # dense fp16 tensor-core FLOP/s assumed for the H200 floor
PEAK_BYTES = 4.0e12     # HBM3e bytes/s assumed for the memory floor


def cost_rows(variant, e=2):
    """Per-op (name, calls, FLOP, bytes) of one sam3d-cond forward as implemented in
    stages/vit/vit.c, stages/cond_net/cond.c and stages/cond_net/pointmap.c, full size (518 input,
    DINOv2 ViT-L/14-reg4: T = 1374, C = 1024, MLP 4096, 24 blocks; two B=2 passes: image +
    rgb_image, mask + rgb_image_mask; SS adds PointPatchEmbed on both point maps, B=2). e:
    bytes per GEMM element (2 = fp16, 4 = fp32). Bytes count each op's own reads and writes
    of activations (F32 residual, e-byte GEMM operands) and weights, once each: a floor for
    that op, not a cache model (flash attention re-reads K/V from L2, not counted)."""
    rows = {}

    def add(name, n, flop, byt):
        c, f, b = rows.get(name, (0, 0.0, 0.0))
        rows[name] = (c + n, f + n * flop, b + n * byt)

    def gemm(name, n, M, N, K, out_e=None):
        add(name, n, 2.0 * M * N * K, e * (M * K + N * K) + (out_e or e) * M * N)

    B, T, C, F, L, S, P = 2, 1374, 1024, 4096, 24, 518, 14
    N = (S // P) ** 2
    R = B * T
    for _ in range(2):                                   # image pair, mask pair
        add("im2col", 1, 0, 4 * B * 3 * S * S + e * B * N * 3 * P * P)
        gemm("linear (patch embed)", 1, B * N, C, 3 * P * P)
        add("vit_assemble", 1, 0, e * B * N * C + 4 * R * C)
        add("layernorm", 2 * L, 5.0 * R * C, 4 * R * C + e * R * C)
        gemm("linear (qkv)", L, R, 3 * C, C)
        add("attention", L, 4.0 * B * T * T * C, e * 4 * R * C)
        gemm("linear (proj)", L, R, C, C)
        add("add_scaled (residual)", 2 * L, 2.0 * R * C, 8 * R * C + e * R * C)
        gemm("linear (fc1)", L, R, F, C)
        add("act (gelu)", L, 8.0 * R * F, 2 * e * R * F)
        gemm("linear (fc2)", L, R, C, F)
        t = T - 4 if variant == "ss" else T               # SS drops the 4 registers
        add("layernorm (final)", 1, 5.0 * B * t * C, 8 * B * t * C)
        proj(add, gemm, B * t, C, C, e)
    if variant == "ss":                                  # PointPatchEmbed, both maps in one
        W, D, Tw, H2 = 2 * 1024, 512, 65, 1024           # windows, width, tokens/window, MLP
        X = W * Tw
        add("ppe_tokens", 1, 3.0 * 2 * X * D, 4 * 2 * 3 * 256 * 256 + 4 * X * D)
        add("layernorm", 1, 5.0 * X * D, 4 * X * D + e * X * D)
        gemm("linear (qkv)", 1, X, 3 * D, D)
        add("attention_small (token 0)", 1, 4.0 * W * Tw * D, e * 3 * X * D)
        gemm("linear (proj)", 1, W, D, D)
        add("add_scaled (residual)", 2, 2.0 * W * D, 10 * W * D)
        add("layernorm", 1, 5.0 * W * D, 6 * W * D)
        gemm("linear (fc1)", 1, W, H2, D)
        add("act (gelu)", 1, 8.0 * W * H2, 2 * e * W * H2)
        gemm("linear (fc2)", 1, W, D, H2)
        proj(add, gemm, W, D, C, e)
    return rows


def proj(add, gemm, rows, d_in, C, e, hidden=2816):
    """EmbedderFuser projection net on rows tokens: LN, w1/w3, SwiGLU, w2, + idx_emb."""
    add("layernorm (proj)", 1, 5.0 * rows * d_in, 4 * rows * d_in + e * rows * d_in)
    gemm("linear (proj w1, w3)", 2, rows, hidden, d_in)
    add("swiglu", 1, 4.0 * rows * hidden, 3 * e * rows * hidden)
    gemm("linear (proj w2)", 1, rows, C, hidden)
    add("add_bias (idx_emb)", 1, rows * C, 2 * e * rows * C)


def print_cost():
    for variant in ("ss", "slat"):
        for prec, e in (("fp16", 2), ("fp32", 4)):
            rows = cost_rows(variant, e)
            tf = sum(r[1] for r in rows.values())
            tb = sum(r[2] for r in rows.values())
            print(f"\ncond-{variant} {prec}: {tf / 1e12:.3f} TFLOP, {tb / 1e9:.2f} GB moved "
                  f"(activations + weights); compute floor {tf / PEAK_FLOPS * 1e3:.2f} ms at "
                  f"{PEAK_FLOPS / 1e12:.0f} TFLOP/s, memory floor {tb / PEAK_BYTES * 1e3:.2f} ms at "
                  f"{PEAK_BYTES / 1e12:.0f} TB/s")
            if prec != "fp16":
                continue
            print("| op | calls | GFLOP | GB | compute floor ms | memory floor ms |")
            print("|---|---|---|---|---|---|")
            for name, (c, f, b) in sorted(rows.items(), key=lambda kv: -max(
                    kv[1][1] / PEAK_FLOPS, kv[1][2] / PEAK_BYTES)):
                print(f"| {name} | {c} | {f / 1e9:.1f} | {b / 1e9:.3f} | "
                      f"{f / PEAK_FLOPS * 1e3:.3f} | {b / PEAK_BYTES * 1e3:.3f} |")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--cost" in argv:
        print_cost()
        return 0
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
