/*
 * flow.cu - the flow samplers' update on the GPU (ops_flow.h): one grid-stride
 * kernel each, with __fmul_rn / __fsub_rn / __fadd_rn so nothing contracts into
 * an FMA, and __float2half_rn for r16: the CPU op's bits. CPU reference:
 * kernels/cpu/flow.c. Test: tests/test_op_flow.c.
 */
#include "common.cuh"

#include "ops_flow.h"

__device__ __forceinline__ float r16(float x)
{
    return __half2float(__float2half_rn(x));
}

static __global__ void cfg_mix_kernel(void *v, enum dtype vdt, const void *vu, enum dtype udt,
                                      int64_t n, float cs, float cu, bool half)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float p = __fmul_rn(cs, load_dt(v, vdt, i)), q = __fmul_rn(cu, load_dt(vu, udt, i));
        store_dt(v, vdt, i, half ? r16(__fsub_rn(r16(p), r16(q))) : __fsub_rn(p, q));
    }
}

static __global__ void euler_kernel(float *x, const void *v, enum dtype vdt, int64_t n, float dt,
                                    bool half)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float p = __fmul_rn(load_dt(v, vdt, i), dt);
        x[i] = __fadd_rn(x[i], half ? r16(p) : p);
    }
}

void op_cfg_mix_cuda(const struct op_ctx *ctx, struct tensor *v, const struct tensor *vu, float cs,
                     float cu, bool half)
{
    op_check_dense("cfg_mix.v", v, DEVICE_CUDA);
    op_check_dense("cfg_mix.vu", vu, DEVICE_CUDA);
    int64_t n = tensor_numel(v);
    ASSERT(tensor_numel(vu) == n);
    if (n == 0)
        return;
    cfg_mix_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>(v->data, v->dtype, vu->data,
                                                              vu->dtype, n, cs, cu, half);
    op_done(ctx, "cfg_mix");
}

void op_euler_step_cuda(const struct op_ctx *ctx, struct tensor *x, const struct tensor *v,
                        float dt, bool half)
{
    op_check_dense("euler_step.x", x, DEVICE_CUDA);
    op_check_dense("euler_step.v", v, DEVICE_CUDA);
    ASSERT(x->dtype == DTYPE_F32);
    int64_t n = tensor_numel(x);
    ASSERT(tensor_numel(v) == n);
    if (n == 0)
        return;
    euler_kernel<<<grid_for(n, 256), 256, 0, ctx->stream>>>((float *)x->data, v->data, v->dtype,
                                                            n, dt, half);
    op_done(ctx, "euler_step");
}
