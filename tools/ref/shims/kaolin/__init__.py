"""Minimal kaolin shim for the golden-reference scripts (tools/ref/README_generators.md).

The official FlexiCubes (TD/representations/mesh/flexicubes/flexicubes.py:18, 57-80) imports
only kaolin.utils.testing.check_tensor, for argument assertions. kaolin has no wheel for this
torch/CPU; this package provides that one function with kaolin's semantics. It is added to
sys.path after the real site-packages, so an installed kaolin always wins."""
