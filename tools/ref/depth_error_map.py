#!/usr/bin/env python3
"""Where two fp16 depth runs differ from the fp32 truth: a diagnosis of a plugin_depth.py work
folder (WORK/fp16, WORK/fp32 with ref.safetensors = the official module's dump and
once_out/depth.safetensors = ours).

Against the official fp32 point map, over pixels valid in all four runs, it prints for our fp16
run and the official fp16 run: the relative error per component (x, y, z), the error by depth
decile, the cosine between the two error fields (how much of the fp16 noise they share), and an
8x8 grid of per-block RMS errors with the ratio ours/official, so an error concentrated in one
region (a border, a patch row) stands apart from a uniformly noisier rounding.

  python3 tools/ref/depth_error_map.py /tmp/s3d-depth
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import refutil  # noqa: E402


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not os.path.isdir(argv[0]):
        print(__doc__, file=sys.stderr)
        return 2
    import torch
    w = argv[0]
    L = lambda *p: refutil.load_tensors(os.path.join(w, *p))[0]       # noqa: E731
    r16, r32 = L("fp16", "ref.safetensors"), L("fp32", "ref.safetensors")
    o16 = L("fp16", "once_out", "depth.safetensors")
    o32 = L("fp32", "once_out", "depth.safetensors")
    P = {"off16": r16["pointmap"].float().permute(1, 2, 0).double(),
         "off32": r32["pointmap"].float().permute(1, 2, 0).double(),
         "ours16": o16["points"].double(), "ours32": o32["points"].double()}
    valid = r16["mask"].bool() & r32["mask"].bool() & o16["valid"].bool() & o32["valid"].bool()
    H, W = valid.shape
    print(f"{H}x{W}, {int(valid.sum())} pixels valid in all four runs")
    t = P["off32"]
    E = {k: (P[k] - t) for k in ("off16", "ours16", "ours32")}
    tn = t[valid].norm()
    for k, e in E.items():
        comp = [float(e[valid][:, c].norm() / t[valid][:, c].norm()) for c in range(3)]
        print(f"{k:7s} vs off32: rel {float(e[valid].norm() / tn):.3e}; per component x "
              f"{comp[0]:.3e} y {comp[1]:.3e} z {comp[2]:.3e}")
    a, b = E["ours16"][valid].flatten(), E["off16"][valid].flatten()
    print(f"cosine(ours16 error, off16 error) = {float(a @ b / (a.norm() * b.norm())):.3f}")
    z = t[..., 2][valid]
    qs = torch.quantile(z.float(), torch.linspace(0, 1, 11)).double()
    print("by depth decile (rms error / rms value), ours16 | off16:")
    for i in range(10):
        sel = (z >= qs[i]) & (z <= qs[i + 1])
        ref = t[valid][sel].norm()
        print(f"  z in [{float(qs[i]):.3g}, {float(qs[i + 1]):.3g}]: "
              f"{float(E['ours16'][valid][sel].norm() / ref):.3e} | "
              f"{float(E['off16'][valid][sel].norm() / ref):.3e}")
    print("8x8 blocks: rel error ours16 / off16 (ratio); '-' = no valid pixels")
    for bi in range(8):
        cells = []
        for bj in range(8):
            ys, ye = bi * H // 8, (bi + 1) * H // 8
            xs, xe = bj * W // 8, (bj + 1) * W // 8
            v = valid[ys:ye, xs:xe]
            if not v.any():
                cells.append("      -      ")
                continue
            ref = t[ys:ye, xs:xe][v].norm()
            eo = float(E["ours16"][ys:ye, xs:xe][v].norm() / ref)
            ef = float(E["off16"][ys:ye, xs:xe][v].norm() / ref)
            cells.append(f"{eo:.1e}/{ef:.1e}({eo / max(ef, 1e-30):.1f})")
        print("  " + " ".join(cells))
    e = E["ours16"].norm(dim=-1)
    e[~valid] = 0
    top = torch.topk(e.flatten(), 5)
    print("largest ours16 errors (abs): " + ", ".join(
        f"({int(i) // W},{int(i) % W}) {float(v):.2e} off16 "
        f"{float(E['off16'].norm(dim=-1).flatten()[i]):.2e}" for v, i in zip(*top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
