/*
 * cudnn.cu - the op context's cuDNN state (dnn.cuh: one handle per context, the
 * algorithm cache) and op_conv2d_cuda through cuDNN. See ops_image.h.
 *
 * Replicate padding is not a cuDNN mode: the input is first copied into a
 * replicate-padded buffer taken from the scratch arena, then convolved with
 * pad 0. The bias and the optional ReLU follow as one elementwise kernel in
 * place on y. Math: fp32 accumulation (compute type FLOAT); tensor cores for
 * F16/BF16, plain FMA for F32 (no TF32), so --precision fp32 is a real fp32
 * reference. The algorithm comes from cuDNN's heuristics (v7 query, first
 * deterministic one that fits the free scratch space) and is cached per
 * problem shape in the op context.
 */
#include "common.cuh"
#include "dnn.cuh"

#include "arena.h"
#include "ops_conv.h"
#include "ops_image.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// the op context's cuDNN state (dnn.cuh)

struct op_dnn *dnn_new(void)
{
    struct op_dnn *d = (struct op_dnn *)calloc(1, sizeof(*d));

    ASSERT(d);
    ASSERT(pthread_mutex_init(&d->lock, NULL) == 0);
    return d;
}

void dnn_free(struct op_dnn *d)
{
    if (!d)
        return;
    if (d->handle)
        CUDNN_CHECK(cudnnDestroy(d->handle));
    pthread_mutex_destroy(&d->lock);
    free(d);
}

cudnnHandle_t dnn_begin(const struct op_ctx *ctx)
{
    struct op_dnn *d = ctx->dnn;

    ASSERT(d);
    pthread_mutex_lock(&d->lock);
    if (!d->handle)
        CUDNN_CHECK(cudnnCreate(&d->handle));
    CUDNN_CHECK(cudnnSetStream(d->handle, ctx->stream));
    return d->handle;
}

void dnn_end(const struct op_ctx *ctx)
{
    pthread_mutex_unlock(&ctx->dnn->lock);
}

void op_ctx_dnn_prepare(const struct op_ctx *ctx)
{
    (void)dnn_begin(ctx);
    dnn_end(ctx);
}

const struct dnn_algo *dnn_find(const struct op_ctx *ctx, const void *key, size_t len)
{
    const struct op_dnn *d = ctx->dnn;

    for (int i = 0; i < DNN_CACHE; i++)
        if (d->cache[i].valid && d->cache[i].key_len == len && !memcmp(d->cache[i].key, key, len))
            return &d->cache[i];
    return NULL;
}

const struct dnn_algo *dnn_store(const struct op_ctx *ctx, const void *key, size_t len,
                                 cudnnConvolutionFwdAlgo_t algo, size_t ws, bool direct)
{
    struct op_dnn *d = ctx->dnn;
    struct dnn_algo *e = &d->cache[d->next];

    ASSERT(len <= DNN_KEY_BYTES);
    d->next = (d->next + 1) % DNN_CACHE;
    memcpy(e->key, key, len);
    e->key_len = len;
    e->algo = algo;
    e->ws = ws;
    e->direct = direct;
    e->valid = true;
    return e;
}

bool dnn_pick(cudnnHandle_t h, cudnnTensorDescriptor_t xd, cudnnFilterDescriptor_t wd,
              cudnnConvolutionDescriptor_t cd, cudnnTensorDescriptor_t yd, size_t cap,
              cudnnConvolutionFwdAlgo_t *algo)
{
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0;

    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, xd, wd, cd, yd,
                                                       CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got,
                                                       perf));
    for (int i = 0; i < got; i++) {
        if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > cap)
            continue;
        /* determinism first: skip algorithms cuDNN marks non-deterministic */
        if (perf[i].determinism != CUDNN_DETERMINISTIC)
            continue;
        *algo = perf[i].algo;
        return true;
    }
    return false;
}

cudnnDataType_t dnn_dtype(enum dtype dt)
{
    switch (dt) {
    case DTYPE_F16:  return CUDNN_DATA_HALF;
    case DTYPE_BF16: return CUDNN_DATA_BFLOAT16;
    default:         return CUDNN_DATA_FLOAT;
    }
}

size_t dnn_ws_cap(const struct arena *scratch)
{
    return scratch->size > scratch->used + 2 * ARENA_ALIGN
               ? (scratch->size - scratch->used - 2 * ARENA_ALIGN) & ~(size_t)255 : 0;
}

// ----------------------------------------------------------------------------
// conv2d

struct conv_key {
    int     op;                         /* 2: tells the 2-D keys from the 3-D ones */
    int     stride, pad, dt;
    int64_t N, Ci, H, W, Co, KH, KW;
    size_t  ws_cap;
};

template <typename T>
__global__ void pad_replicate_kernel(T *out, const T *in, int64_t P, int H, int W, int pad)
{
    int Hp = H + 2 * pad, Wp = W + 2 * pad;
    int64_t n = P * Hp * Wp;
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int j = (int)(e % Wp), i = (int)((e / Wp) % Hp);
        int64_t p = e / ((int64_t)Wp * Hp);
        int si = min(max(i - pad, 0), H - 1), sj = min(max(j - pad, 0), W - 1);
        out[e] = in[(p * H + si) * W + sj];
    }
}

template <typename T>
__global__ void bias_relu_kernel(T *y, const void *b, enum dtype bt, int64_t C, int64_t S,
                                 int64_t n, bool relu)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        float v = to_f32(y[e]);
        if (b)
            v += load_dt(b, bt, (e / S) % C);
        if (relu)
            v = fmaxf(v, 0.0f);
        y[e] = from_f32<T>(v);
    }
}

size_t op_conv2d_scratch_bytes(const struct tensor *y, const struct tensor *x, int pad,
                               enum op_pad_mode mode)
{
    int64_t N = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];

    if (tensor_numel(y) == 0 || mode != OP_PAD_REPLICATE || pad == 0)
        return 0;
    return arena_round((size_t)(N * Ci * (H + 2 * pad) * (W + 2 * pad)) * dtype_size(x->dtype));
}

void op_conv2d_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                    const struct tensor *x, const struct tensor *w, const struct tensor *b,
                    int stride, int pad, enum op_pad_mode mode, bool relu)
{
    op_check_dense("conv2d.x", x, DEVICE_CUDA);
    op_check_dense("conv2d.w", w, DEVICE_CUDA);
    op_check_dense("conv2d.y", y, DEVICE_CUDA);
    ASSERT(x->ndim == 4 && w->ndim == 4 && y->ndim == 4);
    ASSERT(w->dtype == x->dtype && y->dtype == x->dtype);
    ASSERT(scratch && scratch->kind == ARENA_DEVICE && stride >= 1 && pad >= 0);
    int64_t N = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Co = w->shape[0], KH = w->shape[2], KW = w->shape[3];
    ASSERT(w->shape[1] == Ci);
    int64_t Ho = (H + 2 * pad - KH) / stride + 1, Wo = (W + 2 * pad - KW) / stride + 1;
    ASSERT(y->shape[0] == N && y->shape[1] == Co && y->shape[2] == Ho && y->shape[3] == Wo);
    if (b) {
        op_check_dense("conv2d.b", b, DEVICE_CUDA);
        ASSERT(tensor_numel(b) == Co);
    }
    if (tensor_numel(y) == 0)
        return;

    size_t mark = arena_mark(scratch);
    const void *xin = x->data;
    int64_t Hi = H, Wi = W;
    int cpad = pad;
    if (mode == OP_PAD_REPLICATE && pad > 0) {
        Hi = H + 2 * pad;
        Wi = W + 2 * pad;
        void *xp = arena_must_alloc(scratch, (size_t)(N * Ci * Hi * Wi) * dtype_size(x->dtype));
        DISPATCH_1(x->dtype, T,
            pad_replicate_kernel<T><<<grid_for(N * Ci * Hi * Wi, 256), 256, 0, ctx->stream>>>(
                (T *)xp, (const T *)x->data, N * Ci, (int)H, (int)W, pad));
        xin = xp;
        cpad = 0;
    }

    cudnnHandle_t h = dnn_begin(ctx);
    cudnnDataType_t dt = dnn_dtype(x->dtype);
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&xd));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&yd));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&wd));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&cd));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, dt, (int)N, (int)Ci, (int)Hi,
                                           (int)Wi));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, dt, (int)N, (int)Co, (int)Ho,
                                           (int)Wo));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(wd, dt, CUDNN_TENSOR_NCHW, (int)Co, (int)Ci, (int)KH,
                                           (int)KW));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(cd, cpad, cpad, stride, stride, 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(cd, x->dtype == DTYPE_F32 ? CUDNN_FMA_MATH
                                                                       : CUDNN_TENSOR_OP_MATH));

    ASSERT(arena_mark(scratch) - mark == op_conv2d_scratch_bytes(y, x, pad, mode));
    /* free scratch space caps the workspace */
    size_t cap = dnn_ws_cap(scratch);
    struct conv_key key;
    memset(&key, 0, sizeof(key));
    key.op = 2;
    key.N = N; key.Ci = Ci; key.H = Hi; key.W = Wi; key.Co = Co; key.KH = KH; key.KW = KW;
    key.stride = stride; key.pad = cpad; key.dt = (int)x->dtype; key.ws_cap = cap;
    const struct dnn_algo *a = dnn_find(ctx, &key, sizeof(key));
    if (!a) {
        cudnnConvolutionFwdAlgo_t algo;
        size_t ws = 0;
        /* IMPLICIT_GEMM needs no workspace and always qualifies */
        bool found = dnn_pick(h, xd, wd, cd, yd, cap, &algo);
        ASSERT(found);
        CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, xd, wd, cd, yd, algo, &ws));
        a = dnn_store(ctx, &key, sizeof(key), algo, ws, false);
    }
    cudnnConvolutionFwdAlgo_t algo = a->algo;
    size_t ws = a->ws;
    void *wsp = ws ? arena_must_alloc(scratch, ws) : NULL;
    float alpha = 1.0f, beta = 0.0f;
    CUDNN_CHECK(cudnnConvolutionForward(h, &alpha, xd, xin, wd, w->data, cd, algo, wsp, ws,
                                        &beta, yd, y->data));
    CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(cd));
    CUDNN_CHECK(cudnnDestroyFilterDescriptor(wd));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(yd));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(xd));
    dnn_end(ctx);

    if (b || relu) {
        int64_t n = tensor_numel(y);
        DISPATCH_1(y->dtype, T,
            bias_relu_kernel<T><<<grid_for(n, 256), 256, 0, ctx->stream>>>(
                (T *)y->data, b ? b->data : NULL, b ? b->dtype : DTYPE_F32, Co, Ho * Wo, n,
                relu));
    }
    op_done(ctx, "conv2d");
    arena_release(scratch, mark);   /* later users queue on the same stream */
}
