/*
 * moge_post.c - MoGe's output post-processing on the host. See moge.h.
 *
 * MG:moge/model/v1.py:282-297 (resize to (H, W) bilinear in fp32, exp remap),
 * :348-391 (mask > 0.5, recover_focal_shift, intrinsics, z += shift with
 * force_projection=False, +inf where invalid), then SAM 3D's camera
 * convention (PL/inference_pipeline_pointmap.py:26-41, 253-258): (-x, -y, z),
 * NaN where invalid (spec §3.2). The 64x64 nearest samples of
 * recover_focal_shift (MG:moge/utils/geometry_torch.py:115-170) are taken
 * from the full-resolution points at the legacy-nearest indices.
 */
#include "moge.h"

#include "lmsolve.h"
#include "log.h"
#include "par.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The full-resolution pass: bilinear (the nesting of op_resize_cpu: the W sum
 * u of each source row, then the H sum over the rows), exp remap, mask on the
 * raw value. Pixels are independent, so any split of the rows over threads
 * (par.h) and the caching of u rows below give the same bits. */
struct post_rows {
    const struct moge_geom *g;
    const float            *raw;
    const int              *ix, *iy;
    const float            *wx, *wy;
    int                     tw, th;
    float                   shift;
    float                  *out;    /* (H, W, 3): (-x, -y, z + shift), NaN invalid */
    float                  *pts;    /* optional (H, W, 3): MoGe's (x, y, z + shift), +inf */
    uint8_t                *mask;
};

/* u of source row sy, channel plane pl, output columns [j0, j1) into u. */
static void post_urow(const struct post_rows *a, const float *pl, int sy, int j0, int j1, float *u)
{
    int rw = a->g->rw, W = a->g->W, tw = a->tw;
    const float *row = pl + (size_t)sy * rw;

    for (int j = j0; j < j1; j++) {
        const float *w = a->wx + (size_t)j * tw;
        float v = row[op_resize_tap_index(OP_RESIZE_BILINEAR, rw, a->ix[j], 0)] * w[0];
        for (int b = 1; b < a->ix[W + j]; b++)
            v += row[op_resize_tap_index(OP_RESIZE_BILINEAR, rw, a->ix[j], b)] * w[b];
        u[j - j0] = v;
    }
}

/* The 4 channels of pixel (i, j) before the remap (the sampled pixels of
 * recover_focal_shift; the same arithmetic as post_rows). */
static void post_pixel(const struct post_rows *a, int i, int j, float v[4])
{
    int H = a->g->H, rh = a->g->rh, rw = a->g->rw, th = a->th;

    for (int c = 0; c < 4; c++) {
        const float *pl = a->raw + (size_t)c * rh * rw;
        float acc = 0.0f, u;
        for (int t = 0; t < a->iy[H + i]; t++) {
            post_urow(a, pl, op_resize_tap_index(OP_RESIZE_BILINEAR, rh, a->iy[i], t), j, j + 1,
                      &u);
            acc = t == 0 ? u * a->wy[(size_t)i * th] : acc + u * a->wy[(size_t)i * th + t];
        }
        v[c] = acc;
    }
}

/* Rows [i0, i1): each output row reads th source rows, whose u rows (4 channels x
 * W) are kept in th cache slots, so consecutive output rows of an upsampling
 * (6000 x 4500 from ~600 x 450) reuse them instead of recomputing the W sums. */
static void post_rows(void *arg, int k, int64_t i0, int64_t i1)
{
    const struct post_rows *a = arg;
    int H = a->g->H, W = a->g->W, rh = a->g->rh, rw = a->g->rw, th = a->th;
    float *cache = malloc(sizeof(float) * 4 * (size_t)W * th);
    int key[8];

    (void)k;
    ASSERT(cache && th <= 8);
    for (int s = 0; s < th; s++)
        key[s] = -1;
    for (int i = (int)i0; i < (int)i1; i++) {
        int n = a->iy[H + i], slot[8];
        const float *wy = a->wy + (size_t)i * th;
        for (int t = 0; t < n; t++) {                 /* the rows this output row reads */
            int sy = op_resize_tap_index(OP_RESIZE_BILINEAR, rh, a->iy[i], t);
            slot[t] = -1;
            for (int s = 0; s < th; s++)
                if (key[s] == sy)
                    slot[t] = s;
        }
        for (int t = 0; t < n; t++) {                 /* fill the missing ones */
            if (slot[t] >= 0)
                continue;
            int sy = op_resize_tap_index(OP_RESIZE_BILINEAR, rh, a->iy[i], t), free_s = -1;
            for (int s = 0; s < th && free_s < 0; s++) {
                bool used = false;
                for (int u = 0; u < n; u++)
                    used |= slot[u] == s;
                if (!used)
                    free_s = s;
            }
            for (int c = 0; c < 4; c++)
                post_urow(a, a->raw + (size_t)c * rh * rw, sy, 0, W,
                          cache + ((size_t)free_s * 4 + c) * W);
            key[free_s] = sy;
            slot[t] = free_s;
        }
        float *out = a->out + (size_t)i * W * 3, *pts = a->pts ? a->pts + (size_t)i * W * 3 : NULL;
        uint8_t *mask = a->mask + (size_t)i * W;
        for (int j = 0; j < W; j++) {
            float v[4];
            for (int c = 0; c < 4; c++) {
                float acc = cache[((size_t)slot[0] * 4 + c) * W + j] * wy[0];
                for (int t = 1; t < n; t++)
                    acc = acc + cache[((size_t)slot[t] * 4 + c) * W + j] * wy[t];
                v[c] = acc;
            }
            float z = expf(v[2]), x = v[0] * z, y = v[1] * z;
            bool ok = v[3] > 0.5f;
            mask[j] = ok;
            if (ok) {
                z = z + a->shift;
                out[3 * j] = -x;
                out[3 * j + 1] = -y;
                out[3 * j + 2] = z;
            } else {
                out[3 * j] = out[3 * j + 1] = out[3 * j + 2] = NAN;
                x = y = z = INFINITY;
            }
            if (pts) {
                pts[3 * j] = x;
                pts[3 * j + 1] = y;
                pts[3 * j + 2] = z;
            }
        }
    }
    free(cache);
}

void moge_postprocess(const struct moge_geom *g, const float *raw, const struct lm_opts *lm,
                      struct moge_result *r)
{
    int H = g->H, W = g->W, rh = g->rh, rw = g->rw;
    int tw = op_resize_max_taps(OP_RESIZE_BILINEAR, rw, W);
    int th = op_resize_max_taps(OP_RESIZE_BILINEAR, rh, H);
    int *ix = malloc(sizeof(int) * 2 * (size_t)W), *iy = malloc(sizeof(int) * 2 * (size_t)H);
    float *wx = malloc(sizeof(float) * (size_t)W * tw), *wy = malloc(sizeof(float) * (size_t)H * th);
    ASSERT(ix && iy && wx && wy);
    op_resize_axis(OP_RESIZE_BILINEAR, rw, W, 0.0, tw, ix, ix + W, wx);
    op_resize_axis(OP_RESIZE_BILINEAR, rh, H, 0.0, th, iy, iy + H, wy);
    struct post_rows pr = {g, raw, ix, iy, wx, wy, tw, th, 0.0f, r->pointmap, r->points_moge,
                           r->mask};

    /* recover_focal_shift: 64x64 legacy-nearest samples of points, uv, mask, computed
     * alone first (the same arithmetic as the full pass), so that the full-resolution
     * pass runs once, with the shift known */
    double a = (double)W / (double)H;
    double sx = a / sqrt(1 + a * a), sy = 1 / sqrt(1 + a * a);
    double ux = sx * (W - 1) / W, vy = sy * (H - 1) / H;
    int ni[64], nj[64], cnt[64];
    float one[64];
    op_resize_axis(OP_RESIZE_NEAREST, H, 64, 0.0, 1, ni, cnt, one);
    op_resize_axis(OP_RESIZE_NEAREST, W, 64, 0.0, 1, nj, cnt, one);
    float *uv = malloc(sizeof(float) * 2 * 4096), *xyz = malloc(sizeof(float) * 3 * 4096);
    ASSERT(uv && xyz);
    int n = 0;
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++) {
            float v[4];
            post_pixel(&pr, ni[i], nj[j], v);
            if (!(v[3] > 0.5f))
                continue;
            float z = expf(v[2]);
            uv[2 * n] = moge_linspace(-ux, ux, W, nj[j]);
            uv[2 * n + 1] = moge_linspace(-vy, vy, H, ni[i]);
            xyz[3 * n] = v[0] * z;
            xyz[3 * n + 1] = v[1] * z;
            xyz[3 * n + 2] = z;
            n++;
        }
    struct lm_result lr;
    lm_focal_shift(uv, xyz, n, lm, &lr);
    r->focal = lr.focal;
    r->shift = lr.shift;
    log_debug("depth: focal %.6g shift %.6g from %d samples (LM info %d, %d evaluations)",
              lr.focal, lr.shift, n, lr.info, lr.nfev);

    /* intrinsics (v1.py:360-362; utils3d intrinsics_from_focal_center), fp32 */
    float af = (float)a;
    float diag = sqrtf(1.0f + af * af);
    memset(r->intrinsics, 0, sizeof(r->intrinsics));
    r->intrinsics[0] = r->focal / 2 * diag / af;
    r->intrinsics[4] = r->focal / 2 * diag;
    r->intrinsics[2] = 0.5f;
    r->intrinsics[5] = 0.5f;
    r->intrinsics[8] = 1.0f;

    /* one full-resolution pass straight into the caller's outputs */
    pr.shift = r->shift;
    par_for(H, 64, 0, post_rows, &pr);              /* S3D_THREADS, else every core */
    free(uv);
    free(xyz);
    free(ix);
    free(iy);
    free(wx);
    free(wy);
}
