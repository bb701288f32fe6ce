"""spconv stand-in for the decoders that use no sparse convolution (the Gaussian decoders).

The official sparse package imports spconv.pytorch.SparseConvTensor at import time as the
container of every SparseTensor (TD/modules/sparse/basic.py:8-9, 82-92, 272-301), even in
networks without a convolution. The real GPU wheel (spconv-cu126, 70 MB) is over a device
call's carry limit; this shim lets plugin_gs_decode.py run the official Gaussian decoder
without it. Appended to the end of sys.path (refutil.add_ref_paths), so a real spconv wins.
Any convolution raises at once (spconv.pytorch.__getattr__)."""
__version__ = "shim (tools/ref/shims/spconv: container only, no convolution)"
