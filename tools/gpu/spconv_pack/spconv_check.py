# spconv_check.py - the carried spconv (pack.sh: sm_90 cubins only, NVRTC stub): a SubMConv3d
# and a strided SparseConv3d on the GPU against the same modules on the CPU
import sys, time, torch
import spconv.pytorch as sp
torch.manual_seed(0)
g = torch.stack(torch.meshgrid(*[torch.arange(24)] * 3, indexing="ij"), -1).reshape(-1, 3)
c = g[torch.randperm(len(g))[:4000]]
coords = torch.cat([torch.zeros(len(c), 1, dtype=torch.int64), c], 1).int()
f = torch.randn(len(c), 32)
# the CPU has only the native algorithm (the default, implicit GEMM, is CUDA-only)
native = sp.ConvAlgo.Native
for name, mk in [("subm", lambda: sp.SubMConv3d(32, 64, 3, indice_key="a", algo=native)),
                 ("conv s2", lambda: sp.SparseConv3d(32, 64, 2, stride=2, algo=native))]:
    torch.manual_seed(1); m = mk()
    cpu = m(sp.SparseConvTensor(f, coords, [24] * 3, 1)).features
    mg = m.cuda()
    t = time.time()
    gpu = mg(sp.SparseConvTensor(f.cuda(), coords.cuda(), [24] * 3, 1)).features.cpu()
    e = ((gpu - cpu).norm() / cpu.norm()).item()
    print(f"spconv {name}: gpu vs cpu rel {e:.2e} rows {len(gpu)} ({time.time()-t:.2f} s)", flush=True)
    assert e < 1e-3
print("spconv carried: OK")
