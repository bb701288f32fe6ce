/*
 * sparse.c - CPU references of the sparse 3-D ops (ops_sparse.h): coordinate
 * checks, the 3x3x3 neighbour map (sorted keys + binary search), submanifold
 * conv (direct loops), x2 down/upsampling, subdivision and sparse GroupNorm.
 *
 * Obvious loops, fp32 accumulation (double for GroupNorm statistics); this is
 * what kernels/cuda/sparse.cu is measured against in tests/test_op_sparse.c,
 * and the conv itself is checked against a dense cross-correlation and spconv.
 */
#include "ops_sparse.h"

#include "log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// helpers

void sparse_check_i32(const char *op, const struct tensor *t, enum device dev, int64_t rows,
                      int64_t cols)
{
    char shape[128];
    bool ok = t && t->dtype == DTYPE_I32 && t->device == dev && tensor_is_contiguous(t) &&
              (cols == 0 ? t->ndim == 1 : t->ndim == 2 && t->shape[1] == cols) &&
              (rows < 0 || t->shape[0] == rows) && (t->data || t->shape[0] == 0);

    if (ok)
        return;
    if (t)
        log_error("%s: index tensor %s %s on %s; expected I32 (%lld, %lld), contiguous, on %s",
                  op, dtype_name(t->dtype), tensor_shape_str(t->shape, t->ndim, shape,
                                                             sizeof(shape)),
                  t->device == DEVICE_CUDA ? "cuda" : "host", (long long)rows, (long long)cols,
                  dev == DEVICE_CUDA ? "cuda" : "host");
    s3d_fatal(__FILE__, __LINE__, "sparse_check_i32", "ASSERT", op);
}

/* 64-bit key of (b, x + dx, y + dy, z + dz): 16 bits each, coordinates offset by
 * one so that -1 (a neighbour outside the grid) is representable; the key order
 * is the lexicographic (b, x, y, z) order. Same packing as kernels/cuda/sparse.cu. */
static inline uint64_t sp_key(const int32_t *c, int dx, int dy, int dz)
{
    return ((uint64_t)(uint32_t)c[0] << 48) | ((uint64_t)(uint32_t)(c[1] + 1 + dx) << 32) |
           ((uint64_t)(uint32_t)(c[2] + 1 + dy) << 16) | (uint64_t)(uint32_t)(c[3] + 1 + dz);
}

struct sp_entry {
    uint64_t key;
    int64_t  row;
};

static int sp_entry_cmp(const void *a, const void *b)
{
    uint64_t ka = ((const struct sp_entry *)a)->key, kb = ((const struct sp_entry *)b)->key;

    return ka < kb ? -1 : ka > kb;
}

/* Sorted (key, row) table of coords (T, 4); malloc'ed, caller frees. */
static struct sp_entry *sp_sorted(const int32_t *c, int64_t T)
{
    struct sp_entry *e = malloc(sizeof(*e) * (size_t)(T > 0 ? T : 1));

    ASSERT(e);
    for (int64_t i = 0; i < T; i++) {
        e[i].key = sp_key(c + 4 * i, 0, 0, 0);
        e[i].row = i;
    }
    qsort(e, (size_t)T, sizeof(*e), sp_entry_cmp);
    return e;
}

static int64_t sp_find(const struct sp_entry *e, int64_t T, uint64_t key)
{
    int64_t lo = 0, hi = T;

    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (e[mid].key < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < T && e[lo].key == key ? e[lo].row : -1;
}

bool sparse_coords_check(const struct tensor *coords, int res, const char *what)
{
    char shape[128];

    if (coords->dtype != DTYPE_I32 || coords->ndim != 2 || coords->shape[1] != 4 ||
        coords->device != DEVICE_HOST || !tensor_is_contiguous(coords)) {
        log_error("%s: coords are %s %s; expected I32 (N, 4) rows (batch, x, y, z). "
                  "HINT: pass the coords artifact of the stage before", what,
                  dtype_name(coords->dtype),
                  tensor_shape_str(coords->shape, coords->ndim, shape, sizeof(shape)));
        return false;
    }
    if (res < 1 || res > SPARSE_MAX_RES) {
        log_error("%s: resolution %d out of [1, %d]", what, res, SPARSE_MAX_RES);
        return false;
    }
    const int32_t *c = coords->data;
    int64_t T = coords->shape[0];
    for (int64_t i = 0; i < T; i++) {
        const int32_t *r = c + 4 * i;
        if (r[0] != 0 || r[1] < 0 || r[1] >= res || r[2] < 0 || r[2] >= res || r[3] < 0 ||
            r[3] >= res) {
            log_error("%s: coords row %lld is (%d, %d, %d, %d); expected batch 0 and x, y, z in "
                      "[0, %d). HINT: the voxels must come from a grid of resolution %d",
                      what, (long long)i, r[0], r[1], r[2], r[3], res, res);
            return false;
        }
    }
    struct sp_entry *e = sp_sorted(c, T);
    bool ok = true;
    for (int64_t i = 1; i < T && ok; i++)
        if (e[i].key == e[i - 1].key) {
            const int32_t *r = c + 4 * e[i].row;
            log_error("%s: coords rows %lld and %lld are both (%d, %d, %d, %d); voxels must be "
                      "unique. HINT: deduplicate the coordinates", what,
                      (long long)e[i - 1].row, (long long)e[i].row, r[0], r[1], r[2], r[3]);
            ok = false;
        }
    free(e);
    return ok;
}

// ----------------------------------------------------------------------------
// neighbour map

/* The map through a dense row grid over the sites' bounding box (every site of
 * batch 0, the box at most SPARSE_NBR_DENSE cells): the same entries as the
 * sorted-key search for unique sites, in O(27 T) instead of O(27 T log T)
 * (30k sites: ~2 ms instead of ~70). false (nothing written) when it does not
 * apply. */
#define SPARSE_NBR_DENSE ((int64_t)1 << 23)     /* 32 MiB of I32 rows at most */
static bool nbr_dense(int32_t *out, const int32_t *c, int64_t T)
{
    int32_t lo[3] = {INT32_MAX, INT32_MAX, INT32_MAX}, hi[3] = {INT32_MIN, INT32_MIN, INT32_MIN};

    for (int64_t i = 0; i < T; i++) {
        if (c[4 * i] != 0)
            return false;
        for (int a = 0; a < 3; a++) {
            lo[a] = c[4 * i + 1 + a] < lo[a] ? c[4 * i + 1 + a] : lo[a];
            hi[a] = c[4 * i + 1 + a] > hi[a] ? c[4 * i + 1 + a] : hi[a];
        }
    }
    int64_t d[3], cells = 1;
    for (int a = 0; a < 3; a++) {
        d[a] = T ? (int64_t)hi[a] - lo[a] + 1 : 1;
        cells *= d[a];
        if (cells > SPARSE_NBR_DENSE)
            return false;
    }
    int32_t *g = malloc(sizeof(int32_t) * (size_t)cells);
    if (!g)
        return false;
    for (int64_t i = 0; i < cells; i++)
        g[i] = -1;
    for (int64_t i = 0; i < T; i++)
        g[((c[4 * i + 1] - lo[0]) * d[1] + (c[4 * i + 2] - lo[1])) * d[2] + (c[4 * i + 3] - lo[2])] =
            (int32_t)i;
    for (int64_t p = 0; p < T; p++)
        for (int r = 0; r < SPARSE_K3; r++) {
            int64_t x = (int64_t)c[4 * p + 1] - lo[0] + r / 9 - 1;
            int64_t y = (int64_t)c[4 * p + 2] - lo[1] + r / 3 % 3 - 1;
            int64_t z = (int64_t)c[4 * p + 3] - lo[2] + r % 3 - 1;
            bool in = x >= 0 && x < d[0] && y >= 0 && y < d[1] && z >= 0 && z < d[2];
            out[p * SPARSE_K3 + r] = in ? g[(x * d[1] + y) * d[2] + z] : -1;
        }
    free(g);
    return true;
}

void op_sparse_nbr_cpu(struct tensor *nbr, const struct tensor *coords)
{
    sparse_check_i32("sparse_nbr.coords", coords, DEVICE_HOST, -1, 4);
    int64_t T = coords->shape[0];
    sparse_check_i32("sparse_nbr.nbr", nbr, DEVICE_HOST, T, SPARSE_K3);
    const int32_t *c = coords->data;
    int32_t *out = nbr->data;
    if (nbr_dense(out, c, T))
        return;
    struct sp_entry *e = sp_sorted(c, T);

    for (int64_t p = 0; p < T; p++)
        for (int r = 0; r < SPARSE_K3; r++) {
            int64_t q = sp_find(e, T, sp_key(c + 4 * p, r / 9 - 1, r / 3 % 3 - 1, r % 3 - 1));
            out[p * SPARSE_K3 + r] = (int32_t)q;
        }
    free(e);
}

// ----------------------------------------------------------------------------
// submanifold conv

/* acc[j] += sum over ci in order of w[ci * ld + j] x[ci], j < 8, each sum from 0 (the
 * bits of the plain dot product); eight independent chains the compiler keeps in vector
 * registers. */
static void tap_sums8(float *acc, const float *x, const float *w, int64_t Cin, int64_t ld)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;

    for (int64_t ci = 0; ci < Cin; ci++) {
        const float xv = x[ci], *wc = w + ci * ld;
        s0 += wc[0] * xv, s1 += wc[1] * xv, s2 += wc[2] * xv, s3 += wc[3] * xv;
        s4 += wc[4] * xv, s5 += wc[5] * xv, s6 += wc[6] * xv, s7 += wc[7] * xv;
    }
    acc[0] += s0, acc[1] += s1, acc[2] += s2, acc[3] += s3;
    acc[4] += s4, acc[5] += s5, acc[6] += s6, acc[7] += s7;
}

void op_sparse_conv3_cpu(struct tensor *y, const struct tensor *x, const struct tensor *w,
                         const struct tensor *b, const struct tensor *nbr)
{
    op_check_dense("sparse_conv3.x", x, DEVICE_HOST);
    op_check_dense("sparse_conv3.w", w, DEVICE_HOST);
    op_check_dense("sparse_conv3.y", y, DEVICE_HOST);
    ASSERT(x->ndim == 2 && y->ndim == 2 && w->ndim == 5);
    int64_t T = y->shape[0], Tx = x->shape[0], Cin = x->shape[1], Cout = w->shape[0];
    ASSERT(w->shape[1] == 3 && w->shape[2] == 3 && w->shape[3] == 3 && w->shape[4] == Cin);
    ASSERT(y->shape[1] == Cout);
    sparse_check_i32("sparse_conv3.nbr", nbr, DEVICE_HOST, T, SPARSE_K3);
    if (b) {
        op_check_dense("sparse_conv3.b", b, DEVICE_HOST);
        ASSERT(tensor_numel(b) == Cout);
    }
    if (T == 0 || Cout == 0)
        return;

    size_t nw = (size_t)(Cout * SPARSE_K3 * Cin);
    float *wf = malloc(sizeof(float) * (nw + (size_t)(Tx * Cin) + 2 * (size_t)Cout));
    ASSERT(wf);
    float *xf = wf + nw, *bf = xf + Tx * Cin, *acc = bf + Cout;
    dtype_convert(wf, DTYPE_F32, w->data, w->dtype, nw);
    if (x->dtype == w->dtype || w->dtype == DTYPE_F32) {
        dtype_convert(xf, DTYPE_F32, x->data, x->dtype, (size_t)(Tx * Cin));
    } else {                                    /* x rounded to w's dtype, as on CUDA */
        void *xr = malloc(dtype_size(w->dtype) * (size_t)(Tx * Cin));
        ASSERT(xr);
        dtype_convert(xr, w->dtype, x->data, x->dtype, (size_t)(Tx * Cin));
        dtype_convert(xf, DTYPE_F32, xr, w->dtype, (size_t)(Tx * Cin));
        free(xr);
    }
    if (b)
        dtype_convert(bf, DTYPE_F32, b->data, b->dtype, (size_t)Cout);
    else
        memset(bf, 0, sizeof(float) * (size_t)Cout);
    /* W[co, r, ci] as wt[r][ci][co]: the tap's partial sums of 8 outputs advance together
     * over ci (tap_sums8), each still summed in ci order from 0, so every output keeps the
     * bits of the plain dot product */
    float *wt = malloc(sizeof(float) * nw);
    ASSERT(wt);
    for (int64_t co = 0; co < Cout; co++)
        for (int r = 0; r < SPARSE_K3; r++)
            for (int64_t ci = 0; ci < Cin; ci++)
                wt[((int64_t)r * Cin + ci) * Cout + co] = wf[(co * SPARSE_K3 + r) * Cin + ci];
    const int32_t *nb = nbr->data;
    size_t ys = dtype_size(y->dtype);
    for (int64_t p = 0; p < T; p++) {
        memcpy(acc, bf, sizeof(float) * (size_t)Cout);
        for (int r = 0; r < SPARSE_K3; r++) {
            int32_t q = nb[p * SPARSE_K3 + r];
            if (q < 0)
                continue;
            ASSERT(q < Tx);
            const float *xr = xf + (int64_t)q * Cin, *wr = wt + (int64_t)r * Cin * Cout;
            int64_t co = 0;
            for (; co + 8 <= Cout; co += 8)     /* 8 sums in registers (SLP-vectorised) */
                tap_sums8(acc + co, xr, wr + co, Cin, Cout);
            for (; co < Cout; co++) {
                float t = 0.0f;
                for (int64_t ci = 0; ci < Cin; ci++)
                    t += wr[ci * Cout + co] * xr[ci];
                acc[co] += t;
            }
        }
        dtype_convert((char *)y->data + (size_t)(p * Cout) * ys, y->dtype, acc, DTYPE_F32,
                      (size_t)Cout);
    }
    free(wt);
    free(wf);
}

void op_sparse_conv1(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                     const struct tensor *lin, const struct tensor *b)
{
    ASSERT(lin->ndim == 2);
    op_linear(ctx, y, x, lin, b, false);
}

void sparse_conv1_weight(void *lin, const void *w, enum dtype dt, int64_t Cout, int64_t Cin)
{
    size_t e = dtype_size(dt);

    for (int64_t o = 0; o < Cout; o++)
        for (int64_t i = 0; i < Cin; i++)
            memcpy((char *)lin + (size_t)(o * Cin + i) * e, (const char *)w + (size_t)(i * Cout + o) * e,
                   e);
}

// ----------------------------------------------------------------------------
// downsample / upsample

int64_t op_sparse_down_index_cpu(struct tensor *pcoords, struct tensor *parent,
                                 struct tensor *children, const struct tensor *coords, int res)
{
    sparse_check_i32("sparse_down.coords", coords, DEVICE_HOST, -1, 4);
    int64_t T = coords->shape[0];
    sparse_check_i32("sparse_down.pcoords", pcoords, DEVICE_HOST, T, 4);
    sparse_check_i32("sparse_down.parent", parent, DEVICE_HOST, T, 0);
    sparse_check_i32("sparse_down.children", children, DEVICE_HOST, T, 8);
    ASSERT(res >= 2 && res % 2 == 0 && res <= SPARSE_MAX_RES);
    const int32_t *c = coords->data;
    int32_t *pc = pcoords->data, *par = parent->data, *ch = children->data;

    /* parent keys of every child, sorted: the unique runs are the parents in
     * lexicographic order (torch: code.unique(return_inverse=True), spatial.py:31-36) */
    struct sp_entry *e = malloc(sizeof(*e) * (size_t)(T > 0 ? T : 1));
    ASSERT(e);
    for (int64_t i = 0; i < T; i++) {
        const int32_t *r = c + 4 * i;
        ASSERT(r[0] == 0 && r[1] >= 0 && r[1] < res && r[2] >= 0 && r[2] < res && r[3] >= 0 &&
               r[3] < res);
        int32_t pr[4] = {r[0], r[1] >> 1, r[2] >> 1, r[3] >> 1};
        e[i].key = sp_key(pr, 0, 0, 0);
        e[i].row = i;
    }
    qsort(e, (size_t)T, sizeof(*e), sp_entry_cmp);
    int64_t M = 0;
    for (int64_t i = 0; i < T; i++) {
        if (i == 0 || e[i].key != e[i - 1].key) {
            const int32_t *r = c + 4 * e[i].row;
            pc[4 * M + 0] = r[0];
            pc[4 * M + 1] = r[1] >> 1;
            pc[4 * M + 2] = r[2] >> 1;
            pc[4 * M + 3] = r[3] >> 1;
            for (int k = 0; k < 8; k++)
                ch[8 * M + k] = -1;
            M++;
        }
        const int32_t *r = c + 4 * e[i].row;
        int k = (r[1] & 1) << 2 | (r[2] & 1) << 1 | (r[3] & 1);
        ASSERT(ch[8 * (M - 1) + k] == -1);               /* unique coords */
        ch[8 * (M - 1) + k] = (int32_t)e[i].row;
        par[e[i].row] = (int32_t)(M - 1);
    }
    free(e);
    return M;
}

void op_sparse_down_mean_cpu(struct tensor *y, const struct tensor *x,
                             const struct tensor *children)
{
    op_check_dense("sparse_down_mean.x", x, DEVICE_HOST);
    op_check_dense("sparse_down_mean.y", y, DEVICE_HOST);
    ASSERT(x->ndim == 2 && y->ndim == 2 && x->shape[1] == y->shape[1]);
    int64_t T = x->shape[0], M = y->shape[0], C = x->shape[1];
    sparse_check_i32("sparse_down_mean.children", children, DEVICE_HOST, -1, 8);
    ASSERT(children->shape[0] >= M);
    const int32_t *ch = children->data;
    float *row = malloc(sizeof(float) * (size_t)(2 * C + 1));
    ASSERT(row);
    float *acc = row + C;
    size_t xs = dtype_size(x->dtype), ys = dtype_size(y->dtype);

    for (int64_t m = 0; m < M; m++) {
        int n = 0;
        memset(acc, 0, sizeof(float) * (size_t)C);
        for (int k = 0; k < 8; k++) {
            int32_t q = ch[8 * m + k];
            if (q < 0)
                continue;
            ASSERT(q < T);
            dtype_convert(row, DTYPE_F32, (const char *)x->data + (size_t)(q * C) * xs,
                          x->dtype, (size_t)C);
            for (int64_t cc = 0; cc < C; cc++)
                acc[cc] += row[cc];
            n++;
        }
        for (int64_t cc = 0; cc < C; cc++)       /* include_self: the zero counts as one */
            acc[cc] /= (float)(n + 1);
        dtype_convert((char *)y->data + (size_t)(m * C) * ys, y->dtype, acc, DTYPE_F32,
                      (size_t)C);
    }
    free(row);
}

/* Gather (y[i] = x[idx[i]], T = y rows) or scatter (y[idx[i]] = x[i], T = x
 * rows) of whole rows, converted; op names the op in the checks. */
static void move_rows(const char *op, struct tensor *y, const struct tensor *x,
                      const struct tensor *idx, bool scatter)
{
    char nm[64];

    snprintf(nm, sizeof(nm), "%s.x", op);
    op_check_dense(nm, x, DEVICE_HOST);
    snprintf(nm, sizeof(nm), "%s.y", op);
    op_check_dense(nm, y, DEVICE_HOST);
    ASSERT(x->ndim == 2 && y->ndim == 2 && x->shape[1] == y->shape[1]);
    int64_t T = scatter ? x->shape[0] : y->shape[0], M = scatter ? y->shape[0] : x->shape[0];
    int64_t C = x->shape[1];
    snprintf(nm, sizeof(nm), "%s.idx", op);
    sparse_check_i32(nm, idx, DEVICE_HOST, T, 0);
    const int32_t *ix = idx->data;
    size_t xs = dtype_size(x->dtype), ys = dtype_size(y->dtype);

    for (int64_t i = 0; i < T; i++) {
        ASSERT(ix[i] >= 0 && ix[i] < M);
        int64_t d = scatter ? ix[i] : i, r = scatter ? i : ix[i];
        dtype_convert((char *)y->data + (size_t)(d * C) * ys, y->dtype,
                      (const char *)x->data + (size_t)(r * C) * xs, x->dtype, (size_t)C);
    }
}

void op_sparse_gather_rows_cpu(struct tensor *y, const struct tensor *x, const struct tensor *idx)
{
    move_rows("sparse_gather_rows", y, x, idx, false);
}

void op_sparse_scatter_rows_cpu(struct tensor *y, const struct tensor *x, const struct tensor *idx)
{
    move_rows("sparse_scatter_rows", y, x, idx, true);
}

// ----------------------------------------------------------------------------
// subdivide

void op_sparse_subdivide_cpu(struct tensor *y_coords, const struct tensor *x_coords,
                             struct tensor *y_feats, const struct tensor *x_feats)
{
    ASSERT((y_coords == NULL) == (x_coords == NULL) && (y_feats == NULL) == (x_feats == NULL));
    if (x_coords) {
        sparse_check_i32("sparse_subdivide.x_coords", x_coords, DEVICE_HOST, -1, 4);
        int64_t T = x_coords->shape[0];
        sparse_check_i32("sparse_subdivide.y_coords", y_coords, DEVICE_HOST, 8 * T, 4);
        const int32_t *c = x_coords->data;
        int32_t *o = y_coords->data;
        for (int64_t i = 0; i < T; i++)
            for (int k = 0; k < 8; k++) {       /* nonzero(ones(2,2,2)) order: z fastest */
                int32_t *r = o + 4 * (8 * i + k);
                r[0] = c[4 * i];
                r[1] = 2 * c[4 * i + 1] + (k >> 2);
                r[2] = 2 * c[4 * i + 2] + ((k >> 1) & 1);
                r[3] = 2 * c[4 * i + 3] + (k & 1);
            }
    }
    if (x_feats) {
        op_check_dense("sparse_subdivide.x_feats", x_feats, DEVICE_HOST);
        op_check_dense("sparse_subdivide.y_feats", y_feats, DEVICE_HOST);
        ASSERT(x_feats->ndim == 2 && y_feats->ndim == 2);
        int64_t T = x_feats->shape[0], C = x_feats->shape[1];
        ASSERT(y_feats->shape[0] == 8 * T && y_feats->shape[1] == C);
        if (x_coords)
            ASSERT(x_coords->shape[0] == T);
        size_t xs = dtype_size(x_feats->dtype), ys = dtype_size(y_feats->dtype);
        for (int64_t i = 0; i < T; i++)
            for (int k = 0; k < 8; k++)
                dtype_convert((char *)y_feats->data + (size_t)((8 * i + k) * C) * ys,
                              y_feats->dtype, (const char *)x_feats->data + (size_t)(i * C) * xs,
                              x_feats->dtype, (size_t)C);
    }
}

// ----------------------------------------------------------------------------
// GroupNorm over sites

void op_sparse_groupnorm_cpu(struct tensor *y, const struct tensor *x, int groups,
                             const struct tensor *w, const struct tensor *b, float eps, bool silu)
{
    op_check_dense("sparse_groupnorm.x", x, DEVICE_HOST);
    op_check_dense("sparse_groupnorm.y", y, DEVICE_HOST);
    ASSERT(x->ndim == 2 && tensor_same_shape(x, y));
    ASSERT((w == NULL) == (b == NULL));
    int64_t T = x->shape[0], C = x->shape[1];
    ASSERT(groups >= 1 && C % groups == 0);
    if (T == 0 || C == 0)
        return;

    double *acc = calloc(3 * (size_t)groups, sizeof(double));
    ASSERT(acc);
    struct tensor ta = tensor_view(acc, DTYPE_F64, DEVICE_HOST, SHAPE(groups, 3));
    op_sparse_groupnorm_stats_cpu(&ta, x, groups);
    op_sparse_groupnorm_apply_cpu(y, x, &ta, groups, w, b, eps, silu);
    free(acc);
}

void op_sparse_groupnorm_stats_cpu(struct tensor *acc, const struct tensor *x, int groups)
{
    op_check_dense("sparse_groupnorm_stats.x", x, DEVICE_HOST);
    ASSERT(acc->dtype == DTYPE_F64 && acc->device == DEVICE_HOST && tensor_is_contiguous(acc) &&
           tensor_numel(acc) == 3 * (int64_t)groups && x->ndim == 2);
    int64_t T = x->shape[0], C = x->shape[1];
    ASSERT(groups >= 1 && C % groups == 0);
    int64_t Cg = C / groups;
    if (T == 0 || C == 0)
        return;
    float *xf = malloc(sizeof(float) * (size_t)(T * C));
    double *a = acc->data;
    ASSERT(xf);
    dtype_convert(xf, DTYPE_F32, x->data, x->dtype, (size_t)(T * C));
    for (int g = 0; g < groups; g++) {         /* two passes in double over the chunk */
        double mean = 0, m2 = 0, n = (double)(T * Cg);
        for (int64_t t = 0; t < T; t++)
            for (int64_t c = g * Cg; c < (g + 1) * Cg; c++)
                mean += xf[t * C + c];
        mean /= n;
        for (int64_t t = 0; t < T; t++)
            for (int64_t c = g * Cg; c < (g + 1) * Cg; c++)
                m2 += (xf[t * C + c] - mean) * (xf[t * C + c] - mean);
        double *s = a + 3 * g;
        if (s[0] == 0) {                       /* the first chunk: as it is */
            s[0] = n, s[1] = mean, s[2] = m2;
        } else {                               /* Chan et al.'s pairwise merge */
            double tot = s[0] + n, d = mean - s[1];
            s[1] += d * n / tot;
            s[2] += m2 + d * d * s[0] * n / tot;
            s[0] = tot;
        }
    }
    free(xf);
}

void op_sparse_groupnorm_apply_cpu(struct tensor *y, const struct tensor *x,
                                   const struct tensor *acc, int groups, const struct tensor *w,
                                   const struct tensor *b, float eps, bool silu)
{
    op_check_dense("sparse_groupnorm.x", x, DEVICE_HOST);
    op_check_dense("sparse_groupnorm.y", y, DEVICE_HOST);
    ASSERT(x->ndim == 2 && tensor_same_shape(x, y));
    ASSERT((w == NULL) == (b == NULL));
    ASSERT(acc->dtype == DTYPE_F64 && acc->device == DEVICE_HOST &&
           tensor_numel(acc) == 3 * (int64_t)groups);
    int64_t T = x->shape[0], C = x->shape[1];
    ASSERT(groups >= 1 && C % groups == 0);
    int64_t Cg = C / groups;
    if (w) {
        op_check_dense("sparse_groupnorm.w", w, DEVICE_HOST);
        op_check_dense("sparse_groupnorm.b", b, DEVICE_HOST);
        ASSERT(tensor_numel(w) == C && tensor_numel(b) == C);
    }
    if (T == 0 || C == 0)
        return;

    float *xf = malloc(sizeof(float) * (size_t)(T * C + 2 * C));
    double *st = malloc(sizeof(double) * 2 * (size_t)groups);
    ASSERT(xf && st);
    float *wf = xf + T * C, *bf = wf + C;      /* affine, or (1, 0) */
    const double *a = acc->data;
    dtype_convert(xf, DTYPE_F32, x->data, x->dtype, (size_t)(T * C));
    for (int64_t c = 0; c < C; c++) {
        wf[c] = w ? (float)dtype_get(w->data, w->dtype, (size_t)c) : 1.0f;
        bf[c] = w ? (float)dtype_get(b->data, b->dtype, (size_t)c) : 0.0f;
    }
    for (int g = 0; g < groups; g++) {
        double var = a[3 * g] > 0 ? a[3 * g + 2] / a[3 * g] : 0.0;   /* biased, as torch */
        st[2 * g] = a[3 * g + 1];
        st[2 * g + 1] = 1.0 / sqrt(var + (double)eps);
    }
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < C; c++) {
            int64_t g = c / Cg;
            float v = (xf[t * C + c] - (float)st[2 * g]) * (float)st[2 * g + 1] * wf[c] + bf[c];
            xf[t * C + c] = silu ? v / (1.0f + expf(-v)) : v;
        }
    dtype_convert(y->data, y->dtype, xf, DTYPE_F32, (size_t)(T * C));
    free(st);
    free(xf);
}
