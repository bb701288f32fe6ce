/*
 * moge_kern.cu - CUDA versions of MoGe's elementwise helpers. See moge_kern.h.
 */
#include "../../kernels/cuda/common.cuh"

#include "moge_kern.h"

__global__ void normalise_kernel(float *y, const float *x, const float *mu, const float *sd,
                                 int64_t S)
{
    int64_t n = 3 * S;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int c = (int)(e / S);
        y[e] = (x[e] - mu[c]) / sd[c];
    }
}

__device__ __forceinline__ float linspace_dev(float s, float e, int n, int i)
{
    if (n == 1)
        return s;
    float step = (e - s) / (float)(n - 1);
    return i < n / 2 ? s + step * (float)i : e - step * (float)(n - i - 1);
}

template <typename T>
__global__ void uv_kernel(T *uv, int h, int w, float u0, float v0)
{
    int64_t n = (int64_t)h * w;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int i = (int)(e / w), j = (int)(e % w);
        uv[e] = from_f32<T>(linspace_dev(-u0, u0, w, j));
        uv[n + e] = from_f32<T>(linspace_dev(-v0, v0, h, i));
    }
}

template <typename T>
__global__ void chbias_kernel(T *y, const void *b, enum dtype bt, int64_t C, int64_t S)
{
    int64_t n = C * S;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x)
        y[e] = from_f32<T>(to_f32(y[e]) + load_dt(b, bt, e / S));
}

void moge_normalise_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                         const struct tensor *mean, const struct tensor *std)
{
    ASSERT(x->dtype == DTYPE_F32 && y->dtype == DTYPE_F32 && tensor_numel(x) == tensor_numel(y));
    int64_t S = tensor_numel(x) / 3;
    normalise_kernel<<<grid_for(3 * S, 256), 256, 0, ctx->stream>>>(
        (float *)y->data, (const float *)x->data, (const float *)mean->data,
        (const float *)std->data, S);
    op_done(ctx, "moge_normalise");
}

void moge_fill_uv_cuda(const struct op_ctx *ctx, struct tensor *uv, double aspect)
{
    ASSERT(uv->ndim >= 3 && uv->shape[uv->ndim - 3] == 2 && tensor_is_contiguous(uv));
    int h = (int)uv->shape[uv->ndim - 2], w = (int)uv->shape[uv->ndim - 1];
    double sx = aspect / sqrt(1 + aspect * aspect), sy = 1 / sqrt(1 + aspect * aspect);
    float u0 = (float)(sx * (w - 1) / w), v0 = (float)(sy * (h - 1) / h);
    DISPATCH_1(uv->dtype, T,
        uv_kernel<T><<<grid_for((int64_t)h * w, 256), 256, 0, ctx->stream>>>(
            (T *)uv->data, h, w, u0, v0));
    op_done(ctx, "moge_fill_uv");
}

void moge_channel_bias_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *b)
{
    int64_t C = y->shape[0], S = tensor_numel(y) / C;
    ASSERT(tensor_numel(b) == C && tensor_is_contiguous(y));
    DISPATCH_1(y->dtype, T,
        chbias_kernel<T><<<grid_for(C * S, 256), 256, 0, ctx->stream>>>(
            (T *)y->data, b->data, b->dtype, C, S));
    op_done(ctx, "moge_channel_bias");
}
