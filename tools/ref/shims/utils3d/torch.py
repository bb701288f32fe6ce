"""utils3d.torch subset used by MoGe v1 inference (MG:moge/model/v1.py:362,367)."""
import torch


def intrinsics_from_focal_center(fx, fy, cx, cy):
    """Same result as utils3d 3913c65 utils3d/torch/transforms.py intrinsics_from_focal_center:
    (..., 3, 3) [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], scalars broadcast to fx's shape/dtype."""
    fx = torch.as_tensor(fx)
    ref = fx
    fy, cx, cy = (torch.as_tensor(v, dtype=ref.dtype, device=ref.device) for v in (fy, cx, cy))
    fx, fy, cx, cy = torch.broadcast_tensors(fx, fy, cx, cy)
    zeros, ones = torch.zeros_like(fx), torch.ones_like(fx)
    return torch.stack([fx, zeros, cx, zeros, fy, cy, zeros, zeros, ones], dim=-1).unflatten(-1, (3, 3))


def depth_to_points(depth, intrinsics=None, extrinsics=None):
    """utils3d 3913c65 utils3d/torch/utils.py depth_to_points (no extrinsics): unproject a depth
    map (..., H, W) with normalised intrinsics (..., 3, 3) to camera-space points (..., H, W, 3),
    pixel centres uv = ((x + 0.5)/W, (y + 0.5)/H). Used by MoGe only with force_projection=True
    (not SAM 3D's path); kept so a dump with --force-projection works."""
    if extrinsics is not None:
        raise NotImplementedError("shim utils3d: depth_to_points with extrinsics is not provided")
    H, W = depth.shape[-2:]
    u = (torch.arange(W, dtype=depth.dtype, device=depth.device) + 0.5) / W
    v = (torch.arange(H, dtype=depth.dtype, device=depth.device) + 0.5) / H
    v, u = torch.meshgrid(v, u, indexing="ij")
    uv1 = torch.stack([u, v, torch.ones_like(u)], dim=-1)             # (H, W, 3)
    kinv = torch.inverse(intrinsics)                                   # (..., 3, 3)
    rays = (uv1[..., None, :] @ kinv[..., None, None, :, :].transpose(-1, -2))[..., 0, :]
    return rays * depth[..., None]
