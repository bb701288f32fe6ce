#!/usr/bin/env python3
"""The official SAM 3D Objects pipeline, whole, on one image + mask, with random weights in
the official file layout: the official half of the whole-pipeline benchmark
(tools/gpu/bench_full.sh, tools/ref/bench_report.py; docs/performance.md "Whole pipeline").

  python3 tools/ref/bench_official.py --size full --device cuda --image IMG --mask MASK \\
      --weights-out W --out OUT [--runs 2] [--fast] [--s3d .gl/ref/s3d --moge .gl/ref/moge \\
      --dinov2 .gl/ref/dinov2 --hf .gl/ref/hf]
  # CPU, tiny configurations (the same code path, minutes):
  python3 tools/ref/bench_official.py --size tiny --device cpu --image IMG --mask MASK \\
      --weights-out W --out OUT --max-voxels 400

1. Weights. Every network of the pipeline is built from the released configs (dump_*.py
   build_config; --size tiny: their tiny configurations) directly on --device and filled by
   refutil.realistic_init_ drawing there (CUDA generators: seconds instead of the ~2 minutes
   of the CPU draw), then written as the official files into --weights-out: ss_generator.ckpt
   and slat_generator.ckpt ({'state_dict': condition embedder + generator}), ss_decoder.ckpt,
   slat_decoder_gs.ckpt, slat_decoder_mesh.ckpt (flat), moge-vitl/model.pt
   ({'model_config', 'model'}). --reuse-weights keeps the files already there.
2. Load. Each network is loaded as the official pipeline loads it (PL/inference_pipeline.py:
   261-290 instantiate_and_load_from_pretrained: instantiate on the CPU, the official
   load_model_from_checkpoint strict, .to(device); MoGe: MoGeModel.from_pretrained), timed:
   the official cold start with the files in the page cache.
3. Runs. --runs N times the pipeline with every network resident, in the order and with the
   settings of InferencePipelinePointMap.run (PL/inference_pipeline_pointmap.py:316-423):
   depth (MoGe infer under the fp16 autocast + the camera flip, :242-258), preprocess (the
   official SS and SLAT PreProcessors of pipeline.yaml; without torchvision a stand-in,
   refutil.fuser_inputs, named in the output), cond_ss, ss_flow (25 steps, CFG 7),
   ss_decode (+ argwhere, prune, downsample), cond_slat, slat_flow (25 steps, CFG 1) +
   de-normalisation, gs_decode (+ the save_ply arrays on the host), mesh_decode (+ vertices,
   faces, colours on the host), export (Gaussian.save_ply; the GLB is not written: to_glb
   needs pytorch3d/nvdiffrast). Each stage is CUDA-synchronised and timed, with torch's peak
   allocation; the process's driver-measured peak comes from nvidia-smi. Run 1 is cold
   (cuDNN/cuBLAS set-up, lazy kernel loading), the others warm. --precision fp32 runs the
   same without the autocast, the torsos in fp32 (use_fp16 off) and the sparse attention
   through the official sdpa branch: the official modules in fp32, against `sam3d
   --precision fp32` (tools/gpu/bench_full.sh BENCH_PRECISION=fp32).
   --fast adds one warm run of the pipeline's distillation mode with 4 steps
   (run(use_stage1_distillation=True, use_stage2_distillation=True, stage1_inference_steps=4,
   stage2_inference_steps=4), PL/inference_pipeline.py:642-655, 721-740): sam3d's --preset fast.
   Noise (--noise ours, default): both samplers start from OUR seeded noise (a port of
   common/rng.h, seed --seed as pipelines/sam3d_objects.pipe), so the official run samples the
   same object as `sam3d run` and the workloads match; --noise torch keeps the official draw.
   Attention: dense SDPA (ATTN_BACKEND=sdpa: PyTorch picks its FlashAttention-2 kernel for
   fp16); sparse and windowed attention through the official flash_attn branch served by
   PyTorch's FlashAttention-2 varlen kernel (tools/ref/flash_shim.py, after its self-check),
   else the official sdpa branch. The backends used are recorded.
Writes OUT/official.json (times, peaks, object sizes, backends) and prints a summary; the
official outputs of each warm run go to --work (official_<kind>.ply, .safetensors).
"""
import argparse
import contextlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import refutil  # noqa: E402
import refutil_sparse as rs  # noqa: E402
from plugin_gs_decode import DriverMemory  # noqa: E402  (nvidia-smi per-process peaks)

GEN = "_base_models.generator."
EMB = "_base_models.condition_embedder."
STAGES = ["depth", "preprocess", "cond_ss", "ss_flow", "ss_decode", "cond_slat", "slat_flow",
          "gs_decode", "mesh_decode", "export"]
FILES = {"moge": "moge-vitl/model.pt", "ss_gen": "ss_generator.ckpt",
         "slat_gen": "slat_generator.ckpt", "ss_dec": "ss_decoder.ckpt",
         "gs_dec": "slat_decoder_gs.ckpt", "mesh_dec": "slat_decoder_mesh.ckpt"}
SEED_OFFSET = {"moge": 600, "cond_ss": 100, "ss_gen": 200, "ss_dec": 300, "cond_slat": 100,
               "slat_gen": 400, "gs_dec": 500, "mesh_dec": 501}


def log(msg, t0=[time.time()]):
    print(f"[{time.time() - t0[0]:7.1f} s] {msg}", flush=True)


# ------------------------------------------------------------------------------ our noise

def our_noise(seed, n):
    """n N(0,1) float32 values of our generator (tools/ref/s3d_rng.py = common/rng.h)."""
    import numpy as np
    import s3d_rng
    return np.frombuffer(s3d_rng.normal_bytes(seed, n), dtype="<f4").copy()


@contextlib.contextmanager
def given_noise(gen, make):
    """The sampler's _generate_noise returns make(official draw) (the draw still happens, so
    the global RNG advances as in the pipeline)."""
    orig = gen._generate_noise
    gen._generate_noise = lambda shape, device: make(orig(shape, device))
    try:
        yield
    finally:
        gen._generate_noise = orig


# ------------------------------------------------------------------------------ build + write

def configs(args, torch):
    """Every network's config (plain dicts) for --size; tiny widths that must chain are
    resolved after the condition embedders are built (see build)."""
    import dump_cond
    import dump_moge
    import dump_ss_decoder
    import dump_ss_flow
    import dump_slat_flow
    cfg = {}
    for v in ("ss", "slat"):
        ns = dump_cond.parse(["--variant", v, "--size", args.size, "--s3d", args.s3d,
                              "--dinov2", args.dinov2, "--config", f"{args.hf}/{v}_generator.yaml",
                              "--construct-only"])
        cfg[f"cond_{v}"] = dump_cond.build_config(ns)
    a = dump_ss_flow.parse(["--size", args.size, "--config", f"{args.hf}/ss_generator.yaml",
                            "--out", args.out])
    cfg["ss_gen"] = dump_ss_flow.build_config(a)
    a = dump_slat_flow.parse(["--size", args.size, "--config", f"{args.hf}/slat_generator.yaml",
                              "--out", args.out])
    cfg["slat_gen"] = dump_slat_flow.build_config(a)
    d = rs.load_node(f"{args.hf}/ss_decoder.yaml")
    d.pop("pretrained_ckpt_path", None)
    if args.size == "tiny":
        d.update(dump_ss_decoder.TINY)
    cfg["ss_dec"] = d
    for key, name in (("gs_dec", "slat_decoder_gs"), ("mesh_dec", "slat_decoder_mesh")):
        import dump_gs_decoder
        import dump_mesh_decoder
        d = rs.load_node(f"{args.hf}/{name}.yaml")
        d.pop("pretrained_ckpt_path", None)
        if args.size == "tiny":
            t = dump_mesh_decoder.TINY if key == "mesh_dec" else dump_gs_decoder.TINY
            d.update({k: v for k, v in t.items() if k != "resolution"})
        if key == "mesh_dec":
            d["device"] = args.device
        cfg[key] = d
    cfg["moge"] = dict(dump_moge.TINY_CONFIG if args.size == "tiny" else dump_moge.FULL_CONFIG)
    return cfg


def chain_widths(cfg, cond_w, args):
    """What dump_e2e_chain does for the chain to link: the generators' condition widths are
    the embedders' output widths; the tiny SS latent stays 16^3 (the pipeline views it as
    (1,8,16,16,16)); fp32 torsos on the CPU (no fp16 spconv there)."""
    bb = cfg["ss_gen"]["reverse_fn"]["backbone"]
    bb["cond_channels"] = cond_w["ss"]
    if args.size == "tiny":
        bb["latent_mapping"]["shape"]["pos_embedder"]["resolution"] = 16
    bb = cfg["slat_gen"]["reverse_fn"]["backbone"]
    bb["cond_channels"] = cond_w["slat"]
    if args.device == "cpu" or args.precision == "fp32":   # --precision fp32: fp32 torsos too
        bb["use_fp16"] = False
        cfg["gs_dec"]["use_fp16"] = False
        cfg["mesh_dec"]["use_fp16"] = False


def build_and_write(args, torch, cfg):
    """Build each network on the device, fill it there, write the official files. Returns
    {file: bytes}."""
    dev = torch.device(args.device)
    W = args.weights_out
    sizes = {}

    def make(c, seed, **kw):
        with rs.cpu_cuda_shim(), dev:
            m = rs.instantiate(c)
        refutil.realistic_init_(m, seed, device=dev.type, **kw)
        return m

    def save(obj, rel):
        path = os.path.join(W, rel)
        refutil.save_container(obj, path)
        sizes[rel] = os.path.getsize(path)
        log(f"wrote {rel} ({sizes[rel] / 1e9:.2f} GB)")

    def sd_cpu(m, prefix=""):
        return refutil.OrderedDict((prefix + k, v.detach().cpu().contiguous())
                                   for k, v in m.state_dict().items())

    cond_w = {}
    emb = {}
    for v in ("ss", "slat"):
        m = make(cfg[f"cond_{v}"], args.seed + SEED_OFFSET[f"cond_{v}"])
        cond_w[v] = int(m.embed_dims)
        emb[v] = sd_cpu(m, EMB)
        del m
    chain_widths(cfg, cond_w, args)
    for v, key in (("ss", "ss_gen"), ("slat", "slat_gen")):
        m = make(cfg[key], args.seed + SEED_OFFSET[key])
        sd = emb.pop(v)
        sd.update(sd_cpu(m, GEN))
        del m
        save({"state_dict": sd}, FILES[key])
        del sd
    for key in ("ss_dec", "gs_dec", "mesh_dec"):
        m = make(cfg[key], args.seed + SEED_OFFSET[key])
        save(sd_cpu(m), FILES[key])
        del m
    from moge.model.v1 import MoGeModel
    with dev:
        m = MoGeModel(**cfg["moge"])
    # mask logit bias 0.75: most pixels valid, with edges (as dump_moge.py)
    bias = {"head.output_block.1.2.bias": lambda shape, g: torch.full(shape, 0.75)}
    refutil.realistic_init_(m, args.seed + SEED_OFFSET["moge"], overrides=bias, device=dev.type)
    save(refutil.moge_container(cfg["moge"], sd_cpu(m)), FILES["moge"])
    del m
    with open(os.path.join(W, "bench_widths.json"), "w") as f:
        json.dump(cond_w, f)
    return sizes


def load_all(args, torch, cfg):
    """The official loading of each network, timed (seconds per pipeline stage)."""
    from sam3d_objects.model.io import (load_model_from_checkpoint,
                                        filter_and_remove_prefix_state_dict_fn)
    from moge.model.v1 import MoGeModel
    dev = torch.device(args.device)
    W = args.weights_out
    models, times = {}, {}

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def load(stage, c, rel, prefix=None, key="state_dict"):
        sync()
        t0 = time.perf_counter()
        with rs.cpu_cuda_shim():
            m = rs.instantiate(c)
        m = load_model_from_checkpoint(
            m, os.path.join(W, rel), strict=True, device="cpu", freeze=True, eval=True,
            state_dict_key=key,
            state_dict_fn=filter_and_remove_prefix_state_dict_fn(prefix) if prefix else None)
        m = m.to(dev)
        rs.spconv_cpu_mode(m, dev)
        sync()
        times[stage] = time.perf_counter() - t0
        log(f"loaded {stage} from {rel} in {times[stage]:.2f} s")
        return m

    sync()
    t0 = time.perf_counter()
    models["moge"] = MoGeModel.from_pretrained(os.path.join(W, FILES["moge"])).to(dev).eval()
    sync()
    times["depth"] = time.perf_counter() - t0
    log(f"loaded depth (MoGe) in {times['depth']:.2f} s")
    models["cond_ss"] = load("cond_ss", cfg["cond_ss"], FILES["ss_gen"], EMB)
    models["ss_gen"] = load("ss_flow", cfg["ss_gen"], FILES["ss_gen"], GEN)
    models["ss_dec"] = load("ss_decode", cfg["ss_dec"], FILES["ss_dec"], key=None)
    models["cond_slat"] = load("cond_slat", cfg["cond_slat"], FILES["slat_gen"], EMB)
    models["slat_gen"] = load("slat_flow", cfg["slat_gen"], FILES["slat_gen"], GEN)
    models["gs_dec"] = load("gs_decode", cfg["gs_dec"], FILES["gs_dec"], key=None)
    models["mesh_dec"] = load("mesh_decode", cfg["mesh_dec"], FILES["mesh_dec"], key=None)
    return models, times


# ------------------------------------------------------------------------------ preprocessing

def preprocessors(args):
    """The official SS/SLAT PreProcessors of pipeline.yaml, or None when they cannot run here
    (they need torchvision, and pytorch3d's transforms for the point-map normalisation,
    TDFY/transforms_3d.py:6; matplotlib is imported but unused: stubbed)."""
    import types
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        sys.modules.setdefault("matplotlib", types.ModuleType("matplotlib"))
        sys.modules.setdefault("matplotlib.pyplot", types.ModuleType("matplotlib.pyplot"))
    try:
        from hydra.utils import instantiate
        from omegaconf import OmegaConf
        import pytorch3d.transforms  # noqa: F401
        from sam3d_objects.data.dataset.tdfy.img_and_mask_transforms import get_mask
        cfg = OmegaConf.load(f"{args.hf}/pipeline.yaml")
        return instantiate(cfg.ss_preprocessor), instantiate(cfg.slat_preprocessor), get_mask
    except Exception as e:                       # noqa: BLE001 - reported, then the stand-in
        log(f"official preprocessors unavailable ({type(e).__name__}: {e}); using the "
            f"refutil.fuser_inputs stand-in")
        return None


def preprocess(pre, rgba, pointmap, torch, dev):
    """(ss inputs, slat inputs, pointmap_scale, pointmap_shift) as the pipeline's
    preprocess_image makes them (PL/inference_pipeline_pointmap.py:172-212)."""
    import numpy as np
    if pre is not None:
        ss, slat, get_mask = pre
        t = torch.from_numpy((rgba / 255).astype(np.float32)).permute(2, 0, 1).contiguous()
        rgb, mask = t[:3], get_mask(t, None, "ALPHA_CHANNEL")
        r = ss._process_image_mask_pointmap_mess(rgb, mask, pointmap)
        r2 = slat._process_image_mask_pointmap_mess(rgb, mask, None)
        ssi = {k: r[k][None].to(dev) for k in ("image", "rgb_image", "mask", "rgb_image_mask",
                                                "pointmap", "rgb_pointmap")}
        sli = {k: r2[k][None].to(dev) for k in ("image", "rgb_image", "mask", "rgb_image_mask")}
        return ssi, sli, r["pointmap_scale"], r["pointmap_shift"]
    mask = rgba[..., 3] > 0
    P = pointmap.float()
    Pn, scale, shift = refutil.ssi_normalize(P.cpu(), mask)
    inp = refutil.fuser_inputs(rgba[..., :3], mask, 518, Pn)
    ssi = {k: v.to(dev) for k, v in inp.items()}
    sli = {k: ssi[k] for k in ("image", "rgb_image", "mask", "rgb_image_mask")}
    return ssi, sli, scale, shift


# ------------------------------------------------------------------------------ one run

def run_once(args, torch, M, rgba, pre, kind):
    """The whole pipeline once; returns {"stages": {name: {"s", "torch_peak"}}, ...}."""
    import numpy as np
    from sam3d_objects.model.backbone.tdfy_dit.modules import sparse as sp
    import dump_gs_decoder
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    amp = dict(device_type="cuda", dtype=torch.float16, enabled=cuda and args.precision == "fp16")
    res = {"kind": kind, "stages": {}}
    out = {}

    @contextlib.contextmanager
    def stage(name):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        with torch.no_grad():
            yield
        if cuda:
            torch.cuda.synchronize()
        res["stages"][name] = {"s": time.perf_counter() - t0,
                               "torch_peak": torch.cuda.max_memory_allocated() if cuda else 0}

    fast = kind == "fast"
    gen_ss, gen_slat = M["ss_gen"], M["slat_gen"]
    import dump_ss_flow
    import dump_slat_flow
    dump_ss_flow.apply_pipeline_overrides(gen_ss, 4 if fast else 25)
    dump_slat_flow.apply_pipeline_overrides(gen_slat, 4 if fast else 25)
    if fast:                       # sample_sparse_structure / sample_slat, use_distillation
        gen_ss.no_shortcut = False
        gen_ss.reverse_fn.strength = 0
        gen_slat.no_shortcut = False
        gen_slat.reverse_fn.strength = 0
    t_all = time.perf_counter()

    with stage("depth"), torch.autocast(**amp):
        img = torch.from_numpy((rgba[..., :3] / 255).astype(np.float32)).permute(2, 0, 1)
        o = M["moge"].infer(img.contiguous().to(dev), force_projection=False)
        flip = torch.tensor([-1.0, -1.0, 1.0], device=dev)
        pm = torch.where(o["mask"][..., None], o["points"].float() * flip, torch.nan)
        pointmap = pm.permute(2, 0, 1).contiguous()
    with stage("preprocess"):
        ssi, sli, pscale, pshift = preprocess(pre, rgba, pointmap, torch, dev)
    with stage("cond_ss"), torch.autocast(**amp):
        cond_ss = M["cond_ss"](**ssi)
    shapes = {k: (1,) + (v.pos_emb.shape[0], v.input_layer.in_features)
              for k, v in gen_ss.reverse_fn.backbone.latent_mapping.items()}

    def ss_noise(drawn):
        if args.noise != "ours":
            return drawn
        keys = sorted(drawn)           # the draw order (optree sorted keys) = ours
        flat = our_noise(args.seed, sum(drawn[k].numel() for k in keys))
        out_, off = {}, 0
        for k in keys:
            m = drawn[k].numel()
            out_[k] = torch.from_numpy(flat[off:off + m].copy()).view_as(drawn[k]).to(drawn[k])
            off += m
        return out_

    torch.manual_seed(args.seed)
    with stage("ss_flow"), torch.autocast(**amp), given_noise(gen_ss, ss_noise):
        ss = gen_ss(shapes, dev, cond_ss)
    from dump_ss_decoder import UTILS
    prune = rs.official_function(args.s3d, UTILS, "prune_sparse_structure")
    downsample = rs.official_function(args.s3d, UTILS, "downsample_sparse_structure")
    with stage("ss_decode"), torch.autocast(**amp):
        lat = ss["shape"]
        logits = M["ss_dec"](lat.permute(0, 2, 1).contiguous().view(lat.shape[0], 8, 16, 16, 16))
        coords0 = torch.argwhere(logits > 0)[:, [0, 2, 3, 4]].int()
        coords = prune(coords0, max_neighbor_axes_dist=1)
        coords, factor = downsample(coords, max_coords=args.max_voxels)
    with stage("cond_slat"), torch.autocast(**amp):
        cond_slat = M["cond_slat"](**sli)

    def slat_noise(drawn):
        if args.noise != "ours":
            return drawn
        return torch.from_numpy(our_noise(args.seed, drawn.numel())).view_as(drawn).to(drawn)

    pipe = rs.load_node(f"{args.hf}/pipeline.yaml")
    mean = torch.tensor(pipe["slat_mean"], device=dev)
    std = torch.tensor(pipe["slat_std"], device=dev)
    with stage("slat_flow"), torch.autocast(**amp), given_noise(gen_slat, slat_noise):
        slat = gen_slat((1, coords.shape[0], 8), dev, cond_slat, coords.cpu().numpy())
        x = sp.SparseTensor(coords=coords, feats=slat[0]).to(dev)
        x = x * std + mean
    with stage("gs_decode"), rs.cpu_cuda_shim():
        gs = M["gs_dec"](x)[0]
        arrays = {k: v.cpu() for k, v in dump_gs_decoder.ply_arrays(gs).items()}
    with stage("mesh_decode"), rs.cpu_cuda_shim():
        mesh = M["mesh_dec"](x)[0]
        mo = {"vertices": mesh.vertices.cpu(), "faces": mesh.faces.cpu(),
              "colors": mesh.vertex_attrs[:, :3].cpu()}
    with stage("export"):
        gs.save_ply(os.path.join(args.work, f"official_{kind}.ply"))
    res["total_s"] = time.perf_counter() - t_all
    res["object"] = {"coords_original": int(coords0.shape[0]), "coords": int(coords.shape[0]),
                     "downsample_factor": float(factor), "gaussians": int(arrays["xyz"].shape[0]),
                     "vertices": int(mo["vertices"].shape[0]), "faces": int(mo["faces"].shape[0]),
                     "pointmap_scale": [float(v) for v in pscale.flatten()[:1]],
                     "cond_ss_tokens": int(cond_ss.shape[1]), "cond_slat_tokens": int(cond_slat.shape[1])}
    out.update(coords=coords.cpu(), coords_original=coords0.cpu(), **{f"gs.{k}": v for k, v in arrays.items()},
               **{f"mesh.{k}": v for k, v in mo.items()})
    return res, out


# ------------------------------------------------------------------------------ main

def main(argv=None):
    args = parse(argv)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.weights_out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    rs.setup_env(args.device)
    refutil.add_ref_paths(s3d=args.s3d, moge=args.moge, dinov2=args.dinov2)
    import numpy as np
    import torch
    from PIL import Image
    dev = torch.device(args.device)
    meta = {"size": args.size, "device": args.device, "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
            "s3d_commit": refutil.ref_commit(args.s3d), "seed": args.seed, "noise": args.noise,
            "precision": args.precision}
    if dev.type == "cuda":                 # what fp32 means here: torch's defaults, recorded
        meta["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32,
                        "cudnn": torch.backends.cudnn.allow_tf32}
    attn = None
    if dev.type == "cuda" and args.attention == "auto" and args.precision == "fp16":
        # (fp32: FlashAttention takes fp16/bf16 only; the official sdpa branch serves fp32)
        import flash_shim
        attn = flash_shim.install(torch)
        if attn:
            os.environ["SPARSE_ATTN_BACKEND"] = "flash_attn"
    meta["attention"] = {"dense": "sdpa (torch.nn.functional.scaled_dot_product_attention)",
                         "sparse": f"flash_attn branch via {attn}" if attn else
                         "sdpa branch (masked_sdpa)"}
    log(f"attention: {meta['attention']}")
    if args.size == "tiny":
        import dump_moge
        refutil.add_ref_paths(moge=args.moge)
        dump_moge.register_tiny_encoder()
    cfg = configs(args, torch)
    have = all(os.path.exists(os.path.join(args.weights_out, f)) for f in FILES.values())
    if args.reuse_weights and have:
        log(f"reusing the weights in {args.weights_out}")
        with open(os.path.join(args.weights_out, "bench_widths.json")) as f:
            chain_widths(cfg, json.load(f), args)
    else:
        t0 = time.time()
        meta["weights_bytes"] = build_and_write(args, torch, cfg)
        meta["weights_s"] = time.time() - t0
        log(f"weights written in {meta['weights_s']:.1f} s")
    if args.weights_only:           # tools/gpu/budget_full.sh: the weights, no official run
        return
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    rgba = np.array(Image.open(args.image).convert("RGB"))
    m = np.array(Image.open(args.mask))
    m = m[..., -1] if m.ndim == 3 else m
    rgba = np.concatenate([rgba, ((m > 0).astype(np.uint8) * 255)[..., None]], axis=-1)
    meta["image"] = os.path.basename(args.image)
    meta["image_hw"] = list(rgba.shape[:2])
    with DriverMemory() as mem:
        models, meta["load_s"] = load_all(args, torch, cfg)
        pre = preprocessors(args)
        meta["preprocess"] = "official PreProcessor" if pre else "refutil.fuser_inputs stand-in"
        runs = []
        kinds = ["cold"] + ["warm"] * (args.runs - 1) + (["fast"] if args.fast else [])
        for i, kind in enumerate(kinds):
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            r, outs = run_once(args, torch, models, rgba, pre, kind)
            r["torch_peak_run"] = max(s["torch_peak"] for s in r["stages"].values())
            runs.append(r)
            log(f"run {i + 1} ({kind}): {r['total_s']:.2f} s; " + ", ".join(
                f"{k} {v['s']:.2f}" for k, v in r["stages"].items()) + f"; object {r['object']}")
            if kind != "cold":
                refutil.save_tensors(os.path.join(args.work, f"official_{kind}.safetensors"),
                                     outs, dtype=None)
        meta["runs"] = runs
    drv = mem.mib(os.getpid())
    meta["driver_peak_mib"] = None if drv != drv else drv        # NaN: no nvidia-smi
    meta["resident_bytes"] = (torch.cuda.memory_allocated() if dev.type == "cuda" else 0)
    with open(os.path.join(args.out, "official.json"), "w") as f:
        json.dump(meta, f, indent=1)
    log(f"wrote {os.path.join(args.out, 'official.json')}")


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["tiny", "full"], default="full")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--image", required=True)
    ap.add_argument("--mask", required=True)
    ap.add_argument("--weights-out", required=True, help="the official weight files go here")
    ap.add_argument("--reuse-weights", action="store_true",
                    help="keep the files already in --weights-out")
    ap.add_argument("--out", required=True, help="official.json goes here")
    ap.add_argument("--weights-only", action="store_true",
                    help="write (or keep) the weights and stop: no official run")
    ap.add_argument("--work", default="/tmp/s3d-bench-official",
                    help="the official outputs (splat .ply, arrays) of each run, not in --out")
    ap.add_argument("--runs", type=int, default=2, help="pipeline runs (the first is cold)")
    ap.add_argument("--fast", action="store_true",
                    help="one more run in the distillation mode, 4 + 4 steps")
    ap.add_argument("--noise", choices=["ours", "torch"], default="ours")
    ap.add_argument("--attention", choices=["auto", "sdpa"], default="auto")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--precision", choices=["fp16", "fp32"], default="fp16",
                    help="fp16: the official fp16 autocast and fp16 torsos (the pipeline as "
                         "released); fp32: no autocast, fp32 torsos (use_fp16 off), torch's "
                         "TF32 defaults (recorded in official.json)")
    ap.add_argument("--max-voxels", type=int, default=42000,
                    help="max_coords of downsample_sparse_structure (official: 42000)")
    ap.add_argument("--s3d", default=".ref/sam-3d-objects")
    ap.add_argument("--moge", default=".ref/MoGe")
    ap.add_argument("--dinov2", default=".ref/dinov2")
    ap.add_argument("--hf", default=".ref/Fast-SAM3D/checkpoints/hf")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    return args


if __name__ == "__main__":
    main()
