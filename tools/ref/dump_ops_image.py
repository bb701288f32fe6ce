#!/usr/bin/env python3
"""Fixtures for the image-space op tests (tests/test_op_resize.c, test_op_conv2d.c,
test_op_groupnorm.c): small inputs and torch's own outputs on the CPU.

  python3 tools/ref/dump_ops_image.py --out tests/fixtures/ops_image

Each case is one little-endian file:
  char[8] magic "S3DOPIMG", int32 n_int, int32 n_f64, int32 n_arrays,
  int32 ints[n_int], float64 f64s[n_f64],
  then n_arrays x (int32 numel, float32 data[numel])
The meaning of ints / f64s / arrays is fixed per op (see the writers below); inputs are
float32 except where a case says U8 (then the array holds the byte values as floats).
"""
import argparse
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

RESIZE_MODES = {"nearest": 0, "bilinear": 1, "bicubic": 2, "bilinear_aa": 3, "bicubic_aa": 4}


def write_case(path, ints, f64s, arrays):
    with open(path, "wb") as f:
        f.write(b"S3DOPIMG")
        f.write(struct.pack("<iii", len(ints), len(f64s), len(arrays)))
        f.write(struct.pack("<%di" % len(ints), *ints))
        f.write(struct.pack("<%dd" % len(f64s), *f64s))
        for a in arrays:
            a = np.ascontiguousarray(a, dtype=np.float32).ravel()
            f.write(struct.pack("<i", a.size))
            f.write(a.tobytes())


def resize_cases(out, g):
    # (mode, P, H, W, Ho, Wo, scale_h, scale_w, u8)
    cases = [
        ("bicubic_aa", 3, 45, 80, 13, 23, 0, 0, False),     # big downscale (MoGe input resize)
        ("bicubic_aa", 3, 30, 17, 41, 17, 0, 0, False),     # upscale H, same W
        ("bicubic_aa", 3, 60, 47, 29, 21, 0, 0, True),      # U8 image input
        ("bilinear_aa", 3, 33, 71, 28, 70, 0, 0, False),    # MoGe's round down to 14
        ("bilinear_aa", 2, 9, 9, 20, 4, 0, 0, False),
        ("bilinear", 4, 7, 9, 37, 50, 0, 0, False),         # head / output upsample
        ("bilinear", 2, 10, 12, 3, 5, 0, 0, False),
        ("bilinear", 1, 1, 5, 4, 5, 0, 0, False),
        ("nearest", 3, 50, 77, 64, 64, 0, 0, False),        # recover_focal_shift 64x64
        ("nearest", 2, 130, 99, 64, 64, 0, 0, False),
        ("nearest", 1, 5, 6, 10, 12, 0, 0, False),
        ("bicubic", 5, 37, 37, 0, 0, 37 + 0.1, 67 + 0.1, False),   # DINOv2 pos-embed, scale
        ("bicubic", 3, 37, 37, 0, 0, 50 + 0.1, 50 + 0.1, False),
        ("bicubic", 2, 16, 16, 0, 0, 2 + 0.1, 3 + 0.1, False),     # the tiny fixture's shape
        ("bicubic", 2, 8, 11, 5, 17, 0, 0, False),
    ]
    for k, (mode, P, H, W, Ho, Wo, sh, sw, u8) in enumerate(cases):
        if u8:
            xin = torch.randint(0, 256, (1, P, H, W), generator=g).float()
            x = (xin.double() / 255.0).float()
        else:
            xin = x = torch.randn(1, P, H, W, generator=g)
        m = mode.replace("_aa", "")
        aa = mode.endswith("_aa")
        kw = {} if m == "nearest" else {"align_corners": False}
        if sh:
            # DINOv2 interpolate_pos_encoding: scale_factor = (ph + 0.1) / 37, i.e. sx, sy
            sfh, sfw = sh / H, sw / W
            y = F.interpolate(x, scale_factor=(sfh, sfw), mode=m, **kw)
            Ho, Wo = y.shape[-2:]
        else:
            sfh = sfw = 0.0
            y = F.interpolate(x, size=(Ho, Wo), mode=m, antialias=aa, **kw)
        write_case(os.path.join(out, "resize_%02d.bin" % k),
                   [RESIZE_MODES[mode], P, H, W, Ho, Wo, int(u8)], [sfh, sfw], [xin, y])


def conv_cases(out, g):
    # (N, Cin, H, W, Cout, K, stride, pad, replicate, relu)
    cases = [(1, 5, 7, 9, 6, 3, 1, 1, True, False), (2, 3, 4, 5, 4, 3, 1, 1, True, True),
             (1, 8, 6, 6, 3, 1, 1, 0, False, False), (1, 3, 28, 42, 8, 14, 14, 0, False, False),
             (1, 4, 1, 1, 2, 3, 1, 1, True, False), (1, 2, 5, 3, 3, 3, 2, 1, False, True)]
    for k, (N, Ci, H, W, Co, K, s, p, rep, relu) in enumerate(cases):
        x = torch.randn(N, Ci, H, W, generator=g)
        w = torch.randn(Co, Ci, K, K, generator=g) * 0.3
        b = torch.randn(Co, generator=g)
        conv = torch.nn.Conv2d(Ci, Co, K, stride=s, padding=p,
                               padding_mode="replicate" if rep else "zeros")
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(b)
            y = conv(x)
            if relu:
                y = F.relu(y)
        write_case(os.path.join(out, "conv2d_%02d.bin" % k),
                   [N, Ci, H, W, Co, K, s, p, int(rep), int(relu)], [], [x, w, b, y])
    for k, (N, Ci, H, W, Co) in enumerate([(1, 6, 3, 5, 4), (2, 3, 1, 1, 2), (1, 10, 4, 7, 5)]):
        x = torch.randn(N, Ci, H, W, generator=g)
        w = torch.randn(Ci, Co, 2, 2, generator=g) * 0.3
        b = torch.randn(Co, generator=g)
        y = F.conv_transpose2d(x, w, b, stride=2)
        write_case(os.path.join(out, "convt_%02d.bin" % k), [N, Ci, H, W, Co], [],
                   [x, w, b, y])


def groupnorm_cases(out, g):
    # (N, C, H, W, groups, relu)
    cases = [(1, 8, 5, 7, 1, False), (2, 8, 3, 3, 4, True), (1, 64, 6, 5, 2, True),
             (1, 6, 1, 1, 3, False)]
    for k, (N, C, H, W, G, relu) in enumerate(cases):
        x = torch.randn(N, C, H, W, generator=g) * 3 + 1.5
        w = torch.randn(C, generator=g)
        b = torch.randn(C, generator=g)
        y = F.group_norm(x, G, w, b, eps=1e-5)
        if relu:
            y = F.relu(y)
        write_case(os.path.join(out, "groupnorm_%02d.bin" % k), [N, C, H, W, G, int(relu)],
                   [1e-5], [x, w, b, y])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/ops_image")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    torch.set_num_threads(1)
    resize_cases(a.out, g)
    conv_cases(a.out, g)
    groupnorm_cases(a.out, g)
    print("wrote", a.out, "torch", torch.__version__)


if __name__ == "__main__":
    main()
