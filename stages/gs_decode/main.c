/*
 * main.c - sam3d-gs-decode: the SLAT Gaussian decoder as a stage
 * (stages/gs_decode/README.md; model in gsdec.c, head transforms in
 * gs_head.c / gs_head_cuda.cu, trunk in stages/slat_dec_net/).
 *
 *   sam3d-gs-decode --weights slat_decoder_gs.ckpt --once IN_DIR OUT_DIR
 *   sam3d-gs-decode --weights slat_decoder_gs_4.ckpt --listen ipc:///tmp/s3d/gs_decode.sock
 *
 * Inputs: coords (N, 4) I32 and feats (N, 8) F32 (slat_flow.safetensors: the
 * structured latent, de-normalised). Param: repeat (1, at most 1000; > 1 runs
 * the decoder that many times and logs min / median / max, for benchmarks;
 * with S3D_PROFILE=1 the log also gets the device time per op, first run left
 * out). The library logs the memory line after the request.
 * Outputs (gs_decode.safetensors), M = G N Gaussians, v * G + g, F32: xyz
 * (M, 3), f_dc (M, 3), opacity (M, 1), scale (M, 3), rotation (M, 4): the
 * values the official Gaussian.save_ply writes (docs/formats.md).
 */
#include "gsdec.h"
#include "stage.h"
#include "stage_warm.h"
#include "err.h"
#include "log.h"

#include <string.h>

/* load / unload: gsdec_load and gsdec_free on the model (stage.h) */
STAGE_MODEL(gsd, struct gsdec_model, gsdec_load, gsdec_free);

static int gsd_stage_run(void *p, struct stage_req *rq)
{
    const struct gsdec_model *m = p;
    char msg[WIRE_ERR_MAX - 32];
    int rc;

    const struct tensor *coords, *feats;
    if ((rc = stage_input_slat(rq, &coords, &feats)))
        return rc;
    if ((rc = gsdec_check_inputs(m, coords, feats, msg, sizeof(msg))))
        return stage_fail(rq, rc, "%s", msg);
    int64_t N = coords->shape[0], M = N * m->G;
    if ((rc = stage_act(rq, gsdec_act_bytes(m, N))))
        return rc;
    struct tensor *xyz = stage_output(rq, "xyz", DTYPE_F32, SHAPE(M, 3));
    struct tensor *fdc = stage_output(rq, "f_dc", DTYPE_F32, SHAPE(M, 3));
    struct tensor *op = stage_output(rq, "opacity", DTYPE_F32, SHAPE(M, 1));
    struct tensor *sc = stage_output(rq, "scale", DTYPE_F32, SHAPE(M, 3));
    struct tensor *rot = stage_output(rq, "rotation", DTYPE_F32, SHAPE(M, 4));
    if (!xyz || !fdc || !op || !sc || !rot)
        return S3D_ENOMEM;                      /* stage_output said which */
    struct gsdec_out out = {xyz->data, fdc->data, op->data, sc->data, rot->data};
    struct gsdec_times times, *tm = &times;       /* the last run's split */
    struct stage_loop L;
    double last = 0;
    for (stage_loop(rq, "gs_decode forward", &L); stage_loop_next(&L);) {
        double t0 = stage_now_ms();
        gsdec_forward(m, L.rt->op, &L.rt->act, coords, feats, &out, NULL, tm);
        last = stage_now_ms() - t0;
    }
    stage_loop_end(&L, 0);
    log_info("gs_decode: %lld voxels -> %lld Gaussians (G %d), %s; windows %lld (longest %d) / "
             "%lld (longest %d); %.1f ms (partition + upload %.1f, trunk %.1f, head + download "
             "%.1f): %.3f TFLOP at %.1f TFLOP/s; repeat %d: %.2f / %.2f / %.2f ms "
             "min / median / max", (long long)N, (long long)M, m->G,
             dtype_name(m->trunk.gemm_dt), (long long)tm->nwin[0], tm->max_len[0],
             (long long)tm->nwin[1], tm->max_len[1], last, tm->geom, tm->trunk, tm->head,
             tm->flops / 1e12, last > 0 ? tm->flops / 1e9 / last : 0.0, L.tm.n, L.tm.min,
             L.tm.median, L.tm.max);
    return 0;
}

/* Warm-up (stage_ops.warm): one decode of a typical voxel set (stage_warm_voxels)
 * with made-up latents. */
static int gsd_stage_warm(void *p, struct stage_rt *rt, struct arena *host)
{
    const struct gsdec_model *m = p;
    struct tensor coords, feats, t[5];
    char msg[256];
    int rc;

    if ((rc = stage_warm_voxels(rt, host, SLD_RESOLUTION, &coords)))
        return rc;
    int64_t N = coords.shape[0], M = N * m->G;
    if ((rc = stage_warm_noise(host, SHAPE(N, m->trunk.cfg.in_ch), &feats)))
        return rc;
    if ((rc = gsdec_check_inputs(m, &coords, &feats, msg, sizeof(msg))))
        return log_error_to(rc, NULL, 0, "warm-up: %s", msg);
    const int ch[5] = {3, 3, 1, 3, 4};          /* xyz, f_dc, opacity, scale, rotation */
    for (int i = 0; i < 5; i++)
        if ((rc = stage_warm_tensor(host, DTYPE_F32, SHAPE(M, ch[i]), &t[i])))
            return rc;
    struct gsdec_out out = {t[0].data, t[1].data, t[2].data, t[3].data, t[4].data};
    if ((rc = stage_rt_act(rt, gsdec_act_bytes(m, N))))
        return rc;
    gsdec_forward(m, rt->op, &rt->act, &coords, &feats, &out, NULL, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    static struct gsdec_model model;
    const struct stage_ops ops = {
        .name = "gs_decode",
        .params = stage_params_repeat,
        SLD_STAGE_OPS,
        STAGE_MODEL_OPS(gsd),
        .run = gsd_stage_run,
        .warm = gsd_stage_warm,
    };

    return stage_main(&ops, &model, argc, argv);
}
