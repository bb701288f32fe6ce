/*
 * test_op_elementwise.c - the residual/modulation family: add (y = x + a),
 * add_scaled (y = x + g a, g broadcast per row group), add_gated
 * (y = x + round_a(g a): the product rounded into a's dtype first), modulate
 * (y = x (1 + s) + t), add_bias. Mixed dtypes as the stages use them (an fp32
 * residual stream plus an fp16 branch), parameters shaped (C) and (B, C),
 * in place. CPU part: against double formulas, with small-integer inputs
 * exact. GPU part: CUDA against the CPU op, guard bytes after outputs.
 */
#include "harness.h"
#include "log.h"
#include "op_harness.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const struct op_tol TOL[] = {
    {DTYPE_F32,  1e-6, 1e-6, -1, "fp32 a + b c: at most one fma-vs-separate rounding apart"},
    {DTYPE_F16,  1e-3, 1e-3, -1, "one f16 rounding (2^-11 rel), may flip on that fp32 difference"},
    {DTYPE_BF16, 8e-3, 8e-3, -1, "one bf16 rounding (2^-8 rel), same"},
};
#define NTOL (sizeof(TOL) / sizeof(TOL[0]))

enum ew_op { EW_ADD, EW_ADD_SCALED, EW_ADD_GATED, EW_MODULATE, EW_MODULATE_NO_T, EW_ADD_BIAS };
static const char *ew_name[] = {"add",      "add_scaled",     "add_gated",
                                "modulate", "modulate(no t)", "add_bias"};

struct ecase {
    enum ew_op op;
    int64_t    B, T, C;
    int64_t    G;            /* parameter groups: 1 -> (C), B -> (B, C) */
    enum dtype xdt, pdt, ydt; /* x, the other operands, y */
    int        in_place;     /* 0 no, 1 y = x, 2 y = a (add only) */
    bool       small_int;
};

struct edata {
    float *x, *p0, *p1;      /* x (B*T*C); p0 = a / g / s / b; p1 = a / t */
};

static int64_t p0_len(const struct ecase *c)
{
    return c->op == EW_ADD ? c->B * c->T * c->C : c->G * c->C;
}

static int64_t p1_len(const struct ecase *c)
{
    if (c->op == EW_ADD_SCALED || c->op == EW_ADD_GATED)
        return c->B * c->T * c->C;
    return c->op == EW_MODULATE ? c->G * c->C : 0;
}

static void make_data(const struct ecase *c, uint64_t seed, struct edata *d)
{
    struct rng r;
    size_t     n = (size_t)(c->B * c->T * c->C), n0 = (size_t)p0_len(c), n1 = (size_t)p1_len(c);

    if (n1 < (size_t)(c->G * c->C))              /* run_op always makes a (G, C) p1 tensor */
        n1 = (size_t)(c->G * c->C);

    rng_seed(&r, seed);
    d->x = malloc(sizeof(float) * n);
    d->p0 = malloc(sizeof(float) * n0);
    d->p1 = malloc(sizeof(float) * n1);
    if (c->small_int) {
        fill_small_int(&r, d->x, n, -16, 16);
        fill_small_int(&r, d->p0, n0, -4, 4);
        fill_small_int(&r, d->p1, n1, -16, 16);
    } else {
        fill_normal(&r, d->x, n, 2.0f);
        fill_normal(&r, d->p0, n0, 1.0f);
        fill_normal(&r, d->p1, n1, 1.0f);
    }
    ot_round(d->x, n, c->xdt);
    ot_round(d->p0, n0, c->pdt);
    ot_round(d->p1, n1, c->pdt);
}

static void free_data(struct edata *d)
{
    free(d->x);
    free(d->p0);
    free(d->p1);
}

/* Run the op (host when ctx is NULL); y as fp32 into out. */
static void run_op(const struct ecase *c, const struct edata *d, float *out, struct arena *a,
                   const struct op_ctx *ctx)
{
    struct tensor hx = ot_host(c->xdt, SHAPE(c->B, c->T, c->C), d->x);
    struct tensor h0 = c->op == EW_ADD ? ot_host(c->pdt, SHAPE(c->B, c->T, c->C), d->p0)
                                       : ot_host(c->pdt, SHAPE(c->G, 1, c->C), d->p0);
    bool          full1 = c->op == EW_ADD_SCALED || c->op == EW_ADD_GATED;
    struct tensor h1 = full1 ? ot_host(c->pdt, SHAPE(c->B, c->T, c->C), d->p1)
                                              : ot_host(c->pdt, SHAPE(c->G, c->C), d->p1);
    struct tensor hy = ot_host(c->ydt, SHAPE(c->B, c->T, c->C), NULL);
    struct tensor x = hx, p0 = h0, p1 = h1, y = hy;

    if (c->G == 1 && c->op != EW_ADD)            /* a plain (C) vector */
        p0 = h0 = tensor_reshape(&h0, SHAPE(c->C));
    if (ctx) {
        x = ot_dev(a, &hx);
        p0 = ot_dev(a, &h0);
        p1 = ot_dev(a, &h1);
        y = ot_dev(a, &hy);
    }
    struct tensor *yp = c->in_place == 1 ? &x : c->in_place == 2 ? &p0 : &y;
    switch (c->op) {
    case EW_ADD:           op_add(ctx, yp, &x, &p0); break;
    case EW_ADD_SCALED:    op_add_scaled(ctx, yp, &x, &p0, &p1); break;
    case EW_ADD_GATED:     op_add_gated(ctx, yp, &x, &p0, &p1); break;
    case EW_MODULATE:      op_modulate(ctx, yp, &x, &p0, &p1); break;
    case EW_MODULATE_NO_T: op_modulate(ctx, yp, &x, &p0, NULL); break;
    case EW_ADD_BIAS:      op_add_bias(ctx, yp, &x, &p0); break;
    }
    if (ctx)
        op_ctx_synchronize(ctx);
    CHECK(ot_guard_ok(yp), "guard after y");
    ot_to_f32(yp, out);
    ot_free(&hx);
    ot_free(&h0);
    ot_free(&h1);
    ot_free(&hy);
}

static void label_of(char *buf, size_t n, const char *what, const struct ecase *c)
{
    snprintf(buf, n, "%s %s B%lld T%lld C%lld G%lld x %s p %s y %s%s%s", what, ew_name[c->op],
             (long long)c->B, (long long)c->T, (long long)c->C, (long long)c->G,
             dtype_name(c->xdt), dtype_name(c->pdt), dtype_name(c->ydt),
             c->in_place ? " in-place" : "", c->small_int ? " int" : "");
}

static const struct ecase CPU_CASES[] = {
    {EW_ADD, 1, 1, 1, 1, DTYPE_F32, DTYPE_F32, DTYPE_F32, 0, 0},
    {EW_ADD, 2, 5, 7, 1, DTYPE_F32, DTYPE_F16, DTYPE_F32, 2, 1},
    {EW_ADD_SCALED, 2, 5, 7, 1, DTYPE_F32, DTYPE_F16, DTYPE_F32, 1, 1},
    {EW_ADD_SCALED, 2, 5, 7, 2, DTYPE_BF16, DTYPE_BF16, DTYPE_BF16, 0, 0},
    {EW_ADD_GATED, 2, 5, 7, 2, DTYPE_F32, DTYPE_F16, DTYPE_F32, 1, 0},
    {EW_ADD_GATED, 1, 3, 9, 1, DTYPE_F32, DTYPE_BF16, DTYPE_F32, 0, 1},
    {EW_ADD_GATED, 1, 4, 8, 1, DTYPE_F16, DTYPE_F16, DTYPE_F16, 1, 0},
    {EW_MODULATE, 3, 4, 9, 3, DTYPE_F32, DTYPE_F16, DTYPE_F16, 0, 0},
    {EW_MODULATE_NO_T, 3, 4, 9, 1, DTYPE_F16, DTYPE_F16, DTYPE_F16, 1, 1},
    {EW_ADD_BIAS, 1, 6, 5, 1, DTYPE_F32, DTYPE_BF16, DTYPE_F32, 1, 0},
};

static void test_cpu(void)
{
    char label[200];

    for (size_t i = 0; i < sizeof(CPU_CASES) / sizeof(CPU_CASES[0]); i++) {
        const struct ecase *c = &CPU_CASES[i];
        struct edata d;
        int64_t n = c->B * c->T * c->C, rows = c->B * c->T;
        make_data(c, 50 + i, &d);
        float *out = malloc(sizeof(float) * (size_t)n), *ref = malloc(sizeof(float) * (size_t)n);
        run_op(c, &d, out, NULL, NULL);
        for (int64_t r = 0; r < rows; r++) {
            int64_t g = r / (rows / c->G);
            for (int64_t j = 0; j < c->C; j++) {
                int64_t i0 = r * c->C + j, ip = g * c->C + j;
                double  x = d.x[i0], v = 0;
                switch (c->op) {
                case EW_ADD:           v = x + d.p0[i0]; break;
                case EW_ADD_SCALED:    v = x + (double)d.p0[ip] * d.p1[i0]; break;
                case EW_ADD_GATED:
                    v = x + dtype_round(c->pdt, (float)((double)d.p0[ip] * d.p1[i0]));
                    break;
                case EW_MODULATE:      v = x * (1.0 + d.p0[ip]) + d.p1[ip]; break;
                case EW_MODULATE_NO_T: v = x * (1.0 + d.p0[ip]); break;
                case EW_ADD_BIAS:      v = x + d.p0[ip]; break;
                }
                ref[i0] = (float)v;
            }
        }
        ot_round(ref, (size_t)n, c->ydt);
        label_of(label, sizeof(label), "cpu~naive", c);
        if (c->small_int)
            report_cmp(label, compare_f32(out, ref, (size_t)n, 0, 0, -1));
        else
            ot_report(label, out, ref, (size_t)n, TOL, NTOL, c->ydt);
        free(out);
        free(ref);
        free_data(&d);
    }
}

static void test_gpu(void)
{
    static const struct ecase cases[] = {
        {EW_ADD, 1, 1, 1, 1, DTYPE_F32, DTYPE_F32, DTYPE_F32, 0, 0},
        {EW_ADD, 1, 1374, 1024, 1, DTYPE_F32, DTYPE_F16, DTYPE_F32, 1, 0},
        {EW_ADD, 1, 26000, 1024, 1, DTYPE_F16, DTYPE_F16, DTYPE_F16, 2, 1},
        {EW_ADD_SCALED, 1, 1374, 1024, 1, DTYPE_F32, DTYPE_F16, DTYPE_F32, 1, 0},  /* DINOv2 ls */
        {EW_ADD_SCALED, 2, 4096, 1024, 2, DTYPE_F32, DTYPE_F16, DTYPE_F32, 1, 0},  /* gate, CFG */
        {EW_ADD_SCALED, 3, 7, 33, 3, DTYPE_BF16, DTYPE_BF16, DTYPE_BF16, 0, 1},
        {EW_ADD_GATED, 1, 4096, 1024, 1, DTYPE_F32, DTYPE_F16, DTYPE_F32, 1, 0},  /* SS flow */
        {EW_ADD_GATED, 2, 77, 33, 2, DTYPE_F32, DTYPE_BF16, DTYPE_F16, 0, 0},
        {EW_ADD_GATED, 1, 5941, 1024, 1, DTYPE_F16, DTYPE_F16, DTYPE_F16, 1, 0},  /* 8-wide */
        {EW_MODULATE, 2, 4096, 1024, 2, DTYPE_F32, DTYPE_F16, DTYPE_F16, 0, 0},
        {EW_MODULATE, 1, 5, 1, 1, DTYPE_F16, DTYPE_F32, DTYPE_F16, 1, 0},
        {EW_MODULATE_NO_T, 1, 999, 129, 1, DTYPE_F16, DTYPE_F16, DTYPE_F32, 0, 0},
        {EW_ADD_BIAS, 1, 1000, 257, 1, DTYPE_F32, DTYPE_F16, DTYPE_F32, 1, 1},
        /* the 8-wide fp16/bf16 path: SLAT flow gate (in place), modulation, bias; a BF16 one */
        {EW_ADD_SCALED, 1, 5941, 1024, 1, DTYPE_F16, DTYPE_F16, DTYPE_F16, 1, 0},
        {EW_ADD_SCALED, 2, 333, 1024, 2, DTYPE_BF16, DTYPE_BF16, DTYPE_BF16, 0, 0},
        {EW_MODULATE, 1, 5941, 128, 1, DTYPE_F16, DTYPE_F16, DTYPE_F16, 1, 0},
        {EW_MODULATE_NO_T, 2, 100, 64, 2, DTYPE_F16, DTYPE_F32, DTYPE_F16, 0, 0},
        {EW_ADD_BIAS, 1, 5941, 1024, 1, DTYPE_F16, DTYPE_F16, DTYPE_F16, 1, 1},
        {EW_ADD, 1, 777, 136, 1, DTYPE_F16, DTYPE_F16, DTYPE_F16, 0, 0},
        /* the row kernel's shapes: fp32 stream rows of 8 (one thread a row) to 2048, three
         * groups of 50 rows, fp32 full-size operands, the SS flow's constant row (4 rows) */
        {EW_ADD, 1, 300, 8, 1, DTYPE_F32, DTYPE_F16, DTYPE_F32, 1, 0},
        {EW_ADD_SCALED, 3, 50, 2048, 3, DTYPE_F32, DTYPE_BF16, DTYPE_F32, 0, 0},
        {EW_ADD_GATED, 3, 50, 520, 3, DTYPE_F32, DTYPE_F16, DTYPE_F32, 1, 0},
        {EW_ADD, 1, 100, 64, 1, DTYPE_F32, DTYPE_F32, DTYPE_F32, 0, 0},
        {EW_ADD_BIAS, 1, 4, 1024, 1, DTYPE_F32, DTYPE_F16, DTYPE_F32, 1, 0},
    };
    struct arena  a;
    struct op_ctx ctx;
    char          label[200];

    if (!ot_gpu_begin(&a, &ctx, (size_t)1 << 30)) {
        CHECK(0, "GPU set-up failed");
        return;
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct ecase *c = &cases[i];
        struct edata d;
        size_t mark = arena_mark(&a), n = (size_t)(c->B * c->T * c->C);
        make_data(c, 500 + i, &d);
        float *out = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n);
        run_op(c, &d, out, &a, &ctx);
        run_op(c, &d, ref, NULL, NULL);
        label_of(label, sizeof(label), "cuda~cpu", c);
        if (c->small_int)
            report_cmp(label, compare_f32(out, ref, n, 0, 0, -1));
        else
            ot_report(label, out, ref, n, TOL, NTOL, c->ydt);
        free(out);
        free(ref);
        free_data(&d);
        arena_release(&a, mark);
    }
    ot_gpu_end(&a, &ctx);
}

int main(void)
{
    log_init("test_op_elementwise");
    ot_print_tols(TOL, NTOL);
    test_cpu();
    ot_skip_without_gpu("test_op_elementwise");
    test_gpu();
    return harness_done("test_op_elementwise");
}
