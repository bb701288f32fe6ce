#!/usr/bin/env python3
"""Golden reference for the SLAT flow stage: the official generator object (FlowMatching ->
ClassifierFreeGuidance -> SLatFlowModelTdfyWrapper, the sparse U-DiT), built from the released
yaml (FS:checkpoints/hf/slat_generator.yaml, module.generator.backbone) with hydra, filled with
seeded random weights, saved in the official Lightning container, then run on a synthetic
pruned voxel shell (1) as ONE network evaluation, conditional and unconditional, with
per-block activations, and (2) as the whole sampler with the pipeline's settings (25 steps,
rescale_t 1, CFG 1 on [0,500]; spec generators.md §9), recording the noise the sampler drew,
every step, and the de-normalised output (pipeline.yaml slat_mean/slat_std).

  python3 tools/ref/dump_slat_flow.py --size tiny --s3d .ref/sam-3d-objects \
      --config .ref/Fast-SAM3D/checkpoints/hf/slat_generator.yaml \
      --pipeline .ref/Fast-SAM3D/checkpoints/hf/pipeline.yaml --out tests/fixtures/slat_flow_tiny

Writes OUT/slat_generator.ckpt ({'state_dict': {'_base_models.generator.<k>'}}),
OUT/eval.safetensors, OUT/sampler.safetensors, OUT/meta.json.
--ckpt-out FILE writes the generator into FILE instead, keeping the entries FILE already holds
(tools/ref/merge_ckpt.py): the tiny slat_generator.ckpt of the demo and the end-to-end tests
holds the SLAT condition embedder (tests/fixtures/cond_slat_tiny, dump_cond.py) and this
generator, as the released file does:

  python3 tools/ref/merge_ckpt.py tests/fixtures/cond_slat_tiny/slat_generator.ckpt \
      tests/fixtures/cond_slat_tiny/slat_generator.ckpt tests/fixtures/slat_flow_tiny/slat_generator.ckpt
--size full: the yaml as released (width 1024, 24 blocks, use_fp16 true; run on the GPU with
--device cuda --coords FILE for real coords, or --voxels N for a synthetic shell).
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
import merge_ckpt  # noqa: E402

PREFIX = "_base_models.generator."
# Tiny: width 64 = 1 head x 64, 2 blocks, io block channels [32], MLP ratio 2, condition width
# 64. The checkpoint is written from the module as released (use_fp16 true: the torso's
# Linear/conv weights are fp16 in its state_dict); the fp32 reference run loads it into a
# use_fp16 false module (same values, fp32 compute) unless --precision fp16.
TINY = {"model_channels": 64, "num_heads": 1, "num_blocks": 2, "cond_channels": 64,
        "io_block_channels": [32], "mlp_ratio": 2}
# Pipeline overrides (FS:pipeline.yaml:17-18; PL/inference_pipeline.py:85-88, 444-464, 721-740)
PIPE = {"steps": 25, "rescale_t": 1, "strength": 1.0, "interval": [0, 500]}


def build_config(args):
    cfg = rs.load_node(args.config, "module", "generator", "backbone")
    bb = cfg["reverse_fn"]["backbone"]
    if args.size == "tiny":
        bb.update(json.loads(json.dumps(TINY)))
    return cfg


def apply_pipeline_overrides(gen, steps):
    """override_slat_generator_cfg_config + sample_slat (non-distilled)."""
    gen.inference_steps = steps
    gen.rescale_t = PIPE["rescale_t"]
    gen.no_shortcut = True
    gen.reverse_fn.strength = PIPE["strength"]
    gen.reverse_fn.interval = list(PIPE["interval"])


def make_coords(args, torch):
    if args.coords:
        t, _ = refutil.load_tensors(args.coords)
        return t["coords"].int(), os.path.relpath(args.coords)
    return rs.shell_coords(64, args.voxels, args.seed + 5), f"shell_coords(64,{args.voxels})"


def act_names(bb):
    names = ["input_layer", "t_embedder"]
    for i in range(len(bb.input_blocks)):
        names.append(f"input_blocks.{i}")
    names += ["input_blocks.0.conv1", "input_blocks.0.conv2",
              "input_blocks.1.conv1", "input_blocks.1.skip_connection"]
    for i in range(len(bb.blocks)):
        names.append(f"blocks.{i}")
    names += ["blocks.0.self_attn", "blocks.0.cross_attn", "blocks.0.mlp"]
    for i in range(len(bb.out_blocks)):
        names.append(f"out_blocks.{i}")
    names += ["out_blocks.0.conv1", "out_layer"]
    return [n for n in names if n in dict(bb.named_modules())]


def one_eval(args, gen, cond, coords, torch):
    bb = gen.reverse_fn.backbone
    N = coords.shape[0]
    g = torch.Generator().manual_seed(args.seed + 21)
    x = torch.randn(1, N, bb.in_channels, generator=g).to(cond.device)
    t_seq = gen._prepare_t()
    tk = float(t_seq[args.eval_step])
    t = torch.tensor(tk * gen.time_scale, dtype=torch.float32)     # 0-d, as FlowMatching
    out = refutil.OrderedDict()
    out["coords"] = coords
    out["x"] = x
    out["t"] = t
    out["cond"] = cond
    cnp = coords.cpu().numpy()
    for tag, kw in (("cond", {}), ("uncond", {"cfg": True})):
        names = act_names(bb) if tag == "cond" else ["t_embedder"]
        with rs.sparse_capture(bb, names, prefix=f"{tag}.") as log:
            pre = []
            h = bb.blocks[0].register_forward_pre_hook(lambda m, a: pre.append(a[0]))
            with torch.no_grad():
                v = bb(x, t, cond, cnp, **kw)
            h.remove()
        if tag == "cond":
            out.update(log.tensors)
            out["cond.tokens_ape"] = pre[0].feats        # after + APE, input of blocks.0
        else:
            out.update(log.tensors)
        out[f"{tag}.v"] = v
    return out, {"eval_step": args.eval_step, "eval_t": tk}


def sampler(args, gen, cond, coords, mean, std, torch):
    """The whole sampler through the official generator call (FlowMatching.generate_iter ->
    Euler), noise drawn by the official _generate_noise under torch.manual_seed(seed + 42) and
    recorded; per step k: t, x_k, v_k (after CFG) and, on CFG steps, the raw cond/uncond."""
    bb = gen.reverse_fn.backbone
    N = coords.shape[0]
    given = refutil.load_tensors(args.noise)[0]["noise"] if args.noise else None
    with rs.record_sampler(gen, lambda v: v.clone(), given) as rec:
        torch.manual_seed(args.seed + 42)
        with torch.no_grad():
            final = gen((1, N, bb.in_channels), cond.device, cond, coords.cpu().numpy())
    out = refutil.OrderedDict()
    out["coords"] = coords
    out["cond"] = cond
    out["noise"] = rec["noise"]
    out["t_seq"] = gen._prepare_t()
    cfg_steps = [s for s, c in enumerate(rec["per_step"]) if len(c) == 2]
    for s, (t, x, v) in enumerate(rec["steps"]):
        out[f"step.{s}.t"] = t.reshape(1)
        out[f"step.{s}.x"] = x
        if cfg_steps and s in (cfg_steps[0], cfg_steps[-1]):    # raw outputs: size budget
            for tag, o in rec["per_step"][s]:
                out[f"step.{s}.{tag}"] = o
        out[f"step.{s}.v"] = v
    out["final"] = final
    # PL/inference_pipeline.py:757-765: SparseTensor(coords, feats=slat[0]) * std + mean
    out["slat_mean"] = mean
    out["slat_std"] = std
    out["slat_feats"] = final[0].float() * std.to(final.device) + mean.to(final.device)
    return out, {"cfg_steps": cfg_steps, "n_evals": len(rec["calls"]),
                 "steps": len(rec["steps"])}


def run(args):
    rs.setup_env(args.device)
    refutil.add_ref_paths(s3d=args.s3d)
    import torch
    refutil.seed_all(args.seed)
    cfg = build_config(args)
    run_cfg = json.loads(json.dumps(cfg))
    run_cfg["reverse_fn"]["backbone"]["use_fp16"] = args.precision != "fp32"
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    ckpt = args.ckpt_out or os.path.join(args.out, "slat_generator.ckpt")
    gen, loader, rules, nparam = rs.build_init_save(
        cfg, args.seed, ckpt,
        wrap=lambda sd: merge_ckpt.merged(ckpt, refutil.lightning_ckpt(sd, PREFIX), PREFIX),
        prefix=PREFIX,
        state_dict_key="state_dict", run_cfg=run_cfg)
    print(f"built slat generator ({args.size}): {nparam:,} parameters "
          f"({time.time() - t0:.1f} s)", flush=True)
    apply_pipeline_overrides(gen, args.steps)
    dev = torch.device(args.device)
    gen = gen.to(dev)
    rs.spconv_cpu_mode(gen, dev)
    bb = gen.reverse_fn.backbone
    coords, csrc = make_coords(args, torch)
    coords = coords.to(dev)
    cond, cond_src = rs.make_cond(args, bb.cond_channels, 80 if args.size == "tiny" else 5496)
    cond = cond.to(dev)
    pipe = rs.load_node(args.pipeline)
    mean = torch.tensor(pipe["slat_mean"], dtype=torch.float32)
    std = torch.tensor(pipe["slat_std"], dtype=torch.float32)
    meta = rs.base_meta(args, loader, nparam, TINY, coords_source=csrc,
                        voxels=int(coords.shape[0]), cond_source=cond_src,
                        pipeline={**PIPE, "steps": args.steps})
    # the pipeline runs the generator under autocast (PL/inference_pipeline.py:750)
    with rs.amp_context(args, dev):
        ev, m1 = one_eval(args, gen, cond, coords, torch)
        sm, m2 = sampler(args, gen, cond, coords, mean, std, torch)
    rs.write_flow_outputs(args, ev, m1, sm, m2, meta, rules, f"N={coords.shape[0]} voxels; ")


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    rs.add_common_args(ap, ".ref/Fast-SAM3D/checkpoints/hf/slat_generator.yaml", PIPE["steps"])
    ap.add_argument("--pipeline", default=".ref/Fast-SAM3D/checkpoints/hf/pipeline.yaml")
    ap.add_argument("--ckpt-out", default=None,
                    help="write the generator into this checkpoint, keeping its other entries")
    ap.add_argument("--coords", default=None, help="safetensors with 'coords' (N,4) int32")
    ap.add_argument("--voxels", type=int, default=None,
                    help="synthetic shell size (default 300 tiny, 12000 full)")
    args = ap.parse_args(argv)
    if args.voxels is None:
        args.voxels = 300 if args.size == "tiny" else 12000
    return args


if __name__ == "__main__":
    run(parse())
