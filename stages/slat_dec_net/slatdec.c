/*
 * slatdec.c - the SLAT decoder trunk: config detection, weight binding, the
 * window partitions of a voxel set, the forward. See slatdec.h.
 */
#include "slatdec.h"
#include "err.h"
#include "log.h"
#include "ops_copy.h"
#include "ops_sparse.h"
#include "ops_window.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// weights

static int not_slatdec(const struct weights *w, const char *who, const char *what)
{
    log_error("%s: %s: no %s%s (HINT: the %s stage reads an official SLAT decoder checkpoint "
              "(slat_decoder_gs.ckpt, slat_decoder_gs_4.ckpt, slat_decoder_mesh.ckpt); `sam3d "
              "inspect %s` lists its tensors)", who, w->ck.path, w->prefix, what, who, w->ck.path);
    return S3D_ENOTFOUND;
}

/* Sizes from tensor shapes (spec decoders.md §3). */
static int detect(struct slatdec_config *g, const struct weights *w, const char *who)
{
    const struct ckpt_entry *in, *qkv, *fc1;

    memset(g, 0, sizeof(*g));
    if (!(in = weights_find(w, "input_layer.weight")))
        return not_slatdec(w, who, "input_layer.weight");
    while (g->depth < SLD_MAX_DEPTH && weights_find(w, "blocks.%d.attn.to_qkv.weight", g->depth))
        g->depth++;
    if (g->depth == 0)
        return not_slatdec(w, who, "blocks.0.attn.to_qkv.weight");
    if (!(fc1 = weights_find(w, "blocks.0.mlp.mlp.0.weight")))
        return not_slatdec(w, who, "blocks.0.mlp.mlp.0.weight");
    qkv = weights_find(w, "blocks.0.attn.to_qkv.weight");
    if (in->ndim != 2 || qkv->ndim != 2 || fc1->ndim != 2)
        goto bad;
    g->dim = (int)in->shape[0];
    g->in_ch = (int)in->shape[1];
    g->heads = g->dim / OP_HEAD_DIM;
    g->mlp = (int)fc1->shape[0];
    if (g->dim % OP_HEAD_DIM || g->dim == 0 || qkv->shape[0] != 3 * (int64_t)g->dim ||
        qkv->shape[1] != g->dim || fc1->shape[1] != g->dim || g->in_ch < 1)
        goto bad;
    return 0;
bad:
    log_error("%s: %s: the SLAT decoder tensors have inconsistent shapes (input_layer (C, 8), "
              "to_qkv (3C, C), mlp.0 (mlp, C), C a multiple of 64) (HINT: the checkpoint is "
              "damaged or not an official SLAT decoder)", who, w->ck.path);
    return S3D_ESHAPE;
}

int slatdec_bind(struct slatdec_trunk *t, struct weights *w, enum device dev, enum dtype gd,
                 const char *who)
{
    int rc;

    ASSERT(gd == DTYPE_F16 || gd == DTYPE_F32);
    memset(t, 0, sizeof(*t));
    t->gemm_dt = gd;
    t->device = dev;
    if ((rc = detect(&t->cfg, w, who)))
        return rc;
    const struct slatdec_config *g = &t->cfg;
    int64_t C = g->dim, M = g->mlp;
    rc = 0;
    rc |= weights_bind_as(w, &t->in_w, DTYPE_F32, SHAPE(C, g->in_ch), "input_layer.weight");
    rc |= weights_bind_as(w, &t->in_b, DTYPE_F32, SHAPE(C), "input_layer.bias");
    for (int i = 0; i < g->depth; i++) {
        struct slatdec_block *b = &t->blocks[i];
        rc |= weights_bind_as(w, &b->qkv_w, gd, SHAPE(3 * C, C), "blocks.%d.attn.to_qkv.weight", i);
        rc |= weights_bind_as(w, &b->qkv_b, gd, SHAPE(3 * C), "blocks.%d.attn.to_qkv.bias", i);
        rc |= weights_bind_as(w, &b->out_w, gd, SHAPE(C, C), "blocks.%d.attn.to_out.weight", i);
        rc |= weights_bind_as(w, &b->out_b, gd, SHAPE(C), "blocks.%d.attn.to_out.bias", i);
        rc |= weights_bind_as(w, &b->fc1_w, gd, SHAPE(M, C), "blocks.%d.mlp.mlp.0.weight", i);
        rc |= weights_bind_as(w, &b->fc1_b, gd, SHAPE(M), "blocks.%d.mlp.mlp.0.bias", i);
        rc |= weights_bind_as(w, &b->fc2_w, gd, SHAPE(C, M), "blocks.%d.mlp.mlp.2.weight", i);
        rc |= weights_bind_as(w, &b->fc2_b, gd, SHAPE(C), "blocks.%d.mlp.mlp.2.bias", i);
    }
    if (rc)
        return S3D_ESHAPE;     /* weights_bind logged the name and both shapes */
    log_info("%s: SLAT decoder trunk: width %d, %d heads, %d blocks, MLP %d, latent %d; "
             "swin window %d (shift %d on odd blocks), %s", who, g->dim, g->heads, g->depth,
             g->mlp, g->in_ch, SLD_WINDOW, SLD_WINDOW / 2, dtype_name(gd));
    return 0;
}

// ----------------------------------------------------------------------------
// host <-> trunk device

/* dst (contiguous, trunk device) = the tensor_nbytes(dst) bytes at host src. */
static void upload(const struct op_ctx *ctx, struct tensor *dst, const void *src)
{
    struct tensor h = tensor_view((void *)src, dst->dtype, DEVICE_HOST, dst->shape, dst->ndim);

    op_upload(ctx, dst, &h);
}

/* out[0..numel) F32 host = src (contiguous float tensor, trunk device). */
static void tap(const struct op_ctx *ctx, float *out, const struct tensor *src)
{
    if (!out)
        return;
    struct tensor o = tensor_view(out, DTYPE_F32, DEVICE_HOST, src->shape, src->ndim);
    op_download(ctx, &o, src);
}

// ----------------------------------------------------------------------------
// coordinates

int slatdec_check_coords(const struct tensor *coords, const char *what, char *msg, size_t len)
{
    char got[64];

    if (coords->dtype != DTYPE_I32 || coords->device != DEVICE_HOST || coords->ndim != 2 ||
        coords->shape[1] != 4 || !tensor_is_contiguous(coords)) {
        snprintf(msg, len, "%s: expected I32 [N,4] (b, x, y, z) voxel coordinates, got %s %s "
                 "(HINT: they are the `coords` of the SS decode / SLAT flow stages)", what,
                 dtype_name(coords->dtype),
                 tensor_shape_str(coords->shape, coords->ndim, got, sizeof(got)));
        return S3D_ESHAPE;
    }
    if (coords->shape[0] < 1) {
        snprintf(msg, len, "%s: no voxel (N = 0) (HINT: the structured latent is empty; the SS "
                 "decode stage found no occupied voxel)", what);
        return S3D_ESHAPE;
    }
    if (!sparse_coords_check(coords, SLD_RESOLUTION, what)) {     /* logs the first bad row */
        snprintf(msg, len, "%s: not a voxel set at %d^3: every row must be (0, x, y, z) with "
                 "x, y, z in [0, %d) and no row twice (the stage log names the first bad row) "
                 "(HINT: give the coords of the SS decode / SLAT flow stages unchanged)", what,
                 SLD_RESOLUTION, SLD_RESOLUTION);
        return S3D_ESHAPE;
    }
    return 0;
}

size_t slatdec_geom_bytes(const struct slatdec_trunk *t, int64_t n)
{
    struct tensor coords = tensor_view(NULL, DTYPE_I32, DEVICE_HOST, SHAPE(n, 4));
    struct slatdec_geom g;
    struct arena plan;

    arena_plan_init(&plan, ARENA_HOST, "geom");      /* the kinds align alike */
    slatdec_geom_build(t, NULL, &plan, &coords, &g);
    return plan.high_water;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Group the nwin windows of off (host, slot offsets) greedily: consecutive
 * windows while the group holds at most rows slots (a longer window alone).
 * Fills gwin / gslot (ngroups + 1 entries) and roff (host, nwin + ngroups);
 * returns ngroups. */
static int group_windows(const int32_t *off, int64_t nwin, int rows, int32_t *gwin,
                         int32_t *gslot, int32_t *roff)
{
    int k = 0;
    int64_t r = 0;

    for (int64_t w0 = 0; w0 < nwin; k++) {
        int64_t w1 = w0 + 1;
        while (w1 < nwin && off[w1 + 1] - off[w0] <= rows)
            w1++;
        gwin[k] = (int32_t)w0;
        gslot[k] = off[w0];
        for (int64_t w = w0; w <= w1; w++)
            roff[r++] = off[w] - off[w0];
        w0 = w1;
    }
    gwin[k] = (int32_t)nwin;
    gslot[k] = off[nwin];
    ASSERT(r == nwin + k);
    return k;
}

/* Tokens per attention group at most for t (slatdec_trunk.group_rows). */
static int64_t trunk_group_rows(const struct slatdec_trunk *t)
{
    int64_t r = t->group_rows ? t->group_rows : SLD_GROUP_ROWS;

    ASSERT(r >= SLD_WINDOW * SLD_WINDOW * SLD_WINDOW && r <= INT32_MAX);
    return r;
}

void slatdec_geom_build(const struct slatdec_trunk *t, const struct op_ctx *ctx, struct arena *a,
                        const struct tensor *coords, struct slatdec_geom *g)
{
    slatdec_geom_build_rows(ctx, a, coords, (int)trunk_group_rows(t), g);
}

void slatdec_geom_build_rows(const struct op_ctx *ctx, struct arena *a,
                             const struct tensor *coords, int group_rows, struct slatdec_geom *g)
{
    /* R: a group's tokens at most (a window longer than group_rows is a group alone) */
    int64_t N = coords->shape[0], nw = min64(N, SLD_MAX_WINDOWS);
    int64_t R = min64(N, group_rows > SLD_WINDOW * SLD_WINDOW * SLD_WINDOW ?
                             group_rows : SLD_WINDOW * SLD_WINDOW * SLD_WINDOW);

    ASSERT(coords->dtype == DTYPE_I32 && coords->device == DEVICE_HOST &&
           tensor_is_contiguous(coords) && group_rows >= 1);
    memset(g, 0, sizeof(*g));
    g->n = N;
    /* the buffers first, the group offsets at their most (one group per
     * window): the same for every voxel set of N, so a planning arena sizes
     * them (plan mode) */
    g->coords = arena_tensor(a, DTYPE_I32, SHAPE(N, 4));
    for (int s = 0; s < 2; s++) {
        g->perm[s] = arena_tensor(a, DTYPE_I32, SHAPE(N));
        g->roff[s] = arena_tensor(a, DTYPE_I32, SHAPE(2 * nw));
    }
    g->iota = arena_tensor(a, DTYPE_I32, SHAPE(R));
    if (a->plan)
        return;
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)(2 * N + 1 + 2 * nw));
    ASSERT(perm);
    int32_t *off = perm + N, *roff = off + N + 1;
    upload(ctx, &g->coords, coords->data);
    struct tensor tp = tensor_view(perm, DTYPE_I32, DEVICE_HOST, SHAPE(N));
    struct tensor to = tensor_view(off, DTYPE_I32, DEVICE_HOST, SHAPE(N + 1));
    for (int s = 0; s < 2; s++) {
        g->nwin[s] = op_window_partition_cpu(&tp, &to, coords, SLD_WINDOW, s * SLD_WINDOW / 2,
                                             &g->max_len[s]);
        ASSERT(g->nwin[s] <= nw && g->max_len[s] <= R);
        for (int64_t w = 0; w < g->nwin[s]; w++)
            g->sum_l2[s] += (double)(off[w + 1] - off[w]) * (off[w + 1] - off[w]);
        g->ngroups[s] = group_windows(off, g->nwin[s], group_rows, g->gwin[s], g->gslot[s], roff);
        upload(ctx, &g->perm[s], perm);
        g->roff[s] = tensor_slice(&g->roff[s], 0, 0, g->nwin[s] + g->ngroups[s]);
        upload(ctx, &g->roff[s], roff);
    }
    for (int64_t i = 0; i < R; i++)
        perm[i] = (int32_t)i;
    upload(ctx, &g->iota, perm);
    free(perm);
}

// ----------------------------------------------------------------------------
// activations: x is the caller's; one region holds, in turn, the input layer's
// fp32 output chunks, per block the attention groups, the MLP chunks

/* View at *off inside region r, advancing *off by the arena-rounded size. */
static struct tensor carve(const struct tensor *r, size_t *off, enum dtype dt, const int64_t *shape,
                           int ndim)
{
    struct tensor v = tensor_view((char *)r->data + *off, dt, r->device, shape, ndim);

    *off += arena_round(tensor_nbytes(&v));
    ASSERT(*off <= tensor_nbytes(r));
    return v;
}

/* The phases' views of region r, in the order the forward carves them; each
 * returns the bytes it carved (on a region of unbounded size with NULL data:
 * the phase's size, region_bytes). */
static size_t in_views(const struct slatdec_trunk *t, const struct tensor *r, int64_t n,
                       int64_t rows, struct tensor *xin, struct tensor *lin)
{
    size_t off = 0;

    *xin = carve(r, &off, DTYPE_F32, SHAPE(n, t->cfg.in_ch));     /* the latent, uploaded once */
    *lin = carve(r, &off, DTYPE_F32, SHAPE(rows, t->cfg.dim));    /* input_layer's output chunk */
    return off;
}

/* One attention group of n tokens (slot order). */
static size_t attn_views(const struct slatdec_trunk *t, const struct tensor *r, int64_t n,
                         struct tensor *qkv, struct tensor *h, struct tensor *xg)
{
    size_t off = 0;

    *qkv = carve(r, &off, t->gemm_dt, SHAPE(n, 3, t->cfg.heads, OP_HEAD_DIM));
    *h = carve(r, &off, t->gemm_dt, SHAPE(n, t->cfg.dim));        /* LN, then attention out */
    *xg = carve(r, &off, t->gemm_dt, SHAPE(n, t->cfg.dim));       /* the group's rows of x */
    return off;
}

static size_t mlp_views(const struct slatdec_trunk *t, const struct tensor *r, int64_t rows,
                        struct tensor *h, struct tensor *f)
{
    size_t off = 0;

    *h = carve(r, &off, t->gemm_dt, SHAPE(rows, t->cfg.dim));
    *f = carve(r, &off, t->gemm_dt, SHAPE(rows, t->cfg.mlp));
    return off;
}

/* MLP rows per chunk in a region of `bytes`: a multiple of 64 whose (rows, C)
 * + (rows, mlp) fit with the alignment of the two views (2 ARENA_ALIGN). */
static int64_t mlp_rows(const struct slatdec_trunk *t, size_t bytes)
{
    size_t row = (size_t)(t->cfg.dim + t->cfg.mlp) * dtype_size(t->gemm_dt);

    return bytes > 2 * ARENA_ALIGN ? (int64_t)((bytes - 2 * ARENA_ALIGN) / row) / 64 * 64 : 0;
}

/* Tokens per input-layer chunk and per attention group at most. */
static int64_t group_cap(const struct slatdec_trunk *t, int64_t n)
{
    return min64(n, trunk_group_rows(t));
}

/* The region: the largest phase for n voxels (a group of group_cap(t, n) tokens,
 * or the latent (n, in_ch) + an input chunk of group_cap(t, n) rows), and at least one
 * 64-row MLP chunk plus the slack
 * mlp_rows leaves (small N: the region is this term). */
static size_t region_bytes(const struct slatdec_trunk *t, int64_t n)
{
    struct tensor any = tensor_view(NULL, DTYPE_U8, t->device, SHAPE(INT64_MAX / 2));
    struct tensor a, b, c;
    size_t in = in_views(t, &any, n, group_cap(t, n), &a, &b);
    size_t attn = attn_views(t, &any, group_cap(t, n), &a, &b, &c);
    size_t mlp = mlp_views(t, &any, 64, &a, &b) + 2 * ARENA_ALIGN;
    size_t r = attn > in ? attn : in;

    r = r > mlp ? r : mlp;
    ASSERT(mlp_rows(t, r) >= 64);
    return r;
}

size_t slatdec_act_bytes(const struct slatdec_trunk *t, int64_t n)
{
    return region_bytes(t, n);
}

// ----------------------------------------------------------------------------
// forward

/* out rows idx[i] (host F32 (N, C)) = src row i (R, C) on the trunk's device;
 * idx (R) I32 on the same device. For the attention tap of a group. */
static void tap_rows(const struct op_ctx *ctx, float *out, const struct tensor *src,
                     const struct tensor *idx)
{
    int64_t R = src->shape[0], C = src->shape[1];
    float *buf = malloc(sizeof(float) * (size_t)(R * C) + sizeof(int32_t) * (size_t)R);
    ASSERT(buf);
    int32_t *ix = (int32_t *)(buf + R * C);
    struct tensor hi = tensor_view(ix, DTYPE_I32, DEVICE_HOST, SHAPE(R));

    tap(ctx, buf, src);
    op_download(ctx, &hi, idx);
    for (int64_t i = 0; i < R; i++)
        memcpy(out + (int64_t)ix[i] * C, buf + i * C, sizeof(float) * (size_t)C);
    free(buf);
}

/* x += to_out(WinAttn(to_qkv(LN(x)))) over the groups of whole windows of
 * partition blk & 1, the region as one group's scratch: gather the group's
 * rows of x (slot order), LN, qkv, attention (local rows: iota), to_out with
 * the residual on the gathered rows, scatter them back. The gather, LN and
 * both GEMMs run on P >= R rows: R rounded up to SLD_GROUP_PAD, the extra
 * rows the next slots' tokens (computed, never scattered), so that a request
 * has a few GEMM shapes (the CUDA GEMM caches one algorithm per shape) and
 * not one per group. */
static void attn_forward(const struct slatdec_trunk *t, const struct op_ctx *ctx,
                         const struct tensor *reg, const struct slatdec_geom *g, int blk,
                         struct tensor *x, const struct slatdec_taps *tp)
{
    const struct slatdec_block *B = &t->blocks[blk];
    int64_t C = t->cfg.dim, H = t->cfg.heads;
    enum dtype gd = t->gemm_dt;
    int s = blk & 1;

    for (int k = 0; k < g->ngroups[s]; k++) {
        int64_t s0 = g->gslot[s][k], R = g->gslot[s][k + 1] - s0;
        int64_t w0 = g->gwin[s][k], nw = g->gwin[s][k + 1] - w0;
        int64_t P = min64(min64((R + SLD_GROUP_PAD - 1) / SLD_GROUP_PAD * SLD_GROUP_PAD,
                                g->n - s0), group_cap(t, g->n));
        struct tensor qkv, h, xg;
        attn_views(t, reg, P, &qkv, &h, &xg);
        struct tensor qkv2 = tensor_reshape(&qkv, SHAPE(P, 3 * C));
        struct tensor qr = tensor_slice(&qkv, 0, 0, R);
        struct tensor a = tensor_view(h.data, gd, h.device, SHAPE(P, H, OP_HEAD_DIM));
        struct tensor ar = tensor_slice(&a, 0, 0, R);
        struct tensor a2 = tensor_reshape(&a, SHAPE(P, C));
        struct tensor idx = tensor_slice(&g->perm[s], 0, s0, P);
        struct tensor idr = tensor_slice(&g->perm[s], 0, s0, R);
        struct tensor xr = tensor_slice(&xg, 0, 0, R);
        struct tensor loc = tensor_slice(&g->iota, 0, 0, R);
        struct tensor off = tensor_slice(&g->roff[s], 0, w0 + k, nw + 1);

        ASSERT(R >= 1 && P >= R);
        op_sparse_gather_rows(ctx, &xg, x, &idx);
        op_layernorm(ctx, &h, &xg, NULL, NULL, SLD_EPS);
        op_linear(ctx, &qkv2, &h, &B->qkv_w, &B->qkv_b, false);
        /* a group holds whole windows, so none is longer than R: the bound
         * of the whole partition can exceed a small group's tokens */
        op_window_attention(ctx, &ar, &qr, &loc, &off, (int)min64(g->max_len[s], R),
                            1.0f / sqrtf((float)OP_HEAD_DIM));      /* a overwrites h (dead) */
        if (tp && tp->attn) {
            struct tensor a2r = tensor_reshape(&ar, SHAPE(R, C));
            struct tensor p = tensor_view(qkv.data, gd, qkv.device, SHAPE(R, C));   /* qkv dead */
            op_linear(ctx, &p, &a2r, &B->out_w, &B->out_b, false);
            tap_rows(ctx, tp->attn, &p, &idr);
            op_add(ctx, &xr, &xr, &p);
        } else {
            op_linear(ctx, &xg, &a2, &B->out_w, &B->out_b, true);  /* residual in the epilogue */
        }
        op_sparse_scatter_rows(ctx, x, &xr, &idr);
    }
}

/* x += fc2(GELU_tanh(fc1(LN(x)))) in row chunks that fit the region. */
static void mlp_forward(const struct slatdec_trunk *t, const struct op_ctx *ctx,
                        const struct tensor *reg, int blk, struct tensor *x,
                        const struct slatdec_taps *tp)
{
    const struct slatdec_block *B = &t->blocks[blk];
    int64_t N = x->shape[0], C = t->cfg.dim;
    int64_t rows = mlp_rows(t, tensor_nbytes(reg));
    if (t->mlp_rows > 0 && t->mlp_rows < rows)
        rows = t->mlp_rows;
    ASSERT(rows >= 1);
    if (rows > N)
        rows = N;
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
        int64_t n = N - r0 < rows ? N - r0 : rows;
        struct tensor h, f;
        mlp_views(t, reg, n, &h, &f);
        struct tensor xc = tensor_slice(x, 0, r0, n);

        op_layernorm(ctx, &h, &xc, NULL, NULL, SLD_EPS);
        op_linear_gelu(ctx, &f, &h, &B->fc1_w, &B->fc1_b);     /* GELU in fc1's epilogue */
        if (tp && tp->mlp) {
            op_linear(ctx, &h, &f, &B->fc2_w, &B->fc2_b, false);   /* h dead after fc1 */
            tap(ctx, tp->mlp + r0 * C, &h);
            op_add(ctx, &xc, &xc, &h);
        } else {
            op_linear(ctx, &xc, &f, &B->fc2_w, &B->fc2_b, true);
        }
    }
}

void slatdec_forward(const struct slatdec_trunk *t, const struct op_ctx *ctx, struct arena *act,
                     const struct slatdec_geom *g, const struct tensor *feats, struct tensor *x,
                     const struct slatdec_taps *taps)
{
    const struct slatdec_config *cf = &t->cfg;
    int64_t N = g->n, C = cf->dim, L = cf->in_ch, rows = group_cap(t, N);
    size_t mark = arena_mark(act);

    ASSERT(feats->dtype == DTYPE_F32 && feats->device == DEVICE_HOST &&
           tensor_is_contiguous(feats) && tensor_numel(feats) == N * L);
    ASSERT(x->dtype == t->gemm_dt && x->device == t->device && tensor_is_contiguous(x) &&
           x->ndim == 2 && x->shape[0] == N && x->shape[1] == C);
    struct tensor reg = arena_tensor(act, DTYPE_U8, SHAPE((int64_t)region_bytes(t, N)));
    if (act->plan) {                                 /* plan mode: the buffers only */
        arena_release(act, mark);
        return;
    }
    ASSERT(g->iota.shape[0] <= rows);                /* g's groups fit t's region */

    /* input layer (fp32) + APE (fp32), one rounding into the stream
     * (base.py:128-131), in row chunks */
    struct tensor xin, lin;
    in_views(t, &reg, N, rows, &xin, &lin);
    upload(ctx, &xin, feats->data);
    for (int64_t r0 = 0; r0 < N; r0 += rows) {
        int64_t n = min64(N - r0, rows);
        struct tensor xi = tensor_slice(&xin, 0, r0, n), li = tensor_slice(&lin, 0, 0, n);
        struct tensor xc = tensor_slice(x, 0, r0, n), cc = tensor_slice(&g->coords, 0, r0, n);

        op_linear(ctx, &li, &xi, &t->in_w, &t->in_b, false);
        if (taps)
            tap(ctx, taps->input_layer ? taps->input_layer + r0 * C : NULL, &li);
        op_ape_add(ctx, &xc, &li, &cc);
    }
    if (taps)
        tap(ctx, taps->tokens_ape, x);

    for (int i = 0; i < cf->depth; i++) {
        const struct slatdec_taps *tp = taps && taps->block == i ? taps : NULL;
        attn_forward(t, ctx, &reg, g, i, x, tp);
        mlp_forward(t, ctx, &reg, i, x, tp);
        if (tp)
            tap(ctx, tp->block_out, x);
    }
    arena_release(act, mark);
}

double slatdec_flops(const struct slatdec_trunk *t, const struct slatdec_geom *g)
{
    const struct slatdec_config *c = &t->cfg;
    double C = c->dim, M = c->mlp, N = (double)g->n;
    double gemm = 2.0 * N * (c->in_ch * C + c->depth * (3 * C * C + C * C + 2 * C * M));
    double attn = 0;

    for (int i = 0; i < c->depth; i++)
        attn += 4.0 * C * g->sum_l2[i & 1];
    return gemm + attn;
}
