/*
 * test_op_act.c - op_act: GELU (erf and tanh forms) and SiLU, every dtype pair,
 * in place and not. CPU part: against the formulas in double. GPU part: CUDA
 * against the CPU op over sizes 1, odd, and a DINOv2 MLP hidden (1374 x 4096),
 * with guard bytes after every output.
 */
#include "harness.h"
#include "log.h"
#include "op_harness.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const struct op_tol TOL[] = {
    {DTYPE_F32,  1e-6, 1e-5, -1, "fp32 erff/tanhf/expf: a few ulp apart between libm, CUDA and double"},
    {DTYPE_F16,  1e-3, 1e-3, -1, "one f16 rounding (2^-11 rel), can flip with a few-ulp fp32 difference"},
    {DTYPE_BF16, 8e-3, 8e-3, -1, "one bf16 rounding (2^-8 rel), same"},
};
#define NTOL (sizeof(TOL) / sizeof(TOL[0]))

static const char *act_name(enum op_act a)
{
    return a == OP_ACT_GELU_ERF ? "gelu_erf" : a == OP_ACT_GELU_TANH ? "gelu_tanh" : "silu";
}

static double act_ref(double v, enum op_act a)
{
    switch (a) {
    case OP_ACT_GELU_ERF:  return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    case OP_ACT_GELU_TANH: return 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    case OP_ACT_SILU:      return v / (1.0 + exp(-v));
    }
    return NAN;
}

struct acase {
    int64_t    R, C;
    enum dtype in, out;
    bool       in_place;
};

static void run_op(const struct acase *c, enum op_act act, const float *xv, float *out,
                   struct arena *a, const struct op_ctx *ctx)
{
    struct tensor hx = ot_host(c->in, SHAPE(c->R, c->C), xv);
    struct tensor hy = ot_host(c->out, SHAPE(c->R, c->C), NULL);
    struct tensor x = hx, y = hy;

    if (ctx) {
        x = ot_dev(a, &hx);
        y = ot_dev(a, &hy);
    }
    struct tensor *yp = c->in_place ? &x : &y;
    op_act(ctx, yp, &x, act);
    if (ctx)
        op_ctx_synchronize(ctx);
    CHECK(ot_guard_ok(yp), "guard after y");
    ot_to_f32(yp, out);
    ot_free(&hx);
    ot_free(&hy);
}

static float *make_x(const struct acase *c, uint64_t seed)
{
    struct rng r;
    size_t     n = (size_t)(c->R * c->C);
    float     *x = malloc(sizeof(float) * n);

    rng_seed(&r, seed);
    fill_uniform(&r, x, n, -8.0f, 8.0f);
    if (n > 4) {                                 /* the tails and zero */
        x[0] = 0.0f;
        x[1] = -30.0f;
        x[2] = 30.0f;
        x[3] = -1e-4f;
    }
    ot_round(x, n, c->in);
    return x;
}

static void label_of(char *buf, size_t n, const char *what, enum op_act act, const struct acase *c)
{
    snprintf(buf, n, "%s %s R%lld C%lld %s->%s%s", what, act_name(act), (long long)c->R,
             (long long)c->C, dtype_name(c->in), dtype_name(c->out), c->in_place ? " in-place" : "");
}

static void test_cpu(void)
{
    static const struct acase cases[] = {
        {1, 1, DTYPE_F32, DTYPE_F32, 0}, {3, 333, DTYPE_F32, DTYPE_F32, 1},
        {2, 1500, DTYPE_F16, DTYPE_F16, 0}, {2, 1500, DTYPE_BF16, DTYPE_F32, 0},
        {5, 77, DTYPE_F32, DTYPE_BF16, 0},
    };
    char label[160];

    for (int act = 0; act < 3; act++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            const struct acase *c = &cases[i];
            size_t n = (size_t)(c->R * c->C);
            float *x = make_x(c, 30 + i), *out = malloc(sizeof(float) * n);
            float *ref = malloc(sizeof(float) * n);
            run_op(c, (enum op_act)act, x, out, NULL, NULL);
            for (size_t j = 0; j < n; j++)
                ref[j] = (float)act_ref(x[j], (enum op_act)act);
            ot_round(ref, n, c->out);
            label_of(label, sizeof(label), "cpu~naive", (enum op_act)act, c);
            ot_report(label, out, ref, n, TOL, NTOL, c->out);
            free(x);
            free(out);
            free(ref);
        }
    }
}

static void test_gpu(void)
{
    static const struct acase cases[] = {
        {1, 1, DTYPE_F32, DTYPE_F32, 0}, {1, 7, DTYPE_F16, DTYPE_F16, 1},
        {3, 1001, DTYPE_BF16, DTYPE_BF16, 0}, {3, 1001, DTYPE_F16, DTYPE_F32, 0},
        {1374, 4096, DTYPE_F16, DTYPE_F16, 1},   /* DINOv2 MLP hidden */
        {1374, 4096, DTYPE_F32, DTYPE_F32, 0}, {1, 1024, DTYPE_F32, DTYPE_F16, 0},
    };
    struct arena  a;
    struct op_ctx ctx;
    char          label[160];

    if (!ot_gpu_begin(&a, &ctx, (size_t)1 << 28)) {
        CHECK(0, "GPU set-up failed");
        return;
    }
    for (int act = 0; act < 3; act++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            const struct acase *c = &cases[i];
            size_t mark = arena_mark(&a), n = (size_t)(c->R * c->C);
            float *x = make_x(c, 300 + i), *out = malloc(sizeof(float) * n);
            float *ref = malloc(sizeof(float) * n);
            run_op(c, (enum op_act)act, x, out, &a, &ctx);
            run_op(c, (enum op_act)act, x, ref, NULL, NULL);
            label_of(label, sizeof(label), "cuda~cpu", (enum op_act)act, c);
            ot_report(label, out, ref, n, TOL, NTOL, c->out);
            free(x);
            free(out);
            free(ref);
            arena_release(&a, mark);
        }
    }
    ot_gpu_end(&a, &ctx);
}

int main(void)
{
    log_init("test_op_act");
    ot_print_tols(TOL, NTOL);
    test_cpu();
    ot_skip_without_gpu("test_op_act");
    test_gpu();
    return harness_done("test_op_act");
}
