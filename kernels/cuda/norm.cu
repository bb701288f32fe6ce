/*
 * norm.cu - LayerNorm and the per-head RMS norm on the GPU. See ops.h.
 *
 * One warp per row; fp32 statistics. LayerNorm reads its row three times
 * (mean, centred variance, output): the second and third reads hit L1, and
 * the two-pass variance matches the CPU reference far better than E[x^2]-m^2.
 */
#include "common.cuh"

#include <string.h>

#define ROWS_PER_BLOCK 4   /* warps per block, one row each */

/* y = (x - mean) * rstd * w + b over rows of C. w, b: run-time dtype or NULL. */
template <typename Tx, typename Ty>
__global__ void layernorm_kernel(Ty *y, const Tx *x, const void *w, enum dtype wdt, const void *b,
                                 enum dtype bdt, int64_t R, int C, float eps)
{
    int64_t row  = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int     lane = threadIdx.x & 31;

    if (row >= R)
        return;
    const Tx *xr = x + row * C;
    Ty       *yr = y + row * C;
    float     s  = 0.0f;
    for (int c = lane; c < C; c += 32)
        s += to_f32(xr[c]);
    float mean = warp_sum(s) / (float)C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = to_f32(xr[c]) - mean;
        v += d * d;
    }
    float rstd = rsqrtf(warp_sum(v) / (float)C + eps);
    for (int c = lane; c < C; c += 32) {
        float o = (to_f32(xr[c]) - mean) * rstd;
        if (w)
            o = o * load_dt(w, wdt, c);
        if (b)
            o = o + load_dt(b, bdt, c);
        yr[c] = from_f32<Ty>(o);
    }
}

void op_layernorm_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                       const struct tensor *w, const struct tensor *b, float eps)
{
    op_check_dense("layernorm.x", x, DEVICE_CUDA);
    op_check_dense("layernorm.y", y, DEVICE_CUDA);
    ASSERT(tensor_same_shape(x, y));
    ASSERT(w || !b);
    ASSERT(x->data != y->data || x->dtype == y->dtype);

    int64_t C = op_cols(x), R = op_rows(x);
    ASSERT(C < (1 << 30));
    if (w) {
        op_check_dense("layernorm.w", w, DEVICE_CUDA);
        ASSERT(tensor_numel(w) == C);
    }
    if (b) {
        op_check_dense("layernorm.b", b, DEVICE_CUDA);
        ASSERT(tensor_numel(b) == C);
    }
    if (R == 0 || C == 0)
        return;
    unsigned grid = (unsigned)((R + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    ASSERT((R + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK < (1ll << 31));
    DISPATCH_2(x->dtype, Tx, y->dtype, Ty,
        layernorm_kernel<Tx, Ty><<<grid, 32 * ROWS_PER_BLOCK, 0, ctx->stream>>>(
            (Ty *)y->data, (const Tx *)x->data, w ? w->data : NULL, w ? w->dtype : DTYPE_F32,
            b ? b->data : NULL, b ? b->dtype : DTYPE_F32, R, (int)C, eps));
    op_done(ctx, "layernorm");
}

// ----------------------------------------------------------------------------
// per-head RMS norm

/* Leading dims of a strided (..., H, D) tensor: row r (flat over all dims but
 * the last) starts at sum_i idx_i * stride_i. */
struct rows_desc {
    int     nd;                 /* leading dims (ndim - 1), at most 5 */
    int64_t shape[5];
    int64_t xs[5];              /* x strides of the leading dims */
    int64_t ys[5];              /* y strides */
};

/* y = x / max(||x||, 1e-12) * gamma[h] * scale, one warp per row of D. */
template <typename T>
__global__ void rmsnorm_heads_kernel(T *y, const T *x, const void *g, enum dtype gdt,
                                     struct rows_desc rd, int64_t R, int H, int D, float scale)
{
    int64_t row  = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int     lane = threadIdx.x & 31;

    if (row >= R)
        return;
    int64_t xo = 0, yo = 0, r = row;
    for (int d = rd.nd - 1; d >= 0; d--) {
        int64_t i = r % rd.shape[d];
        r /= rd.shape[d];
        xo += i * rd.xs[d];
        yo += i * rd.ys[d];
    }
    int h = (int)(row % H);
    float ss = 0.0f;
    for (int c = lane; c < D; c += 32) {
        float v = to_f32(x[xo + c]);
        ss += v * v;
    }
    float den = fmaxf(sqrtf(warp_sum(ss)), 1e-12f);   /* F.normalize: clamp_min(eps) */
    for (int c = lane; c < D; c += 32)
        y[yo + c] = from_f32<T>(to_f32(x[xo + c]) / den * load_dt(g, gdt, (int64_t)h * D + c) * scale);
}

void op_rmsnorm_heads_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                           const struct tensor *gamma, float scale)
{
    ASSERT(x->device == DEVICE_CUDA && y->device == DEVICE_CUDA);
    ASSERT(op_dtype_ok(x->dtype) && y->dtype == x->dtype);
    ASSERT(x->ndim >= 2 && x->ndim <= 6 && tensor_same_shape(x, y));
    ASSERT(x->stride[x->ndim - 1] == 1 && y->stride[y->ndim - 1] == 1);
    op_check_dense("rmsnorm_heads.gamma", gamma, DEVICE_CUDA);

    int64_t D = x->shape[x->ndim - 1], H = x->shape[x->ndim - 2];
    int64_t R = D ? tensor_numel(x) / D : 0;
    ASSERT(gamma->ndim == 2 && gamma->shape[0] == H && gamma->shape[1] == D);
    if (R == 0 || D == 0)
        return;

    struct rows_desc rd;
    memset(&rd, 0, sizeof(rd));
    rd.nd = x->ndim - 1;
    for (int d = 0; d < rd.nd; d++) {
        rd.shape[d] = x->shape[d];
        rd.xs[d] = x->stride[d];
        rd.ys[d] = y->stride[d];
    }
    unsigned grid = (unsigned)((R + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    DISPATCH_1(x->dtype, T,
        rmsnorm_heads_kernel<T><<<grid, 32 * ROWS_PER_BLOCK, 0, ctx->stream>>>(
            (T *)y->data, (const T *)x->data, gamma->data, gamma->dtype, rd, R, (int)H, (int)D,
            scale));
    op_done(ctx, "rmsnorm_heads");
}
