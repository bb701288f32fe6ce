/*
 * resize.c - CPU reference for op_resize (F.interpolate, align_corners=False)
 * and the per-axis tables the CUDA op shares. See ops_image.h.
 *
 * The index and weight arithmetic copies ATen (aten/src/ATen/native/UpSample.h:
 * area_pixel_compute_scale, area_pixel_compute_source_index,
 * guard_index_and_lambda, nearest_idx, get_cubic_upsample_coefficients;
 * cpu/UpSampleKernel.cpp: _compute_indices_min_size_weights_aa, aa_filter),
 * including which sub-expressions are evaluated in double (C++ promotion of
 * the `0.5` literals) and which in float, so the weights agree bit for bit.
 * Spec: conditioning.md Appendix A.
 */
#include "ops_image.h"
#include "log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* compute_scales_value: 1/scale_factor when one was given, else in/out (float). */
static float axis_scale(int n_in, int n_out, double scale)
{
    return scale > 0.0 ? (float)(1.0 / scale) : (float)n_in / (float)n_out;
}

/* cubic_convolution1/2 of UpSample.h, in float. */
static float cubic1(float x, float A)
{
    return ((A + 2) * x - (A + 3)) * x * x + 1;
}

static float cubic2(float x, float A)
{
    return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

static float aa_filter(enum op_resize_mode mode, float x)
{
    x = fabsf(x);
    if (mode == OP_RESIZE_BILINEAR_AA)
        return x < 1.0f ? 1.0f - x : 0.0f;
    if (x < 1.0f)
        return cubic1(x, -0.5f);
    if (x < 2.0f)
        return cubic2(x, -0.5f);
    return 0.0f;
}

/* support of the AA filter for this scale (float, as ATen stores it) */
static float aa_support(enum op_resize_mode mode, float scale)
{
    double half = mode == OP_RESIZE_BILINEAR_AA ? 1.0 : 2.0;   /* interp_size * 0.5 */

    return (float)(scale >= 1.0f ? half * scale : half);
}

int op_resize_max_taps(enum op_resize_mode mode, int n_in, int n_out)
{
    switch (mode) {
    case OP_RESIZE_NEAREST:
        return 1;
    case OP_RESIZE_BILINEAR:
        return 2;
    case OP_RESIZE_BICUBIC:
        return 4;
    case OP_RESIZE_BILINEAR_AA:
    case OP_RESIZE_BICUBIC_AA: {
        float scale = axis_scale(n_in, n_out, 0.0);
        /* ATen: (int64_t)ceil(support) * 2 + 1 */
        return (int)ceil(aa_support(mode, scale)) * 2 + 1;
    }
    }
    ASSERT(!"bad resize mode");
    return 0;
}

void op_resize_axis(enum op_resize_mode mode, int n_in, int n_out, double scale, int max_taps,
                    int *idx, int *cnt, float *wt)
{
    ASSERT(n_in >= 1 && n_out >= 1 && max_taps >= op_resize_max_taps(mode, n_in, n_out));
    ASSERT(scale == 0.0 || mode == OP_RESIZE_NEAREST || mode == OP_RESIZE_BILINEAR ||
           mode == OP_RESIZE_BICUBIC);
    float s = axis_scale(n_in, n_out, scale);

    for (int i = 0; i < n_out; i++) {
        float *w = wt + (size_t)i * max_taps;

        memset(w, 0, sizeof(*w) * (size_t)max_taps);
        switch (mode) {
        case OP_RESIZE_NEAREST: {                      /* nearest_idx */
            int src;
            if (n_out == n_in)
                src = i;
            else if (n_out == 2 * n_in)
                src = i >> 1;
            else {
                src = (int)floorf((float)i * s);
                src = src < n_in - 1 ? src : n_in - 1;
            }
            idx[i] = src;
            cnt[i] = 1;
            w[0] = 1.0f;
            break;
        }
        case OP_RESIZE_BILINEAR: {                     /* compute_source_index_and_lambda */
            if (n_out == n_in) {                       /* ATen copies (by size only) */
                idx[i] = i;
                cnt[i] = 1;
                w[0] = 1.0f;
                break;
            }
            float real = s * ((float)i + 0.5f) - 0.5f;
            real = real < 0.0f ? 0.0f : real;
            int i0 = (int)floorf(real);
            i0 = i0 < n_in - 1 ? i0 : n_in - 1;
            float l1 = real - (float)i0;
            l1 = l1 < 0.0f ? 0.0f : l1 > 1.0f ? 1.0f : l1;
            idx[i] = i0;                               /* tap 1 clamps to i0 at the end */
            cnt[i] = 2;
            w[0] = 1.0f - l1;
            w[1] = l1;
            break;
        }
        case OP_RESIZE_BICUBIC: {                      /* HelperInterpCubic, A = -0.75 */
            float real = s * ((float)i + 0.5f) - 0.5f; /* no clamp for cubic */
            int i0 = (int)floorf(real);
            i0 = i0 < n_in - 1 ? i0 : n_in - 1;
            float t = real - (float)i0;
            t = t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
            float x2 = (float)(1.0 - (double)t);
            idx[i] = i0;
            cnt[i] = 4;
            w[0] = cubic2((float)((double)t + 1.0), -0.75f);
            w[1] = cubic1(t, -0.75f);
            w[2] = cubic1(x2, -0.75f);
            w[3] = cubic2((float)((double)x2 + 1.0), -0.75f);
            break;
        }
        case OP_RESIZE_BILINEAR_AA:
        case OP_RESIZE_BICUBIC_AA: {                   /* _compute_indices_min_size_weights_aa */
            float support  = aa_support(mode, s);
            float center   = (float)((double)s * ((double)i + 0.5));
            float invscale = s >= 1.0f ? (float)(1.0 / (double)s) : 1.0f;
            int64_t xmin = (int64_t)((double)(center - support) + 0.5);
            xmin = xmin > 0 ? xmin : 0;
            int64_t xmax = (int64_t)((double)(center + support) + 0.5);
            int64_t xsize = (xmax < n_in ? xmax : n_in) - xmin;
            xsize = xsize < 0 ? 0 : xsize > max_taps ? max_taps : xsize;
            float total = 0.0f;
            for (int64_t j = 0; j < xsize; j++) {
                float arg = (float)(((double)((float)(j + xmin) - center) + 0.5) * (double)invscale);
                w[j] = aa_filter(mode, arg);
                total += w[j];
            }
            if (total != 0.0f)
                for (int64_t j = 0; j < xsize; j++)
                    w[j] /= total;
            idx[i] = (int)xmin;
            cnt[i] = (int)xsize;
            break;
        }
        }
    }
}

/* fp32 copy of (planes, H, W) input, U8 read as image_to_float */
static float *load_f32(const struct tensor *x, size_t n)
{
    float *f = malloc(sizeof(*f) * (n ? n : 1));
    ASSERT(f);
    if (x->dtype == DTYPE_U8) {
        const uint8_t *u = x->data;
        for (size_t i = 0; i < n; i++)
            f[i] = (float)((double)u[i] / 255.0);
    } else {
        dtype_convert(f, DTYPE_F32, x->data, x->dtype, n);
    }
    return f;
}

struct axis_tab {
    int    taps;
    int   *idx;
    int   *cnt;
    float *wt;
};

static void axis_tab_init(struct axis_tab *t, enum op_resize_mode mode, int n_in, int n_out,
                          double scale)
{
    t->taps = op_resize_max_taps(mode, n_in, n_out);
    t->idx = malloc(sizeof(int) * (size_t)n_out);
    t->cnt = malloc(sizeof(int) * (size_t)n_out);
    t->wt  = malloc(sizeof(float) * (size_t)n_out * (size_t)t->taps);
    ASSERT(t->idx && t->cnt && t->wt);
    op_resize_axis(mode, n_in, n_out, scale, t->taps, t->idx, t->cnt, t->wt);
}

static void axis_tab_free(struct axis_tab *t)
{
    free(t->idx);
    free(t->cnt);
    free(t->wt);
}

/* out[i] = sum_j w_j * in[tap_j * stride], ATen's running sum (first product, then +=). */
static inline float tap_sum(const struct axis_tab *t, enum op_resize_mode mode, int n_in, int i,
                            const float *in, size_t stride)
{
    const float *w = t->wt + (size_t)i * t->taps;
    int n = t->cnt[i];
    float acc = in[(size_t)op_resize_tap_index(mode, n_in, t->idx[i], 0) * stride] * w[0];

    for (int j = 1; j < n; j++)
        acc += in[(size_t)op_resize_tap_index(mode, n_in, t->idx[i], j) * stride] * w[j];
    return acc;
}

void op_resize_cpu(struct tensor *y, const struct tensor *x, enum op_resize_mode mode,
                   double scale_h, double scale_w)
{
    ASSERT(x->device == DEVICE_HOST && y->device == DEVICE_HOST);
    ASSERT(tensor_is_contiguous(x) && tensor_is_contiguous(y));
    ASSERT(op_dtype_ok(x->dtype) || x->dtype == DTYPE_U8);
    ASSERT(op_dtype_ok(y->dtype));
    ASSERT(x->ndim >= 2 && x->ndim == y->ndim);
    for (int d = 0; d < x->ndim - 2; d++)
        ASSERT(x->shape[d] == y->shape[d]);

    int H = (int)x->shape[x->ndim - 2], W = (int)x->shape[x->ndim - 1];
    int Ho = (int)y->shape[y->ndim - 2], Wo = (int)y->shape[y->ndim - 1];
    ASSERT(H >= 1 && W >= 1 && Ho >= 1 && Wo >= 1);
    int64_t P = tensor_numel(x) / ((int64_t)H * W);          /* planes */

    struct axis_tab th, tw;
    axis_tab_init(&th, mode, H, Ho, scale_h);
    axis_tab_init(&tw, mode, W, Wo, scale_w);

    float *in = load_f32(x, (size_t)(P * H * W));
    float *out = malloc(sizeof(*out) * (size_t)(P * Ho * Wo));
    ASSERT(out);
    bool aa = mode == OP_RESIZE_BILINEAR_AA || mode == OP_RESIZE_BICUBIC_AA;

    if (aa) {
        /* separable: W (if it changes), then H (if it changes), fp32 between */
        float *mid = in;
        if (Wo != W) {
            mid = malloc(sizeof(*mid) * (size_t)(P * H * Wo));
            ASSERT(mid);
            for (int64_t r = 0; r < P * H; r++)
                for (int j = 0; j < Wo; j++)
                    mid[r * Wo + j] = tap_sum(&tw, mode, W, j, in + r * W, 1);
        }
        for (int64_t p = 0; p < P; p++) {
            const float *src = mid + p * H * Wo;
            float *dst = out + p * Ho * Wo;
            if (Ho == H) {
                memcpy(dst, src, sizeof(*dst) * (size_t)(H * Wo));
                continue;
            }
            for (int i = 0; i < Ho; i++)
                for (int j = 0; j < Wo; j++)
                    dst[i * Wo + j] = tap_sum(&th, mode, H, i, src + j, (size_t)Wo);
        }
        if (mid != in)
            free(mid);
    } else {
        /* Interpolate<2>: outer sum over H taps of inner sums over W taps */
        for (int64_t p = 0; p < P; p++) {
            const float *src = in + p * H * W;
            float *dst = out + p * Ho * Wo;
            for (int i = 0; i < Ho; i++) {
                const float *wy = th.wt + (size_t)i * th.taps;
                for (int j = 0; j < Wo; j++) {
                    float acc = 0.0f;
                    for (int a = 0; a < th.cnt[i]; a++) {
                        int sy = op_resize_tap_index(mode, H, th.idx[i], a);
                        float t = tap_sum(&tw, mode, W, j, src + (size_t)sy * W, 1);
                        acc = a == 0 ? t * wy[0] : acc + t * wy[a];
                    }
                    dst[i * Wo + j] = acc;
                }
            }
        }
    }
    dtype_convert(y->data, y->dtype, out, DTYPE_F32, (size_t)(P * Ho * Wo));
    free(out);
    free(in);
    axis_tab_free(&th);
    axis_tab_free(&tw);
}
