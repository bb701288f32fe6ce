/*
 * act.cu - GELU (erf, tanh) and SiLU on the GPU, fp32 math. See ops.h.
 * Formulas as in kernels/cpu/act.c (erff, tanhf, expf: full-precision
 * library functions, no fast math).
 */
#include "common.cuh"

template <typename Tx, typename Ty>
__global__ void act_kernel(Ty *y, const Tx *x, int64_t n, enum op_act act)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = to_f32(x[i]), o;
        switch (act) {
        case OP_ACT_GELU_ERF:
            o = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
            break;
        case OP_ACT_GELU_TANH:
            o = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
            break;
        default:
            o = v / (1.0f + expf(-v));
            break;
        }
        y[i] = from_f32<Ty>(o);
    }
}

void op_act_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                 enum op_act act)
{
    op_check_dense("act.x", x, DEVICE_CUDA);
    op_check_dense("act.y", y, DEVICE_CUDA);
    ASSERT(tensor_numel(x) == tensor_numel(y));
    ASSERT(act == OP_ACT_GELU_ERF || act == OP_ACT_GELU_TANH || act == OP_ACT_SILU);
    ASSERT(x->data != y->data || x->dtype == y->dtype);
    int64_t n = tensor_numel(x);
    if (n == 0)
        return;
    DISPATCH_2(x->dtype, Tx, y->dtype, Ty,
        act_kernel<Tx, Ty><<<grid_for(n, 256 * 4), 256, 0, ctx->stream>>>(
            (Ty *)y->data, (const Tx *)x->data, n, act));
    op_done(ctx, "act");
}
