/*
 * copy.cu - copy (with a cast), zero, upload and download on the GPU (see
 * ops_copy.h). A byte copy is one cudaMemcpy2DAsync, a cast one kernel, zero
 * one cudaMemsetAsync; upload and download go through pageable host memory
 * (a host buffer for the cast when the dtypes differ) and wait for the copy.
 * CPU reference: kernels/cpu/copy.c. Test: tests/test_op_copy.c.
 */
#include "common.cuh"

#include "dtype.h"
#include "ops_copy.h"

#include <stdlib.h>
#include <string.h>

/* y[r * yp + c] = x[r * xp + c] over rows x cols elements, one rounding into Ty. */
template <typename Tx, typename Ty>
__global__ void cast_pitched_kernel(Ty *y, int64_t yp, const Tx *x, int64_t xp, int64_t cols,
                                    int64_t n)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e / cols, c = e % cols;
        y[r * yp + c] = from_f32<Ty>(to_f32(x[r * xp + c]));
    }
}

void op_copy_cuda(const struct op_ctx *ctx, struct tensor *dst, const struct tensor *src)
{
    int64_t rows, cols, dp, sp;

    ASSERT(dst->device == DEVICE_CUDA);
    op_copy_layout(dst, src, &rows, &cols, &dp, &sp);
    if (rows * cols == 0)
        return;
    if (dst->dtype == src->dtype) {
        size_t e = dtype_size(dst->dtype);
        CUDA_CHECK(cudaMemcpy2DAsync(dst->data, (size_t)dp * e, src->data, (size_t)sp * e,
                                     (size_t)cols * e, (size_t)rows, cudaMemcpyDeviceToDevice,
                                     ctx->stream));
    } else {
        int64_t n = rows * cols;
        DISPATCH_2(src->dtype, Tx, dst->dtype, Ty,
            cast_pitched_kernel<Tx, Ty><<<grid_for(n, 256), 256, 0, ctx->stream>>>(
                (Ty *)dst->data, dp, (const Tx *)src->data, sp, cols, n));
    }
    op_done(ctx, "copy");
}

void op_zero_cuda(const struct op_ctx *ctx, struct tensor *t)
{
    ASSERT(t->device == DEVICE_CUDA && tensor_is_contiguous(t));
    if (tensor_nbytes(t))
        CUDA_CHECK(cudaMemsetAsync(t->data, 0, tensor_nbytes(t), ctx->stream));
    op_done(ctx, "zero");
}

/* dst = src, n elements of host memory, cast when the dtypes differ. */
static void host_cast(void *dst, enum dtype dt, const void *src, enum dtype st, size_t n)
{
    if (dt == st)
        memcpy(dst, src, n * dtype_size(dt));
    else
        dtype_convert(dst, dt, src, st, n);
}

/* dst = src between the host and the device (up: host -> device), both
 * contiguous with the same numel; the cast, if any, happens on the host side
 * through a host buffer. Waits for the copy. */
static void transfer(const struct op_ctx *ctx, struct tensor *dst, const struct tensor *src,
                     bool up)
{
    size_t n = (size_t)tensor_numel(src);

    ASSERT(tensor_is_contiguous(dst) && tensor_is_contiguous(src));
    ASSERT(tensor_numel(dst) == (int64_t)n);
    if (dst->device == DEVICE_HOST && src->device == DEVICE_HOST) {
        host_cast(dst->data, dst->dtype, src->data, src->dtype, n);
        return;
    }
    size_t bytes = n * dtype_size(up ? dst->dtype : src->dtype);   /* the device side's */
    if (!bytes)
        return;
    void *tmp = NULL;
    if (dst->dtype != src->dtype) {
        tmp = malloc(bytes);
        ASSERT(tmp);
        if (up)
            host_cast(tmp, dst->dtype, src->data, src->dtype, n);
    }
    const void *from = up && tmp ? tmp : src->data;
    void *to = !up && tmp ? tmp : dst->data;
    cudaStream_t st = ctx ? ctx->stream : 0;
    CUDA_CHECK(cudaMemcpyAsync(to, from, bytes, up ? cudaMemcpyHostToDevice
                                                   : cudaMemcpyDeviceToHost, st));
    CUDA_CHECK(cudaStreamSynchronize(st));   /* the source may go once this returns */
    if (!up && tmp)
        host_cast(dst->data, dst->dtype, tmp, src->dtype, n);
    free(tmp);
    if (ctx)
        op_done(ctx, up ? "upload" : "download");
}

void op_upload(const struct op_ctx *ctx, struct tensor *dst, const struct tensor *src)
{
    ASSERT(src->device == DEVICE_HOST);
    transfer(ctx, dst, src, true);
}

void op_download(const struct op_ctx *ctx, struct tensor *dst, const struct tensor *src)
{
    ASSERT(dst->device == DEVICE_HOST);
    transfer(ctx, dst, src, false);
}
