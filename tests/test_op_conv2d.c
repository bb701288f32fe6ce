/*
 * test_op_conv2d.c - op_conv2d (3x3 replicate, 1x1, 14x14/14 patch conv,
 * zeros padding, stride 2, fused ReLU) and op_conv_transpose2x2 against
 * torch's CPU outputs (tests/fixtures/ops_image/conv2d_*.bin, convt_*.bin,
 * tools/ref/dump_ops_image.py); small-integer inputs for a bit-exact check;
 * the CUDA ops against the CPU ops in F32 and F16 when a GPU is present.
 */
#include "arena.h"
#include "check.h"
#include "fixture_opimg.h"
#include "harness.h"
#include "ops_conv.h"
#include "ops_image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool gpu_ok(void)
{
    return harness_gpu("GPU part");
}

static void *upload(struct arena *dev, const void *h, size_t bytes)
{
    void *d = arena_must_alloc(dev, bytes + SENTINEL_BYTES);
    CUDA_CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    return d;
}

/* upload as dtype dt (from f32) */
static struct tensor up_t(struct arena *dev, const float *h, enum dtype dt, const int64_t *shape,
                          int nd)
{
    struct tensor t = tensor_view(NULL, dt, DEVICE_CUDA, shape, nd);
    size_t n = (size_t)tensor_numel(&t);
    void *tmp = malloc(n * dtype_size(dt) + 1);
    dtype_convert(tmp, dt, h, DTYPE_F32, n);
    t.data = upload(dev, tmp, n * dtype_size(dt));
    free(tmp);
    return t;
}

static void down_f32(float *h, const struct tensor *t)
{
    size_t n = (size_t)tensor_numel(t);
    void *tmp = malloc(n * dtype_size(t->dtype) + 1);
    CUDA_CHECK(cudaMemcpy(tmp, t->data, n * dtype_size(t->dtype), cudaMemcpyDeviceToHost));
    dtype_convert(h, DTYPE_F32, tmp, t->dtype, n);
    free(tmp);
}

/* CPU op on (x, w, b) in f32 -> y; returns y (malloc'ed) */
static void conv_case(int k, bool gpu, struct arena *dev, struct op_ctx *ctx)
{
    char name[32];
    struct opimg_case c;
    snprintf(name, sizeof(name), "conv2d_%02d", k);
    if (opimg_load(&c, name) != 0)
        return;
    int N = c.ints[0], Ci = c.ints[1], H = c.ints[2], W = c.ints[3], Co = c.ints[4];
    int K = c.ints[5], s = c.ints[6], p = c.ints[7], rep = c.ints[8], relu = c.ints[9];
    int Ho = (H + 2 * p - K) / s + 1, Wo = (W + 2 * p - K) / s + 1;
    enum op_pad_mode mode = rep ? OP_PAD_REPLICATE : OP_PAD_ZEROS;
    size_t ny = (size_t)N * Co * Ho * Wo;
    CHECK(c.numel[3] == (int64_t)ny);

    struct tensor x = tensor_view(c.arr[0], DTYPE_F32, DEVICE_HOST, SHAPE(N, Ci, H, W));
    struct tensor w = tensor_view(c.arr[1], DTYPE_F32, DEVICE_HOST, SHAPE(Co, Ci, K, K));
    struct tensor b = tensor_view(c.arr[2], DTYPE_F32, DEVICE_HOST, SHAPE(Co));
    float *y = malloc(ny * 4 + SENTINEL_BYTES);
    sentinel_fill(y + ny, SENTINEL_BYTES);
    struct tensor yt = tensor_view(y, DTYPE_F32, DEVICE_HOST, SHAPE(N, Co, Ho, Wo));
    op_conv2d_cpu(&yt, &x, &w, &b, s, p, mode, relu);
    CHECK(sentinel_ok(y + ny, SENTINEL_BYTES));
    char label[128];
    snprintf(label, sizeof(label), "%s %dx%dx%dx%d k%d s%d p%d %s%s cpu vs torch", name, N, Ci, H,
             W, K, s, p, rep ? "replicate" : "zeros", relu ? " relu" : "");
    report_cmp(label, compare_f32(y, c.arr[3], ny, 1e-5, 1e-5, -1));

    if (gpu) {
        for (int f16 = 0; f16 < 2; f16++) {
            enum dtype dt = f16 ? DTYPE_F16 : DTYPE_F32;
            size_t mark = arena_mark(dev);
            struct tensor gx = up_t(dev, c.arr[0], dt, x.shape, 4);
            struct tensor gw = up_t(dev, c.arr[1], dt, w.shape, 4);
            struct tensor gb = up_t(dev, c.arr[2], DTYPE_F32, b.shape, 1);
            struct tensor gy = tensor_view(arena_must_alloc(dev, ny * 4 + SENTINEL_BYTES), dt,
                                           DEVICE_CUDA, yt.shape, 4);
            float *hy = malloc(ny * 4), *ref = malloc(ny * 4);
            op_conv2d_cuda(ctx, dev, &gy, &gx, &gw, &gb, s, p, mode, relu);
            op_ctx_synchronize(ctx);
            down_f32(hy, &gy);
            /* reference: CPU op on the same (rounded) inputs */
            void *xr = malloc((size_t)tensor_numel(&x) * 4), *wr = malloc((size_t)tensor_numel(&w) * 4);
            down_f32(xr, &gx);
            down_f32(wr, &gw);
            struct tensor xt = tensor_view(xr, DTYPE_F32, DEVICE_HOST, x.shape, 4);
            struct tensor wt = tensor_view(wr, DTYPE_F32, DEVICE_HOST, w.shape, 4);
            struct tensor rt = tensor_view(ref, DTYPE_F32, DEVICE_HOST, yt.shape, 4);
            op_conv2d_cpu(&rt, &xt, &wt, &b, s, p, mode, relu);
            snprintf(label, sizeof(label), "%s cuda %s vs cpu", name, f16 ? "f16" : "f32");
            report_cmp(label, compare_f32(hy, ref, ny, f16 ? 2e-2 : 1e-5, f16 ? 2e-3 : 1e-5, -1));
            free(xr);
            free(wr);
            free(hy);
            free(ref);
            arena_release(dev, mark);
        }
    }
    free(y);
    opimg_free(&c);
}

static void convt_case(int k, bool gpu, struct arena *dev, struct op_ctx *ctx)
{
    char name[32];
    struct opimg_case c;
    snprintf(name, sizeof(name), "convt_%02d", k);
    if (opimg_load(&c, name) != 0)
        return;
    int N = c.ints[0], Ci = c.ints[1], H = c.ints[2], W = c.ints[3], Co = c.ints[4];
    size_t ny = (size_t)N * Co * 4 * H * W;
    struct tensor x = tensor_view(c.arr[0], DTYPE_F32, DEVICE_HOST, SHAPE(N, Ci, H, W));
    struct tensor w = tensor_view(c.arr[1], DTYPE_F32, DEVICE_HOST, SHAPE(Ci, Co, 2, 2));
    struct tensor b = tensor_view(c.arr[2], DTYPE_F32, DEVICE_HOST, SHAPE(Co));
    float *y = malloc(ny * 4 + SENTINEL_BYTES);
    sentinel_fill(y + ny, SENTINEL_BYTES);
    struct tensor yt = tensor_view(y, DTYPE_F32, DEVICE_HOST, SHAPE(N, Co, 2 * H, 2 * W));
    op_conv_transpose2x2_cpu(&yt, &x, &w, &b);
    CHECK(sentinel_ok(y + ny, SENTINEL_BYTES));
    char label[96];
    snprintf(label, sizeof(label), "%s %dx%dx%dx%d -> %d ch cpu vs torch", name, N, Ci, H, W, Co);
    report_cmp(label, compare_f32(y, c.arr[3], ny, 1e-5, 1e-5, -1));
    if (gpu) {
        size_t mark = arena_mark(dev);
        struct tensor gx = up_t(dev, c.arr[0], DTYPE_F32, x.shape, 4);
        struct tensor gw = up_t(dev, c.arr[1], DTYPE_F32, w.shape, 4);
        struct tensor gb = up_t(dev, c.arr[2], DTYPE_F32, b.shape, 1);
        struct tensor gy = tensor_view(arena_must_alloc(dev, ny * 4), DTYPE_F32, DEVICE_CUDA,
                                       yt.shape, 4);
        float *hy = malloc(ny * 4);
        op_conv_transpose2x2_cuda(ctx, &gy, &gx, &gw, &gb);
        op_ctx_synchronize(ctx);
        down_f32(hy, &gy);
        snprintf(label, sizeof(label), "%s cuda vs cpu", name);
        report_cmp(label, compare_f32(hy, y, ny, 1e-5, 1e-5, -1));
        free(hy);
        arena_release(dev, mark);
    }
    free(y);
    opimg_free(&c);
}

/* Small integers: every product and partial sum is exact in fp32, so the
 * replicate 3x3 conv must match a direct triple loop bit for bit. */
static void exact_case(void)
{
    struct rng r;
    enum { N = 1, C = 3, H = 5, W = 4, O = 2 };
    float x[N * C * H * W], w[O * C * 9], b[O], y[O * H * W];
    rng_seed(&r, 3);
    fill_small_int(&r, x, sizeof(x) / 4, -3, 3);
    fill_small_int(&r, w, sizeof(w) / 4, -2, 2);
    fill_small_int(&r, b, O, -5, 5);
    struct tensor tx = tensor_view(x, DTYPE_F32, DEVICE_HOST, SHAPE(N, C, H, W));
    struct tensor tw = tensor_view(w, DTYPE_F32, DEVICE_HOST, SHAPE(O, C, 3, 3));
    struct tensor tb = tensor_view(b, DTYPE_F32, DEVICE_HOST, SHAPE(O));
    struct tensor ty = tensor_view(y, DTYPE_F32, DEVICE_HOST, SHAPE(N, O, H, W));
    op_conv2d_cpu(&ty, &tx, &tw, &tb, 1, 1, OP_PAD_REPLICATE, false);
    int bad = 0;
    for (int o = 0; o < O; o++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                float acc = b[o];
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int si = i + ky - 1, sj = j + kx - 1;
                            si = si < 0 ? 0 : si >= H ? H - 1 : si;
                            sj = sj < 0 ? 0 : sj >= W ? W - 1 : sj;
                            acc += x[(c * H + si) * W + sj] * w[((o * C + c) * 3 + ky) * 3 + kx];
                        }
                bad += acc != y[(o * H + i) * W + j];
            }
    CHECK(bad == 0, "%d elements differ from the direct loop", bad);
}

int main(void)
{
    struct arena dev = {0};
    struct op_ctx ctx = {0};
    bool gpu = gpu_ok();

    if (gpu) {
        ASSERT(arena_init(&dev, ARENA_DEVICE, "test", (size_t)256 << 20) == 0);
        ASSERT(op_ctx_init(&ctx, &dev, 0) == 0);
    } else {
        printf("note: no CUDA device, CUDA part skipped (CPU vs torch still checked)\n");
    }
    exact_case();
    for (int k = 0; k < 6; k++)
        conv_case(k, gpu, &dev, &ctx);
    for (int k = 0; k < 3; k++)
        convt_case(k, gpu, &dev, &ctx);
    if (gpu) {
        op_ctx_free(&ctx);
        arena_free(&dev);
    }
    return harness_done("test_op_conv2d");
}
