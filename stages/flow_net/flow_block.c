/*
 * flow_block.c - the block weights, timestep embedder, block sizes and
 * condition check both flow transformers share. See flow_block.h.
 */
#include "flow_block.h"
#include "err.h"
#include "log.h"
#include "ops_copy.h"

#include <math.h>
#include <stdio.h>

int flow_block_bind(struct flow_block_w *b, struct weights *w, int i, const char *sfx,
                    int64_t C, int64_t H, int64_t M, int64_t Cc, enum dtype gd)
{
    int rc = 0;

    rc |= weights_bind_as(w, &b->norm2_w, DTYPE_F32, SHAPE(C), "blocks.%d.norm2%s.weight", i, sfx);
    rc |= weights_bind_as(w, &b->norm2_b, DTYPE_F32, SHAPE(C), "blocks.%d.norm2%s.bias", i, sfx);
    rc |= weights_bind_as(w, &b->qkv_w, gd, SHAPE(3 * C, C), "blocks.%d.self_attn.to_qkv%s.weight",
                          i, sfx);
    rc |= weights_bind_as(w, &b->qkv_b, gd, SHAPE(3 * C), "blocks.%d.self_attn.to_qkv%s.bias", i,
                          sfx);
    rc |= weights_bind_as(w, &b->q_gamma, DTYPE_F32, SHAPE(H, OP_HEAD_DIM),
                          "blocks.%d.self_attn.q_rms_norm%s.gamma", i, sfx);
    rc |= weights_bind_as(w, &b->k_gamma, DTYPE_F32, SHAPE(H, OP_HEAD_DIM),
                          "blocks.%d.self_attn.k_rms_norm%s.gamma", i, sfx);
    rc |= weights_bind_as(w, &b->sa_out_w, gd, SHAPE(C, C), "blocks.%d.self_attn.to_out%s.weight",
                          i, sfx);
    rc |= weights_bind_as(w, &b->sa_out_b, gd, SHAPE(C), "blocks.%d.self_attn.to_out%s.bias", i,
                          sfx);
    rc |= weights_bind_as(w, &b->cq_w, gd, SHAPE(C, C), "blocks.%d.cross_attn%s.to_q.weight", i,
                          sfx);
    rc |= weights_bind_as(w, &b->cq_b, gd, SHAPE(C), "blocks.%d.cross_attn%s.to_q.bias", i, sfx);
    rc |= weights_bind_as(w, &b->ckv_w, gd, SHAPE(2 * C, Cc), "blocks.%d.cross_attn%s.to_kv.weight",
                          i, sfx);
    rc |= weights_bind_as(w, &b->ckv_b, gd, SHAPE(2 * C), "blocks.%d.cross_attn%s.to_kv.bias", i,
                          sfx);
    rc |= weights_bind_as(w, &b->co_w, gd, SHAPE(C, C), "blocks.%d.cross_attn%s.to_out.weight", i,
                          sfx);
    rc |= weights_bind_as(w, &b->co_b, gd, SHAPE(C), "blocks.%d.cross_attn%s.to_out.bias", i, sfx);
    rc |= weights_bind_as(w, &b->fc1_w, gd, SHAPE(M, C), "blocks.%d.mlp%s.mlp.0.weight", i, sfx);
    rc |= weights_bind_as(w, &b->fc1_b, gd, SHAPE(M), "blocks.%d.mlp%s.mlp.0.bias", i, sfx);
    rc |= weights_bind_as(w, &b->fc2_w, gd, SHAPE(C, M), "blocks.%d.mlp%s.mlp.2.weight", i, sfx);
    rc |= weights_bind_as(w, &b->fc2_b, gd, SHAPE(C), "blocks.%d.mlp%s.mlp.2.bias", i, sfx);
    return rc;
}

int flow_temb_bind(struct flow_temb *e, struct weights *w, const char *name, int64_t C,
                   enum dtype gd)
{
    int rc = 0;

    rc |= weights_bind_as(w, &e->w0, gd, SHAPE(C, FLOW_FREQ_DIM), "%s.mlp.0.weight", name);
    rc |= weights_bind_as(w, &e->b0, gd, SHAPE(C), "%s.mlp.0.bias", name);
    rc |= weights_bind_as(w, &e->w2, gd, SHAPE(C, C), "%s.mlp.2.weight", name);
    rc |= weights_bind_as(w, &e->b2, gd, SHAPE(C), "%s.mlp.2.bias", name);
    return rc;
}

int flow_missing(const struct weights *w, const struct flow_names *n, const char *what)
{
    log_error("%s: no %s%s (HINT: %s reads the official %s; `sam3d inspect %s` lists its "
              "tensors)", w->ck.path, n->prefix, what, n->who, n->file, w->ck.path);
    return S3D_ENOTFOUND;
}

int flow_dims_detect(const struct weights *w, const struct flow_names *n, const char *sfx,
                     int max_depth, int *dim, int *depth, int *heads, int *mlp, int *cond_dim)
{
    const struct ckpt_entry *e, *gam, *fc1, *kv;
    char name[160];

    if (!(e = weights_find(w, "t_embedder.mlp.0.weight")))
        return flow_missing(w, n, "t_embedder.mlp.0.weight");
    *depth = 0;
    while (*depth < max_depth && weights_find(w, "blocks.%d.adaLN_modulation.1.weight", *depth))
        (*depth)++;
    if (*depth == 0)
        return flow_missing(w, n, "blocks.0.adaLN_modulation.1.weight");
    snprintf(name, sizeof(name), "blocks.0.self_attn.q_rms_norm%s.gamma", sfx);
    if (!(gam = weights_find(w, "%s", name)))
        return flow_missing(w, n, name);
    snprintf(name, sizeof(name), "blocks.0.mlp%s.mlp.0.weight", sfx);
    if (!(fc1 = weights_find(w, "%s", name)))
        return flow_missing(w, n, name);
    snprintf(name, sizeof(name), "blocks.0.cross_attn%s.to_kv.weight", sfx);
    if (!(kv = weights_find(w, "%s", name)))
        return flow_missing(w, n, name);
    if (e->ndim != 2 || e->shape[1] != FLOW_FREQ_DIM || gam->ndim != 2 ||
        gam->shape[1] != OP_HEAD_DIM || fc1->ndim != 2 || kv->ndim != 2)
        goto bad;
    *dim = (int)e->shape[0];
    *heads = (int)gam->shape[0];
    *mlp = (int)fc1->shape[0];
    *cond_dim = (int)kv->shape[1];
    if ((int64_t)*heads * OP_HEAD_DIM != *dim || fc1->shape[1] != *dim ||
        kv->shape[0] != 2 * (int64_t)*dim)
        goto bad;
    return 0;
bad:
    log_error("%s: the flow tensors under %s have inconsistent shapes (t_embedder, q_rms_norm "
              "gamma (H, 64), mlp, to_kv) (HINT: the checkpoint is damaged or not an official "
              "%s)", w->ck.path, n->prefix, n->file);
    return S3D_ESHAPE;
}

void flow_temb_eval(const struct op_ctx *ctx, const struct flow_temb *E, float v,
                    struct tensor *tf, struct tensor *e1, struct tensor *e)
{
    const int half = FLOW_FREQ_DIM / 2;
    const float nl = (float)-log(10000.0);   /* -np.log(max_period) * fp32 tensor -> fp32 */
    float f[FLOW_FREQ_DIM];

    for (int k = 0; k < half; k++) {
        float arg = v * expf(nl * (float)k / (float)half);
        f[k] = cosf(arg);
        f[half + k] = sinf(arg);
    }
    struct tensor fh = tensor_view(f, DTYPE_F32, DEVICE_HOST, SHAPE(1, FLOW_FREQ_DIM));
    op_upload(ctx, tf, &fh);
    op_linear(ctx, e1, tf, &E->w0, &E->b0, false);
    op_act(ctx, e1, e1, OP_ACT_SILU);
    op_linear(ctx, e, e1, &E->w2, &E->b2, false);
}

int flow_check_cond(const struct tensor *c, int cond_dim, const char *stage, const char *ckpt,
                    const char *name, char *err, size_t err_len)
{
    char got[64];

    if (!c)
        return log_error_to(S3D_ENOTFOUND, err, err_len, "%s: input '%s' is missing (HINT: it "
                            "is the output of sam3d-cond on %s, %s.safetensors)", stage, name,
                            ckpt, name);
    if ((c->dtype != DTYPE_F16 && c->dtype != DTYPE_F32) || c->ndim != 3 || c->shape[0] != 1 ||
        c->shape[1] < 1 || c->shape[2] != cond_dim || !tensor_is_contiguous(c) ||
        c->device != DEVICE_HOST)
        return log_error_to(S3D_ESHAPE, err, err_len, "%s: input '%s' is %s %s, expected F16 or "
                            "F32 [1,N,%d] (HINT: it is the output of sam3d-cond on the same "
                            "%s)", stage, name, dtype_name(c->dtype),
                            tensor_shape_str(c->shape, c->ndim, got, sizeof(got)), cond_dim,
                            ckpt);
    return 0;
}

const char *flow_weights_str(char *buf, size_t n, const struct arena *weights, enum dtype dt,
                             enum device dev, const struct stage_blocks *blk)
{
    snprintf(buf, n, "%.1f MB of %s weights on %s%s", (double)weights->used / 1e6, dtype_name(dt),
             dev == DEVICE_CUDA ? "cuda" : "cpu", blk->slots ? " besides the streamed blocks" : "");
    return buf;
}

int flow_load_weights(struct weights *w, const char *path, const char *prefix,
                      enum dtype gemm_dt, flow_bind_fn bind, void *model,
                      struct stage_blocks *blk, struct arena *weights, enum device dev,
                      void *blocks, size_t stride, int slots)
{
    int rc, first = 0, n_blocks = 0;

    ASSERT(gemm_dt == DTYPE_F16 || gemm_dt == DTYPE_F32);
    if ((rc = weights_open_key(w, path, "state_dict", prefix, gemm_dt)))
        return rc;
    if ((rc = bind(model, w, &first, &n_blocks)) ||
        (rc = stage_blocks_load(blk, w, weights, dev, first, blocks, stride, n_blocks, slots)))
        weights_close(w);
    return rc;
}

void flow_weights_free(struct stage_blocks *blk, struct arena *weights)
{
    stage_blocks_free(blk);
    arena_free(weights);
}
