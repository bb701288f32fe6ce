/*
 * main.c - sam3d-depth: MoGe v1 point maps and the shared input preprocessing
 * as a stage (stages/depth/README.md, docs/formats.md "depth").
 *
 *   sam3d-depth --weights moge-vitl/model.pt --once IN_DIR OUT_DIR \
 *       --param image=IN_DIR/image.png --param mask=IN_DIR/mask.png
 *   sam3d-depth --weights moge-vitl/model.pt --listen ipc:///tmp/s3d/depth.sock
 *
 * Inputs (optional, another object of an image already seen): points, valid,
 * intrinsics, focal, shift as this stage wrote them; MoGe is then not run
 * (reuse_points).
 * Params: image, mask (paths inside the job / IN_DIR; PNG or JPEG, common/image.h);
 * num_tokens (optional, int: MoGe's token budget, default from the checkpoint's
 * model_config, 2551 for moge-vitl); repeat (optional, int >= 1: run MoGe that
 * many times and log the median, for benchmarks; the outputs are the last run's).
 *
 * Outputs (one file, depth.safetensors):
 *   points (H, W, 3) F32   MoGe's point map in the pipeline's camera axes (-x, -y, z),
 *                          NaN where invalid
 *   valid (H, W) U8        MoGe's validity mask (mask logit > 0.5)
 *   intrinsics (3, 3) F32  normalised (fx, fy in image-size units, centre 0.5)
 *   focal, shift (1) F32   recover_focal_shift's solution
 *   image, rgb_image (1, 3, 518, 518) F32, mask, rgb_image_mask (1, 1, 518, 518) F32,
 *   pointmap, rgb_pointmap (1, 3, 518, 518) F32, pointmap_scale, pointmap_shift (1, 3) F32:
 *                          the SS preprocessor's outputs (stages/depth_net/preprocess.h), read by cond.
 *
 * Device memory: the weights (act_dt), the runtime's cuBLAS workspace, the
 * pos-embed cache and the runtime's activation arena sized by moge_act_bytes for
 * the request's geometry plus the image as U8 (grown when a request needs more). The full-resolution
 * post-processing runs on the host, so a 6000 x 4500 image costs the device only
 * its 81 MB of U8 pixels and the (3, H, rw) resize intermediate.
 */
#include "depth_net/moge.h"

#include "err.h"
#include "image.h"
#include "depth_net/lmsolve.h"
#include "log.h"
#include "ops_copy.h"
#include "depth_net/preprocess.h"
#include "par.h"
#include "stage.h"
#include "stage_warm.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEPTH_MAX_TOKENS 20000          /* num_tokens above this is a user error */

static const struct stage_param depth_params[] = {
    {"image", STAGE_PARAM_PATH, 0, 0, 0, "the image: PNG (8/16 bit, gray, RGB(A), palette) or JPEG",
     NULL},
    {"mask", STAGE_PARAM_PATH, 0, 0, 0, "the object mask: a PNG of the image's size, nonzero on "
     "the object", NULL},
    {"num_tokens", STAGE_PARAM_INT, 0, 1, DEPTH_MAX_TOKENS,
     "MoGe's token budget (trained with 1275..2551)", "the checkpoint's model_config (2551 for "
     "moge-vitl)"},
    STAGE_PARAM_REPEAT,
    STAGE_PARAM_STREAM_BLOCKS,
    {NULL},
};

/* load / unload: moge_load and moge_free on the model (stage.h); stream_blocks=1
 * streams the encoder's 24 blocks from host memory */
STAGE_MODEL_STREAM(depth, struct moge_model, moge_load, moge_free);

/* (H, W, 3) U8 -> (3, H, W), pixels [q0, q1). */
struct to_chw {
    const uint8_t *hwc;
    uint8_t       *chw;
    size_t         HW;
};

static void to_chw_run(void *arg, int k, int64_t q0, int64_t q1)
{
    const struct to_chw *t = arg;

    (void)k;
    for (int64_t q = q0; q < q1; q++)
        for (int c = 0; c < 3; c++)
            t->chw[(size_t)c * t->HW + q] = t->hwc[3 * q + c];
}

/* MoGe on rgb (H, W, 3) U8 into points/valid (H, W, 3)/(H, W) and r's scalars. */
static int run_moge(struct moge_model *m, struct stage_req *rq, const struct image *rgb,
                    int num_tokens, struct moge_result *r)
{
    struct moge_geom g;
    int H = rgb->h, W = rgb->w, rc = 0;
    size_t HW = (size_t)H * W;
    struct stage_rt *rt = rq->rt;
    char tms[96];

    int def_tokens = m->num_tokens;
    m->num_tokens = num_tokens;
    moge_geometry(m, H, W, &g);
    m->num_tokens = def_tokens;
    size_t need = moge_act_bytes(m, &g) + arena_round(3 * HW);
    if ((rc = stage_act(rq, need)))
        return rc;
    struct tensor img = arena_tensor(&rt->act, DTYPE_U8, SHAPE(3, H, W));
    bool host = img.device == DEVICE_HOST;      /* CPU path: transposed straight into img */
    uint8_t *chw = host ? NULL : malloc(3 * HW);
    float *raw = malloc(sizeof(float) * 4 * (size_t)g.rh * g.rw);
    if ((!host && !chw) || !raw) {
        rc = stage_fail(rq, S3D_ENOMEM, "depth: out of host memory for a %dx%d image", W, H);
        goto out;
    }
    struct to_chw tc = {rgb->data, host ? img.data : chw, HW};
    par_for((int64_t)HW, (int64_t)1 << 18, 0, to_chw_run, &tc);   /* over the cores */
    if (!host) {
        struct tensor hi = tensor_view(chw, DTYPE_U8, DEVICE_HOST, SHAPE(3, H, W));
        op_upload(rt->op, &img, &hi);
        free(chw);
        chw = NULL;
    }
    /* MoGe: forward, then the host post-processing (timed apart, summed over the runs) */
    struct lm_opts lo = lm_opts_default();
    struct stage_loop L;
    double fwd_ms = 0, post_ms = 0;
    for (stage_loop(rq, "depth MoGe", &L); stage_loop_next(&L);) {
        size_t mark = arena_mark(&rt->act);
        double t0 = stage_now_ms();
        rc = moge_forward(m, rt->op, &rt->act, &img, &g, raw, NULL, NULL);
        arena_release(&rt->act, mark);
        if (rc)
            break;
        double t1 = stage_now_ms();
        moge_postprocess(&g, raw, &lo, r);
        fwd_ms += t1 - t0;
        post_ms += stage_now_ms() - t1;
    }
    if ((rc = stage_loop_end(&L, rc))) {
        if (!rq->err[0])
            stage_fail(rq, rc, "depth: MoGe forward failed (device memory; see the log)");
        goto out;
    }
    log_info("depth: %dx%d -> %dx%d (%dx%d patches, budget %d): MoGe %s (forward %.2f + "
             "post-processing %.2f ms mean); focal %.6g shift %.6g", W, H, g.rw, g.rh, g.pw, g.ph,
             num_tokens, stage_timing_str(&L.tm, tms, sizeof(tms)), fwd_ms / L.tm.n,
             post_ms / L.tm.n, r->focal, r->shift);
out:
    free(raw);
    free(chw);
    return rc;
}

/* Many objects in one image (`sam3d run --mask A --mask B`): MoGe reads only
 * the image, so the orchestrator runs it once and gives the later objects'
 * requests its outputs as inputs (points (H, W, 3) F32, valid (H, W) U8,
 * intrinsics (3, 3), focal, shift (1) F32, of this image's size); they are
 * copied to this request's outputs and only the preprocessing runs with the
 * new mask. 0, or S3D_ESHAPE after stage_fail named the input. */
static int reuse_points(struct stage_req *rq, int H, int W, struct moge_result *r)
{
    const struct tensor *pts = stage_input(rq, "points", DTYPE_F32, SHAPE(H, W, 3));
    const struct tensor *val = pts ? stage_input(rq, "valid", DTYPE_U8, SHAPE(H, W)) : NULL;
    const struct tensor *K = val ? stage_input(rq, "intrinsics", DTYPE_F32, SHAPE(3, 3)) : NULL;
    const struct tensor *f = K ? stage_input(rq, "focal", DTYPE_F32, SHAPE(1)) : NULL;
    const struct tensor *sh = f ? stage_input(rq, "shift", DTYPE_F32, SHAPE(1)) : NULL;

    if (!sh)
        return S3D_ESHAPE;
    memcpy(r->pointmap, pts->data, sizeof(float) * 3 * (size_t)H * (size_t)W);
    memcpy(r->mask, val->data, (size_t)H * (size_t)W);
    memcpy(r->intrinsics, K->data, sizeof(r->intrinsics));
    r->focal = *(const float *)f->data;
    r->shift = *(const float *)sh->data;
    log_info("depth: MoGe not run: the point map of this %dx%d image came with the request "
             "(another object of the same image); preprocessing with this mask", W, H);
    return 0;
}

/* The mask is decoded beside the image's decode and MoGe, which do not read it
 * (par_task: one after the other under S3D_THREADS=1); rc as image_read_mask
 * returns, once joined. */
struct mask_read {
    const char   *path;
    struct image *img;
    int           rc;
};

static void mask_read_run(void *arg)
{
    struct mask_read *m = arg;

    m->rc = image_read_mask(m->path, m->img);
}

static int depth_stage_run(void *p, struct stage_req *rq)
{
    struct moge_model *m = p;
    char ipath[4096], mpath[4096];
    struct image rgb = {0}, mask = {0};
    struct prep_out po;
    int rc;

    memset(&po, 0, sizeof(po));
    int64_t nt = stage_param_given(rq, "num_tokens") ? stage_get_int(rq, "num_tokens")
                                                     : m->num_tokens;
    if ((rc = stage_param_path(rq, "image", ipath, sizeof(ipath))) ||
        (rc = stage_param_path(rq, "mask", mpath, sizeof(mpath))))
        return rc;
    double           t_dec = stage_now_ms();
    struct mask_read mr = {mpath, &mask, 0};
    struct par_task  mask_task;

    par_task_start(&mask_task, mask_read_run, &mr);
    if ((rc = image_load_rgb(ipath, &rgb))) {
        par_task_join(&mask_task);
        image_free(&mask);
        return stage_fail(rq, rc, "depth: cannot read the image '%s' (%s); HINT: a PNG or "
                          "JPEG file", ipath, s3d_strerror(rc));
    }
    log_info("depth: image %dx%d decoded in %.1f ms (%d stripes)", rgb.w, rgb.h,
             stage_now_ms() - t_dec, image_last_jpeg_stripes());
    int H = rgb.h, W = rgb.w, S = PREP_SIZE;
    struct tensor *points = stage_output(rq, "points", DTYPE_F32, SHAPE(H, W, 3));
    struct tensor *valid = points ? stage_output(rq, "valid", DTYPE_U8, SHAPE(H, W)) : NULL;
    if (!valid) {
        rc = S3D_ENOMEM;                                  /* stage_output set the reply */
        goto out;
    }
    struct moge_result r = {.pointmap = points->data, .mask = valid->data};
    if (stage_input_opt(rq, "points")) {                  /* another object of one image */
        if ((rc = reuse_points(rq, H, W, &r)))
            goto out;
    } else if ((rc = run_moge(m, rq, &rgb, (int)nt, &r))) {
        goto out;
    }
    double t_mask = stage_now_ms();
    par_task_join(&mask_task);
    if ((rc = mr.rc) || (rc = image_check_mask(mpath, rgb.w, rgb.h, &mask))) {
        stage_fail(rq, rc, "depth: mask '%s' is not usable with the %dx%d image (%s); HINT: "
                   "a PNG of the image's size with the object nonzero", mpath, rgb.w, rgb.h,
                   s3d_strerror(rc));
        goto out;
    }
    log_info("depth: mask (decoded beside MoGe) joined and checked in %.1f ms",
             stage_now_ms() - t_mask);

    /* every output declared now (the preprocessing's have fixed shapes), so that the
     * artifact file starts with points and valid, which are final, while the SS
     * preprocessor reads them (the flipped, NaN-invalid point map, in place) */
    static const struct { const char *name; int c, n; } decl[] = {
        {"image", 3, PREP_SIZE},          {"rgb_image", 3, PREP_SIZE},
        {"mask", 1, PREP_SIZE},           {"rgb_image_mask", 1, PREP_SIZE},
        {"pointmap", 3, PREP_SIZE},       {"rgb_pointmap", 3, PREP_SIZE},
        {"pointmap_scale", 3, 0}, {"pointmap_shift", 3, 0}, {"intrinsics", 9, 0},
        {"focal", 1, 0},     {"shift", 1, 0},
    };
    enum { N_DECL = sizeof(decl) / sizeof(decl[0]) };
    struct tensor *ot[N_DECL];
    for (int i = 0; i < N_DECL; i++) {
        if (!strcmp(decl[i].name, "intrinsics"))
            ot[i] = stage_output(rq, decl[i].name, DTYPE_F32, SHAPE(3, 3));
        else if (decl[i].n)
            ot[i] = stage_output(rq, decl[i].name, DTYPE_F32,
                                 SHAPE(1, decl[i].c, decl[i].n, decl[i].n));
        else if (decl[i].c == 3)
            ot[i] = stage_output(rq, decl[i].name, DTYPE_F32, SHAPE(1, 3));
        else
            ot[i] = stage_output(rq, decl[i].name, DTYPE_F32, SHAPE(1));
        if (!ot[i]) {
            rc = S3D_ENOMEM;                              /* stage_output set the reply */
            goto out;
        }
    }
    if ((rc = stage_write_ahead(rq, 2)))                  /* points, valid: on a thread */
        goto out;
    double t0 = stage_now_ms();
    if ((rc = prep_run_hwc(&rgb, &mask, r.pointmap, S, &po))) {
        stage_fail(rq, rc, "depth: preprocessing of '%s' with mask '%s' failed (%s; see the "
                   "log)", ipath, mpath, s3d_strerror(rc));
        goto out;
    }
    const float *src[N_DECL] = {po.image, po.rgb_image, po.mask, po.rgb_image_mask, po.pointmap,
                                po.rgb_pointmap, po.pointmap_scale, po.pointmap_shift,
                                r.intrinsics, &r.focal, &r.shift};
    for (int i = 0; i < N_DECL; i++)
        memcpy(ot[i]->data, src[i], sizeof(float) * (size_t)tensor_numel(ot[i]));
    log_info("depth: preprocessing %.1f ms; crop box [%d, %d, %d, %d], pointmap scale %.6g "
             "shift (%.6g, %.6g, %.6g)", stage_now_ms() - t0, po.bbox[0], po.bbox[1], po.bbox[2],
             po.bbox[3], po.pointmap_scale[0], po.pointmap_shift[0], po.pointmap_shift[1],
             po.pointmap_shift[2]);
out:
    par_task_join(&mask_task);                            /* no-op once joined */
    prep_out_free(&po);
    image_free(&mask);
    image_free(&rgb);
    return rc;
}

/* Warm-up (stage_ops.warm): one MoGe forward on a black 4:3 image (1632 x 1224:
 * the default token budget's 58 x 43 patch grid, as a 4:3 photo of any size
 * gets, and a real downscale in the resize). The host post-processing is left
 * out: it has no library set-up to do ahead. */
#define DEPTH_WARM_W 1632
#define DEPTH_WARM_H 1224

static int depth_stage_warm(void *p, struct stage_rt *rt, struct arena *host)
{
    struct moge_model *m = p;
    struct moge_geom g;
    struct tensor hi, raw;
    int H = DEPTH_WARM_H, W = DEPTH_WARM_W, rc;

    moge_geometry(m, H, W, &g);
    if ((rc = stage_warm_tensor(host, DTYPE_U8, SHAPE(3, H, W), &hi)) ||
        (rc = stage_warm_tensor(host, DTYPE_F32, SHAPE(4, g.rh, g.rw), &raw)) ||
        (rc = stage_rt_act(rt, moge_act_bytes(m, &g) + arena_round((size_t)3 * H * W))))
        return rc;
    struct tensor img = arena_tensor(&rt->act, DTYPE_U8, SHAPE(3, H, W));
    op_upload(rt->op, &img, &hi);
    return moge_forward(m, rt->op, &rt->act, &img, &g, raw.data, NULL, NULL);
}

int main(int argc, char **argv)
{
    static struct moge_model model;
    /* points (H, W, 3) F32 + valid dominate: 13 bytes a pixel (1152 MiB hold the default
     * pixel limit, 80 MP); a raised limit (S3D_MAX_PIXELS, --max-pixels) grows it */
    size_t arena = (size_t)(13 * image_max_pixels()) + ((size_t)112 << 20);
    const struct stage_ops ops = {
        .name = "depth",
        .params = depth_params,
        .arena_bytes = arena > ((size_t)1152 << 20) ? arena : (size_t)1152 << 20,
        .max_input_bytes = 1 << 20,     /* inline tensors: none (image and mask are files;
                                         * reuse_points' inputs come as job files) */
        .workspace_bytes = OP_WORKSPACE_DEFAULT,
        .uses_cudnn = true,             /* the head's convolutions */
        STAGE_MODEL_OPS(depth),
        .run = depth_stage_run,
        .warm = depth_stage_warm,
    };

    return stage_main(&ops, &model, argc, argv);
}
