/*
 * elementwise.cu - residual and modulation ops on the GPU: add, add_scaled,
 * modulate, add_bias (fp32 math, one rounding into y). See ops.h.
 *
 * One grid-stride kernel: y[i] = f(x[i], p0, p1) where each parameter is either
 * full-size or row-broadcast with G groups (ops.h), and every operand's dtype
 * is read at run time (a uniform branch; these ops are memory-bound).
 */
#include "common.cuh"

enum ew_kind { EW_ADD, EW_ADD_SCALED, EW_MODULATE, EW_ADD_BIAS };

/* A parameter operand: data, dtype, and its broadcast groups (0 = full size). */
struct ew_param {
    const void *p;
    enum dtype  dt;
    int64_t     groups;
};

/* Element i = (row r, col c) of x's shape (R, C), read from parameter a. */
__device__ __forceinline__ float ew_load(const struct ew_param &a, int64_t i, int64_t r,
                                         int64_t c, int64_t R, int64_t C)
{
    if (!a.groups)
        return load_dt(a.p, a.dt, i);
    return load_dt(a.p, a.dt, (r / (R / a.groups)) * C + c);
}

__global__ void ew_kernel(void *y, enum dtype ydt, const void *x, enum dtype xdt, struct ew_param p0,
                          struct ew_param p1, enum ew_kind kind, int64_t R, int64_t C)
{
    int64_t n = R * C;

    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / C, c = i - r * C;
        float   v = load_dt(x, xdt, i);
        float   a = ew_load(p0, i, r, c, R, C);
        switch (kind) {
        case EW_ADD:
        case EW_ADD_BIAS:
            v = v + a;
            break;
        case EW_ADD_SCALED:
            v = v + a * ew_load(p1, i, r, c, R, C);
            break;
        case EW_MODULATE:
            v = v * (1.0f + a) + (p1.p ? ew_load(p1, i, r, c, R, C) : 0.0f);
            break;
        }
        store_dt(y, ydt, i, v);
    }
}

/* Checks as in kernels/cpu/elementwise.c, then one launch. */
static void ew_run(const struct op_ctx *ctx, const char *op, enum ew_kind kind, struct tensor *y,
                   const struct tensor *x, const struct tensor *a0, const struct tensor *a1)
{
    struct ew_param p0 = {NULL, DTYPE_F32, 0}, p1 = {NULL, DTYPE_F32, 0};

    op_check_dense(op, x, DEVICE_CUDA);
    op_check_dense(op, y, DEVICE_CUDA);
    int64_t C = op_cols(x), R = op_rows(x);
    ASSERT(tensor_numel(y) == R * C);
    if (kind != EW_ADD)
        ASSERT(op_cols(y) == C);
    ASSERT(x->data != y->data || x->dtype == y->dtype);
    op_check_dense(op, a0, DEVICE_CUDA);
    p0.p = a0->data;
    p0.dt = a0->dtype;
    if (kind == EW_ADD)
        ASSERT(tensor_numel(a0) == R * C);
    else if (R > 0 && C > 0)
        p0.groups = op_bcast_groups(op, a0, R, C);
    if (a1) {
        op_check_dense(op, a1, DEVICE_CUDA);
        p1.p = a1->data;
        p1.dt = a1->dtype;
        if (kind == EW_ADD_SCALED)
            ASSERT(tensor_numel(a1) == R * C);
        else if (R > 0 && C > 0)
            p1.groups = op_bcast_groups(op, a1, R, C);
    }
    if (R == 0 || C == 0)
        return;
    ew_kernel<<<grid_for(R * C, 256 * 4), 256, 0, ctx->stream>>>(y->data, y->dtype, x->data,
                                                                  x->dtype, p0, p1, kind, R, C);
    op_done(ctx, op);
}

void op_add_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                 const struct tensor *a)
{
    ew_run(ctx, "add", EW_ADD, y, x, a, NULL);
}

void op_add_scaled_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                        const struct tensor *g, const struct tensor *a)
{
    ew_run(ctx, "add_scaled", EW_ADD_SCALED, y, x, g, a);
}

void op_modulate_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                      const struct tensor *s, const struct tensor *t)
{
    ew_run(ctx, "modulate", EW_MODULATE, y, x, s, t);
}

void op_add_bias_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                      const struct tensor *b)
{
    ew_run(ctx, "add_bias", EW_ADD_BIAS, y, x, b, NULL);
}
