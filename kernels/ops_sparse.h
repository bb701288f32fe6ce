/*
 * ops_sparse.h - the sparse 3-D op family of the SLAT flow and the mesh
 * decoder: neighbour maps, submanifold 3x3x3 convolution, x2 down/upsampling,
 * subdivision and GroupNorm over sparse sites.
 *
 * A sparse tensor (spec generators.md §8.2, decoders.md §4.3) is
 *     coords (T, 4) I32, rows (b, x, y, z), unique; batch b always 0 here
 *     feats  (T, C) any float dtype, row i belongs to coords[i]
 * and its row order is whatever produced it (lexicographic from the SS stage
 * and after a downsample, 8i + k after a subdivide); no op re-sorts.
 *
 * Conventions are those of ops.h (struct tensor views in PyTorch order,
 * contiguous, F32/F16/BF16, fp32 math, one rounding into the output dtype,
 * _cpu on host tensors, _cuda queued on ctx->stream, shape/dtype mismatches
 * between our own ops are internal faults). Coordinates are not user input
 * here: the stage that reads them checks the preconditions below (unique rows,
 * 0 <= x, y, z < res <= SPARSE_MAX_RES, b == 0) and returns S3D_ESHAPE with a
 * HINT otherwise; sparse_coords_check() does that check on the host.
 *
 * Memory: nothing is allocated on the device except from the caller's arenas
 * (common/arena.h). Scratch taken from a `scratch` arena is released before
 * the op returns; the *_scratch_bytes() functions say how much an op takes.
 *
 * Reference code (sam-3d-objects cf06676, TD = sam3d_objects/model/backbone/
 * tdfy_dit/modules/sparse): TD/conv/conv_spconv.py:29-38 (SubMConv3d),
 * TD/spatial.py:10-131 (SparseDownsample/Upsample/Subdivide), TD/norm.py:15-64
 * (SparseGroupNorm32). CPU: kernels/cpu/sparse*.c; CUDA: kernels/cuda/sparse.cu;
 * test: tests/test_op_sparse.c (dense-conv, hand-made and spconv golden cases:
 * tests/fixtures/sparse_ops, made by tools/ref/dump_sparse_ops.py).
 */
#ifndef S3D_OPS_SPARSE_H
#define S3D_OPS_SPARSE_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SPARSE_K3        27      /* offsets of a 3x3x3 kernel */
#define SPARSE_MAX_RES   4096    /* coordinates must be in [0, SPARSE_MAX_RES) */

/* True when coords (T, 4) I32 on the host are a valid sparse coordinate set at
 * resolution res: b == 0, 0 <= x, y, z < res <= SPARSE_MAX_RES, no duplicate
 * rows. Otherwise logs one line naming `what`, the first bad row and a HINT,
 * and returns false. (For stages, on data read from an artifact.) */
bool sparse_coords_check(const struct tensor *coords, int res, const char *what);

/* ASSERT that t is a contiguous I32 tensor on dev of shape (rows, cols)
 * (cols 0: one-dimensional (rows)); rows < 0 accepts any row count. Names op. */
void sparse_check_i32(const char *op, const struct tensor *t, enum device dev, int64_t rows,
                      int64_t cols);

// ----------------------------------------------------------------------------
// neighbour map of a submanifold 3x3x3 conv

/* nbr (T, 27) I32: nbr[p, r] = the row q with coords[q] = coords[p] + (r0-1,
 * r1-1, r2-1) in (x, y, z), r = r0*9 + r1*3 + r2 (spconv's kernel-offset
 * index, decoders.md §4.4), or -1 when that site is not active. nbr[p, 13] = p.
 * coords (T, 4) I32 on nbr's device, valid (see the top). Built once per
 * coordinate set and shared by every conv at that resolution.
 * CPU: a dense row grid over the sites' bounding box when it has at most 2^23
 * cells (every site of batch 0), else rows sorted by coordinate + binary
 * search (malloc'ed temporaries; the same map).
 * CUDA: an open-addressing hash (linear probing, load <= 1/2, 64-bit packed
 * keys) of op_sparse_nbr_scratch_bytes(T) bytes taken from scratch. */
void   op_sparse_nbr_cpu(struct tensor *nbr, const struct tensor *coords);
void   op_sparse_nbr_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *nbr,
                          const struct tensor *coords);
size_t op_sparse_nbr_scratch_bytes(int64_t T);

// ----------------------------------------------------------------------------
// submanifold sparse convolution

/* spconv.SubMConv3d(Cin, Cout, 3) (TD/conv/conv_spconv.py:29-38, spec
 * generators.md §8.3, decoders.md §4.4):
 *     y[p] = b + sum_{r : nbr[p, r] >= 0} W[:, r0, r1, r2, :] . x[nbr[p, r]]
 * for the T = y rows = nbr rows; x (Tx, Cin) any float dtype, the rows nbr
 * points into (Tx = T for a plain conv; a caller may pass a chunk of output rows
 * with their nbr rows, or a map into another row set, e.g. the parents of a
 * subdivided set); w (Cout, 3, 3, 3, Cin) KRSC as stored in the
 * checkpoints, F32/F16/BF16; b (Cout) any float dtype or NULL; y (T, Cout) any
 * float dtype on the CPU, F32 or w's dtype on CUDA; nbr (T, 27) I32 from
 * op_sparse_nbr. x is rounded to w's dtype first (the GEMM's operand type; a
 * no-op when they match, as under the reference's fp16 autocast), then fp32
 * accumulation and one rounding into y. y must not overlap x.
 * CUDA: per chunk of rows, gather an im2col buffer (rows, 27*Cin) in w's dtype
 * (zero rows for missing neighbours), then one op_linear with w viewed as
 * (Cout, 27*Cin) (KRSC is exactly that layout) and the bias in the epilogue.
 * Cost: 2*T*27*Cin*Cout FLOP on tensor cores (the dense-equivalent count;
 * missing neighbours are multiplied as zeros), plus T*27*Cin elements of
 * im2col written and read again (the gather reads each x row up to 27 times,
 * mostly from L2). For the SLAT flow's largest conv (1024->1024 at ~8k sites)
 * that is ~0.45 TFLOP and ~0.9 GB of im2col traffic per call (estimates; see
 * kernels/dev/sparse_bench.cu for the measured rates). The im2col chunk takes up to
 * op_sparse_conv3_scratch_bytes(T, Cin, w dtype) (<= SPARSE_CONV_CHUNK_BYTES,
 * at least 64 rows) from scratch, and op_linear may use ctx's workspace. */
#define SPARSE_CONV_CHUNK_BYTES ((size_t)256 << 20)
void   op_sparse_conv3_cpu(struct tensor *y, const struct tensor *x, const struct tensor *w,
                           const struct tensor *b, const struct tensor *nbr);
void   op_sparse_conv3_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                            const struct tensor *x, const struct tensor *w,
                            const struct tensor *b, const struct tensor *nbr);
size_t op_sparse_conv3_scratch_bytes(int64_t T, int64_t Cin, enum dtype wdt);
/* op_sparse_conv3_cuda as an implicit GEMM (kernels/cuda/sparse_igemm.cu): no im2col
 * buffer; each 128-row x 96-column tile of y gathers its x rows per tap straight into
 * shared memory (cp.async, zero-filled for a missing neighbour) and multiplies them on
 * tensor cores (WMMA, fp32 accumulation), skipping the taps whose weights are all +-0 in
 * the tile's 96 columns (a mask computed from w per call; such a tap adds nothing, even
 * for a non-finite x). Applies to x and w F16 (16-byte aligned), Cin % 32 == 0,
 * Cout % 96 == 0, y F16 or F32, b any float dtype or NULL; returns false and does nothing
 * otherwise. Takes 4 Cout / 96 bytes of scratch. The same results as the im2col path up
 * to the fp32 summation order. op_sparse_conv3_cuda takes this path when
 * sparse_igemm_enabled(): env S3D_SPARSE_IGEMM=1 (read once; off by default until
 * measured on a GPU: tools/gpu/mesh_decode_full.sh). */
bool   op_sparse_conv3_igemm_cuda(const struct op_ctx *ctx, struct arena *scratch,
                                  struct tensor *y, const struct tensor *x,
                                  const struct tensor *w, const struct tensor *b,
                                  const struct tensor *nbr);
bool   sparse_igemm_enabled(void);

/* op_sparse_conv3's convolution computed tap by tap, for a narrow output read
 * through a map into a smaller input row set (kernels/cpu/sparse_tap.c,
 * kernels/cuda/sparse_tap.cu):
 *     Z_k = x . wt[k]^T                                  (Tx, Cout) fp32, k < 27
 *     y[p] = b + sum_{k : nbr[p, k] >= 0} Z_k[nbr[p, k]]  fp32, summed from b in k order
 * rounded once into y. wt (27, Cout, Cin) tap-major: wt[k] = w[:, k, :] of the
 * KRSC kernel w (sparse_conv3_tapmajor); x (Tx, Cin) in wt's dtype (the GEMM
 * operand; the CPU op rounds x to wt's dtype first, as op_sparse_conv3);
 * b (Cout) any float dtype or NULL; y (T, Cout) any float dtype on the CPU,
 * F32/F16/BF16 on CUDA; nbr (T, 27) I32 into x's rows (-1: no neighbour), e.g.
 * the neighbour map at y's sites composed with an upsample's parent index.
 * Cost: 2 Tx 27 Cin Cout FLOP (op_sparse_conv3: 2 T 27 Cin Cout) and no im2col
 * (T 27 Cin elements): Z (Tx 27 Cout fp32) is written and gathered instead,
 * which pays when Tx < T or Cout << Cin. The SLAT flow's out_blocks.0 conv1
 * (2048 -> 128 on sites upsampled from M ~ N/5 parents) is the case.
 * CUDA: Z for a group of g taps at a time (one GEMM with w viewed as
 * (g Cout, Cin), fp32 output), g as large as the free scratch allows (at least
 * 1: op_sparse_conv3_tap_scratch_bytes(T, Tx, Cout, 1)); with more than one
 * group an fp32 accumulator (T, Cout) is kept in scratch too. */
void   op_sparse_conv3_tap_cpu(struct tensor *y, const struct tensor *x, const struct tensor *wt,
                               const struct tensor *b, const struct tensor *nbr);
void   op_sparse_conv3_tap_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                                const struct tensor *x, const struct tensor *wt,
                                const struct tensor *b, const struct tensor *nbr);
/* ASSERT the operands of op_sparse_conv3_tap on dev (shared by both ops). */
void   sparse_conv3_tap_check(const struct tensor *y, const struct tensor *x,
                              const struct tensor *wt, const struct tensor *b,
                              const struct tensor *nbr, enum device dev);
/* Scratch bytes of the CUDA op with Z for `taps` taps per group (1..27; 27:
 * one group, no accumulator). */
size_t op_sparse_conv3_tap_scratch_bytes(int64_t T, int64_t Tx, int64_t Cout, int taps);
/* dst (27, Cout, Cin) = the KRSC kernel src (Cout, 3, 3, 3, Cin) tap-major:
 * dst[k][o][i] = src[o][k][i]. Host memory, elements of dtype_size(dt) bytes
 * copied unchanged; dst and src must not overlap. */
void   sparse_conv3_tapmajor(void *dst, const void *src, enum dtype dt, int64_t Cout, int64_t Cin);

/* SparseConv3d(Cin, Cout, 1): a per-site Linear, y = x lin^T + b, with lin
 * (Cout, Cin) from sparse_conv1_weight (op_linear's operand rules: x's dtype
 * == lin's dtype, y x's dtype or F32).
 *
 * spconv does not read a 1x1 kernel as KRSC: SubMConv3d with kernel size 1
 * multiplies the features by the stored (Cout, 1, 1, 1, Cin) buffer viewed as
 * an (Cin, Cout) matrix, y = x . w.view(Cin, Cout) + b (spconv 2.3.8
 * spconv/pytorch/conv.py:225-237, FILTER_HWIO false; checked against spconv by
 * tests/fixtures/mesh_decoder_tiny's skip_connection taps). The trained
 * weights carry that reading, so it is reproduced, not "fixed". */
void   op_sparse_conv1(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                       const struct tensor *lin, const struct tensor *b);
/* lin (Cout, Cin) = the stored 1x1 kernel buffer w (Cout * Cin elements, any
 * shape) viewed as (Cin, Cout) and transposed: lin[o][i] = w[i * Cout + o].
 * Host memory, elements of dtype_size(dt) bytes copied unchanged. */
void   sparse_conv1_weight(void *lin, const void *w, enum dtype dt, int64_t Cout, int64_t Cin);

// ----------------------------------------------------------------------------
// SparseDownsample(2) / SparseUpsample(2) (TD/spatial.py:10-96, generators.md §8.3)

/* The coordinate side of SparseDownsample(2). coords (T, 4) I32 valid at
 * resolution res (even; CUDA: res <= SPARSE_DOWN_MAX_RES); outputs, all I32 on
 * coords' device, with T rows each because M (<= T) is not known before:
 *   pcoords  (T, 4): rows [0, M) = the unique parents (0, x>>1, y>>1, z>>1) in
 *            lexicographic (x, y, z) order (torch's code.unique, spatial.py:31-36)
 *   parent   (T): child row -> parent row (torch's return_inverse idx; the
 *            upsample index)
 *   children (T, 8): rows [0, M): children[m, k] = the child row whose
 *            ((x&1)<<2 | (y&1)<<1 | (z&1)) == k, or -1
 * Rows from M on are left untouched. Returns M. The CUDA op marks occupied
 * parent cells in a dense (res/2)^3 grid, scans it (op_sparse_down_scratch_bytes
 * (res) from scratch: 8 (res/2)^3 + 16 KiB bytes, 2 MiB at res 128), and
 * synchronizes ctx->stream once to read M. */
#define SPARSE_DOWN_MAX_RES 512
int64_t op_sparse_down_index_cpu(struct tensor *pcoords, struct tensor *parent,
                                 struct tensor *children, const struct tensor *coords, int res);
int64_t op_sparse_down_index_cuda(const struct op_ctx *ctx, struct arena *scratch,
                                  struct tensor *pcoords, struct tensor *parent,
                                  struct tensor *children, const struct tensor *coords, int res);
size_t  op_sparse_down_scratch_bytes(int res);

/* The feature side: y[m] = sum_k x[children[m, k]] / (n_m + 1), n_m = the
 * number of children of m (torch.scatter_reduce(zeros, "mean") with its default
 * include_self=True counts the zero it starts from; spec generators.md §8.3:
 * part of the trained model, reproduced on purpose). Children summed in k
 * order in fp32. x (T, C), y (M, C) any float dtypes; children (>= M, 8) I32. */
void op_sparse_down_mean_cpu(struct tensor *y, const struct tensor *x,
                             const struct tensor *children);
void op_sparse_down_mean_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                              const struct tensor *children);

/* SparseUpsample(2) and any row gather: y[i] = x[idx[i]]. x (M, C), y (T, C)
 * any float dtypes (converted); idx (T) I32 in [0, M). The upsample passes the
 * parent index of the matching op_sparse_down_index (coords = its input's). */
void op_sparse_gather_rows_cpu(struct tensor *y, const struct tensor *x, const struct tensor *idx);
void op_sparse_gather_rows_cuda(const struct op_ctx *ctx, struct tensor *y,
                                const struct tensor *x, const struct tensor *idx);
/* The inverse row move: y[idx[i]] = x[i] for i < T; other rows of y untouched.
 * x (T, C), y (M, C) any float dtypes (converted); idx (T) I32 in [0, M),
 * distinct (the SLAT decoder trunk writes a group of windows back into the
 * token stream through the partition's perm). */
void op_sparse_scatter_rows_cpu(struct tensor *y, const struct tensor *x, const struct tensor *idx);
void op_sparse_scatter_rows_cuda(const struct op_ctx *ctx, struct tensor *y,
                                 const struct tensor *x, const struct tensor *idx);

// ----------------------------------------------------------------------------
// SparseSubdivide (TD/spatial.py:99-131, decoders.md §4.5)

/* Voxel i becomes 8 children at twice the resolution: child k has coords
 * (b, 2x + (k>>2), 2y + ((k>>1)&1), 2z + (k&1)) and row 8i + k, with a copy of
 * feats i. y_coords (8T, 4) I32 from x_coords (T, 4) I32, and/or y_feats
 * (8T, C) from x_feats (T, C) (any float dtypes); either pair may be NULL
 * (the mesh decoder subdivides two feature sets on one coordinate set). */
void op_sparse_subdivide_cpu(struct tensor *y_coords, const struct tensor *x_coords,
                             struct tensor *y_feats, const struct tensor *x_feats);
void op_sparse_subdivide_cuda(const struct op_ctx *ctx, struct tensor *y_coords,
                              const struct tensor *x_coords, struct tensor *y_feats,
                              const struct tensor *x_feats);

// ----------------------------------------------------------------------------
// SparseGroupNorm32 (TD/norm.py:15-64, decoders.md §4.6)

/* GroupNorm over sparse sites, batch 0 only: for each group g of C/groups
 * channels, mean and biased variance over all T rows x C/groups channels
 * (fp32 statistics; the CPU in double), y = (x - mean) * rsqrt(var + eps) *
 * w[c] + b[c], then SiLU when silu is set (SparseSubdivideBlock3d's GN->SiLU).
 * x, y (T, C) any float dtypes (channel-last, which op_groupnorm's (N, C, ...)
 * layout cannot view without a transpose); w, b (C) one float dtype, or both
 * NULL. In place allowed. CUDA: per-slice partial (mean, M2) combined with
 * Chan's formula; op_sparse_groupnorm_scratch_bytes(T, groups) from scratch. */
void   op_sparse_groupnorm_cpu(struct tensor *y, const struct tensor *x, int groups,
                               const struct tensor *w, const struct tensor *b, float eps,
                               bool silu);
void   op_sparse_groupnorm_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                                const struct tensor *x, int groups, const struct tensor *w,
                                const struct tensor *b, float eps, bool silu);
size_t op_sparse_groupnorm_scratch_bytes(int64_t T, int groups);

/* The same GroupNorm over a tensor that is never whole in memory (the mesh
 * decoder's 256^3 level), in two sweeps over its row chunks. acc (groups, 3)
 * F64 on x's device, zeroed by the caller, holds (count, mean, M2) per group:
 * op_sparse_groupnorm_stats adds the rows of a chunk x (T, C) (the chunk's
 * statistics - two-pass in double on the CPU, the slices of
 * op_sparse_groupnorm_cuda on CUDA - merged with Chan et al.'s pairwise update
 * in double); op_sparse_groupnorm_apply then normalises any chunk x into y
 * (same shape; in place allowed) with the accumulated statistics (biased
 * variance, eps), affine w/b, SiLU when set. One chunk holding every row gives
 * op_sparse_groupnorm's result (bit for bit on the CPU). CUDA:
 * op_sparse_groupnorm_scratch_bytes(T, groups) from scratch. */
void op_sparse_groupnorm_stats_cpu(struct tensor *acc, const struct tensor *x, int groups);
void op_sparse_groupnorm_stats_cuda(const struct op_ctx *ctx, struct arena *scratch,
                                    struct tensor *acc, const struct tensor *x, int groups);
void op_sparse_groupnorm_apply_cpu(struct tensor *y, const struct tensor *x,
                                   const struct tensor *acc, int groups, const struct tensor *w,
                                   const struct tensor *b, float eps, bool silu);
void op_sparse_groupnorm_apply_cuda(const struct op_ctx *ctx, struct arena *scratch,
                                    struct tensor *y, const struct tensor *x,
                                    const struct tensor *acc, int groups, const struct tensor *w,
                                    const struct tensor *b, float eps, bool silu);

// ----------------------------------------------------------------------------
// dispatch on the output tensor's device (ctx and scratch may be NULL for host tensors)

static inline void op_sparse_nbr(const struct op_ctx *ctx, struct arena *scratch,
                                 struct tensor *nbr, const struct tensor *coords)
{
    if (nbr->device == DEVICE_CUDA)
        op_sparse_nbr_cuda(ctx, scratch, nbr, coords);
    else
        op_sparse_nbr_cpu(nbr, coords);
}

static inline void op_sparse_conv3(const struct op_ctx *ctx, struct arena *scratch,
                                   struct tensor *y, const struct tensor *x,
                                   const struct tensor *w, const struct tensor *b,
                                   const struct tensor *nbr)
{
    if (y->device == DEVICE_CUDA)
        op_sparse_conv3_cuda(ctx, scratch, y, x, w, b, nbr);
    else
        op_sparse_conv3_cpu(y, x, w, b, nbr);
}

static inline void op_sparse_conv3_tap(const struct op_ctx *ctx, struct arena *scratch,
                                       struct tensor *y, const struct tensor *x,
                                       const struct tensor *wt, const struct tensor *b,
                                       const struct tensor *nbr)
{
    if (y->device == DEVICE_CUDA)
        op_sparse_conv3_tap_cuda(ctx, scratch, y, x, wt, b, nbr);
    else
        op_sparse_conv3_tap_cpu(y, x, wt, b, nbr);
}

static inline int64_t op_sparse_down_index(const struct op_ctx *ctx, struct arena *scratch,
                                           struct tensor *pcoords, struct tensor *parent,
                                           struct tensor *children, const struct tensor *coords,
                                           int res)
{
    if (coords->device == DEVICE_CUDA)
        return op_sparse_down_index_cuda(ctx, scratch, pcoords, parent, children, coords, res);
    return op_sparse_down_index_cpu(pcoords, parent, children, coords, res);
}

static inline void op_sparse_down_mean(const struct op_ctx *ctx, struct tensor *y,
                                       const struct tensor *x, const struct tensor *children)
{
    if (y->device == DEVICE_CUDA)
        op_sparse_down_mean_cuda(ctx, y, x, children);
    else
        op_sparse_down_mean_cpu(y, x, children);
}

static inline void op_sparse_gather_rows(const struct op_ctx *ctx, struct tensor *y,
                                         const struct tensor *x, const struct tensor *idx)
{
    if (y->device == DEVICE_CUDA)
        op_sparse_gather_rows_cuda(ctx, y, x, idx);
    else
        op_sparse_gather_rows_cpu(y, x, idx);
}

static inline void op_sparse_scatter_rows(const struct op_ctx *ctx, struct tensor *y,
                                          const struct tensor *x, const struct tensor *idx)
{
    if (y->device == DEVICE_CUDA)
        op_sparse_scatter_rows_cuda(ctx, y, x, idx);
    else
        op_sparse_scatter_rows_cpu(y, x, idx);
}

static inline void op_sparse_subdivide(const struct op_ctx *ctx, struct tensor *y_coords,
                                       const struct tensor *x_coords, struct tensor *y_feats,
                                       const struct tensor *x_feats)
{
    const struct tensor *o = y_coords ? y_coords : y_feats;

    if (o && o->device == DEVICE_CUDA)
        op_sparse_subdivide_cuda(ctx, y_coords, x_coords, y_feats, x_feats);
    else
        op_sparse_subdivide_cpu(y_coords, x_coords, y_feats, x_feats);
}

static inline void op_sparse_groupnorm(const struct op_ctx *ctx, struct arena *scratch,
                                       struct tensor *y, const struct tensor *x, int groups,
                                       const struct tensor *w, const struct tensor *b, float eps,
                                       bool silu)
{
    if (y->device == DEVICE_CUDA)
        op_sparse_groupnorm_cuda(ctx, scratch, y, x, groups, w, b, eps, silu);
    else
        op_sparse_groupnorm_cpu(y, x, groups, w, b, eps, silu);
}

static inline void op_sparse_groupnorm_stats(const struct op_ctx *ctx, struct arena *scratch,
                                             struct tensor *acc, const struct tensor *x,
                                             int groups)
{
    if (acc->device == DEVICE_CUDA)
        op_sparse_groupnorm_stats_cuda(ctx, scratch, acc, x, groups);
    else
        op_sparse_groupnorm_stats_cpu(acc, x, groups);
}

static inline void op_sparse_groupnorm_apply(const struct op_ctx *ctx, struct arena *scratch,
                                             struct tensor *y, const struct tensor *x,
                                             const struct tensor *acc, int groups,
                                             const struct tensor *w, const struct tensor *b,
                                             float eps, bool silu)
{
    if (y->device == DEVICE_CUDA)
        op_sparse_groupnorm_apply_cuda(ctx, scratch, y, x, acc, groups, w, b, eps, silu);
    else
        op_sparse_groupnorm_apply_cpu(y, x, acc, groups, w, b, eps, silu);
}

#ifdef __cplusplus
}
#endif
#endif
