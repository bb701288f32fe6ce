/*
 * test_op_conv3d.c - the channels-last 3-D ops of kernels/ops_conv.h:
 *   - op_conv3d_pack_weight + op_conv3d_cpu against a direct loop written in
 *     PyTorch's own (N, C, D, H, W) / (Co, Ci, K, K, K) indexing, small-integer
 *     inputs (every product and partial sum exact in fp32: bit-exact), K 1, 3, 5,
 *     odd grid sizes, with and without bias, F32 and F16 outputs;
 *   - op_pixel_shuffle3d_cpu against pixel_shuffle_3d's index map written on
 *     (N, C, D, H, W) indices (a permutation: exact);
 *   - with a GPU: op_conv3d_cuda and op_pixel_shuffle3d_cuda against the CPU
 *     ops in F32 and F16 over a shape table (awkward sizes, the SS decoder's
 *     real channel counts at small grids), sentinels after every output.
 */
#include "arena.h"
#include "check.h"
#include "harness.h"
#include "op_harness.h"
#include "ops_conv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tolerances: |cuda - cpu| <= atol + rtol |cpu|.
 * F32: cuDNN FMA math (no TF32) sums in another order than the CPU loop.
 * F16: inputs are the same fp16 values on both sides; the output is rounded to
 * fp16 twice on the GPU (conv, then + bias) and once on the CPU, plus order. */
static const double TOL_F32_ABS = 1e-5, TOL_F32_REL = 1e-5;
static const double TOL_F16_ABS = 2e-3, TOL_F16_REL = 2e-3;

/* Direct Conv3d in PyTorch indexing: x (N, Ci, D, H, W), w (Co, Ci, K, K, K) -> y (N, Co, D, H, W). */
static void conv_torch(float *y, const float *x, const float *w, const float *b, int N, int Ci,
                       int D, int H, int W, int Co, int K)
{
    int P = K / 2;
    for (int n = 0; n < N; n++)
        for (int o = 0; o < Co; o++)
            for (int d = 0; d < D; d++)
                for (int h = 0; h < H; h++)
                    for (int v = 0; v < W; v++) {
                        float acc = b ? b[o] : 0.0f;
                        for (int i = 0; i < Ci; i++)
                            for (int a = 0; a < K; a++)
                                for (int c = 0; c < K; c++)
                                    for (int e = 0; e < K; e++) {
                                        int dd = d + a - P, hh = h + c - P, ww = v + e - P;
                                        if (dd < 0 || dd >= D || hh < 0 || hh >= H || ww < 0 ||
                                            ww >= W)
                                            continue;
                                        acc += x[(((n * Ci + i) * D + dd) * H + hh) * W + ww] *
                                               w[(((o * Ci + i) * K + a) * K + c) * K + e];
                                    }
                        y[(((n * Co + o) * D + d) * H + h) * W + v] = acc;
                    }
}

/* (N, C, S) <-> (N, S, C) with S = D*H*W. */
static void to_last(float *dst, const float *src, int N, int C, int64_t S)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int64_t s = 0; s < S; s++)
                dst[((int64_t)n * S + s) * C + c] = src[((int64_t)n * C + c) * S + s];
}

static void exact_conv_case(int N, int Ci, int D, int H, int W, int Co, int K, bool bias,
                            enum dtype ydt)
{
    struct rng r;
    int64_t S = (int64_t)D * H * W, nx = N * Ci * S, ny = N * Co * S, nw = (int64_t)Co * Ci * K * K * K;
    float *x = malloc(sizeof(float) * nx), *xl = malloc(sizeof(float) * nx);
    float *w = malloc(sizeof(float) * nw), *wp = malloc(sizeof(float) * nw);
    float *b = malloc(sizeof(float) * Co), *ref = malloc(sizeof(float) * ny);
    float *refl = malloc(sizeof(float) * ny), *yf = malloc(sizeof(float) * ny);
    char *y = malloc((size_t)ny * dtype_size(ydt) + SENTINEL_BYTES);

    rng_seed(&r, (uint64_t)(N * 1000 + Ci * 100 + K));
    fill_small_int(&r, x, (size_t)nx, -3, 3);
    fill_small_int(&r, w, (size_t)nw, -2, 2);
    fill_small_int(&r, b, (size_t)Co, -5, 5);
    conv_torch(ref, x, w, bias ? b : NULL, N, Ci, D, H, W, Co, K);
    to_last(xl, x, N, Ci, S);
    to_last(refl, ref, N, Co, S);
    op_conv3d_pack_weight(wp, DTYPE_F32, w, Co, Ci, K);

    sentinel_fill(y + (size_t)ny * dtype_size(ydt), SENTINEL_BYTES);
    struct tensor tx = tensor_view(xl, DTYPE_F32, DEVICE_HOST, SHAPE(N, D, H, W, Ci));
    struct tensor tw = tensor_view(wp, DTYPE_F32, DEVICE_HOST, SHAPE(Co, K, K, K, Ci));
    struct tensor tb = tensor_view(b, DTYPE_F32, DEVICE_HOST, SHAPE(Co));
    struct tensor ty = tensor_view(y, ydt, DEVICE_HOST, SHAPE(N, D, H, W, Co));
    op_conv3d_cpu(&ty, &tx, &tw, bias ? &tb : NULL);
    CHECK(sentinel_ok(y + (size_t)ny * dtype_size(ydt), SENTINEL_BYTES));
    dtype_convert(yf, DTYPE_F32, y, ydt, (size_t)ny);
    /* F16 output too: every integer sum here is below 2048 in magnitude, exact in fp16 */
    int64_t bad = 0;
    for (int64_t i = 0; i < ny; i++) {
        bad += yf[i] != refl[i];
    }
    printf("conv3d cpu exact %s (%d,%d,%d,%d,%d) K%d -> %d%s: %lld of %lld differ %s\n",
           dtype_name(ydt), N, D, H, W, Ci, K, Co, bias ? " bias" : "", (long long)bad,
           (long long)ny, bad ? "FAIL" : "OK");
    CHECK(bad == 0, "conv3d exact case K%d: %lld elements differ from the direct loop", K,
          (long long)bad);
    free(x); free(xl); free(w); free(wp); free(b); free(ref); free(refl); free(yf); free(y);
}

/* pixel_shuffle_3d on PyTorch indices: out[b, c, 2d+i, 2h+j, 2w+k] = in[b, 8c+4i+2j+k, d, h, w]. */
static void exact_shuffle_case(int N, int C, int D, int H, int W)
{
    struct rng r;
    int64_t S = (int64_t)D * H * W, n = (int64_t)N * 8 * C * S;
    float *x = malloc(sizeof(float) * n), *xl = malloc(sizeof(float) * n);
    float *ref = malloc(sizeof(float) * n), *refl = malloc(sizeof(float) * n);
    float *y = malloc(sizeof(float) * n + SENTINEL_BYTES);

    rng_seed(&r, 11);
    fill_normal(&r, x, (size_t)n, 1.0f);
    for (int b = 0; b < N; b++)
        for (int c = 0; c < C; c++)
            for (int d = 0; d < D; d++)
                for (int h = 0; h < H; h++)
                    for (int w = 0; w < W; w++)
                        for (int s = 0; s < 8; s++) {
                            int i = s >> 2, j = (s >> 1) & 1, k = s & 1;
                            int64_t src = ((((int64_t)b * 8 * C + 8 * c + s) * D + d) * H + h) * W + w;
                            int64_t dst = ((((int64_t)b * C + c) * 2 * D + 2 * d + i) * 2 * H +
                                           2 * h + j) * 2 * W + 2 * w + k;
                            ref[dst] = x[src];
                        }
    to_last(xl, x, N, 8 * C, S);
    to_last(refl, ref, N, C, 8 * S);
    sentinel_fill(y + n, SENTINEL_BYTES);
    struct tensor tx = tensor_view(xl, DTYPE_F32, DEVICE_HOST, SHAPE(N, D, H, W, 8 * C));
    struct tensor ty = tensor_view(y, DTYPE_F32, DEVICE_HOST, SHAPE(N, 2 * D, 2 * H, 2 * W, C));
    op_pixel_shuffle3d_cpu(&ty, &tx);
    CHECK(sentinel_ok(y + n, SENTINEL_BYTES));
    char label[96];
    snprintf(label, sizeof(label), "pixel_shuffle3d cpu (%d,%d,%d,%d,%d) vs index map", N, D, H, W,
             8 * C);
    report_cmp(label, compare_f32(y, refl, (size_t)n, 0, 0, -1));
    free(x); free(xl); free(ref); free(refl); free(y);
}

/* x F32 with F16 weights: the CPU op must round x to F16 first, so the result
 * equals the op on an F16 copy of x bit for bit (and differs from plain fp32). */
static void mixed_cpu_case(void)
{
    enum { D = 3, H = 4, W = 5, CI = 6, CO = 3, K = 3 };
    static float x[D * H * W * CI], w[CO * CI * K * K * K], wp[CO * CI * K * K * K];
    static float y1[D * H * W * CO], y2[D * H * W * CO], y3[D * H * W * CO];
    struct rng r;

    rng_seed(&r, 21);
    fill_normal(&r, x, sizeof(x) / 4, 1.0f);
    fill_small_int(&r, w, sizeof(w) / 4, -2, 2);
    op_conv3d_pack_weight(wp, DTYPE_F32, w, CO, CI, K);
    struct tensor hx = ot_host(DTYPE_F32, SHAPE(1, D, H, W, CI), x);
    struct tensor hx16 = ot_host(DTYPE_F16, SHAPE(1, D, H, W, CI), x);
    struct tensor hw = ot_host(DTYPE_F32, SHAPE(CO, K, K, K, CI), wp);
    struct tensor hw16 = ot_host(DTYPE_F16, SHAPE(CO, K, K, K, CI), wp);
    struct tensor t1 = tensor_view(y1, DTYPE_F32, DEVICE_HOST, SHAPE(1, D, H, W, CO));
    struct tensor t2 = tensor_view(y2, DTYPE_F32, DEVICE_HOST, SHAPE(1, D, H, W, CO));
    struct tensor t3 = tensor_view(y3, DTYPE_F32, DEVICE_HOST, SHAPE(1, D, H, W, CO));
    op_conv3d_cpu(&t1, &hx, &hw16, NULL);
    op_conv3d_cpu(&t2, &hx16, &hw16, NULL);
    op_conv3d_cpu(&t3, &hx, &hw, NULL);
    CHECK(memcmp(y1, y2, sizeof(y1)) == 0, "x F32 with F16 weights differs from x rounded to F16");
    CHECK(memcmp(y1, y3, sizeof(y1)) != 0, "rounding x to F16 changed nothing (weak case)");
    printf("conv3d cpu x F32 w F16 == x F16 w F16 (x rounded first): %s\n",
           memcmp(y1, y2, sizeof(y1)) == 0 ? "OK" : "FAIL");
    ot_free(&hx);
    ot_free(&hx16);
    ot_free(&hw);
    ot_free(&hw16);
}

// ----------------------------------------------------------------------------
// CUDA vs CPU

/* A device tensor of dtype dt holding h (F32 host values rounded to dt), guard after it. */
static struct tensor dev_tensor(struct arena *dev, const float *h, enum dtype dt, const int64_t *shape,
                           int nd)
{
    struct tensor ht = ot_host(dt, shape, nd, h);
    struct tensor t = ot_dev(dev, &ht);
    ot_free(&ht);
    return t;
}

/* A device output (0xff bytes: NaN until written), guard after it. */
static struct tensor dev_out(struct arena *dev, enum dtype dt, const int64_t *shape, int nd)
{
    return dev_tensor(dev, NULL, dt, shape, nd);
}

/* Contents of a device tensor as F32, checking its guard. */
static void down_f32(float *h, const struct tensor *t)
{
    CHECK(ot_guard_ok(t), "device output guard overwritten");
    ot_to_f32(t, h);
}

struct gcase { int N, D, H, W, Ci, Co, K; };

static const struct gcase GCASES[] = {
    {1, 1, 1, 1, 1, 1, 3},          /* everything 1 */
    {1, 5, 6, 7, 3, 4, 3},          /* odd sizes, odd channels */
    {2, 3, 4, 5, 8, 64, 1},         /* K 1, batch 2 */
    {1, 4, 5, 3, 7, 5, 5},          /* K 5 */
    {1, 8, 8, 8, 8, 16, 3},         /* tiny decoder input_layer */
    {1, 6, 6, 6, 512, 512, 3},      /* released 16^3 block widths (small grid: the CPU side) */
    {1, 16, 16, 16, 8, 512, 3},     /* released input_layer */
    {1, 4, 4, 4, 512, 1024, 3},     /* released first upsample conv widths */
    {1, 12, 12, 12, 128, 128, 3},   /* released 32^3 block widths */
    {1, 32, 32, 32, 32, 32, 3},     /* released 64^3 block widths */
    {1, 64, 64, 64, 32, 1, 3},      /* released out_layer */
};

static void gpu_conv_case(const struct gcase *g, struct arena *dev, const struct op_ctx *ctx)
{
    struct rng r;
    int64_t nx = (int64_t)g->N * g->D * g->H * g->W * g->Ci;
    int64_t ny = (int64_t)g->N * g->D * g->H * g->W * g->Co;
    int64_t nw = (int64_t)g->Co * g->Ci * g->K * g->K * g->K;
    float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * nw);
    float *wp = malloc(sizeof(float) * nw), *b = malloc(sizeof(float) * g->Co);
    float *ref = malloc(sizeof(float) * ny), *got = malloc(sizeof(float) * ny);

    rng_seed(&r, 7);
    fill_normal(&r, x, (size_t)nx, 1.0f);
    fill_normal(&r, w, (size_t)nw, (float)(1.0 / sqrt((double)g->Ci * g->K * g->K * g->K)));
    fill_normal(&r, b, (size_t)g->Co, 0.1f);
    op_conv3d_pack_weight(wp, DTYPE_F32, w, g->Co, g->Ci, g->K);
    /* (x dtype, weight dtype): F32, F16, and F32 x with F16 weights (the op rounds x) */
    static const enum dtype DT[3][2] = {
        {DTYPE_F32, DTYPE_F32}, {DTYPE_F16, DTYPE_F16}, {DTYPE_F32, DTYPE_F16}};
    for (int v = 0; v < 3; v++) {
        enum dtype xdt = DT[v][0], dt = DT[v][1];
        bool f16 = dt == DTYPE_F16;
        size_t mark = arena_mark(dev);
        struct tensor hx = ot_host(xdt, SHAPE(g->N, g->D, g->H, g->W, g->Ci), x);
        struct tensor hw = ot_host(dt, SHAPE(g->Co, g->K, g->K, g->K, g->Ci), wp);
        struct tensor hb = ot_host(dt, SHAPE(g->Co), b);
        struct tensor gx = ot_dev(dev, &hx), gw = ot_dev(dev, &hw), gb = ot_dev(dev, &hb);
        struct tensor gy = dev_out(dev, dt, SHAPE(g->N, g->D, g->H, g->W, g->Co));
        op_conv3d_cuda(ctx, dev, &gy, &gx, &gw, &gb);
        op_ctx_synchronize(ctx);
        down_f32(got, &gy);
        /* the CPU op on the same inputs and dtypes, fp32 output */
        struct tensor ty = tensor_view(ref, DTYPE_F32, DEVICE_HOST, gy.shape, 5);
        op_conv3d_cpu(&ty, &hx, &hw, &hb);
        char label[128];
        const char *direct = getenv("S3D_CONV3D_DIRECT");
        snprintf(label, sizeof(label), "conv3d cuda%s x %s w %s (%d,%d,%d,%d,%d) K%d -> %d vs cpu",
                 direct && !strcmp(direct, "1") ? " direct" : "", dtype_name(xdt), dtype_name(dt),
                 g->N, g->D, g->H, g->W, g->Ci, g->K, g->Co);
        report_cmp(label, compare_f32(got, ref, (size_t)ny, f16 ? TOL_F16_ABS : TOL_F32_ABS,
                                      f16 ? TOL_F16_REL : TOL_F32_REL, -1));
        ot_free(&hx);
        ot_free(&hw);
        ot_free(&hb);
        arena_release(dev, mark);
    }
    free(x); free(w); free(wp); free(b); free(ref); free(got);
}

static void gpu_shuffle_case(int N, int D, int H, int W, int C, struct arena *dev,
                             const struct op_ctx *ctx)
{
    struct rng r;
    int64_t n = (int64_t)N * D * H * W * 8 * C;
    float *x = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n);
    float *got = malloc(sizeof(float) * n);

    rng_seed(&r, 5);
    fill_normal(&r, x, (size_t)n, 1.0f);
    struct tensor tx = tensor_view(x, DTYPE_F32, DEVICE_HOST, SHAPE(N, D, H, W, 8 * C));
    struct tensor ty = tensor_view(ref, DTYPE_F32, DEVICE_HOST, SHAPE(N, 2 * D, 2 * H, 2 * W, C));
    op_pixel_shuffle3d_cpu(&ty, &tx);
    for (int f16 = 0; f16 < 2; f16++) {
        size_t mark = arena_mark(dev);
        struct tensor gx = dev_tensor(dev, x, DTYPE_F32, tx.shape, 5);
        struct tensor gy = dev_out(dev, f16 ? DTYPE_F16 : DTYPE_F32, ty.shape, 5);
        op_pixel_shuffle3d_cuda(ctx, &gy, &gx);
        op_ctx_synchronize(ctx);
        down_f32(got, &gy);
        /* F16 output: each element rounded once from the same F32 value */
        float *want = ref;
        float *rr = NULL;
        if (f16) {
            uint16_t *h = malloc(sizeof(*h) * n);
            rr = malloc(sizeof(float) * n);
            dtype_convert(h, DTYPE_F16, ref, DTYPE_F32, (size_t)n);
            dtype_convert(rr, DTYPE_F32, h, DTYPE_F16, (size_t)n);
            free(h);
            want = rr;
        }
        char label[96];
        snprintf(label, sizeof(label), "pixel_shuffle3d cuda F32->%s (%d,%d,%d,%d,%d) vs cpu",
                 f16 ? "F16" : "F32", N, D, H, W, 8 * C);
        report_cmp(label, compare_f32(got, want, (size_t)n, 0, 0, -1));
        free(rr);
        arena_release(dev, mark);
    }
    free(x); free(ref); free(got);
}

int main(void)
{
    exact_conv_case(1, 1, 1, 1, 1, 1, 3, true, DTYPE_F32);
    exact_conv_case(1, 3, 5, 4, 6, 2, 3, true, DTYPE_F32);
    exact_conv_case(2, 4, 3, 3, 2, 5, 1, false, DTYPE_F32);
    exact_conv_case(1, 2, 4, 5, 3, 3, 5, true, DTYPE_F32);
    exact_conv_case(1, 5, 4, 3, 5, 7, 3, true, DTYPE_F16);
    mixed_cpu_case();
    exact_shuffle_case(1, 1, 1, 1, 1);
    exact_shuffle_case(2, 3, 2, 3, 4);

    ot_skip_without_gpu("test_op_conv3d");
    struct arena dev = {0};
    struct op_ctx ctx = {0};
    CHECK(ot_gpu_begin(&dev, &ctx, (size_t)1 << 30), "cannot set up the GPU part");
    for (size_t i = 0; i < sizeof(GCASES) / sizeof(GCASES[0]); i++)
        gpu_conv_case(&GCASES[i], &dev, &ctx);
    /* the direct kernel (the fallback when cuDNN offers no algorithm), forced */
    setenv("S3D_CONV3D_DIRECT", "1", 1);
    for (size_t i = 0; i < 6; i++)
        gpu_conv_case(&GCASES[i], &dev, &ctx);
    unsetenv("S3D_CONV3D_DIRECT");
    gpu_shuffle_case(1, 1, 1, 1, 1, &dev, &ctx);
    gpu_shuffle_case(1, 3, 4, 5, 3, &dev, &ctx);
    gpu_shuffle_case(1, 16, 16, 16, 128, &dev, &ctx);
    ot_gpu_end(&dev, &ctx);
    return harness_done("test_op_conv3d");
}
