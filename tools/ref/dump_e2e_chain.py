#!/usr/bin/env python3
"""One end-to-end chain of stage inputs and outputs through the official modules, in the order
and with the settings of InferencePipelinePointMap.run (PL/inference_pipeline_pointmap.py:
316-423; PL/inference_pipeline.py:642-768, 589-615), with random weights written as the
official checkpoint files, so the orchestrator's chaining can be checked artifact by artifact.

  # full size, on the GPU machine (140 s on one H200, tools/gpu/e2e_full.sh):
  python3 tools/ref/dump_e2e_chain.py --size full --device cuda --out /tmp/e2e_full \
      --weights-out /tmp/e2e_full/weights
  # reduced mode on this machine (tiny weights, few voxels, CPU, a few minutes):
  python3 tools/ref/dump_e2e_chain.py --size tiny --out /tmp/e2e_tiny --max-voxels 400

Stages and files (OUT/<stage>.safetensors, tensors in execution order):
  cond_ss     inputs image/rgb_image/mask/rgb_image_mask/pointmap/rgb_pointmap, out 'cond'
  ss_flow     'cond', noise.<latent>, final.<latent> (shape (1,4096,8) and 4 pose latents)
  ss_decode   'shape_latent', 'logits' (1,1,64,64,64), 'coords_original', 'coords',
              'downsample_factor'
  cond_slat   inputs, out 'cond'
  slat_flow   'coords', 'cond', 'noise', 'final', 'slat_feats' (de-normalised)
  gs_decode   'coords', 'feats', Gaussian _xyz.._opacity, 'ply.<name>' (the save_ply arrays = sam3d-gs-decode's outputs); OUT/splat.ply (official save_ply)
  gs4_decode  the same for slat_decoder_gs_4 (not run by the default pipeline; --gs4)
  mesh_decode 'vertices', 'faces', 'vertex_attrs'
The chain starts at the condition inputs: the image/mask crops are made by refutil's
fuser_inputs on the real example and a synthetic point map (the official preprocessing and
MoGe have their own fixtures: dump_moge.py, dump_cond.py). The pose decoder is not run (it
needs pytorch3d); the SS outputs it reads are in ss_flow.safetensors.
--weights-out DIR writes the six official checkpoint files there (ss_generator.ckpt and
slat_generator.ckpt hold both the condition embedder and the generator, as released).
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import refutil  # noqa: E402
import refutil_sparse as rs  # noqa: E402
import dump_cond  # noqa: E402
import dump_gs_decoder  # noqa: E402
import dump_mesh_decoder  # noqa: E402
import dump_ss_decoder  # noqa: E402
import dump_ss_flow  # noqa: E402
import dump_slat_flow  # noqa: E402

HF = ".ref/Fast-SAM3D/checkpoints/hf"
GEN = "_base_models.generator."
EMB = "_base_models.condition_embedder."


def log(msg, t0=[time.time()]):
    print(f"[{time.time() - t0[0]:7.1f} s] {msg}", flush=True)


def make(cfg, seed, dev, torch):
    """Instantiate + seeded realistic init (refutil) + move; eval mode."""
    with rs.cpu_cuda_shim():
        m = rs.instantiate(cfg)
    refutil.realistic_init_(m, seed)
    m = m.to(dev).eval()
    rs.spconv_cpu_mode(m, dev)
    return m


TIMES = {}        # stage -> (seconds, peak device bytes) of its official forward(s), one cold run


class timed:
    """Wall time (CUDA-synchronised) and torch's peak device memory of one block, stored in
    TIMES[name] and logged: a rough, cold reference (first call, cuDNN/cuBLAS warm-up
    included), not a benchmark."""

    def __init__(self, name, dev):
        self.name, self.dev = name, dev

    def __enter__(self):
        import torch
        if self.dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        import torch
        peak = 0
        if self.dev.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        TIMES[self.name] = (time.perf_counter() - self.t0, peak)
        log(f"{self.name}: {TIMES[self.name][0]:.3f} s, torch peak {peak / 2**30:.2f} GiB")


def save(args, name, tensors):
    refutil.save_tensors(os.path.join(args.out, name + ".safetensors"), tensors, dtype=None)
    log(f"wrote {name}.safetensors ({len(tensors)} tensors)")


def cond_stage(args, variant, dev, torch):
    ns = dump_cond.parse(["--variant", variant, "--size", args.size, "--s3d", args.s3d,
                          "--dinov2", args.dinov2, "--config", f"{args.hf}/{variant}_generator.yaml",
                          "--example", args.example, "--seed", str(args.seed),
                          "--device", args.device, "--construct-only"])
    cfg = dump_cond.build_config(ns)
    fuser = make(cfg, args.seed + 100, dev, torch)
    inputs, side, _ = dump_cond.make_inputs(ns, fuser)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16,
                                         enabled=dev.type == "cuda"):
        with timed(f"cond_{variant}", dev):
            cond = fuser(**{k: v.to(dev) for k, v in inputs.items()})
    out = refutil.OrderedDict(inputs)
    out.update(side)
    out["cond"] = cond
    save(args, f"cond_{variant}", out)
    return fuser, cond, side


def run(args):
    rs.setup_env(args.device)
    refutil.add_ref_paths(s3d=args.s3d, dinov2=args.dinov2)
    import torch
    from sam3d_objects.model.backbone.tdfy_dit.modules import sparse as sp
    refutil.seed_all(args.seed)
    dev = torch.device(args.device)
    os.makedirs(args.out, exist_ok=True)
    tiny = args.size == "tiny"
    amp = dict(device_type="cuda", dtype=torch.float16)   # the pipeline's autocast (dtype fp16)
    meta = {"size": args.size, "seed": args.seed, "device": args.device,
            "s3d_commit": refutil.ref_commit(args.s3d), "torch": torch.__version__}

    # ---- condition (SS) ------------------------------------------------------------------
    log("cond_ss")
    fuser_ss, cond_ss, side = cond_stage(args, "ss", dev, torch)

    # ---- SS flow: 25 steps, CFG 7, rescale 3 (sample_sparse_structure) -------------------
    log("ss_flow")
    a = dump_ss_flow.parse(["--size", args.size, "--config", f"{args.hf}/ss_generator.yaml", "--out", args.out])
    cfg = dump_ss_flow.build_config(a)
    if tiny:     # the pipeline views the shape latent as (B,8,16,16,16): keep 16^3 tokens
        bb = cfg["reverse_fn"]["backbone"]
        bb["cond_channels"] = cond_ss.shape[-1]
        bb["latent_mapping"]["shape"]["pos_embedder"]["resolution"] = 16
    gen_ss = make(cfg, args.seed + 200, dev, torch)
    dump_ss_flow.apply_pipeline_overrides(gen_ss, args.ss_steps)
    shapes = {k: (1,) + (v.pos_emb.shape[0], v.input_layer.in_features)
              for k, v in gen_ss.reverse_fn.backbone.latent_mapping.items()}
    clone = lambda d: {k: u.clone() for k, u in d.items()}          # noqa: E731
    torch.manual_seed(args.seed)                 # run(): torch.manual_seed(seed) before stage 1
    with rs.record_sampler(gen_ss, clone) as rec, torch.no_grad(), torch.autocast(**amp), \
            timed("ss_flow", dev):
        ss = gen_ss(shapes, dev, cond_ss)
    out = refutil.OrderedDict(cond=cond_ss)
    for k in dump_ss_flow.LATENTS:
        out[f"noise.{k}"] = rec["noise"][k]
    for k in dump_ss_flow.LATENTS:
        out[f"final.{k}"] = ss[k]
    out.update(side)                             # pointmap_scale/shift for the pose decoder
    save(args, "ss_flow", out)

    # ---- SS decode + coords (same autocast block in the pipeline) ------------------------
    log("ss_decode")
    cfg = rs.load_node(f"{args.hf}/ss_decoder.yaml")
    cfg.pop("pretrained_ckpt_path", None)
    if tiny:
        cfg.update(dump_ss_decoder.TINY)
    ss_dec = make(cfg, args.seed + 300, dev, torch)
    utils = dump_ss_decoder.UTILS
    prune = rs.official_function(args.s3d, utils, "prune_sparse_structure")
    downsample = rs.official_function(args.s3d, utils, "downsample_sparse_structure")
    shape_latent = ss["shape"]
    with torch.no_grad(), torch.autocast(**amp), timed("ss_decode", dev):
        logits = ss_dec(shape_latent.permute(0, 2, 1).contiguous()
                        .view(shape_latent.shape[0], 8, 16, 16, 16))
        coords_original = torch.argwhere(logits > 0)[:, [0, 2, 3, 4]].int()
        coords = prune(coords_original, max_neighbor_axes_dist=1)   # downsample_ss_dist 1
        coords, factor = downsample(coords, max_coords=args.max_voxels)
    save(args, "ss_decode", refutil.OrderedDict(
        shape_latent=shape_latent, logits=logits, coords_original=coords_original,
        coords=coords, downsample_factor=torch.tensor([factor], dtype=torch.int32)))
    log(f"coords {coords_original.shape[0]} -> {coords.shape[0]} (factor {factor})")

    # ---- condition (SLAT) + SLAT flow: 25 steps, CFG 1, rescale 1 (sample_slat) ----------
    log("cond_slat")
    fuser_slat, cond_slat, _ = cond_stage(args, "slat", dev, torch)
    log("slat_flow")
    a = dump_slat_flow.parse(["--size", args.size, "--config", f"{args.hf}/slat_generator.yaml", "--out", args.out])
    cfg = dump_slat_flow.build_config(a)
    bb = cfg["reverse_fn"]["backbone"]
    bb["cond_channels"] = cond_slat.shape[-1]
    if dev.type != "cuda":
        bb["use_fp16"] = False                   # CPU: fp32 torso (no fp16 spconv on CPU)
    gen_slat = make(cfg, args.seed + 400, dev, torch)
    dump_slat_flow.apply_pipeline_overrides(gen_slat, args.slat_steps)
    pipe = rs.load_node(f"{args.hf}/pipeline.yaml")
    mean = torch.tensor(pipe["slat_mean"], device=dev)
    std = torch.tensor(pipe["slat_std"], device=dev)
    with rs.record_sampler(gen_slat, lambda v: v.clone()) as rec, torch.no_grad(), \
            torch.autocast(**amp), timed("slat_flow", dev):
        slat = gen_slat((1, coords.shape[0], 8), dev, cond_slat, coords.cpu().numpy())
        x = sp.SparseTensor(coords=coords, feats=slat[0]).to(dev)
        x = x * std + mean
    save(args, "slat_flow", refutil.OrderedDict(
        coords=coords, cond=cond_slat, noise=rec["noise"], final=slat,
        slat_feats=x.feats))

    # ---- decoders (decode_slat: no autocast) ----------------------------------------------
    decs = [("mesh_decode", "slat_decoder_mesh"), ("gs_decode", "slat_decoder_gs")]
    if args.gs4:
        decs.append(("gs4_decode", "slat_decoder_gs_4"))
    models = {}
    for stage, name in decs:
        log(stage)
        cfg = rs.load_node(f"{args.hf}/{name}.yaml")
        cfg.pop("pretrained_ckpt_path", None)
        if tiny:
            tcfg = dump_mesh_decoder.TINY if "mesh" in name else dump_gs_decoder.TINY
            cfg.update({k: v for k, v in tcfg.items() if k != "resolution"})
        if "mesh" in name:
            cfg["device"] = args.device
        if dev.type != "cuda":
            cfg["use_fp16"] = False
        dec = make(cfg, args.seed + 500 + len(models), dev, torch)
        models[name] = dec
        with torch.no_grad(), rs.cpu_cuda_shim():
            with timed(stage, dev):
                rep = dec(x)[0]
            out = refutil.OrderedDict(coords=x.coords, feats=x.feats)
            if "mesh" in name:
                out.update(vertices=rep.vertices, faces=rep.faces.int(),
                           vertex_attrs=rep.vertex_attrs)
            else:
                for k in dump_gs_decoder.ATTRS:
                    out[k] = getattr(rep, k)
                for k, v in dump_gs_decoder.ply_arrays(rep).items():   # sam3d-gs-decode's outputs
                    out["ply." + k] = v
                rep.save_ply(os.path.join(args.out, "splat.ply" if name.endswith("gs")
                                          else "splat_gs4.ply"))
        save(args, stage, out)

    # ---- the official weight files ----------------------------------------------------------
    if args.weights_out:
        log(f"writing checkpoints to {args.weights_out}")
        W = args.weights_out
        for fname, emb, gen in (("ss_generator.ckpt", fuser_ss, gen_ss),
                                ("slat_generator.ckpt", fuser_slat, gen_slat)):
            sd = refutil.OrderedDict((EMB + k, v.cpu()) for k, v in emb.state_dict().items())
            sd.update((GEN + k, v.cpu()) for k, v in gen.state_dict().items())
            refutil.save_container({"state_dict": sd}, os.path.join(W, fname))
        refutil.save_container({k: v.cpu() for k, v in ss_dec.state_dict().items()},
                               os.path.join(W, "ss_decoder.ckpt"))
        for name, m in models.items():
            refutil.save_container({k: v.cpu() for k, v in m.state_dict().items()},
                                   os.path.join(W, name + ".ckpt"))
    meta.update(n_coords_original=int(coords_original.shape[0]), n_coords=int(coords.shape[0]),
                downsample_factor=factor, ss_steps=args.ss_steps, slat_steps=args.slat_steps,
                max_voxels=args.max_voxels,
                official_cold_s={k: round(v[0], 4) for k, v in TIMES.items()},
                official_peak_bytes={k: v[1] for k, v in TIMES.items()})
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    log(f"done: {args.out}")


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["tiny", "full"], default="full")
    ap.add_argument("--s3d", default=".ref/sam-3d-objects")
    ap.add_argument("--dinov2", default=".ref/dinov2")
    ap.add_argument("--hf", default=HF, help="folder of the released yaml files")
    ap.add_argument("--example", default="examples/human_object")
    ap.add_argument("--out", required=True)
    ap.add_argument("--weights-out", default=None)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--ss-steps", type=int, default=25)
    ap.add_argument("--slat-steps", type=int, default=25)
    ap.add_argument("--max-voxels", type=int, default=42000,
                    help="max_coords of downsample_sparse_structure (official: 42000)")
    ap.add_argument("--gs4", action="store_true", help="also run slat_decoder_gs_4")
    return ap.parse_args(argv)


if __name__ == "__main__":
    run(parse())
