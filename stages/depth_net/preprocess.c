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
 *
 * At full resolution (a 6000 x 4500 photo is 27 Mpixels) only what the outputs
 * need is computed, over all cores (par.h), with the same float operations in
 * the same order, so the outputs stay bit for bit those of the one-pass
 * reference: the image is read as uint8 through the v / 255.0 table instead of
 * a float copy; the mask as its 0/1 bytes; the point map's statistics use a
 * parallel exact selection (a radix histogram narrows the median to one bucket,
 * a quickselect finishes there); the normalisation (a per-point affine map) is
 * applied only to the pixels the nearest-neighbour resizes sample; the point
 * map may be read in place as (h, w, 3) (the depth stage's layout) or (3, h, w).
 */
#include "preprocess.h"

#include "dtype.h"
#include "err.h"
#include "log.h"
#include "par.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


// ---------------------------------------------------------------------------
// sources: a float plane, or one channel of an interleaved uint8 image read
// through a 256-entry table (image_to_float: float32(v / 255.0) computed in
// float64, PL/inference_pipeline.py:788-792; the mask: 0 or 1)

struct chan_src {
    const float   *f;        /* (h, w) plane, or NULL */
    const uint8_t *u8;       /* element i is u8[i * stride] */
    int            stride;
    const float   *lut;      /* (256) */
};

static inline float chan_at(const struct chan_src *s, size_t i)
{
    return s->f ? s->f[i] : s->lut[s->u8[i * (size_t)s->stride]];
}

static void lut_image(float lut[256])
{
    for (int v = 0; v < 256; v++)
        lut[v] = (float)((double)v / 255.0);
}

static void lut_mask(float lut[256])
{
    for (int v = 0; v < 256; v++)              /* mask * 255 as uint8, / 255 */
        lut[v] = (float)((double)(uint8_t)(v ? 255 : 0) / 255.0);
}

/* A point map: coordinate c of pixel i is p[c * cs + i * ps]. */
struct pm_src {
    const float *p;
    int64_t      cs, ps;
};

static inline float pm_at(const struct pm_src *m, int c, size_t i)
{
    return m->p[c * m->cs + (int64_t)i * m->ps];
}

// ---------------------------------------------------------------------------
// merge and bounding box

void prep_rgba_to_float(const struct image *rgb, const struct image *mask, float *rgb_chw,
                        float *alpha)
{
    size_t n = (size_t)rgb->w * rgb->h;
    float  li[256], lm[256];

    ASSERT(rgb->c == 3 && mask->c == 1 && mask->w == rgb->w && mask->h == rgb->h);
    lut_image(li);
    lut_mask(lm);
    for (size_t i = 0; i < n; i++) {
        for (int c = 0; c < 3; c++)                /* numpy: float64 divide, then float32 */
            rgb_chw[c * n + i] = li[rgb->data[3 * i + c]];
        alpha[i] = lm[mask->data[i]];
    }
}

/* The box of crop_around_mask_with_padding from the nonzero extent. */
static int bbox_from_extent(int min_x, int max_x, int min_y, int max_y, float box_size_factor,
                            int bbox[4])
{
    if (max_x < 0) {
        log_error("mask is empty: nothing to crop around (HINT: mark the object with nonzero "
                  "mask pixels)");
        return S3D_EINVAL;
    }
    /* TDFY/img_and_mask_transforms.py:370-389; check_bounding_box: w, h >= 2 */
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
    return 0;
}

/* The nonzero extent (torch.nonzero(mask)) of an (h, w) mask: min/max x, y;
 * max_x < 0 when empty. Rows are scanned in parallel, each range keeping its
 * own extent in ext[range], merged after. */
struct extent_job {
    const struct chan_src *m;
    int                    w, h, n_ranges;
    int                    ext[PAR_MAX_THREADS][4];    /* min_x, max_x, min_y, max_y */
};

static void extent_rows(void *arg, int k, int64_t lo, int64_t hi)
{
    struct extent_job *j = arg;
    int *e = j->ext[k];

    for (int64_t y = lo; y < hi; y++)
        for (int x = 0; x < j->w; x++)
            if (chan_at(j->m, (size_t)y * j->w + x) != 0.0f) {
                e[0] = x < e[0] ? x : e[0];
                e[1] = x > e[1] ? x : e[1];
                e[2] = (int)y < e[2] ? (int)y : e[2];
                e[3] = (int)y > e[3] ? (int)y : e[3];
            }
}

static int mask_bbox(const struct chan_src *m, int h, int w, float box_size_factor, int bbox[4])
{
    struct extent_job j = {.m = m, .w = w, .h = h};
    int mn[4] = {w, -1, h, -1};

    for (int k = 0; k < PAR_MAX_THREADS; k++) {
        j.ext[k][0] = w;
        j.ext[k][1] = -1;
        j.ext[k][2] = h;
        j.ext[k][3] = -1;
    }
    j.n_ranges = par_for(h, 64, 0, extent_rows, &j);
    for (int k = 0; k < j.n_ranges; k++) {
        mn[0] = j.ext[k][0] < mn[0] ? j.ext[k][0] : mn[0];
        mn[1] = j.ext[k][1] > mn[1] ? j.ext[k][1] : mn[1];
        mn[2] = j.ext[k][2] < mn[2] ? j.ext[k][2] : mn[2];
        mn[3] = j.ext[k][3] > mn[3] ? j.ext[k][3] : mn[3];
    }
    return bbox_from_extent(mn[0], mn[1], mn[2], mn[3], box_size_factor, bbox);
}

int prep_mask_bbox(const float *alpha, int h, int w, float box_size_factor, int bbox[4])
{
    struct chan_src m = {.f = alpha};

    return mask_bbox(&m, h, w, box_size_factor, bbox);
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

/* Lower medians of the non-NaN values of virtual arrays, exactly, over all
 * cores: a 16-bit radix histogram of order-preserving keys per range finds the
 * bucket holding each median, whose values are then gathered (in index order)
 * and finished by select_kth. One pass serves several arrays: the three
 * coordinates of the masked points (nv 3, for the shift), or the L-inf
 * distance of every point to the shift (nv 1; NaN when a coordinate is NaN:
 * torch.max propagates it). */
#define SEL_BITS 16
#define SEL_BINS (1 << SEL_BITS)

struct sel_job {
    const struct pm_src   *pm;
    const struct chan_src *m;
    const float           *shift;       /* (3), for nv 1 */
    int                    nv;
    uint32_t             (*hist)[3][SEL_BINS];            /* per range, per array */
    int64_t                finite[PAR_MAX_THREADS][3];
    uint32_t               bin[3];      /* pass 2: the bucket gathered per array */
    int64_t                off[PAR_MAX_THREADS][3];
    int64_t                nbuf[3];     /* values gathered per array */
    float                 *buf[3];
};

/* The values of point i (nv of them, or none for an unmasked point in the
 * shift pass); returns how many. */
static inline int sel_values(const struct sel_job *j, size_t i, float v[3])
{
    if (j->nv == 3) {
        if (!(chan_at(j->m, i) > 0.5f))                    /* sel = mask > 0.5 */
            return 0;
        for (int c = 0; c < 3; c++)
            v[c] = pm_at(j->pm, c, i);
        return 3;
    }
    v[0] = NAN;
    for (int c = 0; c < 3; c++) {
        float a = fabsf(pm_at(j->pm, c, i) - j->shift[c]);

        if (isnan(a))
            return 1;
        v[0] = c == 0 || a > v[0] ? a : v[0];
    }
    return 1;
}

/* Order-preserving key of a non-NaN float (both zeros share one key, as they
 * compare equal). */
static inline uint32_t sel_key(float v)
{
    uint32_t u;

    if (v == 0.0f)
        v = 0.0f;
    memcpy(&u, &v, sizeof(u));
    return u >> 31 ? ~u : u | 0x80000000u;
}

static void sel_hist(void *arg, int k, int64_t lo, int64_t hi)
{
    struct sel_job *j = arg;
    int64_t fin[3] = {0, 0, 0};
    float v[3];

    memset(j->hist[k], 0, sizeof(j->hist[0]));
    for (int64_t i = lo; i < hi; i++) {
        int n = sel_values(j, (size_t)i, v);

        for (int a = 0; a < n; a++) {
            if (isnan(v[a]))
                continue;
            fin[a] += isfinite(v[a]) != 0;
            j->hist[k][a][sel_key(v[a]) >> (32 - SEL_BITS)]++;
        }
    }
    memcpy(j->finite[k], fin, sizeof(fin));
}

static void sel_gather(void *arg, int k, int64_t lo, int64_t hi)
{
    struct sel_job *j = arg;
    int64_t o[3] = {j->off[k][0], j->off[k][1], j->off[k][2]};
    float v[3];

    for (int64_t i = lo; i < hi; i++) {
        int n = sel_values(j, (size_t)i, v);

        for (int a = 0; a < n; a++)
            if (!isnan(v[a]) && sel_key(v[a]) >> (32 - SEL_BITS) == j->bin[a])
                j->buf[a][o[a]++] = v[a];
    }
}

/* The medians of j's nv arrays over n points into med[]; n_finite[a]: how many
 * finite values array a had. */
static void sel_medians(struct sel_job *j, int64_t n, float med[3], int64_t n_finite[3])
{
    int nr = par_for(n, (int64_t)1 << 16, 0, sel_hist, j);
    int64_t target[3], below[3];

    for (int a = 0; a < j->nv; a++) {
        int64_t cnt = 0, m = 0;
        uint32_t b;

        n_finite[a] = 0;
        for (int k = 0; k < nr; k++) {
            n_finite[a] += j->finite[k][a];
            for (b = 0; b < SEL_BINS; b++)
                cnt += j->hist[k][a][b];
        }
        j->buf[a] = NULL;
        j->bin[a] = UINT32_MAX;                     /* nothing to gather */
        if (cnt == 0)
            continue;
        target[a] = (cnt - 1) / 2;                  /* torch: the lower middle value */
        below[a] = 0;
        for (b = 0; b < SEL_BINS; b++) {
            int64_t in = 0;

            for (int k = 0; k < nr; k++)
                in += j->hist[k][a][b];
            if (below[a] + in > target[a])
                break;
            below[a] += in;
        }
        for (int k = 0; k < nr; k++) {              /* where each range's values go */
            j->off[k][a] = m;
            m += j->hist[k][a][b];
        }
        j->bin[a] = b;
        j->nbuf[a] = m;
        j->buf[a] = malloc(sizeof(float) * (size_t)(m > 0 ? m : 1));
        ASSERT(j->buf[a]);
    }
    ASSERT(par_for(n, (int64_t)1 << 16, 0, sel_gather, j) == nr);   /* the same ranges */
    for (int a = 0; a < j->nv; a++) {
        med[a] = j->buf[a] ? select_kth(j->buf[a], j->nbuf[a], target[a] - below[a]) : NAN;
        free(j->buf[a]);
        j->buf[a] = NULL;
    }
}

static bool ssi_stats(const struct pm_src *pm, const struct chan_src *mask, int h, int w,
                      float scale[3], float shift[3])
{
    int64_t n = (int64_t)h * w, fin[3];
    struct sel_job j = {.pm = pm, .m = mask, .nv = 3};
    float d[3];

    j.hist = malloc(sizeof(*j.hist) * PAR_MAX_THREADS);
    ASSERT(j.hist);
    sel_medians(&j, n, shift, fin);                /* shift = nanmedian(mask_points) */
    if (fin[0] + fin[1] + fin[2] == 0) {           /* :550-554: no finite selected value */
        log_warn("no valid point under the mask; point-map scale 1, shift 0 (as the reference)");
        for (int c = 0; c < 3; c++) {
            scale[c] = 1.0f;
            shift[c] = 0.0f;
        }
        free(j.hist);
        return false;
    }
    j.nv = 1;                                      /* scene scale, :561-565 */
    j.shift = shift;
    sel_medians(&j, n, d, fin);
    scale[0] = scale[1] = scale[2] = d[0];
    free(j.hist);
    return true;
}

bool prep_ssi_stats(const float *pm, const float *alpha, int h, int w, float scale[3],
                    float shift[3])
{
    struct pm_src p = {pm, (int64_t)h * w, 1};
    struct chan_src m = {.f = alpha};

    return ssi_stats(&p, &m, h, w, scale, shift);
}

/* _apply_metric_to_ssi's factors: Transform3d().scale(s).translate(t).inverse():
 * Scale^-1 = 1/s (fp32), Translate^-1 = -t, composed (T^-1 S^-1) row 3 =
 * -t * r; transform_points multiplies [x y z 1] by it: x * r + 0 + 0 + (-t * r),
 * then / w (= 1). */
static void ssi_factors(const float scale[3], const float shift[3], float r[3], float t[3])
{
    for (int c = 0; c < 3; c++) {
        r[c] = 1.0f / scale[c];
        t[c] = -shift[c] * r[c];
    }
}

/* One point through the normalisation; NaN in any coordinate makes all three NaN
 * (NaN * 0 reaches every coordinate). */
static inline void ssi_point(float x, float y, float z, const float r[3], const float t[3],
                             float o[3])
{
    if (isnan(x) || isnan(y) || isnan(z)) {
        o[0] = o[1] = o[2] = NAN;
        return;
    }
    float px = x * r[0], py = y * r[1], pz = z * r[2];

    o[0] = px + t[0];
    o[1] = py + t[1];
    o[2] = pz + t[2];
}

void prep_ssi_apply(const float *src, float *dst, int64_t n, const float scale[3],
                    const float shift[3])
{
    float r[3], t[3], o[3];

    ssi_factors(scale, shift, r, t);
    for (int64_t i = 0; i < n; i++) {
        ssi_point(src[i], src[n + i], src[2 * n + i], r, t, o);
        dst[i] = o[0];
        dst[n + i] = o[1];
        dst[2 * n + i] = o[2];
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
static inline float window_at(const struct chan_src *src, int h, int w,
                              const struct prep_window *win, int vy, int vx, float pad)
{
    int cy = vy - win->py, cx = vx - win->px;
    int sy = cy + win->y0, sx = cx + win->x0;

    if (cy < 0 || cy >= win->ch || cx < 0 || cx >= win->cw)
        return pad;
    if (sy < 0 || sy >= h || sx < 0 || sx >= w)
        return 0.0f;
    return chan_at(src, (size_t)sy * w + sx);
}

struct aa_job {
    const struct chan_src    *src;
    int                       h, w, oh, ow;
    const struct prep_window *win;
    struct aa_axis            ax, ay;
    float                    *mid;      /* (vh, ow) after the W pass */
    float                    *dst;
};

static void aa_rows_w(void *arg, int k, int64_t lo, int64_t hi)   /* horizontal pass */
{
    const struct aa_job *j = arg;
    const struct prep_window *win = j->win;
    float *row = malloc(sizeof(float) * win->vw);

    (void)k;
    ASSERT(row);
    for (int64_t y = lo; y < hi; y++) {
        int cy = (int)y - win->py, sy = cy + win->y0;

        if (cy < 0 || cy >= win->ch || sy < 0 || sy >= j->h) {   /* all-zero row -> +0 */
            memset(j->mid + (size_t)y * j->ow, 0, sizeof(float) * j->ow);
            continue;
        }
        /* the row is 0 (padding, or outside the source) except where the crop
         * covers source pixels: virtual x in [xa, xb) is source pixel x - px + x0 */
        int xa = win->px + (win->x0 < 0 ? -win->x0 : 0);
        int xb = win->px + (win->cw < j->w - win->x0 ? win->cw : j->w - win->x0);
        const struct chan_src *src = j->src;
        size_t base = (size_t)sy * j->w - win->px + win->x0;

        xa = xa < 0 ? 0 : xa > win->vw ? win->vw : xa;
        xb = xb < xa ? xa : xb > win->vw ? win->vw : xb;
        memset(row, 0, sizeof(float) * (size_t)xa);
        memset(row + xb, 0, sizeof(float) * (size_t)(win->vw - xb));
        if (src->f)
            memcpy(row + xa, src->f + base + xa, sizeof(float) * (size_t)(xb - xa));
        else
            for (int x = xa; x < xb; x++)
                row[x] = src->lut[src->u8[(base + x) * (size_t)src->stride]];
        for (int i = 0; i < j->ow; i++)
            j->mid[(size_t)y * j->ow + i] = aa_dot(row + j->ax.xmin[i], 1,
                                                   j->ax.wt + (size_t)i * j->ax.max_taps,
                                                   j->ax.xsize[i]);
    }
    free(row);
}

static void aa_rows_h(void *arg, int k, int64_t lo, int64_t hi)   /* vertical pass */
{
    const struct aa_job *j = arg;

    (void)k;
    for (int64_t i = lo; i < hi; i++)
        for (int x = 0; x < j->ow; x++)
            j->dst[(size_t)i * j->ow + x] = aa_dot(j->mid + (size_t)j->ay.xmin[i] * j->ow + x,
                                                   j->ow, j->ay.wt + (size_t)i * j->ay.max_taps,
                                                   j->ay.xsize[i]);
}

static void resize_aa(const struct chan_src *src, int h, int w, const struct prep_window *win,
                      float *dst, int oh, int ow)
{
    struct aa_job j = {.src = src, .h = h, .w = w, .oh = oh, .ow = ow, .win = win, .dst = dst};

    j.mid = malloc(sizeof(float) * (size_t)win->vh * ow);
    ASSERT(j.mid);
    aa_axis_init(&j.ax, win->vw, ow);
    aa_axis_init(&j.ay, win->vh, oh);
    par_for(win->vh, 32, 0, aa_rows_w, &j);
    par_for(oh, 16, 0, aa_rows_h, &j);
    aa_axis_free(&j.ax);
    aa_axis_free(&j.ay);
    free(j.mid);
}

void prep_resize_aa(const float *src, int h, int w, const struct prep_window *win, float *dst,
                    int oh, int ow)
{
    struct chan_src s = {.f = src};

    resize_aa(&s, h, w, win, dst, oh, ow);
}

/* ATen nearest index (legacy 'nearest'): floorf(i * (float)in / out), clamped. */
static inline int nearest_src(int i, int n_in, int n_out)
{
    float   scale = (float)n_in / (float)n_out;
    int64_t s = (int64_t)floorf((float)i * scale);

    return (int)(s < n_in - 1 ? s : n_in - 1);
}

static void resize_nearest(const struct chan_src *src, int h, int w, const struct prep_window *win,
                           float pad, float *dst, int oh, int ow)
{
    for (int i = 0; i < oh; i++) {
        int vy = nearest_src(i, win->vh, oh);

        for (int j = 0; j < ow; j++)
            dst[(size_t)i * ow + j] = window_at(src, h, w, win, vy, nearest_src(j, win->vw, ow),
                                                pad);
    }
}

void prep_resize_nearest(const float *src, int h, int w, const struct prep_window *win, float pad,
                         float *dst, int oh, int ow)
{
    struct chan_src s = {.f = src};

    resize_nearest(&s, h, w, win, pad, dst, oh, ow);
}

/* The nearest resize of the NORMALISED point map, normalising only the pixels
 * it samples: the same values as prep_ssi_apply on the whole map then
 * prep_resize_nearest per channel (padding pad and the zero fill outside the
 * source are not normalised, as they are added after it). dst (3, oh, ow). */
static void resize_nearest_ssi(const struct pm_src *pm, int h, int w,
                               const struct prep_window *win, float pad, const float r[3],
                               const float t[3], float *dst, int oh, int ow)
{
    size_t ss = (size_t)oh * ow;

    for (int i = 0; i < oh; i++) {
        int vy = nearest_src(i, win->vh, oh), cy = vy - win->py, sy = cy + win->y0;

        for (int jx = 0; jx < ow; jx++) {
            int vx = nearest_src(jx, win->vw, ow), cx = vx - win->px, sx = cx + win->x0;
            size_t q = (size_t)i * ow + jx;
            float o[3];

            if (cy < 0 || cy >= win->ch || cx < 0 || cx >= win->cw) {
                o[0] = o[1] = o[2] = pad;
            } else if (sy < 0 || sy >= h || sx < 0 || sx >= w) {
                o[0] = o[1] = o[2] = 0.0f;
            } else {
                size_t p = (size_t)sy * w + sx;

                ssi_point(pm_at(pm, 0, p), pm_at(pm, 1, p), pm_at(pm, 2, p), r, t, o);
            }
            dst[q] = o[0];
            dst[ss + q] = o[1];
            dst[2 * ss + q] = o[2];
        }
    }
}

// ---------------------------------------------------------------------------
// the whole preprocessor

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

static int prep_core(const struct image *rgb, const struct image *mask, const struct pm_src *pm,
                     int size, struct prep_out *out)
{
    int    h = rgb->h, w = rgb->w, rc;
    size_t ss = (size_t)size * size;
    float  li[256], lm[256], r[3], t[3];

    memset(out, 0, sizeof(*out));
    if (mask->w != w || mask->h != h || rgb->c != 3 || mask->c != 1) {
        log_error("preprocess: mask is %dx%d(x%d) but the image is %dx%d(x%d) (HINT: give a "
                  "mask of the image's size)", mask->w, mask->h, mask->c, w, h, rgb->c);
        return S3D_ESHAPE;
    }
    ASSERT(size > 0);
    out->image = malloc(sizeof(float) * 3 * ss);
    out->mask = malloc(sizeof(float) * ss);
    out->rgb_image = malloc(sizeof(float) * 3 * ss);
    out->rgb_image_mask = malloc(sizeof(float) * ss);
    if (pm) {
        out->pointmap = malloc(sizeof(float) * 3 * ss);
        out->rgb_pointmap = malloc(sizeof(float) * 3 * ss);
    }
    if (!out->image || !out->mask || !out->rgb_image || !out->rgb_image_mask ||
        (pm && (!out->pointmap || !out->rgb_pointmap))) {
        log_error("preprocess: out of memory for a %dx%d image", w, h);
        rc = S3D_ENOMEM;
        goto out_free;
    }
    out->size = size;
    lut_image(li);
    lut_mask(lm);
    struct chan_src ch[3], alpha = {.u8 = mask->data, .stride = 1, .lut = lm};
    for (int c = 0; c < 3; c++)                    /* image_to_float, channel c */
        ch[c] = (struct chan_src){.u8 = rgb->data + c, .stride = 3, .lut = li};

    /* 1. the statistics of the full map (preprocessor.py:81-83); the normalisation
     *    itself is applied where the resizes sample (resize_nearest_ssi) */
    if (pm) {
        ssi_stats(pm, &alpha, h, w, out->pointmap_scale, out->pointmap_shift);
        ssi_factors(out->pointmap_scale, out->pointmap_shift, r, t);
    }

    /* 2. crop (img_and_mask_transforms.py:262-330), pad the crop to a square */
    if ((rc = mask_bbox(&alpha, h, w, PREP_BOX_SIZE_FACTOR, out->bbox)) != 0)
        goto out_free;
    {
        int                cw = out->bbox[2] - out->bbox[0], chh = out->bbox[3] - out->bbox[1];
        int                d = cw > chh ? cw : chh;
        struct prep_window win = {.vh = d, .vw = d, .py = (d - chh) / 2, .px = (d - cw) / 2,
                                  .ch = chh, .cw = cw, .y0 = out->bbox[1], .x0 = out->bbox[0]};

        for (int c = 0; c < 3; c++)
            resize_aa(&ch[c], h, w, &win, out->image + c * ss, size, size);
        resize_nearest(&alpha, h, w, &win, 0.0f, out->mask, size, size);
        if (pm)
            resize_nearest_ssi(pm, h, w, &win, NAN, r, t, out->pointmap, size, size);
    }

    /* 3. whole image: pad_to_square_centered (img_processing.py:110-136) + Resize */
    {
        int                d = h > w ? h : w;
        struct prep_window win = {.vh = d, .vw = d, .py = (d - h) / 2, .px = (d - w) / 2,
                                  .ch = h, .cw = w, .y0 = 0, .x0 = 0};

        for (int c = 0; c < 3; c++)
            resize_aa(&ch[c], h, w, &win, out->rgb_image + c * ss, size, size);
        resize_nearest(&alpha, h, w, &win, 0.0f, out->rgb_image_mask, size, size);
        if (pm)                                    /* padded with 0, not NaN */
            resize_nearest_ssi(pm, h, w, &win, 0.0f, r, t, out->rgb_pointmap, size, size);
    }
    rc = 0;
out_free:
    if (rc != 0)
        prep_out_free(out);
    return rc;
}

int prep_run(const struct image *rgb, const struct image *mask, const float *pointmap, int size,
             struct prep_out *out)
{
    struct pm_src pm = {pointmap, (int64_t)rgb->h * rgb->w, 1};

    return prep_core(rgb, mask, pointmap ? &pm : NULL, size, out);
}

int prep_run_hwc(const struct image *rgb, const struct image *mask, const float *points,
                 int size, struct prep_out *out)
{
    struct pm_src pm = {points, 1, 3};

    return prep_core(rgb, mask, points ? &pm : NULL, size, out);
}
