#!/usr/bin/env python3
"""Check an end-to-end chain written by dump_e2e_chain.py, artifact by artifact:

 1. the chain itself: every stage's input is the previous stage's output (the cond tokens the
    flows read, the SS shape latent the decoder reads, the coords the SLAT flow and decoders
    read, the de-normalised SLAT features the decoders read), with the shapes the pipeline
    fixes (shape latent (1,4096,8), logits (1,1,64,64,64), 32 Gaussians per voxel, ...);
 2. each of our stages whose executable exists in --bin, run with --once on that stage's inputs
    from the chain and the official checkpoint files the chain wrote (--weights), compared with
    the chain's output of that stage (tools/ref/compare.py tolerances for --precision).
Stages without an executable yet are listed as not checked, never counted as passing.

  python3 tools/ref/dump_e2e_chain.py --size full --device cuda --out /tmp/e2e \
      --weights-out /tmp/e2e/weights
  python3 tools/ref/check_e2e_chain.py /tmp/e2e --weights /tmp/e2e/weights --bin build \
      --device cuda --precision fp16

Exit status: 0 when the chain is consistent and every stage that ran matches; 1 otherwise;
2 on bad arguments.
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402
import refutil  # noqa: E402

COND_KEYS = ["image", "rgb_image", "mask", "rgb_image_mask", "pointmap", "rgb_pointmap"]

LATENTS = ["6drotation_normalized", "scale", "shape", "translation", "translation_scale"]


def coords_compare(ours, ref, spec):
    """Integer outputs of the SS decoder: the voxel sets (rows (b,x,y,z)) may differ where an fp16
    logit sits at the 0 threshold; allowed: 0.1% of the reference's voxels (as issue 4's mask)."""
    ok = True
    for name in ("coords_original", "coords"):
        if name == "coords" and ref[name].shape[0] == spec.get("max_voxels"):
            print("note coords: the reference kept a random max_coords subset (randperm, "
                  "spec/generators.md §7.3): not compared")
            continue
        if name not in ours:
            print(f"FAIL {name} missing from our output")
            ok = False
            continue
        a = {tuple(r) for r in ours[name].tolist()}
        b = {tuple(r) for r in ref[name].tolist()}
        diff = len(a ^ b)
        lim = 0 if spec["exact"] else 1e-3 * len(b)
        good = diff <= lim
        print(f"{'ok  ' if good else 'FAIL'} {name}: {len(a)} voxels vs {len(b)}, {diff} differ "
              f"(<= {lim:g})")
        ok = ok and good
    fa, fb = int(ours.get("downsample_factor", [-1])[0]), int(ref["downsample_factor"][0])
    print(f"{'ok  ' if fa == fb else 'FAIL'} downsample_factor {fa} vs {fb}")
    return ok and fa == fb


def mesh_compare_spec(ours, ref, spec):
    """The mesh decoder: on the CPU in fp32 the same extraction (equal counts, the same faces,
    vertices within 1e-5, colours within 1e-3, the bound tests/chain_compare.py explains: the
    colour interpolation amplifies 1e-7 input differences); else issue 12's mesh measures (tools/ref/mesh_compare.py:
    counts within 1%, Chamfer <= 1e-3 of the diagonal, colours within 2/255)."""
    import mesh_compare
    m = mesh_compare.compare(ours, ref)
    ok = m["ok"]
    if spec["exact"]:
        ok = ok and m.get("exact_max_position", 1) <= 1e-5 and m.get("exact_max_colour", 1) <= 1e-3
    print(f"{'ok  ' if ok else 'FAIL'} mesh: {mesh_compare.summary(m)}")
    return ok


# Our stage per chain artifact: executable, weights file, input builder (chain artifact ->
# our input tensors), and either the chain-name -> our-name map of the compared outputs, or a
# custom comparison.
STAGES = [
    {"chain": "cond_ss", "exe": "sam3d-cond", "weights": "ss_generator.ckpt",
     "inputs": lambda a: {k: a[k] for k in COND_KEYS if k in a},
     "map": {"cond": "cond_ss"}, "final": "cond"},
    {"chain": "cond_slat", "exe": "sam3d-cond", "weights": "slat_generator.ckpt",
     "inputs": lambda a: {k: a[k] for k in COND_KEYS[:4]},
     "map": {"cond": "cond_slat"}, "final": "cond"},
    {"chain": "ss_flow", "exe": "sam3d-ss-flow", "weights": "ss_generator.ckpt",
     "inputs": lambda a: dict([("cond_ss", a["cond"])]
                              + [(f"noise.{k}", a[f"noise.{k}"]) for k in LATENTS]),
     "map": {f"final.{k}": ("shape_latent" if k == "shape" else k) for k in LATENTS},
     "final": "final.shape"},
    {"chain": "ss_decode", "exe": "sam3d-ss-decode", "weights": "ss_decoder.ckpt",
     "inputs": lambda a: {"shape_latent": a["shape_latent"]},
     "params": ["keep_logits=true"], "map": {"logits": "logits"}, "final": "logits",
     "custom": coords_compare},
    {"chain": "slat_flow", "exe": "sam3d-slat-flow", "weights": "slat_generator.ckpt",
     "inputs": lambda a: {"coords": a["coords"], "cond_slat": a["cond"], "noise": a["noise"]},
     "steps": "slat_steps", "map": {"slat_feats": "feats"}, "final": "slat_feats",
     "table": [(r".*", 1e-4, 2e-2, "issue 10: the whole 38-evaluation sampler from the same "
                "noise, <= 2e-2 relative L2 in fp16; fp32: summation order only")]},
    {"chain": "gs_decode", "exe": "sam3d-gs-decode", "weights": "slat_decoder_gs.ckpt",
     "inputs": lambda a: {"coords": a["coords"], "feats": a["feats"]},
     "map": {f"ply.{k}": k for k in ("xyz", "f_dc", "opacity", "scale", "rotation")},
     "final": "ply.xyz"},
    {"chain": "mesh_decode", "exe": "sam3d-mesh-decode", "weights": "slat_decoder_mesh.ckpt",
     "inputs": lambda a: {"coords": a["coords"], "feats": a["feats"]},
     "map": {}, "custom": mesh_compare_spec},
]
CHAIN_FILES = ["cond_ss", "cond_slat", "ss_flow", "ss_decode", "slat_flow", "gs_decode",
               "mesh_decode"]
LATER = [n for n in CHAIN_FILES if n not in {s["chain"] for s in STAGES}]


def load(d, name):
    p = os.path.join(d, name + ".safetensors")
    return refutil.load_tensors(p)[0] if os.path.exists(p) else None


def chain_consistency(d):
    """Part 1; returns a list of (what, ok)."""
    import torch
    A = {n: load(d, n) for n in CHAIN_FILES}
    missing = [n for n, v in A.items() if v is None]
    if missing:
        return [(f"chain files present ({', '.join(missing)} missing)", False)]
    cs, cl, sf, sd, sl, gs, me = (A[n] for n in ("cond_ss", "cond_slat", "ss_flow", "ss_decode",
                                                 "slat_flow", "gs_decode", "mesh_decode"))
    n = sd["coords"].shape[0]
    return [
        ("ss_flow reads cond_ss's tokens", torch.equal(sf["cond"], cs["cond"])),
        ("slat_flow reads cond_slat's tokens", torch.equal(sl["cond"], cl["cond"])),
        ("ss_decode reads ss_flow's shape latent (1,4096,8)",
         torch.equal(sd["shape_latent"], sf["final.shape"])
         and tuple(sd["shape_latent"].shape) == (1, 4096, 8)),
        ("ss_decode logits (1,1,64,64,64)", tuple(sd["logits"].shape) == (1, 1, 64, 64, 64)),
        ("coords_original = argwhere(logits > 0)",
         sd["coords_original"].shape[0] == int((sd["logits"] > 0).sum())),
        (f"slat_flow reads ss_decode's {n} coords", torch.equal(sl["coords"], sd["coords"])),
        ("decoders read the de-normalised SLAT",
         torch.equal(gs["feats"], sl["slat_feats"]) and torch.equal(me["feats"], sl["slat_feats"])
         and torch.equal(gs["coords"], sd["coords"]) and torch.equal(me["coords"], sd["coords"])),
        ("32 Gaussians per voxel", gs["_xyz"].shape[0] == 32 * n),
        ("mesh faces index existing vertices",
         me["faces"].shape[0] > 0 and int(me["faces"].max()) < me["vertices"].shape[0]
         and int(me["faces"].min()) >= 0),
        ("every tensor finite (point maps: NaN only where invalid, as MoGe writes them)",
         all(bool(torch.isfinite(t).all()) for a in A.values() for k, t in a.items()
             if t.is_floating_point() and "pointmap" not in k)),
    ]


def run_stage(args, spec, art, work):
    """Part 2 for one stage; returns (ok, parity row or reason)."""
    exe = os.path.join(args.bin, spec["exe"])
    w = os.path.join(args.weights, spec["weights"])
    if not os.access(exe, os.X_OK):
        return None, f"{spec['exe']} not in {args.bin}"
    if not os.path.exists(w):
        return False, f"{w} missing (HINT: dump_e2e_chain.py --weights-out)"
    in_dir, out_dir = os.path.join(work, spec["chain"], "in"), os.path.join(work, spec["chain"], "out")
    os.makedirs(in_dir, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    refutil.save_tensors(os.path.join(in_dir, "input.safetensors"), spec["inputs"](art))
    cmd = [exe, "--weights", w, "--device", "cpu" if args.device == "cpu" else "cuda:0",
           "--once", in_dir, out_dir]
    if args.precision == "fp32":
        cmd += ["--precision", "fp32"]
    for p in spec.get("params", []):
        cmd += ["--param", p]
    if "steps" in spec and args.meta.get(spec["steps"]):        # the chain's sampler steps
        cmd += ["--param", f"steps={int(args.meta[spec['steps']])}"]
    if spec["chain"] == "ss_decode" and args.meta.get("max_voxels"):
        spec["max_voxels"] = int(args.meta["max_voxels"])
        cmd += ["--param", f"max_coords={spec['max_voxels']}"]
    print("running:", " ".join(cmd), flush=True)
    t = time.perf_counter()
    r = subprocess.run(cmd)
    print(f"{spec['exe']}: exit {r.returncode}, {time.perf_counter() - t:.2f} s wall", flush=True)
    if r.returncode != 0:
        return False, f"{spec['exe']} exited {r.returncode}"
    outs = [f for f in os.listdir(out_dir) if f.endswith(".safetensors")]
    if len(outs) != 1:
        return False, f"{spec['exe']} wrote {len(outs)} safetensors files to {out_dir}, expected 1"
    ours = refutil.load_tensors(os.path.join(out_dir, outs[0]))[0]
    ref = refutil.OrderedDict((k, art[k]) for k in spec["map"] if k in art)
    ok, rows = compare.run_compare(ours, ref, args.precision, spec["map"], require_all=True,
                                   table=spec.get("table", compare.TOLERANCES))
    if "custom" in spec:
        spec["exact"] = args.precision == "fp32" and args.device == "cpu"
        ok = spec["custom"](ours, art, spec) and ok
    return ok, compare.parity_row(f"e2e {spec['chain']}", args.precision, args.size, rows,
                                  spec.get("final"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chain", help="the --out folder of dump_e2e_chain.py")
    ap.add_argument("--weights", help="its --weights-out folder (default CHAIN/weights)")
    ap.add_argument("--bin", default="build", help="our build folder (sam3d-<stage>)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    ap.add_argument("--precision", choices=["fp16", "fp32"], default="fp16")
    ap.add_argument("--size", default=None, help="size label of the rows (default: meta.json)")
    ap.add_argument("--work", default=None, help="scratch folder (default CHAIN/ours)")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.chain):
        print(f"error: chain folder {args.chain} not found (HINT: run tools/ref/dump_e2e_chain.py "
              f"--out {args.chain} first)", file=sys.stderr)
        return 2
    args.weights = args.weights or os.path.join(args.chain, "weights")
    work = args.work or os.path.join(args.chain, "ours")
    import json
    try:
        with open(os.path.join(args.chain, "meta.json")) as f:
            args.meta = json.load(f)
    except OSError:
        args.meta = {}
    if args.size is None:
        args.size = args.meta.get("size", "?")
    fails = 0
    print("== the chain's artifacts connect")
    for what, ok in chain_consistency(args.chain):
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        fails += not ok
    print(f"\n== our stages on the chain's inputs ({args.precision}, {args.device})")
    rows, skipped = [], []
    for spec in STAGES:
        art = load(args.chain, spec["chain"])
        if art is None:
            print(f"FAIL {spec['chain']}: no {spec['chain']}.safetensors in {args.chain}")
            fails += 1
            continue
        ok, row = run_stage(args, spec, art, work)
        if ok is None:
            skipped.append(f"{spec['chain']} ({row})")
            continue
        print(f"{'ok  ' if ok else 'FAIL'} {spec['chain']}: {row}", flush=True)
        fails += not ok
        if ok:
            rows.append(row)
    skipped += [f"{s} (no stage yet)" for s in LATER]
    print("\nnot checked against our code:", ", ".join(skipped))
    print("\nparity rows (docs/parity.md):")
    print("\n".join(rows) or "(none)")
    print(f"\n{'PASS' if not fails else f'FAIL ({fails})'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
