#!/usr/bin/env python3
"""Run the OFFICIAL SAM 3D preprocessing on the example images; write the fixtures of
tests/test_preprocess.c (development only).

What runs: the PreProcessor objects built by Hydra from the released pipeline.yaml
(`ss_preprocessor`, `slat_preprocessor`; .ref/Fast-SAM3D/checkpoints/hf/pipeline.yaml:22-59,
67-88) and their `_process_image_mask_pointmap_mess`, fed exactly as
InferencePipelinePointMap.preprocess_image feeds them (PL/inference_pipeline_pointmap.py:172-189:
rgba uint8 -> float32(x / 255) in float64 first (PL/inference_pipeline.py:788-792), CHW,
get_mask(ALPHA_CHANNEL)). The RGBA is built as notebook/inference.py:94-99 does
(image[..., :3] + mask * 255) from load_image/load_mask semantics (PIL, :344-356).

Stubs and substitutions (nothing else is changed):
  * matplotlib: imported by img_and_mask_transforms.py but unused on this path; a dummy
    module is put in sys.modules when matplotlib is not installed.
  * sam3d_objects/__init__.py imports sam3d_objects.init (not in the checkout): we set
    LIDRA_SKIP_INIT=1, the switch that file offers.
  * pytorch3d: the pure-Python transforms of a pytorch3d source checkout (--pytorch3d, the
    folder holding pytorch3d/; no compiled extension is needed for Transform3d).
  * ATEN_CPU_CAPABILITY=avx2 is forced before torch is imported: ATen's antialiased resize
    is auto-vectorised differently per CPU capability (which products are fused into FMAs,
    see stages/depth_net/preprocess.c), so the fixtures are those of an AVX2 build on any machine.
  * The point map is synthetic (MoGe is not run): a smooth depth surface back-projected
    through a pinhole camera, NaN in a top band and on a sparse lattice, then MoGe's
    camera-convention flip (-x, -y, z). Every step is a float32 +, *, / so that
    tests/test_preprocess.c regenerates it bit for bit (synthetic_pointmap below).
  * Small cases: the example images are cropped to a window, and the Resize size (518 in
    the release) is set to a smaller S so the committed outputs stay small. Full-size
    cases run the released config (518) on the whole example images and store only a
    CRC-32 of each output (tests/fixtures/preprocess/full.txt).

Output: tests/fixtures/preprocess/case_<name>.safetensors with inputs rgb (H,W,3) u8,
mask (H,W) u8 (0/1) (and, in the first case only, pointmap_in (3,H,W) f32), and outputs (no batch dim) image (3,S,S), mask_out (1,S,S),
rgb_image (3,S,S), rgb_image_mask (1,S,S), pointmap (3,S,S), rgb_pointmap (3,S,S),
pointmap_scale (3), pointmap_shift (3), all float32; metadata: size, source, window,
slat_equal ("true" when the SLAT preprocessor's four outputs equal the SS ones).

Usage: python3 tools/ref/dump_preprocess.py --s3d .ref/sam-3d-objects \
         --pytorch3d .ref/pytorch3d --config .ref/Fast-SAM3D/checkpoints/hf/pipeline.yaml \
         --examples DIR [--out tests/fixtures/preprocess]
"""
import argparse
import os
import sys
import types
import zlib

os.environ["ATEN_CPU_CAPABILITY"] = "avx2"
os.environ["LIDRA_SKIP_INIT"] = "1"

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# (name, image, mask, window (x0, y0, w, h) or None for the whole image, size S)
SMALL = [
    ("human_crop", "human_object/image.png", "human_object/0.png", (340, 560, 280, 240), 96),
    ("socrates12_up", "socrates/image.png", "socrates/12.png", (300, 560, 260, 200), 160),
    ("fencers0_top", "fencers/image.png", "fencers/0.png", (800, 0, 430, 390), 128),
]
FULL = [
    ("human_object", "human_object/image.png", "human_object/0.png"),
    ("socrates5", "socrates/image.png", "socrates/5.png"),
    ("fencers0", "fencers/image.png", "fencers/0.png"),
]


def synthetic_pointmap(h, w):
    """(3, h, w) float32 point map in PyTorch3D camera axes, NaN = invalid. Only float32
    +, *, / in a fixed order (mirrored by tests/test_preprocess.c)."""
    f32 = np.float32
    f = f32(0.9 * max(w, h))
    x = np.arange(w, dtype=f32)[None, :].repeat(h, 0)
    y = np.arange(h, dtype=f32)[:, None].repeat(w, 1)
    u = (x - f32(w // 2)) / f
    v = (y - f32(h // 2)) / f
    z = (f32(2.0) + f32(0.5) * (u * u)) + f32(0.25) * v
    pts = np.stack([-(u * z), -(v * z), z]).astype(f32)      # MoGe (x,y,z) -> (-x,-y,z)
    yi = np.arange(h)[:, None]
    xi = np.arange(w)[None, :]
    bad = ((xi * 7 + yi * 13) % 97 == 0) | (yi < h // 10)
    pts[:, bad] = np.nan
    return pts


def load_image(path):                      # notebook/inference.py:344-348
    return np.array(Image.open(path)).astype(np.uint8)


def load_mask(path):                       # notebook/inference.py:351-356
    m = load_image(path) > 0
    return m[..., -1] if m.ndim == 3 else m


def build_preprocessors(config, size):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    cfg = OmegaConf.load(config)
    out = []
    for key in ("ss_preprocessor", "slat_preprocessor"):
        node = cfg[key]
        for tkey in ("img_transform", "mask_transform", "pointmap_transform"):
            if tkey in node:
                for t in node[tkey]["transforms"]:
                    if "size" in t:
                        t["size"] = size
        out.append(instantiate(node))
    return out


def run_case(torch, get_mask, ss, slat, rgb, mask, pointmap):
    rgba = np.concatenate([rgb[..., :3], (mask.astype(np.uint8) * 255)[..., None]], axis=-1)
    f = (rgba / 255).astype(np.float32)                        # image_to_float
    t = torch.from_numpy(f).permute(2, 0, 1).contiguous()
    rgb_t, mask_t = t[:3], get_mask(t, None, "ALPHA_CHANNEL")
    r = ss._process_image_mask_pointmap_mess(rgb_t, mask_t, torch.from_numpy(pointmap))
    r2 = slat._process_image_mask_pointmap_mess(rgb_t, mask_t, None)
    slat_equal = all(torch.equal(r[k], r2[k]) for k in ("image", "mask", "rgb_image",
                                                         "rgb_image_mask"))
    return r, slat_equal


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--s3d", default=os.path.join(ROOT, ".ref", "sam-3d-objects"))
    ap.add_argument("--pytorch3d", default=os.path.join(ROOT, ".ref", "pytorch3d"))
    ap.add_argument("--config", default=os.path.join(ROOT, ".ref", "Fast-SAM3D", "checkpoints",
                                                     "hf", "pipeline.yaml"))
    ap.add_argument("--examples", default=os.path.join(ROOT, "examples"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "preprocess"))
    args = ap.parse_args()
    sys.path[:0] = [os.path.abspath(args.s3d), os.path.abspath(args.pytorch3d)]
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        sys.modules["matplotlib"] = types.ModuleType("matplotlib")
        sys.modules["matplotlib.pyplot"] = types.ModuleType("matplotlib.pyplot")
    import torch
    sys.path.insert(0, HERE)
    from refutil import save_tensors
    from sam3d_objects.data.dataset.tdfy.img_and_mask_transforms import get_mask
    print("torch", torch.__version__, "cpu capability", torch.backends.cpu.get_cpu_capability())
    os.makedirs(args.out, exist_ok=True)

    for name, img_rel, mask_rel, win, size in SMALL:
        rgb = load_image(os.path.join(args.examples, img_rel))
        mask = load_mask(os.path.join(args.examples, mask_rel))
        x0, y0, w, h = win
        rgb, mask = rgb[y0:y0 + h, x0:x0 + w, :3].copy(), mask[y0:y0 + h, x0:x0 + w].copy()
        pm = synthetic_pointmap(h, w)
        ss, slat = build_preprocessors(args.config, size)
        r, slat_equal = run_case(torch, get_mask, ss, slat, rgb, mask, pm)
        tensors = {"rgb": torch.from_numpy(rgb), "mask": torch.from_numpy(mask.astype(np.uint8))}
        if name == SMALL[0][0]:                       # once, to check the C generator
            tensors["pointmap_in"] = torch.from_numpy(pm)
        for k in ("image", "mask", "rgb_image", "rgb_image_mask", "pointmap", "rgb_pointmap",
                  "pointmap_scale", "pointmap_shift"):
            tensors[k + "_out" if k == "mask" else k] = r[k].float()
        path = os.path.join(args.out, f"case_{name}.safetensors")
        save_tensors(path, tensors, {"size": str(size), "source": f"{img_rel} {mask_rel}",
                                     "window": " ".join(map(str, win)),
                                     "slat_equal": "true" if slat_equal else "false"}, dtype=None)
        print(f"{name}: {w}x{h} -> {size}, scale {r['pointmap_scale'].tolist()} "
              f"shift {r['pointmap_shift'].tolist()} slat_equal {slat_equal} "
              f"({os.path.getsize(path)} bytes)")

    lines = []
    ss, slat = build_preprocessors(args.config, 518)
    for name, img_rel, mask_rel in FULL:
        rgb = load_image(os.path.join(args.examples, img_rel))[..., :3]
        mask = load_mask(os.path.join(args.examples, mask_rel))
        pm = synthetic_pointmap(*mask.shape)
        r, slat_equal = run_case(torch, get_mask, ss, slat, rgb, mask, pm)
        crc = {k: zlib.crc32(r[k].float().contiguous().numpy().tobytes()) & 0xffffffff
               for k in ("image", "mask", "rgb_image", "rgb_image_mask", "pointmap",
                         "rgb_pointmap")}
        sc, sh = r["pointmap_scale"].tolist(), r["pointmap_shift"].tolist()
        lines.append(f"{name} {img_rel} {mask_rel} {int(slat_equal)} " +
                     " ".join(f"{crc[k]:08x}" for k in crc) + " " +
                     " ".join(np.float32(v).tobytes().hex() for v in sc + sh))
        print(lines[-1])
    with open(os.path.join(args.out, "full.txt"), "w") as f:
        f.write("# name image mask slat_equal crc32(image mask rgb_image rgb_image_mask "
                "pointmap rgb_pointmap) scale[3] shift[3] as float32 little-endian hex\n")
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
