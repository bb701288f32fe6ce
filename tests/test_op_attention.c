/*
 * test_op_attention.c - fused scaled-dot-product attention, dense and varlen.
 *
 * CPU part: op_attention_cpu / op_attention_varlen_cpu against a naive double
 * softmax(q k^T s) v on small shapes, reading q/k/v out of a fused qkv tensor
 * (B, T, 3, H, 64) and from separate tensors. GPU part: op_attention_cuda
 * against the CPU op: the tensor-core path (F16/BF16, aligned strides) and the
 * fp32 path (F32, or F16 with strides that are not a multiple of 8), Tq != Tk,
 * Tk = 1, odd lengths, DINOv2 (T 1374, H 16), flow self-attention (T 4096) and
 * cross-attention (4096 x 7528). For long sequences the CPU reference runs on
 * a slice of query rows (the first 96 and the last 70): rows are independent.
 * Guard bytes after every output. The GPU part runs every tensor-core kernel
 * variant on every shape against the same CPU reference (VARIANTS: v1 with
 * S3D_ATTN_MT=1 and =2, between which v1 picks by query length, and
 * S3D_ATTN_KERNEL=v2, v2b, v2s, v3, v4 and split - the key-split kernel for
 * blocks of at most 16 queries, the default kernel on the other shapes; the
 * default is v4 from 1024 query rows, v2s below, kernels/cuda/attention.cu).
 * S3D_TEST_SMALL=1 leaves out the GPU cases of more than 2^20 query x key
 * pairs (DINOv2 and the flows' shapes), each named: for compute-sanitizer's
 * racecheck (tools/gpu/sanitize.sh), which instruments every shared-memory
 * access; every variant still runs its multi-tile and tail paths.
 */
#include "check.h"
#include "harness.h"
#include "log.h"
#include "op_harness.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct op_tol TOL[] = {
    {DTYPE_F32,  2e-5, 1e-4, 1e-9, "fp32 online softmax vs one-pass softmax, sums of Tk terms"},
    {DTYPE_F16,  4e-3, 1e-2, 2e-5, "P rounded to f16 for the PV product (as FlashAttention), f16 out"},
    {DTYPE_BF16, 3e-2, 4e-2, 1e-3, "P rounded to bf16 (2^-8 rel) for the PV product, bf16 out"},
};
#define NTOL (sizeof(TOL) / sizeof(TOL[0]))

enum layout {
    LAYOUT_FUSED,     /* q, k, v = op_heads_view of one (B, T, 3, H, 64); needs Tq == Tk */
    LAYOUT_CROSS,     /* q (B, Tq, H, 64) contiguous; k, v from a fused kv (B, Tk, 2, H, 64) */
    LAYOUT_PADDED,    /* q, k, v (B, T, H, 64) inside rows padded by 3 elements */
};

struct acase {
    int64_t     B, Tq, Tk, H;
    enum dtype  dt;
    enum layout layout;
    float       spread;   /* std of q and k entries: scores have std spread^2 */
};

/* Host buffers of one case, all values rounded to dt. */
struct adata {
    float  *a, *b;        /* fused: a = qkv, b unused; cross: a = q, b = kv; padded: a=q, b=kv */
    int64_t na, nb;
};

static const int64_t PAD = 3;

static void make_data(const struct acase *c, uint64_t seed, struct adata *d)
{
    struct rng r;
    int64_t    D = OP_HEAD_DIM;

    rng_seed(&r, seed);
    switch (c->layout) {
    case LAYOUT_FUSED:
        d->na = c->B * c->Tq * 3 * c->H * D;
        d->nb = 1;
        break;
    case LAYOUT_CROSS:
        d->na = c->B * c->Tq * c->H * D;
        d->nb = c->B * c->Tk * 2 * c->H * D;
        break;
    case LAYOUT_PADDED:
        d->na = c->B * c->Tq * (c->H * D + PAD);
        d->nb = c->B * c->Tk * 2 * (c->H * D + PAD);
        break;
    }
    d->a = malloc(sizeof(float) * (size_t)d->na);
    d->b = malloc(sizeof(float) * (size_t)d->nb);
    fill_normal(&r, d->a, (size_t)d->na, c->spread);
    fill_normal(&r, d->b, (size_t)d->nb, c->spread);
    ot_round(d->a, (size_t)d->na, c->dt);
    ot_round(d->b, (size_t)d->nb, c->dt);
}

/* q, k, v views of the case's buffers ta, tb (host or device). */
static void views(const struct acase *c, const struct tensor *ta, const struct tensor *tb,
                  struct tensor *q, struct tensor *k, struct tensor *v)
{
    int64_t D = OP_HEAD_DIM;

    switch (c->layout) {
    case LAYOUT_FUSED:
        *q = op_heads_view(ta, 0);
        *k = op_heads_view(ta, 1);
        *v = op_heads_view(ta, 2);
        break;
    case LAYOUT_CROSS:
        *q = *ta;
        *k = op_heads_view(tb, 0);
        *v = op_heads_view(tb, 1);
        break;
    case LAYOUT_PADDED: {
        int64_t rs = c->H * D + PAD;
        *q = *ta;
        q->ndim = 4;
        q->shape[0] = c->B;  q->shape[1] = c->Tq;  q->shape[2] = c->H;  q->shape[3] = D;
        q->stride[0] = c->Tq * rs;  q->stride[1] = rs;  q->stride[2] = D;  q->stride[3] = 1;
        /* k rows at t * 2 rs, v rows at t * 2 rs + rs */
        *k = *tb;
        k->ndim = 4;
        k->shape[0] = c->B;  k->shape[1] = c->Tk;  k->shape[2] = c->H;  k->shape[3] = D;
        k->stride[0] = c->Tk * 2 * rs;  k->stride[1] = 2 * rs;  k->stride[2] = D;  k->stride[3] = 1;
        *v = *k;
        v->data = (char *)tb->data + (size_t)rs * dtype_size(tb->dtype);
        break;
    }
    }
}

/* The case's input tensors over flat buffers (shapes only matter for size). */
static void inputs(const struct acase *c, const struct adata *d, struct tensor *ta, struct tensor *tb)
{
    int64_t D = OP_HEAD_DIM;

    switch (c->layout) {
    case LAYOUT_FUSED:
        *ta = ot_host(c->dt, SHAPE(c->B, c->Tq, 3, c->H, D), d->a);
        *tb = ot_host(c->dt, SHAPE(1), d->b);
        break;
    case LAYOUT_CROSS:
        *ta = ot_host(c->dt, SHAPE(c->B, c->Tq, c->H, D), d->a);
        *tb = ot_host(c->dt, SHAPE(c->B, c->Tk, 2, c->H, D), d->b);
        break;
    case LAYOUT_PADDED:
        *ta = ot_host(c->dt, SHAPE(d->na), d->a);
        *tb = ot_host(c->dt, SHAPE(d->nb), d->b);
        break;
    }
}

static void label_of(char *buf, size_t n, const char *what, const struct acase *c)
{
    static const char *ln[] = {"qkv", "q+kv", "padded"};
    snprintf(buf, n, "%s B%lld Tq%lld Tk%lld H%lld %s %s spread %.1f", what, (long long)c->B,
             (long long)c->Tq, (long long)c->Tk, (long long)c->H, dtype_name(c->dt), ln[c->layout],
             (double)c->spread);
}

/* Naive double attention for query rows [r0, r0 + n) of every (b, h), into
 * ref (B, n, H, 64). q, k, v are host views. */
static void naive(const struct tensor *q, const struct tensor *k, const struct tensor *v,
                  int64_t r0, int64_t n, float scale, float *ref)
{
    int64_t B = q->shape[0], H = q->shape[2], Tk = k->shape[1], D = OP_HEAD_DIM;
    double *s = malloc(sizeof(double) * (size_t)Tk);

    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t h = 0; h < H; h++) {
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < Tk; j++) {
                    double dot = 0;
                    for (int64_t e = 0; e < D; e++)
                        dot += dtype_get(q->data, q->dtype, (size_t)(b * q->stride[0] +
                                   (r0 + i) * q->stride[1] + h * q->stride[2] + e)) *
                               dtype_get(k->data, k->dtype, (size_t)(b * k->stride[0] +
                                   j * k->stride[1] + h * k->stride[2] + e));
                    s[j] = dot * scale;
                    mx = fmax(mx, s[j]);
                }
                for (int64_t j = 0; j < Tk; j++) {
                    s[j] = exp(s[j] - mx);
                    sum += s[j];
                }
                for (int64_t e = 0; e < D; e++) {
                    double acc = 0;
                    for (int64_t j = 0; j < Tk; j++)
                        acc += s[j] * dtype_get(v->data, v->dtype, (size_t)(b * v->stride[0] +
                                   j * v->stride[1] + h * v->stride[2] + e));
                    ref[((b * n + i) * H + h) * D + e] = (float)(acc / sum);
                }
            }
    free(s);
}

/* CPU op on query rows [r0, r0 + n) of host views; out (B, n, H, 64). */
static void cpu_rows(const struct acase *c, const struct tensor *q, const struct tensor *k,
                     const struct tensor *v, int64_t r0, int64_t n, float *out)
{
    struct tensor qs = tensor_slice(q, 1, r0, n);
    struct tensor o = ot_host(c->dt, SHAPE(c->B, n, c->H, OP_HEAD_DIM), NULL);

    op_attention_cpu(&o, &qs, k, v, 0.125f);
    CHECK(ot_guard_ok(&o), "cpu guard after o");
    ot_to_f32(&o, out);
    ot_free(&o);
}

static void test_cpu(void)
{
    static const struct acase cases[] = {
        {1, 1, 1, 1, DTYPE_F32, LAYOUT_CROSS, 1.0f},
        {2, 5, 5, 3, DTYPE_F32, LAYOUT_FUSED, 1.5f},
        {2, 4, 9, 2, DTYPE_F16, LAYOUT_CROSS, 1.0f},
        {1, 6, 1, 2, DTYPE_BF16, LAYOUT_PADDED, 1.0f},
        {1, 33, 70, 2, DTYPE_F32, LAYOUT_PADDED, 2.0f},
    };
    char label[200];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct acase *c = &cases[i];
        struct adata  d;
        struct tensor ta, tb, q, k, v;
        size_t        n = (size_t)(c->B * c->Tq * c->H * OP_HEAD_DIM);

        make_data(c, 60 + i, &d);
        inputs(c, &d, &ta, &tb);
        views(c, &ta, &tb, &q, &k, &v);
        float *out = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n);
        cpu_rows(c, &q, &k, &v, 0, c->Tq, out);
        naive(&q, &k, &v, 0, c->Tq, 0.125f, ref);
        ot_round(ref, n, c->dt);
        const struct op_tol *t = ot_tol(TOL, NTOL, c->dt);
        label_of(label, sizeof(label), "cpu~naive", c);
        /* the CPU op is fp32 throughout: hold it to the fp32 tolerance plus one output rounding */
        report_cmp(label, compare_f32(out, ref, n, TOL[0].atol, t->dt == DTYPE_F32 ? TOL[0].rtol
                                                                   : t->dt == DTYPE_F16 ? 1e-3 : 8e-3, -1));
        free(out);
        free(ref);
        ot_free(&ta);
        ot_free(&tb);
        free(d.a);
        free(d.b);
    }

    /* varlen: three sequences, one with a single key, against the dense op per sequence */
    {
        const int32_t qo[] = {0, 5, 135, 199}, ko[] = {0, 7, 8, 208};
        int64_t H = 2, D = OP_HEAD_DIM, TQ = 199, TK = 208;
        struct rng r;
        float *qv = malloc(sizeof(float) * (size_t)(TQ * H * D));
        float *kv = malloc(sizeof(float) * (size_t)(TK * 2 * H * D));
        rng_seed(&r, 99);
        fill_normal(&r, qv, (size_t)(TQ * H * D), 1.2f);
        fill_normal(&r, kv, (size_t)(TK * 2 * H * D), 1.2f);
        struct tensor q = ot_host(DTYPE_F32, SHAPE(TQ, H, D), qv);
        struct tensor kvt = ot_host(DTYPE_F32, SHAPE(1, TK, 2, H, D), kv);
        struct tensor k4 = op_heads_view(&kvt, 0), v4 = op_heads_view(&kvt, 1);
        struct tensor k = tensor_slice(&k4, 0, 0, 1), v = tensor_slice(&v4, 0, 0, 1);
        struct tensor o = ot_host(DTYPE_F32, SHAPE(TQ, H, D), NULL);
        struct tensor qot = tensor_view((void *)qo, DTYPE_I32, DEVICE_HOST, SHAPE(4));
        struct tensor kot = tensor_view((void *)ko, DTYPE_I32, DEVICE_HOST, SHAPE(4));
        /* (TK, H, D) views of k and v: drop the batch dim */
        k.ndim = 3;  v.ndim = 3;
        for (int dd = 0; dd < 3; dd++) {
            k.shape[dd] = k4.shape[dd + 1];  k.stride[dd] = k4.stride[dd + 1];
            v.shape[dd] = v4.shape[dd + 1];  v.stride[dd] = v4.stride[dd + 1];
        }
        op_attention_varlen_cpu(&o, &q, &k, &v, &qot, &kot, 0.125f);
        CHECK(ot_guard_ok(&o), "varlen guard after o");
        float *out = malloc(sizeof(float) * (size_t)(TQ * H * D));
        float *ref = malloc(sizeof(float) * (size_t)(TQ * H * D));
        ot_to_f32(&o, out);
        for (int s = 0; s < 3; s++) {
            struct tensor qs = q, ks = k, vs = v;
            qs.data = (float *)q.data + qo[s] * H * D;
            ks.data = (float *)k.data + ko[s] * k.stride[0];
            vs.data = (float *)v.data + ko[s] * v.stride[0];
            /* as (1, T, H, D) */
            struct tensor q4 = qs, kk4 = ks, vv4 = vs;
            q4.ndim = kk4.ndim = vv4.ndim = 4;
            for (int dd = 3; dd > 0; dd--) {
                q4.shape[dd] = qs.shape[dd - 1];   q4.stride[dd] = qs.stride[dd - 1];
                kk4.shape[dd] = ks.shape[dd - 1];  kk4.stride[dd] = ks.stride[dd - 1];
                vv4.shape[dd] = vs.shape[dd - 1];  vv4.stride[dd] = vs.stride[dd - 1];
            }
            q4.shape[0] = kk4.shape[0] = vv4.shape[0] = 1;
            q4.stride[0] = kk4.stride[0] = vv4.stride[0] = 0;
            q4.shape[1] = qo[s + 1] - qo[s];
            kk4.shape[1] = vv4.shape[1] = ko[s + 1] - ko[s];
            naive(&q4, &kk4, &vv4, 0, q4.shape[1], 0.125f, ref + qo[s] * H * D);
        }
        report_cmp("cpu~naive varlen 3 seqs Tq 5/130/64 Tk 7/1/200 F32",
                   compare_f32(out, ref, (size_t)(TQ * H * D), TOL[0].atol, TOL[0].rtol, -1));
        free(out);
        free(ref);
        ot_free(&q);
        ot_free(&kvt);
        ot_free(&o);
        free(qv);
        free(kv);
    }
}

/* The tensor-core kernel variants (kernels/cuda/attention.cu reads both
 * variables at every launch); the fp32 cases run the same kernel under each. */
static const struct variant {
    const char *what, *kernel, *mt;   /* label prefix, S3D_ATTN_KERNEL, S3D_ATTN_MT */
} VARIANTS[] = {
    {"cuda(MT1)~cpu", "v1", "1"},
    {"cuda(MT2)~cpu", "v1", "2"},
    {"cuda(v2)~cpu", "v2", NULL},
    {"cuda(v2b)~cpu", "v2b", NULL},
    {"cuda(v2s)~cpu", "v2s", NULL},
    {"cuda(v3)~cpu", "v3", NULL},
    {"cuda(v4)~cpu", "v4", NULL},
    {"cuda(split)~cpu", "split", NULL},   /* <= 16 queries split over the keys; else default */
};
#define NVARIANTS (sizeof(VARIANTS) / sizeof(VARIANTS[0]))

static void set_variant(const struct variant *v)
{
    setenv("S3D_ATTN_KERNEL", v->kernel, 1);
    if (v->mt)
        setenv("S3D_ATTN_MT", v->mt, 1);
    else
        unsetenv("S3D_ATTN_MT");
}

static void test_gpu(void)
{
    static const struct acase cases[] = {
        {1, 1, 1, 1, DTYPE_F16, LAYOUT_CROSS, 1.0f},
        {1, 1, 1, 1, DTYPE_F32, LAYOUT_CROSS, 1.0f},
        {2, 37, 37, 3, DTYPE_F16, LAYOUT_FUSED, 1.0f},
        {2, 65, 65, 3, DTYPE_BF16, LAYOUT_FUSED, 1.5f},
        {1, 129, 1, 4, DTYPE_F16, LAYOUT_CROSS, 1.0f},       /* Tk = 1 */
        {1, 4, 4100, 16, DTYPE_F16, LAYOUT_CROSS, 1.0f},     /* pose queries over shape keys */
        {1, 4, 7528, 16, DTYPE_F16, LAYOUT_CROSS, 1.0f},     /* ... over the condition */
        {2, 16, 300, 3, DTYPE_BF16, LAYOUT_CROSS, 1.5f},     /* split: 16 queries, a tail part */
        {1, 9, 129, 2, DTYPE_F16, LAYOUT_CROSS, 1.0f},       /* split: 9 of 16, one key over */
        {3, 2, 37, 1, DTYPE_F16, LAYOUT_CROSS, 2.0f},        /* split: one part, short group */
        {3, 100, 77, 2, DTYPE_F32, LAYOUT_CROSS, 2.0f},
        {2, 50, 130, 3, DTYPE_F16, LAYOUT_PADDED, 1.0f},     /* unaligned strides: fp32 kernel */
        {1, 1374, 1374, 16, DTYPE_F16, LAYOUT_FUSED, 1.0f},  /* DINOv2 */
        {1, 1374, 1374, 16, DTYPE_BF16, LAYOUT_FUSED, 1.0f},
        {1, 1374, 1374, 16, DTYPE_F32, LAYOUT_FUSED, 1.0f},
        {1, 4096, 4096, 16, DTYPE_F16, LAYOUT_FUSED, 2.0f},  /* SS flow self-attention */
        {2, 4096, 7528, 16, DTYPE_F16, LAYOUT_CROSS, 1.0f},  /* SS flow cross-attention, CFG batch */
    };
    struct arena  a;
    struct op_ctx ctx;
    char          label[200];

    if (!ot_gpu_begin(&a, &ctx, (size_t)2 << 30)) {
        CHECK(0, "GPU set-up failed");
        return;
    }
    const char *small = getenv("S3D_TEST_SMALL");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct acase *c = &cases[i];
        struct adata  d;
        struct tensor ta, tb, q, k, v, dq, dk, dv;

        if (small && strcmp(small, "0") && c->Tq * c->Tk > ((int64_t)1 << 20)) {
            printf("    S3D_TEST_SMALL: left out B%lld Tq%lld Tk%lld H%lld %s\n",
                   (long long)c->B, (long long)c->Tq, (long long)c->Tk, (long long)c->H,
                   dtype_name(c->dt));
            continue;
        }
        size_t        mark = arena_mark(&a), n = (size_t)(c->B * c->Tq * c->H * OP_HEAD_DIM);
        int64_t       rowsz = c->H * OP_HEAD_DIM;

        make_data(c, 600 + i, &d);
        inputs(c, &d, &ta, &tb);
        views(c, &ta, &tb, &q, &k, &v);
        struct tensor da = ot_dev(&a, &ta), db = ot_dev(&a, &tb);
        views(c, &da, &db, &dq, &dk, &dv);
        struct tensor ho = ot_host(c->dt, SHAPE(c->B, c->Tq, c->H, OP_HEAD_DIM), NULL);
        struct tensor o = ot_dev(&a, &ho);
        float *out = malloc(sizeof(float) * n);

        /* reference rows: all, or the first 96 and the last 70; computed once for every variant */
        int64_t spans[2][2] = {{0, c->Tq}, {0, 0}};
        if (c->Tq * c->Tk > 1000000) {
            spans[0][1] = 96;
            spans[1][0] = c->Tq - 70;
            spans[1][1] = 70;
        }
        float *ref[2] = {NULL, NULL};
        for (int s = 0; s < 2; s++)
            if (spans[s][1] > 0) {
                ref[s] = malloc(sizeof(float) * (size_t)(c->B * spans[s][1] * rowsz));
                cpu_rows(c, &q, &k, &v, spans[s][0], spans[s][1], ref[s]);
            }
        const struct op_tol *t = ot_tol(TOL, NTOL, c->dt);
        for (size_t vi = 0; vi < NVARIANTS; vi++) {
            set_variant(&VARIANTS[vi]);
            CUDA_CHECK(cudaMemsetAsync(o.data, 0xff, n * dtype_size(c->dt), ctx.stream));   /* NaN: no stale rows */
            op_attention_cuda(&ctx, &o, &dq, &dk, &dv, 0.125f);
            op_ctx_synchronize(&ctx);
            CHECK(ot_guard_ok(&o), "guard after o");
            ot_to_f32(&o, out);
            for (int s = 0; s < 2; s++) {
                int64_t r0 = spans[s][0], nr = spans[s][1];
                if (nr == 0)
                    continue;
                size_t m = (size_t)(c->B * nr * rowsz);
                float *got = malloc(sizeof(float) * m);
                for (int64_t b = 0; b < c->B; b++)
                    memcpy(got + b * nr * rowsz, out + (b * c->Tq + r0) * rowsz,
                           sizeof(float) * (size_t)(nr * rowsz));
                label_of(label, sizeof(label), VARIANTS[vi].what, c);
                if (nr != c->Tq)
                    snprintf(label + strlen(label), sizeof(label) - strlen(label),
                             " rows %lld+%lld", (long long)r0, (long long)nr);
                report_cmp(label, compare_f32(got, ref[s], m, t->atol, t->rtol, t->nmse));
                free(got);
            }
        }
        free(ref[0]);
        free(ref[1]);
        free(out);
        ot_free(&ho);
        ot_free(&ta);
        ot_free(&tb);
        free(d.a);
        free(d.b);
        arena_release(&a, mark);
    }

    /* varlen on the GPU against the varlen CPU op: windows of 1..200 tokens */
    {
        const int32_t qo[] = {0, 1, 65, 265, 330}, ko[] = {0, 1, 65, 265, 330};
        int64_t H = 4, D = OP_HEAD_DIM, T = 330;
        enum dtype dts[] = {DTYPE_F16, DTYPE_BF16, DTYPE_F32};
        for (int di = 0; di < 3; di++) {
            size_t mark = arena_mark(&a);
            struct rng r;
            float *qkv = malloc(sizeof(float) * (size_t)(T * 3 * H * D));
            rng_seed(&r, 700 + di);
            fill_normal(&r, qkv, (size_t)(T * 3 * H * D), 1.0f);
            ot_round(qkv, (size_t)(T * 3 * H * D), dts[di]);
            struct tensor hqkv = ot_host(dts[di], SHAPE(1, T, 3, H, D), qkv);
            struct tensor dqkv = ot_dev(&a, &hqkv);
            struct tensor hqo = ot_host(DTYPE_I32, SHAPE(5), NULL), hko = ot_host(DTYPE_I32, SHAPE(5), NULL);
            memcpy(hqo.data, qo, sizeof(qo));
            memcpy(hko.data, ko, sizeof(ko));
            struct tensor dqo = ot_dev(&a, &hqo), dko = ot_dev(&a, &hko);
            struct tensor ho = ot_host(dts[di], SHAPE(T, H, D), NULL), hr = ot_host(dts[di], SHAPE(T, H, D), NULL);
            struct tensor dout = ot_dev(&a, &ho);
            struct tensor hv[3], dv3[3];
            for (int w = 0; w < 3; w++) {
                struct tensor h4 = op_heads_view(&hqkv, w), d4 = op_heads_view(&dqkv, w);
                hv[w] = h4;
                dv3[w] = d4;
                hv[w].ndim = dv3[w].ndim = 3;
                for (int dd = 0; dd < 3; dd++) {
                    hv[w].shape[dd] = h4.shape[dd + 1];   hv[w].stride[dd] = h4.stride[dd + 1];
                    dv3[w].shape[dd] = d4.shape[dd + 1];  dv3[w].stride[dd] = d4.stride[dd + 1];
                }
            }
            op_attention_varlen_cpu(&hr, &hv[0], &hv[1], &hv[2], &hqo, &hko, 0.125f);
            float *out = malloc(sizeof(float) * (size_t)(T * H * D)), *ref = malloc(sizeof(float) * (size_t)(T * H * D));
            ot_to_f32(&hr, ref);
            for (size_t vi = 0; vi < NVARIANTS; vi++) {
                set_variant(&VARIANTS[vi]);
                CUDA_CHECK(cudaMemsetAsync(dout.data, 0xff, (size_t)(T * H * D) * dtype_size(dts[di]), ctx.stream));
                op_attention_varlen_cuda(&ctx, &dout, &dv3[0], &dv3[1], &dv3[2], &dqo, &dko, 200, 0.125f);
                op_ctx_synchronize(&ctx);
                CHECK(ot_guard_ok(&dout), "varlen guard after o");
                ot_to_f32(&dout, out);
                snprintf(label, sizeof(label), "%s varlen windows 1/64/200/65 H4 %s", VARIANTS[vi].what,
                         dtype_name(dts[di]));
                ot_report(label, out, ref, (size_t)(T * H * D), TOL, NTOL, dts[di]);
            }
            free(out);
            free(ref);
            free(qkv);
            ot_free(&hqkv);
            ot_free(&hqo);
            ot_free(&hko);
            ot_free(&ho);
            ot_free(&hr);
            arena_release(&a, mark);
        }
    }
    ot_gpu_end(&a, &ctx);
}

int main(void)
{
    log_init("test_op_attention");
    ot_print_tols(TOL, NTOL);
    test_cpu();
    ot_skip_without_gpu("test_op_attention");
    test_gpu();
    unsetenv("S3D_ATTN_KERNEL");
    unsetenv("S3D_ATTN_MT");
    return harness_done("test_op_attention");
}
