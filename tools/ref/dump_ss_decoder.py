#!/usr/bin/env python3
"""Golden reference for the SS decode stage: the official SparseStructureDecoderTdfyWrapper
(dense 3-D conv decoder) built from the released yaml (FS:checkpoints/hf/ss_decoder.yaml) with
hydra, seeded random weights saved as the official flat state dict, run on a shape latent, then
the pipeline's post-processing exactly as sample_sparse_structure does it
(PL/inference_pipeline.py:694-716): latent (1,T,8) -> permute/view (1,8,R,R,R) -> decoder ->
logits -> argwhere(logits > 0)[:, [0,2,3,4]] -> prune_sparse_structure(dist 1) ->
downsample_sparse_structure (the two official functions from PL/inference_utils.py, loaded
without importing that module's open3d/trimesh/pytorch3d).

  python3 tools/ref/dump_ss_decoder.py --size tiny --s3d .ref/sam-3d-objects \
      --config .ref/Fast-SAM3D/checkpoints/hf/ss_decoder.yaml \
      --latent tests/fixtures/ss_flow_tiny/sampler.safetensors --out tests/fixtures/ss_decoder_tiny

--latent FILE takes 'final.shape' (1,T,8) (the SS flow's output), T = R^3; without it a seeded
N(0,1) latent at R = 16 (--size full) or 8 (tiny). Writes OUT/ss_decoder.ckpt,
OUT/ref.safetensors, OUT/meta.json.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import refutil  # noqa: E402
import refutil_sparse as rs  # noqa: E402

# Tiny: same structure (2 middle + 2 res blocks per level, 2 pixel-shuffle upsamples, LayerNorm),
# channels [16,8,8] instead of [512,128,32] (fixture size budget).
TINY = {"channels": [16, 8, 8]}
UTILS = "sam3d_objects/pipeline/inference_utils.py"


def make_latent(args, torch):
    if args.latent:
        t, _ = refutil.load_tensors(args.latent)
        return t["final.shape"].float(), os.path.relpath(args.latent) + ":final.shape"
    R = 8 if args.size == "tiny" else 16
    g = torch.Generator().manual_seed(args.seed + 31)
    return torch.randn(1, R ** 3, 8, generator=g), f"randn(seed+31) (1,{R ** 3},8)"


def solid_blob(res, seed, torch):
    """A solid ellipsoid, lopsided by a seeded tilt, as (N,4) int32 coords in argwhere order."""
    g = torch.Generator().manual_seed(seed)
    c = res * (0.5 + 0.1 * (torch.rand(3, generator=g) - 0.5))
    r = res * (0.2 + 0.15 * torch.rand(3, generator=g))
    ax = torch.arange(res, dtype=torch.float64)
    X, Y, Z = torch.meshgrid(ax, ax, ax, indexing="ij")
    d = ((X - c[0]) / r[0]) ** 2 + ((Y - c[1]) / r[1]) ** 2 + ((Z - c[2]) / r[2]) ** 2
    occ = d + 0.3 * torch.sin(X / 2.0) * torch.cos(Y / 3.0) <= 1.0
    xyz = torch.argwhere(occ).int()
    return torch.cat([torch.zeros(xyz.shape[0], 1, dtype=torch.int32), xyz], 1)


def run(args):
    rs.setup_env(args.device)
    refutil.add_ref_paths(s3d=args.s3d)
    import torch
    refutil.seed_all(args.seed)
    cfg = rs.load_node(args.config)
    cfg.pop("pretrained_ckpt_path", None)              # PL/inference_pipeline.py:336-341
    if args.size == "tiny":
        cfg.update(TINY)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    dec, loader, rules, nparam = rs.build_init_save(
        cfg, args.seed, os.path.join(args.out, "ss_decoder.ckpt"), state_dict_key=None)
    print(f"built ss decoder ({args.size}): {nparam:,} parameters ({time.time() - t0:.1f} s)",
          flush=True)
    dev = torch.device(args.device)
    dec = dec.to(dev)
    prune = rs.official_function(args.s3d, UTILS, "prune_sparse_structure")
    downsample = rs.official_function(args.s3d, UTILS, "downsample_sparse_structure")
    shape_latent, src = make_latent(args, torch)
    shape_latent = shape_latent.to(dev)
    T = shape_latent.shape[1]
    R = round(T ** (1 / 3))
    assert R ** 3 == T, f"latent has {T} tokens, not a cube"
    names = ["input_layer"] + [f"middle_block.{i}" for i in range(len(dec.middle_block))]
    # per-layer activations up to the first level after the first upsample (size budget)
    nkeep = args.acts_blocks if args.acts_blocks >= 0 else len(dec.blocks)
    names += [f"blocks.{i}" for i in range(min(nkeep, len(dec.blocks)))]
    with torch.no_grad(), rs.amp_context(args, dev):
        # PL/inference_pipeline.py:696-716 (the 16 of the official view is R here)
        x = shape_latent.permute(0, 2, 1).contiguous().view(shape_latent.shape[0], 8, R, R, R)
        with refutil.capture(dec, names=names) as log:
            ss = dec(x)
        coords = torch.argwhere(ss > 0)[:, [0, 2, 3, 4]].int()
        coords_original = coords
        coords = prune(coords, max_neighbor_axes_dist=args.prune_dist)
        coords, factor = downsample(coords)
    out = refutil.OrderedDict()
    out["shape_latent"] = shape_latent
    out["x"] = x
    out.update(log.tensors)
    out["logits"] = ss
    # coords_original is stored only when pruning/downsampling changed it (size budget: the
    # random decoder's speckle occupancy usually has no interior voxel)
    same = torch.equal(coords_original, coords)
    if not same:
        out["coords_original"] = coords_original
    out["coords"] = coords
    out["downsample_factor"] = torch.tensor([factor], dtype=torch.int32)
    # The random decoder's occupancy is speckle, so pruning rarely fires on it; exercise both
    # official functions on a solid blob too: prune (interior removed) and the N > max_coords
    # path of downsample (max_coords = N - 1: rescale by 1/2, round half-even, unique; the
    # result is far below max_coords, so the random subsample never runs).
    solid = solid_blob(R * 4, args.seed + 51, torch).to(dev)
    out["prune_test.coords_in"] = solid
    out["prune_test.coords_out"] = prune(solid, max_neighbor_axes_dist=1)
    ds, f2 = downsample(solid, max_coords=solid.shape[0] - 1)
    assert ds.shape[0] <= solid.shape[0] - 1 and f2 == 2
    out["downsample_test.coords_out"] = ds
    meta = rs.base_meta(args, loader, nparam, TINY, latent_source=src, latent_res=R,
                        prune_dist=args.prune_dist,
                        n_coords_original=int(coords_original.shape[0]),
                        n_coords=int(coords.shape[0]), coords_equal_original=same)
    rs.write_outputs(args.out, {"ref.safetensors": (out, {}, torch.float32)}, meta, {},
                     rules, args.verbose)
    print(f"logits {tuple(ss.shape)}; coords {coords_original.shape[0]} -> pruned "
          f"{coords.shape[0]} (factor {factor}); wrote {args.out}")


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    rs.add_common_args(ap, ".ref/Fast-SAM3D/checkpoints/hf/ss_decoder.yaml")
    ap.add_argument("--latent", default=None, help="safetensors with 'final.shape' (1,T,8)")
    ap.add_argument("--prune-dist", type=int, default=1,
                    help="downsample_ss_dist of pipeline.yaml (0 = no pruning)")
    ap.add_argument("--acts-blocks", type=int, default=5,
                    help="record outputs of blocks.0..N-1 (-1 = all)")
    return ap.parse_args(argv)


if __name__ == "__main__":
    run(parse())
