#!/usr/bin/env python3
"""Compare two meshes: ours (sam3d-mesh-decode's vertices, faces, colors) against the official
decoder's (MeshExtractResult vertices, faces, vertex_attrs[:, :3]), with the measures of
issue 12:

  counts     vertex and face counts and their ratios (ours / official; within 1%)
  chamfer    symmetric Chamfer distance of the vertex sets over the official bounding-box
             diagonal: (mean over ours of the distance to the nearest official vertex + the
             same the other way) / 2 / diagonal (<= 1e-3)
  colour     mean |colour - colour of the nearest official vertex| over our vertices and the
             three channels, in 1/255 (<= 2)
  exact      when the counts are equal and the faces identical (the same extraction): the
             largest position and colour difference vertex by vertex

  python3 tools/ref/mesh_compare.py OURS.safetensors REF.safetensors   (metrics as JSON)

Used by plugin_mesh_decode.py (full size on the GPU) and check_e2e_chain.py. Needs numpy and
scipy (cKDTree for the nearest neighbours)."""
import json
import sys

LIMITS = {"count_ratio": 0.01, "chamfer": 1e-3, "colour_255": 2.0}


def _np(t):
    return t.detach().cpu().numpy() if hasattr(t, "detach") else t


def compare(ours, ref):
    """ours: {vertices, faces, colors}; ref: {vertices, faces, vertex_attrs} (tensors or
    arrays). Returns a dict of metrics and 'ok' (every limit of LIMITS met)."""
    import numpy as np
    from scipy.spatial import cKDTree
    va, fa, ca = (np.asarray(_np(ours[k]), dtype=np.float64) for k in ("vertices", "faces", "colors"))
    vb, fb = np.asarray(_np(ref["vertices"]), np.float64), np.asarray(_np(ref["faces"]))
    cb = np.asarray(_np(ref["vertex_attrs"]), np.float64)[:, :3]
    m = {"vertices": [int(va.shape[0]), int(vb.shape[0])], "faces": [int(fa.shape[0]), int(fb.shape[0])]}
    m["vertex_ratio"] = va.shape[0] / max(vb.shape[0], 1)
    m["face_ratio"] = fa.shape[0] / max(fb.shape[0], 1)
    if va.shape[0] == 0 or vb.shape[0] == 0:
        m.update(chamfer=float("inf"), colour_255=float("inf"), ok=False)
        return m
    diag = float(np.linalg.norm(vb.max(0) - vb.min(0)))
    da, ia = cKDTree(vb).query(va)          # ours -> nearest official
    db, _ = cKDTree(va).query(vb)           # official -> nearest ours
    m["bbox_diagonal"] = diag
    m["chamfer"] = float((da.mean() + db.mean()) / 2 / diag)
    m["hausdorff"] = float(max(da.max(), db.max()) / diag)
    m["colour_255"] = float(np.abs(ca - cb[ia]).mean() * 255)
    if va.shape == vb.shape and fa.shape == fb.shape and np.array_equal(fa, fb):
        m["exact_max_position"] = float(np.abs(va - vb).max())
        m["exact_max_colour"] = float(np.abs(ca - cb).max())
    m["ok"] = bool(abs(m["vertex_ratio"] - 1) <= LIMITS["count_ratio"]
                   and abs(m["face_ratio"] - 1) <= LIMITS["count_ratio"]
                   and m["chamfer"] <= LIMITS["chamfer"] and m["colour_255"] <= LIMITS["colour_255"])
    return m


def summary(m):
    """One line of the metrics."""
    s = (f"V {m['vertices'][0]} vs {m['vertices'][1]} ({100 * (m['vertex_ratio'] - 1):+.2f}%), "
         f"F {m['faces'][0]} vs {m['faces'][1]} ({100 * (m['face_ratio'] - 1):+.2f}%), "
         f"Chamfer {m['chamfer']:.2e} of the diagonal (Hausdorff {m.get('hausdorff', float('nan')):.2e}), "
         f"colour {m['colour_255']:.3f}/255")
    if "exact_max_position" in m:
        s += (f"; same faces, max |dv| {m['exact_max_position']:.1e}, max |dcolour| "
              f"{m['exact_max_colour']:.1e}")
    return s


def main(argv=None):
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import refutil
    argv = argv if argv is not None else sys.argv[1:]
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    ours, ref = (refutil.load_tensors(p)[0] for p in argv)
    m = compare(ours, ref)
    print(summary(m))
    print(json.dumps(m))
    return 0 if m["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
