/*
 * test_op_resize.c - op_resize (F.interpolate) against torch's CPU outputs
 * (tests/fixtures/ops_image/resize_*.bin from tools/ref/dump_ops_image.py),
 * the CUDA op against the CPU op (when a GPU is present), and the per-axis
 * tables against hand-computed values of spec Appendix A.
 */
#include "arena.h"
#include "check.h"
#include "fixture_opimg.h"
#include "harness.h"
#include "ops_image.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *mode_name[] = {"nearest", "bilinear", "bicubic", "bilinear_aa", "bicubic_aa"};

/* Hand checks of the tables (Appendix A formulas written out). */
static void test_tables(void)
{
    int idx[8], cnt[8];
    float wt[8 * 16];

    /* A.1 nearest 5 -> 3: floor(i * 5/3) = 0, 1, 3 */
    op_resize_axis(OP_RESIZE_NEAREST, 5, 3, 0.0, 1, idx, cnt, wt);
    CHECK(idx[0] == 0 && idx[1] == 1 && idx[2] == 3);
    /* A.2 bilinear 2 -> 4: s = 0.5 (i + 0.5) - 0.5 = -0.25 (clamped 0), 0.25, 0.75, 1.25 */
    op_resize_axis(OP_RESIZE_BILINEAR, 2, 4, 0.0, 2, idx, cnt, wt);
    CHECK(idx[0] == 0 && wt[0] == 1.0f && wt[1] == 0.0f);
    CHECK(idx[1] == 0 && wt[2] == 0.75f && wt[3] == 0.25f);
    CHECK(idx[3] == 1 && op_resize_tap_index(OP_RESIZE_BILINEAR, 2, idx[3], 1) == 1);
    /* A.3 triangle AA 4 -> 2: scale 2, support 2, center 1: taps 0..2 with
     * filter((j - 1 + 0.5) / 2) = 0.75, 0.75, 0.25 -> normalised 3/7, 3/7, 1/7 */
    op_resize_axis(OP_RESIZE_BILINEAR_AA, 4, 2, 0.0, 5, idx, cnt, wt);
    CHECK(idx[0] == 0 && cnt[0] == 3, "idx %d cnt %d", idx[0], cnt[0]);
    CHECK(fabsf(wt[0] - 3.0f / 7) < 1e-7f && fabsf(wt[2] - 1.0f / 7) < 1e-7f);
    /* A.4 bicubic with scale factor 2: s = (i + 0.5) / 2 - 0.5; i = 1 -> 0.25 */
    op_resize_axis(OP_RESIZE_BICUBIC, 4, 8, 2.0, 4, idx, cnt, wt);
    float t = 0.25f, A = -0.75f;
    float w1 = ((A + 2) * t - (A + 3)) * t * t + 1;
    CHECK(idx[1] == 0 && fabsf(wt[4 + 1] - w1) < 1e-7f);
    CHECK(op_resize_tap_index(OP_RESIZE_BICUBIC, 4, 0, 0) == 0);   /* -1 clamps to 0 */
}

static bool gpu_ok(void)
{
    return harness_gpu("GPU part");
}

static void run_case(int k, bool gpu, struct arena *dev, struct op_ctx *ctx)
{
    char name[64];
    struct opimg_case c;

    snprintf(name, sizeof(name), "resize_%02d", k);
    if (opimg_load(&c, name) != 0) {
        CHECK(k > 0, "missing fixture %s", name);
        return;
    }
    int mode = c.ints[0], P = c.ints[1], H = c.ints[2], W = c.ints[3];
    int Ho = c.ints[4], Wo = c.ints[5], u8 = c.ints[6];
    double sh = c.f64s[0], sw = c.f64s[1];
    size_t nin = (size_t)P * H * W, nout = (size_t)P * Ho * Wo;
    CHECK(c.numel[0] == (int64_t)nin && c.numel[1] == (int64_t)nout);

    uint8_t *xb = malloc(nin);
    float *y = malloc(sizeof(float) * nout + SENTINEL_BYTES);
    for (size_t i = 0; i < nin; i++)
        xb[i] = (uint8_t)c.arr[0][i];
    struct tensor x = u8 ? tensor_view(xb, DTYPE_U8, DEVICE_HOST, SHAPE(1, P, H, W))
                         : tensor_view(c.arr[0], DTYPE_F32, DEVICE_HOST, SHAPE(1, P, H, W));
    struct tensor yt = tensor_view(y, DTYPE_F32, DEVICE_HOST, SHAPE(1, P, Ho, Wo));
    sentinel_fill(y + nout, SENTINEL_BYTES);
    op_resize_cpu(&yt, &x, (enum op_resize_mode)mode, sh, sw);
    CHECK(sentinel_ok(y + nout, SENTINEL_BYTES));

    char label[128];
    snprintf(label, sizeof(label), "%s %s %dx%dx%d -> %dx%d%s cpu vs torch", name,
             mode_name[mode], P, H, W, Ho, Wo, u8 ? " (u8)" : "");
    /* torch's CPU kernels vectorise (FMA, other sum order): agreement is to fp32
     * rounding, not bitwise; a wrong tap or weight shows up as >1e-3 */
    report_cmp(label, compare_f32(y, c.arr[1], nout, 1e-5, 1e-5, -1));

    if (gpu) {
        size_t xbytes = u8 ? nin : nin * 4;
        void *dx = arena_must_alloc(dev, xbytes);
        float *dy = arena_must_alloc(dev, nout * 4 + SENTINEL_BYTES);
        float *hy = malloc(nout * 4 + SENTINEL_BYTES);
        CUDA_CHECK(cudaMemcpy(dx, u8 ? (void *)xb : (void *)c.arr[0], xbytes,
                              cudaMemcpyHostToDevice));
        sentinel_fill(hy + nout, SENTINEL_BYTES);
        CUDA_CHECK(cudaMemcpy(dy + nout, hy + nout, SENTINEL_BYTES, cudaMemcpyHostToDevice));
        struct tensor gx = tensor_view(dx, u8 ? DTYPE_U8 : DTYPE_F32, DEVICE_CUDA,
                                       SHAPE(1, P, H, W));
        struct tensor gy = tensor_view(dy, DTYPE_F32, DEVICE_CUDA, SHAPE(1, P, Ho, Wo));
        op_resize_cuda(ctx, dev, &gy, &gx, (enum op_resize_mode)mode, sh, sw);
        op_ctx_synchronize(ctx);
        CUDA_CHECK(cudaMemcpy(hy, dy, nout * 4 + SENTINEL_BYTES, cudaMemcpyDeviceToHost));
        CHECK(sentinel_ok(hy + nout, SENTINEL_BYTES));
        snprintf(label, sizeof(label), "%s %s cuda vs cpu", name, mode_name[mode]);
        report_cmp(label, compare_f32(hy, y, nout, 1e-6, 1e-5, -1));
        free(hy);
        arena_reset(dev);
    }
    free(xb);
    free(y);
    opimg_free(&c);
}

/* CUDA vs CPU on a larger, awkward shape per mode (also bf16 output). */
static void run_gpu_random(struct arena *dev, struct op_ctx *ctx)
{
    struct rng r;
    const int P = 3, H = 301, W = 517, Ho = 113, Wo = 700;
    size_t nin = (size_t)P * H * W, nout = (size_t)P * Ho * Wo;
    float *x = malloc(nin * 4), *y = malloc(nout * 4), *hy = malloc(nout * 4);

    rng_seed(&r, 7);
    fill_normal(&r, x, nin, 1.0f);
    float *dx = arena_must_alloc(dev, nin * 4);
    CUDA_CHECK(cudaMemcpy(dx, x, nin * 4, cudaMemcpyHostToDevice));
    for (int m = 0; m <= OP_RESIZE_BICUBIC_AA; m++) {
        size_t mark = arena_mark(dev);
        float *dy = arena_must_alloc(dev, nout * 4);
        struct tensor tx = tensor_view(x, DTYPE_F32, DEVICE_HOST, SHAPE(P, H, W));
        struct tensor ty = tensor_view(y, DTYPE_F32, DEVICE_HOST, SHAPE(P, Ho, Wo));
        struct tensor gx = tensor_view(dx, DTYPE_F32, DEVICE_CUDA, SHAPE(P, H, W));
        struct tensor gy = tensor_view(dy, DTYPE_F32, DEVICE_CUDA, SHAPE(P, Ho, Wo));
        op_resize_cpu(&ty, &tx, (enum op_resize_mode)m, 0, 0);
        op_resize_cuda(ctx, dev, &gy, &gx, (enum op_resize_mode)m, 0, 0);
        op_ctx_synchronize(ctx);
        CUDA_CHECK(cudaMemcpy(hy, dy, nout * 4, cudaMemcpyDeviceToHost));
        char label[96];
        snprintf(label, sizeof(label), "random %s 3x301x517 -> 113x700 cuda vs cpu", mode_name[m]);
        report_cmp(label, compare_f32(hy, y, nout, 1e-5, 1e-5, -1));
        arena_release(dev, mark);
    }
    free(x);
    free(y);
    free(hy);
}

int main(void)
{
    struct arena dev = {0};
    struct op_ctx ctx = {0};
    bool gpu = gpu_ok();

    test_tables();
    if (gpu) {
        ASSERT(arena_init(&dev, ARENA_DEVICE, "test", (size_t)256 << 20) == 0);
        ASSERT(op_ctx_init(&ctx, &dev, 0) == 0);
    } else {
        printf("note: no CUDA device, CUDA part skipped (CPU vs torch still checked)\n");
    }
    for (int k = 0; k < 64; k++) {
        char name[64];
        snprintf(name, sizeof(name), "tests/fixtures/ops_image/resize_%02d.bin", k);
        FILE *f = fopen(name, "rb");
        if (!f)
            break;
        fclose(f);
        run_case(k, gpu, &dev, &ctx);
    }
    if (gpu) {
        run_gpu_random(&dev, &ctx);
        op_ctx_free(&ctx);
        arena_free(&dev);
    }
    return harness_done("test_op_resize");
}
