/*
 * meshdec_kern.h - the mesh decoder's own small ops around the sparse family
 * (kernels/ops_sparse.h): neighbour maps of a subdivided site set derived from
 * the parent set's map (no hash at 128^3 / 256^3), a per-chunk row -> slot map,
 * the subdivide block's residual add with a per-parent skip, and the weights of
 * a conv on a subdivided input rewritten as a conv over the parents.
 * CPU: meshdec_kern.c (the reference); CUDA: meshdec_kern_cuda.cu; tests in
 * tests/test_mesh_decode.c (CPU against op_sparse_nbr on subdivided coords,
 * CUDA against the CPU).
 *
 * Site sets: a subdivided set (SparseSubdivide, TD/modules/sparse/spatial.py:
 * 99-131) has child k = 4 bx + 2 by + bz of parent p at row 8p + k and
 * coordinates 2 c(p) + (bx, by, bz). Every parent has all 8 children, so the
 * neighbour of child (p, k) at offset d in {-1, 0, 1}^3 is, per axis with
 * t = b + d in {-1, 0, 1, 2}: parent offset s = floor(t / 2), child bit t & 1;
 * i.e. child (nbr_parent[p, s], k') - present iff that parent is.
 */
#ifndef S3D_MESHDEC_KERN_H
#define S3D_MESHDEC_KERN_H

#include "arena.h"
#include "ops.h"
#include "tensor.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __CUDACC__
#define MDK_HD static __host__ __device__ __forceinline__
#else
#define MDK_HD static inline
#endif

enum mdk_nbr_mode {
    MDK_PARENT,     /* entry: the parent row of the neighbour (a conv on a subdivided
                     * input reads the parent's features: every child is a copy) */
    MDK_CHILD,      /* entry: the neighbour's own row 8 q + k' */
    MDK_LOCAL,      /* entry: the neighbour's row in a chunk table, G loc[g / G] + g % G
                     * for child row g (loc: group -> slot, every group needed present) */
};

/* map (n, 27) I32 = the subdivided set's neighbour map (op_sparse_nbr's layout:
 * offset r = r0 9 + r1 3 + r2, -1 for an absent site) for the child rows
 *     row(j) = units ? G * units[j / G] + j % G : row0 + j,     j < n
 * (units (n / G) I32: groups of G consecutive child rows; NULL: a contiguous
 * range), in `mode`; parent (T, 27) I32 is the parent set's map. loc (M) I32
 * only for MDK_LOCAL (M >= the largest child row / G + 1). All on map's device. */
void mdk_nbr_sub_cpu(struct tensor *map, const struct tensor *parent, const struct tensor *units,
                     int G, int64_t row0, enum mdk_nbr_mode mode, const struct tensor *loc);
void mdk_nbr_sub_cuda(const struct op_ctx *ctx, struct tensor *map, const struct tensor *parent,
                      const struct tensor *units, int G, int64_t row0, enum mdk_nbr_mode mode,
                      const struct tensor *loc);

/* One entry of mdk_nbr_sub: child row `row`, offset r (shared by both paths). */
MDK_HD int32_t mdk_nbr_entry(const int32_t *parent, int64_t row, int r, int mode, int G,
                             const int32_t *loc)
{
    int k = (int)(row & 7), rp = 0, kk = 0;
    int d[3] = {r / 9 - 1, r / 3 % 3 - 1, r % 3 - 1};

    for (int a = 0; a < 3; a++) {
        int t = (k >> (2 - a) & 1) + d[a] + 2;          /* b + d + 2 in [1, 4] */
        rp = rp * 3 + t / 2;                            /* parent offset + 1 */
        kk = kk * 2 + (t & 1);                          /* child bit */
    }
    int32_t q = parent[(row >> 3) * 27 + rp];
    if (q < 0 || mode == MDK_PARENT)
        return q;
    int64_t g = 8 * (int64_t)q + kk;
    if (mode == MDK_CHILD)
        return (int32_t)g;
    int32_t slot = loc[g / G];
    return slot < 0 ? -1 : (int32_t)((int64_t)G * slot + g % G);
}

/* The child taps r_a (0..2, offset r_a - 1) of axis a that land in parent tap
 * s_a (0..2, offset s_a - 1) for child bit b: [lo, hi], empty when lo > hi
 * (mdk_nbr_entry's t = b + r_a + 1, s_a = t / 2). */
MDK_HD void mdk_sub_taps(int b, int s, int *lo, int *hi)
{
    *lo = 2 * s - b - 1;
    *hi = 2 * s - b;
    if (*lo < 0)
        *lo = 0;
    if (*hi > 2)
        *hi = 2;
}

/* A submanifold conv3 of a subdivided input as a conv3 over the parents.
 * Every child copies its parent and has a neighbour exactly where its
 * neighbour's parent exists, so child k = 4 bx + 2 by + bz of parent p reads,
 * through its 27 taps, only the parents p + s - 1 of the 8 parent taps s with
 * mdk_sub_taps(b_a, s_a) non-empty on each axis: conv3(subdivide(x), w, b)
 * (8P, Cout) is, viewed as (P, 8 Cout), op_sparse_conv3 over the parent set's
 * own map with
 *     wp[k Cout + o, s0, s1, s2, ci] = sum of w[o, r0, r1, r2, ci] over
 *                                      r_a in mdk_sub_taps(b_a, s_a), r in order
 *     bp[k Cout + o]                 = b[o]
 * (the 19 other parent taps of class k zero): 8x fewer gathered rows and an
 * 8x wider GEMM than the 27 child taps, the same dense-equivalent FLOPs. Sums
 * in double, one rounding to wp's dtype (F32 or F16: for F16 the double sum of
 * at most 8 terms is exact, so the bits are those of the exact sum, rounded
 * once). w (Cout, 3, 3, 3, Cin), b (Cout), wp (8 Cout, 3, 3, 3, Cin), bp
 * (8 Cout), one dtype, on one device. */
void mdk_subconv_weight_cpu(struct tensor *wp, struct tensor *bp, const struct tensor *w,
                            const struct tensor *b);
void mdk_subconv_weight_cuda(const struct op_ctx *ctx, struct tensor *wp, struct tensor *bp,
                             const struct tensor *w, const struct tensor *b);
/* ASSERT mdk_subconv_weight's shapes and dtypes (F32 or F16) on dev; Cout, Cin out. */
void mdk_subconv_check(const struct tensor *wp, const struct tensor *bp, const struct tensor *w,
                       const struct tensor *b, enum device dev, int64_t *Cout, int64_t *Cin);

/* loc[units[j]] = j for j < n (set), or = -1 (clear); loc (M) I32, units (n) I32. */
void mdk_loc_cpu(struct tensor *loc, const struct tensor *units, bool set);
void mdk_loc_cuda(const struct op_ctx *ctx, struct tensor *loc, const struct tensor *units,
                  bool set);

/* y[r] = round_a(a[r] + p[(row0 + r) >> 3]) for r < rows: the subdivide block's
 * h + skip(x) with the skip computed once per parent (the 1x1 conv of 8 equal
 * children). a (rows, C), p (M, C) of one float dtype; the sum is rounded to
 * that dtype (torch's fp16 add), then stored in y's dtype (rows, C), which may
 * be a itself. */
void mdk_add_parent_cpu(struct tensor *y, const struct tensor *a, const struct tensor *p,
                        int64_t row0);
void mdk_add_parent_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *a,
                         const struct tensor *p, int64_t row0);

/* dst = src bytes within one device or host buffer, dst below src; the ranges
 * may overlap (copied in pieces no longer than src - dst). */
void mdk_move_down(const struct op_ctx *ctx, enum device dev, void *dst, const void *src,
                   size_t bytes);

static inline void mdk_nbr_sub(const struct op_ctx *ctx, struct tensor *map,
                               const struct tensor *parent, const struct tensor *units, int G,
                               int64_t row0, enum mdk_nbr_mode mode, const struct tensor *loc)
{
    if (map->device == DEVICE_CUDA)
        mdk_nbr_sub_cuda(ctx, map, parent, units, G, row0, mode, loc);
    else
        mdk_nbr_sub_cpu(map, parent, units, G, row0, mode, loc);
}

static inline void mdk_loc(const struct op_ctx *ctx, struct tensor *loc,
                           const struct tensor *units, bool set)
{
    if (loc->device == DEVICE_CUDA)
        mdk_loc_cuda(ctx, loc, units, set);
    else
        mdk_loc_cpu(loc, units, set);
}

static inline void mdk_subconv_weight(const struct op_ctx *ctx, struct tensor *wp,
                                      struct tensor *bp, const struct tensor *w,
                                      const struct tensor *b)
{
    if (wp->device == DEVICE_CUDA)
        mdk_subconv_weight_cuda(ctx, wp, bp, w, b);
    else
        mdk_subconv_weight_cpu(wp, bp, w, b);
}

static inline void mdk_add_parent(const struct op_ctx *ctx, struct tensor *y,
                                  const struct tensor *a, const struct tensor *p, int64_t row0)
{
    if (y->device == DEVICE_CUDA)
        mdk_add_parent_cuda(ctx, y, a, p, row0);
    else
        mdk_add_parent_cpu(y, a, p, row0);
}

#ifdef __cplusplus
}
#endif
#endif
