/*
 * lmsolve.h - MoGe's focal/shift recovery: the least-squares fit that
 * MG:moge/utils/geometry_numpy.py:79-96 (solve_optimal_focal_shift) runs with
 * scipy.optimize.least_squares(method='lm', x0=0, ftol=1e-3), ported so the
 * iterate path is the same (MINPACK lmder/lmpar/qrsolv for one unknown, float64),
 * plus numpy's pairwise summation for the sums inside the residual.
 *
 * Problem: for the shift s, with p_i = xy_i / (z_i + s) and the closed-form
 * focal f(s) = sum(p . uv) / sum(p . p), minimise sum |f(s) p_i - uv_i|^2.
 * Result: shift = float32(s*), focal = f(shift) evaluated in fp32 numpy
 * arithmetic (fp32 arrays, fp32 pairwise sums), as MoGe does.
 */
#ifndef S3D_LMSOLVE_H
#define S3D_LMSOLVE_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How the scipy in use drives MINPACK (scipy is not pinned by MoGe/SAM 3D). */
struct lm_opts {
    double ftol;          /* 1e-3 (MoGe) */
    double xtol;          /* 1e-8 (scipy default) */
    double gtol;          /* 1e-8 (scipy default) */
    int    max_nfev;      /* residual evaluations allowed; <= 0: scipy's default */
    bool   scale_jac;     /* MINPACK mode 1 (diag from Jacobian column norms): scipy >= 1.16's
                           * default x_scale='jac'. false: mode 2 with diag = 1 (x_scale=1.0,
                           * the default before 1.16) */
    bool   lmdif;         /* scipy < 1.16: lmdif's forward difference (h = sqrt(eps)|x|, or
                           * sqrt(eps) at 0; nfev counts Jacobian evaluations; default
                           * max_nfev 200). false: scipy >= 1.16 (lmder with approx_derivative
                           * '2-point': h = sqrt(eps) max(1, |x|), divided by (x + h) - x;
                           * default max_nfev 100) */
};

/* scipy >= 1.16 (the GPU machine's 1.18): ftol 1e-3, scale_jac, !lmdif. */
struct lm_opts lm_opts_default(void);

struct lm_result {
    double shift64;       /* the solver's x (float64) */
    float  shift;         /* float32(x) */
    float  focal;         /* f(shift) in fp32 */
    int    nfev;          /* residual evaluations (scipy's sol.nfev) */
    int    info;          /* MINPACK info code (1..8) */
};

/* Solve for n points: uv (n, 2) and xyz (n, 3) fp32, row-major (MoGe's
 * masked 64x64 samples, in row-major order). n < 2 gives focal 1, shift 0
 * (MG:moge/utils/geometry_torch.py recover_focal_shift). Pure function. */
void lm_focal_shift(const float *uv, const float *xyz, int n, const struct lm_opts *o,
                    struct lm_result *r);

/* numpy's pairwise summation (add.reduce over a contiguous array), for
 * float64 and float32 data; exposed for tests. */
double np_sum_f64(const double *a, long n);
float  np_sum_f32(const float *a, long n);

#ifdef __cplusplus
}
#endif
#endif
