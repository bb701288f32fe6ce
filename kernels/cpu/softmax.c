/*
 * softmax.c - CPU reference for softmax over the last dim. See ops.h.
 * Max-subtracted, exp in fp32, sum in double, exp / sum in fp32, one rounding
 * into y's dtype.
 */
#include "ops.h"
#include "log.h"

#include <math.h>
#include <stdlib.h>

void op_softmax_cpu(struct tensor *y, const struct tensor *x)
{
    op_check_dense("softmax.x", x, DEVICE_HOST);
    op_check_dense("softmax.y", y, DEVICE_HOST);
    ASSERT(tensor_same_shape(x, y));

    int64_t N = op_cols(x), R = op_rows(x);
    if (R == 0 || N == 0)
        return;
    float *buf = malloc(sizeof(*buf) * (size_t)N);
    ASSERT(buf);
    size_t xs = dtype_size(x->dtype), ys = dtype_size(y->dtype);
    for (int64_t r = 0; r < R; r++) {
        float  mx = -INFINITY;
        double sum = 0;

        dtype_convert(buf, DTYPE_F32, (const char *)x->data + (size_t)(r * N) * xs, x->dtype,
                      (size_t)N);
        for (int64_t i = 0; i < N; i++)
            mx = buf[i] > mx ? buf[i] : mx;
        for (int64_t i = 0; i < N; i++) {
            /* a row of -inf gives NaN, as torch does */
            buf[i] = expf(buf[i] - mx);
            sum += buf[i];
        }
        float sf = (float)sum;
        for (int64_t i = 0; i < N; i++)
            buf[i] /= sf;                          /* torch divides: exp(x - max) / sum */
        dtype_convert((char *)y->data + (size_t)(r * N) * ys, y->dtype, buf, DTYPE_F32, (size_t)N);
    }
    free(buf);
}
