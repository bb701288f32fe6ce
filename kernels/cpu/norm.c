/*
 * norm.c - CPU references for LayerNorm and the per-head RMS norm. See ops.h.
 *
 * Both convert one row to fp32, reduce in double (more accurate than the fp32
 * statistics the GPU keeps, so this is the better reference), and round the
 * result once into the output dtype.
 */
#include "ops.h"
#include "log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void op_layernorm_cpu(struct tensor *y, const struct tensor *x, const struct tensor *w,
                      const struct tensor *b, float eps)
{
    op_layernorm_mod_cpu(y, x, w, b, NULL, NULL, eps, false);
}

/* v (C) F32 = the (C) vector t converted, or `fill` everywhere when t is NULL. */
static void vec_f32(float *v, const struct tensor *t, int64_t C, float fill, const char *what)
{
    if (!t) {
        for (int64_t c = 0; c < C; c++)
            v[c] = fill;
        return;
    }
    op_check_dense(what, t, DEVICE_HOST);
    ASSERT(tensor_numel(t) == C);
    dtype_convert(v, DTYPE_F32, t->data, t->dtype, (size_t)C);
}

void op_layernorm_mod_cpu(struct tensor *y, const struct tensor *x, const struct tensor *w,
                          const struct tensor *b, const struct tensor *scale,
                          const struct tensor *shift, float eps, bool round_scale)
{
    op_check_dense("layernorm.x", x, DEVICE_HOST);
    op_check_dense("layernorm.y", y, DEVICE_HOST);
    ASSERT(tensor_same_shape(x, y));
    ASSERT(w || !b);
    ASSERT(scale || !shift);

    int64_t C = op_cols(x), R = op_rows(x);
    if (R == 0 || C == 0)
        return;

    float *buf = malloc(sizeof(*buf) * (size_t)(5 * C));
    ASSERT(buf);
    float *wf = buf + C, *bf = buf + 2 * C, *sf = buf + 3 * C, *tf = buf + 4 * C;
    vec_f32(wf, w, C, 1.0f, "layernorm.w");
    vec_f32(bf, b, C, 0.0f, "layernorm.b");
    vec_f32(sf, scale, C, 0.0f, "layernorm.scale");
    vec_f32(tf, shift, C, 0.0f, "layernorm.shift");
    if (scale && round_scale)                      /* sf = round(1 + scale) - 1, exact */
        for (int64_t c = 0; c < C; c++)
            sf[c] = dtype_round(scale->dtype, 1.0f + sf[c]) - 1.0f;

    size_t xs = dtype_size(x->dtype), ys = dtype_size(y->dtype);
    for (int64_t r = 0; r < R; r++) {
        double mean = 0, var = 0;

        dtype_convert(buf, DTYPE_F32, (const char *)x->data + (size_t)(r * C) * xs, x->dtype,
                      (size_t)C);
        for (int64_t c = 0; c < C; c++)
            mean += buf[c];
        mean /= (double)C;
        for (int64_t c = 0; c < C; c++)
            var += (buf[c] - mean) * (buf[c] - mean);
        var /= (double)C;                          /* biased, as torch */
        float rstd = (float)(1.0 / sqrt(var + (double)eps));
        float mf   = (float)mean;
        for (int64_t c = 0; c < C; c++)
            buf[c] = (buf[c] - mf) * rstd * wf[c] + bf[c];
        if (scale)                                 /* op_modulate's expression */
            for (int64_t c = 0; c < C; c++)
                buf[c] = buf[c] * (1.0f + sf[c]) + (shift ? tf[c] : 0.0f);
        dtype_convert((char *)y->data + (size_t)(r * C) * ys, y->dtype, buf, DTYPE_F32, (size_t)C);
    }
    free(buf);
}

/* Offset in elements of row `row` (a flat index over all dims but the last). */
static int64_t row_offset(const struct tensor *t, int64_t row)
{
    int64_t off = 0;

    for (int d = t->ndim - 2; d >= 0; d--) {
        off += (row % t->shape[d]) * t->stride[d];
        row /= t->shape[d];
    }
    return off;
}

void op_rmsnorm_heads_cpu(struct tensor *y, const struct tensor *x, const struct tensor *gamma,
                          float scale)
{
    ASSERT(x->device == DEVICE_HOST && y->device == DEVICE_HOST);
    ASSERT(op_dtype_ok(x->dtype) && y->dtype == x->dtype);
    ASSERT(x->ndim >= 2 && x->ndim <= 6 && tensor_same_shape(x, y));
    ASSERT(x->stride[x->ndim - 1] == 1 && y->stride[y->ndim - 1] == 1);
    op_check_dense("rmsnorm_heads.gamma", gamma, DEVICE_HOST);

    int64_t D = x->shape[x->ndim - 1], H = x->shape[x->ndim - 2];
    int64_t R = D ? tensor_numel(x) / D : 0;
    ASSERT(gamma->ndim == 2 && gamma->shape[0] == H && gamma->shape[1] == D);
    if (R == 0 || D == 0)
        return;

    float *buf = malloc(sizeof(*buf) * (size_t)(D + H * D));
    ASSERT(buf);
    float *g = buf + D;
    dtype_convert(g, DTYPE_F32, gamma->data, gamma->dtype, (size_t)(H * D));

    size_t es = dtype_size(x->dtype);
    for (int64_t r = 0; r < R; r++) {
        const char *xr = (const char *)x->data + (size_t)row_offset(x, r) * es;
        char       *yr = (char *)y->data + (size_t)row_offset(y, r) * es;
        const float *gh = g + (r % H) * D;
        double ss = 0;

        dtype_convert(buf, DTYPE_F32, xr, x->dtype, (size_t)D);
        for (int64_t d = 0; d < D; d++)
            ss += (double)buf[d] * buf[d];
        /* F.normalize: x / clamp_min(||x||, 1e-12), then * gamma * scale */
        float den = (float)sqrt(ss);
        den = den > 1e-12f ? den : 1e-12f;
        for (int64_t d = 0; d < D; d++)
            buf[d] = buf[d] / den * gh[d] * scale;
        dtype_convert(yr, y->dtype, buf, DTYPE_F32, (size_t)D);
    }
    free(buf);
}
