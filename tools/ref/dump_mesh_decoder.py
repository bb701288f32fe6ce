#!/usr/bin/env python3
"""Golden reference for the mesh decode stage: the official SLatMeshDecoderTdfyWrapper (sparse
swin transformer, two SparseSubdivideBlock3d, 101-channel head) and its FlexiCubes extraction
(SparseFeatures2Mesh), built from the released yaml (FS:checkpoints/hf/slat_decoder_mesh.yaml)
with hydra, seeded random weights saved as the official flat state dict, run on a SLAT as
decode_slat does (PL/inference_pipeline.py:589-615), dumping per-block activations, the head
output (the FlexiCubes input) and the mesh (vertices, faces, vertex colours).

  python3 tools/ref/dump_mesh_decoder.py --size tiny --s3d .ref/sam-3d-objects \
      --out tests/fixtures/mesh_decoder_tiny

Writes OUT/slat_decoder_mesh.ckpt, OUT/ref.safetensors, OUT/meta.json.
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
from dump_gs_decoder import make_slat  # noqa: E402

# Tiny: width 256 (4 heads x 64) is the smallest the structure allows (the subdivide blocks
# use GroupNorm(32, C/4) and GroupNorm(32, C/8), decoder_mesh.py:27-67, 123-140), 1 block,
# MLP ratio 1, resolution 16 so FlexiCubes runs on a 64^3 grid (resolution*4, :123-125)
# and the dense index grids stay small. Stored as released (use_fp16 true: fp16 torso).
TINY = {"model_channels": 256, "num_heads": 4, "num_blocks": 1, "mlp_ratio": 1,
        "resolution": 16}


def run(args):
    rs.setup_env(args.device)
    refutil.add_ref_paths(s3d=args.s3d)
    import torch
    from sam3d_objects.model.backbone.tdfy_dit.modules import sparse as sp
    refutil.seed_all(args.seed)
    cfg = rs.load_node(args.config)
    cfg.pop("pretrained_ckpt_path", None)
    if args.size == "tiny":
        cfg.update(TINY)
    cfg["device"] = args.device           # SLatMeshDecoder(device="cuda") builds dense grids
    run_cfg = json.loads(json.dumps(cfg))
    run_cfg["use_fp16"] = args.precision != "fp32"
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    with rs.cpu_cuda_shim():
        dec, loader, rules, nparam = rs.build_init_save(
            cfg, args.seed, os.path.join(args.out, "slat_decoder_mesh.ckpt"),
            state_dict_key=None, run_cfg=run_cfg)
    print(f"built mesh decoder ({args.size}): {nparam:,} parameters "
          f"({time.time() - t0:.1f} s)", flush=True)
    dev = torch.device(args.device)
    dec = dec.to(dev)
    rs.spconv_cpu_mode(dec, dev)
    coords, feats, src = make_slat(args, torch, cfg["resolution"])
    x = sp.SparseTensor(coords=coords.to(dev), feats=feats.to(dev))
    names = ["input_layer"] + [f"blocks.{i}" for i in range(len(dec.blocks))]
    names += ["upsample.0", "upsample.1", "out_layer"]
    subs = ["act_layers", "out_layers.0", "out_layers.2", "out_layers.3", "skip_connection"]
    every = args.all_acts or args.size == "tiny"      # tiny: every head tap (a few 100 KB)
    if every:
        names += [f"upsample.{i}.{n}" for i in (0, 1) for n in subs]
    with torch.no_grad(), rs.cpu_cuda_shim(), rs.sparse_capture(dec, names) as log:
        mesh = dec(x)[0]
    out = refutil.OrderedDict()
    out["coords"] = coords
    out["feats"] = feats
    # one name per coordinate set whichever module showed it first: the input's are `coords`,
    # the subdivided ones upsample.0.coords (8N) and upsample.1.coords (64N)
    n = coords.shape[0]
    cname = {n: None, 8 * n: "upsample.0.coords", 64 * n: "upsample.1.coords"}
    for k, v in log.tensors.items():
        if k.endswith(".coords"):
            if cname.get(v.shape[0]):
                out[cname[v.shape[0]]] = v
        elif every or k in ("input_layer", "upsample.0", "out_layer") or k.startswith("blocks."):
            out[k] = v
    out["vertices"] = mesh.vertices
    out["faces"] = mesh.faces.int()
    out["vertex_attrs"] = mesh.vertex_attrs
    meta = rs.base_meta(args, loader, nparam, TINY, slat_source=src,
                        voxels=int(coords.shape[0]), mesh_res=dec.mesh_extractor.res,
                        n_vertices=int(mesh.vertices.shape[0]),
                        n_faces=int(mesh.faces.shape[0]))
    rs.write_outputs(args.out, {"ref.safetensors": (out, {}, torch.float32)}, meta, {},
                     rules, args.verbose)
    print(f"N={coords.shape[0]} voxels -> mesh V={mesh.vertices.shape[0]} "
          f"F={mesh.faces.shape[0]} at {dec.mesh_extractor.res}^3; wrote {args.out}")


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    rs.add_common_args(ap, ".ref/Fast-SAM3D/checkpoints/hf/slat_decoder_mesh.yaml")
    ap.add_argument("--pipeline", default=".ref/Fast-SAM3D/checkpoints/hf/pipeline.yaml")
    ap.add_argument("--slat", default=None,
                    help="safetensors with 'coords' (N,4) and 'slat_feats' (N,8)")
    ap.add_argument("--voxels", type=int, default=None,
                    help="synthetic shell size (default 22 tiny, 12000 full)")
    ap.add_argument("--all-acts", action="store_true",
                    help="also upsample.1 and the sub-block activations (always with --size tiny)")
    args = ap.parse_args(argv)
    if args.voxels is None:
        args.voxels = 22 if args.size == "tiny" else 12000
    return args


if __name__ == "__main__":
    run(parse())
