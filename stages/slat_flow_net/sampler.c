/*
 * sampler.c - the SLAT sampler: FlowMatching with Euler steps, classifier-free
 * guidance with a zeroed condition, de-normalisation; our seeded noise. See
 * slatflow.h.
 *
 * Reference (sam-3d-objects @cf06676, sam3d_objects/model/backbone/generator/):
 *   flow_matching/model.py:190-200   t_seq = torch.linspace(0, 1, steps + 1) (float32),
 *                                    rescaled t / (1 + (r - 1)(1 - t)) when r
 *   flow_matching/model.py:202-228   reverse_fn(x, t * time_scale): t a 0-d float32 * 1000
 *   flow_matching/solver.py:33-51    x_{k+1} = x_k + v_k * (t_{k+1} - t_k), dt float32
 *   classifier_free_guidance.py:99-160  strength s while lo <= t <= hi, else the
 *                                    conditional pass alone; v = (1 + s) v_cond - s v_uncond
 *   pipeline/inference_pipeline.py:444-464, 721-768  25 steps, strength 1 on [0, 500],
 *                                    rescale_t 1; slat * slat_std + slat_mean
 */
#include "slatflow.h"
#include "check.h"
#include "dtype.h"
#include "log.h"
#include "ops_copy.h"
#include "ops_flow.h"
#include "rng.h"

#include <string.h>

const float slatflow_slat_mean[SLF_LATENT] = {
    0.12211431f, 0.37204156f, -1.26521907f, -2.05276058f,
    -3.10432536f, -0.11294304f, -0.85146744f, 0.45506954f,
};
const float slatflow_slat_std[SLF_LATENT] = {
    2.37326008f, 2.13174402f, 2.2413953f, 2.30589401f,
    2.1191894f, 1.8969511f, 2.41684989f, 2.08374642f,
};

void slatflow_sampler_defaults(struct slatflow_sampler *s)
{
    s->steps = 25;
    s->cfg = 1.0;
    s->cfg_lo = 0.0;
    s->cfg_hi = 500.0;
    s->rescale_t = 1.0;
    s->cache_kv = false;
}

float slatflow_time(const struct slatflow_sampler *s, int k)
{
    ASSERT(s->steps >= 1 && k >= 0 && k <= s->steps);
    /* torch.linspace's CPU kernel in float32: step = (end - start) / (steps - 1) of the
     * steps + 1 points; the first half from the start, the second from the end. Its
     * vectorised path can differ by an ulp at other step counts; at 3, 4, 12 and 25
     * steps these are its values bit for bit (tests/test_slat_flow.c checks 25). */
    const float step = 1.0f / (float)s->steps;
    const int half = (s->steps + 1) / 2;
    float t = k < half ? step * (float)k : 1.0f - step * (float)(s->steps - k);

    if (s->rescale_t != 0.0) {          /* `if self.rescale_t:`, float32 tensor ops */
        float r1 = (float)(s->rescale_t - 1.0);
        t = t / (1.0f + r1 * (1.0f - t));
    }
    return t;
}

/* Whether step k runs the unconditional pass: strength > 0 and lo <= T <= hi on
 * the float32 T = t * 1000 (get_strength's comparison, exact in double). */
static bool cfg_on(const struct slatflow_sampler *s, float T)
{
    return s->cfg > 0.0 && s->cfg_lo <= (double)T && (double)T <= s->cfg_hi;
}

int slatflow_evals(const struct slatflow_sampler *s)
{
    int n = 0;

    for (int k = 0; k < s->steps; k++)
        n += 1 + cfg_on(s, slatflow_time(s, k) * 1000.0f);
    return n;
}

/* Bytes of the sampler's state on the model's device: x (N, 8) F32 and the
 * two velocities (N, 8) in gemm_dt. */
static size_t state_bytes(const struct slatflow_model *m, int64_t n)
{
    return arena_round((size_t)n * (size_t)m->cfg.in_ch * 4) +
           2 * arena_round((size_t)n * (size_t)m->cfg.out_ch * dtype_size(m->gemm_dt));
}

size_t slatflow_sample_bytes(const struct slatflow_model *m, int64_t n, int64_t mm, int64_t n_cond,
                             bool cache_kv)
{
    return slatflow_geom_bytes(m, n, mm) + slatflow_cond_bytes(m, n_cond, cache_kv) +
           state_bytes(m, n) + slatflow_act_bytes(m, n, mm, cache_kv ? 1 : n_cond) +
           slatflow_cfg_extra_bytes(m, mm);
}

int slatflow_sample(const struct slatflow_model *m, const struct op_ctx *ctx, struct arena *act,
                    const struct tensor *coords, const struct tensor *cond, struct tensor *x,
                    float *vbuf, const struct slatflow_sampler *s, slatflow_step_fn on_step,
                    void *user)
{
    const bool h16 = m->gemm_dt == DTYPE_F16;
    const int64_t N = coords->shape[0], L = m->cfg.out_ch;
    const float cs = (float)(1.0 + s->cfg), cu = (float)s->cfg;
    size_t mark = arena_mark(act);
    struct slatflow_geom g;
    struct slatflow_cond c;
    int evals = 0;

    ASSERT(x->dtype == DTYPE_F32 && x->device == DEVICE_HOST && tensor_is_contiguous(x) &&
           tensor_numel(x) == N * m->cfg.in_ch && m->cfg.in_ch == L && s->steps >= 1);
    struct tensor vc = tensor_view(vbuf, DTYPE_F32, DEVICE_HOST, SHAPE(N, L));
    struct tensor x2 = tensor_reshape(x, SHAPE(N, L));

    /* fixed for every step: the geometry, the condition and its K/V */
    slatflow_geom_build(m, ctx, act, coords, SLF_RESOLUTION, &g);
    slatflow_put_cond(m, ctx, act, cond, s->cache_kv, &c);

    /* the state on the model's device: x (fp32) and the two velocities (gemm_dt); the
     * steps queue without waiting for the host (ops_flow.h: the update on the device) */
    struct tensor xd = arena_tensor(act, DTYPE_F32, SHAPE(N, L));
    struct tensor vcd = arena_tensor(act, m->gemm_dt, SHAPE(N, L));
    struct tensor vud = arena_tensor(act, m->gemm_dt, SHAPE(N, L));
    op_upload(ctx, &xd, &x2);
    for (int k = 0; k < s->steps; k++) {
        const float t0 = slatflow_time(s, k), t1 = slatflow_time(s, k + 1);
        const float T = t0 * 1000.0f, dt = t1 - t0;
        const bool cfg = cfg_on(s, T);

        if (cfg) {                                     /* (1 + s) * y_cond - s * y_uncond */
            slatflow_forward_cfg(m, ctx, act, &g, &xd, T, &c, &vcd, &vud);
            evals += 2;
            op_cfg_mix(ctx, &vcd, &vud, cs, cu, h16);
        } else {
            slatflow_forward(m, ctx, act, &g, &xd, T, &c, &vcd, NULL);
            evals++;
        }
        if (on_step) {                                 /* host copies for the callback */
            op_download(ctx, &x2, &xd);
            op_download(ctx, &vc, &vcd);
            on_step(user, k, T, cfg, &x2, &vc);
            op_upload(ctx, &vcd, &vc);
        }
        op_euler_step(ctx, &xd, &vcd, dt, h16);        /* x + v * dt: fp16 v, fp32 x */
        log_info("slat_flow: step %d/%d (t %.1f%s)", k + 1, s->steps, (double)T,
                 cfg ? ", cfg" : "");
    }
    op_download(ctx, &x2, &xd);
    arena_release(act, mark);
    return evals;
}

void slatflow_denorm(struct tensor *feats, const struct tensor *x)
{
    const float *xd = x->data;
    float *o = feats->data;
    int64_t n = tensor_numel(x);

    ASSERT(x->dtype == DTYPE_F32 && feats->dtype == DTYPE_F32 && tensor_is_contiguous(x) &&
           tensor_is_contiguous(feats) && tensor_numel(feats) == n && n % SLF_LATENT == 0);
    for (int64_t i = 0; i < n; i++) {
        float p = xd[i] * slatflow_slat_std[i % SLF_LATENT];   /* two roundings: -std=c11 */
        o[i] = p + slatflow_slat_mean[i % SLF_LATENT];          /* contracts no FMA */
    }
}

void slatflow_noise(uint64_t seed, struct tensor *x)
{
    struct s3d_randn r;

    ASSERT(x->dtype == DTYPE_F32 && x->device == DEVICE_HOST && tensor_is_contiguous(x));
    s3d_randn_init(&r, seed);
    s3d_randn_fill(&r, x->data, tensor_numel(x));
}
