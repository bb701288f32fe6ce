/*
 * harness.h - what every test program shares: checks, seeded fills, comparisons
 * with NaN/Inf counts and NMSE, sentinels after outputs, and the exit protocol
 * of tests/run_tests.sh (0 pass, 77 skip, 1 fail).
 */
#ifndef S3D_HARNESS_H
#define S3D_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

extern int harness_failures;

/* Record a failure (with file:line and message) and continue. */
#define CHECK(cond, ...) do {                                               \
        if (!(cond)) {                                                      \
            harness_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);        \
        }                                                                   \
    } while (0)

void harness_fail(const char *file, int line, const char *expr, const char *fmt, ...);

/* Print "SKIP: reason" and exit 77. */
_Noreturn void harness_skip(const char *fmt, ...);
/* Exit code for main: 1 if any CHECK failed, else 0; prints a closing line. */
int  harness_done(const char *name);
/* Skip (exit 77) unless a CUDA device is usable. */
void harness_require_gpu(void);
/* The one "GPU required" check for a test's GPU section: true when a CUDA device
 * is usable; else prints "<what> skipped: no usable CUDA device (<reason>)",
 * records a failure when S3D_REQUIRE_GPU=1 (make test-gpu), and returns false. */
bool harness_gpu(const char *what);
/* S3D_REQUIRE_GPU=1: a missing GPU is a failure, not a skip. */
bool harness_gpu_required(void);

/* splitmix64-seeded xorshift; deterministic across machines. */
struct rng { uint64_t s; };
void     rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_u64(struct rng *r);
float    rng_uniform(struct rng *r);               /* [0, 1) */
float    rng_normal(struct rng *r);                /* N(0, 1), Box-Muller */
void     fill_uniform(struct rng *r, float *x, size_t n, float lo, float hi);
void     fill_normal(struct rng *r, float *x, size_t n, float scale);
void     fill_small_int(struct rng *r, float *x, size_t n, int lo, int hi);   /* integers in [lo, hi] */

/* Compare out against ref: max |out-ref| and where, NMSE = sum (o-r)^2 / sum r^2,
 * relative L2 = sqrt(NMSE), and NaN/Inf counts in out. Pass when every element
 * satisfies |o-r| <= atol + rtol*|r| (rtol/atol < 0 disables that test) and,
 * when max_nmse >= 0, nmse <= max_nmse. NaN in out passes only where ref has NaN. */
struct cmp {
    double max_abs;
    size_t max_idx;
    double nmse;
    double rel_l2;
    size_t n_nan;
    size_t n_inf;
    size_t n_bad;   /* elements over atol + rtol*|r| */
    bool   ok;
};
struct cmp compare_f32(const float *out, const float *ref, size_t n,
                       double atol, double rtol, double max_nmse);
/* Print "label max_abs 3.1e-07 @12 nmse 2.0e-14 OK" and CHECK the result. */
bool report_cmp(const char *label, struct cmp c);

/* Sentinels: fill n guard bytes after a buffer, check they survived. */
#define SENTINEL_BYTES 256
void sentinel_fill(void *after, size_t n);
bool sentinel_ok(const void *after, size_t n);

/* Read a whole file into a malloc'ed buffer; NULL on failure. */
void *read_file(const char *path, size_t *len);
/* Write bytes to a file; 0 or -1. */
int   write_file(const char *path, const void *data, size_t len);

#endif
