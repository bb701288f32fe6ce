/*
 * lmsolve.c - MINPACK Levenberg-Marquardt for one unknown, as scipy's
 * least_squares(method='lm') drives it, on MoGe's focal/shift residual.
 * See lmsolve.h.
 *
 * Port of MINPACK (Moré, Garbow, Hillstrom 1980) lmder + lmpar + qrsolv +
 * qrfac + enorm, specialised to n = 1 (one column, so the QR is one
 * Householder reflection and every triangular solve is a division), keeping
 * each floating-point operation in MINPACK's order so the iterate path, and
 * with ftol = 1e-3 the stopping point, is the same as scipy's. The residual
 * follows MG:moge/utils/geometry_numpy.py:83-87 with numpy's pairwise sums.
 */
#include "lmsolve.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

// ----------------------------------------------------------------------------
// numpy pairwise summation (numpy/_core/src/umath/loops_utils.h.src)

#define PW_BLOCKSIZE 128

/* One definition for both element types (the float one sums in float, as
 * numpy does for float32 arrays). */
#define NP_SUM(name, T)                                                            \
    T name(const T *a, long n)                                                     \
    {                                                                              \
        if (n < 8) {                                                               \
            T res = 0;                                                             \
            for (long i = 0; i < n; i++)                                           \
                res += a[i];                                                       \
            return res;                                                            \
        }                                                                          \
        if (n <= PW_BLOCKSIZE) {                                                   \
            T r[8], res;                                                           \
            long i;                                                                \
            for (int j = 0; j < 8; j++)                                            \
                r[j] = a[j];                                                       \
            for (i = 8; i < n - (n % 8); i += 8)                                   \
                for (int j = 0; j < 8; j++)                                        \
                    r[j] += a[i + j];                                              \
            res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])); \
            for (; i < n; i++)                                                     \
                res += a[i];                                                       \
            return res;                                                            \
        }                                                                          \
        long n2 = n / 2;                                                           \
        n2 -= n2 % 8;                                                              \
        return name(a, n2) + name(a + n2, n - n2);                                 \
    }

NP_SUM(np_sum_f64, double)
NP_SUM(np_sum_f32, float)

// ----------------------------------------------------------------------------
// the residual

struct lm_problem {
    const float *uv;     /* (n, 2) */
    const float *xyz;    /* (n, 3) */
    int          n;
    double      *p;      /* (2n) scratch: xy / (z + s) */
    double      *t;      /* (2n) scratch for the sums */
};

/* fvec (2n) = f(s) * p - uv, in float64 (xy, z, uv are fp32 promoted). */
static void residual(struct lm_problem *P, double s, double *fvec)
{
    long m = 2L * P->n;

    for (int i = 0; i < P->n; i++) {
        double d = (double)P->xyz[3 * i + 2] + s;
        P->p[2 * i]     = (double)P->xyz[3 * i] / d;
        P->p[2 * i + 1] = (double)P->xyz[3 * i + 1] / d;
    }
    for (long k = 0; k < m; k++)
        P->t[k] = P->p[k] * (double)P->uv[k];
    double num = np_sum_f64(P->t, m);
    for (long k = 0; k < m; k++)
        P->t[k] = P->p[k] * P->p[k];          /* np.square */
    double f = num / np_sum_f64(P->t, m);
    for (long k = 0; k < m; k++)
        fvec[k] = f * P->p[k] - (double)P->uv[k];
}

// ----------------------------------------------------------------------------
// MINPACK pieces for n = 1

/* enorm: Euclidean norm with MINPACK's over/underflow-safe accumulation. */
static double enorm(long n, const double *x)
{
    const double rdwarf = 3.834e-20, rgiant = 1.304e19;
    double s1 = 0, s2 = 0, s3 = 0, x1max = 0, x3max = 0;
    double agiant = rgiant / (double)n;

    for (long i = 0; i < n; i++) {
        double xabs = fabs(x[i]);
        if (xabs > rdwarf && xabs < agiant) {
            s2 += xabs * xabs;
        } else if (xabs <= rdwarf) {
            if (xabs > x3max) {
                s3 = 1.0 + s3 * (x3max / xabs) * (x3max / xabs);
                x3max = xabs;
            } else if (xabs != 0.0) {
                s3 += (xabs / x3max) * (xabs / x3max);
            }
        } else {
            if (xabs > x1max) {
                s1 = 1.0 + s1 * (x1max / xabs) * (x1max / xabs);
                x1max = xabs;
            } else {
                s1 += (xabs / x1max) * (xabs / x1max);
            }
        }
    }
    if (s1 != 0.0)
        return x1max * sqrt(s1 + (s2 / x1max) / x1max);
    if (s2 != 0.0) {
        if (s2 >= x3max)
            return sqrt(s2 * (1.0 + (x3max / s2) * (x3max * s3)));
        return sqrt(x3max * ((s2 / x3max) + (x3max * s3)));
    }
    return x3max * sqrt(s3);
}

/* qrsolv for n = 1: solve (r^2 + d^2) x = r qtb by one Givens rotation. */
static double qrsolv1(double r, double d, double qtb, double *sdiag)
{
    double wa = qtb;

    if (d != 0.0) {
        double sn, cs, qtbpj = 0.0;
        if (fabs(r) < fabs(d)) {
            double cotan = r / d;
            sn = 0.5 / sqrt(0.25 + 0.25 * cotan * cotan);
            cs = sn * cotan;
        } else {
            double tn = d / r;
            cs = 0.5 / sqrt(0.25 + 0.25 * tn * tn);
            sn = cs * tn;
        }
        double rk = cs * r + sn * d;
        double temp = cs * wa + sn * qtbpj;
        wa = temp;
        *sdiag = rk;
    } else {
        *sdiag = r;
    }
    if (*sdiag == 0.0)
        return 0.0;
    return wa / *sdiag;
}

/* lmpar for n = 1: the LM parameter par and step x for trust radius delta. */
static double lmpar1(double r, double diag, double qtb, double delta, double *par)
{
    const double p1 = 0.1, p001 = 0.001, dwarf = DBL_MIN;
    double x, sdiag = 0.0;
    int iter = 0;

    /* Gauss-Newton direction */
    double wa1 = r == 0.0 ? 0.0 : qtb / r;
    bool nsing_full = r != 0.0;
    x = wa1;
    double wa2 = diag * x;
    double dxnorm = fabs(wa2);                       /* enorm of one element */
    double fp = dxnorm - delta;
    if (fp <= p1 * delta)
        goto done;

    double parl = 0.0;
    if (nsing_full) {
        wa1 = diag * (wa2 / dxnorm);
        wa1 = wa1 / r;
        double temp = fabs(wa1);
        parl = ((fp / delta) / temp) / temp;
    }
    wa1 = (r * qtb) / diag;
    double gnorm = fabs(wa1);
    double paru = gnorm / delta;
    if (paru == 0.0)
        paru = dwarf / fmin(delta, p1);
    *par = fmax(*par, parl);
    *par = fmin(*par, paru);
    if (*par == 0.0)
        *par = gnorm / dxnorm;

    for (;;) {
        iter++;
        if (*par == 0.0)
            *par = fmax(dwarf, p001 * paru);
        double temp = sqrt(*par);
        x = qrsolv1(r, temp * diag, qtb, &sdiag);
        wa2 = diag * x;
        dxnorm = fabs(wa2);
        temp = fp;
        fp = dxnorm - delta;
        if (fabs(fp) <= p1 * delta || (parl == 0.0 && fp <= temp && temp < 0.0) || iter == 10)
            break;
        wa1 = diag * (wa2 / dxnorm);
        wa1 = wa1 / sdiag;
        temp = fabs(wa1);
        double parc = ((fp / delta) / temp) / temp;
        if (fp > 0.0)
            parl = fmax(parl, *par);
        if (fp < 0.0)
            paru = fmin(paru, *par);
        *par = fmax(parl, *par + parc);
    }
done:
    if (iter == 0)
        *par = 0.0;
    return x;
}

/* Forward-difference Jacobian column at x (fvec = f(x)); returns evaluations. */
static int jacobian(struct lm_problem *P, const struct lm_opts *o, double x, const double *fvec,
                    double *fjac, long m)
{
    const double eps = DBL_EPSILON;
    double h, dx;

    if (o->lmdif) {                                   /* MINPACK fdjac2 */
        double e = sqrt(eps);
        h = e * fabs(x);
        if (h == 0.0)
            h = e;
        dx = h;
        residual(P, x + h, fjac);
    } else {                                          /* scipy approx_derivative 2-point */
        double sign = x >= 0 ? 1.0 : -1.0;
        h = sqrt(eps) * sign * fmax(1.0, fabs(x));
        double x1 = x + h;
        dx = x1 - x;
        residual(P, x1, fjac);
    }
    for (long i = 0; i < m; i++)
        fjac[i] = (fjac[i] - fvec[i]) / dx;
    return 1;
}

/* lmder (n = 1) from x0 = 0. Returns the MINPACK info code. */
static int lm_run(struct lm_problem *P, const struct lm_opts *o, double *xout, int *nfev_out)
{
    const double p1 = 0.1, p5 = 0.5, p25 = 0.25, p75 = 0.75, p0001 = 1e-4;
    const double epsmch = DBL_EPSILON, factor = 100.0;
    long m = 2L * P->n;
    double *fvec = malloc(sizeof(double) * (size_t)m * 3);
    double *fjac = fvec + m, *wa4 = fjac + m;
    double x = 0.0, diag = 1.0, delta = 0.0, xnorm = 0.0, par = 0.0;
    int info = 0, nfev = 0, iter = 1;
    int maxfev = o->max_nfev > 0 ? o->max_nfev : o->lmdif ? 200 : 100;

    if (!fvec)
        abort();                                     /* a few KB; out of memory is fatal */
    residual(P, x, fvec);
    nfev = 1;
    double fnorm = enorm(m, fvec);

    for (;;) {                                       /* outer loop */
        int je = jacobian(P, o, x, fvec, fjac, m);
        if (o->lmdif)
            nfev += je;                              /* lmdif counts fdjac2's calls */

        /* qrfac: one Householder reflection of the single column */
        double acnorm = enorm(m, fjac);
        double ajnorm = acnorm, rdiag;
        if (ajnorm != 0.0) {
            if (fjac[0] < 0.0)
                ajnorm = -ajnorm;
            for (long i = 0; i < m; i++)
                fjac[i] /= ajnorm;
            fjac[0] += 1.0;
        }
        rdiag = -ajnorm;

        if (iter == 1) {
            if (o->scale_jac)
                diag = acnorm == 0.0 ? 1.0 : acnorm;
            xnorm = fabs(diag * x);
            delta = factor * xnorm;
            if (delta == 0.0)
                delta = factor;
        }

        /* qtf = (Q^T fvec)[0] */
        for (long i = 0; i < m; i++)
            wa4[i] = fvec[i];
        if (fjac[0] != 0.0) {
            double sum = 0.0;
            for (long i = 0; i < m; i++)
                sum += fjac[i] * wa4[i];
            double temp = -sum / fjac[0];
            for (long i = 0; i < m; i++)
                wa4[i] += fjac[i] * temp;
        }
        double r = rdiag;
        double qtf = wa4[0];

        /* scaled gradient norm */
        double gnorm = 0.0;
        if (fnorm != 0.0 && acnorm != 0.0)
            gnorm = fabs((r * (qtf / fnorm)) / acnorm);
        if (gnorm <= o->gtol)
            info = 4;
        if (info != 0)
            break;
        if (o->scale_jac)
            diag = fmax(diag, acnorm);

        double ratio;
        do {                                         /* inner loop */
            double step = lmpar1(r, diag, qtf, delta, &par);
            double wa1 = -step;
            double wa2 = x + wa1;
            double wa3 = diag * wa1;
            double pnorm = fabs(wa3);
            if (iter == 1)
                delta = fmin(delta, pnorm);
            residual(P, wa2, wa4);
            nfev++;
            double fnorm1 = enorm(m, wa4);

            double actred = -1.0;
            if (p1 * fnorm1 < fnorm)
                actred = 1.0 - (fnorm1 / fnorm) * (fnorm1 / fnorm);
            double w3 = r * wa1;
            double temp1 = fabs(w3) / fnorm;
            double temp2 = (sqrt(par) * pnorm) / fnorm;
            double prered = temp1 * temp1 + temp2 * temp2 / p5;
            double dirder = -(temp1 * temp1 + temp2 * temp2);
            ratio = 0.0;
            if (prered != 0.0)
                ratio = actred / prered;

            if (ratio <= p25) {
                double temp;
                if (actred >= 0.0)
                    temp = p5;
                else
                    temp = p5 * dirder / (dirder + p5 * actred);
                if (p1 * fnorm1 >= fnorm || temp < p1)
                    temp = p1;
                delta = temp * fmin(delta, pnorm / p1);
                par = par / temp;
            } else if (par == 0.0 || ratio >= p75) {
                delta = pnorm / p5;
                par = p5 * par;
            }

            if (ratio >= p0001) {                    /* successful iteration */
                x = wa2;
                xnorm = fabs(diag * x);
                for (long i = 0; i < m; i++)
                    fvec[i] = wa4[i];
                fnorm = fnorm1;
                iter++;
            }

            if (fabs(actred) <= o->ftol && prered <= o->ftol && p5 * ratio <= 1.0)
                info = 1;
            if (delta <= o->xtol * xnorm)
                info = info == 1 ? 3 : 2;
            if (info != 0)
                break;
            if (nfev >= maxfev)
                info = 5;
            if (fabs(actred) <= epsmch && prered <= epsmch && p5 * ratio <= 1.0)
                info = 6;
            if (delta <= epsmch * xnorm)
                info = 7;
            if (gnorm <= epsmch)
                info = 8;
            if (info != 0)
                break;
        } while (ratio < p0001);
        if (info != 0)
            break;
    }
    free(fvec);
    *xout = x;
    *nfev_out = nfev;
    return info;
}

struct lm_opts lm_opts_default(void)
{
    struct lm_opts o = {.ftol = 1e-3, .xtol = 1e-8, .gtol = 1e-8, .max_nfev = 0,
                        .scale_jac = true, .lmdif = false};
    return o;
}

void lm_focal_shift(const float *uv, const float *xyz, int n, const struct lm_opts *o,
                    struct lm_result *r)
{
    r->shift64 = 0.0;
    r->shift = 0.0f;
    r->focal = 1.0f;
    r->nfev = 0;
    r->info = 0;
    if (n < 2)                                        /* geometry_torch.py: < 2 points */
        return;

    struct lm_problem P = {.uv = uv, .xyz = xyz, .n = n};
    long m = 2L * n;
    P.p = malloc(sizeof(double) * (size_t)m * 2);
    if (!P.p)
        abort();
    P.t = P.p + m;
    r->info = lm_run(&P, o, &r->shift64, &r->nfev);
    free(P.p);

    /* focal in fp32 numpy: xy_proj = xy / (z + shift32); sums pairwise in fp32 */
    float *a = malloc(sizeof(float) * (size_t)m * 3);
    if (!a)
        abort();
    float *pp = a + m, *sq = pp + m;
    float s32 = (float)r->shift64;
    for (int i = 0; i < n; i++) {
        float d = xyz[3 * i + 2] + s32;
        for (int c = 0; c < 2; c++) {
            float q = xyz[3 * i + c] / d;
            pp[2 * i + c] = q * uv[2 * i + c];
            sq[2 * i + c] = q * q;
        }
    }
    r->shift = s32;
    r->focal = np_sum_f32(pp, m) / np_sum_f32(sq, m);
    free(a);
}
