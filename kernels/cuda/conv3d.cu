/*
 * conv3d.cu - the channels-last 3-D ops on the GPU (see ops_conv.h): the
 * "same" 3-D convolution through cuDNN's Nd API in NDHWC layout, and the
 * 3-D pixel shuffle. CPU reference: kernels/cpu/conv3d.c. Test:
 * tests/test_op_conv3d.c.
 *
 * cuDNN use mirrors kernels/cuda/cudnn.cu (2-D conv): compute type FLOAT,
 * tensor-op math for F16/BF16, FMA math for F32 (no TF32, so --precision fp32
 * is a real fp32 reference), the first deterministic algorithm of the v7
 * heuristics whose workspace fits the free scratch space, cached per problem
 * shape (when cuDNN offers none, a direct fp32-accumulating kernel runs
 * instead, with a warning). The handle and the cache are the op context's
 * (dnn.cuh). The bias follows as one
 * elementwise kernel in place on y (PyTorch's cuDNN path rounds the
 * convolution to y's dtype, then adds the bias: the same two roundings).
 */
#include "common.cuh"
#include "dnn.cuh"

#include "arena.h"
#include "ops_conv.h"

#include <stdlib.h>
#include <string.h>

struct conv3_key {
    int     op;                         /* 3: tells the 3-D keys from the 2-D ones */
    int     dt;
    int     force_direct;
    int64_t N, Ci, D, H, W, Co, K;
    size_t  ws_cap;
};

// ----------------------------------------------------------------------------
// kernels

/* y[v, o] += b[o] over n = V * Co elements, one rounding into T. */
template <typename T>
__global__ void conv3d_bias_kernel(T *y, const void *b, enum dtype bt, int64_t Co, int64_t n)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x)
        y[e] = from_f32<T>(to_f32(y[e]) + load_dt(b, bt, e % Co));
}

/* y = x converted element by element (one rounding). */
template <typename Tx, typename Ty>
__global__ void cast_kernel(Ty *y, const Tx *x, int64_t n)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x)
        y[e] = from_f32<Ty>(to_f32(x[e]));
}

/* The fallback when cuDNN offers no algorithm: one thread per output element
 * y[v, o] (no bias), fp32 accumulation over taps and input channels. Slow
 * but simple; the test compares it with the CPU op like the cuDNN path. */
template <typename T>
__global__ void conv3d_direct_kernel(T *y, const T *x, const T *w, int64_t D, int64_t H,
                                     int64_t W, int64_t Ci, int64_t Co, int K, int64_t n)
{
    int P = K / 2;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t o = e % Co, v = e / Co;
        int64_t ww = v % W, hh = (v / W) % H, dd = (v / (W * H)) % D, nb = v / (W * H * D);
        float acc = 0.0f;
        for (int a = 0; a < K; a++) {
            int64_t sd = dd + a - P;
            if (sd < 0 || sd >= D)
                continue;
            for (int c = 0; c < K; c++) {
                int64_t sh = hh + c - P;
                if (sh < 0 || sh >= H)
                    continue;
                for (int f = 0; f < K; f++) {
                    int64_t sw = ww + f - P;
                    if (sw < 0 || sw >= W)
                        continue;
                    const T *xr = x + (((nb * D + sd) * H + sh) * W + sw) * Ci;
                    const T *wr = w + ((o * K + a) * K * K + c * K + f) * Ci;
                    for (int64_t i = 0; i < Ci; i++)
                        acc += to_f32(xr[i]) * to_f32(wr[i]);
                }
            }
        }
        y[e] = from_f32<T>(acc);
    }
}

/* One thread per output element: y (N, 2D, 2H, 2W, C) from x (N, D, H, W, 8C). */
template <typename Tx, typename Ty>
__global__ void pixel_shuffle3d_kernel(Ty *y, const Tx *x, int64_t D, int64_t H, int64_t W,
                                       int64_t C, int64_t n)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = e % C, u = e / C;
        int64_t ow = u % (2 * W), oh = (u / (2 * W)) % (2 * H);
        int64_t od = (u / (4 * W * H)) % (2 * D), nb = u / (8 * W * H * D);
        int s = (int)(4 * (od & 1) + 2 * (oh & 1) + (ow & 1));
        int64_t v = ((nb * D + od / 2) * H + oh / 2) * W + ow / 2;
        y[e] = from_f32<Ty>(to_f32(x[v * 8 * C + 8 * c + s]));
    }
}

// ----------------------------------------------------------------------------
// ops

void op_conv3d_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                    const struct tensor *x, const struct tensor *wp, const struct tensor *b)
{
    int64_t K = op_conv3d_check(y, x, wp, b, DEVICE_CUDA);
    ASSERT(y->dtype == wp->dtype);
    ASSERT(scratch && scratch->kind == ARENA_DEVICE);
    int64_t N = x->shape[0], D = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Ci = x->shape[4], Co = y->shape[4];
    ASSERT(N * Ci * D * H * W < ((int64_t)1 << 31) && N * Co * D * H * W < ((int64_t)1 << 31));
    if (tensor_numel(y) == 0)
        return;

    size_t mark = arena_mark(scratch);
    const void *xin = x->data;
    if (x->dtype != wp->dtype) {                /* autocast: x rounded to the weight dtype */
        int64_t n = tensor_numel(x);
        void *xc = arena_must_alloc(scratch, (size_t)n * dtype_size(wp->dtype));
        DISPATCH_2(x->dtype, Tx, wp->dtype, Ty,
            cast_kernel<Tx, Ty><<<grid_for(n, 256), 256, 0, ctx->stream>>>(
                (Ty *)xc, (const Tx *)x->data, n));
        xin = xc;
    }
    cudnnHandle_t h = dnn_begin(ctx);
    cudnnDataType_t dt = dnn_dtype(wp->dtype);
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    /* dims are given in NCDHW order; the NHWC format makes the memory NDHWC */
    int xdim[5] = {(int)N, (int)Ci, (int)D, (int)H, (int)W};
    int ydim[5] = {(int)N, (int)Co, (int)D, (int)H, (int)W};
    int wdim[5] = {(int)Co, (int)Ci, (int)K, (int)K, (int)K};
    int pad[3] = {(int)(K / 2), (int)(K / 2), (int)(K / 2)};
    int one[3] = {1, 1, 1};
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&xd));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&yd));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&wd));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&cd));
    CUDNN_CHECK(cudnnSetTensorNdDescriptorEx(xd, CUDNN_TENSOR_NHWC, dt, 5, xdim));
    CUDNN_CHECK(cudnnSetTensorNdDescriptorEx(yd, CUDNN_TENSOR_NHWC, dt, 5, ydim));
    CUDNN_CHECK(cudnnSetFilterNdDescriptor(wd, dt, CUDNN_TENSOR_NHWC, 5, wdim));
    CUDNN_CHECK(cudnnSetConvolutionNdDescriptor(cd, 3, pad, one, one, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(cd, wp->dtype == DTYPE_F32 ? CUDNN_FMA_MATH
                                                                       : CUDNN_TENSOR_OP_MATH));

    /* free scratch space caps the workspace */
    size_t cap = dnn_ws_cap(scratch);
    struct conv3_key key;
    memset(&key, 0, sizeof(key));
    key.op = 3;
    key.N = N; key.Ci = Ci; key.D = D; key.H = H; key.W = W; key.Co = Co; key.K = K;
    key.dt = (int)wp->dtype; key.ws_cap = cap;
    /* S3D_CONV3D_DIRECT=1: always the direct kernel (tests of the fallback) */
    const char *env = getenv("S3D_CONV3D_DIRECT");
    key.force_direct = env && strcmp(env, "1") == 0;
    const struct dnn_algo *a = dnn_find(ctx, &key, sizeof(key));
    if (!a) {
        cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
        size_t ws = 0;
        bool found = !key.force_direct && dnn_pick(h, xd, wd, cd, yd, cap, &algo);
        if (!found && !key.force_direct)
            log_warn("conv3d: cuDNN offers no deterministic NDHWC algorithm for %s x (%lld, %lld, "
                     "%lld, %lld, %lld), K %lld, Co %lld within %zu bytes of workspace: using the "
                     "direct kernel (slow)", dtype_name(wp->dtype), (long long)N, (long long)D,
                     (long long)H, (long long)W, (long long)Ci, (long long)K, (long long)Co, cap);
        if (found)                      /* forced or fallen back: the direct kernel needs none */
            CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, xd, wd, cd, yd, algo, &ws));
        a = dnn_store(ctx, &key, sizeof(key), algo, ws, !found);
    }
    cudnnConvolutionFwdAlgo_t algo = a->algo;
    size_t ws = a->ws;
    bool direct = a->direct;
    if (direct) {
        int64_t n = tensor_numel(y);
        DISPATCH_1(wp->dtype, T,
            conv3d_direct_kernel<T><<<grid_for(n, 256), 256, 0, ctx->stream>>>(
                (T *)y->data, (const T *)xin, (const T *)wp->data, D, H, W, Ci, Co, (int)K, n));
    } else {
        void *wsp = ws ? arena_must_alloc(scratch, ws) : NULL;
        float alpha = 1.0f, beta = 0.0f;
        CUDNN_CHECK(cudnnConvolutionForward(h, &alpha, xd, xin, wd, wp->data, cd, algo,
                                            wsp, ws, &beta, yd, y->data));
    }
    CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(cd));
    CUDNN_CHECK(cudnnDestroyFilterDescriptor(wd));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(yd));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(xd));
    dnn_end(ctx);

    if (b) {
        int64_t n = tensor_numel(y);
        DISPATCH_1(y->dtype, T,
            conv3d_bias_kernel<T><<<grid_for(n, 256), 256, 0, ctx->stream>>>(
                (T *)y->data, b->data, b->dtype, Co, n));
    }
    op_done(ctx, "conv3d");
    arena_release(scratch, mark);   /* later users queue on the same stream */
}

void op_pixel_shuffle3d_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x)
{
    op_pixel_shuffle3d_check(y, x, DEVICE_CUDA);
    int64_t n = tensor_numel(y);
    if (n == 0)
        return;
    DISPATCH_2(x->dtype, Tx, y->dtype, Ty,
        pixel_shuffle3d_kernel<Tx, Ty><<<grid_for(n, 256), 256, 0, ctx->stream>>>(
            (Ty *)y->data, (const Tx *)x->data, x->shape[1], x->shape[2], x->shape[3],
            y->shape[4], n));
    op_done(ctx, "pixel_shuffle3d");
}
