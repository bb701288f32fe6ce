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
    STAGE_PARAM_REPEAT,
    {NULL},
};

/* load / unload: ssflow_load and ssflow_free on the model (stage.h) */
STAGE_MODEL(ssf, struct ssflow_model, ssflow_load, ssflow_free);

/* One sampler run for stage_repeat: from the same noise every time. */
struct ssf_pass {
    const struct ssflow_model   *m;
    const struct tensor         *cond;
    const struct tensor         *noise[SSF_N_LATENT];    /* given, or all NULL: seeded */
    uint64_t                     seed;
    struct tensor               *x[SSF_N_LATENT];        /* the outputs */
    const struct ssflow_sampler *sp;
    int                          evals;
};

static int ssf_sample(void *user, struct stage_rt *rt)
{
    struct ssf_pass *f = user;

    if (f->noise[0])
        for (int l = 0; l < SSF_N_LATENT; l++)
            tensor_copy_contiguous(f->x[l]->data, f->noise[l]);
    else
        ssflow_noise(f->seed, f->x);
    f->evals = ssflow_sample(f->m, rt->op, &rt->act, f->cond, f->x, f->sp, NULL, NULL);
    arena_reset(&rt->act);
    return 0;
}

static int ssf_run(void *p, struct stage_req *rq)
{
    const struct ssflow_model *m = p;
    const struct ssflow_config *g = &m->cfg;
    struct ssflow_sampler sp;
    struct ssf_pass f = {.m = m, .sp = &sp};
    char name[64], msg[WIRE_ERR_MAX - 32], tms[96];
    int n_noise = 0, rc;

    ssflow_sampler_defaults(&sp);
    sp.steps = (int)stage_get_int(rq, "steps");
    sp.cfg = stage_get_float(rq, "cfg");
    sp.rescale_t = stage_get_float(rq, "rescale_t");
    sp.cache_kv = stage_get_flag(rq, "cache_kv");
    f.seed = (uint64_t)stage_get_int(rq, "seed");
    bool shortcut = stage_get_flag(rq, "shortcut");
    if (shortcut)                               /* the official distillation mode: no CFG */
        ssflow_sampler_shortcut(&sp);

    /* the condition: (1, Nc, Cc), F16 (fp16 sam3d-cond) or F32 (fp32/CPU sam3d-cond) */
    if (!(f.cond = stage_input_float(rq, "cond_ss", SHAPE(1, -1, g->cond_dim))))
        return S3D_ESHAPE;                      /* stage_input named got vs expected */
    if ((rc = ssflow_check_cond(m, f.cond, "cond_ss", msg, sizeof(msg))))
        return stage_fail(rq, rc, "%s", msg);
    /* optional given noise: all five latents or none */
    for (int l = 0; l < SSF_N_LATENT; l++) {
        snprintf(name, sizeof(name), "noise.%s", ssflow_latent_name[l]);
        f.noise[l] = stage_input_opt(rq, name);
        n_noise += f.noise[l] != NULL;
    }
    if (n_noise && (rc = ssflow_check_latents(m, f.noise, "noise.", msg, sizeof(msg))))
        return stage_fail(rq, rc, "%s", msg);
    for (int l = 0; l < SSF_N_LATENT; l++) {
        const char *out = l == SSF_SHAPE ? "shape_latent" : ssflow_latent_name[l];
        if (!(f.x[l] = stage_output(rq, out, DTYPE_F32, SHAPE(1, g->ntok[l], g->cin[l]))))
            return S3D_ENOMEM;
    }
    if ((rc = stage_act(rq, ssflow_sample_bytes(m, f.cond->shape[1], sp.cache_kv))))
        return rc;
    struct stage_timing tm;
    if ((rc = stage_repeat(rq, "ss_flow sampler", ssf_sample, &f, &tm)))
        return rc;
    log_info("ss_flow: %d steps%s, %d evaluations (noise %s, K/V %s): %s, %.2f ms per "
             "evaluation", sp.steps, shortcut ? " (shortcut, d = 1/steps)" : "", f.evals,
             n_noise ? "given" : "seeded",
             sp.cache_kv ? "cached" : "per evaluation", stage_timing_str(&tm, tms, sizeof(tms)),
             f.evals ? tm.median / f.evals : 0.0);
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
    };

    return stage_main(&ops, &model, argc, argv);
}
