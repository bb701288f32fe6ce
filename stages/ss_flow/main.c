/*
 * main.c - sam3d-ss-flow: the sparse-structure flow generator and its sampler
 * as a stage (stages/ss_flow/README.md; model code in stages/ss_flow_net/).
 *
 *   sam3d-ss-flow --weights ss_generator.ckpt --once IN_DIR OUT_DIR [--param seed=7]
 *   sam3d-ss-flow --weights ss_generator.ckpt --listen ipc:///tmp/s3d/ss_flow.sock
 *
 * Inputs: cond_ss (1, Nc, Cc) F16 or F32 (sam3d-cond's output); optional
 * noise.<latent> (all five or none, F32, the latents' shapes) replacing our
 * seeded noise (parity runs). Params: steps (25), cfg (7.0), seed (42),
 * rescale_t (3.0), cache_kv (0: the condition's cross-attention K/V projected
 * in every evaluation; 1: once per request, spec §10.3, 1.48 GB more for ~3%),
 * shortcut (0; 1: the official shortcut/distillation mode, d = 1/steps and no
 * CFG whatever cfg says: `sam3d run --preset fast` with steps 4), repeat
 * (1: run the sampler that many times from the same noise and log the median;
 * the output is the last run's; with S3D_PROFILE=1 the per-op device time of
 * the warm runs is printed, kernels/prof.h; the noise is drawn inside each
 * timed run).
 * Outputs: shape_latent (1, Ns, 8) and the pose latents 6drotation_normalized
 * (1, 1, 6), scale (1, 1, 3), translation (1, 1, 3), translation_scale
 * (1, 1, 1), all F32. (The pose decoder reads pointmap_scale/shift from
 * depth.safetensors itself: nothing is passed through here.)
 */
#include "ss_flow_net/ssflow.h"
#include "err.h"
#include "log.h"
#include "flow_net/flow_params.h"
#include "stage.h"
#include "stage_warm.h"

#include <stdlib.h>
#include <string.h>

static const struct stage_param ssf_params[] = {
    FLOW_PARAM_STEPS,
    {"cfg", STAGE_PARAM_FLOAT, 7.0, 0, 1e6,
     "classifier-free guidance strength s: v = (1+s) v_cond - s v_uncond on t*1000 in [0, 500]",
     NULL},
    FLOW_PARAM_SEED,
    FLOW_PARAM_RESCALE_T(3.0),
    {"cache_kv", STAGE_PARAM_FLAG, 0, 0, 1,
     "project the condition's cross-attention K/V once per request (1.48 GB at full size, ~3% "
     "faster; 0: in every evaluation, the same output)", NULL},
    {"shortcut", STAGE_PARAM_FLAG, 0, 0, 1,
     "the official shortcut (distillation) mode: d = 1/steps, no CFG whatever cfg says "
     "(sam3d run --preset fast: 4 steps)", NULL},
    STAGE_PARAM_STREAM_BLOCKS,
    STAGE_PARAM_REPEAT,
    {NULL},
};

/* load / unload: ssflow_load (blocks streamed with stream_blocks=1) and ssflow_free (stage.h) */
STAGE_MODEL_STREAM(ssf, struct ssflow_model, ssflow_load, ssflow_free);

static int ssf_run(void *p, struct stage_req *rq)
{
    const struct ssflow_model *m = p;
    const struct ssflow_config *g = &m->cfg;
    struct ssflow_sampler sp;
    const struct tensor *cond, *noise[SSF_N_LATENT];   /* noise: given, or all NULL: seeded */
    struct tensor *x[SSF_N_LATENT];                     /* the outputs */
    uint64_t seed;
    int evals = 0;
    char name[64], msg[WIRE_ERR_MAX - 32], tms[96];
    int n_noise = 0, rc;

    ssflow_sampler_defaults(&sp);
    sp.steps = (int)stage_get_int(rq, "steps");
    sp.cfg = stage_get_float(rq, "cfg");
    sp.rescale_t = stage_get_float(rq, "rescale_t");
    sp.cache_kv = stage_get_flag(rq, "cache_kv");
    seed = (uint64_t)stage_get_int(rq, "seed");
    bool shortcut = stage_get_flag(rq, "shortcut");
    if (shortcut)                               /* the official distillation mode: no CFG */
        ssflow_sampler_shortcut(&sp);

    /* the condition: (1, Nc, Cc), F16 (fp16 sam3d-cond) or F32 (fp32/CPU sam3d-cond) */
    if (!(cond = stage_input_float(rq, "cond_ss", SHAPE(1, -1, g->cond_dim))))
        return S3D_ESHAPE;                      /* stage_input named got vs expected */
    if ((rc = ssflow_check_cond(m, cond, "cond_ss", msg, sizeof(msg))))
        return stage_fail(rq, rc, "%s", msg);
    /* optional given noise: all five latents or none */
    for (int l = 0; l < SSF_N_LATENT; l++) {
        snprintf(name, sizeof(name), "noise.%s", ssflow_latent_name[l]);
        noise[l] = stage_input_opt(rq, name);
        n_noise += noise[l] != NULL;
    }
    if (n_noise && (rc = ssflow_check_latents(m, noise, "noise.", msg, sizeof(msg))))
        return stage_fail(rq, rc, "%s", msg);
    for (int l = 0; l < SSF_N_LATENT; l++) {
        const char *out = l == SSF_SHAPE ? "shape_latent" : ssflow_latent_name[l];
        if (!(x[l] = stage_output(rq, out, DTYPE_F32, SHAPE(1, g->ntok[l], g->cin[l]))))
            return S3D_ENOMEM;
    }
    if ((rc = stage_act(rq, ssflow_sample_bytes(m, cond->shape[1], sp.cache_kv))))
        return rc;
    /* the sampler from the same noise in every run (the noise is drawn inside the timing) */
    struct stage_loop L;
    for (stage_loop(rq, "ss_flow sampler", &L); stage_loop_next(&L);) {
        if (n_noise)
            for (int l = 0; l < SSF_N_LATENT; l++)
                tensor_copy_contiguous(x[l]->data, noise[l]);
        else
            ssflow_noise(seed, x);
        evals = ssflow_sample(m, L.rt->op, &L.rt->act, cond, x, &sp, NULL, NULL);
        arena_reset(&L.rt->act);
    }
    stage_loop_end(&L, 0);
    log_info("ss_flow: %d steps%s, %d evaluations (noise %s, K/V %s): %s, %.2f ms per "
             "evaluation", sp.steps, shortcut ? " (shortcut, d = 1/steps)" : "", evals,
             n_noise ? "given" : "seeded",
             sp.cache_kv ? "cached" : "per evaluation", stage_timing_str(&L.tm, tms, sizeof(tms)),
             evals ? L.tm.median / evals : 0.0);
    return 0;
}

/* Warm-up (stage_ops.warm): the sampler for 2 steps (one plain evaluation, one
 * CFG step) on a zero condition of the SS cond stage's size at the released
 * weights (7528 rows, stages/cond/README.md). */
#define SSF_WARM_COND_ROWS 7528

static int ssf_warm(void *p, struct stage_rt *rt, struct arena *host)
{
    const struct ssflow_model *m = p;
    const struct ssflow_config *g = &m->cfg;
    struct ssflow_sampler sp;
    struct tensor cond, x[SSF_N_LATENT], *xp[SSF_N_LATENT];
    enum dtype cdt = rt->compute_dt == DTYPE_F16 ? DTYPE_F16 : DTYPE_F32;  /* as cond gives */
    int rc;

    ssflow_sampler_defaults(&sp);
    sp.steps = 2;
    if ((rc = stage_warm_tensor(host, cdt, SHAPE(1, SSF_WARM_COND_ROWS, g->cond_dim), &cond)))
        return rc;
    for (int l = 0; l < SSF_N_LATENT; l++) {
        if ((rc = stage_warm_tensor(host, DTYPE_F32, SHAPE(1, g->ntok[l], g->cin[l]), &x[l])))
            return rc;
        xp[l] = &x[l];
    }
    ssflow_noise(0, xp);
    if ((rc = stage_rt_act(rt, ssflow_sample_bytes(m, SSF_WARM_COND_ROWS, sp.cache_kv))))
        return rc;
    ssflow_sample(m, rt->op, &rt->act, &cond, xp, &sp, NULL, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    static struct ssflow_model model;
    const struct stage_ops ops = {
        .name = "ss_flow",
        .params = ssf_params,
        /* cond_ss (1, 7528, 1024) F32 (30.8 MB) + the optional noise.* and side tensors */
        .max_input_bytes = (size_t)64 << 20,
        .workspace_bytes = OP_WORKSPACE_DEFAULT,
        STAGE_MODEL_OPS(ssf),
        .run = ssf_run,
        .warm = ssf_warm,
    };

    return stage_main(&ops, &model, argc, argv);
}
