/*
 * pointmap_cuda.cu - CUDA versions of PointPatchEmbed's token building and
 * finishing steps. See pointmap.h; the CPU versions in pointmap.c are the
 * reference (tests/test_cond.c compares them).
 */
#include "cuda/common.cuh"
#include "pointmap.h"

__device__ __forceinline__ float rh(float v, bool half)
{
    return half ? __half2float(__float2half_rn(v)) : v;
}

/* One thread per (window, token, channel) of tok (nc, T, D). */
__global__ void ppe_tokens_kernel(float *tok, const float *xyz, const float *pw, const float *pb,
                                  const float *inv, const float *win, const float *cls,
                                  int64_t nc, int64_t g0, int D, int P, int nw, int S, bool half)
{
    int64_t T = 1 + (int64_t)P * P, n = nc * T * D;

    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int d = (int)(e % D);
        int64_t t = (e / D) % T, wi = e / (D * T);
        int64_t g = g0 + wi, b = g / ((int64_t)nw * nw), w = g % ((int64_t)nw * nw);
        float v;
        if (t == 0) {
            v = cls[d];
        } else {
            int64_t i = t - 1, y = (w / nw) * P + i / P, x = (w % nw) * P + i % P;
            float p0 = xyz[((b * 3 + 0) * S + y) * S + x];
            float p1 = xyz[((b * 3 + 1) * S + y) * S + x];
            float p2 = xyz[((b * 3 + 2) * S + y) * S + x];
            if (isfinite(p0) && isfinite(p1) && isfinite(p2)) {
                v = rh(pb[d], half);
                v += rh(p0, half) * rh(pw[d * 3 + 0], half);
                v += rh(p1, half) * rh(pw[d * 3 + 1], half);
                v += rh(p2, half) * rh(pw[d * 3 + 2], half);
                v = rh(v, half);
            } else {
                v = rh(inv[d], half);
            }
        }
        tok[e] = v + win[t * D + d];
    }
}

void ppe_tokens_cuda(const struct ppe *m, const struct op_ctx *ctx, struct tensor *tok,
                     const struct tensor *xyz, int64_t g0, bool half)
{
    int64_t T = 1 + (int64_t)m->patch * m->patch, nc = tok->shape[0];

    ASSERT(tok->ndim == 3 && tok->shape[1] == T && tok->shape[2] == m->dim);
    ASSERT(tok->device == DEVICE_CUDA && xyz->device == DEVICE_CUDA);
    ASSERT(xyz->shape[1] == 3 && xyz->shape[2] == m->size && xyz->shape[3] == m->size);
    int64_t n = tensor_numel(tok);
    if (n == 0)
        return;
    ppe_tokens_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(
        (float *)tok->data, (const float *)xyz->data, (const float *)m->point_proj_w.data,
        (const float *)m->point_proj_b.data, (const float *)m->invalid_token.data,
        (const float *)m->pos_window.data, (const float *)m->cls_token.data, nc, g0, m->dim,
        m->patch, m->nwin, m->size, half);
    op_done(ctx, "ppe_tokens");
}

__global__ void ppe_finish_kernel(float *out, const float *x0, const float *pos, int64_t nc,
                                  int64_t g0, int D, int nw)
{
    int64_t n = nc * D;

    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int d = (int)(e % D);
        int64_t wi = e / D, w = (g0 + wi) % ((int64_t)nw * nw);
        out[(g0 + wi) * D + d] = x0[e] + pos[(int64_t)d * nw * nw + w];
    }
}

void ppe_finish_cuda(const struct ppe *m, const struct op_ctx *ctx, struct tensor *out,
                     const struct tensor *x0, int64_t g0)
{
    int64_t nc = x0->shape[0];

    ASSERT(out->shape[1] == m->dim && g0 + nc <= out->shape[0]);
    if (nc == 0)
        return;
    ppe_finish_kernel<<<grid_for(nc * m->dim, 256), 256, 0, ctx->stream>>>(
        (float *)out->data, (const float *)x0->data, (const float *)m->pos_embed.data, nc, g0,
        m->dim, m->nwin);
    op_done(ctx, "ppe_finish");
}
