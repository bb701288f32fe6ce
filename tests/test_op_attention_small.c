/*
 * test_op_attention_small.c - op_attention_small and op_swiglu (kernels/ops.h).
 *
 * CPU part (always): the CPU ops against a naive double-precision evaluation of
 * the same formula, on inputs rounded to the tested dtype; q, k, v are strided
 * views of a fused qkv buffer (B, T, 3, H, D), as the models use them.
 * GPU part: the CUDA ops against the CPU ops on the same shapes plus the real
 * PointPatchEmbed shape (1024 windows x 65 tokens, 16 heads of 32), with
 * sentinels after the outputs. Skipped with a printed reason without a GPU
 * (a failure under S3D_REQUIRE_GPU=1).
 */
#include "harness.h"
#include "ops.h"
#include "arena.h"
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tolerances, each with its reason. */
static const struct tol {
    enum dtype dt;
    double     atol, rtol;
} TOL_REF[] = {
    {DTYPE_F32, 1e-5, 1e-5},   /* fp32 dot products of <= 128 terms vs double */
    {DTYPE_F16, 2e-3, 2e-3},   /* output rounded to fp16 (2^-11 relative) */
};
static const struct tol TOL_GPU[] = {
    {DTYPE_F32, 1e-5, 1e-5},   /* different summation order, expf vs CPU expf */
    {DTYPE_F16, 2e-3, 2e-3},   /* one fp16 rounding step of the output */
};

static const struct tol *tol_for(const struct tol *t, enum dtype dt)
{
    return t[0].dt == dt ? &t[0] : &t[1];
}

struct shape { int64_t B, Tq, Tk, H, D; };

static const struct shape SHAPES[] = {
    {3, 65, 65, 16, 32},   /* PointPatchEmbed window, 3 windows */
    {2, 1, 65, 16, 32},    /* its last block: query row 0 only */
    {1, 7, 9, 3, 4},       /* odd sizes, tiny head (tiny fixtures: 64 dims / 16 heads) */
    {2, 5, 32, 1, 128},    /* largest head size */
    {1, 1, 1, 1, 1},       /* size 1 */
    {1, 40, 64, 2, 64},    /* head size 64, Tk * D = 4096 (the limit) */
    {2, 33, 256, 1, 16},   /* longest key sequence */
};

/* A (B, T, 3, H, D) fused buffer of dtype dt filled with N(0, 1) values; q, k, v views. */
struct qkv {
    struct tensor fused, q, k, v;
};

static void make_qkv(struct qkv *s, void *buf, enum dtype dt, enum device dev, int64_t B,
                     int64_t T, int64_t H, int64_t D)
{
    s->fused = tensor_view(buf, dt, dev, SHAPE(B, T, 3, H, D));
    s->q = op_heads_view(&s->fused, 0);
    s->k = op_heads_view(&s->fused, 1);
    s->v = op_heads_view(&s->fused, 2);
}

/* Naive double attention on fp32 values of the fused buffer f (B, T, 3, H, D);
 * q rows are the first Tq of each sequence. ref (B, Tq, H, D). */
static void attention_ref(double *ref, const float *f, const struct shape *sh, int64_t T)
{
    int64_t B = sh->B, Tq = sh->Tq, Tk = sh->Tk, H = sh->H, D = sh->D;
    double *s = malloc(sizeof(*s) * (size_t)Tk);
    float scale = 1.0f / sqrtf((float)D);

#define AT(b, t, w, h, d) f[((((b) * T + (t)) * 3 + (w)) * H + (h)) * D + (d)]
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Tq; i++) {
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < Tk; j++) {
                    double dot = 0;
                    for (int64_t d = 0; d < D; d++)
                        dot += (double)AT(b, i, 0, h, d) * AT(b, j, 1, h, d);
                    s[j] = dot * scale;
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int64_t j = 0; j < Tk; j++)
                    sum += (s[j] = exp(s[j] - mx));
                for (int64_t d = 0; d < D; d++) {
                    double acc = 0;
                    for (int64_t j = 0; j < Tk; j++)
                        acc += s[j] * AT(b, j, 2, h, d);
                    ref[((b * Tq + i) * H + h) * D + d] = acc / sum;
                }
            }
#undef AT
    free(s);
}

/* Random fused qkv of T = max(Tq, Tk) rows in dtype dt (host), and its fp32 values. */
static void *random_fused(struct rng *r, const struct shape *sh, enum dtype dt, float **f32,
                          int64_t *T)
{
    *T = sh->Tq > sh->Tk ? sh->Tq : sh->Tk;
    size_t n = (size_t)(sh->B * *T * 3 * sh->H * sh->D);
    float *f = malloc(sizeof(*f) * n);
    void  *buf = malloc(n * dtype_size(dt));

    fill_normal(r, f, n, 1.5f);
    dtype_convert(buf, dt, f, DTYPE_F32, n);
    dtype_convert(f, DTYPE_F32, buf, dt, n);       /* the values the op really sees */
    *f32 = f;
    return buf;
}

/* q uses the first Tq rows, k and v the first Tk rows of the fused buffer. */
static void narrow_qkv(struct qkv *s, const struct shape *sh)
{
    s->q = tensor_slice(&s->q, 1, 0, sh->Tq);
    s->k = tensor_slice(&s->k, 1, 0, sh->Tk);
    s->v = tensor_slice(&s->v, 1, 0, sh->Tk);
}

static void cpu_attention_cases(struct rng *r)
{
    const enum dtype dts[] = {DTYPE_F32, DTYPE_F16};

    for (size_t c = 0; c < sizeof(SHAPES) / sizeof(SHAPES[0]); c++)
        for (int di = 0; di < 2; di++) {
            const struct shape *sh = &SHAPES[c];
            enum dtype dt = dts[di];
            int64_t T;
            float *f;
            void *buf = random_fused(r, sh, dt, &f, &T);
            struct qkv s;
            size_t no = (size_t)(sh->B * sh->Tq * sh->H * sh->D);
            void *obuf = malloc(no * dtype_size(dt) + SENTINEL_BYTES);
            double *ref = malloc(sizeof(*ref) * no);
            float *out = malloc(sizeof(*out) * no), *reff = malloc(sizeof(*reff) * no);
            char label[96];

            make_qkv(&s, buf, dt, DEVICE_HOST, sh->B, T, sh->H, sh->D);
            narrow_qkv(&s, sh);
            struct tensor o = tensor_view(obuf, dt, DEVICE_HOST, SHAPE(sh->B, sh->Tq, sh->H, sh->D));
            sentinel_fill((char *)obuf + no * dtype_size(dt), SENTINEL_BYTES);
            op_attention_small_cpu(&o, &s.q, &s.k, &s.v, 1.0f / sqrtf((float)sh->D));
            CHECK(sentinel_ok((char *)obuf + no * dtype_size(dt), SENTINEL_BYTES));
            attention_ref(ref, f, sh, T);
            dtype_convert(out, DTYPE_F32, obuf, dt, no);
            for (size_t i = 0; i < no; i++)
                reff[i] = (float)ref[i];
            const struct tol *t = tol_for(TOL_REF, dt);
            snprintf(label, sizeof(label), "attention_small cpu %s (B%ld Tq%ld Tk%ld H%ld D%ld)",
                     dtype_name(dt), (long)sh->B, (long)sh->Tq, (long)sh->Tk, (long)sh->H,
                     (long)sh->D);
            report_cmp(label, compare_f32(out, reff, no, t->atol, t->rtol, -1));
            free(buf); free(f); free(obuf); free(ref); free(out); free(reff);
        }
}

/* silu(a) * b with the documented rounding, in double then rounded like the op. */
static void cpu_swiglu_cases(struct rng *r)
{
    const enum dtype dts[] = {DTYPE_F32, DTYPE_F16};
    const int64_t ns[] = {1, 7, 2816 * 3 + 5};

    for (int di = 0; di < 2; di++)
        for (size_t c = 0; c < 3; c++) {
            enum dtype dt = dts[di];
            int64_t n = ns[c];
            float *a = malloc(sizeof(*a) * (size_t)n), *b = malloc(sizeof(*b) * (size_t)n);
            float *ref = malloc(sizeof(*ref) * (size_t)n), *out = malloc(sizeof(*out) * (size_t)n);
            void *ab = malloc((size_t)n * dtype_size(dt)), *bb = malloc((size_t)n * dtype_size(dt));
            void *yb = malloc((size_t)n * dtype_size(dt) + SENTINEL_BYTES);
            char label[64];

            fill_normal(r, a, (size_t)n, 4.0f);
            fill_normal(r, b, (size_t)n, 2.0f);
            dtype_convert(ab, dt, a, DTYPE_F32, (size_t)n);
            dtype_convert(bb, dt, b, DTYPE_F32, (size_t)n);
            dtype_convert(a, DTYPE_F32, ab, dt, (size_t)n);
            dtype_convert(b, DTYPE_F32, bb, dt, (size_t)n);
            for (int64_t i = 0; i < n; i++) {
                double s = a[i] / (1.0 + exp(-(double)a[i]));
                float sr = (float)s;
                if (dt == DTYPE_F16)
                    sr = f16_to_f32(f32_to_f16(sr));
                ref[i] = sr * b[i];
                if (dt == DTYPE_F16)
                    ref[i] = f16_to_f32(f32_to_f16(ref[i]));
            }
            struct tensor ta = tensor_view(ab, dt, DEVICE_HOST, SHAPE(n));
            struct tensor tb = tensor_view(bb, dt, DEVICE_HOST, SHAPE(n));
            struct tensor ty = tensor_view(yb, dt, DEVICE_HOST, SHAPE(n));
            sentinel_fill((char *)yb + (size_t)n * dtype_size(dt), SENTINEL_BYTES);
            op_swiglu_cpu(&ty, &ta, &tb);
            CHECK(sentinel_ok((char *)yb + (size_t)n * dtype_size(dt), SENTINEL_BYTES));
            dtype_convert(out, DTYPE_F32, yb, dt, (size_t)n);
            snprintf(label, sizeof(label), "swiglu cpu %s n=%ld", dtype_name(dt), (long)n);
            /* fp32: expf vs exp differ by ~1 ulp; fp16: at most one fp16 ulp where the
             * fp32 silu sits next to a rounding boundary */
            report_cmp(label, compare_f32(out, ref, (size_t)n, dt == DTYPE_F16 ? 1e-3 : 1e-6,
                                          dt == DTYPE_F16 ? 1e-3 : 1e-6, -1));
            free(a); free(b); free(ref); free(out); free(ab); free(bb); free(yb);
        }
}

// ----------------------------------------------------------------------------
// GPU part

static void gpu_cases(struct rng *r)
{
    struct arena dev;
    struct op_ctx ctx;
    const struct shape big = {1024, 65, 65, 16, 32};
    const enum dtype dts[] = {DTYPE_F32, DTYPE_F16};

    /* the largest case (1024 windows of 65 tokens, fused qkv in F32) needs ~550 MB */
    CHECK(arena_init(&dev, ARENA_DEVICE, "test", (size_t)1 << 30) == 0);
    CHECK(op_ctx_init(&ctx, NULL, 0) == 0);
    for (size_t c = 0; c <= sizeof(SHAPES) / sizeof(SHAPES[0]); c++)
        for (int di = 0; di < 2; di++) {
            const struct shape *sh = c < sizeof(SHAPES) / sizeof(SHAPES[0]) ? &SHAPES[c] : &big;
            enum dtype dt = dts[di];
            int64_t T;
            float *f;
            void *buf = random_fused(r, sh, dt, &f, &T);
            size_t nin = (size_t)(sh->B * T * 3 * sh->H * sh->D) * dtype_size(dt);
            size_t no = (size_t)(sh->B * sh->Tq * sh->H * sh->D), ob = no * dtype_size(dt);
            void *obuf = malloc(ob), *gbuf = malloc(ob + SENTINEL_BYTES);
            float *o1 = malloc(sizeof(*o1) * no), *o2 = malloc(sizeof(*o2) * no);
            struct qkv hs, ds;
            char label[96];
            size_t mark = arena_mark(&dev);
            char *din = arena_must_alloc(&dev, nin), *dout = arena_must_alloc(&dev, ob + SENTINEL_BYTES);

            make_qkv(&hs, buf, dt, DEVICE_HOST, sh->B, T, sh->H, sh->D);
            make_qkv(&ds, din, dt, DEVICE_CUDA, sh->B, T, sh->H, sh->D);
            narrow_qkv(&hs, sh);
            narrow_qkv(&ds, sh);
            struct tensor ho = tensor_view(obuf, dt, DEVICE_HOST, SHAPE(sh->B, sh->Tq, sh->H, sh->D));
            struct tensor dO = tensor_view(dout, dt, DEVICE_CUDA, SHAPE(sh->B, sh->Tq, sh->H, sh->D));
            float scale = 1.0f / sqrtf((float)sh->D);
            op_attention_small_cpu(&ho, &hs.q, &hs.k, &hs.v, scale);
            sentinel_fill((char *)gbuf + ob, SENTINEL_BYTES);
            CUDA_CHECK(cudaMemcpy(din, buf, nin, cudaMemcpyHostToDevice));
            CUDA_CHECK(cudaMemcpy(dout + ob, (char *)gbuf + ob, SENTINEL_BYTES, cudaMemcpyHostToDevice));
            op_attention_small_cuda(&ctx, &dO, &ds.q, &ds.k, &ds.v, scale);
            op_ctx_synchronize(&ctx);
            CUDA_CHECK(cudaMemcpy(gbuf, dout, ob + SENTINEL_BYTES, cudaMemcpyDeviceToHost));
            CHECK(sentinel_ok((char *)gbuf + ob, SENTINEL_BYTES), "guard bytes after the CUDA output");
            dtype_convert(o1, DTYPE_F32, gbuf, dt, no);
            dtype_convert(o2, DTYPE_F32, obuf, dt, no);
            const struct tol *t = tol_for(TOL_GPU, dt);
            snprintf(label, sizeof(label), "attention_small cuda %s (B%ld Tq%ld Tk%ld H%ld D%ld)",
                     dtype_name(dt), (long)sh->B, (long)sh->Tq, (long)sh->Tk, (long)sh->H,
                     (long)sh->D);
            report_cmp(label, compare_f32(o1, o2, no, t->atol, t->rtol, -1));
            arena_release(&dev, mark);
            free(buf); free(f); free(obuf); free(gbuf); free(o1); free(o2);
        }

    /* swiglu: F16 a/b into F16 y and F32 a/b into F32 y, odd length */
    for (int di = 0; di < 2; di++) {
        enum dtype dt = dts[di];
        int64_t n = 2816 * 1374 + 3;
        size_t nb = (size_t)n * dtype_size(dt);
        float *a = malloc(sizeof(*a) * (size_t)n * 4);
        float *o1 = a + n, *o2 = a + 2 * n;
        void *ab = malloc(nb * 3);
        size_t mark = arena_mark(&dev);
        char *dab = arena_must_alloc(&dev, 3 * nb);

        fill_normal(r, a, (size_t)n * 2, 4.0f);
        dtype_convert(ab, dt, a, DTYPE_F32, (size_t)n * 2);
        struct tensor ha = tensor_view(ab, dt, DEVICE_HOST, SHAPE(n));
        struct tensor hb = tensor_view((char *)ab + nb, dt, DEVICE_HOST, SHAPE(n));
        struct tensor hy = tensor_view((char *)ab + 2 * nb, dt, DEVICE_HOST, SHAPE(n));
        struct tensor da = tensor_view(dab, dt, DEVICE_CUDA, SHAPE(n));
        struct tensor db = tensor_view(dab + nb, dt, DEVICE_CUDA, SHAPE(n));
        struct tensor dy = tensor_view(dab + 2 * nb, dt, DEVICE_CUDA, SHAPE(n));
        CUDA_CHECK(cudaMemcpy(dab, ab, 2 * nb, cudaMemcpyHostToDevice));
        op_swiglu_cpu(&hy, &ha, &hb);
        op_swiglu_cuda(&ctx, &dy, &da, &db);
        op_ctx_synchronize(&ctx);
        dtype_convert(o2, DTYPE_F32, hy.data, dt, (size_t)n);
        CUDA_CHECK(cudaMemcpy(hy.data, dy.data, nb, cudaMemcpyDeviceToHost));
        dtype_convert(o1, DTYPE_F32, hy.data, dt, (size_t)n);
        report_cmp(dt == DTYPE_F16 ? "swiglu cuda F16 n=3869187" : "swiglu cuda F32 n=3869187",
                   compare_f32(o1, o2, (size_t)n, dt == DTYPE_F16 ? 1e-3 : 1e-6,
                               dt == DTYPE_F16 ? 1e-3 : 1e-6, -1));
        arena_release(&dev, mark);
        free(a); free(ab);
    }
    op_ctx_free(&ctx);
    arena_free(&dev);
}

int main(void)
{
    struct rng r;

    rng_seed(&r, 7);
    cpu_attention_cases(&r);
    cpu_swiglu_cases(&r);
    if (harness_gpu("GPU part (run `make test-gpu` on the GPU machine)"))
        gpu_cases(&r);
    return harness_done("test_op_attention_small");
}
