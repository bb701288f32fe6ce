#!/usr/bin/env python3
"""Full-size parity + timing + memory of sam3d-slat-flow against the official SLAT generator
(FlowMatching -> ClassifierFreeGuidance -> SLatFlowModelTdfyWrapper of slat_generator.yaml),
with the same seeded random weights (written once as the official slat_generator.ckpt), the
same voxels, condition and noise, on the GPU.

  python3 tools/ref/plugin_slat_flow.py --bin build --work /tmp/slf --out $OUT \
      --s3d .gl/ref/s3d --config-dir .gl/ref/hf [--voxels 30000 | --coords FILE] \
      [--ceiling 42000] [--time 5] [--repeat 3] [--evals fp32,fp16]

Voxels: --coords FILE ('coords' (N,4) int32, e.g. ss_decode.safetensors of the official chain),
else a synthetic object made as the pipeline makes its voxel set: an occupancy grid at 64^3
(two nested closed surfaces, seeded bumpy spheres of radius 25 and 14, their thickness
bisected so that what the prune leaves comes near --voxels), argwhere, then the official
prune_sparse_structure(max_neighbor_axes_dist=1) and downsample_sparse_structure(max_coords=
42000) (PL/inference_utils.py:367-477, loaded from the official source). The ceiling set
(--ceiling, memory only) is three nested shells pruned the same way, then 42,000 of its voxels
kept at random (as the official downsample's last resort), sorted as argwhere.
Condition: seeded N(0,1) tokens (1, 5496, 1024) (the released cond_slat length). Noise: seeded
N(0,1) (1, N, 8), given to both.

Runs (each on the same inputs):
  1. one evaluation, conditional, t = 0: the official backbone in fp32 (use_fp16 false, no
     autocast) and fp16 (use_fp16 true under torch.autocast(fp16), as sample_slat runs it),
     timed (--time runs after a warm-up); ours --once with steps=1 cfg=0 (v = x_1 - noise,
     x_1 from the de-normalised feats): issue 10, <= 1e-3 (fp32), <= 1e-2 (fp16) relative L2;
     the unconditional evaluation the same way (ours: 2 v_cond minus the combination of a
     steps=1 cfg=1 run), and that combination 2 v_cond - v_uncond within the bound the two
     evaluations' tolerance gives it: tol (2 |v_cond| + |v_uncond|) / |2 v_cond - v_uncond|;
  2. the whole sampler (25 steps, CFG 1 on [0, 500]: 38 evaluations) in fp16 from the same
     noise: de-normalised feats <= 2e-2 relative L2; times (official: --time runs; ours: the
     stage's median of --repeat runs and ms per evaluation); our per-op profile (S3D_PROFILE)
     of a second, warm sampler run in one process;
  3. device memory of our stage process as the driver reports it (nvidia-smi per-process
     peak, CUDA context included) and the stage's own memory line, for the sampler at N and
     for one CFG step at the 42,000-voxel ceiling with and without the condition K/V cache.
Attention of the official runs: its flash_attn branch served by PyTorch's FlashAttention-2
varlen kernel (tools/ref/flash_shim.py, after its self-check), else its sdpa branch; the
report names it. The official sparse convolutions need the real spconv (tools/gpu/spconv_pack).
Writes OUT/slat_flow_results.json and OUT/slat_flow_summary.txt; exit 0 when every comparison
passes. Local check (CPU, tiny weights): --size tiny --device cpu --voxels 300 --time 1.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402
import dump_slat_flow  # noqa: E402
import refutil  # noqa: E402
import refutil_sparse as rs  # noqa: E402
from dump_ss_decoder import UTILS  # noqa: E402
from plugin_gs_decode import DriverMemory, log_number  # noqa: E402

PREFIX = dump_slat_flow.PREFIX
COND_TOKENS = {"full": 5496, "tiny": 80}
TOL = {"eval_fp32": 1e-3, "eval_fp16": 1e-2, "sampler_fp16": 2e-2}


# ----------------------------------------------------------------------------- inputs

def shells(torch, res, thick, seed, radii):
    """Occupancy (res^3 bool): nested closed surfaces around the centre, each a sphere of
    radius R displaced by a seeded smooth bump field (+-25%), `thick` voxels thick (a hollow
    object with an inner wall: its voxels are what the SS decoder's occupancy looks like
    after the prune, a shell, not a solid)."""
    g = torch.Generator().manual_seed(seed)
    ax = torch.arange(res, dtype=torch.float32) + 0.5
    x, y, z = torch.meshgrid(ax, ax, ax, indexing="ij")
    c = res / 2
    d = torch.sqrt((x - c) ** 2 + (y - c) ** 2 + (z - c) ** 2).clamp_min(1e-6)
    u = torch.stack([(x - c) / d, (y - c) / d, (z - c) / d])
    bump = torch.zeros_like(d)
    for _ in range(6):
        a, f = torch.randn(3, generator=g), 1 + 3 * torch.rand(1, generator=g)
        bump += torch.sin(f * (a[:, None, None, None] * u).sum(0) +
                          6.3 * torch.rand(1, generator=g)) / 6
    occ = torch.zeros(res, res, res, dtype=torch.bool)
    for R in radii:
        occ |= (d - R * (1 + 0.25 * bump)).abs() <= thick / 2
    return occ


def pruned(args, torch, occ):
    prune = rs.official_function(args.s3d, UTILS, "prune_sparse_structure")
    c0 = torch.argwhere(occ)
    c0 = torch.cat([torch.zeros(len(c0), 1, dtype=c0.dtype), c0], 1).int()
    return c0, prune(c0, max_neighbor_axes_dist=1)


def pipeline_coords(args, torch, target, seed):
    """(coords, description): two nested bumpy shells (radii 25 and 14), their thickness
    bisected so that the official prune leaves about target voxels, then the official
    downsample_sparse_structure(max_coords=42000) (a no-op below 42,000)."""
    down = rs.official_function(args.s3d, UTILS, "downsample_sparse_structure")
    lo, hi, best = 1.0, 8.0, None
    for _ in range(12):
        th = (lo + hi) / 2
        c0, c = pruned(args, torch, shells(torch, 64, th, seed, (25, 14)))
        if best is None or abs(len(c) - target) < abs(len(best[1]) - target):
            best = (th, c, len(c0))
        lo, hi = (th, hi) if len(c) < target else (lo, th)
    th, c, n0 = best
    c2, factor = down(c, max_coords=42000)
    return c2.int().contiguous(), (f"2 nested bumpy shells (seed {seed}, {th:.2f} thick): {n0} "
                                   f"occupied -> official prune {len(c)} -> official "
                                   f"downsample(42000) {len(c2)} (factor {factor})")


def ceiling_coords(args, torch, n):
    """n voxels (the ceiling): three nested shells pruned, n of them kept at random, sorted."""
    g = torch.Generator().manual_seed(args.seed + 77)
    for th in (3.0, 4.0, 5.0, 6.0):
        _, c = pruned(args, torch, shells(torch, 64, th, args.seed + 78, (28, 19, 10)))
        if len(c) >= n:
            keep = torch.randperm(len(c), generator=g)[:n].sort().values
            return c[keep].int().contiguous(), (f"3 nested bumpy shells ({th} thick) pruned to "
                                                f"{len(c)}, {n} kept at random")
    raise SystemExit(f"could not make a {n}-voxel set")


def parents(coords):
    return len({(int(x) >> 1, int(y) >> 1, int(z) >> 1) for _, x, y, z in coords.tolist()})


# ----------------------------------------------------------------------------- official

def official_module(args, torch, cfg, ckpt, prec, dev):
    run_cfg = json.loads(json.dumps(cfg))
    run_cfg["reverse_fn"]["backbone"]["use_fp16"] = prec != "fp32"
    if not os.path.exists(ckpt):
        t0 = time.time()
        gen, loader, _, nparam = rs.build_init_save(
            cfg, args.seed, ckpt, wrap=lambda sd: refutil.lightning_ckpt(sd, PREFIX),
            prefix=PREFIX, state_dict_key="state_dict", run_cfg=run_cfg)
        print(f"official generator: {nparam:,} parameters, written to {ckpt} "
              f"({time.time() - t0:.0f} s)", flush=True)
    else:
        gen, loader = rs.load_official(rs.instantiate(run_cfg), ckpt, PREFIX, "state_dict")
    dump_slat_flow.apply_pipeline_overrides(gen, 25)
    gen = gen.to(dev).eval()
    rs.spconv_cpu_mode(gen, dev)
    return gen


def attention_backend(prec, shim):
    """The official full sparse attention's branch (sparse/attention/full_attn.py reads ATTN
    at call time): flash_attn (served by shim) in fp16 when the shim passed its self-check,
    else, and always in fp32 (flash attention has no fp32), its sdpa branch (masked_sdpa)."""
    from sam3d_objects.model.backbone.tdfy_dit.modules.sparse.attention import full_attn as fa
    from sam3d_objects.model.backbone.tdfy_dit.modules.sparse.attention.masked_sdpa import \
        masked_sdpa
    if prec == "fp16" and shim is not None:
        fa.ATTN, fa.flash_attn = "flash_attn", shim
        return "flash_attn branch via " + shim.__name__
    fa.ATTN, fa.masked_sdpa = "sdpa", masked_sdpa
    return "sdpa branch (masked_sdpa)"


def timed(torch, dev, fn, n):
    """(last result, list of ms of n runs after one warm-up, torch peak bytes of the runs)."""
    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()
    out, ms = None, []
    for i in range(1 + n):
        if i == 1 and dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        if i >= 1 or n == 0:
            ms.append((time.perf_counter() - t0) * 1e3)
    return out, ms, torch.cuda.max_memory_allocated() if dev.type == "cuda" else 0


# ----------------------------------------------------------------------------- ours

def ours(args, ckpt, name, coords, cond, noise, params, prec="fp16", profile=False, env_add=None):
    """Our stage --once (env_add: more environment variables): (feats or None, log, pid)."""
    d = os.path.join(args.work, name)
    ind, outd = os.path.join(d, "in"), os.path.join(d, "out")
    os.makedirs(ind, exist_ok=True)
    os.makedirs(outd, exist_ok=True)
    refutil.save_tensors(os.path.join(ind, "ss_decode.safetensors"), {"coords": coords})
    refutil.save_tensors(os.path.join(ind, "cond_slat.safetensors"), {"cond_slat": cond})
    if noise is not None:
        refutil.save_tensors(os.path.join(ind, "noise.safetensors"), {"noise": noise})
    cmd = [os.path.join(args.bin, "sam3d-slat-flow"), "--weights", ckpt, "--device",
           "cpu" if args.device == "cpu" else "cuda:0", "--once", ind, outd]
    cmd += [x for k, v in params.items() for x in ("--param", f"{k}={v}")]
    if prec == "fp32":
        cmd += ["--precision", "fp32"]
    env = dict(os.environ, S3D_PROFILE="1" if profile else "0", **(env_add or {}))
    print("running:", " ".join(cmd), flush=True)
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    err = p.communicate()[1]
    print(f"  exit {p.returncode}, {time.perf_counter() - t:.1f} s wall (cold, incl. loading)")
    with open(os.path.join(args.out, f"ours_{name}.log"), "w") as f:
        f.write(err)
    keep = [ln for ln in err.splitlines() if re.search(r"slat_flow: \d+ voxels|memory:| E ", ln)]
    print("\n".join("  " + ln for ln in keep))
    if p.returncode != 0:
        print(err[-3000:])
        return None, err, p.pid
    o, _ = refutil.load_tensors(os.path.join(outd, "slat_flow.safetensors"))
    return o["feats"].float(), err, p.pid


def velocity(torch, feats, noise, mean, std):
    """v of a 1-step sampler (dt = 1): x_1 = feats de-normalised back, v = x_1 - x_0."""
    return (feats - mean) / std - noise.reshape(feats.shape)


def rel(torch, a, b):
    return compare.compare_pair(a.float().cpu(), b.float().cpu())["rel"]


# ----------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build")
    ap.add_argument("--work", default="/tmp/s3d-slf")
    ap.add_argument("--out", default=None, help="results directory (default: --work)")
    ap.add_argument("--s3d", default=".ref/sam-3d-objects")
    ap.add_argument("--config-dir", default=".ref/Fast-SAM3D/checkpoints/hf")
    ap.add_argument("--size", choices=["tiny", "full"], default="full")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--voxels", type=int, default=30000)
    ap.add_argument("--coords", default=None, help="safetensors with 'coords' (N,4) int32")
    ap.add_argument("--ceiling", type=int, default=42000, help="voxels of the memory run (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time", type=int, default=5, help="timed official runs (after a warm-up)")
    ap.add_argument("--repeat", type=int, default=3, help="sampler runs of our stage (median)")
    ap.add_argument("--variant", action="append", default=[], metavar="VAR=VALUE",
                    help="also run our fp16 sampler with this environment setting (parity and "
                         "time, e.g. S3D_ATTN_MT=2); may be repeated")
    ap.add_argument("--evals", default="fp32,fp16",
                    help="precisions of part 1 (one evaluation), comma-separated; '' skips it")
    args = ap.parse_args(argv)
    args.out = args.out or args.work
    args.cond = None
    exe = os.path.join(args.bin, "sam3d-slat-flow")
    if not os.access(exe, os.X_OK):
        print(f"error: {exe} not built (HINT: make CUDA_ARCH=90 {exe})", file=sys.stderr)
        return 2
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    rs.setup_env(args.device)
    refutil.add_ref_paths(s3d=args.s3d)
    import torch
    dev = torch.device(args.device)
    shim = None
    if dev.type == "cuda":
        import flash_shim
        if flash_shim.install(torch):
            shim = sys.modules["flash_attn"]
    res = {"size": args.size, "device": args.device, "torch": torch.__version__,
           "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
           "attention": {}, "s3d_commit": refutil.ref_commit(args.s3d)}

    da = dump_slat_flow.parse(["--size", args.size, "--out", args.work, "--config",
                               os.path.join(args.config_dir, "slat_generator.yaml")])
    cfg = dump_slat_flow.build_config(da)
    pipe = rs.load_node(os.path.join(args.config_dir, "pipeline.yaml"))
    mean, std = torch.tensor(pipe["slat_mean"]), torch.tensor(pipe["slat_std"])
    ckpt = os.path.join(args.work, "slat_generator.ckpt")
    if os.path.exists(ckpt):
        os.remove(ckpt)                 # this run's seed and size
    if args.coords:
        coords, src = refutil.load_tensors(args.coords)[0]["coords"].int(), args.coords
    else:
        coords, src = pipeline_coords(args, torch, args.voxels, args.seed + 5)
    N, M = len(coords), parents(coords)
    C = cfg["reverse_fn"]["backbone"]["cond_channels"]
    cond, csrc = rs.make_cond(args, C, COND_TOKENS[args.size])
    noise = torch.randn(1, N, 8, generator=torch.Generator().manual_seed(args.seed + 21))
    res.update({"voxels": N, "tokens": M, "coords": src, "cond": csrc})
    print(f"voxels: {src}: N = {N}, M = {M} tokens; condition {tuple(cond.shape)}", flush=True)
    cnp = coords.numpy()
    fails = 0

    def check(key, value, tol):
        nonlocal fails
        ok = value == value and value <= tol
        fails += not ok
        res.setdefault("compare", {})[key] = {"rel_l2": value, "tol": tol, "ok": ok}
        print(f"  {key}: rel L2 {value:.2e} (tol {tol:.3g}) {'OK' if ok else 'FAIL'}", flush=True)

    with DriverMemory() as mem:
        # 1. one evaluation, t = 0, conditional (and the CFG combination)
        t0 = torch.tensor(0.0, device=dev)
        for prec in [p for p in args.evals.split(",") if p]:
            print(f"\n===== one evaluation, {prec} =====", flush=True)
            gen = official_module(args, torch, cfg, ckpt, prec, dev)
            res["attention"][prec] = attention_backend(prec, shim)
            print(f"official sparse attention, {prec}: {res['attention'][prec]}", flush=True)
            bb = gen.reverse_fn.backbone
            amp = torch.autocast(dev.type, dtype=torch.float16, enabled=prec == "fp16")
            x, c = noise.to(dev), cond.to(dev)
            with torch.no_grad(), amp:
                vc, ms, peak = timed(torch, dev, lambda: bb(x, t0, c, cnp), args.time)
                vu = bb(x, t0, c, cnp, cfg=True)
            vc, vu = vc.float().cpu()[0], vu.float().cpu()[0]
            res[f"official_eval_{prec}_ms"], res[f"official_eval_{prec}_peak"] = ms, peak
            print(f"official evaluation {prec}: {statistics.median(ms):.1f} ms median of {len(ms)}, "
                  f"torch peak {peak / 2**30:.2f} GiB", flush=True)
            del gen, bb
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            f1, log1, _ = ours(args, ckpt, f"eval_{prec}", coords, cond, noise,
                               {"steps": 1, "cfg": 0, "repeat": max(1, args.time)}, prec)
            res[f"ours_eval_{prec}_ms"] = log_number(log1, r"\): ([0-9.]+) ms")
            f2, _, _ = ours(args, ckpt, f"cfg_{prec}", coords, cond, noise,
                            {"steps": 1, "cfg": 1}, prec)
            if f1 is None or f2 is None:
                fails += 1
                continue
            tol = TOL[f"eval_{prec}"]
            oc = velocity(torch, f1, noise, mean, std)      # ours, conditional
            ocfg = velocity(torch, f2, noise, mean, std)    # ours, 2 v_cond - v_uncond
            check(f"eval_{prec} v_cond", rel(torch, oc, vc), tol)
            # the unconditional evaluation itself (ours: 2 v_cond - the combination)
            check(f"eval_{prec} v_uncond", rel(torch, 2 * oc - ocfg, vu), tol)
            # the combination of two evaluations each within tol is within
            # tol * (2 |v_cond| + |v_uncond|) / |2 v_cond - v_uncond| (triangle inequality)
            comb = 2 * vc - vu
            bound = tol * float((2 * vc.norm() + vu.norm()) / comb.norm())
            check(f"eval_{prec} 2 v_cond - v_uncond", rel(torch, ocfg, comb), bound)

        # 2. the whole sampler, fp16
        print("\n===== sampler (25 steps, CFG 1 on [0, 500]), fp16 =====", flush=True)
        gen = official_module(args, torch, cfg, ckpt, "fp16", dev)
        attention_backend("fp16", shim)
        orig = gen._generate_noise
        gen._generate_noise = lambda shape, device: noise.to(orig(shape, device))
        mem.reset(os.getpid())
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.float16,
                                             enabled=dev.type == "cuda"):
            fin, ms, peak = timed(torch, dev, lambda: gen((1, N, 8), dev, cond.to(dev), cnp),
                                  args.time // 2)
        ref = fin[0].float().cpu() * std + mean
        res.update({"official_sampler_ms": ms, "official_sampler_peak": peak,
                    "official_driver_peak_mib": mem.mib(os.getpid())})
        print(f"official sampler: {statistics.median(ms):.0f} ms median of {len(ms)}, torch peak "
              f"{peak / 2**30:.2f} GiB", flush=True)
        del gen
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        f, log, pid = ours(args, ckpt, "sampler_fp16", coords, cond, noise,
                           {"repeat": args.repeat})
        if f is None:
            fails += 1
        else:
            check("sampler_fp16 feats", rel(torch, f, ref), TOL["sampler_fp16"])
            res.update({"ours_sampler_ms": log_number(log, r"evaluation[s]? \(.*?\): ([0-9.]+) ms"),
                        "ours_eval_ms": log_number(log, r"([0-9.]+) ms per evaluation"),
                        "ours_evals": log_number(log, r"(\d+) evaluations"),
                        "ours_driver_peak_mib": mem.mib(pid),
                        "ours_memory_line": [ln for ln in log.splitlines() if "memory:" in ln]})
        for var in args.variant:     # our sampler with a workshop setting
            k, _, val = var.partition("=")
            fv, logv, _ = ours(args, ckpt, "sampler_fp16_" + re.sub(r"\W", "_", var), coords, cond,
                               noise, {"repeat": args.repeat}, env_add={k: val})
            if fv is None:
                fails += 1
                continue
            check(f"sampler_fp16 feats ({var})", rel(torch, fv, ref), TOL["sampler_fp16"])
            res.setdefault("variants", {})[var] = {
                "ours_sampler_ms": log_number(logv, r"evaluation[s]? \(.*?\): ([0-9.]+) ms"),
                "ours_eval_ms": log_number(logv, r"([0-9.]+) ms per evaluation")}
        if dev.type == "cuda":     # the whole sampler twice: the profile keeps the warm run
            ours(args, ckpt, "profile_fp16", coords, cond, noise, {"repeat": 2}, profile=True)

        # 3. memory at the ceiling: one CFG step, with and without the K/V cache
        if args.ceiling:
            cc, csrc2 = ceiling_coords(args, torch, args.ceiling)
            z = torch.randn(1, len(cc), 8, generator=torch.Generator().manual_seed(args.seed + 22))
            res["ceiling"] = {"voxels": len(cc), "tokens": parents(cc), "coords": csrc2}
            print(f"\nceiling: {csrc2}: N = {len(cc)}, M = {parents(cc)}", flush=True)
            for kv in (1, 0):
                _, log, pid = ours(args, ckpt, f"ceiling_kv{kv}", cc, cond, z,
                                   {"steps": 1, "cfg": 1, "cache_kv": kv})
                res["ceiling"][f"cache_kv={kv}"] = {
                    "driver_peak_mib": mem.mib(pid),
                    "memory_line": [ln for ln in log.splitlines() if "memory:" in ln]}
        res["driver_sampler_ok"] = mem.ok

    lines = summary(res)
    print("\n".join(lines))
    with open(os.path.join(args.out, "slat_flow_results.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    with open(os.path.join(args.out, "slat_flow_summary.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"\nslat_flow plugin: {'PASS' if not fails else f'{fails} FAIL'}")
    return 1 if fails else 0


def summary(r):
    med = statistics.median
    L = ["", f"SLAT flow, {r['size']}, {r['gpu']}: N = {r['voxels']} voxels, M = {r['tokens']} "
         f"tokens ({r['coords']}); official attention: {r['attention']}", "",
         "parity (docs/parity.md): | what | precision | rel L2 | tol |"]
    for k, v in r.get("compare", {}).items():
        L.append(f"| slat_flow {k} | {k.split()[0].split('_')[-1]} | {v['rel_l2']:.2e} | "
                 f"{v['tol']:.3g} {'ok' if v['ok'] else 'FAIL'} |")
    L += ["", "performance (docs/performance.md): | what | official | ours | speed-up |"]
    for p in ("fp32", "fp16"):
        if f"official_eval_{p}_ms" in r:
            o, s = med(r[f"official_eval_{p}_ms"]), r.get(f"ours_eval_{p}_ms", float("nan"))
            L.append(f"| one evaluation {p} (t = 0, conditional; ours: a 1-step request, "
                     f"geometry and K/V included) | {o:.1f} ms | {s:.1f} ms | {o / s:.2f}x |")
    if "ours_sampler_ms" in r:
        o, s = med(r["official_sampler_ms"]), r["ours_sampler_ms"]
        e = r.get("ours_evals", 38)
        L.append(f"| sampler fp16 ({e:.0f} evaluations) | {o:.0f} ms ({o / e:.1f} ms/eval) | "
                 f"{s:.0f} ms ({r['ours_eval_ms']:.1f} ms/eval) | {o / s:.2f}x |")
        L.append(f"| device memory (driver, process incl. context) at N = {r['voxels']} | "
                 f"{r['official_driver_peak_mib']:.0f} MiB (torch peak "
                 f"{r['official_sampler_peak'] / 2**20:.0f} MiB) | "
                 f"{r['ours_driver_peak_mib']:.0f} MiB | |")
    for var, v in r.get("variants", {}).items():
        o, s = med(r["official_sampler_ms"]), v["ours_sampler_ms"]
        L.append(f"| sampler fp16, ours with {var} | {o:.0f} ms | {s:.0f} ms "
                 f"({v['ours_eval_ms']:.1f} ms/eval) | {o / s:.2f}x |")
    for kv in ("cache_kv=1", "cache_kv=0"):
        c = r.get("ceiling", {}).get(kv)
        if c:
            L.append(f"| device memory at the ceiling N = {r['ceiling']['voxels']} "
                     f"(M = {r['ceiling']['tokens']}), {kv} | | {c['driver_peak_mib']:.0f} MiB | |")
            L += ["    " + ln.split("] ")[-1] for ln in c["memory_line"]]
    L += ["    ours, sampler: " + ln.split("] ")[-1] for ln in r.get("ours_memory_line", [])]
    return L


if __name__ == "__main__":
    sys.exit(main())
