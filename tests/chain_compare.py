"""chain_compare.py - our chain's artifacts against the golden official chain
(tests/fixtures/chain_tiny, tools/ref/dump_chain_golden.py), Python stdlib only (tests/stmin.py),
for tests/test_chain_golden.sh.

  python3 tests/chain_compare.py depth SRC DST      the condition inputs (and pointmap_scale/
                                                    shift) of SRC written as DST (a depth artifact)
  python3 tests/chain_compare.py compare OURS GOLD  every tensor of every GOLD/<stage>.safetensors
                                                    against OURS/<stage>.safetensors; exit 1 on
                                                    any failure
  python3 tests/chain_compare.py perturb FILE NAME INDEX DELTA   add DELTA to element INDEX of
                                                    tensor NAME in FILE (in place; the test's
                                                    proof that the comparison can fail)

Tolerances (fp32 on the CPU, as tools/ref/check_e2e_chain.py runs our stages on the official
chain's inputs):
  integer tensors (coords, downsample_factor, faces): equal (the SS decoder's voxel set is exact
      in fp32 on the CPU: check_e2e_chain's coords_compare allows 0 there);
  float tensors: relative L2 <= 1e-4 over the elements finite in both (tools/ref/compare.py's
      fp32 row: the same maths in another summation order), the same non-finite positions
      within 0.1% of the elements (compare.py NONFINITE_FRAC: saturated opacity logits);
  mesh vertices additionally max |d| <= 1e-5 (check_e2e_chain's exact mesh check); mesh colours
      max |d| <= 1e-3: FlexiCubes interpolates the colour with weights that amplify 1e-7 input
      differences at a few vertices (measured: 2.7e-5 at the end of this chain, 6.8e-5 for
      sam3d-mesh-decode alone on the golden SLAT, 2.5e-4 at the end of a 400-voxel chain;
      relative L2 ~1e-6);
  coords_original: its row count equals the golden meta.json's n_coords_original.
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stmin  # noqa: E402

STAGES = ["cond_ss", "cond_slat", "ss_flow", "ss_decode", "slat_flow", "gs_decode", "mesh_decode"]
DEPTH = ["image", "rgb_image", "mask", "rgb_image_mask", "pointmap", "rgb_pointmap",
         "pointmap_scale", "pointmap_shift"]
REL = 1e-4
NONFINITE_FRAC = 1e-3
MAXABS = {("mesh_decode", "vertices"): 1e-5, ("mesh_decode", "colors"): 1e-3}


def compare_tensor(stage, name, ours, gold):
    """(ok, text) for one tensor pair [dtype, shape, raw]."""
    if ours[0] != gold[0] or ours[1] != gold[1]:
        return False, f"{ours[0]} {ours[1]} vs golden {gold[0]} {gold[1]}"
    a, b = stmin.values(ours[0], ours[2]), stmin.values(gold[0], gold[2])
    if gold[0] != "F32":
        diff = sum(x != y for x, y in zip(a, b))
        return diff == 0, f"{len(b)} values, {diff} differ (equal required)"
    num = den = mx = 0.0
    nonfin = 0
    for x, y in zip(a, b):
        fx, fy = math.isfinite(x), math.isfinite(y)
        if fx and fy:
            d = x - y
            num += d * d
            den += y * y
            mx = max(mx, abs(d))
        elif not (fx == fy and (math.isnan(x) == math.isnan(y)) and (math.isnan(x) or x == y)):
            nonfin += 1
    rel = math.sqrt(num / den) if den > 0 else (0.0 if num == 0 else math.inf)
    lim_abs = MAXABS.get((stage, name))
    ok = rel <= REL and nonfin <= NONFINITE_FRAC * len(b) and (lim_abs is None or mx <= lim_abs)
    text = (f"rel {rel:.2e} (<= {REL:g}), max |d| {mx:.2e}"
            + (f" (<= {lim_abs:g})" if lim_abs is not None else "")
            + (f", {nonfin} non-finite differ" if nonfin else ""))
    return ok, text


def compare(ours_dir, gold_dir):
    fails = 0
    with open(os.path.join(gold_dir, "meta.json")) as f:
        meta = json.load(f)
    for stage in STAGES:
        gold = stmin.read(os.path.join(gold_dir, stage + ".safetensors"))
        p = os.path.join(ours_dir, stage + ".safetensors")
        if not os.path.exists(p):
            print(f"FAIL {stage}: no {stage}.safetensors in {ours_dir}")
            fails += 1
            continue
        ours = stmin.read(p)
        for name, g in gold.items():
            if name not in ours:
                ok, text = False, "missing from ours"
            else:
                ok, text = compare_tensor(stage, name, ours[name], g)
            print(f"{'ok  ' if ok else 'FAIL'} {stage} {name} {g[1]}: {text}")
            fails += not ok
        if stage == "ss_decode":
            n0 = ours["coords_original"][1][0] if "coords_original" in ours else None
            ok = n0 == meta["n_coords_original"]
            print(f"{'ok  ' if ok else 'FAIL'} ss_decode coords_original: {n0} rows vs golden "
                  f"{meta['n_coords_original']}")
            fails += not ok
    print("PASS" if not fails else f"FAIL ({fails})")
    return 1 if fails else 0


def main(argv):
    if len(argv) == 3 and argv[0] == "depth":
        t = stmin.read(argv[1])
        stmin.write(argv[2], {k: t[k] for k in DEPTH})
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        return compare(argv[1], argv[2])
    if len(argv) == 5 and argv[0] == "perturb":
        t = stmin.read(argv[1])
        dt, shape, raw = t[argv[2]]
        v = stmin.values(dt, raw)
        i = int(argv[3])
        v[i] = v[i] + (float(argv[4]) if dt == "F32" else int(argv[4]))
        t[argv[2]] = [dt, shape, v.tobytes()]
        stmin.write(argv[1], t)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
