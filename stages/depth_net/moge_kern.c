/*
 * moge_kern.c - CPU versions of MoGe's elementwise helpers. See moge_kern.h.
 */
#include "moge.h"
#include "moge_kern.h"

#include "log.h"

#include <math.h>
#include <stdlib.h>

float moge_linspace(double start, double end, int n, int i)
{
    /* ATen RangeFactories: step = (end - start) / (steps - 1) in the accumulate
     * type (float); the first half counts up from start, the rest down from end */
    float s = (float)start, e = (float)end;
    if (n == 1)
        return s;
    float step = (e - s) / (float)(n - 1);
    int half = n / 2;
    return i < half ? s + step * (float)i : e - step * (float)(n - i - 1);
}

void moge_normalise(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                    const struct tensor *mean, const struct tensor *std)
{
    if (y->device == DEVICE_CUDA) {
        moge_normalise_cuda(ctx, y, x, mean, std);
        return;
    }
    ASSERT(x->dtype == DTYPE_F32 && y->dtype == DTYPE_F32 && tensor_numel(x) == tensor_numel(y));
    int64_t S = tensor_numel(x) / 3;
    const float *xm = x->data, *mu = mean->data, *sd = std->data;
    float *ym = y->data;
    for (int c = 0; c < 3; c++)
        for (int64_t s = 0; s < S; s++)
            ym[c * S + s] = (xm[c * S + s] - mu[c]) / sd[c];
}

void moge_fill_uv(const struct op_ctx *ctx, struct tensor *uv, double aspect)
{
    if (uv->device == DEVICE_CUDA) {
        moge_fill_uv_cuda(ctx, uv, aspect);
        return;
    }
    ASSERT(uv->ndim >= 3 && uv->shape[uv->ndim - 3] == 2 && tensor_is_contiguous(uv));
    int h = (int)uv->shape[uv->ndim - 2], w = (int)uv->shape[uv->ndim - 1];
    double sx = aspect / sqrt(1 + aspect * aspect), sy = 1 / sqrt(1 + aspect * aspect);
    double ux = sx * (w - 1) / w, vy = sy * (h - 1) / h;
    float *buf = malloc(sizeof(float) * 2 * (size_t)h * w);
    ASSERT(buf);
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            buf[(size_t)i * w + j] = moge_linspace(-ux, ux, w, j);
            buf[(size_t)h * w + (size_t)i * w + j] = moge_linspace(-vy, vy, h, i);
        }
    dtype_convert(uv->data, uv->dtype, buf, DTYPE_F32, 2 * (size_t)h * w);
    free(buf);
}

void moge_channel_bias(const struct op_ctx *ctx, struct tensor *y, const struct tensor *b)
{
    if (y->device == DEVICE_CUDA) {
        moge_channel_bias_cuda(ctx, y, b);
        return;
    }
    int64_t C = y->shape[0], S = tensor_numel(y) / C;
    ASSERT(tensor_numel(b) == C && tensor_is_contiguous(y));
    float *row = malloc(sizeof(float) * (size_t)S);
    ASSERT(row);
    size_t es = dtype_size(y->dtype);
    for (int64_t c = 0; c < C; c++) {
        char *p = (char *)y->data + (size_t)(c * S) * es;
        float bv = (float)dtype_get(b->data, b->dtype, (size_t)c);
        dtype_convert(row, DTYPE_F32, p, y->dtype, (size_t)S);
        for (int64_t s = 0; s < S; s++)
            row[s] += bv;
        dtype_convert(p, y->dtype, row, DTYPE_F32, (size_t)S);
    }
    free(row);
}
