#!/usr/bin/env python3
"""Full-size parity + timing + memory of sam3d-gs-decode against the official Gaussian decoder
(SLatGaussianDecoderTdfyWrapper of slat_decoder_gs.yaml, or slat_decoder_gs_4.yaml with
--gaussians 4), with the same seeded random weights (written once as the official flat
slat_decoder_gs.ckpt) and the same structured latent, on the GPU.

  python3 tools/ref/plugin_gs_decode.py --bin build --work /tmp/gsd --out $OUT \
      --s3d .gl/ref/s3d --config-dir .gl/ref/hf [--gaussians 32] [--voxels 30000 | --slat FILE] \
      [--precisions fp16,fp32] [--time 10] [--repeat 10]

Per precision the official decoder runs as decode_slat runs it (no autocast; fp16 = the
released use_fp16 trunk, fp32 = use_fp16 false), its output turned into the arrays
Gaussian.save_ply writes (dump_gs_decoder.ply_arrays), timed
(--time runs after 2 warm-ups; a fresh SparseTensor each run, so the window partition is
computed every time, as in the pipeline) with torch's peak allocation; then our stage runs
--once on the same checkpoint and latent (--param repeat=N: its warm median, arena peak and,
in a second run with S3D_PROFILE=1, its time per op). Both processes' device memory is also
sampled from the driver (nvidia-smi, every 20 ms; includes each process's CUDA context).
Compared: ours vs official at the same precision (issue 11: Gaussian parameters <= 1e-3 fp32,
<= 1e-2 fp16 relative L2), and, as the reference's own fp16 spread, official fp16 vs official
fp32 next to ours fp16 vs official fp32. The cost model (FLOPs from the actual windows, bytes
moved) is printed first; achieved TFLOP/s for both.

Attention backend of the official runs: the pipeline selects flash_attn on A100/H100/H200
(PL/inference_pipeline.py:11-21). flash-attn itself is not installed on the GPU machine, so
the official flash_attn_varlen_qkvpacked_func call is served (--official-attention auto) in
fp16 by PyTorch's own FlashAttention-2 varlen kernel (torch.nn.attention.varlen.varlen_attn,
else aten._flash_attention_forward), after a self-check against per-window SDPA; if that
fails, and always in fp32 (flash attention has no fp32; the official code has no fp32 GPU
path there), by SDPA on each window in turn: the same per-window softmax as the official sdpa
branch (masked_sdpa), without its dense N x N mask (1.8 GB fp16 / 3.6 GB fp32 at 30k voxels);
--official-attention masked runs that branch itself. The report names the backend. Without the spconv wheel, tools/ref/shims/spconv stands in
for its tensor container (the Gaussian decoder has no convolution).

Writes OUT/gs_decode_results.json and OUT/gs_decode_summary.txt; prints docs/parity.md and
docs/performance.md rows. Exit 0 when every comparison passes.
Local check (CPU, tiny weights): --size tiny --device cpu --voxels 300 --time 1 --repeat 1.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402
from flash_shim import flash_shim, flash_selfcheck  # noqa: E402
import dump_gs_decoder  # noqa: E402
import plugin_util  # noqa: E402
import refutil  # noqa: E402
import refutil_sparse as rs  # noqa: E402

ARRAYS = ["xyz", "f_dc", "opacity", "scale", "rotation"]
TOL = [(r".*", 1e-3, 1e-2, "issue 11: Gaussian parameters <= 1e-3 (fp32) / <= 1e-2 (fp16) "
        "relative L2 against the official decoder on the same weights and latent")]
TINY = {"model_channels": 128, "num_heads": 2, "num_blocks": 2, "mlp_ratio": 2}


# ----------------------------------------------------------------------------- memory sampler

class DriverMemory:
    """Samples nvidia-smi's per-process used memory (MiB) every `period` s; peak per pid."""

    def __init__(self, period=0.02):
        self.period, self.peak, self.ok = period, {}, True
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                                      "--format=csv,noheader,nounits"], capture_output=True,
                                     text=True, timeout=5).stdout
            except (OSError, subprocess.TimeoutExpired):
                self.ok = False
                return
            for line in out.splitlines():
                p = [x.strip() for x in line.split(",")]
                if len(p) == 2 and p[0].isdigit() and p[1].isdigit():
                    self.peak[int(p[0])] = max(self.peak.get(int(p[0]), 0), int(p[1]))
            self._stop.wait(self.period)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()

    def mib(self, pid):
        return self.peak.get(pid, float("nan")) if self.ok else float("nan")

    def reset(self, pid):
        """Forget pid's peak (a new phase of this process)."""
        time.sleep(2 * self.period)
        self.peak.pop(pid, None)


# ----------------------------------------------------------------------------- flash_attn stand-in
# flash_shim(torch, how) and flash_selfcheck(torch, shim): tools/ref/flash_shim.py


def use_backend(wa, shim):
    """Point the official windowed attention at shim (its flash_attn branch), or at its own
    sdpa branch (masked_sdpa) when shim is None; windowed_attn.py reads ATTN and the backend
    module at call time."""
    wa.ATTN = "flash_attn" if shim else "sdpa"
    if shim:
        wa.flash_attn = shim


# ----------------------------------------------------------------------------- inputs

def make_latent(args, torch, res):
    """coords (N,4) int32 + feats (N,8) fp32: --slat FILE ('coords', 'slat_feats'), else the
    union of synthetic pruned shells (rs.shell_coords, ~15k voxels each at most) reaching about
    --voxels, sorted as argwhere, with feats N(0,1)*slat_std + slat_mean (pipeline.yaml)."""
    if args.slat:
        t, _ = refutil.load_tensors(args.slat)
        return t["coords"].int(), t["slat_feats"].float(), os.path.relpath(args.slat)
    parts, n, seed = [], 0, args.seed + 5
    while n < args.voxels * 0.9 and len(parts) < 8:
        c = rs.shell_coords(res, min(15000, args.voxels - n), seed)
        parts.append(c)
        n = torch.unique(torch.cat(parts), dim=0).shape[0]
        seed += 1
    coords = torch.unique(torch.cat(parts), dim=0).int().contiguous()
    pipe = rs.load_node(args.pipeline)
    g = torch.Generator().manual_seed(args.seed + 41)
    feats = torch.randn(coords.shape[0], 8, generator=g)
    feats = feats * torch.tensor(pipe["slat_std"]) + torch.tensor(pipe["slat_mean"])
    return coords, feats, f"union of {len(parts)} shell_coords(64, ...) (seeds {args.seed + 5}..)"


def windows(torch, coords, shift, w=8):
    """Window lengths of the official partition rule (windowed_attn.py:43-67)."""
    c = coords[:, 1:].long() + shift
    nw = (c.max(0).values // w + 1).tolist()
    key = ((c[:, 0] // w) * nw[1] + c[:, 1] // w) * nw[2] + c[:, 2] // w
    return torch.bincount(key)[torch.bincount(key) > 0]


def cost(cfg, N, G, lens0, lens1, es):
    """FLOPs (multiply-add = 2) and bytes each op must move once (weights once, activations as
    we store them: es bytes per element of the token stream, fp32 head)."""
    C, D, M, L = cfg["model_channels"], cfg["num_blocks"], int(cfg["model_channels"] *
                                                                cfg["mlp_ratio"]), 8
    K = 14 * G
    s2 = [float((lens0.double() ** 2).sum()), float((lens1.double() ** 2).sum())]
    gemm = 2.0 * N * (L * C + D * (3 * C * C + C * C + 2 * C * M) + C * K)
    attn = sum(4.0 * C * s2[i % 2] for i in range(D))
    wbytes = D * (4 * C * C + 2 * C * M) * es + (C * L + C * K) * 4
    per_block = N * es * (C + C + C + 3 * C + 3 * C + C + C + 2 * C + C + C + C + M + 2 * M + M
                          + 2 * C)        # LN r/w, qkv r/w, attn r/w, to_out r + x r/w, LN2, fc1, gelu, fc2 + x
    head = N * (C * es + C * 4 * 2 + K * 4 * 2) + N * G * 14 * 4
    return {"gemm_flop": gemm, "attn_flop": attn, "flop": gemm + attn,
            "bytes": wbytes + D * per_block + head + N * (L + 4) * 4, "sum_l2": s2}


# ----------------------------------------------------------------------------- runs

def official(args, torch, cfg, ckpt, prec, coords, feats, shim, wa, dev):
    """Build (first call: init + save) or load the official decoder for prec; return
    (arrays on the host, timings, peak bytes)."""
    from sam3d_objects.model.backbone.tdfy_dit.modules import sparse as sp
    run_cfg = json.loads(json.dumps(cfg))
    run_cfg["use_fp16"] = prec != "fp32"
    t0 = time.time()
    with rs.cpu_cuda_shim():
        if not os.path.exists(ckpt):
            dec, loader, _, nparam = rs.build_init_save(cfg, args.seed, ckpt, run_cfg=run_cfg)
        else:
            dec, loader = rs.load_official(rs.instantiate(run_cfg), ckpt, None, None)
            nparam = sum(p.numel() for p in dec.parameters())
    print(f"official decoder ({prec}): {nparam:,} parameters, {loader}, {time.time() - t0:.1f} s",
          flush=True)
    dec = dec.to(dev)
    use_backend(wa, shim)
    c, f = coords.to(dev), feats.to(dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    fwd, tot = [], []
    with torch.no_grad(), rs.cpu_cuda_shim():
        for i in range(2 + args.time):
            if i == 2 and dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync()
            t0 = time.perf_counter()
            gs = dec(sp.SparseTensor(coords=c, feats=f))[0]     # fresh: partition recomputed
            sync()
            t1 = time.perf_counter()
            out = {k: v.float().cpu() for k, v in dump_gs_decoder.ply_arrays(gs).items()}
            sync()
            t2 = time.perf_counter()
            if i >= 2 or args.time == 0:
                fwd.append((t1 - t0) * 1e3)
                tot.append((t2 - t0) * 1e3)
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else 0
    del dec
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return out, {"forward_ms": fwd, "with_arrays_ms": tot}, peak


def log_number(log, pattern, default=float("nan")):
    m = re.search(pattern, log)
    return float(m.group(1)) if m else default


def ours(args, ckpt, prec, coords, feats, work):
    """Our stage --once on the same latent: (arrays, log, warm median ms, arena peak MiB, pid
    of the unprofiled run)."""
    in_dir, out_dir = os.path.join(work, f"in_{prec}"), os.path.join(work, f"out_{prec}")
    os.makedirs(in_dir, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    refutil.save_tensors(os.path.join(in_dir, "slat_flow.safetensors"),
                         {"coords": coords, "feats": feats})
    exe = os.path.join(args.bin, "sam3d-gs-decode")
    cmd = [exe, "--weights", ckpt, "--device", "cpu" if args.device == "cpu" else "cuda:0",
           "--once", in_dir, out_dir, "--param", f"repeat={args.repeat}"]
    if prec == "fp32":
        cmd += ["--precision", "fp32"]
    logs = []
    for profile in ([False, True] if args.device == "cuda" else [False]):
        rc, err, pid = plugin_util.run_stage(cmd, profile)
        if rc != 0:
            return None, err, float("nan"), float("nan"), pid
        logs.append(err)
        if not profile:
            first_pid = pid
    log = logs[0]
    print("\n".join(l for l in log.splitlines() if "gs_decode:" in l))
    if len(logs) > 1:
        print("\n".join(l for l in logs[1].splitlines() if " I " not in l or "ms" in l)[-4000:])
    o, _ = refutil.load_tensors(os.path.join(out_dir, "gs_decode.safetensors"))
    med = log_number(log, r"repeat \d+: [0-9.]+ / ([0-9.]+) / [0-9.]+ ms")
    peak = log_number(log, r"device peak ([0-9.]+) MiB")
    return o, log + ("\n" + logs[1] if len(logs) > 1 else ""), med, peak, first_pid


def memory_split(log, driver_peak):
    """Where a stage process's driver-counted peak goes, from its memory line
    (common/stage_rt.c): {driver_peak, since_start, context, weights, activations, workspace,
    other} in MiB (context: what the driver held for the process before its first allocation:
    peak - since start; other: since start - the arenas)."""
    num = {k: log_number(log, rx) for k, rx in (
        ("since_start", r"\(\+([0-9.]+) since the stage started"),
        ("weights", r"arenas: weights ([0-9.]+)"),
        ("activations", r"activations high-water ([0-9.]+)"),
        ("workspace", r"workspace ([0-9.]+)\)"))}
    num["driver_peak"] = driver_peak
    num["context"] = driver_peak - num["since_start"]
    num["other"] = num["since_start"] - num["weights"] - num["activations"] - num["workspace"]
    return num


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    plugin_util.common_args(ap, "/tmp/s3d-gsd")
    ap.add_argument("--gaussians", type=int, choices=[32, 4], default=32)
    ap.add_argument("--voxels", type=int, default=30000)
    ap.add_argument("--slat", default=None, help="safetensors with 'coords' and 'slat_feats' "
                    "(e.g. the official chain's slat.safetensors) instead of synthetic shells")
    ap.add_argument("--precisions", default="fp16,fp32")
    ap.add_argument("--time", type=int, default=10, help="timed official runs (after 2 warm-ups)")
    ap.add_argument("--repeat", type=int, default=10, help="runs of our stage (median reported)")
    ap.add_argument("--official-attention", choices=["auto", "varlen", "per-window", "masked"],
                    default="auto", help="auto: varlen (PyTorch's FlashAttention-2) for fp16 on "
                    "CUDA, per-window SDPA otherwise; masked: the official sdpa branch")
    args = ap.parse_args(argv)
    args.pipeline = os.path.join(args.config_dir, "pipeline.yaml")
    torch = plugin_util.start(args, "sam3d-gs-decode")
    if torch is None:
        return 2
    from sam3d_objects.model.backbone.tdfy_dit.modules.sparse.attention import windowed_attn as wa
    dev = torch.device(args.device)
    name = "slat_decoder_gs.yaml" if args.gaussians == 32 else "slat_decoder_gs_4.yaml"
    cfg = rs.load_node(os.path.join(args.config_dir, name))
    cfg.pop("pretrained_ckpt_path", None)
    if args.size == "tiny":
        cfg.update(TINY)
    ckpt = os.path.join(args.work, "slat_decoder_gs.ckpt" if args.gaussians == 32
                        else "slat_decoder_gs_4.ckpt")
    if os.path.exists(ckpt):
        os.remove(ckpt)                 # this run's seed and size

    # the official attention backend per precision (see the docstring)
    shims, notes = {}, {}
    for prec in args.precisions.split(","):
        how = args.official_attention
        if how == "auto":
            how = "varlen" if prec != "fp32" and dev.type == "cuda" else "per-window"
        if how == "masked":
            shims[prec], notes[prec] = None, "official sdpa branch (masked_sdpa, N x N mask)"
            continue
        shim, nm = flash_shim(torch, how)
        if dev.type == "cuda":
            try:
                err = flash_selfcheck(torch, shim)
            except Exception as e:      # noqa: BLE001 - reported, then the per-window stand-in
                err = f"{type(e).__name__}: {e}"
            if not isinstance(err, float) or err > 2e-3:
                print(f"{prec}: {nm} failed its self-check ({err}); per-window SDPA instead")
                shim, nm = flash_shim(torch, "per-window")
                err = flash_selfcheck(torch, shim)
            nm += f" (self-check vs per-window SDPA: rel {err:.1e})"
        shims[prec], notes[prec] = shim, "flash_attn branch served by " + nm
        print(f"official windowed attention, {prec}: {notes[prec]}", flush=True)

    coords, feats, src = make_latent(args, torch, cfg["resolution"])
    N, G = coords.shape[0], args.gaussians
    l0, l1 = windows(torch, coords, 0), windows(torch, coords, 4)
    print(f"latent: {src}: N = {N} voxels -> M = {N * G} Gaussians; windows shift 0: {len(l0)} "
          f"(longest {int(l0.max())}), shift 4: {len(l1)} (longest {int(l1.max())}); mean keys "
          f"per token {float((l0.double() ** 2).sum()) / N:.0f} / "
          f"{float((l1.double() ** 2).sum()) / N:.0f}", flush=True)

    results = {"N": N, "G": G, "latent": src, "size": args.size, "device": args.device,
               "official_attention": notes, "gpu": torch.cuda.get_device_name(0)
               if dev.type == "cuda" else "cpu", "precisions": {}}
    for prec in args.precisions.split(","):
        c = cost(cfg, N, G, l0, l1, 2 if prec == "fp16" else 4)
        print(f"\ncost model ({prec}): {c['flop'] / 1e12:.3f} TFLOP (GEMMs "
              f"{c['gemm_flop'] / 1e12:.3f}, windowed attention {c['attn_flop'] / 1e12:.3f}), "
              f"{c['bytes'] / 1e9:.2f} GB moved at least; floors at 700 TFLOP/s and 3.3 TB/s "
              f"(H100 SXM): {c['flop'] / 700e9:.2f} ms compute, {c['bytes'] / 3.3e9:.2f} ms "
              f"memory", flush=True)
        results["precisions"][prec] = {"cost": c}
    refs, mine, pcsv = {}, {}, {}
    fails = 0
    with DriverMemory() as mem:
        for prec in args.precisions.split(","):
            print(f"\n===== gs_decode, {prec} =====", flush=True)
            mem.reset(os.getpid())
            ref, tm, opeak = official(args, torch, cfg, ckpt, prec, coords, feats, shims[prec],
                                      wa, dev)
            time.sleep(0.1)
            odrv = mem.mib(os.getpid())
            refs[prec] = ref
            fwd = statistics.median(tm["forward_ms"])
            tot = statistics.median(tm["with_arrays_ms"])
            o, log, ms, apeak, pid = ours(args, ckpt, prec, coords, feats, args.work)
            r = results["precisions"][prec]
            r.update({"official_forward_ms": tm["forward_ms"],
                      "official_with_arrays_ms": tm["with_arrays_ms"],
                      "official_peak_bytes": opeak, "official_attention": notes[prec],
                      "official_driver_peak_mib": odrv, "ours_median_ms": ms,
                      "ours_arena_peak_mib": apeak, "ours_driver_peak_mib": mem.mib(pid),
                      "ours_memory": memory_split(log, mem.mib(pid))})
            with open(os.path.join(args.out, f"gs_decode_ours_{prec}.log"), "w") as f:
                f.write(log)
            if o is None:
                fails += 1
                continue
            mine[prec] = o
            print(f"\nours vs official, {prec}:")
            ok, rows = compare.run_compare(o, refutil.OrderedDict((k, ref[k]) for k in ARRAYS),
                                           prec, require_all=True, table=TOL)
            fails += not ok
            r["compare"] = [{k: v for k, v in x.items() if k != "reason"} for x in rows]
            pcsv[prec] = rows
            fl = r["cost"]["flop"]
            r["official_tflops"] = fl / fwd / 1e9
            r["ours_tflops"] = fl / ms / 1e9 if ms == ms else float("nan")
        results["driver_sampler_ok"] = mem.ok

    # the reference's own fp16 spread, next to ours
    if "fp16" in refs and "fp32" in refs:
        print("\nofficial fp16 vs official fp32 (the reference's own fp16 spread):")
        _, rows = compare.run_compare(refs["fp16"], refutil.OrderedDict(
            (k, refs["fp32"][k]) for k in ARRAYS), "fp16", table=TOL)
        results["official_fp16_vs_fp32"] = [{k: v for k, v in x.items() if k != "reason"}
                                             for x in rows]
        if "fp16" in mine:
            print("\nours fp16 vs official fp32:")
            _, rows = compare.run_compare(mine["fp16"], refutil.OrderedDict(
                (k, refs["fp32"][k]) for k in ARRAYS), "fp16", table=TOL)
            results["ours_fp16_vs_official_fp32"] = [{k: v for k, v in x.items() if k != "reason"}
                                                     for x in rows]

    lines = ["", "parity rows (docs/parity.md):"]
    for prec, rows in pcsv.items():
        for a in ARRAYS:
            lines.append(compare.parity_row(f"gs_decode G={G} N={N} {a}", prec, args.size, rows, a))
    lines += ["", "timings (docs/performance.md): | what | precision | N | median ms | TFLOP/s | "
              "peak (allocator / arenas) | driver peak (process, incl. context) |"]
    for prec, r in results["precisions"].items():
        if "official_forward_ms" not in r:
            continue
        fwd = statistics.median(r["official_forward_ms"])
        tot = statistics.median(r["official_with_arrays_ms"])
        lines.append(f"| official decoder forward | {prec} | {N} | "
                     f"{fwd:.2f} (+ save_ply arrays to host: {tot:.2f}) | "
                     f"{r['official_tflops']:.1f} | {r['official_peak_bytes'] / 2**20:.0f} MiB | "
                     f"{r['official_driver_peak_mib']} MiB |")
        lines.append(f"| sam3d-gs-decode (partition to host arrays) | {prec} | {N} | "
                     f"{r['ours_median_ms']:.2f} | {r.get('ours_tflops', float('nan')):.1f} | "
                     f"{r['ours_arena_peak_mib']:.0f} MiB | {r['ours_driver_peak_mib']} MiB |")
    for prec, r in results["precisions"].items():
        m = r.get("ours_memory")
        if m and m["since_start"] == m["since_start"]:         # CUDA runs only
            lines.append(f"memory of sam3d-gs-decode, {prec}: driver peak {m['driver_peak']} MiB = "
                         f"{m['context']:.0f} MiB there before the stage's first allocation (CUDA "
                         f"context: the stack reserve, module images) + {m['since_start']:.0f} "
                         f"MiB since (arenas: weights {m['weights']:.1f} + activations "
                         f"{m['activations']:.1f} + workspace {m['workspace']:.1f}; the rest: "
                         f"cuBLASLt handle and kernels, {m['other']:.0f} MiB)")
    lines += [f"official attention, {p}: {n}" for p, n in notes.items()]
    lines.append(f"\n{'PASS' if not fails else f'FAIL ({fails})'}")
    print("\n".join(lines))
    with open(os.path.join(args.out, "gs_decode_results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(os.path.join(args.out, "gs_decode_summary.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
