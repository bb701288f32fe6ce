/*
 * test_op_layernorm.c - op_layernorm (affine and not, any eps, dtype pairs) and
 * op_layernorm_mod (the same followed by the adaLN modulation in one pass).
 *
 * CPU part: op_layernorm_cpu / op_layernorm_mod_cpu against a double-precision
 * formula on small shapes; op_layernorm_mod_cpu bit for bit against
 * op_layernorm_cpu into F32 followed by op_modulate_cpu. GPU part: the CUDA ops
 * against the CPU ops over a shape table (1 column, odd widths, DINOv2's 1374 x
 * 1024, a 30000-row decoder shape, the register path's 256..2048 fp16/bf16
 * widths, the SLAT flow's modulated 5941 x 1024, the fp32-row register path's
 * 256..1024 widths with the SS flow's 4096 x 1024), in place and not, with guard
 * bytes after every output.
 */
#include "harness.h"
#include "log.h"
#include "op_harness.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct op_tol TOL[] = {
    {DTYPE_F32,  1e-5, 1e-5, -1, "fp32 statistics vs double: sums of C terms, |y| of a few units"},
    {DTYPE_F16,  2e-3, 1e-3, -1, "one f16 rounding (2^-11 rel); fp32-vs-double statistics can flip it"},
    {DTYPE_BF16, 2e-2, 8e-3, -1, "one bf16 rounding (2^-8 rel), one ulp flip allowed"},
};
#define NTOL (sizeof(TOL) / sizeof(TOL[0]))

struct lcase {
    int64_t    R, C;
    enum dtype in, out, par;
    bool       affine, in_place;
    float      eps;
    int        mod;         /* op_layernorm_mod with scale and shift (par dtype); 2: and
                             * round_scale (1 + scale rounded to the par dtype first) */
};

/* x (R,C) with an offset so the mean matters, w, b (C), then scale, shift (C) at
 * w + 2C (w holds 3C values); all rounded to their dtypes. */
static void make_inputs(const struct lcase *c, uint64_t seed, float **x, float **w, float **b)
{
    struct rng r;

    rng_seed(&r, seed);
    *x = malloc(sizeof(float) * (size_t)(c->R * c->C));
    *w = malloc(sizeof(float) * (size_t)(3 * c->C));
    *b = malloc(sizeof(float) * (size_t)c->C);
    fill_normal(&r, *x, (size_t)(c->R * c->C), 2.0f);
    for (int64_t i = 0; i < c->R * c->C; i++)
        (*x)[i] += 3.0f;
    fill_normal(&r, *w, (size_t)(3 * c->C), 1.0f);
    fill_normal(&r, *b, (size_t)c->C, 1.0f);
    ot_round(*x, (size_t)(c->R * c->C), c->in);
    ot_round(*w, (size_t)(3 * c->C), c->par);
    ot_round(*b, (size_t)c->C, c->par);
}

static void label_of(char *buf, size_t n, const char *what, const struct lcase *c)
{
    snprintf(buf, n, "%s R%lld C%lld %s->%s%s%s%s eps%.0e", what, (long long)c->R,
             (long long)c->C, dtype_name(c->in), dtype_name(c->out), c->affine ? " affine" : "",
             c->mod == 2 ? " modulated(rounded 1+scale)" : c->mod ? " modulated" : "", c->in_place ? " in-place" : "", (double)c->eps);
}

/* op_layernorm on `dev` (host: CPU op; cuda: CUDA op); result into out. */
static void run_op(const struct lcase *c, const float *xv, const float *wv, const float *bv,
                   float *out, struct arena *a, const struct op_ctx *ctx)
{
    struct tensor hx = ot_host(c->in, SHAPE(c->R, c->C), xv);
    struct tensor hw = ot_host(c->par, SHAPE(c->C), wv);
    struct tensor hb = ot_host(c->par, SHAPE(c->C), bv);
    struct tensor hy = ot_host(c->out, SHAPE(c->R, c->C), NULL);
    struct tensor hs = ot_host(c->par, SHAPE(c->C), wv + c->C);
    struct tensor ht = ot_host(c->par, SHAPE(c->C), wv + 2 * c->C);
    struct tensor x = hx, w = hw, b = hb, y = hy, sc = hs, sh = ht;

    if (ctx) {
        x = ot_dev(a, &hx);
        w = ot_dev(a, &hw);
        b = ot_dev(a, &hb);
        y = ot_dev(a, &hy);
        sc = ot_dev(a, &hs);
        sh = ot_dev(a, &ht);
    }
    struct tensor *yp = c->in_place ? &x : &y;
    if (c->mod)
        op_layernorm_mod(ctx, yp, &x, c->affine ? &w : NULL, c->affine ? &b : NULL, &sc, &sh,
                         c->eps, c->mod == 2);
    else
        op_layernorm(ctx, yp, &x, c->affine ? &w : NULL, c->affine ? &b : NULL, c->eps);
    if (ctx)
        op_ctx_synchronize(ctx);
    CHECK(ot_guard_ok(yp), "guard after y");
    ot_to_f32(yp, out);
    ot_free(&hx);
    ot_free(&hw);
    ot_free(&hb);
    ot_free(&hy);
    ot_free(&hs);
    ot_free(&ht);
}

static void test_cpu(void)
{
    static const struct lcase cases[] = {
        {1, 1, DTYPE_F32, DTYPE_F32, DTYPE_F32, 1, 0, 1e-6f, 0},
        {3, 7, DTYPE_F32, DTYPE_F32, DTYPE_F32, 0, 0, 1e-5f, 0},
        {5, 100, DTYPE_F16, DTYPE_F32, DTYPE_F32, 1, 0, 1e-6f, 0},
        {5, 100, DTYPE_F32, DTYPE_F16, DTYPE_F16, 1, 0, 1e-6f, 0},
        {9, 257, DTYPE_BF16, DTYPE_BF16, DTYPE_F32, 1, 1, 1e-6f, 0},
        {4, 1024, DTYPE_F16, DTYPE_F16, DTYPE_F16, 0, 1, 1e-5f, 0},
        {3, 7, DTYPE_F32, DTYPE_F32, DTYPE_F32, 1, 0, 1e-6f, 1},
        {4, 1024, DTYPE_F16, DTYPE_F16, DTYPE_F16, 0, 1, 1e-6f, 1},
    };
    char label[160];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct lcase *c = &cases[i];
        float *x, *w, *b;
        make_inputs(c, 10 + i, &x, &w, &b);
        float *out = malloc(sizeof(float) * (size_t)(c->R * c->C));
        float *ref = malloc(sizeof(float) * (size_t)(c->R * c->C));
        run_op(c, x, w, b, out, NULL, NULL);
        for (int64_t r = 0; r < c->R; r++) {
            double m = 0, v = 0;
            for (int64_t j = 0; j < c->C; j++)
                m += x[r * c->C + j];
            m /= (double)c->C;
            for (int64_t j = 0; j < c->C; j++)
                v += (x[r * c->C + j] - m) * (x[r * c->C + j] - m);
            v /= (double)c->C;
            for (int64_t j = 0; j < c->C; j++) {
                double y = (x[r * c->C + j] - m) / sqrt(v + (double)c->eps);
                if (c->affine)
                    y = y * w[j] + b[j];
                if (c->mod)
                    y = y * (1.0 + w[c->C + j]) + w[2 * c->C + j];
                ref[r * c->C + j] = (float)y;
            }
        }
        ot_round(ref, (size_t)(c->R * c->C), c->out);
        label_of(label, sizeof(label), "cpu~naive", c);
        ot_report(label, out, ref, (size_t)(c->R * c->C), TOL, NTOL, c->out);
        free(x);
        free(w);
        free(b);
        free(out);
        free(ref);
    }
}

/* op_layernorm_mod_cpu = op_layernorm_cpu into F32, then op_modulate_cpu: the same bits. */
static void test_cpu_composed(void)
{
    const struct lcase c = {6, 96, DTYPE_F16, DTYPE_F16, DTYPE_F16, 1, 0, 1e-6f, 1};
    float *x, *w, *b;
    make_inputs(&c, 77, &x, &w, &b);
    struct tensor hx = ot_host(c.in, SHAPE(c.R, c.C), x);
    struct tensor hw = ot_host(c.par, SHAPE(c.C), w), hb = ot_host(c.par, SHAPE(c.C), b);
    struct tensor hs = ot_host(c.par, SHAPE(c.C), w + c.C);
    struct tensor ht = ot_host(c.par, SHAPE(c.C), w + 2 * c.C);
    struct tensor y1 = ot_host(c.out, SHAPE(c.R, c.C), NULL);
    struct tensor f = ot_host(DTYPE_F32, SHAPE(c.R, c.C), NULL);
    struct tensor y2 = ot_host(c.out, SHAPE(c.R, c.C), NULL);
    op_layernorm_mod_cpu(&y1, &hx, &hw, &hb, &hs, &ht, c.eps, false);
    op_layernorm_cpu(&f, &hx, &hw, &hb, c.eps);
    op_modulate_cpu(&y2, &f, &hs, &ht);
    CHECK(memcmp(y1.data, y2.data, tensor_nbytes(&y1)) == 0,
          "layernorm_mod = layernorm (F32) + modulate, bit for bit");
    /* round_scale = the scale made fp16(1 + scale) - 1 beforehand by two bias adds (the
     * SS flow's former s16 / s1 rows), bit for bit */
    {
        struct tensor hs2 = tensor_reshape(&hs, SHAPE(1, c.C));
        struct tensor s16 = ot_host(c.par, SHAPE(1, c.C), NULL);
        struct tensor s1 = ot_host(DTYPE_F32, SHAPE(1, c.C), NULL);
        float *ones = malloc(sizeof(float) * 2 * (size_t)c.C);
        for (int64_t i = 0; i < c.C; i++)
            ones[i] = 1.0f, ones[c.C + i] = -1.0f;
        struct tensor op1 = ot_host(DTYPE_F32, SHAPE(1, c.C), ones);
        struct tensor om1 = ot_host(DTYPE_F32, SHAPE(1, c.C), ones + c.C);
        op_add_bias_cpu(&s16, &hs2, &op1);
        op_add_bias_cpu(&s1, &s16, &om1);
        struct tensor s1v = tensor_reshape(&s1, SHAPE(c.C));
        op_layernorm_mod_cpu(&y1, &hx, &hw, &hb, &s1v, &ht, c.eps, false);
        op_layernorm_mod_cpu(&y2, &hx, &hw, &hb, &hs, &ht, c.eps, true);
        CHECK(memcmp(y1.data, y2.data, tensor_nbytes(&y1)) == 0,
              "layernorm_mod round_scale = the rounded scale built by two bias adds, bit for bit");
        ot_free(&s16), ot_free(&s1), ot_free(&op1), ot_free(&om1);
        free(ones);
    }
    ot_free(&hx), ot_free(&hw), ot_free(&hb), ot_free(&hs), ot_free(&ht);
    ot_free(&y1), ot_free(&f), ot_free(&y2);
    free(x), free(w), free(b);
}

static void test_gpu(void)
{
    static const struct lcase cases[] = {
        {1, 1, DTYPE_F32, DTYPE_F32, DTYPE_F32, 1, 0, 1e-6f, 0},
        {1, 1024, DTYPE_F16, DTYPE_F16, DTYPE_F16, 1, 0, 1e-6f, 0},
        {7, 33, DTYPE_F32, DTYPE_F16, DTYPE_F32, 1, 0, 1e-6f, 0},
        {13, 1001, DTYPE_BF16, DTYPE_F32, DTYPE_BF16, 1, 0, 1e-5f, 0},
        {1374, 1024, DTYPE_F32, DTYPE_F32, DTYPE_F32, 1, 0, 1e-6f, 0},  /* DINOv2 norm1, fp32 stream */
        {1374, 1024, DTYPE_F32, DTYPE_F16, DTYPE_F32, 1, 0, 1e-6f, 0},
        {1374, 1024, DTYPE_F32, DTYPE_F32, DTYPE_F32, 0, 1, 1e-5f, 0},  /* SLAT prenorm output */
        {4096, 1024, DTYPE_F16, DTYPE_F16, DTYPE_F16, 0, 1, 1e-6f, 0},  /* flow norm1, in place */
        {30000, 128, DTYPE_F16, DTYPE_F16, DTYPE_F32, 1, 0, 1e-6f, 0},
        {3, 2048, DTYPE_BF16, DTYPE_BF16, DTYPE_BF16, 1, 1, 1e-6f, 0},
        /* the register path (fp16/bf16 in = out, C = 256..2048) and the modulated op */
        {5941, 1024, DTYPE_F16, DTYPE_F16, DTYPE_F16, 0, 0, 1e-6f, 1},   /* SLAT flow adaLN */
        {5941, 1024, DTYPE_F16, DTYPE_F16, DTYPE_F32, 1, 0, 1e-6f, 0},   /* SLAT flow norm2 */
        {777, 2048, DTYPE_F16, DTYPE_F16, DTYPE_F32, 1, 1, 1e-6f, 0},    /* out_blocks.0 norm1 */
        {33, 256, DTYPE_BF16, DTYPE_BF16, DTYPE_F16, 0, 0, 1e-5f, 1},
        {9, 768, DTYPE_F16, DTYPE_F16, DTYPE_F16, 1, 1, 1e-6f, 1},
        {9, 1000, DTYPE_F16, DTYPE_F16, DTYPE_F16, 1, 0, 1e-6f, 1},      /* generic + modulated */
        /* the fp32-row register path (F32 in, C = 256..1024, any out) */
        {4096, 1024, DTYPE_F32, DTYPE_F16, DTYPE_F16, 0, 0, 1e-6f, 2},  /* SS flow adaLN */
        {4096, 1024, DTYPE_F32, DTYPE_F16, DTYPE_F16, 0, 0, 1e-6f, 1},
        {5, 1280, DTYPE_F32, DTYPE_F16, DTYPE_F16, 0, 0, 1e-6f, 2},    /* generic, rounded */
        {4096, 1024, DTYPE_F32, DTYPE_F16, DTYPE_F32, 1, 0, 1e-6f, 0},  /* SS flow norm2 */
        {77, 512, DTYPE_F32, DTYPE_BF16, DTYPE_BF16, 1, 0, 1e-5f, 1},
        {31, 256, DTYPE_F32, DTYPE_F32, DTYPE_F16, 1, 1, 1e-6f, 1},     /* in place: generic */
        {5, 1280, DTYPE_F32, DTYPE_F16, DTYPE_F32, 1, 0, 1e-6f, 0},     /* C / 256 = 5: generic */
    };
    struct arena  a;
    struct op_ctx ctx;
    char          label[160];

    if (!ot_gpu_begin(&a, &ctx, (size_t)1 << 29)) {
        CHECK(0, "GPU set-up failed");
        return;
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct lcase *c = &cases[i];
        size_t mark = arena_mark(&a);
        float *x, *w, *b;
        make_inputs(c, 100 + i, &x, &w, &b);
        float *out = malloc(sizeof(float) * (size_t)(c->R * c->C));
        float *ref = malloc(sizeof(float) * (size_t)(c->R * c->C));
        run_op(c, x, w, b, out, &a, &ctx);
        run_op(c, x, w, b, ref, NULL, NULL);
        label_of(label, sizeof(label), "cuda~cpu", c);
        ot_report(label, out, ref, (size_t)(c->R * c->C), TOL, NTOL, c->out);
        free(x);
        free(w);
        free(b);
        free(out);
        free(ref);
        arena_release(&a, mark);
    }
    ot_gpu_end(&a, &ctx);
}

int main(void)
{
    log_init("test_op_layernorm");
    ot_print_tols(TOL, NTOL);
    test_cpu();
    test_cpu_composed();
    ot_skip_without_gpu("test_op_layernorm");
    test_gpu();
    return harness_done("test_op_layernorm");
}
