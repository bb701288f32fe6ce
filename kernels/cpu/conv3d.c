/*
 * conv3d.c - CPU reference of the channels-last 3-D ops: the "same" 3-D
 * convolution, its weight packing, and the 3-D pixel shuffle. See ops_conv.h.
 *
 * PyTorch semantics: torch.nn.Conv3d (docs: "Conv3d", cross-correlation,
 * zero padding) and TRELLIS/sam-3d-objects pixel_shuffle_3d
 * (tdfy_dit/modules/spatial.py:5-14). The loops are the obvious ones: per
 * output voxel, per in-grid tap, per output channel a dot product over the
 * input channels (contiguous in both x and the packed weight), fp32
 * accumulation in four partial sums. Not optimised; it is the truth the
 * CUDA op is measured against.
 */
#include "ops_conv.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// checks shared with the CUDA ops

int64_t op_conv3d_check(const struct tensor *y, const struct tensor *x, const struct tensor *wp,
                        const struct tensor *b, enum device dev)
{
    op_check_dense("conv3d.x", x, dev);
    op_check_dense("conv3d.w", wp, dev);
    op_check_dense("conv3d.y", y, dev);
    ASSERT(x->ndim == 5 && wp->ndim == 5 && y->ndim == 5);
    int64_t K = wp->shape[1];
    ASSERT(K >= 1 && K % 2 == 1 && wp->shape[2] == K && wp->shape[3] == K);
    ASSERT(wp->shape[4] == x->shape[4]);
    for (int i = 0; i < 4; i++)
        ASSERT(y->shape[i] == x->shape[i]);
    ASSERT(y->shape[4] == wp->shape[0]);
    if (b) {
        op_check_dense("conv3d.b", b, dev);
        ASSERT(tensor_numel(b) == wp->shape[0]);
    }
    return K;
}

void op_pixel_shuffle3d_check(const struct tensor *y, const struct tensor *x, enum device dev)
{
    op_check_dense("pixel_shuffle3d.x", x, dev);
    op_check_dense("pixel_shuffle3d.y", y, dev);
    ASSERT(x->ndim == 5 && y->ndim == 5);
    ASSERT(y->shape[0] == x->shape[0]);
    for (int i = 1; i < 4; i++)
        ASSERT(y->shape[i] == 2 * x->shape[i]);
    ASSERT(x->shape[4] == 8 * y->shape[4]);
}

// ----------------------------------------------------------------------------
// convolution

void op_conv3d_pack_weight(void *dst, enum dtype dt, const float *w, int64_t Co, int64_t Ci,
                           int64_t K)
{
    int64_t K3 = K * K * K;
    float *row = malloc(sizeof(*row) * (size_t)(K3 * Ci));

    ASSERT(op_dtype_ok(dt) && row);
    for (int64_t o = 0; o < Co; o++) {
        /* (Ci, K^3) -> (K^3, Ci) for one output channel */
        for (int64_t i = 0; i < Ci; i++)
            for (int64_t t = 0; t < K3; t++)
                row[t * Ci + i] = w[(o * Ci + i) * K3 + t];
        dtype_convert((char *)dst + (size_t)(o * K3 * Ci) * dtype_size(dt), dt, row, DTYPE_F32,
                      (size_t)(K3 * Ci));
    }
    free(row);
}

/* A contiguous F32 copy of t's data (malloc'ed), or t's data itself when F32
 * (*owned false). */
static const float *as_f32(const struct tensor *t, bool *owned)
{
    size_t n = (size_t)tensor_numel(t);
    float *f;

    *owned = false;
    if (t->dtype == DTYPE_F32)
        return t->data;
    f = malloc(sizeof(*f) * (n ? n : 1));
    ASSERT(f);
    dtype_convert(f, DTYPE_F32, t->data, t->dtype, n);
    *owned = true;
    return f;
}

/* Round n floats in place to the nearest value of dtype dt. */
static void round_to(float *v, size_t n, enum dtype dt)
{
    size_t chunk = 4096;
    uint16_t tmp[4096];

    if (dt == DTYPE_F32)
        return;
    for (size_t i = 0; i < n; i += chunk) {
        size_t m = n - i < chunk ? n - i : chunk;
        dtype_convert(tmp, dt, v + i, DTYPE_F32, m);
        dtype_convert(v + i, DTYPE_F32, tmp, dt, m);
    }
}

static float dot_f32(const float *a, const float *b, int64_t n)
{
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int64_t i = 0;

    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

void op_conv3d_cpu(struct tensor *y, const struct tensor *x, const struct tensor *wp,
                   const struct tensor *b)
{
    int64_t K = op_conv3d_check(y, x, wp, b, DEVICE_HOST);
    int64_t N = x->shape[0], D = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Ci = x->shape[4], Co = y->shape[4], P = K / 2, K3 = K * K * K;
    bool own_x, own_w;

    if (tensor_numel(y) == 0)
        return;
    const float *xf = as_f32(x, &own_x);
    if (x->dtype != wp->dtype) {                /* autocast: x rounded to the weight dtype */
        float *r = own_x ? (float *)xf : malloc(sizeof(*r) * (size_t)tensor_numel(x));
        ASSERT(r);
        if (!own_x)
            memcpy(r, xf, sizeof(*r) * (size_t)tensor_numel(x));
        round_to(r, (size_t)tensor_numel(x), wp->dtype);
        xf = r;
        own_x = true;
    }
    const float *wf = as_f32(wp, &own_w);
    float *acc = malloc(sizeof(*acc) * (size_t)(2 * Co));
    ASSERT(acc);
    float *bias = acc + Co;
    for (int64_t o = 0; o < Co; o++)
        bias[o] = 0.0f;
    if (b)
        dtype_convert(bias, DTYPE_F32, b->data, b->dtype, (size_t)Co);
    size_t ysz = dtype_size(y->dtype);

    for (int64_t n = 0; n < N; n++)
        for (int64_t d = 0; d < D; d++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t w = 0; w < W; w++) {
                    memset(acc, 0, sizeof(*acc) * (size_t)Co);
                    for (int64_t a = 0; a < K; a++) {
                        int64_t dd = d + a - P;
                        if (dd < 0 || dd >= D)
                            continue;
                        for (int64_t c = 0; c < K; c++) {
                            int64_t hh = h + c - P;
                            if (hh < 0 || hh >= H)
                                continue;
                            for (int64_t e = 0; e < K; e++) {
                                int64_t ww = w + e - P;
                                if (ww < 0 || ww >= W)
                                    continue;
                                const float *xr = xf + (((n * D + dd) * H + hh) * W + ww) * Ci;
                                int64_t t = (a * K + c) * K + e;
                                for (int64_t o = 0; o < Co; o++)
                                    acc[o] += dot_f32(wf + (o * K3 + t) * Ci, xr, Ci);
                            }
                        }
                    }
                    for (int64_t o = 0; o < Co; o++)
                        acc[o] += bias[o];
                    int64_t v = ((n * D + d) * H + h) * W + w;
                    dtype_convert((char *)y->data + (size_t)(v * Co) * ysz, y->dtype, acc,
                                  DTYPE_F32, (size_t)Co);
                }
    free(acc);
    if (own_x)
        free((void *)xf);
    if (own_w)
        free((void *)wf);
}

// ----------------------------------------------------------------------------
// pixel shuffle

void op_pixel_shuffle3d_cpu(struct tensor *y, const struct tensor *x)
{
    op_pixel_shuffle3d_check(y, x, DEVICE_HOST);
    int64_t N = x->shape[0], D = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t C = y->shape[4];
    size_t xs = dtype_size(x->dtype), ys = dtype_size(y->dtype);
    float *row = malloc(sizeof(*row) * (size_t)(8 * C + 1));
    float *out = malloc(sizeof(*out) * (size_t)(C + 1));

    ASSERT(row && out);
    for (int64_t n = 0; n < N; n++)
        for (int64_t d = 0; d < D; d++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t w = 0; w < W; w++) {
                    int64_t v = ((n * D + d) * H + h) * W + w;
                    dtype_convert(row, DTYPE_F32, (const char *)x->data + (size_t)(v * 8 * C) * xs,
                                  x->dtype, (size_t)(8 * C));
                    for (int s = 0; s < 8; s++) {
                        int i = s >> 2, j = (s >> 1) & 1, k = s & 1;
                        for (int64_t c = 0; c < C; c++)
                            out[c] = row[8 * c + s];
                        int64_t u = ((n * 2 * D + 2 * d + i) * 2 * H + 2 * h + j) * 2 * W + 2 * w + k;
                        dtype_convert((char *)y->data + (size_t)(u * C) * ys, y->dtype, out,
                                      DTYPE_F32, (size_t)C);
                    }
                }
    free(row);
    free(out);
}
