"""kaolin.utils.testing.check_tensor, re-implemented (kaolin 0.15 semantics): True when the
tensor matches `shape` (None entries are wildcards; the number of dims must match), `dtype`
and `device` (each checked only when given); otherwise raise ValueError if throw, else False."""
import torch


def check_tensor(tensor, shape=None, dtype=None, device=None, throw=True):
    if not isinstance(tensor, torch.Tensor):
        if throw:
            raise TypeError(f"tensor is {type(tensor)}, not a torch.Tensor")
        return False
    if shape is not None:
        ok = len(shape) == tensor.ndim and all(
            s is None or s == d for s, d in zip(shape, tensor.shape))
        if not ok:
            if throw:
                raise ValueError(f"tensor shape is {tuple(tensor.shape)}, should be {tuple(shape)}")
            return False
    if dtype is not None and tensor.dtype != dtype:
        if throw:
            raise TypeError(f"tensor dtype is {tensor.dtype}, should be {dtype}")
        return False
    if device is not None and tensor.device != torch.device(device):
        if throw:
            raise TypeError(f"tensor device is {tensor.device}, should be {device}")
        return False
    return True
