/*
 * attention_bench.cu - workshop for the attention kernels (llm.c dev/cuda style).
 *
 * Build and run (on the GPU machine, from the repository root):
 *     make CUDA_ARCH=90 dev && build/dev/attention_bench            all versions, all shapes
 *     build/dev/attention_bench 3                                   only version 3
 *
 * Versions (kernels in kernels/cuda/attention.cuh, shared with the op):
 *     1  attn_simple_kernel<half>        fp32 CUDA-core kernel (the fallback path)
 *     2  attn_mma_kernel<half, 64>       FA2-style, 4 warps x 16 query rows, 64-key tiles
 *     3  attn_mma_kernel<half, 128>      FA2-style, 8 warps x 16 query rows, 64-key tiles
 *     4  attn_mma_kernel<bf16, 64>       as 2 in bf16
 * The op (kernels/cuda/attention.cu, ATTN_MMA_BM) uses the winner of 2 vs 3.
 *
 * Every version is validated against the CPU reference (op_attention_cpu) on
 * the first 64 and last 64 query rows of batch item 0 before it is timed
 * (CUDA events, median of 20 runs after 3 warm-ups). TFLOP/s counts
 * 4 B H Tq Tk 64 (QK^T and PV); the H200's dense fp16 tensor peak is ~990
 * (~790 measured for cuBLAS bf16 GEMM on this workplace's machines).
 */
#include "cuda/attention.cuh"

#include "arena.h"
#include "log.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct shape {
    const char *name;
    int         B, Tq, Tk, H;
    bool        fused;   /* q, k, v from one (B, T, 3, H, 64); else q + fused kv */
};

static const struct shape SHAPES[] = {
    {"dinov2 self 1374", 1, 1374, 1374, 16, true},
    {"ss-flow self 4096 (cfg 2)", 2, 4096, 4096, 16, true},
    {"ss-flow cross 4096x7528 (cfg 2)", 2, 4096, 7528, 16, false},
    {"slat-flow self 26000", 1, 26000, 26000, 16, true},
    {"short q 4 x 4100", 1, 4, 4100, 16, false},
};

static const char *VERSION_NAMES[] = {"", "simple fp32", "mma BM64 f16", "mma BM128 f16", "mma BM64 bf16"};
#define NVERSIONS 4

static void launch(int version, const struct attn_params *p, int B, int H, int Tq, cudaStream_t st)
{
    switch (version) {
    case 1: {
        dim3 grid((Tq + ATTN_SIMPLE_ROWS - 1) / ATTN_SIMPLE_ROWS, H, B);
        attn_simple_kernel<__half><<<grid, 32 * ATTN_SIMPLE_ROWS, 0, st>>>(*p);
        break;
    }
    case 2: {
        dim3 grid((Tq + 63) / 64, H, B);
        attn_mma_kernel<__half, 64><<<grid, 128, 0, st>>>(*p);
        break;
    }
    case 3: {
        dim3 grid((Tq + 127) / 128, H, B);
        attn_mma_kernel<__half, 128><<<grid, 256, 0, st>>>(*p);
        break;
    }
    case 4: {
        dim3 grid((Tq + 63) / 64, H, B);
        attn_mma_kernel<__nv_bfloat16, 64><<<grid, 128, 0, st>>>(*p);
        break;
    }
    }
    CUDA_CHECK(cudaGetLastError());
}

/* Random host data of dt (rounded), n elements; returns the raw buffer. */
static void *host_random(enum dtype dt, size_t n, uint64_t seed)
{
    float *f = (float *)malloc(sizeof(float) * n);
    void  *h = malloc(n * dtype_size(dt));
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;

    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        f[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 4.0 - 2.0);
    }
    dtype_convert(h, dt, f, DTYPE_F32, n);
    free(f);
    return h;
}

/* Max |gpu - cpu| over rows [r0, r0 + n) of batch 0; CPU op on host views. */
static double validate(const struct shape *s, enum dtype dt, const void *ha, const void *hb,
                       const void *hout, int r0, int n)
{
    int64_t D = 64, H = s->H;
    struct tensor q, k, v, o;

    const int64_t sf[5] = {1, s->Tq, 3, H, D}, sq[4] = {1, s->Tq, H, D}, skv[5] = {1, s->Tk, 2, H, D};
    const int64_t so[4] = {1, n, H, D};

    if (s->fused) {
        struct tensor t = tensor_view((void *)ha, dt, DEVICE_HOST, sf, 5);
        q = op_heads_view(&t, 0);
        k = op_heads_view(&t, 1);
        v = op_heads_view(&t, 2);
    } else {
        struct tensor tq = tensor_view((void *)ha, dt, DEVICE_HOST, sq, 4);
        struct tensor t = tensor_view((void *)hb, dt, DEVICE_HOST, skv, 5);
        q = tq;
        k = op_heads_view(&t, 0);
        v = op_heads_view(&t, 1);
    }
    q = tensor_slice(&q, 1, r0, n);
    void *ref = malloc((size_t)(n * H * D) * dtype_size(dt));
    o = tensor_view(ref, dt, DEVICE_HOST, so, 4);
    op_attention_cpu(&o, &q, &k, &v, 0.125f);
    double worst = 0;
    for (int64_t i = 0; i < n * H * D; i++) {
        double g = dtype_get(hout, dt, (size_t)(r0 * H * D + i)), r = dtype_get(ref, dt, (size_t)i);
        double e = fabs(g - r);
        if (!(e <= worst))           /* NaN counts as the worst */
            worst = isnan(e) ? INFINITY : e;
    }
    free(ref);
    return worst;
}

int main(int argc, char **argv)
{
    int only = argc > 1 ? atoi(argv[1]) : 0;
    struct arena a;
    cudaStream_t st;
    cudaEvent_t  e0, e1;

    log_init("attention_bench");
    if (!s3d_cuda_available()) {
        printf("no CUDA device\n");
        return 1;
    }
    if (arena_init(&a, ARENA_DEVICE, "bench", (size_t)4 << 30) != 0)
        return 1;
    CUDA_CHECK(cudaStreamCreate(&st));
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    printf("%-34s %-15s %10s %9s %10s\n", "shape", "version", "ms", "TFLOP/s", "max_err");

    for (size_t si = 0; si < sizeof(SHAPES) / sizeof(SHAPES[0]); si++) {
        const struct shape *s = &SHAPES[si];
        for (int ver = 1; ver <= NVERSIONS; ver++) {
            if (only && ver != only)
                continue;
            enum dtype dt = ver == 4 ? DTYPE_BF16 : DTYPE_F16;
            int64_t D = 64, H = s->H;
            size_t na = s->fused ? (size_t)s->B * s->Tq * 3 * H * D : (size_t)s->B * s->Tq * H * D;
            size_t nb = s->fused ? 0 : (size_t)s->B * s->Tk * 2 * H * D;
            size_t no = (size_t)s->B * s->Tq * H * D, es = dtype_size(dt);
            size_t mark = arena_mark(&a);
            void *ha = host_random(dt, na, 1 + si), *hb = nb ? host_random(dt, nb, 100 + si) : NULL;
            char *da = (char *)arena_must_alloc(&a, na * es);
            char *db = nb ? (char *)arena_must_alloc(&a, nb * es) : NULL;
            char *dout = (char *)arena_must_alloc(&a, no * es);
            CUDA_CHECK(cudaMemcpy(da, ha, na * es, cudaMemcpyHostToDevice));
            if (nb)
                CUDA_CHECK(cudaMemcpy(db, hb, nb * es, cudaMemcpyHostToDevice));

            struct attn_params p;
            memset(&p, 0, sizeof(p));
            if (s->fused) {
                int64_t st3 = 3 * H * D;
                p.q = da;  p.k = da + H * D * es;  p.v = da + 2 * H * D * es;
                p.q_sb = p.k_sb = p.v_sb = s->Tq * st3;
                p.q_st = p.k_st = p.v_st = st3;
                p.q_sh = p.k_sh = p.v_sh = D;
            } else {
                p.q = da;  p.q_sb = (int64_t)s->Tq * H * D;  p.q_st = H * D;  p.q_sh = D;
                p.k = db;  p.v = db + H * D * es;
                p.k_sb = p.v_sb = (int64_t)s->Tk * 2 * H * D;
                p.k_st = p.v_st = 2 * H * D;
                p.k_sh = p.v_sh = D;
            }
            p.o = dout;  p.o_sb = (int64_t)s->Tq * H * D;  p.o_st = H * D;  p.o_sh = D;
            p.Tq = s->Tq;
            p.Tk = s->Tk;
            p.scale = 0.125f;

            launch(ver, &p, s->B, s->H, s->Tq, st);
            CUDA_CHECK(cudaStreamSynchronize(st));
            void *hout = malloc(no * es);
            CUDA_CHECK(cudaMemcpy(hout, dout, no * es, cudaMemcpyDeviceToHost));
            int nv = s->Tq < 64 ? s->Tq : 64;
            double err = validate(s, dt, ha, hb, hout, 0, nv);
            double err2 = validate(s, dt, ha, hb, hout, s->Tq - nv, nv);
            err = err2 > err ? err2 : err;

            float times[20];
            for (int w = 0; w < 3; w++)
                launch(ver, &p, s->B, s->H, s->Tq, st);
            for (int r = 0; r < 20; r++) {
                CUDA_CHECK(cudaEventRecord(e0, st));
                launch(ver, &p, s->B, s->H, s->Tq, st);
                CUDA_CHECK(cudaEventRecord(e1, st));
                CUDA_CHECK(cudaEventSynchronize(e1));
                CUDA_CHECK(cudaEventElapsedTime(&times[r], e0, e1));
            }
            for (int i = 1; i < 20; i++)             /* insertion sort for the median */
                for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
                    float t = times[j];
                    times[j] = times[j - 1];
                    times[j - 1] = t;
                }
            double ms = times[10];
            double flop = 4.0 * s->B * s->H * (double)s->Tq * s->Tk * 64;
            printf("%-34s %-15s %10.3f %9.1f %10.2e%s\n", s->name, VERSION_NAMES[ver], ms,
                   flop / (ms * 1e-3) / 1e12, err, err > 2e-2 ? "  WRONG" : "");
            fflush(stdout);
            free(ha);
            free(hb);
            free(hout);
            arena_release(&a, mark);
        }
    }
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    CUDA_CHECK(cudaStreamDestroy(st));
    arena_free(&a);
    return 0;
}
