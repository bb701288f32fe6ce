/*
 * main.c - sam3d-ss-decode: the SS decoder and the occupancy post-processing as
 * a stage (stages/ss_decode/README.md; model code in stages/ss_decode_net/).
 *
 *   sam3d-ss-decode --weights ss_decoder.ckpt --once IN_DIR OUT_DIR [--param keep_logits=1]
 *   sam3d-ss-decode --weights ss_decoder.ckpt --listen ipc:///tmp/s3d/ss_decode.sock
 *
 * Input: shape_latent (1, T, 8) F32 (sam3d-ss-flow's output; T = 4096 = 16^3
 * released, any cube accepted). Params: keep_logits (false; true or 1 also
 * writes the logits), prune_dist (1, the pipeline's downsample_ss_dist; 0 skips the
 * prune), max_coords (42000), seed (0: only for the random subset of
 * downsample, unreachable at the released sizes).
 * Outputs: coords (N, 4) I32 (b, x, y, z) - the SLAT support; coords_original
 * (N0, 4) I32 - argwhere(logits > 0) before prune/downsample; downsample_factor
 * (1) I32 (1 or 2: multiplies the pose scale); logits (1, 1, R, R, R) F32 when
 * keep_logits (fp16 values on the default GPU path).
 * No occupied voxel at all is an error reply, not an empty output.
 */
#include "ss_decode_net/ssdec.h"
#include "stage.h"
#include "check.h"
#include "err.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

#define SSD_MAX_PRUNE_DIST 8
#define SSD_MAX_COORDS_DEF 42000       /* PL/inference_utils.py:414 */
#define SSD_DOWNSAMPLE     2           /* PL/inference_utils.py:415 */

struct ssd_stage {
    struct ssdec_model m;
    struct arena       act;     /* sized per latent side, grown when a larger one comes */
    struct op_ctx      ctx;
    bool               loaded;
};

static int ssd_stage_load(void *p, const struct stage_opts *o)
{
    struct ssd_stage *s = p;
    enum dtype cdt;
    int rc;

    if (s->loaded)
        return 0;
    enum device dev = stage_use_device(o, &cdt);
    if ((rc = ssdec_load(&s->m, o->weights, dev, cdt)))
        return rc;
    if (dev == DEVICE_CUDA && (rc = op_ctx_init(&s->ctx, NULL, 0))) {
        ssdec_free(&s->m);
        return rc;
    }
    s->loaded = true;
    return 0;
}

static void ssd_stage_unload(void *p)
{
    struct ssd_stage *s = p;

    op_ctx_free(&s->ctx);
    arena_free(&s->act);
    ssdec_free(&s->m);
    memset(s, 0, sizeof(*s));
}

static int ensure_act(struct ssd_stage *s, size_t bytes)
{
    if (s->act.base && s->act.size >= bytes)
        return 0;
    arena_free(&s->act);
    return arena_init(&s->act, s->m.device == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act", bytes);
}

/* A (n, 4) I32 output holding rows. */
static int put_rows(struct stage_req *rq, const char *name, const int32_t *rows, int64_t n)
{
    struct tensor *t = stage_output(rq, name, DTYPE_I32, SHAPE(n, 4));
    if (!t)
        return S3D_ENOMEM;
    memcpy(t->data, rows, (size_t)n * 4 * sizeof(*rows));
    return 0;
}

static int ssd_stage_run(void *p, struct stage_req *rq)
{
    struct ssd_stage *s = p;
    const struct ssdec_model *m = &s->m;
    int64_t dist, maxc, seed;
    bool keep = false;
    char msg[WIRE_ERR_MAX - 32];
    int32_t *c0 = NULL, *c1 = NULL, *c2 = NULL;
    float *logits = NULL;
    int rc;

    if ((rc = stage_param_flag(rq, "keep_logits", false, &keep)) ||
        (rc = stage_param_int(rq, "prune_dist", 1, 0, SSD_MAX_PRUNE_DIST, &dist)) ||
        (rc = stage_param_int(rq, "max_coords", SSD_MAX_COORDS_DEF, 1, INT32_MAX, &maxc)) ||
        (rc = stage_param_int(rq, "seed", 0, 0, INT64_MAX, &seed)))
        return rc;
    const struct tensor *lat = stage_input(rq, "shape_latent", DTYPE_F32,
                                           SHAPE(1, -1, m->cfg.latent_ch));
    if (!lat)
        return S3D_ESHAPE;                      /* stage_input named got vs expected */
    if ((rc = ssdec_check_latent(m, lat, "shape_latent", msg, sizeof(msg))))
        return stage_fail(rq, rc, "%s", msg);
    int r = ssdec_latent_side(lat->shape[1]);
    int R = ssdec_out_side(m, r);
    int64_t nv = (int64_t)R * R * R;
    size_t need = ssdec_act_bytes(m, r);
    if (ensure_act(s, need))
        return stage_fail(rq, S3D_ENOMEM, "ss_decode: cannot reserve %.1f MiB of activations "
                          "(HINT: free device memory or use --device cpu)", need / 1048576.0);

    /* logits straight into the output when kept, else into scratch */
    struct tensor *lt = NULL;
    if (keep) {
        if (!(lt = stage_output(rq, "logits", DTYPE_F32, SHAPE(1, 1, R, R, R))))
            return S3D_ENOMEM;
        logits = lt->data;
    } else if (!(logits = malloc(sizeof(*logits) * (size_t)nv))) {
        return stage_fail(rq, S3D_ENOMEM, "ss_decode: out of host memory");
    }
    struct tensor lview = tensor_view(logits, DTYPE_F32, DEVICE_HOST, SHAPE(1, R, R, R, 1));
    double t0 = stage_now_ms();
    ssdec_forward(m, m->device == DEVICE_CUDA ? &s->ctx : NULL, &s->act, lat, &lview, NULL, NULL);
    double t1 = stage_now_ms();

    int64_t n0 = ssdec_coords(logits, R, NULL), n1 = 0, n2 = 0;
    int factor = 1;
    if (n0 == 0) {
        rc = stage_fail(rq, S3D_EINVAL, "ss_decode: no occupied voxel (no logit > 0 among %d^3) "
                        "(HINT: the shape latent decodes to empty space; check that it comes "
                        "from sam3d-ss-flow with the matching weights, or try another seed)", R);
        goto out;
    }
    c0 = malloc((size_t)n0 * 16);
    c1 = malloc((size_t)n0 * 16);
    c2 = malloc((size_t)n0 * 16);
    if (!c0 || !c1 || !c2) {
        rc = stage_fail(rq, S3D_ENOMEM, "ss_decode: out of host memory");
        goto out;
    }
    ssdec_coords(logits, R, c0);
    if (dist > 0) {
        n1 = ssdec_prune(c0, n0, (int)dist, c1);
    } else {
        memcpy(c1, c0, (size_t)n0 * 16);
        n1 = n0;
    }
    n2 = ssdec_downsample(c1, n1, maxc, SSD_DOWNSAMPLE, (uint64_t)seed, c2, &factor);
    struct tensor *ft = stage_output(rq, "downsample_factor", DTYPE_I32, SHAPE(1));
    if (!ft || put_rows(rq, "coords", c2, n2) || put_rows(rq, "coords_original", c0, n0)) {
        rc = S3D_ENOMEM;
        goto out;
    }
    ((int32_t *)ft->data)[0] = factor;
    log_info("ss_decode: latent %d^3 -> logits %d^3 (%s) in %.1f ms; %lld occupied -> %lld after "
             "prune (dist %lld) -> %lld (factor %d) in %.1f ms; device peak %.1f MiB (arenas: "
             "weights %.1f + activations high-water %.1f), resident %.1f MiB", r, R,
             dtype_name(m->conv_dt), t1 - t0, (long long)n0, (long long)n1, (long long)dist,
             (long long)n2, factor, stage_now_ms() - t1, arena_device_peak() / 1048576.0,
             m->weights.used / 1048576.0, s->act.high_water / 1048576.0,
             arena_device_resident() / 1048576.0);
    rc = 0;
out:
    if (!keep)
        free(logits);
    free(c0);
    free(c1);
    free(c2);
    return rc;
}

int main(int argc, char **argv)
{
    static struct ssd_stage model;
    const struct stage_ops ops = {
        .name = "ss_decode",
        .load = ssd_stage_load,
        .unload = ssd_stage_unload,
        .run = ssd_stage_run,
    };

    return stage_main(&ops, &model, argc, argv);
}
