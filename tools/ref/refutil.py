"""Shared helpers for the golden-reference scripts in tools/ref/.

Development only: these run the official PyTorch modules (checked out under .ref/, never
committed) to produce fixtures; sam3d never needs Python at run time.

Public API (stable: add, do not rename):

  add_ref_paths(s3d=None, moge=None, dinov2=None, trellis=None, shims=True)
      Put the reference checkouts (and tools/ref/shims for packages without a usable wheel)
      on sys.path so `import sam3d_objects`, `import moge`, `import dinov2` work offline.
  ref_commit(path) -> str            git HEAD of a checkout ("unknown" if not a git dir).
  seed_all(seed)                     seed python, numpy and torch (CPU + CUDA).
  realistic_init_(module, seed, ..., device="cpu")
                                     deterministic per-parameter random init with magnitudes
                                     that give non-trivial activations (see the docstring).
  lightning_ckpt(state_dict, prefix, extra=None) -> dict
                                     {'state_dict': {prefix + k: v}} as in the official .ckpt.
  moge_container(model_config, state_dict) -> dict   {'model_config': ..., 'model': ...}.
  save_container(obj, path)          torch.save (zip format, the official containers).
  capture(module, names=None, include=None, inputs=False) -> context manager yielding an
                                     ActivationLog: forward-hook capture of module outputs
                                     in execution order, keyed by module name.
  save_tensors(path, tensors, metadata=None, dtype=torch.float32)
                                     write an ordered dict of named tensors to safetensors; the
                                     insertion order is kept in __metadata__["order"] (JSON).
  load_tensors(path) -> (OrderedDict, metadata)   the inverse, in the stored order.
  check_realistic(tensors, min_std=1e-3) -> list[str]
                                     names of tensors that look degenerate (non-finite where
                                     not expected, or ~constant); scripts print these.
  describe(tensors) -> str           one line per tensor: name shape dtype mean std absmax.
"""

import contextlib
import json
import math
import os
import subprocess
import sys
import zlib
from collections import OrderedDict

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SHIMS = os.path.join(HERE, "shims")


# --------------------------------------------------------------------------------------------
# reference checkouts

def add_ref_paths(s3d=None, moge=None, dinov2=None, trellis=None, shims=True):
    """Prepend the given checkout roots to sys.path (each is the folder holding the package,
    e.g. .ref/sam-3d-objects holds sam3d_objects/). With shims=True, tools/ref/shims is added
    last so a real installed package always wins over a shim."""
    for p in (s3d, moge, dinov2, trellis):
        if p:
            p = os.path.abspath(p)
            if not os.path.isdir(p):
                raise SystemExit(f"error: reference checkout {p} not found "
                                 f"(HINT: clone it, see tools/ref/README.md)")
            if p not in sys.path:
                sys.path.insert(0, p)
    if shims and SHIMS not in sys.path:
        sys.path.append(SHIMS)


def ref_commit(path):
    """Short git commit of a reference checkout, for provenance in fixture metadata; "unknown"
    when path is not the top of a git checkout (a copy without .git inside another repository
    would otherwise report that repository's commit)."""
    try:
        top = subprocess.run(["git", "-C", path, "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        if not top or os.path.realpath(top) != os.path.realpath(path):
            return "unknown"
        out = subprocess.run(["git", "-C", path, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def seed_all(seed):
    import random
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


# --------------------------------------------------------------------------------------------
# random init

def _gen(seed, name, device="cpu"):
    """A torch.Generator seeded from (seed, parameter name): the value of a parameter does not
    depend on module construction order or on which other parameters exist."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1000003 + zlib.crc32(name.encode())) % (2 ** 63))
    return g


def _trunc_normal(shape, std, g):
    t = torch.empty(shape, dtype=torch.float32, device=g.device)
    t.normal_(0.0, 1.0, generator=g)
    t.clamp_(-2.0, 2.0)
    return t.mul_(std)


# Init choices (recorded in tools/ref/README.md "Random weights"):
#  - matrices / conv kernels (ndim >= 2, name ends in 'weight'): truncated normal (+-2 sigma),
#    std = gain / sqrt(fan_in), fan_in = prod(shape[1:]) (for ConvTranspose2d, whose layout is
#    (cin, cout, kh, kw), fan_in = shape[0] * kh * kw). Variance preserving, so a tiny model
#    (dim 128) and the full one (dim 1024) have comparable activation scales; gain 1.0.
#  - biases: normal std 0.02.
#  - norm weights (1-d 'weight' of LayerNorm/GroupNorm/RMSNorm, detected by module type or a
#    1-d weight): 1 + N(0, 0.1); norm biases N(0, 0.05).
#  - LayerScale gamma (name ends in 'gamma'): uniform(0.1, 1.0) so no block is a no-op
#    (DINOv2 trains them from 1e-5; init_values would make every block ~identity).
#  - tokens / embeddings (cls_token, register_tokens, mask_token, pos_embed*, *_token, idx_emb,
#    any other >=1-d parameter not covered above): normal std 0.5 (pos/cls tokens in trained
#    ViTs are O(0.1-1)); 0-d parameters N(0, 0.1).
#  - buffers are left as constructed (image_mean/std etc. are real constants).

def realistic_init_(module, seed, gain=1.0, bias_std=0.02, norm_std=0.1, gamma_range=(0.1, 1.0),
                    token_std=0.5, overrides=None, device="cpu"):
    """Fill every parameter of `module` in place, deterministically from (seed, name).

    device: where the random numbers are drawn ("cpu": the fixtures' values, the same on every
    machine; "cuda": the same distributions from CUDA generators, ~100x faster for the
    full-size benchmark weights, tools/ref/bench_official.py).

    overrides: optional dict {name_suffix: callable(shape, generator) -> tensor} applied before
    the default rules (first matching suffix wins). Returns a dict name -> rule used (for the
    fixture README)."""
    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.BatchNorm1d,
                  torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    norm_params = set()
    convT_params = set()
    for mname, m in module.named_modules():
        if isinstance(m, norm_types) or type(m).__name__.lower().endswith("norm") \
                or "rmsnorm" in type(m).__name__.lower():
            for pname, _ in m.named_parameters(recurse=False):
                norm_params.add(f"{mname}.{pname}" if mname else pname)
        if isinstance(m, (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d,
                          torch.nn.ConvTranspose3d)):
            convT_params.add(f"{mname}.weight" if mname else "weight")
    rules = {}
    with torch.no_grad():
        for name, p in module.named_parameters():
            g = _gen(seed, name, device)
            shape = tuple(p.shape)
            leaf = name.rsplit(".", 1)[-1]
            t = None
            if overrides:
                for suf, fn in overrides.items():
                    if name.endswith(suf):
                        t, rule = fn(shape, g), f"override:{suf}"
                        break
            if t is None:
                if name in norm_params and leaf == "weight":
                    t = 1.0 + norm_std * torch.randn(shape, generator=g, device=device)
                    rule = f"norm-weight 1+N(0,{norm_std})"
                elif name in norm_params and leaf == "bias":
                    t = 0.05 * torch.randn(shape, generator=g, device=device)
                    rule = "norm-bias N(0,0.05)"
                elif leaf == "gamma":
                    lo, hi = gamma_range
                    t = lo + (hi - lo) * torch.rand(shape, generator=g, device=device)
                    rule = f"layerscale U({lo},{hi})"
                elif leaf == "weight" and len(shape) >= 2:
                    if name in convT_params:
                        fan_in = shape[0] * int(np.prod(shape[2:]))
                    else:
                        fan_in = int(np.prod(shape[1:]))
                    std = gain / math.sqrt(max(fan_in, 1))
                    t = _trunc_normal(shape, std, g)
                    rule = f"trunc_normal std {gain}/sqrt({fan_in})"
                elif leaf == "weight" and len(shape) == 1:
                    t = 1.0 + norm_std * torch.randn(shape, generator=g, device=device)
                    rule = f"1-d weight 1+N(0,{norm_std})"
                elif leaf == "bias":
                    t = bias_std * torch.randn(shape, generator=g, device=device)
                    rule = f"bias N(0,{bias_std})"
                elif len(shape) == 0:
                    t = 0.1 * torch.randn((), generator=g, device=device)
                    rule = "scalar N(0,0.1)"
                else:
                    t = token_std * torch.randn(shape, generator=g, device=device)
                    rule = f"token N(0,{token_std})"
            p.copy_(t.to(p.dtype))
            rules[name] = rule
    return rules


# --------------------------------------------------------------------------------------------
# official containers

def lightning_ckpt(state_dict, prefix, extra=None):
    """{'state_dict': {prefix + k: tensor}} exactly as the official generator .ckpt files
    store a sub-module (spec/conditioning.md §9.1). `extra` (dict) adds more top-level keys or
    more state-dict entries under other prefixes: {'state_dict': {...}} is merged."""
    sd = OrderedDict((prefix + k, v.detach().clone().contiguous()) for k, v in state_dict.items())
    out = {"state_dict": sd}
    if extra:
        for k, v in extra.items():
            if k == "state_dict":
                out["state_dict"].update(v)
            else:
                out[k] = v
    return out


def moge_container(model_config, state_dict):
    """The MoGe model.pt layout read by MoGeModel.from_pretrained (MG:moge/model/v1.py:208-236)."""
    return {"model_config": dict(model_config),
            "model": OrderedDict((k, v.detach().clone().contiguous())
                                 for k, v in state_dict.items())}


def save_container(obj, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(obj, path)


# --------------------------------------------------------------------------------------------
# activation capture

class ActivationLog:
    """Ordered record of captured tensors: `log.tensors` is an OrderedDict name -> tensor
    (detached, CPU, contiguous), in the order the hooks fired. A module called several times
    gets '#1', '#2', ... suffixes after the first call."""

    def __init__(self):
        self.tensors = OrderedDict()
        self._calls = {}

    def add(self, name, value):
        n = self._calls.get(name, 0)
        self._calls[name] = n + 1
        key = name if n == 0 else f"{name}#{n}"
        for sub, t in _flatten(key, value):
            self.tensors[sub] = t.detach().to("cpu").contiguous().clone()


def _flatten(name, value):
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _flatten(f"{name}.{i}", v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten(f"{name}.{k}", v)
    # other values (None, ints, sparse containers) are skipped; record them explicitly


@contextlib.contextmanager
def capture(module, names=None, include=None, inputs=False, prefix=""):
    """Register forward hooks on sub-modules of `module` and yield an ActivationLog.

    names:   exact module names (as in named_modules()) to hook; or
    include: a predicate (name, module) -> bool; default: every module with parameters of its
             own or no children (leaves), except the root.
    inputs:  also record each hooked module's positional inputs as '<name>:in.<i>'.
    prefix:  prepended to every recorded name.
    Hooks are removed on exit."""
    log = ActivationLog()
    handles = []
    want = set(names) if names is not None else None
    for mname, m in module.named_modules():
        if want is not None:
            if mname not in want:
                continue
        elif include is not None:
            if not include(mname, m):
                continue
        elif mname == "" or len(list(m.children())) != 0:
            continue

        def hook(mod, args, out, _n=prefix + mname):
            if inputs:
                log.add(_n + ":in", tuple(a for a in args if isinstance(a, torch.Tensor)))
            log.add(_n, out)
        handles.append(m.register_forward_hook(hook))
    if want is not None:
        missing = want - {n for n, _ in module.named_modules()}
        if missing:
            raise KeyError(f"capture: no module named {sorted(missing)}")
    try:
        yield log
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------------------------
# safetensors I/O

_DT = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
       "U8": torch.uint8, "BOOL": torch.bool}


def save_tensors(path, tensors, metadata=None, dtype=torch.float32):
    """Write named tensors to a safetensors file.

    tensors: dict (insertion order = execution order) name -> tensor. Floating tensors are
    converted to `dtype` (None keeps each tensor's own dtype); integer/bool tensors keep theirs.
    metadata: optional dict of str -> str-able, stored in __metadata__; the key order is stored
    as __metadata__["order"] (JSON list) because safetensors sorts names."""
    from safetensors.torch import save_file
    out = OrderedDict()
    for k, v in tensors.items():
        v = v.detach().to("cpu")
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous().clone()
    md = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (metadata or {}).items()}
    md["order"] = json.dumps(list(out.keys()))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(out, path, metadata=md)


def load_tensors(path):
    """Read a safetensors file; returns (OrderedDict in the stored execution order when the file
    has __metadata__["order"], else sorted by name; metadata dict)."""
    from safetensors import safe_open
    with safe_open(path, framework="pt") as f:
        md = f.metadata() or {}
        keys = list(f.keys())
        order = json.loads(md["order"]) if "order" in md else sorted(keys)
        order = [k for k in order if k in keys] + sorted(set(keys) - set(order))
        out = OrderedDict((k, f.get_tensor(k)) for k in order)
    return out, md


# --------------------------------------------------------------------------------------------
# sanity of random-weight activations

def check_realistic(tensors, min_std=1e-3, allow_nonfinite=()):
    """Return a list of 'name: reason' for tensors that look degenerate: floating tensors with
    NaN/Inf (unless the name contains one of allow_nonfinite), or with std < min_std (after
    dropping non-finite values) while having more than one element."""
    bad = []
    for k, v in tensors.items():
        if not v.is_floating_point() or v.numel() < 2:
            continue
        v = v.double()
        fin = torch.isfinite(v)
        if not fin.all() and not any(a in k for a in allow_nonfinite):
            bad.append(f"{k}: {(~fin).sum().item()} non-finite values")
        f = v[fin]
        if f.numel() > 1 and f.std().item() < min_std:
            bad.append(f"{k}: std {f.std().item():.3g} < {min_std}")
    return bad


def describe(tensors):
    lines = []
    for k, v in tensors.items():
        if v.is_floating_point():
            f = v.double()
            f = f[torch.isfinite(f)]
            if f.numel():
                s = (f"mean {f.mean().item():+.4f} std {f.std().item() if f.numel() > 1 else 0:.4f} "
                     f"absmax {f.abs().max().item():.4f}")
            else:
                s = "all non-finite"
        else:
            s = f"min {v.min().item()} max {v.max().item()}" if v.numel() else "empty"
        lines.append(f"{k:60s} {str(list(v.shape)):22s} {str(v.dtype)[6:]:8s} {s}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# example inputs (real images from examples/, synthetic point maps)

def load_example(example_dir, mask_index=0, image_name="image.png"):
    """Read <example_dir>/image.png and <example_dir>/<mask_index>.png as the official notebook
    does (S3D:notebook/inference.py:94-120, 351-356): RGB = first 3 channels; mask = last
    channel of the mask PNG > 0. Returns (rgb uint8 (H,W,3) numpy, mask bool (H,W) numpy)."""
    from PIL import Image
    rgb = np.array(Image.open(os.path.join(example_dir, image_name)).convert("RGBA"))[..., :3]
    m = np.array(Image.open(os.path.join(example_dir, f"{mask_index}.png")))
    if m.ndim == 3:
        m = m[..., -1]
    mask = m > 0
    if mask.shape != rgb.shape[:2]:
        raise SystemExit(f"error: mask {mask.shape} does not match image {rgb.shape[:2]} "
                         f"in {example_dir}")
    return rgb, mask


def synthetic_pointmap(H, W, mask, seed, invalid_frac=0.04):
    """A plausible metric point map (3,H,W) fp32 in the PyTorch3D camera frame the pipeline
    uses after MoGe (x left, y up, z forward; spec/conditioning.md §3.1): a smooth background
    surface at depth ~3, the masked object ~1 closer with a bump, x/y from a pinhole of ~60 deg
    FoV. A band of the top rows (invalid_frac of the image) is NaN, as MoGe-invalid sky, and
    invalid_frac/2 of the pixels elsewhere, scattered (so crops contain invalid points too)."""
    g = torch.Generator().manual_seed(seed)
    v, u = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    phase = torch.rand(4, generator=g) * 6.28
    z = 3.0 + 0.3 * torch.sin(2.1 * u + phase[0]) * torch.cos(1.7 * v + phase[1])
    m = torch.as_tensor(mask, dtype=torch.float32)
    bump = 0.2 * torch.cos(3.0 * u + phase[2]) * torch.cos(3.0 * v + phase[3])
    z = z - m * (1.0 + bump)
    aspect = W / H
    x = -(u * aspect * 0.577) * z
    y = -(v * 0.577) * z
    P = torch.stack([x, y, z]).float()
    nbad = int(round(invalid_frac * H))
    if nbad:
        P[:, :nbad, :] = float("nan")
    speckle = torch.rand(H, W, generator=g) < invalid_frac / 2     # scattered invalid pixels
    P[:, speckle] = float("nan")
    return P


def ssi_normalize(P, mask):
    """ObjectCentricSSI.normalize with use_scene_scale (spec/conditioning.md §5.2;
    S3D:sam3d_objects/data/dataset/tdfy/img_and_mask_transforms.py:519-615): shift = per-axis
    nanmedian of object points, scale = nanmedian over all pixels of the L-inf distance to the
    shift. Returns (Pn (3,H,W), scale (3,), shift (3,)). Used only to make fixture inputs look
    like the preprocessor's output; the preprocessing parity dump is dump_preprocess.py's."""
    sel = torch.as_tensor(mask).reshape(-1) > 0.5
    Q = P.reshape(3, -1)[:, sel]
    shift = torch.nanmedian(Q, dim=1).values
    d = (P - shift[:, None, None]).abs().amax(dim=0)
    s = torch.nanmedian(d.reshape(-1))
    scale = torch.stack([s, s, s])
    return (P - shift[:, None, None]) / s, scale, shift


def crop_square_resize(t, mask, size, mode, fill=0.0, box_factor=1.2):
    """Crop (C,H,W) around the mask bbox x box_factor, zero-fill outside the image (as the
    official torchvision crop does), then resize to (size,size): mode 'bilinear' uses antialias
    (torchvision Resize on tensors), 'nearest' is legacy nearest. Simplified from
    TDFY/img_and_mask_transforms.py:262-389 (for fixture inputs only)."""
    import torch.nn.functional as F
    ys, xs = np.nonzero(np.asarray(mask))
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    half = int(max(xs.max() - xs.min(), ys.max() - ys.min(), 2) * box_factor) // 2
    left, top = int(cx - half), int(cy - half)
    C, H, W = t.shape
    out = torch.full((C, 2 * half, 2 * half), fill, dtype=t.dtype)
    sy0, sx0 = max(top, 0), max(left, 0)
    sy1, sx1 = min(top + 2 * half, H), min(left + 2 * half, W)
    out[:, sy0 - top:sy1 - top, sx0 - left:sx1 - left] = t[:, sy0:sy1, sx0:sx1]
    return resize_square(out, size, mode)


def pad_square_resize(t, size, mode):
    """Pad (C,H,W) to a centred square with 0 (pad_to_square_centered, TDFY/img_processing.py)
    and resize to (size,size) as crop_square_resize does."""
    import torch.nn.functional as F
    C, H, W = t.shape
    d = abs(H - W)
    p1 = d // 2
    pad = (p1, d - p1, 0, 0) if H > W else (0, 0, p1, d - p1)
    return resize_square(F.pad(t, pad, value=0.0), size, mode)


def resize_square(t, size, mode):
    import torch.nn.functional as F
    if mode == "bilinear":
        return F.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False,
                             antialias=True)[0]
    return F.interpolate(t[None], size=(size, size), mode="nearest")[0]


def fuser_inputs(rgb, mask, size, pointmap=None):
    """The condition-fuser inputs as the SS/SLAT preprocessors produce them (§5.5), at `size`:
    image/rgb_image (1,3,S,S), mask/rgb_image_mask (1,1,S,S) fp32, and with a (3,H,W) pointmap
    (already normalised) pointmap/rgb_pointmap (1,3,S,S). Returns an OrderedDict."""
    img = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).double().div(255).float()
    m = torch.from_numpy(np.asarray(mask)).float()[None]
    out = OrderedDict()
    out["image"] = crop_square_resize(img, mask, size, "bilinear")[None]
    out["rgb_image"] = pad_square_resize(img, size, "bilinear")[None]
    out["mask"] = crop_square_resize(m, mask, size, "nearest")[None]
    out["rgb_image_mask"] = pad_square_resize(m, size, "nearest")[None]
    if pointmap is not None:
        out["pointmap"] = crop_square_resize(pointmap, mask, size, "nearest")[None]
        out["rgb_pointmap"] = pad_square_resize(pointmap, size, "nearest")[None]
    return out


def strict_fp32():
    """Make fp32 mean fp32 on the GPU: PyTorch runs cuDNN convolutions in TF32 by default
    (torch.backends.cudnn.allow_tf32 = True), which alone puts ~3e-4 relative error into a
    DINOv2 forward (seen on the H200, 2026-11-28). Our --precision fp32 is a true-fp32 debug
    mode, so fp32 references are computed without TF32. Returns what was set, for meta.json."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return {"cudnn.allow_tf32": False, "matmul.allow_tf32": False}
