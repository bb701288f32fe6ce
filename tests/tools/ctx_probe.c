/*
 * ctx_probe.c - where the device memory of a stage process goes before its
 * arenas: the bare CUDA context, the per-thread stack (local memory) reserve,
 * the cuBLASLt handle, the first launch of one of our kernels and of a cuBLASLt
 * GEMM (lazy module loading), each as the driver counts it.
 *
 * Build and run (on the GPU machine, alone on the GPU, from the repository root;
 * tools/gpu/slat_perf.sh runs it):
 *     make CUDA_ARCH=90 build/tests/tools/ctx_probe && build/tests/tools/ctx_probe
 *
 * Each line: the step, the device's used bytes (total - free of cudaMemGetInfo:
 * every process on the device, so run it alone) and the change since the line
 * before, and this process's own count from `nvidia-smi --query-compute-apps`
 * (the figure plugin_*.py's driver peaks read; includes the context). Also
 * prints the context limits (stack size, printf FIFO, malloc heap) and what
 * the stack limit at 128 B / 4 KiB / 1 KiB costs (the driver reserves stack x
 * resident threads; a kernel needing more grows it at launch); op_ctx_init
 * sets 128 B.
 */
#include "arena.h"
#include "check.h"
#include "log.h"
#include "ops.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t prev_used;

/* This process's used_memory in MiB from nvidia-smi, or -1. */
static long smi_mib(void)
{
    char cmd[128], line[256];
    long mib = -1;

    snprintf(cmd, sizeof(cmd), "nvidia-smi --query-compute-apps=pid,used_memory "
             "--format=csv,noheader,nounits 2>/dev/null");
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    while (fgets(line, sizeof(line), p)) {
        long pid = 0, m = 0;
        if (sscanf(line, "%ld, %ld", &pid, &m) == 2 && pid == (long)getpid())
            mib = m;
    }
    pclose(p);
    return mib;
}

static void step(const char *what)
{
    size_t fr = 0, tot = 0;

    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemGetInfo(&fr, &tot));
    size_t used = tot - fr;
    printf("%-46s device used %8.1f MiB (%+7.1f)  this process (nvidia-smi) %ld MiB\n", what,
           used / 1048576.0, ((double)used - (double)prev_used) / 1048576.0, smi_mib());
    fflush(stdout);
    prev_used = used;
}

int main(void)
{
    size_t v;

    log_init("ctx_probe");
    CUDA_CHECK(cudaFree(0));
    step("context (cudaFree(0))");
    CUDA_CHECK(cudaDeviceGetLimit(&v, cudaLimitStackSize));
    printf("  limits: stack %zu B/thread", v);
    CUDA_CHECK(cudaDeviceGetLimit(&v, cudaLimitPrintfFifoSize));
    printf(", printf FIFO %zu B", v);
    CUDA_CHECK(cudaDeviceGetLimit(&v, cudaLimitMallocHeapSize));
    printf(", malloc heap %zu B\n", v);

    if (cudaDeviceSetLimit(cudaLimitStackSize, 128) != cudaSuccess)
        printf("  cudaDeviceSetLimit(stack, 128): %s\n", cudaGetErrorString(cudaGetLastError()));
    step("+ stack limit 128 B/thread");
    if (cudaDeviceSetLimit(cudaLimitStackSize, 4096) != cudaSuccess)
        printf("  cudaDeviceSetLimit(stack, 4096): %s\n", cudaGetErrorString(cudaGetLastError()));
    step("+ stack limit 4 KiB/thread");
    if (cudaDeviceSetLimit(cudaLimitStackSize, 1024) != cudaSuccess)
        printf("  cudaDeviceSetLimit(stack, 1024): %s\n", cudaGetErrorString(cudaGetLastError()));
    step("+ stack limit 1 KiB/thread (the default)");

    float *d = NULL;
    CUDA_CHECK(cudaMalloc((void **)&d, 1 << 20));
    step("+ cudaMalloc 1 MiB");

    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreate(&st));
    step("+ cudaStreamCreate");
    cublasLtHandle_t lt;
    if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "ctx_probe: cublasLtCreate failed\n");
        return 1;
    }
    step("+ cublasLtCreate");

    /* one fp16 GEMM of the transformer's shape through our op (cuBLASLt, lazy kernels) */
    struct arena dev;
    const int64_t M = 1024, K = 1024, N = 3072;
    if (arena_init(&dev, ARENA_DEVICE, "probe", (size_t)64 << 20)) {
        fprintf(stderr, "ctx_probe: no 64 MiB arena\n");
        return 1;
    }
    struct op_ctx ctx;
    if (op_ctx_init(&ctx, &dev, (size_t)32 << 20))
        return 1;
    step("+ 64 MiB arena, op context (stack limit 128 B, stream, cuBLASLt)");
    struct tensor t = arena_tensor(&dev, DTYPE_F16, SHAPE(32));
    op_act(&ctx, &t, &t, OP_ACT_SILU);
    step("+ first launch of one of our kernels (module load)");
    struct tensor x = arena_tensor(&dev, DTYPE_F16, SHAPE(M, K));
    struct tensor w = arena_tensor(&dev, DTYPE_F16, SHAPE(N, K));
    struct tensor y = arena_tensor(&dev, DTYPE_F16, SHAPE(M, N));
    CUDA_CHECK(cudaMemset(x.data, 0, tensor_nbytes(&x)));
    CUDA_CHECK(cudaMemset(w.data, 0, tensor_nbytes(&w)));
    op_linear(&ctx, &y, &x, &w, NULL, false);
    step("+ first fp16 GEMM (cuBLASLt kernel load)");
    op_linear_gelu(&ctx, &y, &x, &w, NULL);
    step("+ first GELU-epilogue GEMM");

    op_ctx_free(&ctx);
    arena_free(&dev);
    cublasLtDestroy(lt);
    CUDA_CHECK(cudaStreamDestroy(st));
    CUDA_CHECK(cudaFree(d));
    step("after freeing everything but the context");
    return 0;
}
