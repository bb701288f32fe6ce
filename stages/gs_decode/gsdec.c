/*
 * gsdec.c - the Gaussian decoder: loading, input checks, the forward (trunk,
 * then the head in row chunks). See gsdec.h.
 */
#include "gsdec.h"
#include "err.h"
#include "log.h"
#include "ops_copy.h"
#include "prof.h"
#include "stage.h"
#include "weights.h"

#include <stdio.h>
#include <string.h>

int gsdec_load(struct gsdec_model *m, const char *path, enum device dev, enum dtype gemm_dt)
{
    struct weights w;
    const struct ckpt_entry *pe, *oe;
    int rc;

    memset(m, 0, sizeof(*m));
    m->device = dev;
    if ((rc = weights_open(&w, path, NULL, gemm_dt)))
        return rc;
    if ((rc = slatdec_bind(&m->trunk, &w, dev, gemm_dt, "gs_decode")))
        goto out_close;
    int64_t C = m->trunk.cfg.dim;
    pe = weights_find(&w, "offset_perturbation");
    oe = weights_find(&w, "out_layer.weight");
    if (!pe || !oe) {
        log_error("gs_decode: %s: no %s (HINT: this is not a Gaussian decoder; give "
                  "slat_decoder_gs.ckpt or slat_decoder_gs_4.ckpt)", w.ck.path,
                  pe ? "out_layer.weight" : "offset_perturbation");
        rc = S3D_ENOTFOUND;
        goto out_close;
    }
    if (pe->ndim != 2 || pe->shape[1] != 3 || pe->shape[0] < 1 || pe->shape[0] > GSD_MAX_G ||
        oe->ndim != 2 || oe->shape[0] != GS_CHANNELS * pe->shape[0]) {
        log_error("gs_decode: %s: offset_perturbation and out_layer.weight disagree (expected "
                  "(G, 3) and (14 G, %lld)) (HINT: the checkpoint is damaged or not an official "
                  "Gaussian decoder)", w.ck.path, (long long)C);
        rc = S3D_ESHAPE;
        goto out_close;
    }
    m->G = (int)pe->shape[0];
    rc = weights_bind_as(&w, &m->out_w, DTYPE_F32, SHAPE(GS_CHANNELS * m->G, C), "out_layer.weight");
    rc = rc ? rc : weights_bind_as(&w, &m->out_b, DTYPE_F32, SHAPE(GS_CHANNELS * m->G), "out_layer.bias");
    rc = rc ? rc : weights_bind_as(&w, &m->perturb, DTYPE_F32, SHAPE(m->G, 3), "offset_perturbation");
    if (rc || (rc = weights_load_arena(&w, &m->weights, dev)))
        goto out_close;
    log_info("gs_decode: %s: %d Gaussians per voxel; %.1f MB of weights on %s", w.ck.path, m->G,
             (double)m->weights.used / 1e6, dev == DEVICE_CUDA ? "cuda" : "cpu");
out_close:
    weights_close(&w);
    return rc;
}

void gsdec_free(struct gsdec_model *m)
{
    if (m)
        arena_free(&m->weights);
}

int gsdec_check_inputs(const struct gsdec_model *m, const struct tensor *coords,
                       const struct tensor *feats, char *msg, size_t len)
{
    char got[64];
    int L = m->trunk.cfg.in_ch;
    int rc;

    if ((rc = slatdec_check_coords(coords, "gs_decode: input 'coords'", msg, len)))
        return rc;
    if (feats->dtype != DTYPE_F32 || feats->device != DEVICE_HOST || feats->ndim != 2 ||
        feats->shape[0] != coords->shape[0] || feats->shape[1] != L ||
        !tensor_is_contiguous(feats)) {
        snprintf(msg, len, "gs_decode: input 'feats' is %s %s, expected F32 [%lld,%d]: one row "
                 "of %d latent channels per voxel of 'coords' (HINT: give the coords and feats "
                 "of the same slat_flow.safetensors, made for this decoder)",
                 dtype_name(feats->dtype),
                 tensor_shape_str(feats->shape, feats->ndim, got, sizeof(got)),
                 (long long)coords->shape[0], L, L);
        return S3D_ESHAPE;
    }
    return 0;
}

/* dst[0..numel) host F32 = src (contiguous, model device); nothing when dst is NULL. */
static void fetch(const struct op_ctx *ctx, float *dst, const struct tensor *src)
{
    if (!dst)
        return;
    struct tensor d = tensor_view(dst, DTYPE_F32, DEVICE_HOST, src->shape, src->ndim);
    op_download(ctx, &d, src);
}

static double now_ms(const struct op_ctx *ctx)
{
    if (ctx)
        op_ctx_synchronize(ctx);
    return stage_now_ms();
}

void gsdec_forward(const struct gsdec_model *m, const struct op_ctx *ctx, struct arena *act,
                   const struct tensor *coords, const struct tensor *feats,
                   const struct gsdec_out *out, const struct gsdec_taps *taps,
                   struct gsdec_times *times)
{
    const struct slatdec_trunk *t = &m->trunk;
    int64_t N = coords->shape[0], C = t->cfg.dim, G = m->G, K = GS_CHANNELS * G;
    size_t mark = arena_mark(act);
    struct slatdec_geom g;

    double t0 = now_ms(ctx);
    slatdec_geom_build(&m->trunk, ctx, act, coords, &g);
    if (ctx && !act->plan)
        op_prof_record(ctx, "partition + upload (host)");
    double t1 = now_ms(ctx);
    struct tensor x = arena_tensor(act, t->gemm_dt, SHAPE(N, C));
    slatdec_forward(t, ctx, act, &g, feats, &x, taps ? &taps->trunk : NULL);
    double t2 = now_ms(ctx);

    /* head, GSD_HEAD_ROWS voxels at a time: LN fp32, out_layer fp32, transforms */
    for (int64_t r0 = 0; r0 < N; r0 += GSD_HEAD_ROWS) {
        int64_t n = N - r0 < GSD_HEAD_ROWS ? N - r0 : GSD_HEAD_ROWS, M = n * G;
        size_t cm = arena_mark(act);
        struct tensor xc = tensor_slice(&x, 0, r0, n), cc = tensor_slice(&g.coords, 0, r0, n);
        struct tensor hl = arena_tensor(act, DTYPE_F32, SHAPE(n, C));
        struct tensor raw = arena_tensor(act, DTYPE_F32, SHAPE(n, K));
        struct gs_arrays ga = {
            .xyz = arena_tensor(act, DTYPE_F32, SHAPE(M, 3)),
            .f_dc = arena_tensor(act, DTYPE_F32, SHAPE(M, 3)),
            .opacity = arena_tensor(act, DTYPE_F32, SHAPE(M, 1)),
            .scale = arena_tensor(act, DTYPE_F32, SHAPE(M, 3)),
            .rotation = arena_tensor(act, DTYPE_F32, SHAPE(M, 4)),
        };
        if (act->plan) {                  /* plan mode: one chunk's buffers (the largest) */
            arena_release(act, cm);
            break;
        }
        op_layernorm(ctx, &hl, &xc, NULL, NULL, GSD_LN_EPS);
        op_linear(ctx, &raw, &hl, &m->out_w, &m->out_b, false);
        if (taps) {
            fetch(ctx, taps->head_ln ? taps->head_ln + r0 * C : NULL, &hl);
            fetch(ctx, taps->out_layer ? taps->out_layer + r0 * K : NULL, &raw);
        }
        gs_head(ctx, &ga, &raw, &cc, &m->perturb);
        int64_t m0 = r0 * G;
        fetch(ctx, out->xyz + m0 * 3, &ga.xyz);
        fetch(ctx, out->f_dc + m0 * 3, &ga.f_dc);
        fetch(ctx, out->opacity + m0, &ga.opacity);
        fetch(ctx, out->scale + m0 * 3, &ga.scale);
        fetch(ctx, out->rotation + m0 * 4, &ga.rotation);
        if (ctx) {
            op_prof_record(ctx, "download");
            op_ctx_synchronize(ctx);          /* before the chunk's memory is reused */
        }
        arena_release(act, cm);
    }
    double t3 = now_ms(ctx);
    if (times && !act->plan) {
        times->geom = t1 - t0;
        times->trunk = t2 - t1;
        times->head = t3 - t2;
        times->flops = slatdec_flops(t, &g) + 2.0 * (double)N * C * K;
        for (int s = 0; s < 2; s++) {
            times->nwin[s] = g.nwin[s];
            times->max_len[s] = g.max_len[s];
        }
    }
    arena_release(act, mark);
}

size_t gsdec_act_bytes(const struct gsdec_model *m, int64_t n)
{
    enum device dev = m->trunk.device;
    struct tensor coords = tensor_view(NULL, DTYPE_I32, DEVICE_HOST, SHAPE(n, 4));
    struct tensor feats = tensor_view(NULL, DTYPE_F32, DEVICE_HOST, SHAPE(n, m->trunk.cfg.in_ch));
    struct gsdec_out none = {0};
    struct arena plan;

    arena_plan_init(&plan, dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act");
    gsdec_forward(m, NULL, &plan, &coords, &feats, &none, NULL, NULL);
    return plan.high_water;
}
