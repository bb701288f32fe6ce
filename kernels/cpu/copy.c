/*
 * copy.c - copy, zero and the host side of upload/download (see ops_copy.h).
 * The CPU reference for kernels/cuda/copy.cu. Test: tests/test_op_copy.c.
 */
#include "ops_copy.h"
#include "dtype.h"
#include "log.h"

#include <string.h>

bool op_rows_pitched(const struct tensor *t, int64_t *rows, int64_t *cols, int64_t *pitch)
{
    int64_t r = 1, c = t->ndim ? t->shape[t->ndim - 1] : 1, p = -1, next = -1;

    if (t->ndim && c > 1 && t->stride[t->ndim - 1] != 1)
        return false;
    /* leading dims, innermost first: the first one of size > 1 sets the pitch,
     * each further one must continue it */
    for (int d = t->ndim - 2; d >= 0; d--) {
        r *= t->shape[d];
        if (t->shape[d] == 1)
            continue;
        if (p < 0)
            p = t->stride[d];
        else if (t->stride[d] != next)
            return false;
        next = t->stride[d] * t->shape[d];
    }
    if (p < 0)
        p = c;
    if (p < c)
        return false;
    *rows = r;
    *cols = c;
    *pitch = p;
    return true;
}

void op_copy_layout(const struct tensor *dst, const struct tensor *src, int64_t *rows,
                    int64_t *cols, int64_t *dpitch, int64_t *spitch)
{
    int64_t sr, sc;

    ASSERT(dst->device == src->device && tensor_numel(dst) == tensor_numel(src));
    ASSERT(dst->dtype == src->dtype || (op_dtype_ok(dst->dtype) && op_dtype_ok(src->dtype)));
    if (tensor_is_contiguous(dst) && tensor_is_contiguous(src)) {
        *rows = 1;
        *cols = *dpitch = *spitch = tensor_numel(dst);
        return;
    }
    ASSERT(op_rows_pitched(dst, rows, cols, dpitch) && op_rows_pitched(src, &sr, &sc, spitch));
    ASSERT(sr == *rows && sc == *cols);
}

void op_copy_cpu(struct tensor *dst, const struct tensor *src)
{
    int64_t rows, cols, dp, sp;
    size_t ed = dtype_size(dst->dtype), es = dtype_size(src->dtype);

    ASSERT(dst->device == DEVICE_HOST);
    op_copy_layout(dst, src, &rows, &cols, &dp, &sp);
    for (int64_t r = 0; r < rows; r++) {
        char *d = (char *)dst->data + (size_t)(r * dp) * ed;
        const char *s = (const char *)src->data + (size_t)(r * sp) * es;
        if (dst->dtype == src->dtype)
            memcpy(d, s, (size_t)cols * ed);
        else
            dtype_convert(d, dst->dtype, s, src->dtype, (size_t)cols);
    }
}

void op_zero_cpu(struct tensor *t)
{
    ASSERT(t->device == DEVICE_HOST && tensor_is_contiguous(t));
    memset(t->data, 0, tensor_nbytes(t));
}
