/*
 * op_util.c - boundary checks shared by the CPU and CUDA ops. See ops.h.
 *
 * A failed check is an internal fault (two of our own ops disagree about a
 * tensor), so it logs the op, the tensor and what was wrong, then aborts.
 */
#include "ops.h"
#include "beat.h"
#include "log.h"

#include <stdio.h>

bool op_dtype_ok(enum dtype dt)
{
    return dt == DTYPE_F32 || dt == DTYPE_F16 || dt == DTYPE_BF16;
}

void op_check_dense(const char *op, const struct tensor *t, enum device dev)
{
    char shape[128];

    beat_progress();                      /* every op passes here: a progress point (beat.h) */
    ASSERT(t && t->data);
    if (op_dtype_ok(t->dtype) && t->device == dev && tensor_is_contiguous(t) && t->ndim >= 1)
        return;
    log_error("%s: tensor %s %s on %s, contiguous %d; expected F32/F16/BF16, contiguous, on %s",
              op, dtype_name(t->dtype), tensor_shape_str(t->shape, t->ndim, shape, sizeof(shape)),
              t->device == DEVICE_CUDA ? "cuda" : "host", tensor_is_contiguous(t),
              dev == DEVICE_CUDA ? "cuda" : "host");
    s3d_fatal(__FILE__, __LINE__, "op_check_dense", "ASSERT", op);
}

int64_t op_cols(const struct tensor *t)
{
    ASSERT(t->ndim >= 1);
    return t->shape[t->ndim - 1];
}

int64_t op_rows(const struct tensor *t)
{
    int64_t c = op_cols(t);

    return c ? tensor_numel(t) / c : 0;
}

void op_check_linear(const struct tensor *y, const struct tensor *x, const struct tensor *w,
                     const struct tensor *b, enum device dev, int64_t *M, int64_t *N, int64_t *K)
{
    op_check_dense("linear.x", x, dev);
    op_check_dense("linear.w", w, dev);
    op_check_dense("linear.y", y, dev);
    ASSERT(w->ndim == 2 && w->dtype == x->dtype);
    ASSERT(y->dtype == x->dtype || y->dtype == DTYPE_F32);
    *K = op_cols(x);
    *M = op_rows(x);
    *N = w->shape[0];
    ASSERT(w->shape[1] == *K && op_cols(y) == *N && op_rows(y) == *M && y->ndim == x->ndim);
    if (b) {
        op_check_dense("linear.b", b, dev);
        ASSERT(tensor_numel(b) == *N);
    }
}

void op_check_attention(const struct tensor *o, const struct tensor *q, const struct tensor *k,
                        const struct tensor *v, int nd, enum device dev)
{
    const struct tensor *in[3] = {q, k, v};

    for (int i = 0; i < 3; i++) {
        ASSERT(in[i]->device == dev && in[i]->ndim == nd);
        ASSERT(in[i]->dtype == q->dtype && op_dtype_ok(q->dtype));
        ASSERT(in[i]->shape[nd - 1] == OP_HEAD_DIM && in[i]->stride[nd - 1] == 1);
        ASSERT(in[i]->shape[nd - 2] == q->shape[nd - 2]);
    }
    ASSERT(tensor_same_shape(k, v));
    op_check_dense("attention.o", o, dev);
    ASSERT(tensor_same_shape(o, q) && o->dtype == q->dtype);
}

int64_t op_bcast_groups(const char *op, const struct tensor *p, int64_t rows, int64_t cols)
{
    int64_t n = tensor_numel(p);
    char    shape[128];

    if (cols > 0 && n % cols == 0 && n / cols >= 1 && rows % (n / cols) == 0 &&
        op_cols(p) == cols)
        return n / cols;
    log_error("%s: broadcast parameter %s does not fit %lld rows of %lld", op,
              tensor_shape_str(p->shape, p->ndim, shape, sizeof(shape)), (long long)rows,
              (long long)cols);
    s3d_fatal(__FILE__, __LINE__, "op_bcast_groups", "ASSERT", op);
}
