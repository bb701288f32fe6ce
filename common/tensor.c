/*
 * tensor.c - dense tensor views. See tensor.h.
 */
#include "tensor.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

static void tensor_set_contiguous_strides(struct tensor *t)
{
    int64_t s = 1;

    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i];
    }
}

struct tensor tensor_view(void *data, enum dtype dt, enum device dev,
                          const int64_t *shape, int ndim)
{
    struct tensor t;

    ASSERT(ndim >= 0 && ndim <= TENSOR_MAX_DIMS);
    memset(&t, 0, sizeof(t));
    t.dtype  = dt;
    t.device = dev;
    t.ndim   = ndim;
    for (int i = 0; i < ndim; i++)
        t.shape[i] = shape[i];
    tensor_set_contiguous_strides(&t);
    t.data = data;
    return t;
}

int64_t tensor_numel(const struct tensor *t)
{
    int64_t n = 1;

    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

size_t tensor_nbytes(const struct tensor *t)
{
    return (size_t)tensor_numel(t) * dtype_size(t->dtype);
}

bool tensor_is_contiguous(const struct tensor *t)
{
    int64_t s = 1;

    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s)
            return false;
        s *= t->shape[i];
    }
    return true;
}

bool tensor_same_shape(const struct tensor *a, const struct tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

struct tensor tensor_reshape(const struct tensor *t, const int64_t *shape, int ndim)
{
    struct tensor r = tensor_view(t->data, t->dtype, t->device, shape, ndim);

    ASSERT(tensor_is_contiguous(t));
    ASSERT(tensor_numel(&r) == tensor_numel(t));
    return r;
}

struct tensor tensor_slice(const struct tensor *t, int dim, int64_t start, int64_t len)
{
    struct tensor r = *t;

    ASSERT(dim >= 0 && dim < t->ndim);
    ASSERT(start >= 0 && len >= 0 && start + len <= t->shape[dim]);
    r.shape[dim] = len;
    r.data = (char *)t->data + start * t->stride[dim] * (int64_t)dtype_size(t->dtype);
    return r;
}

char *tensor_shape_str(const int64_t *shape, int ndim, char *buf, size_t len)
{
    size_t n = 0;

    n += (size_t)snprintf(buf + n, len > n ? len - n : 0, "[");
    for (int i = 0; i < ndim; i++)
        n += (size_t)snprintf(buf + n, len > n ? len - n : 0, "%s%lld", i ? "," : "",
                              (long long)shape[i]);
    snprintf(buf + n, len > n ? len - n : 0, "]");
    return buf;
}

void tensor_copy_contiguous(void *dst, const struct tensor *src)
{
    size_t  es = dtype_size(src->dtype);
    int64_t n  = tensor_numel(src);
    int64_t idx[TENSOR_MAX_DIMS] = {0};

    ASSERT(src->device == DEVICE_HOST);
    if (tensor_is_contiguous(src)) {
        memcpy(dst, src->data, (size_t)n * es);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t off = 0;

        for (int d = 0; d < src->ndim; d++)
            off += idx[d] * src->stride[d];
        memcpy((char *)dst + (size_t)i * es, (const char *)src->data + off * (int64_t)es, es);
        for (int d = src->ndim - 1; d >= 0; d--) {
            if (++idx[d] < src->shape[d])
                break;
            idx[d] = 0;
        }
    }
}
