/*
 * groupnorm.c - CPU reference for op_groupnorm (nn.GroupNorm, optional fused
 * ReLU). See ops_image.h. Statistics in double (a better reference than the
 * fp32 Welford of the GPU), normalisation in fp32, one rounding into y.
 */
#include "ops_image.h"
#include "log.h"

#include <math.h>
#include <stdlib.h>

void op_groupnorm_cpu(struct tensor *y, const struct tensor *x, int groups,
                      const struct tensor *w, const struct tensor *b, float eps, bool relu)
{
    op_check_dense("groupnorm.x", x, DEVICE_HOST);
    op_check_dense("groupnorm.y", y, DEVICE_HOST);
    ASSERT(x->ndim >= 2 && tensor_same_shape(x, y));
    ASSERT((w == NULL) == (b == NULL));
    int64_t N = x->shape[0], C = x->shape[1];
    ASSERT(groups >= 1 && C % groups == 0);
    int64_t S = (N != 0 && C != 0) ? tensor_numel(x) / (N * C) : 0;   /* spatial size */
    int64_t Cg = C / groups, M = Cg * S;
    if (w) {
        op_check_dense("groupnorm.w", w, DEVICE_HOST);
        op_check_dense("groupnorm.b", b, DEVICE_HOST);
        ASSERT(tensor_numel(w) == C && tensor_numel(b) == C);
    }
    if (N * C * S == 0)
        return;

    float *buf = malloc(sizeof(*buf) * (size_t)(M + 2 * C));
    ASSERT(buf);
    float *wf = buf + M, *bf = wf + C;
    for (int64_t c = 0; c < C; c++) {
        wf[c] = 1.0f;
        bf[c] = 0.0f;
    }
    if (w) {
        dtype_convert(wf, DTYPE_F32, w->data, w->dtype, (size_t)C);
        dtype_convert(bf, DTYPE_F32, b->data, b->dtype, (size_t)C);
    }
    size_t xs = dtype_size(x->dtype), ys = dtype_size(y->dtype);
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < groups; g++) {
            size_t off = (size_t)((n * C + g * Cg) * S);
            double mean = 0, var = 0;

            dtype_convert(buf, DTYPE_F32, (const char *)x->data + off * xs, x->dtype, (size_t)M);
            for (int64_t e = 0; e < M; e++)
                mean += buf[e];
            mean /= (double)M;
            for (int64_t e = 0; e < M; e++)
                var += (buf[e] - mean) * (buf[e] - mean);
            var /= (double)M;                              /* biased, as torch */
            float rstd = (float)(1.0 / sqrt(var + (double)eps));
            float mf = (float)mean;
            for (int64_t cc = 0; cc < Cg; cc++) {
                int64_t c = g * Cg + cc;
                for (int64_t s = 0; s < S; s++) {
                    float v = (buf[cc * S + s] - mf) * rstd * wf[c] + bf[c];
                    buf[cc * S + s] = relu && v < 0.0f ? 0.0f : v;
                }
            }
            dtype_convert((char *)y->data + off * ys, y->dtype, buf, DTYPE_F32, (size_t)M);
        }
    free(buf);
}
