/*
 * main.c - sam3d-depth: MoGe v1 point maps and the shared input preprocessing
 * as a stage (stages/depth/README.md, docs/formats.md "depth").
 *
 *   sam3d-depth --weights moge-vitl/model.pt --once IN_DIR OUT_DIR \
 *       --param image=IN_DIR/image.png --param mask=IN_DIR/mask.png
 *   sam3d-depth --weights moge-vitl/model.pt --listen ipc:///tmp/s3d/depth.sock
 *
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
 *                          the SS preprocessor's outputs (common/preprocess.h), read by cond.
 *
 * Device memory: the weights (act_dt), a cuBLAS workspace, the pos-embed cache
 * and one activation arena sized by moge_act_bytes for the request's geometry
 * plus the image as U8 (grown when a request needs more). The full-resolution
 * post-processing runs on the host, so a 6000 x 4500 image costs the device only
 * its 81 MB of U8 pixels and the (3, H, rw) resize intermediate.
 */
#include "moge_net/moge.h"

#include "check.h"
#include "err.h"
#include "image.h"
#include "lmsolve.h"
#include "log.h"
#include "preprocess.h"
#include "stage.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEPTH_MAX_TOKENS 20000          /* num_tokens above this is a user error */
#define DEPTH_MAX_REPEAT 1000

struct depth_stage {
    struct moge_model m;
    struct arena      weights;    /* bound weights (device, or host on the CPU) */
    struct arena      ws;         /* cuBLAS workspace (device only) */
    struct arena      act;        /* activations + the U8 image; grown per request */
    struct op_ctx     ctx;
    enum device       dev;
    int               num_tokens; /* from model_config (or MOGE_NUM_TOKENS) */
    bool              loaded;
};

static void depth_stage_unload(void *p)
{
    struct depth_stage *s = p;

    moge_release(&s->m);
    if (s->dev == DEVICE_CUDA && s->loaded)
        op_ctx_free(&s->ctx);
    arena_free(&s->act);
    arena_free(&s->ws);
    arena_free(&s->weights);
    memset(s, 0, sizeof(*s));
}

static int depth_stage_load(void *p, const struct stage_opts *o)
{
    struct depth_stage *s = p;
    struct weights w;
    int rc;

    if (s->loaded)
        return 0;
    memset(s, 0, sizeof(*s));
    if (!o->weights) {
        log_error("depth: no --weights; HINT: pass MoGe's model.pt (Ruicheng/moge-vitl)");
        return S3D_EINVAL;
    }
    enum dtype act_dt;
    s->dev = stage_use_device(o, &act_dt);
    /* a bare file means its 'model' state dict, the official container */
    if ((rc = weights_open_key(&w, o->weights, "model", NULL, act_dt)))
        return rc;
    if ((rc = moge_bind(&s->m, &w, act_dt)))
        goto out_close;
    rc = moge_config_num_tokens(o->weights, &s->num_tokens);
    if (rc == S3D_ENOTFOUND) {
        s->num_tokens = MOGE_NUM_TOKENS;
        log_warn("depth: %s has no model_config token range; using %d (moge-vitl)",
                 o->weights, s->num_tokens);
    } else if (rc) {
        goto out_close;
    }
    if ((rc = weights_load_arena(&w, &s->weights, s->dev)))
        goto out_close;
    if (s->dev == DEVICE_CUDA) {
        rc = arena_init(&s->ws, ARENA_DEVICE, "workspace", OP_WORKSPACE_DEFAULT);
        if (!rc)
            rc = op_ctx_init(&s->ctx, &s->ws, OP_WORKSPACE_DEFAULT);
        if (rc)
            goto out_free;
    }
    log_info("depth: MoGe v1 from %s: ViT dim %d depth %d, %d taps, proj %d, %d tokens; "
             "%.1f MB of %s weights on %s", w.ck.path, s->m.vit.cfg.dim, s->m.vit.cfg.depth,
             s->m.n_feat, s->m.dim_proj, s->num_tokens, (double)s->weights.used / 1e6,
             dtype_name(act_dt), s->dev == DEVICE_CUDA ? "cuda" : "cpu");
    weights_close(&w);
    s->loaded = true;
    return 0;
out_free:
    arena_free(&s->ws);
    arena_free(&s->weights);
out_close:
    weights_close(&w);
    memset(s, 0, sizeof(*s));
    return rc;
}

/* Make the activation arena hold need bytes, empty (reallocated only when it
 * grows; a request that failed midway leaves nothing behind). */
static int act_reserve(struct depth_stage *s, size_t need)
{
    if (s->act.base && s->act.size >= need) {
        arena_reset(&s->act);
        return 0;
    }
    arena_free(&s->act);
    return arena_init(&s->act, s->dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act", need);
}

/* MoGe on rgb (H, W, 3) U8 into points/valid (H, W, 3)/(H, W) and r's scalars. */
static int run_moge(struct depth_stage *s, struct stage_req *rq, const struct image *rgb,
                    int num_tokens, int repeat, struct moge_result *r)
{
    struct moge_geom g;
    int H = rgb->h, W = rgb->w, rc = 0;
    size_t HW = (size_t)H * W;
    uint8_t *chw = malloc(3 * HW);
    float *raw = NULL;
    double *ms = calloc((size_t)repeat, sizeof(double)), fwd_ms = 0, post_ms = 0;
    struct lm_opts lo = lm_opts_default();

    if (!chw || !ms) {
        rc = stage_fail(rq, S3D_ENOMEM, "depth: out of host memory for a %dx%d image", W, H);
        goto out;
    }
    for (size_t q = 0; q < HW; q++)                       /* (H, W, 3) -> (3, H, W) */
        for (int c = 0; c < 3; c++)
            chw[(size_t)c * HW + q] = rgb->data[3 * q + c];
    s->m.num_tokens = num_tokens;
    moge_geometry(&s->m, H, W, &g);
    s->m.num_tokens = s->num_tokens;
    size_t need = moge_act_bytes(&s->m, &g) + arena_round(3 * HW);
    if ((rc = act_reserve(s, need))) {
        stage_fail(rq, rc, "depth: cannot reserve %zu activation bytes for a %dx%d image "
                   "(%dx%d tokens)", need, W, H, g.pw, g.ph);
        goto out;
    }
    raw = malloc(sizeof(float) * 4 * (size_t)g.rh * g.rw);
    if (!raw) {
        rc = stage_fail(rq, S3D_ENOMEM, "depth: out of host memory");
        goto out;
    }
    struct tensor img = arena_tensor(&s->act, DTYPE_U8, SHAPE(3, H, W));
    img.device = s->dev;
    if (s->dev == DEVICE_CUDA)
        CUDA_CHECK(cudaMemcpyAsync(img.data, chw, 3 * HW, cudaMemcpyHostToDevice, s->ctx.stream));
    else
        memcpy(img.data, chw, 3 * HW);
    for (int k = 0; k < repeat; k++) {
        double t0 = stage_now_ms();
        rc = moge_forward(&s->m, s->dev == DEVICE_CUDA ? &s->ctx : NULL, &s->act, &img, &g, raw,
                          NULL, NULL);
        if (rc) {
            stage_fail(rq, rc, "depth: MoGe forward failed (device memory; see the log)");
            goto out;
        }
        double t1 = stage_now_ms();
        moge_postprocess(&g, raw, &lo, r);
        double t2 = stage_now_ms();
        ms[k] = t2 - t0;
        fwd_ms += t1 - t0;
        post_ms += t2 - t1;
    }
    stage_sort_ms(ms, repeat);
    log_info("depth: %dx%d -> %dx%d (%dx%d patches, budget %d): MoGe %.2f ms median of %d "
             "(forward %.2f + post-processing %.2f ms mean); focal %.6g shift %.6g; device "
             "peak %.1f MiB (arenas), resident %.1f MiB", W, H, g.rw, g.rh, g.pw, g.ph,
             num_tokens, ms[repeat / 2], repeat, fwd_ms / repeat, post_ms / repeat, r->focal,
             r->shift, arena_device_peak() / 1048576.0, arena_device_resident() / 1048576.0);
out:
    free(raw);
    free(ms);
    free(chw);
    return rc;
}

static int depth_stage_run(void *p, struct stage_req *rq)
{
    struct depth_stage *s = p;
    char ipath[4096], mpath[4096];
    struct image rgb = {0}, mask = {0};
    struct prep_out po;
    float *pm3 = NULL;
    int rc;

    memset(&po, 0, sizeof(po));
    int64_t nt, repeat;
    if ((rc = stage_param_int(rq, "num_tokens", s->num_tokens, INT64_MIN, INT64_MAX, &nt)) ||
        (rc = stage_param_int(rq, "repeat", 1, 1, DEPTH_MAX_REPEAT, &repeat)))
        return rc;
    if (nt < 1 || nt > DEPTH_MAX_TOKENS)
        return stage_fail(rq, S3D_EINVAL, "depth: num_tokens %lld is outside [1, %d]; HINT: "
                          "MoGe was trained with 1275..2551", (long long)nt, DEPTH_MAX_TOKENS);
    if ((rc = stage_param_path(rq, "image", ipath, sizeof(ipath))) ||
        (rc = stage_param_path(rq, "mask", mpath, sizeof(mpath))))
        return rc;
    if ((rc = image_load_rgb(ipath, &rgb)))
        return stage_fail(rq, rc, "depth: cannot read the image '%s' (%s); HINT: a PNG or "
                          "JPEG file", ipath, s3d_strerror(rc));
    if ((rc = image_load_mask(mpath, rgb.w, rgb.h, &mask))) {
        stage_fail(rq, rc, "depth: mask '%s' is not usable with the %dx%d image (%s); HINT: "
                   "a PNG of the image's size with the object nonzero", mpath, rgb.w, rgb.h,
                   s3d_strerror(rc));
        goto out;
    }

    int H = rgb.h, W = rgb.w, S = PREP_SIZE;
    size_t HW = (size_t)H * W;
    struct tensor *points = stage_output(rq, "points", DTYPE_F32, SHAPE(H, W, 3));
    struct tensor *valid = points ? stage_output(rq, "valid", DTYPE_U8, SHAPE(H, W)) : NULL;
    if (!valid) {
        rc = S3D_ENOMEM;                                  /* stage_output set the reply */
        goto out;
    }
    struct moge_result r = {.pointmap = points->data, .mask = valid->data};
    if ((rc = run_moge(s, rq, &rgb, (int)nt, (int)repeat, &r)))
        goto out;

    /* the SS preprocessor on the flipped, NaN-invalid point map as (3, H, W) */
    double t0 = stage_now_ms();
    pm3 = malloc(sizeof(float) * 3 * HW);
    if (!pm3) {
        rc = stage_fail(rq, S3D_ENOMEM, "depth: out of host memory");
        goto out;
    }
    for (size_t q = 0; q < HW; q++)
        for (int c = 0; c < 3; c++)
            pm3[(size_t)c * HW + q] = r.pointmap[3 * q + c];
    if ((rc = prep_run(&rgb, &mask, pm3, S, &po))) {
        stage_fail(rq, rc, "depth: preprocessing of '%s' with mask '%s' failed (%s; see the "
                   "log)", ipath, mpath, s3d_strerror(rc));
        goto out;
    }
    const struct { const char *name; const float *src; int c, n; } outs[] = {
        {"image", po.image, 3, S},         {"rgb_image", po.rgb_image, 3, S},
        {"mask", po.mask, 1, S},           {"rgb_image_mask", po.rgb_image_mask, 1, S},
        {"pointmap", po.pointmap, 3, S},   {"rgb_pointmap", po.rgb_pointmap, 3, S},
        {"pointmap_scale", po.pointmap_scale, 3, 0}, {"pointmap_shift", po.pointmap_shift, 3, 0},
        {"intrinsics", r.intrinsics, 9, 0}, {"focal", &r.focal, 1, 0}, {"shift", &r.shift, 1, 0},
    };
    for (size_t i = 0; i < sizeof(outs) / sizeof(outs[0]); i++) {
        struct tensor *t;
        if (!strcmp(outs[i].name, "intrinsics"))
            t = stage_output(rq, outs[i].name, DTYPE_F32, SHAPE(3, 3));
        else if (outs[i].n)
            t = stage_output(rq, outs[i].name, DTYPE_F32, SHAPE(1, outs[i].c, outs[i].n, outs[i].n));
        else if (outs[i].c == 3)
            t = stage_output(rq, outs[i].name, DTYPE_F32, SHAPE(1, 3));
        else
            t = stage_output(rq, outs[i].name, DTYPE_F32, SHAPE(1));
        if (!t) {
            rc = S3D_ENOMEM;
            goto out;
        }
        memcpy(t->data, outs[i].src, sizeof(float) * (size_t)tensor_numel(t));
    }
    log_info("depth: preprocessing %.1f ms; crop box [%d, %d, %d, %d], pointmap scale %.6g "
             "shift (%.6g, %.6g, %.6g)", stage_now_ms() - t0, po.bbox[0], po.bbox[1], po.bbox[2],
             po.bbox[3], po.pointmap_scale[0], po.pointmap_shift[0], po.pointmap_shift[1],
             po.pointmap_shift[2]);
out:
    free(pm3);
    prep_out_free(&po);
    image_free(&mask);
    image_free(&rgb);
    return rc;
}

int main(int argc, char **argv)
{
    static struct depth_stage model;
    const struct stage_ops ops = {
        .name = "depth",
        /* points (H, W, 3) F32 + valid dominate: 13 bytes a pixel, ~85 MP */
        .arena_bytes = (size_t)1152 << 20,
        .load = depth_stage_load,
        .unload = depth_stage_unload,
        .run = depth_stage_run,
    };

    return stage_main(&ops, &model, argc, argv);
}
