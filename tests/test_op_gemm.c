/*
 * test_op_gemm.c - op_linear (y = x w^T + b [+ y]).
 *
 * CPU part (always): op_linear_cpu against a naive double-precision loop on
 * small shapes, every dtype pair, with/without bias, accumulate; small-integer
 * inputs must match exactly. GPU part: op_linear_cuda against op_linear_cpu
 * over a shape table (1, odd sizes, the DINOv2 MLP shapes), guard bytes after
 * every output, NaN/Inf counted by compare_f32.
 * op_linear_gelu (Linear then GELU tanh, one rounding): CPU against a double
 * loop and, for F32, bit for bit against op_linear_cpu + op_act_cpu; GPU
 * (the cuBLASLt GELU_BIAS epilogue, and the unfused fall-back when the bias
 * dtype is not y's) against the CPU at the MLP shapes of the flows and the
 * SLAT decoders. The GEMM cache's descriptors: one problem with three biases
 * at three addresses, and more problems than it holds.
 */
#include "harness.h"
#include "log.h"
#include "op_harness.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tolerances by output dtype for random N(0,1) inputs (|o - r| <= atol + rtol |r|). */
static const struct op_tol TOL[] = {
    {DTYPE_F32,  2e-4, 2e-4, -1, "fp32 sums of up to 4096 terms in a different order (~sqrt(K) eps |x||w|)"},
    {DTYPE_F16,  2e-3, 2e-3, -1, "one f16 rounding (2^-11 rel) of results that differ in fp32 order"},
    {DTYPE_BF16, 2e-2, 1e-2, -1, "one bf16 rounding (2^-8 rel), can flip at a tie: one bf16 ulp"},
};
#define NTOL (sizeof(TOL) / sizeof(TOL[0]))
/* op_linear_gelu, CUDA vs CPU: the GEMM's order differences as above, plus cuBLASLt's
 * epilogue may evaluate tanh with the hardware approximation (about 2^-11 relative). */
static const struct op_tol TOL_GELU[] = {
    {DTYPE_F32,  2e-3, 2e-3, -1, "fp32 order + an approximate tanh in the epilogue (2^-11)"},
    {DTYPE_F16,  3e-3, 3e-3, -1, "one f16 rounding + the approximate tanh"},
    {DTYPE_BF16, 2e-2, 1e-2, -1, "one bf16 rounding (2^-8 rel)"},
};
#define NTOL_GELU (sizeof(TOL_GELU) / sizeof(TOL_GELU[0]))

struct gcase {
    int64_t     M, N, K;
    enum dtype  in, out;
    bool        bias, acc, small_int;
};

/* Inputs (rounded to their dtypes) for one case: x (M,K), w (N,K), b (N), y0 (M,N). */
struct gdata {
    float *x, *w, *b, *y0;
};

static void gdata_make(struct gdata *d, const struct gcase *c, uint64_t seed)
{
    struct rng r;

    rng_seed(&r, seed);
    d->x  = malloc(sizeof(float) * (size_t)(c->M * c->K));
    d->w  = malloc(sizeof(float) * (size_t)(c->N * c->K));
    d->b  = malloc(sizeof(float) * (size_t)c->N);
    d->y0 = malloc(sizeof(float) * (size_t)(c->M * c->N));
    if (c->small_int) {
        fill_small_int(&r, d->x, (size_t)(c->M * c->K), -3, 3);
        fill_small_int(&r, d->w, (size_t)(c->N * c->K), -3, 3);
        fill_small_int(&r, d->b, (size_t)c->N, -8, 8);
        fill_small_int(&r, d->y0, (size_t)(c->M * c->N), -8, 8);
    } else {
        fill_normal(&r, d->x, (size_t)(c->M * c->K), 1.0f);
        fill_normal(&r, d->w, (size_t)(c->N * c->K), 1.0f / sqrtf((float)c->K));
        fill_normal(&r, d->b, (size_t)c->N, 0.5f);
        fill_normal(&r, d->y0, (size_t)(c->M * c->N), 1.0f);
    }
    ot_round(d->x, (size_t)(c->M * c->K), c->in);
    ot_round(d->w, (size_t)(c->N * c->K), c->in);
    ot_round(d->b, (size_t)c->N, c->in);
    ot_round(d->y0, (size_t)(c->M * c->N), c->out);
}

static void gdata_free(struct gdata *d)
{
    free(d->x);
    free(d->w);
    free(d->b);
    free(d->y0);
}

static void case_label(char *buf, size_t n, const char *what, const struct gcase *c)
{
    snprintf(buf, n, "%s M%lld N%lld K%lld %s->%s%s%s%s", what, (long long)c->M, (long long)c->N,
             (long long)c->K, dtype_name(c->in), dtype_name(c->out), c->bias ? " +b" : "",
             c->acc ? " +=y" : "", c->small_int ? " int" : "");
}

/* Run op_linear_cpu on host copies of d; result (M*N floats) into out.
 * Checks the guard after y. */
static void run_cpu(const struct gcase *c, const struct gdata *d, float *out)
{
    struct tensor x = ot_host(c->in, SHAPE(c->M, c->K), d->x);
    struct tensor w = ot_host(c->in, SHAPE(c->N, c->K), d->w);
    struct tensor b = ot_host(c->in, SHAPE(c->N), d->b);
    struct tensor y = ot_host(c->out, SHAPE(c->M, c->N), c->acc ? d->y0 : NULL);

    op_linear_cpu(&y, &x, &w, c->bias ? &b : NULL, c->acc);
    CHECK(ot_guard_ok(&y), "cpu guard after y");
    ot_to_f32(&y, out);
    ot_free(&x);
    ot_free(&w);
    ot_free(&b);
    ot_free(&y);
}

static void test_cpu(void)
{
    static const struct gcase shapes[] = {
        {1, 1, 1, 0, 0, 0, 0, 0},   {3, 5, 7, 0, 0, 0, 0, 0},   {17, 33, 65, 0, 0, 0, 0, 0},
        {64, 48, 100, 0, 0, 0, 0, 0}, {70, 9, 130, 0, 0, 0, 0, 0},
    };
    static const enum dtype pairs[][2] = {
        {DTYPE_F32, DTYPE_F32}, {DTYPE_F16, DTYPE_F16}, {DTYPE_F16, DTYPE_F32},
        {DTYPE_BF16, DTYPE_BF16}, {DTYPE_BF16, DTYPE_F32},
    };
    char label[160];
    int  k = 0;

    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        for (size_t p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++) {
            for (int v = 0; v < 3; v++, k++) {
                struct gcase c = shapes[s];
                struct gdata d;
                c.in = pairs[p][0];
                c.out = pairs[p][1];
                c.bias = v != 0;
                c.acc = v == 2;
                c.small_int = (k % 2) == 1;
                gdata_make(&d, &c, 1000 + (uint64_t)k);

                float *out = malloc(sizeof(float) * (size_t)(c.M * c.N));
                float *ref = malloc(sizeof(float) * (size_t)(c.M * c.N));
                run_cpu(&c, &d, out);
                for (int64_t i = 0; i < c.M; i++) {
                    for (int64_t j = 0; j < c.N; j++) {
                        double acc = 0;
                        for (int64_t q = 0; q < c.K; q++)
                            acc += (double)d.x[i * c.K + q] * d.w[j * c.K + q];
                        if (c.bias)
                            acc += d.b[j];
                        if (c.acc)
                            acc += d.y0[i * c.N + j];
                        ref[i * c.N + j] = (float)acc;
                    }
                }
                ot_round(ref, (size_t)(c.M * c.N), c.out);
                case_label(label, sizeof(label), "cpu~naive", &c);
                if (c.small_int)
                    report_cmp(label, compare_f32(out, ref, (size_t)(c.M * c.N), 0, 0, -1));
                else
                    ot_report(label, out, ref, (size_t)(c.M * c.N), TOL, NTOL, c.out);
                free(out);
                free(ref);
                gdata_free(&d);
            }
        }
    }
}

static double gelu_tanh_d(double v)
{
    return 0.5 * v * (1.0 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
}

/* op_linear_gelu_cpu on host copies of d into out (M*N floats); checks the guard. */
static void run_cpu_gelu(const struct gcase *c, const struct gdata *d, float *out)
{
    struct tensor x = ot_host(c->in, SHAPE(c->M, c->K), d->x);
    struct tensor w = ot_host(c->in, SHAPE(c->N, c->K), d->w);
    struct tensor b = ot_host(c->in, SHAPE(c->N), d->b);
    struct tensor y = ot_host(c->out, SHAPE(c->M, c->N), NULL);

    op_linear_gelu_cpu(&y, &x, &w, c->bias ? &b : NULL);
    CHECK(ot_guard_ok(&y), "cpu gelu guard after y");
    ot_to_f32(&y, out);
    ot_free(&x);
    ot_free(&w);
    ot_free(&b);
    ot_free(&y);
}

static void test_cpu_gelu(void)
{
    static const struct gcase shapes[] = {
        {1, 1, 1, 0, 0, 0, 0, 0}, {5, 9, 13, 0, 0, 0, 0, 0}, {70, 33, 130, 0, 0, 0, 0, 0},
    };
    static const enum dtype pairs[][2] = {
        {DTYPE_F32, DTYPE_F32}, {DTYPE_F16, DTYPE_F16}, {DTYPE_BF16, DTYPE_BF16},
        {DTYPE_F16, DTYPE_F32},
    };
    char label[160];
    int  k = 0;

    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        for (size_t p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++) {
            for (int v = 0; v < 2; v++, k++) {
                struct gcase c = shapes[s];
                struct gdata d;
                size_t n = (size_t)(c.M * c.N);

                c.in = pairs[p][0];
                c.out = pairs[p][1];
                c.bias = v;
                gdata_make(&d, &c, 5000 + (uint64_t)k);
                float *out = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n);
                run_cpu_gelu(&c, &d, out);
                for (int64_t i = 0; i < c.M; i++) {
                    for (int64_t j = 0; j < c.N; j++) {
                        double acc = c.bias ? d.b[j] : 0.0;
                        for (int64_t q = 0; q < c.K; q++)
                            acc += (double)d.x[i * c.K + q] * d.w[j * c.K + q];
                        ref[i * c.N + j] = (float)gelu_tanh_d(acc);
                    }
                }
                ot_round(ref, n, c.out);
                case_label(label, sizeof(label), "gelu cpu~naive", &c);
                ot_report(label, out, ref, n, TOL, NTOL, c.out);
                if (c.out == DTYPE_F32) {           /* fp32: the unfused pair, bit for bit */
                    struct tensor x = ot_host(c.in, SHAPE(c.M, c.K), d.x);
                    struct tensor w = ot_host(c.in, SHAPE(c.N, c.K), d.w);
                    struct tensor b = ot_host(c.in, SHAPE(c.N), d.b);
                    struct tensor y = ot_host(c.out, SHAPE(c.M, c.N), NULL);
                    op_linear_cpu(&y, &x, &w, c.bias ? &b : NULL, false);
                    op_act_cpu(&y, &y, OP_ACT_GELU_TANH);
                    ot_to_f32(&y, ref);
                    case_label(label, sizeof(label), "gelu cpu==linear+act", &c);
                    report_cmp(label, compare_f32(out, ref, n, 0, 0, -1));
                    ot_free(&x);
                    ot_free(&w);
                    ot_free(&b);
                    ot_free(&y);
                }
                free(out);
                free(ref);
                gdata_free(&d);
            }
        }
    }
}

static void test_gpu_gelu(void)
{
    static const struct gcase cases[] = {
        /*  M     N     K    in          out         bias acc int */
        {1,    1,    1,    DTYPE_F32,  DTYPE_F32,  1, 0, 0},
        {7,    13,   5,    DTYPE_F16,  DTYPE_F16,  0, 0, 0},   /* GELU epilogue, no bias */
        {33,   17,   31,   DTYPE_F32,  DTYPE_F32,  1, 0, 0},
        {100,  257,  129,  DTYPE_F16,  DTYPE_F32,  1, 0, 0},   /* f16 bias, f32 out: unfused */
        {100,  257,  129,  DTYPE_BF16, DTYPE_BF16, 1, 0, 0},
        /* the MLPs' N and K with fewer rows (the CPU reference is the slow side) */
        {1100, 4096, 1024, DTYPE_F16,  DTYPE_F16,  1, 0, 0},   /* SS / SLAT flow fc1 */
        {1500, 3072, 768,  DTYPE_F16,  DTYPE_F16,  1, 0, 0},   /* SLAT decoder fc1 */
        {777,  4096, 1024, DTYPE_F32,  DTYPE_F32,  1, 0, 0},   /* --precision fp32 */
    };
    struct arena  a;
    struct op_ctx ctx;
    char          label[160];

    if (!ot_gpu_begin(&a, &ctx, (size_t)1 << 30)) {
        CHECK(0, "GPU set-up failed");
        return;
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct gcase *c = &cases[i];
        struct gdata d;
        size_t mark = arena_mark(&a), n = (size_t)(c->M * c->N);

        gdata_make(&d, c, 91 + i);
        struct tensor hx = ot_host(c->in, SHAPE(c->M, c->K), d.x);
        struct tensor hw = ot_host(c->in, SHAPE(c->N, c->K), d.w);
        struct tensor hb = ot_host(c->in, SHAPE(c->N), d.b);
        struct tensor hy = ot_host(c->out, SHAPE(c->M, c->N), NULL);
        struct tensor x = ot_dev(&a, &hx), w = ot_dev(&a, &hw), b = ot_dev(&a, &hb);
        struct tensor y = ot_dev(&a, &hy);

        op_linear_gelu_cuda(&ctx, &y, &x, &w, c->bias ? &b : NULL);
        op_ctx_synchronize(&ctx);
        float *out = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n);
        ot_to_f32(&y, out);
        run_cpu_gelu(c, &d, ref);
        case_label(label, sizeof(label), "gelu cuda~cpu", c);
        ot_report(label, out, ref, n, TOL_GELU, NTOL_GELU, c->out);
        CHECK(ot_guard_ok(&y), "%s: guard after y", label);
        free(out);
        free(ref);
        ot_free(&hx);
        ot_free(&hw);
        ot_free(&hb);
        ot_free(&hy);
        gdata_free(&d);
        arena_release(&a, mark);
    }
    ot_gpu_end(&a, &ctx);
}

static void test_gpu(void)
{
    static const struct gcase cases[] = {
        /*  M     N     K    in          out         bias acc int */
        {1,    1,    1,    DTYPE_F32,  DTYPE_F32,  1, 0, 0},
        {1,    1,    1,    DTYPE_F16,  DTYPE_F16,  1, 0, 1},
        {7,    13,   5,    DTYPE_F16,  DTYPE_F16,  1, 1, 0},
        {7,    13,   5,    DTYPE_BF16, DTYPE_F32,  1, 0, 0},
        {33,   17,   31,   DTYPE_F32,  DTYPE_F32,  1, 1, 0},
        {100,  257,  129,  DTYPE_F16,  DTYPE_F32,  1, 1, 0},   /* f16 bias, f32 out: unfused bias */
        {100,  257,  129,  DTYPE_BF16, DTYPE_BF16, 1, 0, 0},
        {1374, 3072, 1024, DTYPE_F16,  DTYPE_F16,  1, 0, 0},   /* DINOv2 qkv */
        {1374, 4096, 1024, DTYPE_F16,  DTYPE_F16,  1, 0, 1},   /* DINOv2 fc1, exact */
        {1374, 1024, 4096, DTYPE_F16,  DTYPE_F32,  0, 1, 0},   /* fc2 into an f32 residual */
        {1374, 1024, 4096, DTYPE_BF16, DTYPE_BF16, 1, 1, 1},
        {4096, 1024, 1024, DTYPE_F32,  DTYPE_F32,  1, 0, 0},
        {30000, 64,  128,  DTYPE_F16,  DTYPE_F16,  1, 0, 0},   /* decoder-sized M */
    };
    struct arena  a;
    struct op_ctx ctx;
    char          label[160];

    if (!ot_gpu_begin(&a, &ctx, (size_t)1 << 30)) {
        CHECK(0, "GPU set-up failed");
        return;
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct gcase *c = &cases[i];
        struct gdata d;
        size_t mark = arena_mark(&a);

        gdata_make(&d, c, 77 + i);
        struct tensor hx = ot_host(c->in, SHAPE(c->M, c->K), d.x);
        struct tensor hw = ot_host(c->in, SHAPE(c->N, c->K), d.w);
        struct tensor hb = ot_host(c->in, SHAPE(c->N), d.b);
        struct tensor hy = ot_host(c->out, SHAPE(c->M, c->N), c->acc ? d.y0 : NULL);
        struct tensor x = ot_dev(&a, &hx), w = ot_dev(&a, &hw), b = ot_dev(&a, &hb);
        struct tensor y = ot_dev(&a, &hy);

        op_linear_cuda(&ctx, &y, &x, &w, c->bias ? &b : NULL, c->acc);
        op_ctx_synchronize(&ctx);
        float *out = malloc(sizeof(float) * (size_t)(c->M * c->N));
        float *ref = malloc(sizeof(float) * (size_t)(c->M * c->N));
        ot_to_f32(&y, out);
        run_cpu(c, &d, ref);
        case_label(label, sizeof(label), "cuda~cpu", c);
        /* Small integers make the fp32 sums exact, so results must match bit for bit,
         * except with a BF16 output: K = 4096 sums pass 256, the last integer bf16
         * holds exactly, and with accumulate cuBLASLt's epilogue may round once more
         * than the CPU (seen on the H200: one bf16 ulp, 8 at |y| in [1024, 2048)). */
        if (c->small_int && c->out != DTYPE_BF16)
            report_cmp(label, compare_f32(out, ref, (size_t)(c->M * c->N), 0, 0, -1));
        else
            ot_report(label, out, ref, (size_t)(c->M * c->N), TOL, NTOL, c->out);
        CHECK(ot_guard_ok(&y), "%s: guard after y", label);
        free(out);
        free(ref);
        ot_free(&hx);
        ot_free(&hw);
        ot_free(&hb);
        ot_free(&hy);
        gdata_free(&d);
        arena_release(&a, mark);
    }
    ot_gpu_end(&a, &ctx);
}

/* The cached descriptors (gemm.cu keeps each problem's matmul descriptor and
 * layouts, setting only the bias pointer per call): one problem run with three
 * biases at three addresses of equal alignment gives each bias's result, bit
 * for bit (small integers); then 70 problems (more than the 64 cached, so
 * entries are destroyed and made anew) and the first problem again. */
static void test_gpu_cache(void)
{
    struct arena  a;
    struct op_ctx ctx;
    char          label[160];

    if (!ot_gpu_begin(&a, &ctx, (size_t)256 << 20)) {
        CHECK(0, "GPU set-up failed");
        return;
    }
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < (round ? 71 : 3); i++) {
            /* round 0: the same problem, bias i; round 1: N = 1 .. 70, then N = 1 again */
            struct gcase c = {round ? 3 : 64, round ? (i < 70 ? i + 1 : 1) : 96,
                              round ? 8 : 32, DTYPE_F16, DTYPE_F16, 1, 0, 1};
            struct gdata d;
            size_t mark = arena_mark(&a);

            gdata_make(&d, &c, 500 + (uint64_t)(round ? 0 : 1));
            for (int64_t n = 0; n < c.N; n++)
                d.b[n] += (float)(round ? 0 : i);            /* small integers: exact */
            struct tensor hx = ot_host(c.in, SHAPE(c.M, c.K), d.x);
            struct tensor hw = ot_host(c.in, SHAPE(c.N, c.K), d.w);
            struct tensor hb = ot_host(c.in, SHAPE(c.N), d.b);
            struct tensor hy = ot_host(c.out, SHAPE(c.M, c.N), NULL);
            struct tensor x = ot_dev(&a, &hx), w = ot_dev(&a, &hw), y = ot_dev(&a, &hy);
            for (int k = 0; k < i && !round; k++)            /* bias i at another address */
                (void)arena_must_alloc(&a, 256);
            struct tensor b = ot_dev(&a, &hb);

            op_linear_cuda(&ctx, &y, &x, &w, &b, false);
            op_ctx_synchronize(&ctx);
            float *out = malloc(sizeof(float) * (size_t)(c.M * c.N));
            float *ref = malloc(sizeof(float) * (size_t)(c.M * c.N));
            ot_to_f32(&y, out);
            run_cpu(&c, &d, ref);
            snprintf(label, sizeof(label), "cached descriptors: %s %d (N %lld)",
                     round ? "problem" : "same problem, bias", i, (long long)c.N);
            if (round == 0 || i % 10 == 0 || i >= 69)
                report_cmp(label, compare_f32(out, ref, (size_t)(c.M * c.N), 0, 0, -1));
            else
                CHECK(compare_f32(out, ref, (size_t)(c.M * c.N), 0, 0, -1).ok, "%s", label);
            free(out);
            free(ref);
            ot_free(&hx);
            ot_free(&hw);
            ot_free(&hb);
            ot_free(&hy);
            gdata_free(&d);
            arena_release(&a, mark);
        }
    }
    ot_gpu_end(&a, &ctx);
}

int main(void)
{
    log_init("test_op_gemm");
    ot_print_tols(TOL, NTOL);
    ot_print_tols(TOL_GELU, NTOL_GELU);
    test_cpu();
    test_cpu_gelu();
    ot_skip_without_gpu("test_op_gemm");
    test_gpu();
    test_gpu_gelu();
    test_gpu_cache();
    return harness_done("test_op_gemm");
}
