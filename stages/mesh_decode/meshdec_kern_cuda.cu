/*
 * meshdec_kern_cuda.cu - CUDA versions of the mesh decoder's small ops
 * (meshdec_kern.h; the CPU versions in meshdec_kern.c are the reference).
 */
#include "cuda/common.cuh"
#include "meshdec_kern.h"
#include "ops_sparse.h"

#define MDK_THREADS 256

static __global__ void nbr_sub_kernel(int32_t *map, const int32_t *parent, const int32_t *units,
                                      int G, int64_t row0, int mode, const int32_t *loc, int64_t n)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n * SPARSE_K3;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t j = e / SPARSE_K3;
        int r = (int)(e - j * SPARSE_K3);
        int64_t row = units ? (int64_t)G * units[j / G] + j % G : row0 + j;
        map[e] = mdk_nbr_entry(parent, row, r, mode, G, loc);
    }
}

void mdk_nbr_sub_cuda(const struct op_ctx *ctx, struct tensor *map, const struct tensor *parent,
                      const struct tensor *units, int G, int64_t row0, enum mdk_nbr_mode mode,
                      const struct tensor *loc)
{
    int64_t n = map->shape[0];

    sparse_check_i32("mdk_nbr_sub.map", map, DEVICE_CUDA, -1, SPARSE_K3);
    sparse_check_i32("mdk_nbr_sub.parent", parent, DEVICE_CUDA, -1, SPARSE_K3);
    ASSERT(G >= 1 && (!units || units->shape[0] * G == n) && (mode != MDK_LOCAL || loc));
    if (units)
        sparse_check_i32("mdk_nbr_sub.units", units, DEVICE_CUDA, -1, 0);
    if (loc)
        sparse_check_i32("mdk_nbr_sub.loc", loc, DEVICE_CUDA, -1, 0);
    if (n == 0)
        return;
    nbr_sub_kernel<<<grid_for(n * SPARSE_K3, MDK_THREADS), MDK_THREADS, 0, ctx->stream>>>(
        (int32_t *)map->data, (const int32_t *)parent->data,
        units ? (const int32_t *)units->data : NULL, G, row0, (int)mode,
        loc ? (const int32_t *)loc->data : NULL, n);
    op_done(ctx, "mdk_nbr_sub");
}

static __global__ void loc_kernel(int32_t *loc, const int32_t *units, int64_t n, bool set)
{
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < n;
         j += (int64_t)gridDim.x * blockDim.x)
        loc[units[j]] = set ? (int32_t)j : -1;
}

void mdk_loc_cuda(const struct op_ctx *ctx, struct tensor *loc, const struct tensor *units,
                  bool set)
{
    sparse_check_i32("mdk_loc.loc", loc, DEVICE_CUDA, -1, 0);
    sparse_check_i32("mdk_loc.units", units, DEVICE_CUDA, -1, 0);
    int64_t n = units->shape[0];
    if (n == 0)
        return;
    loc_kernel<<<grid_for(n, MDK_THREADS), MDK_THREADS, 0, ctx->stream>>>(
        (int32_t *)loc->data, (const int32_t *)units->data, n, set);
    op_done(ctx, "mdk_loc");
}

static __device__ __forceinline__ void f64_store(float *p, double v) { *p = (float)v; }
static __device__ __forceinline__ void f64_store(__half *p, double v) { *p = __double2half(v); }

/* one thread per wp element (row, s, ci); the CPU's loop order and sums */
template <typename T>
static __global__ void subconv_weight_kernel(T *wp, T *bp, const T *w, const T *b, int64_t Cout,
                                             int64_t Cin)
{
    int64_t n = 8 * Cout * SPARSE_K3 * Cin;

    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t ci = e % Cin, rs = e / Cin, row = rs / SPARSE_K3;
        int s = (int)(rs - row * SPARSE_K3), k = (int)(row / Cout);
        int64_t o = row - k * Cout;
        int lo[3], hi[3];
        mdk_sub_taps(k >> 2 & 1, s / 9, &lo[0], &hi[0]);
        mdk_sub_taps(k >> 1 & 1, s / 3 % 3, &lo[1], &hi[1]);
        mdk_sub_taps(k & 1, s % 3, &lo[2], &hi[2]);
        double sum = 0;
        for (int r0 = lo[0]; r0 <= hi[0]; r0++)
            for (int r1 = lo[1]; r1 <= hi[1]; r1++)
                for (int r2 = lo[2]; r2 <= hi[2]; r2++)
                    sum = __dadd_rn(sum, (double)to_f32(
                                             w[(o * SPARSE_K3 + r0 * 9 + r1 * 3 + r2) * Cin + ci]));
        f64_store(&wp[e], sum);
        if (s == 0 && ci == 0)
            bp[row] = b[o];
    }
}

void mdk_subconv_weight_cuda(const struct op_ctx *ctx, struct tensor *wp, struct tensor *bp,
                             const struct tensor *w, const struct tensor *b)
{
    int64_t Cout, Cin;
    mdk_subconv_check(wp, bp, w, b, DEVICE_CUDA, &Cout, &Cin);
    int64_t n = 8 * Cout * SPARSE_K3 * Cin;
    if (n == 0)
        return;
    if (w->dtype == DTYPE_F32)
        subconv_weight_kernel<float><<<grid_for(n, MDK_THREADS), MDK_THREADS, 0, ctx->stream>>>(
            (float *)wp->data, (float *)bp->data, (const float *)w->data,
            (const float *)b->data, Cout, Cin);
    else if (w->dtype == DTYPE_F16)
        subconv_weight_kernel<__half><<<grid_for(n, MDK_THREADS), MDK_THREADS, 0, ctx->stream>>>(
            (__half *)wp->data, (__half *)bp->data, (const __half *)w->data,
            (const __half *)b->data, Cout, Cin);
    else
        ASSERT(!"mdk_subconv_weight: F32 or F16 weights");
    CUDA_CHECK(cudaGetLastError());
    op_done(ctx, "mdk_subconv_weight");
}

template <typename T, typename Ty>
static __global__ void add_parent_kernel(Ty *y, const T *a, const T *p, int64_t rows, int64_t C,
                                         int64_t row0)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < rows * C;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e / C, c = e - r * C;
        T s = from_f32<T>(__fadd_rn(to_f32(a[e]), to_f32(p[((row0 + r) >> 3) * C + c])));
        y[e] = from_f32<Ty>(to_f32(s));
    }
}

void mdk_add_parent_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *a,
                         const struct tensor *p, int64_t row0)
{
    op_check_dense("mdk_add_parent.y", y, DEVICE_CUDA);
    op_check_dense("mdk_add_parent.a", a, DEVICE_CUDA);
    op_check_dense("mdk_add_parent.p", p, DEVICE_CUDA);
    ASSERT(a->ndim == 2 && p->ndim == 2 && tensor_same_shape(y, a) && a->dtype == p->dtype &&
           p->shape[1] == a->shape[1]);
    int64_t rows = a->shape[0], C = a->shape[1];
    if (rows * C == 0)
        return;
    ASSERT(((row0 + rows - 1) >> 3) < p->shape[0]);
    DISPATCH_2(a->dtype, T, y->dtype, Ty,
               add_parent_kernel<T, Ty><<<grid_for(rows * C, MDK_THREADS), MDK_THREADS, 0,
                                          ctx->stream>>>((Ty *)y->data, (const T *)a->data,
                                                         (const T *)p->data, rows, C, row0));
    op_done(ctx, "mdk_add_parent");
}
