"""Minimal stand-in for utils3d (github.com/EasternJournalist/utils3d @ 3913c65, the commit
MoGe a8c3734 pins in requirements.txt:13), which is not on PyPI in that version and cannot be
installed on the GPU machine. Only what MoGe v1's inference path (MoGeModel.infer with
force_projection=False, as SAM 3D calls it) touches is provided; any other attribute is absent
on purpose so that an unexpected use fails loudly with AttributeError. See tools/ref/README.md."""
from . import torch  # noqa: F401  (utils3d.torch.*)
from . import numpy  # noqa: F401  (utils3d.numpy.*: imported by MoGe, unused by infer)
