/*
 * test_op_softmax.c - op_softmax over the last dim. CPU part: against a double
 * formula, including rows with -inf entries and large offsets. GPU part: CUDA
 * against the CPU op over widths 1, odd, 1374 and 7528 (attention-score
 * sized rows), every dtype pair, in place and not, guard bytes after outputs.
 */
#include "harness.h"
#include "log.h"
#include "op_harness.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const struct op_tol TOL[] = {
    {DTYPE_F32,  1e-7, 2e-5, -1, "fp32 expf (a few ulp) and an fp32 sum of up to 7528 terms"},
    {DTYPE_F16,  1e-5, 1e-3, -1, "one f16 rounding (2^-11 rel); subnormal outputs need the atol"},
    {DTYPE_BF16, 1e-6, 8e-3, -1, "one bf16 rounding (2^-8 rel)"},
};
#define NTOL (sizeof(TOL) / sizeof(TOL[0]))

struct scase {
    int64_t    R, N;
    enum dtype in, out;
    bool       in_place;
};

static void run_op(const struct scase *c, const float *xv, float *out, struct arena *a,
                   const struct op_ctx *ctx)
{
    struct tensor hx = ot_host(c->in, SHAPE(c->R, c->N), xv);
    struct tensor hy = ot_host(c->out, SHAPE(c->R, c->N), NULL);
    struct tensor x = hx, y = hy;

    if (ctx) {
        x = ot_dev(a, &hx);
        y = ot_dev(a, &hy);
    }
    struct tensor *yp = c->in_place ? &x : &y;
    op_softmax(ctx, yp, &x);
    if (ctx)
        op_ctx_synchronize(ctx);
    CHECK(ot_guard_ok(yp), "guard after y");
    ot_to_f32(yp, out);
    ot_free(&hx);
    ot_free(&hy);
}

/* Rows with scale 4, one row offset by +100 (max subtraction), one -inf entry. */
static float *make_x(const struct scase *c, uint64_t seed)
{
    struct rng r;
    size_t     n = (size_t)(c->R * c->N);
    float     *x = malloc(sizeof(float) * n);

    rng_seed(&r, seed);
    fill_normal(&r, x, n, 4.0f);
    if (c->R > 1)
        for (int64_t j = 0; j < c->N; j++)
            x[c->N + j] += 100.0f;
    if (c->N > 1)
        x[1] = -INFINITY;
    ot_round(x, n, c->in);
    return x;
}

static void label_of(char *buf, size_t n, const char *what, const struct scase *c)
{
    snprintf(buf, n, "%s R%lld N%lld %s->%s%s", what, (long long)c->R, (long long)c->N,
             dtype_name(c->in), dtype_name(c->out), c->in_place ? " in-place" : "");
}

static void test_cpu(void)
{
    static const struct scase cases[] = {
        {1, 1, DTYPE_F32, DTYPE_F32, 0}, {3, 5, DTYPE_F32, DTYPE_F32, 1},
        {4, 333, DTYPE_F16, DTYPE_F32, 0}, {4, 333, DTYPE_F32, DTYPE_F16, 0},
        {2, 1000, DTYPE_BF16, DTYPE_BF16, 1},
    };
    char label[160];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct scase *c = &cases[i];
        size_t n = (size_t)(c->R * c->N);
        float *x = make_x(c, 40 + i), *out = malloc(sizeof(float) * n);
        float *ref = malloc(sizeof(float) * n);
        run_op(c, x, out, NULL, NULL);
        for (int64_t r = 0; r < c->R; r++) {
            const float *xr = x + r * c->N;
            double mx = -INFINITY, s = 0;
            for (int64_t j = 0; j < c->N; j++)
                mx = fmax(mx, xr[j]);
            for (int64_t j = 0; j < c->N; j++)
                s += exp(xr[j] - mx);
            for (int64_t j = 0; j < c->N; j++)
                ref[r * c->N + j] = (float)(exp(xr[j] - mx) / s);
        }
        ot_round(ref, n, c->out);
        label_of(label, sizeof(label), "cpu~naive", c);
        ot_report(label, out, ref, n, TOL, NTOL, c->out);
        free(x);
        free(out);
        free(ref);
    }
}

static void test_gpu(void)
{
    static const struct scase cases[] = {
        {1, 1, DTYPE_F32, DTYPE_F32, 0}, {7, 3, DTYPE_F16, DTYPE_F16, 0},
        {5, 1001, DTYPE_BF16, DTYPE_F32, 0}, {16, 1374, DTYPE_F32, DTYPE_F32, 1},
        {64, 7528, DTYPE_F16, DTYPE_F16, 0}, {1374, 1374, DTYPE_F32, DTYPE_F16, 0},
    };
    struct arena  a;
    struct op_ctx ctx;
    char          label[160];

    if (!ot_gpu_begin(&a, &ctx, (size_t)1 << 28)) {
        CHECK(0, "GPU set-up failed");
        return;
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct scase *c = &cases[i];
        size_t mark = arena_mark(&a), n = (size_t)(c->R * c->N);
        float *x = make_x(c, 400 + i), *out = malloc(sizeof(float) * n);
        float *ref = malloc(sizeof(float) * n);
        run_op(c, x, out, &a, &ctx);
        run_op(c, x, ref, NULL, NULL);
        label_of(label, sizeof(label), "cuda~cpu", c);
        ot_report(label, out, ref, n, TOL, NTOL, c->out);
        free(x);
        free(out);
        free(ref);
        arena_release(&a, mark);
    }
    ot_gpu_end(&a, &ctx);
}

int main(void)
{
    log_init("test_op_softmax");
    ot_print_tols(TOL, NTOL);
    test_cpu();
    ot_skip_without_gpu("test_op_softmax");
    test_gpu();
    return harness_done("test_op_softmax");
}
