/*
 * attention_v2.cuh - the second tensor-core attention kernel (issue 16), a
 * variant of attn_mma_kernel<T, 64 MT, MT> (attention.cuh) selected by
 * S3D_ATTN_KERNEL (kernels/cuda/attention.cu) until a GPU run shows it correct
 * and faster (tools/gpu/attn_bench.sh).
 *
 * Same contract as attn_mma_kernel (attn_params, head size 64, q_off/k_off,
 * rows, 16-byte aligned rows), the same fragment layouts (mma.sync m16n8k16,
 * ldmatrix / ldmatrix.trans from 128-byte rows whose 16-byte chunks are
 * XOR-swizzled by row & 7: the helpers of attention.cuh) and the same numerics
 * (fp32 S and O accumulators, online softmax in base 2 with the scale folded
 * into log2 e, P rounded to T in registers as the A operand of P V). A block
 * owns 64 MT query rows: 4 warps x MT m-tiles of 16 rows, each K/V fragment
 * read from shared memory once for all MT m-tiles (MT 2: the long sequences;
 * MT 1: short ones, more blocks). What changes:
 *
 *  - one __syncthreads per key tile instead of two: tile j + 1's cp.async is
 *    issued right after the barrier that publishes tile j; that barrier is
 *    also the point every warp has passed tile j - 1, whose buffer tile j + 1
 *    overwrites (K and V double-buffered);
 *  - exp2 as one ex2.approx.ftz.f32 (exp2f adds a denormal fix-up around the
 *    MUFU op: 3 more instructions per score; P is rounded to fp16 anyway, and
 *    ftz only flushes values below 2^-126, which fp16 P cannot hold);
 *  - O and l rescaled only when a row max of the warp grew by more than 2^8
 *    (ATTN_V2_SLACK; FlashAttention-4's conditional rescaling): P is then at
 *    most 256 instead of 1, the same relative rounding in fp16 / bf16, and the
 *    64 multiplies of O per tile are skipped once the row maxima settle;
 *  - BN keys per tile (64 or 128): at 128 the per-tile softmax bookkeeping
 *    (row max shuffles, the rescale of O, the barrier) is paid half as often;
 *  - QREG: Q's A-fragments held in 32 registers (as attn_mma_kernel) or read
 *    again from shared memory per 16-dim k-step (8 more ldmatrix.x4 per tile,
 *    32 registers fewer: room for BN 128 or a third block per SM);
 *  - dynamic shared memory: Q (64 MT x 64) + 2 x (K, V) (BN x 64 each) of T,
 *    48 KiB at MT 2 and BN 64, 80 KiB at BN 128 (attn_v2_smem; the launcher
 *    raises the per-function limit).
 *
 * MINB is __launch_bounds__' minimum blocks per SM (2: <= 255 registers,
 * 4: <= 128). Every instantiation in attention.cu must build without spills
 * (ptxas -v: 0 bytes stack frame).
 */
#ifndef S3D_KERNELS_CUDA_ATTENTION_V2_CUH
#define S3D_KERNELS_CUDA_ATTENTION_V2_CUH

#include "attention.cuh"

#define ATTN_V2_NT 128          /* threads: 4 warps of MT m-tiles of 16 query rows */
#define ATTN_V2_SLACK 8.0f      /* base-2 growth of a row max absorbed without rescaling O */

/* 2^x in one MUFU op; 2^-inf = 0, results below 2^-126 flushed to 0. */
__device__ __forceinline__ float ex2_ftz(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* Rows [r0, r0 + NROWS) of a strided (., 64) operand into a swizzled tile, as
 * load_tile (rows at or past `limit` zero-filled; row r is base row idx[r] when
 * idx is set) with a trip count known at compile time: thread t copies chunk
 * t % 8 of rows t / 8 + i NT / 8, and since NT / 8 is a multiple of 8 its
 * swizzled chunk (t % 8) ^ (row % 8) is the same for every i. */
template <typename T, int NROWS, int NT>
__device__ __forceinline__ void load_tile_v2(T *tile, const T *base, int64_t stride, const int *idx,
                                             int r0, int limit)
{
    constexpr int STEP = NT / 8;                  /* rows per pass */
    static_assert(STEP % 8 == 0 && NROWS % STEP == 0, "whole passes, row % 8 fixed per thread");
    int r = threadIdx.x >> 3, ch = threadIdx.x & 7;
    T  *dst = tile + r * 64 + ((ch ^ (r & 7)) << 3);
    base += ch * 8;
#pragma unroll
    for (int i = 0; i < NROWS / STEP; i++) {
        int     row = r0 + r + i * STEP;
        bool    ok  = row < limit;
        int64_t pr  = ok ? (idx ? idx[row] : row) : 0;
        cp_async16(dst + i * STEP * 64, base + pr * stride, ok);
    }
}

/* Query rows per block of attn_v2_kernel<T, MT, ...>: 4 warps x MT x 16. */
#define ATTN_V2_BM(mt) (64 * (mt))

/* Dynamic shared memory of attn_v2_kernel<T, MT, BN, ...> for element size es. */
static inline size_t attn_v2_smem(int mt, int bn, size_t es)
{
    return ((size_t)ATTN_V2_BM(mt) * 64 + (size_t)4 * bn * 64) * es;
}

/* The online softmax of one key tile, rows g (e = 0, 1) and g + 8 (e = 2, 3) of
 * each m-tile: S to P in place (ex2.approx.ftz), l and O updated. Against a
 * reference max m_r that is rescaled only when some row of the warp grew past it
 * by more than ATTN_V2_SLACK in base 2 (then as attn_mma_kernel: m_r = the row
 * max, O and l times 2^((old - new) sl2)); otherwise P = 2^((s - m_r) sl2) <=
 * 2^ATTN_V2_SLACK, which fp32 l, O and an fp16 / bf16 P hold at the same
 * relative precision, and o = O / l cancels the reference. The first tile
 * always rescales (m_r = -inf: alpha = 0); every tile holds a key < Tk, so the
 * new max is finite. */
template <int MT, int NN>
__device__ __forceinline__ void attn_v2_softmax(float (&s)[MT][NN][4], float (&o)[MT][8][4],
                                                float (&m_r)[MT][2], float (&l_r)[MT][2], float sl2)
{
    float mx[MT][2];
    bool  grow = false;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[mt][r] = attn_row_max<NN>(s[mt], r);
            grow |= !((mx[mt][r] - m_r[mt][r]) * sl2 <= ATTN_V2_SLACK);
        }
    }
    if (__any_sync(0xffffffffu, grow)) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float m_new = fmaxf(m_r[mt][r], mx[mt][r]);
                float alpha = ex2_ftz((m_r[mt][r] - m_new) * sl2);
                m_r[mt][r] = m_new;
                l_r[mt][r] *= alpha;
                attn_scale_row(o[mt], r, alpha);
            }
        }
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++)
            attn_exp_row<NN>(s[mt], r, sl2, m_r[mt][r] * sl2, l_r[mt][r],
                             [](float x) { return ex2_ftz(x); });
}

template <typename T, int MT, int BN, bool QREG, int MINB>
__global__ void __launch_bounds__(ATTN_V2_NT, MINB)
attn_v2_kernel(struct attn_params p)
{
    constexpr int NN = BN / 8, NT = ATTN_V2_NT, BM = ATTN_V2_BM(MT);
    static_assert(MT == 1 || MT == 2, "MT: 1 or 2 m-tiles per warp");
    static_assert(BN == 64 || BN == 128, "BN: 64 or 128 keys per tile");
    extern __shared__ __align__(128) unsigned char attn_v2_smem_raw[];
    T *sq  = (T *)attn_v2_smem_raw;               /* (BM, 64) swizzled */
    T *skv = sq + BM * 64;                        /* buffer i: K (BN, 64) at i 2 BN 64, V after it */
    int b = blockIdx.z, h = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int q0, Tq, k0, Tk;

    attn_seq(p, b, &q0, &Tq, &k0, &Tk);
    int m0 = blockIdx.x * BM;
    if (m0 >= Tq)
        return;                                   /* whole block: no barrier skipped */
    /* with p.rows the bases stay at token 0 and the tiles read rows through qi / ki */
    const int *qi = p.rows ? p.rows + q0 + m0 : NULL, *ki = p.rows ? p.rows + k0 : NULL;
    int64_t qs = p.rows ? 0 : q0 + m0, ks = p.rows ? 0 : k0;
    const T *qb = (const T *)p.q + b * p.q_sb + qs * p.q_st + h * p.q_sh;
    const T *kb = (const T *)p.k + b * p.k_sb + ks * p.k_st + h * p.k_sh;
    const T *vb = (const T *)p.v + b * p.v_sb + ks * p.v_st + h * p.v_sh;
    int ntiles = (Tk + BN - 1) / BN;
    const float sl2 = p.scale * 1.4426950408889634f;   /* exp(x) = exp2(x log2 e) */

    /* group 0: Q and tile 0 */
    load_tile_v2<T, BM, NT>(sq, qb, p.q_st, qi, 0, Tq - m0);
    if (ntiles > 0) {
        load_tile_v2<T, BN, NT>(skv, kb, p.k_st, ki, 0, Tk);
        load_tile_v2<T, BN, NT>(skv + BN * 64, vb, p.v_st, ki, 0, Tk);
    }
    cp_async_commit();

    float    o[MT][8][4];                        /* per m-tile: 16 rows x 64 dims */
    float    m_r[MT][2], l_r[MT][2];             /* rows g and g + 8, g = lane / 4; l partial */
    uint32_t qf[4][MT][4];                       /* QREG: Q A-fragments per k-step of 16 dims */
    attn_acc_init<MT>(o, m_r, l_r);
    const int wrow = warp * 16 * MT;             /* the warp's first row in the block */

    for (int j = 0; j < ntiles; j++) {
        const T *kt = skv + (j & 1) * 2 * BN * 64, *vt = kt + BN * 64;
        cp_async_wait<0>();                      /* this thread's copies of tile j (and Q) */
        __syncthreads();                         /* everyone's; every warp is past tile j - 1 */
        if (j + 1 < ntiles) {                    /* into tile j - 1's buffer */
            T *kn = skv + ((j + 1) & 1) * 2 * BN * 64;
            load_tile_v2<T, BN, NT>(kn, kb, p.k_st, ki, (j + 1) * BN, Tk);
            load_tile_v2<T, BN, NT>(kn + BN * 64, vb, p.v_st, ki, (j + 1) * BN, Tk);
            cp_async_commit();
        }
        if (QREG && j == 0) {
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
                attn_q_frags<T, MT>(qf[kk], sq, wrow, kk, lane);
        }

        /* S = Q K^T: 16 x BN per m-tile, NN n-tiles of 8 keys */
        float s[MT][NN][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int i = 0; i < NN; i++)
                s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            if (QREG) {
                attn_qk_step<T, MT, NN>(s, qf[kk], kt, kk, lane);
            } else {
                uint32_t qa[MT][4];
                attn_q_frags<T, MT>(qa, sq, wrow, kk, lane);
                attn_qk_step<T, MT, NN>(s, qa, kt, kk, lane);
            }
        }
        if ((j + 1) * BN > Tk)                   /* last tile: mask keys >= Tk */
            attn_mask_keys<MT, NN>(s, j * BN, Tk, lane);

        attn_v2_softmax<MT, NN>(s, o, m_r, l_r, sl2);

        /* O += P V */
        attn_pv<T, MT, BN / 16>(o, s, vt, lane);
    }
    cp_async_wait<0>();                          /* Tk = 0: Q's copies, never waited for */
    attn_store<T, MT>(p, o, l_r, b, h, q0, m0 + wrow, Tq, lane);
}

#endif
