/*
 * main.c - sam3d-gs-decode: the SLAT Gaussian decoder as a stage
 * (stages/gs_decode/README.md; model in gsdec.c, head transforms in
 * gs_head.c / gs_head_cuda.cu, trunk in stages/slat_dec_net/).
 *
 *   sam3d-gs-decode --weights slat_decoder_gs.ckpt --once IN_DIR OUT_DIR
 *   sam3d-gs-decode --weights slat_decoder_gs_4.ckpt --listen ipc:///tmp/s3d/gs_decode.sock
 *
 * Inputs: coords (N, 4) I32 and feats (N, 8) F32 (slat_flow.safetensors: the
 * structured latent, de-normalised). Param: repeat (1; > 1 runs the decoder
 * that many times and logs min / median / max, for benchmarks; with
 * S3D_PROFILE=1 the log also gets the device time per op, first run left out).
 * Outputs (gs_decode.safetensors), M = G N Gaussians, v * G + g, F32: xyz
 * (M, 3), f_dc (M, 3), opacity (M, 1), scale (M, 3), rotation (M, 4): the
 * values the official Gaussian.save_ply writes (docs/formats.md).
 */
#include "gsdec.h"
#include "stage.h"
#include "check.h"
#include "err.h"
#include "log.h"
#include "prof.h"

#include <string.h>

#define GSD_MAX_REPEAT 100

struct gsd_stage {
    struct gsdec_model m;
    struct arena       act;     /* sized per request, grown when a larger one comes */
    struct op_ctx      ctx;
    struct arena       ws;      /* the op_ctx's cuBLASLt workspace */
    bool               loaded;
};

static int gsd_stage_load(void *p, const struct stage_opts *o)
{
    struct gsd_stage *s = p;
    enum dtype cdt;
    int rc;

    if (s->loaded)
        return 0;
    enum device dev = stage_use_device(o, &cdt);
    if ((rc = gsdec_load(&s->m, o->weights, dev, cdt)))
        return rc;
    if (dev == DEVICE_CUDA &&
        ((rc = arena_init(&s->ws, ARENA_DEVICE, "workspace", OP_WORKSPACE_DEFAULT)) ||
         (rc = op_ctx_init(&s->ctx, &s->ws, OP_WORKSPACE_DEFAULT)))) {
        arena_free(&s->ws);
        gsdec_free(&s->m);
        return rc;
    }
    s->loaded = true;
    return 0;
}

static void gsd_stage_unload(void *p)
{
    struct gsd_stage *s = p;

    op_ctx_free(&s->ctx);
    arena_free(&s->ws);
    arena_free(&s->act);
    gsdec_free(&s->m);
    memset(s, 0, sizeof(*s));
}

static int ensure_act(struct gsd_stage *s, size_t bytes)
{
    if (s->act.base && s->act.size >= bytes)
        return 0;
    arena_free(&s->act);
    return arena_init(&s->act, s->m.device == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act", bytes);
}

static int gsd_stage_run(void *p, struct stage_req *rq)
{
    struct gsd_stage *s = p;
    const struct gsdec_model *m = &s->m;
    const struct op_ctx *ctx = m->device == DEVICE_CUDA ? &s->ctx : NULL;
    char msg[WIRE_ERR_MAX - 32];
    int64_t repeat;
    int rc;

    if ((rc = stage_param_int(rq, "repeat", 1, 1, GSD_MAX_REPEAT, &repeat)))
        return rc;
    const struct tensor *coords = stage_input(rq, "coords", DTYPE_I32, SHAPE(-1, 4));
    const struct tensor *feats = stage_input(rq, "feats", DTYPE_F32, SHAPE(-1, -1));
    if (!coords || !feats)
        return S3D_ESHAPE;                      /* stage_input named got vs expected */
    if ((rc = gsdec_check_inputs(m, coords, feats, msg, sizeof(msg))))
        return stage_fail(rq, rc, "%s", msg);
    int64_t N = coords->shape[0], M = N * m->G;
    size_t need = gsdec_act_bytes(m, N);
    if (ensure_act(s, need))
        return stage_fail(rq, S3D_ENOMEM, "gs_decode: cannot reserve %.1f MiB of activations for "
                          "%lld voxels (HINT: free device memory or use --device cpu)",
                          need / 1048576.0, (long long)N);
    struct tensor *xyz = stage_output(rq, "xyz", DTYPE_F32, SHAPE(M, 3));
    struct tensor *fdc = stage_output(rq, "f_dc", DTYPE_F32, SHAPE(M, 3));
    struct tensor *op = stage_output(rq, "opacity", DTYPE_F32, SHAPE(M, 1));
    struct tensor *sc = stage_output(rq, "scale", DTYPE_F32, SHAPE(M, 3));
    struct tensor *rot = stage_output(rq, "rotation", DTYPE_F32, SHAPE(M, 4));
    if (!xyz || !fdc || !op || !sc || !rot)
        return S3D_ENOMEM;                      /* stage_output said which */
    struct gsdec_out out = {xyz->data, fdc->data, op->data, sc->data, rot->data};
    struct gsdec_times tm;
    double ms[GSD_MAX_REPEAT];

    for (int64_t i = 0; i < repeat; i++) {
        double t0 = stage_now_ms();
        if (ctx)
            op_prof_begin(ctx);                 /* S3D_PROFILE=1: time per op */
        gsdec_forward(m, ctx, &s->act, coords, feats, &out, NULL, &tm);
        if (ctx)
            op_prof_end(ctx, i > 0 || repeat == 1);     /* the first of several is cold */
        ms[i] = stage_now_ms() - t0;
    }
    op_prof_report(stderr, "gs_decode forward");
    double last = ms[repeat - 1];
    stage_sort_ms(ms, (int)repeat);
    log_info("gs_decode: %lld voxels -> %lld Gaussians (G %d), %s; windows %lld (longest %d) / "
             "%lld (longest %d); %.1f ms (partition + upload %.1f, trunk %.1f, head + download "
             "%.1f): %.3f TFLOP at %.1f TFLOP/s; repeat %lld: %.2f / %.2f / %.2f ms "
             "min / median / max; device peak %.1f MiB (arenas: weights %.1f + activations "
             "high-water %.1f + workspace %.1f), resident %.1f MiB",
             (long long)N, (long long)M, m->G, dtype_name(m->trunk.gemm_dt),
             (long long)tm.nwin[0], tm.max_len[0], (long long)tm.nwin[1], tm.max_len[1], last,
             tm.geom, tm.trunk, tm.head, tm.flops / 1e12,
             last > 0 ? tm.flops / 1e9 / last : 0.0, (long long)repeat, ms[0],
             ms[repeat / 2], ms[repeat - 1], arena_device_peak() / 1048576.0,
             m->weights.used / 1048576.0, s->act.high_water / 1048576.0,
             s->ws.used / 1048576.0, arena_device_resident() / 1048576.0);
    return 0;
}

int main(int argc, char **argv)
{
    static struct gsd_stage model;
    const struct stage_ops ops = {
        .name = "gs_decode",
        .load = gsd_stage_load,
        .unload = gsd_stage_unload,
        .run = gsd_stage_run,
    };

    return stage_main(&ops, &model, argc, argv);
}
