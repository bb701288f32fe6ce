/*
 * elementwise.cu - residual and modulation ops on the GPU: add, add_scaled,
 * add_gated, modulate, add_bias (fp32 math, one rounding into y; add_gated
 * also rounds its product into a's dtype). See ops.h.
 *
 * One grid-stride kernel: y[i] = f(x[i], p0, p1) where each parameter is either
 * full-size or row-broadcast with G groups (ops.h), and every operand's dtype
 * is read at run time (a uniform branch; these ops are memory-bound). The
 * common fp16/bf16 case (y, x and the full-size operands of one 2-byte dtype,
 * rows of whole 16-byte vectors) runs the same arithmetic 8 elements per
 * thread step with 16-byte loads and stores (ew_vec_kernel).
 */
#include "common.cuh"

enum ew_kind { EW_ADD, EW_ADD_SCALED, EW_ADD_GATED, EW_MODULATE, EW_ADD_BIAS };

/* v rounded through dtype dt (identity for F32): add_gated's product. */
__device__ __forceinline__ float round_dt(enum dtype dt, float v)
{
    switch (dt) {
    case DTYPE_F16:  return __half2float(__float2half_rn(v));
    case DTYPE_BF16: return __bfloat162float(__float2bfloat16_rn(v));
    default:         return v;
    }
}

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
        case EW_ADD_GATED:
            v = v + round_dt(p1.dt, a * ew_load(p1, i, r, c, R, C));
            break;
        case EW_MODULATE:
            v = v * (1.0f + a) + (p1.p ? ew_load(p1, i, r, c, R, C) : 0.0f);
            break;
        }
        store_dt(y, ydt, i, v);
    }
}

/* 8 elements of parameter a at vector v (elements i = 8 v .. 8 v + 7, row r,
 * columns c .. c + 7): a full-size operand is one 16-byte load of T, a
 * broadcast one 8 loads of its run-time dtype (a row vector, cached). */
template <typename T>
__device__ __forceinline__ void ew_load8(const struct ew_param &a, int64_t v, int64_t r, int64_t c,
                                         int64_t R, int64_t C, float out[8])
{
    if (!a.groups) {
        uint4 u = ((const uint4 *)a.p)[v];
        const T *e = (const T *)&u;
#pragma unroll
        for (int k = 0; k < 8; k++)
            out[k] = to_f32(e[k]);
    } else {
        int64_t base = (r / (R / a.groups)) * C + c;
#pragma unroll
        for (int k = 0; k < 8; k++)
            out[k] = load_dt(a.p, a.dt, base + k);
    }
}

/* ew_kernel's arithmetic on 8 elements per step (the memory-bound common case:
 * y, x and every full-size operand 2-byte T, 16-byte aligned, C % 8 == 0). */
template <typename T>
__global__ void ew_vec_kernel(T *y, const T *x, struct ew_param p0, struct ew_param p1,
                              enum ew_kind kind, int64_t R, int64_t C)
{
    int64_t n8 = R * C / 8;

    for (int64_t v = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; v < n8;
         v += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = v * 8, r = i / C, c = i - r * C;
        uint4   xu = ((const uint4 *)x)[v], yu;
        const T *xe = (const T *)&xu;
        T       *ye = (T *)&yu;
        float    a[8], b[8];
        ew_load8<T>(p0, v, r, c, R, C, a);
        if (p1.p)
            ew_load8<T>(p1, v, r, c, R, C, b);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float e = to_f32(xe[k]);
            switch (kind) {
            case EW_ADD:
            case EW_ADD_BIAS:
                e = e + a[k];
                break;
            case EW_ADD_SCALED:
                e = e + a[k] * b[k];
                break;
            case EW_ADD_GATED:
                e = e + round_dt(p1.dt, a[k] * b[k]);
                break;
            case EW_MODULATE:
                e = e * (1.0f + a[k]) + (p1.p ? b[k] : 0.0f);
                break;
            }
            ye[k] = from_f32<T>(e);
        }
        ((uint4 *)y)[v] = yu;
    }
}

static bool al16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

/* Whether ew_vec_kernel can run: 2-byte y = x dtype, rows of whole 16-byte
 * vectors, full-size operands of that dtype, all aligned. */
static bool ew_vec_ok(const void *y, enum dtype ydt, const void *x, enum dtype xdt,
                      const struct ew_param *p0, const struct ew_param *p1, int64_t C)
{
    if (ydt != xdt || (ydt != DTYPE_F16 && ydt != DTYPE_BF16) || C % 8 || !al16(y) || !al16(x))
        return false;
    const struct ew_param *ps[2] = {p0, p1};
    for (int k = 0; k < 2; k++)
        if (ps[k]->p && !ps[k]->groups && (ps[k]->dt != xdt || !al16(ps[k]->p)))
            return false;
    return true;
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
        if (kind == EW_ADD_SCALED || kind == EW_ADD_GATED)
            ASSERT(tensor_numel(a1) == R * C);
        else if (R > 0 && C > 0)
            p1.groups = op_bcast_groups(op, a1, R, C);
    }
    if (R == 0 || C == 0)
        return;
    unsigned g8 = grid_for(R * C / 8, 256 * 2);
    if (ew_vec_ok(y->data, y->dtype, x->data, x->dtype, &p0, &p1, C) && x->dtype == DTYPE_F16)
        ew_vec_kernel<__half><<<g8, 256, 0, ctx->stream>>>((__half *)y->data,
                                                           (const __half *)x->data, p0, p1,
                                                           kind, R, C);
    else if (ew_vec_ok(y->data, y->dtype, x->data, x->dtype, &p0, &p1, C))
        ew_vec_kernel<__nv_bfloat16><<<g8, 256, 0, ctx->stream>>>(
            (__nv_bfloat16 *)y->data, (const __nv_bfloat16 *)x->data, p0, p1, kind, R, C);
    else
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

void op_add_gated_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                       const struct tensor *g, const struct tensor *a)
{
    ew_run(ctx, "add_gated", EW_ADD_GATED, y, x, g, a);
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
