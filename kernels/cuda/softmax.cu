/*
 * softmax.cu - softmax over the last dim on the GPU, fp32 math. See ops.h.
 * One warp per row: max, sum of exp(x - max), then exp(x - max) / sum, as
 * torch's kernel computes it.
 */
#include "common.cuh"

#define ROWS_PER_BLOCK 4

template <typename Tx, typename Ty>
__global__ void softmax_kernel(Ty *y, const Tx *x, int64_t R, int64_t N)
{
    int64_t row  = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int     lane = threadIdx.x & 31;

    if (row >= R)
        return;
    const Tx *xr = x + row * N;
    Ty       *yr = y + row * N;
    float     mx = -INFINITY;
    for (int64_t i = lane; i < N; i += 32)
        mx = fmaxf(mx, to_f32(xr[i]));
    mx = warp_max(mx);
    float s = 0.0f;
    for (int64_t i = lane; i < N; i += 32)
        s += expf(to_f32(xr[i]) - mx);
    s = warp_sum(s);
    for (int64_t i = lane; i < N; i += 32)
        yr[i] = from_f32<Ty>(expf(to_f32(xr[i]) - mx) / s);
}

void op_softmax_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x)
{
    op_check_dense("softmax.x", x, DEVICE_CUDA);
    op_check_dense("softmax.y", y, DEVICE_CUDA);
    ASSERT(tensor_same_shape(x, y));
    ASSERT(x->data != y->data || x->dtype == y->dtype);
    int64_t N = op_cols(x), R = op_rows(x);
    if (R == 0 || N == 0)
        return;
    ASSERT((R + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK < (1ll << 31));
    unsigned grid = (unsigned)((R + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    DISPATCH_2(x->dtype, Tx, y->dtype, Ty,
        softmax_kernel<Tx, Ty><<<grid, 32 * ROWS_PER_BLOCK, 0, ctx->stream>>>(
            (Ty *)y->data, (const Tx *)x->data, R, N));
    op_done(ctx, "softmax");
}
