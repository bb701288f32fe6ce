/*
 * vit.c - DINOv2 ViT: config detection, weight binding, forward. See vit.h.
 *
 * Block (dinov2/layers/block.py:89-114, eval mode):
 *     x = x + ls1 * proj(attn(norm1(x)))
 *     x = x + ls2 * fc2(gelu(fc1(norm2(x))))
 * attention (dinov2/layers/attention.py:66-99): qkv (B, T, 3, H, 64), softmax
 * scale 1/8, no mask, output heads concatenated -> proj.
 *
 * The forward is written once and also runs in plan mode: on a planning arena
 * (arena_plan_init) it takes every buffer and runs no op, so vit_act_bytes is
 * its high-water mark and cannot drift from the code.
 */
#include "vit.h"
#include "vit_embed.h"
#include "arena.h"
#include "err.h"
#include "log.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

// ----------------------------------------------------------------------------
// config

/* The entry prefix + name, or NULL. */
static const struct ckpt_entry *find(const struct weights *w, const char *prefix, const char *name)
{
    return weights_find(w, "%s%s", prefix, name);
}

static int missing(const struct weights *c, const char *prefix, const char *name)
{
    log_error("%s: no tensor %s%s for the ViT (HINT: is this the right checkpoint for this "
              "stage? `sam3d inspect %s` lists its tensors)", c->ck.path, prefix, name, c->ck.path);
    return S3D_ESHAPE;
}

int vit_detect(struct vit_config *cfg, const struct weights *c, const char *prefix)
{
    const struct ckpt_entry *pos, *pw, *fc1, *reg;
    char name[64];

    memset(cfg, 0, sizeof(*cfg));
    if (!(pos = find(c, prefix, "pos_embed")))
        return missing(c, prefix, "pos_embed");
    if (!(pw = find(c, prefix, "patch_embed.proj.weight")))
        return missing(c, prefix, "patch_embed.proj.weight");
    if (!(fc1 = find(c, prefix, "blocks.0.mlp.fc1.weight")))
        return missing(c, prefix, "blocks.0.mlp.fc1.weight");
    while (cfg->depth < VIT_MAX_DEPTH) {
        snprintf(name, sizeof(name), "blocks.%d.norm1.weight", cfg->depth);
        if (!find(c, prefix, name))
            break;
        cfg->depth++;
    }
    if (pos->ndim != 3 || pw->ndim != 4 || pw->shape[2] != pw->shape[3] || fc1->ndim != 2)
        goto bad;
    cfg->dim = (int)pos->shape[2];
    cfg->heads = cfg->dim / OP_HEAD_DIM;
    cfg->mlp = (int)fc1->shape[0];
    cfg->patch = (int)pw->shape[2];
    cfg->in_ch = (int)pw->shape[1];
    cfg->grid = (int)lround(sqrt((double)(pos->shape[1] - 1)));
    if ((reg = find(c, prefix, "register_tokens"))) {
        if (reg->ndim != 3 || reg->shape[2] != cfg->dim)
            goto bad;
        cfg->n_reg = (int)reg->shape[1];
    }
    cfg->ls = find(c, prefix, "blocks.0.ls1.gamma") != NULL;
    if (cfg->dim % OP_HEAD_DIM || (int64_t)cfg->grid * cfg->grid + 1 != pos->shape[1] ||
        pw->shape[0] != cfg->dim || fc1->shape[1] != cfg->dim || cfg->depth == 0)
        goto bad;
    return 0;
bad:
    log_error("%s: the ViT under %s has inconsistent shapes (pos_embed, patch_embed, blocks; "
              "dim must be a multiple of 64) (HINT: the checkpoint is not a DINOv2 ViT)",
              c->ck.path, prefix);
    return S3D_ESHAPE;
}

int64_t vit_tokens(const struct vit_config *cfg, int64_t ph, int64_t pw)
{
    return 1 + cfg->n_reg + ph * pw;
}

// ----------------------------------------------------------------------------
// binding

int vit_bind_block(struct vit_block *L, struct weights *w, const char *prefix, int i, int64_t C,
                   int64_t M, enum dtype gemm_dt, bool ls)
{
    int rc = 0;

    rc |= weights_bind_as(w, &L->norm1_w, DTYPE_F32, SHAPE(C), "%sblocks.%d.norm1.weight", prefix, i);
    rc |= weights_bind_as(w, &L->norm1_b, DTYPE_F32, SHAPE(C), "%sblocks.%d.norm1.bias", prefix, i);
    rc |= weights_bind_as(w, &L->qkv_w, gemm_dt, SHAPE(3 * C, C), "%sblocks.%d.attn.qkv.weight", prefix, i);
    rc |= weights_bind_as(w, &L->qkv_b, gemm_dt, SHAPE(3 * C), "%sblocks.%d.attn.qkv.bias", prefix, i);
    rc |= weights_bind_as(w, &L->proj_w, gemm_dt, SHAPE(C, C), "%sblocks.%d.attn.proj.weight", prefix, i);
    rc |= weights_bind_as(w, &L->proj_b, gemm_dt, SHAPE(C), "%sblocks.%d.attn.proj.bias", prefix, i);
    rc |= weights_bind_as(w, &L->norm2_w, DTYPE_F32, SHAPE(C), "%sblocks.%d.norm2.weight", prefix, i);
    rc |= weights_bind_as(w, &L->norm2_b, DTYPE_F32, SHAPE(C), "%sblocks.%d.norm2.bias", prefix, i);
    rc |= weights_bind_as(w, &L->fc1_w, gemm_dt, SHAPE(M, C), "%sblocks.%d.mlp.fc1.weight", prefix, i);
    rc |= weights_bind_as(w, &L->fc1_b, gemm_dt, SHAPE(M), "%sblocks.%d.mlp.fc1.bias", prefix, i);
    rc |= weights_bind_as(w, &L->fc2_w, gemm_dt, SHAPE(C, M), "%sblocks.%d.mlp.fc2.weight", prefix, i);
    rc |= weights_bind_as(w, &L->fc2_b, gemm_dt, SHAPE(C), "%sblocks.%d.mlp.fc2.bias", prefix, i);
    if (ls) {
        rc |= weights_bind_as(w, &L->ls1, DTYPE_F32, SHAPE(C), "%sblocks.%d.ls1.gamma", prefix, i);
        rc |= weights_bind_as(w, &L->ls2, DTYPE_F32, SHAPE(C), "%sblocks.%d.ls2.gamma", prefix, i);
    }
    return rc ? S3D_ESHAPE : 0;
}

int vit_bind(struct vit *m, struct weights *w, const char *prefix, enum dtype gemm_dt)
{
    const struct vit_config *g = &m->cfg;
    int rc = vit_bind_head(m, w, prefix, gemm_dt);

    for (int i = 0; i < g->depth; i++)
        rc |= vit_bind_block(&m->blocks[i], w, prefix, i, g->dim, g->mlp, gemm_dt, g->ls);
    return rc ? S3D_ESHAPE : 0;
}

int vit_bind_head(struct vit *m, struct weights *w, const char *prefix, enum dtype gemm_dt)
{
    const struct vit_config *g = &m->cfg;
    int64_t C = g->dim;
    int64_t P = 1 + (int64_t)g->grid * g->grid;
    int rc = 0;

    m->gemm_dt = gemm_dt;
    rc |= weights_bind_as(w, &m->patch_w, gemm_dt, SHAPE(C, g->in_ch, g->patch, g->patch),
                       "%spatch_embed.proj.weight", prefix);
    rc |= weights_bind_as(w, &m->patch_b, gemm_dt, SHAPE(C), "%spatch_embed.proj.bias", prefix);
    rc |= weights_bind_as(w, &m->cls_token, DTYPE_F32, SHAPE(1, 1, C), "%scls_token", prefix);
    rc |= weights_bind_as(w, &m->pos_embed, DTYPE_F32, SHAPE(1, P, C), "%spos_embed", prefix);
    rc |= weights_bind_as(w, &m->mask_token, DTYPE_F32, SHAPE(1, C), "%smask_token", prefix);
    if (g->n_reg)
        rc |= weights_bind_as(w, &m->reg_tokens, DTYPE_F32, SHAPE(1, g->n_reg, C),
                           "%sregister_tokens", prefix);
    rc |= weights_bind_as(w, &m->norm_w, DTYPE_F32, SHAPE(C), "%snorm.weight", prefix);
    rc |= weights_bind_as(w, &m->norm_b, DTYPE_F32, SHAPE(C), "%snorm.bias", prefix);
    return rc ? S3D_ESHAPE : 0;
}

// ----------------------------------------------------------------------------
// forward

/* The activation buffers of one forward. */
struct vit_act {
    struct tensor x;      /* (B, T, C) F32 residual stream (returned) */
    struct tensor h;      /* (B*T, C) gemm_dt: norm output */
    struct tensor qkv;    /* (B, T, 3, H, 64) gemm_dt */
    struct tensor a;      /* (B, T, H, 64) gemm_dt: attention output */
    struct tensor p;      /* (B*T, C) gemm_dt: proj / fc2 output */
    struct tensor f;      /* (B*T, M) gemm_dt: MLP hidden */
};

/* Attention sub-block: x += ls1 * proj(attn(norm1(x))). */
static void block_attn(const struct vit *m, const struct vit_block *L, const struct op_ctx *ctx,
                       struct vit_act *s, struct tensor *x2)
{
    op_layernorm(ctx, &s->h, x2, &L->norm1_w, &L->norm1_b, VIT_LN_EPS);
    struct tensor qkv2 = tensor_reshape(&s->qkv, SHAPE(op_rows(x2), 3 * (int64_t)m->cfg.dim));
    op_linear(ctx, &qkv2, &s->h, &L->qkv_w, &L->qkv_b, false);
    struct tensor q = op_heads_view(&s->qkv, 0);
    struct tensor k = op_heads_view(&s->qkv, 1);
    struct tensor v = op_heads_view(&s->qkv, 2);
    op_attention(ctx, &s->a, &q, &k, &v, 1.0f / sqrtf((float)OP_HEAD_DIM));
    struct tensor a2 = tensor_reshape(&s->a, SHAPE(op_rows(x2), (int64_t)m->cfg.dim));
    op_linear(ctx, &s->p, &a2, &L->proj_w, &L->proj_b, false);
    if (m->cfg.ls)
        op_add_scaled(ctx, x2, x2, &L->ls1, &s->p);
    else
        op_add(ctx, x2, x2, &s->p);
}

/* MLP sub-block: x += ls2 * fc2(gelu(fc1(norm2(x)))). */
static void block_mlp(const struct vit *m, const struct vit_block *L, const struct op_ctx *ctx,
                      struct vit_act *s, struct tensor *x2)
{
    op_layernorm(ctx, &s->h, x2, &L->norm2_w, &L->norm2_b, VIT_LN_EPS);
    op_linear(ctx, &s->f, &s->h, &L->fc1_w, &L->fc1_b, false);
    op_act(ctx, &s->f, &s->f, OP_ACT_GELU_ERF);
    op_linear(ctx, &s->p, &s->f, &L->fc2_w, &L->fc2_b, false);
    if (m->cfg.ls)
        op_add_scaled(ctx, x2, x2, &L->ls2, &s->p);
    else
        op_add(ctx, x2, x2, &s->p);
}

/* Patch embedding and token assembly into s->x. */
static void embed(const struct vit *m, const struct op_ctx *ctx, struct arena *act,
                  struct vit_act *s, const struct tensor *img, const struct tensor *pos_patch)
{
    const struct vit_config *g = &m->cfg;
    enum device dev = s->x.device;
    int64_t B = img->shape[0], ph = img->shape[2] / g->patch, pw = img->shape[3] / g->patch;
    int64_t N = ph * pw, C = g->dim, K = (int64_t)g->in_ch * g->patch * g->patch;
    size_t mark = arena_mark(act);
    struct tensor cols = arena_tensor(act, m->gemm_dt, SHAPE(B * N, K));
    struct tensor pe = arena_tensor(act, m->gemm_dt, SHAPE(B * N, C));
    struct tensor w2 = tensor_reshape(&m->patch_w, SHAPE(C, K));
    struct tensor pos2 = tensor_reshape(&m->pos_embed, SHAPE(1 + (int64_t)g->grid * g->grid, C));
    struct tensor pos_cls = tensor_slice(&pos2, 0, 0, 1);
    struct tensor pos_stored = tensor_slice(&pos2, 0, 1, (int64_t)g->grid * g->grid);
    struct tensor reg = g->n_reg ? tensor_reshape(&m->reg_tokens, SHAPE(g->n_reg, C)) : pos_cls;

    if (!pos_patch) {
        ASSERT(ph == g->grid && pw == g->grid);
        pos_patch = &pos_stored;
    }
    ASSERT(pos_patch->shape[0] == N && pos_patch->shape[1] == C);
    if (act->plan) {
        /* plan mode: the buffers only */
    } else if (dev == DEVICE_CUDA) {
        vit_im2col_cuda(ctx, &cols, img, g->patch);
        op_linear(ctx, &pe, &cols, &w2, &m->patch_b, false);
        vit_assemble_cuda(ctx, &s->x, &pe, &m->cls_token, g->n_reg ? &reg : NULL, &pos_cls, pos_patch);
    } else {
        vit_im2col_cpu(&cols, img, g->patch);
        op_linear(ctx, &pe, &cols, &w2, &m->patch_b, false);
        vit_assemble_cpu(&s->x, &pe, &m->cls_token, g->n_reg ? &reg : NULL, &pos_cls, pos_patch);
    }
    arena_release(act, mark);
}

struct tensor vit_forward(const struct vit *m, const struct op_ctx *ctx, struct arena *act,
                          const struct tensor *img, const struct tensor *pos_patch,
                          const struct vit_taps *taps)
{
    const struct vit_config *g = &m->cfg;
    enum device dev = m->pos_embed.device;
    struct vit_act s;

    ASSERT(img->ndim == 4 && img->dtype == DTYPE_F32 && img->device == dev);
    ASSERT(img->shape[1] == g->in_ch && img->shape[2] % g->patch == 0 &&
           img->shape[3] % g->patch == 0);
    int64_t B = img->shape[0], ph = img->shape[2] / g->patch, pw = img->shape[3] / g->patch;
    int64_t T = vit_tokens(g, ph, pw), C = g->dim, H = g->heads;

    s.x = arena_tensor(act, DTYPE_F32, SHAPE(B, T, C));
    size_t mark = arena_mark(act);
    embed(m, ctx, act, &s, img, pos_patch);

    s.h = arena_tensor(act, m->gemm_dt, SHAPE(B * T, C));
    s.qkv = arena_tensor(act, m->gemm_dt, SHAPE(B, T, 3, H, OP_HEAD_DIM));
    s.a = arena_tensor(act, m->gemm_dt, SHAPE(B, T, H, OP_HEAD_DIM));
    s.p = arena_tensor(act, m->gemm_dt, SHAPE(B * T, C));
    s.f = arena_tensor(act, m->gemm_dt, SHAPE(B * T, g->mlp));
    struct tensor x2 = tensor_reshape(&s.x, SHAPE(B * T, C));
    for (int i = 0; i < g->depth && !act->plan; i++) {
        const struct vit_block *L = m->blk ? stage_blocks_get(m->blk, ctx, m->blk0 + i)
                                           : &m->blocks[i];
        block_attn(m, L, ctx, &s, &x2);
        block_mlp(m, L, ctx, &s, &x2);
        for (int t = 0; taps && t < taps->n; t++)
            if (taps->block[t] == i) {
                struct tensor y = taps->out[t];
                ASSERT(y.ndim == 3 && y.shape[0] == B && y.shape[1] == T && y.shape[2] == C);
                vit_final_norm(m, ctx, &y, &s.x, false);
            }
    }
    arena_release(act, mark);
    return s.x;
}

void vit_final_norm(const struct vit *m, const struct op_ctx *ctx, struct tensor *y,
                    const struct tensor *x, bool drop_registers)
{
    int64_t B = x->shape[0], T = x->shape[1], R = m->cfg.n_reg;

    ASSERT(x->ndim == 3 && y->ndim == 3 && y->shape[0] == B && y->shape[2] == x->shape[2]);
    if (!drop_registers || R == 0) {
        ASSERT(y->shape[1] == T);
        op_layernorm(ctx, y, x, &m->norm_w, &m->norm_b, VIT_LN_EPS);
        return;
    }
    ASSERT(y->shape[1] == T - R);
    for (int64_t b = 0; b < B; b++) {     /* rows [0, 1) and [1 + R, T) of item b */
        struct tensor xb = tensor_slice(x, 0, b, 1), yb = tensor_slice(y, 0, b, 1);
        struct tensor xc = tensor_slice(&xb, 1, 0, 1), yc = tensor_slice(&yb, 1, 0, 1);
        struct tensor xp = tensor_slice(&xb, 1, 1 + R, T - 1 - R);
        struct tensor yp = tensor_slice(&yb, 1, 1, T - 1 - R);
        op_layernorm(ctx, &yc, &xc, &m->norm_w, &m->norm_b, VIT_LN_EPS);
        op_layernorm(ctx, &yp, &xp, &m->norm_w, &m->norm_b, VIT_LN_EPS);
    }
}

size_t vit_act_bytes(const struct vit *m, int64_t B, int64_t ph, int64_t pw)
{
    const struct vit_config *g = &m->cfg;
    enum device dev = m->pos_embed.device;
    struct arena plan;
    struct tensor img = tensor_view(NULL, DTYPE_F32, dev,
                                    SHAPE(B, g->in_ch, ph * g->patch, pw * g->patch));
    struct tensor pos = tensor_view(NULL, DTYPE_F32, dev, SHAPE(ph * pw, g->dim));
    bool stored = ph == g->grid && pw == g->grid;

    arena_plan_init(&plan, dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act");
    vit_forward(m, NULL, &plan, &img, stored ? NULL : &pos, NULL);
    return plan.high_water;
}
