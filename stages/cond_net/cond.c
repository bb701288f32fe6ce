/*
 * cond.c - the condition fuser: load (detect, bind, upload) and forward.
 * See cond.h.
 */
#include "cond.h"
#include "prof.h"
#include "ops_image.h"
#include "ops_copy.h"
#include "err.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* torchvision Normalize constants of Dino (dino.py:55-56), as fp32 buffers. */
static const float DINO_MEAN[3] = {0.485f, 0.456f, 0.406f};
static const float DINO_STD[3]  = {0.229f, 0.224f, 0.225f};

// ----------------------------------------------------------------------------
// load

static int bind_proj(struct cond_proj *p, struct weights *w, int i, int C, enum dtype gd)
{
    const struct ckpt_entry *ln = weights_find(w, "projection_nets.%d.0.weight", i);
    const struct ckpt_entry *w1 = weights_find(w, "projection_nets.%d.1.w1.weight", i);
    int rc = 0;

    if (!ln || !w1 || ln->ndim != 1 || w1->ndim != 2) {
        log_error("%s: no projection net %d (projection_nets.%d.0.weight, .1.w1.weight) under %s "
                  "(HINT: the checkpoint is not an official ss/slat generator)", w->ck.path, i, i,
                  COND_PREFIX);
        return S3D_ESHAPE;
    }
    p->d_in = (int)ln->shape[0];
    p->hidden = (int)w1->shape[0];
    rc |= weights_bind_as(w, &p->ln_w, DTYPE_F32, SHAPE(p->d_in), "projection_nets.%d.0.weight", i);
    rc |= weights_bind_as(w, &p->ln_b, DTYPE_F32, SHAPE(p->d_in), "projection_nets.%d.0.bias", i);
    rc |= weights_bind_as(w, &p->w1, gd, SHAPE(p->hidden, p->d_in), "projection_nets.%d.1.w1.weight", i);
    rc |= weights_bind_as(w, &p->w3, gd, SHAPE(p->hidden, p->d_in), "projection_nets.%d.1.w3.weight", i);
    rc |= weights_bind_as(w, &p->w2, gd, SHAPE(C, p->hidden), "projection_nets.%d.1.w2.weight", i);
    return rc ? S3D_ESHAPE : 0;
}

/* Detect the variant and every config, then declare every tensor: the two
 * towers' blocks last, from bind *first on (stage_blocks.h). */
static int bind_all(struct cond_model *m, struct weights *w, int *first)
{
    const struct ckpt_entry *idx = weights_find(w, "idx_emb");
    char prefix[64];
    int rc;

    if (!idx || !weights_find(w, "module_list.0.backbone.pos_embed")) {
        log_error("%s: no condition embedder (%sidx_emb, %smodule_list.0.backbone.*) "
                  "(HINT: sam3d-cond reads ss_generator.ckpt or slat_generator.ckpt)",
                  w->ck.path, COND_PREFIX, COND_PREFIX);
        return S3D_ENOTFOUND;
    }
    m->variant = weights_find(w, "module_list.2.point_proj.weight") ? COND_SS : COND_SLAT;
    m->dim = idx->ndim == 2 ? (int)idx->shape[1] : 0;
    if ((rc = weights_bind_as(w, &m->idx_emb, DTYPE_F32, SHAPE(3, m->dim), "idx_emb")))
        return rc;
    for (int e = 0; e < 2; e++) {
        snprintf(prefix, sizeof(prefix), "module_list.%d.backbone.", e);
        if ((rc = vit_detect(&m->dino[e].cfg, w, prefix)) ||
            (rc = vit_bind_head(&m->dino[e], w, prefix, m->gemm_dt)) ||
            (rc = bind_proj(&m->proj[e], w, e, m->dim, m->gemm_dt)))
            return rc;
        if (m->proj[e].d_in != m->dino[e].cfg.dim)
            goto bad;
    }
    const struct vit_config *g = &m->dino[0].cfg;
    if (memcmp(g, &m->dino[1].cfg, sizeof(*g)) != 0)
        goto bad;
    m->input_size = g->patch * g->grid;
    int64_t npatch = (int64_t)g->grid * g->grid;
    if (m->variant == COND_SS) {
        if ((rc = ppe_detect(&m->ppe, w, "module_list.2.")) ||
            (rc = ppe_bind(&m->ppe, w, "module_list.2.", m->gemm_dt)) ||
            (rc = bind_proj(&m->proj[2], w, 2, m->dim, m->gemm_dt)))
            return rc;
        if (m->proj[2].d_in != m->ppe.dim)
            goto bad;
        m->n_tokens = 4 * (1 + npatch) + 2 * (int64_t)m->ppe.nwin * m->ppe.nwin;
    } else {
        m->n_tokens = 4 * (1 + g->n_reg + npatch);
    }
    *first = w->n_binds;
    for (int e = 0; e < 2; e++) {
        snprintf(prefix, sizeof(prefix), "module_list.%d.backbone.", e);
        for (int i = 0; i < g->depth; i++)
            if ((rc = vit_bind_block(&m->blocks[e * g->depth + i], w, prefix, i, g->dim, g->mlp,
                                     m->gemm_dt, g->ls)))
                return rc;
        m->dino[e].blk = &m->blk;
        m->dino[e].blk0 = e * g->depth;
    }
    return 0;
bad:
    log_error("%s: the condition embedder's parts disagree in width (DINO towers, projection "
              "nets, point-map embedder) (HINT: the checkpoint is damaged or not official)",
              w->ck.path);
    return S3D_ESHAPE;
}

int cond_load(struct cond_model *m, const char *path, enum device dev, enum dtype gemm_dt,
              int stream_slots)
{
    struct weights w;
    int rc, first = 0;

    memset(m, 0, sizeof(*m));
    m->gemm_dt = gemm_dt;
    m->device = dev;
    /* a bare file means its state_dict, the official Lightning container */
    if ((rc = weights_open_key(&w, path, "state_dict", COND_PREFIX, gemm_dt)))
        return rc;
    if ((rc = bind_all(m, &w, &first)))
        goto out_close;
    const struct vit_config *g = &m->dino[0].cfg;
    if ((rc = stage_blocks_load(&m->blk, &w, &m->weights, dev, first, m->blocks,
                                sizeof(m->blocks[0]), 2 * g->depth, stream_slots)))
        goto out_close;
    log_info("cond: %s variant from %s: DINO depth %d, dim %d, heads %d, %d registers, patch %d, "
             "input %d; %s%s; fused width %d, %lld tokens; %.1f MB of %s weights%s",
             m->variant == COND_SS ? "SS" : "SLAT", w.ck.path, g->depth, g->dim, g->heads,
             g->n_reg, g->patch, m->input_size, m->variant == COND_SS ? "point-map embedder " : "",
             m->variant == COND_SS ? "present" : "no point-map embedder", m->dim,
             (long long)m->n_tokens, (double)m->weights.used / 1e6, dtype_name(gemm_dt),
             m->blk.slots ? " besides the streamed blocks" : "");
    weights_close(&w);
    return 0;
out_close:
    weights_close(&w);
    return rc;
}

void cond_free(struct cond_model *m)
{
    if (!m)
        return;
    stage_blocks_free(&m->blk);
    arena_free(&m->weights);
}

// ----------------------------------------------------------------------------
// sizes and input checks

/* t must be F32 (1, c, H, W), contiguous, any H, W >= 1: the embedders resize it
 * to their own input size as the reference does (fit_input). */
static int check_one(const struct tensor *t, const char *name, int64_t c)
{
    char got[64];

    if (!t) {
        log_error("cond: input '%s' is missing (HINT: the job directory needs the "
                  "preprocessed inputs, see docs/formats.md)", name);
        return S3D_ENOTFOUND;
    }
    if (t->dtype != DTYPE_F32 || t->ndim != 4 || t->shape[0] != 1 || t->shape[1] != c ||
        t->shape[2] < 1 || t->shape[3] < 1 || t->shape[2] > INT32_MAX || t->shape[3] > INT32_MAX ||
        !tensor_is_contiguous(t)) {
        log_error("cond: input '%s' is %s %s, expected F32 [1,%lld,H,W] (HINT: the inputs are the "
                  "preprocessor's outputs, 518x518 in the release, spec/conditioning.md §5)", name,
                  dtype_name(t->dtype), tensor_shape_str(t->shape, t->ndim, got, sizeof(got)),
                  (long long)c);
        return S3D_ESHAPE;
    }
    return 0;
}

int cond_check_inputs(const struct cond_model *m, const struct cond_inputs *in)
{
    int rc;

    if ((rc = check_one(in->image, "image", 3)) ||
        (rc = check_one(in->rgb_image, "rgb_image", 3)) ||
        (rc = check_one(in->mask, "mask", 1)) ||
        (rc = check_one(in->rgb_image_mask, "rgb_image_mask", 1)))
        return rc;
    if (m->variant == COND_SS &&
        ((rc = check_one(in->pointmap, "pointmap", 3)) ||
         (rc = check_one(in->rgb_pointmap, "rgb_pointmap", 3))))
        return rc;
    return 0;
}

// ----------------------------------------------------------------------------
// forward

/* t (1, c, H, W) F32 host at size x size: t's own data when it already has that
 * size, else a malloc'ed copy resized with mode (*tmp owns it; free(*tmp) after
 * use). The reference resizes inside each embedder: Dino with F.interpolate
 * bilinear, align_corners=False (dino.py:70-76, the identity at its input size),
 * PointPatchEmbed with nearest (pointmap.py:245-248). */
static const float *fit_input(const struct tensor *t, int64_t size, enum op_resize_mode mode,
                              float **tmp)
{
    int64_t c = t->shape[1];

    *tmp = NULL;
    if (t->shape[2] == size && t->shape[3] == size)
        return t->data;
    *tmp = malloc(sizeof(**tmp) * (size_t)(c * size * size));
    ASSERT(*tmp);
    struct tensor y = tensor_view(*tmp, DTYPE_F32, DEVICE_HOST, SHAPE(1, c, size, size));
    op_resize_cpu(&y, t, mode, 0, 0);
    return *tmp;
}

/* img (2, 3, S, S) on the model's device = Dino's _preprocess_input of a and b
 * (dino.py:70-84): bilinear resize to S, 1-channel inputs repeated to 3, then
 * (x - mean) / std. */
static void dino_input(const struct cond_model *m, const struct op_ctx *ctx, struct tensor *img,
                       const struct tensor *a, const struct tensor *b)
{
    int64_t S = m->input_size, HW = S * S;
    float *h = malloc(sizeof(*h) * (size_t)(2 * 3 * HW));
    const struct tensor *src[2] = {a, b};

    ASSERT(h);
    for (int i = 0; i < 2; i++) {
        float *tmp;
        const float *r = fit_input(src[i], S, OP_RESIZE_BILINEAR, &tmp);
        for (int c = 0; c < 3; c++) {
            const float *s = r + (src[i]->shape[1] == 3 ? c * HW : 0);
            float *d = h + (i * 3 + c) * HW;
            for (int64_t k = 0; k < HW; k++)
                d[k] = (s[k] - DINO_MEAN[c]) / DINO_STD[c];
        }
        free(tmp);
    }
    struct tensor hv = tensor_view(h, DTYPE_F32, DEVICE_HOST, img->shape, img->ndim);
    op_upload(ctx, img, &hv);
    free(h);
}

/* dst (rows, C) = projection net p of e (rows, d_in) F32, then += idx_emb rows
 * 0 and 1 on the first and second half of the rows (cropped, full). */
static void project(const struct cond_model *m, const struct op_ctx *ctx, struct arena *act,
                    const struct cond_proj *p, const struct tensor *e, struct tensor *dst)
{
    int64_t rows = e->shape[0];
    enum dtype gd = m->gemm_dt;
    size_t mark = arena_mark(act);
    struct tensor hn = arena_tensor(act, gd, SHAPE(rows, p->d_in));
    struct tensor a = arena_tensor(act, gd, SHAPE(rows, p->hidden));
    struct tensor b = arena_tensor(act, gd, SHAPE(rows, p->hidden));
    struct tensor idx2 = tensor_slice(&m->idx_emb, 0, 0, 2);

    if (!act->plan) {
        op_layernorm(ctx, &hn, e, &p->ln_w, &p->ln_b, COND_LN_EPS);
        op_linear(ctx, &a, &hn, &p->w1, NULL, false);
        op_linear(ctx, &b, &hn, &p->w3, NULL, false);
        op_swiglu(ctx, &a, &a, &b);
        op_linear(ctx, dst, &a, &p->w2, NULL, false);
        op_add_bias(ctx, dst, dst, &idx2);             /* embedder_fuser.py:216-221 */
    }
    arena_release(act, mark);
}

void cond_forward(const struct cond_model *m, const struct op_ctx *ctx, struct arena *act,
                  const struct cond_inputs *in, struct tensor *out)
{
    const struct vit_config *g = &m->dino[0].cfg;
    int64_t S = m->input_size, C = m->dim, row = 0;
    size_t mark = arena_mark(act);
    struct tensor o = arena_tensor(act, m->gemm_dt, SHAPE(m->n_tokens, C));
    const struct tensor *pairs[2][2] = {{in->image, in->rgb_image}, {in->mask, in->rgb_image_mask}};

    ASSERT(out->device == DEVICE_HOST && out->dtype == m->gemm_dt && tensor_numel(out) == m->n_tokens * C);
    for (int e = 0; e < 2; e++) {
        size_t m2 = arena_mark(act);
        struct tensor img = arena_tensor(act, DTYPE_F32, SHAPE(2, 3, S, S));
        if (!act->plan)
            dino_input(m, ctx, &img, pairs[e][0], pairs[e][1]);
        struct tensor x = vit_forward(&m->dino[e], ctx, act, &img, NULL, NULL);
        int64_t T = x.shape[1] - (m->variant == COND_SS ? g->n_reg : 0);
        struct tensor emb = arena_tensor(act, DTYPE_F32, SHAPE(2, T, C));
        if (act->plan) {
            /* plan mode: the buffers only */
        } else if (m->variant == COND_SS)
            vit_final_norm(&m->dino[e], ctx, &emb, &x, true);            /* dino.py:101-107 */
        else
            op_layernorm(ctx, &emb, &x, NULL, NULL, COND_LN_EPS);        /* dino.py:97-99 */
        struct tensor e2 = tensor_reshape(&emb, SHAPE(2 * T, C));
        struct tensor dst = tensor_slice(&o, 0, row, 2 * T);
        project(m, ctx, act, &m->proj[e], &e2, &dst);
        row += 2 * T;
        arena_release(act, m2);
    }
    if (m->variant == COND_SS) {
        int64_t W = (int64_t)m->ppe.nwin * m->ppe.nwin, P = m->ppe.size;
        size_t m2 = arena_mark(act);
        struct tensor pm = arena_tensor(act, DTYPE_F32, SHAPE(2, 3, P, P));
        struct tensor pe = arena_tensor(act, DTYPE_F32, SHAPE(2, W, m->ppe.dim));
        const struct tensor *maps[2] = {in->pointmap, in->rgb_pointmap};
        for (int i = 0; i < 2 && !act->plan; i++) {   /* nearest to P here; ppe_forward's is then
                                                       * the identity */
            float *tmp;
            const float *r = fit_input(maps[i], P, OP_RESIZE_NEAREST, &tmp);
            struct tensor dst = tensor_slice(&pm, 0, i, 1);
            struct tensor src = tensor_view((void *)r, DTYPE_F32, DEVICE_HOST, SHAPE(1, 3, P, P));
            op_upload(ctx, &dst, &src);
            free(tmp);
        }
        ppe_forward(&m->ppe, ctx, act, &pe, &pm);
        struct tensor pe2 = tensor_reshape(&pe, SHAPE(2 * W, m->ppe.dim));
        struct tensor dst = tensor_slice(&o, 0, row, 2 * W);
        project(m, ctx, act, &m->proj[2], &pe2, &dst);
        row += 2 * W;
        arena_release(act, m2);
    }
    ASSERT(row == m->n_tokens);
    if (!act->plan)
        op_download(ctx, out, &o);
    arena_release(act, mark);
}

size_t cond_act_bytes(const struct cond_model *m)
{
    struct cond_inputs none;
    struct tensor out = tensor_view(NULL, m->gemm_dt, DEVICE_HOST, SHAPE(1, m->n_tokens, m->dim));
    struct arena plan;

    memset(&none, 0, sizeof(none));
    arena_plan_init(&plan, m->device == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act");
    cond_forward(m, NULL, &plan, &none, &out);
    return plan.high_water;
}
