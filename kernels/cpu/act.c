/*
 * act.c - CPU reference for the activations (GELU erf/tanh, SiLU). See ops.h.
 * fp32 math on converted chunks, as torch's CPU and CUDA kernels compute
 * half/bfloat16 activations in float ("opmath").
 */
#include "ops.h"
#include "log.h"

#include <math.h>

#define CHUNK 1024

float op_act_f32(float v, enum op_act act)
{
    switch (act) {
    case OP_ACT_GELU_ERF:
        return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case OP_ACT_GELU_TANH: {
        const float k0 = 0.79788456080286536f;   /* sqrt(2/pi) */
        const float k1 = 0.044715f;
        return 0.5f * v * (1.0f + tanhf(k0 * (v + k1 * v * v * v)));
    }
    case OP_ACT_SILU:
        return v / (1.0f + expf(-v));
    }
    ASSERT(!"unknown activation");
    return 0;
}

void op_act_cpu(struct tensor *y, const struct tensor *x, enum op_act act)
{
    float  buf[CHUNK];
    size_t xs, ys;

    op_check_dense("act.x", x, DEVICE_HOST);
    op_check_dense("act.y", y, DEVICE_HOST);
    ASSERT(tensor_numel(x) == tensor_numel(y));
    xs = dtype_size(x->dtype);
    ys = dtype_size(y->dtype);
    int64_t n = tensor_numel(x);
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        size_t m = (size_t)(n - i0 < CHUNK ? n - i0 : CHUNK);

        dtype_convert(buf, DTYPE_F32, (const char *)x->data + (size_t)i0 * xs, x->dtype, m);
        for (size_t i = 0; i < m; i++)
            buf[i] = op_act_f32(buf[i], act);
        dtype_convert((char *)y->data + (size_t)i0 * ys, y->dtype, buf, DTYPE_F32, m);
    }
}
