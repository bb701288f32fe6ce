/*
 * preview.c - the two-panel splat preview. See preview.h.
 */
#include "preview.h"

#include "dtype.h"
#include "err.h"
#include "log.h"
#include "par.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SH_C0      0.28209479177387814    /* the degree-0 SH constant */
#define LOWPASS    0.3                    /* px^2 added to the 2D covariance (3DGS) */
#define MAX_RADIUS 128                    /* px: cap on one splat's box */
#define NEAR       1e-3                   /* nearer than this (or behind): not drawn */
#define BAND       8                      /* rows: compositing deals bands to threads */
#define TILE       8                      /* columns of a tile (BAND rows) */
#define PROJ_MIN   16384                  /* Gaussians: the least a projecting thread takes */

/* one Gaussian in the camera frame of a panel */
struct splat {
    float  depth;        /* z, sort key */
    float  u, v;         /* pixel centre */
    float  ca, cb, cc;   /* inverse 2D covariance (conic): a u^2 + 2 b u v + c v^2 */
    float  alpha;        /* sigmoid(opacity) */
    float  e_max;        /* the conic value where alpha * exp(-e / 2) falls to 1/255 */
    int    radius;       /* px: the box holding e <= e_max */
    float  rgb[3];
};

struct camera {
    double fx, fy, cx, cy;         /* pixels */
    int    w, h;
};

/* One pass of the radix sort below over R ranges of the keys: range k is
 * [n k / R, n (k + 1) / R); count[k] is its digit histogram, then (scatter) the
 * first output slot of each digit of range k. */
struct radix_job {
    const uint64_t *src;
    uint64_t       *dst;
    int64_t         n;
    int             ranges, shift;
    int64_t        (*count)[256];
};

static void radix_hist(void *arg, int k, int64_t lo, int64_t hi)
{
    struct radix_job *j = arg;

    (void)k, (void)hi;
    int64_t *c = j->count[lo], a = j->n * lo / j->ranges, b = j->n * (lo + 1) / j->ranges;

    memset(c, 0, sizeof(j->count[0]));
    for (int64_t i = a; i < b; i++)
        c[(j->src[i] >> j->shift) & 0xff]++;
}

static void radix_scatter(void *arg, int k, int64_t lo, int64_t hi)
{
    struct radix_job *j = arg;

    (void)k, (void)hi;
    int64_t *o = j->count[lo], a = j->n * lo / j->ranges, b = j->n * (lo + 1) / j->ranges;

    for (int64_t i = a; i < b; i++)
        j->dst[o[(j->src[i] >> j->shift) & 0xff]++] = j->src[i];
}

/* Sort keys[0..n) = (depth bits << 32 | index), depth > 0 (so its float bits order as
 * unsigned integers), nearest first: LSD radix on the four depth bytes, each pass a
 * histogram and a scatter over ranges on S3D_THREADS threads (ranges in order and
 * each range in order: stable, and the keys are distinct anyway, so the result
 * does not depend on the thread count). */
static int sort_keys(uint64_t *keys, int64_t n)
{
    int64_t (*count)[256] = malloc(sizeof(*count) * PAR_MAX_THREADS);
    uint64_t *tmp = malloc(sizeof(*tmp) * (size_t)(n ? n : 1)), *a = keys, *b = tmp;
    int64_t   ranges = dtype_threads();

    if (!tmp || !count) {
        free(tmp);
        free(count);
        return S3D_ENOMEM;
    }
    ranges = ranges > PAR_MAX_THREADS ? PAR_MAX_THREADS : ranges;
    ranges = ranges > n / 65536 ? (n / 65536 > 1 ? n / 65536 : 1) : ranges;
    for (int shift = 32; shift < 64; shift += 8) {
        struct radix_job j = {a, b, n, (int)ranges, shift, count};
        int64_t          at = 0;

        par_for(ranges, 1, (int)ranges, radix_hist, &j);
        for (int d = 0; d < 256; d++)                /* digit-major, ranges in order */
            for (int64_t k = 0; k < ranges; k++) {
                int64_t c = count[k][d];

                count[k][d] = at;
                at += c;
            }
        par_for(ranges, 1, (int)ranges, radix_scatter, &j);
        uint64_t *t = a;
        a = b;
        b = t;
    }
    free(tmp);                                   /* four passes: the result is in keys */
    free(count);
    return 0;
}

/* 3x3 helpers, row-major */
static void mat3_mul(const double A[9], const double B[9], double C[9])
{
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            C[3 * i + j] = A[3 * i] * B[j] + A[3 * i + 1] * B[3 + j] + A[3 * i + 2] * B[6 + j];
}

static void mat3_t(const double A[9], double T[9])
{
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            T[3 * j + i] = A[3 * i + j];
}

/* A panel's transform of object points: q = A x + b in the panel camera
 * (A = s V Rc, b = V (t - c) + c: placed with the pose, p_cam = s Rc x + t,
 * then the view rotation V about the centre c), and W = V Rc, s2 = s^2 for the
 * covariances (Sigma_cam = s2 W Sigma W^T). */
struct panel_xf {
    double A[9], b[3], W[9], s2;
};

static void panel_xf_init(struct panel_xf *xf, const double Rc[9], double s, const double t[3],
                          const double V[9], const double c[3])
{
    mat3_mul(V, Rc, xf->W);
    for (int i = 0; i < 9; i++)
        xf->A[i] = s * xf->W[i];
    for (int i = 0; i < 3; i++)
        xf->b[i] = V[3 * i] * (t[0] - c[0]) + V[3 * i + 1] * (t[1] - c[1]) +
                   V[3 * i + 2] * (t[2] - c[2]) + c[i];
    xf->s2 = s * s;
}

/* Project Gaussian m into a splat through the panel transform xf. */
static bool project(const struct gaussians *g, int64_t m, const struct panel_xf *xf,
                    const struct camera *cam, struct splat *sp)
{
    const float *x = g->xyz + 3 * m, *sc = g->scale + 3 * m, *r = g->rotation + 4 * m;
    double q[3], nq = 0, Rg[9], G[9], Cv[9];
    double z, J[6], JC[6], a, b, d, det, lmax, o;

    for (int i = 0; i < 3; i++)
        q[i] = xf->A[3 * i] * x[0] + xf->A[3 * i + 1] * x[1] + xf->A[3 * i + 2] * x[2] + xf->b[i];
    z = q[2];
    if (!(z > NEAR))
        return false;
    o = g->opacity[m];
    sp->alpha = (float)(1.0 / (1.0 + exp(-o)));      /* +inf -> 1, -inf -> 0 */
    if (!(sp->alpha * 255 > 1))
        return false;
    {                                                /* Rg from the normalised quaternion */
        double qq[4];

        for (int i = 0; i < 4; i++)
            nq += (double)r[i] * r[i];
        nq = sqrt(nq);
        if (!(nq > 1e-12))
            return false;
        for (int i = 0; i < 4; i++)
            qq[i] = r[i] / nq;
        pose_quat_to_matrix(qq, Rg);
    }
    /* G = W Rg S: Sigma_cam = s2 G G^T (Sigma = Rg S^2 Rg^T in the object) */
    mat3_mul(xf->W, Rg, G);
    for (int j = 0; j < 3; j++) {
        double e = exp((double)sc[j]);

        for (int i = 0; i < 3; i++)
            G[3 * i + j] *= e;
    }
    for (int i = 0; i < 3; i++)
        for (int j = i; j < 3; j++)
            Cv[3 * i + j] = Cv[3 * j + i] =
                xf->s2 * (G[3 * i] * G[3 * j] + G[3 * i + 1] * G[3 * j + 1] +
                          G[3 * i + 2] * G[3 * j + 2]);
    /* u = fx (-x/z) + cx, v = fy (-y/z) + cy: J = d(u, v)/d(x, y, z) */
    J[0] = -cam->fx / z, J[1] = 0, J[2] = cam->fx * q[0] / (z * z);
    J[3] = 0, J[4] = -cam->fy / z, J[5] = cam->fy * q[1] / (z * z);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            JC[3 * i + j] = J[3 * i] * Cv[j] + J[3 * i + 1] * Cv[3 + j] + J[3 * i + 2] * Cv[6 + j];
    a = JC[0] * J[0] + JC[1] * J[1] + JC[2] * J[2] + LOWPASS;
    b = JC[0] * J[3] + JC[1] * J[4] + JC[2] * J[5];
    d = JC[3] * J[3] + JC[4] * J[4] + JC[5] * J[5] + LOWPASS;
    det = a * d - b * b;
    if (!(det > 0) || !isfinite(det))
        return false;
    lmax = 0.5 * (a + d) + sqrt(fmax(0.25 * (a - d) * (a - d) + b * b, 0));
    sp->e_max = (float)(2.0 * log(255.0 * sp->alpha));
    sp->depth = (float)z;
    sp->u = (float)(cam->fx * (-q[0] / z) + cam->cx);
    sp->v = (float)(cam->fy * (-q[1] / z) + cam->cy);
    sp->ca = (float)(d / det);
    sp->cb = (float)(-b / det);
    sp->cc = (float)(a / det);
    sp->radius = (int)fmin(ceil(sqrt(sp->e_max * lmax)), MAX_RADIUS);
    for (int i = 0; i < 3; i++) {
        double cl = 0.5 + SH_C0 * g->f_dc[3 * m + i];

        sp->rgb[i] = (float)(cl < 0 ? 0 : cl > 1 ? 1 : cl);
    }
    return sp->u + sp->radius >= 0 && sp->v + sp->radius >= 0 &&
           sp->u - sp->radius < cam->w && sp->v - sp->radius < cam->h;
}

/* The projection of a panel: sp[m] and ok[m] for every Gaussian m. */
struct proj_job {
    const struct gaussians *g;
    const struct panel_xf  *xf;
    const struct camera    *cam;
    struct splat           *sp;
    uint8_t                *ok;
};

static void project_range(void *arg, int k, int64_t lo, int64_t hi)
{
    const struct proj_job *j = arg;

    (void)k;
    for (int64_t m = lo; m < hi; m++)
        j->ok[m] = project(j->g, m, j->xf, j->cam, &j->sp[m]);
}

/* The splats in depth order: ord[r] = sp[keys[r] & 0xffffffff] for r in [lo, hi). */
struct order_job {
    const struct splat *sp;
    const uint64_t     *keys;
    struct splat       *ord;
};

static void order_range(void *arg, int k, int64_t lo, int64_t hi)
{
    const struct order_job *j = arg;

    (void)k;
    for (int64_t r = lo; r < hi; r++) {
        if (r + 8 < hi)                              /* keys order reads sp at random */
            __builtin_prefetch(&j->sp[j->keys[r + 8] & 0xffffffffu]);
        j->ord[r] = j->sp[j->keys[r] & 0xffffffffu];
    }
}

/* The compositing of a panel: part `lo` of `parts` owns the rows y with
 * (y / BAND) % parts == part and walks every splat (depth order) over them,
 * so each pixel sees the splats in the same order whatever the thread count
 * (the image is the same bytes for any S3D_THREADS). full[] counts the pixels
 * of each BAND x TILE tile that take nothing more (T < 1/255): a splat skips
 * the tiles that are full, as it would skip each of their pixels; a tile's
 * count is written only by the part that owns its rows. */
struct comp_job {
    const struct splat  *ord;        /* (n) nearest first */
    int64_t              n;
    const struct camera *cam;
    float               *rgb;        /* (h, w, 3) */
    float               *trans;      /* (h, w) */
    uint8_t             *full;       /* (ceil(h / BAND), ceil(w / TILE)) */
    int                  parts;
};

static void composite_part(void *arg, int k, int64_t lo, int64_t hi)
{
    const struct comp_job *j = arg;
    const struct camera *cam = j->cam;
    int part = (int)lo, tiles_x = (cam->w + TILE - 1) / TILE;

    (void)k, (void)hi;
    for (int64_t r = 0; r < j->n; r++) {
        const struct splat *s = &j->ord[r];
        int x0 = (int)floorf(s->u) - s->radius, x1 = (int)floorf(s->u) + s->radius;
        int y0 = (int)floorf(s->v) - s->radius, y1 = (int)floorf(s->v) + s->radius;

        x0 = x0 < 0 ? 0 : x0, y0 = y0 < 0 ? 0 : y0;
        x1 = x1 >= cam->w ? cam->w - 1 : x1, y1 = y1 >= cam->h ? cam->h - 1 : y1;
        for (int ty = y0 / BAND; ty <= y1 / BAND; ty++) {
            int ya = ty * BAND > y0 ? ty * BAND : y0, yb = ty * BAND + BAND - 1;
            int th = cam->h - ty * BAND < BAND ? cam->h - ty * BAND : BAND;

            if (ty % j->parts != part)
                continue;
            yb = yb < y1 ? yb : y1;
            for (int tx = x0 / TILE; tx <= x1 / TILE; tx++) {
                uint8_t *f = &j->full[(size_t)ty * tiles_x + tx];
                int xa = tx * TILE > x0 ? tx * TILE : x0, xb = tx * TILE + TILE - 1;
                int tw = cam->w - tx * TILE < TILE ? cam->w - tx * TILE : TILE;

                if (*f == tw * th)
                    continue;
                xb = xb < x1 ? xb : x1;
                for (int y = ya; y <= yb; y++)
                    for (int x = xa; x <= xb; x++) {
                        size_t i = (size_t)y * cam->w + x;
                        float du, dv, e, a;

                        if (j->trans[i] < 1.0f / 255)
                            continue;
                        du = x + 0.5f - s->u, dv = y + 0.5f - s->v;
                        e = s->ca * du * du + 2 * s->cb * du * dv + s->cc * dv * dv;
                        if (e > s->e_max)
                            continue;
                        a = s->alpha * expf(-0.5f * e);
                        a = a > 0.99f ? 0.99f : a;
                        for (int c = 0; c < 3; c++)
                            j->rgb[3 * i + c] += j->trans[i] * a * s->rgb[c];
                        j->trans[i] *= 1 - a;
                        *f += j->trans[i] < 1.0f / 255;
                    }
            }
        }
    }
}

/* Draw one panel into rgb (w*h*3 floats, zero) and trans (w*h floats, one): front
 * to back, C += T a c, T *= 1 - a (the same image as back-to-front "over"
 * compositing); a pixel whose T fell below 1/255 takes nothing more. The caller
 * adds T * background. The projection and the reordering are split over
 * S3D_THREADS threads by splats, the compositing by bands of rows; the sort
 * is one thread. */
static int render_panel(const struct gaussians *g, const struct pose *p, const double V[9],
                        const struct camera *cam, float *rgb, float *trans)
{
    size_t cnt = (size_t)(g->n ? g->n : 1);
    struct splat *sp = malloc(sizeof(*sp) * cnt), *ord;
    uint8_t *full;
    uint64_t *keys = malloc(sizeof(*keys) * cnt);
    uint8_t *ok = malloc(cnt);
    double q[4], R[9], Rc[9], t[3], c[3];
    struct panel_xf xf;
    int64_t n = 0;
    int parts = dtype_threads(), bands = (cam->h + BAND - 1) / BAND;

    if (!sp || !keys || !ok) {
        free(sp);
        free(keys);
        free(ok);
        return S3D_ENOMEM;
    }
    for (int i = 0; i < 4; i++)
        q[i] = p->rotation[i];
    pose_quat_to_matrix(q, R);
    mat3_t(R, Rc);                                   /* row-vector pose: p @ R = R^T p */
    for (int i = 0; i < 3; i++)
        c[i] = t[i] = p->translation[i];
    panel_xf_init(&xf, Rc, p->scale[0], t, V, c);
    {
        struct proj_job pj = {g, &xf, cam, sp, ok};

        par_for(g->n, PROJ_MIN, 0, project_range, &pj);
    }
    for (int64_t m = 0; m < g->n; m++)               /* index order: ties keep it */
        if (ok[m]) {
            uint32_t bits;

            memcpy(&bits, &sp[m].depth, 4);
            keys[n++] = (uint64_t)bits << 32 | (uint64_t)m;
        }
    free(ok);
    if (sort_keys(keys, n) != 0) {
        free(sp);
        free(keys);
        return S3D_ENOMEM;
    }
    ord = malloc(sizeof(*ord) * (size_t)(n ? n : 1));
    if (!ord) {
        free(sp);
        free(keys);
        return S3D_ENOMEM;
    }
    {
        struct order_job oj = {sp, keys, ord};

        par_for(n, PROJ_MIN, 0, order_range, &oj);
    }
    free(sp);
    free(keys);
    parts = parts > bands ? bands : parts;
    full = calloc((size_t)bands * (size_t)((cam->w + TILE - 1) / TILE), 1);
    if (!full) {
        free(ord);
        return S3D_ENOMEM;
    }
    {
        struct comp_job cj = {ord, n, cam, rgb, trans, full, parts};

        par_for(parts, 1, parts, composite_part, &cj);
    }
    free(full);
    free(ord);
    return 0;
}

bool preview_camera(const float K[9], int img_w, int img_h, float out[9])
{
    const double fx = 0.86602540378443865;   /* 0.5 / tan(30 deg): 60 degrees across the width */

    if (K[0] > 0 && K[4] > 0 && isfinite(K[0]) && isfinite(K[4]) && isfinite(K[2]) &&
        isfinite(K[5])) {
        memcpy(out, K, 9 * sizeof(float));
        return false;
    }
    memset(out, 0, 9 * sizeof(float));
    out[0] = (float)fx;
    out[4] = (float)(fx * (img_h > 0 && img_w > 0 ? (double)img_w / img_h : 1.0));
    out[2] = out[5] = 0.5f;
    out[8] = 1;
    return true;
}

/* render_panel's arguments and result, for the side panel's thread. */
struct panel_job {
    const struct gaussians *g;
    const struct pose      *p;
    const double           *V;
    const struct camera    *cam;
    float                  *rgb, *trans;
    int                     rc;
};

static void panel_run(void *arg)
{
    struct panel_job *j = arg;

    j->rc = render_panel(j->g, j->p, j->V, j->cam, j->rgb, j->trans);
}

int preview_render(const struct gaussians *g, const struct pose *p, const float K[9],
                   int img_w, int img_h, int side, struct image *out)
{
    /* the side view: a quarter turn about the camera's vertical (y) axis */
    static const double front[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    static const double turn[9] = {0, 0, -1, 0, 1, 0, 1, 0, 0};
    double k = img_w >= img_h ? (double)side / img_w : (double)side / img_h;
    struct camera cam;
    float *rgb, *trans;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (g->n < 0 || g->n > (int64_t)UINT32_MAX) {
        log_error("preview: %lld Gaussians, at most %u can be drawn", (long long)g->n,
                  UINT32_MAX);
        return S3D_EINVAL;
    }
    if (img_w < 1 || img_h < 1 || side < 16 || side > 8192 || !(K[0] > 0) || !(K[4] > 0) ||
        !isfinite(K[0]) || !isfinite(K[4]) || !isfinite(K[2]) || !isfinite(K[5])) {
        log_error("preview: bad camera (image %dx%d, fx %g, fy %g, panel %d px)", img_w, img_h,
                  K[0], K[4], side);
        return S3D_EINVAL;
    }
    cam.w = (int)lround(img_w * k);
    cam.h = (int)lround(img_h * k);
    cam.w = cam.w < 1 ? 1 : cam.w;
    cam.h = cam.h < 1 ? 1 : cam.h;
    cam.fx = K[0] * cam.w, cam.cx = K[2] * cam.w;
    cam.fy = K[4] * cam.h, cam.cy = K[5] * cam.h;
    rgb = calloc((size_t)cam.w * cam.h * 2, sizeof(float) * 4);   /* 3 colour + T */
    out->data = malloc((size_t)cam.w * 2 * cam.h * 3);
    if (!rgb || !out->data) {
        free(rgb);
        image_free(out);
        log_error("preview: out of memory for %dx%d panels", cam.w, cam.h);
        return S3D_ENOMEM;
    }
    trans = rgb + (size_t)3 * cam.w * cam.h * 2;
    for (size_t i = 0; i < (size_t)cam.w * cam.h * 2; i++)
        trans[i] = 1;
    /* the side panel on a thread of its own beside the front one: each one's
     * sort is a single thread, and their parallel parts share the cores */
    struct panel_job side_job = {g, p, turn, &cam, rgb + (size_t)3 * cam.w * cam.h,
                                 trans + (size_t)cam.w * cam.h, 0};
    struct par_task  side_task;

    par_task_start(&side_task, panel_run, &side_job);
    rc = render_panel(g, p, front, &cam, rgb, trans);
    par_task_join(&side_task);
    rc = rc ? rc : side_job.rc;
    if (rc) {
        free(rgb);
        image_free(out);
        log_error("preview: out of memory for %lld splats", (long long)g->n);
        return rc;
    }
    out->w = 2 * cam.w;
    out->h = cam.h;
    out->c = 3;
    for (int panel = 0; panel < 2; panel++)
        for (int y = 0; y < cam.h; y++)
            for (int x = 0; x < cam.w; x++) {
                size_t i = (size_t)panel * cam.h * cam.w + (size_t)y * cam.w + x;

                for (int j = 0; j < 3; j++) {
                    float v = rgb[3 * i + j] + trans[i] * (PREVIEW_BACKGROUND / 255.0f);

                    out->data[((size_t)y * out->w + panel * cam.w + x) * 3 + j] =
                        (uint8_t)lrintf(fminf(v, 1.0f) * 255);
                }
            }
    free(rgb);
    return 0;
}
