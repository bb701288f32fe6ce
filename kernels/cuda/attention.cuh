/*
 * attention.cuh - the attention kernels, shared by kernels/cuda/attention.cu
 * (the op) and kernels/dev/attention_bench.cu (the workshop that times them).
 *
 * o = softmax(q k^T * scale) v per (sequence, head), head size 64, no mask.
 *
 * attn_simple_kernel<T>   fp32 everything (CUDA cores), any strides and
 *                         alignment; one warp per query row, 8 rows a block,
 *                         K/V tiles of 32 keys converted to fp32 in shared memory.
 * attn_mma_kernel<T, BM, MT> FlashAttention-2 style for F16/BF16: a block owns BM
 *                         query rows (BM / (16 MT) warps, MT m16 tiles of 16 rows
 *                         each; MT = 2 reads each K/V fragment once for two MMAs), loops over
 *                         64-key tiles of K and V brought into shared memory by
 *                         cp.async, double-buffered; S = Q K^T and O += P V on
 *                         tensor cores (mma.sync m16n8k16, fp32 accumulators),
 *                         online softmax in fp32 with exp2; P stays in registers
 *                         (the S accumulator layout is the A operand layout).
 *                         Shared-memory rows are 128 bytes, 16-byte chunks
 *                         XOR-swizzled by (row & 7), so ldmatrix is conflict-free.
 *                         Needs 16-byte aligned rows: every stride a multiple
 *                         of 8 elements, 16-byte aligned bases.
 *
 * Both read the sequence bounds from q_off/k_off when set (variable length),
 * else use Tq/Tk with batch strides; grid = (ceil(max Tq / rows), H, B).
 * With rows set (varlen only: the swin windows of kernels/cuda/window.cu),
 * packed row t of the sequences is token row rows[t] of q, k, v and o, so the
 * windows are read and written in place, in token order, without a gather.
 */
#ifndef S3D_KERNELS_CUDA_ATTENTION_CUH
#define S3D_KERNELS_CUDA_ATTENTION_CUH

#include "common.cuh"

#include <stdint.h>

struct attn_params {
    const void *q, *k, *v;      /* element (b, t, h, d) at base + b*sb + t*st + h*sh + d */
    void       *o;
    int64_t     q_sb, q_st, q_sh;
    int64_t     k_sb, k_st, k_sh;
    int64_t     v_sb, v_st, v_sh;
    int64_t     o_sb, o_st, o_sh;
    int         Tq, Tk;         /* dense lengths (ignored when q_off is set) */
    const int  *q_off, *k_off;  /* (B + 1) device offsets for varlen, or NULL */
    const int  *rows;           /* varlen: packed row -> token row of q, k, v, o; or NULL */
    float       scale;          /* softmax scale */
};

/* The token row of packed row t (identity without p.rows). */
__device__ __forceinline__ int64_t attn_row(const struct attn_params &p, int t)
{
    return p.rows ? p.rows[t] : t;
}

/* Resolve sequence b's query/key start and length. */
__device__ __forceinline__ void attn_seq(const struct attn_params &p, int b, int *q0, int *tq,
                                         int *k0, int *tk)
{
    if (p.q_off) {
        *q0 = p.q_off[b];
        *tq = p.q_off[b + 1] - *q0;
        *k0 = p.k_off[b];
        *tk = p.k_off[b + 1] - *k0;
    } else {
        *q0 = 0;
        *tq = p.Tq;
        *k0 = 0;
        *tk = p.Tk;
    }
}

// ----------------------------------------------------------------------------
// simple fp32 kernel

#define ATTN_SIMPLE_ROWS 8      /* query rows (warps) per block */
#define ATTN_SIMPLE_KEYS 32     /* keys per tile: one per lane */

template <typename T>
__global__ void __launch_bounds__(32 * ATTN_SIMPLE_ROWS)
attn_simple_kernel(struct attn_params p)
{
    __shared__ float sk[ATTN_SIMPLE_KEYS][65];   /* +1 pad: lane j reads row j */
    __shared__ float sv[ATTN_SIMPLE_KEYS][65];
    __shared__ float sq[ATTN_SIMPLE_ROWS][64];
    int b = blockIdx.z, h = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int q0, Tq, k0, Tk;

    attn_seq(p, b, &q0, &Tq, &k0, &Tk);
    int m0 = blockIdx.x * ATTN_SIMPLE_ROWS;
    if (m0 >= Tq)
        return;                                   /* whole block: no barrier skipped */
    int  row    = m0 + warp;
    bool active = row < Tq;
    const T *qr = (const T *)p.q + b * p.q_sb + (active ? attn_row(p, q0 + row) : 0) * p.q_st +
                  h * p.q_sh;
    const T *kb = (const T *)p.k + b * p.k_sb + h * p.k_sh;
    const T *vb = (const T *)p.v + b * p.v_sb + h * p.v_sh;

    sq[warp][lane]      = active ? to_f32(qr[lane]) : 0.0f;
    sq[warp][lane + 32] = active ? to_f32(qr[lane + 32]) : 0.0f;

    float m = -INFINITY, l = 0.0f, o0 = 0.0f, o1 = 0.0f;   /* lane owns dims 2 lane, 2 lane + 1 */
    for (int t0 = 0; t0 < Tk; t0 += ATTN_SIMPLE_KEYS) {
        __syncthreads();                          /* previous tile fully used */
        for (int i = threadIdx.x; i < ATTN_SIMPLE_KEYS * 64; i += blockDim.x) {
            int     key = i >> 6, d = i & 63;
            bool    ok  = t0 + key < Tk;
            int64_t r   = ok ? attn_row(p, k0 + t0 + key) : 0;
            sk[key][d] = ok ? to_f32(kb[r * p.k_st + d]) : 0.0f;
            sv[key][d] = ok ? to_f32(vb[r * p.v_st + d]) : 0.0f;
        }
        __syncthreads();
        bool  valid = t0 + lane < Tk;
        float s = -INFINITY;
        if (valid) {
            float acc = 0.0f;
            for (int d = 0; d < 64; d++)
                acc += sq[warp][d] * sk[lane][d];
            s = acc * p.scale;
        }
        float m_new = fmaxf(m, warp_max(s));
        float alpha = expf(m - m_new);           /* m = -inf on the first tile: 0 */
        float pj    = valid ? expf(s - m_new) : 0.0f;
        l = l * alpha + warp_sum(pj);
        o0 *= alpha;
        o1 *= alpha;
        int nk = Tk - t0 < ATTN_SIMPLE_KEYS ? Tk - t0 : ATTN_SIMPLE_KEYS;
        for (int j = 0; j < nk; j++) {
            float pb = __shfl_sync(0xffffffffu, pj, j);
            o0 += pb * sv[j][2 * lane];
            o1 += pb * sv[j][2 * lane + 1];
        }
        m = m_new;
    }
    if (active) {
        float inv = l > 0.0f ? 1.0f / l : 0.0f;  /* no keys: zeros */
        T *orow = (T *)p.o + b * p.o_sb + attn_row(p, q0 + row) * p.o_st + h * p.o_sh;
        orow[2 * lane]     = from_f32<T>(o0 * inv);
        orow[2 * lane + 1] = from_f32<T>(o1 * inv);
    }
}

// ----------------------------------------------------------------------------
// tensor-core kernel (sm_80+ instructions: cp.async, ldmatrix, mma.sync)

#define ATTN_BN 64              /* keys per tile */

__device__ __forceinline__ uint32_t smem_u32(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, zero-filled when !valid (src is then not read). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

/* d += a (16x16, row) * b (16x8, col), fp32 accumulators. */
__device__ __forceinline__ void mma_16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1,
                                          __half)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void mma_16816(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1,
                                          __nv_bfloat16)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats as a packed pair of T (lo in the low half). */
__device__ __forceinline__ uint32_t pack2(float lo, float hi, __half)
{
    __half2 h = __floats2half2_rn(lo, hi);
    return *(uint32_t *)&h;
}

__device__ __forceinline__ uint32_t pack2(float lo, float hi, __nv_bfloat16)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&h;
}

/* Element offset of (row, 16-byte chunk) in a swizzled tile of 64-element rows. */
__device__ __forceinline__ int swz(int row, int chunk) { return row * 64 + ((chunk ^ (row & 7)) << 3); }

/* rows [r0, r0 + nrows) of a strided (T, 64) operand into a swizzled tile;
 * rows at or past `limit` are zero-filled. Row r is base row idx[r] when idx
 * is set (a window's token rows), else base row r. */
template <typename T, int NROWS, int NT>
__device__ __forceinline__ void load_tile(T *tile, const T *base, int64_t stride, const int *idx,
                                          int r0, int limit)
{
    for (int c = threadIdx.x; c < NROWS * 8; c += NT) {
        int  r = c >> 3, ch = c & 7;
        bool ok = r0 + r < limit;
        int64_t pr = ok ? (idx ? idx[r0 + r] : r0 + r) : 0;
        const T *src = ok ? base + pr * stride + ch * 8 : base;
        cp_async16(tile + swz(r, ch), src, ok);
    }
}

/* The pieces of a key tile both tensor-core kernels (attn_mma_kernel here,
 * attn_v2_kernel in attention_v2.cuh) are made of. Fragment layouts
 * (mma.m16n8k16): an m-tile's S / O accumulator n-tile holds rows g and g + 8
 * (g = lane / 4: elements 0, 1 and 2, 3) at columns 2 (lane % 4) + {0, 1}. */

/* O = 0, running max -inf, partial sum 0 for MT m-tiles. */
template <int MT>
__device__ __forceinline__ void attn_acc_init(float (&o)[MT][8][4], float (&m_r)[MT][2],
                                              float (&l_r)[MT][2])
{
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        m_r[mt][0] = m_r[mt][1] = -INFINITY;
        l_r[mt][0] = l_r[mt][1] = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++)
            o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.0f;
    }
}

/* Q's A fragments of k-step kk for the warp's MT m-tiles from the swizzled
 * Q tile sq; wrow = the warp's first row in the tile. */
template <typename T, int MT>
__device__ __forceinline__ void attn_q_frags(uint32_t (&qa)[MT][4], const T *sq, int wrow, int kk,
                                             int lane)
{
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
        ldmatrix_x4(qa[mt], sq + swz(wrow + mt * 16 + (lane & 15), 2 * kk + (lane >> 4)));
}

/* S[mt] += Q K^T over the 16 dims of k-step kk for NN n-tiles of 8 keys: qa
 * the m-tiles' A fragments, kt the swizzled K tile; each K fragment (ldmatrix
 * x4: two n-tiles) feeds all MT m-tiles. */
template <typename T, int MT, int NN>
__device__ __forceinline__ void attn_qk_step(float (&s)[MT][NN][4], uint32_t (&qa)[MT][4],
                                             const T *kt, int kk, int lane)
{
#pragma unroll
    for (int nn = 0; nn < NN; nn += 2) {
        uint32_t bf[4];
        int mat = lane >> 3;
        ldmatrix_x4(bf, kt + swz(nn * 8 + 8 * (mat >> 1) + (lane & 7), 2 * kk + (mat & 1)));
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            mma_16816(s[mt][nn], qa[mt], bf[0], bf[1], T());
            mma_16816(s[mt][nn + 1], qa[mt], bf[2], bf[3], T());
        }
    }
}

/* Scores of keys >= Tk to -inf; key0 = the tile's first key. */
template <int MT, int NN>
__device__ __forceinline__ void attn_mask_keys(float (&s)[MT][NN][4], int key0, int Tk, int lane)
{
#pragma unroll
    for (int nn = 0; nn < NN; nn++) {
        int key = key0 + nn * 8 + 2 * (lane & 3);
#pragma unroll
        for (int e = 0; e < 4; e++)
            if (key + (e & 1) >= Tk)
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
                    s[mt][nn][e] = -INFINITY;
    }
}

/* The max of row g + 8 r of one m-tile's NN n-tiles over the quad that holds it. */
template <int NN>
__device__ __forceinline__ float attn_row_max(const float (&s)[NN][4], int r)
{
    float mx = -INFINITY;
#pragma unroll
    for (int nn = 0; nn < NN; nn++)
        mx = fmaxf(mx, fmaxf(s[nn][2 * r], s[nn][2 * r + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    return mx;
}

/* Row g + 8 r of one m-tile's O accumulators times alpha. */
__device__ __forceinline__ void attn_scale_row(float (&o)[8][4], int r, float alpha)
{
#pragma unroll
    for (int dd = 0; dd < 8; dd++) {
        o[dd][2 * r] *= alpha;
        o[dd][2 * r + 1] *= alpha;
    }
}

/* Row g + 8 r of one m-tile's scores to P = 2^(s sl2 - msc) in place (EXP:
 * the base-2 exponential), its partial sum added to l. */
template <int NN, typename EXP>
__device__ __forceinline__ void attn_exp_row(float (&s)[NN][4], int r, float sl2, float msc,
                                             float &l, EXP exp2_)
{
#pragma unroll
    for (int nn = 0; nn < NN; nn++) {
        float p0 = exp2_(fmaf(s[nn][2 * r], sl2, -msc));
        float p1 = exp2_(fmaf(s[nn][2 * r + 1], sl2, -msc));
        s[nn][2 * r]     = p0;
        s[nn][2 * r + 1] = p1;
        l += p0 + p1;
    }
}

/* O += P V over a tile of 16 NK keys: P from the S registers (the accumulator
 * layout is the A operand layout), V^T fragments by ldmatrix.trans from the
 * swizzled V tile vt, each feeding all MT m-tiles. */
template <typename T, int MT, int NK>
__device__ __forceinline__ void attn_pv(float (&o)[MT][8][4], const float (&s)[MT][2 * NK][4],
                                        const T *vt, int lane)
{
#pragma unroll
    for (int kk = 0; kk < NK; kk++) {            /* 16 keys per step */
        uint32_t pa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            pa[mt][0] = pack2(s[mt][2 * kk][0], s[mt][2 * kk][1], T());
            pa[mt][1] = pack2(s[mt][2 * kk][2], s[mt][2 * kk][3], T());
            pa[mt][2] = pack2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1], T());
            pa[mt][3] = pack2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3], T());
        }
#pragma unroll
        for (int dd = 0; dd < 8; dd += 2) {
            uint32_t bf[4];
            int mat = lane >> 3;
            ldmatrix_x4_trans(bf, vt + swz(kk * 16 + 8 * (mat & 1) + (lane & 7), dd + (mat >> 1)));
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma_16816(o[mt][dd], pa[mt], bf[0], bf[1], T());
                mma_16816(o[mt][dd + 1], pa[mt], bf[2], bf[3], T());
            }
        }
    }
}

/* o = O / l for rows g and g + 8 of the warp's MT m-tiles (l summed over the
 * quad; no keys: zeros), rows at or past Tq not written. row0: the warp's
 * first query row in sequence b; m-tile mt starts MSTRIDE rows after mt - 1
 * (16: a warp's m-tiles are adjacent; 64: warpgroup tiles, attention_wg.cu). */
template <typename T, int MT, int MSTRIDE = 16>
__device__ __forceinline__ void attn_store(const struct attn_params &p, const float (&o)[MT][8][4],
                                           const float (&l_r)[MT][2], int b, int h, int q0, int row0,
                                           int Tq, int lane)
{
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float l = l_r[mt][r];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            float inv = l > 0.0f ? 1.0f / l : 0.0f;  /* no keys: zeros */
            int   row = row0 + mt * MSTRIDE + (lane >> 2) + 8 * r;
            if (row < Tq) {
                T *orow = (T *)p.o + b * p.o_sb + attn_row(p, q0 + row) * p.o_st + h * p.o_sh;
#pragma unroll
                for (int dd = 0; dd < 8; dd++)
                    *(uint32_t *)(orow + dd * 8 + 2 * (lane & 3)) =
                        pack2(o[mt][dd][2 * r] * inv, o[mt][dd][2 * r + 1] * inv, T());
            }
        }
    }
}

/* BM query rows per block, MT m16 tiles (16 rows each) per warp: BM / (16 MT)
 * warps. MT = 2 reuses every K and V fragment read from shared memory for two
 * MMAs (FlashAttention-2's layout for head size 64), at twice the registers. */
template <typename T, int BM, int MT = 1>
__global__ void __launch_bounds__(BM * 2 / MT, BM == 64 && MT == 1 ? 4 : 1)
attn_mma_kernel(struct attn_params p)
{
    constexpr int NT = BM * 2 / MT;               /* BM / (16 MT) warps */
    __shared__ __align__(128) T sq[BM * 64];
    __shared__ __align__(128) T sk[2][ATTN_BN * 64];
    __shared__ __align__(128) T sv[2][ATTN_BN * 64];
    int b = blockIdx.z, h = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int q0, Tq, k0, Tk;

    attn_seq(p, b, &q0, &Tq, &k0, &Tk);
    int m0 = blockIdx.x * BM;
    if (m0 >= Tq)
        return;
    /* with p.rows the bases stay at token 0 and the tiles read rows through qi / ki */
    const int *qi = p.rows ? p.rows + q0 + m0 : NULL, *ki = p.rows ? p.rows + k0 : NULL;
    int64_t qs = p.rows ? 0 : q0 + m0, ks = p.rows ? 0 : k0;
    const T *qb = (const T *)p.q + b * p.q_sb + qs * p.q_st + h * p.q_sh;
    const T *kb = (const T *)p.k + b * p.k_sb + ks * p.k_st + h * p.k_sh;
    const T *vb = (const T *)p.v + b * p.v_sb + ks * p.v_st + h * p.v_sh;
    int ntiles = (Tk + ATTN_BN - 1) / ATTN_BN;
    const float sl2 = p.scale * 1.4426950408889634f;   /* exp(x) = exp2(x log2 e) */

    load_tile<T, BM, NT>(sq, qb, p.q_st, qi, 0, Tq - m0);
    if (ntiles > 0) {
        load_tile<T, ATTN_BN, NT>(sk[0], kb, p.k_st, ki, 0, Tk);
        load_tile<T, ATTN_BN, NT>(sv[0], vb, p.v_st, ki, 0, Tk);
    }
    cp_async_commit();

    float    o[MT][8][4];                        /* per m-tile: 16 rows x 64 dims */
    float    m_r[MT][2], l_r[MT][2];             /* rows g and g + 8, g = lane / 4; l partial */
    uint32_t qf[4][MT][4];                       /* Q A-fragments per k-step of 16 dims */
    attn_acc_init<MT>(o, m_r, l_r);
    const int wrow = warp * 16 * MT;             /* the warp's first row in the block */

    for (int j = 0; j < ntiles; j++) {
        int buf = j & 1;
        if (j + 1 < ntiles) {
            load_tile<T, ATTN_BN, NT>(sk[buf ^ 1], kb, p.k_st, ki, (j + 1) * ATTN_BN, Tk);
            load_tile<T, ATTN_BN, NT>(sv[buf ^ 1], vb, p.v_st, ki, (j + 1) * ATTN_BN, Tk);
        }
        cp_async_commit();
        cp_async_wait<1>();                      /* everything but tile j + 1 has landed */
        __syncthreads();
        if (j == 0) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int kk = 0; kk < 4; kk++)
                    ldmatrix_x4(qf[kk][mt],
                                sq + swz(wrow + mt * 16 + (lane & 15), 2 * kk + (lane >> 4)));
        }

        /* S = Q K^T: 16 x 64 per m-tile, 8 n-tiles of 8 keys; each K fragment feeds MT */
        float s[MT][8][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int i = 0; i < 8; i++)
                s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.0f;
        const T *kt = sk[buf];
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
            attn_qk_step<T, MT, 8>(s, qf[kk], kt, kk, lane);
        if ((j + 1) * ATTN_BN > Tk)              /* last tile: mask keys >= Tk */
            attn_mask_keys<MT, 8>(s, j * ATTN_BN, Tk, lane);

        /* online softmax, rows g (e = 0, 1) and g + 8 (e = 2, 3) of each m-tile */
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float mx    = attn_row_max<8>(s[mt], r);
                float m_new = fmaxf(m_r[mt][r], mx);
                float alpha = exp2f((m_r[mt][r] - m_new) * sl2);
                float msc   = m_new * sl2;
                m_r[mt][r] = m_new;
                l_r[mt][r] *= alpha;
                attn_scale_row(o[mt], r, alpha);
                attn_exp_row<8>(s[mt], r, sl2, msc, l_r[mt][r], [](float x) { return exp2f(x); });
            }
        }

        /* O += P V */
        attn_pv<T, MT, 4>(o, s, sv[buf], lane);
        __syncthreads();                         /* buffer buf is refilled at j + 1 */
    }
    cp_async_wait<0>();
    attn_store<T, MT>(p, o, l_r, b, h, q0, m0 + wrow, Tq, lane);
}

/* Host side (kernels/cuda/attention.cu), shared with the other attention ops:
 * true when every one of n strides is a multiple of 8 elements and base is
 * 16-byte aligned (rows are whole 16-byte chunks: the tensor-core kernel's
 * condition); and the launch of the right kernel for p over B sequences of at
 * most max_tq queries (mma_ok: every operand passed attn_rows_16b). */
bool attn_rows_16b(const void *base, const int64_t *strides, int n);
void attn_launch(const struct op_ctx *ctx, const struct attn_params *p, enum dtype dt, int B, int H,
                 int max_tq, bool mma_ok);

/* The tensor-core kernels attn_launch chooses from (S3D_ATTN_KERNEL, S3D_ATTN_MT;
 * attention.cu): DEFAULT picks by max_tq as attn_launch does without either
 * variable; V1_MT1 / V1_MT2 are attn_mma_kernel<T, 64, 1> / <T, 128, 2>;
 * V2 / V2B are attn_v2_kernel with 2 m-tiles per warp and 64-key tiles and Q
 * in registers / 128-key tiles and Q re-read from shared memory; V2S with one
 * m-tile per warp (64-row blocks), 64-key tiles (attention_v2.cuh); V3 is V2 with
 * S = Q K^T on wgmma (attention_wg.cu; compute capability 9.0 only, else V2); V4 is
 * V3 with P V on wgmma too, beside the next tile's softmax (the same fallback). */
enum attn_kernel { ATTN_KERNEL_DEFAULT, ATTN_KERNEL_V1_MT1, ATTN_KERNEL_V1_MT2, ATTN_KERNEL_V2,
                   ATTN_KERNEL_V2B, ATTN_KERNEL_V2S, ATTN_KERNEL_V3, ATTN_KERNEL_V4,
                   ATTN_KERNEL_SPLIT };

/* attn_launch with the kernel given (the bench times each on one stream);
 * F32 or !mma_ok take the fp32 kernel whatever kern says. ATTN_KERNEL_SPLIT
 * runs attn_split_launch in ws (ws_bytes; NULL, 0: none) where it applies,
 * else the default kernel. */
void attn_launch_kernel(cudaStream_t st, const struct attn_params *p, enum dtype dt, int B, int H,
                        int max_tq, bool mma_ok, enum attn_kernel kern, void *ws,
                        size_t ws_bytes);

/* Split-key attention (attention_split.cu) of dense sequences (no q_off, no
 * rows) of 1 to ATTN_SPLIT_MAX_TQ queries over any Tk >= 0 keys, F16/BF16 with
 * 16-byte rows (mma_ok): two kernels on st, the partials in ws, which must
 * hold attn_split_ws_bytes(B, H, Tq, Tk) (the op passes the context's cuBLAS
 * workspace: stream order keeps it from the GEMMs'). Returns false, launching
 * nothing, where it does not apply or ws is too small. */
#define ATTN_SPLIT_MAX_TQ 16
size_t attn_split_ws_bytes(int B, int H, int Tq, int Tk);
bool   attn_split_launch(cudaStream_t st, const struct attn_params *p, enum dtype dt, int B, int H,
                         bool mma_ok, void *ws, size_t ws_bytes);

/* attn_wg_kernel (pv_wg false: v3) or attn_wgp_kernel (true: v4; kernels/cuda/
 * attention_wg.cu) in fp16 (f16) or bf16 over grid (ceil(max_tq / 128), H, B); false,
 * launching nothing, on a device that is not compute capability 9.0 (the kernels
 * exist only as sm_90a code). */
bool attn_wg_launch(cudaStream_t st, const struct attn_params *p, bool f16, int B, int H, int max_tq,
                    bool pv_wg);

#endif
