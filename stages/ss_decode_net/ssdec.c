/*
 * ssdec.c - the SS decoder network: config detection, weight binding and
 * packing, one forward pass. See ssdec.h; post-processing is in ssdec_post.c.
 *
 * The forward is written once and run in two modes: "plan" (a planning arena,
 * arena_plan_init, and no ops: its high-water mark is ssdec_act_bytes) and
 * "run". So the activation size can never drift from the code.
 *
 * Buffers per module, channels-last, V = R^3 voxels of C channels:
 *   ResBlock3d(in -> out; out == in except where the stream changes dtype):
 *     t = LN1(in) (in's dtype), s = SiLU(t) (conv_dt; s = t when the dtypes
 *     agree), u = conv1(s), u = SiLU(LN2(u)) in place, s = conv2(u),
 *     out = s + in; t, s, u released after the block.
 *   UpsampleBlock3d: the next level's stream (8V, C') is taken first, then
 *     the conv output (V, 8C') as a temporary, pixel-shuffled into it.
 *   Streams of finished levels stay below the current one (small: 25 MB at
 *   the released size in fp16).
 */
#include "ssdec.h"
#include "err.h"
#include "log.h"
#include "ops_conv.h"
#include "ops_copy.h"
#include "weights.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// load

enum pend_kind { PEND_F32, PEND_CONV_W, PEND_CONV_B };

/* A bound tensor waiting for its final copy: src is the F32 host upload. */
struct pend {
    struct tensor *dst;
    struct tensor  src;
    enum pend_kind kind;
};

struct loader {
    struct weights w;
    struct pend   *p;
    int            n, cap;
};

static int not_ssdec(const struct weights *w, const char *what)
{
    log_error("%s: no tensor %s (HINT: sam3d-ss-decode reads the official ss_decoder.ckpt, a "
              "flat state dict; `sam3d inspect %s` lists its tensors)", w->ck.path, what,
              w->ck.path);
    return S3D_ENOTFOUND;
}

/* Every tensor a model can have: input_layer, 8 per ResBlock, out_layer. */
#define SSDEC_MAX_TENSORS (2 + 8 * (SSDEC_MAX_MIDDLE + SSDEC_MAX_BLOCKS) + 4)

/* The next pending entry. L->p never moves (weights_bind keeps &e->src until
 * the upload), so it is allocated once at its largest. */
static struct pend *pend_add(struct loader *L, struct tensor *dst, enum pend_kind kind)
{
    ASSERT(L->n < L->cap);
    struct pend *e = &L->p[L->n++];
    memset(e, 0, sizeof(*e));
    e->dst = dst;
    e->kind = kind;
    return e;
}

/* Bind name.weight (Co, Ci, 3, 3, 3) and name.bias (Co) of a Conv3d. */
static int bind_conv(struct loader *L, struct tensor *w, struct tensor *b, int64_t Co, int64_t Ci,
                     const char *name)
{
    struct pend *pw = pend_add(L, w, PEND_CONV_W);
    if (weights_bind_as(&L->w, &pw->src, DTYPE_F32, SHAPE(Co, Ci, 3, 3, 3), "%s.weight", name))
        return S3D_ESHAPE;
    struct pend *pb = pend_add(L, b, PEND_CONV_B);
    return weights_bind_as(&L->w, &pb->src, DTYPE_F32, SHAPE(Co), "%s.bias", name) ? S3D_ESHAPE : 0;
}

/* Bind name.weight and name.bias (C) of a LayerNorm. */
static int bind_norm(struct loader *L, struct tensor *w, struct tensor *b, int64_t C,
                     const char *name)
{
    struct pend *pw = pend_add(L, w, PEND_F32);
    if (weights_bind_as(&L->w, &pw->src, DTYPE_F32, SHAPE(C), "%s.weight", name))
        return S3D_ESHAPE;
    struct pend *pb = pend_add(L, b, PEND_F32);
    return weights_bind_as(&L->w, &pb->src, DTYPE_F32, SHAPE(C), "%s.bias", name) ? S3D_ESHAPE : 0;
}

static int bind_res(struct loader *L, struct ssdec_res *r, int64_t C, const char *fmt, int i)
{
    char base[64], name[96];
    int rc = 0;

    snprintf(base, sizeof(base), fmt, i);
    snprintf(name, sizeof(name), "%s.norm1", base);
    rc = rc ? rc : bind_norm(L, &r->n1_w, &r->n1_b, C, name);
    snprintf(name, sizeof(name), "%s.conv1", base);
    rc = rc ? rc : bind_conv(L, &r->c1_w, &r->c1_b, C, C, name);
    snprintf(name, sizeof(name), "%s.norm2", base);
    rc = rc ? rc : bind_norm(L, &r->n2_w, &r->n2_b, C, name);
    snprintf(name, sizeof(name), "%s.conv2", base);
    rc = rc ? rc : bind_conv(L, &r->c2_w, &r->c2_b, C, C, name);
    return rc;
}

/* Detect the config from names and shapes while binding every tensor. */
static int detect_and_bind(struct ssdec_model *m, struct loader *L)
{
    struct ssdec_config *g = &m->cfg;
    const struct ckpt_entry *e;
    char name[64];
    int rc;

    memset(g, 0, sizeof(*g));
    if (!(e = weights_find(&L->w, "input_layer.weight")))
        return not_ssdec(&L->w, "input_layer.weight");
    if (e->ndim != 5 || e->shape[2] != 3 || e->shape[3] != 3 || e->shape[4] != 3)
        goto bad;
    g->ch0 = (int)e->shape[0];
    g->latent_ch = (int)e->shape[1];
    if ((rc = bind_conv(L, &m->in_w, &m->in_b, g->ch0, g->latent_ch, "input_layer")))
        return rc;
    while (weights_find(&L->w, "middle_block.%d.conv1.weight", g->n_middle)) {
        if (g->n_middle == SSDEC_MAX_MIDDLE)
            goto bad;
        if ((rc = bind_res(L, &m->middle[g->n_middle], g->ch0, "middle_block.%d", g->n_middle)))
            return rc;
        g->n_middle++;
    }
    int64_t cur = g->ch0;
    for (;;) {
        int i = g->n_blocks;
        struct ssdec_block *B = &m->blocks[i];
        const struct ckpt_entry *up = weights_find(&L->w, "blocks.%d.conv.weight", i);
        if (!up && !weights_find(&L->w, "blocks.%d.conv1.weight", i))
            break;
        if (i == SSDEC_MAX_BLOCKS)
            goto bad;
        B->cin = (int)cur;
        if (up) {
            if (up->ndim != 5 || up->shape[0] % 8 != 0 || up->shape[0] < 8)
                goto bad;
            B->up = true;
            B->cout = (int)(up->shape[0] / 8);
            snprintf(name, sizeof(name), "blocks.%d.conv", i);
            if ((rc = bind_conv(L, &B->up_w, &B->up_b, 8 * (int64_t)B->cout, cur, name)))
                return rc;
            g->n_up++;
            cur = B->cout;
        } else {
            B->cout = (int)cur;
            if ((rc = bind_res(L, &B->r, cur, "blocks.%d", i)))
                return rc;
        }
        g->n_blocks++;
    }
    g->ch_last = (int)cur;
    if (!(e = weights_find(&L->w, "out_layer.2.weight")))
        return not_ssdec(&L->w, "out_layer.2.weight");
    if (e->ndim != 5 || e->shape[0] != 1)       /* occupancy: one logit per voxel */
        goto bad;
    g->out_ch = (int)e->shape[0];
    if ((rc = bind_norm(L, &m->out_n_w, &m->out_n_b, cur, "out_layer.0")) ||
        (rc = bind_conv(L, &m->out_w, &m->out_b, g->out_ch, cur, "out_layer.2")))
        return rc;
    return 0;
bad:
    log_error("%s: the SS decoder tensors have an unexpected layout (input_layer (C, Lc, 3, 3, 3), "
              "at most %d middle blocks and %d blocks, upsample convs of 8*C' channels, out_layer.2 (1, C, 3, 3, 3)) (HINT: the "
              "checkpoint is damaged or not an official ss_decoder.ckpt)", L->w.ck.path,
              SSDEC_MAX_MIDDLE, SSDEC_MAX_BLOCKS);
    return S3D_ESHAPE;
}

/* Final dtype and shape of a pending tensor. */
static enum dtype pend_dtype(const struct ssdec_model *m, const struct pend *p)
{
    return p->kind == PEND_F32 ? DTYPE_F32 : m->conv_dt;
}

static void pend_shape(const struct pend *p, int64_t *shape, int *nd)
{
    if (p->kind == PEND_CONV_W) {       /* (Co, Ci, K, K, K) -> (Co, K, K, K, Ci) */
        shape[0] = p->src.shape[0];
        shape[1] = shape[2] = shape[3] = p->src.shape[2];
        shape[4] = p->src.shape[1];
        *nd = 5;
    } else {
        shape[0] = p->src.shape[0];
        *nd = 1;
    }
}

/* Copy every pending tensor from the F32 host upload into m->weights, packed
 * and converted. */
static int finish(struct ssdec_model *m, struct loader *L)
{
    size_t total = 0, big = 0;
    int64_t shape[5];
    int nd, rc;

    for (int i = 0; i < L->n; i++) {
        size_t nb = (size_t)tensor_numel(&L->p[i].src) * dtype_size(pend_dtype(m, &L->p[i]));
        total += arena_round(nb);
        big = nb > big ? nb : big;
    }
    rc = arena_init(&m->weights, m->device == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "weights",
                    total);
    if (rc)
        return rc;
    void *tmp = malloc(big ? big : 1);
    ASSERT(tmp);
    for (int i = 0; i < L->n; i++) {
        const struct pend *p = &L->p[i];
        enum dtype dt = pend_dtype(m, p);
        pend_shape(p, shape, &nd);
        *p->dst = arena_tensor(&m->weights, dt, shape, nd);
        if (p->kind == PEND_CONV_W)
            op_conv3d_pack_weight(tmp, dt, p->src.data, p->src.shape[0], p->src.shape[1],
                                  p->src.shape[2]);
        else
            dtype_convert(tmp, dt, p->src.data, DTYPE_F32, (size_t)tensor_numel(&p->src));
        struct tensor packed = tensor_view(tmp, dt, DEVICE_HOST, shape, nd);
        op_upload(NULL, p->dst, &packed);
    }
    free(tmp);
    return 0;
}

int ssdec_load(struct ssdec_model *m, const char *path, enum device dev, enum dtype conv_dt)
{
    struct loader L;
    struct arena host, staging;
    int rc;

    ASSERT(conv_dt == DTYPE_F16 || conv_dt == DTYPE_F32);
    memset(m, 0, sizeof(*m));
    memset(&L, 0, sizeof(L));
    memset(&host, 0, sizeof(host));
    memset(&staging, 0, sizeof(staging));
    m->conv_dt = conv_dt;
    m->device = dev;
    L.cap = SSDEC_MAX_TENSORS;
    L.p = calloc((size_t)L.cap, sizeof(*L.p));
    ASSERT(L.p);
    if ((rc = weights_open(&L.w, path, NULL, DTYPE_F32))) {
        free(L.p);
        return rc;
    }
    if ((rc = detect_and_bind(m, &L)))
        goto out_close;
    if ((rc = arena_init(&host, ARENA_HOST, "weights-f32", weights_arena_bytes(&L.w))) ||
        (rc = arena_init(&staging, ARENA_HOST, "staging", (size_t)16 << 20)) ||
        (rc = weights_upload(&L.w, &host, &staging)))
        goto out_free;
    weights_report_unused(&L.w, "");
    if ((rc = finish(m, &L)))
        goto out_free;
    const struct ssdec_config *g = &m->cfg;
    log_info("ss_decode: %s: latent %d ch, width %d, %d middle + %d blocks (%d upsamples), "
             "out %d ch from %d; %.1f MB of %s conv weights on %s", L.w.ck.path, g->latent_ch,
             g->ch0, g->n_middle, g->n_blocks, g->n_up, g->out_ch, g->ch_last,
             (double)m->weights.used / 1e6, dtype_name(conv_dt), dev == DEVICE_CUDA ? "cuda" : "cpu");
out_free:
    arena_free(&staging);
    arena_free(&host);
out_close:
    free(L.p);
    weights_close(&L.w);
    if (rc)
        arena_free(&m->weights);
    return rc;
}

void ssdec_free(struct ssdec_model *m)
{
    if (m)
        arena_free(&m->weights);
}

// ----------------------------------------------------------------------------
// sizes and checks

int ssdec_latent_side(int64_t T)
{
    for (int r = 1; r <= SSDEC_MAX_LATENT_R; r++)
        if ((int64_t)r * r * r == T)
            return r;
    return 0;
}

int ssdec_out_side(const struct ssdec_model *m, int r)
{
    return r << m->cfg.n_up;
}

int ssdec_check_latent(const struct ssdec_model *m, const struct tensor *lat, const char *name,
                       char *err, size_t err_len)
{
    char buf[512], shape[96];
    int code = 0;

    if (!lat) {
        snprintf(buf, sizeof(buf), "ss_decode: missing input %s (HINT: pass the SS flow stage's "
                 "shape_latent, (1, T, %d) F32)", name, m->cfg.latent_ch);
        code = S3D_ENOTFOUND;
    } else if (lat->device != DEVICE_HOST || lat->dtype != DTYPE_F32 || lat->ndim != 3 ||
               lat->shape[0] != 1 || lat->shape[2] != m->cfg.latent_ch ||
               !tensor_is_contiguous(lat) || !ssdec_latent_side(lat->shape[1])) {
        snprintf(buf, sizeof(buf), "ss_decode: input %s is %s %s; expected F32 (1, T, %d) with T "
                 "a cube r^3, r <= %d (HINT: the SS flow stage's shape_latent is (1, 4096, 8))",
                 name, lat ? dtype_name(lat->dtype) : "?",
                 tensor_shape_str(lat->shape, lat->ndim, shape, sizeof(shape)), m->cfg.latent_ch,
                 SSDEC_MAX_LATENT_R);
        code = S3D_ESHAPE;
    }
    if (!code)
        return 0;
    if (err)
        snprintf(err, err_len, "%s", buf);
    else
        log_error("%s", buf);
    return code;
}

// ----------------------------------------------------------------------------
// forward (plan or run)

struct fwd {
    const struct ssdec_model *m;
    const struct op_ctx      *ctx;
    struct arena             *act;      /* a planning arena (arena_plan_init): plan mode */
    bool                      plan;     /* no ops, only the buffers counted */
    ssdec_tap_fn              tap;
    void                     *user;
};

/* A (1, R, R, R, C) buffer of dt. */
static struct tensor take(struct fwd *f, enum dtype dt, int R, int64_t C)
{
    return arena_tensor(f->act, dt, SHAPE(1, R, R, R, C));
}

static void ln(struct fwd *f, struct tensor *y, const struct tensor *x, const struct tensor *w,
               const struct tensor *b)
{
    if (!f->plan)
        op_layernorm(f->ctx, y, x, w, b, SSDEC_LN_EPS);
}

static void silu(struct fwd *f, struct tensor *y, const struct tensor *x)
{
    if (!f->plan)
        op_act(f->ctx, y, x, OP_ACT_SILU);
}

static void conv(struct fwd *f, struct tensor *y, const struct tensor *x, const struct tensor *w,
                 const struct tensor *b)
{
    if (!f->plan) {
        op_conv3d(f->ctx, f->act, y, x, w, b);
        return;
    }
    /* the CUDA op casts x into scratch when its dtype is not the weights' */
    if (f->m->device == DEVICE_CUDA && x->dtype != w->dtype) {
        size_t mk = arena_mark(f->act);
        arena_alloc(f->act, (size_t)tensor_numel(x) * dtype_size(w->dtype));
        arena_release(f->act, mk);
    }
}

/* Tap: the module output as host F32 (copied down / converted when needed). */
static void tap(struct fwd *f, const char *name, const struct tensor *t)
{
    if (f->plan || !f->tap)
        return;
    float *h = NULL;
    struct tensor v = *t;
    if (t->device == DEVICE_CUDA || t->dtype != DTYPE_F32) {
        h = malloc(sizeof(*h) * (size_t)tensor_numel(t) + 1);
        ASSERT(h);
        v = tensor_view(h, DTYPE_F32, DEVICE_HOST, t->shape, t->ndim);
        op_download(f->ctx, &v, t);
    }
    f->tap(f->user, name, &v);
    free(h);
}

/* ResBlock3d: out = conv2(SiLU(LN2(conv1(SiLU(LN1(in)))))) + in. out may be in. */
static void res_block(struct fwd *f, const struct ssdec_res *r, const struct tensor *in,
                      struct tensor *out)
{
    enum dtype cdt = f->m->conv_dt;
    int R = (int)in->shape[1];
    int64_t C = in->shape[4];
    size_t mk = arena_mark(f->act);

    struct tensor t = take(f, in->dtype, R, C);
    struct tensor s = in->dtype == cdt ? t : take(f, cdt, R, C);
    struct tensor u = take(f, cdt, R, C);
    ln(f, &t, in, &r->n1_w, &r->n1_b);
    silu(f, &s, &t);
    conv(f, &u, &s, &r->c1_w, &r->c1_b);
    ln(f, &u, &u, &r->n2_w, &r->n2_b);
    silu(f, &u, &u);
    conv(f, &s, &u, &r->c2_w, &r->c2_b);
    if (!f->plan)
        op_add(f->ctx, out, &s, in);
    arena_release(f->act, mk);
}

/* The whole pass; returns the logits buffer (conv_dt (1, R, R, R, out_ch)). */
static struct tensor run(struct fwd *f, const struct tensor *lat)
{
    const struct ssdec_model *m = f->m;
    const struct ssdec_config *g = &m->cfg;
    enum dtype cdt = m->conv_dt;
    int r = ssdec_latent_side(lat->shape[1]);
    char name[32];

    /* the latent as a (1, r, r, r, Lc) grid on the model's device */
    struct tensor x;
    if (m->device == DEVICE_CUDA) {
        x = take(f, DTYPE_F32, r, g->latent_ch);
        if (!f->plan)
            op_upload(f->ctx, &x, lat);
    } else {
        x = tensor_view(lat->data, DTYPE_F32, DEVICE_HOST, SHAPE(1, r, r, r, g->latent_ch));
    }
    struct tensor h0 = take(f, cdt, r, g->ch0);
    conv(f, &h0, &x, &m->in_w, &m->in_b);
    tap(f, "input_layer", &h0);

    /* h.type(float32): the stream is fp32 until the first upsample */
    struct tensor h = cdt == DTYPE_F32 ? h0 : take(f, DTYPE_F32, r, g->ch0);
    const struct tensor *in = &h0;
    for (int i = 0; i < g->n_middle; i++) {
        res_block(f, &m->middle[i], in, &h);
        in = &h;
        snprintf(name, sizeof(name), "middle_block.%d", i);
        tap(f, name, &h);
    }
    int R = r;
    for (int i = 0; i < g->n_blocks; i++) {
        const struct ssdec_block *B = &m->blocks[i];
        if (B->up) {
            struct tensor nh = take(f, cdt, 2 * R, B->cout);
            size_t mk = arena_mark(f->act);
            struct tensor c = take(f, cdt, R, 8 * (int64_t)B->cout);
            conv(f, &c, in, &B->up_w, &B->up_b);
            if (!f->plan)
                op_pixel_shuffle3d(f->ctx, &nh, &c);
            arena_release(f->act, mk);
            h = nh;
            R *= 2;
        } else {
            res_block(f, &B->r, in, &h);
        }
        in = &h;
        snprintf(name, sizeof(name), "blocks.%d", i);
        tap(f, name, &h);
    }

    /* out_layer on h.type(float32): LN and SiLU in fp32, the conv in conv_dt */
    struct tensor lg = take(f, cdt, R, g->out_ch);
    size_t mk = arena_mark(f->act);
    struct tensor t = take(f, DTYPE_F32, R, g->ch_last);
    struct tensor s = cdt == DTYPE_F32 ? t : take(f, cdt, R, g->ch_last);
    ln(f, &t, in, &m->out_n_w, &m->out_n_b);
    silu(f, &s, &t);
    conv(f, &lg, &s, &m->out_w, &m->out_b);
    arena_release(f->act, mk);
    return lg;
}

size_t ssdec_act_bytes(const struct ssdec_model *m, int r)
{
    struct fwd f;
    struct arena plan;
    struct tensor lat = tensor_view(NULL, DTYPE_F32, DEVICE_HOST,
                                    SHAPE(1, (int64_t)r * r * r, m->cfg.latent_ch));

    ASSERT(r >= 1 && r <= SSDEC_MAX_LATENT_R);
    arena_plan_init(&plan, m->device == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act");
    memset(&f, 0, sizeof(f));
    f.m = m;
    f.act = &plan;
    f.plan = true;
    run(&f, &lat);
    return plan.high_water + (m->device == DEVICE_CUDA ? SSDEC_CUDA_WS : 0);
}

void ssdec_forward(const struct ssdec_model *m, const struct op_ctx *ctx, struct arena *act,
                   const struct tensor *lat, struct tensor *logits, ssdec_tap_fn tap_fn, void *user)
{
    struct fwd f;
    int r = ssdec_latent_side(lat->shape[1]);
    int R = ssdec_out_side(m, r);

    ASSERT(r > 0 && lat->dtype == DTYPE_F32 && lat->device == DEVICE_HOST);
    ASSERT(logits->device == DEVICE_HOST && logits->dtype == DTYPE_F32 &&
           tensor_is_contiguous(logits) && tensor_numel(logits) == (int64_t)R * R * R * m->cfg.out_ch);
    ASSERT(act && (act->kind == ARENA_DEVICE) == (m->device == DEVICE_CUDA));
    ASSERT(m->device == DEVICE_HOST || ctx);
    memset(&f, 0, sizeof(f));
    f.m = m;
    f.ctx = ctx;
    f.act = act;
    f.tap = tap_fn;
    f.user = user;
    size_t mk = arena_mark(act);
    struct tensor lg = run(&f, lat);
    op_download(ctx, logits, &lg);
    arena_release(act, mk);
}
