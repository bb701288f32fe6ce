/*
 * attention_split.cu - attention of a short query block over many keys, split
 * over the keys (flash-decoding): the SS flow's pose stream, 4 queries over
 * 4100 (self) or 7528 (cross) keys in every block of every evaluation. The
 * tensor-core kernels give such a sequence one block per head (16 blocks on a
 * 132-SM GPU: 0.055 ms for 4 x 4100 on an H100, 1656 launches per SS flow
 * request); here every 128 keys are one warp's partial softmax, so the same
 * call runs on hundreds of warps, then a second kernel merges the partials.
 * See attention.cuh (attn_split_launch) for the contract.
 *
 * attn_split_kernel<T, TQ> grid (ceil(parts / 4), H, B), 4 warps: warp w of
 *     block x owns keys [128 part, 128 part + 128), part = 4 x + w. Q (at most
 *     TQ rows) sits in shared memory as fp32, times scale * log2(e). Each lane
 *     takes one key of a 32-key group: its K row (8 x 16-byte loads) dotted
 *     with every query in fp32; per query the group's max and sum over the
 *     warp update the running (m, l) (online softmax in base 2), then the
 *     group's probabilities are broadcast lane by lane (shuffles) against V
 *     rows read 2 dims a lane. The partial (m, l, o[64] unnormalised) of each
 *     (b, h, query, part) goes to the workspace in fp32.
 * attn_split_merge<T> grid (Tq, H, B), 64 threads (one a dim): M = max m,
 *     o = sum_p o_p 2^(m_p - M) / sum_p l_p 2^(m_p - M), rounded once to T.
 *
 * Numerics: fp32 scores, probabilities and sums (P is not rounded to T as the
 * tensor-core kernels round it for their P V product, so the result is at
 * least as close to the fp32 reference); one rounding of o.
 * Test: tests/test_op_attention.c (S3D_ATTN_KERNEL=split, short query blocks
 * over 1 to 7528 keys); timing: kernels/dev/attention_bench.cu.
 */
#include "attention.cuh"

#define SPLIT_WARPS 4
#define SPLIT_KEYS  128         /* keys of one partial (one warp) */
#define SPLIT_LOG2E 1.4426950408889634f

/* Two T values packed in 32 bits (an aligned pair of a row) as fp32. */
template <typename T> __device__ __forceinline__ float2 split_pair(uint32_t u);
template <> __device__ __forceinline__ float2 split_pair<__half>(uint32_t u)
{
    __half2 h;

    memcpy(&h, &u, sizeof(h));
    return __half22float2(h);
}
template <> __device__ __forceinline__ float2 split_pair<__nv_bfloat16>(uint32_t u)
{
    __nv_bfloat162 h;

    memcpy(&h, &u, sizeof(h));
    return __bfloat1622float2(h);
}

template <typename T, int TQ>
__global__ void __launch_bounds__(32 * SPLIT_WARPS)
attn_split_kernel(struct attn_params p, int parts, float *po, float2 *ml)
{
    __shared__ float sq[TQ][64];
    const int b = blockIdx.z, h = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int Tq = p.Tq, H = gridDim.y;
    const T  *qb = (const T *)p.q + b * p.q_sb + h * p.q_sh;

    for (int i = threadIdx.x; i < TQ * 64; i += blockDim.x) {
        int r = i >> 6, d = i & 63;
        sq[r][d] = r < Tq ? to_f32(qb[(int64_t)r * p.q_st + d]) * (p.scale * SPLIT_LOG2E) : 0.0f;
    }
    __syncthreads();                              /* the only barrier */
    const int part = blockIdx.x * SPLIT_WARPS + warp;
    if (part >= parts)
        return;
    const int kbeg = part * SPLIT_KEYS, kend = min(p.Tk, kbeg + SPLIT_KEYS);
    const T  *kb = (const T *)p.k + b * p.k_sb + h * p.k_sh;
    const T  *vb = (const T *)p.v + b * p.v_sb + h * p.v_sh;
    float     m[TQ], l[TQ], o0[TQ], o1[TQ];       /* lane owns dims 2 lane, 2 lane + 1 */

#pragma unroll
    for (int q = 0; q < TQ; q++) {
        m[q] = -INFINITY;
        l[q] = o0[q] = o1[q] = 0.0f;
    }
    for (int g = kbeg; g < kend; g += 32) {
        const int  key = g + lane;
        const bool ok = key < kend;               /* lane 0 always is */
        float      s[TQ];

#pragma unroll
        for (int q = 0; q < TQ; q++)
            s[q] = 0.0f;
        if (ok) {
            const uint4 *kr = (const uint4 *)(kb + (int64_t)key * p.k_st);
#pragma unroll
            for (int c = 0; c < 8; c++) {
                uint4  raw = kr[c];
                float2 k2[4] = {split_pair<T>(raw.x), split_pair<T>(raw.y), split_pair<T>(raw.z),
                                split_pair<T>(raw.w)};
#pragma unroll
                for (int q = 0; q < TQ; q++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        s[q] += sq[q][8 * c + 2 * e] * k2[e].x + sq[q][8 * c + 2 * e + 1] * k2[e].y;
            }
        }
#pragma unroll
        for (int q = 0; q < TQ; q++) {            /* online softmax, base 2 */
            float sv = ok ? s[q] : -INFINITY;
            float mn = fmaxf(m[q], warp_max(sv));
            float pv = ok ? exp2f(sv - mn) : 0.0f;
            float corr = exp2f(m[q] - mn);        /* m = -inf: 0 */

            l[q] = l[q] * corr + warp_sum(pv);
            o0[q] *= corr;
            o1[q] *= corr;
            m[q] = mn;
            s[q] = pv;
        }
        const int nk = min(32, kend - g);
#pragma unroll 4
        for (int j = 0; j < nk; j++) {            /* o += p_j v_j, p_j from lane j */
            float2 v2 = split_pair<T>(*(const uint32_t *)(vb + (int64_t)(g + j) * p.v_st +
                                                          2 * lane));
#pragma unroll
            for (int q = 0; q < TQ; q++) {
                float pj = __shfl_sync(0xffffffffu, s[q], j);

                o0[q] += pj * v2.x;
                o1[q] += pj * v2.y;
            }
        }
    }
#pragma unroll
    for (int q = 0; q < TQ; q++) {
        if (q >= Tq)
            break;
        int64_t i = (((int64_t)b * H + h) * Tq + q) * parts + part;

        ((float2 *)(po + i * 64))[lane] = make_float2(o0[q], o1[q]);
        if (lane == 0)
            ml[i] = make_float2(m[q], l[q]);
    }
}

template <typename T>
__global__ void __launch_bounds__(64)
attn_split_merge(struct attn_params p, int parts, const float *po, const float2 *ml)
{
    const int     q = blockIdx.x, h = blockIdx.y, b = blockIdx.z, d = threadIdx.x;
    const int64_t base = (((int64_t)b * gridDim.y + h) * p.Tq + q) * parts;
    float         M = -INFINITY, L = 0.0f, acc = 0.0f;

    for (int i = 0; i < parts; i++)
        M = fmaxf(M, ml[base + i].x);
    for (int i = 0; i < parts; i++) {
        float2 e = ml[base + i];
        float  w = e.x == -INFINITY ? 0.0f : exp2f(e.x - M);

        L += e.y * w;
        acc += po[(base + i) * 64 + d] * w;
    }
    T *o = (T *)p.o + b * p.o_sb + (int64_t)q * p.o_st + h * p.o_sh;
    o[d] = from_f32<T>(L > 0.0f ? acc / L : 0.0f);   /* no keys: zeros */
}

size_t attn_split_ws_bytes(int B, int H, int Tq, int Tk)
{
    size_t parts = (size_t)((Tk + SPLIT_KEYS - 1) / SPLIT_KEYS);
    size_t n = (size_t)B * H * Tq * parts;

    return n * 64 * sizeof(float) + n * sizeof(float2);
}

template <typename T, int TQ>
static void split_launch(cudaStream_t st, const struct attn_params *p, int B, int H, int parts,
                         float *po, float2 *ml)
{
    dim3 grid((unsigned)((parts + SPLIT_WARPS - 1) / SPLIT_WARPS), (unsigned)H, (unsigned)B);

    attn_split_kernel<T, TQ><<<grid, 32 * SPLIT_WARPS, 0, st>>>(*p, parts, po, ml);
}

template <typename T>
static void split_run(cudaStream_t st, const struct attn_params *p, int B, int H, int parts,
                      float *po, float2 *ml)
{
    if (parts > 0) {
        if (p->Tq <= 4)
            split_launch<T, 4>(st, p, B, H, parts, po, ml);
        else if (p->Tq <= 8)
            split_launch<T, 8>(st, p, B, H, parts, po, ml);
        else
            split_launch<T, ATTN_SPLIT_MAX_TQ>(st, p, B, H, parts, po, ml);
    }
    attn_split_merge<T><<<dim3((unsigned)p->Tq, (unsigned)H, (unsigned)B), 64, 0, st>>>(
        *p, parts, po, ml);
}

bool attn_split_launch(cudaStream_t st, const struct attn_params *p, enum dtype dt, int B, int H,
                       bool mma_ok, void *ws, size_t ws_bytes)
{
    if (p->q_off || p->rows || !mma_ok || p->Tq < 1 || p->Tq > ATTN_SPLIT_MAX_TQ ||
        (dt != DTYPE_F16 && dt != DTYPE_BF16) || B > 65535 || H > 65535 || !ws ||
        attn_split_ws_bytes(B, H, p->Tq, p->Tk) > ws_bytes)
        return false;
    int     parts = (p->Tk + SPLIT_KEYS - 1) / SPLIT_KEYS;
    size_t  n = (size_t)B * H * p->Tq * (size_t)parts;
    float  *po = (float *)ws;
    float2 *ml = (float2 *)(po + n * 64);

    if (dt == DTYPE_F16)
        split_run<__half>(st, p, B, H, parts, po, ml);
    else
        split_run<__nv_bfloat16>(st, p, B, H, parts, po, ml);
    return true;
}
