/*
 * test_op_copy.c - the data-movement ops of kernels/ops_copy.h: row-pitched
 * layouts; copy with every F32/F16/BF16 cast and byte copies of integers,
 * contiguous and through column/row slices; zero; upload and download with
 * casts. CPU part: against an element-by-element reference (dtype_get /
 * dtype_set, one rounding from the exact value), bytes outside the destination
 * view untouched. GPU part: every case through the CUDA ops, bit-identical to
 * the CPU op, device contents read back with plain cudaMemcpy (not the ops
 * under test), guard bytes after every buffer.
 */
#include "check.h"
#include "dtype.h"
#include "harness.h"
#include "log.h"
#include "op_harness.h"
#include "ops_copy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILL 0xA5                         /* bytes of a buffer outside any written view */

static const enum dtype FLOATS[] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};

/* A copy case: src and dst are views of buffers (R, Cb) starting at column c0
 * with `cols` columns ((R, cols) slices), or the whole buffer when cols == Cb. */
struct ccase {
    int64_t R, Cs, Cd;        /* rows, source and destination buffer widths */
    int64_t s0, d0, cols;     /* first column of each view, view width */
};

static const struct ccase CASES[] = {
    {1, 1, 1, 0, 0, 1},       /* one element */
    {7, 33, 33, 0, 0, 33},    /* contiguous, odd sizes */
    {5, 8, 3, 2, 0, 3},       /* a column range -> contiguous */
    {5, 3, 9, 0, 4, 3},       /* contiguous -> a column range (a concat half) */
    {64, 96, 160, 32, 96, 64},/* both sliced, the SLAT flow's [h | skip] shape class */
};
#define NCASES (sizeof(CASES) / sizeof(CASES[0]))

static struct tensor view_of(void *buf, enum dtype dt, enum device dev, int64_t R, int64_t Cb,
                             int64_t c0, int64_t cols)
{
    struct tensor t = tensor_view(buf, dt, dev, SHAPE(R, Cb));
    return cols == Cb ? t : tensor_slice(&t, 1, c0, cols);
}

static void fill_values(void *buf, enum dtype dt, size_t n, uint64_t seed)
{
    struct rng r;

    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        double v = dtype_is_float(dt) ? (double)rng_normal(&r) * 300.0
                                      : (double)(int64_t)(rng_u64(&r) % 2001) - 1000.0;
        if (dt == DTYPE_U8)
            v = (double)(rng_u64(&r) % 256);
        dtype_set(buf, dt, i, v);
    }
    if (dtype_is_float(dt) && n > 3) {       /* the specials survive every cast */
        dtype_set(buf, dt, 0, INFINITY);
        dtype_set(buf, dt, 1, -0.0);
        dtype_set(buf, dt, 2, 65519.0);      /* rounds to F16 65504 / Inf boundary */
    }
}

/* The expected destination buffer: FILL outside the view, element casts inside. */
static void reference(uint8_t *exp, enum dtype dd, const struct ccase *c, const void *src,
                      enum dtype sd)
{
    memset(exp, FILL, (size_t)(c->R * c->Cd) * dtype_size(dd));
    for (int64_t r = 0; r < c->R; r++)
        for (int64_t k = 0; k < c->cols; k++)
            dtype_set(exp, dd, (size_t)(r * c->Cd + c->d0 + k),
                      dtype_get(src, sd, (size_t)(r * c->Cs + c->s0 + k)));
}

static void test_rows_pitched(void)
{
    float buf[2 * 3 * 8];
    int64_t r, c, p;
    struct tensor t = tensor_view(buf, DTYPE_F32, DEVICE_HOST, SHAPE(2, 3, 8));
    struct tensor s = tensor_slice(&t, 2, 2, 4);

    CHECK(op_rows_pitched(&t, &r, &c, &p) && r == 6 && c == 8 && p == 8);
    CHECK(op_rows_pitched(&s, &r, &c, &p) && r == 6 && c == 4 && p == 8, "last-dim slice");
    s = tensor_slice(&t, 1, 1, 2);                     /* rows 1-2 of each batch: not one pitch */
    CHECK(!op_rows_pitched(&s, &r, &c, &p));
    s = tensor_slice(&t, 0, 1, 1);
    s = tensor_slice(&s, 1, 1, 2);                     /* batch 1, rows 1-2: one pitch again */
    CHECK(op_rows_pitched(&s, &r, &c, &p) && r == 2 && c == 8 && p == 8);
    struct tensor m = tensor_view(buf, DTYPE_F32, DEVICE_HOST, SHAPE(6, 8));
    struct tensor col = tensor_slice(&m, 1, 3, 1);     /* one column: stride of the last dim free */
    CHECK(op_rows_pitched(&col, &r, &c, &p) && r == 6 && c == 1 && p == 8);
    struct tensor tr = m;                              /* a transpose is not row-pitched */
    tr.shape[0] = 8; tr.shape[1] = 6; tr.stride[0] = 1; tr.stride[1] = 8;
    CHECK(!op_rows_pitched(&tr, &r, &c, &p));
    struct tensor sc = tensor_view(buf, DTYPE_F32, DEVICE_HOST, NULL, 0);
    CHECK(op_rows_pitched(&sc, &r, &c, &p) && r == 1 && c == 1);
}

/* Every float cast pair and the integer byte copies, every case, on the CPU. */
static void test_copy_cpu(void)
{
    enum dtype pairs[16][2];
    int np = 0;

    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            pairs[np][0] = FLOATS[i];
            pairs[np++][1] = FLOATS[j];
        }
    pairs[np][0] = DTYPE_I32; pairs[np++][1] = DTYPE_I32;
    pairs[np][0] = DTYPE_U8;  pairs[np++][1] = DTYPE_U8;
    for (int pi = 0; pi < np; pi++)
        for (size_t ci = 0; ci < NCASES; ci++) {
            const struct ccase *c = &CASES[ci];
            enum dtype sd = pairs[pi][0], dd = pairs[pi][1];
            size_t sb = (size_t)(c->R * c->Cs) * dtype_size(sd);
            size_t db = (size_t)(c->R * c->Cd) * dtype_size(dd);
            void *src = malloc(sb), *dst = malloc(db), *exp = malloc(db);
            ASSERT(src && dst && exp);
            fill_values(src, sd, (size_t)(c->R * c->Cs), 11 + ci);
            memset(dst, FILL, db);
            reference(exp, dd, c, src, sd);
            struct tensor s = view_of(src, sd, DEVICE_HOST, c->R, c->Cs, c->s0, c->cols);
            struct tensor d = view_of(dst, dd, DEVICE_HOST, c->R, c->Cd, c->d0, c->cols);
            op_copy(NULL, &d, &s);
            bool same = memcmp(dst, exp, db) == 0;
            CHECK(same, "copy %s -> %s case %zu", dtype_name(sd), dtype_name(dd), ci);
            if (!same || ci == NCASES - 1)
                printf("copy cpu %-4s -> %-4s (%lld,%lld)[%lld:+%lld] -> (%lld,%lld)[%lld:+%lld] %s\n",
                       dtype_name(sd), dtype_name(dd), (long long)c->R, (long long)c->Cs,
                       (long long)c->s0, (long long)c->cols, (long long)c->R, (long long)c->Cd,
                       (long long)c->d0, (long long)c->cols, same ? "exact" : "DIFFER");
            free(src);
            free(dst);
            free(exp);
        }
}

static void test_zero_and_transfers_cpu(void)
{
    uint16_t h[5];
    float f[5] = {1.0f, -2.5f, 65520.0f, 1e-8f, 3.0f}, back[5];
    float z[4] = {1, 2, 3, 4};
    struct tensor tz = tensor_view(z, DTYPE_F32, DEVICE_HOST, SHAPE(2, 2));

    op_zero(NULL, &tz);
    CHECK(z[0] == 0 && z[3] == 0 && !signbit(z[1]));
    struct tensor tf = tensor_view(f, DTYPE_F32, DEVICE_HOST, SHAPE(5));
    struct tensor th = tensor_view(h, DTYPE_F16, DEVICE_HOST, SHAPE(1, 5));   /* numel, not shape */
    struct tensor tb = tensor_view(back, DTYPE_F32, DEVICE_HOST, SHAPE(5, 1));
    op_upload(NULL, &th, &tf);
    for (int i = 0; i < 5; i++)
        CHECK(h[i] == f32_to_f16(f[i]), "upload cast element %d", i);
    op_download(NULL, &tb, &th);
    for (int i = 0; i < 5; i++)
        CHECK(back[i] == f16_to_f32(f32_to_f16(f[i])), "download cast element %d", i);
}

// ----------------------------------------------------------------------------
// GPU: the same cases through the CUDA ops

/* Device buffer of bytes (+ guard) from the arena, holding host bytes h. */
static void *dev_put(struct arena *a, const void *h, size_t bytes)
{
    uint8_t guard[SENTINEL_BYTES];
    char *d = arena_must_alloc(a, bytes + SENTINEL_BYTES);

    sentinel_fill(guard, sizeof(guard));
    CUDA_CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(d + bytes, guard, SENTINEL_BYTES, cudaMemcpyHostToDevice));
    return d;
}

/* Device bytes back (plain cudaMemcpy) and whether the guard after them held. */
static bool dev_get(void *h, const void *d, size_t bytes)
{
    uint8_t guard[SENTINEL_BYTES];

    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(guard, (const char *)d + bytes, SENTINEL_BYTES, cudaMemcpyDeviceToHost));
    return sentinel_ok(guard, SENTINEL_BYTES);
}

static void test_gpu(void)
{
    struct arena a;
    struct op_ctx ctx;
    int n_ok = 0, n = 0;

    if (!ot_gpu_begin(&a, &ctx, (size_t)16 << 20))
        return;
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            for (size_t ci = 0; ci < NCASES; ci++) {
                const enum dtype all[5] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_I32, DTYPE_U8};
                enum dtype sd = all[i], dd = all[j];
                if (sd != dd && (i > 2 || j > 2))
                    continue;                  /* integers: byte copies only */
                const struct ccase *c = &CASES[ci];
                size_t sb = (size_t)(c->R * c->Cs) * dtype_size(sd);
                size_t db = (size_t)(c->R * c->Cd) * dtype_size(dd);
                void *src = malloc(sb), *cpu = malloc(db), *gpu = malloc(db);
                ASSERT(src && cpu && gpu);
                fill_values(src, sd, (size_t)(c->R * c->Cs), 100 + ci);
                memset(cpu, FILL, db);
                size_t mark = arena_mark(&a);
                void *ds = dev_put(&a, src, sb), *dd_ = dev_put(&a, cpu, db);
                struct tensor hs = view_of(src, sd, DEVICE_HOST, c->R, c->Cs, c->s0, c->cols);
                struct tensor hd = view_of(cpu, dd, DEVICE_HOST, c->R, c->Cd, c->d0, c->cols);
                struct tensor gs = view_of(ds, sd, DEVICE_CUDA, c->R, c->Cs, c->s0, c->cols);
                struct tensor gd = view_of(dd_, dd, DEVICE_CUDA, c->R, c->Cd, c->d0, c->cols);
                op_copy(NULL, &hd, &hs);
                op_copy(&ctx, &gd, &gs);
                bool guard = dev_get(gpu, dd_, db);
                bool same = memcmp(cpu, gpu, db) == 0;
                CHECK(same && guard, "cuda copy %s -> %s case %zu (same %d guard %d)",
                      dtype_name(sd), dtype_name(dd), ci, same, guard);
                n_ok += same && guard;
                n++;
                arena_release(&a, mark);
                free(src);
                free(cpu);
                free(gpu);
            }
    printf("copy cuda: %d of %d cases bit-identical to the CPU op, guards intact\n", n_ok, n);

    /* upload (cast on the host), zero, download (cast on the host) */
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            enum dtype hd = FLOATS[i], gd = FLOATS[j];
            size_t N = 1001, hb = N * dtype_size(hd), gb = N * dtype_size(gd);
            void *h = malloc(hb), *cast = malloc(gb), *got = malloc(gb), *back = malloc(hb);
            void *ref = malloc(hb);
            ASSERT(h && cast && got && back && ref);
            fill_values(h, hd, N, 7 + i * 3 + j);
            dtype_convert(cast, gd, h, hd, N);
            size_t mark = arena_mark(&a);
            memset(got, FILL, gb);
            void *d = dev_put(&a, got, gb);
            struct tensor th = tensor_view(h, hd, DEVICE_HOST, SHAPE((int64_t)N));
            struct tensor tg = tensor_view(d, gd, DEVICE_CUDA, SHAPE(7, 143));
            struct tensor tb = tensor_view(back, hd, DEVICE_HOST, SHAPE((int64_t)N));
            op_upload(&ctx, &tg, &th);
            bool g1 = dev_get(got, d, gb);
            CHECK(g1 && memcmp(got, cast, gb) == 0, "upload %s -> %s", dtype_name(hd),
                  dtype_name(gd));
            op_download(&ctx, &tb, &tg);
            dtype_convert(ref, hd, cast, gd, N);
            CHECK(memcmp(back, ref, hb) == 0, "download %s -> %s", dtype_name(gd), dtype_name(hd));
            op_zero(&ctx, &tg);
            bool g2 = dev_get(got, d, gb);
            bool zero = g2;
            for (size_t k = 0; k < gb; k++)
                zero = zero && ((uint8_t *)got)[k] == 0;
            CHECK(zero, "zero %s", dtype_name(gd));
            arena_release(&a, mark);
            free(h);
            free(cast);
            free(got);
            free(back);
            free(ref);
        }
    printf("upload/download: every F32/F16/BF16 cast equals dtype_convert; zero ok\n");
    ot_gpu_end(&a, &ctx);
}

int main(void)
{
    log_init("test_op_copy");
    test_rows_pitched();
    test_copy_cpu();
    test_zero_and_transfers_cpu();
    printf("copy cpu: every cast pair and layout exact, bytes outside the views untouched\n");
    ot_skip_without_gpu("test_op_copy");
    test_gpu();
    return harness_done("test_op_copy");
}
