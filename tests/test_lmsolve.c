/*
 * test_lmsolve.c - lm_focal_shift against scipy.optimize.least_squares
 * (method='lm', ftol=1e-3) run on MoGe's residual by tools/ref/dump_lmsolve.py
 * (tests/fixtures/lmsolve/cases.bin): same shift (float64 and float32), same
 * fp32 focal, same evaluation count, for both MINPACK scalings; plus numpy's
 * pairwise sum and the n < 2 rule.
 */
#include "harness.h"
#include "depth_net/lmsolve.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_pairwise(void)
{
    /* 0.1 summed 1000 times: pairwise and sequential sums differ; the
     * pairwise value below is numpy's np.full(1000, 0.1).sum() */
    double *a = malloc(sizeof(double) * 1000);
    for (int i = 0; i < 1000; i++)
        a[i] = 0.1;
    double s = np_sum_f64(a, 1000);
    CHECK(s == 100.00000000000001 || s == 100.0, "pairwise sum %.17g", s);
    double seq = 0;
    for (int i = 0; i < 1000; i++)
        seq += a[i];
    CHECK(seq != s, "sequential sum equals pairwise (%.17g): test has no power", seq);
    free(a);
    float f[5] = {1, 2, 3, 4, 5};
    CHECK(np_sum_f32(f, 5) == 15.0f);
}

int main(void)
{
    size_t len;
    char *buf = read_file("tests/fixtures/lmsolve/cases.bin", &len);
    int ncase, exact64 = 0, exact32 = 0, nfev_same = 0;

    test_pairwise();
    {
        struct lm_result r;
        float uv[2] = {0.1f, 0.2f}, xyz[3] = {1, 2, 3};
        struct lm_opts o = lm_opts_default();
        lm_focal_shift(uv, xyz, 1, &o, &r);
        CHECK(r.focal == 1.0f && r.shift == 0.0f, "n < 2 must give focal 1, shift 0");
    }
    CHECK(buf != NULL, "missing tests/fixtures/lmsolve/cases.bin (tools/ref/dump_lmsolve.py)");
    if (!buf)
        return harness_done("test_lmsolve");
    CHECK(len > 12 && memcmp(buf, "S3DLMSV1", 8) == 0);
    memcpy(&ncase, buf + 8, 4);
    size_t off = 12;
    for (int k = 0; k < ncase; k++) {
        int32_t n, jac;
        memcpy(&n, buf + off, 4);
        memcpy(&jac, buf + off + 4, 4);
        off += 8;
        float *uv = malloc(sizeof(float) * 2 * (size_t)n), *xyz = malloc(sizeof(float) * 3 * (size_t)n);
        memcpy(uv, buf + off, sizeof(float) * 2 * (size_t)n);
        off += sizeof(float) * 2 * (size_t)n;
        memcpy(xyz, buf + off, sizeof(float) * 3 * (size_t)n);
        off += sizeof(float) * 3 * (size_t)n;
        double s64;
        float s32, foc;
        int32_t nfev;
        memcpy(&s64, buf + off, 8);
        memcpy(&s32, buf + off + 8, 4);
        memcpy(&foc, buf + off + 12, 4);
        memcpy(&nfev, buf + off + 16, 4);
        off += 20;
        CHECK(off <= len);

        struct lm_opts o = lm_opts_default();
        o.scale_jac = jac != 0;
        struct lm_result r;
        lm_focal_shift(uv, xyz, n, &o, &r);
        exact64 += r.shift64 == s64;
        exact32 += r.shift == s32 && r.focal == foc;
        nfev_same += r.nfev == nfev;
        double rel_s = fabs(r.shift64 - s64) / fmax(fabs(s64), 1e-6);
        double rel_f = fabs((double)r.focal - foc) / fmax(fabs((double)foc), 1e-6);
        printf("case %2d n %4d %s: shift %.17g (scipy %.17g) focal %.9g (%.9g) nfev %d (%d) info %d\n",
               k, n, jac ? "x_scale=jac" : "x_scale=1  ", r.shift64, s64, r.focal, foc, r.nfev,
               nfev, r.info);
        /* the bar: focal and shift within 1e-3 relative */
        CHECK(rel_s <= 1e-9 || fabs(r.shift64 - s64) <= 1e-12, "case %d shift rel %.3g", k, rel_s);
        CHECK(rel_f <= 1e-6, "case %d focal rel %.3g", k, rel_f);
        free(uv);
        free(xyz);
    }
    printf("%d cases: shift float64 bit-equal %d, (shift, focal) float32 bit-equal %d, "
           "nfev equal %d\n", ncase, exact64, exact32, nfev_same);
    CHECK(nfev_same == ncase, "evaluation counts differ: the iterate path is not scipy's");
    CHECK(exact64 == ncase && exact32 == ncase, "not bit-equal to scipy");
    free(buf);
    return harness_done("test_lmsolve");
}
