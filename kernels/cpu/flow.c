/*
 * flow.c - CPU reference of the flow samplers' update (ops_flow.h): the
 * expressions of the host samplers, one element at a time. -std=c11 keeps
 * every product and sum rounded on its own (no contraction into an FMA).
 */
#include "ops_flow.h"

#include "dtype.h"
#include "log.h"

#include <stdlib.h>

static float r16(float x)
{
    return f16_to_f32(f32_to_f16(x));
}

/* n floats of t (any float dtype) into a malloc'ed F32 buffer. */
static float *as_f32(const struct tensor *t, size_t n)
{
    float *f = malloc(sizeof(float) * (n ? n : 1));

    ASSERT(f);
    dtype_convert(f, DTYPE_F32, t->data, t->dtype, n);
    return f;
}

void op_cfg_mix_cpu(struct tensor *v, const struct tensor *vu, float cs, float cu, bool half)
{
    op_check_dense("cfg_mix.v", v, DEVICE_HOST);
    op_check_dense("cfg_mix.vu", vu, DEVICE_HOST);
    size_t n = (size_t)tensor_numel(v);
    ASSERT((size_t)tensor_numel(vu) == n);
    float *a = as_f32(v, n), *b = as_f32(vu, n);
    for (size_t i = 0; i < n; i++) {
        float p = cs * a[i], q = cu * b[i];
        a[i] = half ? r16(r16(p) - r16(q)) : p - q;
    }
    dtype_convert(v->data, v->dtype, a, DTYPE_F32, n);
    free(a);
    free(b);
}

void op_euler_step_cpu(struct tensor *x, const struct tensor *v, float dt, bool half)
{
    op_check_dense("euler_step.x", x, DEVICE_HOST);
    op_check_dense("euler_step.v", v, DEVICE_HOST);
    ASSERT(x->dtype == DTYPE_F32);
    size_t n = (size_t)tensor_numel(x);
    ASSERT((size_t)tensor_numel(v) == n);
    float *xd = x->data, *vf = as_f32(v, n);
    for (size_t i = 0; i < n; i++) {
        float p = vf[i] * dt;
        xd[i] = xd[i] + (half ? r16(p) : p);
    }
    free(vf);
}
