/*
 * test_op_rmsnorm.c - op_rmsnorm_heads: y = x / max(||x||, 1e-12) * gamma[h] * scale
 * (MultiHeadRMSNorm). Cases normalise q in place inside a fused qkv output
 * (B, T, 3, H, 64) through op_heads_view, as the flow transformers do, and a
 * contiguous (T, H, 64) tensor out of place; a zero row checks the 1e-12 clamp.
 * CPU part: against a double formula. GPU part: CUDA against the CPU op,
 * comparing the whole qkv buffer (k and v must be untouched) plus guard bytes.
 */
#include "harness.h"
#include "log.h"
#include "op_harness.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const struct op_tol TOL[] = {
    {DTYPE_F32,  1e-5, 1e-5, -1, "fp32 norm of 64 terms vs double; |y| up to ~8 |gamma|"},
    {DTYPE_F16,  4e-3, 1e-3, -1, "one f16 rounding (2^-11 rel) of values up to ~30"},
    {DTYPE_BF16, 4e-2, 8e-3, -1, "one bf16 rounding (2^-8 rel), one ulp flip allowed"},
};
#define NTOL (sizeof(TOL) / sizeof(TOL[0]))

struct rcase {
    int64_t    B, T, H;
    enum dtype dt, gdt;
    bool       fused;     /* q inside (B, T, 3, H, 64), in place; else (B*T, H, 64) out of place */
};

/* Run the op on host (ctx NULL) or device; the whole output buffer into out. */
static void run_op(const struct rcase *c, const float *xv, const float *gv, float *out,
                   struct arena *a, const struct op_ctx *ctx)
{
    int64_t D = OP_HEAD_DIM, S = c->fused ? 3 : 1;
    struct tensor hx = ot_host(c->dt, SHAPE(c->B, c->T, S, c->H, D), xv);
    struct tensor hg = ot_host(c->gdt, SHAPE(c->H, D), gv);
    struct tensor hy = ot_host(c->dt, SHAPE(c->B * c->T, c->H, D), NULL);
    struct tensor x = hx, g = hg, y = hy;

    if (ctx) {
        x = ot_dev(a, &hx);
        g = ot_dev(a, &hg);
        y = ot_dev(a, &hy);
    }
    if (c->fused) {
        struct tensor q = op_heads_view(&x, 0);
        op_rmsnorm_heads(ctx, &q, &q, &g, 8.0f);
    } else {
        struct tensor xin = tensor_reshape(&x, SHAPE(c->B * c->T, c->H, D));
        op_rmsnorm_heads(ctx, &y, &xin, &g, 8.0f);
    }
    if (ctx)
        op_ctx_synchronize(ctx);
    struct tensor *res = c->fused ? &x : &y;
    CHECK(ot_guard_ok(res), "guard after output");
    ot_to_f32(res, out);
    ot_free(&hx);
    ot_free(&hg);
    ot_free(&hy);
}

static void make_inputs(const struct rcase *c, uint64_t seed, float **x, float **g, size_t *nx)
{
    struct rng r;
    int64_t    S = c->fused ? 3 : 1;

    rng_seed(&r, seed);
    *nx = (size_t)(c->B * c->T * S * c->H * OP_HEAD_DIM);
    *x = malloc(sizeof(float) * *nx);
    *g = malloc(sizeof(float) * (size_t)(c->H * OP_HEAD_DIM));
    fill_normal(&r, *x, *nx, 3.0f);
    for (int d = 0; d < OP_HEAD_DIM; d++)      /* row 0 of head 0 is all zeros: the clamp */
        (*x)[d] = 0.0f;
    fill_normal(&r, *g, (size_t)(c->H * OP_HEAD_DIM), 1.0f);
    ot_round(*x, *nx, c->dt);
    ot_round(*g, (size_t)(c->H * OP_HEAD_DIM), c->gdt);
}

static void label_of(char *buf, size_t n, const char *what, const struct rcase *c)
{
    snprintf(buf, n, "%s B%lld T%lld H%lld %s gamma %s %s", what, (long long)c->B, (long long)c->T,
             (long long)c->H, dtype_name(c->dt), dtype_name(c->gdt),
             c->fused ? "q in qkv, in place" : "contiguous");
}

static void test_cpu(void)
{
    static const struct rcase cases[] = {
        {1, 1, 1, DTYPE_F32, DTYPE_F32, 0},
        {2, 5, 3, DTYPE_F32, DTYPE_F32, 1},
        {1, 7, 16, DTYPE_F16, DTYPE_F32, 1},
        {1, 3, 4, DTYPE_BF16, DTYPE_BF16, 0},
    };
    char label[160];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct rcase *c = &cases[i];
        float *x, *g;
        size_t nx;
        make_inputs(c, 20 + i, &x, &g, &nx);
        float *out = malloc(sizeof(float) * nx);
        float *ref = malloc(sizeof(float) * nx);
        int64_t S = c->fused ? 3 : 1;
        run_op(c, x, g, out, NULL, NULL);
        for (size_t j = 0; j < nx; j++)
            ref[j] = x[j];                       /* k and v parts stay as they were */
        for (int64_t bt = 0; bt < c->B * c->T; bt++) {
            for (int64_t h = 0; h < c->H; h++) {
                float *row = ref + ((bt * S) * c->H + h) * OP_HEAD_DIM;
                double ss = 0;
                for (int d = 0; d < OP_HEAD_DIM; d++)
                    ss += (double)row[d] * row[d];
                double den = fmax(sqrt(ss), 1e-12);
                for (int d = 0; d < OP_HEAD_DIM; d++)
                    row[d] = (float)(row[d] / den * g[h * OP_HEAD_DIM + d] * 8.0);
            }
        }
        ot_round(ref, nx, c->dt);
        label_of(label, sizeof(label), "cpu~naive", c);
        ot_report(label, out, ref, nx, TOL, NTOL, c->dt);
        free(x);
        free(g);
        free(out);
        free(ref);
    }
}

static void test_gpu(void)
{
    static const struct rcase cases[] = {
        {1, 1, 1, DTYPE_F32, DTYPE_F32, 0},
        {1, 1, 16, DTYPE_F16, DTYPE_F32, 1},
        {2, 37, 3, DTYPE_BF16, DTYPE_F32, 1},
        {1, 4096, 16, DTYPE_F16, DTYPE_F32, 1},    /* SS flow shape stream */
        {2, 4100, 16, DTYPE_F16, DTYPE_F16, 0},
        {1, 26000, 16, DTYPE_F16, DTYPE_F32, 1},   /* SLAT flow at 26k voxels */
        {1, 1000, 16, DTYPE_F32, DTYPE_F32, 1},
    };
    struct arena  a;
    struct op_ctx ctx;
    char          label[160];

    if (!ot_gpu_begin(&a, &ctx, (size_t)1 << 30)) {
        CHECK(0, "GPU set-up failed");
        return;
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct rcase *c = &cases[i];
        size_t mark = arena_mark(&a);
        float *x, *g;
        size_t nx;
        make_inputs(c, 200 + i, &x, &g, &nx);
        float *out = malloc(sizeof(float) * nx);
        float *ref = malloc(sizeof(float) * nx);
        run_op(c, x, g, out, &a, &ctx);
        run_op(c, x, g, ref, NULL, NULL);
        label_of(label, sizeof(label), "cuda~cpu", c);
        size_t n = c->fused ? nx : (size_t)(c->B * c->T * c->H * OP_HEAD_DIM);
        ot_report(label, out, ref, n, TOL, NTOL, c->dt);
        free(x);
        free(g);
        free(out);
        free(ref);
        arena_release(&a, mark);
    }
    ot_gpu_end(&a, &ctx);
}

int main(void)
{
    log_init("test_op_rmsnorm");
    ot_print_tols(TOL, NTOL);
    test_cpu();
    ot_skip_without_gpu("test_op_rmsnorm");
    test_gpu();
    return harness_done("test_op_rmsnorm");
}
