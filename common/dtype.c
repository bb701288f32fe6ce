/*
 * dtype.c - dtype tables and exact conversions. See dtype.h.
 *
 * F16/BF16 rounding is done on the bit pattern (round to nearest, ties to even)
 * so results match torch's .half() / .bfloat16() bit for bit, subnormals included.
 */
#include "dtype.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define DTYPE_HAVE_F16C 1
#endif

static const struct {
    const char *name;
    size_t      size;
} dtype_table[] = {
    [DTYPE_F64]  = {"F64", 8},  [DTYPE_F32] = {"F32", 4}, [DTYPE_F16] = {"F16", 2},
    [DTYPE_BF16] = {"BF16", 2}, [DTYPE_I64] = {"I64", 8}, [DTYPE_I32] = {"I32", 4},
    [DTYPE_I16]  = {"I16", 2},  [DTYPE_I8]  = {"I8", 1},  [DTYPE_U8]  = {"U8", 1},
    [DTYPE_BOOL] = {"BOOL", 1},
};
_Static_assert(sizeof(dtype_table) / sizeof(dtype_table[0]) == DTYPE_COUNT,
               "dtype_table must cover every dtype");

size_t dtype_size(enum dtype dt)
{
    return (unsigned)dt < DTYPE_COUNT ? dtype_table[dt].size : 0;
}

const char *dtype_name(enum dtype dt)
{
    return (unsigned)dt < DTYPE_COUNT ? dtype_table[dt].name : "?";
}

bool dtype_from_name(const char *name, enum dtype *out)
{
    for (int i = 0; i < DTYPE_COUNT; i++) {
        if (!strcmp(name, dtype_table[i].name)) {
            *out = (enum dtype)i;
            return true;
        }
    }
    return false;
}

bool dtype_is_float(enum dtype dt)
{
    return dt == DTYPE_F64 || dt == DTYPE_F32 || dt == DTYPE_F16 || dt == DTYPE_BF16;
}

// ----------------------------------------------------------------------------
// half precision

/* Round a double (exactly representable sign/exponent/mantissa) to IEEE binary16. */
uint16_t f64_to_f16(double d)
{
    uint64_t u;
    uint16_t sign;
    int      exp;
    uint64_t mant;

    memcpy(&u, &d, 8);
    sign = (uint16_t)((u >> 48) & 0x8000);
    exp  = (int)((u >> 52) & 0x7ff);
    mant = u & 0xfffffffffffffull;
    if (exp == 0x7ff)                                   /* Inf or NaN */
        return sign | 0x7c00 | (mant ? (uint16_t)(0x200 | (mant >> 42)) : 0);
    if (exp == 0)                                       /* f64 subnormal: far below f16 range */
        return sign;
    exp -= 1023;                                        /* unbiased */
    mant |= 1ull << 52;                                 /* 53-bit significand */
    if (exp > 15)
        return sign | 0x7c00;
    /* target: significand with 10 fraction bits at exponent max(exp, -14) */
    int shift = 52 - 10;                                /* normal: keep 11 bits */
    if (exp < -14)
        shift += -14 - exp;                             /* subnormal: keep fewer */
    if (shift > 63)
        return sign;
    uint64_t keep = mant >> shift;
    uint64_t rem  = mant & ((1ull << shift) - 1);
    uint64_t half = 1ull << (shift - 1);
    if (rem > half || (rem == half && (keep & 1)))
        keep++;
    /* keep is the significand incl. implicit bit; rebuild exponent */
    int e = exp < -14 ? 0 : exp + 15;
    if (e == 0) {
        /* subnormal; rounding may carry into the first normal (keep == 0x400) */
        return sign | (uint16_t)keep;
    }
    if (keep >= 0x800) {                                /* carry out of the significand */
        keep >>= 1;
        e++;
    }
    if (e >= 31)
        return sign | 0x7c00;
    return sign | (uint16_t)(e << 10) | (uint16_t)(keep & 0x3ff);
}

/* Bit-domain rounding straight from binary32 (no detour through f64): one
 * rounding, ties to even, the same results as f64_to_f16((double)f) for every
 * input (tests/test_dtype.c checks that). Normal results add the rounding bias
 * below the kept bits and let the carry ripple into the exponent; f16
 * subnormal results let the FPU round: |f| + 0.5f has an ulp of 2^-24, exactly
 * the f16 subnormal step, so its low mantissa bits are the rounded f16 bits
 * (needs round-to-nearest and no flush-to-zero, the C defaults). */
uint16_t f32_to_f16(float f)
{
    uint32_t u;
    uint32_t a;
    uint16_t sign;

    memcpy(&u, &f, 4);
    sign = (uint16_t)((u >> 16) & 0x8000);
    a = u & 0x7fffffff;
    if (a >= 0x7f800000)                                /* Inf, or NaN made quiet */
        return sign | 0x7c00 | (a > 0x7f800000 ? (uint16_t)(0x200 | ((a >> 13) & 0x3ff)) : 0);
    if (a >= 0x477ff000)                                /* >= 65520 rounds to Inf */
        return sign | 0x7c00;
    if (a < 0x38800000) {                               /* below 2^-14: f16 subnormal or 0 */
        float    t;
        uint32_t tu;

        memcpy(&t, &a, 4);
        t += 0.5f;
        memcpy(&tu, &t, 4);
        return sign | (uint16_t)(tu - 0x3f000000);      /* may be 0x400: the first normal */
    }
    /* rebias the exponent (127 -> 15) and round at bit 13, ties to even */
    a += ((uint32_t)(15 - 127) << 23) + 0xfff + ((a >> 13) & 1);
    return sign | (uint16_t)(a >> 13);
}

float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp  = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t u;
    float    f;

    if (exp == 0x1f) {
        u = sign | 0x7f800000 | (mant << 13);
    } else if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else {                                        /* subnormal: value = mant * 2^-24 */
            f = (float)mant * 5.9604644775390625e-8f;
            return sign ? -f : f;
        }
    } else {
        u = sign | ((exp + 112) << 23) | (mant << 13);
    }
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_bf16(float f)
{
    uint32_t u;

    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000)                  /* NaN: keep it quiet */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);                      /* round to nearest even */
    return (uint16_t)(u >> 16);
}

uint16_t f64_to_bf16(double d)
{
    /* Round directly from double: bf16 has 8 significand bits. */
    float    f;
    uint32_t u;

    if (isnan(d))
        return 0x7fc0 | (signbit(d) ? 0x8000 : 0);
    f = (float)d;                                       /* may round; fix with sticky bit */
    if (isinf(f) || (double)f == d)
        return f32_to_bf16(f);
    /* double rounding can only go wrong when f lands exactly on a bf16 tie;
     * nudge f toward d by one float ulp so the tie breaks the right way */
    memcpy(&u, &f, 4);
    if ((u & 0xffff) == 0x8000) {
        if (((double)f < d) == (f > 0))
            u += 1;
        else
            u -= 1;
        memcpy(&f, &u, 4);
    }
    return f32_to_bf16(f);
}

float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float    f;

    memcpy(&f, &u, 4);
    return f;
}

// ----------------------------------------------------------------------------
// element access and bulk conversion

double dtype_get(const void *p, enum dtype dt, size_t i)
{
    switch (dt) {
    case DTYPE_F64:  return ((const double *)p)[i];
    case DTYPE_F32:  return ((const float *)p)[i];
    case DTYPE_F16:  return f16_to_f32(((const uint16_t *)p)[i]);
    case DTYPE_BF16: return bf16_to_f32(((const uint16_t *)p)[i]);
    case DTYPE_I64:  return (double)((const int64_t *)p)[i];
    case DTYPE_I32:  return ((const int32_t *)p)[i];
    case DTYPE_I16:  return ((const int16_t *)p)[i];
    case DTYPE_I8:   return ((const int8_t *)p)[i];
    case DTYPE_U8:   return ((const uint8_t *)p)[i];
    case DTYPE_BOOL: return ((const uint8_t *)p)[i] != 0;
    default:         return NAN;
    }
}

static int64_t double_to_i64(double v)
{
    if (isnan(v))
        return 0;
    if (v >= 9.2233720368547758e18)
        return INT64_MAX;
    if (v <= -9.2233720368547758e18)
        return INT64_MIN;
    return (int64_t)v;                                  /* truncates toward zero */
}

void dtype_set(void *p, enum dtype dt, size_t i, double v)
{
    switch (dt) {
    case DTYPE_F64:  ((double *)p)[i] = v; break;
    case DTYPE_F32:  ((float *)p)[i] = (float)v; break;
    case DTYPE_F16:  ((uint16_t *)p)[i] = f64_to_f16(v); break;
    case DTYPE_BF16: ((uint16_t *)p)[i] = f64_to_bf16(v); break;
    case DTYPE_I64:  ((int64_t *)p)[i] = double_to_i64(v); break;
    case DTYPE_I32:  ((int32_t *)p)[i] = (int32_t)double_to_i64(v); break;
    case DTYPE_I16:  ((int16_t *)p)[i] = (int16_t)double_to_i64(v); break;
    case DTYPE_I8:   ((int8_t *)p)[i] = (int8_t)double_to_i64(v); break;
    case DTYPE_U8:   ((uint8_t *)p)[i] = (uint8_t)double_to_i64(v); break;
    case DTYPE_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    default: break;
    }
}

// ----------------------------------------------------------------------------
// bulk F32 -> F16 / BF16 (weight upload converts ~1e9 elements of these)

#ifdef DTYPE_HAVE_F16C
/* 8 lanes per VCVTPS2PH with imm8 = round to nearest even: the same bits as
 * f32_to_f16, NaN payloads included (quieted, top 10 fraction bits kept), and
 * unaffected by MXCSR DAZ/FTZ. Tail elements go through f32_to_f16. */
__attribute__((target("avx,f16c")))
static void f32_to_f16_f16c(uint16_t *dst, const float *src, size_t n)
{
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        __m256  v = _mm256_loadu_ps(src + i);
        __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(dst + i), h);
    }
    for (; i < n; i++)
        dst[i] = f32_to_f16(src[i]);
}
#endif

/* CPUID.1:ECX OSXSAVE (27), AVX (28), F16C (29), and the OS saving YMM state
 * (XCR0 bits 1-2). (clang 14's __builtin_cpu_supports does not know "f16c".) */
static bool cpu_has_f16c(void)
{
    unsigned a, b, c, d, lo, hi;

    if (!__get_cpuid(1, &a, &b, &c, &d) || (c & (7u << 27)) != (7u << 27))
        return false;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    return (lo & 6) == 6;
}

/* dst[i] = f32_to_f16(src[i]); F16C when the CPU has it (S3D_NO_F16C=1 forces
 * the scalar routine, for tests and benchmarks). */
static void f32_to_f16_n(uint16_t *dst, const float *src, size_t n)
{
#ifdef DTYPE_HAVE_F16C
    static int use = -1;               /* benign race: every thread computes the same value */

    if (use < 0) {
        const char *no = getenv("S3D_NO_F16C");
        use = cpu_has_f16c() && !(no && *no && strcmp(no, "0"));
    }
    if (use) {
        f32_to_f16_f16c(dst, src, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        dst[i] = f32_to_f16(src[i]);
}

/* dst[i] = f32_to_bf16(src[i]) without a branch, so the compiler can vectorize. */
static void f32_to_bf16_n(uint16_t *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + i, 4);
        uint32_t r = (u + 0x7fff + ((u >> 16) & 1)) >> 16;
        uint32_t q = (u >> 16) | 0x40;
        dst[i] = (uint16_t)((u & 0x7fffffff) > 0x7f800000 ? q : r);
    }
}

void dtype_convert(void *dst, enum dtype dt, const void *src, enum dtype st, size_t n)
{
    if (dt == st) {
        if (dst != src)
            memmove(dst, src, n * dtype_size(dt));
        return;
    }
    /* fast paths for the conversions weight upload uses */
    if (st == DTYPE_F32 && dt == DTYPE_F16) {
        f32_to_f16_n(dst, src, n);
        return;
    }
    if (st == DTYPE_F32 && dt == DTYPE_BF16) {
        f32_to_bf16_n(dst, src, n);
        return;
    }
    if (st == DTYPE_I64 && dt == DTYPE_I32) {   /* exact for in-range values */
        for (size_t i = 0; i < n; i++)
            ((int32_t *)dst)[i] = (int32_t)((const int64_t *)src)[i];
        return;
    }
    if (st == DTYPE_I64 || dt == DTYPE_I64) {   /* keep 64-bit integers exact */
        for (size_t i = 0; i < n; i++) {
            if (st == DTYPE_I64 && !dtype_is_float(dt)) {
                int64_t v = ((const int64_t *)src)[i];
                switch (dt) {
                case DTYPE_I16:  ((int16_t *)dst)[i] = (int16_t)v; break;
                case DTYPE_I8:   ((int8_t *)dst)[i] = (int8_t)v; break;
                case DTYPE_U8:   ((uint8_t *)dst)[i] = (uint8_t)v; break;
                case DTYPE_BOOL: ((uint8_t *)dst)[i] = v != 0; break;
                default: break;
                }
            } else if (dt == DTYPE_I64 && !dtype_is_float(st)) {
                ((int64_t *)dst)[i] = (int64_t)dtype_get(src, st, i);
            } else {
                dtype_set(dst, dt, i, dtype_get(src, st, i));
            }
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        dtype_set(dst, dt, i, dtype_get(src, st, i));
}

// ----------------------------------------------------------------------------
// threaded bulk conversion

#define DTYPE_MAX_THREADS 64
#define DTYPE_MT_MIN      ((size_t)1 << 18)   /* elements per thread worth a thread */

int dtype_threads(void)
{
    const char *env = getenv("S3D_THREADS");
    long n = env && atoi(env) > 0 ? atol(env) : sysconf(_SC_NPROCESSORS_ONLN);

    return (int)(n < 1 ? 1 : n > DTYPE_MAX_THREADS ? DTYPE_MAX_THREADS : n);
}

struct convert_part {
    void       *dst;
    enum dtype  dt;
    const void *src;
    enum dtype  st;
    size_t      n;
};

static void *convert_part_run(void *p)
{
    struct convert_part *c = p;

    dtype_convert(c->dst, c->dt, c->src, c->st, c->n);
    return NULL;
}

void dtype_convert_mt(void *dst, enum dtype dt, const void *src, enum dtype st, size_t n,
                      int nthreads)
{
    struct convert_part part[DTYPE_MAX_THREADS];
    pthread_t tid[DTYPE_MAX_THREADS];
    bool started[DTYPE_MAX_THREADS] = {false};
    size_t ds = dtype_size(dt), ss = dtype_size(st);
    size_t nt = nthreads > 0 ? (size_t)nthreads : (size_t)dtype_threads();

    if (nt > DTYPE_MAX_THREADS)
        nt = DTYPE_MAX_THREADS;
    if (nt > n / DTYPE_MT_MIN)
        nt = n / DTYPE_MT_MIN;
    if (nt <= 1 || (dt == st && dst == src)) {
        dtype_convert(dst, dt, src, st, n);
        return;
    }
    /* in-place conversions between different sizes are not split (dtype_convert
     * forbids overlap for them anyway); parts are 64-element aligned */
    for (size_t k = 0; k < nt; k++) {
        size_t b = (n * k / nt) & ~(size_t)63, e = k + 1 == nt ? n : (n * (k + 1) / nt) & ~(size_t)63;
        part[k] = (struct convert_part){(uint8_t *)dst + b * ds, dt,
                                        (const uint8_t *)src + b * ss, st, e - b};
    }
    for (size_t k = 1; k < nt; k++)
        started[k] = pthread_create(&tid[k], NULL, convert_part_run, &part[k]) == 0;
    for (size_t k = 0; k < nt; k++)
        if (!started[k])
            convert_part_run(&part[k]);   /* part 0, and any part without a thread */
    for (size_t k = 1; k < nt; k++)
        if (started[k])
            pthread_join(tid[k], NULL);
}

float dtype_round(enum dtype dt, float v)
{
    switch (dt) {
    case DTYPE_F16:  return f16_to_f32(f32_to_f16(v));
    case DTYPE_BF16: return bf16_to_f32(f32_to_bf16(v));
    default:         return v;
    }
}
