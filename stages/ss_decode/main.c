/*
 * main.c - sam3d-ss-decode: the SS decoder and the occupancy post-processing as
 * a stage (stages/ss_decode/README.md; model code in stages/ss_decode_net/).
 * The template for a stage main (stages/README.md): the model's load/free,
 * one request handler, the ops table.
 *
 *   sam3d-ss-decode --weights ss_decoder.ckpt --once IN_DIR OUT_DIR [--param keep_logits=1]
 *   sam3d-ss-decode --weights ss_decoder.ckpt --listen ipc:///tmp/s3d/ss_decode.sock
 *
 * Input: shape_latent (1, T, 8) F32 (sam3d-ss-flow's output; T = 4096 = 16^3
 * released, any cube accepted). Params: keep_logits (false; true or 1 also
 * writes the logits), prune_dist (1, the pipeline's downsample_ss_dist; 0 skips the
 * prune), max_coords (42000), seed (0: only for the random subset of
 * downsample, unreachable at the released sizes), repeat (1: run the decoder
 * that many times and log the median; S3D_PROFILE=1 adds the per-op table).
 * Outputs: coords (N, 4) I32 (b, x, y, z) - the SLAT support; coords_original
 * (N0, 4) I32 - argwhere(logits > 0) before prune/downsample; downsample_factor
 * (1) I32 (1 or 2: multiplies the pose scale); logits (1, 1, R, R, R) F32 when
 * keep_logits (fp16 values on the default GPU path).
 * No occupied voxel at all is an error reply, not an empty output.
 */
#include "ss_decode_net/ssdec.h"
#include "err.h"
#include "log.h"
#include "stage.h"
#include "stage_warm.h"

#include <stdlib.h>
#include <string.h>

#define SSD_MAX_PRUNE_DIST 8
#define SSD_MAX_COORDS_DEF 42000       /* PL/inference_utils.py:414 */
#define SSD_DOWNSAMPLE     2           /* PL/inference_utils.py:415 */

static const struct stage_param ssd_params[] = {
    {"keep_logits", STAGE_PARAM_FLAG, 0, 0, 1, "also write the logits (1, 1, R, R, R) F32", NULL},
    {"prune_dist", STAGE_PARAM_INT, 1, 0, SSD_MAX_PRUNE_DIST,
     "prune_sparse_structure's max_neighbor_axes_dist (the pipeline's downsample_ss_dist); "
     "0 skips the prune", NULL},
    {"max_coords", STAGE_PARAM_INT, SSD_MAX_COORDS_DEF, 1, INT32_MAX,
     "downsample by 2 when more voxels remain (the pipeline's 42000)", NULL},
    {"seed", STAGE_PARAM_INT, 0, 0, 9e15,
     "the random subset of the downsample (unreachable at the released sizes)", NULL},
    STAGE_PARAM_REPEAT,
    {NULL},
};

/* load / unload: ssdec_load and ssdec_free on the model (stage.h) */
STAGE_MODEL(ssd, struct ssdec_model, ssdec_load, ssdec_free);

/* A (n, 4) I32 output holding rows. */
static int put_rows(struct stage_req *rq, const char *name, const int32_t *rows, int64_t n)
{
    struct tensor *t = stage_output(rq, name, DTYPE_I32, SHAPE(n, 4));
    if (!t)
        return S3D_ENOMEM;
    memcpy(t->data, rows, (size_t)n * 4 * sizeof(*rows));
    return 0;
}

static int ssd_run(void *p, struct stage_req *rq)
{
    const struct ssdec_model *m = p;
    int64_t dist = stage_get_int(rq, "prune_dist"), maxc = stage_get_int(rq, "max_coords");
    int64_t seed = stage_get_int(rq, "seed");
    bool keep = stage_get_flag(rq, "keep_logits");
    char msg[WIRE_ERR_MAX - 32], tms[96];
    int rc;

    const struct tensor *lat = stage_input(rq, "shape_latent", DTYPE_F32,
                                           SHAPE(1, -1, m->cfg.latent_ch));
    if (!lat)
        return S3D_ESHAPE;                      /* stage_input named got vs expected */
    if ((rc = ssdec_check_latent(m, lat, "shape_latent", msg, sizeof(msg))))
        return stage_fail(rq, rc, "%s", msg);
    int r = ssdec_latent_side(lat->shape[1]);
    int R = ssdec_out_side(m, r);
    if ((rc = stage_act(rq, ssdec_act_bytes(m, r))))
        return rc;

    /* logits straight into the output when kept, else into request scratch */
    struct tensor lt, *out = NULL;
    if (keep && !(out = stage_output(rq, "logits", DTYPE_F32, SHAPE(1, 1, R, R, R))))
        return S3D_ENOMEM;
    lt = out ? *out : tensor_view(arena_alloc(rq->arena, sizeof(float) * (size_t)R * R * R),
                                  DTYPE_F32, DEVICE_HOST, SHAPE(1, 1, R, R, R));
    if (!lt.data)
        return stage_fail(rq, S3D_ENOMEM, "ss_decode: the request arena cannot hold the logits");
    struct tensor lview = tensor_reshape(&lt, SHAPE(1, R, R, R, 1));
    struct stage_loop L;
    for (stage_loop(rq, "ss_decode forward", &L); stage_loop_next(&L);)
        ssdec_forward(m, L.rt->op, &L.rt->act, lat, &lview, NULL, NULL);
    stage_loop_end(&L, 0);

    double t1 = stage_now_ms();
    int64_t n0 = ssdec_coords(lt.data, R, NULL), n1 = 0, n2 = 0;
    int factor = 1;
    if (n0 == 0)
        return stage_fail(rq, S3D_EINVAL, "ss_decode: no occupied voxel (no logit > 0 among "
                          "%d^3) (HINT: the shape latent decodes to empty space; check that it "
                          "comes from sam3d-ss-flow with the matching weights, or try another "
                          "seed)", R);
    int32_t *c0 = arena_alloc(rq->arena, (size_t)n0 * 16);
    int32_t *c1 = arena_alloc(rq->arena, (size_t)n0 * 16);
    int32_t *c2 = arena_alloc(rq->arena, (size_t)n0 * 16);
    if (!c0 || !c1 || !c2)
        return stage_fail(rq, S3D_ENOMEM, "ss_decode: the request arena cannot hold %lld "
                          "coordinates", (long long)n0);
    ssdec_coords(lt.data, R, c0);
    if (dist > 0) {
        n1 = ssdec_prune(c0, n0, (int)dist, c1);
    } else {
        memcpy(c1, c0, (size_t)n0 * 16);
        n1 = n0;
    }
    n2 = ssdec_downsample(c1, n1, maxc, SSD_DOWNSAMPLE, (uint64_t)seed, c2, &factor);
    struct tensor *ft = stage_output(rq, "downsample_factor", DTYPE_I32, SHAPE(1));
    if (!ft || put_rows(rq, "coords", c2, n2) || put_rows(rq, "coords_original", c0, n0))
        return S3D_ENOMEM;
    ((int32_t *)ft->data)[0] = factor;
    log_info("ss_decode: latent %d^3 -> logits %d^3 (%s) in %s; %lld occupied -> %lld after "
             "prune (dist %lld) -> %lld (factor %d) in %.1f ms", r, R, dtype_name(m->conv_dt),
             stage_timing_str(&L.tm, tms, sizeof(tms)), (long long)n0, (long long)n1,
             (long long)dist, (long long)n2, factor, stage_now_ms() - t1);
    return 0;
}

/* Warm-up (stage_ops.warm): one forward of a made-up latent of the SS flow's
 * size (16^3 tokens at the released size). */
#define SSD_WARM_SIDE 16

static int ssd_stage_warm(void *p, struct stage_rt *rt, struct arena *host)
{
    const struct ssdec_model *m = p;
    int r = SSD_WARM_SIDE, R = ssdec_out_side(m, r);
    struct tensor lat, logits;
    int rc;

    if ((rc = stage_warm_noise(host, SHAPE(1, (int64_t)r * r * r, m->cfg.latent_ch), &lat)) ||
        (rc = stage_warm_tensor(host, DTYPE_F32, SHAPE(1, R, R, R, 1), &logits)) ||
        (rc = stage_rt_act(rt, ssdec_act_bytes(m, r))))
        return rc;
    ssdec_forward(m, rt->op, &rt->act, &lat, &logits, NULL, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    static struct ssdec_model model;
    const struct stage_ops ops = {
        .name = "ss_decode",
        .params = ssd_params,
        /* shape_latent (1, T, 8) F32 with T = r^3 <= 64^3: 8 MiB */
        .max_input_bytes = (size_t)16 << 20,
        .uses_cudnn = true,             /* the 3-D convolutions */
        STAGE_MODEL_OPS(ssd),
        .run = ssd_run,
        .warm = ssd_stage_warm,
    };

    return stage_main(&ops, &model, argc, argv);
}
