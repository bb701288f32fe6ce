/*
 * main.c - sam3d-slat-flow: the structured-latent flow generator and its
 * sampler as a stage (stages/slat_flow/README.md; model and sampler in
 * stages/slat_flow_net/).
 *
 *   sam3d-slat-flow --weights slat_generator.ckpt --once IN_DIR OUT_DIR [--param seed=7]
 *   sam3d-slat-flow --weights slat_generator.ckpt --listen ipc:///tmp/s3d/slat_flow.sock
 *
 * Inputs: coords (N, 4) I32 (ss_decode.safetensors: the pruned and
 * downsampled voxels at 64^3, 1 <= N <= 42,000, unique), cond_slat
 * (1, Nc, Cc) F16 or F32 (sam3d-cond on slat_generator.ckpt); optional noise
 * (N, 8) or (1, N, 8) F32 replacing our seeded noise (parity runs).
 * Params: steps (25), cfg (1.0), cfg_lo / cfg_hi (the CFG interval on t*1000,
 * [0, 500]), seed (42), rescale_t (1.0), cache_kv (0: the condition's K/V
 * projected in every evaluation; 1: once per request, 540 MB fp16 at full
 * size), repeat (timings; the noise is drawn inside each run).
 * Output (slat_flow.safetensors, docs/formats.md): coords (N, 4) I32 (the
 * input's rows, same order) and feats (N, 8) F32 = x * slat_std + slat_mean.
 */
#include "slat_flow_net/slatflow.h"
#include "err.h"
#include "log.h"
#include "flow_net/flow_params.h"
#include "stage.h"
#include "stage_warm.h"

#include <string.h>

static const struct stage_param slf_params[] = {
    FLOW_PARAM_STEPS,
    {"cfg", STAGE_PARAM_FLOAT, 1.0, 0, 1e6,
     "classifier-free guidance strength s: v = (1+s) v_cond - s v_uncond on t*1000 in "
     "[cfg_lo, cfg_hi]; 0: no unconditional pass", NULL},
    {"cfg_lo", STAGE_PARAM_FLOAT, 0.0, 0, 1000, "CFG interval start on t*1000 (inclusive)",
     NULL},
    {"cfg_hi", STAGE_PARAM_FLOAT, 500.0, 0, 1000, "CFG interval end on t*1000 (inclusive)",
     NULL},
    FLOW_PARAM_SEED,
    FLOW_PARAM_RESCALE_T(1.0),
    {"cache_kv", STAGE_PARAM_FLAG, 0, 0, 1,
     "1: project the condition's cross-attention K/V once per request (540 MB fp16 at full "
     "size, ~1% faster); 0: in every evaluation, the same output", NULL},
    STAGE_PARAM_STREAM_BLOCKS,
    STAGE_PARAM_REPEAT,
    {NULL},
};

/* load / unload: slatflow_load (blocks streamed with stream_blocks=1) and slatflow_free (stage.h) */
STAGE_MODEL_STREAM(slf, struct slatflow_model, slatflow_load, slatflow_free);

static int slf_run(void *p, struct stage_req *rq)
{
    const struct slatflow_model *m = p;
    struct slatflow_sampler sp;
    const struct tensor *coords, *cond, *noise;     /* noise NULL: seeded */
    struct tensor x;                                /* (N, 8) host F32: the output feats */
    float *vbuf;                                    /* 2 N 8 host floats: the velocities */
    uint64_t seed;
    int evals = 0;
    char msg[WIRE_ERR_MAX - 32], tms[96], got[64];
    int rc;

    slatflow_sampler_defaults(&sp);
    sp.steps = (int)stage_get_int(rq, "steps");
    sp.cfg = stage_get_float(rq, "cfg");
    sp.cfg_lo = stage_get_float(rq, "cfg_lo");
    sp.cfg_hi = stage_get_float(rq, "cfg_hi");
    sp.rescale_t = stage_get_float(rq, "rescale_t");
    sp.cache_kv = stage_get_flag(rq, "cache_kv");
    seed = (uint64_t)stage_get_int(rq, "seed");
    if (sp.cfg_lo > sp.cfg_hi)
        return stage_fail(rq, S3D_EINVAL, "slat_flow: params cfg_lo %g > cfg_hi %g: the CFG "
                          "interval is empty (HINT: cfg=0 turns guidance off)", sp.cfg_lo,
                          sp.cfg_hi);

    /* the voxels: (N, 4) I32 from ss_decode, checked as a set at 64^3 */
    if (!(coords = stage_input(rq, "coords", DTYPE_I32, SHAPE(-1, 4))))
        return S3D_ESHAPE;                      /* stage_input named got vs expected */
    if ((rc = slatflow_check_coords(coords, SLF_RESOLUTION, "slat_flow: input 'coords'", msg,
                                    sizeof(msg))))
        return stage_fail(rq, rc, "%s", msg);
    int64_t N = coords->shape[0], M = slatflow_parents(coords, SLF_RESOLUTION);

    /* the condition: (1, Nc, Cc), F16 (fp16 sam3d-cond) or F32 (fp32/CPU sam3d-cond) */
    if (!(cond = stage_input_float(rq, "cond_slat", SHAPE(1, -1, m->cfg.cond_dim))))
        return S3D_ESHAPE;
    if ((rc = slatflow_check_cond(m, cond, "cond_slat", msg, sizeof(msg))))
        return stage_fail(rq, rc, "%s", msg);

    /* optional given noise: N x 8 F32, (N, 8) or (1, N, 8) */
    if ((noise = stage_input_opt(rq, "noise"))) {
        const struct tensor *z = noise;
        bool ok = z->dtype == DTYPE_F32 && tensor_is_contiguous(z) &&
                  ((z->ndim == 2 && z->shape[0] == N && z->shape[1] == SLF_LATENT) ||
                   (z->ndim == 3 && z->shape[0] == 1 && z->shape[1] == N &&
                    z->shape[2] == SLF_LATENT));
        if (!ok)
            return stage_fail(rq, S3D_ESHAPE, "slat_flow: input 'noise' is %s %s, expected F32 "
                              "[%lld,%d] or [1,%lld,%d]: one row per voxel of 'coords' (HINT: "
                              "leave it out to draw the noise from param seed)",
                              dtype_name(z->dtype),
                              tensor_shape_str(z->shape, z->ndim, got, sizeof(got)),
                              (long long)N, SLF_LATENT, (long long)N, SLF_LATENT);
    }

    /* outputs; the velocities' host scratch; the device arena sized by the planning pass */
    struct tensor *co = stage_output(rq, "coords", DTYPE_I32, SHAPE(N, 4));
    struct tensor *feats = stage_output(rq, "feats", DTYPE_F32, SHAPE(N, SLF_LATENT));
    if (!co || !feats)
        return S3D_ENOMEM;                      /* stage_output said which */
    if (!(vbuf = arena_alloc(rq->arena, sizeof(float) * 2 * (size_t)N * SLF_LATENT)))
        return stage_fail(rq, S3D_ENOMEM, "slat_flow: no room for the velocities of %lld "
                          "voxels in the request arena", (long long)N);
    memcpy(co->data, coords->data, (size_t)N * 16);
    x = tensor_view(feats->data, DTYPE_F32, DEVICE_HOST, SHAPE(N, SLF_LATENT));
    if ((rc = stage_act(rq, slatflow_sample_bytes(m, N, M, cond->shape[1], sp.cache_kv))))
        return rc;
    /* the sampler from the same noise in every run (the noise is drawn inside the timing) */
    struct stage_loop L;
    for (stage_loop(rq, "slat_flow sampler", &L); stage_loop_next(&L);) {
        if (noise)
            tensor_copy_contiguous(x.data, noise);
        else
            slatflow_noise(seed, &x);
        evals = slatflow_sample(m, L.rt->op, &L.rt->act, coords, cond, &x, vbuf, &sp, NULL, NULL);
        arena_reset(&L.rt->act);
    }
    stage_loop_end(&L, 0);
    slatflow_denorm(&x, &x);
    log_info("slat_flow: %lld voxels -> %lld tokens, %d steps, %d evaluations (CFG %g on "
             "[%g, %g], noise %s, K/V %s): %s, %.2f ms per evaluation", (long long)N,
             (long long)M, sp.steps, evals, sp.cfg, sp.cfg_lo, sp.cfg_hi,
             noise ? "given" : "seeded", sp.cache_kv ? "cached" : "per evaluation",
             stage_timing_str(&L.tm, tms, sizeof(tms)), evals ? L.tm.median / evals : 0.0);
    return 0;
}

/* Warm-up (stage_ops.warm): the sampler for 2 steps (one plain evaluation, one
 * CFG step) on a typical voxel set (stage_warm_voxels) and
 * a zero condition of the SLAT cond stage's size at the released weights (5496
 * rows, stages/cond/README.md). */
#define SLF_WARM_COND_ROWS 5496

static int slf_warm(void *p, struct stage_rt *rt, struct arena *host)
{
    const struct slatflow_model *m = p;
    struct slatflow_sampler sp;
    struct tensor coords, cond, x;
    enum dtype cdt = rt->compute_dt == DTYPE_F16 ? DTYPE_F16 : DTYPE_F32;  /* as cond gives */
    float *vbuf;
    int rc;

    slatflow_sampler_defaults(&sp);
    sp.steps = 2;
    if ((rc = stage_warm_voxels(rt, host, SLF_RESOLUTION, &coords)))
        return rc;
    int64_t N = coords.shape[0], M = slatflow_parents(&coords, SLF_RESOLUTION);
    if ((rc = stage_warm_tensor(host, cdt, SHAPE(1, SLF_WARM_COND_ROWS, m->cfg.cond_dim),
                                &cond)) ||
        (rc = stage_warm_tensor(host, DTYPE_F32, SHAPE(N, SLF_LATENT), &x)))
        return rc;
    if (!(vbuf = arena_alloc(host, sizeof(float) * 2 * (size_t)N * SLF_LATENT)))
        return S3D_ENOMEM;
    slatflow_noise(0, &x);
    if ((rc = stage_rt_act(rt, slatflow_sample_bytes(m, N, M, SLF_WARM_COND_ROWS,
                                                     sp.cache_kv))))
        return rc;
    slatflow_sample(m, rt->op, &rt->act, &coords, &cond, &x, vbuf, &sp, NULL, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    static struct slatflow_model model;
    const struct stage_ops ops = {
        .name = "slat_flow",
        .params = slf_params,
        /* cond_slat (1, 5496, 1024) F32 (22.5 MB) + coords and noise at 42,000 voxels (2 MB) */
        .max_input_bytes = (size_t)48 << 20,
        .workspace_bytes = OP_WORKSPACE_DEFAULT,
        STAGE_MODEL_OPS(slf),
        .run = slf_run,
        .warm = slf_warm,
    };

    return stage_main(&ops, &model, argc, argv);
}
