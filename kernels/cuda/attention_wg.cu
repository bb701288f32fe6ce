/*
 * attention_wg.cu - attn_wg_kernel (issue 16, S3D_ATTN_KERNEL=v3): attn_v2_kernel<T, 2, 64,
 * ...> (attention_v2.cuh) with S = Q K^T on Hopper's warpgroup MMA (wgmma, sm_90a) instead
 * of mma.sync; softmax, P V (mma.sync, P from the S registers) and the store are the same
 * helpers. Built for sm_90a only (Makefile: its own -gencode); attn_wg_launch runs it on a
 * compute capability 9.0 device and returns false elsewhere (the caller falls back to v2).
 *
 * The block is one warpgroup (4 warps, 128 threads) owning 128 query rows as two m64
 * tiles: warp w holds rows 16 w + (lane / 4) (+ 8) of tile mt (rows 64 mt ..), which is
 * the wgmma m64nNk16 accumulator layout and, per 8-key n-tile, the mma.sync m16n8
 * accumulator layout the helpers use (PTX ISA, "wgmma ... Register Fragments": row
 * 16 (warp % 4) + lane / 4 + 8 ((i % 4) / 2), column 8 (i / 4) + 2 (lane % 4) + i % 2 of
 * d[i]). A = the Q tile, B = the K tile, both K-major in shared memory as the other
 * kernels keep them: 128-byte rows whose 16-byte chunks are XOR-swizzled by row % 8,
 * which is wgmma's 128-byte swizzle (address bits 4-6 ^ 7-9) when the tile starts on a
 * 1024-byte boundary: the descriptors say 128B swizzle, 1024 bytes between 8-row groups,
 * and step 32 bytes per 16-dim k-step inside the swizzle atom.
 *
 * Per key tile: cp.async'd K/V land (wait_group), fence.proxy.async (cp.async writes
 * are generic-proxy, wgmma reads through the async proxy), barrier; the next tile's
 * copies; wgmma.fence, 2 x 4 wgmma m64n64k16 (the first of each m-tile with scale-d 0),
 * commit, wait_group 0 (the accumulators and the smem reads complete), then the v2
 * softmax and P V.
 *
 * attn_wgp_kernel (S3D_ATTN_KERNEL=v4) puts P V on the warpgroup too and overlaps it with
 * the softmax, as FlashAttention-3's intra-warpgroup pipelining does: per key tile j it
 * issues S_j = Q K_j^T and then O += P_{j-1} V_{j-1} (A = P from registers, the m64k16
 * A fragment being the mma.sync m16n8k16 one the S accumulators already have; B = the
 * V tile, which is MN-major for this product: "trans-b" 1, the 128-byte swizzle's
 * canonical MN-major layout ((8, 8, m), (8, k)) : ((1, 8, LBO), (64, SBO)) in 16-byte
 * units, SBO 1024 bytes between 8-key groups, LBO unused at N = 64), waits for S_j
 * alone (wait_group 1), runs tile j's softmax while P_{j-1} V_{j-1} is still on the
 * tensor cores, then waits for it (wait_group 0) before O is rescaled and P_j packed.
 * Three K/V buffers: while P_{j-1} V_{j-1} runs, tile j is read and tile j + 1 lands
 * in the buffer of tile j - 2.
 */
#include "attention_v2.cuh"

#include <type_traits>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define ATTN_WG_DEVICE 1
#endif

#define ATTN_WG_BN 64

/* Shared memory descriptor of a K-major (rows x 64) fp16/bf16 tile at p: 128-byte
 * swizzle (layout type 1, bits 62-63), stride 1024 bytes between 8-row groups (bits
 * 32-45, in 16-byte units), leading offset unused by swizzled K-major layouts (1). */
__device__ __forceinline__ uint64_t wg_desc(const void *p)
{
    uint64_t a = smem_u32(p);
    return ((a & 0x3ffff) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) |
           ((uint64_t)1 << 62);
}

/* wgmma.fence (before the first wgmma reading registers other instructions wrote),
 * commit of the issued wgmmas as a group, wait for all groups, and the proxy fence that
 * makes this thread's generic-proxy shared memory writes visible to wgmma. */
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit()
{
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wg_wait0()
{
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
__device__ __forceinline__ void proxy_fence()
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* d (m64n64 f32 accumulators of this thread, [n-tile][4]) = A B^T (ACC false: scale-d 0,
 * d written only) or += A B^T (ACC true) over 16 dims; A, B by descriptor; DT the PTX
 * type of A and B (f16, bf16), C the constraint of d ("=f" or "+f"). */
#define WG_MMA_ASM(DT, C, SCALE_D)                                             \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                  \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." DT "." DT " {"  \
                 "%0, %1, %2, %3, %4, %5, %6, %7, "                            \
                 "%8, %9, %10, %11, %12, %13, %14, %15, "                      \
                 "%16, %17, %18, %19, %20, %21, %22, %23, "                    \
                 "%24, %25, %26, %27, %28, %29, %30, %31"                      \
                 "}, %32, %33, p, 1, 1, 0, 0;\n}\n"                            \
                 : C(d[0][0]), C(d[0][1]), C(d[0][2]), C(d[0][3]),             \
                   C(d[1][0]), C(d[1][1]), C(d[1][2]), C(d[1][3]),             \
                   C(d[2][0]), C(d[2][1]), C(d[2][2]), C(d[2][3]),             \
                   C(d[3][0]), C(d[3][1]), C(d[3][2]), C(d[3][3]),             \
                   C(d[4][0]), C(d[4][1]), C(d[4][2]), C(d[4][3]),             \
                   C(d[5][0]), C(d[5][1]), C(d[5][2]), C(d[5][3]),             \
                   C(d[6][0]), C(d[6][1]), C(d[6][2]), C(d[6][3]),             \
                   C(d[7][0]), C(d[7][1]), C(d[7][2]), C(d[7][3])              \
                 : "l"(da), "l"(db), "n"(SCALE_D))

template <bool ACC, typename T>
__device__ __forceinline__ void wg_mma(float (&d)[8][4], uint64_t da, uint64_t db)
{
#ifdef ATTN_WG_DEVICE
    constexpr bool f16 = std::is_same<T, __half>::value;
    if (ACC && f16)
        WG_MMA_ASM("f16", "+f", 1);
    else if (f16)
        WG_MMA_ASM("f16", "=f", 0);
    else if (ACC)
        WG_MMA_ASM("bf16", "+f", 1);
    else
        WG_MMA_ASM("bf16", "=f", 0);
#endif
}

/* Wait for all but the newest committed group of wgmmas. */
__device__ __forceinline__ void wg_wait1()
{
    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
}

/* Shared memory descriptor of the MN-major B operand V (keys x 64 dims, 128-byte rows
 * XOR-swizzled by row % 8, 1024-aligned): 128-byte swizzle, SBO 1024 bytes between
 * 8-key groups (bits 32-45), LBO (bits 16-29) the distance to the next 64-dim block,
 * which an N = 64 product never reads (set to 8 KiB, a tile's size). */
__device__ __forceinline__ uint64_t wg_desc_mn(const void *p)
{
    uint64_t a = smem_u32(p);
    return ((a & 0x3ffff) >> 4) | ((uint64_t)(8192 >> 4) << 16) | ((uint64_t)(1024 >> 4) << 32) |
           ((uint64_t)1 << 62);
}

/* o (m64n64 f32 accumulators, [n-tile][4]) += P V over 16 keys: P the A fragment a[4]
 * in registers (T pairs), V by descriptor db, MN-major (trans-b 1). */
#define WG_MMA_RS_ASM(DT)                                                      \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"                  \
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32." DT "." DT " {"  \
                 "%0, %1, %2, %3, %4, %5, %6, %7, "                            \
                 "%8, %9, %10, %11, %12, %13, %14, %15, "                      \
                 "%16, %17, %18, %19, %20, %21, %22, %23, "                    \
                 "%24, %25, %26, %27, %28, %29, %30, %31"                      \
                 "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"            \
                 : "+f"(o[0][0]), "+f"(o[0][1]), "+f"(o[0][2]), "+f"(o[0][3]), \
                   "+f"(o[1][0]), "+f"(o[1][1]), "+f"(o[1][2]), "+f"(o[1][3]), \
                   "+f"(o[2][0]), "+f"(o[2][1]), "+f"(o[2][2]), "+f"(o[2][3]), \
                   "+f"(o[3][0]), "+f"(o[3][1]), "+f"(o[3][2]), "+f"(o[3][3]), \
                   "+f"(o[4][0]), "+f"(o[4][1]), "+f"(o[4][2]), "+f"(o[4][3]), \
                   "+f"(o[5][0]), "+f"(o[5][1]), "+f"(o[5][2]), "+f"(o[5][3]), \
                   "+f"(o[6][0]), "+f"(o[6][1]), "+f"(o[6][2]), "+f"(o[6][3]), \
                   "+f"(o[7][0]), "+f"(o[7][1]), "+f"(o[7][2]), "+f"(o[7][3])  \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db))

template <typename T>
__device__ __forceinline__ void wg_mma_pv(float (&o)[8][4], const uint32_t (&a)[4], uint64_t db)
{
#ifdef ATTN_WG_DEVICE
    if (std::is_same<T, __half>::value)
        WG_MMA_RS_ASM("f16");
    else
        WG_MMA_RS_ASM("bf16");
#endif
}

/* The accumulators as fresh values after wg_wait0, so no use of them moves above it. */
__device__ __forceinline__ void wg_fence_acc(float (&d)[8][4])
{
#pragma unroll
    for (int i = 0; i < 8; i++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            asm volatile("" : "+f"(d[i][e])::"memory");
}

/* Dynamic shared memory: Q (128 x 64) + 2 x (K, V) (64 x 64) of T + 1 KiB to align to 1024. */
static size_t attn_wg_smem(size_t es) { return (size_t)(128 * 64 + 4 * ATTN_WG_BN * 64) * es + 1024; }

template <typename T>
__global__ void __launch_bounds__(128, 2) attn_wg_kernel(struct attn_params p)
{
#ifdef ATTN_WG_DEVICE
    constexpr int MT = 2, BN = ATTN_WG_BN, NN = BN / 8, NT = 128;
    extern __shared__ __align__(1024) unsigned char attn_wg_smem_raw[];
    unsigned char *base = attn_wg_smem_raw + ((1024 - (smem_u32(attn_wg_smem_raw) & 1023)) & 1023);
    T *sq  = (T *)base;                           /* (128, 64) swizzled, 1024-aligned */
    T *skv = sq + 128 * 64;                       /* buffer i: K (64, 64) at i 2 BN 64, V after it */
    int b = blockIdx.z, h = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int q0, Tq, k0, Tk;

    attn_seq(p, b, &q0, &Tq, &k0, &Tk);
    int m0 = blockIdx.x * 128;
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
    load_tile_v2<T, 128, NT>(sq, qb, p.q_st, qi, 0, Tq - m0);
    if (ntiles > 0) {
        load_tile_v2<T, BN, NT>(skv, kb, p.k_st, ki, 0, Tk);
        load_tile_v2<T, BN, NT>(skv + BN * 64, vb, p.v_st, ki, 0, Tk);
    }
    cp_async_commit();

    float o[MT][8][4], m_r[MT][2], l_r[MT][2];
    attn_acc_init<MT>(o, m_r, l_r);

    for (int j = 0; j < ntiles; j++) {
        const T *kt = skv + (j & 1) * 2 * BN * 64, *vt = kt + BN * 64;
        cp_async_wait<0>();                      /* this thread's copies of tile j (and Q) */
        proxy_fence();                           /* ... visible to wgmma's async proxy */
        __syncthreads();                         /* everyone's; every warp is past tile j - 1 */
        if (j + 1 < ntiles) {
            T *kn = skv + ((j + 1) & 1) * 2 * BN * 64;
            load_tile_v2<T, BN, NT>(kn, kb, p.k_st, ki, (j + 1) * BN, Tk);
            load_tile_v2<T, BN, NT>(kn + BN * 64, vb, p.v_st, ki, (j + 1) * BN, Tk);
            cp_async_commit();
        }

        /* S = Q K^T on the warpgroup: m-tile mt = Q rows 64 mt .., 4 k-steps of 16 dims,
         * the first writing S (scale-d 0), the others accumulating */
        float s[MT][NN][4];
        wg_fence();
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            wg_mma<false, T>(s[mt], wg_desc(sq + mt * 64 * 64), wg_desc(kt));
#pragma unroll
            for (int kk = 1; kk < 4; kk++)
                wg_mma<true, T>(s[mt], wg_desc(sq + mt * 64 * 64 + kk * 16), wg_desc(kt + kk * 16));
        }
        wg_commit();
        wg_wait0();
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
            wg_fence_acc(s[mt]);
        if ((j + 1) * BN > Tk)
            attn_mask_keys<MT, NN>(s, j * BN, Tk, lane);

        attn_v2_softmax<MT, NN>(s, o, m_r, l_r, sl2);   /* as attn_v2_kernel */

        /* O += P V (mma.sync; each warp its own rows of both m-tiles) */
        attn_pv<T, MT, BN / 16>(o, s, vt, lane);
    }
    cp_async_wait<0>();
    attn_store<T, MT, 64>(p, o, l_r, b, h, q0, m0 + warp * 16, Tq, lane);
#else
    (void)p;
    __trap();                                     /* only the sm_90a image has the kernel */
#endif
}

/* attn_v2_softmax without touching O (P V may still be accumulating into it): the
 * row maxima, m_r and l_r updated and S turned into P in place as there; returns
 * whether this warp's O must be rescaled, by alpha[mt][r], once P V is done. */
template <int MT, int NN>
__device__ __forceinline__ bool wgp_softmax(float (&s)[MT][NN][4], float (&alpha)[MT][2],
                                            float (&m_r)[MT][2], float (&l_r)[MT][2], float sl2)
{
    float mx[MT][2];
    bool  grow = false;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[mt][r] = attn_row_max<NN>(s[mt], r);
            grow |= !((mx[mt][r] - m_r[mt][r]) * sl2 <= ATTN_V2_SLACK);
        }
    bool rescale = __any_sync(0xffffffffu, grow);
    if (rescale) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float m_new = fmaxf(m_r[mt][r], mx[mt][r]);
                alpha[mt][r] = ex2_ftz((m_r[mt][r] - m_new) * sl2);
                m_r[mt][r] = m_new;
                l_r[mt][r] *= alpha[mt][r];
            }
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++)
            attn_exp_row<NN>(s[mt], r, sl2, m_r[mt][r] * sl2, l_r[mt][r],
                             [](float x) { return ex2_ftz(x); });
    return rescale;
}

/* K and V rows [r0, r0 + BN) into buffer kn (K) and kn + BN 64 (V): one cp.async group. */
template <typename T, int BN, int NT>
__device__ __forceinline__ void wgp_load_kv(T *kn, const T *kb, const T *vb, const struct attn_params &p,
                                            const int *ki, int r0, int Tk)
{
    load_tile_v2<T, BN, NT>(kn, kb, p.k_st, ki, r0, Tk);
    load_tile_v2<T, BN, NT>(kn + BN * 64, vb, p.v_st, ki, r0, Tk);
    cp_async_commit();
}

/* Issue S = Q K^T for the block's two m64 tiles (Q tile sq, K tile kt) as one group. */
template <typename T, int MT, int NN>
__device__ __forceinline__ void wgp_qk(float (&s)[MT][NN][4], const T *sq, const T *kt)
{
    wg_fence();
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        wg_mma<false, T>(s[mt], wg_desc(sq + mt * 64 * 64), wg_desc(kt));
#pragma unroll
        for (int kk = 1; kk < 4; kk++)
            wg_mma<true, T>(s[mt], wg_desc(sq + mt * 64 * 64 + kk * 16), wg_desc(kt + kk * 16));
    }
    wg_commit();
}

/* Issue O += P V over the NK 16-key steps of V tile vt as one group. */
template <typename T, int MT, int NK>
__device__ __forceinline__ void wgp_pv(float (&o)[MT][8][4], const uint32_t (&pa)[MT][NK][4], const T *vt)
{
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
        wg_fence_acc(o[mt]);
    wg_fence();
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int kk = 0; kk < NK; kk++)
            wg_mma_pv<T>(o[mt], pa[mt][kk], wg_desc_mn(vt + kk * 16 * 64));
    wg_commit();
}

/* The scores of a retired S group as fresh values, keys >= Tk masked (key0: the tile's first). */
template <int MT, int NN>
__device__ __forceinline__ void wgp_scores(float (&s)[MT][NN][4], int key0, int Tk, int lane)
{
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
        wg_fence_acc(s[mt]);
    if (key0 + 8 * NN > Tk)
        attn_mask_keys<MT, NN>(s, key0, Tk, lane);
}

/* P (S after the softmax) rounded to T as P V's A fragments: k-step kk = n-tiles 2 kk, 2 kk + 1. */
template <typename T, int MT, int NK>
__device__ __forceinline__ void wgp_pack(uint32_t (&pa)[MT][NK][4], const float (&s)[MT][2 * NK][4])
{
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int kk = 0; kk < NK; kk++) {
            pa[mt][kk][0] = pack2(s[mt][2 * kk][0], s[mt][2 * kk][1], T());
            pa[mt][kk][1] = pack2(s[mt][2 * kk][2], s[mt][2 * kk][3], T());
            pa[mt][kk][2] = pack2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1], T());
            pa[mt][kk][3] = pack2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3], T());
        }
}

#define ATTN_WGP_NBUF 3   /* K/V buffers: tile j - 1's V read, tile j read, tile j + 1 landing */

/* Dynamic shared memory of attn_wgp_kernel: Q (128 x 64) + 3 x (K, V) (64 x 64) of T + 1 KiB. */
static size_t attn_wgp_smem(size_t es)
{
    return (size_t)(128 * 64 + ATTN_WGP_NBUF * 2 * ATTN_WG_BN * 64) * es + 1024;
}

template <typename T>
__global__ void __launch_bounds__(128, 2) attn_wgp_kernel(struct attn_params p)
{
#ifdef ATTN_WG_DEVICE
    constexpr int MT = 2, BN = ATTN_WG_BN, NN = BN / 8, NK = BN / 16, NT = 128, NB = ATTN_WGP_NBUF;
    extern __shared__ __align__(1024) unsigned char attn_wg_smem_raw[];
    unsigned char *base = attn_wg_smem_raw + ((1024 - (smem_u32(attn_wg_smem_raw) & 1023)) & 1023);
    T *sq  = (T *)base;                           /* (128, 64) swizzled, 1024-aligned */
    T *skv = sq + 128 * 64;                       /* buffer i: K (64, 64) at i 2 BN 64, V after it */
    int b = blockIdx.z, h = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int q0, Tq, k0, Tk;

    attn_seq(p, b, &q0, &Tq, &k0, &Tk);
    int m0 = blockIdx.x * 128;
    if (m0 >= Tq)
        return;                                   /* whole block: no barrier skipped */
    const int *qi = p.rows ? p.rows + q0 + m0 : NULL, *ki = p.rows ? p.rows + k0 : NULL;
    int64_t qs = p.rows ? 0 : q0 + m0, ks = p.rows ? 0 : k0;
    const T *qb = (const T *)p.q + b * p.q_sb + qs * p.q_st + h * p.q_sh;
    const T *kb = (const T *)p.k + b * p.k_sb + ks * p.k_st + h * p.k_sh;
    const T *vb = (const T *)p.v + b * p.v_sb + ks * p.v_st + h * p.v_sh;
    int ntiles = (Tk + BN - 1) / BN;
    const float sl2 = p.scale * 1.4426950408889634f;

    load_tile_v2<T, 128, NT>(sq, qb, p.q_st, qi, 0, Tq - m0);
    if (ntiles > 0) {
        load_tile_v2<T, BN, NT>(skv, kb, p.k_st, ki, 0, Tk);
        load_tile_v2<T, BN, NT>(skv + BN * 64, vb, p.v_st, ki, 0, Tk);
    }
    cp_async_commit();

    float    o[MT][8][4], m_r[MT][2], l_r[MT][2];
    uint32_t pa[MT][NK][4];                       /* P of the previous tile: P V's A fragments */
    attn_acc_init<MT>(o, m_r, l_r);

    /* tile 0 alone (its S waited for at once, no P V before it), then per tile j >= 1
     * S_j and P_{j-1} V_{j-1} issued together, and the last tile's P V: no branch on j
     * around the wgmmas, so ptxas sees which group each wait retires */
    if (ntiles > 0) {
        float s[MT][NN][4], alpha[MT][2];
        cp_async_wait<0>();
        proxy_fence();
        __syncthreads();
        if (ntiles > 1)
            wgp_load_kv<T, BN, NT>(skv + 2 * BN * 64, kb, vb, p, ki, BN, Tk);
        wgp_qk<T, MT, NN>(s, sq, skv);
        wg_wait0();
        wgp_scores<MT, NN>(s, 0, Tk, lane);
        bool rescale = wgp_softmax<MT, NN>(s, alpha, m_r, l_r, sl2);   /* O = 0: nothing */
        (void)rescale;
        wgp_pack<T, MT, NK>(pa, s);
    }
    for (int j = 1; j < ntiles; j++) {
        const T *kt = skv + (j % NB) * 2 * BN * 64;
        const T *vp = skv + ((j - 1) % NB) * 2 * BN * 64 + BN * 64;       /* V of tile j - 1 */
        float    s[MT][NN][4], alpha[MT][2];
        cp_async_wait<0>();                      /* this thread's copies of tile j */
        proxy_fence();                           /* ... visible to wgmma's async proxy */
        __syncthreads();                         /* everyone's; every warp is past tile j - 1, */
        if (j + 1 < ntiles)                      /* so P V of tile j - 2 is done: its buffer */
            wgp_load_kv<T, BN, NT>(skv + ((j + 1) % NB) * 2 * BN * 64, kb, vb, p, ki,
                                   (j + 1) * BN, Tk);            /* takes tile j + 1 */
        wgp_qk<T, MT, NN>(s, sq, kt);            /* S_j, then O += P_{j-1} V_{j-1} */
        wgp_pv<T, MT, NK>(o, pa, vp);
        wg_wait1();                              /* S_j done; P V may still run */
        wgp_scores<MT, NN>(s, j * BN, Tk, lane);
        bool rescale = wgp_softmax<MT, NN>(s, alpha, m_r, l_r, sl2);   /* beside P V */
        wg_wait0();                              /* P_{j-1} V_{j-1} done: O and pa free */
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
            wg_fence_acc(o[mt]);
        if (rescale)
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int r = 0; r < 2; r++)
                    attn_scale_row(o[mt], r, alpha[mt][r]);
        wgp_pack<T, MT, NK>(pa, s);
    }
    if (ntiles > 0) {                            /* O += P V of the last tile */
        wgp_pv<T, MT, NK>(o, pa, skv + ((ntiles - 1) % NB) * 2 * BN * 64 + BN * 64);
        wg_wait0();
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
            wg_fence_acc(o[mt]);
    }
    cp_async_wait<0>();
    attn_store<T, MT, 64>(p, o, l_r, b, h, q0, m0 + warp * 16, Tq, lane);
#else
    (void)p;
    __trap();                                     /* only the sm_90a image has the kernel */
#endif
}

/* One launch of kernel K with dynamic shared memory smem, its limit raised once per
 * kernel (one device per process). */
template <typename K>
static void wg_launch_one(K kern, bool &raised, size_t smem, dim3 grid, cudaStream_t st,
                          const struct attn_params *p)
{
    if (!raised) {
        CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        raised = true;
    }
    kern<<<grid, 128, smem, st>>>(*p);
}

/* attn_wg_launch: see attention.cuh. */
bool attn_wg_launch(cudaStream_t st, const struct attn_params *p, bool f16, int B, int H, int max_tq,
                    bool pv_wg)
{
    static int ok = -1;
    static bool raised[4];

    if (ok < 0) {
        int dev, major, minor;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
        ok = major == 9 && minor == 0;
    }
    if (!ok)
        return false;
    dim3 grid((unsigned)((max_tq + 127) / 128), (unsigned)H, (unsigned)B);
    if (pv_wg && f16)
        wg_launch_one(attn_wgp_kernel<__half>, raised[2], attn_wgp_smem(2), grid, st, p);
    else if (pv_wg)
        wg_launch_one(attn_wgp_kernel<__nv_bfloat16>, raised[3], attn_wgp_smem(2), grid, st, p);
    else if (f16)
        wg_launch_one(attn_wg_kernel<__half>, raised[0], attn_wg_smem(2), grid, st, p);
    else
        wg_launch_one(attn_wg_kernel<__nv_bfloat16>, raised[1], attn_wg_smem(2), grid, st, p);
    return true;
}
