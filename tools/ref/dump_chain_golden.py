#!/usr/bin/env python3
"""The golden tiny chain (tests/fixtures/chain_tiny): the whole pipeline after the depth stage
run by the official modules on the committed tiny weights, with the noise and the random voxel
subset OUR stages draw from the pipeline's seeds, written as our artifacts (docs/formats.md
names), so tests/test_chain_golden.sh can compare a whole `sam3d run` with it file by file.

  python3 tools/ref/dump_chain_golden.py --out tests/fixtures/chain_tiny

Order and settings of InferencePipelinePointMap.run (PL/inference_pipeline_pointmap.py:316-423;
PL/inference_pipeline.py:642-768, 589-615) as tools/ref/dump_e2e_chain.py runs it, with three
differences that make it the run our stages do:
  - the weights are the committed tiny fixtures in the official files (tests/lib.sh
    tiny_weights: cond_ss_tiny/ss_generator.ckpt, cond_slat_tiny/slat_generator.ckpt,
    ss_decoder_tiny, gs_decoder_tiny/g32, mesh_decoder_tiny), loaded through the official
    loader (strict), not initialised here: nothing new to commit but the artifacts;
  - both samplers start from our seeded noise (tools/ref/s3d_rng.py = common/rng.h: the five SS
    latents in sorted-name order from one stream of `seed`, the SLAT (N, 8) from its own), and
    downsample_sparse_structure's randperm subset is our seeded shuffle, sorted
    (s3d_rng.subset = stages/ss_decode_net/ssdec_post.c), so the draws match `sam3d run`;
  - the step counts and voxel cap of a few-steps pipeline (tests/lib.sh few_steps_pipe: SS 3
    steps, SLAT 2, max_coords 400; --ss-steps/--slat-steps/--max-voxels), fp32 on the CPU.
The tiny SS latent is 8^3 (the tiny generator's 512 tokens), viewed (1, 8, 8, 8, 8) where the
pipeline hard-codes 16 (as dump_ss_decoder.py); the decoders keep the released resolution 64
(the stages' defaults). The chain starts at the condition inputs of cond_ss_tiny/ref.safetensors
(image, rgb_image, mask, rgb_image_mask, pointmap, rgb_pointmap at 70x70: the example's crops
and a synthetic point map, dump_cond.py), which the test puts in a job as depth.safetensors.

Files (OUT/<stage>.safetensors, our artifact names): cond_ss (cond_ss), cond_slat
(cond_slat), ss_flow (shape_latent and the four pose latents), ss_decode (coords,
downsample_factor; coords_original only as its row count in meta.json, 236 KB otherwise),
slat_flow (coords, feats: de-normalised), gs_decode (xyz, f_dc, opacity, scale, rotation: the
save_ply arrays), mesh_decode (vertices, faces, colors); meta.json (settings, counts,
provenance), README.md. 1.2 MB in all at the defaults.
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
import s3d_rng  # noqa: E402
import dump_cond  # noqa: E402
import dump_gs_decoder  # noqa: E402
import dump_mesh_decoder  # noqa: E402
import dump_slat_flow  # noqa: E402
import dump_ss_decoder  # noqa: E402
import dump_ss_flow  # noqa: E402

HF = ".ref/Fast-SAM3D/checkpoints/hf"
FX = "tests/fixtures"
GEN = "_base_models.generator."
EMB = "_base_models.condition_embedder."
# the official file -> its committed tiny fixture (tests/lib.sh tiny_weights)
WEIGHTS = {"ss_generator.ckpt": "cond_ss_tiny/ss_generator.ckpt",
           "slat_generator.ckpt": "cond_slat_tiny/slat_generator.ckpt",
           "ss_decoder.ckpt": "ss_decoder_tiny/ss_decoder.ckpt",
           "slat_decoder_gs.ckpt": "gs_decoder_tiny/g32/slat_decoder_gs.ckpt",
           "slat_decoder_mesh.ckpt": "mesh_decoder_tiny/slat_decoder_mesh.ckpt"}
COND_IN = ["image", "rgb_image", "mask", "rgb_image_mask", "pointmap", "rgb_pointmap"]


def log(msg, t0=[time.time()]):
    print(f"[{time.time() - t0[0]:6.1f} s] {msg}", flush=True)


def load(cfg, fname, prefix=None, key=None):
    """Build cfg (hydra) and load the committed fixture behind official file fname into it
    through the official loader (strict); eval mode, CPU (spconv's CPU mode)."""
    import torch
    with rs.cpu_cuda_shim():
        m, _ = rs.load_official(rs.instantiate(cfg), os.path.join(FX, WEIGHTS[fname]),
                                prefix, key)
    m.eval()
    rs.spconv_cpu_mode(m, torch.device("cpu"))       # after eval(): it flips spconv modules
    return m


def fuser(variant, args):
    ns = dump_cond.parse(["--variant", variant, "--size", "tiny", "--s3d", args.s3d,
                          "--dinov2", args.dinov2, "--config", f"{args.hf}/{variant}_generator.yaml",
                          "--device", "cpu", "--construct-only"])
    return load(dump_cond.build_config(ns), f"{variant}_generator.ckpt", EMB, "state_dict")


class subset_randperm:
    """torch.randperm inside downsample_sparse_structure returns a permutation whose first k
    entries are our seeded subset in ascending order (rows there are unique-sorted, so the
    official unique_combined[indices] is then exactly our sorted subset)."""

    def __init__(self, torch, seed, k):
        self.torch, self.seed, self.k, self.used = torch, seed, k, False

    def __enter__(self):
        t = self.torch
        self.orig = t.randperm

        def randperm(m, *a, **kw):
            self.used = True
            keep = s3d_rng.subset(self.seed, m, self.k)
            rest = sorted(set(range(m)) - set(keep))
            return t.tensor(keep + rest, dtype=t.int64)
        t.randperm = randperm
        return self

    def __exit__(self, *exc):
        self.torch.randperm = self.orig


def save(args, name, tensors):
    refutil.save_tensors(os.path.join(args.out, name + ".safetensors"), tensors, dtype=None)
    log(f"wrote {name}.safetensors: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items()))


def run(args):
    rs.setup_env("cpu")
    refutil.add_ref_paths(s3d=args.s3d, dinov2=args.dinov2)
    import torch
    from sam3d_objects.model.backbone.tdfy_dit.modules import sparse as sp
    refutil.seed_all(args.seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    os.makedirs(args.out, exist_ok=True)
    OD = refutil.OrderedDict
    ins, _ = refutil.load_tensors(os.path.join(FX, "cond_ss_tiny/ref.safetensors"))
    depth = OD((k, ins[k]) for k in COND_IN)

    with torch.no_grad():
        # ---- conditions ----------------------------------------------------------------
        cond_ss = fuser("ss", args)(**{k: depth[k] for k in COND_IN})
        save(args, "cond_ss", OD(cond_ss=cond_ss))
        cond_slat = fuser("slat", args)(**{k: depth[k] for k in COND_IN[:4]})
        save(args, "cond_slat", OD(cond_slat=cond_slat))

        # ---- SS flow: our noise of `seed`, the five latents in sorted-name order -----------
        a = dump_ss_flow.parse(["--size", "tiny", "--config", f"{args.hf}/ss_generator.yaml",
                                "--out", args.out])
        gen = load(dump_ss_flow.build_config(a), "ss_generator.ckpt", GEN, "state_dict")
        dump_ss_flow.apply_pipeline_overrides(gen, args.ss_steps)
        shapes = {k: (1, v.pos_emb.shape[0], v.input_layer.in_features)
                  for k, v in gen.reverse_fn.backbone.latent_mapping.items()}
        flat = s3d_rng.normal(args.seed, sum(s[1] * s[2] for s in shapes.values()))
        noise, off = {}, 0
        for k in sorted(shapes):
            n = shapes[k][1] * shapes[k][2]
            noise[k] = torch.tensor(flat[off:off + n], dtype=torch.float32).view(shapes[k])
            off += n
        torch.manual_seed(args.seed)
        with rs.record_sampler(gen, lambda d: d, noise=noise):
            ss = gen(shapes, torch.device("cpu"), cond_ss)
        save(args, "ss_flow", OD([("shape_latent", ss["shape"])] +
                                 [(k, ss[k]) for k in dump_ss_flow.LATENTS if k != "shape"]))

        # ---- SS decode, threshold, prune, downsample (our subset) ----------------------------
        cfg = rs.load_node(f"{args.hf}/ss_decoder.yaml")
        cfg.pop("pretrained_ckpt_path", None)
        cfg.update(dump_ss_decoder.TINY)
        dec = load(cfg, "ss_decoder.ckpt")
        prune = rs.official_function(args.s3d, dump_ss_decoder.UTILS, "prune_sparse_structure")
        downsample = rs.official_function(args.s3d, dump_ss_decoder.UTILS,
                                          "downsample_sparse_structure")
        lat = ss["shape"]
        r = round(lat.shape[1] ** (1 / 3))
        logits = dec(lat.permute(0, 2, 1).contiguous().view(1, 8, r, r, r))
        coords_original = torch.argwhere(logits > 0)[:, [0, 2, 3, 4]].int()
        coords = prune(coords_original, max_neighbor_axes_dist=1)
        with subset_randperm(torch, args.ss_decode_seed, args.max_voxels) as sub:
            coords, factor = downsample(coords, max_coords=args.max_voxels)
        # coords_original (N0, 4) is left out (N0 = 14,784 rows: 236 KB); meta.json has N0
        save(args, "ss_decode", OD(coords=coords.int().contiguous(),
                                   downsample_factor=torch.tensor([factor], dtype=torch.int32)))
        log(f"coords {coords_original.shape[0]} -> {coords.shape[0]} (factor {factor}, "
            f"random subset {'ours' if sub.used else 'not needed'})")

        # ---- SLAT flow: our noise of `seed`, (N, 8); de-normalised -------------------------
        a = dump_slat_flow.parse(["--size", "tiny", "--config",
                                  f"{args.hf}/slat_generator.yaml", "--out", args.out])
        cfg = dump_slat_flow.build_config(a)
        cfg["reverse_fn"]["backbone"]["use_fp16"] = False       # fp32 torso on the CPU
        gen = load(cfg, "slat_generator.ckpt", GEN, "state_dict")
        dump_slat_flow.apply_pipeline_overrides(gen, args.slat_steps)
        n = coords.shape[0]
        noise = torch.tensor(s3d_rng.normal(args.seed, n * 8), dtype=torch.float32).view(1, n, 8)
        pipe = rs.load_node(f"{args.hf}/pipeline.yaml")
        mean, std = torch.tensor(pipe["slat_mean"]), torch.tensor(pipe["slat_std"])
        with rs.record_sampler(gen, lambda v: v, noise=noise):
            slat = gen((1, n, 8), torch.device("cpu"), cond_slat, coords.numpy())
        x = sp.SparseTensor(coords=coords, feats=slat[0]) * std + mean
        save(args, "slat_flow", OD(coords=coords.int().contiguous(), feats=x.feats))

        # ---- decoders (decode_slat, no autocast) ----------------------------------------------
        outs = {}
        for stage, name in (("gs_decode", "slat_decoder_gs"), ("mesh_decode", "slat_decoder_mesh")):
            cfg = rs.load_node(f"{args.hf}/{name}.yaml")
            cfg.pop("pretrained_ckpt_path", None)
            tiny = dump_mesh_decoder.TINY if "mesh" in name else dump_gs_decoder.TINY
            cfg.update({k: v for k, v in tiny.items() if k != "resolution"})   # released 64
            cfg["use_fp16"] = False
            if "mesh" in name:
                cfg["device"] = "cpu"
            dec = load(cfg, name + ".ckpt")
            with rs.cpu_cuda_shim():
                rep = dec(x)[0]
                if "mesh" in name:
                    out = OD(vertices=rep.vertices, faces=rep.faces.int(),
                             colors=rep.vertex_attrs[:, :3])
                else:
                    out = dump_gs_decoder.ply_arrays(rep)
            save(args, stage, out)
            outs[stage] = out

    meta = {"what": "tests/fixtures/chain_tiny: the official tiny chain (tools/ref/dump_chain_golden.py)",
            "s3d_commit": refutil.ref_commit(args.s3d), "torch": torch.__version__,
            "device": "cpu", "precision": "fp32", "seed": args.seed,
            "ss_decode_seed": args.ss_decode_seed, "ss_steps": args.ss_steps,
            "slat_steps": args.slat_steps, "max_voxels": args.max_voxels,
            "weights": {k: os.path.join(FX, v) for k, v in WEIGHTS.items()},
            "n_coords_original": int(coords_original.shape[0]), "n_coords": int(n),
            "downsample_factor": int(factor), "random_subset": sub.used,
            "n_gaussians": int(outs["gs_decode"]["xyz"].shape[0]),
            "n_vertices": int(outs["mesh_decode"]["vertices"].shape[0]),
            "n_faces": int(outs["mesh_decode"]["faces"].shape[0])}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    rs.write_fixture_readme(
        args.out, "chain_tiny: the official tiny chain, artifact by artifact",
        "python3 tools/ref/dump_chain_golden.py --out tests/fixtures/chain_tiny",
        "The official modules on the committed tiny weights from the condition inputs on, "
        "with our stages' noise and voxel subset (tools/ref/dump_chain_golden.py). Read by "
        "tests/test_chain_golden.sh (a whole `sam3d run --job` from the condition inputs of "
        "cond_ss_tiny/ref.safetensors as the depth artifact, every artifact compared); "
        "tests/test_ref_generators.sh (S3D_REF_REGEN=1) regenerates it and compares.")
    log(f"done: {args.out}")


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--s3d", default=".ref/sam-3d-objects")
    ap.add_argument("--dinov2", default=".ref/dinov2")
    ap.add_argument("--hf", default=HF, help="folder of the released yaml files")
    ap.add_argument("--seed", type=int, default=42, help="both flows' seed (the pipeline's)")
    ap.add_argument("--ss-decode-seed", type=int, default=0,
                    help="sam3d-ss-decode's param seed (its default): the random voxel subset")
    ap.add_argument("--ss-steps", type=int, default=3)
    ap.add_argument("--slat-steps", type=int, default=2)
    ap.add_argument("--max-voxels", type=int, default=200,
                    help="max_coords of downsample_sparse_structure (the test passes it as "
                    "ss_decode.max_coords; 200 keeps the mesh under 0.7 MB)")
    return ap.parse_args(argv)


if __name__ == "__main__":
    run(parse())
