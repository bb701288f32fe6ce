/*
 * gemm.c - CPU reference for op_linear (torch.nn.functional.linear) and
 * op_linear_gelu (Linear then GELU tanh, one rounding). See ops.h.
 *
 * y(M, N) = x(M, K) @ w(N, K)^T (+ b) (+ y). Both operands are read along K,
 * so every output is a dot product of two contiguous rows. The loop converts
 * panels of PANEL rows of x and w to fp32 (exact for F16/BF16), then computes
 * 4 x 4 output tiles with 16 fp32 accumulators, each summed in order over k,
 * so results are deterministic and exact for small-integer inputs.
 */
#include "ops.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

#define PANEL 64   /* rows of x and of w converted at once: 2 x 64 x K floats */

/* Rows [r0, r0 + n) of a (rows, K) matrix of dtype dt into dst (n, K) fp32. */
static void panel_to_f32(float *dst, const void *src, enum dtype dt, int64_t r0, int64_t n,
                         int64_t K)
{
    size_t esz = dtype_size(dt);

    dtype_convert(dst, DTYPE_F32, (const char *)src + (size_t)(r0 * K) * esz, dt,
                  (size_t)(n * K));
}

/* c[i][j] = sum_k a[i][k] * b[j][k] for i < mi, j < nj (both at most 4). */
static void tile_4x4(float c[4][4], const float *a, const float *b, int mi, int nj, int64_t K)
{
    const float *a0 = a, *a1 = a + (mi > 1 ? K : 0), *a2 = a + (mi > 2 ? 2 * K : 0),
                *a3 = a + (mi > 3 ? 3 * K : 0);
    const float *b0 = b, *b1 = b + (nj > 1 ? K : 0), *b2 = b + (nj > 2 ? 2 * K : 0),
                *b3 = b + (nj > 3 ? 3 * K : 0);
    float s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
    float s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;

    /* rows past mi / nj alias row 0 and are discarded: no branch in the loop */
    for (int64_t k = 0; k < K; k++) {
        float x0 = a0[k], x1 = a1[k], x2 = a2[k], x3 = a3[k];
        float w0 = b0[k], w1 = b1[k], w2 = b2[k], w3 = b3[k];
        s00 += x0 * w0; s01 += x0 * w1; s02 += x0 * w2; s03 += x0 * w3;
        s10 += x1 * w0; s11 += x1 * w1; s12 += x1 * w2; s13 += x1 * w3;
        s20 += x2 * w0; s21 += x2 * w1; s22 += x2 * w2; s23 += x2 * w3;
        s30 += x3 * w0; s31 += x3 * w1; s32 += x3 * w2; s33 += x3 * w3;
    }
    c[0][0] = s00; c[0][1] = s01; c[0][2] = s02; c[0][3] = s03;
    c[1][0] = s10; c[1][1] = s11; c[1][2] = s12; c[1][3] = s13;
    c[2][0] = s20; c[2][1] = s21; c[2][2] = s22; c[2][3] = s23;
    c[3][0] = s30; c[3][1] = s31; c[3][2] = s32; c[3][3] = s33;
}

/* op_linear_cpu, with gelu_tanh applied to each fp32 result before it is
 * rounded to y's dtype when gelu. */
static void linear(struct tensor *y, const struct tensor *x, const struct tensor *w,
                   const struct tensor *b, bool accumulate, bool gelu)
{
    int64_t M, N, K;

    op_check_linear(y, x, w, b, DEVICE_HOST, &M, &N, &K);
    if (M == 0 || N == 0)
        return;

    float *xp   = malloc(sizeof(*xp) * (size_t)(PANEL * K + PANEL * K + N + PANEL * N));
    ASSERT(xp);
    float *wp   = xp + PANEL * K;
    float *bias = wp + PANEL * K;
    float *row  = bias + N;                       /* (PANEL, N): old y / result rows */

    if (b)
        dtype_convert(bias, DTYPE_F32, b->data, b->dtype, (size_t)N);
    else
        memset(bias, 0, sizeof(*bias) * (size_t)N);

    for (int64_t m0 = 0; m0 < M; m0 += PANEL) {
        int64_t mn = M - m0 < PANEL ? M - m0 : PANEL;
        char   *yrows = (char *)y->data + (size_t)(m0 * N) * dtype_size(y->dtype);

        panel_to_f32(xp, x->data, x->dtype, m0, mn, K);
        if (accumulate)
            dtype_convert(row, DTYPE_F32, yrows, y->dtype, (size_t)(mn * N));
        for (int64_t n0 = 0; n0 < N; n0 += PANEL) {
            int64_t nn = N - n0 < PANEL ? N - n0 : PANEL;

            panel_to_f32(wp, w->data, w->dtype, n0, nn, K);
            for (int64_t i = 0; i < mn; i += 4) {
                for (int64_t j = 0; j < nn; j += 4) {
                    int   mi = mn - i < 4 ? (int)(mn - i) : 4;
                    int   nj = nn - j < 4 ? (int)(nn - j) : 4;
                    float c[4][4];

                    tile_4x4(c, xp + i * K, wp + j * K, mi, nj, K);
                    for (int r = 0; r < mi; r++) {
                        float *out = row + (i + r) * N + n0 + j;
                        for (int s = 0; s < nj; s++) {
                            /* torch adds the bias to the product, then the residual */
                            float v = c[r][s] + bias[n0 + j + s];
                            out[s] = accumulate ? out[s] + v : v;
                            if (gelu)
                                out[s] = op_act_f32(out[s], OP_ACT_GELU_TANH);
                        }
                    }
                }
            }
        }
        dtype_convert(yrows, y->dtype, row, DTYPE_F32, (size_t)(mn * N));
    }
    free(xp);
}

void op_linear_cpu(struct tensor *y, const struct tensor *x, const struct tensor *w,
                   const struct tensor *b, bool accumulate)
{
    linear(y, x, w, b, accumulate, false);
}

void op_linear_gelu_cpu(struct tensor *y, const struct tensor *x, const struct tensor *w,
                        const struct tensor *b)
{
    linear(y, x, w, b, false, true);
}
