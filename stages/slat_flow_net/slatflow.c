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
#include "ops_window.h"
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// load

static const struct flow_names SLF_NAMES = {SLF_PREFIX, "the SLAT flow", "slat_generator.ckpt"};

/* Detect every size from tensor shapes (spec §8.7). */
static int detect(struct slatflow_config *g, const struct weights *w)
{
    const struct ckpt_entry *in, *out;
    int rc;

    memset(g, 0, sizeof(*g));
    if ((rc = flow_dims_detect(w, &SLF_NAMES, "", SLF_MAX_DEPTH, &g->dim, &g->depth, &g->heads,
                               &g->mlp, &g->cond_dim)))
        return rc;                                  /* logged */
    if (!(in = weights_find(w, "input_layer.weight")))
        return flow_missing(w, &SLF_NAMES, "input_layer.weight");
    if (!(out = weights_find(w, "out_layer.weight")))
        return flow_missing(w, &SLF_NAMES, "out_layer.weight");
    if (in->ndim != 2 || out->ndim != 2)
        goto bad;
    g->io = (int)in->shape[0];
    g->in_ch = (int)in->shape[1];
    g->out_ch = (int)out->shape[0];
    if (out->shape[1] != g->io)
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
    log_error("%s: the SLAT flow tensors under %s have inconsistent shapes (input_layer, "
              "out_layer against the width) (HINT: the checkpoint is "
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
    int64_t C = g->dim;
    int rc = flow_block_bind(&b->w, w, i, "", C, g->heads, g->mlp, g->cond_dim, gd);

    rc |= weights_bind_as(w, &b->ada_w, gd, SHAPE(6 * C, C), "blocks.%d.adaLN_modulation.1.weight", i);
    rc |= weights_bind_as(w, &b->ada_b, gd, SHAPE(6 * C), "blocks.%d.adaLN_modulation.1.bias", i);
    return rc;
}

/* Every tensor; the blocks last, block by block (stage_blocks.h layout), from
 * bind *first on. */
static int bind_all(struct slatflow_model *m, struct weights *w, int *first)
{
    const struct slatflow_config *g = &m->cfg;
    enum dtype gd = m->gemm_dt;
    int C = g->dim, c0 = g->io;
    int rc = 0;

    rc |= flow_temb_bind(&m->t_emb, w, "t_embedder", C, gd);
    rc |= weights_bind_as(w, &m->in_w, gd, SHAPE(c0, g->in_ch), "input_layer.weight");
    rc |= weights_bind_as(w, &m->in_b, gd, SHAPE(c0), "input_layer.bias");
    rc |= weights_bind_as(w, &m->out_w, gd, SHAPE(g->out_ch, c0), "out_layer.weight");
    rc |= weights_bind_as(w, &m->out_b, gd, SHAPE(g->out_ch), "out_layer.bias");
    rc |= bind_res(&m->inb[0], w, "input_blocks.0", c0, c0, C, gd);
    rc |= bind_res(&m->inb[1], w, "input_blocks.1", c0, C, C, gd);
    rc |= bind_res(&m->outb[0], w, "out_blocks.0", 2 * C, c0, C, gd);
    rc |= bind_res(&m->outb[1], w, "out_blocks.1", 2 * c0, c0, C, gd);
    *first = w->n_binds;
    for (int i = 0; i < g->depth; i++)
        rc |= bind_block(&m->blocks[i], w, g, i, gd);
    return rc ? S3D_ESHAPE : 0;
}

/* w (cout, 3, 3, 3, cin) KRSC on the model's device -> (27, cout, cin) tap-major in place
 * (through the host; at load). */
static void conv1_tapmajor(struct tensor *w)
{
    int64_t co = w->shape[0], ci = w->shape[4];
    size_t n = tensor_nbytes(w);
    void *a = malloc(n), *b = malloc(n);

    ASSERT(a && b && w->ndim == 5);
    struct tensor ha = tensor_view(a, w->dtype, DEVICE_HOST, w->shape, w->ndim);
    op_download(NULL, &ha, w);
    sparse_conv3_tapmajor(b, a, w->dtype, co, ci);
    *w = tensor_view(w->data, w->dtype, w->device, SHAPE(SPARSE_K3, co, ci));
    struct tensor hb = tensor_view(b, w->dtype, DEVICE_HOST, SHAPE(SPARSE_K3, co, ci));
    op_upload(NULL, w, &hb);
    free(a);
    free(b);
}

FLOW_BIND_FN(slf, struct slatflow_model, struct slatflow_block)

int slatflow_load(struct slatflow_model *m, const char *path, enum device dev, enum dtype gemm_dt,
                  int stream_slots)
{
    struct weights w;
    int rc;

    if ((rc = FLOW_MODEL_LOAD(m, &w, path, SLF_PREFIX, slf_bind, gemm_dt, dev, stream_slots)))
        return rc;
    const struct slatflow_config *g = &m->cfg;
    /* out_blocks.0 conv1 runs tap-wise on the parents (slatflow_forward): tap-major kernel */
    conv1_tapmajor(&m->outb[0].conv1_w);
    m->outb[0].tapwise = true;
    char ws[96];
    log_info("slat_flow: %s: width %d, %d heads, %d blocks, MLP %d, io %d, cond width %d, "
             "%d -> %d channels; %s", w.ck.path, g->dim, g->heads, g->depth, g->mlp, g->io,
             g->cond_dim, g->in_ch, g->out_ch,
             flow_weights_str(ws, sizeof(ws), &m->weights, gemm_dt, dev, &m->blk));
    weights_close(&w);
    return 0;
}

void slatflow_free(struct slatflow_model *m)
{
    if (m)
        flow_weights_free(&m->blk, &m->weights);
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

size_t slatflow_geom_bytes(const struct slatflow_model *m, int64_t n, int64_t mm)
{
    size_t e = dtype_size(m->gemm_dt);
    size_t hash = m->device == DEVICE_CUDA ? op_sparse_nbr_scratch_bytes(n) : 0;

    /* nbr_hi, nbr_up, parent, the coords (N rows); nbr_lo, children, the parent coords,
     * the APE (M rows); then the neighbour-map hash (released at once) */
    return arena_round((size_t)n * SPARSE_K3 * 4) * 2 + arena_round((size_t)n * 4) +
           arena_round((size_t)n * 4 * 4) + arena_round((size_t)mm * SPARSE_K3 * 4) +
           arena_round((size_t)mm * 8 * 4) + arena_round((size_t)mm * 4 * 4) +
           arena_round((size_t)mm * (size_t)m->cfg.dim * e) + hash;
}

/* The APE of AbsolutePositionEmbedder(C) (transformer/blocks.py:9-56) is op_ape_add with no x
 * (kernels/ops_window.h): per axis [sin(p f_j) | cos(p f_j)], f_j = 1 / 10000^(j / fd),
 * fd = C / 3 / 2, fp32, zero padded to C, rounded once to gemm_dt (L287-288 under autocast). */
void slatflow_geom_build(const struct slatflow_model *m, const struct op_ctx *ctx,
                         struct arena *a, const struct tensor *coords, int res,
                         struct slatflow_geom *g)
{
    int64_t N = coords->shape[0], C = m->cfg.dim;
    int32_t *pc = malloc(sizeof(int32_t) * (size_t)(N * 4));
    int32_t *par = malloc(sizeof(int32_t) * (size_t)N);
    int32_t *ch = malloc(sizeof(int32_t) * (size_t)(N * 8));

    ASSERT(pc && par && ch && coords->dtype == DTYPE_I32 && coords->device == DEVICE_HOST);
    memset(g, 0, sizeof(*g));
    g->n = N;
    struct tensor tpc = tensor_view(pc, DTYPE_I32, DEVICE_HOST, SHAPE(N, 4));
    struct tensor tpar = tensor_view(par, DTYPE_I32, DEVICE_HOST, SHAPE(N));
    struct tensor tch = tensor_view(ch, DTYPE_I32, DEVICE_HOST, SHAPE(N, 8));

    /* the x2 downsample index on the host (one pass over the coords) */
    int64_t M = op_sparse_down_index_cpu(&tpc, &tpar, &tch, coords, res);
    g->m = M;
    struct tensor cd = arena_tensor(a, DTYPE_I32, SHAPE(N, 4));
    struct tensor pcd = arena_tensor(a, DTYPE_I32, SHAPE(M, 4));
    struct tensor pcm = tensor_slice(&tpc, 0, 0, M), chm = tensor_slice(&tch, 0, 0, M);
    g->parent = arena_tensor(a, DTYPE_I32, SHAPE(N));
    g->children = arena_tensor(a, DTYPE_I32, SHAPE(M, 8));
    g->nbr_hi = arena_tensor(a, DTYPE_I32, SHAPE(N, SPARSE_K3));
    g->nbr_lo = arena_tensor(a, DTYPE_I32, SHAPE(M, SPARSE_K3));
    g->nbr_up = arena_tensor(a, DTYPE_I32, SHAPE(N, SPARSE_K3));
    g->ape = arena_tensor(a, m->gemm_dt, SHAPE(M, C));
    op_upload(ctx, &cd, coords);
    op_upload(ctx, &pcd, &pcm);
    op_upload(ctx, &g->parent, &tpar);
    op_upload(ctx, &g->children, &chm);

    /* on the model's device: the neighbour maps at res^3 and (res/2)^3, the APE */
    op_sparse_nbr(ctx, a, &g->nbr_hi, &cd);
    op_sparse_nbr(ctx, a, &g->nbr_lo, &pcd);
    op_ape_add(ctx, &g->ape, NULL, &pcd);

    /* nbr_up = parent[nbr_hi] (-1 kept), composed on the host (one pass) */
    int32_t *nb = malloc(sizeof(int32_t) * (size_t)(N * SPARSE_K3));
    ASSERT(nb);
    struct tensor tnb = tensor_view(nb, DTYPE_I32, DEVICE_HOST, SHAPE(N, SPARSE_K3));
    op_download(ctx, &tnb, &g->nbr_hi);
    for (int64_t i = 0; i < N * SPARSE_K3; i++)
        nb[i] = nb[i] >= 0 ? par[nb[i]] : -1;
    op_upload(ctx, &g->nbr_up, &tnb);
    free(nb);
    free(pc), free(par), free(ch);
}

int slatflow_check_cond(const struct slatflow_model *m, const struct tensor *c, const char *name,
                        char *err, size_t len)
{
    return flow_check_cond(c, m->cfg.cond_dim, "slat_flow", "slat_generator.ckpt", name, err, len);
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
    /* an F32 condition for an F16 model: uploaded as is into the free space above and cast
     * on the device (the host cast of 5.6 M values costs ~20 ms), else cast on the host;
     * the same bits either way (kernels/ops_copy.h) */
    size_t mark = arena_mark(a);
    void *tmp = m->device == DEVICE_CUDA && cond->dtype != m->gemm_dt ?
                arena_alloc(a, tensor_nbytes(cond)) : NULL;
    if (tmp) {
        struct tensor t = tensor_view(tmp, cond->dtype, DEVICE_CUDA, cond->shape, cond->ndim);
        op_upload(ctx, &t, cond);
        op_copy(ctx, &out->c, &t);                  /* stream order protects tmp's reuse */
    } else {
        op_upload(ctx, &out->c, cond);
    }
    arena_release(a, mark);
    if (!cache_kv)
        return;
    /* the K/V an evaluation would project, once: (depth, Nc, 2C) */
    struct tensor c2 = tensor_reshape(&out->c, SHAPE(Nc, g->cond_dim));
    out->kv = arena_tensor(a, m->gemm_dt, SHAPE(g->depth, Nc, 2 * C));
    for (int i = 0; i < g->depth; i++) {
        struct tensor kv = tensor_slice(&out->kv, 0, i, 1);
        kv = tensor_reshape(&kv, SHAPE(Nc, 2 * C));
        const struct slatflow_block *B = stage_blocks_get(&m->blk, ctx, i);
        op_linear(ctx, &kv, &c2, &B->w.ckv_w, &B->w.ckv_b, false);
    }
}

// ----------------------------------------------------------------------------
// activations: fixed buffers, then one phase's buffers at a time above them; the
// rest of the arena is the sparse convs' scratch. Sized by running the same
// allocations on a planning arena.

/* The most scratch a conv phase asks the plan for (the convs take what is free:
 * smaller im2col chunks / fewer taps per GEMM when less is). */
#define SLF_CONV_SCRATCH ((size_t)32 << 20)

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

struct slf_act {
    /* fixed for the whole evaluation */
    struct tensor tf;       /* (1, 256) gemm_dt: frequency embedding */
    struct tensor e1;       /* (1, C) gemm_dt: embedder hidden */
    struct tensor te;       /* (1, C) gemm_dt: t_embedder(t) */
    struct tensor st;       /* (1, C) gemm_dt: SiLU(temb) */
    struct tensor emb;      /* (6C) gemm_dt: res-block (scale | shift) or adaLN */
    struct tensor xin;      /* (N, in_ch) gemm_dt */
    struct tensor s0;       /* (N, c0) gemm_dt: skip 0 (input_blocks.0 output) */
    struct tensor s1;       /* (M, C) gemm_dt: skip 1 (input_blocks.1 output) */
    struct tensor x;        /* (M, C) gemm_dt: the token stream */
    struct tensor o;        /* (N, c0) gemm_dt: res-block output at full resolution */
    struct tensor vo;       /* (N, out_ch) gemm_dt: velocity */
    /* res-block phases (input blocks; out_blocks.1): */
    struct tensor u;        /* flat, max(N c0, M c0, N 2c0) gemm_dt: res-block input */
    struct tensor v, w;     /* flat, max(N c0, M C) gemm_dt: res-block scratch */
    /* out_blocks.0 phase: */
    struct tensor cat;      /* (M, 2C) gemm_dt: [h | s1] at the parents */
    /* transformer phase: */
    struct tensor h;        /* (M, C) gemm_dt: GEMM input */
    struct tensor big;      /* flat, max(3 M C, M C + Nkv 2C) gemm_dt: qkv | q, kv */
    struct tensor a;        /* (1, M, H, 64) gemm_dt: attention output, right after big
                             * (the MLP hidden rows span big and a) */
    struct tensor p;        /* (M, C) gemm_dt: sub-module output, in h's memory (each
                             * row of h is read before p's row is written) */
    struct tensor c1;       /* (1, C) gemm_dt: unconditional cross-attention row */
    int64_t       n_kv;     /* condition rows whose K/V the evaluation projects (>= 1) */
    struct arena *scratch;  /* the activation arena (sparse conv scratch on CUDA) */
};

static void act_fixed(const struct slatflow_model *m, struct arena *a, int64_t N, int64_t M,
                      int64_t n_kv, struct slf_act *s)
{
    const struct slatflow_config *g = &m->cfg;
    enum dtype gd = m->gemm_dt;
    int64_t C = g->dim, c0 = g->io;

    memset(s, 0, sizeof(*s));
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
    s->n_kv = n_kv;
    s->scratch = a;
}

/* The buffers of a res-block phase (u, v, w); or of out_blocks.0 (cat, v, w). */
static void act_res(const struct slatflow_model *m, struct arena *a, int64_t N, int64_t M,
                    bool up, struct slf_act *s)
{
    enum dtype gd = m->gemm_dt;
    int64_t C = m->cfg.dim, c0 = m->cfg.io;

    if (up)
        s->cat = arena_tensor(a, gd, SHAPE(M, 2 * C));
    else
        s->u = arena_tensor(a, gd, SHAPE(max64(max64(N * c0, M * c0), N * 2 * c0)));
    s->v = arena_tensor(a, gd, SHAPE(max64(N * c0, M * C)));
    s->w = arena_tensor(a, gd, SHAPE(max64(N * c0, M * C)));
}

/* The transformer phase's buffers. */
static void act_blocks(const struct slatflow_model *m, struct arena *a, int64_t M,
                       struct slf_act *s)
{
    enum dtype gd = m->gemm_dt;
    int64_t C = m->cfg.dim, H = m->cfg.heads;

    s->h = arena_tensor(a, gd, SHAPE(M, C));
    /* big and a adjacent: arena_tensor rounds big up to ARENA_ALIGN, a follows */
    s->big = arena_tensor(a, gd, SHAPE(max64(3 * M * C, M * C + s->n_kv * 2 * C)));
    s->a = arena_tensor(a, gd, SHAPE(1, M, H, OP_HEAD_DIM));
    s->p = s->h;
    s->c1 = arena_tensor(a, gd, SHAPE(1, C));
}

/* Scratch a conv phase wants: its widest conv's full need (im2col of T rows of
 * Cin; the tap-wise conv with all 27 taps), at most SLF_CONV_SCRATCH. */
static size_t conv_want(const struct slatflow_model *m, int64_t T, int64_t Cin, int64_t Tx,
                        bool tap)
{
    size_t b = tap ? op_sparse_conv3_tap_scratch_bytes(T, Tx, m->cfg.io, SPARSE_K3)
                   : op_sparse_conv3_scratch_bytes(T, Cin, m->gemm_dt);
    size_t one = tap ? op_sparse_conv3_tap_scratch_bytes(T, Tx, m->cfg.io, 1) : 0;

    b = b < SLF_CONV_SCRATCH ? b : SLF_CONV_SCRATCH;
    return (b > one ? b : one) + ARENA_ALIGN;     /* the convs keep ARENA_ALIGN spare */
}

size_t slatflow_act_bytes(const struct slatflow_model *m, int64_t n, int64_t mm, int64_t n_cond)
{
    struct slf_act s;
    struct arena plan;
    bool cuda = m->device == DEVICE_CUDA;
    int64_t C = m->cfg.dim, c0 = m->cfg.io;

    arena_plan_init(&plan, cuda ? ARENA_DEVICE : ARENA_HOST, "act");
    act_fixed(m, &plan, n, mm, n_cond > 0 ? n_cond : 1, &s);
    size_t mark = arena_mark(&plan);
    /* input blocks / out_blocks.1: u, v, w + im2col (widest: C at M rows, 2c0 at N) */
    act_res(m, &plan, n, mm, false, &s);
    if (cuda) {
        size_t w1 = conv_want(m, mm, C, mm, false), w2 = conv_want(m, n, 2 * c0, n, false);
        arena_alloc(&plan, w1 > w2 ? w1 : w2);
    }
    arena_release(&plan, mark);
    /* out_blocks.0: cat, v, w + the tap-wise conv1 or conv2's im2col */
    act_res(m, &plan, n, mm, true, &s);
    if (cuda) {
        size_t w1 = conv_want(m, n, 2 * C, mm, m->outb[0].tapwise);
        size_t w2 = conv_want(m, n, c0, n, false);
        arena_alloc(&plan, w1 > w2 ? w1 : w2);
    }
    arena_release(&plan, mark);
    act_blocks(m, &plan, mm, &s);
    return plan.high_water;
}

// ----------------------------------------------------------------------------
// forward

/* Taps of one res block. */
struct res_taps {
    float *conv1, *conv2, *skip;
};

/* out (R, cout) = SparseResBlock3d(x) after any up/downsample. Without up, x
 * (R, cin) is the resampled input; with up (R) I32, the x2 upsample's parent
 * index, x (Rp, cin) holds the parents' rows and the block runs as on
 * x[up]: the row-wise skip, LayerNorm and SiLU at the Rp rows (then the skip
 * gathered to R rows), conv1 through nbr1 (R, 27) into x's rows (nbr_up)
 * tap-wise when r->tapwise. x is clobbered; conv2 through nbr2 (R, 27).
 * Uses s->emb, s->v, s->w. */
static void res_forward(const struct op_ctx *ctx, struct slf_act *s, const struct slatflow_res *r,
                        struct tensor *x, struct tensor *out, const struct tensor *nbr1,
                        const struct tensor *nbr2, const struct tensor *up,
                        const struct res_taps *tp)
{
    int64_t R = out->shape[0], Rx = x->shape[0], co = r->cout;
    struct tensor e = tensor_slice(&s->emb, 0, 0, 2 * co);
    struct tensor e2 = tensor_reshape(&e, SHAPE(1, 2 * co));
    struct tensor scale = tensor_slice(&e, 0, 0, co), shift = tensor_slice(&e, 0, co, co);
    struct tensor v = tensor_view(s->v.data, s->v.dtype, s->v.device, SHAPE(R, co));
    struct tensor w = tensor_view(s->w.data, s->w.dtype, s->w.device, SHAPE(R, co));
    struct tensor sk = up ? tensor_view(s->w.data, s->w.dtype, s->w.device, SHAPE(Rx, co)) : *out;

    ASSERT(x->shape[1] == r->cin && out->shape[1] == co && (up || Rx == R));
    ASSERT(tensor_numel(&s->w) >= Rx * co);
    op_linear(ctx, &e2, &s->st, &r->emb_w, &r->emb_b, false);    /* emb_layers: SiLU, Linear */
    if (r->skip_w.data)
        op_linear(ctx, &sk, x, &r->skip_w, &r->skip_b, false);
    else
        op_copy(ctx, &sk, x);
    if (up)
        op_sparse_gather_rows(ctx, out, &sk, up);
    if (tp)
        tap(ctx, tp->skip, out);
    op_layernorm(ctx, x, x, &r->norm1_w, &r->norm1_b, SLF_EPS);
    op_act(ctx, x, x, OP_ACT_SILU);
    if (r->tapwise)
        op_sparse_conv3_tap(ctx, s->scratch, &v, x, &r->conv1_w, &r->conv1_b, nbr1);
    else
        op_sparse_conv3(ctx, s->scratch, &v, x, &r->conv1_w, &r->conv1_b, nbr1);
    if (tp)
        tap(ctx, tp->conv1, &v);
    op_layernorm(ctx, &v, &v, NULL, NULL, SLF_EPS);
    op_modulate(ctx, &v, &v, &scale, &shift);
    op_act(ctx, &v, &v, OP_ACT_SILU);
    op_sparse_conv3(ctx, s->scratch, &w, &v, &r->conv2_w, &r->conv2_b, nbr2);
    if (tp)
        tap(ctx, tp->conv2, &w);
    op_add(ctx, out, out, &w);
}

static void block_forward(const struct slatflow_model *m, const struct op_ctx *ctx,
                          struct slf_act *s, int blk, const struct slatflow_cond *cond,
                          const struct slatflow_taps *tp)
{
    const struct slatflow_block *B = stage_blocks_get(&m->blk, ctx, blk);
    const struct flow_block_w *W = &B->w;
    const struct slatflow_config *g = &m->cfg;
    int64_t C = g->dim, H = g->heads, M = s->x.shape[0];
    const float sc = 1.0f / sqrtf((float)OP_HEAD_DIM);
    struct tensor ada = tensor_reshape(&s->emb, SHAPE(6, C));
    struct tensor ada2 = tensor_reshape(&s->emb, SHAPE(1, 6 * C));
    struct tensor sh_msa = tensor_slice(&ada, 0, 0, 1), sc_msa = tensor_slice(&ada, 0, 1, 1);
    struct tensor gt_msa = tensor_slice(&ada, 0, 2, 1), sh_mlp = tensor_slice(&ada, 0, 3, 1);
    struct tensor sc_mlp = tensor_slice(&ada, 0, 4, 1), gt_mlp = tensor_slice(&ada, 0, 5, 1);
    struct tensor qkv = tensor_view(s->big.data, s->big.dtype, s->big.device,
                                    SHAPE(1, M, 3, H, OP_HEAD_DIM));
    struct tensor qkv2 = tensor_reshape(&qkv, SHAPE(M, 3 * C));
    struct tensor a2 = tensor_reshape(&s->a, SHAPE(M, C));

    op_linear(ctx, &ada2, &s->st, &B->ada_w, &B->ada_b, false);

    /* self-attention (modulated.py:163-167) */
    op_layernorm_mod(ctx, &s->h, &s->x, NULL, NULL, &sc_msa, &sh_msa, SLF_EPS, false);
    op_linear(ctx, &qkv2, &s->h, &W->qkv_w, &W->qkv_b, false);
    struct tensor q = op_heads_view(&qkv, 0), k = op_heads_view(&qkv, 1);
    struct tensor vv = op_heads_view(&qkv, 2);
    op_rmsnorm_heads(ctx, &q, &q, &W->q_gamma, sqrtf((float)OP_HEAD_DIM));
    op_rmsnorm_heads(ctx, &k, &k, &W->k_gamma, sqrtf((float)OP_HEAD_DIM));
    op_attention(ctx, &s->a, &q, &k, &vv, sc);
    op_linear(ctx, &s->p, &a2, &W->sa_out_w, &W->sa_out_b, false);
    if (tp)
        tap(ctx, tp->self_attn, &s->p);
    op_add_scaled(ctx, &s->x, &s->x, &gt_msa, &s->p);

    /* cross-attention (L168-170): affine norm2, no gate; q and any K/V in big */
    if (!cond) {
        /* condition x 0: all keys equal, all values b_v -> every row is to_out(b_v) */
        struct tensor bv = tensor_slice(&W->ckv_b, 0, C, C);
        bv = tensor_reshape(&bv, SHAPE(1, C));
        op_linear(ctx, &s->c1, &bv, &W->co_w, &W->co_b, false);
        op_zero(ctx, &s->p);
        op_add_bias(ctx, &s->p, &s->p, &s->c1);
    } else {
        int64_t Nc = cond->c.shape[1];
        struct tensor cq = tensor_view(s->big.data, s->big.dtype, s->big.device,
                                       SHAPE(1, M, H, OP_HEAD_DIM));
        struct tensor q2 = tensor_reshape(&cq, SHAPE(M, C));
        struct tensor kv;
        op_layernorm(ctx, &s->h, &s->x, &W->norm2_w, &W->norm2_b, SLF_EPS);
        op_linear(ctx, &q2, &s->h, &W->cq_w, &W->cq_b, false);
        if (cond->kv.data) {                        /* projected once per request */
            kv = tensor_slice(&cond->kv, 0, blk, 1);
            kv = tensor_reshape(&kv, SHAPE(1, Nc, 2, H, OP_HEAD_DIM));
        } else {
            ASSERT(Nc <= s->n_kv);
            struct tensor c2 = tensor_reshape(&cond->c, SHAPE(Nc, g->cond_dim));
            struct tensor kv2 = tensor_view((char *)s->big.data + tensor_nbytes(&q2),
                                            s->big.dtype, s->big.device, SHAPE(Nc, 2 * C));
            op_linear(ctx, &kv2, &c2, &W->ckv_w, &W->ckv_b, false);
            kv = tensor_reshape(&kv2, SHAPE(1, Nc, 2, H, OP_HEAD_DIM));
        }
        struct tensor ck = op_heads_view(&kv, 0), cv = op_heads_view(&kv, 1);
        op_attention(ctx, &s->a, &cq, &ck, &cv, sc);
        op_linear(ctx, &s->p, &a2, &W->co_w, &W->co_b, false);
    }
    if (tp)
        tap(ctx, tp->cross_attn, &s->p);
    op_add(ctx, &s->x, &s->x, &s->p);

    /* MLP (L171-174): the hidden rows in big and a (one chunk at the released widths) */
    op_layernorm_mod(ctx, &s->h, &s->x, NULL, NULL, &sc_mlp, &sh_mlp, SLF_EPS, false);
    size_t room = (size_t)((char *)s->a.data - (char *)s->big.data) + tensor_nbytes(&s->a);
    int64_t mr = (int64_t)(room / ((size_t)g->mlp * dtype_size(s->h.dtype)));
    ASSERT(mr >= 1);
    for (int64_t r0 = 0; r0 < M; r0 += mr) {
        int64_t rows = M - r0 < mr ? M - r0 : mr;
        struct tensor hr = tensor_slice(&s->h, 0, r0, rows), pr = tensor_slice(&s->p, 0, r0, rows);
        struct tensor f = tensor_view(s->big.data, s->big.dtype, s->big.device,
                                      SHAPE(rows, g->mlp));
        op_linear_gelu(ctx, &f, &hr, &W->fc1_w, &W->fc1_b);     /* fc1 + GELU(tanh) */
        op_linear(ctx, &pr, &f, &W->fc2_w, &W->fc2_b, false);
    }
    if (tp)
        tap(ctx, tp->mlp, &s->p);
    op_add_scaled(ctx, &s->x, &s->x, &gt_mlp, &s->p);
    if (tp)
        tap(ctx, tp->block_out, &s->x);
}

/* The part of an evaluation that does not depend on the condition: temb, the
 * input layer and input blocks into s->s0, s->s1 (fixed buffers; the phase's
 * buffers above `fixed` are released). */
static void fwd_in(const struct slatflow_model *m, const struct op_ctx *ctx, struct arena *act,
                   const struct slatflow_geom *g, const struct tensor *x, float t,
                   struct slf_act *s, size_t fixed, const struct slatflow_taps *taps)
{
    int64_t N = g->n, M = g->m, c0 = m->cfg.io;

    /* temb (L272-279), shared SiLU for every emb_layers / adaLN */
    flow_temb_eval(ctx, &m->t_emb, t, &s->tf, &s->e1, &s->te);
    if (taps)
        tap(ctx, taps->t_emb, &s->te);
    op_act(ctx, &s->st, &s->te, OP_ACT_SILU);

    /* input layer (L271) into u, then input_blocks.0 at full resolution */
    act_res(m, act, N, M, false, s);
    struct tensor xin = s->xin;
    if (m->device == DEVICE_CUDA && x->device == DEVICE_CUDA)
        op_copy(ctx, &xin, x);                      /* the sampler's x, cast on the device */
    else
        op_upload(ctx, &xin, x);
    struct tensor u = tensor_view(s->u.data, s->u.dtype, s->u.device, SHAPE(N, c0));
    op_linear(ctx, &u, &xin, &m->in_w, &m->in_b, false);
    if (taps)
        tap(ctx, taps->input_layer, &u);
    struct res_taps rt0 = {taps ? taps->ib0_conv1 : NULL, taps ? taps->ib0_conv2 : NULL, NULL};
    res_forward(ctx, s, &m->inb[0], &u, &s->s0, &g->nbr_hi, &g->nbr_hi, NULL, &rt0);
    if (taps)
        tap(ctx, taps->ib0, &s->s0);

    /* input_blocks.1: downsample (mean with the n/(n+1) shrink), then c0 -> C at (res/2)^3 */
    u = tensor_view(s->u.data, s->u.dtype, s->u.device, SHAPE(M, c0));
    op_sparse_down_mean(ctx, &u, &s->s0, &g->children);
    struct res_taps rt1 = {taps ? taps->ib1_conv1 : NULL, NULL, taps ? taps->ib1_skip : NULL};
    res_forward(ctx, s, &m->inb[1], &u, &s->s1, &g->nbr_lo, &g->nbr_lo, NULL, &rt1);
    if (taps)
        tap(ctx, taps->ib1, &s->s1);
    arena_release(act, fixed);
}

/* The transformer: s->x = s->s1 + APE, then the blocks with cond (NULL:
 * unconditional); the blocks' buffers are released to fixed. */
static void fwd_blocks(const struct slatflow_model *m, const struct op_ctx *ctx, struct arena *act,
                       const struct slatflow_geom *g, const struct slatflow_cond *cond,
                       struct slf_act *s, size_t fixed, const struct slatflow_taps *taps)
{
    /* APE (L287-288), transformer blocks */
    op_add(ctx, &s->x, &s->s1, &g->ape);
    if (taps)
        tap(ctx, taps->tokens_ape, &s->x);
    act_blocks(m, act, g->m, s);
    for (int i = 0; i < m->cfg.depth; i++)
        block_forward(m, ctx, s, i, cond, taps && taps->block == i ? taps : NULL);
    arena_release(act, fixed);
}

/* The out blocks from s->x, s->s0 and s->s1 (left unchanged), the velocity into v. */
static void fwd_tail(const struct slatflow_model *m, const struct op_ctx *ctx, struct arena *act,
                     const struct slatflow_geom *g, struct tensor *v, struct slf_act *s,
                     size_t fixed, const struct slatflow_taps *taps)
{
    int64_t N = g->n, M = g->m, c0 = m->cfg.io;

    /* out_blocks.0: [h | s1] (M, 2C) at the parents, upsampled inside (row gather), 2C -> c0 */
    act_res(m, act, N, M, true, s);
    concat_cols(ctx, &s->cat, &s->x, &s->s1);
    struct res_taps rt2 = {taps ? taps->ob0_conv1 : NULL, NULL, NULL};
    res_forward(ctx, s, &m->outb[0], &s->cat, &s->o, &g->nbr_up, &g->nbr_hi, &g->parent, &rt2);
    if (taps)
        tap(ctx, taps->ob0, &s->o);
    arena_release(act, fixed);

    /* out_blocks.1: [h | s0] (N, 2c0) -> c0 */
    act_res(m, act, N, M, false, s);
    struct tensor u = tensor_view(s->u.data, s->u.dtype, s->u.device, SHAPE(N, 2 * c0));
    concat_cols(ctx, &u, &s->o, &s->s0);
    res_forward(ctx, s, &m->outb[1], &u, &s->o, &g->nbr_hi, &g->nbr_hi, NULL, NULL);
    if (taps)
        tap(ctx, taps->ob1, &s->o);

    /* F.layer_norm (no affine, eps 1e-5), out_layer (L296-298) */
    op_layernorm(ctx, &s->o, &s->o, NULL, NULL, SLF_OUT_EPS);
    op_linear(ctx, &s->vo, &s->o, &m->out_w, &m->out_b, false);
    if (m->device == DEVICE_CUDA && v->device == DEVICE_CUDA)
        op_copy(ctx, v, &s->vo);                    /* stays on the device (the sampler) */
    else
        op_download(ctx, v, &s->vo);
    arena_release(act, fixed);
}

/* The operand checks of both entry points. */
static void fwd_check(const struct slatflow_model *m, const struct slatflow_geom *g,
                      const struct tensor *x, const struct slatflow_cond *cond,
                      const struct tensor *v)
{
    const struct slatflow_config *cf = &m->cfg;

    ASSERT(x->dtype == DTYPE_F32 && tensor_is_contiguous(x) &&
           tensor_numel(x) == g->n * cf->in_ch);
    ASSERT(tensor_is_contiguous(v) && tensor_numel(v) == g->n * cf->out_ch);
    ASSERT((x->device == DEVICE_HOST || x->device == m->device) &&
           (v->device == DEVICE_HOST ? v->dtype == DTYPE_F32 : v->device == m->device));
    ASSERT(!cond || (cond->c.ndim == 3 && cond->c.shape[2] == cf->cond_dim &&
                     cond->c.dtype == m->gemm_dt && cond->c.device == m->device));
}

void slatflow_forward(const struct slatflow_model *m, const struct op_ctx *ctx, struct arena *act,
                      const struct slatflow_geom *g, const struct tensor *x, float t,
                      const struct slatflow_cond *cond, struct tensor *v,
                      const struct slatflow_taps *taps)
{
    size_t mark = arena_mark(act);
    struct slf_act s;

    fwd_check(m, g, x, cond, v);
    act_fixed(m, act, g->n, g->m, cond && !cond->kv.data ? cond->c.shape[1] : 1, &s);
    size_t fixed = arena_mark(act);
    fwd_in(m, ctx, act, g, x, t, &s, fixed, taps);
    fwd_blocks(m, ctx, act, g, cond, &s, fixed, taps);
    fwd_tail(m, ctx, act, g, v, &s, fixed, taps);
    arena_release(act, mark);
}

size_t slatflow_cfg_extra_bytes(const struct slatflow_model *m, int64_t mm)
{
    return arena_round((size_t)(mm * m->cfg.dim) * dtype_size(m->gemm_dt));
}

void slatflow_forward_cfg(const struct slatflow_model *m, const struct op_ctx *ctx,
                          struct arena *act, const struct slatflow_geom *g,
                          const struct tensor *x, float t, const struct slatflow_cond *cond,
                          struct tensor *vc, struct tensor *vu)
{
    size_t mark = arena_mark(act);
    struct slf_act s;

    ASSERT(cond);
    fwd_check(m, g, x, cond, vc);
    fwd_check(m, g, x, NULL, vu);
    act_fixed(m, act, g->n, g->m, !cond->kv.data ? cond->c.shape[1] : 1, &s);
    struct tensor xc = s.x, xu = arena_tensor(act, m->gemm_dt, SHAPE(g->m, m->cfg.dim));
    size_t fixed = arena_mark(act);
    fwd_in(m, ctx, act, g, x, t, &s, fixed, NULL);
    /* the transformer for both, block by block (each block's weights used twice while on
     * the device: a streamed model copies each once a step), then the out blocks of each */
    op_add(ctx, &xc, &s.s1, &g->ape);
    op_add(ctx, &xu, &s.s1, &g->ape);
    act_blocks(m, act, g->m, &s);
    for (int i = 0; i < m->cfg.depth; i++) {
        s.x = xc;
        block_forward(m, ctx, &s, i, cond, NULL);
        s.x = xu;
        block_forward(m, ctx, &s, i, NULL, NULL);
    }
    arena_release(act, fixed);
    s.x = xc;
    fwd_tail(m, ctx, act, g, vc, &s, fixed, NULL);
    s.x = xu;
    fwd_tail(m, ctx, act, g, vu, &s, fixed, NULL);
    arena_release(act, mark);
}
