/*
 * tensor.h - dense tensor views in PyTorch dimension order.
 *
 * A struct tensor never owns memory: data belongs to an arena, a file mapping
 * or a caller buffer. shape[0] is outermost; strides are in elements with
 * PyTorch semantics. Views (tensor_view, tensor_reshape, tensor_slice) never
 * allocate.
 */
#ifndef S3D_TENSOR_H
#define S3D_TENSOR_H

#include "dtype.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TENSOR_MAX_DIMS 8

enum device { DEVICE_HOST, DEVICE_CUDA };

struct tensor {
    enum dtype  dtype;
    enum device device;
    int         ndim;
    int64_t     shape[TENSOR_MAX_DIMS];
    int64_t     stride[TENSOR_MAX_DIMS];   /* in elements */
    void       *data;
};

/* SHAPE(a, b, c) -> an int64_t array literal and its length, for shape arguments. */
#define SHAPE(...) ((const int64_t[]){__VA_ARGS__}), \
    ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

/* A contiguous view of data with the given shape. */
struct tensor tensor_view(void *data, enum dtype dt, enum device dev,
                          const int64_t *shape, int ndim);
int64_t tensor_numel(const struct tensor *t);
size_t  tensor_nbytes(const struct tensor *t);         /* numel * dtype_size */
bool    tensor_is_contiguous(const struct tensor *t);
bool    tensor_same_shape(const struct tensor *a, const struct tensor *b);
/* Same element count, contiguous input; returns the view (ASSERTs otherwise). */
struct tensor tensor_reshape(const struct tensor *t, const int64_t *shape, int ndim);
/* Narrow dimension dim to [start, start+len). */
struct tensor tensor_slice(const struct tensor *t, int dim, int64_t start, int64_t len);
/* "[1,1374,1024]" into buf; returns buf. */
char *tensor_shape_str(const int64_t *shape, int ndim, char *buf, size_t len);

/* Copy a (possibly strided) host tensor into a contiguous host buffer of the same
 * dtype: the logical contents in row-major order. */
void tensor_copy_contiguous(void *dst, const struct tensor *src);

#ifdef __cplusplus
}
#endif
#endif
