/*
 * test_prof.c - S3D_PROFILE per-op timing (kernels/prof.h): host-side rows
 * (aggregation by name, descending report, clearing), the off state (every
 * entry point a no-op, nothing recorded), and with a GPU one profiled section
 * of real ops (counts per op name, kept vs dropped sections, times >= 0).
 */
#include "arena.h"
#include "check.h"
#include "harness.h"
#include "log.h"
#include "ops.h"
#include "prof.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* row of name, or -1 */
static int find_row(const char *name, long *count, double *ms)
{
    for (int i = 0; i < op_prof_rows(); i++) {
        const char *n;

        op_prof_row(i, &n, count, ms);
        if (!strcmp(n, name))
            return i;
    }
    return -1;
}

static void test_rows(void)
{
    char buf[4096] = {0};
    FILE *f = tmpfile();
    long c;
    double ms;

    ASSERT(f);
    op_prof_on = false;
    op_prof_begin(NULL);                 /* off: no-ops, even without a context */
    op_prof_record(NULL, "x");
    op_prof_end(NULL, true);
    CHECK(op_prof_rows() == 0 && op_prof_sections() == 0, "off records nothing");
    op_prof_account("linear", 2.0);
    op_prof_account("attention", 5.0);
    op_prof_account("linear", 1.5);
    CHECK(op_prof_rows() == 2);
    CHECK(find_row("linear", &c, &ms) >= 0 && c == 2 && ms == 3.5, "linear: 2 calls, 3.5 ms");
    op_prof_report(f, "unit");
    CHECK(op_prof_rows() == 0, "report clears the rows");
    rewind(f);
    CHECK(fread(buf, 1, sizeof(buf) - 1, f) > 0);
    fclose(f);
    char *a = strstr(buf, "attention"), *l = strstr(buf, "linear");
    CHECK(strstr(buf, "S3D_PROFILE unit") && a && l && a < l, "largest total first:\n%s", buf);
    CHECK(strstr(buf, "58.8%") && strstr(buf, "41.2%"), "shares:\n%s", buf);
    printf("host rows, report order and shares: OK\n");
}

static void test_device(void)
{
    struct arena dev = {0};
    struct op_ctx ctx;
    long c;
    double ms;

    if (!s3d_cuda_available()) {
        printf("device section: skipped (no usable CUDA device on this machine)\n");
        return;
    }
    setenv("S3D_PROFILE", "1", 1);
    CHECK(arena_init(&dev, ARENA_DEVICE, "act", 8 << 20) == 0);
    CHECK(op_ctx_init(&ctx, &dev, 1 << 20) == 0);
    CHECK(op_prof_on, "S3D_PROFILE=1 turns profiling on");
    struct tensor x = arena_tensor(&dev, DTYPE_F32, SHAPE(64, 128));
    struct tensor w = arena_tensor(&dev, DTYPE_F32, SHAPE(96, 128));
    struct tensor y = arena_tensor(&dev, DTYPE_F32, SHAPE(64, 96));
    CUDA_CHECK(cudaMemset(x.data, 0, tensor_nbytes(&x)));
    CUDA_CHECK(cudaMemset(w.data, 0, tensor_nbytes(&w)));
    for (int keep = 0; keep < 2; keep++) {
        op_prof_begin(&ctx);
        for (int i = 0; i < 3; i++)
            op_add(&ctx, &x, &x, &x);
        op_linear(&ctx, &y, &x, &w, NULL, false);
        op_linear(&ctx, &y, &x, &w, NULL, true);
        op_prof_end(&ctx, keep);
    }
    CHECK(op_prof_sections() == 1, "the dropped section is not counted");
    CHECK(find_row("add", &c, &ms) >= 0 && c == 3 && ms >= 0, "add: %ld", c);
    CHECK(find_row("linear", &c, &ms) >= 0 && c == 2 && ms > 0, "linear: %ld, %g ms", c, ms);
    CHECK(find_row("(tail)", &c, &ms) >= 0 && c == 1);
    CHECK(op_prof_rows() == 3);
    op_prof_report(stdout, "device");
    op_ctx_free(&ctx);
    arena_free(&dev);
    unsetenv("S3D_PROFILE");
    op_prof_init();
    CHECK(!op_prof_on);
}

int main(void)
{
    log_init("test_prof");
    test_rows();
    test_device();
    return harness_done("test_prof");
}
