/*
 * meshdec.c - the mesh decoder's head: weights, voxel neighbour maps, the
 * chunk plan, and the forward that streams the 256^3 level into FlexiCubes.
 * See meshdec.h.
 */
#include "meshdec.h"
#include "meshdec_kern.h"
#include "check.h"
#include "err.h"
#include "log.h"
#include "ops_copy.h"
#include "ops_sparse.h"
#include "stage.h"
#include "weights.h"

#include <stdio.h>

#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// weights

static int bind_sub(struct meshdec_sub *u, struct weights *w, int i, int cin, int cout,
                    enum dtype ct)
{
    int rc = 0;

    u->cin = cin;
    u->cout = cout;
    rc |= weights_bind_as(w, &u->act_w, DTYPE_F32, SHAPE(cin), "upsample.%d.act_layers.0.weight", i);
    rc |= weights_bind_as(w, &u->act_b, DTYPE_F32, SHAPE(cin), "upsample.%d.act_layers.0.bias", i);
    rc |= weights_bind_as(w, &u->conv1_w, ct, SHAPE(cout, 3, 3, 3, cin),
                          "upsample.%d.out_layers.0.conv.weight", i);
    rc |= weights_bind_as(w, &u->conv1_b, ct, SHAPE(cout), "upsample.%d.out_layers.0.conv.bias", i);
    rc |= weights_bind_as(w, &u->gn_w, DTYPE_F32, SHAPE(cout), "upsample.%d.out_layers.1.weight", i);
    rc |= weights_bind_as(w, &u->gn_b, DTYPE_F32, SHAPE(cout), "upsample.%d.out_layers.1.bias", i);
    rc |= weights_bind_as(w, &u->conv2_w, ct, SHAPE(cout, 3, 3, 3, cout),
                          "upsample.%d.out_layers.3.conv.weight", i);
    rc |= weights_bind_as(w, &u->conv2_b, ct, SHAPE(cout), "upsample.%d.out_layers.3.conv.bias", i);
    rc |= weights_bind_as(w, &u->skip_w, ct, SHAPE(cout, 1, 1, 1, cin),
                          "upsample.%d.skip_connection.conv.weight", i);
    rc |= weights_bind_as(w, &u->skip_b, ct, SHAPE(cout), "upsample.%d.skip_connection.conv.bias", i);
    return rc;
}

int meshdec_bind(struct meshdec_model *m, struct weights *w, enum device dev, enum dtype ct)
{
    const struct ckpt_entry *a0, *c0, *c1, *o;

    ASSERT(ct == DTYPE_F16 || ct == DTYPE_F32);
    memset(m, 0, sizeof(*m));
    m->ct = ct;
    m->device = dev;
    const char *sc = getenv("S3D_MESH_SUBCONV");
    /* the subdivided convs over the parents on CUDA (H100: head 35 ms against 78 ms with the
     * 27 child taps at 30k voxels), the 27 child taps on the CPU (the reference's sums bit
     * for bit); S3D_MESH_SUBCONV=taps|parents picks one (stages/mesh_decode/README.md) */
    m->sub_parents = sc ? !strcmp(sc, "parents") : dev == DEVICE_CUDA;
    a0 = weights_find(w, "upsample.0.act_layers.0.weight");
    c0 = weights_find(w, "upsample.0.out_layers.0.conv.weight");
    c1 = weights_find(w, "upsample.1.out_layers.0.conv.weight");
    o = weights_find(w, "out_layer.weight");
    if (!a0 || !c0 || !c1 || !o) {
        log_error("%s: no upsample.{0,1} subdivide blocks or out_layer (HINT: the mesh decoder "
                  "reads the official slat_decoder_mesh.ckpt; `sam3d inspect %s` lists its "
                  "tensors)", w->ck.path, w->ck.path);
        return S3D_ENOTFOUND;
    }
    if (a0->ndim != 1 || c0->ndim != 5 || c1->ndim != 5 || o->ndim != 2) {
        log_error("%s: upsample/out_layer tensors have unexpected ranks (HINT: the checkpoint "
                  "is damaged or not an official slat_decoder_mesh.ckpt)", w->ck.path);
        return S3D_ESHAPE;
    }
    m->C = (int)a0->shape[0];
    m->C1 = (int)c0->shape[0];
    m->C2 = (int)c1->shape[0];
    if (o->shape[0] != FC_CH) {
        log_error("%s: out_layer has %lld outputs, expected %d (sdf 8, deform 24, weights 21, "
                  "colour 48) (HINT: a mesh decoder without vertex colours is not supported)",
                  w->ck.path, (long long)o->shape[0], FC_CH);
        return S3D_ESHAPE;
    }
    if (m->C % MDEC_GROUPS || m->C1 % MDEC_GROUPS || m->C2 % MDEC_GROUPS) {
        log_error("%s: subdivide widths %d/%d/%d are not multiples of the %d GroupNorm groups "
                  "(HINT: not an official mesh decoder)", w->ck.path, m->C, m->C1, m->C2,
                  MDEC_GROUPS);
        return S3D_ESHAPE;
    }
    int rc = bind_sub(&m->up[0], w, 0, m->C, m->C1, ct) | bind_sub(&m->up[1], w, 1, m->C1, m->C2, ct);
    rc |= weights_bind_as(w, &m->out_w, DTYPE_F32, SHAPE(FC_CH, m->C2), "out_layer.weight");
    rc |= weights_bind_as(w, &m->out_b, DTYPE_F32, SHAPE(FC_CH), "out_layer.bias");
    return rc ? S3D_ESHAPE : 0;
}

void meshdec_bind_finish(struct meshdec_model *m, const struct weights *w)
{
    for (int i = 0; i < 2; i++) {
        struct meshdec_sub *u = &m->up[i];
        const struct ckpt_entry *e = weights_find(w, "upsample.%d.skip_connection.conv.weight", i);
        struct tensor src = ckpt_entry_tensor(e);
        size_t n = (size_t)u->cout * (size_t)u->cin;
        char *raw = malloc(tensor_nbytes(&src) + 1), *cvt = malloc(n * dtype_size(m->ct));
        char *lin = malloc(n * dtype_size(m->ct));

        ASSERT(e && raw && cvt && lin && (size_t)tensor_numel(&src) == n);
        tensor_copy_contiguous(raw, &src);
        dtype_convert(cvt, m->ct, raw, src.dtype, n);
        sparse_conv1_weight(lin, cvt, m->ct, u->cout, u->cin);
        u->skip_w = tensor_view(u->skip_w.data, m->ct, m->device, SHAPE(u->cout, u->cin));
        struct tensor hl = tensor_view(lin, m->ct, DEVICE_HOST, SHAPE(u->cout, u->cin));
        op_upload(NULL, &u->skip_w, &hl);
        free(raw);
        free(cvt);
        free(lin);
    }
}

int meshdec_load(struct meshdec_model *m, const char *path, enum device dev, enum dtype ct)
{
    struct weights w;
    const struct slatdec_config *t = &m->trunk.cfg;
    int rc;

    memset(m, 0, sizeof(*m));
    if ((rc = weights_open(&w, path, NULL, ct)))
        return rc;
    /* the binds record where each tensor goes: bind straight into m */
    if ((rc = meshdec_bind(m, &w, dev, ct)) ||
        (rc = slatdec_bind(&m->trunk, &w, dev, ct, "mesh_decode")))
        goto out_close;
    m->trunk.group_rows = MDEC_GROUP_ROWS;
    if (t->dim != m->C) {
        log_error("mesh_decode: %s: the trunk is %d wide but upsample.0 takes %d channels (HINT: "
                  "the checkpoint is damaged or not an official slat_decoder_mesh.ckpt)",
                  w.ck.path, t->dim, m->C);
        rc = S3D_ESHAPE;
        goto out_close;
    }
    if ((rc = weights_load_arena(&w, &m->weights, dev)))
        goto out_close;
    meshdec_bind_finish(m, &w);
    log_info("mesh_decode: %s: trunk %d wide, %d blocks; head %d -> %d -> %d -> %d channels "
             "(subdivided convs over the %s); %.1f MB of %s weights on %s", w.ck.path, t->dim,
             t->depth, m->C, m->C1, m->C2, FC_CH, m->sub_parents ? "parents" : "27 child taps",
             (double)m->weights.used / 1e6, dtype_name(ct), dev == DEVICE_CUDA ? "cuda" : "cpu");
out_close:
    weights_close(&w);
    return rc;
}

void meshdec_free(struct meshdec_model *m)
{
    if (!m)
        return;
    arena_free(&m->weights);
    arena_free(&m->state);
}

int meshdec_check_inputs(const struct meshdec_model *m, const struct tensor *coords,
                         const struct tensor *feats, int res, char *msg, size_t len)
{
    char got[64];
    int L = m->trunk.cfg.in_ch, rc;

    if ((rc = slatdec_check_coords(coords, "mesh_decode: input 'coords'", msg, len)))
        return rc;
    const int32_t *c = coords->data;
    for (int64_t i = 0; i < coords->shape[0]; i++)
        if (c[4 * i + 1] >= res || c[4 * i + 2] >= res || c[4 * i + 3] >= res) {
            snprintf(msg, len, "mesh_decode: input 'coords' row %lld is (%d, %d, %d, %d), outside "
                     "the %d^3 voxel grid of param resolution (HINT: the released decoder runs at "
                     "resolution %d)", (long long)i, c[4 * i], c[4 * i + 1], c[4 * i + 2],
                     c[4 * i + 3], res, MDEC_RESOLUTION);
            return S3D_ESHAPE;
        }
    if (feats->dtype != DTYPE_F32 || feats->device != DEVICE_HOST || feats->ndim != 2 ||
        feats->shape[0] != coords->shape[0] || feats->shape[1] != L ||
        !tensor_is_contiguous(feats)) {
        snprintf(msg, len, "mesh_decode: input 'feats' is %s %s, expected F32 [%lld,%d]: one row "
                 "of %d latent channels per voxel of 'coords' (HINT: give the coords and feats "
                 "of the same slat_flow.safetensors)", dtype_name(feats->dtype),
                 tensor_shape_str(feats->shape, feats->ndim, got, sizeof(got)),
                 (long long)coords->shape[0], L, L);
        return S3D_ESHAPE;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// host <-> device (kernels/ops_copy.h)

/* dst (on dev) = the host I32 array src of dst's size; returns when src may go */
static void put_i32(const struct op_ctx *ctx, struct tensor *dst, const int32_t *src)
{
    struct tensor h = tensor_view((void *)src, DTYPE_I32, DEVICE_HOST, dst->shape, dst->ndim);

    op_upload(ctx, dst, &h);
}

/* out[0, numel) F32 = the float tensor t (host or device); nothing when out is NULL */
static void tap(const struct op_ctx *ctx, float *out, const struct tensor *t)
{
    if (!out)
        return;
    struct tensor d = tensor_view(out, DTYPE_F32, DEVICE_HOST, t->shape, t->ndim);
    op_download(ctx, &d, t);
}

// ----------------------------------------------------------------------------
// the chunk plan

void meshdec_plan_make(struct meshdec_plan *p, const struct tensor *coords, int64_t cmax)
{
    int64_t N = coords->shape[0], lmax = 2 * cmax > SPARSE_K3 ? 2 * cmax : SPARSE_K3;
    int32_t *stamp = malloc(sizeof(int32_t) * (size_t)(N + 1));
    int64_t cap = 64, used = 0;

    ASSERT(stamp && cmax >= 1 && coords->device == DEVICE_HOST);
    memset(p, 0, sizeof(*p));
    p->n_vox = N;
    p->nbr = malloc(sizeof(int32_t) * (size_t)(N * SPARSE_K3));
    ASSERT(p->nbr);
    struct tensor tn = tensor_view(p->nbr, DTYPE_I32, DEVICE_HOST, SHAPE(N, SPARSE_K3));
    op_sparse_nbr_cpu(&tn, coords);
    const int32_t *nb = p->nbr;
    for (int64_t i = 0; i < N; i++)
        stamp[i] = -1;
    int64_t nmax = N + 1;
    p->c0 = malloc(sizeof(int64_t) * (size_t)nmax);
    p->c1 = malloc(sizeof(int64_t) * (size_t)nmax);
    p->off = malloc(sizeof(int64_t) * (size_t)nmax);
    p->len = malloc(sizeof(int64_t) * (size_t)nmax);
    p->list = malloc(sizeof(int32_t) * (size_t)cap);
    ASSERT(p->c0 && p->c1 && p->off && p->len && p->list);
    int64_t i = 0;
    int k = 0;
    while (i < N) {
        /* grow the range while its voxels and their neighbours fit the table */
        int64_t i0 = i, seen = 0;
        for (; i < N && i - i0 < cmax; i++) {
            int64_t add = 0;
            for (int r = 0; r < SPARSE_K3; r++) {
                int32_t q = nb[i * SPARSE_K3 + r];
                add += q >= 0 && stamp[q] != 2 * k;
            }
            if (i > i0 && seen + add > lmax)
                break;
            for (int r = 0; r < SPARSE_K3; r++) {
                int32_t q = nb[i * SPARSE_K3 + r];
                if (q >= 0 && stamp[q] != 2 * k)
                    stamp[q] = 2 * k;
            }
            seen += add;
        }
        /* the table: the range in order, then its other neighbours */
        if (used + seen > cap) {
            while (cap < used + seen)
                cap *= 2;
            p->list = realloc(p->list, sizeof(int32_t) * (size_t)cap);
            ASSERT(p->list);
        }
        p->c0[k] = i0;
        p->c1[k] = i;
        p->off[k] = used;
        for (int64_t v = i0; v < i; v++) {
            p->list[used++] = (int32_t)v;
            stamp[v] = 2 * k + 1;
        }
        for (int64_t v = i0; v < i; v++)
            for (int r = 0; r < SPARSE_K3; r++) {
                int32_t q = nb[v * SPARSE_K3 + r];
                if (q >= 0 && stamp[q] != 2 * k + 1) {
                    stamp[q] = 2 * k + 1;
                    p->list[used++] = q;
                }
            }
        p->len[k] = used - p->off[k];
        ASSERT(p->len[k] == seen);
        if (i - i0 > p->max_c)
            p->max_c = i - i0;
        if (p->len[k] > p->max_l)
            p->max_l = p->len[k];
        k++;
    }
    p->n = k;
    p->n_list = used;
    free(stamp);
}

void meshdec_plan_free(struct meshdec_plan *p)
{
    if (!p)
        return;
    free(p->nbr);
    free(p->c0);
    free(p->c1);
    free(p->off);
    free(p->len);
    free(p->list);
    memset(p, 0, sizeof(*p));
}

int64_t meshdec_chunk_voxels(const struct meshdec_model *m, size_t budget)
{
    /* per chunk voxel: its conv #2 output and, with tables up to twice the
     * chunk, two voxels of conv #1 output: 64 rows x C2 each */
    size_t per = 3 * 64 * (size_t)m->C2 * dtype_size(m->ct);
    int64_t c = (int64_t)(budget / per);

    return c < 1 ? 1 : c;
}

// ----------------------------------------------------------------------------
// geometry

size_t meshdec_geom_bytes(const struct meshdec_plan *p)
{
    int64_t n = p->n_vox;

    return arena_round((size_t)n * SPARSE_K3 * 4) + arena_round((size_t)n * 8 * SPARSE_K3 * 4) +
           arena_round((size_t)n * 4) + arena_round((size_t)p->n_list * 4);
}

void meshdec_geom_build(const struct meshdec_model *m, const struct op_ctx *ctx, struct arena *a,
                        const struct meshdec_plan *p, struct meshdec_geom *g)
{
    int64_t N = p->n_vox;
    int32_t *none = malloc(sizeof(int32_t) * (size_t)N);

    ASSERT(none && (a->kind == ARENA_DEVICE) == (m->device == DEVICE_CUDA));
    memset(g, 0, sizeof(*g));
    g->n = N;
    g->plan = p;
    g->nbr0 = arena_tensor(a, DTYPE_I32, SHAPE(N, SPARSE_K3));
    put_i32(ctx, &g->nbr0, p->nbr);
    g->nbr1 = arena_tensor(a, DTYPE_I32, SHAPE(8 * N, SPARSE_K3));
    mdk_nbr_sub(ctx, &g->nbr1, &g->nbr0, NULL, 1, 0, MDK_CHILD, NULL);
    g->loc = arena_tensor(a, DTYPE_I32, SHAPE(N));
    for (int64_t i = 0; i < N; i++)
        none[i] = -1;
    put_i32(ctx, &g->loc, none);
    g->list = arena_tensor(a, DTYPE_I32, SHAPE(p->n_list));
    put_i32(ctx, &g->list, p->list);
    free(none);
}

// ----------------------------------------------------------------------------
// the forward, also run on a planning arena (arena_plan_init) to size act

/* Room an op takes from act while it runs (the CUDA sparse ops' scratch): on a
 * planning arena of a device it is counted at the current position; a real
 * arena hands it to the op itself. */
static void plan_scratch(struct arena *act, size_t bytes)
{
    if (!act->plan || act->kind != ARENA_DEVICE)
        return;
    size_t mk = arena_mark(act);
    arena_alloc(act, bytes);
    arena_release(act, mk);
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* y = conv3 of the subdivided x at the child rows [row0, row0 + rows) of y
 * (rows contiguous) or at the rows of `units` (groups of 64): neighbour maps
 * derived per slice of `sub` rows from `parent` in `mode`. */
static void conv_sub(const struct op_ctx *ctx, struct arena *act, struct tensor *y,
                     const struct tensor *x, const struct tensor *w, const struct tensor *b,
                     const struct tensor *parent, const struct tensor *units, int64_t row0,
                     enum mdk_nbr_mode mode, const struct tensor *loc, int64_t sub)
{
    int64_t rows = y->shape[0];
    size_t mk = arena_mark(act);
    struct tensor map = arena_tensor(act, DTYPE_I32, SHAPE(sub, SPARSE_K3));

    plan_scratch(act, MDEC_CONV_SCRATCH);
    for (int64_t j = 0; !act->plan && j < rows; j += sub) {
        int64_t n = min64(sub, rows - j);
        struct tensor mj = tensor_slice(&map, 0, 0, n), yj = tensor_slice(y, 0, j, n);
        if (units) {
            struct tensor uj = tensor_slice(units, 0, j / 64, n / 64);
            mdk_nbr_sub(ctx, &mj, parent, &uj, 64, 0, mode, loc);
        } else {
            mdk_nbr_sub(ctx, &mj, parent, NULL, 64, row0 + j, mode, loc);
        }
        op_sparse_conv3(ctx, act, &yj, x, w, b, &mj);
    }
    arena_release(act, mk);
}

/* wp (8 Cout, 3, 3, 3, Cin), bp (8 Cout): u's conv #1 over the parents
 * (mdk_subconv_weight), taken from act and built when act is not a plan. */
static void subconv_weights(const struct meshdec_model *m, const struct op_ctx *ctx,
                            struct arena *act, const struct meshdec_sub *u, struct tensor *wp,
                            struct tensor *bp)
{
    *wp = arena_tensor(act, m->ct, SHAPE(8 * u->cout, 3, 3, 3, u->cin));
    *bp = arena_tensor(act, m->ct, SHAPE(8 * u->cout));
    if (!act->plan)
        mdk_subconv_weight(ctx, wp, bp, &u->conv1_w, &u->conv1_b);
}

/* y (8 P, Cout) = conv3 of the subdivided x (the children of x's rows) at the
 * children of the P parents whose map into x's rows is nbr (P, 27): one
 * op_sparse_conv3 with y viewed as (P, 8 Cout) and subconv_weights' wp/bp. */
static void conv_parents(const struct op_ctx *ctx, struct arena *act, struct tensor *y,
                         const struct tensor *x, const struct tensor *wp, const struct tensor *bp,
                         const struct tensor *nbr)
{
    plan_scratch(act, MDEC_CONV_SCRATCH);
    if (act->plan)
        return;
    ASSERT(y->shape[0] % 8 == 0);
    struct tensor yv = tensor_view(y->data, y->dtype, y->device,
                                   SHAPE(y->shape[0] / 8, 8 * y->shape[1]));
    op_sparse_conv3(ctx, act, &yv, x, wp, bp, nbr);
}

/* The head on act: a real arena (the ops run, into fc) or a planning arena
 * (the same allocations without ops: its high_water is what the run takes).
 * h0 is act's last allocation; act is released to h0's start on return. */
static void head_run(const struct meshdec_model *m, const struct op_ctx *ctx,
                     struct arena *act, const struct meshdec_geom *g, struct tensor *h0,
                     struct flexicubes *fc, const struct meshdec_taps *tp)
{
    const int64_t N = g->n, C = m->C, C1 = m->C1, C2 = m->C2;
    const enum dtype ct = m->ct;
    const struct meshdec_sub *u0 = &m->up[0], *u1 = &m->up[1];
    const struct meshdec_plan *P = g->plan;
    const bool run = !act->plan;
    const size_t gn_scratch = op_sparse_groupnorm_scratch_bytes(64 * N, MDEC_GROUPS);
    struct tensor loc = g->loc;
    /* rows per derived map / out_layer slice: whole 64-row voxels */
    const int64_t sub = min64(MDEC_SUB_ROWS, 64 * (P->max_l > P->max_c ? P->max_l : P->max_c));
    static const struct meshdec_taps none;

    if (!tp)
        tp = &none;
    size_t hb = arena_round(tensor_nbytes(h0));
    ASSERT(h0->dtype == ct && h0->ndim == 2 && h0->shape[0] == N && h0->shape[1] == C &&
           act->used >= hb && (!run || (char *)h0->data == act->base + act->used - hb));
    const size_t base = act->used - hb;
    struct tensor x0 = *h0;

    /* ---- upsample.0: skip per parent, GroupNorm + SiLU in place, conv3 on the
     * subdivided h, GroupNorm + SiLU, conv3, + skip */
    struct tensor s0 = arena_tensor(act, ct, SHAPE(N, C1));
    plan_scratch(act, gn_scratch);
    if (run) {
        op_sparse_conv1(ctx, &s0, &x0, &u0->skip_w, &u0->skip_b);
        op_sparse_groupnorm(ctx, act, &x0, &x0, MDEC_GROUPS, &u0->act_w, &u0->act_b, MDEC_GN_EPS,
                            true);
        tap(ctx, tp->skip0, &s0);
        tap(ctx, tp->act0, &x0);
    }
    struct tensor c0 = arena_tensor(act, ct, SHAPE(8 * N, C1));
    if (m->sub_parents) {           /* its weights only while it runs */
        size_t mk = arena_mark(act);
        struct tensor wp0, bp0;
        subconv_weights(m, ctx, act, u0, &wp0, &bp0);
        conv_parents(ctx, act, &c0, &x0, &wp0, &bp0, &g->nbr0);
        arena_release(act, mk);
    } else {
        conv_sub(ctx, act, &c0, &x0, &u0->conv1_w, &u0->conv1_b, &g->nbr0, NULL, 0, MDK_PARENT,
                 NULL, sub);
    }
    plan_scratch(act, gn_scratch);
    if (run) {
        tap(ctx, tp->conv01, &c0);
        op_sparse_groupnorm(ctx, act, &c0, &c0, MDEC_GROUPS, &u0->gn_w, &u0->gn_b, MDEC_GN_EPS,
                            true);
        tap(ctx, tp->gn0, &c0);
    }
    struct tensor o0 = arena_tensor(act, ct, SHAPE(8 * N, C1));
    plan_scratch(act, MDEC_CONV_SCRATCH);
    if (run) {
        op_sparse_conv3(ctx, act, &o0, &c0, &u0->conv2_w, &u0->conv2_b, &g->nbr1);
        tap(ctx, tp->conv02, &o0);
        mdk_add_parent(ctx, &o0, &o0, &s0, 0);
        tap(ctx, tp->up0, &o0);
    }

    /* x1 = o0 moved down to h0's place; everything else of upsample.0 goes
     * (x1 ends below o0's start: |h0| + |s0| + |c0| >= |c0| = |o0|) */
    arena_release(act, base);
    struct tensor x1 = arena_tensor(act, ct, SHAPE(8 * N, C1));
    if (run)
        mdk_move_down(ctx, m->device, x1.data, o0.data, tensor_nbytes(&o0));

    /* ---- upsample.1: skip per parent from x1, then x1 becomes SiLU(GN(x1)) */
    struct tensor s1 = arena_tensor(act, ct, SHAPE(8 * N, C2));
    struct tensor acc = arena_tensor(act, DTYPE_F64, SHAPE(MDEC_GROUPS, 3));
    plan_scratch(act, gn_scratch);
    if (run) {
        op_sparse_conv1(ctx, &s1, &x1, &u1->skip_w, &u1->skip_b);
        op_sparse_groupnorm(ctx, act, &x1, &x1, MDEC_GROUPS, &u1->act_w, &u1->act_b, MDEC_GN_EPS,
                            true);
        tap(ctx, tp->skip1, &s1);
        tap(ctx, tp->act1, &x1);
        op_zero(ctx, &acc);
    }
    struct tensor wp1 = {0}, bp1 = {0}, map1 = {0};
    if (m->sub_parents) {           /* conv #1's weights and a table's parent map */
        subconv_weights(m, ctx, act, u1, &wp1, &bp1);
        map1 = arena_tensor(act, DTYPE_I32, SHAPE(8 * P->max_l, SPARSE_K3));
    }
    struct tensor c1 = arena_tensor(act, ct, SHAPE(64 * P->max_l, C2));     /* a chunk's table */
    struct tensor o1 = arena_tensor(act, ct, SHAPE(64 * P->max_c, C2));     /* its conv #2 output */
    struct tensor y32 = arena_tensor(act, DTYPE_F32, SHAPE(sub, C2));
    struct tensor out = arena_tensor(act, DTYPE_F32, SHAPE(sub, FC_CH));

    /* pass 1: GroupNorm statistics of conv #1 over every row, chunk by chunk
     * (every chunk takes the same buffers: a plan runs one) */
    for (int k = 0; k < P->n; k++) {
        int64_t nr = 64 * (P->c1[k] - P->c0[k]);
        struct tensor ck = tensor_slice(&c1, 0, 0, nr);
        if (m->sub_parents) {       /* the chunk's level-1 rows are parents 8 c0 .. 8 c1 */
            struct tensor nb = run ? tensor_slice(&g->nbr1, 0, 8 * P->c0[k], nr / 8) : g->nbr1;
            conv_parents(ctx, act, &ck, &x1, &wp1, &bp1, &nb);
        } else {
            conv_sub(ctx, act, &ck, &x1, &u1->conv1_w, &u1->conv1_b, &g->nbr1, NULL,
                     64 * P->c0[k], MDK_PARENT, NULL, sub);
        }
        plan_scratch(act, gn_scratch);
        if (!run)
            break;
        op_sparse_groupnorm_stats(ctx, act, &acc, &ck, MDEC_GROUPS);
        if (tp->conv11)
            tap(ctx, tp->conv11 + 64 * P->c0[k] * C2, &ck);
    }

    /* pass 2: per chunk, conv #1 on its table, GroupNorm + SiLU, conv #2 on its
     * rows, + skip, out_layer, into FlexiCubes */
    for (int k = 0; k < P->n; k++) {
        int64_t nc = P->c1[k] - P->c0[k], nl = P->len[k], f0 = 64 * P->c0[k];
        struct tensor units = run ? tensor_slice(&g->list, 0, P->off[k], nl)
                                  : tensor_view(NULL, DTYPE_I32, m->device, SHAPE(nl));
        struct tensor cl = tensor_slice(&c1, 0, 0, 64 * nl), oc = tensor_slice(&o1, 0, 0, 64 * nc);
        if (m->sub_parents) {       /* parents 8 v + j of the table's voxels v: nbr1's rows */
            struct tensor mk1 = run ? tensor_slice(&map1, 0, 0, 8 * nl) : map1;
            if (run)
                mdk_nbr_sub(ctx, &mk1, &g->nbr0, &units, 8, 0, MDK_CHILD, NULL);
            conv_parents(ctx, act, &cl, &x1, &wp1, &bp1, &mk1);
        } else {
            conv_sub(ctx, act, &cl, &x1, &u1->conv1_w, &u1->conv1_b, &g->nbr1, &units, 0,
                     MDK_PARENT, NULL, sub);
        }
        plan_scratch(act, gn_scratch);
        if (run) {
            op_sparse_groupnorm_apply(ctx, act, &cl, &cl, &acc, MDEC_GROUPS, &u1->gn_w, &u1->gn_b,
                                      MDEC_GN_EPS, true);
            mdk_loc(ctx, &loc, &units, true);
            if (tp->gn1) {
                struct tensor own = tensor_slice(&cl, 0, 0, 64 * nc);
                tap(ctx, tp->gn1 + f0 * C2, &own);
            }
        }
        conv_sub(ctx, act, &oc, &cl, &u1->conv2_w, &u1->conv2_b, &g->nbr1, NULL, f0,
                 MDK_LOCAL, &loc, 64 * P->max_c);     /* one map and conv for the chunk */
        if (!run)
            break;
        mdk_loc(ctx, &loc, &units, false);
        if (tp->conv12)
            tap(ctx, tp->conv12 + f0 * C2, &oc);
        for (int64_t j = 0; j < 64 * nc; j += sub) {
            int64_t n = min64(sub, 64 * nc - j);
            struct tensor oj = tensor_slice(&oc, 0, j, n), yj = tensor_slice(&y32, 0, 0, n);
            struct tensor fj = tensor_slice(&out, 0, 0, n);
            mdk_add_parent(ctx, &yj, &oj, &s1, f0 + j);          /* h + skip, then h.float() */
            op_linear(ctx, &fj, &yj, &m->out_w, &m->out_b, false);
            if (tp->up1)
                tap(ctx, tp->up1 + (f0 + j) * C2, &yj);
            int64_t keep = tp->out_rows > 0 ? min64(n, tp->out_rows - (f0 + j)) : n;
            if (tp->out && keep > 0) {
                struct tensor fk = tensor_slice(&fj, 0, 0, keep);
                tap(ctx, tp->out + (f0 + j) * FC_CH, &fk);
            }
            fc_accumulate(fc, ctx, &fj, f0 + j);
        }
    }
    arena_release(act, base);
}

void meshdec_head(const struct meshdec_model *m, const struct op_ctx *ctx, struct arena *act,
                  const struct meshdec_geom *g, struct tensor *h0, struct flexicubes *fc,
                  const struct meshdec_taps *taps)
{
    ASSERT(act && fc && fc->n_vox == g->n && fc->L == 2);
    head_run(m, ctx, act, g, h0, fc, taps);
}

// ----------------------------------------------------------------------------
// one request

static double now_ms(const struct op_ctx *ctx)
{
    if (ctx)
        op_ctx_synchronize(ctx);
    return stage_now_ms();
}

size_t meshdec_act_bytes(const struct meshdec_model *m, const struct meshdec_plan *p)
{
    int64_t N = p->n_vox;
    struct arena a;
    struct meshdec_geom g;

    /* meshdec_decode's allocations on a planning arena, phase by phase */
    arena_plan_init(&a, m->device == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act");
    /* corner count and fc_init: the coords and the key sort's scratch */
    arena_tensor(&a, DTYPE_I32, SHAPE(N, 4));
    arena_alloc(&a, fc_init_scratch_bytes(N, 2, m->device));
    arena_reset(&a);
    /* trunk: its geometry, h0, its region */
    arena_alloc(&a, slatdec_geom_bytes(&m->trunk, N));
    struct tensor h0 = arena_tensor(&a, m->ct, SHAPE(N, m->C));
    size_t mk = arena_mark(&a);
    arena_alloc(&a, slatdec_act_bytes(&m->trunk, N));
    arena_release(&a, mk);
    /* head above the trunk's geometry, from h0 */
    memset(&g, 0, sizeof(g));
    g.n = N;
    g.plan = p;
    head_run(m, NULL, &a, &g, &h0, NULL, NULL);
    return a.high_water;
}

/* FLOPs of the head's convs and out_layer (dense-equivalent: 27 taps). */
static double head_flops(const struct meshdec_model *m, const struct meshdec_plan *p)
{
    double N = (double)p->n_vox, C = m->C, C1 = m->C1, C2 = m->C2, extra = 0;

    for (int k = 0; k < p->n; k++)         /* conv #1 again on the tables in pass 2 */
        extra += 64.0 * (double)p->len[k];
    return 2.0 * (8 * N * 27 * C * C1 + 8 * N * 27 * C1 * C1 + N * C * C1 +
                  (64 * N + extra) * 27 * C1 * C2 + 64 * N * 27 * C2 * C2 + 8 * N * C1 * C2 +
                  64 * N * C2 * FC_CH);
}

int meshdec_decode(struct meshdec_model *m, const struct op_ctx *ctx, struct arena *act,
                   const struct tensor *coords, const struct tensor *feats, int res,
                   const struct meshdec_plan *p, struct meshdec_job *job,
                   const struct slatdec_taps *trunk_taps, const struct meshdec_taps *taps)
{
    const int64_t N = coords->shape[0];
    const int R = 4 * res;
    size_t mark = arena_mark(act);

    ASSERT(p->n_vox == N);
    memset(job, 0, sizeof(*job));
    job->res = res;
    double t0 = now_ms(ctx);

    /* cube corners -> the state arena: voxel maps + FlexiCubes state */
    struct tensor cd = arena_tensor(act, DTYPE_I32, SHAPE(N, 4));
    put_i32(ctx, &cd, coords->data);
    int64_t nv = fc_count_vertices(ctx, act, &cd, R, 2);
    size_t need = meshdec_geom_bytes(p) + fc_state_bytes(N, nv, 2, m->ct);
    if (m->state.size < need) {
        arena_free(&m->state);
        if (arena_init(&m->state, m->device == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "state",
                       need)) {
            arena_release(act, mark);
            return S3D_ENOMEM;             /* arena_init logged the size */
        }
    }
    arena_reset(&m->state);
    meshdec_geom_build(m, ctx, &m->state, p, &job->g);
    fc_init(&job->fc, ctx, &m->state, act, &cd, R, 2, m->ct);
    arena_release(act, mark);
    double t1 = now_ms(ctx);

    /* trunk */
    struct slatdec_geom tg;
    slatdec_geom_build(&m->trunk, ctx, act, coords, &tg);
    struct tensor h0 = arena_tensor(act, m->ct, SHAPE(N, m->C));
    slatdec_forward(&m->trunk, ctx, act, &tg, feats, &h0, trunk_taps);
    double t2 = now_ms(ctx);

    /* head into FlexiCubes */
    meshdec_head(m, ctx, act, &job->g, &h0, &job->fc, taps);
    arena_release(act, mark);
    double t3 = now_ms(ctx);
    job->ms_geom = t1 - t0;
    job->ms_trunk = t2 - t1;
    job->ms_head = t3 - t2;
    job->flops = slatdec_flops(&m->trunk, &tg) + head_flops(m, p);
    return 0;
}

int meshdec_extract(const struct meshdec_model *m, const struct op_ctx *ctx, struct arena *act,
                    struct meshdec_job *job, int64_t max_faces)
{
    (void)m;
    double t0 = now_ms(ctx);
    int rc = fc_finish(&job->fc, ctx, act, max_faces);
    job->ms_extract = now_ms(ctx) - t0;
    return rc;
}

void meshdec_download(const struct meshdec_job *job, const struct op_ctx *ctx,
                      struct tensor *vertices, struct tensor *faces, struct tensor *colors)
{
    fc_download(&job->fc, ctx, vertices, faces, colors);
}

void meshdec_job_end(struct meshdec_job *job)
{
    if (job)
        fc_end(&job->fc);
}
