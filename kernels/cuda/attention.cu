/*
 * attention.cu - op_attention_cuda and op_attention_varlen_cuda. See ops.h; the
 * kernels and their design are in attention.cuh and attention_v2.cuh, their
 * timings in kernels/dev/attention_bench.cu.
 */
#include "attention.cuh"
#include "attention_v2.cuh"

#include <stdlib.h>
#include <string.h>

#include <type_traits>

/* Tensor-core tile height (query rows per block), chosen with the bench. */
#define ATTN_MMA_BM 64

/* The tensor-core kernel takes two m-tiles per warp (BM 128, 4 warps) for
 * queries of at least ATTN_MT2_MIN_TQ rows and one (BM 64) below: on an H100
 * the SLAT flow sampler (M = 5941 tokens) ran 1643 ms with two against 1765 ms
 * with one, with the same error (docs/performance.md). S3D_ATTN_MT=1 or 2
 * forces one variant (read at every launch, so a test can switch it). */
#define ATTN_MT2_MIN_TQ 1024

/* v1's choice by query length. */
static enum attn_kernel attn_v1_kernel(int max_tq)
{
    return max_tq >= ATTN_MT2_MIN_TQ ? ATTN_KERNEL_V1_MT2 : ATTN_KERNEL_V1_MT1;
}

/* Query length from which the default is v4 (S = QK^T and P V on wgmma), below it v2s. */
#define ATTN_V4_MIN_TQ 1024

/* The kernel when no variable names one: the one place the default is chosen.
 * tools/gpu/attn_bench.sh on an H100 (docs/performance.md "Attention kernel",
 * binaries of 6402e4b): v4 is the fastest from DINOv2's 1374 query rows up
 * (0.038 ms vs v2s 0.042; the flows' self and cross attention 1.15-1.19x v3,
 * 394-415 TFLOP/s), v2s below (swin windows of <= 198 tokens: 0.112 vs v4 0.136
 * ms; a 4-row query block 0.055 vs 0.080); v4 is v2 off Hopper. */
static enum attn_kernel attn_default_kernel(int max_tq)
{
    return max_tq >= ATTN_V4_MIN_TQ ? ATTN_KERNEL_V4 : ATTN_KERNEL_V2S;
}

/* S3D_ATTN_KERNEL (read at every launch): v1 (attn_mma_kernel, m-tiles per
 * warp as above; S3D_ATTN_MT set also means v1) or v2 / v2b / v2s
 * (attn_v2_kernel for every tensor-core launch, attention_v2.cuh) or v3 / v4
 * (attention_wg.cu) or split (attention_split.cu for dense blocks of at most
 * 16 queries, the default kernel elsewhere; not the default until timed on a
 * GPU). Neither variable set: attn_default_kernel (v4 / v2s).
 * An unknown value warns once and takes v1. */
static enum attn_kernel attn_kernel_env(int max_tq)
{
    static bool warned;
    const char *k = getenv("S3D_ATTN_KERNEL"), *e = getenv("S3D_ATTN_MT");

    if (k && !strcmp(k, "v2"))
        return ATTN_KERNEL_V2;
    if (k && !strcmp(k, "v2b"))
        return ATTN_KERNEL_V2B;
    if (k && !strcmp(k, "v2s"))
        return ATTN_KERNEL_V2S;
    if (k && !strcmp(k, "v3"))
        return ATTN_KERNEL_V3;
    if (k && !strcmp(k, "v4"))
        return ATTN_KERNEL_V4;
    if (k && !strcmp(k, "split"))
        return ATTN_KERNEL_SPLIT;
    if (k && strcmp(k, "v1") && !warned) {
        log_warn("S3D_ATTN_KERNEL=%s: not a kernel (v1, v2, v2b, v2s, v3, v4 or split); using v1",
                 k);
        warned = true;
    }
    if (e && !strcmp(e, "1"))
        return ATTN_KERNEL_V1_MT1;
    if (e && !strcmp(e, "2"))
        return ATTN_KERNEL_V1_MT2;
    return k ? attn_v1_kernel(max_tq) : attn_default_kernel(max_tq);
}

/* attn_rows_16b, attn_launch and attn_launch_kernel: see attention.cuh. */
bool attn_rows_16b(const void *base, const int64_t *strides, int n)
{
    if ((uintptr_t)base % 16)
        return false;
    for (int i = 0; i < n; i++)
        if (strides[i] % 8)
            return false;
    return true;
}

/* attn_v2_kernel<T, MT, BN, QREG, MINB> over sequences B x heads H of at most
 * max_tq queries: dynamic shared memory, raised past the default 48 KiB once
 * per instantiation (one device per process). */
template <typename T, int MT, int BN, bool QREG, int MINB>
static void attn_v2_launch(cudaStream_t st, const struct attn_params *p, int B, int H, int max_tq)
{
    static bool raised;
    size_t smem = attn_v2_smem(MT, BN, sizeof(T));
    dim3   grid((unsigned)((max_tq + ATTN_V2_BM(MT) - 1) / ATTN_V2_BM(MT)), (unsigned)H,
                (unsigned)B);

    if (!raised) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_v2_kernel<T, MT, BN, QREG, MINB>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        raised = true;
    }
    attn_v2_kernel<T, MT, BN, QREG, MINB><<<grid, ATTN_V2_NT, smem, st>>>(*p);
}

/* The tensor-core kernel kern (not DEFAULT) in element type T. */
template <typename T>
static void attn_mma_launch(cudaStream_t st, const struct attn_params *p, int B, int H, int max_tq,
                            enum attn_kernel kern)
{
    switch (kern) {
    case ATTN_KERNEL_V1_MT2: {                   /* 4 warps x 2 m-tiles: 128 rows */
        dim3 grid((unsigned)((max_tq + 127) / 128), (unsigned)H, (unsigned)B);
        attn_mma_kernel<T, 128, 2><<<grid, 128, 0, st>>>(*p);
        return;
    }
    case ATTN_KERNEL_V2:                         /* 4 warps x 2 m-tiles, 64-key tiles */
        attn_v2_launch<T, 2, 64, true, 2>(st, p, B, H, max_tq);
        return;
    case ATTN_KERNEL_V2B:                        /* 4 warps x 2 m-tiles, 128-key tiles */
        attn_v2_launch<T, 2, 128, false, 2>(st, p, B, H, max_tq);
        return;
    case ATTN_KERNEL_V2S:                        /* 4 warps x 1 m-tile: 64 rows a block */
        attn_v2_launch<T, 1, 64, true, 4>(st, p, B, H, max_tq);
        return;
    case ATTN_KERNEL_V3:                         /* v2 with Q K^T on wgmma; v2 off Hopper */
    case ATTN_KERNEL_V4: {                       /* ... and P V on wgmma, pipelined */
        static bool warned;
        if (attn_wg_launch(st, p, std::is_same<T, __half>::value, B, H, max_tq,
                           kern == ATTN_KERNEL_V4))
            return;
        if (!warned && getenv("S3D_ATTN_KERNEL")) {   /* the default goes quietly */
            log_warn("S3D_ATTN_KERNEL=%s needs a compute capability 9.0 GPU: using v2",
                     kern == ATTN_KERNEL_V4 ? "v4" : "v3");
            warned = true;
        }
        attn_v2_launch<T, 2, 64, true, 2>(st, p, B, H, max_tq);
        return;
    }
    default: {                                   /* ATTN_KERNEL_V1_MT1 */
        dim3 grid((unsigned)((max_tq + ATTN_MMA_BM - 1) / ATTN_MMA_BM), (unsigned)H, (unsigned)B);
        attn_mma_kernel<T, ATTN_MMA_BM><<<grid, ATTN_MMA_BM * 2, 0, st>>>(*p);
        return;
    }
    }
}

void attn_launch_kernel(cudaStream_t st, const struct attn_params *p, enum dtype dt, int B, int H,
                        int max_tq, bool mma_ok, enum attn_kernel kern, void *ws,
                        size_t ws_bytes)
{
    ASSERT(B <= 65535 && H <= 65535);
    if (kern == ATTN_KERNEL_SPLIT) {
        if (attn_split_launch(st, p, dt, B, H, mma_ok, ws, ws_bytes))
            return;
        kern = ATTN_KERNEL_DEFAULT;
    }
    if (dt == DTYPE_F32 || !mma_ok) {
        dim3 grid((unsigned)((max_tq + ATTN_SIMPLE_ROWS - 1) / ATTN_SIMPLE_ROWS), (unsigned)H,
                  (unsigned)B);
        DISPATCH_1(dt, T, attn_simple_kernel<T><<<grid, 32 * ATTN_SIMPLE_ROWS, 0, st>>>(*p));
        return;
    }
    if (kern == ATTN_KERNEL_DEFAULT)
        kern = attn_default_kernel(max_tq);
    if (dt == DTYPE_F16)
        attn_mma_launch<__half>(st, p, B, H, max_tq, kern);
    else
        attn_mma_launch<__nv_bfloat16>(st, p, B, H, max_tq, kern);
}

void attn_launch(const struct op_ctx *ctx, const struct attn_params *p, enum dtype dt, int B, int H,
                 int max_tq, bool mma_ok)
{
    attn_launch_kernel(ctx->stream, p, dt, B, H, max_tq, mma_ok, attn_kernel_env(max_tq),
                       ctx->workspace, ctx->workspace_size);
}

void op_attention_cuda(const struct op_ctx *ctx, struct tensor *o, const struct tensor *q,
                       const struct tensor *k, const struct tensor *v, float scale)
{
    struct attn_params p;

    op_check_attention(o, q, k, v, 4, DEVICE_CUDA);
    int64_t B = q->shape[0], Tq = q->shape[1], H = q->shape[2], Tk = k->shape[1];
    ASSERT(k->shape[0] == B && Tq < (1ll << 31) && Tk < (1ll << 31));
    if (B == 0 || Tq == 0 || H == 0)
        return;
    memset(&p, 0, sizeof(p));
    p.q = q->data;  p.q_sb = q->stride[0];  p.q_st = q->stride[1];  p.q_sh = q->stride[2];
    p.k = k->data;  p.k_sb = k->stride[0];  p.k_st = k->stride[1];  p.k_sh = k->stride[2];
    p.v = v->data;  p.v_sb = v->stride[0];  p.v_st = v->stride[1];  p.v_sh = v->stride[2];
    p.o = o->data;  p.o_sb = Tq * H * OP_HEAD_DIM;  p.o_st = H * OP_HEAD_DIM;  p.o_sh = OP_HEAD_DIM;
    p.Tq = (int)Tq;
    p.Tk = (int)Tk;
    p.scale = scale;
    bool mma_ok = attn_rows_16b(q->data, q->stride, 3) && attn_rows_16b(k->data, k->stride, 3) &&
                  attn_rows_16b(v->data, v->stride, 3) && attn_rows_16b(o->data, o->stride, 3);
    attn_launch(ctx, &p, q->dtype, (int)B, (int)H, (int)Tq, mma_ok);
    op_done(ctx, "attention");
}

void op_attention_varlen_cuda(const struct op_ctx *ctx, struct tensor *o, const struct tensor *q,
                              const struct tensor *k, const struct tensor *v,
                              const struct tensor *q_off, const struct tensor *k_off,
                              int max_tq, float scale)
{
    struct attn_params p;

    op_check_attention(o, q, k, v, 3, DEVICE_CUDA);
    ASSERT(q_off->dtype == DTYPE_I32 && k_off->dtype == DTYPE_I32);
    ASSERT(q_off->device == DEVICE_CUDA && k_off->device == DEVICE_CUDA);
    ASSERT(tensor_is_contiguous(q_off) && tensor_is_contiguous(k_off));
    int64_t n = tensor_numel(q_off) - 1, H = q->shape[1];
    ASSERT(n >= 0 && tensor_numel(k_off) == n + 1 && max_tq >= 0);
    if (n == 0 || max_tq == 0 || H == 0)
        return;
    memset(&p, 0, sizeof(p));
    p.q = q->data;  p.q_st = q->stride[0];  p.q_sh = q->stride[1];
    p.k = k->data;  p.k_st = k->stride[0];  p.k_sh = k->stride[1];
    p.v = v->data;  p.v_st = v->stride[0];  p.v_sh = v->stride[1];
    p.o = o->data;  p.o_st = H * OP_HEAD_DIM;  p.o_sh = OP_HEAD_DIM;
    p.q_off = (const int *)q_off->data;
    p.k_off = (const int *)k_off->data;
    p.scale = scale;
    bool mma_ok = attn_rows_16b(q->data, q->stride, 2) && attn_rows_16b(k->data, k->stride, 2) &&
                  attn_rows_16b(v->data, v->stride, 2) && attn_rows_16b(o->data, o->stride, 2);
    attn_launch(ctx, &p, q->dtype, (int)n, (int)H, max_tq, mma_ok);
    op_done(ctx, "attention_varlen");
}
