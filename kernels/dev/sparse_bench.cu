/*
 * sparse_bench.cu - workshop for the sparse ops (kernels/cuda/sparse.cu) on the
 * real shapes of the SLAT flow and the mesh decoder.
 *
 * Build and run (on the GPU machine, from the repository root):
 *     make CUDA_ARCH=90 dev && build/dev/sparse_bench            every shape
 *     build/dev/sparse_bench 2                                   only shape 2
 *
 * Sites: a spherical shell (thickness set so that the count is near the target)
 * in lexicographic order, as the SS stage hands them over; the subdivided mesh
 * decoder levels are the 8x children of such a shell, in subdivide row order.
 * Each conv is validated against a host loop on 64 rows spread over the set,
 * then timed (CUDA events, median of 10 after 2 warm-ups). Two rates are
 * printed: "dense" counts 2 T 27 Cin Cout (what the im2col GEMM multiplies),
 * "useful" counts only the active neighbour pairs (what spconv's count would
 * be); their ratio is the work spent on missing neighbours. Also timed: the
 * neighbour map build and the downsample index (which syncs once).
 */
#include "arena.h"
#include "check.h"
#include "log.h"
#include "ops_sparse.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_fp16.h>

struct shape {
    const char *name;
    int         res;        /* grid of the shell */
    int         target;     /* about this many shell sites */
    int         subdiv;     /* 0, or 1/2: children of the shell at 2x / 4x (mesh decoder) */
    int         Cin, Cout;
};

static const struct shape SHAPES[] = {
    {"slat in0 128->128 @64", 64, 26000, 0, 128, 128},
    {"slat in1 1024->1024 @32", 32, 7500, 0, 1024, 1024},
    {"slat out0 2048->128 @64", 64, 26000, 0, 2048, 128},
    {"slat out1 256->128 @64", 64, 26000, 0, 256, 128},
    {"mesh up0 768->192 @128", 64, 20000, 1, 768, 192},
    {"mesh up1 192->96 @256", 64, 20000, 2, 192, 96},
};

/* shell sites (b=0) in lexicographic order, then subdivided `subdiv` times */
static int32_t *shell(int res, int target, int subdiv, int64_t *T)
{
    double c = (res - 1) / 2.0, r = 0.42 * res, th = 1.0;
    int32_t *out = NULL;
    int64_t n = 0;
    for (int it = 0; it < 40; it++) {
        n = 0;
        for (int x = 0; x < res; x++)
            for (int y = 0; y < res; y++)
                for (int z = 0; z < res; z++) {
                    double d = sqrt((x - c) * (x - c) + (y - c) * (y - c) + (z - c) * (z - c));
                    n += fabs(d - r) <= th / 2;
                }
        if (n >= target)
            break;
        th *= 1.15;
    }
    out = (int32_t *)malloc((sizeof(int32_t) * 4 * (size_t)n) << (3 * subdiv));
    ASSERT(out);
    int64_t k = 0;
    for (int x = 0; x < res; x++)
        for (int y = 0; y < res; y++)
            for (int z = 0; z < res; z++) {
                double d = sqrt((x - c) * (x - c) + (y - c) * (y - c) + (z - c) * (z - c));
                if (fabs(d - r) <= th / 2) {
                    int32_t row[4] = {0, x, y, z};
                    memcpy(out + 4 * k++, row, sizeof(row));
                }
            }
    for (int s = 0; s < subdiv; s++) {          /* in place, back to front */
        for (int64_t i = k - 1; i >= 0; i--) {
            int32_t p[4];
            memcpy(p, out + 4 * i, sizeof(p));
            for (int j = 0; j < 8; j++) {
                int32_t *q = out + 4 * (8 * i + j);
                q[0] = 0;
                q[1] = 2 * p[1] + (j >> 2);
                q[2] = 2 * p[2] + ((j >> 1) & 1);
                q[3] = 2 * p[3] + (j & 1);
            }
        }
        k *= 8;
    }
    *T = k;
    return out;
}

/* arena_tensor with the shape as arguments (C++ has no compound literals for SHAPE) */
static struct tensor dtens(struct arena *a, enum dtype dt, int64_t d0, int64_t d1, int64_t d4 = 0)
{
    const int64_t s2[2] = {d0, d1}, s5[5] = {d0, 3, 3, 3, d4};

    if (d1 == 0)
        return arena_tensor(a, dt, s2, 1);
    return d4 ? arena_tensor(a, dt, s5, 5) : arena_tensor(a, dt, s2, 2);
}

static float median(float *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            float t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v[n / 2];
}

int main(int argc, char **argv)
{
    int only = argc > 1 ? atoi(argv[1]) : -1;
    struct arena dev = {}, scratch = {};
    struct op_ctx ctx = {};
    cudaEvent_t e0, e1;

    if (!s3d_cuda_available()) {
        printf("sparse_bench: no CUDA device\n");
        return 77;
    }
    ASSERT(arena_init(&dev, ARENA_DEVICE, "bench", (size_t)24 << 30) == 0);
    ASSERT(arena_init(&scratch, ARENA_DEVICE, "scratch", (size_t)2 << 30) == 0);
    ASSERT(op_ctx_init(&ctx, &dev, OP_WORKSPACE_DEFAULT) == 0);
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    printf("%-26s %9s %8s %8s %9s %9s %8s %9s\n", "shape", "T", "nbr ms", "conv ms",
           "dense TF/s", "useful TF/s", "nnz/27", "max rel");
    for (int s = 0; s < (int)(sizeof(SHAPES) / sizeof(SHAPES[0])); s++) {
        if (only >= 0 && only != s)
            continue;
        const struct shape *sh = &SHAPES[s];
        size_t mark = arena_mark(&dev);
        int64_t T;
        int32_t *c = shell(sh->res, sh->target, sh->subdiv, &T);
        int Cin = sh->Cin, Cout = sh->Cout;
        size_t nx = (size_t)T * Cin, nw = (size_t)Cout * 27 * Cin;
        __half *hx = (__half *)malloc(nx * 2), *hw = (__half *)malloc(nw * 2);
        __half *hy = (__half *)malloc((size_t)T * Cout * 2);
        int32_t *hn = (int32_t *)malloc((size_t)T * 27 * 4);
        srand(1);
        for (size_t i = 0; i < nx; i++)
            hx[i] = __float2half((float)rand() / RAND_MAX * 2 - 1);
        for (size_t i = 0; i < nw; i++)
            hw[i] = __float2half(((float)rand() / RAND_MAX * 2 - 1) / sqrtf(27.0f * Cin));
        struct tensor dc = dtens(&dev, DTYPE_I32, T, 4);
        struct tensor dn = dtens(&dev, DTYPE_I32, T, 27);
        struct tensor dx = dtens(&dev, DTYPE_F16, T, Cin);
        struct tensor dw = dtens(&dev, DTYPE_F16, Cout, 3, Cin);
        struct tensor dy = dtens(&dev, DTYPE_F16, T, Cout);
        CUDA_CHECK(cudaMemcpy(dc.data, c, (size_t)T * 16, cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(dx.data, hx, nx * 2, cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(dw.data, hw, nw * 2, cudaMemcpyHostToDevice));

        float tn[10], tc[10];
        for (int it = 0; it < 12; it++) {
            CUDA_CHECK(cudaEventRecord(e0, ctx.stream));
            op_sparse_nbr_cuda(&ctx, &scratch, &dn, &dc);
            CUDA_CHECK(cudaEventRecord(e1, ctx.stream));
            CUDA_CHECK(cudaEventSynchronize(e1));
            if (it >= 2)
                CUDA_CHECK(cudaEventElapsedTime(&tn[it - 2], e0, e1));
        }
        for (int it = 0; it < 12; it++) {
            CUDA_CHECK(cudaEventRecord(e0, ctx.stream));
            op_sparse_conv3_cuda(&ctx, &scratch, &dy, &dx, &dw, NULL, &dn);
            CUDA_CHECK(cudaEventRecord(e1, ctx.stream));
            CUDA_CHECK(cudaEventSynchronize(e1));
            if (it >= 2)
                CUDA_CHECK(cudaEventElapsedTime(&tc[it - 2], e0, e1));
        }
        CUDA_CHECK(cudaMemcpy(hn, dn.data, (size_t)T * 27 * 4, cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaMemcpy(hy, dy.data, (size_t)T * Cout * 2, cudaMemcpyDeviceToHost));
        int64_t nnz = 0;
        for (int64_t i = 0; i < T * 27; i++)
            nnz += hn[i] >= 0;
        double max_rel = 0;                    /* 64 rows spread over the set, fp64 loops */
        for (int k = 0; k < 64; k++) {
            int64_t p = (T - 1) * k / 63;
            for (int co = 0; co < Cout; co++) {
                double sum = 0, mag = 0;
                for (int r = 0; r < 27; r++) {
                    int32_t q = hn[p * 27 + r];
                    if (q < 0)
                        continue;
                    for (int ci = 0; ci < Cin; ci++) {
                        double t = (double)__half2float(hw[((size_t)co * 27 + r) * Cin + ci]) *
                                   __half2float(hx[(size_t)q * Cin + ci]);
                        sum += t;
                        mag += fabs(t);
                    }
                }
                double err = fabs(__half2float(hy[p * Cout + co]) - sum) / (mag + 1e-6);
                max_rel = err > max_rel ? err : max_rel;
            }
        }
        float mn = median(tn, 10), mc = median(tc, 10);
        double dense = 2.0 * T * 27 * Cin * Cout, useful = 2.0 * nnz * Cin * Cout;
        printf("%-26s %9lld %8.3f %8.3f %9.1f %9.1f %8.2f %9.2e %s\n", sh->name, (long long)T, mn,
               mc, dense / mc / 1e9, useful / mc / 1e9, (double)nnz / T, max_rel,
               max_rel < 2e-3 ? "OK" : "FAIL");
        if (sh->subdiv == 0 && sh->res <= SPARSE_DOWN_MAX_RES) {
            struct tensor pc = dtens(&dev, DTYPE_I32, T, 4);
            struct tensor pa = dtens(&dev, DTYPE_I32, T, 0);
            struct tensor ch = dtens(&dev, DTYPE_I32, T, 8);
            CUDA_CHECK(cudaEventRecord(e0, ctx.stream));
            int64_t M = op_sparse_down_index_cuda(&ctx, &scratch, &pc, &pa, &ch, &dc, sh->res);
            CUDA_CHECK(cudaEventRecord(e1, ctx.stream));
            CUDA_CHECK(cudaEventSynchronize(e1));
            float td;
            CUDA_CHECK(cudaEventElapsedTime(&td, e0, e1));
            printf("%-26s down index: M %lld in %.3f ms (incl. the sync)\n", "", (long long)M, td);
        }
        free(c); free(hx); free(hw); free(hy); free(hn);
        arena_release(&dev, mark);
    }
    op_ctx_free(&ctx);
    arena_free(&scratch);
    arena_free(&dev);
    return 0;
}
