/*
 * sparse_tap.c - CPU reference of the tap-wise submanifold conv
 * (op_sparse_conv3_tap, ops_sparse.h): Z_k at the input rows by direct fp32
 * dot products in ci order, then the gather-sum from b in k order, one
 * rounding. tests/test_op_sparse_tap.c checks it against op_sparse_conv3_cpu
 * (the conv's reference) and measures the CUDA op against it.
 */
#include "ops_sparse.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>

void sparse_conv3_tapmajor(void *dst, const void *src, enum dtype dt, int64_t Cout, int64_t Cin)
{
    size_t e = dtype_size(dt), row = (size_t)Cin * e;

    for (int64_t k = 0; k < SPARSE_K3; k++)
        for (int64_t o = 0; o < Cout; o++)
            memcpy((char *)dst + ((size_t)(k * Cout + o)) * row,
                   (const char *)src + ((size_t)(o * SPARSE_K3 + k)) * row, row);
}

/* The shape and dtype checks both ops share. */
void sparse_conv3_tap_check(const struct tensor *y, const struct tensor *x, const struct tensor *wt,
                            const struct tensor *b, const struct tensor *nbr, enum device dev)
{
    op_check_dense("sparse_conv3_tap.x", x, dev);
    op_check_dense("sparse_conv3_tap.wt", wt, dev);
    op_check_dense("sparse_conv3_tap.y", y, dev);
    ASSERT(x->ndim == 2 && y->ndim == 2 && wt->ndim == 3);
    ASSERT(wt->shape[0] == SPARSE_K3 && wt->shape[2] == x->shape[1] && y->shape[1] == wt->shape[1]);
    sparse_check_i32("sparse_conv3_tap.nbr", nbr, dev, y->shape[0], SPARSE_K3);
    if (b) {
        op_check_dense("sparse_conv3_tap.b", b, dev);
        ASSERT(tensor_numel(b) == wt->shape[1]);
    }
}

void op_sparse_conv3_tap_cpu(struct tensor *y, const struct tensor *x, const struct tensor *wt,
                             const struct tensor *b, const struct tensor *nbr)
{
    sparse_conv3_tap_check(y, x, wt, b, nbr, DEVICE_HOST);
    int64_t T = y->shape[0], Tx = x->shape[0], Cin = x->shape[1], Cout = wt->shape[1];
    if (T == 0 || Cout == 0)
        return;

    size_t nw = (size_t)(SPARSE_K3 * Cout * Cin), nx = (size_t)(Tx * Cin);
    size_t nz = (size_t)(Tx * SPARSE_K3 * Cout);
    float *wf = malloc(sizeof(float) * (nw + nx + nz + 2 * (size_t)Cout));
    ASSERT(wf);
    float *xf = wf + nw, *z = xf + nx, *bf = z + nz, *acc = bf + Cout;
    dtype_convert(wf, DTYPE_F32, wt->data, wt->dtype, nw);
    if (x->dtype == wt->dtype || wt->dtype == DTYPE_F32) {
        dtype_convert(xf, DTYPE_F32, x->data, x->dtype, nx);
    } else {                                    /* x rounded to wt's dtype, as on CUDA */
        void *xr = malloc(dtype_size(wt->dtype) * nx);
        ASSERT(xr);
        dtype_convert(xr, wt->dtype, x->data, x->dtype, nx);
        dtype_convert(xf, DTYPE_F32, xr, wt->dtype, nx);
        free(xr);
    }
    memset(bf, 0, sizeof(float) * (size_t)Cout);
    if (b)
        dtype_convert(bf, DTYPE_F32, b->data, b->dtype, (size_t)Cout);

    /* Z[r][k][o] = sum_i wt[k][o][i] x[r][i], fp32 in i order */
    for (int64_t r = 0; r < Tx; r++)
        for (int64_t k = 0; k < SPARSE_K3; k++)
            for (int64_t o = 0; o < Cout; o++) {
                const float *wr = wf + (k * Cout + o) * Cin, *xr = xf + r * Cin;
                float s = 0.0f;
                for (int64_t i = 0; i < Cin; i++)
                    s += wr[i] * xr[i];
                z[(r * SPARSE_K3 + k) * Cout + o] = s;
            }
    /* y[p] = b + Z_0[nbr[p, 0]] + Z_1[nbr[p, 1]] + ... in k order */
    const int32_t *nb = nbr->data;
    size_t ys = dtype_size(y->dtype);
    for (int64_t p = 0; p < T; p++) {
        memcpy(acc, bf, sizeof(float) * (size_t)Cout);
        for (int64_t k = 0; k < SPARSE_K3; k++) {
            int32_t r = nb[p * SPARSE_K3 + k];
            if (r < 0)
                continue;
            ASSERT(r < Tx);
            const float *zr = z + ((int64_t)r * SPARSE_K3 + k) * Cout;
            for (int64_t o = 0; o < Cout; o++)
                acc[o] += zr[o];
        }
        dtype_convert((char *)y->data + (size_t)(p * Cout) * ys, y->dtype, acc, DTYPE_F32,
                      (size_t)Cout);
    }
    free(wf);
}
