/*
 * ops_copy.h - moving tensors: copy (with a dtype cast), zero, and the two
 * host <-> model-device transfers every stage needs (upload, download).
 * The only cudaMemcpy/cudaMemset calls outside the op library's own kernels
 * and common/arena.c are here, so stage and model code never calls the CUDA
 * runtime to move data.
 *
 * Conventions of ops.h: struct tensor views in PyTorch order, op_<name>_cpu on
 * DEVICE_HOST tensors, op_<name>_cuda queued on ctx->stream, op_<name>()
 * dispatching on the output's device; a mismatch is an internal fault (ASSERT).
 *
 * Dtype casts are exact widenings and round-to-nearest-even narrowings, NaN
 * and Inf kept: the CPU ops use common/dtype.h (dtype_convert), the CUDA cast
 * the same rounding (__float2half_rn, __float2bfloat16_rn), so the two are
 * bit-identical (tests/test_op_copy.c checks it).
 *
 * "Row-pitched" (op_copy): a tensor whose last dim is contiguous and whose
 * leading dims collapse into rows of one pitch - a contiguous tensor, a
 * column range of a matrix (tensor_slice on the last dim), a row range.
 *
 * CPU reference: kernels/cpu/copy.c. CUDA: kernels/cuda/copy.cu.
 * Test: tests/test_op_copy.c.
 */
#ifndef S3D_OPS_COPY_H
#define S3D_OPS_COPY_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dst = src, element by element, cast to dst's dtype. dst and src: the same
 * device, the same numel; both contiguous, or both row-pitched with the same
 * (rows, last dim). Dtypes: equal (any dtype: a byte copy), or both F32 / F16 /
 * BF16 (a cast). Must not overlap. torch: dst.copy_(src). */
void op_copy_cpu(struct tensor *dst, const struct tensor *src);
void op_copy_cuda(const struct op_ctx *ctx, struct tensor *dst, const struct tensor *src);

/* t = 0 (every byte zero: +0.0 for floats); t contiguous, any dtype. */
void op_zero_cpu(struct tensor *t);
void op_zero_cuda(const struct op_ctx *ctx, struct tensor *t);

/* dst (on the model's device: DEVICE_HOST or DEVICE_CUDA) = src (host), cast
 * to dst's dtype (any cast dtype_convert makes). Both contiguous with the same
 * numel (the shapes may differ). On CUDA: a pageable copy through a host
 * buffer when the dtypes differ, queued on ctx->stream; returns when src may be
 * reused or freed (it waits for the copy). ctx NULL: the legacy default stream
 * (loading weights before any op context exists; it waits for every stream). */
void op_upload(const struct op_ctx *ctx, struct tensor *dst, const struct tensor *src);

/* dst (host) = src (DEVICE_HOST or DEVICE_CUDA), cast to dst's dtype (any
 * cast dtype_convert makes). Both contiguous, same numel. On CUDA the copy is
 * queued after every op on ctx->stream and waited for: dst holds the values
 * when it returns. ctx NULL: the legacy default stream, as for op_upload. */
void op_download(const struct op_ctx *ctx, struct tensor *dst, const struct tensor *src);

/* t as rows x cols: cols = the last dim (stride 1 unless it is 1), rows = the
 * product of the others, consecutive rows pitch elements apart (pitch >= cols).
 * False when t is not row-pitched. A 0-d tensor is one row of one. */
bool op_rows_pitched(const struct tensor *t, int64_t *rows, int64_t *cols, int64_t *pitch);
/* ASSERT op_copy's operands and give their layout: one flat row when both are
 * contiguous, else both row-pitched with the same rows and cols. */
void op_copy_layout(const struct tensor *dst, const struct tensor *src, int64_t *rows,
                    int64_t *cols, int64_t *dpitch, int64_t *spitch);

// ----------------------------------------------------------------------------
// dispatch on the output tensor's device (ctx may be NULL for host tensors)

static inline void op_copy(const struct op_ctx *ctx, struct tensor *dst, const struct tensor *src)
{
    if (dst->device == DEVICE_CUDA)
        op_copy_cuda(ctx, dst, src);
    else
        op_copy_cpu(dst, src);
}

static inline void op_zero(const struct op_ctx *ctx, struct tensor *t)
{
    if (t->device == DEVICE_CUDA)
        op_zero_cuda(ctx, t);
    else
        op_zero_cpu(t);
}

#ifdef __cplusplus
}
#endif
#endif
