/*
 * norm.cu - LayerNorm and the per-head RMS norm on the GPU. See ops.h.
 *
 * One warp per row; fp32 statistics. LayerNorm reads its row three times
 * (mean, centred variance, output): the second and third reads hit L1, and
 * the two-pass variance matches the CPU reference far better than E[x^2]-m^2;
 * rows of 256..2048 fp16/bf16 elements are held in registers instead
 * (layernorm_vec_kernel), and fp32 rows of 256..1024 into any dtype likewise
 * (layernorm_vec32_kernel: the flows' residual stream). The adaLN modulation can
 * follow in the same pass (op_layernorm_mod).
 * The per-head RMS norm of 64-element fp16/bf16 rows (every DiT's q/k) takes
 * 8 threads per row with 16-byte loads and stores (rmsnorm_heads64_kernel).
 */
#include "common.cuh"

#include <string.h>

#define ROWS_PER_BLOCK 4   /* warps per block, one row each */

/* The optional per-channel operands of a LayerNorm row: affine w, b and the
 * modulation scale, shift (each NULL or a (C) vector of run-time dtype). */
struct ln_par {
    const void *w, *b, *sc, *sh;
    enum dtype  wdt, bdt, scdt, shdt;
    bool        round_sc;   /* 1 + sc rounded to scdt first (op_layernorm_mod's round_scale) */
};

/* 1 + sc, rounded to the scale's dtype when p.round_sc. */
__device__ __forceinline__ float ln_one_plus(const struct ln_par &p, float sc)
{
    float v = 1.0f + sc;
    if (!p.round_sc)
        return v;
    switch (p.scdt) {
    case DTYPE_F16:  return __half2float(__float2half_rn(v));
    case DTYPE_BF16: return __bfloat162float(__float2bfloat16_rn(v));
    default:         return v;
    }
}

/* ((x - mean) * rstd * w + b) * (1 + sc) + sh of channel c, the CPU op's order. */
__device__ __forceinline__ float ln_out(float xv, float mean, float rstd, const struct ln_par &p,
                                        int64_t c)
{
    float o = (xv - mean) * rstd;
    if (p.w)
        o = o * load_dt(p.w, p.wdt, c);
    if (p.b)
        o = o + load_dt(p.b, p.bdt, c);
    if (p.sc)
        o = o * ln_one_plus(p, load_dt(p.sc, p.scdt, c)) + (p.sh ? load_dt(p.sh, p.shdt, c) : 0.0f);
    return o;
}

/* One warp per row of C, any dtypes. */
template <typename Tx, typename Ty>
__global__ void layernorm_kernel(Ty *y, const Tx *x, struct ln_par p, int64_t R, int C, float eps)
{
    int64_t row  = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int     lane = threadIdx.x & 31;

    if (row >= R)
        return;
    const Tx *xr = x + row * C;
    Ty       *yr = y + row * C;
    float     s  = 0.0f;
    for (int c = lane; c < C; c += 32)
        s += to_f32(xr[c]);
    float mean = warp_sum(s) / (float)C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = to_f32(xr[c]) - mean;
        v += d * d;
    }
    float rstd = rsqrtf(warp_sum(v) / (float)C + eps);
    for (int c = lane; c < C; c += 32)
        yr[c] = from_f32<Ty>(ln_out(to_f32(xr[c]), mean, rstd, p, c));
}

#define LN_VEC_MAX 8       /* 16-byte vectors per lane: C <= 8 * 32 * 8 = 2048 */

/* One warp per row of C = nv * 256 elements of a 2-byte T held in registers:
 * lane l owns vectors k * 32 + l (8 elements each), read and written with
 * 16-byte accesses; two-pass statistics as layernorm_kernel. The row stays in
 * registers as the raw 16-byte vectors (32 registers at C = 2048; a float copy
 * of it made ptxas spill into a 544-byte stack frame, and the driver then
 * grows every context's per-thread stack to match: ~100 MiB on an H100). */
template <typename T>
__global__ void __launch_bounds__(32 * ROWS_PER_BLOCK)
layernorm_vec_kernel(T *y, const T *x, struct ln_par p, int64_t R, int C, int nv, float eps)
{
    int64_t row  = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int     lane = threadIdx.x & 31;

    if (row >= R)                                /* warp-uniform */
        return;
    const uint4 *xr = (const uint4 *)(x + row * C);
    uint4       *yr = (uint4 *)(y + row * C);
    uint4        raw[LN_VEC_MAX];
    float        s = 0.0f;
#pragma unroll
    for (int k = 0; k < LN_VEC_MAX; k++) {
        if (k < nv) {
            raw[k] = xr[k * 32 + lane];
            const T *e = (const T *)&raw[k];
#pragma unroll
            for (int j = 0; j < 8; j++)
                s += to_f32(e[j]);
        }
    }
    float mean = warp_sum(s) / (float)C, q = 0.0f;
#pragma unroll
    for (int k = 0; k < LN_VEC_MAX; k++)
        if (k < nv) {
            const T *e = (const T *)&raw[k];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float d = to_f32(e[j]) - mean;
                q += d * d;
            }
        }
    float rstd = rsqrtf(warp_sum(q) / (float)C + eps);
#pragma unroll
    for (int k = 0; k < LN_VEC_MAX; k++) {
        if (k < nv) {
            int64_t  c0 = (int64_t)(k * 32 + lane) * 8;
            const T *e  = (const T *)&raw[k];
            uint4    u;
            T       *o  = (T *)&u;
#pragma unroll
            for (int j = 0; j < 8; j++)
                o[j] = from_f32<T>(ln_out(to_f32(e[j]), mean, rstd, p, c0 + j));
            yr[k * 32 + lane] = u;
        }
    }
}

#define LN32_VEC_MAX 4     /* fp32 rows: 8 floats per vector, C <= 4 * 32 * 8 = 1024 */

/* 8 elements i .. i + 7 of a (C) parameter of run-time dtype dt (16-byte aligned). */
__device__ __forceinline__ void ln_par8(const void *p, enum dtype dt, int64_t i, float out[8])
{
    switch (dt) {
    case DTYPE_F16:  load8_f32<__half>((const __half *)p + i, out); break;
    case DTYPE_BF16: load8_f32<__nv_bfloat16>((const __nv_bfloat16 *)p + i, out); break;
    default:         load8_f32<float>((const float *)p + i, out); break;
    }
}

/* One warp per fp32 row of C = nv * 256 elements (the flows' residual stream), into
 * Ty: lane l owns the 8-element vectors k * 32 + l, held in registers (32 floats at
 * C = 1024); two-pass statistics; the affine and modulation parameters read 8 at a
 * time; the same per-element arithmetic as ln_out. */
template <typename Ty>
__global__ void __launch_bounds__(32 * ROWS_PER_BLOCK)
layernorm_vec32_kernel(Ty *y, const float *x, struct ln_par p, int64_t R, int C, int nv, float eps)
{
    int64_t row  = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int     lane = threadIdx.x & 31;

    if (row >= R)                                /* warp-uniform */
        return;
    const float *xr = x + row * C;
    Ty          *yr = y + row * C;
    float        v[LN32_VEC_MAX][8], s = 0.0f;
#pragma unroll
    for (int k = 0; k < LN32_VEC_MAX; k++)
        if (k < nv) {
            load8_f32<float>(xr + (k * 32 + lane) * 8, v[k]);
#pragma unroll
            for (int j = 0; j < 8; j++)
                s += v[k][j];
        }
    float mean = warp_sum(s) / (float)C, q = 0.0f;
#pragma unroll
    for (int k = 0; k < LN32_VEC_MAX; k++)
        if (k < nv)
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float d = v[k][j] - mean;
                q += d * d;
            }
    float rstd = rsqrtf(warp_sum(q) / (float)C + eps);
#pragma unroll
    for (int k = 0; k < LN32_VEC_MAX; k++) {
        if (k < nv) {
            int64_t c0 = (int64_t)(k * 32 + lane) * 8;
            float   w[8], b[8], sc[8], sh[8], o[8];
            if (p.w)
                ln_par8(p.w, p.wdt, c0, w);
            if (p.b)
                ln_par8(p.b, p.bdt, c0, b);
            if (p.sc)
                ln_par8(p.sc, p.scdt, c0, sc);
            if (p.sh)
                ln_par8(p.sh, p.shdt, c0, sh);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float t = (v[k][j] - mean) * rstd;
                if (p.w)
                    t = t * w[j];
                if (p.b)
                    t = t + b[j];
                if (p.sc)
                    t = t * ln_one_plus(p, sc[j]) + (p.sh ? sh[j] : 0.0f);
                o[j] = t;
            }
            store8_f32<Ty>(yr + c0, o);
        }
    }
}

static bool ln_al16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

static void ln_vec_check(const char *what, const struct tensor *t, int64_t C)
{
    if (t) {
        op_check_dense(what, t, DEVICE_CUDA);
        ASSERT(tensor_numel(t) == C);
    }
}

void op_layernorm_mod_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                           const struct tensor *w, const struct tensor *b,
                           const struct tensor *scale, const struct tensor *shift, float eps,
                           bool round_scale)
{
    op_check_dense("layernorm.x", x, DEVICE_CUDA);
    op_check_dense("layernorm.y", y, DEVICE_CUDA);
    ASSERT(tensor_same_shape(x, y));
    ASSERT(w || !b);
    ASSERT(scale || !shift);
    ASSERT(x->data != y->data || x->dtype == y->dtype);

    int64_t C = op_cols(x), R = op_rows(x);
    ASSERT(C < (1 << 30));
    ln_vec_check("layernorm.w", w, C);
    ln_vec_check("layernorm.b", b, C);
    ln_vec_check("layernorm.scale", scale, C);
    ln_vec_check("layernorm.shift", shift, C);
    if (R == 0 || C == 0)
        return;
    struct ln_par p = {w ? w->data : NULL, b ? b->data : NULL, scale ? scale->data : NULL,
                       shift ? shift->data : NULL, w ? w->dtype : DTYPE_F32,
                       b ? b->dtype : DTYPE_F32, scale ? scale->dtype : DTYPE_F32,
                       shift ? shift->dtype : DTYPE_F32, scale && round_scale};
    unsigned grid = (unsigned)((R + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    ASSERT((R + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK < (1ll << 31));
    bool vec = x->dtype == y->dtype && (x->dtype == DTYPE_F16 || x->dtype == DTYPE_BF16) &&
               C % 256 == 0 && C / 256 <= LN_VEC_MAX && ((uintptr_t)x->data & 15) == 0 &&
               ((uintptr_t)y->data & 15) == 0;
    bool vec32 = x->dtype == DTYPE_F32 && C % 256 == 0 && C / 256 <= LN32_VEC_MAX &&
                 ln_al16(x->data) && ln_al16(y->data) && ln_al16(p.w) && ln_al16(p.b) &&
                 ln_al16(p.sc) && ln_al16(p.sh) && x->data != y->data;
    if (vec32 && y->dtype == DTYPE_F16)
        layernorm_vec32_kernel<__half><<<grid, 32 * ROWS_PER_BLOCK, 0, ctx->stream>>>(
            (__half *)y->data, (const float *)x->data, p, R, (int)C, (int)(C / 256), eps);
    else if (vec32 && y->dtype == DTYPE_BF16)
        layernorm_vec32_kernel<__nv_bfloat16><<<grid, 32 * ROWS_PER_BLOCK, 0, ctx->stream>>>(
            (__nv_bfloat16 *)y->data, (const float *)x->data, p, R, (int)C, (int)(C / 256), eps);
    else if (vec32)
        layernorm_vec32_kernel<float><<<grid, 32 * ROWS_PER_BLOCK, 0, ctx->stream>>>(
            (float *)y->data, (const float *)x->data, p, R, (int)C, (int)(C / 256), eps);
    else if (vec && x->dtype == DTYPE_F16)
        layernorm_vec_kernel<__half><<<grid, 32 * ROWS_PER_BLOCK, 0, ctx->stream>>>(
            (__half *)y->data, (const __half *)x->data, p, R, (int)C, (int)(C / 256), eps);
    else if (vec)
        layernorm_vec_kernel<__nv_bfloat16><<<grid, 32 * ROWS_PER_BLOCK, 0, ctx->stream>>>(
            (__nv_bfloat16 *)y->data, (const __nv_bfloat16 *)x->data, p, R, (int)C,
            (int)(C / 256), eps);
    else
        DISPATCH_2(x->dtype, Tx, y->dtype, Ty,
            layernorm_kernel<Tx, Ty><<<grid, 32 * ROWS_PER_BLOCK, 0, ctx->stream>>>(
                (Ty *)y->data, (const Tx *)x->data, p, R, (int)C, eps));
    op_done(ctx, "layernorm");
}

void op_layernorm_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                       const struct tensor *w, const struct tensor *b, float eps)
{
    op_layernorm_mod_cuda(ctx, y, x, w, b, NULL, NULL, eps, false);
}

// ----------------------------------------------------------------------------
// per-head RMS norm

/* Leading dims of a strided (..., H, D) tensor: row r (flat over all dims but
 * the last) starts at sum_i idx_i * stride_i. rows_desc_init drops size-1 dims and
 * merges dims that are one run of rows in both x and y (the flows' q / k views:
 * (T, H) at strides (3 C, 64)), and sets small when every index fits 32 bits: the
 * offsets then take 32-bit divisions (an int64 one is ~70 instructions, per 8
 * elements in rmsnorm_heads64_kernel). */
struct rows_desc {
    int     nd;                 /* leading dims after merging, 1..5 */
    bool    small;              /* R < 2^31: 32-bit index arithmetic */
    int64_t shape[5];
    int64_t xs[5];              /* x strides of the leading dims */
    int64_t ys[5];              /* y strides */
};

static void rows_desc_init(struct rows_desc *rd, const struct tensor *x, const struct tensor *y,
                           int64_t R)
{
    memset(rd, 0, sizeof(*rd));
    for (int d = 0; d < x->ndim - 1; d++) {
        int k = rd->nd - 1;
        if (x->shape[d] == 1)
            continue;                                /* index 0: no offset */
        if (k >= 0 && rd->xs[k] == x->stride[d] * x->shape[d] &&
            rd->ys[k] == y->stride[d] * y->shape[d]) {
            rd->shape[k] *= x->shape[d];             /* outer dim k and d: one run */
            rd->xs[k] = x->stride[d];
            rd->ys[k] = y->stride[d];
            continue;
        }
        rd->shape[rd->nd] = x->shape[d];
        rd->xs[rd->nd] = x->stride[d];
        rd->ys[rd->nd] = y->stride[d];
        rd->nd++;
    }
    if (rd->nd == 0) {                               /* one row */
        rd->nd = 1;
        rd->shape[0] = 1;
    }
    rd->small = R < ((int64_t)1 << 31);
}

/* Element offsets in x and y of flat row `row` (row < R: the outermost index is
 * what is left of it, no division). */
__device__ __forceinline__ void rows_offsets(const struct rows_desc &rd, int64_t row, int64_t *xo,
                                             int64_t *yo)
{
    *xo = *yo = 0;
    if (rd.small) {
        uint32_t r = (uint32_t)row;
        for (int d = rd.nd - 1; d > 0; d--) {
            uint32_t n = (uint32_t)rd.shape[d], i = r % n;
            r /= n;
            *xo += (int64_t)i * rd.xs[d];
            *yo += (int64_t)i * rd.ys[d];
        }
        *xo += (int64_t)r * rd.xs[0];
        *yo += (int64_t)r * rd.ys[0];
        return;
    }
    int64_t r = row;
    for (int d = rd.nd - 1; d > 0; d--) {
        int64_t i = r % rd.shape[d];
        r /= rd.shape[d];
        *xo += i * rd.xs[d];
        *yo += i * rd.ys[d];
    }
    *xo += r * rd.xs[0];
    *yo += r * rd.ys[0];
}

/* The head of flat row `row`: row % H. */
__device__ __forceinline__ int rows_head(const struct rows_desc &rd, int64_t row, int H)
{
    return rd.small ? (int)((uint32_t)row % (uint32_t)H) : (int)(row % H);
}

/* y = x / max(||x||, 1e-12) * gamma[h] * scale, one warp per row of D. */
template <typename T>
__global__ void rmsnorm_heads_kernel(T *y, const T *x, const void *g, enum dtype gdt,
                                     struct rows_desc rd, int64_t R, int H, int D, float scale)
{
    int64_t row  = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    int     lane = threadIdx.x & 31;

    if (row >= R)
        return;
    int64_t xo, yo;
    rows_offsets(rd, row, &xo, &yo);
    int h = rows_head(rd, row, H);
    float ss = 0.0f;
    for (int c = lane; c < D; c += 32) {
        float v = to_f32(x[xo + c]);
        ss += v * v;
    }
    float den = fmaxf(sqrtf(warp_sum(ss)), 1e-12f);   /* F.normalize: clamp_min(eps) */
    for (int c = lane; c < D; c += 32)
        y[yo + c] = from_f32<T>(to_f32(x[xo + c]) / den * load_dt(g, gdt, (int64_t)h * D + c) * scale);
}

/* rmsnorm_heads_kernel for D = 64 of a 2-byte T with F32 gamma: 8 threads per
 * row, 8 elements (one 16-byte load) each; the same arithmetic per element. */
#define RMS_VEC_ROWS 32    /* rows per block of 256 threads */

template <typename T>
__global__ void __launch_bounds__(256)
rmsnorm_heads64_kernel(T *y, const T *x, const float *g, struct rows_desc rd, int64_t R, int H,
                       float scale)
{
    int64_t row = (int64_t)blockIdx.x * RMS_VEC_ROWS + (threadIdx.x >> 3);
    int     part = threadIdx.x & 7;              /* elements 8 part .. 8 part + 7 */
    bool    ok = row < R;                        /* a past-the-end group reads the last row */

    if (!ok)                                     /* and stores nothing (no lane leaves */
        row = R - 1;                             /* before the shuffles) */
    int64_t xo, yo;
    rows_offsets(rd, row, &xo, &yo);
    int    h = rows_head(rd, row, H);
    uint4  xu = *(const uint4 *)(x + xo + part * 8), yu;
    const T *xe = (const T *)&xu;
    T       *ye = (T *)&yu;
    float  v[8], ss = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        v[k] = to_f32(xe[k]);
        ss += v[k] * v[k];
    }
    ss += __shfl_xor_sync(0xffffffffu, ss, 1);
    ss += __shfl_xor_sync(0xffffffffu, ss, 2);
    ss += __shfl_xor_sync(0xffffffffu, ss, 4);
    float den = fmaxf(sqrtf(ss), 1e-12f);        /* F.normalize: clamp_min(eps) */
    const float4 *gp = (const float4 *)(g + (int64_t)h * 64 + part * 8);
    float4 g0 = gp[0], g1 = gp[1];
    float gg[8] = {g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w};
#pragma unroll
    for (int k = 0; k < 8; k++)
        ye[k] = from_f32<T>(v[k] / den * gg[k] * scale);
    if (ok)
        *(uint4 *)(y + yo + part * 8) = yu;
}

void op_rmsnorm_heads_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                           const struct tensor *gamma, float scale)
{
    ASSERT(x->device == DEVICE_CUDA && y->device == DEVICE_CUDA);
    ASSERT(op_dtype_ok(x->dtype) && y->dtype == x->dtype);
    ASSERT(x->ndim >= 2 && x->ndim <= 6 && tensor_same_shape(x, y));
    ASSERT(x->stride[x->ndim - 1] == 1 && y->stride[y->ndim - 1] == 1);
    op_check_dense("rmsnorm_heads.gamma", gamma, DEVICE_CUDA);

    int64_t D = x->shape[x->ndim - 1], H = x->shape[x->ndim - 2];
    int64_t R = D ? tensor_numel(x) / D : 0;
    ASSERT(gamma->ndim == 2 && gamma->shape[0] == H && gamma->shape[1] == D);
    if (R == 0 || D == 0)
        return;

    struct rows_desc rd;
    rows_desc_init(&rd, x, y, R);
    /* the vector kernel: D = 64, 2-byte dtype, F32 gamma, every row 16-byte aligned */
    bool vec = D == 64 && x->dtype != DTYPE_F32 && gamma->dtype == DTYPE_F32 &&
               ((uintptr_t)x->data & 15) == 0 && ((uintptr_t)y->data & 15) == 0 &&
               ((uintptr_t)gamma->data & 15) == 0;
    for (int d = 0; d < rd.nd; d++)
        vec = vec && rd.xs[d] % 8 == 0 && rd.ys[d] % 8 == 0;
    if (vec) {
        unsigned g8 = (unsigned)((R + RMS_VEC_ROWS - 1) / RMS_VEC_ROWS);
        ASSERT((R + RMS_VEC_ROWS - 1) / RMS_VEC_ROWS < (1ll << 31));
        if (x->dtype == DTYPE_F16)
            rmsnorm_heads64_kernel<__half><<<g8, 256, 0, ctx->stream>>>(
                (__half *)y->data, (const __half *)x->data, (const float *)gamma->data, rd, R,
                (int)H, scale);
        else
            rmsnorm_heads64_kernel<__nv_bfloat16><<<g8, 256, 0, ctx->stream>>>(
                (__nv_bfloat16 *)y->data, (const __nv_bfloat16 *)x->data,
                (const float *)gamma->data, rd, R, (int)H, scale);
        op_done(ctx, "rmsnorm_heads");
        return;
    }
    unsigned grid = (unsigned)((R + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK);
    DISPATCH_1(x->dtype, T,
        rmsnorm_heads_kernel<T><<<grid, 32 * ROWS_PER_BLOCK, 0, ctx->stream>>>(
            (T *)y->data, (const T *)x->data, gamma->data, gamma->dtype, rd, R, (int)H, (int)D,
            scale));
    op_done(ctx, "rmsnorm_heads");
}
