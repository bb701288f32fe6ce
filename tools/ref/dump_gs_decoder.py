#!/usr/bin/env python3
"""Golden reference for the Gaussian decode stage: the official SLatGaussianDecoderTdfyWrapper
(sparse swin transformer + Gaussian head) built from the released yaml
(FS:checkpoints/hf/slat_decoder_gs.yaml, or slat_decoder_gs_4.yaml with --gaussians 4) with
hydra, seeded random weights saved as the official flat state dict, run on a SLAT (coords +
de-normalised feats) as decode_slat does (PL/inference_pipeline.py:589-615, no autocast), with
per-block activations, the Gaussian attributes and the official Gaussian.save_ply output.

  python3 tools/ref/dump_gs_decoder.py --size tiny --gaussians 32 --s3d .ref/sam-3d-objects \
      --out tests/fixtures/gs_decoder_tiny/g32

Writes OUT/slat_decoder_gs.ckpt (or slat_decoder_gs_4.ckpt), OUT/ref.safetensors,
OUT/splat.ply, OUT/meta.json.
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

# Tiny: width 128 = 2 heads x 64 (so the head-major qkv layout is exercised), 2 blocks
# (block 0 unshifted windows, block 1 shifted by 4), MLP ratio 2, window 8 and resolution 64
# as released. The checkpoint is written from the
# module as released (use_fp16 true: the blocks' Linear weights fp16 in its state_dict); the
# fp32 reference run loads it into a use_fp16 false module (same values, fp32 compute).
TINY = {"model_channels": 128, "num_heads": 2, "num_blocks": 2, "mlp_ratio": 2}
ATTRS = ["_xyz", "_features_dc", "_scaling", "_rotation", "_opacity"]


def make_slat(args, torch, res):
    """SLAT input: coords (N,4) int32 + feats (N,8) fp32 (de-normalised SLAT flow output).
    From --slat FILE ('coords', 'slat_feats'), else a synthetic shell with N(0,1)*std+mean
    feats using pipeline.yaml's slat_mean/slat_std."""
    if args.slat:
        t, _ = refutil.load_tensors(args.slat)
        return t["coords"].int(), t["slat_feats"].float(), os.path.relpath(args.slat)
    coords = rs.shell_coords(res, args.voxels, args.seed + 5)
    pipe = rs.load_node(args.pipeline)
    g = torch.Generator().manual_seed(args.seed + 41)
    feats = torch.randn(coords.shape[0], 8, generator=g)
    feats = feats * torch.tensor(pipe["slat_std"]) + torch.tensor(pipe["slat_mean"])
    return coords, feats, f"shell_coords({res},{args.voxels}), randn*slat_std+slat_mean"


def ply_arrays(gs):
    """The five arrays Gaussian.save_ply writes (TD/representations/gaussian/gaussian_model.py:
    124-161), named as sam3d-gs-decode's outputs: get_xyz, the raw DC features (M, 3), the
    logit of get_opacity, log(get_scaling), _rotation + rots_bias (wxyz, not normalised)."""
    import torch
    from sam3d_objects.model.backbone.tdfy_dit.representations.gaussian.general_utils import \
        inverse_sigmoid
    return refutil.OrderedDict([
        ("xyz", gs.get_xyz),
        ("f_dc", gs._features_dc.transpose(1, 2).flatten(start_dim=1).contiguous()),
        ("opacity", inverse_sigmoid(gs.get_opacity)),
        ("scale", torch.log(gs.get_scaling)),
        ("rotation", gs._rotation + gs.rots_bias[None, :])])


def trunk_names(dec):
    names = ["input_layer"]
    for i in range(len(dec.blocks)):
        names += [f"blocks.{i}.attn", f"blocks.{i}.mlp", f"blocks.{i}"]
    return names + ["out_layer"]


def window_partitions(x, dec):
    """The official swin partition of each distinct (window, shift) the blocks use
    (TD/modules/sparse/attention/windowed_attn.py:24-76): 'window.shift<s>.fwd' (N) int32,
    the argsort of the window keys (unstable: order inside a window is arbitrary), and
    'window.shift<s>.seq_lens' int32, the non-empty windows' lengths in key order."""
    import torch
    from sam3d_objects.model.backbone.tdfy_dit.modules.sparse.attention import windowed_attn
    out = {}
    for b in dec.blocks:
        ws, sh = b.attn.window_size, b.attn.shift_window
        s = sh[0] if isinstance(sh, (tuple, list)) else sh
        if f"window.shift{s}.fwd" in out:
            continue
        fwd, _, lens, _ = windowed_attn.calc_window_partition(x, ws, sh)
        out[f"window.shift{s}.fwd"] = fwd.int()
        out[f"window.shift{s}.seq_lens"] = torch.tensor(lens, dtype=torch.int32)
    return out


def run(args):
    rs.setup_env(args.device)
    refutil.add_ref_paths(s3d=args.s3d)
    import torch
    from sam3d_objects.model.backbone.tdfy_dit.modules import sparse as sp
    refutil.seed_all(args.seed)
    if args.config is None:
        args.config = (".ref/Fast-SAM3D/checkpoints/hf/slat_decoder_gs.yaml" if args.gaussians == 32
                       else ".ref/Fast-SAM3D/checkpoints/hf/slat_decoder_gs_4.yaml")
    cfg = rs.load_node(args.config)
    cfg.pop("pretrained_ckpt_path", None)
    assert cfg["representation_config"]["num_gaussians"] == args.gaussians, args.config
    if args.size == "tiny":
        cfg.update(TINY)
    run_cfg = json.loads(json.dumps(cfg))
    run_cfg["use_fp16"] = args.precision != "fp32"
    os.makedirs(args.out, exist_ok=True)
    name = "slat_decoder_gs.ckpt" if args.gaussians == 32 else "slat_decoder_gs_4.ckpt"
    t0 = time.time()
    with rs.cpu_cuda_shim():
        dec, loader, rules, nparam = rs.build_init_save(
            cfg, args.seed, os.path.join(args.out, name), state_dict_key=None, run_cfg=run_cfg)
    print(f"built gs decoder G={args.gaussians} ({args.size}): {nparam:,} parameters "
          f"({time.time() - t0:.1f} s)", flush=True)
    dev = torch.device(args.device)
    dec = dec.to(dev)
    coords, feats, src = make_slat(args, torch, cfg["resolution"])
    x = sp.SparseTensor(coords=coords.to(dev), feats=feats.to(dev))
    with torch.no_grad(), rs.cpu_cuda_shim(), \
            rs.sparse_capture(dec, trunk_names(dec)) as log:
        pre = []
        h = dec.blocks[0].register_forward_pre_hook(lambda m, a: pre.append(a[0].feats))
        h2 = dec.out_layer.register_forward_pre_hook(lambda m, a: pre.append(a[0].feats))
        gs = dec(x)[0]
        h.remove()
        h2.remove()
        parts = window_partitions(x, dec)
        ply = os.path.join(args.out, "splat.ply")
        gs.save_ply(ply)
        # get_xyz (= _xyz - 0.5) and get_features (= _features_dc) left out: size budget
        act = {"get_scaling": gs.get_scaling, "get_rotation": gs.get_rotation,
               "get_opacity": gs.get_opacity}
    out = refutil.OrderedDict()
    out["coords"] = coords
    out["feats"] = feats
    out["tokens_ape"] = pre[0]                    # input_layer + APE, input of blocks.0
    out.update(parts)
    out.update(log.tensors)
    out["head_ln"] = pre[1]                       # F.layer_norm(h.float()), input of out_layer
    out["offset_perturbation"] = dec.offset_perturbation
    for a in ATTRS:
        out[a] = getattr(gs, a)
    out.update(act)
    meta = rs.base_meta(args, loader, nparam, TINY, gaussians=args.gaussians,
                        slat_source=src, voxels=int(coords.shape[0]))
    rs.write_outputs(args.out, {"ref.safetensors": (out, {}, torch.float32)}, meta, {},
                     rules, args.verbose)
    print(f"N={coords.shape[0]} voxels -> {gs.get_xyz.shape[0]} Gaussians; wrote {args.out} "
          f"(splat.ply {os.path.getsize(ply)} bytes)")


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    rs.add_common_args(ap, None)
    ap.add_argument("--gaussians", type=int, choices=[32, 4], default=32)
    ap.add_argument("--pipeline", default=".ref/Fast-SAM3D/checkpoints/hf/pipeline.yaml")
    ap.add_argument("--slat", default=None,
                    help="safetensors with 'coords' (N,4) and 'slat_feats' (N,8)")
    ap.add_argument("--voxels", type=int, default=None,
                    help="synthetic shell size (default 120 tiny, 12000 full)")
    args = ap.parse_args(argv)
    if args.voxels is None:
        args.voxels = 120 if args.size == "tiny" else 12000
    return args


if __name__ == "__main__":
    run(parse())
