/*
 * vit_embed_cuda.cu - CUDA versions of the ViT's im2col and token assembly.
 * See vit_embed.h; the CPU versions in vit_embed.c are the reference.
 */
#include "cuda/common.cuh"
#include "vit_embed.h"

template <typename T>
__global__ void vit_im2col_kernel(T *cols, const float *img, int64_t n, int Cin, int H, int W,
                                  int p, int ph, int pw)
{
    int64_t K = (int64_t)Cin * p * p;

    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e / K, k = e % K;
        int px = (int)(r % pw), py = (int)((r / pw) % ph);
        int64_t b = r / ((int64_t)pw * ph);
        int kx = (int)(k % p), ky = (int)((k / p) % p), c = (int)(k / ((int64_t)p * p));
        cols[e] = from_f32<T>(img[((b * Cin + c) * H + py * p + ky) * W + px * p + kx]);
    }
}

void vit_im2col_cuda(const struct op_ctx *ctx, struct tensor *cols, const struct tensor *img,
                     int p)
{
    vit_im2col_check(cols, img, p, DEVICE_CUDA);
    int64_t n = tensor_numel(cols);
    int Cin = (int)img->shape[1], H = (int)img->shape[2], W = (int)img->shape[3];

    if (n == 0)
        return;
    DISPATCH_1(cols->dtype, T,
        vit_im2col_kernel<T><<<grid_for(n, 256), 256, 0, ctx->stream>>>(
            (T *)cols->data, (const float *)img->data, n, Cin, H, W, p, H / p, W / p));
    op_done(ctx, "vit_im2col");
}

template <typename T>
__global__ void vit_assemble_kernel(float *x, const T *pe, const float *cls, const float *reg,
                                    const float *pos_cls, const float *pos_patch, int64_t B,
                                    int64_t R, int64_t N, int64_t C)
{
    int64_t T_ = 1 + R + N, n = B * T_ * C;

    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = e % C, t = (e / C) % T_, b = e / (C * T_);
        float v;
        if (t == 0)
            v = cls[c] + pos_cls[c];
        else if (t <= R)
            v = reg[(t - 1) * C + c];
        else
            v = to_f32(pe[(b * N + t - 1 - R) * C + c]) + pos_patch[(t - 1 - R) * C + c];
        x[e] = v;
    }
}

void vit_assemble_cuda(const struct op_ctx *ctx, struct tensor *x, const struct tensor *pe,
                       const struct tensor *cls, const struct tensor *reg,
                       const struct tensor *pos_cls, const struct tensor *pos_patch)
{
    int64_t B, R, N, C;

    vit_assemble_check(x, pe, cls, reg, pos_cls, pos_patch, DEVICE_CUDA, &B, &R, &N, &C);
    int64_t n = tensor_numel(x);
    if (n == 0)
        return;
    DISPATCH_1(pe->dtype, T,
        vit_assemble_kernel<T><<<grid_for(n, 256), 256, 0, ctx->stream>>>(
            (float *)x->data, (const T *)pe->data, (const float *)cls->data,
            reg ? (const float *)reg->data : NULL, (const float *)pos_cls->data,
            (const float *)pos_patch->data, B, R, N, C));
    op_done(ctx, "vit_assemble");
}
