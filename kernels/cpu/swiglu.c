/*
 * swiglu.c - CPU reference for op_swiglu: y = silu(a) * b with PyTorch's
 * rounding (silu(a) stored in a's dtype first). See kernels/ops.h.
 */
#include "log.h"
#include "ops.h"

#include <math.h>


void op_swiglu_cpu(struct tensor *y, const struct tensor *a, const struct tensor *b)
{
    op_check_dense("swiglu.a", a, DEVICE_HOST);
    op_check_dense("swiglu.b", b, DEVICE_HOST);
    op_check_dense("swiglu.y", y, DEVICE_HOST);
    int64_t n = tensor_numel(y);
    ASSERT(tensor_numel(a) == n && tensor_numel(b) == n);

    for (int64_t i = 0; i < n; i++) {
        float x = (float)dtype_get(a->data, a->dtype, (size_t)i);
        float s = dtype_round(a->dtype, x / (1.0f + expf(-x)));
        float g = (float)dtype_get(b->data, b->dtype, (size_t)i);
        dtype_set(y->data, y->dtype, (size_t)i, (double)(s * g));
    }
}
