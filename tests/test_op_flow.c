/*
 * test_op_flow.c - the flow samplers' update ops (kernels/ops_flow.h).
 *
 * CPU part: op_cfg_mix_cpu and op_euler_step_cpu against the expressions written
 * out here element by element (half: every product / difference rounded to fp16;
 * else fp32), on fp16-valued velocities (F16 and F32 tensors), values near the
 * fp16 overflow, signed zeros. CUDA part: the CUDA ops against the CPU ops, bit
 * for bit (the same roundings, no FMA), at the SLAT flow's size (30,006 x 8).
 */
#include "dtype.h"
#include "harness.h"
#include "log.h"
#include "op_harness.h"
#include "ops_flow.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float r16(float x)
{
    return f16_to_f32(f32_to_f16(x));
}

/* n fp16-valued velocities, a few of them large (cs * v overflows fp16). */
static void velocities(float *v, size_t n, uint64_t seed, float scale)
{
    struct rng r;

    rng_seed(&r, seed);
    fill_normal(&r, v, n, scale);
    for (size_t i = 0; i < n; i++)
        v[i] = r16(v[i]);
    if (n > 4) {
        v[0] = 40000.0f;             /* 2 * 40000 is above fp16's 65504 */
        v[1] = -0.0f;
        v[2] = 0.0f;
    }
}

/* CPU op (ctx NULL) or CUDA op on host arrays; mix (vu given) then the step. */
static void run(size_t n, enum dtype vdt, bool half, const float *v0, const float *u0,
                const float *x0, float cs, float cu, float dt, float *vout, float *xout,
                struct arena *a, const struct op_ctx *ctx)
{
    struct tensor hv = ot_host(vdt, SHAPE((int64_t)n), v0);
    struct tensor hu = ot_host(vdt, SHAPE((int64_t)n), u0);
    struct tensor hx = ot_host(DTYPE_F32, SHAPE((int64_t)n), x0);
    if (ctx) {
        size_t mark = arena_mark(a);
        struct tensor v = ot_dev(a, &hv), u = ot_dev(a, &hu), x = ot_dev(a, &hx);
        op_cfg_mix(ctx, &v, &u, cs, cu, half);
        op_euler_step(ctx, &x, &v, dt, half);
        op_ctx_synchronize(ctx);
        CHECK(ot_guard_ok(&v) && ot_guard_ok(&x), "guards after v and x");
        ot_to_f32(&v, vout);
        ot_to_f32(&x, xout);
        arena_release(a, mark);
    } else {
        op_cfg_mix(NULL, &hv, &hu, cs, cu, half);
        op_euler_step(NULL, &hx, &hv, dt, half);
        ot_to_f32(&hv, vout);
        ot_to_f32(&hx, xout);
    }
    ot_free(&hv), ot_free(&hu), ot_free(&hx);
}

static void test_cpu(void)
{
    const size_t n = 1000;
    float *v = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n);
    float *x = malloc(sizeof(float) * n), *vo = malloc(sizeof(float) * n);
    float *xo = malloc(sizeof(float) * n), *vr = malloc(sizeof(float) * n);
    float *xr = malloc(sizeof(float) * n);
    const float cs = 2.0f, cu = 1.0f, dt = 0.04f;
    char label[96];

    velocities(v, n, 1, 3.0f);
    velocities(u, n, 2, 3.0f);
    velocities(x, n, 3, 1.0f);
    for (int half = 0; half < 2; half++)
        for (int d = 0; d < 2; d++) {
            enum dtype vdt = d ? DTYPE_F16 : DTYPE_F32;
            run(n, vdt, half, v, u, x, cs, cu, dt, vo, xo, NULL, NULL);
            for (size_t i = 0; i < n; i++) {
                float p = cs * v[i], q = cu * u[i];
                vr[i] = half ? r16(r16(p) - r16(q)) : p - q;
                if (vdt == DTYPE_F16)
                    vr[i] = r16(vr[i]);
                float s = vr[i] * dt;
                xr[i] = x[i] + (half ? r16(s) : s);
            }
            snprintf(label, sizeof(label), "cpu~formula %s v %s: mix", half ? "half" : "fp32",
                     dtype_name(vdt));
            CHECK(memcmp(vo, vr, sizeof(float) * n) == 0, "%s: bit for bit", label);
            snprintf(label, sizeof(label), "cpu~formula %s v %s: step", half ? "half" : "fp32",
                     dtype_name(vdt));
            CHECK(memcmp(xo, xr, sizeof(float) * n) == 0, "%s: bit for bit", label);
            if (half)
                CHECK(isinf(vo[0]), "%s: 2 * 40000 overflows fp16 to Inf, as torch's fp16", label);
        }
    free(v), free(u), free(x), free(vo), free(xo), free(vr), free(xr);
}

static void test_gpu(void)
{
    const size_t n = 30006 * 8;
    struct arena  a;
    struct op_ctx ctx;
    float *v = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n);
    float *x = malloc(sizeof(float) * n), *vo = malloc(sizeof(float) * n);
    float *xo = malloc(sizeof(float) * n), *vr = malloc(sizeof(float) * n);
    float *xr = malloc(sizeof(float) * n);
    char label[96];

    if (!ot_gpu_begin(&a, &ctx, (size_t)64 << 20)) {
        CHECK(0, "GPU set-up failed");
        return;
    }
    velocities(v, n, 11, 2.0f);
    velocities(u, n, 12, 2.0f);
    velocities(x, n, 13, 1.0f);
    for (int half = 0; half < 2; half++)
        for (int d = 0; d < 2; d++) {
            enum dtype vdt = d ? DTYPE_F16 : DTYPE_F32;
            run(n, vdt, half, v, u, x, 2.0f, 1.0f, 0.04f, vo, xo, &a, &ctx);
            run(n, vdt, half, v, u, x, 2.0f, 1.0f, 0.04f, vr, xr, NULL, NULL);
            snprintf(label, sizeof(label), "cuda~cpu %s v %s", half ? "half" : "fp32",
                     dtype_name(vdt));
            CHECK(memcmp(vo, vr, sizeof(float) * n) == 0, "%s: mixed v bit for bit", label);
            CHECK(memcmp(xo, xr, sizeof(float) * n) == 0, "%s: x bit for bit", label);
        }
    free(v), free(u), free(x), free(vo), free(xo), free(vr), free(xr);
    ot_gpu_end(&a, &ctx);
}

int main(void)
{
    log_init("test_op_flow");
    test_cpu();
    ot_skip_without_gpu("test_op_flow");
    test_gpu();
    return harness_done("test_op_flow");
}
