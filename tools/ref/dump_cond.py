#!/usr/bin/env python3
"""Golden reference for the condition stage: the official EmbedderFuser (2 x Dino, and for SS
the PointPatchEmbed), built from the released yaml (FS:checkpoints/hf/{ss,slat}_generator.yaml,
module.condition_embedder.backbone) with hydra, filled with seeded random weights, saved in the
official Lightning container, run on a real example image + synthetic point map, dumped.

  python3 tools/ref/dump_cond.py --variant ss --size tiny \
      --s3d .ref/sam-3d-objects --dinov2 .ref/dinov2 \
      --config .ref/Fast-SAM3D/checkpoints/hf/ss_generator.yaml \
      --example examples/human_object --out tests/fixtures/cond_ss_tiny

Writes OUT/<variant>_generator.ckpt ({'state_dict': {'_base_models.condition_embedder.<k>'}};
an existing file keeps its other entries: the tiny SS flow generator shares
tests/fixtures/cond_ss_tiny/ss_generator.ckpt, as the released file holds both, merge_ckpt.py),
OUT/ref.safetensors (inputs, per-module activations in execution order, output 'cond'; see
tests/fixtures/README.md for the names) and OUT/meta.json.
--size full uses the yaml as released (DINOv2 ViT-L/14-reg4 at 518, PPE 512/256/8).

Inputs at another size than the model's (the embedders resize them: Dino bilinear,
PointPatchEmbed nearest), on the committed weights, e.g. the 518 x 518 the preprocessor makes:

  python3 tools/ref/dump_cond.py --variant ss --size tiny --input-size 518 --inputs pattern \
      --no-inputs --no-acts --ckpt tests/fixtures/cond_ss_tiny/ss_generator.ckpt \
      --ref-name ss_518.safetensors --out tests/fixtures/cond_518_tiny

--inputs pattern: closed-form inputs of exactly representable float32 values (pattern_inputs;
tests/test_cond.c builds the same ones), so --no-inputs can leave them out of the dump.
--ckpt FILE: load these weights (official loader) instead of writing new random ones.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import refutil  # noqa: E402
import merge_ckpt  # noqa: E402

PREFIX = "_base_models.condition_embedder."

# Tiny configuration: same classes and structure, small sizes (head size 64 in DINO).
# SS: DINO width 128 with 2 heads (multi-head layout); SLAT: width 64, 1 head (keeps the
# committed fixtures under the size budget; the SLAT-specific paths are the pre-norm features,
# the kept registers and the affine-free LayerNorm, which do not depend on the head count).
TINY = {
    "dino": {"dino_model": "dinov2_tiny14_reg", "input_size": 70,
             "backbone_kwargs": {"embed_dim": 128, "depth": 2, "num_heads": 2, "img_size": 70,
                                 "mlp_ratio": 2}},
    "ppe": {"embed_dim": 64, "input_size": 16, "patch_size": 8},   # PPE has 16 heads fixed
    "projection_net_hidden_dim_multiplier": 1.0,   # hidden int(2*128/3) -> 256 (multiple_of)
}
TINY_SLAT_DINO = {"embed_dim": 64, "num_heads": 1}


def build_config(args):
    from omegaconf import OmegaConf
    cfg = OmegaConf.load(args.config).module.condition_embedder.backbone
    cfg = OmegaConf.to_container(cfg, resolve=True)
    for module_cfg, _ in cfg["embedder_list"]:
        target = module_cfg["_target_"]
        if target.endswith(".Dino"):
            if args.size == "tiny":
                module_cfg.update(json.loads(json.dumps(TINY["dino"])))
                if args.variant == "slat":
                    module_cfg["backbone_kwargs"].update(TINY_SLAT_DINO)
                module_cfg["repo_or_dir"] = os.path.join(HERE, "hub_tiny")
            else:
                module_cfg["repo_or_dir"] = os.path.abspath(args.dinov2)
                module_cfg["backbone_kwargs"] = {"pretrained": False}   # offline, no download
            module_cfg["source"] = "local"
        elif target.endswith(".PointPatchEmbed") and args.size == "tiny":
            module_cfg.update(TINY["ppe"])
    if args.size == "tiny":
        cfg["projection_net_hidden_dim_multiplier"] = TINY["projection_net_hidden_dim_multiplier"]
    return cfg


def build_fuser(cfg):
    import hydra.utils
    fuser = hydra.utils.instantiate(cfg)
    fuser.eval()
    return fuser


def register_hooks(fuser, log):
    """Name activations by the fuser kwarg being embedded ('image', 'rgb_image', 'mask', ...):
    '<kw>.patch_embed', '<kw>.tokens' (input of block 0: cls, registers, patches + pos),
    '<kw>.blocks.<i>', '<kw>.norm', '<kw>.embed' (embedder output), '<kw>.proj_norm',
    '<kw>.proj' (projection net output, before idx_emb); PPE: '<kw>.point_proj' (before the
    invalid token), '<kw>.window_tokens', '<kw>.blocks.0'; final 'cond'."""
    handles = []
    ctx = {"kw": None}
    for i, (module, info) in enumerate(fuser.embedder_list):
        kws = [kw for kw, _ in info]
        calls = {"n": 0}

        def pre(mod, args, _kws=kws, _calls=calls):
            ctx["kw"] = _kws[_calls["n"] % len(_kws)]
            _calls["n"] += 1
        handles.append(fuser.module_list[i].register_forward_pre_hook(pre))
        handles.append(fuser.module_list[i].register_forward_hook(
            lambda m, a, o: log.add(f"{ctx['kw']}.embed", o)))
        sub = dict(fuser.module_list[i].named_modules())
        names = {}
        if "backbone.patch_embed" in sub:                      # Dino
            names["backbone.patch_embed"] = "patch_embed"
            names["backbone.norm"] = "norm"
            nblk = len(fuser.module_list[i].backbone.blocks)
            for b in range(nblk):
                names[f"backbone.blocks.{b}"] = f"blocks.{b}"
            handles.append(sub["backbone.blocks.0"].register_forward_pre_hook(
                lambda m, a: log.add(f"{ctx['kw']}.tokens", a[0])))
        else:                                                  # PointPatchEmbed
            names["point_proj"] = "point_proj"
            names["blocks.0"] = "blocks.0"
            handles.append(sub["blocks.0"].register_forward_pre_hook(
                lambda m, a: log.add(f"{ctx['kw']}.window_tokens", a[0])))
        for mname, short in names.items():
            handles.append(sub[mname].register_forward_hook(
                lambda m, a, o, _s=short: log.add(f"{ctx['kw']}.{_s}", o)))
        handles.append(fuser.projection_nets[i][0].register_forward_hook(
            lambda m, a, o: log.add(f"{ctx['kw']}.proj_norm", o)))
        handles.append(fuser.projection_nets[i].register_forward_hook(
            lambda m, a, o: log.add(f"{ctx['kw']}.proj", o)))
    return handles


def pattern_inputs(n, need_pm):
    """Closed-form fuser inputs at n x n, every value exact in float32 (k / 256, k / 16, k / 8),
    so C rebuilds them bit for bit (tests/test_cond.c pattern_inputs). x, y: column, row; c:
      image[c,y,x]          = ((7x + 13y + 5c) % 251) / 256
      rgb_image[c,y,x]      = ((3x + 11y + 17c) % 253) / 256
      mask[0,y,x]           = (x // 37 + y // 29) % 2
      rgb_image_mask[0,y,x] = 25 ((2x - n)^2 + (2y - n)^2) < 9 n^2
      pointmap[c,y,x]       = ((5x + 3y + 7c) % 61 - 30) / 16, all 3 NaN where (x + 2y) % 13 == 0
      rgb_pointmap[c,y,x]   = ((2x + 9y + 11c) % 47 - 23) / 8, all 3 NaN where 25 y < n"""
    import numpy as np
    import torch
    y, x = np.meshgrid(np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64), indexing="ij")
    c = np.arange(3, dtype=np.int64)[:, None, None]
    f = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]  # noqa: E731
    out = refutil.OrderedDict()
    out["image"] = f(((7 * x + 13 * y + 5 * c) % 251) / 256.0)
    out["rgb_image"] = f(((3 * x + 11 * y + 17 * c) % 253) / 256.0)
    out["mask"] = f(((x // 37 + y // 29) % 2)[None])
    out["rgb_image_mask"] = f((25 * ((2 * x - n) ** 2 + (2 * y - n) ** 2) < 9 * n * n)[None])
    if need_pm:
        pm = ((5 * x + 3 * y + 7 * c) % 61 - 30) / 16.0
        pm = np.where(((x + 2 * y) % 13 == 0)[None], np.nan, pm)
        rpm = ((2 * x + 9 * y + 11 * c) % 47 - 23) / 8.0
        rpm = np.where((25 * y < n)[None], np.nan, rpm)
        out["pointmap"] = f(pm)
        out["rgb_pointmap"] = f(rpm)
    return out


def make_inputs(args, fuser):
    import torch
    size = args.input_size or fuser.module_list[0].input_size
    need_pm = any(kw == "pointmap" for _, info in fuser.embedder_list for kw, _ in info)
    if args.inputs == "pattern":
        return pattern_inputs(size, need_pm), {}, torch
    rgb, mask = refutil.load_example(args.example, args.mask_index)
    P = refutil.synthetic_pointmap(*mask.shape, mask, args.seed + 7)
    Pn, scale, shift = refutil.ssi_normalize(P, mask)
    inputs = refutil.fuser_inputs(rgb, mask, size, Pn if need_pm else None)
    return inputs, {"pointmap_scale": scale[None], "pointmap_shift": shift[None]}, torch


def run(args):
    os.environ.setdefault("LIDRA_SKIP_INIT", "1")   # S3D:sam3d_objects/__init__.py:5-6
    refutil.add_ref_paths(s3d=args.s3d, dinov2=args.dinov2)
    import torch
    refutil.seed_all(args.seed)
    cfg = build_config(args)
    t0 = time.time()
    fuser = build_fuser(cfg)
    rules = refutil.realistic_init_(fuser, args.seed)
    nparam = sum(p.numel() for p in fuser.parameters())
    print(f"built {args.variant}/{args.size} fuser: {nparam:,} parameters "
          f"({time.time() - t0:.1f} s)", flush=True)
    if args.construct_only:
        return fuser, None
    os.makedirs(args.out, exist_ok=True)
    if args.ckpt:                     # given weights: nothing written, loaded below
        ckpt_path = args.ckpt
    else:
        ckpt_path = os.path.join(args.out, f"{args.variant}_generator.ckpt")
        # an existing file keeps its entries under other prefixes (the generator of
        # tests/fixtures/cond_ss_tiny/ss_generator.ckpt: one file as released, merge_ckpt.py)
        refutil.save_container(merge_ckpt.merged(ckpt_path, refutil.lightning_ckpt(
            fuser.state_dict(), PREFIX), PREFIX), ckpt_path)

    # Round trip through the official loader: a fresh fuser, load_model_from_checkpoint with
    # the pipeline's prefix filter (PL/inference_pipeline.py:261-290), strict.
    fresh = build_fuser(cfg)
    try:
        from sam3d_objects.model.io import (load_model_from_checkpoint,
                                            filter_and_remove_prefix_state_dict_fn)
        fresh = load_model_from_checkpoint(fresh, ckpt_path, strict=True, device="cpu",
                                           freeze=True, eval=True, state_dict_key="state_dict",
                                           state_dict_fn=filter_and_remove_prefix_state_dict_fn(PREFIX))
        loader = "sam3d_objects.model.io.load_model_from_checkpoint"
    except ImportError as e:          # lightning missing: same steps inline
        print(f"note: official loader unavailable ({e}); loading inline", flush=True)
        sd = torch.load(ckpt_path, map_location="cpu", weights_only=False)["state_dict"]
        fresh.load_state_dict({k[len(PREFIX):]: v for k, v in sd.items() if k.startswith(PREFIX)},
                              strict=True)
        loader = "inline strict load_state_dict"
    fuser = fresh.eval()

    inputs, side, _ = make_inputs(args, fuser)
    dev = torch.device(args.device)
    fuser = fuser.to(dev)
    log = refutil.ActivationLog()
    handles = register_hooks(fuser, log) if not args.no_acts else []
    amp = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    with torch.no_grad(), torch.autocast(dev.type, dtype=amp or torch.float32,
                                         enabled=amp is not None):
        cond = fuser(**{k: v.to(dev) for k, v in inputs.items()})
    for h in handles:
        h.remove()
    out = refutil.OrderedDict()
    if not args.no_inputs:
        out.update(inputs)
        out.update(side)
    out.update(log.tensors)
    out["cond"] = cond
    bad = refutil.check_realistic(log.tensors, allow_nonfinite=("pointmap", "point_proj"))
    meta = {"variant": args.variant, "size": args.size, "seed": args.seed,
            "precision": args.precision, "device": args.device, "loader": loader,
            "example": os.path.basename(os.path.normpath(args.example))
            if args.inputs == "example" else None,
            "mask_index": args.mask_index, "config": os.path.relpath(args.config),
            "s3d_commit": refutil.ref_commit(args.s3d),
            "dinov2_commit": refutil.ref_commit(args.dinov2),
            "torch": torch.__version__, "params": nparam,
            "cond_shape": list(cond.shape),
            "input_size": int(inputs["image"].shape[-1]), "inputs": args.inputs,
            "ckpt": os.path.relpath(ckpt_path),
            "tiny": {**TINY, "slat_dino": TINY_SLAT_DINO} if args.size == "tiny" else None}
    refutil.save_tensors(os.path.join(args.out, args.ref_name), out,
                         metadata={k: v for k, v in meta.items() if k != "tiny"})
    meta_name = "meta.json" if args.ref_name == "ref.safetensors" else \
        os.path.splitext(args.ref_name)[0] + ".meta.json"
    with open(os.path.join(args.out, meta_name), "w") as f:
        json.dump({**meta, "init_rules": sorted(set(rules.values())), "degenerate": bad}, f,
                  indent=1)
    if args.verbose:
        print(refutil.describe(out))
    print(f"cond {tuple(cond.shape)} {cond.dtype}; weights {ckpt_path}, wrote {args.ref_name} "
          f"({len(out)} tensors)")
    for b in bad:
        print(f"warning: degenerate activation {b}")
    return fuser, inputs


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=["ss", "slat"], required=True)
    ap.add_argument("--size", choices=["tiny", "full"], default="tiny")
    ap.add_argument("--s3d", default=".ref/sam-3d-objects")
    ap.add_argument("--dinov2", default=".ref/dinov2")
    ap.add_argument("--config", default=None,
                    help="released yaml (default .ref/Fast-SAM3D/checkpoints/hf/<variant>_generator.yaml)")
    ap.add_argument("--example", default="examples/human_object")
    ap.add_argument("--mask-index", type=int, default=0)
    ap.add_argument("--out", required=False)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32",
                    help="fp16 = the official autocast (spec/conditioning.md §6.7, §8.8)")
    ap.add_argument("--no-acts", action="store_true", help="dump inputs and output only")
    ap.add_argument("--input-size", type=int, default=0,
                    help="side of the fuser inputs (default: the model's input size; the "
                         "embedders resize, e.g. 518 as the preprocessor makes them)")
    ap.add_argument("--inputs", choices=["example", "pattern"], default="example",
                    help="example: the preprocessed example image + synthetic point map; "
                         "pattern: closed-form exact inputs (pattern_inputs)")
    ap.add_argument("--no-inputs", action="store_true",
                    help="leave the inputs out of the dump (only with --inputs pattern)")
    ap.add_argument("--ckpt", default=None,
                    help="use this <variant>_generator.ckpt instead of writing random weights")
    ap.add_argument("--ref-name", default="ref.safetensors", help="name of the dump in --out")
    ap.add_argument("--construct-only", action="store_true", help="build and init, then stop")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.precision == "fp32":
        refutil.strict_fp32()   # no TF32 convolutions in the fp32 reference
    if args.config is None:
        args.config = f".ref/Fast-SAM3D/checkpoints/hf/{args.variant}_generator.yaml"
    if not args.construct_only and not args.out:
        ap.error("--out is required")
    if args.no_inputs and args.inputs != "pattern":
        ap.error("--no-inputs needs --inputs pattern (other inputs cannot be rebuilt)")
    return args


if __name__ == "__main__":
    run(parse())
