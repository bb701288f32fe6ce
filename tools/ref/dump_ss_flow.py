#!/usr/bin/env python3
"""Golden reference for the SS flow stage: the official generator object (ShortCut ->
ClassifierFreeGuidanceWithExternalUnconditionalProbability -> SparseStructureFlowTdfyWrapper,
the MoT DiT), built from the released yaml (FS:checkpoints/hf/ss_generator.yaml,
module.generator.backbone) with hydra, filled with seeded random weights, saved in the official
Lightning container, then run (1) as ONE network evaluation, conditional and unconditional,
with per-block activations, and (2) as the whole sampler with the pipeline's settings
(25 steps, rescale_t 3, CFG 7 on [0,500], d = 0; spec generators.md §2, §5), recording the noise
the sampler drew and every step.

  python3 tools/ref/dump_ss_flow.py --size tiny --s3d .ref/sam-3d-objects \
      --config .ref/Fast-SAM3D/checkpoints/hf/ss_generator.yaml --out tests/fixtures/ss_flow_tiny \
      --ckpt-out tests/fixtures/cond_ss_tiny/ss_generator.ckpt

Writes OUT/ss_generator.ckpt ({'state_dict': {'_base_models.generator.<k>'}}),
OUT/eval.safetensors (one evaluation), OUT/sampler.safetensors (sampler), OUT/meta.json.
--ckpt-out FILE writes the generator into FILE instead, keeping the entries FILE already holds
under other prefixes (the tiny condition embedder: one ss_generator.ckpt with both, as released;
merge_ckpt.py), and loads it back from there through the official loader.
--size full uses the yaml as released (width 1024, 24 blocks, 16^3 latent; needs the GPU).

--shortcut N: instead, the official shortcut (distillation) sampler with N steps
(run(use_stage1_distillation=True, stage1_inference_steps=N): no_shortcut False -> d = 1/N,
CFG strength 0; PL/inference_pipeline.py:647-658) on the generator ALREADY in the checkpoint
(--ckpt-out FILE, or OUT/ss_generator.ckpt; loaded through the official loader, not rewritten),
the same condition and noise seeds; writes OUT/sampler_shortcut.safetensors only:

  python3 tools/ref/dump_ss_flow.py --size tiny --shortcut 4 --out tests/fixtures/ss_flow_tiny \
      --ckpt-out tests/fixtures/cond_ss_tiny/ss_generator.ckpt
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import refutil  # noqa: E402
import refutil_sparse as rs  # noqa: E402
import merge_ckpt  # noqa: E402

PREFIX = "_base_models.generator."
LATENTS = ["6drotation_normalized", "scale", "shape", "translation", "translation_scale"]

# Tiny: same classes, width 128 = 2 heads x 64, 1 block, shape latent at 8^3 (512 tokens),
# MLP ratio 1 (fixture size budget: 2 blocks would double the checkpoint) and condition width
# 128 = the tiny SS condition fuser's token width (tests/fixtures/cond_ss_tiny: cond (1,112,128)),
# so the two halves of the tiny ss_generator.ckpt chain; with --cond FILE of another width the
# tokens are random (refutil_sparse.make_cond). --blocks N overrides the block count.
TINY = {"model_channels": 128, "num_heads": 2, "num_blocks": 1, "cond_channels": 128,
        "mlp_ratio": 1, "resolution": 8}
# Pipeline overrides (PL/inference_pipeline.py:80-84, 418-442, 642-654).
PIPE = {"steps": 25, "rescale_t": 3, "strength": 7.0, "interval": [0, 500]}


def build_config(args):
    cfg = rs.load_node(args.config, "module", "generator", "backbone")
    bb = cfg["reverse_fn"]["backbone"]
    if args.size == "tiny":
        C = TINY["model_channels"]
        for k in ("model_channels", "num_heads", "num_blocks", "cond_channels", "mlp_ratio"):
            bb[k] = TINY[k]
        if args.blocks:
            bb["num_blocks"] = args.blocks
        bb["resolution"] = TINY["resolution"]
        for lat in bb["latent_mapping"].values():
            lat["model_channels"] = C
            lat["pos_embedder"]["model_channels"] = C
            if "resolution" in lat["pos_embedder"]:
                lat["pos_embedder"]["resolution"] = TINY["resolution"]
    return cfg


def apply_pipeline_overrides(gen, steps):
    """What InferencePipeline.override_ss_generator_cfg_config (PL/inference_pipeline.py:
    418-442) and sample_sparse_structure (:642-654, non-distilled) set."""
    gen.inference_steps = steps
    gen.rescale_t = PIPE["rescale_t"]
    gen.no_shortcut = True
    gen.reverse_fn.strength = PIPE["strength"]
    gen.reverse_fn.interval = list(PIPE["interval"])
    gen.reverse_fn.unconditional_handling = "add_flag"
    gen.reverse_fn.strength_pm = 0.0


def block_names(backbone, sub):
    n = len(backbone.blocks)
    names = ["t_embedder", "d_embedder"]
    for b in range(n):
        names.append(f"blocks.{b}")
    # sub-module outputs of block 0 (conditional pass only) for finer bisection
    # (the shape stream's cross-attention and MLP outputs are left out: size budget; the
    # pose stream's are kept, and blocks.0 holds the block output of both streams)
    for b in [0] if sub else []:
        names += [f"blocks.{b}.self_attn", f"blocks.{b}.cross_attn.6drotation_normalized",
                  f"blocks.{b}.mlp.6drotation_normalized"]
    return names


def one_eval(args, gen, cond, torch):
    """One network evaluation at step k=args.eval_step of the sampler's grid, with the noise
    as x: conditional, then unconditional (cfg=True -> cond*0, mot_sparse_structure_flow.py:
    214-219)."""
    import numpy as np
    bb = gen.reverse_fn.backbone
    shapes = {k: (1,) + (v.pos_emb.shape[0], v.input_layer.in_features)
              for k, v in bb.latent_mapping.items()}
    g = torch.Generator().manual_seed(args.seed + 21)
    x = {k: torch.randn(shapes[k], generator=g).to(cond.device) for k in LATENTS}
    t_seq, d = gen._prepare_t_and_d()
    tk = float(t_seq[args.eval_step])
    t = torch.tensor([tk * gen.time_scale], dtype=torch.float32, device=cond.device)
    dd = torch.tensor([d * gen.time_scale], dtype=torch.float32, device=cond.device)
    out = refutil.OrderedDict()
    for k in LATENTS:
        out[f"x.{k}"] = x[k]
    out["t"] = t
    out["d"] = dd
    out["cond"] = cond
    for tag, kw in (("cond", {}), ("uncond", {"cfg": True})):
        # per-block activations for the conditional pass only (size budget); the
        # unconditional pass records t/d embeddings and its output
        names = block_names(bb, True) if tag == "cond" else ["t_embedder", "d_embedder"]
        with rs.sparse_capture(bb, names, prefix=f"{tag}.") as log:
            pre = []
            h = bb.blocks[0].register_forward_pre_hook(lambda m, a: pre.append(a[0]))
            with torch.no_grad():
                v = bb(x, t, cond, d=dd, **kw)
            h.remove()
        if tag == "cond":           # block-0 input: latent projections + positions
            out["cond.tokens_in.6drotation_normalized"] = pre[0]["6drotation_normalized"]
        out.update(log.tensors)
        for k in LATENTS:
            out[f"{tag}.v.{k}"] = v[k]
    return out, {"eval_step": args.eval_step, "eval_t": tk, "np": np.__version__}


def sampler(args, gen, cond, torch):
    """The whole sampler through the official generator call (Base.forward -> generate ->
    ShortCut.generate_iter -> Euler), with the noise drawn by the official _generate_noise
    under torch.manual_seed(seed + 42) and recorded; per step k: t, x_k (input; for the shape
    latent only on the first and last CFG step), v_k (after CFG); the backbone's raw
    cond/uncond outputs for the first and last CFG step."""
    bb = gen.reverse_fn.backbone
    shapes = {k: (1,) + (v.pos_emb.shape[0], v.input_layer.in_features)
              for k, v in bb.latent_mapping.items()}
    clone = lambda d: {k: u.clone() for k, u in d.items()}          # noqa: E731
    given = None
    if args.noise:
        t, _ = refutil.load_tensors(args.noise)
        given = {k: t[f"noise.{k}"] for k in LATENTS}
    with rs.record_sampler(gen, clone, given) as rec:
        torch.manual_seed(args.seed + 42)
        with torch.no_grad():
            final = gen(shapes, cond.device, cond)
    out = refutil.OrderedDict()
    out["cond"] = cond
    for k in LATENTS:                              # draw order = sorted keys (optree)
        out[f"noise.{k}"] = rec["noise"][k]
    t_seq, d = gen._prepare_t_and_d()
    out["t_seq"] = torch.tensor(t_seq, dtype=torch.float64)
    cfg_steps = [s for s, c in enumerate(rec["per_step"]) if len(c) == 2]
    debug = (cfg_steps[0], cfg_steps[-1]) if cfg_steps else ()
    for s, (t, x, v) in enumerate(rec["steps"]):
        out[f"step.{s}.t"] = t
        # x of the shape latent only where the raw outputs are kept (size budget): the
        # trajectory is x_{k+1} = x_k + v_k * (t_{k+1} - t_k) from noise, bit for bit
        for k in LATENTS:
            if k != "shape" or s in debug:
                out[f"step.{s}.x.{k}"] = x[k]
        if s in debug:
            for tag, o in rec["per_step"][s]:
                for k in LATENTS:
                    out[f"step.{s}.{tag}.{k}"] = o[k]
        for k in LATENTS:
            out[f"step.{s}.v.{k}"] = v[k]
    for k in LATENTS:
        out[f"final.{k}"] = final[k]
    return out, {"cfg_steps": cfg_steps, "n_evals": len(rec["calls"]),
                 "steps": len(rec["steps"]), "d": d}


def apply_distillation(gen, steps):
    """sample_sparse_structure(use_distillation=True, inference_steps=steps)
    (PL/inference_pipeline.py:647-658) after the pipeline overrides."""
    apply_pipeline_overrides(gen, steps)
    gen.no_shortcut = False
    gen.reverse_fn.strength = 0
    gen.reverse_fn.strength_pm = 0


def run_shortcut(args):
    """--shortcut N: the distillation sampler on the existing checkpoint."""
    rs.setup_env(args.device)
    refutil.add_ref_paths(s3d=args.s3d)
    import torch
    refutil.seed_all(args.seed)
    cfg = build_config(args)
    ckpt = args.ckpt_out or os.path.join(args.out, "ss_generator.ckpt")
    gen, loader = rs.load_official(rs.instantiate(cfg), ckpt, PREFIX, "state_dict")
    apply_distillation(gen, args.shortcut)
    dev = torch.device(args.device)
    gen = gen.to(dev)
    cond, cond_src = rs.make_cond(args, gen.reverse_fn.backbone.cond_channels,
                                  96 if args.size == "tiny" else 7528)
    with rs.amp_context(args, dev):
        sm, m2 = sampler(args, gen, cond.to(dev), torch)
    md = {"steps": str(args.shortcut), "d": repr(m2["d"]), "strength": "0", "loader": loader,
          "checkpoint": os.path.relpath(ckpt), "cond_source": cond_src,
          "s3d_commit": refutil.ref_commit(args.s3d), "torch": torch.__version__}
    path = os.path.join(args.out, "sampler_shortcut.safetensors")
    refutil.save_tensors(path, sm, metadata=md, dtype=None)
    print(f"shortcut sampler: {m2['steps']} steps, {m2['n_evals']} evals, d {m2['d']}, CFG on "
          f"steps {m2['cfg_steps']}; wrote {path}")


def run(args):
    if args.shortcut:
        return run_shortcut(args)
    rs.setup_env(args.device)
    refutil.add_ref_paths(s3d=args.s3d)
    import torch
    refutil.seed_all(args.seed)
    cfg = build_config(args)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    ckpt = args.ckpt_out or os.path.join(args.out, "ss_generator.ckpt")
    gen, loader, rules, nparam = rs.build_init_save(
        cfg, args.seed, ckpt,
        wrap=lambda sd: merge_ckpt.merged(ckpt, refutil.lightning_ckpt(sd, PREFIX), PREFIX),
        prefix=PREFIX, state_dict_key="state_dict")
    print(f"built ss generator ({args.size}): {nparam:,} parameters ({time.time() - t0:.1f} s)",
          flush=True)
    apply_pipeline_overrides(gen, args.steps)
    dev = torch.device(args.device)
    gen = gen.to(dev)
    bb = gen.reverse_fn.backbone
    cond, cond_src = rs.make_cond(args, bb.cond_channels, 96 if args.size == "tiny" else 7528)
    cond = cond.to(dev)
    meta = rs.base_meta(args, loader, nparam, TINY, model_channels=bb.model_channels,
                        cond_source=cond_src, pipeline={**PIPE, "steps": args.steps})
    # the pipeline runs the generator under autocast (PL/inference_pipeline.py:671-672)
    with rs.amp_context(args, dev):
        ev, m1 = one_eval(args, gen, cond, torch)
        sm, m2 = sampler(args, gen, cond, torch)
        if args.time:
            m2.update(time_sampler(args, gen, cond, torch))
    rs.write_flow_outputs(args, ev, m1, sm, m2, meta, rules)


def time_sampler(args, gen, cond, torch):
    """--time N: the official sampler (no recording hooks, same autocast) N more times after
    the recorded run (which warmed up cuBLAS/cuDNN): wall time per run (CUDA-synchronised) and
    torch's peak device memory over them. Printed and returned for meta.json."""
    import statistics
    bb = gen.reverse_fn.backbone
    shapes = {k: (1,) + (v.pos_emb.shape[0], v.input_layer.in_features)
              for k, v in bb.latent_mapping.items()}
    sync = torch.cuda.synchronize if cond.device.type == "cuda" else (lambda: None)
    if cond.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ms = []
    for _ in range(args.time):
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            gen(shapes, cond.device, cond)
        sync()
        ms.append((time.perf_counter() - t0) * 1e3)
    peak = torch.cuda.max_memory_allocated() if cond.device.type == "cuda" else 0
    med = statistics.median(ms)
    print(f"official sampler: {med:.1f} ms median of {len(ms)} (min {min(ms):.1f}); torch peak "
          f"{peak / 2**30:.2f} GiB", flush=True)
    return {"official_sampler_ms": ms, "official_peak_bytes": peak}


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    rs.add_common_args(ap, ".ref/Fast-SAM3D/checkpoints/hf/ss_generator.yaml", PIPE["steps"])
    ap.add_argument("--blocks", type=int, default=0, help="tiny: number of blocks (default 1)")
    ap.add_argument("--ckpt-out", default=None,
                    help="write the generator into this ss_generator.ckpt (other prefixes kept) "
                         "instead of OUT/ss_generator.ckpt")
    ap.add_argument("--shortcut", type=int, default=0, metavar="N",
                    help="the official shortcut (distillation) sampler with N steps on the "
                         "existing checkpoint: OUT/sampler_shortcut.safetensors only")
    ap.add_argument("--time", type=int, default=0,
                    help="also time N more official sampler runs (median ms, torch peak)")
    return ap.parse_args(argv)


if __name__ == "__main__":
    run(parse())
