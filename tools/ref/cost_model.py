#!/usr/bin/env python3
"""The FLOP model of the whole SAM 3D Objects pipeline, per stage: the one place
tools/ref/bench_report.py and docs/performance.md ("Whole pipeline") take FLOP counts from.

FLOP = 2 x multiply-add; only GEMM, convolution and attention work is counted (element-wise
ops are memory-bound; the per-stage byte models are in plugin_cond.py and plugin_gs_decode.py).
Every count is the work the OUTPUT needs at the released sizes, with the output-preserving
savings both implementations can take: the condition's cross-attention K/V projected once per
request, and the unconditional CFG pass's cross-attention reduced to its constant row (every
key equals the to_kv bias when the condition is zero). The same count is used for ours and the
official run, so "achieved TFLOP/s" compares like with like; a stage's compute floor is its
count divided by the peak rate (--peak-tflops; docs/performance.md uses 700 TFLOP/s dense
fp16).

Counted from the layer shapes of the official modules (sam-3d-objects cf06676 paths below
under sam3d_objects/model/backbone/, MoGe under moge/model/):
  depth       MoGe v1 ViT-L (v1.py:267-277: 2551 tokens at resolution_level 9, the resize rule)
              backbone 24 x (GEMMs 2 T (3C^2 + C^2 + 8C^2) + attention 4 T^2 C), and the Head
              (v1.py:60-140): 4 projections, three upsample stages (ConvTranspose 2x2, 3x3
              conv, 2 residual blocks of two 3x3 convs with hidden 2x), two output blocks at the
              resized image size.
  cond_ss     plugin_cond.cost_rows('ss') (DINOv2 x4, PointPatchEmbed x2, projections).
  cond_slat   plugin_cond.cost_rows('slat').
  ss_flow     MoT DiT (tdfy_dit/models/mot_sparse_structure_flow.py, modules/transformer/
              modulated.py:174-341; C 1024, 24 blocks, MLP 4096, 4096 shape + 4 pose tokens,
              7528 condition tokens): per conditional evaluation the token GEMMs and the self-
              and cross-attention; per unconditional one without to_q/to_out/cross-attention;
              the condition's K/V once per request (2 streams). Evaluations from the sampler
              settings (generator/shortcut/model.py:395-412, classifier_free_guidance.py:145-160).
  ss_decode   the 3-D conv decoder (tdfy_dit/models/sparse_structure_vae.py:240-280,
              ss_decoder.yaml channels 512/128/32), 16^3 -> 64^3, independent of the object.
  slat_flow   sparse DiT on M tokens at 32^3 (full attention) + the sparse res blocks on N
              voxels at 64^3 / M at 32^3 (tdfy_dit/models/structured_latent_flow.py:15-74,
              268-301), convs counted with the measured mean neighbour counts k64, k32.
  gs_decode   plugin_gs_decode.cost (12 swin blocks at 768, windows of 8 from the actual
              coords, shift 0 / 4 alternating; the 32-Gaussian head).
  mesh_decode the same trunk + the subdivision head (tdfy_dit/models/structured_latent_vae/
              decoder_mesh.py): 8N sites at 128^3 and 64N at 256^3 with their measured neighbour
              counts K1, K2, and the 101-channel out_layer.

  python3 tools/ref/cost_model.py ARTIFACTS_DIR [--image-hw H W] [--preset fast]
prints the table for the artifacts of one run (ss_decode.safetensors gives the voxels).
"""
import argparse
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

PEAK_TFLOPS = 700.0          # docs/performance.md: dense fp16 tensor-core rate of the floors
C = 1024                     # flow width
MLP = 4096
BLOCKS = 24
SS_TOKENS, SS_POSE, SS_COND = 4096, 4, 7528
SLAT_COND = 5496
DEC_CFG = {"model_channels": 768, "num_blocks": 12, "mlp_ratio": 4}   # slat_decoder_*.yaml
MESH_FEATS = 101             # FlexiCubes features per 256^3 site (decoder_mesh.py out_layer)

# Sampler settings: the pipeline's defaults and --preset fast (orchestrator/preset.c).
SAMPLERS = {
    "default": {"ss": dict(steps=25, cfg=7.0, rescale_t=3.0, shortcut=False),
                "slat": dict(steps=25, cfg=1.0, rescale_t=1.0)},
    "fast": {"ss": dict(steps=4, cfg=0.0, rescale_t=3.0, shortcut=True),
             "slat": dict(steps=4, cfg=0.0, rescale_t=1.0)},
}


# ------------------------------------------------------------------------------ samplers

def cfg_steps(steps, cfg, rescale_t, lo=0.0, hi=500.0):
    """How many of the sampler's steps run the unconditional pass too: t_k = k/steps,
    rescaled t / (1 + (r - 1)(1 - t)), compared as float32 t*1000 with [lo, hi] (inclusive;
    classifier_free_guidance.py:145-160). 0 when cfg is 0 (the shortcut mode sets it 0)."""
    import numpy as np
    if cfg <= 0:
        return 0
    n = 0
    for k in range(steps):
        t = k / steps
        if rescale_t:
            t = t / (1 + (rescale_t - 1) * (1 - t))
        T = float(np.float32(t * 1000.0))
        n += lo <= T <= hi
    return n


# ------------------------------------------------------------------------------ networks

def moge_grid(h, w, num_tokens=2551):
    """MoGe v1's patch grid for an h x w image (moge/model/v1.py:267-277)."""
    f = math.sqrt(num_tokens * 14 ** 2 / (h * w))
    rw, rh = int(w * f), int(h * f)
    return rh // 14, rw // 14


def depth_flops(h, w):
    """MoGe v1 ViT-L (24 blocks, C 1024, MLP 4096) and its Head (dim_proj 512, dim_upsample
    256/128/64, residual hidden 2x, 2 residual blocks a stage, output convs 66 -> 32 -> 3 and
    -> 1) for an h x w image."""
    gh, gw = moge_grid(h, w)
    T = gh * gw + 1                                   # + class token
    mac = BLOCKS * (T * 12 * C * C) + gh * gw * C * 588            # blocks, patch embed
    mac += 4 * gh * gw * C * 512                                   # 4 projections (1x1)
    cin, area = 512, gh * gw
    for cout in (256, 128, 64):
        area *= 4                                     # ConvTranspose 2x2 stride 2
        mac += area * ((cin + 2) * cout + 9 * cout * cout + 2 * 2 * 9 * cout * 2 * cout)
        cin = cout
    px = (gh * 14) * (gw * 14)                        # the resized image the head ends at
    mac += px * 2 * 9 * (64 + 2) * 32 + px * 32 * (3 + 1)
    return 2.0 * mac + BLOCKS * 4.0 * T * T * C


def cond_flops(variant):
    import plugin_cond
    return sum(r[1] for r in plugin_cond.cost_rows(variant, 2).values())


def dit_block(tokens, cond_tokens, uncond):
    """One transformer block (single stream): token GEMMs (qkv 3C, out C, cross-q C,
    cross-out C, MLP 2 x 4C) and attention; an unconditional evaluation skips cross-q,
    cross-out and the cross-attention (the constant row of a zero condition)."""
    lin = 2.0 * tokens * C * (3 * C + C + 2 * MLP + (0 if uncond else 2 * C))
    cross = 0.0 if uncond else 4.0 * tokens * cond_tokens * C
    return lin + cross


def ss_flow_flops(steps=25, cfg=7.0, rescale_t=3.0, shortcut=False):
    """The SS sampler: (steps) conditional + (cfg steps) unconditional evaluations, K/V of
    the condition once (2 streams)."""
    n_u = cfg_steps(steps, 0.0 if shortcut else cfg, rescale_t)
    L = SS_TOKENS + SS_POSE
    self_attn = 4.0 * C * (SS_TOKENS * SS_TOKENS + SS_POSE * L)
    ada = 2.0 * C * 6 * C
    ev_c = BLOCKS * (dit_block(L, SS_COND, False) + self_attn + ada)
    ev_u = BLOCKS * (dit_block(L, SS_COND, True) + self_attn + ada)
    kv = BLOCKS * 2 * 2.0 * SS_COND * C * 2 * C
    return steps * ev_c + n_u * ev_u + kv


def ss_decode_flops():
    """SparseStructureDecoder (ss_decoder.yaml: latent 8, channels 512/128/32, 2 res blocks
    a level and 2 in the middle): 3x3x3 convs at 16^3, 32^3, 64^3."""
    v16, v32, v64 = 16 ** 3, 32 ** 3, 64 ** 3
    mac = 27 * v16 * (8 * 512 + 8 * 512 * 512 + 512 * 1024)       # input, 8 convs, up-conv
    mac += 27 * v32 * (4 * 128 * 128 + 128 * 256)                  # 4 convs, up-conv
    mac += 27 * v64 * (4 * 32 * 32 + 32 * 1)                       # 4 convs, out conv
    return 2.0 * mac


def slat_io_flops(N, M, k64, k32):
    """The SLAT flow's input/output layers and sparse res blocks (MAC per site; k = mean
    taps of a 3x3x3 submanifold conv): at 64^3 input_layer 8->128, input_blocks.0 (two convs
    128->128), out_blocks.0 (conv 2048->128, conv 128->128, skip 2048->128), out_blocks.1
    (conv 256->128, conv 128->128, skip 256->128), out_layer 128->8; at 32^3 input_blocks.1
    (conv 128->1024, conv 1024->1024, skip 128->1024)."""
    mac64 = k64 * (2 * 128 * 128 + 2048 * 128 + 128 * 128 + 256 * 128 + 128 * 128) \
        + 8 * 128 + 2048 * 128 + 256 * 128 + 128 * 8
    mac32 = k32 * (128 * 1024 + 1024 * 1024) + 128 * 1024
    return 2.0 * (mac64 * N + mac32 * M)


def slat_flow_flops(N, M, k64, k32, steps=25, cfg=1.0, rescale_t=1.0):
    n_u = cfg_steps(steps, cfg, rescale_t)
    self_attn = 4.0 * C * M * M
    ada = 2.0 * C * 6 * C
    io = slat_io_flops(N, M, k64, k32)
    ev_c = BLOCKS * (dit_block(M, SLAT_COND, False) + self_attn + ada) + io
    ev_u = BLOCKS * (dit_block(M, SLAT_COND, True) + self_attn + ada) + io
    kv = BLOCKS * 2.0 * SLAT_COND * C * 2 * C
    return steps * ev_c + n_u * ev_u + kv


def decoder_trunk_and_windows(coords):
    """(window lengths at shift 0, at shift 4) of the decoders' swin partition."""
    import torch
    import plugin_gs_decode
    c = torch.as_tensor(coords)
    return (plugin_gs_decode.windows(torch, c, 0), plugin_gs_decode.windows(torch, c, 4))


def gs_decode_flops(coords, gaussians=32):
    import plugin_gs_decode
    l0, l1 = decoder_trunk_and_windows(coords)
    return plugin_gs_decode.cost(DEC_CFG, len(coords), gaussians, l0, l1, 2)["flop"]


def mesh_decode_flops(coords):
    """Trunk (the GS decoder's without its head) + the two subdivide blocks (at 8N sites:
    conv 768->192, conv 192->192, 1x1 skip 768->192; at 64N: 192->96, 96->96, skip 192->96)
    and out_layer 96->101. Returns (FLOP, K1, K2)."""
    import plugin_gs_decode
    N = len(coords)
    l0, l1 = decoder_trunk_and_windows(coords)
    trunk = plugin_gs_decode.cost(DEC_CFG, N, 0, l0, l1, 2)["flop"]
    s1 = subdivide(coords_xyz(coords))
    k1 = mean_neighbours(s1)
    s2 = subdivide(s1)
    k2 = mean_neighbours(s2)
    c1, c2 = 768 // 4, 768 // 8
    mac = len(s1) * (k1 * (768 * c1 + c1 * c1) + 768 * c1)
    mac += len(s2) * (k2 * (c1 * c2 + c2 * c2) + c1 * c2 + c2 * MESH_FEATS)
    return trunk + 2.0 * mac, k1, k2


# ------------------------------------------------------------------------------ geometry

def coords_xyz(coords):
    import numpy as np
    c = np.asarray(coords)
    return c[:, 1:4].astype(np.int64)


def subdivide(xyz):
    """The 8 children of every site (2x + {0,1} per axis)."""
    import numpy as np
    off = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.int64)
    return (2 * xyz[:, None, :] + off[None]).reshape(-1, 3)


def mean_neighbours(xyz):
    """Mean number of occupied sites in the 3x3x3 neighbourhood of each site (itself
    included): the taps a submanifold 3x3x3 convolution multiplies."""
    import numpy as np
    if len(xyz) == 0:
        return 0.0
    lo = xyz.min(0) - 1
    span = xyz.max(0) - lo + 2
    key = lambda p: ((p[:, 0] - lo[0]) * span[1] + (p[:, 1] - lo[1])) * span[2] + (p[:, 2] - lo[2])  # noqa: E731
    ks = np.sort(key(xyz))
    total = 0
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                q = key(xyz + np.array([dx, dy, dz]))
                i = np.searchsorted(ks, q)
                i[i == len(ks)] = 0
                total += int((ks[i] == q).sum())
    return total / len(xyz)


def parents(xyz):
    import numpy as np
    return np.unique(xyz // 2, axis=0)


# ------------------------------------------------------------------------------ the pipeline

def pipeline_flops(coords, image_hw, preset="default", gaussians=32):
    """FLOPs per stage (dict, in pipeline order) for one object with these SLAT voxels
    (coords (N, 4) b,x,y,z at 64^3) and an input image of image_hw = (h, w), and the
    geometry numbers used (dict)."""
    s = SAMPLERS[preset]
    xyz = coords_xyz(coords)
    par = parents(xyz)
    k64, k32 = mean_neighbours(xyz), mean_neighbours(par)
    mesh, k1, k2 = mesh_decode_flops(coords)
    flops = {
        "depth": depth_flops(*image_hw),
        "cond_ss": cond_flops("ss"),
        "cond_slat": cond_flops("slat"),
        "ss_flow": ss_flow_flops(**s["ss"]),
        "ss_decode": ss_decode_flops(),
        "slat_flow": slat_flow_flops(len(xyz), len(par), k64, k32, **s["slat"]),
        "gs_decode": gs_decode_flops(coords, gaussians),
        "mesh_decode": mesh,
    }
    geom = {"N": int(len(xyz)), "M": int(len(par)), "k64": round(k64, 2), "k32": round(k32, 2),
            "K1": round(k1, 2), "K2": round(k2, 2), "moge_grid": list(moge_grid(*image_hw)),
            "ss_evals": s["ss"]["steps"] + cfg_steps(s["ss"]["steps"], 0 if s["ss"]["shortcut"]
                                                     else s["ss"]["cfg"], s["ss"]["rescale_t"]),
            "slat_evals": s["slat"]["steps"] + cfg_steps(**s["slat"])}
    return flops, geom


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", help="a run's artifacts/ (ss_decode.safetensors)")
    ap.add_argument("--image-hw", type=int, nargs=2, default=(4500, 6000))
    ap.add_argument("--preset", choices=sorted(SAMPLERS), default="default")
    ap.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS)
    args = ap.parse_args(argv)
    import refutil
    t, _ = refutil.load_tensors(os.path.join(args.artifacts, "ss_decode.safetensors"))
    flops, geom = pipeline_flops(t["coords"].numpy(), tuple(args.image_hw), args.preset)
    print(f"geometry: {geom}")
    print("| stage | TFLOP | compute floor ms |")
    print("|---|---|---|")
    for k, f in flops.items():
        print(f"| {k} | {f / 1e12:.3f} | {f / args.peak_tflops / 1e9:.2f} |")
    tot = sum(flops.values())
    print(f"| total | {tot / 1e12:.3f} | {tot / args.peak_tflops / 1e9:.2f} |")


if __name__ == "__main__":
    main()
