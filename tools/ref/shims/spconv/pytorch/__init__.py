"""spconv.pytorch stand-in: SparseConvTensor as a plain container with the attributes the
official SparseTensor reads and copies (TD/modules/sparse/basic.py:82-92, 165-191, 272-301);
anything else (SubMConv3d, SparseConv3d, ...) raises. See ../__init__.py."""


class SparseConvTensor:
    def __init__(self, features, indices, spatial_shape, batch_size, grid=None, voxel_num=None,
                 indice_dict=None, benchmark=False, **kw):
        self._features = features
        self.indices = indices
        self.spatial_shape = spatial_shape
        self.batch_size = batch_size
        self.grid = grid
        self.voxel_num = voxel_num
        self.indice_dict = {} if indice_dict is None else indice_dict
        self.benchmark = benchmark
        self.benchmark_record = {}
        self.thrust_allocator = None
        self._timer = None
        self.force_algo = None
        self.int8_scale = None

    @property
    def features(self):
        return self._features

    @features.setter
    def features(self, value):
        self._features = value

    def dense(self, *a, **k):
        raise NotImplementedError("spconv shim: dense() needs the real spconv")


def __getattr__(name):
    raise AttributeError(f"spconv.pytorch.{name}: tools/ref/shims/spconv is a container-only "
                         "stand-in; install the real spconv (spconv-cu126 on the GPU machine) for "
                         "sparse convolutions")
