/*
 * test_dtype.c - dtype tables and conversions: F16/BF16 round to nearest even,
 * NaN/Inf kept, subnormals exact, F64 -> F16 rounded once; tensor views; arenas.
 */
#include "arena.h"
#include "dtype.h"
#include "harness.h"
#include "log.h"
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reference half rounding by search: the f16 whose value is nearest (ties even). */
static uint16_t ref_f16(double d)
{
    uint16_t best = 0;
    double   bestd = INFINITY;

    if (isnan(d))
        return 0x7e00;
    for (uint32_t h = 0; h < 0x7c00; h++) {
        double v = f16_to_f32((uint16_t)h);
        double e = fabs(fabs(d) - v);
        if (e < bestd || (e == bestd && !(h & 1))) {
            bestd = e;
            best = (uint16_t)h;
        }
    }
    /* beyond max finite + half ulp -> inf */
    if (fabs(d) >= 65520.0)
        best = 0x7c00;
    return (uint16_t)(best | (signbit(d) ? 0x8000 : 0));
}

static void test_names(void)
{
    enum dtype dt;

    for (int i = 0; i < DTYPE_COUNT; i++) {
        CHECK(dtype_from_name(dtype_name((enum dtype)i), &dt) && dt == (enum dtype)i,
              "name round trip %d", i);
    }
    CHECK(!dtype_from_name("F8", &dt));
    CHECK(dtype_size(DTYPE_BF16) == 2 && dtype_size(DTYPE_I64) == 8 && dtype_size(DTYPE_BOOL) == 1);
}

static void test_f16_exhaustive(void)
{
    /* every f16 survives f16 -> f32 -> f16 */
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = f16_to_f32((uint16_t)h);
        uint16_t back = f32_to_f16(f);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            CHECK((back & 0x7c00) == 0x7c00 && (back & 0x3ff), "NaN %04x kept", h);
            continue;
        }
        CHECK(back == h, "f16 round trip %04x -> %g -> %04x", h, f, back);
    }
}

static void test_f16_rounding(void)
{
    struct rng r;
    static const double cases[] = {
        0.0, -0.0, 1.0, 65504.0, 65519.99, 65520.0, 1e9, -1e9, 5.960464477539063e-08,
        2.98023223876953125e-08, 2.98023223876953126e-08, 8.940696716308594e-08,
        6.097555160522461e-05, 6.103515625e-05, 1.0009765625, 1.00048828125, 1.00146484375,
        0.333333333333, -2.5e-6, 1e-12, INFINITY, -INFINITY,
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint16_t got = f64_to_f16(cases[i]);
        uint16_t want = isinf(cases[i]) ? (uint16_t)(0x7c00 | (cases[i] < 0 ? 0x8000 : 0))
                                        : ref_f16(cases[i]);
        CHECK(got == want, "f64_to_f16(%.17g) = %04x, want %04x", cases[i], got, want);
    }
    /* double rounding: 1 + 2^-11 + 2^-40 must round up in one step */
    CHECK(f64_to_f16(1.0 + ldexp(1, -11) + ldexp(1, -40)) == 0x3c01);
    rng_seed(&r, 1);
    for (int i = 0; i < 3000; i++) {
        double d = (rng_uniform(&r) - 0.5) * pow(2, (int)(rng_u64(&r) % 40) - 26);
        CHECK(f64_to_f16(d) == ref_f16(d), "random %.17g", d);
    }
    CHECK(isnan(f16_to_f32(f32_to_f16(NAN))));
}

static void test_bf16(void)
{
    CHECK(f32_to_bf16(1.0f) == 0x3f80);
    CHECK(f32_to_bf16(1.00390625f) == 0x3f80);          /* tie -> even */
    CHECK(f32_to_bf16(1.01171875f) == 0x3f82);          /* tie -> even (up) */
    CHECK(f32_to_bf16(INFINITY) == 0x7f80 && f32_to_bf16(-INFINITY) == 0xff80);
    CHECK(isnan(bf16_to_f32(f32_to_bf16(NAN))));
    CHECK(f32_to_bf16(3.4e38f) == 0x7f80);              /* rounds past max to inf */
    /* f64 straight to bf16: 1 + 2^-8 + 2^-30 is above the tie, must go up */
    CHECK(f64_to_bf16(1.0 + ldexp(1, -8) + ldexp(1, -30)) == 0x3f81);
    CHECK(f64_to_bf16(-(1.0 + ldexp(1, -8) + ldexp(1, -30))) == 0xbf81);
    CHECK(f64_to_bf16(1.0 + ldexp(1, -8)) == 0x3f80);
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f))
            continue;
        CHECK(f32_to_bf16(bf16_to_f32((uint16_t)h)) == h, "bf16 round trip %04x", h);
    }
}

/* f32_to_f16 (bit domain) and the bulk dtype_convert F32 -> F16 (F16C where the
 * CPU has it) against f64_to_f16, an independent routine (checked against the
 * search reference above): both must agree with it bit for bit. Inputs: every
 * sign x exponent with mantissas around each rounding position (tie - 1, tie,
 * tie + 1 for every shift a normal or subnormal f16 result can use), NaN
 * payloads (quiet and signalling), and a stride-251 sweep of all 2^32 patterns. */
static void test_f32_to_f16_fast(void)
{
    size_t cap = ((size_t)1 << 32) / 251 + 600000, n = 0;
    uint32_t *bits = malloc(cap * sizeof(*bits));
    uint16_t *bulk = malloc((cap + 1) * sizeof(*bulk));
    const uint32_t hi[4] = {0, 0x7fffff, 0x2aaaaa, 0x555555};
    const uint32_t nan[] = {0x7f800001, 0x7fa00000, 0x7fc00000, 0x7fffffff, 0x7f802000,
                            0x7f801fff, 0xffc00001, 0xff800001, 0x7f800000, 0xff800000};
    int bad = 0;

    ASSERT(bits && bulk);
    for (uint32_t se = 0; se < 512; se++)
        for (int sh = 1; sh <= 24; sh++)
            for (int v = 0; v < 4; v++) {
                uint32_t half = 1u << (sh - 1);
                uint32_t top = hi[v] & ~((1u << sh) - 1) & 0x7fffff;
                for (int d = -1; d <= 1; d++) {
                    uint32_t m = (top | half) + (uint32_t)d;
                    bits[n++] = (se << 23) | (m & 0x7fffff);
                }
                bits[n++] = (se << 23) | top;
                bits[n++] = (se << 23) | (top | ((1u << sh) - 1));
            }
    for (size_t i = 0; i < sizeof(nan) / sizeof(nan[0]); i++)
        bits[n++] = nan[i];
    for (uint64_t u = 0; u <= 0xffffffffull && n < cap; u += 251)
        bits[n++] = (uint32_t)u;
    ASSERT(n <= cap);
    /* bulk through an odd offset: unaligned loads/stores and a scalar tail */
    dtype_convert(bulk + 1, DTYPE_F16, bits, DTYPE_F32, n);
    for (size_t i = 0; i < n; i++) {
        float f;
        memcpy(&f, &bits[i], 4);
        uint16_t want = f64_to_f16((double)f), got = f32_to_f16(f);
        if ((got != want || bulk[i + 1] != want) && bad++ < 10)
            CHECK(0, "f32 %08x: f32_to_f16 %04x, bulk %04x, f64_to_f16 %04x", bits[i], got,
                  bulk[i + 1], want);
    }
    CHECK(bad == 0, "%d of %zu f32 -> f16 conversions differ", bad, n);
    free(bits);
    free(bulk);
}

/* dtype_convert_mt gives dtype_convert's bytes for any thread count. */
static void test_convert_mt(void)
{
    size_t n = ((size_t)1 << 21) + 37;
    float *src = malloc(n * sizeof(*src));
    uint16_t *a = malloc(n * 4), *b = malloc(n * 4 + 1);
    const enum dtype to[3] = {DTYPE_F16, DTYPE_BF16, DTYPE_F32};
    struct rng r;

    ASSERT(src && a && b);
    rng_seed(&r, 7);
    fill_normal(&r, src, n, 3.0f);
    for (int t = 0; t < 3; t++) {
        dtype_convert(a, to[t], src, DTYPE_F32, n);
        for (int nt = 0; nt <= 7; nt += 3) {
            memset(b, 0xa5, n * 4 + 1);
            dtype_convert_mt(b, to[t], src, DTYPE_F32, n, nt);
            CHECK(!memcmp(a, b, n * dtype_size(to[t])), "convert_mt to %s, %d threads",
                  dtype_name(to[t]), nt);
            CHECK(((uint8_t *)b)[n * dtype_size(to[t])] == 0xa5, "convert_mt wrote past the end");
        }
    }
    CHECK(dtype_threads() >= 1);
    free(src);
    free(a);
    free(b);
}

static void test_convert(void)
{
    double   src[6] = {1.5, -2.75, 1e10, -0.0, 255.9, -1.0};
    int64_t  i64[3] = {INT64_MAX, -5, 7};
    int32_t  i32[6];
    uint8_t  b[6];
    int64_t  back[3];
    float    f[6];

    dtype_convert(i32, DTYPE_I32, src, DTYPE_F64, 2);
    CHECK(i32[0] == 1 && i32[1] == -2, "truncation toward zero");
    dtype_convert(b, DTYPE_BOOL, src, DTYPE_F64, 6);
    CHECK(b[0] == 1 && b[3] == 0 && b[5] == 1);
    dtype_convert(back, DTYPE_I64, i64, DTYPE_I64, 3);
    CHECK(back[0] == INT64_MAX);
    dtype_convert(f, DTYPE_F32, src, DTYPE_F64, 6);
    CHECK(f[2] == 1e10f && signbit(f[3]));
    dtype_convert(i32, DTYPE_I32, i64 + 1, DTYPE_I64, 2);
    CHECK(i32[0] == -5 && i32[1] == 7);
}

static void test_tensor(void)
{
    float         buf[24];
    float         out[24];
    struct tensor t = tensor_view(buf, DTYPE_F32, DEVICE_HOST, SHAPE(2, 3, 4));
    struct tensor s;
    char          str[64];

    for (int i = 0; i < 24; i++)
        buf[i] = (float)i;
    CHECK(tensor_numel(&t) == 24 && tensor_nbytes(&t) == 96 && tensor_is_contiguous(&t));
    CHECK(t.stride[0] == 12 && t.stride[1] == 4 && t.stride[2] == 1);
    s = tensor_slice(&t, 2, 1, 2);                       /* [:, :, 1:3] */
    CHECK(!tensor_is_contiguous(&s));
    tensor_copy_contiguous(out, &s);
    CHECK(out[0] == 1 && out[1] == 2 && out[2] == 5 && out[11] == 22, "slice copy");
    /* transposed view: swap dims 1 and 2 */
    s = t;
    s.shape[1] = 4; s.shape[2] = 3; s.stride[1] = 1; s.stride[2] = 4;
    tensor_copy_contiguous(out, &s);
    CHECK(out[0] == 0 && out[1] == 4 && out[2] == 8 && out[3] == 1, "transpose copy");
    CHECK(!strcmp(tensor_shape_str(t.shape, t.ndim, str, sizeof(str)), "[2,3,4]"));
    CHECK(!strcmp(tensor_shape_str(t.shape, 0, str, sizeof(str)), "[]"));
    s = tensor_reshape(&t, SHAPE(6, 4));
    CHECK(s.ndim == 2 && s.stride[0] == 4);
}

static void test_arena(void)
{
    struct arena a;
    void *p, *q;
    size_t m;

    CHECK(arena_init(&a, ARENA_HOST, "test", 1000) == 0);
    CHECK(a.size == 1024);
    p = arena_alloc(&a, 10);
    q = arena_alloc(&a, 10);
    CHECK(p && q && (char *)q - (char *)p == ARENA_ALIGN && ((uintptr_t)p % ARENA_ALIGN) == 0);
    m = arena_mark(&a);
    CHECK(arena_alloc(&a, 512) != NULL);
    CHECK(arena_alloc(&a, 1) == NULL, "full arena returns NULL");
    CHECK(a.high_water == 1024);
    arena_release(&a, m);
    CHECK(a.used == m);
    arena_reset(&a);
    CHECK(a.used == 0 && a.high_water == 1024);
    arena_free(&a);
    arena_free(&a);                                      /* second free is a no-op */
    CHECK(arena_init(&a, ARENA_PINNED, "pinned", 4096) == 0);   /* falls back without a GPU */
    CHECK(arena_alloc(&a, 4096) != NULL);
    arena_free(&a);
    if (!s3d_cuda_available())
        CHECK(arena_init(&a, ARENA_DEVICE, "dev", 1 << 20) == -9, "device arena without GPU");
}

/* A planning arena counts exactly what a real one hands out, and holds nothing. */
static void test_arena_plan(void)
{
    struct arena plan, real;
    size_t resident = arena_device_resident(), peak = arena_device_peak();

    arena_plan_init(&plan, ARENA_DEVICE, "plan");
    CHECK(plan.plan && !plan.base);
    CHECK(arena_alloc(&plan, 10) == NULL && plan.used == ARENA_ALIGN);
    size_t m = arena_mark(&plan);
    struct tensor t = arena_tensor(&plan, DTYPE_F16, SHAPE(1000, 3));
    CHECK(t.data == NULL && t.device == DEVICE_CUDA && t.dtype == DTYPE_F16 && t.shape[1] == 3);
    CHECK(arena_must_alloc(&plan, (size_t)1 << 40) == NULL, "no limit, no abort");
    arena_release(&plan, m);
    CHECK(arena_alloc(&plan, 1) == NULL);
    CHECK(plan.used == 2 * ARENA_ALIGN);
    CHECK(plan.high_water == ARENA_ALIGN + arena_round(6000) + arena_round((size_t)1 << 40));
    CHECK(arena_device_resident() == resident && arena_device_peak() == peak,
          "plans are not device memory");
    arena_free(&plan);
    CHECK(!plan.plan && plan.size == 0);

    /* the same allocation list on a real host arena of the planned size fits exactly */
    arena_plan_init(&plan, ARENA_HOST, "plan");
    for (int pass = 0; pass < 2; pass++) {
        struct arena *a = pass ? &real : &plan;
        if (pass)
            CHECK(arena_init(&real, ARENA_HOST, "real", plan.high_water) == 0);
        arena_tensor(a, DTYPE_F32, SHAPE(7, 5));
        size_t mk = arena_mark(a);
        arena_tensor(a, DTYPE_U8, SHAPE(1000));
        arena_release(a, mk);
        arena_tensor(a, DTYPE_BF16, SHAPE(3));
        CHECK(!pass || (real.used == plan.used && real.high_water == plan.high_water &&
                        real.high_water == real.size));
    }
    arena_free(&real);
}

int main(void)
{
    test_names();
    test_f16_exhaustive();
    test_f16_rounding();
    test_bf16();
    test_f32_to_f16_fast();
    test_convert_mt();
    test_convert();
    test_tensor();
    test_arena();
    test_arena_plan();
    return harness_done("test_dtype");
}
