/*
 * pointmap.c - PointPatchEmbed: config, binding, forward, and the CPU versions
 * of its token-building and finishing steps. See pointmap.h.
 */
#include "pointmap.h"
#include "ops_image.h"
#include "arena.h"
#include "ops_copy.h"
#include "err.h"
#include "log.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

// ----------------------------------------------------------------------------
// config and binding

static const struct ckpt_entry *find(const struct weights *w, const char *prefix, const char *name)
{
    return weights_find(w, "%s%s", prefix, name);
}

int ppe_detect(struct ppe *m, const struct weights *c, const char *prefix)
{
    const struct ckpt_entry *pw = find(c, prefix, "point_proj.weight");
    const struct ckpt_entry *pos = find(c, prefix, "pos_embed");
    const struct ckpt_entry *win = find(c, prefix, "pos_embed_window");
    const struct ckpt_entry *fc1 = find(c, prefix, "blocks.0.mlp.fc1.weight");
    char name[64];

    memset(m, 0, sizeof(*m));
    if (!pw || !pos || !win || !fc1) {
        log_error("%s: the point-map embedder under %s lacks point_proj.weight, pos_embed, "
                  "pos_embed_window or blocks.0 (HINT: `sam3d inspect %s`)", c->ck.path, prefix,
                  c->ck.path);
        return S3D_ESHAPE;
    }
    while (m->depth < PPE_MAX_DEPTH) {
        snprintf(name, sizeof(name), "blocks.%d.norm1.weight", m->depth);
        if (!find(c, prefix, name))
            break;
        m->depth++;
    }
    m->dim = (int)pw->shape[0];
    m->mlp = (int)fc1->shape[0];
    m->nwin = pos->ndim == 4 ? (int)pos->shape[2] : 0;
    m->patch = win->ndim == 3 ? (int)lround(sqrt((double)(win->shape[1] - 1))) : 0;
    m->size = m->nwin * m->patch;
    if (pw->ndim != 2 || pw->shape[1] != 3 || m->dim % PPE_HEADS || m->nwin < 1 ||
        pos->shape[1] != m->dim || pos->shape[3] != m->nwin || m->patch < 1 ||
        (int64_t)m->patch * m->patch + 1 != win->shape[1] || win->shape[2] != m->dim ||
        (1 + m->patch * m->patch) * (m->dim / PPE_HEADS) > OP_SMALL_MAX_KV) {
        log_error("%s: the point-map embedder under %s has inconsistent shapes "
                  "(point_proj (D,3), pos_embed (1,D,n,n), pos_embed_window (1,1+P*P,D), "
                  "D a multiple of 16)", c->ck.path, prefix);
        return S3D_ESHAPE;
    }
    return 0;
}

int ppe_bind(struct ppe *m, struct weights *w, const char *prefix, enum dtype gemm_dt)
{
    int64_t D = m->dim, M = m->mlp, n = m->nwin, PP = 1 + (int64_t)m->patch * m->patch;
    int rc = 0;

    m->gemm_dt = gemm_dt;
    rc |= weights_bind_as(w, &m->point_proj_w, DTYPE_F32, SHAPE(D, 3), "%spoint_proj.weight", prefix);
    rc |= weights_bind_as(w, &m->point_proj_b, DTYPE_F32, SHAPE(D), "%spoint_proj.bias", prefix);
    rc |= weights_bind_as(w, &m->invalid_token, DTYPE_F32, SHAPE(D), "%sinvalid_xyz_token", prefix);
    rc |= weights_bind_as(w, &m->pos_embed, DTYPE_F32, SHAPE(1, D, n, n), "%spos_embed", prefix);
    rc |= weights_bind_as(w, &m->pos_window, DTYPE_F32, SHAPE(1, PP, D), "%spos_embed_window", prefix);
    rc |= weights_bind_as(w, &m->cls_token, DTYPE_F32, SHAPE(1, 1, D), "%scls_token", prefix);
    for (int i = 0; i < m->depth; i++)
        rc |= vit_bind_block(&m->blocks[i], w, prefix, i, D, M, gemm_dt, false);
    return rc ? S3D_ESHAPE : 0;
}

// ----------------------------------------------------------------------------
// CPU steps

/* fp16 rounding when half, identity otherwise. */
static float rh(float v, bool half)
{
    return half ? f16_to_f32(f32_to_f16(v)) : v;
}

void ppe_tokens_cpu(const struct ppe *m, struct tensor *tok, const struct tensor *xyz, int64_t g0,
                    bool half)
{
    int64_t D = m->dim, P = m->patch, T = 1 + P * P, nw = m->nwin, S = m->size;
    int64_t nc = tok->shape[0];
    const float *pw = m->point_proj_w.data, *pb = m->point_proj_b.data;
    const float *inv = m->invalid_token.data, *win = m->pos_window.data, *cls = m->cls_token.data;
    const float *src = xyz->data;
    float *t = tok->data;

    ASSERT(tok->ndim == 3 && tok->shape[1] == T && tok->shape[2] == D);
    ASSERT(xyz->shape[1] == 3 && xyz->shape[2] == S && xyz->shape[3] == S);
    for (int64_t wi = 0; wi < nc; wi++) {
        int64_t g = g0 + wi, b = g / (nw * nw), w = g % (nw * nw), wy = w / nw, wx = w % nw;
        float *tw = t + wi * T * D;
        for (int64_t d = 0; d < D; d++)
            tw[d] = cls[d] + win[d];
        for (int64_t i = 0; i < P * P; i++) {
            int64_t y = wy * P + i / P, x = wx * P + i % P;
            float p[3];
            bool valid = true;
            for (int c = 0; c < 3; c++) {
                p[c] = src[((b * 3 + c) * S + y) * S + x];
                valid = valid && isfinite(p[c]);
            }
            float *row = tw + (1 + i) * D;
            for (int64_t d = 0; d < D; d++) {
                float v;
                if (valid) {
                    v = rh(pb[d], half);
                    for (int c = 0; c < 3; c++)
                        v += rh(p[c], half) * rh(pw[d * 3 + c], half);
                    v = rh(v, half);
                } else {
                    v = rh(inv[d], half);           /* 0 + token, stored in x's dtype */
                }
                row[d] = v + win[(1 + i) * D + d];
            }
        }
    }
}

void ppe_finish_cpu(const struct ppe *m, struct tensor *out, const struct tensor *x0, int64_t g0)
{
    int64_t D = m->dim, nw = m->nwin, nc = x0->shape[0];
    const float *pos = m->pos_embed.data, *x = x0->data;
    float *o = out->data;

    ASSERT(out->shape[1] == D && g0 + nc <= out->shape[0]);
    for (int64_t wi = 0; wi < nc; wi++) {
        int64_t w = (g0 + wi) % (nw * nw);
        for (int64_t d = 0; d < D; d++)
            o[(g0 + wi) * D + d] = x[wi * D + d] + pos[d * nw * nw + w];
    }
}

// ----------------------------------------------------------------------------
// forward

/* The row-0 residual x0 (nc, D) = tok[:, 0, :] (a strided copy). */
static void copy_row0(const struct op_ctx *ctx, struct tensor *x0, const struct tensor *tok)
{
    struct tensor r0 = tensor_slice(tok, 1, 0, 1);

    op_copy(ctx, x0, &r0);
}

/* One chunk of nc windows starting at global window g0. */
static void chunk_forward(const struct ppe *m, const struct op_ctx *ctx, struct arena *act,
                          struct tensor *out, const struct tensor *xyz, int64_t g0, int64_t nc)
{
    enum device dev = out->device;
    enum dtype gd = m->gemm_dt;
    int64_t D = m->dim, T = 1 + (int64_t)m->patch * m->patch, H = PPE_HEADS, Dh = D / H;
    float scale = 1.0f / sqrtf((float)Dh);
    size_t mark = arena_mark(act);
    struct tensor tok = arena_tensor(act, DTYPE_F32, SHAPE(nc, T, D));
    struct tensor h = arena_tensor(act, gd, SHAPE(nc * T, D));
    struct tensor qkv = arena_tensor(act, gd, SHAPE(nc, T, 3, H, Dh));
    struct tensor a = arena_tensor(act, gd, SHAPE(nc, T, H, Dh));
    struct tensor p = arena_tensor(act, gd, SHAPE(nc * T, D));
    struct tensor f = arena_tensor(act, gd, SHAPE(nc * T, m->mlp));
    struct tensor x0 = arena_tensor(act, DTYPE_F32, SHAPE(nc, D));
    struct tensor tok2 = tensor_reshape(&tok, SHAPE(nc * T, D));
    struct tensor qkv2 = tensor_reshape(&qkv, SHAPE(nc * T, 3 * D));
    struct tensor q = op_heads_view(&qkv, 0), k = op_heads_view(&qkv, 1), v = op_heads_view(&qkv, 2);

    if (act->plan) {                                /* plan mode: the buffers only */
        arena_release(act, mark);
        return;
    }
    if (dev == DEVICE_CUDA)
        ppe_tokens_cuda(m, ctx, &tok, xyz, g0, gd == DTYPE_F16);
    else
        ppe_tokens_cpu(m, &tok, xyz, g0, gd == DTYPE_F16);
    for (int i = 0; i < m->depth; i++) {
        const struct vit_block *L = &m->blocks[i];
        bool last = i == m->depth - 1;
        int64_t rows = last ? nc : nc * T;          /* the last block only needs token 0 */
        struct tensor xr = last ? x0 : tok2;

        op_layernorm(ctx, &h, &tok2, &L->norm1_w, &L->norm1_b, PPE_LN_EPS);
        op_linear(ctx, &qkv2, &h, &L->qkv_w, &L->qkv_b, false);
        struct tensor qi = last ? tensor_slice(&q, 1, 0, 1) : q;
        struct tensor ai = tensor_view(a.data, gd, dev, SHAPE(nc, qi.shape[1], H, Dh));
        op_attention_small(ctx, &ai, &qi, &k, &v, scale);
        struct tensor a2 = tensor_view(a.data, gd, dev, SHAPE(rows, D));
        struct tensor p2 = tensor_view(p.data, gd, dev, SHAPE(rows, D));
        struct tensor h2 = tensor_view(h.data, gd, dev, SHAPE(rows, D));
        struct tensor f2 = tensor_view(f.data, gd, dev, SHAPE(rows, m->mlp));
        op_linear(ctx, &p2, &a2, &L->proj_w, &L->proj_b, false);
        if (last)
            copy_row0(ctx, &x0, &tok);
        op_add(ctx, &xr, &xr, &p2);
        op_layernorm(ctx, &h2, &xr, &L->norm2_w, &L->norm2_b, PPE_LN_EPS);
        op_linear(ctx, &f2, &h2, &L->fc1_w, &L->fc1_b, false);
        op_act(ctx, &f2, &f2, OP_ACT_GELU_ERF);
        op_linear(ctx, &p2, &f2, &L->fc2_w, &L->fc2_b, false);
        op_add(ctx, &xr, &xr, &p2);
    }
    if (dev == DEVICE_CUDA)
        ppe_finish_cuda(m, ctx, out, &x0, g0);
    else
        ppe_finish_cpu(m, out, &x0, g0);
    arena_release(act, mark);
}

void ppe_forward(const struct ppe *m, const struct op_ctx *ctx, struct arena *act,
                 struct tensor *out, const struct tensor *pm)
{
    int64_t B = pm->shape[0], nwin2 = (int64_t)m->nwin * m->nwin;
    size_t mark = arena_mark(act);

    ASSERT(pm->ndim == 4 && pm->shape[1] == 3 && pm->dtype == DTYPE_F32);
    ASSERT(out->ndim == 3 && out->shape[0] == B && out->shape[1] == nwin2 &&
           out->shape[2] == m->dim && out->dtype == DTYPE_F32);
    struct tensor xyz = arena_tensor(act, DTYPE_F32, SHAPE(B, 3, m->size, m->size));
    op_resize(ctx, act, &xyz, pm, OP_RESIZE_NEAREST, 0, 0);     /* pointmap.py:245-248 */
    struct tensor out2 = tensor_reshape(out, SHAPE(B * nwin2, m->dim));
    for (int64_t g0 = 0; g0 < B * nwin2; g0 += PPE_CHUNK) {
        int64_t nc = B * nwin2 - g0 < PPE_CHUNK ? B * nwin2 - g0 : PPE_CHUNK;
        chunk_forward(m, ctx, act, &out2, &xyz, g0, nc);
    }
    arena_release(act, mark);
}
