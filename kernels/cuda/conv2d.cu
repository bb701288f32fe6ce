/*
 * conv2d.cu - op_conv_transpose2x2_cuda (nn.ConvTranspose2d k=2 s=2). See
 * ops_image.h. (op_conv2d_cuda, the cuDNN one, is in cudnn.cu.)
 *
 * Each output pixel (co, 2i+dy, 2j+dx) is one dot product over Cin with a
 * fixed weight tap; a block handles 32 consecutive input columns j of one
 * row i for a tile of 8 output channels, staging x[:, i, j0:j0+32] through
 * shared memory in chunks of 32 input channels. fp32 accumulation in the
 * order of increasing ci (the CPU reference's order). MoGe's three ConvT
 * layers total ~3 GFLOP, so this simple tiling is not a bottleneck.
 */
#include "common.cuh"

#include "ops_conv.h"
#include "ops_image.h"

#define CT_J  32   /* input columns per block (threadIdx.x) */
#define CT_CO 8    /* output channels per block (threadIdx.y) */
#define CT_CI 32   /* input channels per shared-memory chunk */

template <typename T, typename Ty>
__global__ void convt2x2_kernel(Ty *y, const T *x, const T *w, const void *b, enum dtype bt,
                                int Ci, int Co, int H, int W)
{
    __shared__ float xs[CT_CI][CT_J];
    int j = blockIdx.x * CT_J + threadIdx.x;
    int i = blockIdx.y % H, n = blockIdx.y / H;
    int co = blockIdx.z * CT_CO + threadIdx.y;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const T *xn = x + (int64_t)n * Ci * H * W;

    for (int c0 = 0; c0 < Ci; c0 += CT_CI) {
        __syncthreads();
        for (int cc = threadIdx.y; cc < CT_CI; cc += CT_CO) {
            int c = c0 + cc;
            xs[cc][threadIdx.x] = (c < Ci && j < W) ? to_f32(xn[((int64_t)c * H + i) * W + j])
                                                    : 0.0f;
        }
        __syncthreads();
        if (co < Co) {
            int cend = min(CT_CI, Ci - c0);
            for (int cc = 0; cc < cend; cc++) {
                const T *wk = w + ((int64_t)(c0 + cc) * Co + co) * 4;
                float xv = xs[cc][threadIdx.x];
                acc[0] += xv * to_f32(wk[0]);
                acc[1] += xv * to_f32(wk[1]);
                acc[2] += xv * to_f32(wk[2]);
                acc[3] += xv * to_f32(wk[3]);
            }
        }
    }
    if (co >= Co || j >= W)
        return;
    float bv = b ? load_dt(b, bt, co) : 0.0f;
    Ty *yo = y + ((int64_t)n * Co + co) * 4 * H * W;
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++)
            yo[(int64_t)(2 * i + dy) * 2 * W + 2 * j + dx] = from_f32<Ty>(acc[dy * 2 + dx] + bv);
}

void op_conv_transpose2x2_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                               const struct tensor *w, const struct tensor *b)
{
    op_check_dense("convt.x", x, DEVICE_CUDA);
    op_check_dense("convt.w", w, DEVICE_CUDA);
    op_check_dense("convt.y", y, DEVICE_CUDA);
    ASSERT(x->ndim == 4 && w->ndim == 4 && y->ndim == 4 && w->dtype == x->dtype);
    int64_t N = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Co = w->shape[1];
    ASSERT(w->shape[0] == Ci && w->shape[2] == 2 && w->shape[3] == 2);
    ASSERT(y->shape[0] == N && y->shape[1] == Co && y->shape[2] == 2 * H && y->shape[3] == 2 * W);
    if (b) {
        op_check_dense("convt.b", b, DEVICE_CUDA);
        ASSERT(tensor_numel(b) == Co);
    }
    if (tensor_numel(y) == 0)
        return;
    ASSERT(N * H <= 65535 && (Co + CT_CO - 1) / CT_CO <= 65535);

    dim3 block(CT_J, CT_CO);
    dim3 grid((unsigned)((W + CT_J - 1) / CT_J), (unsigned)(N * H),
              (unsigned)((Co + CT_CO - 1) / CT_CO));
    DISPATCH_2(x->dtype, T, y->dtype, Ty,
        convt2x2_kernel<T, Ty><<<grid, block, 0, ctx->stream>>>(
            (Ty *)y->data, (const T *)x->data, (const T *)w->data, b ? b->data : NULL,
            b ? b->dtype : DTYPE_F32, (int)Ci, (int)Co, (int)H, (int)W));
    op_done(ctx, "conv_transpose2x2");
}
