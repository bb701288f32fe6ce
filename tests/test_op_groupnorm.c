/*
 * test_op_groupnorm.c - op_groupnorm (+ fused ReLU) against torch's
 * F.group_norm (tests/fixtures/ops_image/groupnorm_*.bin), and the CUDA op
 * against the CPU op, including one large group (MoGe's GroupNorm(1, 64) at
 * a 296x536 map: 10M elements) with a large mean to test the variance.
 */
#include "arena.h"
#include "check.h"
#include "fixture_opimg.h"
#include "harness.h"
#include "ops_image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void gpu_compare(const char *label, struct arena *dev, struct op_ctx *ctx, const float *x,
                        const float *w, const float *b, int N, int C, int H, int W, int G,
                        bool relu, const float *ref, enum dtype dt)
{
    size_t n = (size_t)N * C * H * W;
    size_t mark = arena_mark(dev);
    void *tmp = malloc(n * 4);
    dtype_convert(tmp, dt, x, DTYPE_F32, n);
    void *dx = arena_must_alloc(dev, n * dtype_size(dt));
    float *dy = arena_must_alloc(dev, n * 4);
    float *dw = arena_must_alloc(dev, (size_t)C * 4), *db = arena_must_alloc(dev, (size_t)C * 4);
    CUDA_CHECK(cudaMemcpy(dx, tmp, n * dtype_size(dt), cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(dw, w, (size_t)C * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(db, b, (size_t)C * 4, cudaMemcpyHostToDevice));
    struct tensor gx = tensor_view(dx, dt, DEVICE_CUDA, SHAPE(N, C, H, W));
    struct tensor gy = tensor_view(dy, DTYPE_F32, DEVICE_CUDA, SHAPE(N, C, H, W));
    struct tensor gw = tensor_view(dw, DTYPE_F32, DEVICE_CUDA, SHAPE(C));
    struct tensor gb = tensor_view(db, DTYPE_F32, DEVICE_CUDA, SHAPE(C));
    op_groupnorm_cuda(ctx, dev, &gy, &gx, G, &gw, &gb, 1e-5f, relu);
    op_ctx_synchronize(ctx);
    float *hy = malloc(n * 4);
    CUDA_CHECK(cudaMemcpy(hy, dy, n * 4, cudaMemcpyDeviceToHost));
    report_cmp(label, compare_f32(hy, ref, n, 1e-4, 1e-4, -1));
    free(hy);
    free(tmp);
    arena_release(dev, mark);
}

int main(void)
{
    struct arena dev = {0};
    struct op_ctx ctx = {0};
    bool gpu = harness_gpu("GPU part");

    if (gpu) {
        ASSERT(arena_init(&dev, ARENA_DEVICE, "test", (size_t)512 << 20) == 0);
        ASSERT(op_ctx_init(&ctx, &dev, 0) == 0);
    } else {
        printf("note: no CUDA device, CUDA part skipped (CPU vs torch still checked)\n");
    }
    for (int k = 0; k < 4; k++) {
        char name[32], label[128];
        struct opimg_case c;
        snprintf(name, sizeof(name), "groupnorm_%02d", k);
        if (opimg_load(&c, name) != 0) {
            CHECK(!"missing fixture", "%s", name);
            continue;
        }
        int N = c.ints[0], C = c.ints[1], H = c.ints[2], W = c.ints[3], G = c.ints[4];
        bool relu = c.ints[5];
        size_t n = (size_t)N * C * H * W;
        float *y = malloc(n * 4 + SENTINEL_BYTES);
        sentinel_fill(y + n, SENTINEL_BYTES);
        struct tensor x = tensor_view(c.arr[0], DTYPE_F32, DEVICE_HOST, SHAPE(N, C, H, W));
        struct tensor w = tensor_view(c.arr[1], DTYPE_F32, DEVICE_HOST, SHAPE(C));
        struct tensor b = tensor_view(c.arr[2], DTYPE_F32, DEVICE_HOST, SHAPE(C));
        struct tensor yt = tensor_view(y, DTYPE_F32, DEVICE_HOST, SHAPE(N, C, H, W));
        op_groupnorm_cpu(&yt, &x, G, &w, &b, (float)c.f64s[0], relu);
        CHECK(sentinel_ok(y + n, SENTINEL_BYTES));
        snprintf(label, sizeof(label), "%s %dx%dx%dx%d G%d%s cpu vs torch", name, N, C, H, W, G,
                 relu ? " relu" : "");
        report_cmp(label, compare_f32(y, c.arr[3], n, 1e-5, 1e-5, -1));
        /* in place */
        float *xi = malloc(n * 4);
        memcpy(xi, c.arr[0], n * 4);
        struct tensor ti = tensor_view(xi, DTYPE_F32, DEVICE_HOST, SHAPE(N, C, H, W));
        op_groupnorm_cpu(&ti, &ti, G, &w, &b, (float)c.f64s[0], relu);
        CHECK(memcmp(xi, y, n * 4) == 0, "in-place result differs");
        free(xi);
        if (gpu) {
            snprintf(label, sizeof(label), "%s cuda vs cpu", name);
            gpu_compare(label, &dev, &ctx, c.arr[0], c.arr[1], c.arr[2], N, C, H, W, G, relu, y,
                        DTYPE_F32);
        }
        free(y);
        opimg_free(&c);
    }
    if (gpu) {
        /* MoGe's largest group: GroupNorm(1, 64) at 296x536, mean far from 0 */
        const int N = 1, C = 64, H = 296, W = 536;
        size_t n = (size_t)N * C * H * W;
        struct rng r;
        float *x = malloc(n * 4), *y = malloc(n * 4), w[64], b[64];
        rng_seed(&r, 11);
        fill_normal(&r, x, n, 2.0f);
        for (size_t i = 0; i < n; i++)
            x[i] += 50.0f;
        fill_normal(&r, w, 64, 1.0f);
        fill_normal(&r, b, 64, 1.0f);
        struct tensor tx = tensor_view(x, DTYPE_F32, DEVICE_HOST, SHAPE(N, C, H, W));
        struct tensor ty = tensor_view(y, DTYPE_F32, DEVICE_HOST, SHAPE(N, C, H, W));
        struct tensor tw = tensor_view(w, DTYPE_F32, DEVICE_HOST, SHAPE(C));
        struct tensor tb = tensor_view(b, DTYPE_F32, DEVICE_HOST, SHAPE(C));
        op_groupnorm_cpu(&ty, &tx, 1, &tw, &tb, 1e-5f, true);
        gpu_compare("large group 1x64x296x536 G1 relu cuda vs cpu", &dev, &ctx, x, w, b, N, C, H,
                    W, 1, true, y, DTYPE_F32);
        op_groupnorm_cpu(&ty, &tx, 16, &tw, &tb, 1e-5f, false);
        gpu_compare("large 1x64x296x536 G16 cuda vs cpu", &dev, &ctx, x, w, b, N, C, H, W, 16,
                    false, y, DTYPE_F32);
        free(x);
        free(y);
        op_ctx_free(&ctx);
        arena_free(&dev);
    }
    return harness_done("test_op_groupnorm");
}
