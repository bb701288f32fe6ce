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
