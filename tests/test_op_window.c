/*
 * test_op_window.c - the swin window partition, windowed self-attention and
 * the absolute position embedding (kernels/ops_window.h).
 *
 * CPU part:
 * - partition: against an independent brute force (window key per token,
 *   windows in key order, rows in row order) on awkward sets (one token, a
 *   full 8^3 window = 512 tokens, tokens 9 apart = windows of 1, a shell),
 *   both shifts; and against the official calc_window_partition recorded in
 *   tests/fixtures/gs_decoder_tiny/g32 (window.shift{0,4}.*): same window
 *   lengths in the same order, same token set in every window (the official
 *   argsort is unstable, so the order inside a window is not compared).
 * - attention: op_window_attention_cpu against a naive double softmax over
 *   the tokens sharing the query's window key (no partition involved).
 * - APE: against the formula in double, and op_ape_add on the fixture's
 *   input_layer against its tokens_ape (the official input_layer + APE).
 * GPU part (skipped without one): op_window_attention_cuda against the CPU op
 * (F16/BF16 tensor cores, F32, unaligned head strides, windows of 1 and 512
 * tokens, empty windows inserted into the offsets, a 30k-voxel shell with 12
 * heads as the released decoder sees); op_ape_add_cuda against the CPU op.
 * Guard bytes after every output.
 */
#include "harness.h"
#include "ckpt.h"
#include "log.h"
#include "op_harness.h"
#include "ops_window.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/gs_decoder_tiny/g32/ref.safetensors"

static const struct op_tol TOL[] = {
    {DTYPE_F32,  2e-5, 1e-4, 1e-9, "fp32 online softmax vs one-pass softmax, sums of L terms"},
    {DTYPE_F16,  4e-3, 1e-2, 2e-5, "P rounded to f16 for the PV product (as FlashAttention), f16 out"},
    {DTYPE_BF16, 3e-2, 4e-2, 1e-3, "P rounded to bf16 (2^-8 rel) for the PV product, bf16 out"},
};
#define NTOL (sizeof(TOL) / sizeof(TOL[0]))

/* APE: sin/cos of an fp32 argument up to 63 rad, fp32 vs double (a few ulps of 1). */
static const double APE_ATOL = 2e-6;

// ----------------------------------------------------------------------------
// coordinate sets

enum cset { CS_ONE, CS_FULL, CS_SPARSE, CS_SHELL, CS_BIG_SHELL, CS_FAR };

static const char *cs_name[] = {"one token", "full 8^3 block", "tokens 9 apart", "shell",
                                "big shell", "clusters at 4096^3"};

/* Coordinates of a set, malloc'ed (N, 4) I32; *n receives N. */
static int32_t *make_coords(enum cset cs, int64_t *n)
{
    int32_t *c = malloc(sizeof(int32_t) * 4 * 64 * 64 * 64);
    int64_t k = 0;

    ASSERT(c);
    if (cs == CS_FAR) {     /* 6 clusters of 3^3 voxels spread over [0, 4096)^3: > 2^20 windows */
        for (int q = 0; q < 6; q++)
            for (int e = 0; e < 27; e++) {
                int32_t *p = c + 4 * k++;
                p[0] = 0;
                p[1] = (q * 733 + 11) % 4090 + e / 9;
                p[2] = (q * 1999 + 5) % 4090 + (e / 3) % 3;
                p[3] = (q * 3011 + 7) % 4090 + e % 3;
            }
    }
    for (int x = 0; x < 64 && cs != CS_FAR; x++)
        for (int y = 0; y < 64; y++)
            for (int z = 0; z < 64; z++) {
                double dx = x - 31.5, dy = y - 30.2, dz = z - 32.7, r = sqrt(dx * dx + dy * dy + dz * dz);
                bool on = false;
                switch (cs) {
                case CS_ONE:       on = x == 5 && y == 60 && z == 0; break;
                case CS_FULL:      on = x >= 8 && x < 16 && y >= 8 && y < 16 && z >= 8 && z < 16; break;
                case CS_SPARSE:    on = x % 9 == 3 && y % 9 == 0 && z % 9 == 7; break;
                case CS_SHELL:     on = r >= 12.0 && r < 13.0; break;
                case CS_BIG_SHELL: on = (r >= 28.0 && r < 30.0) || (r >= 14.0 && r < 15.3); break;
                case CS_FAR:       break;
                }
                if (on) {
                    int32_t *p = c + 4 * k++;
                    p[0] = 0, p[1] = x, p[2] = y, p[3] = z;
                }
            }
    /* a fixed shuffle, so row order is not the lexicographic one */
    for (int64_t i = k - 1; i > 0; i--) {
        int64_t j = (i * 7919 + 13) % (i + 1);
        for (int e = 0; e < 4; e++) {
            int32_t t = c[4 * i + e];
            c[4 * i + e] = c[4 * j + e];
            c[4 * j + e] = t;
        }
    }
    *n = k;
    return c;
}

/* The reference's linear window keys (windowed_attn.py:43-63), key (n). */
static void win_keys(const int32_t *c, int64_t n, int win, int shift, int64_t *key)
{
    int64_t nw[3] = {0, 0, 0};

    for (int64_t t = 0; t < n; t++)
        for (int a = 0; a < 3; a++) {
            int64_t w = (c[4 * t + 1 + a] + shift) / win + 1;
            nw[a] = w > nw[a] ? w : nw[a];
        }
    for (int64_t i = 0; i < n; i++) {
        const int32_t *p = c + 4 * i;
        key[i] = (((int64_t)(p[1] + shift) / win) * nw[1] + (p[2] + shift) / win) * nw[2] +
                 (p[3] + shift) / win;
    }
}

// ----------------------------------------------------------------------------
// partition

/* Brute force: windows in increasing key order, rows in increasing order. */
static void check_partition(const int32_t *c, int64_t n, int win, int shift, const char *what)
{
    struct tensor tc = tensor_view((void *)c, DTYPE_I32, DEVICE_HOST, SHAPE(n, 4));
    struct tensor perm = ot_host(DTYPE_I32, SHAPE(n), NULL), off = ot_host(DTYPE_I32, SHAPE(n + 1), NULL);
    int64_t *key = malloc(sizeof(int64_t) * (size_t)n);
    int maxl = -1;

    ASSERT(key);
    win_keys(c, n, win, shift, key);
    int64_t nwin = op_window_partition_cpu(&perm, &off, &tc, win, shift, &maxl);
    const int32_t *pm = perm.data, *of = off.data;
    bool ok = of[0] == 0 && of[nwin] == n && nwin >= 1;
    int64_t slot = 0, longest = 0, w = 0;
    int64_t prev = -1;
    while (ok && slot < n) {                 /* walk the keys in increasing order */
        int64_t next = INT64_MAX;
        for (int64_t i = 0; i < n; i++)
            if (key[i] > prev && key[i] < next)
                next = key[i];
        ok = w < nwin && of[w] == slot;
        for (int64_t i = 0; ok && i < n; i++)
            if (key[i] == next)
                ok = pm[slot++] == i;
        longest = slot - of[w] > longest ? slot - of[w] : longest;
        prev = next;
        w++;
    }
    ok = ok && w == nwin && longest == maxl && ot_guard_ok(&perm) && ot_guard_ok(&off);
    printf("partition %-16s win %d shift %d: N %lld, %lld windows, longest %d  %s\n", what, win,
           shift, (long long)n, (long long)nwin, maxl, ok ? "OK" : "FAIL");
    CHECK(ok, "partition %s shift %d", what, shift);
    free(key);
    ot_free(&perm);
    ot_free(&off);
}

/* Ours against the official one recorded in the fixture. */
static void check_official_partition(const struct ckpt *r)
{
    const struct ckpt_entry *ec = ckpt_find(r, "coords");

    CHECK(ec != NULL, "fixture coords");
    if (!ec)
        return;
    struct tensor coords = ckpt_entry_tensor(ec);
    int64_t n = coords.shape[0];
    for (int shift = 0; shift <= 4; shift += 4) {
        char nf[64], nl[64];
        snprintf(nf, sizeof(nf), "window.shift%d.fwd", shift);
        snprintf(nl, sizeof(nl), "window.shift%d.seq_lens", shift);
        const struct ckpt_entry *ef = ckpt_find(r, nf), *el = ckpt_find(r, nl);
        CHECK(ef && el, "fixture %s, %s (tools/ref/dump_gs_decoder.py)", nf, nl);
        if (!ef || !el)
            continue;
        struct tensor fwd = ckpt_entry_tensor(ef), lens = ckpt_entry_tensor(el);
        const int32_t *fo = fwd.data, *lo = lens.data;
        struct tensor perm = ot_host(DTYPE_I32, SHAPE(n), NULL), off = ot_host(DTYPE_I32, SHAPE(n + 1), NULL);
        int maxl;
        int64_t nwin = op_window_partition_cpu(&perm, &off, &coords, 8, shift, &maxl);
        const int32_t *pm = perm.data, *of = off.data;
        bool ok = nwin == lens.shape[0] && fwd.shape[0] == n;
        for (int64_t w = 0; ok && w < nwin; w++) {
            ok = of[w + 1] - of[w] == lo[w];
            /* same members: every official row of the segment is in ours */
            for (int32_t s = of[w]; ok && s < of[w + 1]; s++) {
                bool found = false;
                for (int32_t u = of[w]; u < of[w + 1] && !found; u++)
                    found = pm[u] == fo[s];
                ok = found;
            }
        }
        printf("partition vs official calc_window_partition, shift %d: %lld windows (lengths", shift,
               (long long)nwin);
        for (int64_t w = 0; w < nwin && w < 12; w++)
            printf(" %d", of[w + 1] - of[w]);
        printf(")  %s\n", ok ? "OK" : "FAIL");
        CHECK(ok, "official partition shift %d", shift);
        ot_free(&perm);
        ot_free(&off);
    }
}

// ----------------------------------------------------------------------------
// attention

/* Naive double windowed attention: o (N, H, 64) for token rows [0, n). */
static void naive(const int32_t *c, int64_t n, int shift, const float *qkv, int64_t H, float *o)
{
    const int64_t D = OP_HEAD_DIM, rs = 3 * H * D;
    int64_t *key = malloc(sizeof(int64_t) * (size_t)n);
    double *s = malloc(sizeof(double) * (size_t)n);

    win_keys(c, n, 8, shift, key);
    for (int64_t i = 0; i < n; i++)
        for (int64_t h = 0; h < H; h++) {
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < n; j++) {
                if (key[j] != key[i])
                    continue;
                double dot = 0;
                for (int64_t e = 0; e < D; e++)
                    dot += (double)qkv[i * rs + h * D + e] * qkv[j * rs + H * D + h * D + e];
                s[j] = dot * 0.125;
                mx = fmax(mx, s[j]);
            }
            for (int64_t j = 0; j < n; j++)
                if (key[j] == key[i]) {
                    s[j] = exp(s[j] - mx);
                    sum += s[j];
                }
            for (int64_t e = 0; e < D; e++) {
                double acc = 0;
                for (int64_t j = 0; j < n; j++)
                    if (key[j] == key[i])
                        acc += s[j] * qkv[j * rs + 2 * H * D + h * D + e];
                o[(i * H + h) * D + e] = (float)(acc / sum);
            }
        }
    free(key);
    free(s);
}

/* A random (n, 3, H, 64) qkv rounded to dt. */
static float *make_qkv(int64_t n, int64_t H, enum dtype dt, uint64_t seed, float spread)
{
    size_t m = (size_t)(n * 3 * H * OP_HEAD_DIM);
    float *v = malloc(sizeof(float) * m);
    struct rng r;

    ASSERT(v);
    rng_seed(&r, seed);
    fill_normal(&r, v, m, spread);
    ot_round(v, m, dt);
    return v;
}

/* The CPU op on host data: out (n, H, 64) fp32. */
static void cpu_attention(const int32_t *c, int64_t n, int shift, const float *qkv, int64_t H,
                          enum dtype dt, float *out)
{
    struct tensor tc = tensor_view((void *)c, DTYPE_I32, DEVICE_HOST, SHAPE(n, 4));
    struct tensor perm = ot_host(DTYPE_I32, SHAPE(n), NULL), off = ot_host(DTYPE_I32, SHAPE(n + 1), NULL);
    struct tensor q = ot_host(dt, SHAPE(n, 3, H, OP_HEAD_DIM), qkv);
    struct tensor o = ot_host(dt, SHAPE(n, H, OP_HEAD_DIM), NULL);
    int maxl;
    int64_t nwin = op_window_partition_cpu(&perm, &off, &tc, 8, shift, &maxl);
    struct tensor offv = tensor_slice(&off, 0, 0, nwin + 1);

    op_window_attention_cpu(&o, &q, &perm, &offv, 0.125f);
    CHECK(ot_guard_ok(&o), "cpu guard after o");
    ot_to_f32(&o, out);
    ot_free(&perm);
    ot_free(&off);
    ot_free(&q);
    ot_free(&o);
}

static void test_cpu_attention(void)
{
    static const struct { enum cset cs; int shift; int64_t H; enum dtype dt; } cases[] = {
        {CS_ONE, 0, 1, DTYPE_F32},  {CS_FULL, 0, 2, DTYPE_F32},  {CS_FULL, 4, 1, DTYPE_F16},
        {CS_SPARSE, 4, 2, DTYPE_F32}, {CS_SHELL, 0, 2, DTYPE_F32}, {CS_SHELL, 4, 1, DTYPE_BF16},
        {CS_FAR, 4, 1, DTYPE_F32},
    };
    char label[160];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t n, H = cases[i].H;
        int32_t *c = make_coords(cases[i].cs, &n);
        float *qkv = make_qkv(n, H, cases[i].dt, 40 + i, 1.5f);
        size_t m = (size_t)(n * H * OP_HEAD_DIM);
        float *out = malloc(sizeof(float) * m), *ref = malloc(sizeof(float) * m);
        cpu_attention(c, n, cases[i].shift, qkv, H, cases[i].dt, out);
        naive(c, n, cases[i].shift, qkv, H, ref);
        ot_round(ref, m, cases[i].dt);
        snprintf(label, sizeof(label), "cpu~naive %s (N %lld) shift %d H%lld %s", cs_name[cases[i].cs],
                 (long long)n, cases[i].shift, (long long)H, dtype_name(cases[i].dt));
        /* the CPU op is fp32 throughout: fp32 tolerance plus one output rounding */
        double rt = cases[i].dt == DTYPE_F32 ? TOL[0].rtol : cases[i].dt == DTYPE_F16 ? 1e-3 : 8e-3;
        report_cmp(label, compare_f32(out, ref, m, TOL[0].atol, rt, -1));
        free(c), free(qkv), free(out), free(ref);
    }
}

// ----------------------------------------------------------------------------
// APE

static void test_cpu_ape(const struct ckpt *r)
{
    /* the formula in double on a shell, C = 768 (released) and 130 (fd 21, 4 zero channels) */
    for (int ci = 0; ci < 2; ci++) {
        int C = ci ? 130 : 768, fd = C / 3 / 2;
        int64_t n;
        int32_t *c = make_coords(CS_SHELL, &n);
        struct tensor tc = tensor_view(c, DTYPE_I32, DEVICE_HOST, SHAPE(n, 4));
        struct tensor y = ot_host(DTYPE_F32, SHAPE(n, C), NULL);
        float *out = malloc(sizeof(float) * (size_t)(n * C)), *ref = malloc(sizeof(float) * (size_t)(n * C));
        float fr[512];
        /* the fp32 frequencies: within half an ulp of 1 / 10000^(j / fd) */
        op_ape_freqs(fr, C);
        double worst = 0;
        for (int j = 0; j < fd; j++) {
            double f = 1.0 / pow(10000.0, (double)(float)((float)j / (float)fd));
            worst = fmax(worst, fabs(fr[j] - f) / f);
        }
        printf("ape freqs C %d: max rel error %.1e vs double\n", C, worst);
        CHECK(worst <= 1.2e-7, "frequencies");
        op_ape_add_cpu(&y, NULL, &tc);
        CHECK(ot_guard_ok(&y));
        ot_to_f32(&y, out);
        for (int64_t i = 0; i < n; i++)
            for (int ch = 0; ch < C; ch++) {
                double v = 0;
                if (ch < 6 * fd) {
                    int a = ch / (2 * fd), j = ch % (2 * fd);
                    double arg = (double)((float)c[i * 4 + 1 + a] * fr[j % fd]);
                    v = j < fd ? sin(arg) : cos(arg);
                }
                ref[i * C + ch] = (float)v;
            }
        char label[96];
        snprintf(label, sizeof(label), "ape cpu~double C %d (N %lld)", C, (long long)n);
        report_cmp(label, compare_f32(out, ref, (size_t)(n * C), APE_ATOL, 0, -1));
        free(c), free(out), free(ref);
        ot_free(&y);
    }

    /* the official input_layer + APE (fp32) */
    const struct ckpt_entry *ec = ckpt_find(r, "coords"), *ei = ckpt_find(r, "input_layer"),
                            *et = ckpt_find(r, "tokens_ape");
    CHECK(ec && ei && et, "fixture coords, input_layer, tokens_ape");
    if (!ec || !ei || !et)
        return;
    struct tensor coords = ckpt_entry_tensor(ec), il = ckpt_entry_tensor(ei), ta = ckpt_entry_tensor(et);
    struct tensor y = ot_host(DTYPE_F32, il.shape, il.ndim, NULL);
    op_ape_add_cpu(&y, &il, &coords);
    report_cmp("ape cpu: input_layer + APE vs the official tokens_ape",
               compare_f32(y.data, ta.data, (size_t)tensor_numel(&ta), APE_ATOL, 1e-6, -1));
    ot_free(&y);
}

// ----------------------------------------------------------------------------
// GPU

/* CUDA against the CPU op on one set; empty: an empty window before every
 * window in the offsets (the kernel must skip them). */
static void gpu_case(struct arena *a, struct op_ctx *ctx, enum cset cs, int shift, int64_t H,
                     enum dtype dt, bool empty)
{
    size_t mark = arena_mark(a);
    int64_t n, D = OP_HEAD_DIM;
    int32_t *c = make_coords(cs, &n);
    struct tensor tc = tensor_view(c, DTYPE_I32, DEVICE_HOST, SHAPE(n, 4));
    struct tensor perm = ot_host(DTYPE_I32, SHAPE(n), NULL);
    struct tensor off = ot_host(DTYPE_I32, SHAPE(n + 1), NULL);
    struct tensor off2 = ot_host(DTYPE_I32, SHAPE(2 * n + 1), NULL);
    int maxl;
    int64_t nwin = op_window_partition_cpu(&perm, &off, &tc, 8, shift, &maxl);
    struct tensor offv = tensor_slice(&off, 0, 0, nwin + 1);
    if (empty) {        /* window 2w = [of[w], of[w]), window 2w + 1 = [of[w], of[w + 1]) */
        const int32_t *of = off.data;
        int32_t *o2 = off2.data;
        for (int64_t w = 0; w <= nwin; w++)
            o2[2 * w] = of[w];
        for (int64_t w = 0; w < nwin; w++)
            o2[2 * w + 1] = of[w];
        offv = tensor_slice(&off2, 0, 0, 2 * nwin + 1);
    }
    float *qkv = make_qkv(n, H, dt, 900 + (uint64_t)cs * 10 + (uint64_t)shift, 1.0f);
    struct tensor hq = ot_host(dt, SHAPE(n, 3, H, D), qkv);
    struct tensor dq = ot_dev(a, &hq), dperm = ot_dev(a, &perm), doff = ot_dev(a, &offv);
    struct tensor ho = ot_host(dt, SHAPE(n, H, D), NULL);
    struct tensor dout = ot_dev(a, &ho);
    op_window_attention_cuda(ctx, &dout, &dq, &dperm, &doff, maxl, 0.125f);
    op_ctx_synchronize(ctx);
    CHECK(ot_guard_ok(&dout), "guard after o");
    size_t m = (size_t)(n * H * D);
    float *out = malloc(sizeof(float) * m), *ref = malloc(sizeof(float) * m);
    ot_to_f32(&dout, out);
    cpu_attention(c, n, shift, qkv, H, dt, ref);
    char label[160];
    snprintf(label, sizeof(label), "cuda~cpu %s (N %lld, %lld windows, longest %d) shift %d H%lld %s%s",
             cs_name[cs], (long long)n, (long long)nwin, maxl, shift, (long long)H, dtype_name(dt),
             empty ? " +empty windows" : "");
    ot_report(label, out, ref, m, TOL, NTOL, dt);
    free(c), free(qkv), free(out), free(ref);
    ot_free(&perm), ot_free(&off), ot_free(&off2), ot_free(&hq), ot_free(&ho);
    arena_release(a, mark);
}

static void test_gpu(void)
{
    struct arena a;
    struct op_ctx ctx;

    if (!ot_gpu_begin(&a, &ctx, (size_t)1 << 30)) {
        CHECK(0, "GPU set-up failed");
        return;
    }
    gpu_case(&a, &ctx, CS_ONE, 0, 1, DTYPE_F16, false);
    gpu_case(&a, &ctx, CS_ONE, 4, 2, DTYPE_F32, false);
    gpu_case(&a, &ctx, CS_FULL, 0, 2, DTYPE_F16, false);      /* one window of 512 */
    gpu_case(&a, &ctx, CS_FULL, 0, 2, DTYPE_BF16, false);
    gpu_case(&a, &ctx, CS_FULL, 0, 2, DTYPE_F32, false);
    gpu_case(&a, &ctx, CS_FULL, 4, 3, DTYPE_F16, false);      /* 8 windows of 64 */
    gpu_case(&a, &ctx, CS_SPARSE, 0, 2, DTYPE_F16, false);    /* windows of 1 */
    gpu_case(&a, &ctx, CS_SPARSE, 4, 1, DTYPE_F32, true);
    gpu_case(&a, &ctx, CS_SHELL, 0, 4, DTYPE_F16, true);
    gpu_case(&a, &ctx, CS_SHELL, 4, 4, DTYPE_BF16, false);
    gpu_case(&a, &ctx, CS_SHELL, 4, 2, DTYPE_F32, false);
    gpu_case(&a, &ctx, CS_BIG_SHELL, 0, 12, DTYPE_F16, false);    /* released heads */
    gpu_case(&a, &ctx, CS_BIG_SHELL, 4, 12, DTYPE_F16, false);

    /* APE: CUDA vs CPU, into F32 (from nothing and from an F32 x) and into F16 */
    {
        int64_t n;
        int32_t *c = make_coords(CS_BIG_SHELL, &n);
        const int C = 768;
        struct tensor tc = ot_host(DTYPE_I32, SHAPE(n, 4), NULL);
        memcpy(tc.data, c, sizeof(int32_t) * (size_t)(n * 4));
        struct tensor dc = ot_dev(&a, &tc);
        float *xv = make_qkv(n * C / (3 * OP_HEAD_DIM), 1, DTYPE_F32, 5, 1.0f);
        struct tensor hx = ot_host(DTYPE_F32, SHAPE(n, C), xv);
        struct tensor dx = ot_dev(&a, &hx);
        for (int k = 0; k < 3; k++) {
            enum dtype ydt = k == 2 ? DTYPE_F16 : DTYPE_F32;
            struct tensor hy = ot_host(ydt, SHAPE(n, C), NULL), hr = ot_host(ydt, SHAPE(n, C), NULL);
            struct tensor dy = ot_dev(&a, &hy);
            op_ape_add_cuda(&ctx, &dy, k ? &dx : NULL, &dc);
            op_ctx_synchronize(&ctx);
            op_ape_add_cpu(&hr, k ? &hx : NULL, &tc);
            CHECK(ot_guard_ok(&dy));
            float *out = malloc(sizeof(float) * (size_t)(n * C)), *ref = malloc(sizeof(float) * (size_t)(n * C));
            ot_to_f32(&dy, out);
            ot_to_f32(&hr, ref);
            char label[96];
            snprintf(label, sizeof(label), "ape cuda~cpu %s%s (N %lld, C %d)", k ? "x + APE -> " : "APE -> ",
                     dtype_name(ydt), (long long)n, C);
            report_cmp(label, compare_f32(out, ref, (size_t)(n * C), ydt == DTYPE_F16 ? 2e-3 : APE_ATOL,
                                          ydt == DTYPE_F16 ? 1e-3 : 1e-6, -1));
            free(out), free(ref);
            ot_free(&hy), ot_free(&hr);
        }
        free(c), free(xv);
        ot_free(&tc), ot_free(&hx);
    }
    ot_gpu_end(&a, &ctx);
}

int main(void)
{
    struct ckpt r;

    log_init("test_op_window");
    ot_print_tols(TOL, NTOL);
    for (int cs = CS_ONE; cs <= CS_FAR; cs++) {
        int64_t n;
        int32_t *c = make_coords((enum cset)cs, &n);
        for (int shift = 0; shift <= 4; shift += 4)
            if (cs != CS_BIG_SHELL || shift == 4)       /* the brute force is O(N^2 windows) */
                check_partition(c, n, 8, shift, cs_name[cs]);
        if (cs == CS_SHELL)
            check_partition(c, n, 5, 2, cs_name[cs]);
        free(c);
    }
    if (ckpt_open(&r, FIX, 0) == 0) {
        check_official_partition(&r);
        test_cpu_ape(&r);
        ckpt_close(&r);
    } else {
        CHECK(0, "fixture %s unreadable (tools/ref/dump_gs_decoder.py)", FIX);
    }
    test_cpu_attention();
    ot_skip_without_gpu("test_op_window");
    test_gpu();
    return harness_done("test_op_window");
}
