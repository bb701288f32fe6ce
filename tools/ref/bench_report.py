#!/usr/bin/env python3
"""The whole-pipeline benchmark's tables: ours (`sam3d bench` folders) next to the official
pipeline (tools/ref/bench_official.py's official.json), per stage and in total, with the FLOP
model (tools/ref/cost_model.py: achieved TFLOP/s, compute floors), the driver-measured device
memory, the load rate, the issue's targets checked, and --preset fast's speed and output
difference from the default (the same seed). tools/gpu/bench_full.sh runs it; the rows go to
docs/performance.md "Whole pipeline".

  python3 tools/ref/bench_report.py --ours OUT/ours [--fast OUT/ours_fast] \\
      [--official OUT/official/official.json [--official-work DIR]] [--gpu NAME] \\
      [--peak-tflops 700] [--out OUT/bench_report]

--variant LABEL=DIR (repeatable): the same for a run with one lever changed (the GELU epilogue
off, the SS flow's K/V cache on, ...): per stage our warm time and memory next to --ours.
--ours / --fast: `sam3d bench --out` folders (bench.json, run<k>/report.json, run<k>/artifacts/).
Ours: the run's total includes the export step (splat.ply, mesh.glb, pose.json, preview.png);
per stage the warm run's wall time (request to reply: loading excluded, the artifact
written), its own run time (the stage's "last_run_ms") and achieved TFLOP/s = FLOPs / run
time, the cold run's wall and load time, the device memory the driver counted for the stage's
process; totals: cold = process start + run 1, warm = run 2. Official: per stage the warm run
(CUDA-synchronised; 'depth' includes its preprocessing, as our depth stage does), the cold
total = loading + run 1, torch's peak and the process's driver peak. Output differences
(fast vs default, and ours vs the official run when --official-work holds its arrays): the
occupied voxels before and after the prune/downsample (IoU), Gaussian centres and mesh vertices (symmetric mean nearest-neighbour distance in
object units, the object box being 1), counts.
Writes OUT.md (the tables) and OUT.json; prints the tables.
"""
import argparse
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cost_model  # noqa: E402

STAGES = ["depth", "cond_ss", "cond_slat", "ss_flow", "ss_decode", "slat_flow", "gs_decode",
          "mesh_decode"]
# Parameters per stage (the released configs built by the official code: tools/ref/README.md
# "Tiny vs full", README_generators.md "--size full"); fp16 weight bytes = 2 x.
PARAMS = {"depth": 314_174_020, "cond_ss": 634_485_760, "cond_slat": 626_054_144,
          "ss_flow": 959_962_133, "ss_decode": 73_671_201, "slat_flow": 600_432_520,
          "gs_decode": 85_369_024, "mesh_decode": 90_926_693}
GIB = 2.0 ** 30


# ------------------------------------------------------------------------------ inputs

def load_json(path):
    with open(path) as f:
        return json.load(f)


def ours_runs(folder):
    """bench.json + each run's report.json stages by name."""
    b = load_json(os.path.join(folder, "bench.json"))
    runs = []
    for r in b["runs"]:
        rep = load_json(os.path.join(folder, r["dir"], "report.json"))
        ex = r.get("export_ms", 0.0)
        runs.append({"status": rep["status"], "wall_ms": rep["wall_ms"] + ex, "export_ms": ex,
                     "dir": r["dir"], "stages": {s["name"]: s for s in rep["stages"]}})
    return b, runs


def done_ms(run, stage):
    s = run["stages"].get(stage, {})
    return s["wall_ms"] if s.get("state") == "done" else None


def artifacts(folder, run):
    return os.path.join(folder, run["dir"], "artifacts")


def tensors(path, names=None):
    import refutil
    if not os.path.exists(path):
        return None
    t, _ = refutil.load_tensors(path)
    return {k: v for k, v in t.items() if names is None or k in names}


# ------------------------------------------------------------------------------ differences

def nn_mean(a, b, cap=200_000, seed=0):
    """Symmetric mean nearest-neighbour distance between point sets a, b ((n,3) arrays),
    each subsampled to at most cap points."""
    import numpy as np
    rng = np.random.default_rng(seed)
    a = a[rng.choice(len(a), cap, replace=False)] if len(a) > cap else a
    b = b[rng.choice(len(b), cap, replace=False)] if len(b) > cap else b
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    try:
        from scipy.spatial import cKDTree
        d1 = cKDTree(b).query(a)[0]
        d2 = cKDTree(a).query(b)[0]
    except ImportError:
        import torch
        ta, tb = torch.from_numpy(a).float(), torch.from_numpy(b).float()
        d1 = torch.cat([torch.cdist(x, tb).min(1).values for x in ta.split(4096)]).numpy()
        d2 = torch.cat([torch.cdist(x, ta).min(1).values for x in tb.split(4096)]).numpy()
    return float((d1.mean() + d2.mean()) / 2)


def voxel_iou(c1, c2):
    s1 = {tuple(r) for r in c1[:, 1:4].tolist()}
    s2 = {tuple(r) for r in c2[:, 1:4].tolist()}
    return len(s1 & s2) / max(1, len(s1 | s2))


def output_diff(a, b):
    """a, b: {'coords', 'xyz', 'vertices'} numpy arrays (missing keys skipped)."""
    d = {}
    if "coords_original" in a and "coords_original" in b:     # before prune and downsample
        d["occupied"] = [int(len(a["coords_original"])), int(len(b["coords_original"]))]
        d["occupied_iou"] = round(voxel_iou(a["coords_original"], b["coords_original"]), 4)
    if "coords" in a and "coords" in b:
        d["voxels"] = [int(len(a["coords"])), int(len(b["coords"]))]
        d["voxel_iou"] = round(voxel_iou(a["coords"], b["coords"]), 4)
    if "xyz" in a and "xyz" in b:
        d["gaussians"] = [int(len(a["xyz"])), int(len(b["xyz"]))]
        d["gaussian_nn_mean"] = nn_mean(a["xyz"], b["xyz"])
    if "vertices" in a and "vertices" in b:
        d["mesh_vertices"] = [int(len(a["vertices"])), int(len(b["vertices"]))]
        d["mesh_nn_mean"] = nn_mean(a["vertices"], b["vertices"])
    return d


def our_outputs(folder, run):
    art = artifacts(folder, run)
    out = {}
    t = tensors(os.path.join(art, "ss_decode.safetensors"), ["coords", "coords_original"])
    if t:
        out.update({k: v.numpy() for k, v in t.items()})
    t = tensors(os.path.join(art, "gs_decode.safetensors"), ["xyz"])
    if t:
        out["xyz"] = t["xyz"].float().numpy()
    t = tensors(os.path.join(art, "mesh_decode.safetensors"), ["vertices"])
    if t:
        out["vertices"] = t["vertices"].float().numpy()
    return out


def official_outputs(work, kind):
    t = tensors(os.path.join(work, f"official_{kind}.safetensors"))
    if not t:
        return {}
    names = {"coords": "coords", "coords_original": "coords_original", "xyz": "gs.xyz",
             "vertices": "mesh.vertices"}
    return {k: t[n].numpy() for k, n in names.items() if n in t}


# ------------------------------------------------------------------------------ tables

def fmt(x, spec=".2f", none="-"):
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return none
    return format(x, spec)


def stage_rows(bench, runs, flops, official, peak):
    """Per stage: the numbers of the table (dict)."""
    cold, warm = runs[0], runs[1] if len(runs) > 1 else runs[0]
    o_cold = o_warm = None
    if official:
        ks = [r for r in official["runs"] if r["kind"] in ("cold", "warm")]
        o_cold = ks[0]
        o_warm = next((r for r in ks if r["kind"] == "warm"), ks[0])
    rows = []
    for s in STAGES:
        w, c = warm["stages"].get(s), cold["stages"].get(s)
        f = flops.get(s)
        row = {"stage": s, "tflop": f / 1e12 if f else None,
               "floor_ms": f / (peak * 1e12) * 1e3 if f else None}
        if w and w.get("state") == "done":
            row.update(ours_wall_ms=w["wall_ms"], ours_run_ms=w["run_ms"],
                       ours_tflops=(f / (w["run_ms"] / 1e3) / 1e12) if f and w["run_ms"] else None,
                       ours_dev_gib=(w["device_bytes"] / GIB) if w.get("device_bytes") else None,
                       ours_arena_gib=w["peak_bytes"] / GIB)
        if c and c.get("state") == "done":
            row.update(ours_cold_wall_ms=c["wall_ms"], ours_load_ms=c["load_ms"],
                       ours_cold_dev_gib=(c["device_bytes"] / GIB) if c.get("device_bytes")
                       else None,
                       load_s_per_gb=(c["load_ms"] / 1e3) / (2 * PARAMS[s] / 1e9))
        if o_warm:
            st = o_warm["stages"]
            t = st.get(s, {}).get("s")
            if s == "depth" and t is not None:
                t += st.get("preprocess", {}).get("s", 0.0)
            peak_b = max([st.get(k, {}).get("torch_peak", 0) for k in
                          ([s, "preprocess"] if s == "depth" else [s])])
            row.update(off_warm_ms=t * 1e3 if t is not None else None,
                       off_tflops=(f / t / 1e12) if f and t else None,
                       off_torch_gib=peak_b / GIB if peak_b else None,
                       off_load_s=official.get("load_s", {}).get(s))
            if row.get("ours_wall_ms") and t:
                row["speedup"] = t * 1e3 / row["ours_wall_ms"]
        rows.append(row)
    return rows


def totals(bench, runs, official, flops, peak):
    cold, warm = runs[0], runs[1] if len(runs) > 1 else runs[0]
    t = {"ours_cold_s": (bench.get("start_ms", 0) + cold["wall_ms"]) / 1e3,
         "ours_warm_s": warm["wall_ms"] / 1e3,
         "ours_export_ms": warm.get("export_ms"),
         # the job's wall time outside the stages' turns (set-up, between turns, the end)
         "ours_between_ms": warm["wall_ms"] - (warm.get("export_ms") or 0.0) -
                            sum(s["wall_ms"] for s in warm["stages"].values()
                                if s.get("state") == "done"),
         "tflop": sum(flops.values()) / 1e12,
         "floor_s": sum(flops.values()) / (peak * 1e12)}
    devs = [s.get("device_bytes") or 0 for r in runs for s in r["stages"].values()]
    t["ours_max_stage_dev_gib"] = max(devs) / GIB if devs else None
    if official:
        ks = [r for r in official["runs"] if r["kind"] in ("cold", "warm")]
        o_cold = ks[0]
        o_warm = next((r for r in ks if r["kind"] == "warm"), ks[0])
        t["official_load_s"] = sum(official.get("load_s", {}).values())
        t["official_cold_s"] = t["official_load_s"] + o_cold["total_s"]
        t["official_warm_s"] = o_warm["total_s"]
        t["official_export_ms"] = o_warm["stages"].get("export", {}).get("s", 0.0) * 1e3
        t["official_warm_no_export_s"] = o_warm["total_s"] - t["official_export_ms"] / 1e3
        t["official_driver_peak_gib"] = (official.get("driver_peak_mib") or float("nan")) / 1024
        t["speedup_warm"] = t["official_warm_no_export_s"] / t["ours_warm_s"]
        t["speedup_cold"] = t["official_cold_s"] / t["ours_cold_s"]
    if bench.get("precision") == "fp32":   # issue 16: --precision fp32 not slower than official
        t["targets"] = {
            "fp32 warm not slower than official fp32": (t.get("speedup_warm", 0) >= 1)
            if official else None,
            "every stage not slower than official fp32": None,   # filled in by main
        }
        return t
    t["targets"] = {
        "warm >= 4x official": (t.get("speedup_warm", 0) >= 4) if official else None,
        "warm < 4 s": t["ours_warm_s"] < 4,
        "cold < 2x warm": t["ours_cold_s"] < 2 * t["ours_warm_s"],
        "every stage < 3 GiB (driver)": (t["ours_max_stage_dev_gib"] or 0) < 3
        if any(devs) else None,
    }
    return t


def variant_rows(base, other, cold=False):
    """Per stage: our wall ms (the warm run, or with cold the first one) and driver GiB in
    base and other (runs lists)."""
    k = 0 if cold else 1
    b = base[k] if len(base) > k else base[0]
    o = other[k] if len(other) > k else other[0]
    rows = []
    for s in STAGES:
        x, y = b["stages"].get(s, {}), o["stages"].get(s, {})
        if x.get("state") != "done" or y.get("state") != "done":
            continue
        rows.append((s, x["wall_ms"], y["wall_ms"], (x.get("device_bytes") or 0) / GIB,
                     (y.get("device_bytes") or 0) / GIB))
    return rows, b["wall_ms"], o["wall_ms"]


def variant_markdown(label, vr, cold=False):
    rows, tb, to = vr
    run = "cold" if cold else "warm"
    L = ["", f"Lever A/B, default vs {label} ({run} run):", "",
         f"| stage | default {run} ms | {label} {run} ms | change | default GiB | {label} GiB |",
         "|---|---|---|---|---|---|"]
    for s, a, b, ga, gb in rows:
        L.append(f"| {s} | {a:.0f} | {b:.0f} | {(b - a) / a * 100 if a else 0:+.1f}% | "
                 f"{ga:.2f} | {gb:.2f} |")
    L.append(f"| total | {tb:.0f} | {to:.0f} | {(to - tb) / tb * 100 if tb else 0:+.1f}% | | |")
    return "\n".join(L)


def markdown(rows, tot, meta, fast, diffs):
    L = []
    L.append(f"Whole pipeline, {meta['gpu']}, image {meta['image']} ({meta['image_hw'][1]}x"
             f"{meta['image_hw'][0]}), {meta['voxels']} voxels, precision {meta['precision']}; "
             f"floors at {meta['peak']:.0f} TFLOP/s dense {meta['precision']}.")
    L.append("")
    L.append("| stage | TFLOP | compute floor ms | official warm ms | official TFLOP/s | "
             "ours warm ms (run ms) | ours TFLOP/s | speed-up | official torch peak GiB | "
             "ours device GiB (driver) | ours load s (s per GB fp16) | official load s |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        L.append(
            f"| {r['stage']} | {fmt(r['tflop'], '.3f')} | {fmt(r['floor_ms'], '.1f')} | "
            f"{fmt(r.get('off_warm_ms'), '.0f')} | {fmt(r.get('off_tflops'), '.0f')} | "
            f"{fmt(r.get('ours_wall_ms'), '.0f')} ({fmt(r.get('ours_run_ms'), '.0f')}) | "
            f"{fmt(r.get('ours_tflops'), '.0f')} | {fmt(r.get('speedup'), '.2f')}x | "
            f"{fmt(r.get('off_torch_gib'))} | {fmt(r.get('ours_dev_gib'))} | "
            f"{fmt((r.get('ours_load_ms') or 0) / 1e3 if r.get('ours_load_ms') is not None else None)}"
            f" ({fmt(r.get('load_s_per_gb'))}) | {fmt(r.get('off_load_s'))} |")
    L.append(f"| between turns | | | | | {fmt(tot.get('ours_between_ms'), '.0f')} | | | | | | |")
    L.append(f"| export | | | {fmt(tot.get('official_export_ms'), '.0f')} (save_ply only) | | "
             f"{fmt(tot.get('ours_export_ms'), '.0f')} | | | | | | |")
    L.append(f"| **total** | {tot['tflop']:.1f} | {tot['floor_s'] * 1e3:.0f} | "
             f"{fmt(tot.get('official_warm_no_export_s', float('nan')) * 1e3, '.0f')} | | "
             f"{tot['ours_warm_s'] * 1e3:.0f} | | {fmt(tot.get('speedup_warm'), '.2f')}x | | "
             f"max {fmt(tot['ours_max_stage_dev_gib'])} | | "
             f"{fmt(tot.get('official_load_s'))} |")
    L.append("")
    L.append(f"End to end: ours warm {tot['ours_warm_s']:.2f} s (the export step included), "
             f"cold {tot['ours_cold_s']:.2f} s (process start + loading + run 1); official warm "
             f"{fmt(tot.get('official_warm_no_export_s'))} s (decoders' outputs on the host, no "
             f"file export), cold {fmt(tot.get('official_cold_s'))} s (loading "
             f"{fmt(tot.get('official_load_s'))} s + run 1); official process driver peak "
             f"{fmt(tot.get('official_driver_peak_gib'))} GiB. Speed-up warm "
             f"{fmt(tot.get('speedup_warm'))}x, cold {fmt(tot.get('speedup_cold'))}x.")
    L.append("Targets (issue 16): " + ", ".join(
        f"{k}: {'met' if v else 'NOT met' if v is not None else 'n/a'}"
        for k, v in tot["targets"].items()) + ".")
    if fast:
        L.append("")
        L.append(f"--preset fast (ss_flow shortcut 4 steps, slat_flow 4 steps, no CFG): warm "
                 f"{fast['ours_warm_s']:.2f} s ({tot['ours_warm_s'] / fast['ours_warm_s']:.2f}x "
                 f"the default), cold {fast['ours_cold_s']:.2f} s; ss_flow "
                 f"{fmt(fast.get('ss_flow_ms'), '.0f')} ms, slat_flow "
                 f"{fmt(fast.get('slat_flow_ms'), '.0f')} ms" +
                 (f"; official fast mode warm {fast['official_s']:.2f} s" if fast.get("official_s")
                  else "") + ".")
    for name, d in diffs.items():
        if d:
            L.append(f"Output difference, {name}: " + ", ".join(
                f"{k} {v if not isinstance(v, float) else format(v, '.4g')}" for k, v in d.items()))
    return "\n".join(L)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", required=True, help="sam3d bench --out folder (default preset)")
    ap.add_argument("--fast", help="sam3d bench --out folder of --preset fast")
    ap.add_argument("--official", help="bench_official.py's official.json")
    ap.add_argument("--official-work", help="bench_official.py's --work (its output arrays)")
    ap.add_argument("--gpu", default="", help="the GPU's name for the table's title")
    ap.add_argument("--peak-tflops", type=float, default=cost_model.PEAK_TFLOPS)
    ap.add_argument("--variant-cold", action="append", default=[], metavar="LABEL=DIR",
                    help="the same as --variant for a lever of the cold run (run 1): the "
                    "warm-up after loading ahead")
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=DIR",
                    help="another sam3d bench folder of the default preset with one lever "
                         "changed: its warm per-stage times and memory next to --ours")
    ap.add_argument("--out", default=None, help="write OUT.md and OUT.json")
    args = ap.parse_args(argv)

    bench, runs = ours_runs(args.ours)
    warm = runs[1] if len(runs) > 1 else runs[0]
    coords = tensors(os.path.join(artifacts(args.ours, warm), "ss_decode.safetensors"),
                     ["coords"])
    if coords is None:
        raise SystemExit(f"error: no ss_decode artifact in {artifacts(args.ours, warm)}")
    hw = tuple(bench["image_hw"])
    flops, geom = cost_model.pipeline_flops(coords["coords"].numpy(), hw, bench["preset"])
    official = load_json(args.official) if args.official else None
    rows = stage_rows(bench, runs, flops, official, args.peak_tflops)
    tot = totals(bench, runs, official, flops, args.peak_tflops)
    if "every stage not slower than official fp32" in tot["targets"] and official:
        sp = [r["speedup"] for r in rows if r.get("speedup") is not None]
        tot["targets"]["every stage not slower than official fp32"] = bool(sp) and min(sp) >= 1
    meta = {"gpu": args.gpu or (official or {}).get("gpu", "?"), "image": bench["image"],
            "image_hw": bench["image_hw"], "voxels": geom["N"], "precision": bench["precision"],
            "peak": args.peak_tflops}
    diffs, fast = {}, None
    ours_out = our_outputs(args.ours, warm)
    if args.fast:
        fb, fr = ours_runs(args.fast)
        fw = fr[1] if len(fr) > 1 else fr[0]
        fast = {"ours_warm_s": fw["wall_ms"] / 1e3,
                "ours_cold_s": (fb.get("start_ms", 0) + fr[0]["wall_ms"]) / 1e3,
                "ss_flow_ms": done_ms(fw, "ss_flow"), "slat_flow_ms": done_ms(fw, "slat_flow")}
        ofast = [r for r in (official or {}).get("runs", []) if r["kind"] == "fast"]
        if ofast:
            fast["official_s"] = ofast[0]["total_s"] - ofast[0]["stages"].get("export", {}).get(
                "s", 0.0)
        diffs["ours --preset fast vs ours default (same seed)"] = output_diff(
            ours_out, our_outputs(args.fast, fw))
    if args.official_work:
        diffs["ours vs official, default (same weights and noise)"] = output_diff(
            ours_out, official_outputs(args.official_work, "warm"))
        if args.fast:
            diffs["official fast vs official default"] = output_diff(
                official_outputs(args.official_work, "warm"),
                official_outputs(args.official_work, "fast"))
    md = markdown(rows, tot, meta, fast, diffs)
    variants = {}
    for v, cold in [(v, False) for v in args.variant] + [(v, True) for v in args.variant_cold]:
        label, _, folder = v.partition("=")
        if os.path.exists(os.path.join(folder, "bench.json")):
            variants[label] = variant_rows(runs, ours_runs(folder)[1], cold)
            md += "\n" + variant_markdown(label, variants[label], cold)
    print(md)
    print(f"\ngeometry (cost model inputs): {geom}")
    if args.out:
        with open(args.out + ".md", "w") as f:
            f.write(md + "\n")
        with open(args.out + ".json", "w") as f:
            json.dump({"meta": meta, "geometry": geom, "flops": flops, "rows": rows,
                       "totals": tot, "fast": fast, "diffs": diffs, "variants": variants},
                      f, indent=1,
                      default=lambda x: None)


if __name__ == "__main__":
    main()
