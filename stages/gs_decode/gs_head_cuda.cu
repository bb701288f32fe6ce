/*
 * gs_head_cuda.cu - the Gaussian head transform on the GPU, one thread per
 * Gaussian. The expressions are gs_head.c's, written with _rn intrinsics so
 * that nvcc contracts nothing into an FMA (each operation rounds as the
 * reference's separate PyTorch ops do). See gs_head.h.
 */
#include "cuda/common.cuh"
#include "gs_head.h"

#define GS_THREADS 256

static __device__ __forceinline__ float softplus(float x)
{
    return x > 20.0f ? x : log1pf(expf(x));
}

static __global__ void gs_head_kernel(float *xyz, float *fdc, float *op, float *sc, float *rot,
                                      const float *raw, const int32_t *coords, const float *P,
                                      int64_t rows, int G, struct gs_consts k)
{
    for (int64_t m = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; m < rows * G;
         m += (int64_t)gridDim.x * blockDim.x) {
        int64_t v = m / G;
        int     g = (int)(m - v * G);
        const float *rv = raw + v * GS_CHANNELS * G;
        for (int j = 0; j < 3; j++) {
            float ctr = __fdiv_rn(__fadd_rn((float)coords[v * 4 + 1 + j], 0.5f), (float)GS_RESOLUTION);
            float t   = tanhf(__fadd_rn(rv[g * 3 + j], P[g * 3 + j]));
            float off = __fmul_rn(__fmul_rn(__fdiv_rn(t, (float)GS_RESOLUTION), 0.5f), GS_VOXEL_SIZE);
            xyz[m * 3 + j] = __fadd_rn(__fadd_rn(ctr, off), -0.5f);
            fdc[m * 3 + j] = rv[3 * G + g * 3 + j];
            float s = softplus(__fadd_rn(rv[6 * G + g * 3 + j], k.scale_bias));
            sc[m * 3 + j] = logf(__fsqrt_rn(__fadd_rn(__fmul_rn(s, s), k.kernel2)));
        }
        for (int j = 0; j < 4; j++)
            rot[m * 4 + j] = __fadd_rn(__fmul_rn(rv[9 * G + g * 4 + j], GS_LR_ROTATION),
                                       j == 0 ? 1.0f : 0.0f);
        float o = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-__fadd_rn(rv[13 * G + g], k.opacity_bias))));
        op[m] = logf(__fdiv_rn(o, __fsub_rn(1.0f, o)));
    }
}

void gs_head_cuda(const struct op_ctx *ctx, const struct gs_arrays *out, const struct tensor *raw,
                  const struct tensor *coords, const struct tensor *perturb)
{
    int G = gs_head_check(out, raw, coords, perturb, DEVICE_CUDA);
    int64_t rows = raw->shape[0];
    struct gs_consts k;

    if (rows == 0)
        return;
    gs_head_consts(&k);
    gs_head_kernel<<<grid_for(rows * G, GS_THREADS), GS_THREADS, 0, ctx->stream>>>(
        (float *)out->xyz.data, (float *)out->f_dc.data, (float *)out->opacity.data,
        (float *)out->scale.data, (float *)out->rotation.data, (const float *)raw->data,
        (const int32_t *)coords->data, (const float *)perturb->data, rows, G, k);
    op_done(ctx, "gs_head");
}
