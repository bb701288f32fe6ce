/*
 * ctx.cu - the CUDA context every op runs in: stream, cuBLASLt handle, cuDNN state,
 * workspace from a device arena, S3D_SYNC, S3D_PROFILE (prof.h), the per-thread
 * stack limit lowered to what kernels need. See ops.h.
 */
#include "common.cuh"
#include "dnn.cuh"

#include "arena.h"
#include "err.h"

#include <stdlib.h>
#include <string.h>

#define OP_STACK_BYTES 128   /* cudaLimitStackSize per thread (see op_ctx_init) */

int op_ctx_init(struct op_ctx *ctx, struct arena *dev, size_t workspace_bytes)
{
    const char *sync = getenv("S3D_SYNC");

    memset(ctx, 0, sizeof(*ctx));
    if (!s3d_cuda_available()) {
        log_error("op context: no usable CUDA device; HINT: run with --device cpu");
        return S3D_EDEVICE;
    }
    if (workspace_bytes) {
        ASSERT(dev && dev->kind == ARENA_DEVICE);
        ctx->workspace = arena_alloc(dev, workspace_bytes);
        if (!ctx->workspace) {
            log_error("op context: arena %s cannot hold a %zu-byte cuBLASLt workspace "
                      "(%zu of %zu used); HINT: size the arena for it", dev->name,
                      workspace_bytes, dev->used, dev->size);
            return S3D_ENOMEM;
        }
        ctx->workspace_size = workspace_bytes;
    }
    /* The driver reserves the per-thread stack for every resident thread of the
     * device (1 KiB default: ~264 MiB on an H100); our kernels and cuBLASLt's
     * need less, and a kernel that needs more grows it at its launch. */
    if (cudaDeviceSetLimit(cudaLimitStackSize, OP_STACK_BYTES) != cudaSuccess) {
        (void)cudaGetLastError();              /* not fatal: the default reservation stays */
        log_warn("op context: the per-thread stack limit stays at the driver's default");
    }
    CUDA_CHECK(cudaStreamCreate(&ctx->stream));
    CUBLAS_CHECK(cublasLtCreate(&ctx->lt));
    ctx->dnn = dnn_new();
    ctx->gemm = gemm_cache_new();
    ctx->sync = sync && *sync && strcmp(sync, "0") != 0;
    op_prof_init();
    return 0;
}

void op_ctx_free(struct op_ctx *ctx)
{
    if (!ctx)
        return;
    dnn_free(ctx->dnn);
    gemm_cache_free(ctx->gemm);
    if (ctx->lt)
        CUBLAS_CHECK(cublasLtDestroy(ctx->lt));
    if (ctx->stream)
        CUDA_CHECK(cudaStreamDestroy(ctx->stream));
    memset(ctx, 0, sizeof(*ctx));
}

void op_ctx_synchronize(const struct op_ctx *ctx)
{
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
}
