/*
 * bench_convert.c - how fast weight loading converts F32 -> F16/BF16 on this host.
 * Built as build/tests/tools/bench_convert (make all); run by hand:
 *
 *   build/tests/tools/bench_convert [MELEMS]        (default 64 M elements, 256 MB F32)
 *
 * Rows (ms for MELEMS elements, and GB/s of F32 read):
 *   f64 route      f64_to_f16((double)x) per element: what f32_to_f16 did before
 *   f32 scalar     f32_to_f16 (bit domain, branch-light), one thread
 *   bulk 1 thread  dtype_convert F32 -> F16 (F16C when the CPU has it)
 *   bulk N threads dtype_convert_mt, N = dtype_threads() (S3D_THREADS or the cores)
 *   bf16 ...       the same for F32 -> BF16
 *   weights_upload a safetensors file of the same tensor (page cache warm) to a
 *                  host F16 arena through 64 MiB staging, as sam3d-cond loads;
 *                  with S3D_THREADS=1 and with all threads
 * Every converted buffer is compared with the f64 route's bytes (exact RNE).
 */
#include "arena.h"
#include "dtype.h"
#include "log.h"
#include "safetensors.h"
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void row(const char *name, double ms, size_t n, bool same)
{
    printf("%-28s %9.1f ms  %6.2f GB/s F32 read  %s\n", name, ms, (double)n * 4 / ms / 1e6,
           same ? "exact" : "DIFFERS");
}

/* dtype_convert and dtype_convert_mt (nt threads) rows for F32 -> dt, checked against ref. */
static void bulk_rows(enum dtype dt, const float *src, const uint16_t *ref, uint16_t *out,
                      size_t n, int nt)
{
    char label[64];

    for (int k = 0; k < 2; k++) {
        double t0;

        memset(out, 0, n * 2);
        t0 = now_ms();
        if (k)
            dtype_convert_mt(out, dt, src, DTYPE_F32, n, nt);
        else
            dtype_convert(out, dt, src, DTYPE_F32, n);
        snprintf(label, sizeof(label), "%s: bulk %d thread%s", dt == DTYPE_F16 ? "f16" : "bf16",
                 k ? nt : 1, k && nt > 1 ? "s" : "");
        row(label, now_ms() - t0, n, !memcmp(out, ref, n * 2));
    }
}

/* weights_upload of path's tensor "w" (n F32) to a host arena as F16; ms. */
static double upload_ms(const char *path, int64_t n, const uint16_t *want, bool *same)
{
    struct weights w;
    struct tensor t;
    struct arena wa = {0}, st = {0};
    double t0, ms;

    if (weights_open(&w, path, "", DTYPE_F16) || weights_bind(&w, &t, SHAPE(n), "w") ||
        arena_init(&wa, ARENA_HOST, "weights", weights_arena_bytes(&w)) ||
        arena_init(&st, ARENA_HOST, "staging", (size_t)64 << 20))
        s3d_fatal(__FILE__, __LINE__, "upload setup", "", "");
    memset(wa.base, 0, wa.size);                 /* first touch outside the timing */
    t0 = now_ms();
    if (weights_upload(&w, &wa, &st))
        s3d_fatal(__FILE__, __LINE__, "weights_upload", "", "");
    ms = now_ms() - t0;
    *same = !memcmp(t.data, want, (size_t)n * 2);
    weights_close(&w);
    arena_free(&wa);
    arena_free(&st);
    return ms;
}

int main(int argc, char **argv)
{
    size_t n = (size_t)(argc > 1 ? atof(argv[1]) : 64) * 1000000;
    float *src = malloc(n * 4);
    uint16_t *ref = malloc(n * 2), *out = malloc(n * 2);
    char path[64], label[64];
    int nt = dtype_threads();
    uint64_t s = 88172645463325252ull;
    double t0;
    bool same;

    log_init("bench_convert");
    if (!src || !ref || !out || !n) {
        fprintf(stderr, "bench_convert: out of memory for %zu elements\n", n);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {             /* weight-like values, some tiny */
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        src[i] = (float)((int64_t)(s >> 11) - (1ll << 52)) * 0x1p-52f * ((i & 1023) ? 0.05f : 1e-6f);
    }
    memset(out, 0, n * 2);
    printf("%zu elements (%.0f MB F32), %d threads\n", n, n * 4 / 1e6, nt);

    t0 = now_ms();
    for (size_t i = 0; i < n; i++)
        ref[i] = f64_to_f16((double)src[i]);
    row("f16: f64 route (before)", now_ms() - t0, n, true);
    t0 = now_ms();
    for (size_t i = 0; i < n; i++)
        out[i] = f32_to_f16(src[i]);
    row("f16: f32 scalar", now_ms() - t0, n, !memcmp(out, ref, n * 2));
    bulk_rows(DTYPE_F16, src, ref, out, n, nt);

    for (size_t i = 0; i < n; i++)
        ref[i] = f64_to_bf16((double)src[i]);
    t0 = now_ms();
    for (size_t i = 0; i < n; i++)
        out[i] = f32_to_bf16(src[i]);
    row("bf16: scalar (before)", now_ms() - t0, n, !memcmp(out, ref, n * 2));
    bulk_rows(DTYPE_BF16, src, ref, out, n, nt);

    /* end to end through a checkpoint file */
    for (size_t i = 0; i < n; i++)
        ref[i] = f64_to_f16((double)src[i]);
    snprintf(path, sizeof(path), "/tmp/bench_convert.%d.safetensors", (int)getpid());
    struct st_write_item it = {"w", tensor_view(src, DTYPE_F32, DEVICE_HOST, SHAPE((int64_t)n))};
    if (safetensors_write(path, &it, 1, NULL, 0))
        return 1;
    double ms1, msn;
    setenv("S3D_THREADS", "1", 1);
    ms1 = upload_ms(path, (int64_t)n, ref, &same);
    row("weights_upload F16, 1 thread", ms1, n, same);
    snprintf(label, sizeof(label), "%d", nt);
    setenv("S3D_THREADS", label, 1);
    msn = upload_ms(path, (int64_t)n, ref, &same);
    snprintf(label, sizeof(label), "weights_upload F16, %d thr", nt);
    row(label, msn, n, same);
    unlink(path);
    free(src);
    free(ref);
    free(out);
    return 0;
}
