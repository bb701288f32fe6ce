/*
 * main.c - sam3d-ss-flow: the sparse-structure flow generator and its sampler
 * as a stage (stages/ss_flow/README.md; model code in stages/ss_flow_net/).
 *
 *   sam3d-ss-flow --weights ss_generator.ckpt --once IN_DIR OUT_DIR [--param seed=7]
 *   sam3d-ss-flow --weights ss_generator.ckpt --listen ipc:///tmp/s3d/ss_flow.sock
 *
 * Inputs: cond_ss (1, Nc, Cc) F16 or F32 (sam3d-cond's output); pointmap_scale,
 * pointmap_shift (1, 3) F32, passed through for the pose decoder; optional
 * noise.<latent> (all five or none, F32, the latents' shapes) replacing our
 * seeded noise (parity runs). Params: steps (25), cfg (7.0), seed (42),
 * rescale_t (3.0), cache_kv (1: project the condition's cross-attention K/V
 * once per request, spec §10.3; 0: in every evaluation, less memory), repeat
 * (1: run the sampler that many times from the same noise and log the median;
 * the output is the last run's; with S3D_PROFILE=1 the per-op device time of
 * the warm runs is printed, kernels/prof.h).
 * Outputs: shape_latent (1, Ns, 8) and the pose latents 6drotation_normalized
 * (1, 1, 6), scale (1, 1, 3), translation (1, 1, 3), translation_scale
 * (1, 1, 1), all F32; pointmap_scale, pointmap_shift unchanged.
 */
#include "ss_flow_net/ssflow.h"
#include "stage.h"
#include "check.h"
#include "err.h"
#include "log.h"
#include "prof.h"

#include <stdlib.h>
#include <string.h>

#define SSF_MAX_REPEAT 1000
#define SSF_MAX_STEPS  1000

struct ssf_stage {
    struct ssflow_model m;
    struct arena        ws;      /* the cuBLAS workspace (device) */
    struct arena        act;     /* condition + one forward; grown per request if Nc needs it */
    struct op_ctx       ctx;
    bool                loaded;
};

static int ssf_stage_load(void *p, const struct stage_opts *o)
{
    struct ssf_stage *s = p;
    enum dtype gd;
    int rc;

    if (s->loaded)
        return 0;
    enum device dev = stage_use_device(o, &gd);
    if ((rc = ssflow_load(&s->m, o->weights, dev, gd)))
        return rc;
    if (dev == DEVICE_CUDA) {
        rc = arena_init(&s->ws, ARENA_DEVICE, "cublas", OP_WORKSPACE_DEFAULT);
        if (!rc)
            rc = op_ctx_init(&s->ctx, &s->ws, OP_WORKSPACE_DEFAULT);
        if (rc) {
            arena_free(&s->ws);
            ssflow_free(&s->m);
            return rc;
        }
    }
    s->loaded = true;
    return 0;
}

static void ssf_stage_unload(void *p)
{
    struct ssf_stage *s = p;

    op_ctx_free(&s->ctx);
    arena_free(&s->act);
    arena_free(&s->ws);
    ssflow_free(&s->m);
    memset(s, 0, sizeof(*s));
}

/* Make s->act hold at least bytes (re-reserved when a longer condition comes). */
static int ensure_act(struct ssf_stage *s, size_t bytes)
{
    if (s->act.base && s->act.size >= bytes)
        return 0;
    arena_free(&s->act);
    return arena_init(&s->act, s->m.device == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act", bytes);
}

/* The request's input called name, or NULL (no error: for optional inputs). */
static const struct stage_input *find_input(const struct stage_req *rq, const char *name)
{
    for (int i = 0; i < rq->n_in; i++)
        if (!strcmp(rq->in[i].desc->name, name))
            return &rq->in[i];
    return NULL;
}

static int ssf_stage_run(void *p, struct stage_req *rq)
{
    struct ssf_stage *s = p;
    const struct ssflow_model *m = &s->m;
    const struct ssflow_config *g = &m->cfg;
    const char *side[2] = {"pointmap_scale", "pointmap_shift"};
    const struct tensor *noise[SSF_N_LATENT];
    struct tensor *x[SSF_N_LATENT];
    struct ssflow_sampler sp;
    int64_t steps, seed, repeat, cache;
    char name[64], msg[WIRE_ERR_MAX - 32];
    int n_noise = 0, rc;

    ssflow_sampler_defaults(&sp);
    if ((rc = stage_param_int(rq, "steps", sp.steps, 1, SSF_MAX_STEPS, &steps)) ||
        (rc = stage_param_float(rq, "cfg", sp.cfg, 0, 1e6, &sp.cfg)) ||
        (rc = stage_param_int(rq, "seed", 42, 0, 9000000000000000LL, &seed)) ||
        (rc = stage_param_float(rq, "rescale_t", sp.rescale_t, 1e-6, 1e6, &sp.rescale_t)) ||
        (rc = stage_param_int(rq, "repeat", 1, 1, SSF_MAX_REPEAT, &repeat)) ||
        (rc = stage_param_int(rq, "cache_kv", 1, 0, 1, &cache)))
        return rc;
    sp.steps = (int)steps;
    sp.cache_kv = cache != 0;

    /* the condition: (1, Nc, Cc), F16 (fp16 sam3d-cond) or F32 (fp32/CPU sam3d-cond) */
    const struct stage_input *ci = find_input(rq, "cond_ss");
    enum dtype cdt = ci && ci->t.dtype == DTYPE_F32 ? DTYPE_F32 : DTYPE_F16;
    const struct tensor *cond = stage_input(rq, "cond_ss", cdt, SHAPE(1, -1, g->cond_dim));
    if (!cond)
        return S3D_ESHAPE;                      /* stage_input named got vs expected */
    if ((rc = ssflow_check_cond(m, cond, "cond_ss", msg, sizeof(msg))))
        return stage_fail(rq, rc, "%s", msg);
    for (int i = 0; i < 2; i++) {               /* passed through for the pose decoder */
        const struct tensor *t = stage_input(rq, side[i], DTYPE_F32, SHAPE(1, 3));
        struct tensor *o = t ? stage_output(rq, side[i], DTYPE_F32, SHAPE(1, 3)) : NULL;
        if (!o)
            return S3D_ESHAPE;
        tensor_copy_contiguous(o->data, t);
    }
    /* optional given noise: all five latents or none */
    for (int l = 0; l < SSF_N_LATENT; l++) {
        const struct stage_input *ni;
        snprintf(name, sizeof(name), "noise.%s", ssflow_latent_name[l]);
        noise[l] = (ni = find_input(rq, name)) ? &ni->t : NULL;
        n_noise += noise[l] != NULL;
    }
    if (n_noise && (rc = ssflow_check_latents(m, noise, "noise.", msg, sizeof(msg))))
        return stage_fail(rq, rc, "%s", msg);
    for (int l = 0; l < SSF_N_LATENT; l++) {
        const char *out = l == SSF_SHAPE ? "shape_latent" : ssflow_latent_name[l];
        if (!(x[l] = stage_output(rq, out, DTYPE_F32, SHAPE(1, g->ntok[l], g->cin[l]))))
            return S3D_ENOMEM;
    }
    size_t need = ssflow_sample_bytes(m, cond->shape[1], sp.cache_kv);
    if (ensure_act(s, need))
        return stage_fail(rq, S3D_ENOMEM, "ss_flow: cannot reserve %.1f MiB of activations "
                          "(HINT: free device memory or use --device cpu)", need / 1048576.0);

    int nrep = (int)repeat, evals = 0;
    double *ms = calloc((size_t)nrep, sizeof(*ms));
    if (!ms)
        return stage_fail(rq, S3D_ENOMEM, "ss_flow: out of host memory");
    for (int k = 0; k < nrep; k++) {
        for (int l = 0; l < SSF_N_LATENT; l++)
            if (n_noise)
                tensor_copy_contiguous(x[l]->data, noise[l]);
        if (!n_noise)
            ssflow_noise((uint64_t)seed, x);
        double t0 = stage_now_ms();
        if (m->device == DEVICE_CUDA)
            op_prof_begin(&s->ctx);
        evals = ssflow_sample(m, m->device == DEVICE_CUDA ? &s->ctx : NULL, &s->act, cond, x, &sp,
                              NULL, NULL);
        if (m->device == DEVICE_CUDA)
            op_prof_end(&s->ctx, k > 0 || nrep == 1);
        ms[k] = stage_now_ms() - t0;
        arena_reset(&s->act);
    }
    op_prof_report(stderr, "ss_flow sampler");
    stage_sort_ms(ms, nrep);
    log_info("ss_flow: %d steps, %d evaluations (noise %s, K/V %s): %.1f ms median of %d (min "
             "%.1f, max %.1f), %.2f ms per evaluation; device peak %.1f MiB (arenas: weights %.1f "
             "+ activations high-water %.1f), resident %.1f MiB", sp.steps, evals,
             n_noise ? "given" : "seeded", sp.cache_kv ? "cached" : "per evaluation", ms[nrep / 2],
             nrep, ms[0], ms[nrep - 1],
             evals ? ms[nrep / 2] / evals : 0.0, arena_device_peak() / 1048576.0,
             m->weights.used / 1048576.0, s->act.high_water / 1048576.0,
             arena_device_resident() / 1048576.0);
    free(ms);
    return 0;
}

int main(int argc, char **argv)
{
    static struct ssf_stage model;
    const struct stage_ops ops = {
        .name = "ss_flow",
        .load = ssf_stage_load,
        .unload = ssf_stage_unload,
        .run = ssf_stage_run,
    };

    return stage_main(&ops, &model, argc, argv);
}
