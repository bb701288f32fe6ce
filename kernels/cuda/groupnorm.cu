/*
 * groupnorm.cu - op_groupnorm_cuda (nn.GroupNorm + optional ReLU). See ops_image.h.
 *
 * Two kernels: statistics per (n, group) with many blocks per group (each
 * block reduces a slice in fp32 with a shifted sum to keep the variance
 * accurate, then combines partial (count, mean, M2) with Chan's formula in
 * a second tiny pass), then an elementwise normalise. MoGe's largest group
 * (GroupNorm(1, 64) at 296x536) holds 10M elements, so one block per group
 * would serialise.
 */
#include "common.cuh"

#include "arena.h"
#include "ops_image.h"

#define GN_BLOCKS_PER_GROUP_MAX 256
#define GN_THREADS 256

/* partial[g * nb + k] = (mean, M2) of slice k of group g (count implied) */
template <typename T>
__global__ void gn_partial_kernel(float2 *partial, const T *x, int64_t M, int nb)
{
    __shared__ float red[32];
    int g = blockIdx.y, k = blockIdx.x;
    const T *xg = x + (int64_t)g * M;
    int64_t per = (M + nb - 1) / nb;
    int64_t lo = (int64_t)k * per, hi = min(M, lo + per);
    float shift = lo < hi ? to_f32(xg[lo]) : 0.0f;
    float s = 0.0f, ss = 0.0f;

    for (int64_t e = lo + threadIdx.x; e < hi; e += blockDim.x) {
        float d = to_f32(xg[e]) - shift;
        s += d;
        ss += d * d;
    }
    s = block_sum(s, red);
    ss = block_sum(ss, red);
    if (threadIdx.x == 0) {
        float cnt = (float)max((int64_t)0, hi - lo);
        float mean = cnt > 0 ? s / cnt : 0.0f;
        float m2 = cnt > 0 ? fmaxf(ss - s * mean, 0.0f) : 0.0f;
        partial[(int64_t)g * nb + k] = make_float2(shift + mean, m2);
    }
}

/* stats[g] = (mean, rstd) from the partials, Chan's parallel combination */
__global__ void gn_combine_kernel(float2 *stats, const float2 *partial, int64_t M, int nb,
                                  int G, float eps)
{
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= G)
        return;
    int64_t per = (M + nb - 1) / nb;
    double n = 0, mean = 0, m2 = 0;
    for (int k = 0; k < nb; k++) {
        int64_t lo = (int64_t)k * per, hi = min(M, lo + per);
        double nk = (double)max((int64_t)0, hi - lo);
        if (nk == 0)
            continue;
        float2 p = partial[(int64_t)g * nb + k];
        double d = (double)p.x - mean, tot = n + nk;
        mean += d * nk / tot;
        m2 += (double)p.y + d * d * n * nk / tot;
        n = tot;
    }
    double var = n > 0 ? m2 / n : 0.0;
    stats[g] = make_float2((float)mean, (float)(1.0 / sqrt(var + (double)eps)));
}

template <typename Tx, typename Ty>
__global__ void gn_apply_kernel(Ty *y, const Tx *x, const float2 *stats, const void *w,
                                const void *b, enum dtype pt, int64_t C, int64_t S, int Cg,
                                int64_t n, bool relu)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t nc = e / S;
        int64_t c = nc % C;
        float2 st = stats[(nc / C) * (C / Cg) + c / Cg];
        float v = (to_f32(x[e]) - st.x) * st.y;
        if (w)
            v = v * load_dt(w, pt, c) + load_dt(b, pt, c);
        if (relu)
            v = fmaxf(v, 0.0f);
        y[e] = from_f32<Ty>(v);
    }
}

/* Blocks per (n, group) for M elements per group. */
static int gn_blocks(int64_t M)
{
    return (int)min((int64_t)GN_BLOCKS_PER_GROUP_MAX, max((int64_t)1, M / (GN_THREADS * 16)));
}

size_t op_groupnorm_scratch_bytes(const struct tensor *x, int groups)
{
    int64_t N = x->shape[0], C = x->shape[1];
    int64_t S = (N != 0 && C != 0) ? tensor_numel(x) / (N * C) : 0, G = N * groups;

    if (N * C * S == 0)
        return 0;
    return arena_round(sizeof(float2) * (size_t)(G * gn_blocks(C / groups * S))) +
           arena_round(sizeof(float2) * (size_t)G);
}

void op_groupnorm_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                       const struct tensor *x,
                       int groups, const struct tensor *w, const struct tensor *b, float eps,
                       bool relu)
{
    op_check_dense("groupnorm.x", x, DEVICE_CUDA);
    op_check_dense("groupnorm.y", y, DEVICE_CUDA);
    ASSERT(x->ndim >= 2 && tensor_same_shape(x, y));
    ASSERT((w == NULL) == (b == NULL));
    int64_t N = x->shape[0], C = x->shape[1];
    ASSERT(groups >= 1 && C % groups == 0);
    int64_t S = (N != 0 && C != 0) ? tensor_numel(x) / (N * C) : 0;
    int64_t Cg = C / groups, M = Cg * S, G = N * groups;
    if (w) {
        op_check_dense("groupnorm.w", w, DEVICE_CUDA);
        op_check_dense("groupnorm.b", b, DEVICE_CUDA);
        ASSERT(tensor_numel(w) == C && tensor_numel(b) == C && w->dtype == b->dtype);
    }
    if (N * C * S == 0)
        return;
    ASSERT(scratch && scratch->kind == ARENA_DEVICE && G <= 65535);
    size_t mark = arena_mark(scratch);
    int nb = gn_blocks(M);
    float2 *g_part = (float2 *)arena_must_alloc(scratch, sizeof(float2) * (size_t)(G * nb));
    float2 *g_stats = (float2 *)arena_must_alloc(scratch, sizeof(float2) * (size_t)G);
    DISPATCH_1(x->dtype, T,
        gn_partial_kernel<T><<<dim3(nb, (unsigned)G), GN_THREADS, 0, ctx->stream>>>(
            g_part, (const T *)x->data, M, nb));
    gn_combine_kernel<<<(unsigned)((G + 127) / 128), 128, 0, ctx->stream>>>(g_stats, g_part, M,
                                                                             nb, (int)G, eps);
    int64_t n = tensor_numel(x);
    DISPATCH_2(x->dtype, Tx, y->dtype, Ty,
        gn_apply_kernel<Tx, Ty><<<grid_for(n, 256), 256, 0, ctx->stream>>>(
            (Ty *)y->data, (const Tx *)x->data, g_stats, w ? w->data : NULL,
            b ? b->data : NULL, w ? w->dtype : DTYPE_F32, C, S, (int)Cg, n, relu));
    op_done(ctx, "groupnorm");
    ASSERT(arena_mark(scratch) - mark == op_groupnorm_scratch_bytes(x, groups));
    arena_release(scratch, mark);   /* later users queue on the same stream */
}
