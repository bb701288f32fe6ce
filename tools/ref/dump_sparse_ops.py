"""Golden data for the sparse op family (kernels/ops_sparse.h, tests/test_op_sparse.c), made by
running the official modules of sam-3d-objects (TD = sam3d_objects/model/backbone/tdfy_dit/
modules/sparse) on the CPU with small random inputs:

  conv_*.   TD/conv/conv_spconv.py SparseConv3d(Cin, Cout, 3) -> spconv.SubMConv3d (spconv 2.3,
            CPU build, one thread: its multi-threaded CPU pair generation races, see
            refutil_sparse.spconv_cpu_mode). Pins the KRSC weight layout [Cout, kx, ky, kz, Cin]
            and the offset orientation, which the spec marks UNVERIFIED. Rows are shuffled
            (not lexicographic), so the C neighbour map must not rely on the row order.
  down.*    TD/spatial.py SparseDownsample(2) (unique parents, include_self mean) and
            SparseUpsample(2) on its output.
  sub.*     TD/spatial.py SparseSubdivide.
  gn.*      TD/norm.py SparseGroupNorm32(G, C) (affine, eps 1e-5).

Usage (from the repository root; development only):
    python3 tools/ref/dump_sparse_ops.py [--out tests/fixtures/sparse_ops] [--s3d .ref/sam-3d-objects]
Writes OUT/sparse_ops.safetensors (fp32 feats, int32 coords/indices, kept under 200 KB) and
OUT/README.md.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import refutil  # noqa: E402
import refutil_sparse  # noqa: E402


def random_coords(R, n, g, borders=True):
    """n unique (0, x, y, z) in [0, R)^3, with the 8 grid corners included (border sites),
    in a random row order."""
    import torch
    xyz = torch.randint(0, R, (n, 3), generator=g)
    if borders:
        corners = torch.tensor([[a, b, c] for a in (0, R - 1) for b in (0, R - 1)
                                for c in (0, R - 1)])
        xyz = torch.cat([corners, xyz])
    xyz = torch.unique(xyz, dim=0)
    xyz = xyz[torch.randperm(len(xyz), generator=g)]
    return torch.cat([torch.zeros(len(xyz), 1, dtype=torch.long), xyz], 1).int()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/sparse_ops")
    ap.add_argument("--s3d", default=".ref/sam-3d-objects")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    refutil_sparse.setup_env("cpu")
    refutil.add_ref_paths(s3d=args.s3d)
    import torch
    torch.set_num_threads(1)
    from sam3d_objects.model.backbone.tdfy_dit.modules import sparse as sp

    g = torch.Generator().manual_seed(args.seed)
    out = {}
    meta = {"s3d_commit": refutil.ref_commit(args.s3d), "torch": torch.__version__}
    import spconv
    meta["spconv"] = getattr(spconv, "__version__", "?")

    # --- submanifold conv: a random set with border sites, and a fully occupied 4^3 block
    conv_cases = [("conv_a", random_coords(9, 160, g), 5, 6),
                  ("conv_b", random_coords(4, 0, g, borders=False), 3, 4)]
    full = torch.stack(torch.meshgrid(*[torch.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    full = full[torch.randperm(len(full), generator=g)]
    conv_cases[1] = ("conv_b", torch.cat([torch.zeros(64, 1, dtype=torch.long), full], 1).int(),
                     3, 4)
    for name, coords, cin, cout in conv_cases:
        conv = sp.SparseConv3d(cin, cout, 3)
        with torch.no_grad():
            conv.conv.weight.copy_(torch.randn(conv.conv.weight.shape, generator=g) * 0.3)
            conv.conv.bias.copy_(torch.randn(conv.conv.bias.shape, generator=g))
        assert tuple(conv.conv.weight.shape) == (cout, 3, 3, 3, cin)
        refutil_sparse.spconv_cpu_mode(conv, "cpu")
        feats = torch.randn(len(coords), cin, generator=g)
        with torch.no_grad():
            y = conv(sp.SparseTensor(feats, coords))
        assert torch.equal(y.coords, coords), "SubM changed the sites or their order"
        out.update({f"{name}.coords": coords, f"{name}.x": feats,
                    f"{name}.weight": conv.conv.weight.detach(),
                    f"{name}.bias": conv.conv.bias.detach(), f"{name}.y": y.feats})

    # --- downsample (lexicographic input, as the SS stage hands it over) + upsample
    coords = random_coords(10, 400, g)
    order = torch.argsort(((coords[:, 1] * 10 + coords[:, 2]) * 10 + coords[:, 3]).long())
    coords = coords[order].contiguous()
    feats = torch.randn(len(coords), 7, generator=g)
    with torch.no_grad():
        x = sp.SparseTensor(feats, coords)
        d = sp.SparseDownsample(2)(x)
        idx = d.get_spatial_cache("upsample_(2, 2, 2)_idx")
        u = sp.SparseUpsample(2)(d)
    assert torch.equal(u.coords, coords)
    out.update({"down.coords": coords, "down.x": feats, "down.pcoords": d.coords.int(),
                "down.y": d.feats, "down.parent": idx.int(), "down.up": u.feats})

    # --- subdivide
    coords = random_coords(6, 5, g, borders=False)
    feats = torch.randn(len(coords), 3, generator=g)
    with torch.no_grad():
        s = sp.SparseSubdivide()(sp.SparseTensor(feats, coords))
    out.update({"sub.coords": coords, "sub.x": feats, "sub.ycoords": s.coords.int(),
                "sub.y": s.feats})

    # --- GroupNorm32(4, 16), affine
    coords = random_coords(8, 50, g, borders=False)
    feats = torch.randn(len(coords), 16, generator=g) * 2 + 3
    gn = sp.SparseGroupNorm32(4, 16)
    with torch.no_grad():
        gn.weight.copy_(torch.randn(16, generator=g))
        gn.bias.copy_(torch.randn(16, generator=g))
        y = gn(sp.SparseTensor(feats, coords))
    out.update({"gn.x": feats, "gn.weight": gn.weight.detach(), "gn.bias": gn.bias.detach(),
                "gn.y": y.feats})

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "sparse_ops.safetensors")
    refutil.save_tensors(path, out, metadata=meta, dtype=None)
    refutil_sparse.write_fixture_readme(
        args.out, "Sparse op golden data (official sparse modules, spconv SubMConv3d)",
        "python3 tools/ref/dump_sparse_ops.py --out tests/fixtures/sparse_ops",
        __doc__.split("Usage")[0] + f"\nspconv {meta['spconv']}, reference {meta['s3d_commit']}.")
    size = os.path.getsize(path)
    assert size < 200_000, size
    print(f"wrote {path} ({size} bytes, {len(out)} tensors)")


if __name__ == "__main__":
    main()
