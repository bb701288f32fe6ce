#!/usr/bin/env python3
"""Golden reference for the files `sam3d export` writes (orchestrator/export.c): the pose,
mesh.glb and the splat / mesh placed in the camera frame, each made by the official code.

  python3 tools/ref/dump_outputs.py --s3d .ref/sam-3d-objects --pytorch3d PYTORCH3D_DIR \
      --out tests/fixtures/outputs_tiny

* pose.safetensors: K cases of SS-flow pose latents and point-map normalisations through the
  official `pose_decoder("ScaleShiftInvariant")` (PL/inference_utils.py:224-325), then
  `scale *= downsample_factor` as the pipeline does (PL/inference_pipeline_pointmap.py:357-369).
  Inputs `r6` (K,6) = `6drotation_normalized`, `scale_latent` (K,3), `translation_latent`
  (K,3), `translation_scale` (K,1), `pointmap_scale`/`pointmap_shift` (K,3),
  `downsample_factor` (K) I32; outputs `rotation` (K,4) wxyz, `translation` (K,3), `scale`
  (K,3). Case 0 is a plausible object in front of the camera (used by job/), case 1 a
  rotation of 180 degrees (w = 0 up to rounding: q and -q), the last one downsampled.
* mesh.glb: the official `to_glb` (TD/utils/postprocessing_utils.py:585-682) with the public
  API's settings (notebook/inference.py:101-120: no mesh post-processing, no texture
  baking, vertex colours) on the mesh_decoder_tiny mesh, written by `trimesh` `export(
  file_type="glb")` (the pipeline returns the trimesh object; its export is the file).
* placed_splat.ply: the official `make_scene` (notebook/inference.py:255-312) on the
  gs_decoder_tiny/g4 Gaussians with case 0's pose, then `Gaussian.save_ply`.
* placed.safetensors: `vertices` (V,3), the mesh_decoder_tiny FlexiCubes vertices placed with
  case 0's pose by the official `compose_transform` + `transform_points`, as
  `SceneVisualizer.object_pointcloud` does (S3D:sam3d_objects/utils/visualization/
  scene_visualizer.py:169-195; the layout optimiser's get_mesh takes the GLB back to z-up
  first, PL/layout_post_optimization_utils.py:113-126).
* job/: the artifacts `sam3d export` reads, as the stages write them: gs_decode (the g4
  splat.ply records), mesh_decode (vertices, faces, colours = vertex_attrs[:, :3]), ss_flow
  (case 0's latents + point-map scale/shift), ss_decode (downsample_factor), depth
  (intrinsics, valid at a small image size, point-map scale/shift).

pytorch3d: sam-3d-objects pins commit 75ebeeae (requirements.p3d.txt, version 0.7.8); only its
pure-Python packages are used (transforms, structures, common), so a source checkout of that
commit on the path is enough (--pytorch3d DIR, the folder holding `pytorch3d/`); an installed
pytorch3d is used when no DIR is given.
"""
import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import refutil  # noqa: E402
import refutil_sparse as rs  # noqa: E402

FX = "tests/fixtures"
GS4 = FX + "/gs_decoder_tiny/g4"
MESH = FX + "/mesh_decoder_tiny"
IMAGE_HW = (48, 64)          # image size of the synthetic depth artifact (H, W)


def pose_cases(torch, seed, k):
    """Inputs of the pose decoder: case 0 plausible, case 1 a 180-degree turn, the others
    random; the last one with downsample_factor 2."""
    g = torch.Generator().manual_seed(seed)
    c = {"r6": torch.randn(k, 6, generator=g),
         "scale_latent": torch.randn(k, 3, generator=g) * 0.4 - 0.7,
         "translation_latent": torch.randn(k, 3, generator=g) * 0.3,
         "translation_scale": torch.randn(k, 1, generator=g) * 0.3,
         "pointmap_scale": (torch.rand(k, 1, generator=g) * 2.5 + 0.4).expand(k, 3).clone(),
         "pointmap_shift": torch.cat([torch.randn(k, 2, generator=g) * 0.2,
                                      torch.rand(k, 1, generator=g) * 3 + 1], 1),
         "downsample_factor": torch.ones(k, dtype=torch.int32)}
    c["downsample_factor"][-1] = 2
    # case 0: an object of about half the scene scale, in front of the camera
    c["scale_latent"][0] = torch.tensor([-0.6, -0.6, -0.6])
    c["translation_latent"][0] = torch.tensor([0.05, -0.1, 0.2])
    c["pointmap_scale"][0] = 1.0
    c["pointmap_shift"][0] = torch.tensor([0.02, 0.05, 2.5])
    return c


def run(args):
    rs.setup_env("cpu")
    if args.pytorch3d:
        sys.path.insert(0, os.path.abspath(args.pytorch3d))
    refutil.add_ref_paths(s3d=args.s3d)
    import typing
    import numpy as np
    import torch
    import trimesh
    from copy import deepcopy
    from plyfile import PlyData
    import pytorch3d
    from pytorch3d.structures import Pointclouds
    from pytorch3d.transforms import (quaternion_invert, quaternion_multiply,
                                      quaternion_to_matrix, matrix_to_quaternion)
    from sam3d_objects.data.dataset.tdfy.pose_target import PoseTargetConverter
    from sam3d_objects.data.dataset.tdfy.transforms_3d import compose_transform
    from sam3d_objects.model.backbone.tdfy_dit.representations import (
        Gaussian, MeshExtractResult, Strivec)

    torch.set_grad_enabled(False)
    s3d = args.s3d
    K = args.cases

    # ---- the official functions, compiled alone from their files (their modules import
    # open3d, pyvista, xatlas, kaolin, gradio, ... that none of these functions uses)
    pl = "sam3d_objects/pipeline/inference_utils.py"
    import ast
    src = open(os.path.join(s3d, pl)).read()
    g6 = {}   # ROTATION_6D_MEAN / STD: module-level constants of the same file
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and node.targets[0].id in ("ROTATION_6D_MEAN",
                                                                    "ROTATION_6D_STD"):
            exec(compile(ast.Module(body=[node], type_ignores=[]), pl, "exec"),
                 {"torch": torch}, g6)
    pose_decoder = rs.official_function(s3d, pl, "pose_decoder", {
        **g6, "matrix_to_quaternion": matrix_to_quaternion,
        "PoseTargetConverter": PoseTargetConverter})("ScaleShiftInvariant")
    to_glb = rs.official_function(
        s3d, "sam3d_objects/model/backbone/tdfy_dit/utils/postprocessing_utils.py", "to_glb",
        {**vars(typing), "trimesh": trimesh, "Strivec": Strivec, "Gaussian": Gaussian,
         "MeshExtractResult": MeshExtractResult})
    object_pointcloud = rs.official_function(
        s3d, "sam3d_objects/utils/visualization/scene_visualizer.py",
        "SceneVisualizer.object_pointcloud",
        {"Optional": typing.Optional, "quaternion_to_matrix": quaternion_to_matrix,
         "compose_transform": compose_transform, "Pointclouds": Pointclouds})
    make_scene = rs.official_function(s3d, "notebook/inference.py", "make_scene", {
        "deepcopy": deepcopy, "quaternion_multiply": quaternion_multiply,
        "quaternion_invert": quaternion_invert,
        "SceneVisualizer": type("SceneVisualizer", (), {
            "object_pointcloud": staticmethod(object_pointcloud)})})

    os.makedirs(args.out, exist_ok=True)
    job = os.path.join(args.out, "job")
    if os.path.isdir(job):
        shutil.rmtree(job)
    os.makedirs(job)

    # ---- 1. the pose
    c = pose_cases(torch, args.seed, K)
    # case 1: 6D vectors of diag(1, -1, -1), a half turn about x (quaternion (0, 1, 0, 0))
    c["r6"][1] = (torch.tensor([1.0, 0, 0, 0, -1, 0]) - g6["ROTATION_6D_MEAN"]) / \
        g6["ROTATION_6D_STD"]
    outs = {"rotation": [], "translation": [], "scale": []}
    for i in range(K):
        x = {"shape": torch.zeros(1, 4096, 8),      # only its batch size is read
             "6drotation_normalized": c["r6"][i].view(1, 1, 6),
             "scale": c["scale_latent"][i].view(1, 1, 3),
             "translation": c["translation_latent"][i].view(1, 1, 3),
             "translation_scale": c["translation_scale"][i].view(1, 1, 1)}
        p = pose_decoder(x, scene_scale=c["pointmap_scale"][i].view(1, 3),
                         scene_shift=c["pointmap_shift"][i].view(1, 3))
        p["scale"] = p["scale"] * c["downsample_factor"][i]       # the pipeline, :368-369
        for k in outs:
            outs[k].append(p[k].reshape(-1).float())
    pose = dict(c)
    pose.update({k: torch.stack(v) for k, v in outs.items()})
    refutil.save_tensors(os.path.join(args.out, "pose.safetensors"), pose,
                         {"source": "official pose_decoder('ScaleShiftInvariant'), "
                                    "scale *= downsample_factor",
                          "pytorch3d": pytorch3d.__version__}, dtype=None)
    p0 = {k: pose[k][0:1] for k in ("rotation", "translation", "scale")}
    print("pose case 0:", {k: v.tolist() for k, v in p0.items()})

    # ---- 2. the Gaussians of g4 as the official object; its save_ply must be the fixture's
    t, _ = refutil.load_tensors(os.path.join(GS4, "ref.safetensors"))
    rep = rs.load_node(args.config_gs4, "representation_config")
    with rs.cpu_cuda_shim():
        gs = Gaussian(aabb=[-0.5, -0.5, -0.5, 1.0, 1.0, 1.0], sh_degree=0,
                      mininum_kernel_size=rep["3d_filter_kernel_size"],
                      scaling_bias=rep["scaling_bias"], opacity_bias=rep["opacity_bias"],
                      scaling_activation=rep["scaling_activation"])
        for a in ("_xyz", "_features_dc", "_scaling", "_rotation", "_opacity"):
            setattr(gs, a, t[a].float())
        tmp = os.path.join(args.out, "resaved.ply")
        gs.save_ply(tmp)
        same = open(tmp, "rb").read() == open(os.path.join(GS4, "splat.ply"), "rb").read()
        os.remove(tmp)
        assert same, "Gaussian rebuilt from g4/ref.safetensors does not save g4/splat.ply"
        scene = make_scene({"gaussian": [gs], **p0})
        scene.save_ply(os.path.join(args.out, "placed_splat.ply"))

    # ---- 3. the mesh: official to_glb + trimesh's GLB export; placed vertices
    m, _ = refutil.load_tensors(os.path.join(MESH, "ref.safetensors"))
    mesh = MeshExtractResult(m["vertices"].float(), m["faces"].long(), m["vertex_attrs"].float(),
                             res=64)
    glb = to_glb(None, mesh, simplify=0.95, texture_size=1024, verbose=False,
                 with_mesh_postprocess=False, with_texture_baking=False, use_vertex_color=True,
                 rendering_engine="pytorch3d")
    with open(os.path.join(args.out, "mesh.glb"), "wb") as f:
        f.write(glb.export(file_type="glb"))
    tfm = compose_transform(scale=p0["scale"], rotation=quaternion_to_matrix(p0["rotation"]),
                            translation=p0["translation"])
    placed = tfm.transform_points(m["vertices"].float().unsqueeze(0))[0]
    refutil.save_tensors(os.path.join(args.out, "placed.safetensors"), {"vertices": placed},
                         {"source": "compose_transform(scale, quaternion_to_matrix(rotation), "
                                    "translation).transform_points(vertices), pose case 0"})

    # ---- 4. the job directory export reads
    ply = PlyData.read(os.path.join(GS4, "splat.ply"))["vertex"]

    def cols(*names):
        return torch.from_numpy(np.stack([np.asarray(ply[n]) for n in names], 1).astype(np.float32))
    refutil.save_tensors(os.path.join(job, "gs_decode.safetensors"), {
        "xyz": cols("x", "y", "z"), "f_dc": cols("f_dc_0", "f_dc_1", "f_dc_2"),
        "opacity": cols("opacity"), "scale": cols("scale_0", "scale_1", "scale_2"),
        "rotation": cols("rot_0", "rot_1", "rot_2", "rot_3")}, dtype=None)
    refutil.save_tensors(os.path.join(job, "mesh_decode.safetensors"), {
        "vertices": m["vertices"].float(), "faces": m["faces"].int(),
        "colors": m["vertex_attrs"][:, :3].float()}, dtype=None)
    refutil.save_tensors(os.path.join(job, "ss_flow.safetensors"), {
        "6drotation_normalized": c["r6"][0].view(1, 1, 6),
        "scale": c["scale_latent"][0].view(1, 1, 3),
        "translation": c["translation_latent"][0].view(1, 1, 3),
        "translation_scale": c["translation_scale"][0].view(1, 1, 1),
        "pointmap_scale": c["pointmap_scale"][0].view(1, 3),
        "pointmap_shift": c["pointmap_shift"][0].view(1, 3)}, dtype=None)
    refutil.save_tensors(os.path.join(job, "ss_decode.safetensors"), {
        "downsample_factor": c["downsample_factor"][0:1]}, dtype=None)
    H, W = IMAGE_HW
    intr = torch.tensor([[0.9, 0, 0.5], [0, 0.9 * W / H, 0.5], [0, 0, 1]])
    refutil.save_tensors(os.path.join(job, "depth.safetensors"), {
        "intrinsics": intr, "valid": torch.ones(H, W, dtype=torch.uint8),
        "pointmap_scale": c["pointmap_scale"][0].view(1, 3),
        "pointmap_shift": c["pointmap_shift"][0].view(1, 3)}, dtype=None)

    meta = {"seed": args.seed, "cases": K, "s3d_commit": refutil.ref_commit(s3d),
            "pytorch3d": pytorch3d.__version__, "trimesh": trimesh.__version__,
            "torch": torch.__version__, "gs4_config": os.path.relpath(args.config_gs4)}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    rs.write_fixture_readme(
        args.out, "outputs_tiny: pose, mesh.glb, placed splat and mesh (official code)",
        "python3 tools/ref/dump_outputs.py --s3d .ref/sam-3d-objects --pytorch3d DIR "
        f"--out {os.path.relpath(args.out)}", NOTES)
    print(f"wrote {args.out}")


NOTES = """\
Made from the official code (see tools/ref/dump_outputs.py's docstring for each file and the
official function behind it); `--pytorch3d DIR` is a source checkout of pytorch3d at the
commit sam-3d-objects pins (75ebeeae, 0.7.8; only its pure-Python transforms, structures and
common packages are imported). Inputs: the gs_decoder_tiny/g4 Gaussians (500) and the
mesh_decoder_tiny mesh (786 vertices, 1540 faces). Read by tests/test_pose.c,
tests/test_ply.c, tests/test_glb.c, tests/test_export.sh and tests/test_outputs_py.sh;
tests/test_ref_outputs.sh regenerates it and compares."""


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--s3d", default=".ref/sam-3d-objects")
    ap.add_argument("--pytorch3d", default=None,
                    help="folder holding a pytorch3d source checkout's pytorch3d/ package")
    ap.add_argument("--config-gs4", default=".ref/Fast-SAM3D/checkpoints/hf/slat_decoder_gs_4.yaml")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", type=int, default=8)
    return ap.parse_args(argv)


if __name__ == "__main__":
    run(parse())
