/*
 * moge.c - MoGe v1 binding and forward. See moge.h.
 *
 * References: MG:moge/model/v1.py:23-141 (Head, ResidualConvBlock), :267-297
 * (forward), MG:moge/model/dinov2/models/vision_transformer.py:179-212
 * (interpolate_pos_encoding), MG:moge/utils/geometry_torch.py:40-52 (UV).
 *
 * The forward is written once and also runs in plan mode: on a planning arena
 * (arena_plan_init) it takes every buffer, and the scratch of the CUDA ops that
 * take it from the arena (op_resize, op_groupnorm, op_conv2d count it there),
 * and runs no op; moge_act_bytes is its high-water mark.
 */
#include "moge.h"
#include "moge_kern.h"

#include "err.h"
#include "ops_copy.h"
#include "log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// binding

static int bind_conv(struct weights *w, enum dtype dt, struct tensor *cw, struct tensor *cb,
                     int co, int ci, int k, const char *name)
{
    if (weights_bind_as(w, cw, dt, SHAPE(co, ci, k, k), "%s.weight", name) ||
        weights_bind_as(w, cb, DTYPE_F32, SHAPE(co), "%s.bias", name))
        return S3D_ESHAPE;
    return 0;
}

static int bind_gn(struct weights *w, struct tensor *gw, struct tensor *gb, int c, const char *name)
{
    if (weights_bind_as(w, gw, DTYPE_F32, SHAPE(c), "%s.weight", name) ||
        weights_bind_as(w, gb, DTYPE_F32, SHAPE(c), "%s.bias", name))
        return S3D_ESHAPE;
    return 0;
}

int moge_bind(struct moge_model *m, struct weights *w, enum dtype act_dt, int *first)
{
    char name[128];
    const struct ckpt_entry *e;
    int rc;

    memset(m, 0, sizeof(*m));
    m->act_dt = act_dt;
    m->num_tokens = MOGE_NUM_TOKENS;
    if ((rc = vit_detect(&m->vit.cfg, w, "backbone.")) != 0)
        return rc;
    if ((rc = vit_bind_head(&m->vit, w, "backbone.", act_dt)) != 0)
        return rc;
    int C = m->vit.cfg.dim;

    while (m->n_feat < MOGE_MAX_FEAT && weights_find(w, "head.projects.%d.weight", m->n_feat))
        m->n_feat++;
    e = weights_find(w, "head.projects.0.weight");
    if (!e || m->n_feat == 0 || e->ndim != 4 || m->n_feat > m->vit.cfg.depth) {
        log_error("%s: no usable head.projects.N.weight; HINT: is this MoGe v1's model.pt "
                  "(opened as FILE:model)?", w->ck.path ? w->ck.path : "weights");
        return S3D_ESHAPE;
    }
    m->dim_proj = (int)e->shape[0];
    for (int k = 0; k < m->n_feat; k++) {
        /* the (P, C, 1, 1) conv weight bound as the (P, C) matrix it is */
        if (weights_bind_as(w, &m->proj_w[k], act_dt, SHAPE(m->dim_proj, C, 1, 1),
                            "head.projects.%d.weight", k) ||
            weights_bind_as(w, &m->proj_b[k], DTYPE_F32, SHAPE(m->dim_proj),
                            "head.projects.%d.bias", k))
            return S3D_ESHAPE;
    }

    int cin = m->dim_proj;
    for (int i = 0; i < MOGE_UP_STAGES; i++) {
        struct moge_up *u = &m->up[i];
        e = weights_find(w, "head.upsample_blocks.%d.0.0.weight", i);
        if (!e || e->ndim != 4) {
            log_error("%s: missing head.upsample_blocks.%d.0.0.weight; HINT: not a MoGe v1 "
                      "checkpoint", w->ck.path ? w->ck.path : "weights", i);
            return S3D_ESHAPE;
        }
        u->cin = cin;
        u->cout = (int)e->shape[1];
        if (weights_bind_as(w, &u->convt_w, act_dt, SHAPE(cin + 2, u->cout, 2, 2),
                            "head.upsample_blocks.%d.0.0.weight", i) ||
            weights_bind_as(w, &u->convt_b, DTYPE_F32, SHAPE(u->cout),
                            "head.upsample_blocks.%d.0.0.bias", i))
            return S3D_ESHAPE;
        snprintf(name, sizeof(name), "head.upsample_blocks.%d.0.1", i);
        if ((rc = bind_conv(w, act_dt, &u->conv_w, &u->conv_b, u->cout, u->cout, 3, name)))
            return rc;
        while (u->n_res < MOGE_MAX_RES &&
               weights_find(w, "head.upsample_blocks.%d.%d.layers.0.weight", i, u->n_res + 1))
            u->n_res++;
        for (int r = 0; r < u->n_res; r++) {
            struct moge_resblock *b = &u->res[r];
            char base[96];
            snprintf(base, sizeof(base), "head.upsample_blocks.%d.%d.layers", i, r + 1);
            e = weights_find(w, "%s.2.weight", base);
            if (!e || e->ndim != 4) {
                log_error("%s: missing %s.2.weight", w->ck.path ? w->ck.path : "weights", base);
                return S3D_ESHAPE;
            }
            b->hidden = (int)e->shape[0];
            b->groups2 = b->hidden / 32 > 0 ? b->hidden / 32 : 1;   /* 'group_norm' */
            snprintf(name, sizeof(name), "%s.0", base);
            if ((rc = bind_gn(w, &b->gn1_w, &b->gn1_b, u->cout, name)))
                return rc;
            snprintf(name, sizeof(name), "%s.2", base);
            if ((rc = bind_conv(w, act_dt, &b->conv1_w, &b->conv1_b, b->hidden, u->cout, 3, name)))
                return rc;
            snprintf(name, sizeof(name), "%s.3", base);
            if ((rc = bind_gn(w, &b->gn2_w, &b->gn2_b, b->hidden, name)))
                return rc;
            snprintf(name, sizeof(name), "%s.5", base);
            if ((rc = bind_conv(w, act_dt, &b->conv2_w, &b->conv2_b, u->cout, b->hidden, 3, name)))
                return rc;
        }
        if (u->n_res == 0) {
            log_error("%s: head.upsample_blocks.%d has no residual blocks; HINT: not a MoGe v1 "
                      "checkpoint", w->ck.path ? w->ck.path : "weights", i);
            return S3D_ESHAPE;
        }
        cin = u->cout;
    }
    for (int k = 0; k < 2; k++) {
        struct moge_out *o = &m->out[k];
        e = weights_find(w, "head.output_block.%d.0.weight", k);
        const struct ckpt_entry *e2 = weights_find(w, "head.output_block.%d.2.weight", k);
        if (!e || !e2 || e->ndim != 4 || e2->ndim != 4 || e2->shape[2] != 1) {
            log_error("%s: head.output_block.%d is not Conv3x3 -> ReLU -> Conv1x1 (MoGe v1 "
                      "with last_res_blocks=0, last_conv_size=1)", w->ck.path ? w->ck.path : "weights",
                      k);
            return S3D_ESHAPE;
        }
        o->cout = k == 0 ? 3 : 1;
        int last = (int)e->shape[0];
        snprintf(name, sizeof(name), "head.output_block.%d.0", k);
        if ((rc = bind_conv(w, act_dt, &o->conv_w, &o->conv_b, last, cin + 2, 3, name)))
            return rc;
        snprintf(name, sizeof(name), "head.output_block.%d.2", k);
        if ((rc = bind_conv(w, act_dt, &o->lin_w, &o->lin_b, o->cout, last, 1, name)))
            return rc;
    }
    if (weights_bind_as(w, &m->image_mean, DTYPE_F32, SHAPE(1, 3, 1, 1), "image_mean") ||
        weights_bind_as(w, &m->image_std, DTYPE_F32, SHAPE(1, 3, 1, 1), "image_std"))
        return S3D_ESHAPE;
    *first = w->n_binds;                           /* the encoder's blocks last */
    for (int i = 0; i < m->vit.cfg.depth; i++)
        if ((rc = vit_bind_block(&m->vit.blocks[i], w, "backbone.", i, C, m->vit.cfg.mlp, act_dt,
                                 m->vit.cfg.ls)))
            return rc;
    m->vit.blk = &m->blk;
    m->vit.blk0 = 0;
    return 0;
}

int moge_load(struct moge_model *m, const char *path, enum device dev, enum dtype act_dt,
              int stream_slots)
{
    struct weights w;
    int rc, first = 0;

    memset(m, 0, sizeof(*m));
    if (!path) {
        log_error("depth: no --weights; HINT: pass MoGe's model.pt (Ruicheng/moge-vitl)");
        return S3D_EINVAL;
    }
    /* a bare file means its 'model' state dict, the official container */
    if ((rc = weights_open_key(&w, path, "model", NULL, act_dt)))
        return rc;
    if ((rc = moge_bind(m, &w, act_dt, &first)))
        goto out_close;
    rc = moge_config_num_tokens(path, &m->num_tokens);
    if (rc == S3D_ENOTFOUND) {
        m->num_tokens = MOGE_NUM_TOKENS;
        log_warn("depth: %s has no model_config token range; using %d (moge-vitl)", path,
                 m->num_tokens);
    } else if (rc) {
        goto out_close;
    }
    if ((rc = stage_blocks_load(&m->blk, &w, &m->weights, dev, first, m->vit.blocks,
                                sizeof(m->vit.blocks[0]), m->vit.cfg.depth, stream_slots)))
        goto out_close;
    log_info("depth: MoGe v1 from %s: ViT dim %d depth %d, %d taps, proj %d, %d tokens; "
             "%.1f MB of %s weights on %s%s", w.ck.path, m->vit.cfg.dim, m->vit.cfg.depth,
             m->n_feat, m->dim_proj, m->num_tokens, (double)m->weights.used / 1e6,
             dtype_name(act_dt), dev == DEVICE_CUDA ? "cuda" : "cpu",
             m->blk.slots ? " besides the streamed blocks" : "");
out_close:
    weights_close(&w);
    if (rc)
        memset(m, 0, sizeof(*m));
    return rc;
}

void moge_free(struct moge_model *m)
{
    if (!m)
        return;
    moge_release(m);
    stage_blocks_free(&m->blk);
    arena_free(&m->weights);
}

// ----------------------------------------------------------------------------
// geometry

void moge_geometry(const struct moge_model *m, int H, int W, struct moge_geom *g)
{
    /* MG:v1.py:272-275: resize_factor in float64, int() truncates */
    double f = sqrt(((double)m->num_tokens * 14.0 * 14.0) / ((double)H * (double)W));
    g->H = H;
    g->W = W;
    g->rw = (int)((double)W * f);
    g->rh = (int)((double)H * f);
    g->rw = g->rw < 14 ? 14 : g->rw;   /* degenerate aspect (e.g. 1 x 100000): keep one patch */
    g->rh = g->rh < 14 ? 14 : g->rh;
    g->ph = g->rh / 14;
    g->pw = g->rw / 14;
}

// ----------------------------------------------------------------------------
// forward

static struct tensor act_t(struct arena *a, enum dtype dt, enum device dev, const int64_t *shape,
                           int nd)
{
    struct tensor t = arena_tensor(a, dt, shape, nd);
    t.device = dev;
    return t;
}

/* view of planes [c0, c0 + n) of a contiguous (C, h, w) tensor */
static struct tensor planes(const struct tensor *t, int64_t c0, int64_t n)
{
    return tensor_slice(t, 0, c0, n);
}

static void emit(moge_dump_fn dump, void *user, const struct op_ctx *ctx, const char *name,
                 const struct tensor *t)
{
    if (!dump)
        return;
    if (t->device == DEVICE_CUDA)
        op_ctx_synchronize(ctx);
    dump(user, name, t);
}

/* The pos-embed for a ph x pw grid (interpolate_pos_encoding): the stored
 * 37x37 patch rows resized with bicubic A=-0.75 and scale factor
 * (ph + 0.1) / 37, computed on the host. out: (ph*pw, C) F32 host. */
static void pos_embed_interp(const struct moge_model *m, int ph, int pw, float *out)
{
    int M = m->vit.cfg.grid, C = m->vit.cfg.dim;
    size_t n = (size_t)M * M * C;
    float *pe = malloc(sizeof(float) * n), *chw = malloc(sizeof(float) * n);
    float *res = malloc(sizeof(float) * (size_t)C * ph * pw);
    ASSERT(pe && chw && res);
    struct tensor src = tensor_view((float *)m->vit.pos_embed.data + C, DTYPE_F32,  /* no cls row */
                                    m->vit.pos_embed.device, SHAPE(M * M, C));
    struct tensor pet = tensor_view(pe, DTYPE_F32, DEVICE_HOST, SHAPE(M * M, C));
    op_download(NULL, &pet, &src);
    for (size_t t = 0; t < (size_t)M * M; t++)                     /* (M*M, C) -> (C, M, M) */
        for (int c = 0; c < C; c++)
            chw[(size_t)c * M * M + t] = pe[t * C + c];
    struct tensor x = tensor_view(chw, DTYPE_F32, DEVICE_HOST, SHAPE(1, C, M, M));
    struct tensor y = tensor_view(res, DTYPE_F32, DEVICE_HOST, SHAPE(1, C, ph, pw));
    /* MG:vision_transformer.py:196-205: scale_factor = (float(w0 + 0.1) / M, ...) */
    op_resize_cpu(&y, &x, OP_RESIZE_BICUBIC, ((double)ph + 0.1) / M, ((double)pw + 0.1) / M);
    for (size_t t = 0; t < (size_t)ph * pw; t++)
        for (int c = 0; c < C; c++)
            out[t * C + c] = res[(size_t)c * ph * pw + t];
    free(pe);
    free(chw);
    free(res);
}

/* One ResidualConvBlock: y = x + conv2(relu(gn2(conv1(relu(gn1(x)))))). y may be
 * a different buffer than x (the next stage's concat buffer). */
static void resblock(const struct moge_model *m, const struct op_ctx *ctx, struct arena *act,
                     const struct moge_resblock *b, struct tensor *y, const struct tensor *x)
{
    size_t mark = arena_mark(act);
    int64_t C = x->shape[0], h = x->shape[1], w = x->shape[2];
    enum device dev = x->device;
    struct tensor a = act_t(act, m->act_dt, dev, SHAPE(1, C, h, w));
    struct tensor x4 = tensor_reshape(x, SHAPE(1, C, h, w));
    op_groupnorm(ctx, act, &a, &x4, 1, &b->gn1_w, &b->gn1_b, 1e-5f, true);
    struct tensor hdn = act_t(act, m->act_dt, dev, SHAPE(1, b->hidden, h, w));
    op_conv2d(ctx, act, &hdn, &a, &b->conv1_w, &b->conv1_b, 1, 1, OP_PAD_REPLICATE, false);
    op_groupnorm(ctx, act, &hdn, &hdn, b->groups2, &b->gn2_w, &b->gn2_b, 1e-5f, true);
    op_conv2d(ctx, act, &a, &hdn, &b->conv2_w, &b->conv2_b, 1, 1, OP_PAD_REPLICATE, false);
    struct tensor a3 = tensor_reshape(&a, SHAPE(C, h, w));
    if (!act->plan)
        op_add(ctx, y, x, &a3);
    arena_release(act, mark);
}

void moge_release(struct moge_model *m)
{
    if (!m)
        return;
    arena_free(&m->pos_arena);
    memset(&m->pos_cache, 0, sizeof(m->pos_cache));
    m->pos_ph = m->pos_pw = 0;
}

/* The pos-embed for a ph x pw grid on the weights' device, cached per grid. */
static int pos_embed_cached(struct moge_model *m, const struct op_ctx *ctx, enum device dev,
                            int ph, int pw)
{
    int64_t T = (int64_t)ph * pw, C = m->vit.cfg.dim;
    size_t bytes = sizeof(float) * (size_t)(T * C);
    int rc;

    if (m->pos_cache.data && m->pos_ph == ph && m->pos_pw == pw)
        return 0;
    moge_release(m);
    rc = arena_init(&m->pos_arena, dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "moge_pos",
                    bytes);
    if (rc)
        return rc;                                 /* arena_init logged it */
    m->pos_cache = act_t(&m->pos_arena, DTYPE_F32, dev, SHAPE(T, C));
    if (dev == DEVICE_CUDA) {
        float *h = malloc(bytes);
        ASSERT(h);
        pos_embed_interp(m, ph, pw, h);
        struct tensor ht = tensor_view(h, DTYPE_F32, DEVICE_HOST, SHAPE(T, C));
        op_upload(ctx, &m->pos_cache, &ht);
        free(h);
    } else {
        pos_embed_interp(m, ph, pw, m->pos_cache.data);
    }
    m->pos_ph = ph;
    m->pos_pw = pw;
    return 0;
}

int moge_forward(struct moge_model *m, const struct op_ctx *ctx, struct arena *act,
                 const struct tensor *img, const struct moge_geom *g, float *raw,
                 moge_dump_fn dump, void *user)
{
    size_t mark0 = arena_mark(act);
    bool plan = act->plan;                         /* plan mode: buffers and op scratch only */
    enum device dev = m->proj_w[0].device;
    enum dtype adt = m->act_dt;
    int rh = g->rh, rw = g->rw, ph = g->ph, pw = g->pw, C = m->vit.cfg.dim;
    int64_t T = (int64_t)ph * pw;
    char name[64];

    ASSERT(img->device == dev && img->ndim == 3 && img->shape[0] == 3);
    ASSERT(img->shape[1] == g->H && img->shape[2] == g->W);

    /* input: AA bicubic to (rh, rw), normalise, AA bilinear to the 14-multiple */
    struct tensor x0 = tensor_reshape(img, SHAPE(1, 3, g->H, g->W));
    struct tensor r1 = act_t(act, DTYPE_F32, dev, SHAPE(1, 3, rh, rw));
    op_resize(ctx, act, &r1, &x0, OP_RESIZE_BICUBIC_AA, 0, 0);
    if (!plan)
        moge_normalise(ctx, &r1, &r1, &m->image_mean, &m->image_std);
    struct tensor i14 = act_t(act, DTYPE_F32, dev, SHAPE(1, 3, ph * 14, pw * 14));
    op_resize(ctx, act, &i14, &r1, OP_RESIZE_BILINEAR_AA, 0, 0);
    emit(dump, user, ctx, "image_14", &i14);

    /* backbone with the interpolated pos-embed and the last n_feat blocks tapped */
    int rc = plan ? 0 : pos_embed_cached(m, ctx, dev, ph, pw);
    if (rc) {
        arena_release(act, mark0);
        return rc;
    }
    struct tensor pos = plan ? tensor_view(NULL, DTYPE_F32, dev, SHAPE(T, C)) : m->pos_cache;
    struct vit_taps taps;
    memset(&taps, 0, sizeof(taps));
    taps.n = m->n_feat;
    for (int k = 0; k < m->n_feat; k++) {
        taps.block[k] = m->vit.cfg.depth - m->n_feat + k;
        taps.out[k] = act_t(act, adt, dev, SHAPE(1, T + 1, C));
    }
    size_t mark_vit = arena_mark(act);
    vit_forward(&m->vit, ctx, act, &i14, &pos, &taps);
    arena_release(act, mark_vit);
    for (int k = 0; k < m->n_feat; k++) {
        snprintf(name, sizeof(name), k ? "backbone.norm#%d" : "backbone.norm", k);
        emit(dump, user, ctx, name, &taps.out[k]);
    }

    /* projects: x (P, T) = sum_k W_k tokens_k^T + b_k, straight into NCHW */
    int P = m->dim_proj;
    struct tensor cur = act_t(act, adt, dev, SHAPE(P + 2, ph, pw));
    struct tensor xp = tensor_reshape(&cur, SHAPE(P + 2, T));
    struct tensor xpp = planes(&xp, 0, P);
    for (int k = 0; k < m->n_feat && !plan; k++) {
        struct tensor tok = tensor_reshape(&taps.out[k], SHAPE(T + 1, C));
        tok = tensor_slice(&tok, 0, 1, T);         /* drop cls: rows 1.. (contiguous) */
        struct tensor wk = tensor_reshape(&m->proj_w[k], SHAPE(P, C));   /* (P, C, 1, 1) */
        op_linear(ctx, &xpp, &wk, &tok, NULL, k > 0);
        moge_channel_bias(ctx, &xpp, &m->proj_b[k]);
    }
    double aspect = (double)rw / (double)rh;       /* img_w / img_h of the resized image */

    /* upsample stages */
    int h = ph, w = pw;
    for (int i = 0; i < MOGE_UP_STAGES; i++) {
        const struct moge_up *u = &m->up[i];
        struct tensor uv = planes(&cur, u->cin, 2);
        if (!plan)
            moge_fill_uv(ctx, &uv, aspect);
        int co = u->cout;
        struct tensor nxt = act_t(act, adt, dev, SHAPE(co + 2, 2 * h, 2 * w));
        size_t mark = arena_mark(act);
        struct tensor in4 = tensor_reshape(&cur, SHAPE(1, u->cin + 2, h, w));
        struct tensor t1 = act_t(act, adt, dev, SHAPE(1, co, 2 * h, 2 * w));
        if (!plan)
            op_conv_transpose2x2(ctx, &t1, &in4, &u->convt_w, &u->convt_b);
        struct tensor t2 = act_t(act, adt, dev, SHAPE(1, co, 2 * h, 2 * w));
        op_conv2d(ctx, act, &t2, &t1, &u->conv_w, &u->conv_b, 1, 1, OP_PAD_REPLICATE, false);
        struct tensor x3 = tensor_reshape(&t2, SHAPE(co, 2 * h, 2 * w));
        snprintf(name, sizeof(name), "head.upsample_blocks.%d.0", i);
        emit(dump, user, ctx, name, &x3);
        struct tensor nxt_x = planes(&nxt, 0, co);
        ASSERT(u->n_res > 0);                      /* moge_bind requires one */
        for (int r = 0; r < u->n_res; r++) {
            struct tensor y = r == u->n_res - 1 ? nxt_x
                                                : act_t(act, adt, dev, SHAPE(co, 2 * h, 2 * w));
            resblock(m, ctx, act, &u->res[r], &y, &x3);
            x3 = y;
            snprintf(name, sizeof(name), "head.upsample_blocks.%d.%d", i, r + 1);
            emit(dump, user, ctx, name, &x3);
        }
        arena_release(act, mark);                  /* t1, t2, the res temporaries */
        cur = nxt;
        h *= 2;
        w *= 2;
    }

    /* bilinear to (rh, rw) + UV, then the two output blocks */
    int cl = m->up[MOGE_UP_STAGES - 1].cout;
    struct tensor fin = act_t(act, adt, dev, SHAPE(1, cl + 2, rh, rw));
    struct tensor fin3 = tensor_reshape(&fin, SHAPE(cl + 2, rh, rw));
    struct tensor fx = planes(&fin3, 0, cl);
    struct tensor cx = planes(&cur, 0, cl);
    op_resize(ctx, act, &fx, &cx, OP_RESIZE_BILINEAR, 0, 0);
    struct tensor fuv = planes(&fin3, cl, 2);
    if (!plan)
        moge_fill_uv(ctx, &fuv, aspect);
    struct tensor outs = act_t(act, adt, dev, SHAPE(4, rh, rw));
    for (int k = 0; k < 2; k++) {
        const struct moge_out *o = &m->out[k];
        size_t mark = arena_mark(act);
        struct tensor hid = act_t(act, adt, dev, SHAPE(1, o->conv_w.shape[0], rh, rw));
        op_conv2d(ctx, act, &hid, &fin, &o->conv_w, &o->conv_b, 1, 1, OP_PAD_REPLICATE, true);
        struct tensor oy = planes(&outs, k == 0 ? 0 : 3, o->cout);
        struct tensor oy4 = tensor_reshape(&oy, SHAPE(1, o->cout, rh, rw));
        op_conv2d(ctx, act, &oy4, &hid, &o->lin_w, &o->lin_b, 1, 0, OP_PAD_REPLICATE, false);
        snprintf(name, sizeof(name), "head.output_block.%d", k);
        emit(dump, user, ctx, name, &oy4);
        arena_release(act, mark);
    }
    /* raw (4, rh, rw) F32 on the host */
    struct tensor rawt = tensor_view(raw, DTYPE_F32, DEVICE_HOST, SHAPE(4, rh, rw));
    if (!plan)
        op_download(ctx, &rawt, &outs);
    arena_release(act, mark0);
    return 0;
}

size_t moge_act_bytes(const struct moge_model *m, const struct moge_geom *g)
{
    enum device dev = m->proj_w[0].device;
    struct tensor img = tensor_view(NULL, DTYPE_U8, dev, SHAPE(3, g->H, g->W));
    struct arena plan;

    arena_plan_init(&plan, dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act");
    /* plan mode reads and writes nothing of m (the pos-embed cache included) */
    moge_forward((struct moge_model *)m, NULL, &plan, &img, g, NULL, NULL, NULL);
    return plan.high_water + (dev == DEVICE_CUDA ? OP_CONV_WS_HEADROOM : 0);
}
