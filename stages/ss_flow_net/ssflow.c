/*
 * ssflow.c - the SS flow network: config detection, weight binding, one
 * network evaluation. See ssflow.h; the sampler is in sampler.c.
 *
 * One block (modulated.py:268-333), m = adaLN(SiLU(temb)) split into
 * shift/scale/gate (msa) and shift/scale/gate (mlp), shared by both streams:
 *     h = LN(x) * (1 + scale_msa) + shift_msa                 (all T rows)
 *     x += gate_msa * to_out_s(MoT-attention(to_qkv_s(h)))     (per stream s)
 *     x += co_s(attn(cq_s(LN_aff_s(x)), ckv_s(cond)))          (no gate, no modulation)
 *     h = LN(x) * (1 + scale_mlp) + shift_mlp
 *     x += gate_mlp * fc2_s(gelu_tanh(fc1_s(h)))
 */
#include "ssflow.h"
#include "err.h"
#include "log.h"
#include "ops_copy.h"
#include "weights.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const ssflow_latent_name[SSF_N_LATENT] = {
    "6drotation_normalized", "scale", "shape", "translation", "translation_scale",
};
const char *const ssflow_stream_name[2] = {"shape", "6drotation_normalized"};

/* Rows of the pose stream, in concatenation order (mot_sparse_structure_flow.py:256-271). */
static const enum ssf_latent POSE_ORDER[4] = {SSF_ROT, SSF_TRANS, SSF_SCALE, SSF_TSCALE};

// ----------------------------------------------------------------------------
// load

static const struct flow_names SSF_NAMES = {SSF_PREFIX, "sam3d-ss-flow", "ss_generator.ckpt"};

/* Detect every size from tensor shapes (spec §4.9). */
static int detect(struct ssflow_config *g, const struct weights *w)
{
    char name[160];
    int rc;

    memset(g, 0, sizeof(*g));
    if ((rc = flow_dims_detect(w, &SSF_NAMES, ".shape", SSF_MAX_DEPTH, &g->dim, &g->depth,
                               &g->heads, &g->mlp, &g->cond_dim)))
        return rc;                                  /* logged */
    for (int l = 0; l < SSF_N_LATENT; l++) {
        const struct ckpt_entry *in, *pos;
        snprintf(name, sizeof(name), "latent_mapping.%s.input_layer.weight", ssflow_latent_name[l]);
        if (!(in = weights_find(w, "%s", name)))
            return flow_missing(w, &SSF_NAMES, name);
        snprintf(name, sizeof(name), "latent_mapping.%s.pos_emb", ssflow_latent_name[l]);
        if (!(pos = weights_find(w, "%s", name)))
            return flow_missing(w, &SSF_NAMES, name);
        if (in->ndim != 2 || in->shape[0] != g->dim || pos->ndim != 2 || pos->shape[1] != g->dim ||
            pos->shape[0] < 1)
            goto bad;
        g->cin[l] = (int)in->shape[1];
        g->ntok[l] = pos->shape[0];
    }
    g->n_shape = g->ntok[SSF_SHAPE];
    int64_t r = g->n_shape;
    g->row[SSF_SHAPE] = 0;
    for (int i = 0; i < 4; i++) {
        g->row[POSE_ORDER[i]] = r;
        r += g->ntok[POSE_ORDER[i]];
    }
    g->n_tok = r;
    return 0;
bad:
    log_error("%s: the SS flow tensors under %s have inconsistent shapes (latent_mapping "
              "input_layer / pos_emb against the width) (HINT: the checkpoint is "
              "damaged or not an official ss_generator.ckpt)", w->ck.path, SSF_PREFIX);
    return S3D_ESHAPE;
}

/* Every tensor; the blocks last, block by block (stage_blocks.h layout), from
 * bind *first on. */
static int bind_all(struct ssflow_model *m, struct weights *w, int *first)
{
    const struct ssflow_config *g = &m->cfg;
    enum dtype gd = m->gemm_dt;
    int64_t C = g->dim;
    int rc = 0;

    rc |= flow_temb_bind(&m->t_emb, w, "t_embedder", C, gd);
    rc |= flow_temb_bind(&m->d_emb, w, "d_embedder", C, gd);
    for (int l = 0; l < SSF_N_LATENT; l++) {
        struct ssflow_latent *L = &m->lat[l];
        const char *n = ssflow_latent_name[l];
        int64_t ci = g->cin[l];
        rc |= weights_bind_as(w, &L->in_w, gd, SHAPE(C, ci), "latent_mapping.%s.input_layer.weight", n);
        rc |= weights_bind_as(w, &L->in_b, gd, SHAPE(C), "latent_mapping.%s.input_layer.bias", n);
        rc |= weights_bind_as(w, &L->pos, DTYPE_F32, SHAPE(g->ntok[l], C), "latent_mapping.%s.pos_emb", n);
        rc |= weights_bind_as(w, &L->out_w, gd, SHAPE(ci, C), "latent_mapping.%s.out_layer.weight", n);
        rc |= weights_bind_as(w, &L->out_b, gd, SHAPE(ci), "latent_mapping.%s.out_layer.bias", n);
    }
    *first = w->n_binds;
    for (int i = 0; i < g->depth; i++) {
        struct ssflow_block *B = &m->blocks[i];
        for (int s = 0; s < 2; s++) {           /* ".shape", ".6drotation_normalized" */
            char sfx[40];
            snprintf(sfx, sizeof(sfx), ".%s", ssflow_stream_name[s]);
            rc |= flow_block_bind(&B->s[s], w, i, sfx, C, g->heads, g->mlp, g->cond_dim, gd);
        }
        rc |= weights_bind_as(w, &B->ada_w, gd, SHAPE(6 * C, C), "blocks.%d.adaLN_modulation.1.weight", i);
        rc |= weights_bind_as(w, &B->ada_b, gd, SHAPE(6 * C), "blocks.%d.adaLN_modulation.1.bias", i);
    }
    return rc ? S3D_ESHAPE : 0;
}

FLOW_BIND_FN(ssf, struct ssflow_model, struct ssflow_block)

int ssflow_load(struct ssflow_model *m, const char *path, enum device dev, enum dtype gemm_dt,
                int stream_slots)
{
    struct weights w;
    int rc;

    if ((rc = FLOW_MODEL_LOAD(m, &w, path, SSF_PREFIX, ssf_bind, gemm_dt, dev, stream_slots)))
        return rc;
    const struct ssflow_config *g = &m->cfg;
    char ws[96];
    log_info("ss_flow: %s: width %d, %d heads, %d blocks, MLP %d, cond width %d, %lld shape + "
             "%lld pose tokens; %s", w.ck.path, g->dim, g->heads, g->depth, g->mlp, g->cond_dim,
             (long long)g->n_shape, (long long)(g->n_tok - g->n_shape),
             flow_weights_str(ws, sizeof(ws), &m->weights, gemm_dt, dev, &m->blk));
    weights_close(&w);
    return 0;
}

void ssflow_free(struct ssflow_model *m)
{
    if (m)
        flow_weights_free(&m->blk, &m->weights);
}

// ----------------------------------------------------------------------------
// checks

int ssflow_check_cond(const struct ssflow_model *m, const struct tensor *c, const char *name,
                      char *err, size_t err_len)
{
    return flow_check_cond(c, m->cfg.cond_dim, "ss_flow", "ss_generator.ckpt", name, err, err_len);
}

int ssflow_check_latents(const struct ssflow_model *m, const struct tensor *const x[SSF_N_LATENT],
                         const char *prefix, char *err, size_t err_len)
{
    char got[64];

    for (int l = 0; l < SSF_N_LATENT; l++) {
        const struct tensor *t = x[l];
        if (!t)
            return log_error_to(S3D_ENOTFOUND, err, err_len, "ss_flow: input '%s%s' is missing "
                             "(HINT: give all five latents or none)", prefix, ssflow_latent_name[l]);
        if (t->dtype != DTYPE_F32 || t->ndim != 3 || t->shape[0] != 1 ||
            t->shape[1] != m->cfg.ntok[l] || t->shape[2] != m->cfg.cin[l] ||
            !tensor_is_contiguous(t) || t->device != DEVICE_HOST) {
            return log_error_to(S3D_ESHAPE, err, err_len, "ss_flow: input '%s%s' is %s %s, expected "
                             "F32 [1,%lld,%d] (HINT: the latent shapes come from the checkpoint's "
                             "latent_mapping)", prefix, ssflow_latent_name[l], dtype_name(t->dtype),
                             tensor_shape_str(t->shape, t->ndim, got, sizeof(got)),
                             (long long)m->cfg.ntok[l], m->cfg.cin[l]);
        }
    }
    return 0;
}

// ----------------------------------------------------------------------------
// activations: one allocation list, run on a planning arena for the size

struct ssf_act {
    struct tensor tf;       /* (1, 256) gemm_dt: frequency embedding */
    struct tensor e1;       /* (1, C) gemm_dt: embedder hidden */
    struct tensor te, de;   /* (1, C) gemm_dt: t_embedder(t), d_embedder(d); te becomes temb */
    struct tensor st;       /* (1, C) gemm_dt: SiLU(temb) */
    struct tensor ada;      /* (6, C) gemm_dt: shift/scale/gate msa, shift/scale/gate mlp */
    struct tensor xin;      /* (maxtok, maxcin) gemm_dt: one latent's input */
    struct tensor x;        /* (T, C) F32: the residual stream */
    struct tensor h;        /* (T, C) gemm_dt: GEMM input */
    struct tensor qkv;      /* (1, T, 3, H, 64) gemm_dt */
    struct tensor a;        /* (1, T, H, 64) gemm_dt: attention output */
    struct tensor p;        /* (T, C) gemm_dt: sub-module output (to_out, fc2) */
    struct tensor c1;       /* (1, C) gemm_dt: the unconditional cross-attention output row */
    struct tensor kv;       /* (1, Nkv, 2, H, 64) gemm_dt: cross-attention keys/values */
    struct tensor vo;       /* (maxtok, maxcin) gemm_dt: one latent's velocity */
    /* two views of one scratch buffer, never live at the same time: */
    struct tensor q;        /* (1, T, H, 64) gemm_dt: cross-attention queries */
    struct tensor f;        /* (T, M) gemm_dt: MLP hidden */
};

/* n_kv: rows of the per-evaluation K/V buffer (the condition's length, or 1
 * when the K/V are cached or the pass is unconditional). */
static void act_plan(const struct ssflow_model *m, struct arena *a, int64_t n_kv, struct ssf_act *s)
{
    const struct ssflow_config *g = &m->cfg;
    enum dtype gd = m->gemm_dt;
    int64_t C = g->dim, T = g->n_tok, H = g->heads, mt = 0, mc = 0;
    size_t e = dtype_size(gd), sb = (size_t)(T * g->mlp) * e;

    for (int l = 0; l < SSF_N_LATENT; l++) {
        mt = g->ntok[l] > mt ? g->ntok[l] : mt;
        mc = g->cin[l] > mc ? g->cin[l] : mc;
    }
    sb = sb > (size_t)(T * C) * e ? sb : (size_t)(T * C) * e;   /* q */
    s->tf = arena_tensor(a, gd, SHAPE(1, SSF_FREQ_DIM));
    s->e1 = arena_tensor(a, gd, SHAPE(1, C));
    s->te = arena_tensor(a, gd, SHAPE(1, C));
    s->de = arena_tensor(a, gd, SHAPE(1, C));
    s->st = arena_tensor(a, gd, SHAPE(1, C));
    s->ada = arena_tensor(a, gd, SHAPE(6, C));
    s->xin = arena_tensor(a, gd, SHAPE(mt, mc));
    s->x = arena_tensor(a, DTYPE_F32, SHAPE(T, C));
    s->h = arena_tensor(a, gd, SHAPE(T, C));
    s->qkv = arena_tensor(a, gd, SHAPE(1, T, 3, H, OP_HEAD_DIM));
    s->a = arena_tensor(a, gd, SHAPE(1, T, H, OP_HEAD_DIM));
    s->p = arena_tensor(a, gd, SHAPE(T, C));
    s->c1 = arena_tensor(a, gd, SHAPE(1, C));
    s->kv = arena_tensor(a, gd, SHAPE(1, n_kv, 2, H, OP_HEAD_DIM));
    s->vo = arena_tensor(a, gd, SHAPE(mt, mc));
    struct tensor scr = arena_tensor(a, DTYPE_U8, SHAPE((int64_t)sb));
    s->q = tensor_view(scr.data, gd, scr.device, SHAPE(1, T, H, OP_HEAD_DIM));
    s->f = tensor_view(scr.data, gd, scr.device, SHAPE(T, g->mlp));
}

size_t ssflow_act_bytes(const struct ssflow_model *m, int64_t n_cond)
{
    struct ssf_act s;
    struct arena plan;

    arena_plan_init(&plan, m->device == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act");
    act_plan(m, &plan, n_cond, &s);
    return plan.high_water;
}

size_t ssflow_cond_bytes(const struct ssflow_model *m, int64_t n_cond, bool cache_kv)
{
    const struct ssflow_config *g = &m->cfg;
    size_t e = dtype_size(m->gemm_dt);
    size_t kv = (size_t)g->depth * 2 * (size_t)n_cond * 2 * (size_t)g->dim * e;

    return arena_round(e * (size_t)(n_cond * g->cond_dim)) + (cache_kv ? arena_round(kv) : 0);
}

// ----------------------------------------------------------------------------
// host <-> model device

/* out[0..numel) F32 host = src (model device, contiguous). */
static void get(const struct op_ctx *ctx, float *out, const struct tensor *src)
{
    struct tensor o = tensor_view(out, DTYPE_F32, DEVICE_HOST, src->shape, src->ndim);

    op_download(ctx, &o, src);
}

/* kv (Nc, 2C) = to_kv of stream k of block B applied to the condition c (1, Nc, Cc). */
static void project_kv(const struct ssflow_model *m, const struct op_ctx *ctx,
                       const struct ssflow_block *B, int k, const struct tensor *c,
                       struct tensor *kv)
{
    int64_t Nc = c->shape[1];
    struct tensor c2 = tensor_reshape(c, SHAPE(Nc, m->cfg.cond_dim));
    struct tensor kv2 = tensor_reshape(kv, SHAPE(Nc, 2 * (int64_t)m->cfg.dim));

    op_linear(ctx, &kv2, &c2, &B->s[k].ckv_w, &B->s[k].ckv_b, false);
}

void ssflow_put_cond(const struct ssflow_model *m, const struct op_ctx *ctx, struct arena *act,
                     const struct tensor *cond, bool cache_kv, struct ssflow_cond *out)
{
    const struct ssflow_config *g = &m->cfg;
    int64_t Nc = cond->shape[1], C = g->dim;

    ASSERT(cond->ndim == 3 && cond->shape[2] == g->cond_dim);
    memset(out, 0, sizeof(*out));
    out->c = arena_tensor(act, m->gemm_dt, SHAPE(1, Nc, g->cond_dim));
    op_upload(ctx, &out->c, cond);
    if (!cache_kv)
        return;
    out->kv = arena_tensor(act, m->gemm_dt, SHAPE(g->depth, 2, Nc, 2 * C));
    for (int i = 0; i < g->depth; i++)
        for (int k = 0; k < 2; k++) {
            struct tensor kv = tensor_slice(&out->kv, 0, i, 1);
            kv = tensor_slice(&kv, 1, k, 1);
            project_kv(m, ctx, stage_blocks_get(&m->blk, ctx, i), k, &out->c, &kv);
        }
}

// ----------------------------------------------------------------------------
// forward

/* Rows [r0, r0 + n) of a 2-D (rows, C) tensor. */
static struct tensor rows(const struct tensor *t, int64_t r0, int64_t n)
{
    return tensor_slice(t, 0, r0, n);
}

/* The (1, n, H, 64) query/key/value view `which` of qkv rows [r0, r0 + n). */
static struct tensor qkv_part(const struct tensor *qkv, int which, int64_t r0, int64_t n)
{
    struct tensor v = op_heads_view(qkv, which);
    return tensor_slice(&v, 1, r0, n);
}

/* Flatten rows [r0, r0 + n) of a (1, T, H, 64) tensor to (n, C). */
static struct tensor flat_rows(const struct tensor *t, int64_t r0, int64_t n, int64_t C)
{
    struct tensor f = tensor_reshape(t, SHAPE(t->shape[1], C));
    return rows(&f, r0, n);
}

/* Copy a (T, C)-shaped activation to a tap when asked. */
static void tap(const struct op_ctx *ctx, float *dst, const struct tensor *src)
{
    if (dst)
        get(ctx, dst, src);
}

/* h = LN(x) * (1 + scale) + shift (modulated.py:255-259; the norm has no
 * affine), LayerNorm and modulation in one pass (op_layernorm_mod: the values
 * of an F32 LayerNorm followed by the modulation, without the F32 round trip).
 * Under fp16 autocast `1 + scale` is an fp16 tensor (rounded) before it meets
 * the fp32 norm: the op rounds it to scale's dtype (gemm_dt) too (round_scale). */
static void norm_modulate(const struct op_ctx *ctx, struct ssf_act *s, const struct tensor *scale,
                          const struct tensor *shift)
{
    op_layernorm_mod(ctx, &s->h, &s->x, NULL, NULL, scale, shift, SSF_BLOCK_EPS, true);
}

static void block_forward(const struct ssflow_model *m, const struct op_ctx *ctx, struct ssf_act *s,
                          int blk, const struct ssflow_cond *cond, const struct ssflow_taps *tp)
{
    const struct ssflow_block *B = stage_blocks_get(&m->blk, ctx, blk);
    const struct ssflow_config *g = &m->cfg;
    int64_t C = g->dim, T = g->n_tok, Ns = g->n_shape;
    const int64_t r0[2] = {0, Ns}, nr[2] = {Ns, T - Ns};
    const float scale = 1.0f / sqrtf((float)OP_HEAD_DIM);
    struct tensor sh_msa = rows(&s->ada, 0, 1), sc_msa = rows(&s->ada, 1, 1);
    struct tensor gt_msa = rows(&s->ada, 2, 1), sh_mlp = rows(&s->ada, 3, 1);
    struct tensor sc_mlp = rows(&s->ada, 4, 1), gt_mlp = rows(&s->ada, 5, 1);
    struct tensor qkv2 = tensor_reshape(&s->qkv, SHAPE(T, 3 * C));

    /* adaLN (modulated.py:288-291): SiLU(temb) -> Linear, chunks in row order */
    struct tensor ada2 = tensor_reshape(&s->ada, SHAPE(1, 6 * C));
    op_linear(ctx, &ada2, &s->st, &B->ada_w, &B->ada_b, false);

    /* self-attention (L292-306); norm1 has no affine, so both streams at once */
    norm_modulate(ctx, s, &sc_msa, &sh_msa);
    for (int k = 0; k < 2; k++) {
        const struct flow_block_w *W = &B->s[k];
        struct tensor hk = rows(&s->h, r0[k], nr[k]);
        struct tensor ok = rows(&qkv2, r0[k], nr[k]);
        op_linear(ctx, &ok, &hk, &W->qkv_w, &W->qkv_b, false);
        struct tensor q = qkv_part(&s->qkv, 0, r0[k], nr[k]);
        struct tensor kk = qkv_part(&s->qkv, 1, r0[k], nr[k]);
        op_rmsnorm_heads(ctx, &q, &q, &W->q_gamma, sqrtf((float)OP_HEAD_DIM));
        op_rmsnorm_heads(ctx, &kk, &kk, &W->k_gamma, sqrtf((float)OP_HEAD_DIM));
    }
    for (int k = 0; k < 2; k++) {            /* after both norms: pose keys include shape's */
        struct tensor q = qkv_part(&s->qkv, 0, r0[k], nr[k]);
        int64_t nk = k == SSF_S_SHAPE ? Ns : T;  /* modules.py:310-337: shape sees only shape */
        struct tensor kk = qkv_part(&s->qkv, 1, 0, nk);
        struct tensor vv = qkv_part(&s->qkv, 2, 0, nk);
        struct tensor ak = tensor_slice(&s->a, 1, r0[k], nr[k]);
        op_attention(ctx, &ak, &q, &kk, &vv, scale);
        struct tensor a2 = flat_rows(&s->a, r0[k], nr[k], C);
        struct tensor pk = rows(&s->p, r0[k], nr[k]);
        op_linear(ctx, &pk, &a2, &B->s[k].sa_out_w, &B->s[k].sa_out_b, false);
    }
    if (tp)
        tap(ctx, tp->self_attn, &s->p);
    /* x += gate * p (modulated.py:264-268, 302-306): under autocast `h * gate` is
     * an fp16 product (rounded) added to the fp32 stream; add_gated rounds the
     * product into p's dtype (gemm_dt) the same way, in one pass */
    op_add_gated(ctx, &s->x, &s->x, &gt_msa, &s->p);

    /* cross-attention (L307-317): affine norm2 per stream, no gate */
    for (int k = 0; k < 2; k++) {
        const struct flow_block_w *W = &B->s[k];
        struct tensor pk = rows(&s->p, r0[k], nr[k]);
        if (!cond) {
            /* condition x 0: all keys equal, all values b_v -> every row is to_out(b_v),
             * an fp16 row c1 under autocast; x + p is then x + c1, added in one pass
             * (p itself is written only for a tap) */
            struct tensor bv = tensor_slice(&W->ckv_b, 0, C, C);
            bv = tensor_reshape(&bv, SHAPE(1, C));
            op_linear(ctx, &s->c1, &bv, &W->co_w, &W->co_b, false);
            if (tp) {
                op_zero(ctx, &pk);
                op_add_bias(ctx, &pk, &pk, &s->c1);
            }
            struct tensor xk = rows(&s->x, r0[k], nr[k]);
            op_add_bias(ctx, &xk, &xk, &s->c1);
            continue;
        }
        struct tensor xk = rows(&s->x, r0[k], nr[k]);
        struct tensor hk = rows(&s->h, r0[k], nr[k]);
        op_layernorm(ctx, &hk, &xk, &W->norm2_w, &W->norm2_b, SSF_BLOCK_EPS);
        struct tensor q2 = flat_rows(&s->q, r0[k], nr[k], C);
        op_linear(ctx, &q2, &hk, &W->cq_w, &W->cq_b, false);
        int64_t Nc = cond->c.shape[1];
        struct tensor kv = s->kv;              /* (1, Nc, 2, H, 64) */
        if (cond->kv.data) {
            kv = tensor_slice(&cond->kv, 0, blk, 1);
            kv = tensor_slice(&kv, 1, k, 1);
        } else {
            project_kv(m, ctx, B, k, &cond->c, &kv);
        }
        kv = tensor_reshape(&kv, SHAPE(1, Nc, 2, g->heads, OP_HEAD_DIM));
        struct tensor q = tensor_slice(&s->q, 1, r0[k], nr[k]);
        struct tensor kk = op_heads_view(&kv, 0), vv = op_heads_view(&kv, 1);
        struct tensor ak = tensor_slice(&s->a, 1, r0[k], nr[k]);
        op_attention(ctx, &ak, &q, &kk, &vv, scale);
        struct tensor a2 = flat_rows(&s->a, r0[k], nr[k], C);
        op_linear(ctx, &pk, &a2, &W->co_w, &W->co_b, false);
    }
    if (tp)
        tap(ctx, tp->cross_attn, &s->p);
    if (cond)
        op_add(ctx, &s->x, &s->x, &s->p);

    /* MLP (L318-332) */
    norm_modulate(ctx, s, &sc_mlp, &sh_mlp);
    for (int k = 0; k < 2; k++) {
        const struct flow_block_w *W = &B->s[k];
        struct tensor hk = rows(&s->h, r0[k], nr[k]);
        struct tensor fk = rows(&s->f, r0[k], nr[k]);
        struct tensor pk = rows(&s->p, r0[k], nr[k]);
        op_linear_gelu(ctx, &fk, &hk, &W->fc1_w, &W->fc1_b);   /* GELU in fc1's epilogue */
        op_linear(ctx, &pk, &fk, &W->fc2_w, &W->fc2_b, false);
    }
    if (tp)
        tap(ctx, tp->mlp, &s->p);
    op_add_gated(ctx, &s->x, &s->x, &gt_mlp, &s->p);   /* as after self-attention */
    if (tp)
        tap(ctx, tp->block_out, &s->x);
}

/* The evaluation up to the blocks: temb and SiLU(temb),
 * the latent tokens + pos_emb into s->x (taps: t_emb, d_emb, tokens_in). */
static void fwd_in(const struct ssflow_model *m, const struct op_ctx *ctx, struct ssf_act *s,
                   const struct tensor *const x[SSF_N_LATENT], float t, float d,
                   const struct ssflow_taps *taps)
{
    const struct ssflow_config *g = &m->cfg;

    /* temb = t_embedder(t) + d_embedder(d) (mot_sparse_structure_flow.py:147-150), then SiLU
     * for the adaLN of every block */
    flow_temb_eval(ctx, &m->t_emb, t, &s->tf, &s->e1, &s->te);
    flow_temb_eval(ctx, &m->d_emb, d, &s->tf, &s->e1, &s->de);
    if (taps) {
        tap(ctx, taps->t_emb, &s->te);
        tap(ctx, taps->d_emb, &s->de);
    }
    op_add(ctx, &s->te, &s->te, &s->de);
    op_act(ctx, &s->st, &s->te, OP_ACT_SILU);

    /* latent inputs (mm_latent.py:47-51): Linear(x) + pos_emb into the stream rows */
    for (int l = 0; l < SSF_N_LATENT; l++) {
        const struct ssflow_latent *L = &m->lat[l];
        struct tensor xi = tensor_view(s->xin.data, m->gemm_dt, s->xin.device, SHAPE(g->ntok[l], g->cin[l]));
        op_upload(ctx, &xi, x[l]);
        struct tensor hl = rows(&s->h, g->row[l], g->ntok[l]);
        struct tensor xl = rows(&s->x, g->row[l], g->ntok[l]);
        op_linear(ctx, &hl, &xi, &L->in_w, &L->in_b, false);
        op_add_bias(ctx, &xl, &hl, &L->pos);
    }
    if (taps)
        tap(ctx, taps->tokens_in, &s->x);
}

/* The outputs from the stream s->x (mm_latent.py:53-57): F.layer_norm (no affine,
 * eps 1e-5) -> out_layer, into the host velocities v. */
static void fwd_out(const struct ssflow_model *m, const struct op_ctx *ctx, struct ssf_act *s,
                    struct tensor *const v[SSF_N_LATENT])
{
    const struct ssflow_config *g = &m->cfg;

    op_layernorm(ctx, &s->h, &s->x, NULL, NULL, SSF_OUT_EPS);
    for (int l = 0; l < SSF_N_LATENT; l++) {
        const struct ssflow_latent *L = &m->lat[l];
        struct tensor hl = rows(&s->h, g->row[l], g->ntok[l]);
        struct tensor vo = tensor_view(s->vo.data, m->gemm_dt, s->vo.device, SHAPE(g->ntok[l], g->cin[l]));
        op_linear(ctx, &vo, &hl, &L->out_w, &L->out_b, false);
        ASSERT(v[l]->dtype == DTYPE_F32 && tensor_numel(v[l]) == tensor_numel(&vo) &&
               tensor_is_contiguous(v[l]));
        get(ctx, v[l]->data, &vo);
    }
}

static void fwd_check(const struct ssflow_model *m, const struct ssflow_cond *cond)
{
    ASSERT(!cond || (cond->c.ndim == 3 && cond->c.shape[2] == m->cfg.cond_dim &&
                     cond->c.dtype == m->gemm_dt && cond->c.device == m->device));
}

void ssflow_forward(const struct ssflow_model *m, const struct op_ctx *ctx, struct arena *act,
                    const struct tensor *const x[SSF_N_LATENT], float t, float d,
                    const struct ssflow_cond *cond, struct tensor *const v[SSF_N_LATENT],
                    const struct ssflow_taps *taps)
{
    size_t mark = arena_mark(act);
    struct ssf_act s;

    fwd_check(m, cond);
    act_plan(m, act, cond && !cond->kv.data ? cond->c.shape[1] : 1, &s);
    fwd_in(m, ctx, &s, x, t, d, taps);
    for (int i = 0; i < m->cfg.depth; i++)
        block_forward(m, ctx, &s, i, cond, taps && taps->block == i ? taps : NULL);
    fwd_out(m, ctx, &s, v);
    arena_release(act, mark);
}

size_t ssflow_cfg_extra_bytes(const struct ssflow_model *m)
{
    return arena_round(sizeof(float) * (size_t)(m->cfg.n_tok * m->cfg.dim));
}

void ssflow_forward_cfg(const struct ssflow_model *m, const struct op_ctx *ctx, struct arena *act,
                        const struct tensor *const x[SSF_N_LATENT], float t, float d,
                        const struct ssflow_cond *cond, struct tensor *const vc[SSF_N_LATENT],
                        struct tensor *const vu[SSF_N_LATENT])
{
    size_t mark = arena_mark(act);
    struct ssf_act s;

    ASSERT(cond);
    fwd_check(m, cond);
    act_plan(m, act, !cond->kv.data ? cond->c.shape[1] : 1, &s);
    struct tensor xc = s.x, xu = arena_tensor(act, DTYPE_F32, SHAPE(m->cfg.n_tok, m->cfg.dim));
    fwd_in(m, ctx, &s, x, t, d, NULL);
    op_copy(ctx, &xu, &xc);                     /* both passes start from the same tokens */
    for (int i = 0; i < m->cfg.depth; i++) {    /* each block once for both: its weights */
        s.x = xc;                               /* come to the device once (streamed) */
        block_forward(m, ctx, &s, i, cond, NULL);
        s.x = xu;
        block_forward(m, ctx, &s, i, NULL, NULL);
    }
    s.x = xc;
    fwd_out(m, ctx, &s, vc);
    s.x = xu;
    fwd_out(m, ctx, &s, vu);
    arena_release(act, mark);
}
