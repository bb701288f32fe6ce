"""Helpers shared by the generator/decoder golden-reference scripts (dump_ss_flow.py,
dump_ss_decoder.py, dump_slat_flow.py, dump_gs_decoder.py, dump_mesh_decoder.py,
dump_e2e_chain.py). Development only; builds on refutil.py.

Public API:
  setup_env(device)                 env vars the official code reads at import time (attention
                                    and sparse backends); call before importing sam3d_objects.
  load_node(yaml, *keys) -> dict    a resolved plain-dict sub-tree of a released yaml.
  instantiate(cfg)                  hydra.utils.instantiate, module in eval mode.
  load_official(model, ckpt, prefix, key)
                                    reload a freshly built module through the official
                                    loader (sam3d_objects.model.io.load_model_from_checkpoint,
                                    strict), returning (model, loader-name).
  shell_coords(res, n_target, seed) -> (N,4) int32
                                    a synthetic, pruned object shell (lexicographic order),
                                    like the coords the SS stage hands to the SLAT stages.
  sparse_capture(module, names)     context manager: forward hooks that record dense tensors
                                    and SparseTensor outputs (as '<name>' feats and
                                    '<name>.coords' the first time each coord set is seen).
  official_function(s3d, relpath, name)
                                    one function (or "Class.method" static method) from an
                                    official file, without importing the file's module (and
                                    its heavy imports).
  spconv_cpu_mode(model, device)    lets spconv convs with bias run on the CPU (see below).
  cpu_cuda_shim()                   context: Tensor.cuda() is the identity without CUDA.
  write_fixture_readme(dir, title, command, notes)
                                    README.md listing every file and tensor of a fixture.
  spconv_selftest()                 checks spconv SubMConv3d against a dense Conv3d (weight
                                    layout KRSC [Cout,kx,ky,kz,Cin], offsets in x,y,z order);
                                    `python3 tools/ref/refutil_sparse.py --selftest`.
"""
import contextlib
import os
import sys
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import refutil  # noqa: E402


def setup_env(device="cpu"):
    """The official code picks backends from env vars at import time:
    S3D:sam3d_objects/__init__.py:5-6 (LIDRA_SKIP_INIT skips sam3d_objects.init),
    TD/modules/attention/__init__.py:9-30 (ATTN_BACKEND, default sdpa),
    TD/modules/sparse/__init__.py:11-40 (SPARSE_BACKEND spconv, SPARSE_ATTN_BACKEND sdpa).
    xformers/flash-attn are not installed here, so default to the sdpa paths (the official
    fallback) unless the caller set something else (the GPU run may choose flash_attn)."""
    os.environ.setdefault("LIDRA_SKIP_INIT", "1")
    os.environ.setdefault("ATTN_BACKEND", "sdpa")
    os.environ.setdefault("SPARSE_ATTN_BACKEND", "sdpa")
    os.environ.setdefault("SPARSE_BACKEND", "spconv")


def load_node(path, *keys):
    from omegaconf import OmegaConf
    cfg = OmegaConf.load(path)
    for k in keys:
        cfg = cfg[k]
    return OmegaConf.to_container(cfg, resolve=True)


def instantiate(cfg):
    import hydra.utils
    m = hydra.utils.instantiate(cfg)
    return m.eval()


def load_official(model, ckpt_path, prefix=None, state_dict_key="state_dict"):
    """Load ckpt_path into `model` as the pipeline does (PL/inference_pipeline.py:229-259):
    load_model_from_checkpoint(strict=True, state_dict_key, prefix filter). Falls back to the
    same steps inline if lightning is missing."""
    import torch
    try:
        from sam3d_objects.model.io import (load_model_from_checkpoint,
                                            filter_and_remove_prefix_state_dict_fn)
        fn = filter_and_remove_prefix_state_dict_fn(prefix) if prefix else None
        model = load_model_from_checkpoint(model, ckpt_path, strict=True, device="cpu",
                                           freeze=True, eval=True,
                                           state_dict_key=state_dict_key, state_dict_fn=fn)
        return model, "sam3d_objects.model.io.load_model_from_checkpoint"
    except ImportError as e:
        print(f"note: official loader unavailable ({e}); loading inline", flush=True)
        sd = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state_dict_key:
            sd = sd[state_dict_key]
        if prefix:
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        model.load_state_dict(sd, strict=True)
        return model.eval(), "inline strict load_state_dict"


def shell_coords(res, n_target, seed, batch=0):
    """A deterministic blobby solid (union of 3 ellipsoids) at res^3, with interior voxels
    removed exactly as prune_sparse_structure(max_neighbor_axes_dist=1) does (keep voxels with
    < 27 occupied cells in their 3x3x3 zero-padded neighbourhood; PL/inference_utils.py:367-409),
    in argwhere (lexicographic x,y,z) order. The blob is scaled until the shell has about
    n_target voxels. Returns (N,4) int32 (b, x, y, z)."""
    import torch
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(seed)
    centers = 0.5 + 0.12 * (torch.rand(3, 3, generator=g) - 0.5)
    radii = 0.6 + 0.4 * torch.rand(3, 3, generator=g)
    ax = (torch.arange(res, dtype=torch.float64) + 0.5) / res
    X, Y, Z = torch.meshgrid(ax, ax, ax, indexing="ij")
    P = torch.stack([X, Y, Z], -1)
    best = None
    for s in [x / 100 for x in range(3, 48)]:
        occ = torch.zeros(res, res, res, dtype=torch.bool)
        for c, r in zip(centers, radii):
            d = (((P - c.double()) / (s * r.double())) ** 2).sum(-1)
            occ |= d <= 1.0
        cnt = F.conv3d(occ.double()[None, None], torch.ones(1, 1, 3, 3, 3, dtype=torch.float64),
                       padding=1)[0, 0]
        shell = occ & (cnt < 27)
        n = int(shell.sum())
        if best is None or abs(n - n_target) < abs(best[0] - n_target):
            best = (n, shell)
        if n > n_target:
            break
    xyz = torch.argwhere(best[1]).int()
    b = torch.full((xyz.shape[0], 1), batch, dtype=torch.int32)
    return torch.cat([b, xyz], 1).contiguous()


def spconv_cpu_mode(model, device):
    """spconv 2.3 on the CPU refuses a fused bias in inference mode ("cpu don't support act
    and bias", spconv/pytorch/ops.py indice_conv) and adds the bias separately in training
    mode (spconv/pytorch/conv.py:176-177). These nets hold no dropout/batch-norm inside the
    spconv modules, so on the CPU we flip only the spconv conv modules to training mode: same
    math, bias added after the gather-GEMM-scatter. No-op on CUDA. Returns the count."""
    import torch
    if torch.device(device).type != "cpu":
        return 0
    # spconv's CPU indice-pair generation races when OpenMP runs it on several threads: 3 of
    # 60 random SubMConv3d checks gave wrong outputs on this 2-core machine, 0 of 260 with one
    # thread (spconv 2.3.8). One intra-op thread makes the CPU fixtures reproducible.
    torch.set_num_threads(1)
    n = 0
    for m in model.modules():
        if type(m).__module__.startswith("spconv."):
            m.training = True
            n += 1
    return n


def _is_sparse(v):
    return hasattr(v, "feats") and hasattr(v, "coords")


@contextlib.contextmanager
def sparse_capture(module, names, prefix="", rename=None):
    """Forward hooks on `names` (exact module names). Dense tensor outputs are recorded as
    refutil.ActivationLog does; SparseTensor outputs record their feats under the name and,
    the first time a coordinate set (by shape+content) appears, '<name>.coords' (int32).
    rename: optional dict module-name -> recorded name."""
    import torch
    log = refutil.ActivationLog()
    seen = []
    handles = []
    mods = dict(module.named_modules())
    missing = [n for n in names if n not in mods]
    if missing:
        raise KeyError(f"sparse_capture: no module named {missing}")

    def record(name, out):
        if _is_sparse(out):
            log.add(name, out.feats)
            c = out.coords
            if not any(s.shape == c.shape and torch.equal(s, c) for s in seen):
                seen.append(c.detach().clone())
                log.add(name + ".coords", c.int())
        elif isinstance(out, (list, tuple)) and out and _is_sparse(out[0]):
            record(name, out[0])
        else:
            log.add(name, out)

    for n in names:
        rec = prefix + (rename.get(n, n) if rename else n)
        handles.append(mods[n].register_forward_hook(
            lambda m, a, o, _n=rec: record(_n, o)))
    try:
        yield log
    finally:
        for h in handles:
            h.remove()


def spconv_selftest(seed=0, verbose=True):
    """spconv SubMConv3d (the official SparseConv3d backend, TD/modules/sparse/conv/
    conv_spconv.py:29-38) against a dense F.conv3d(padding=1) on the same sites: the weight
    is stored KRSC [Cout, kx, ky, kz, Cin] and out[p] = b + sum_r W[:, r] . in[p + r - 1].
    Returns the max abs error (raises if > 1e-4)."""
    import torch
    import torch.nn.functional as F
    import spconv.pytorch as spconv
    torch.set_num_threads(1)        # see spconv_cpu_mode: the CPU pair generation races
    torch.manual_seed(seed)
    R = 7
    coords = torch.unique(torch.randint(0, R, (120, 3)), dim=0).int()
    coords = torch.cat([torch.zeros(len(coords), 1, dtype=torch.int32), coords], 1)
    cin, cout = 5, 6
    f = torch.randn(len(coords), cin)
    conv = spconv.SubMConv3d(cin, cout, 3, bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.randn_like(conv.weight))
        conv.bias.copy_(torch.randn_like(conv.bias))
        y = conv(spconv.SparseConvTensor(f, coords, [R, R, R], 1))
    assert tuple(conv.weight.shape) == (cout, 3, 3, 3, cin), conv.weight.shape
    assert torch.equal(y.indices, coords), "SubM output sites differ from input sites"
    x, yy, z = (coords[:, i].long() for i in (1, 2, 3))
    dense = torch.zeros(1, cin, R, R, R)
    dense[0, :, x, yy, z] = f.t()
    ref = F.conv3d(dense, conv.weight.detach().permute(0, 4, 1, 2, 3), conv.bias.detach(),
                   padding=1)[0][:, x, yy, z].t()
    err = (y.features - ref).abs().max().item()
    if verbose:
        print(f"spconv {spconv.__name__} SubMConv3d vs dense conv3d (KRSC weight): "
              f"{len(coords)} sites, max abs err {err:.3g}")
    if err > 1e-4:
        raise SystemExit(f"error: spconv layout check failed (max err {err})")
    return err


def official_function(s3d, relpath, name, extra_globals=None):
    """Load ONE top-level function from an official source file without importing its module
    (e.g. PL/inference_utils.py imports open3d, trimesh and pytorch3d at module level, none
    of which the functions we need use). The function's own source is compiled unchanged
    with the file's path as its filename, so tracebacks point into the checkout.
    name "Class.method" takes a static method out of a class (its @staticmethod dropped).
    extra_globals: the module-level names the function uses (beyond torch and np)."""
    import ast
    import numpy as np
    import torch
    path = os.path.join(s3d, relpath)
    with open(path) as f:
        src = f.read()
    body, fname = ast.parse(src).body, name
    if "." in name:                 # "Class.method": a method, compiled as a plain function
        cls, fname = name.split(".", 1)
        body = [n for c in body if isinstance(c, ast.ClassDef) and c.name == cls for n in c.body]
    for node in body:
        if isinstance(node, ast.FunctionDef) and node.name == fname:
            node.decorator_list = [d for d in node.decorator_list
                                   if not (isinstance(d, ast.Name) and d.id == "staticmethod")]
            mod = ast.Module(body=[node], type_ignores=[])
            ns = {"torch": torch, "np": np, **(extra_globals or {})}
            exec(compile(mod, path, "exec"), ns)
            return ns[fname]
    raise KeyError(f"{name} not found in {path}")


@contextlib.contextmanager
def cpu_cuda_shim():
    """Gaussian.setup_functions (TD/representations/gaussian/gaussian_model.py:59-67) calls
    .cuda() unconditionally and Gaussian's device defaults to "cuda". On a machine without
    CUDA, make Tensor.cuda() the identity and Gaussian's default device "cpu" while the
    official code runs; a no-op when CUDA is available. (Listed in README_generators.md.)"""
    import torch
    if torch.cuda.is_available():
        yield
        return
    from sam3d_objects.model.backbone.tdfy_dit.representations.gaussian import gaussian_model
    G = gaussian_model.Gaussian
    orig, orig_defaults = torch.Tensor.cuda, G.__init__.__defaults__
    torch.Tensor.cuda = lambda self, *a, **k: self
    # Gaussian(..., device="cuda") is the last default (gaussian_model.py:9-17); the decoder
    # constructs it without a device (decoder_gs.py:116-123)
    assert orig_defaults[-1] == "cuda", orig_defaults
    G.__init__.__defaults__ = orig_defaults[:-1] + ("cpu",)
    try:
        yield
    finally:
        torch.Tensor.cuda = orig
        G.__init__.__defaults__ = orig_defaults


def write_fixture_readme(out_dir, title, command, notes):
    """Write OUT/README.md: what the fixture is, the exact command that made it, notes, and for
    every file its size and (safetensors) every tensor as `name dtype [shape]` in stored
    (execution) order; checkpoints list their top-level keys and tensor count."""
    import torch
    lines = [f"# {title}", "", "Made by (from the repository root, CPU, torch "
             f"{torch.__version__}):", "", "```", command, "```", ""]
    lines += [notes.strip(), "", "## Files", ""]
    for root, _, files in sorted(os.walk(out_dir)):
        for fn in sorted(files):
            if fn == "README.md":
                continue
            path = os.path.join(root, fn)
            rel = os.path.relpath(path, out_dir)
            lines.append(f"### {rel} ({os.path.getsize(path):,} bytes)")
            lines.append("")
            if fn.endswith(".safetensors"):
                t, md = refutil.load_tensors(path)
                lines.append("```")
                for k, v in t.items():
                    dt = str(v.dtype).replace("torch.", "")
                    lines.append(f"{k}\t{dt}\t{list(v.shape)}")
                lines.append("```")
            elif fn.endswith(".ckpt") or fn.endswith(".pt"):
                obj = torch.load(path, map_location="cpu", weights_only=False)
                sd = obj.get("state_dict", obj)
                n = sum(1 for v in sd.values() if isinstance(v, torch.Tensor))
                dts = sorted({str(v.dtype).replace("torch.", "") for v in sd.values()
                              if isinstance(v, torch.Tensor)})
                keys = sorted(sd.keys())
                lines.append(f"torch.save'd {'{state_dict: ...}' if 'state_dict' in obj else 'flat state dict'}"
                             f"; {n} tensors ({', '.join(dts)}); first key `{keys[0]}`, "
                             f"last `{keys[-1]}`.")
            elif fn == "meta.json":
                lines.append("Provenance: sizes, seeds, init rules, loader, reference commit.")
            lines.append("")
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write("\n".join(lines))


# --------------------------------------------------------------------------------------------
# shared script plumbing (dump_ss_flow.py, dump_slat_flow.py, dump_*_decoder.py)

def add_common_args(ap, config, steps=None):
    """The arguments every dump script takes."""
    ap.add_argument("--size", choices=["tiny", "full"], default="tiny")
    ap.add_argument("--s3d", default=".ref/sam-3d-objects")
    ap.add_argument("--config", default=config)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32",
                    help="fp16: as the pipeline runs on the GPU (autocast, fp16 torsos)")
    if steps is not None:
        ap.add_argument("--cond", default=None,
                        help="safetensors with a 'cond' tensor (1,L,C) of the model's width")
        ap.add_argument("--steps", type=int, default=steps)
        ap.add_argument("--eval-step", type=int, default=3,
                        help="grid index k of the single evaluation")
        ap.add_argument("--noise", default=None,
                        help="safetensors with the sampler noise to use ('noise' or "
                             "'noise.<latent>', as this script writes) instead of the draw")


def base_meta(args, loader, nparam, tiny, **extra):
    """Provenance common to every fixture's meta.json / safetensors metadata."""
    import torch
    return {"size": args.size, "seed": args.seed, "device": args.device, "loader": loader,
            "config": os.path.relpath(args.config), "s3d_commit": refutil.ref_commit(args.s3d),
            "torch": torch.__version__, "params": nparam, "precision": args.precision,
            **extra, "tiny": tiny if args.size == "tiny" else None}


def amp_context(args, dev):
    """torch.autocast as the pipeline uses it when --precision is fp16/bf16 (the official
    `torch.autocast(device_type="cuda", dtype=...)` blocks); a disabled context for fp32."""
    import torch
    dt = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    return torch.autocast(torch.device(dev).type, dtype=dt or torch.float32,
                          enabled=dt is not None)


def build_init_save(cfg, seed, ckpt_path, wrap=None, prefix=None, state_dict_key=None,
                    run_cfg=None):
    """Instantiate cfg, fill it with refutil.realistic_init_(seed), save its state dict in the
    official container (wrap(state_dict) -> object; default: the bare state dict, as the
    decoder .ckpt files), then build a fresh module from run_cfg (default cfg) and load the
    file through the official loader. With cfg use_fp16 true (as released) the stored torso
    weights are fp16, as that module's state_dict() gives them; a run_cfg with use_fp16 false
    then computes in fp32 on exactly those values (load_state_dict converts).
    Returns (module, loader name, init rules, parameter count)."""
    m = instantiate(cfg)
    rules = refutil.realistic_init_(m, seed)
    nparam = sum(p.numel() for p in m.parameters())
    obj = wrap(m.state_dict()) if wrap else OrderedDict(
        (k, v.detach().clone().contiguous()) for k, v in m.state_dict().items())
    refutil.save_container(obj, ckpt_path)
    m, loader = load_official(instantiate(run_cfg or cfg), ckpt_path, prefix, state_dict_key)
    return m, loader, rules, nparam


@contextlib.contextmanager
def record_sampler(gen, clone, noise=None):
    """Record what the official sampler does: the noise returned by gen._generate_noise, each
    reverse_fn call (t, x_t, velocity after CFG) and each backbone call ('cond' or 'uncond'
    by the cfg flag, output). clone(value) copies a tensor or dict of tensors.
    noise: optional given noise (tensor or dict, same structure and shapes as the official
    draw) returned instead of the official draw (the draw still happens, so the global RNG
    advances as in the pipeline); lets C-drawn noise drive the official sampler.
    Yields rec = {"noise", "steps": [(t, x, v)], "calls": [(tag, out)]}; rec["per_step"]
    (filled on exit) lists the backbone calls of each step."""
    rec = {"noise": None, "steps": [], "calls": [], "marks": []}
    orig_noise, orig_rev = gen._generate_noise, gen.reverse_fn.forward

    def noise_hook(x_shape, x_device):
        n = orig_noise(x_shape, x_device)
        if noise is not None:
            if isinstance(n, dict):
                assert set(noise) == set(n) and all(noise[k].shape == n[k].shape for k in n), \
                    "given noise does not match the sampler's latents"
                n = {k: noise[k].to(n[k]) for k in n}
            else:
                assert noise.shape == n.shape, (noise.shape, n.shape)
                n = noise.to(n)
        rec["noise"] = clone(n)
        return n

    def rev_hook(x, t, *a, **kw):
        rec["marks"].append(len(rec["calls"]))
        v = orig_rev(x, t, *a, **kw)
        rec["steps"].append((t.clone(), clone(x), clone(v)))
        return v
    gen._generate_noise = noise_hook
    gen.reverse_fn.forward = rev_hook
    h = gen.reverse_fn.backbone.register_forward_hook(
        lambda m, a, kw, o: rec["calls"].append(("uncond" if kw.get("cfg") else "cond",
                                                 clone(o))), with_kwargs=True)
    try:
        yield rec
    finally:
        h.remove()
        gen._generate_noise, gen.reverse_fn.forward = orig_noise, orig_rev
        ends = rec["marks"][1:] + [len(rec["calls"])]
        rec["per_step"] = [rec["calls"][a:b] for a, b in zip(rec["marks"], ends)]


def write_outputs(out_dir, files, meta, extra_meta, rules, verbose=False):
    """files: {name: (tensors, per-file metadata, dtype)}; writes each safetensors file and
    meta.json (meta + extra_meta + init rules + degenerate-activation report); prints the
    warnings. Returns the list of degenerate tensors."""
    import json
    flat = {k: v for k, v in meta.items() if not isinstance(v, dict)}
    bad = []
    for name, (tensors, md, dtype) in files.items():
        refutil.save_tensors(os.path.join(out_dir, name), tensors, metadata={**flat, **md},
                             dtype=dtype)
        bad += refutil.check_realistic(tensors)
        if verbose:
            print(refutil.describe(tensors))
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump({**meta, **extra_meta, "init_rules": sorted(set(rules.values())),
                   "degenerate": bad}, f, indent=1)
    for b in bad:
        print(f"warning: degenerate {b}")
    return bad


def write_flow_outputs(args, ev, m1, sm, m2, meta, rules, what=""):
    """The two files of a flow fixture: eval.safetensors (fp32) and sampler.safetensors (own
    dtypes), meta.json; prints the summary line."""
    import torch
    write_outputs(args.out, {"eval.safetensors": (ev, m1, torch.float32),
                             "sampler.safetensors": (sm, m2, None)},
                  meta, {**m1, **m2}, rules, args.verbose)
    print(f"{what}eval: {len(ev)} tensors; sampler: {m2['steps']} steps, {m2['n_evals']} "
          f"evals, CFG on steps {m2['cfg_steps']}; wrote {args.out}")


def make_cond(args, C, tokens):
    """Condition tokens (1, L, C): 'cond' from --cond FILE when its width is C (so fixtures
    can chain with the condition stage's), else seeded N(0,1) tokens (1, tokens, C).
    Returns (tensor, source description)."""
    import torch
    if args.cond and os.path.exists(args.cond):
        t, _ = refutil.load_tensors(args.cond)
        c = t["cond"].float()
        if c.shape[-1] == C:
            return c, os.path.relpath(args.cond)
        print(f"note: {args.cond} cond width {c.shape[-1]} != {C}; using random tokens")
    g = torch.Generator().manual_seed(args.seed + 11)
    return torch.randn(1, tokens, C, generator=g), f"randn(seed+11) (1,{tokens},C)"


if __name__ == "__main__":
    if "--selftest" in sys.argv:
        for s in range(20):          # several coordinate sets: catches a racy pair generation
            spconv_selftest(seed=s, verbose=s == 0)
        c = shell_coords(64, 400, 0)
        print(f"shell_coords(64, 400): {tuple(c.shape)}")
    else:
        print(__doc__)
