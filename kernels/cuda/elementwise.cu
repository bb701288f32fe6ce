/*
 * elementwise.cu - residual and modulation ops on the GPU: add, add_scaled,
 * add_gated, modulate, add_bias (fp32 math, one rounding into y; add_gated
 * also rounds its product into a's dtype). See ops.h.
 *
 * One grid-stride kernel: y[i] = f(x[i], p0, p1) where each parameter is either
 * full-size or row-broadcast with G groups (ops.h), and every operand's dtype
 * is read at run time (a uniform branch; these ops are memory-bound). The
 * common case (y and x of one dtype, the full-size operands of one dtype, rows
 * of whole 8-element vectors, all 16-byte aligned: the flows' fp32 residual
 * stream plus fp16 branch outputs, and the all-16-bit ops) runs the same
 * arithmetic 8 elements per thread step, row by row, with vector loads and
 * stores and no index division per element (ew_rows_kernel).
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

/* 8 elements of parameter a at columns c .. c + 7 of row r: a full-size operand
 * (elements i .. i + 7, i = r C + c) with vector loads of TA, a broadcast one
 * (row base + c: its group's row, cached) with 8 loads of its run-time dtype. */
template <typename TA>
__device__ __forceinline__ void ew_param8(const struct ew_param &a, int64_t i, int64_t base,
                                          float out[8])
{
    if (!a.groups) {
        load8_f32<TA>((const TA *)a.p + i, out);
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++)
            out[k] = load_dt(a.p, a.dt, base + k);
    }
}

/* The first element of row r's broadcast row of a (groups of R / groups rows each). */
__device__ __forceinline__ int64_t ew_bcast_base(const struct ew_param &a, int64_t r, int64_t R,
                                                 int64_t C)
{
    if (a.groups <= 1)
        return 0;
    int64_t per = R / a.groups;
    return (r < (1ll << 31) && per < (1ll << 31) ? (int64_t)((uint32_t)r / (uint32_t)per)
                                                 : r / per) * C;
}

/* ew_kernel's arithmetic, 8 elements per step with vector loads and stores, row by row
 * (no index division per element): TPR threads (a power of two) per row, 256 / TPR
 * rows per block. y and x of TX, every full-size parameter of TA; C % 8 == 0 and every
 * operand 16-byte aligned (ew_rows_ok). The flows' fp32 residual stream with fp16
 * branch outputs (TX float, TA half) and the all-16-bit ops take it. */
template <typename TX, typename TA>
__global__ void __launch_bounds__(256) ew_rows_kernel(TX *y, const TX *x, struct ew_param p0,
                                                      struct ew_param p1, enum ew_kind kind,
                                                      int64_t R, int64_t C, int tpr)
{
    int     rpb = 256 / tpr, lane = threadIdx.x % tpr;
    int64_t nv = C / 8;

    for (int64_t r = (int64_t)blockIdx.x * rpb + threadIdx.x / tpr; r < R;
         r += (int64_t)gridDim.x * rpb) {
        int64_t b0 = ew_bcast_base(p0, r, R, C), b1 = p1.p ? ew_bcast_base(p1, r, R, C) : 0;
        for (int64_t v = lane; v < nv; v += tpr) {
            int64_t c = v * 8, i = r * C + c;
            float   e[8], a[8], b[8];
            load8_f32<TX>(x + i, e);
            ew_param8<TA>(p0, i, b0 + c, a);
            if (p1.p)
                ew_param8<TA>(p1, i, b1 + c, b);
#pragma unroll
            for (int k = 0; k < 8; k++) {
                switch (kind) {
                case EW_ADD:
                case EW_ADD_BIAS:
                    e[k] = e[k] + a[k];
                    break;
                case EW_ADD_SCALED:
                    e[k] = e[k] + a[k] * b[k];
                    break;
                case EW_ADD_GATED:
                    e[k] = e[k] + round_dt(p1.dt, a[k] * b[k]);
                    break;
                case EW_MODULATE:
                    e[k] = e[k] * (1.0f + a[k]) + (p1.p ? b[k] : 0.0f);
                    break;
                }
            }
            store8_f32<TX>(y + i, e);
        }
    }
}

static bool al16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

/* Whether ew_rows_kernel can run, and with which parameter dtype *ta: y = x dtype,
 * rows of whole 8-element vectors, full-size operands all of one dtype, all aligned. */
static bool ew_rows_ok(const void *y, enum dtype ydt, const void *x, enum dtype xdt,
                       const struct ew_param *p0, const struct ew_param *p1, int64_t C,
                       enum dtype *ta)
{
    if (ydt != xdt || C % 8 || !al16(y) || !al16(x))
        return false;
    const struct ew_param *ps[2] = {p0, p1};
    bool any = false;
    for (int k = 0; k < 2; k++) {
        if (!ps[k]->p || ps[k]->groups)
            continue;
        if (!al16(ps[k]->p) || (any && ps[k]->dt != *ta))
            return false;
        *ta = ps[k]->dt;
        any = true;
    }
    if (!any)
        *ta = xdt;
    return true;
}

/* ew_rows_kernel<TX, TA> for the run-time dtypes (F32 / F16 / BF16 each). */
template <typename TX>
static void ew_rows_launch_x(const struct op_ctx *ctx, enum dtype ta, void *y, const void *x,
                             const struct ew_param &p0, const struct ew_param &p1,
                             enum ew_kind kind, int64_t R, int64_t C)
{
    int64_t nv = C / 8;
    int     tpr = 1;
    while (tpr < 256 && tpr < nv)
        tpr *= 2;
    unsigned g = grid_for(R, 256 / tpr);
    if (ta == DTYPE_F16)
        ew_rows_kernel<TX, __half><<<g, 256, 0, ctx->stream>>>((TX *)y, (const TX *)x, p0, p1,
                                                               kind, R, C, tpr);
    else if (ta == DTYPE_BF16)
        ew_rows_kernel<TX, __nv_bfloat16><<<g, 256, 0, ctx->stream>>>((TX *)y, (const TX *)x, p0,
                                                                      p1, kind, R, C, tpr);
    else
        ew_rows_kernel<TX, float><<<g, 256, 0, ctx->stream>>>((TX *)y, (const TX *)x, p0, p1,
                                                              kind, R, C, tpr);
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
    enum dtype ta;
    bool rows = ew_rows_ok(y->data, y->dtype, x->data, x->dtype, &p0, &p1, C, &ta) &&
                (kind != EW_ADD || op_cols(y) == C);
    if (rows && x->dtype == DTYPE_F32)
        ew_rows_launch_x<float>(ctx, ta, y->data, x->data, p0, p1, kind, R, C);
    else if (rows && x->dtype == DTYPE_F16)
        ew_rows_launch_x<__half>(ctx, ta, y->data, x->data, p0, p1, kind, R, C);
    else if (rows && x->dtype == DTYPE_BF16)
        ew_rows_launch_x<__nv_bfloat16>(ctx, ta, y->data, x->data, p0, p1, kind, R, C);
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
