/*
 * ops_flow.h - the flow samplers' per-step update on the model's device: the
 * classifier-free-guidance mix of two velocities and the Euler step, in the
 * reference's arithmetic (sam-3d-objects @cf06676, sam3d_objects/model/backbone/
 * generator/classifier_free_guidance.py:99-160 and flow_matching/solver.py:33-51;
 * spec generators.md §9). With `half` the velocities are the fp16 tensors of the
 * reference under autocast: every tensor op's result is rounded to fp16
 * (r16 = round to nearest even, overflow to Inf); else everything is fp32. Each
 * product and sum is rounded separately (no fused multiply-add), so the CUDA op
 * gives the CPU op's bits.
 *
 * CPU reference: kernels/cpu/flow.c. CUDA: kernels/cuda/flow.cu.
 * Test: tests/test_op_flow.c.
 */
#ifndef S3D_OPS_FLOW_H
#define S3D_OPS_FLOW_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* v = cs * v - cu * vu, element by element:
 *     half: r16(r16(cs * v) - r16(cu * vu))        else: (cs * v) - (cu * vu)
 * rounded into v's dtype (exact when half and v is F16). v, vu contiguous, the
 * same numel, any float dtypes. For CFG strength s: cs = 1 + s, cu = s. */
void op_cfg_mix_cpu(struct tensor *v, const struct tensor *vu, float cs, float cu, bool half);
void op_cfg_mix_cuda(const struct op_ctx *ctx, struct tensor *v, const struct tensor *vu, float cs,
                     float cu, bool half);

/* x = x + r16(v * dt) (half) or x + v * dt: x F32 contiguous, v contiguous with
 * x's numel, any float dtype. */
void op_euler_step_cpu(struct tensor *x, const struct tensor *v, float dt, bool half);
void op_euler_step_cuda(const struct op_ctx *ctx, struct tensor *x, const struct tensor *v,
                        float dt, bool half);

static inline void op_cfg_mix(const struct op_ctx *ctx, struct tensor *v, const struct tensor *vu,
                              float cs, float cu, bool half)
{
    if (v->device == DEVICE_CUDA)
        op_cfg_mix_cuda(ctx, v, vu, cs, cu, half);
    else
        op_cfg_mix_cpu(v, vu, cs, cu, half);
}

static inline void op_euler_step(const struct op_ctx *ctx, struct tensor *x, const struct tensor *v,
                                 float dt, bool half)
{
    if (x->device == DEVICE_CUDA)
        op_euler_step_cuda(ctx, x, v, dt, half);
    else
        op_euler_step_cpu(x, v, dt, half);
}

#ifdef __cplusplus
}
#endif
#endif
