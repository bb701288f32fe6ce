/*
 * preprocess.c - SAM 3D input preprocessing (see preprocess.h), bit-exact with
 * the official CPU path.
 *
 * Citations: TDFY = .ref/sam-3d-objects/sam3d_objects/data/dataset/tdfy/,
 * PL = .ref/sam-3d-objects/sam3d_objects/pipeline/, ATEN = PyTorch
 * aten/src/ATen/native/cpu/UpSampleKernel.cpp (and UpSample.h).
 *
 * Order of operations (TDFY/preprocessor.py:75-142 with the released config):
 *   1. normalise the full-resolution point map (ObjectCentricSSI) -> scale, shift
 *   2. crop rgb, mask and the normalised map around the mask (x1.2), pad the
 *      crop to a square (0 for rgb/mask, NaN for the map), then
 *      pad_to_square_centered (no-op) + Resize(S): AA bilinear / nearest
 *   3. the full image, mask and normalised map: pad_to_square_centered (0 for
 *      all three, the map included) + Resize(S)
 * The rgb_pointmap normaliser reuses step 1's scale and shift
 * (allow_scale_and_shift_override), so its output equals step 1's map; we skip
 * its discarded statistics (which crash the reference when the re-sampled mask
 * selects no pixel, spec §5.1 step 6).
 */
#include "preprocess.h"

#include "err.h"
#include "log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// merge and bounding box

void prep_rgba_to_float(const struct image *rgb, const struct image *mask, float *rgb_chw,
                        float *alpha)
{
    size_t n = (size_t)rgb->w * rgb->h;

    ASSERT(rgb->c == 3 && mask->c == 1 && mask->w == rgb->w && mask->h == rgb->h);
    for (size_t i = 0; i < n; i++) {
        for (int c = 0; c < 3; c++)                /* numpy: float64 divide, then float32 */
            rgb_chw[c * n + i] = (float)((double)rgb->data[3 * i + c] / 255.0);
        alpha[i] = (float)((double)(uint8_t)(mask->data[i] ? 255 : 0) / 255.0);
    }
}

int prep_mask_bbox(const float *alpha, int h, int w, float box_size_factor, int bbox[4])
{
    int min_x = w, min_y = h, max_x = -1, max_y = -1;

    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (alpha[(size_t)y * w + x] != 0.0f) {   /* torch.nonzero(mask) */
                min_x = x < min_x ? x : min_x;
                max_x = x > max_x ? x : max_x;
                min_y = y < min_y ? y : min_y;
                max_y = y > max_y ? y : max_y;
            }
    if (max_x < 0) {
        log_error("mask is empty: nothing to crop around (HINT: mark the object with nonzero "
                  "mask pixels)");
        return S3D_EINVAL;
    }
    /* TDFY/img_and_mask_transforms.py:370-389; check_bounding_box: w, h >= 2 */
    {
        double cx = (min_x + max_x) / 2.0;
        double cy = (min_y + max_y) / 2.0;
        int    bw = max_x - min_x;
        int    bh = max_y - min_y;
        int    size, half;

        if (bw < 2 || bh < 2) {
            log_error("the object in the mask spans %dx%d pixels; the reference needs at "
                      "least 3x3 (its box, max - min, must be 2 or more each way, else "
                      "BoundingBoxError) (HINT: mark an object at least 3 pixels wide and "
                      "high in the mask)", bw + 1, bh + 1);
            return S3D_EINVAL;
        }
        size = bw > bh ? bw : bh;
        size = size > 2 ? size : 2;
        size = (int)(size * (double)box_size_factor);  /* python: int(size * 1.2) */
        half = size / 2;
        bbox[0] = (int)(cx - half);                     /* int(): toward zero */
        bbox[1] = (int)(cy - half);
        bbox[2] = (int)(cx + half);
        bbox[3] = (int)(cy + half);
    }
    return 0;
}

// ---------------------------------------------------------------------------
// ObjectCentricSSI (TDFY/img_and_mask_transforms.py:519-615)

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;

    return (x > y) - (x < y);
}

/* k-th smallest of x[0..n) (quickselect; x reordered). */
static float select_kth(float *x, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;

    while (hi - lo > 16) {
        float   p = x[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;

        while (i <= j) {
            while (x[i] < p)
                i++;
            while (x[j] > p)
                j--;
            if (i <= j) {
                float t = x[i];

                x[i++] = x[j];
                x[j--] = t;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return x[k];
    }
    qsort(x + lo, (size_t)(hi - lo + 1), sizeof(float), cmp_float);
    return x[k];
}

float prep_nanmedian(float *x, int64_t n)
{
    int64_t k = 0;

    for (int64_t i = 0; i < n; i++)               /* compact the non-NaN values */
        if (!isnan(x[i]))
            x[k++] = x[i];
    if (k == 0)
        return NAN;
    return select_kth(x, k, (k - 1) / 2);          /* torch: the lower middle value */
}

bool prep_ssi_stats(const float *pm, const float *alpha, int h, int w, float scale[3],
                    float shift[3])
{
    int64_t n = (int64_t)h * w, k = 0;
    float  *buf = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    bool    any_finite = false;

    ASSERT(buf);
    for (int64_t i = 0; i < n; i++)                /* sel = mask > 0.5 */
        if (alpha[i] > 0.5f)
            for (int c = 0; c < 3; c++)
                any_finite |= isfinite(pm[c * n + i]) != 0;
    if (!any_finite) {                             /* :550-554 */
        log_warn("no valid point under the mask; point-map scale 1, shift 0 (as the reference)");
        for (int c = 0; c < 3; c++) {
            scale[c] = 1.0f;
            shift[c] = 0.0f;
        }
        free(buf);
        return false;
    }
    for (int c = 0; c < 3; c++) {                  /* shift = nanmedian(mask_points) */
        k = 0;
        for (int64_t i = 0; i < n; i++)
            if (alpha[i] > 0.5f)
                buf[k++] = pm[c * n + i];
        shift[c] = prep_nanmedian(buf, k);
    }
    for (int64_t i = 0; i < n; i++) {              /* scene scale, :561-565 */
        float d = NAN;

        for (int c = 0; c < 3; c++) {
            float a = fabsf(pm[c * n + i] - shift[c]);

            if (isnan(a)) {                        /* torch.max propagates NaN */
                d = NAN;
                break;
            }
            d = c == 0 || a > d ? a : d;
        }
        buf[i] = d;
    }
    scale[0] = scale[1] = scale[2] = prep_nanmedian(buf, n);
    free(buf);
    return true;
}

void prep_ssi_apply(const float *src, float *dst, int64_t n, const float scale[3],
                    const float shift[3])
{
    float r[3], t[3];

    /* Transform3d().scale(s).translate(t).inverse(): Scale^-1 = 1/s (fp32),
     * Translate^-1 = -t, composed (T^-1 S^-1) row 3 = -t * r; transform_points
     * multiplies [x y z 1] by it: x * r + 0 + 0 + (-t * r), then / w (= 1). */
    for (int c = 0; c < 3; c++) {
        r[c] = 1.0f / scale[c];
        t[c] = -shift[c] * r[c];
    }
    for (int64_t i = 0; i < n; i++) {
        float x = src[i], y = src[n + i], z = src[2 * n + i];

        if (isnan(x) || isnan(y) || isnan(z)) {    /* NaN * 0 reaches every coordinate */
            dst[i] = dst[n + i] = dst[2 * n + i] = NAN;
            continue;
        }
        float px = x * r[0], py = y * r[1], pz = z * r[2];

        dst[i] = px + t[0];
        dst[n + i] = py + t[1];
        dst[2 * n + i] = pz + t[2];
    }
}

// ---------------------------------------------------------------------------
// resampling (ATen semantics, spec Appendix A)

/* Antialiased bilinear taps for one axis, as ATen's
 * HelperInterpBase::_compute_indices_min_size_weights_aa with scalar_t float:
 * the mixed float/double expressions below reproduce its promotions. */
struct aa_axis {
    int    max_taps;
    int   *xmin;    /* (n_out) */
    int   *xsize;   /* (n_out) */
    float *wt;      /* (n_out, max_taps) */
};

static float aa_triangle(float x)
{
    x = fabsf(x);
    return x < 1.0f ? (float)(1.0 - (double)x) : 0.0f;
}

static void aa_axis_init(struct aa_axis *a, int n_in, int n_out)
{
    float scale = (float)n_in / (float)n_out;     /* area_pixel_compute_scale<float> */
    float support = scale >= 1.0f ? (float)(1.0 * scale) : 1.0f;
    float invscale = scale >= 1.0f ? (float)(1.0 / scale) : 1.0f;

    a->max_taps = (int)ceil(support) * 2 + 1;
    a->xmin = malloc(sizeof(int) * n_out);
    a->xsize = malloc(sizeof(int) * n_out);
    a->wt = calloc((size_t)n_out * a->max_taps, sizeof(float));
    ASSERT(a->xmin && a->xsize && a->wt);
    for (int i = 0; i < n_out; i++) {
        float   center = (float)(scale * (i + 0.5));
        float   total = 0.0f;
        float  *w = a->wt + (size_t)i * a->max_taps;
        int64_t xmin = (int64_t)((double)(center - support) + 0.5);
        int64_t xmax = (int64_t)((double)(center + support) + 0.5);
        int64_t xsize;

        xmin = xmin > 0 ? xmin : 0;
        xsize = (xmax < n_in ? xmax : n_in) - xmin;
        xsize = xsize < 0 ? 0 : xsize > a->max_taps ? a->max_taps : xsize;
        for (int64_t j = 0; j < xsize; j++) {
            float d = (float)(j + xmin) - center;

            w[j] = aa_triangle((float)(((double)d + 0.5) * invscale));
            total += w[j];
        }
        if (total != 0.0f)
            for (int64_t j = 0; j < xsize; j++)
                w[j] /= total;
        a->xmin[i] = (int)xmin;
        a->xsize[i] = (int)xsize;
    }
}

static void aa_axis_free(struct aa_axis *a)
{
    free(a->xmin);
    free(a->xsize);
    free(a->wt);
}

/* sum_j v[j * stride] * w[j] in ATen's order: out = v0 * w0, then += v_j * w_j.
 * The AVX2 build of ATen auto-vectorises that loop four products at a time:
 * the first 4 * floor((L - 1) / 4) terms after v0 * w0 are rounded products
 * added in order, the remaining (L - 1) % 4 are fused multiply-adds. Verified
 * bit-exact against torch 2.15 (ATEN_CPU_CAPABILITY=avx2); other capabilities
 * differ by at most an ulp. */
static inline float aa_dot(const float *v, int64_t stride, const float *w, int n)
{
    int   nplain = ((n - 1) / 4) * 4;
    float acc = v[0] * w[0];

    for (int j = 1; j < n; j++) {
        if (j <= nplain) {
            float p = v[j * stride] * w[j];        /* separate statement: never contracted */

            acc = acc + p;
        } else {
            acc = fmaf(v[j * stride], w[j], acc);
        }
    }
    return acc;
}

/* Virtual pixel (vy, vx) of win (see preprocess.h); pad outside the crop. */
static inline float window_at(const float *src, int h, int w, const struct prep_window *win,
                              int vy, int vx, float pad)
{
    int cy = vy - win->py, cx = vx - win->px;
    int sy = cy + win->y0, sx = cx + win->x0;

    if (cy < 0 || cy >= win->ch || cx < 0 || cx >= win->cw)
        return pad;
    if (sy < 0 || sy >= h || sx < 0 || sx >= w)
        return 0.0f;
    return src[(size_t)sy * w + sx];
}

void prep_resize_aa(const float *src, int h, int w, const struct prep_window *win, float *dst,
                    int oh, int ow)
{
    int            vh = win->vh, vw = win->vw;
    struct aa_axis ax, ay;
    float         *row = malloc(sizeof(float) * vw);
    float         *mid = malloc(sizeof(float) * (size_t)vh * ow);   /* (vh, ow) after the W pass */

    ASSERT(row && mid);
    aa_axis_init(&ax, vw, ow);
    aa_axis_init(&ay, vh, oh);
    for (int y = 0; y < vh; y++) {                 /* horizontal pass (contiguous dim first) */
        int cy = y - win->py, sy = cy + win->y0;

        if (cy < 0 || cy >= win->ch || sy < 0 || sy >= h) {   /* all-zero row -> +0 */
            memset(mid + (size_t)y * ow, 0, sizeof(float) * ow);
            continue;
        }
        for (int x = 0; x < vw; x++)
            row[x] = window_at(src, h, w, win, y, x, 0.0f);
        for (int i = 0; i < ow; i++)
            mid[(size_t)y * ow + i] = aa_dot(row + ax.xmin[i], 1, ax.wt + (size_t)i * ax.max_taps,
                                             ax.xsize[i]);
    }
    for (int i = 0; i < oh; i++)                   /* vertical pass */
        for (int x = 0; x < ow; x++)
            dst[(size_t)i * ow + x] = aa_dot(mid + (size_t)ay.xmin[i] * ow + x, ow,
                                             ay.wt + (size_t)i * ay.max_taps, ay.xsize[i]);
    aa_axis_free(&ax);
    aa_axis_free(&ay);
    free(row);
    free(mid);
}

/* ATen nearest index (legacy 'nearest'): floorf(i * (float)in / out), clamped. */
static inline int nearest_src(int i, int n_in, int n_out)
{
    float   scale = (float)n_in / (float)n_out;
    int64_t s = (int64_t)floorf((float)i * scale);

    return (int)(s < n_in - 1 ? s : n_in - 1);
}

void prep_resize_nearest(const float *src, int h, int w, const struct prep_window *win, float pad,
                         float *dst, int oh, int ow)
{
    for (int i = 0; i < oh; i++) {
        int vy = nearest_src(i, win->vh, oh);

        for (int j = 0; j < ow; j++)
            dst[(size_t)i * ow + j] = window_at(src, h, w, win, vy, nearest_src(j, win->vw, ow), pad);
    }
}

// ---------------------------------------------------------------------------
// the whole preprocessor

void prep_out_free(struct prep_out *out)
{
    if (!out)
        return;
    free(out->image);
    free(out->mask);
    free(out->rgb_image);
    free(out->rgb_image_mask);
    free(out->pointmap);
    free(out->rgb_pointmap);
    memset(out, 0, sizeof(*out));
}

int prep_run(const struct image *rgb, const struct image *mask, const float *pointmap, int size,
             struct prep_out *out)
{
    int     h = rgb->h, w = rgb->w, rc;
    size_t  n = (size_t)h * w, ss = (size_t)size * size;
    float  *rgbf = NULL, *alpha = NULL, *pmn = NULL;

    memset(out, 0, sizeof(*out));
    if (mask->w != w || mask->h != h || rgb->c != 3 || mask->c != 1) {
        log_error("preprocess: mask is %dx%d(x%d) but the image is %dx%d(x%d) (HINT: give a "
                  "mask of the image's size)", mask->w, mask->h, mask->c, w, h, rgb->c);
        return S3D_ESHAPE;
    }
    ASSERT(size > 0);
    rgbf = malloc(sizeof(float) * 3 * n);
    alpha = malloc(sizeof(float) * n);
    out->image = malloc(sizeof(float) * 3 * ss);
    out->mask = malloc(sizeof(float) * ss);
    out->rgb_image = malloc(sizeof(float) * 3 * ss);
    out->rgb_image_mask = malloc(sizeof(float) * ss);
    if (pointmap) {
        pmn = malloc(sizeof(float) * 3 * n);
        out->pointmap = malloc(sizeof(float) * 3 * ss);
        out->rgb_pointmap = malloc(sizeof(float) * 3 * ss);
    }
    if (!rgbf || !alpha || !out->image || !out->mask || !out->rgb_image || !out->rgb_image_mask ||
        (pointmap && (!pmn || !out->pointmap || !out->rgb_pointmap))) {
        log_error("preprocess: out of memory for a %dx%d image", w, h);
        rc = S3D_ENOMEM;
        goto out_free;
    }
    out->size = size;
    prep_rgba_to_float(rgb, mask, rgbf, alpha);

    /* 1. normalise the full map (preprocessor.py:81-83) */
    if (pointmap) {
        prep_ssi_stats(pointmap, alpha, h, w, out->pointmap_scale, out->pointmap_shift);
        prep_ssi_apply(pointmap, pmn, (int64_t)n, out->pointmap_scale, out->pointmap_shift);
    }

    /* 2. crop (img_and_mask_transforms.py:262-330), pad the crop to a square */
    if ((rc = prep_mask_bbox(alpha, h, w, PREP_BOX_SIZE_FACTOR, out->bbox)) != 0)
        goto out_free;
    {
        int                cw = out->bbox[2] - out->bbox[0], ch = out->bbox[3] - out->bbox[1];
        int                d = cw > ch ? cw : ch;
        struct prep_window win = {.vh = d, .vw = d, .py = (d - ch) / 2, .px = (d - cw) / 2,
                                  .ch = ch, .cw = cw, .y0 = out->bbox[1], .x0 = out->bbox[0]};

        for (int c = 0; c < 3; c++)
            prep_resize_aa(rgbf + c * n, h, w, &win, out->image + c * ss, size, size);
        prep_resize_nearest(alpha, h, w, &win, 0.0f, out->mask, size, size);
        for (int c = 0; pointmap && c < 3; c++)
            prep_resize_nearest(pmn + c * n, h, w, &win, NAN, out->pointmap + c * ss, size, size);
    }

    /* 3. whole image: pad_to_square_centered (img_processing.py:110-136) + Resize */
    {
        int                d = h > w ? h : w;
        struct prep_window win = {.vh = d, .vw = d, .py = (d - h) / 2, .px = (d - w) / 2,
                                  .ch = h, .cw = w, .y0 = 0, .x0 = 0};

        for (int c = 0; c < 3; c++)
            prep_resize_aa(rgbf + c * n, h, w, &win, out->rgb_image + c * ss, size, size);
        prep_resize_nearest(alpha, h, w, &win, 0.0f, out->rgb_image_mask, size, size);
        for (int c = 0; pointmap && c < 3; c++)         /* padded with 0, not NaN */
            prep_resize_nearest(pmn + c * n, h, w, &win, 0.0f, out->rgb_pointmap + c * ss, size,
                                size);
    }
    rc = 0;
out_free:
    free(rgbf);
    free(alpha);
    free(pmn);
    if (rc != 0)
        prep_out_free(out);
    return rc;
}
