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

/* Rows [i0, i1) of the full-resolution pass: bilinear (same nesting as
 * op_resize_cpu), exp remap, mask on the raw value. Pixels are independent, so
 * the row split across threads (par.h) does not change a bit. */
struct post_rows {
    const struct moge_geom *g;
    const float            *raw;
    const int              *ix, *iy;
    const float            *wx, *wy;
    int                     tw, th;
    float                  *pts;
    uint8_t                *mask;
};

static void post_rows(void *arg, int k, int64_t i0, int64_t i1)
{
    const struct post_rows *a = arg;
    int H = a->g->H, W = a->g->W, rh = a->g->rh, rw = a->g->rw, tw = a->tw, th = a->th;
    const int *ix = a->ix, *iy = a->iy;
    const float *wx = a->wx, *wy = a->wy;

    (void)k;
    for (int i = (int)i0; i < (int)i1; i++)
        for (int j = 0; j < W; j++) {
            float v[4];
            for (int c = 0; c < 4; c++) {
                const float *pl = a->raw + (size_t)c * rh * rw;
                float acc = 0.0f;
                for (int t = 0; t < iy[H + i]; t++) {
                    int sy = op_resize_tap_index(OP_RESIZE_BILINEAR, rh, iy[i], t);
                    const float *row = pl + (size_t)sy * rw;
                    float u = row[op_resize_tap_index(OP_RESIZE_BILINEAR, rw, ix[j], 0)] *
                              wx[(size_t)j * tw];
                    for (int b = 1; b < ix[W + j]; b++)
                        u += row[op_resize_tap_index(OP_RESIZE_BILINEAR, rw, ix[j], b)] *
                             wx[(size_t)j * tw + b];
                    acc = t == 0 ? u * wy[(size_t)i * th] : acc + u * wy[(size_t)i * th + t];
                }
                v[c] = acc;
            }
            float z = expf(v[2]);
            float *p = a->pts + ((size_t)i * W + j) * 3;
            p[0] = v[0] * z;
            p[1] = v[1] * z;
            p[2] = z;
            a->mask[(size_t)i * W + j] = v[3] > 0.5f;
        }
}

/* Pixels [q0, q1): z += shift; +inf (MoGe) / NaN after the camera flip (SAM 3D)
 * where invalid. */
struct post_flip {
    float         *pts, *out;
    const uint8_t *mask;
    float          shift;
};

static void post_flip(void *arg, int k, int64_t q0, int64_t q1)
{
    const struct post_flip *f = arg;

    (void)k;
    for (int64_t q = q0; q < q1; q++) {
        float *p = f->pts + 3 * q, *o = f->out + 3 * q;
        if (f->mask[q]) {
            p[2] = p[2] + f->shift;
            o[0] = -p[0];
            o[1] = -p[1];
            o[2] = p[2];
        } else {
            p[0] = p[1] = p[2] = INFINITY;
            o[0] = o[1] = o[2] = NAN;
        }
    }
}

void moge_postprocess(const struct moge_geom *g, const float *raw, const struct lm_opts *lm,
                      struct moge_result *r)
{
    int H = g->H, W = g->W, rh = g->rh, rw = g->rw;
    int tw = op_resize_max_taps(OP_RESIZE_BILINEAR, rw, W);
    int th = op_resize_max_taps(OP_RESIZE_BILINEAR, rh, H);
    int *ix = malloc(sizeof(int) * 2 * (size_t)W), *iy = malloc(sizeof(int) * 2 * (size_t)H);
    float *wx = malloc(sizeof(float) * (size_t)W * tw), *wy = malloc(sizeof(float) * (size_t)H * th);
    float *pts = r->points_moge ? r->points_moge : malloc(sizeof(float) * 3 * (size_t)H * W);
    ASSERT(ix && iy && wx && wy && pts);
    op_resize_axis(OP_RESIZE_BILINEAR, rw, W, 0.0, tw, ix, ix + W, wx);
    op_resize_axis(OP_RESIZE_BILINEAR, rh, H, 0.0, th, iy, iy + H, wy);

    struct post_rows pr = {g, raw, ix, iy, wx, wy, tw, th, pts, r->mask};
    par_for(H, 64, 0, post_rows, &pr);              /* S3D_THREADS, else every core */

    /* recover_focal_shift: 64x64 legacy-nearest samples of points, uv, mask */
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
            size_t q = (size_t)ni[i] * W + nj[j];
            if (!r->mask[q])
                continue;
            uv[2 * n] = moge_linspace(-ux, ux, W, nj[j]);
            uv[2 * n + 1] = moge_linspace(-vy, vy, H, ni[i]);
            memcpy(xyz + 3 * n, pts + 3 * q, sizeof(float) * 3);
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

    struct post_flip pf = {pts, r->pointmap, r->mask, r->shift};
    par_for((int64_t)H * W, (int64_t)1 << 16, 0, post_flip, &pf);
    free(uv);
    free(xyz);
    if (!r->points_moge)
        free(pts);
    free(ix);
    free(iy);
    free(wx);
    free(wy);
}
