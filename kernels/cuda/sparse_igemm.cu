/*
 * sparse_igemm.cu - the submanifold 3x3x3 conv as an implicit GEMM (ops_sparse.h,
 * op_sparse_conv3_igemm_cuda): no im2col buffer.
 *
 * y[p, n] = b[n] + sum over taps r and ci of W[n, r, ci] x[nbr[p, r], ci] is a GEMM
 * whose A rows are gathered: A[p, (r, ci)] = x[nbr[p, r], ci] (0 for a missing
 * neighbour), B[(r, ci), n] = W[n, r, ci] (KRSC as stored). One block computes a
 * 128 x 96 tile of y; the K loop runs over (tap, 32-channel chunk) steps, each
 * gathering its 128 A rows (64 bytes each) and the 96 x 32 B slice into shared
 * memory with cp.async (a missing neighbour's row zero-filled by the copy
 * itself), two stages, while 8 warps multiply the other stage on tensor cores
 * (WMMA 16x16x16, fp16 in, fp32 accumulation; a warp owns 32 x 48 of the tile).
 * Taps whose 96 x Cin weights are all zero in the tile's columns are skipped
 * (a mask per column tile, computed from w per call): the parent-tap weights of
 * the mesh decoder (mdk_subconv_weight) use 8 of the 27 taps per child class
 * of 96 or 192 channels, so there the GEMM does 8/27 of the dense work. The
 * epilogue adds the bias in fp32 and rounds once into y, as the im2col path's
 * cuBLASLt epilogue; only the fp32 summation order differs.
 */
#include "common.cuh"
#include "arena.h"
#include "ops_sparse.h"

#include <mma.h>
#include <stdlib.h>
#include <string.h>

using namespace nvcuda;

#define IG_BM      128                 /* tile rows */
#define IG_BN      96                  /* tile columns (output channels) */
#define IG_BK      32                  /* channels of one tap per K step */
#define IG_LD      (IG_BK + 8)         /* shared row pitch in halves: 80 bytes, 16-aligned */
#define IG_THREADS 256                 /* 8 warps: 4 (rows) x 2 (columns), 32 x 48 each */

static __device__ __forceinline__ void cp16(void *smem, const void *gmem, int src_bytes)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
                 "r"(src_bytes)
                 : "memory");
}

static __device__ __forceinline__ void cp_commit(void)
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

static __device__ __forceinline__ void cp_wait1(void)
{
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
}

/* mask[nt] bit r = some weight of columns [96 nt, 96 nt + 96) at tap r is not +-0;
 * one block per (nt, r) */
static __global__ void igemm_mask_kernel(uint32_t *mask, const __half *w, int64_t Cin)
{
    int nt = (int)(blockIdx.x / SPARSE_K3), r = (int)(blockIdx.x % SPARSE_K3);
    int nz = 0;

    for (int64_t e = threadIdx.x; e < IG_BN * Cin; e += blockDim.x) {
        int64_t n = (int64_t)nt * IG_BN + e / Cin, ci = e % Cin;
        nz |= (__half_as_ushort(w[(n * SPARSE_K3 + r) * Cin + ci]) & 0x7fff) != 0;
    }
    if (__syncthreads_or(nz) && threadIdx.x == 0)
        atomicOr(&mask[nt], 1u << r);
}

template <typename Ty, typename Tb>
static __global__ void __launch_bounds__(IG_THREADS)
igemm_kernel(Ty *y, const __half *x, const __half *w, const Tb *b, const int32_t *nbr,
             const uint32_t *mask, int64_t T, int64_t Cin, int64_t Cout)
{
    __shared__ __align__(128) __half As[2][IG_BM * IG_LD];
    __shared__ __align__(128) __half Bs[2][IG_BN * IG_LD];
    __shared__ __align__(128) float Cs[IG_THREADS / 32][16 * 16];

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wm = warp >> 1, wn = warp & 1;
    const int64_t p0 = (int64_t)blockIdx.x * IG_BM, n0 = (int64_t)blockIdx.y * IG_BN;
    const uint32_t m = mask[blockIdx.y];
    const int kc = (int)(Cin / IG_BK);
    const int nsteps = __popc(m) * kc;

    /* the K step being loaded: tap lr (a set bit of m), chunk lc; lrest: taps after lr */
    uint32_t lrest = m;
    int lr = -1, lc = kc;
    auto load = [&](int buf) {
        if (lc == kc) {                     /* next tap */
            lr = __ffs(lrest) - 1;
            lrest &= lrest - 1;
            lc = 0;
        }
        const int64_t ci0 = (int64_t)lc * IG_BK;
        for (int e = tid; e < IG_BM * 4; e += IG_THREADS) {      /* A: 128 rows x 4 x 16 B */
            int row = e >> 2, v = e & 3;
            int64_t p = p0 + row;
            int32_t q = p < T ? nbr[p * SPARSE_K3 + lr] : -1;
            const __half *src = q >= 0 ? x + (int64_t)q * Cin + ci0 + 8 * v : x;
            cp16(&As[buf][row * IG_LD + 8 * v], src, q >= 0 ? 16 : 0);
        }
        for (int e = tid; e < IG_BN * 4; e += IG_THREADS) {      /* B: 96 columns x 4 x 16 B */
            int n = e >> 2, v = e & 3;
            cp16(&Bs[buf][n * IG_LD + 8 * v],
                 w + ((n0 + n) * SPARSE_K3 + lr) * Cin + ci0 + 8 * v, 16);
        }
        lc++;
    };

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][3];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 3; j++)
            wmma::fill_fragment(acc[i][j], 0.0f);

    if (nsteps > 0)
        load(0);
    cp_commit();
    for (int t = 0; t < nsteps; t++) {
        if (t + 1 < nsteps)
            load((t + 1) & 1);
        cp_commit();
        cp_wait1();                         /* step t's copies have landed */
        __syncthreads();
        const __half *A = As[t & 1], *B = Bs[t & 1];
#pragma unroll
        for (int kk = 0; kk < IG_BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb[3];
#pragma unroll
            for (int i = 0; i < 2; i++)
                wmma::load_matrix_sync(fa[i], A + (wm * 32 + i * 16) * IG_LD + kk, IG_LD);
#pragma unroll
            for (int j = 0; j < 3; j++)
                wmma::load_matrix_sync(fb[j], B + (wn * 48 + j * 16) * IG_LD + kk, IG_LD);
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 3; j++)
                    wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
        __syncthreads();                    /* the stage is free for step t + 2 */
    }

    /* epilogue: each 16 x 16 fragment through the warp's shared tile, + bias, rounded once */
    float *cs = Cs[warp];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 3; j++) {
            wmma::store_matrix_sync(cs, acc[i][j], 16, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                int64_t p = p0 + wm * 32 + i * 16 + (e >> 4);
                int64_t n = n0 + wn * 48 + j * 16 + (e & 15);
                if (p < T)
                    y[p * Cout + n] = from_f32<Ty>(cs[e] + (b ? to_f32(b[n]) : 0.0f));
            }
            __syncwarp();
        }
}

bool op_sparse_conv3_igemm_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                                const struct tensor *x, const struct tensor *w,
                                const struct tensor *b, const struct tensor *nbr)
{
    op_check_dense("sparse_conv3_igemm.x", x, DEVICE_CUDA);
    op_check_dense("sparse_conv3_igemm.w", w, DEVICE_CUDA);
    op_check_dense("sparse_conv3_igemm.y", y, DEVICE_CUDA);
    ASSERT(x->ndim == 2 && y->ndim == 2 && w->ndim == 5);
    int64_t T = y->shape[0], Cin = x->shape[1], Cout = w->shape[0];
    ASSERT(w->shape[1] == 3 && w->shape[2] == 3 && w->shape[3] == 3 && w->shape[4] == Cin);
    ASSERT(y->shape[1] == Cout);
    sparse_check_i32("sparse_conv3_igemm.nbr", nbr, DEVICE_CUDA, T, SPARSE_K3);
    if (x->dtype != DTYPE_F16 || w->dtype != DTYPE_F16 ||
        (y->dtype != DTYPE_F16 && y->dtype != DTYPE_F32) || Cin % IG_BK || Cout % IG_BN ||
        Cout / IG_BN > 65535 || (uintptr_t)x->data % 16 || (uintptr_t)w->data % 16)
        return false;
    if (b)
        op_check_dense("sparse_conv3_igemm.b", b, DEVICE_CUDA);
    if (T == 0)
        return true;

    int64_t ntile = Cout / IG_BN;
    size_t mark = arena_mark(scratch);
    uint32_t *mask = (uint32_t *)arena_must_alloc(scratch, sizeof(uint32_t) * (size_t)ntile);
    CUDA_CHECK(cudaMemsetAsync(mask, 0, sizeof(uint32_t) * (size_t)ntile, ctx->stream));
    igemm_mask_kernel<<<(unsigned)(ntile * SPARSE_K3), 256, 0, ctx->stream>>>(
        mask, (const __half *)w->data, Cin);
    CUDA_CHECK(cudaGetLastError());
    dim3 grid((unsigned)((T + IG_BM - 1) / IG_BM), (unsigned)ntile);
    enum dtype bdt = b ? b->dtype : DTYPE_F32;
    DISPATCH_2(y->dtype, Ty, bdt, Tb,
               igemm_kernel<Ty, Tb><<<grid, IG_THREADS, 0, ctx->stream>>>(
                   (Ty *)y->data, (const __half *)x->data, (const __half *)w->data,
                   b ? (const Tb *)b->data : (const Tb *)NULL, (const int32_t *)nbr->data, mask,
                   T, Cin, Cout));
    CUDA_CHECK(cudaGetLastError());
    op_done(ctx, "sparse_conv3_igemm");
    arena_release(scratch, mark);
    return true;
}

bool sparse_igemm_enabled(void)
{
    static int on = -1;

    if (on < 0) {
        const char *e = getenv("S3D_SPARSE_IGEMM");
        on = e && !strcmp(e, "1");
    }
    return on == 1;
}
