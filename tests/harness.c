/*
 * harness.c - shared test support. See harness.h.
 */
#include "harness.h"
#include "arena.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int harness_failures;

void harness_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;

    harness_failures++;
    fprintf(stdout, "FAIL %s:%d: %s", file, line, expr);
    if (fmt && *fmt) {
        fputs(": ", stdout);
        va_start(ap, fmt);
        vfprintf(stdout, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stdout);
    fflush(stdout);
}

void harness_skip(const char *fmt, ...)
{
    va_list ap;

    fputs("SKIP: ", stdout);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    exit(77);
}

int harness_done(const char *name)
{
    printf("%s: %s (%d failure%s)\n", name, harness_failures ? "FAILED" : "ok",
           harness_failures, harness_failures == 1 ? "" : "s");
    return harness_failures ? 1 : 0;
}

bool harness_gpu_required(void)
{
    const char *req = getenv("S3D_REQUIRE_GPU");

    return req && strcmp(req, "1") == 0;
}

bool harness_gpu(const char *what)
{
    if (s3d_cuda_available())
        return true;
    printf("%s skipped: no usable CUDA device (%s)\n", what, s3d_cuda_why_not());
    CHECK(!harness_gpu_required(), "S3D_REQUIRE_GPU=1 but no CUDA device for %s", what);
    return false;
}

void harness_require_gpu(void)
{
    if (!s3d_cuda_available())
        harness_skip("no CUDA device on this machine (GPU op tests run with `make test-gpu` on the GPU machine)");
}

// ----------------------------------------------------------------------------
// random numbers

void rng_seed(struct rng *r, uint64_t seed)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    r->s = (z ^ (z >> 31)) | 1;
}

uint64_t rng_u64(struct rng *r)
{
    uint64_t x = r->s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    r->s = x;
    return x * 0x2545f4914f6cdd1dull;
}

float rng_uniform(struct rng *r) { return (float)(rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float rng_normal(struct rng *r)
{
    double u1 = ((rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);

    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void fill_uniform(struct rng *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * rng_uniform(r);
}

void fill_normal(struct rng *r, float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * rng_normal(r);
}

void fill_small_int(struct rng *r, float *x, size_t n, int lo, int hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(lo + (int)(rng_u64(r) % (uint64_t)(hi - lo + 1)));
}

// ----------------------------------------------------------------------------
// comparison

struct cmp compare_f32(const float *out, const float *ref, size_t n,
                       double atol, double rtol, double max_nmse)
{
    struct cmp c;
    double num = 0, den = 0;

    memset(&c, 0, sizeof(c));
    for (size_t i = 0; i < n; i++) {
        double o = out[i], r = ref[i];
        if (isnan(o) || isnan(r)) {
            if (isnan(o))
                c.n_nan++;
            if (isnan(o) != isnan(r))
                c.n_bad++;
            continue;
        }
        if (isinf(o)) {
            c.n_inf++;
            if (o != r)
                c.n_bad++;
            continue;
        }
        double d = fabs(o - r);
        if (d > c.max_abs) {
            c.max_abs = d;
            c.max_idx = i;
        }
        if (rtol >= 0 && atol >= 0 && d > atol + rtol * fabs(r))
            c.n_bad++;
        num += d * d;
        den += r * r;
    }
    c.nmse   = den > 0 ? num / den : num;
    c.rel_l2 = sqrt(c.nmse);
    c.ok     = c.n_bad == 0 && (max_nmse < 0 || c.nmse <= max_nmse);
    return c;
}

bool report_cmp(const char *label, struct cmp c)
{
    printf("%-44s max_abs %.1e @%zu  nmse %.1e  rel_l2 %.1e%s%s  %s\n", label, c.max_abs,
           c.max_idx, c.nmse, c.rel_l2, c.n_nan ? "  NaN!" : "", c.n_inf ? "  Inf!" : "",
           c.ok ? "OK" : "FAIL");
    fflush(stdout);
    if (!c.ok)
        harness_fail(__FILE__, __LINE__, label, "%zu elements out of tolerance", c.n_bad);
    return c.ok;
}

// ----------------------------------------------------------------------------
// sentinels and files

void sentinel_fill(void *after, size_t n)
{
    unsigned char *p = after;

    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(0xa5 ^ i);
}

bool sentinel_ok(const void *after, size_t n)
{
    const unsigned char *p = after;

    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(0xa5 ^ i))
            return false;
    return true;
}

void *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long  n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto out_close;
    buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
        goto out_close;
    }
    if (buf) {
        buf[n] = 0;
        *len = (size_t)n;
    }
out_close:
    fclose(f);
    return buf;
}

int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int   rc = 0;

    if (!f)
        return -1;
    if (fwrite(data, 1, len, f) != len)
        rc = -1;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}
