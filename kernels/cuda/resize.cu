/*
 * resize.cu - op_resize_cuda (F.interpolate, align_corners=False). See ops_image.h.
 *
 * The per-axis index/weight tables are the CPU op's (op_resize_axis, computed
 * on the host exactly as ATen does) uploaded into scratch memory, so the CUDA
 * op differs from the CPU reference only in nothing: the same taps, the same
 * fp32 running sums in the same order. Antialiased modes run two passes (W
 * into an fp32 scratch plane set, then H); the others one nested pass.
 */
#include "common.cuh"

#include "arena.h"
#include "ops_image.h"

#include <stdlib.h>

struct axis_dev {
    const int   *idx;
    const int   *cnt;
    const float *wt;
    int          taps;
    int          n_in;
};

__device__ __forceinline__ float load_in(const uint8_t *p, int64_t i)
{
    return (float)((double)p[i] / 255.0);        /* image_to_float */
}

template <typename T>
__device__ __forceinline__ float load_in(const T *p, int64_t i)
{
    return to_f32(p[i]);
}

__device__ __forceinline__ int tap_index(int mode, int n_in, int first, int j)
{
    int s = first + j;                    /* op_resize_tap_index, on the device */

    if (mode == OP_RESIZE_BICUBIC)
        s = first - 1 + j;
    if (mode == OP_RESIZE_BICUBIC || mode == OP_RESIZE_BILINEAR)
        s = s < 0 ? 0 : s > n_in - 1 ? n_in - 1 : s;
    return s;
}

/* sum_j w_j in[tap_j * stride], first product then += (ATen order) */
template <typename T>
__device__ __forceinline__ float tap_sum(const axis_dev &a, int mode, int i, const T *in,
                                         int64_t stride)
{
    const float *w = a.wt + (int64_t)i * a.taps;
    int first = a.idx[i], n = a.cnt[i];
    float acc = load_in(in, (int64_t)tap_index(mode, a.n_in, first, 0) * stride) * w[0];

    for (int j = 1; j < n; j++)
        acc += load_in(in, (int64_t)tap_index(mode, a.n_in, first, j) * stride) * w[j];
    return acc;
}

/* one pass along W: in (R, W) -> out (R, Wo) */
template <typename Tx, typename Ty>
__global__ void resize_w_kernel(Ty *out, const Tx *in, int64_t R, int W, int Wo, axis_dev aw,
                                int mode)
{
    int64_t n = R * Wo;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e / Wo;
        int j = (int)(e % Wo);
        out[e] = from_f32<Ty>(tap_sum(aw, mode, j, in + r * W, 1));
    }
}

/* one pass along H: in (P, H, Wo) -> out (P, Ho, Wo) */
template <typename Tx, typename Ty>
__global__ void resize_h_kernel(Ty *out, const Tx *in, int64_t P, int H, int Ho, int Wo,
                                axis_dev ah, int mode)
{
    int64_t n = P * Ho * Wo;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int j = (int)(e % Wo);
        int i = (int)((e / Wo) % Ho);
        int64_t p = e / ((int64_t)Wo * Ho);
        out[e] = from_f32<Ty>(tap_sum(ah, mode, i, in + p * H * Wo + j, Wo));
    }
}

/* nested pass: sum over H taps of W sums (Interpolate<2> of ATen) */
template <typename Tx, typename Ty>
__global__ void resize_2d_kernel(Ty *out, const Tx *in, int64_t P, int H, int W, int Ho, int Wo,
                                 axis_dev ah, axis_dev aw, int mode)
{
    int64_t n = P * Ho * Wo;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int j = (int)(e % Wo);
        int i = (int)((e / Wo) % Ho);
        int64_t p = e / ((int64_t)Wo * Ho);
        const Tx *src = in + p * H * W;
        const float *wy = ah.wt + (int64_t)i * ah.taps;
        float acc = 0.0f;
        for (int a = 0; a < ah.cnt[i]; a++) {
            int sy = tap_index(mode, H, ah.idx[i], a);
            float t = tap_sum(aw, mode, j, src + (int64_t)sy * W, 1);
            acc = a == 0 ? t * wy[0] : acc + t * wy[a];
        }
        out[e] = from_f32<Ty>(acc);
    }
}

/* Build one axis table on the host and upload it into scratch. */
static axis_dev axis_upload(const struct op_ctx *ctx, struct arena *scratch,
                            enum op_resize_mode mode, int n_in, int n_out, double scale)
{
    axis_dev a;
    int taps = op_resize_max_taps(mode, n_in, n_out);
    size_t ni = sizeof(int) * (size_t)n_out, nw = sizeof(float) * (size_t)n_out * taps;
    char *h = (char *)malloc(2 * ni + nw);
    ASSERT(h);
    int *idx = (int *)h, *cnt = (int *)(h + ni);
    float *wt = (float *)(h + 2 * ni);

    op_resize_axis(mode, n_in, n_out, scale, taps, idx, cnt, wt);
    char *d = (char *)arena_must_alloc(scratch, 2 * ni + nw);
    /* pageable source: returns once the bytes are staged, so h can be freed */
    CUDA_CHECK(cudaMemcpyAsync(d, h, 2 * ni + nw, cudaMemcpyHostToDevice, ctx->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    free(h);
    a.idx = (const int *)d;
    a.cnt = (const int *)(d + ni);
    a.wt = (const float *)(d + 2 * ni);
    a.taps = taps;
    a.n_in = n_in;
    return a;
}

template <typename Tx>
static void resize_launch(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                          const Tx *x, int64_t P, int H, int W, int Ho, int Wo,
                          enum op_resize_mode mode, double sh, double sw)
{
    const int bs = 256;
    axis_dev ah = axis_upload(ctx, scratch, mode, H, Ho, sh);
    axis_dev aw = axis_upload(ctx, scratch, mode, W, Wo, sw);
    bool aa = mode == OP_RESIZE_BILINEAR_AA || mode == OP_RESIZE_BICUBIC_AA;
    int64_t n = P * Ho * Wo;

    if (!aa) {
        DISPATCH_1(y->dtype, Ty,
            resize_2d_kernel<Tx, Ty><<<grid_for(n, bs), bs, 0, ctx->stream>>>(
                (Ty *)y->data, x, P, H, W, Ho, Wo, ah, aw, (int)mode));
        return;
    }
    if (Ho == H) {                               /* (also when nothing resamples) */
        DISPATCH_1(y->dtype, Ty,
            resize_w_kernel<Tx, Ty><<<grid_for(n, bs), bs, 0, ctx->stream>>>(
                (Ty *)y->data, x, P * H, W, Wo, aw, (int)mode));
        return;
    }
    if (Wo == W) {
        DISPATCH_1(y->dtype, Ty,
            resize_h_kernel<Tx, Ty><<<grid_for(n, bs), bs, 0, ctx->stream>>>(
                (Ty *)y->data, x, P, H, Ho, Wo, ah, (int)mode));
        return;
    }
    float *mid = (float *)arena_must_alloc(scratch, sizeof(float) * (size_t)(P * H * Wo));
    resize_w_kernel<Tx, float><<<grid_for(P * H * Wo, bs), bs, 0, ctx->stream>>>(
        mid, x, P * H, W, Wo, aw, (int)mode);
    DISPATCH_1(y->dtype, Ty,
        resize_h_kernel<float, Ty><<<grid_for(n, bs), bs, 0, ctx->stream>>>(
            (Ty *)y->data, mid, P, H, Ho, Wo, ah, (int)mode));
}

size_t op_resize_scratch_bytes(const struct tensor *y, const struct tensor *x,
                               enum op_resize_mode mode)
{
    int H = (int)x->shape[x->ndim - 2], W = (int)x->shape[x->ndim - 1];
    int Ho = (int)y->shape[y->ndim - 2], Wo = (int)y->shape[y->ndim - 1];
    int64_t P = tensor_numel(x) / ((int64_t)H * W);
    bool aa = mode == OP_RESIZE_BILINEAR_AA || mode == OP_RESIZE_BICUBIC_AA;

    if (P == 0)
        return 0;
    /* axis_upload's tables, then resize_launch's intermediate */
    size_t th = (2 * sizeof(int) + sizeof(float) * op_resize_max_taps(mode, H, Ho)) * Ho;
    size_t tw = (2 * sizeof(int) + sizeof(float) * op_resize_max_taps(mode, W, Wo)) * Wo;
    size_t mid = aa && Ho != H && Wo != W ? sizeof(float) * (size_t)(P * H * Wo) : 0;
    return arena_round(th) + arena_round(tw) + arena_round(mid);
}

void op_resize_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                    const struct tensor *x, enum op_resize_mode mode, double scale_h,
                    double scale_w)
{
    ASSERT(x->device == DEVICE_CUDA && y->device == DEVICE_CUDA);
    ASSERT(tensor_is_contiguous(x) && tensor_is_contiguous(y));
    ASSERT(op_dtype_ok(x->dtype) || x->dtype == DTYPE_U8);
    ASSERT(op_dtype_ok(y->dtype));
    ASSERT(x->ndim >= 2 && x->ndim == y->ndim);
    ASSERT(scratch && scratch->kind == ARENA_DEVICE);
    for (int d = 0; d < x->ndim - 2; d++)
        ASSERT(x->shape[d] == y->shape[d]);

    int H = (int)x->shape[x->ndim - 2], W = (int)x->shape[x->ndim - 1];
    int Ho = (int)y->shape[y->ndim - 2], Wo = (int)y->shape[y->ndim - 1];
    ASSERT(H >= 1 && W >= 1 && Ho >= 1 && Wo >= 1);
    int64_t P = tensor_numel(x) / ((int64_t)H * W);
    if (P == 0)
        return;

    size_t mark = arena_mark(scratch);
    if (x->dtype == DTYPE_U8)
        resize_launch(ctx, scratch, y, (const uint8_t *)x->data, P, H, W, Ho, Wo, mode,
                      scale_h, scale_w);
    else
        DISPATCH_1(x->dtype, Tx,
            resize_launch(ctx, scratch, y, (const Tx *)x->data, P, H, W, Ho, Wo, mode,
                          scale_h, scale_w));
    op_done(ctx, "resize");
    ASSERT(arena_mark(scratch) - mark == op_resize_scratch_bytes(y, x, mode));
    /* later users of this scratch memory are queued on the same stream, after us */
    arena_release(scratch, mark);
}
