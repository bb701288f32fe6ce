/*
 * sampler.c - the SS sampler: ShortCut in flow-matching mode (d = 0), Euler,
 * CFG with a zeroed condition; and our seeded N(0, 1) noise. See ssflow.h.
 *
 * Reference (sam-3d-objects @cf06676, sam3d_objects/model/backbone/generator/):
 *   shortcut/model.py:395-412     t_seq = np.linspace(0, 1, steps + 1), rescaled
 *                                 t / (1 + (r - 1)(1 - t)) in float64; d = 0
 *   shortcut/model.py:436-450     t, d fed as float32 tensors [t * 1000], [d * 1000]
 *   flow_matching/solver.py:9-51  x_{k+1} = x_k + v_k * (t_{k+1} - t_k)
 *   classifier_free_guidance.py:99-160  strength s while lo <= t <= hi (float32 t),
 *                                 else the conditional pass alone;
 *                                 v = (1 + s) v_cond - s v_uncond
 * Spec: generators.md §5.3-5.6, §11.1-2, §11.19.
 */
#include "ssflow.h"
#include "check.h"
#include "dtype.h"
#include "log.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ssflow_sampler_defaults(struct ssflow_sampler *s)
{
    s->steps = 25;
    s->cfg = 7.0;
    s->cfg_lo = 0.0;
    s->cfg_hi = 500.0;
    s->rescale_t = 3.0;
    s->d = 0.0;
    s->cache_kv = false;
}

void ssflow_sampler_shortcut(struct ssflow_sampler *s)
{
    ASSERT(s->steps >= 1);
    s->d = 1.0 / (double)s->steps;      /* `d = 1 / steps` in float64 (shortcut/model.py:403) */
    s->cfg = 0.0;                       /* reverse_fn.strength = 0 */
}

double ssflow_time(const struct ssflow_sampler *s, int k)
{
    ASSERT(s->steps >= 1 && k >= 0 && k <= s->steps);
    /* np.linspace: arange(num) * step + start, the endpoint set exactly */
    double t = k == s->steps ? 1.0 : (double)k * (1.0 / (double)s->steps) + 0.0;
    if (s->rescale_t != 0.0)    /* `if self.rescale_t:` (shortcut/model.py:405) */
        t = t / (1.0 + (s->rescale_t - 1.0) * (1.0 - t));
    return t;
}

size_t ssflow_sample_bytes(const struct ssflow_model *m, int64_t n_cond, bool cache_kv)
{
    return ssflow_cond_bytes(m, n_cond, cache_kv) + ssflow_act_bytes(m, cache_kv ? 1 : n_cond) +
           ssflow_cfg_extra_bytes(m);
}

/* Round to fp16 and back (the reference's fp16 tensor ops under autocast). */
static float r16(float x)
{
    return f16_to_f32(f32_to_f16(x));
}

int ssflow_sample(const struct ssflow_model *m, const struct op_ctx *ctx, struct arena *act,
                  const struct tensor *cond, struct tensor *const x[SSF_N_LATENT],
                  const struct ssflow_sampler *s, ssflow_step_fn on_step, void *user)
{
    const struct ssflow_config *g = &m->cfg;
    const bool h16 = m->gemm_dt == DTYPE_F16;
    size_t mark = arena_mark(act);
    struct tensor vc_t[SSF_N_LATENT], vu_t[SSF_N_LATENT];
    struct tensor *vc[SSF_N_LATENT], *vu[SSF_N_LATENT];
    const struct tensor *xc[SSF_N_LATENT];
    float *buf[2];
    int64_t n = 0;
    int evals = 0;

    for (int l = 0; l < SSF_N_LATENT; l++)
        n += g->ntok[l] * g->cin[l];
    for (int b = 0; b < 2; b++) {
        buf[b] = malloc(sizeof(float) * (size_t)n);
        ASSERT(buf[b]);
    }
    for (int l = 0, off = 0; l < SSF_N_LATENT; l++) {
        vc_t[l] = tensor_view(buf[0] + off, DTYPE_F32, DEVICE_HOST, SHAPE(1, g->ntok[l], g->cin[l]));
        vu_t[l] = tensor_view(buf[1] + off, DTYPE_F32, DEVICE_HOST, SHAPE(1, g->ntok[l], g->cin[l]));
        vc[l] = &vc_t[l];
        vu[l] = &vu_t[l];
        xc[l] = x[l];
        off += (int)(g->ntok[l] * g->cin[l]);
    }
    struct ssflow_cond c;

    ssflow_put_cond(m, ctx, act, cond, s->cache_kv, &c);
    const float d1000 = (float)(s->d * 1000.0);        /* shortcut/model.py:447-449 */
    const float cs = (float)(1.0 + s->cfg), cu = (float)s->cfg;

    for (int k = 0; k < s->steps; k++) {
        double t0 = ssflow_time(s, k), t1 = ssflow_time(s, k + 1);
        const float T = (float)(t0 * 1000.0);
        const float dt = (float)(t1 - t0);             /* fp32 tensor * float64 scalar */
        const bool cfg = s->cfg > 0.0 && s->cfg_lo <= (double)T && (double)T <= s->cfg_hi;

        if (cfg) {                                     /* both passes, block by block */
            ssflow_forward_cfg(m, ctx, act, xc, T, d1000, &c, vc, vu);
            evals += 2;
            for (int64_t i = 0; i < n; i++) {          /* (1 + s) * y_cond - s * y_uncond */
                float a = cs * buf[0][i], b = cu * buf[1][i];
                buf[0][i] = h16 ? r16(r16(a) - r16(b)) : a - b;
            }
        } else {
            ssflow_forward(m, ctx, act, xc, T, d1000, &c, vc, NULL);
            evals++;
        }
        if (on_step)
            on_step(user, k, T, cfg, xc, vc);
        for (int l = 0, off = 0; l < SSF_N_LATENT; l++) {   /* x + v * dt */
            float *xd = x[l]->data;
            int64_t nl = g->ntok[l] * g->cin[l];
            for (int64_t i = 0; i < nl; i++) {
                float p = buf[0][off + i] * dt;
                xd[i] = xd[i] + (h16 ? r16(p) : p);
            }
            off += (int)nl;
        }
        log_info("ss_flow: step %d/%d (t %.3f%s)", k + 1, s->steps, (double)T, cfg ? ", cfg" : "");
    }
    free(buf[0]);
    free(buf[1]);
    arena_release(act, mark);
    return evals;
}

// ----------------------------------------------------------------------------
// noise (common/rng.h)

void ssflow_noise(uint64_t seed, struct tensor *const x[SSF_N_LATENT])
{
    struct s3d_randn r;

    s3d_randn_init(&r, seed);
    for (int l = 0; l < SSF_N_LATENT; l++) {
        ASSERT(x[l]->dtype == DTYPE_F32 && x[l]->device == DEVICE_HOST && tensor_is_contiguous(x[l]));
        s3d_randn_fill(&r, x[l]->data, tensor_numel(x[l]));
    }
}
