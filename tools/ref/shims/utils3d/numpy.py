"""utils3d.numpy: MoGe's geometry_numpy only references utils3d.numpy inside functions that
MoGeModel.infer does not call (mask-aware resizing, depth-edge helpers); nothing is defined."""
