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

#include <math.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MOGE_POST_THREADS 16

/* Rows [i0, i1) of the full-resolution pass: bilinear (same nesting as
 * op_resize_cpu), exp remap, mask on the raw value. Pixels are independent, so
 * the row split across threads does not change a bit. */
struct post_rows {
    const struct moge_geom *g;
    const float            *raw;
    const int              *ix, *iy;
    const float            *wx, *wy;
    int                     tw, th;
    float                  *pts;
    uint8_t                *mask;
    int                     i0, i1;
};

static void *post_rows(void *arg)
{
    const struct post_rows *a = arg;
    int H = a->g->H, W = a->g->W, rh = a->g->rh, rw = a->g->rw, tw = a->tw, th = a->th;
    const int *ix = a->ix, *iy = a->iy;
    const float *wx = a->wx, *wy = a->wy;

    for (int i = a->i0; i < a->i1; i++)
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
    return NULL;
}

/* Threads for the full-resolution pass: the online cores, or env S3D_THREADS
 * (at most MOGE_POST_THREADS), at least 64 rows each. */
static int post_threads(int H)
{
    const char *env = getenv("S3D_THREADS");
    long n = env && atoi(env) > 0 ? atol(env) : sysconf(_SC_NPROCESSORS_ONLN);
    n = n < 1 ? 1 : n > MOGE_POST_THREADS ? MOGE_POST_THREADS : n;
    return (int)(n > H / 64 ? (H / 64 > 1 ? H / 64 : 1) : n);
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

    int nt = post_threads(H);
    pthread_t tid[MOGE_POST_THREADS];
    bool started[MOGE_POST_THREADS] = {false};
    struct post_rows part[MOGE_POST_THREADS];
    for (int k = 0; k < nt; k++)
        part[k] = (struct post_rows){g, raw, ix, iy, wx, wy, tw, th, pts, r->mask,
                                     (int)((int64_t)H * k / nt), (int)((int64_t)H * (k + 1) / nt)};
    for (int k = 1; k < nt; k++)
        started[k] = pthread_create(&tid[k], NULL, post_rows, &part[k]) == 0;
    for (int k = 0; k < nt; k++)
        if (!started[k])
            post_rows(&part[k]);           /* part 0, and any part without a thread */
    for (int k = 1; k < nt; k++)
        if (started[k])
            pthread_join(tid[k], NULL);

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

    /* z += shift; +inf (MoGe) / NaN after the camera flip (SAM 3D) where invalid */
    for (size_t q = 0; q < (size_t)H * W; q++) {
        float *p = pts + 3 * q, *o = r->pointmap + 3 * q;
        if (r->mask[q]) {
            p[2] = p[2] + r->shift;
            o[0] = -p[0];
            o[1] = -p[1];
            o[2] = p[2];
        } else {
            p[0] = p[1] = p[2] = INFINITY;
            o[0] = o[1] = o[2] = NAN;
        }
    }
    free(uv);
    free(xyz);
    if (!r->points_moge)
        free(pts);
    free(ix);
    free(iy);
    free(wx);
    free(wy);
}
