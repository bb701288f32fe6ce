#!/usr/bin/env python3
"""Fixture for tests/test_lmsolve.c: MoGe's focal/shift solve run by the real scipy
least_squares on point sets shaped like MoGe output (MG:moge/utils/geometry_numpy.py:79-96,
solve_optimal_focal_shift; the fn below is that function's residual, unchanged).

  python3 tools/ref/dump_lmsolve.py --out tests/fixtures/lmsolve/cases.bin

File (little-endian): "S3DLMSV1", int32 ncases, then per case:
  int32 n, int32 x_scale_jac (1: scipy >= 1.16 default x_scale='jac' -> MINPACK diag mode 1;
  0: x_scale=1.0, mode 2), float32 uv[n*2], float32 xyz[n*3],
  float64 shift (scipy's solution x), float32 shift32, float32 focal (fp32 numpy as MoGe),
  int32 nfev
"""
import argparse
import os
import struct
from functools import partial

import numpy as np
import scipy
from scipy.optimize import least_squares


def fn(uv, xy, z, shift):
    xy_proj = xy / (z + shift)[:, None]
    f = (xy_proj * uv).sum() / np.square(xy_proj).sum()
    err = (f * xy_proj - uv).ravel()
    return err


def solve(uv, xyz, x_scale):
    uv, xy, z = uv.reshape(-1, 2), xyz[..., :2].reshape(-1, 2), xyz[..., 2].reshape(-1)
    kw = {} if x_scale is None else {"x_scale": x_scale}
    sol = least_squares(partial(fn, uv, xy, z), x0=0, ftol=1e-3, method="lm", **kw)
    shift64 = float(sol["x"][0])
    optim_shift = sol["x"].squeeze().astype(np.float32)
    xy_proj = xy / (z + optim_shift)[:, None]
    focal = (xy_proj * uv).sum() / np.square(xy_proj).sum()
    return shift64, np.float32(optim_shift), np.float32(focal), int(sol["nfev"])


def make_points(rng, n, focal, shift, noise, depth0):
    # uv on MoGe's 64x64 grid subset, points with depth z' = z_true - shift
    a = rng.uniform(0.5, 2.0)
    sx, sy = a / np.sqrt(1 + a * a), 1 / np.sqrt(1 + a * a)
    u = (sx * (2 * np.arange(64) + 1 - 64) / 64).astype(np.float32)
    v = (sy * (2 * np.arange(64) + 1 - 64) / 64).astype(np.float32)
    uu, vv = np.meshgrid(u, v, indexing="xy")
    uv = np.stack([uu, vv], -1).reshape(-1, 2)
    idx = rng.choice(uv.shape[0], size=n, replace=False)
    idx.sort()
    uv = uv[idx]
    z_true = depth0 * np.exp(rng.normal(0, 0.3, n))
    xy = uv * z_true[:, None] / focal
    xyz = np.concatenate([xy, (z_true - shift)[:, None]], 1)
    xyz = xyz * (1 + noise * rng.normal(0, 1, xyz.shape))
    return uv.astype(np.float32), xyz.astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/lmsolve/cases.bin")
    a = ap.parse_args()
    rng = np.random.default_rng(5)
    cases = []
    jac_default = tuple(int(t) for t in scipy.__version__.split(".")[:2]) >= (1, 16)
    for k in range(24):
        n = [2, 3, 17, 400, 1000, 700][k % 6]
        uv, xyz = make_points(rng, n, rng.uniform(0.5, 3), rng.uniform(-0.8, 2.0),
                              [0.0, 0.01, 0.1, 0.3][k % 4], rng.uniform(1.0, 8.0))
        for xs in ([None] if jac_default else []) + [1.0]:
            r = solve(uv, xyz, xs)
            cases.append((uv, xyz, 1 if xs is None else 0) + r)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "wb") as f:
        f.write(b"S3DLMSV1")
        f.write(struct.pack("<i", len(cases)))
        for uv, xyz, jac, s64, s32, foc, nfev in cases:
            f.write(struct.pack("<ii", uv.shape[0], jac))
            f.write(uv.tobytes())
            f.write(xyz.tobytes())
            f.write(struct.pack("<dffi", s64, s32, foc, nfev))
    print("wrote", a.out, len(cases), "cases, scipy", scipy.__version__)


if __name__ == "__main__":
    main()
