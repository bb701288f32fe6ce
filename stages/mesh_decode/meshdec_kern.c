/*
 * meshdec_kern.c - CPU reference of the mesh decoder's small ops (meshdec_kern.h).
 */
#include "meshdec_kern.h"
#include "check.h"
#include "ops_sparse.h"

#include <string.h>

void mdk_nbr_sub_cpu(struct tensor *map, const struct tensor *parent, const struct tensor *units,
                     int G, int64_t row0, enum mdk_nbr_mode mode, const struct tensor *loc)
{
    int64_t n = map->shape[0];

    sparse_check_i32("mdk_nbr_sub.map", map, DEVICE_HOST, -1, SPARSE_K3);
    sparse_check_i32("mdk_nbr_sub.parent", parent, DEVICE_HOST, -1, SPARSE_K3);
    ASSERT(G >= 1 && (!units || units->shape[0] * G == n) && (mode != MDK_LOCAL || loc));
    if (units)
        sparse_check_i32("mdk_nbr_sub.units", units, DEVICE_HOST, -1, 0);
    if (loc)
        sparse_check_i32("mdk_nbr_sub.loc", loc, DEVICE_HOST, -1, 0);
    const int32_t *u = units ? units->data : NULL, *pm = parent->data;
    const int32_t *lc = loc ? loc->data : NULL;
    int32_t *m = map->data;
    for (int64_t j = 0; j < n; j++) {
        int64_t row = u ? (int64_t)G * u[j / G] + j % G : row0 + j;
        ASSERT(row >= 0 && (row >> 3) < parent->shape[0]);
        for (int r = 0; r < SPARSE_K3; r++) {
            m[j * SPARSE_K3 + r] = mdk_nbr_entry(pm, row, r, (int)mode, G, lc);
            /* a chunk table holds every neighbour its rows need */
            ASSERT(mode != MDK_LOCAL || (m[j * SPARSE_K3 + r] >= 0) ==
                                        (mdk_nbr_entry(pm, row, r, MDK_CHILD, G, lc) >= 0));
        }
    }
}

void mdk_loc_cpu(struct tensor *loc, const struct tensor *units, bool set)
{
    sparse_check_i32("mdk_loc.loc", loc, DEVICE_HOST, -1, 0);
    sparse_check_i32("mdk_loc.units", units, DEVICE_HOST, -1, 0);
    int32_t *l = loc->data;
    const int32_t *u = units->data;
    for (int64_t j = 0; j < units->shape[0]; j++) {
        ASSERT(u[j] >= 0 && u[j] < loc->shape[0]);
        l[u[j]] = set ? (int32_t)j : -1;
    }
}

void mdk_subconv_check(const struct tensor *wp, const struct tensor *bp, const struct tensor *w,
                          const struct tensor *b, enum device dev, int64_t *Cout, int64_t *Cin)
{
    op_check_dense("mdk_subconv_weight.wp", wp, dev);
    op_check_dense("mdk_subconv_weight.bp", bp, dev);
    op_check_dense("mdk_subconv_weight.w", w, dev);
    op_check_dense("mdk_subconv_weight.b", b, dev);
    ASSERT(w->ndim == 5 && wp->ndim == 5 && b->ndim == 1 && bp->ndim == 1);
    *Cout = w->shape[0];
    *Cin = w->shape[4];
    ASSERT(w->shape[1] == 3 && w->shape[2] == 3 && w->shape[3] == 3 && b->shape[0] == *Cout);
    ASSERT(wp->shape[0] == 8 * *Cout && wp->shape[1] == 3 && wp->shape[2] == 3 &&
           wp->shape[3] == 3 && wp->shape[4] == *Cin && bp->shape[0] == 8 * *Cout);
    ASSERT(w->dtype == wp->dtype && b->dtype == w->dtype && bp->dtype == w->dtype &&
           (w->dtype == DTYPE_F32 || w->dtype == DTYPE_F16));
}

void mdk_subconv_weight_cpu(struct tensor *wp, struct tensor *bp, const struct tensor *w,
                            const struct tensor *b)
{
    int64_t Cout, Cin;

    mdk_subconv_check(wp, bp, w, b, DEVICE_HOST, &Cout, &Cin);
    for (int64_t row = 0; row < 8 * Cout; row++) {
        int k = (int)(row / Cout);
        int64_t o = row % Cout;
        dtype_set(bp->data, bp->dtype, (size_t)row, dtype_get(b->data, b->dtype, (size_t)o));
        for (int s = 0; s < SPARSE_K3; s++) {
            int lo[3], hi[3];
            for (int a = 0; a < 3; a++)
                mdk_sub_taps(k >> (2 - a) & 1, a == 0 ? s / 9 : a == 1 ? s / 3 % 3 : s % 3,
                             &lo[a], &hi[a]);
            for (int64_t ci = 0; ci < Cin; ci++) {
                double sum = 0;
                for (int r0 = lo[0]; r0 <= hi[0]; r0++)
                    for (int r1 = lo[1]; r1 <= hi[1]; r1++)
                        for (int r2 = lo[2]; r2 <= hi[2]; r2++)
                            sum += dtype_get(w->data, w->dtype,
                                             (size_t)((o * SPARSE_K3 + r0 * 9 + r1 * 3 + r2) *
                                                      Cin + ci));
                dtype_set(wp->data, wp->dtype, (size_t)((row * SPARSE_K3 + s) * Cin + ci), sum);
            }
        }
    }
}

void mdk_add_parent_cpu(struct tensor *y, const struct tensor *a, const struct tensor *p,
                        int64_t row0)
{
    op_check_dense("mdk_add_parent.y", y, DEVICE_HOST);
    op_check_dense("mdk_add_parent.a", a, DEVICE_HOST);
    op_check_dense("mdk_add_parent.p", p, DEVICE_HOST);
    ASSERT(a->ndim == 2 && p->ndim == 2 && tensor_same_shape(y, a) && a->dtype == p->dtype &&
           p->shape[1] == a->shape[1]);
    int64_t rows = a->shape[0], C = a->shape[1];
    ASSERT(rows == 0 || ((row0 + rows - 1) >> 3) < p->shape[0]);
    size_t ys = dtype_size(y->dtype);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < C; c++) {
            /* fp32 opmath, then one rounding to a's dtype: torch's add of two fp16 tensors */
            float f = (float)dtype_get(a->data, a->dtype, (size_t)(r * C + c)) +
                      (float)dtype_get(p->data, p->dtype, (size_t)(((row0 + r) >> 3) * C + c));
            char t[8];
            dtype_convert(t, a->dtype, &f, DTYPE_F32, 1);
            dtype_convert((char *)y->data + (size_t)(r * C + c) * ys, y->dtype, t, a->dtype, 1);
        }
}

void mdk_move_down(const struct op_ctx *ctx, enum device dev, void *dst, const void *src,
                   size_t bytes)
{
    ASSERT((const char *)dst <= (const char *)src);
    size_t gap = (size_t)((const char *)src - (char *)dst);
    if (!gap || !bytes)
        return;
    for (size_t o = 0; o < bytes; o += gap) {
        size_t n = bytes - o < gap ? bytes - o : gap;
        if (dev == DEVICE_CUDA)
            CUDA_CHECK(cudaMemcpyAsync((char *)dst + o, (const char *)src + o, n,
                                       cudaMemcpyDeviceToDevice, ctx->stream));
        else
            memcpy((char *)dst + o, (const char *)src + o, n);
    }
}
