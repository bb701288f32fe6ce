/*
 * slatflow.c - the SLAT flow network: config detection, weight binding, the
 * per-voxel-set geometry, one network evaluation. See slatflow.h.
 *
 * Res block (structured_latent_flow.py:56-74), e = emb_layers(temb) split
 * (scale | shift) - the opposite order of the adaLN chunks:
 *     x = up/downsample(x)
 *     out = skip(x)                            (SparseLinear, or identity)
 *     u = SiLU(LN_aff(x)); v = conv1(u)
 *     v = SiLU(LN(v) * (1 + scale) + shift); w = conv2(v); out += w
 * Transformer block (sparse/transformer/modulated.py:151-172), m = adaLN(SiLU(temb)):
 *     x += gate_msa * to_out(attn(rms(q), rms(k), v of to_qkv(LN(x) (1 + scale_msa) + shift_msa)))
 *     x += to_out(attn(to_q(LN_aff(x)), to_kv(cond)))
 *     x += gate_mlp * fc2(gelu_tanh(fc1(LN(x) (1 + scale_mlp) + shift_mlp)))
 */
#include "slatflow.h"
#include "err.h"
#include "log.h"
#include "ops_copy.h"
#include "ops_sparse.h"
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// ----------------------------------------------------------------------------
// load

static int not_slatflow(const struct weights *w, const char *what)
{
    log_error("%s: no %s%s (HINT: the SLAT flow reads the official slat_generator.ckpt; "
              "`sam3d inspect %s` lists its tensors)", w->ck.path, SLF_PREFIX, what, w->ck.path);
    return S3D_ENOTFOUND;
}

/* Detect every size from tensor shapes (spec §8.7). */
static int detect(struct slatflow_config *g, const struct weights *w)
{
    const struct ckpt_entry *e, *in, *out, *gam, *fc1, *kv;

    memset(g, 0, sizeof(*g));
    if (!(e = weights_find(w, "t_embedder.mlp.0.weight")))
        return not_slatflow(w, "t_embedder.mlp.0.weight");
    if (!(in = weights_find(w, "input_layer.weight")))
        return not_slatflow(w, "input_layer.weight");
    if (!(out = weights_find(w, "out_layer.weight")))
        return not_slatflow(w, "out_layer.weight");
    while (g->depth < SLF_MAX_DEPTH && weights_find(w, "blocks.%d.adaLN_modulation.1.weight", g->depth))
        g->depth++;
    if (g->depth == 0)
        return not_slatflow(w, "blocks.0.adaLN_modulation.1.weight");
    if (!(gam = weights_find(w, "blocks.0.self_attn.q_rms_norm.gamma")))
        return not_slatflow(w, "blocks.0.self_attn.q_rms_norm.gamma");
    if (!(fc1 = weights_find(w, "blocks.0.mlp.mlp.0.weight")))
        return not_slatflow(w, "blocks.0.mlp.mlp.0.weight");
    if (!(kv = weights_find(w, "blocks.0.cross_attn.to_kv.weight")))
        return not_slatflow(w, "blocks.0.cross_attn.to_kv.weight");
    if (e->ndim != 2 || e->shape[1] != SLF_FREQ_DIM || in->ndim != 2 || out->ndim != 2 ||
        gam->ndim != 2 || gam->shape[1] != OP_HEAD_DIM || fc1->ndim != 2 || kv->ndim != 2)
        goto bad;
    g->dim = (int)e->shape[0];
    g->io = (int)in->shape[0];
    g->in_ch = (int)in->shape[1];
    g->out_ch = (int)out->shape[0];
    g->heads = (int)gam->shape[0];
    g->mlp = (int)fc1->shape[0];
    g->cond_dim = (int)kv->shape[1];
    if ((int64_t)g->heads * OP_HEAD_DIM != g->dim || fc1->shape[1] != g->dim ||
        kv->shape[0] != 2 * (int64_t)g->dim || out->shape[1] != g->io)
        goto bad;
    /* one io level with num_io_res_blocks 2 (the released yaml): exactly two
     * input and two output res blocks (structured_latent_flow.py:139-185) */
    if (!weights_find(w, "input_blocks.1.norm1.weight") ||
        weights_find(w, "input_blocks.2.norm1.weight") ||
        !weights_find(w, "out_blocks.1.norm1.weight") ||
        weights_find(w, "out_blocks.2.norm1.weight")) {
        log_error("%s: the SLAT flow under %s does not have exactly 2 input and 2 output res "
                  "blocks (HINT: only io_block_channels of length 1 with num_io_res_blocks 2, "
                  "the released configuration, is supported)", w->ck.path, SLF_PREFIX);
        return S3D_ESHAPE;
    }
    return 0;
bad:
    log_error("%s: the SLAT flow tensors under %s have inconsistent shapes (t_embedder, "
              "input/out_layer, q_rms_norm gamma (H, 64), mlp, to_kv) (HINT: the checkpoint is "
              "damaged or not an official slat_generator.ckpt)", w->ck.path, SLF_PREFIX);
    return S3D_ESHAPE;
}

static int bind_res(struct slatflow_res *r, struct weights *w, const char *name, int cin, int cout,
                    int C, enum dtype gd)
{
    int rc = 0;

    r->cin = cin;
    r->cout = cout;
    rc |= weights_bind_as(w, &r->norm1_w, DTYPE_F32, SHAPE(cin), "%s.norm1.weight", name);
    rc |= weights_bind_as(w, &r->norm1_b, DTYPE_F32, SHAPE(cin), "%s.norm1.bias", name);
    rc |= weights_bind_as(w, &r->conv1_w, gd, SHAPE(cout, 3, 3, 3, cin), "%s.conv1.conv.weight", name);
    rc |= weights_bind_as(w, &r->conv1_b, gd, SHAPE(cout), "%s.conv1.conv.bias", name);
    rc |= weights_bind_as(w, &r->conv2_w, gd, SHAPE(cout, 3, 3, 3, cout), "%s.conv2.conv.weight", name);
    rc |= weights_bind_as(w, &r->conv2_b, gd, SHAPE(cout), "%s.conv2.conv.bias", name);
    rc |= weights_bind_as(w, &r->emb_w, gd, SHAPE(2 * cout, C), "%s.emb_layers.1.weight", name);
    rc |= weights_bind_as(w, &r->emb_b, gd, SHAPE(2 * cout), "%s.emb_layers.1.bias", name);
    if (cin != cout) {
        rc |= weights_bind_as(w, &r->skip_w, gd, SHAPE(cout, cin), "%s.skip_connection.weight", name);
        rc |= weights_bind_as(w, &r->skip_b, gd, SHAPE(cout), "%s.skip_connection.bias", name);
    }
    return rc;
}

static int bind_block(struct slatflow_block *b, struct weights *w, const struct slatflow_config *g,
                      int i, enum dtype gd)
{
    int64_t C = g->dim, H = g->heads, M = g->mlp, Cc = g->cond_dim;
    int rc = 0;

    rc |= weights_bind_as(w, &b->norm2_w, DTYPE_F32, SHAPE(C), "blocks.%d.norm2.weight", i);
    rc |= weights_bind_as(w, &b->norm2_b, DTYPE_F32, SHAPE(C), "blocks.%d.norm2.bias", i);
    rc |= weights_bind_as(w, &b->qkv_w, gd, SHAPE(3 * C, C), "blocks.%d.self_attn.to_qkv.weight", i);
    rc |= weights_bind_as(w, &b->qkv_b, gd, SHAPE(3 * C), "blocks.%d.self_attn.to_qkv.bias", i);
    rc |= weights_bind_as(w, &b->q_gamma, DTYPE_F32, SHAPE(H, OP_HEAD_DIM),
                          "blocks.%d.self_attn.q_rms_norm.gamma", i);
    rc |= weights_bind_as(w, &b->k_gamma, DTYPE_F32, SHAPE(H, OP_HEAD_DIM),
                          "blocks.%d.self_attn.k_rms_norm.gamma", i);
    rc |= weights_bind_as(w, &b->sa_out_w, gd, SHAPE(C, C), "blocks.%d.self_attn.to_out.weight", i);
    rc |= weights_bind_as(w, &b->sa_out_b, gd, SHAPE(C), "blocks.%d.self_attn.to_out.bias", i);
    rc |= weights_bind_as(w, &b->cq_w, gd, SHAPE(C, C), "blocks.%d.cross_attn.to_q.weight", i);
    rc |= weights_bind_as(w, &b->cq_b, gd, SHAPE(C), "blocks.%d.cross_attn.to_q.bias", i);
    rc |= weights_bind_as(w, &b->ckv_w, gd, SHAPE(2 * C, Cc), "blocks.%d.cross_attn.to_kv.weight", i);
    rc |= weights_bind_as(w, &b->ckv_b, gd, SHAPE(2 * C), "blocks.%d.cross_attn.to_kv.bias", i);
    rc |= weights_bind_as(w, &b->co_w, gd, SHAPE(C, C), "blocks.%d.cross_attn.to_out.weight", i);
    rc |= weights_bind_as(w, &b->co_b, gd, SHAPE(C), "blocks.%d.cross_attn.to_out.bias", i);
    rc |= weights_bind_as(w, &b->fc1_w, gd, SHAPE(M, C), "blocks.%d.mlp.mlp.0.weight", i);
    rc |= weights_bind_as(w, &b->fc1_b, gd, SHAPE(M), "blocks.%d.mlp.mlp.0.bias", i);
    rc |= weights_bind_as(w, &b->fc2_w, gd, SHAPE(C, M), "blocks.%d.mlp.mlp.2.weight", i);
    rc |= weights_bind_as(w, &b->fc2_b, gd, SHAPE(C), "blocks.%d.mlp.mlp.2.bias", i);
    rc |= weights_bind_as(w, &b->ada_w, gd, SHAPE(6 * C, C), "blocks.%d.adaLN_modulation.1.weight", i);
    rc |= weights_bind_as(w, &b->ada_b, gd, SHAPE(6 * C), "blocks.%d.adaLN_modulation.1.bias", i);
    return rc;
}

static int bind_all(struct slatflow_model *m, struct weights *w)
{
    const struct slatflow_config *g = &m->cfg;
    enum dtype gd = m->gemm_dt;
    int C = g->dim, c0 = g->io;
    int rc = 0;

    rc |= weights_bind_as(w, &m->t_w0, gd, SHAPE(C, SLF_FREQ_DIM), "t_embedder.mlp.0.weight");
    rc |= weights_bind_as(w, &m->t_b0, gd, SHAPE(C), "t_embedder.mlp.0.bias");
    rc |= weights_bind_as(w, &m->t_w2, gd, SHAPE(C, C), "t_embedder.mlp.2.weight");
    rc |= weights_bind_as(w, &m->t_b2, gd, SHAPE(C), "t_embedder.mlp.2.bias");
    rc |= weights_bind_as(w, &m->in_w, gd, SHAPE(c0, g->in_ch), "input_layer.weight");
    rc |= weights_bind_as(w, &m->in_b, gd, SHAPE(c0), "input_layer.bias");
    rc |= weights_bind_as(w, &m->out_w, gd, SHAPE(g->out_ch, c0), "out_layer.weight");
    rc |= weights_bind_as(w, &m->out_b, gd, SHAPE(g->out_ch), "out_layer.bias");
    rc |= bind_res(&m->inb[0], w, "input_blocks.0", c0, c0, C, gd);
    rc |= bind_res(&m->inb[1], w, "input_blocks.1", c0, C, C, gd);
    rc |= bind_res(&m->outb[0], w, "out_blocks.0", 2 * C, c0, C, gd);
    rc |= bind_res(&m->outb[1], w, "out_blocks.1", 2 * c0, c0, C, gd);
    for (int i = 0; i < g->depth; i++)
        rc |= bind_block(&m->blocks[i], w, g, i, gd);
    return rc ? S3D_ESHAPE : 0;
}

int slatflow_load(struct slatflow_model *m, const char *path, enum device dev, enum dtype gemm_dt)
{
    struct weights w;
    struct arena staging;
    struct stat st;
    char *pk = NULL;
    int rc;

    ASSERT(gemm_dt == DTYPE_F16 || gemm_dt == DTYPE_F32);
    memset(m, 0, sizeof(*m));
    memset(&staging, 0, sizeof(staging));
    m->gemm_dt = gemm_dt;
    m->device = dev;
    /* a bare file means its state_dict, the official Lightning container */
    if (stat(path, &st) == 0) {
        size_t n = strlen(path) + sizeof(":state_dict");
        pk = malloc(n);
        ASSERT(pk);
        snprintf(pk, n, "%s:state_dict", path);
    }
    rc = weights_open(&w, pk ? pk : path, SLF_PREFIX, gemm_dt);
    free(pk);
    if (rc)
        return rc;
    if ((rc = detect(&m->cfg, &w)) || (rc = bind_all(m, &w)))
        goto out_close;
    rc = arena_init(&m->weights, dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "weights",
                    weights_arena_bytes(&w));
    if (rc)
        goto out_close;
    rc = arena_init(&staging, dev == DEVICE_CUDA ? ARENA_PINNED : ARENA_HOST, "staging",
                    (size_t)64 << 20);
    if (rc || (rc = weights_upload(&w, &m->weights, &staging)))
        goto out_free;
    weights_report_unused(&w, "");
    const struct slatflow_config *g = &m->cfg;
    log_info("slat_flow: %s: width %d, %d heads, %d blocks, MLP %d, io %d, cond width %d, "
             "%d -> %d channels; %.1f MB of %s weights on %s", w.ck.path, g->dim, g->heads,
             g->depth, g->mlp, g->io, g->cond_dim, g->in_ch, g->out_ch,
             (double)m->weights.used / 1e6, dtype_name(gemm_dt), dev == DEVICE_CUDA ? "cuda" : "cpu");
    arena_free(&staging);
    weights_close(&w);
    return 0;
out_free:
    arena_free(&staging);
    arena_free(&m->weights);
out_close:
    weights_close(&w);
    return rc;
}

void slatflow_free(struct slatflow_model *m)
{
    if (m)
        arena_free(&m->weights);
}

// ----------------------------------------------------------------------------
// host <-> model device (kernels/ops_copy.h)

/* Copy a tensor to a tap (host F32) when asked. */
static void tap(const struct op_ctx *ctx, float *dst, const struct tensor *src)
{
    if (!dst)
        return;
    struct tensor o = tensor_view(dst, DTYPE_F32, DEVICE_HOST, src->shape, src->ndim);
    op_download(ctx, &o, src);
}

/* dst (R, ca + cb) = [a | b] along channels; a (R, ca), b (R, cb); all
 * contiguous, one dtype, on the same device (torch.cat(dim=1)). */
static void concat_cols(const struct op_ctx *ctx, struct tensor *dst, const struct tensor *a,
                        const struct tensor *b)
{
    struct tensor l = tensor_slice(dst, 1, 0, a->shape[1]);
    struct tensor r = tensor_slice(dst, 1, a->shape[1], b->shape[1]);

    ASSERT(a->dtype == dst->dtype && b->dtype == dst->dtype &&
           dst->shape[1] == a->shape[1] + b->shape[1]);
    op_copy(ctx, &l, a);
    op_copy(ctx, &r, b);
}

// ----------------------------------------------------------------------------
// inputs: coordinates and condition

int slatflow_check_coords(const struct tensor *coords, int res, const char *what, char *err,
                          size_t len)
{
    char got[64];

    if (res < 2 || res % 2 || res > SPARSE_DOWN_MAX_RES)
        return log_error_to(S3D_ESHAPE, err, len, "%s: resolution %d is not even or above %d "
                         "(HINT: the released SLAT flow runs at %d^3)", what, res,
                         SPARSE_DOWN_MAX_RES, SLF_RESOLUTION);
    if (coords->dtype != DTYPE_I32 || coords->device != DEVICE_HOST || coords->ndim != 2 ||
        coords->shape[1] != 4 || !tensor_is_contiguous(coords))
        return log_error_to(S3D_ESHAPE, err, len, "%s: expected I32 [N,4] (b, x, y, z) voxel "
                         "coordinates, got %s %s (HINT: they are the `coords` of "
                         "ss_decode.safetensors)", what, dtype_name(coords->dtype),
                         tensor_shape_str(coords->shape, coords->ndim, got, sizeof(got)));
    int64_t N = coords->shape[0];
    if (N < 1)
        return log_error_to(S3D_ESHAPE, err, len, "%s: no voxel (N = 0) (HINT: the SS decode stage "
                         "found no occupied voxel: the object mask or the SS sample is empty)",
                         what);
    if (N > SLF_MAX_VOXELS)
        return log_error_to(S3D_ESHAPE, err, len, "%s: %lld voxels, above the limit of %d (the "
                         "official pipeline's max_coords after downsample_sparse_structure) "
                         "(HINT: give the coords of the SS decode stage, which downsamples "
                         "larger sets to at most %d)", what, (long long)N, SLF_MAX_VOXELS,
                         SLF_MAX_VOXELS);
    /* one bit per cell of res^3: range first, then duplicates */
    size_t cells = (size_t)res * res * res;
    uint8_t *seen = calloc(cells / 8 + 1, 1);
    const int32_t *c = coords->data;
    int rc = 0;
    ASSERT(seen);
    for (int64_t i = 0; i < N && !rc; i++) {
        const int32_t *r = c + 4 * i;
        if (r[0] != 0 || r[1] < 0 || r[1] >= res || r[2] < 0 || r[2] >= res || r[3] < 0 ||
            r[3] >= res) {
            rc = log_error_to(S3D_ESHAPE, err, len, "%s: row %lld is (%d, %d, %d, %d), outside "
                           "the %d^3 grid: every row must be (0, x, y, z) with x, y, z in "
                           "[0, %d) (HINT: give the coords of the SS decode stage unchanged)",
                           what, (long long)i, r[0], r[1], r[2], r[3], res, res);
            break;
        }
        size_t k = ((size_t)r[1] * res + (size_t)r[2]) * res + (size_t)r[3];
        if (seen[k >> 3] & (1u << (k & 7))) {
            int64_t j = 0;
            while (memcmp(c + 4 * j, r, 16))
                j++;
            rc = log_error_to(S3D_ESHAPE, err, len, "%s: rows %lld and %lld are both (%d, %d, %d, "
                           "%d): a voxel set has no row twice (HINT: give the coords of the SS "
                           "decode stage unchanged)", what, (long long)j, (long long)i, r[0],
                           r[1], r[2], r[3]);
            break;
        }
        seen[k >> 3] |= (uint8_t)(1u << (k & 7));
    }
    free(seen);
    return rc;
}

int64_t slatflow_parents(const struct tensor *coords, int res)
{
    int h = res / 2;
    size_t cells = (size_t)h * h * h;
    uint8_t *seen = calloc(cells / 8 + 1, 1);
    const int32_t *c = coords->data;
    int64_t M = 0;

    ASSERT(seen && coords->dtype == DTYPE_I32 && coords->device == DEVICE_HOST);
    for (int64_t i = 0; i < coords->shape[0]; i++) {
        const int32_t *r = c + 4 * i;
        size_t k = ((size_t)(r[1] >> 1) * h + (size_t)(r[2] >> 1)) * h + (size_t)(r[3] >> 1);
        if (!(seen[k >> 3] & (1u << (k & 7)))) {
            seen[k >> 3] |= (uint8_t)(1u << (k & 7));
            M++;
        }
    }
    free(seen);
    return M;
}

size_t slatflow_geom_bytes(const struct slatflow_model *m, int64_t n)
{
    size_t e = dtype_size(m->gemm_dt);

    return arena_round((size_t)n * SPARSE_K3 * 4) * 2 + arena_round((size_t)n * 4) +
           arena_round((size_t)n * 8 * 4) + arena_round((size_t)n * (size_t)m->cfg.dim * e);
}

/* APE of AbsolutePositionEmbedder(C) (transformer/blocks.py:9-56) on the
 * (x, y, z) columns of pc (M, 4): per axis [sin(p f_j) | cos(p f_j)],
 * f_j = 1 / 10000^(j / fd), fd = C / 3 / 2, j < fd, fp32; zero pad to C. */
static void ape_host(float *out, const int32_t *pc, int64_t M, int C)
{
    int fd = C / 3 / 2;
    float *f = malloc(sizeof(float) * (size_t)(fd ? fd : 1));

    ASSERT(f);
    for (int j = 0; j < fd; j++)
        f[j] = 1.0f / powf(10000.0f, (float)j / (float)fd);
    for (int64_t i = 0; i < M; i++) {
        float *o = out + i * C;
        memset(o, 0, sizeof(float) * (size_t)C);
        for (int a = 0; a < 3; a++) {
            float p = (float)pc[i * 4 + 1 + a];
            for (int j = 0; j < fd; j++) {
                float arg = p * f[j];
                o[a * 2 * fd + j] = sinf(arg);
                o[a * 2 * fd + fd + j] = cosf(arg);
            }
        }
    }
    free(f);
}

void slatflow_geom_build(const struct slatflow_model *m, const struct op_ctx *ctx,
                         struct arena *a, const struct tensor *coords, int res,
                         struct slatflow_geom *g)
{
    int64_t N = coords->shape[0], C = m->cfg.dim;
    int32_t *nbr = malloc(sizeof(int32_t) * (size_t)(N * SPARSE_K3));
    int32_t *pc = malloc(sizeof(int32_t) * (size_t)(N * 4));
    int32_t *par = malloc(sizeof(int32_t) * (size_t)N);
    int32_t *ch = malloc(sizeof(int32_t) * (size_t)(N * 8));

    ASSERT(nbr && pc && par && ch && coords->dtype == DTYPE_I32 && coords->device == DEVICE_HOST);
    memset(g, 0, sizeof(*g));
    g->n = N;
    struct tensor tnbr = tensor_view(nbr, DTYPE_I32, DEVICE_HOST, SHAPE(N, SPARSE_K3));
    struct tensor tpc = tensor_view(pc, DTYPE_I32, DEVICE_HOST, SHAPE(N, 4));
    struct tensor tpar = tensor_view(par, DTYPE_I32, DEVICE_HOST, SHAPE(N));
    struct tensor tch = tensor_view(ch, DTYPE_I32, DEVICE_HOST, SHAPE(N, 8));

    g->nbr_hi = arena_tensor(a, DTYPE_I32, SHAPE(N, SPARSE_K3));
    op_sparse_nbr_cpu(&tnbr, coords);
    op_upload(ctx, &g->nbr_hi, &tnbr);

    int64_t M = op_sparse_down_index_cpu(&tpc, &tpar, &tch, coords, res);
    g->m = M;
    g->parent = arena_tensor(a, DTYPE_I32, SHAPE(N));
    op_upload(ctx, &g->parent, &tpar);
    g->children = arena_tensor(a, DTYPE_I32, SHAPE(M, 8));
    struct tensor chm = tensor_slice(&tch, 0, 0, M);
    op_upload(ctx, &g->children, &chm);

    struct tensor pcm = tensor_slice(&tpc, 0, 0, M);
    struct tensor nbm = tensor_view(nbr, DTYPE_I32, DEVICE_HOST, SHAPE(M, SPARSE_K3));
    op_sparse_nbr_cpu(&nbm, &pcm);
    g->nbr_lo = arena_tensor(a, DTYPE_I32, SHAPE(M, SPARSE_K3));
    op_upload(ctx, &g->nbr_lo, &nbm);

    float *ape = malloc(sizeof(float) * (size_t)(M * C));
    ASSERT(ape);
    ape_host(ape, pc, M, (int)C);
    struct tensor tape = tensor_view(ape, DTYPE_F32, DEVICE_HOST, SHAPE(M, C));
    g->ape = arena_tensor(a, m->gemm_dt, SHAPE(M, C));
    op_upload(ctx, &g->ape, &tape);       /* fp32, rounded to fp16 with F16 (L287-288) */
    free(ape);
    free(nbr), free(pc), free(par), free(ch);
}

int slatflow_check_cond(const struct slatflow_model *m, const struct tensor *c, const char *name,
                        char *err, size_t len)
{
    char got[64];

    if (!c)
        return log_error_to(S3D_ENOTFOUND, err, len, "slat_flow: input '%s' is missing (HINT: it is "
                         "the output of sam3d-cond on slat_generator.ckpt, "
                         "cond_slat.safetensors)", name);
    if ((c->dtype != DTYPE_F16 && c->dtype != DTYPE_F32) || c->ndim != 3 || c->shape[0] != 1 ||
        c->shape[1] < 1 || c->shape[2] != m->cfg.cond_dim || !tensor_is_contiguous(c) ||
        c->device != DEVICE_HOST)
        return log_error_to(S3D_ESHAPE, err, len, "slat_flow: input '%s' is %s %s, expected F16 or "
                         "F32 [1,N,%d] (HINT: it is the output of sam3d-cond on the same "
                         "slat_generator.ckpt)", name, dtype_name(c->dtype),
                         tensor_shape_str(c->shape, c->ndim, got, sizeof(got)), m->cfg.cond_dim);
    return 0;
}

size_t slatflow_cond_bytes(const struct slatflow_model *m, int64_t n_cond, bool cache_kv)
{
    size_t e = dtype_size(m->gemm_dt);
    size_t b = arena_round((size_t)n_cond * (size_t)m->cfg.cond_dim * e);

    if (cache_kv)
        b += arena_round((size_t)m->cfg.depth * (size_t)n_cond * 2 * (size_t)m->cfg.dim * e);
    return b;
}

void slatflow_put_cond(const struct slatflow_model *m, const struct op_ctx *ctx, struct arena *a,
                       const struct tensor *cond, bool cache_kv, struct slatflow_cond *out)
{
    const struct slatflow_config *g = &m->cfg;
    int64_t Nc = cond->shape[1], C = g->dim;

    memset(out, 0, sizeof(*out));
    out->c = arena_tensor(a, m->gemm_dt, SHAPE(1, Nc, g->cond_dim));
    op_upload(ctx, &out->c, cond);
    if (!cache_kv)
        return;
    /* the K/V an evaluation would project, once: (depth, Nc, 2C) */
    struct tensor c2 = tensor_reshape(&out->c, SHAPE(Nc, g->cond_dim));
    out->kv = arena_tensor(a, m->gemm_dt, SHAPE(g->depth, Nc, 2 * C));
    for (int i = 0; i < g->depth; i++) {
        struct tensor kv = tensor_slice(&out->kv, 0, i, 1);
        kv = tensor_reshape(&kv, SHAPE(Nc, 2 * C));
        op_linear(ctx, &kv, &c2, &m->blocks[i].ckv_w, &m->blocks[i].ckv_b, false);
    }
}

// ----------------------------------------------------------------------------
// activations: one allocation list, run on a planning arena for the size

/* A view at *off inside region r (data NULL when sizing), advancing *off by
 * the arena-rounded size. */
static struct tensor carve(const struct tensor *r, size_t *off, enum dtype dt, const int64_t *shape,
                           int ndim)
{
    void *p = r->data ? (char *)r->data + *off : NULL;
    struct tensor t = tensor_view(p, dt, r->device, shape, ndim);

    *off += arena_round(tensor_nbytes(&t));
    ASSERT(!r->data || *off <= tensor_nbytes(r));
    return t;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

struct slf_act {
    struct tensor tf;       /* (1, 256) gemm_dt: frequency embedding */
    struct tensor e1;       /* (1, C) gemm_dt: embedder hidden */
    struct tensor te;       /* (1, C) gemm_dt: t_embedder(t) */
    struct tensor st;       /* (1, C) gemm_dt: SiLU(temb) */
    struct tensor emb;      /* (max(6C, 2C)) gemm_dt: res-block (scale | shift) or adaLN */
    struct tensor xin;      /* (N, in_ch) gemm_dt */
    struct tensor s0;       /* (N, c0) gemm_dt: skip 0 (input_blocks.0 output) */
    struct tensor s1;       /* (M, C) gemm_dt: skip 1 (input_blocks.1 output) */
    struct tensor x;        /* (M, C) gemm_dt: the token stream */
    struct tensor o;        /* (N, c0) gemm_dt: res-block output at full resolution */
    struct tensor vo;       /* (N, out_ch) gemm_dt: velocity */
    struct tensor v, w;     /* flat, max(N * c0, M * C) gemm_dt: res-block scratch */
    /* one region holding either u or the transformer scratch (never live together) */
    struct tensor u;        /* flat, max(N * 2C, N * 2c0, M * c0) gemm_dt: res-block input */
    struct tensor hf;       /* (M, C) F32: LayerNorm output */
    struct tensor h;        /* (M, C) gemm_dt: GEMM input */
    struct tensor qkv;      /* (1, M, 3, H, 64) gemm_dt */
    struct tensor a;        /* (1, M, H, 64) gemm_dt: attention output */
    struct tensor p;        /* (M, C) gemm_dt: sub-module output */
    struct tensor q;        /* (1, M, H, 64) gemm_dt: cross-attention queries */
    struct tensor kv;       /* (1, Nkv, 2, H, 64) gemm_dt */
    struct tensor c1;       /* (1, C) gemm_dt: unconditional cross-attention row */
    struct tensor f;        /* (M, mlp) gemm_dt: MLP hidden */
    struct tensor cat;      /* (M, 2C) gemm_dt: [h | s1] before the upsample */
    struct arena *scratch;  /* the activation arena (sparse conv im2col on CUDA) */
};

static void act_plan(const struct slatflow_model *m, struct arena *a, int64_t N,
                     int64_t M, int64_t n_kv, struct slf_act *s)
{
    const struct slatflow_config *g = &m->cfg;
    enum dtype gd = m->gemm_dt;
    int64_t C = g->dim, H = g->heads, c0 = g->io;

    s->tf = arena_tensor(a, gd, SHAPE(1, SLF_FREQ_DIM));
    s->e1 = arena_tensor(a, gd, SHAPE(1, C));
    s->te = arena_tensor(a, gd, SHAPE(1, C));
    s->st = arena_tensor(a, gd, SHAPE(1, C));
    s->emb = arena_tensor(a, gd, SHAPE(6 * C));
    s->xin = arena_tensor(a, gd, SHAPE(N, g->in_ch));
    s->s0 = arena_tensor(a, gd, SHAPE(N, c0));
    s->s1 = arena_tensor(a, gd, SHAPE(M, C));
    s->x = arena_tensor(a, gd, SHAPE(M, C));
    s->o = arena_tensor(a, gd, SHAPE(N, c0));
    s->vo = arena_tensor(a, gd, SHAPE(N, g->out_ch));
    s->v = arena_tensor(a, gd, SHAPE(max64(N * c0, M * C)));
    s->w = arena_tensor(a, gd, SHAPE(max64(N * c0, M * C)));
    s->cat = arena_tensor(a, gd, SHAPE(M, 2 * C));

    /* the shared region: sized by a first pass over the transformer scratch */
    int64_t nu = max64(N * 2 * C, max64(N * 2 * c0, M * c0));
    struct tensor reg = tensor_view(NULL, DTYPE_U8, DEVICE_HOST, SHAPE(0));
    size_t ub = arena_round((size_t)nu * dtype_size(gd));
    for (int pass = 0; pass < 2; pass++) {
        const struct tensor *r = &reg;
        size_t off = 0;
        s->hf = carve(r, &off, DTYPE_F32, SHAPE(M, C));
        s->h = carve(r, &off, gd, SHAPE(M, C));
        s->qkv = carve(r, &off, gd, SHAPE(1, M, 3, H, OP_HEAD_DIM));
        s->a = carve(r, &off, gd, SHAPE(1, M, H, OP_HEAD_DIM));
        s->p = carve(r, &off, gd, SHAPE(M, C));
        s->q = carve(r, &off, gd, SHAPE(1, M, H, OP_HEAD_DIM));
        s->kv = carve(r, &off, gd, SHAPE(1, n_kv, 2, H, OP_HEAD_DIM));
        s->c1 = carve(r, &off, gd, SHAPE(1, C));
        s->f = carve(r, &off, gd, SHAPE(M, g->mlp));
        if (!pass) {
            reg = arena_tensor(a, DTYPE_U8, SHAPE((int64_t)(off > ub ? off : ub)));
            s->u = tensor_view(reg.data, gd, reg.device, SHAPE(nu));
        }
    }
    s->scratch = a;
}

size_t slatflow_act_bytes(const struct slatflow_model *m, int64_t n, int64_t mm, int64_t n_cond)
{
    struct slf_act s;
    struct arena plan;

    arena_plan_init(&plan, m->device == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act");
    act_plan(m, &plan, n, mm, n_cond > 0 ? n_cond : 1, &s);
    size_t bytes = plan.high_water;
    if (m->device == DEVICE_CUDA) {     /* im2col of the widest conv input, released after each */
        int64_t C = m->cfg.dim, c0 = m->cfg.io;
        size_t a = op_sparse_conv3_scratch_bytes(n, 2 * C, m->gemm_dt);
        size_t b = op_sparse_conv3_scratch_bytes(mm, C, m->gemm_dt);
        size_t c = op_sparse_conv3_scratch_bytes(n, 2 * c0, m->gemm_dt);
        bytes += a > b ? (a > c ? a : c) : (b > c ? b : c);
    }
    return bytes;
}

// ----------------------------------------------------------------------------
// forward

/* temb = t_embedder(t) (timestep_embedder.py:29-59): freqs exp(-ln(10000) k / 128)
 * in fp32, [cos | sin] of t * freqs in fp32, Linear -> SiLU -> Linear. */
static void temb_eval(const struct slatflow_model *m, const struct op_ctx *ctx, struct slf_act *s,
                      float t)
{
    const int half = SLF_FREQ_DIM / 2;
    const float nl = (float)-log(10000.0);
    float f[SLF_FREQ_DIM];

    for (int k = 0; k < half; k++) {
        float arg = t * expf(nl * (float)k / (float)half);
        f[k] = cosf(arg);
        f[half + k] = sinf(arg);
    }
    struct tensor fh = tensor_view(f, DTYPE_F32, DEVICE_HOST, SHAPE(1, SLF_FREQ_DIM));
    op_upload(ctx, &s->tf, &fh);
    op_linear(ctx, &s->e1, &s->tf, &m->t_w0, &m->t_b0, false);
    op_act(ctx, &s->e1, &s->e1, OP_ACT_SILU);
    op_linear(ctx, &s->te, &s->e1, &m->t_w2, &m->t_b2, false);
}

/* Taps of one res block. */
struct res_taps {
    float *conv1, *conv2, *skip;
};

/* out (R, cout) = SparseResBlock3d(x) after any up/downsample (the caller
 * passes the resampled x); x (R, cin) is clobbered. nbr (R, 27) at x's
 * coordinates. Uses s->emb, s->v, s->w. */
static void res_forward(const struct op_ctx *ctx, struct slf_act *s, const struct slatflow_res *r,
                        struct tensor *x, struct tensor *out, const struct tensor *nbr,
                        const struct res_taps *tp)
{
    int64_t R = x->shape[0], co = r->cout;
    struct tensor e = tensor_slice(&s->emb, 0, 0, 2 * co);
    struct tensor e2 = tensor_reshape(&e, SHAPE(1, 2 * co));
    struct tensor scale = tensor_slice(&e, 0, 0, co), shift = tensor_slice(&e, 0, co, co);
    struct tensor v = tensor_view(s->v.data, s->v.dtype, s->v.device, SHAPE(R, co));
    struct tensor w = tensor_view(s->w.data, s->w.dtype, s->w.device, SHAPE(R, co));

    ASSERT(x->shape[1] == r->cin && out->shape[0] == R && out->shape[1] == co);
    op_linear(ctx, &e2, &s->st, &r->emb_w, &r->emb_b, false);    /* emb_layers: SiLU, Linear */
    if (r->skip_w.data)
        op_linear(ctx, out, x, &r->skip_w, &r->skip_b, false);
    else
        op_copy(ctx, out, x);
    if (tp)
        tap(ctx, tp->skip, out);
    op_layernorm(ctx, x, x, &r->norm1_w, &r->norm1_b, SLF_EPS);
    op_act(ctx, x, x, OP_ACT_SILU);
    op_sparse_conv3(ctx, s->scratch, &v, x, &r->conv1_w, &r->conv1_b, nbr);
    if (tp)
        tap(ctx, tp->conv1, &v);
    op_layernorm(ctx, &v, &v, NULL, NULL, SLF_EPS);
    op_modulate(ctx, &v, &v, &scale, &shift);
    op_act(ctx, &v, &v, OP_ACT_SILU);
    op_sparse_conv3(ctx, s->scratch, &w, &v, &r->conv2_w, &r->conv2_b, nbr);
    if (tp)
        tap(ctx, tp->conv2, &w);
    op_add(ctx, out, out, &w);
}

static void block_forward(const struct slatflow_model *m, const struct op_ctx *ctx,
                          struct slf_act *s, int blk, const struct slatflow_cond *cond,
                          const struct slatflow_taps *tp)
{
    const struct slatflow_block *B = &m->blocks[blk];
    const struct slatflow_config *g = &m->cfg;
    int64_t C = g->dim, M = s->x.shape[0];
    const float sc = 1.0f / sqrtf((float)OP_HEAD_DIM);
    struct tensor ada = tensor_reshape(&s->emb, SHAPE(6, C));
    struct tensor ada2 = tensor_reshape(&s->emb, SHAPE(1, 6 * C));
    struct tensor sh_msa = tensor_slice(&ada, 0, 0, 1), sc_msa = tensor_slice(&ada, 0, 1, 1);
    struct tensor gt_msa = tensor_slice(&ada, 0, 2, 1), sh_mlp = tensor_slice(&ada, 0, 3, 1);
    struct tensor sc_mlp = tensor_slice(&ada, 0, 4, 1), gt_mlp = tensor_slice(&ada, 0, 5, 1);
    struct tensor qkv2 = tensor_reshape(&s->qkv, SHAPE(M, 3 * C));
    struct tensor a2 = tensor_reshape(&s->a, SHAPE(M, C));

    op_linear(ctx, &ada2, &s->st, &B->ada_w, &B->ada_b, false);

    /* self-attention (modulated.py:163-167) */
    op_layernorm(ctx, &s->hf, &s->x, NULL, NULL, SLF_EPS);
    op_modulate(ctx, &s->h, &s->hf, &sc_msa, &sh_msa);
    op_linear(ctx, &qkv2, &s->h, &B->qkv_w, &B->qkv_b, false);
    struct tensor q = op_heads_view(&s->qkv, 0), k = op_heads_view(&s->qkv, 1);
    struct tensor vv = op_heads_view(&s->qkv, 2);
    op_rmsnorm_heads(ctx, &q, &q, &B->q_gamma, sqrtf((float)OP_HEAD_DIM));
    op_rmsnorm_heads(ctx, &k, &k, &B->k_gamma, sqrtf((float)OP_HEAD_DIM));
    op_attention(ctx, &s->a, &q, &k, &vv, sc);
    op_linear(ctx, &s->p, &a2, &B->sa_out_w, &B->sa_out_b, false);
    if (tp)
        tap(ctx, tp->self_attn, &s->p);
    op_add_scaled(ctx, &s->x, &s->x, &gt_msa, &s->p);

    /* cross-attention (L168-170): affine norm2, no gate */
    if (!cond) {
        /* condition x 0: all keys equal, all values b_v -> every row is to_out(b_v) */
        struct tensor bv = tensor_slice(&B->ckv_b, 0, C, C);
        bv = tensor_reshape(&bv, SHAPE(1, C));
        op_linear(ctx, &s->c1, &bv, &B->co_w, &B->co_b, false);
        op_zero(ctx, &s->p);
        op_add_bias(ctx, &s->p, &s->p, &s->c1);
    } else {
        int64_t Nc = cond->c.shape[1], H = g->heads;
        struct tensor q2 = tensor_reshape(&s->q, SHAPE(M, C));
        struct tensor kv;
        op_layernorm(ctx, &s->h, &s->x, &B->norm2_w, &B->norm2_b, SLF_EPS);
        op_linear(ctx, &q2, &s->h, &B->cq_w, &B->cq_b, false);
        if (cond->kv.data) {                        /* projected once per request */
            kv = tensor_slice(&cond->kv, 0, blk, 1);
            kv = tensor_reshape(&kv, SHAPE(1, Nc, 2, H, OP_HEAD_DIM));
        } else {
            struct tensor c2 = tensor_reshape(&cond->c, SHAPE(Nc, g->cond_dim));
            struct tensor kv2 = tensor_reshape(&s->kv, SHAPE(Nc, 2 * C));
            op_linear(ctx, &kv2, &c2, &B->ckv_w, &B->ckv_b, false);
            kv = s->kv;
        }
        struct tensor ck = op_heads_view(&kv, 0), cv = op_heads_view(&kv, 1);
        op_attention(ctx, &s->a, &s->q, &ck, &cv, sc);
        op_linear(ctx, &s->p, &a2, &B->co_w, &B->co_b, false);
    }
    if (tp)
        tap(ctx, tp->cross_attn, &s->p);
    op_add(ctx, &s->x, &s->x, &s->p);

    /* MLP (L171-174) */
    op_layernorm(ctx, &s->hf, &s->x, NULL, NULL, SLF_EPS);
    op_modulate(ctx, &s->h, &s->hf, &sc_mlp, &sh_mlp);
    op_linear(ctx, &s->f, &s->h, &B->fc1_w, &B->fc1_b, false);
    op_act(ctx, &s->f, &s->f, OP_ACT_GELU_TANH);
    op_linear(ctx, &s->p, &s->f, &B->fc2_w, &B->fc2_b, false);
    if (tp)
        tap(ctx, tp->mlp, &s->p);
    op_add_scaled(ctx, &s->x, &s->x, &gt_mlp, &s->p);
    if (tp)
        tap(ctx, tp->block_out, &s->x);
}

void slatflow_forward(const struct slatflow_model *m, const struct op_ctx *ctx, struct arena *act,
                      const struct slatflow_geom *g, const struct tensor *x, float t,
                      const struct slatflow_cond *cond, struct tensor *v,
                      const struct slatflow_taps *taps)
{
    const struct slatflow_config *cf = &m->cfg;
    int64_t N = g->n, M = g->m, C = cf->dim, c0 = cf->io;
    size_t mark = arena_mark(act);
    struct slf_act s;

    ASSERT(x->dtype == DTYPE_F32 && x->device == DEVICE_HOST && tensor_is_contiguous(x) &&
           tensor_numel(x) == N * cf->in_ch);
    ASSERT(v->dtype == DTYPE_F32 && v->device == DEVICE_HOST && tensor_is_contiguous(v) &&
           tensor_numel(v) == N * cf->out_ch);
    ASSERT(!cond || (cond->c.ndim == 3 && cond->c.shape[2] == cf->cond_dim &&
                     cond->c.dtype == m->gemm_dt && cond->c.device == m->device));
    act_plan(m, act, N, M, cond && !cond->kv.data ? cond->c.shape[1] : 1, &s);

    /* temb (L272-279), shared SiLU for every emb_layers / adaLN */
    temb_eval(m, ctx, &s, t);
    if (taps)
        tap(ctx, taps->t_emb, &s.te);
    op_act(ctx, &s.st, &s.te, OP_ACT_SILU);

    /* input layer (L271) into u, then input_blocks.0 at full resolution */
    struct tensor xin = s.xin;
    op_upload(ctx, &xin, x);
    struct tensor u = tensor_view(s.u.data, s.u.dtype, s.u.device, SHAPE(N, c0));
    op_linear(ctx, &u, &xin, &m->in_w, &m->in_b, false);
    if (taps)
        tap(ctx, taps->input_layer, &u);
    struct res_taps rt0 = {taps ? taps->ib0_conv1 : NULL, taps ? taps->ib0_conv2 : NULL, NULL};
    res_forward(ctx, &s, &m->inb[0], &u, &s.s0, &g->nbr_hi, &rt0);
    if (taps)
        tap(ctx, taps->ib0, &s.s0);

    /* input_blocks.1: downsample (mean with the n/(n+1) shrink), then c0 -> C at (res/2)^3 */
    u = tensor_view(s.u.data, s.u.dtype, s.u.device, SHAPE(M, c0));
    op_sparse_down_mean(ctx, &u, &s.s0, &g->children);
    struct res_taps rt1 = {taps ? taps->ib1_conv1 : NULL, NULL, taps ? taps->ib1_skip : NULL};
    res_forward(ctx, &s, &m->inb[1], &u, &s.s1, &g->nbr_lo, &rt1);
    if (taps)
        tap(ctx, taps->ib1, &s.s1);

    /* APE (L287-288), transformer blocks */
    op_add(ctx, &s.x, &s.s1, &g->ape);
    if (taps)
        tap(ctx, taps->tokens_ape, &s.x);
    for (int i = 0; i < cf->depth; i++)
        block_forward(m, ctx, &s, i, cond, taps && taps->block == i ? taps : NULL);

    /* out_blocks.0: [h | s1] (M, 2C), upsample (row gather), 2C -> c0 */
    concat_cols(ctx, &s.cat, &s.x, &s.s1);
    u = tensor_view(s.u.data, s.u.dtype, s.u.device, SHAPE(N, 2 * C));
    op_sparse_gather_rows(ctx, &u, &s.cat, &g->parent);
    struct res_taps rt2 = {taps ? taps->ob0_conv1 : NULL, NULL, NULL};
    res_forward(ctx, &s, &m->outb[0], &u, &s.o, &g->nbr_hi, &rt2);
    if (taps)
        tap(ctx, taps->ob0, &s.o);

    /* out_blocks.1: [h | s0] (N, 2c0) -> c0 */
    u = tensor_view(s.u.data, s.u.dtype, s.u.device, SHAPE(N, 2 * c0));
    concat_cols(ctx, &u, &s.o, &s.s0);
    res_forward(ctx, &s, &m->outb[1], &u, &s.o, &g->nbr_hi, NULL);
    if (taps)
        tap(ctx, taps->ob1, &s.o);

    /* F.layer_norm (no affine, eps 1e-5), out_layer (L296-298) */
    op_layernorm(ctx, &s.o, &s.o, NULL, NULL, SLF_OUT_EPS);
    op_linear(ctx, &s.vo, &s.o, &m->out_w, &m->out_b, false);
    op_download(ctx, v, &s.vo);
    arena_release(act, mark);
}
