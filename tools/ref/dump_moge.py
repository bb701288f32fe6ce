#!/usr/bin/env python3
"""Golden reference for the depth stage: the official MoGe v1 model (MG:moge/model/v1.py at
a8c3734, the commit sam-3d-objects pins), random weights in the official model.pt container
{'model_config', 'model'}, run through MoGeModel.infer exactly as SAM 3D calls it
(S3D:sam3d_objects/pipeline/depth_models/moge.py:5-11: force_projection=False, other args
default), on a real example image.

  python3 tools/ref/dump_moge.py --size tiny --moge .ref/MoGe \
      --example examples/human_object --out tests/fixtures/moge_tiny

--size full uses the moge-vitl model_config (spec/conditioning.md §4.1). --size tiny registers
an extra encoder 'dinov2_tiny14' in MoGe's bundled hub module (same DinoVisionTransformer
class and arguments as dinov2_vitl14, only width/depth/heads/mlp small) so that
MoGeModel.from_pretrained builds it from the saved model_config like the real one.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import refutil  # noqa: E402

# model_config of Ruicheng/moge-vitl (spec/conditioning.md §4.1, incl. the ignored legacy keys)
FULL_CONFIG = {"encoder": "dinov2_vitl14", "remap_output": "exp", "output_mask": True,
               "split_head": True, "intermediate_layers": 4, "dim_upsample": [256, 128, 64],
               "dim_times_res_block_hidden": 2, "num_res_blocks": 2,
               "trained_area_range": [250000, 500000], "last_conv_channels": 32,
               "last_conv_size": 1}
# Tiny: same structure. 3 blocks with the last 2 taken as intermediate layers (block 0 unused,
# as blocks 0-19 are in ViT-L); GroupNorm groups hidden//32 = 2, 1, 1; ~35 tokens.
TINY_CONFIG = {"encoder": "dinov2_tiny14", "remap_output": "exp", "intermediate_layers": 2,
               "dim_proj": 64, "dim_upsample": [32, 16, 16], "dim_times_res_block_hidden": 2,
               "num_res_blocks": 2, "num_tokens_range": [20, 36], "last_conv_channels": 16,
               "last_conv_size": 1}
TINY_BACKBONE = {"embed_dim": 128, "depth": 3, "num_heads": 2, "mlp_ratio": 2, "img_size": 224}
TINY_IMAGE_WIDTH = 96        # the example image is resized to this width (aspect kept)


def register_tiny_encoder():
    """Add moge.model.dinov2.hub.backbones.dinov2_tiny14: DinoVisionTransformer with the
    arguments dinov2_vitl14 passes (MG:moge/model/dinov2/hub/backbones.py:18-61, vit_large)."""
    from functools import partial
    import moge.model.dinov2.hub.backbones as bb
    from moge.model.dinov2.models.vision_transformer import DinoVisionTransformer
    from moge.model.dinov2.layers import MemEffAttention, NestedTensorBlock as Block

    def dinov2_tiny14(*, pretrained=False, **kwargs):
        assert not pretrained
        return DinoVisionTransformer(
            patch_size=14, init_values=1.0, ffn_layer="mlp", block_chunks=0,
            num_register_tokens=0, interpolate_antialias=False, interpolate_offset=0.1,
            block_fn=partial(Block, attn_class=MemEffAttention), **TINY_BACKBONE, **kwargs)
    bb.dinov2_tiny14 = dinov2_tiny14


def hook_names(model):
    names = ["backbone.patch_embed", "backbone.norm"]
    names += [f"backbone.blocks.{i}" for i in range(len(model.backbone.blocks))]
    names += [f"head.projects.{i}" for i in range(len(model.head.projects))]
    for i, blk in enumerate(model.head.upsample_blocks):
        names += [f"head.upsample_blocks.{i}.{j}" for j in range(len(blk))]
    names += [f"head.output_block.{i}" for i in range(len(model.head.output_block))]
    return names


def example_image(args):
    import numpy as np
    import torch
    from PIL import Image
    rgb, mask = refutil.load_example(args.example, args.mask_index)
    if args.size == "tiny":
        W = TINY_IMAGE_WIDTH
        H = round(rgb.shape[0] * W / rgb.shape[1])
        rgb = np.array(Image.fromarray(rgb).resize((W, H), Image.BILINEAR))
    # image_to_float: float32(uint8 / 255) (PL/inference_pipeline.py:788-792)
    return torch.from_numpy(rgb.astype(np.float64) / 255.0).float().permute(2, 0, 1).contiguous()


def run(args):
    refutil.add_ref_paths(moge=args.moge)
    import torch
    from moge.model.v1 import MoGeModel
    refutil.seed_all(args.seed)
    if args.size == "tiny":
        register_tiny_encoder()
    config = dict(TINY_CONFIG if args.size == "tiny" else FULL_CONFIG)
    t0 = time.time()
    model = MoGeModel(**config)
    # Mask logit bias +0.75: the raw mask head output is ~N(0, 0.2) with random weights, so most
    # pixels pass the > 0.5 threshold and some fail (a realistic valid fraction with edges).
    import torch
    mask_bias = {"head.output_block.1.2.bias": lambda shape, g: torch.full(shape, 0.75)}
    rules = refutil.realistic_init_(model, args.seed, overrides=mask_bias)
    nparam = sum(p.numel() for p in model.parameters())
    print(f"built MoGe {args.size}: {nparam:,} parameters ({time.time() - t0:.1f} s)", flush=True)
    if args.construct_only:
        return model, None
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "model.pt")
    refutil.save_container(refutil.moge_container(config, model.state_dict()), path)
    # Round trip through the official loader (MG:moge/model/v1.py:208-236, strict).
    model = MoGeModel.from_pretrained(path).eval()

    image = example_image(args)
    dev = torch.device(args.device)
    model = model.to(dev)
    names = hook_names(model) if not args.no_acts else []
    with refutil.capture(model, names=names) as log:
        if names:       # the resized, normalised image the backbone sees
            h = model.backbone.patch_embed.register_forward_pre_hook(
                lambda m, a: log.add("image_14", a[0]))
            h2 = model.backbone.blocks[0].register_forward_pre_hook(
                lambda m, a: log.add("backbone.tokens", a[0]))
        out = model.infer(image.to(dev), force_projection=False,
                          use_fp16=(args.precision == "fp16"))
        if names:
            h.remove()
            h2.remove()
    # camera convention of the pipeline: (x,y,z) -> (-x,-y,z), invalid (+inf) -> NaN
    # (spec/conditioning.md §3.1-3.2; PL/inference_pipeline_pointmap.py:253-258)
    pts = out["points"].float()
    flip = torch.tensor([-1.0, -1.0, 1.0], device=pts.device)
    pointmap = torch.where(out["mask"][..., None], pts * flip, torch.nan)
    res = refutil.OrderedDict()
    res["image"] = image
    res.update(log.tensors)
    for k in ("points", "depth", "mask", "mask_prob", "intrinsics"):
        res[k] = out[k]
    res["pointmap"] = pointmap.permute(2, 0, 1).contiguous()     # (3,H,W) as the pipeline
    res["mask"] = res["mask"].to(torch.uint8)                      # bool -> u8 0/1
    bad = refutil.check_realistic(log.tensors)
    meta = {"size": args.size, "seed": args.seed, "precision": args.precision,
            "device": args.device, "example": os.path.basename(os.path.normpath(args.example)),
            "moge_commit": refutil.ref_commit(args.moge), "torch": torch.__version__,
            "params": nparam, "image_hw": list(image.shape[1:]),
            "valid_fraction": float(out["mask"].float().mean())}
    refutil.save_tensors(os.path.join(args.out, "ref.safetensors"), res, metadata=meta)
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump({**meta, "model_config": config,
                   "tiny_backbone": TINY_BACKBONE if args.size == "tiny" else None,
                   "init_rules": sorted(set(rules.values())), "degenerate": bad}, f, indent=1)
    if args.verbose:
        print(refutil.describe(res))
    print(f"points {tuple(out['points'].shape)} valid {meta['valid_fraction']:.3f} "
          f"intrinsics {out['intrinsics'].flatten().tolist()}; wrote {path} and ref.safetensors "
          f"({len(res)} tensors)")
    for b in bad:
        print(f"warning: degenerate activation {b}")
    return model, image


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["tiny", "full"], default="tiny")
    ap.add_argument("--moge", default=".ref/MoGe")
    ap.add_argument("--example", default="examples/human_object")
    ap.add_argument("--mask-index", type=int, default=0)
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                    help="fp16 = infer(use_fp16=True), the official autocast (§4.6)")
    ap.add_argument("--no-acts", action="store_true")
    ap.add_argument("--construct-only", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.precision == "fp32":
        refutil.strict_fp32()   # no TF32 convolutions in the fp32 reference
    if not args.construct_only and not args.out:
        ap.error("--out is required")
    return args


if __name__ == "__main__":
    run(parse())
