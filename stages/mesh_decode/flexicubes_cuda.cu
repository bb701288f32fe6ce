/*
 * flexicubes_cuda.cu - sparse FlexiCubes on the GPU: the steps of flexicubes.c
 * (the CPU reference; tests/test_mesh_decode.c compares the two) over the same
 * data layout, with CUB radix sorts and scans for what the reference does with
 * torch.unique and stable sorts.
 *
 * Float expressions use __fmul_rn / __fadd_rn / __fdiv_rn so that nvcc does not
 * fuse them: every product and sum is rounded once, as torch's separate
 * elementwise kernels (and the CPU reference) round them. The vertex sums are
 * atomic (the reference's CUDA scatter_reduce is atomic too), so their last bits
 * depend on the order; everything after them is deterministic.
 *
 * fc_finish_cuda first counts (surface cubes, edge slots, quads, an upper bound
 * of the dual vertices) without scratch, then reserves everything it needs at
 * once: fc->need_scratch, checked against the arena before anything changes.
 */
#include "cuda/common.cuh"
#include "flexicubes.h"
#include "flexicubes_cuda.h"
#include "flexicubes_tables.h"
#include "err.h"

#include <cub/cub.cuh>

#define FC_THREADS 256

/* Per-case tables in constant memory (built once from flexicubes_tables.h). */
struct fc_dev_tables {
    uint16_t dmc[256][4];     /* FC_DMC */
    uint16_t cross[256];      /* edges whose endpoints differ in occupancy */
    int8_t   nvd[256];        /* dual vertices per case */
    int8_t   chk[256];        /* FC_CHECK row of a flagged case, or -1 */
    int8_t   chk_d[FC_N_CHECK][3];
    uint8_t  chk_inv[FC_N_CHECK];
    uint8_t  ec[12][2];       /* FC_EDGE_CORNERS */
    uint8_t  vd_of[256][12];  /* the dual vertex (k) owning edge e in a case, or 255 */
};
static __constant__ fc_dev_tables T;

static void tables_upload(cudaStream_t s)
{
    static bool done;
    static fc_dev_tables h;

    if (done)
        return;
    memset(&h, 0, sizeof(h));
    memcpy(h.dmc, FC_DMC, sizeof(h.dmc));
    memcpy(h.ec, FC_EDGE_CORNERS, sizeof(h.ec));
    for (int c = 0; c < 256; c++) {
        h.nvd[c] = (int8_t)fc_num_vd(c);
        h.chk[c] = (int8_t)fc_check_index(c);
        for (int e = 0; e < 12; e++) {
            if ((c >> FC_EDGE_CORNERS[e][0] & 1) != (c >> FC_EDGE_CORNERS[e][1] & 1))
                h.cross[c] |= (uint16_t)(1u << e);
            h.vd_of[c][e] = 255;
            for (int k = 0; k < 4; k++)
                if (FC_DMC[c][k] >> e & 1)
                    h.vd_of[c][e] = (uint8_t)k;
        }
    }
    for (int i = 0; i < FC_N_CHECK; i++) {
        for (int j = 0; j < 3; j++)
            h.chk_d[i][j] = (int8_t)FC_CHECK[i][1 + j];
        h.chk_inv[i] = (uint8_t)FC_CHECK[i][4];
    }
    CUDA_CHECK(cudaMemcpyToSymbolAsync(T, &h, sizeof(h), 0, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    done = true;
}

static int bits_for(uint64_t n)      /* bits of the largest value below n */
{
    int b = 1;

    while (b < 64 && ((uint64_t)1 << b) < n)
        b++;
    return b;
}

// ----------------------------------------------------------------------------
// scratch bookkeeping: a plan (sizes only) or real allocations

struct stack {
    struct arena *a;     /* NULL: only add up sizes */
    size_t        used;
    size_t        peak;
};

static void *take(struct stack *s, size_t bytes)
{
    size_t r = arena_round(bytes ? bytes : 1);

    s->used += r;
    if (s->used > s->peak)
        s->peak = s->used;
    return s->a ? arena_must_alloc(s->a, r) : NULL;
}

static size_t mark(const struct stack *s)
{
    return s->used;
}

static void release(struct stack *s, size_t m, size_t amark)
{
    s->used = m;
    if (s->a)
        arena_release(s->a, amark + m);
}

// ----------------------------------------------------------------------------
// geometry

static __global__ void corner_keys_kernel(uint32_t *keys, const int32_t *c, int64_t N, int B,
                                          uint32_t Rv)
{
    int P = B + 1;
    int64_t n = N * P * P * P;

    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e / (P * P * P);
        int j = (int)(e - i * P * P * P);
        uint32_t x = (uint32_t)(B * c[4 * i + 1] + j / (P * P));
        uint32_t y = (uint32_t)(B * c[4 * i + 2] + j / P % P);
        uint32_t z = (uint32_t)(B * c[4 * i + 3] + j % P);
        keys[e] = (x * Rv + y) * Rv + z;
    }
}

/* The sorted unique corner keys of the voxel set, in s (released by the caller
 * with the returned layout); *n_out gets the count (one synchronisation). */
static uint32_t *corner_keys_dev(const struct op_ctx *ctx, struct stack *s,
                                 const struct tensor *coords, int R, int L, int64_t *n_out)
{
    int64_t N = coords->shape[0], P = (1 << L) + 1, m = N * P * P * P;
    int bits = bits_for((uint64_t)(R + 1) * (R + 1) * (R + 1));
    size_t t1 = 0, t2 = 0;

    ASSERT(m < INT32_MAX);
    CUDA_CHECK(cub::DeviceRadixSort::SortKeys(NULL, t1, (uint32_t *)NULL, (uint32_t *)NULL, (int)m,
                                              0, bits, ctx->stream));
    CUDA_CHECK(cub::DeviceSelect::Unique(NULL, t2, (uint32_t *)NULL, (uint32_t *)NULL, (int *)NULL,
                                         (int)m, ctx->stream));
    uint32_t *uniq = (uint32_t *)take(s, (size_t)m * 4);
    uint32_t *a = (uint32_t *)take(s, (size_t)m * 4), *b = (uint32_t *)take(s, (size_t)m * 4);
    int *num = (int *)take(s, sizeof(int));
    void *tmp = take(s, t1 > t2 ? t1 : t2);
    if (!s->a)
        return NULL;
    corner_keys_kernel<<<grid_for(m, FC_THREADS), FC_THREADS, 0, ctx->stream>>>(
        a, (const int32_t *)coords->data, N, 1 << L, (uint32_t)R + 1);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cub::DeviceRadixSort::SortKeys(tmp, t1, a, b, (int)m, 0, bits, ctx->stream));
    CUDA_CHECK(cub::DeviceSelect::Unique(tmp, t2, b, uniq, num, (int)m, ctx->stream));
    int h = 0;
    CUDA_CHECK(cudaMemcpyAsync(&h, num, sizeof(int), cudaMemcpyDeviceToHost, ctx->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    *n_out = h;
    return uniq;
}

size_t fc_init_scratch_bytes_cuda(int64_t n_vox, int L)
{
    struct stack s = {NULL, 0, 0};
    const int64_t shape[2] = {n_vox, 4};
    struct tensor c = tensor_view(NULL, DTYPE_I32, DEVICE_CUDA, shape, 2);
    struct op_ctx ctx;
    int64_t n;

    memset(&ctx, 0, sizeof(ctx));
    corner_keys_dev(&ctx, &s, &c, FC_MAX_RES, L, &n);
    /* + the voxel-key sort (below the corner keys' peak: N << N (B+1)^3) */
    size_t t = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(NULL, t, (uint32_t *)NULL, (uint32_t *)NULL,
                                               (int32_t *)NULL, (int32_t *)NULL, (int)n_vox, 0,
                                               32, (cudaStream_t)0));
    size_t v = arena_round((size_t)n_vox * 4) * 2 + arena_round(t);
    return s.peak > v ? s.peak : v;
}

int64_t fc_count_vertices_cuda(const struct op_ctx *ctx, struct arena *scratch,
                               const struct tensor *coords, int R, int L)
{
    struct stack s = {scratch, 0, 0};
    size_t am = arena_mark(scratch);
    int64_t n = 0;

    corner_keys_dev(ctx, &s, coords, R, L, &n);
    release(&s, 0, am);
    return n;
}

static __global__ void vox_keys_kernel(uint32_t *rk, int32_t *iota, const int32_t *c, int64_t N,
                                       uint32_t Rx)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < N;
         i += (int64_t)gridDim.x * blockDim.x) {
        rk[i] = ((uint32_t)c[4 * i + 1] * Rx + (uint32_t)c[4 * i + 2]) * Rx + (uint32_t)c[4 * i + 3];
        iota[i] = (int32_t)i;
    }
}

void fc_init_cuda(struct flexicubes *fc, const struct op_ctx *ctx, struct arena *state,
                  struct arena *scratch, const struct tensor *coords)
{
    struct stack s = {scratch, 0, 0};
    size_t am = arena_mark(scratch);
    int64_t N = fc->n_vox, n = 0;

    tables_upload(ctx->stream);
    uint32_t *keys = corner_keys_dev(ctx, &s, coords, fc->R, fc->L, &n);
    fc->n_verts = n;
    fc_state_alloc(fc, state);
    CUDA_CHECK(cudaMemcpyAsync(fc->vkeys.data, keys, (size_t)n * 4, cudaMemcpyDeviceToDevice,
                               ctx->stream));
    CUDA_CHECK(cudaMemsetAsync(fc->vacc.data, 0, tensor_nbytes(&fc->vacc), ctx->stream));
    CUDA_CHECK(cudaMemsetAsync(fc->cube_w.data, 0, tensor_nbytes(&fc->cube_w), ctx->stream));
    release(&s, 0, am);

    int32_t *iota = (int32_t *)take(&s, (size_t)N * 4);
    size_t t = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(NULL, t, (uint32_t *)NULL, (uint32_t *)NULL,
                                               (int32_t *)NULL, (int32_t *)NULL, (int)N, 0, 32,
                                               ctx->stream));
    void *tmp = take(&s, t);
    vox_keys_kernel<<<grid_for(N, FC_THREADS), FC_THREADS, 0, ctx->stream>>>(
        (uint32_t *)fc->row_keys.data, iota, (const int32_t *)coords->data, N,
        (uint32_t)(fc->R >> fc->L));
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(tmp, t, (const uint32_t *)fc->row_keys.data,
                                               (uint32_t *)fc->vox_keys.data, iota,
                                               (int32_t *)fc->vox_rows.data, (int)N, 0, 32,
                                               ctx->stream));
    op_done(ctx, "flexicubes_init");
    release(&s, 0, am);
}

// ----------------------------------------------------------------------------
// accumulation

/* thread per (cube row, corner): the corner's vertex gets (sdf + bias, deform, rgb, 1) */
static __global__ void accumulate_kernel(float *acc, const float *f, int64_t rows, int64_t row0,
                                         const uint32_t *row_keys, const uint32_t *vkeys,
                                         int64_t nv, int L, uint32_t Rx, uint32_t Rv, float bias)
{
    int B = 1 << L;

    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < rows * 8;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e >> 3, row = row0 + r;
        int c = (int)(e & 7), ox, oy, oz;
        uint32_t vk = row_keys[row >> (3 * L)];
        fc_row_offset(row & (((int64_t)1 << (3 * L)) - 1), L, &ox, &oy, &oz);
        uint32_t x = vk / (Rx * Rx) * B + ox + (c & 1), y = vk / Rx % Rx * B + oy + (c >> 1 & 1),
                 z = vk % Rx * B + oz + (c >> 2);
        int64_t v = fc_find(vkeys, nv, (x * Rv + y) * Rv + z);
        const float *p = f + r * FC_CH;
        float *a = acc + 8 * v;
        atomicAdd(a + 0, __fadd_rn(p[FC_SDF + c], bias));
        for (int j = 0; j < 3; j++)
            atomicAdd(a + 1 + j, p[FC_DEFORM + 3 * c + j]);
        for (int j = 0; j < 3; j++)
            atomicAdd(a + 4 + j, p[FC_COLOR + 6 * c + j]);
        atomicAdd(a + 7, 1.0f);
    }
}

static __global__ void weights_kernel(void *w, enum dtype wdt, const float *f, int64_t rows,
                                      int64_t row0)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < rows * FC_NW;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = e / FC_NW;
        int j = (int)(e - r * FC_NW);
        store_dt(w, wdt, (row0 + r) * FC_NW + j, f[r * FC_CH + FC_WEIGHTS + j]);
    }
}

void fc_accumulate_cuda(struct flexicubes *fc, const struct op_ctx *ctx,
                        const struct tensor *feats, int64_t row0)
{
    int64_t rows = feats->shape[0];

    accumulate_kernel<<<grid_for(rows * 8, FC_THREADS), FC_THREADS, 0, ctx->stream>>>(
        (float *)fc->vacc.data, (const float *)feats->data, rows, row0,
        (const uint32_t *)fc->row_keys.data, (const uint32_t *)fc->vkeys.data, fc->n_verts, fc->L,
        (uint32_t)(fc->R >> fc->L), (uint32_t)fc->R + 1, (float)(-1.0 / fc->R));
    CUDA_CHECK(cudaGetLastError());
    weights_kernel<<<grid_for(rows * FC_NW, FC_THREADS), FC_THREADS, 0, ctx->stream>>>(
        fc->cube_w.data, fc->wdt, (const float *)feats->data, rows, row0);
    op_done(ctx, "flexicubes_accumulate");
}

// ----------------------------------------------------------------------------
// extraction: device helpers

struct fc_view {                /* what the kernels read of the state */
    const uint32_t *vkeys;
    const float    *vacc;       /* after step 1: sdf, pos[3], col[3], count */
    const uint32_t *vox_keys;
    const int32_t  *vox_rows;
    const void     *cube_w;
    enum dtype      wdt;
    int64_t         nv, nx;
    int             R, L;
};

static fc_view view_of(const struct flexicubes *fc)
{
    fc_view v;

    v.vkeys = (const uint32_t *)fc->vkeys.data;
    v.vacc = (const float *)fc->vacc.data;
    v.vox_keys = (const uint32_t *)fc->vox_keys.data;
    v.vox_rows = (const int32_t *)fc->vox_rows.data;
    v.cube_w = fc->cube_w.data;
    v.wdt = fc->wdt;
    v.nv = fc->n_verts;
    v.nx = fc->n_vox;
    v.R = fc->R;
    v.L = fc->L;
    return v;
}

__device__ __forceinline__ uint32_t corner_key_d(const fc_view &V, uint32_t x, uint32_t y,
                                                 uint32_t z, int c)
{
    uint32_t Rv = (uint32_t)V.R + 1;

    return ((x + (c & 1)) * Rv + (y + (c >> 1 & 1))) * Rv + (z + (c >> 2));
}

__device__ __forceinline__ bool occupied_d(const fc_view &V, uint32_t key)
{
    int64_t v = fc_find(V.vkeys, V.nv, key);

    return v >= 0 && V.vacc[8 * v] < 0.0f;
}

__device__ __forceinline__ void vertex_get_d(const fc_view &V, uint32_t key, float *sdf,
                                             float *pos, float *col)
{
    int64_t v = fc_find(V.vkeys, V.nv, key);

    if (v >= 0) {
        const float *a = V.vacc + 8 * v;
        *sdf = a[0];
        for (int j = 0; j < 3; j++) {
            pos[j] = a[1 + j];
            col[j] = a[4 + j];
        }
        return;
    }
    uint32_t Rv = (uint32_t)V.R + 1, k[3] = {key / (Rv * Rv), key / Rv % Rv, key % Rv};
    *sdf = 1.0f;
    for (int j = 0; j < 3; j++) {
        pos[j] = __fadd_rn(__fdiv_rn((float)k[j], (float)V.R), -0.5f);
        col[j] = 0.5f;
    }
}

/* The occupancy case of the cube at (x, y, z) */
__device__ __forceinline__ int cube_case_d(const fc_view &V, uint32_t x, uint32_t y, uint32_t z)
{
    int cs = 0;

    for (int j = 0; j < 8; j++)
        if (occupied_d(V, corner_key_d(V, x, y, z, j)))
            cs |= 1 << j;
    return cs;
}

// step 1: vertex attributes in place
static __global__ void finalize_kernel(float *acc, const uint32_t *vkeys, int64_t nv, int R,
                                       unsigned long long *n_neg)
{
    uint32_t Rv = (uint32_t)R + 1;
    float h = (float)((1.0 - 1e-8) / (R * 2.0));

    for (int64_t v = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; v < nv;
         v += (int64_t)gridDim.x * blockDim.x) {
        float *a = acc + 8 * v, cnt = a[7], m[7];
        uint32_t k[3] = {vkeys[v] / (Rv * Rv), vkeys[v] / Rv % Rv, vkeys[v] % Rv};
        for (int j = 0; j < 7; j++)
            m[j] = __fdiv_rn(a[j], cnt);
        a[0] = m[0];
        for (int j = 0; j < 3; j++) {
            float g = __fadd_rn(__fdiv_rn((float)k[j], (float)R), -0.5f);
            a[1 + j] = __fadd_rn(g, __fmul_rn(h, tanhf(m[1 + j])));
            a[4 + j] = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-m[4 + j])));
        }
        if (m[0] < 0.0f)
            atomicAdd(n_neg, 1ull);
    }
}

/* counters of the dry pass */
enum { CNT_S, CNT_X, CNT_Q, CNT_VB, CNT_X4, CNT_INV, CNT_N };   /* resolve: 0..4 per count, 5 */

/* step 2: thread per (vertex, corner slot). A cube is taken by its lowest
 * occupied corner. emit NULL: count only (S, slots X, interior quads Q, dual
 * vertices bound VB); else write key << 8 | case at an atomic position. */
static __global__ void candidates_kernel(fc_view V, unsigned long long *cnt, uint64_t *emit)
{
    uint32_t Rv = (uint32_t)V.R + 1, R = (uint32_t)V.R;

    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < V.nv * 8;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t v = e >> 3;
        int d = (int)(e & 7);
        if (!(V.vacc[8 * v] < 0.0f))
            continue;
        uint32_t key = V.vkeys[v], k[3] = {key / (Rv * Rv), key / Rv % Rv, key % Rv};
        int o[3] = {d & 1, d >> 1 & 1, d >> 2};
        if ((int)k[0] < o[0] || (int)k[1] < o[1] || (int)k[2] < o[2] || k[0] - o[0] >= R ||
            k[1] - o[1] >= R || k[2] - o[2] >= R)
            continue;
        uint32_t x = k[0] - o[0], y = k[1] - o[1], z = k[2] - o[2];
        int cs = 0;
        for (int j = 0; j < 8; j++)
            if (j == d || occupied_d(V, corner_key_d(V, x, y, z, j)))
                cs |= 1 << j;
        if (cs == 255 || (cs & -cs) != (1 << d))
            continue;
        if (emit) {
            unsigned long long at = atomicAdd(cnt + CNT_S, 1ull);
            emit[at] = (uint64_t)((x * R + y) * R + z) << 8 | (uint64_t)cs;
            continue;
        }
        /* interior surface edges counted once, at the cube holding them at corner 0:
         * e0 (x) needs y, z >= 1; e3 (z) x, y >= 1; e8 (y) x, z >= 1 */
        unsigned cr = T.cross[cs];
        unsigned long long q = ((cr & 1u) && y >= 1 && z >= 1) + ((cr >> 3 & 1u) && x >= 1 && y >= 1) +
                               ((cr >> 8 & 1u) && x >= 1 && z >= 1);
        atomicAdd(cnt + CNT_S, 1ull);
        atomicAdd(cnt + CNT_X, (unsigned long long)__popc(cr));
        atomicAdd(cnt + CNT_Q, q);
        atomicAdd(cnt + CNT_VB, (unsigned long long)(T.nvd[cs] + (T.chk[cs] >= 0)));
    }
}

// step 3: split the sorted (key << 8 | case) and resolve the ambiguous cases
static __global__ void cases_kernel(uint32_t *skey, uint8_t *occ, const uint64_t *sc, int64_t S)
{
    for (int64_t s = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; s < S;
         s += (int64_t)gridDim.x * blockDim.x) {
        skey[s] = (uint32_t)(sc[s] >> 8);
        occ[s] = (uint8_t)(sc[s] & 0xff);
    }
}

static __global__ void resolve_kernel(uint8_t *cas, const uint32_t *skey, const uint8_t *occ,
                                      int64_t S, int R, unsigned long long *per_m)
{
    for (int64_t s = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; s < S;
         s += (int64_t)gridDim.x * blockDim.x) {
        int cs = occ[s], ci = T.chk[cs];
        if (ci >= 0) {
            uint32_t key = skey[s];
            int64_t q[3] = {(int64_t)(key / ((uint32_t)R * R)) + T.chk_d[ci][0],
                            (int64_t)(key / R % R) + T.chk_d[ci][1],
                            (int64_t)(key % R) + T.chk_d[ci][2]};
            if (q[0] >= 0 && q[1] >= 0 && q[2] >= 0 && q[0] < R && q[1] < R && q[2] < R) {
                int64_t t = fc_find(skey, S, (uint32_t)((q[0] * R + q[1]) * R + q[2]));
                if (t >= 0 && T.chk[occ[t]] >= 0) {
                    cs = T.chk_inv[ci];
                    atomicAdd(per_m + CNT_INV, 1ull);
                }
            }
        }
        cas[s] = (uint8_t)cs;
        atomicAdd(per_m + T.nvd[cs], 1ull);
    }
}

static __global__ void group_flags_kernel(int32_t *flag, const uint8_t *cas, int64_t S, int m)
{
    for (int64_t s = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; s < S;
         s += (int64_t)gridDim.x * blockDim.x)
        flag[s] = T.nvd[cas[s]] == m;
}

static __global__ void group_base_kernel(int32_t *vbase, const int32_t *rank, const uint8_t *cas,
                                         int64_t S, int m, int64_t base)
{
    for (int64_t s = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; s < S;
         s += (int64_t)gridDim.x * blockDim.x)
        if (T.nvd[cas[s]] == m)
            vbase[s] = (int32_t)(base + (int64_t)rank[s] * m);
}

// step 4 + 6: thread per surface cube: weights, then its dual vertices
static __global__ void dual_kernel(float *vd_pos, float *vd_col, float *gam, fc_view V,
                                   const uint32_t *skey, const uint8_t *cas, const int32_t *vbase,
                                   int64_t S)
{
    uint32_t R = (uint32_t)V.R, Rx = (uint32_t)(V.R >> V.L), B = 1u << V.L;

    for (int64_t s = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; s < S;
         s += (int64_t)gridDim.x * blockDim.x) {
        uint32_t key = skey[s], x = key / (R * R), y = key / R % R, z = key % R;
        /* raw weights: the stored row of an active cube, else 0 */
        float w[FC_NW];
        int64_t i = fc_find(V.vox_keys, V.nx, ((x >> V.L) * Rx + (y >> V.L)) * Rx + (z >> V.L));
        int64_t row = i < 0 ? -1 : ((int64_t)V.vox_rows[i] << (3 * V.L)) +
                                   fc_offset_row((int)(x & (B - 1)), (int)(y & (B - 1)),
                                                 (int)(z & (B - 1)), V.L);
        for (int j = 0; j < FC_NW; j++)
            w[j] = row < 0 ? 0.0f : load_dt(V.cube_w, V.wdt, row * FC_NW + j);
        for (int j = 0; j < 20; j++)
            w[j] = __fadd_rn(__fmul_rn(tanhf(w[j]), 0.99f), 1.0f);
        float sg = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-w[20])));
        w[20] = __fadd_rn(__fmul_rn(sg, 0.99f), 0.005f);

        int cs = cas[s], m = T.nvd[cs];
        int64_t v0 = vbase[s];
        for (int k = 0; k < m; k++) {
            float vp[3] = {0, 0, 0}, vc[3] = {0, 0, 0}, bsum = 0.0f;
            unsigned mask = T.dmc[cs][k];
            for (int e = 0; e < 12; e++) {
                if (!(mask >> e & 1))
                    continue;
                int ca = T.ec[e][0], cb = T.ec[e][1];
                float sa, sb, xa[3], xb[3], qa[3], qb[3];
                vertex_get_d(V, corner_key_d(V, x, y, z, ca), &sa, xa, qa);
                vertex_get_d(V, corner_key_d(V, x, y, z, cb), &sb, xb, qb);
                float wa = __fmul_rn(sa, w[12 + ca]), wb = __fmul_rn(sb, w[12 + cb]);
                float nwa = -wa, den = __fadd_rn(wb, nwa), beta = w[e];
                for (int j = 0; j < 3; j++) {
                    float ue = __fdiv_rn(__fadd_rn(__fmul_rn(xa[j], wb), __fmul_rn(xb[j], nwa)), den);
                    float uc = __fdiv_rn(__fadd_rn(__fmul_rn(qa[j], wb), __fmul_rn(qb[j], nwa)), den);
                    vp[j] = __fadd_rn(vp[j], __fmul_rn(ue, beta));
                    vc[j] = __fadd_rn(vc[j], __fmul_rn(uc, beta));
                }
                bsum = __fadd_rn(bsum, beta);
            }
            for (int j = 0; j < 3; j++) {
                vd_pos[3 * (v0 + k) + j] = __fdiv_rn(vp[j], bsum);
                vd_col[3 * (v0 + k) + j] = __fdiv_rn(vc[j], bsum);
            }
            gam[v0 + k] = w[20];
        }
    }
}

// step 5: the surface-edge slots of every surface cube, at its scan offset
static __global__ void slot_count_kernel(int32_t *n, const uint8_t *occ, int64_t S)
{
    for (int64_t s = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; s < S;
         s += (int64_t)gridDim.x * blockDim.x)
        n[s] = __popc(T.cross[occ[s]]);
}

static __global__ void slot_emit_kernel(uint64_t *key, uint32_t *se, const int32_t *off,
                                        const uint32_t *skey, const uint8_t *occ, int64_t S, int R)
{
    uint32_t Rv = (uint32_t)R + 1, Ru = (uint32_t)R;

    for (int64_t s = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; s < S;
         s += (int64_t)gridDim.x * blockDim.x) {
        uint32_t k = skey[s], x = k / (Ru * Ru), y = k / Ru % Ru, z = k % Ru;
        unsigned cr = T.cross[occ[s]];
        int64_t at = off[s];
        for (int e = 0; e < 12; e++) {
            if (!(cr >> e & 1))
                continue;
            int a = T.ec[e][0], b = T.ec[e][1];
            int dir = (a ^ b) == 1 ? 2 : (a ^ b) == 4 ? 1 : 0;
            uint32_t ka = ((x + (a & 1)) * Rv + (y + (a >> 1 & 1))) * Rv + (z + (a >> 2));
            key[at] = (uint64_t)ka * 4 + (uint64_t)dir;
            se[at++] = (uint32_t)(12 * s + e);
        }
    }
}

// step 7: quad heads (a run of exactly 4 equal keys), their orientation, faces
static __global__ void heads_kernel(int32_t *qflag, const uint64_t *key, int64_t X,
                                    unsigned long long *n_edges)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < X;
         i += (int64_t)gridDim.x * blockDim.x) {
        bool head = i == 0 || key[i] != key[i - 1];
        qflag[i] = head && i + 3 < X && key[i + 3] == key[i] && (i + 4 == X || key[i + 4] != key[i]);
        if (head)
            atomicAdd(n_edges, 1ull);
    }
}

static __global__ void quad_list_kernel(int32_t *qlist, int32_t *flip, const int32_t *qflag,
                                        const int32_t *qpos, const uint64_t *key, int64_t X, fc_view V)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < X;
         i += (int64_t)gridDim.x * blockDim.x) {
        if (!qflag[i])
            continue;
        float sa, xa[3], qa[3];
        vertex_get_d(V, (uint32_t)(key[i] >> 2), &sa, xa, qa);
        qlist[qpos[i]] = (int32_t)i;
        flip[qpos[i]] = sa > 0.0f;
    }
}

static __global__ void faces_kernel(int32_t *faces, const int32_t *qlist, const int32_t *flip,
                                    const int32_t *fpos, int64_t Q, int64_t Qf, const uint32_t *se,
                                    const uint8_t *cas, const int32_t *vbase, const float *gam)
{
    for (int64_t q = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; q < Q;
         q += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = qlist[q];
        int32_t v[4], t[4];
        for (int j = 0; j < 4; j++) {
            uint32_t x = se[i + j];
            int64_t s = x / 12;
            v[j] = vbase[s] + T.vd_of[cas[s]][x % 12];
        }
        int64_t at;
        if (flip[q]) {
            t[0] = v[0], t[1] = v[1], t[2] = v[3], t[3] = v[2];
            at = fpos[q];
        } else {
            t[0] = v[2], t[1] = v[3], t[2] = v[1], t[3] = v[0];
            at = Qf + (q - fpos[q]);
        }
        float g02 = __fmul_rn(gam[t[0]], gam[t[2]]), g13 = __fmul_rn(gam[t[1]], gam[t[3]]);
        int32_t *f = faces + 6 * at;
        if (g02 > g13) {
            f[0] = t[0], f[1] = t[1], f[2] = t[2], f[3] = t[0], f[4] = t[2], f[5] = t[3];
        } else {
            f[0] = t[0], f[1] = t[1], f[2] = t[3], f[3] = t[3], f[4] = t[1], f[5] = t[2];
        }
    }
}

// ----------------------------------------------------------------------------
// extraction: host side

static void read_u64(const struct op_ctx *ctx, uint64_t *h, const unsigned long long *d, int n)
{
    CUDA_CHECK(cudaMemcpyAsync(h, d, sizeof(*h) * (size_t)n, cudaMemcpyDeviceToHost, ctx->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
}

/* Everything after the dry pass, against a stack: plan (s->a NULL) or run. */
static void extract(struct flexicubes *fc, const struct op_ctx *ctx, struct stack *s, size_t am,
                    int64_t S, int64_t X, int64_t Q, int64_t VB, unsigned long long *cnt)
{
    const bool run = s->a != NULL;
    const int R = fc->R;
    const fc_view V = view_of(fc);
    const int sbits = 8 + bits_for((uint64_t)R * R * R);
    const int xbits = 2 + bits_for((uint64_t)(R + 1) * (R + 1) * (R + 1));
    cudaStream_t st = ctx ? ctx->stream : (cudaStream_t)0;
    size_t t = 0;
    struct fc_counts *n = &fc->cnt;

    ASSERT(S < INT32_MAX / 12 && X < INT32_MAX && VB < INT32_MAX);
    /* kept to the end */
    fc->vd_pos = (float *)take(s, (size_t)VB * 12);
    fc->vd_col = (float *)take(s, (size_t)VB * 12);
    float *gam = (float *)take(s, (size_t)VB * 4);
    fc->faces = (int32_t *)take(s, (size_t)Q * 24);
    uint32_t *skey = (uint32_t *)take(s, (size_t)S * 4);
    uint8_t *occ = (uint8_t *)take(s, (size_t)S), *cas = (uint8_t *)take(s, (size_t)S);
    int32_t *vbase = (int32_t *)take(s, (size_t)S * 4);
    size_t m0 = mark(s);

    /* steps 2-3: emit, sort, split, resolve */
    uint64_t *sa = (uint64_t *)take(s, (size_t)S * 8), *sb = (uint64_t *)take(s, (size_t)S * 8);
    CUDA_CHECK(cub::DeviceRadixSort::SortKeys(NULL, t, sa, sb, (int)S, 0, sbits, st));
    void *tmp = take(s, t);
    if (run && S > 0) {
        CUDA_CHECK(cudaMemsetAsync(cnt, 0, sizeof(*cnt) * CNT_N, st));
        candidates_kernel<<<grid_for(V.nv * 8, FC_THREADS), FC_THREADS, 0, st>>>(V, cnt, sa);
        CUDA_CHECK(cudaGetLastError());
        CUDA_CHECK(cub::DeviceRadixSort::SortKeys(tmp, t, sa, sb, (int)S, 0, sbits, st));
        cases_kernel<<<grid_for(S, FC_THREADS), FC_THREADS, 0, st>>>(skey, occ, sb, S);
        CUDA_CHECK(cudaMemsetAsync(cnt, 0, sizeof(*cnt) * CNT_N, st));
        resolve_kernel<<<grid_for(S, FC_THREADS), FC_THREADS, 0, st>>>(cas, skey, occ, S, R, cnt);
        CUDA_CHECK(cudaGetLastError());
    }
    release(s, m0, am);

    /* dual-vertex numbering: groups by count (1..4), each in cube order */
    uint64_t per_m[CNT_N] = {0, 0, 0, 0, 0, 0};
    if (run && S > 0)
        read_u64(ctx, per_m, cnt, CNT_N);
    int64_t base[5] = {0, 0, 0, 0, 0};
    for (int m = 2; m < 5; m++)
        base[m] = base[m - 1] + (int64_t)per_m[m - 1] * (m - 1);
    n->n_vd = run ? base[4] + (int64_t)per_m[4] * 4 : 0;
    n->n_inverted = run ? (int64_t)per_m[CNT_INV] : 0;
    int32_t *flag = (int32_t *)take(s, (size_t)S * 4), *rank = (int32_t *)take(s, (size_t)S * 4);
    t = 0;
    CUDA_CHECK(cub::DeviceScan::ExclusiveSum(NULL, t, flag, rank, (int)S, st));
    tmp = take(s, t);
    for (int m = 1; run && S > 0 && m < 5; m++) {
        if (!per_m[m])
            continue;
        group_flags_kernel<<<grid_for(S, FC_THREADS), FC_THREADS, 0, st>>>(flag, cas, S, m);
        CUDA_CHECK(cub::DeviceScan::ExclusiveSum(tmp, t, flag, rank, (int)S, st));
        group_base_kernel<<<grid_for(S, FC_THREADS), FC_THREADS, 0, st>>>(vbase, rank, cas, S, m,
                                                                          base[m]);
        CUDA_CHECK(cudaGetLastError());
    }
    if (run && S > 0) {
        ASSERT(n->n_vd <= VB);
        dual_kernel<<<grid_for(S, FC_THREADS), FC_THREADS, 0, st>>>(fc->vd_pos, fc->vd_col, gam,
                                                                    V, skey, cas, vbase, S);
        CUDA_CHECK(cudaGetLastError());
    }

    /* step 5: slots (each surface cube's crossing edges at its scan offset), sorted */
    int32_t *off = flag;                     /* reuses flag (S) for the slot counts */
    CUDA_CHECK(cub::DeviceScan::ExclusiveSum(NULL, t, off, rank, (int)S, st));
    if (run && S > 0) {
        slot_count_kernel<<<grid_for(S, FC_THREADS), FC_THREADS, 0, st>>>(off, occ, S);
        CUDA_CHECK(cub::DeviceScan::ExclusiveSum(tmp, t, off, rank, (int)S, st));
    }
    uint64_t *ka = (uint64_t *)take(s, (size_t)X * 8), *kb = (uint64_t *)take(s, (size_t)X * 8);
    uint32_t *va = (uint32_t *)take(s, (size_t)X * 4), *vb = (uint32_t *)take(s, (size_t)X * 4);
    t = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(NULL, t, ka, kb, va, vb, (int)X, 0, xbits, st));
    void *tmp2 = take(s, t);
    if (run && X > 0) {
        slot_emit_kernel<<<grid_for(S, FC_THREADS), FC_THREADS, 0, st>>>(ka, va, rank, skey, occ, S,
                                                                         R);
        CUDA_CHECK(cudaGetLastError());
        CUDA_CHECK(cub::DeviceRadixSort::SortPairs(tmp2, t, ka, kb, va, vb, (int)X, 0, xbits, st));
    }

    /* step 7: quads */
    int32_t *qflag = (int32_t *)take(s, (size_t)X * 4), *qpos = (int32_t *)take(s, (size_t)X * 4);
    int32_t *qlist = (int32_t *)take(s, (size_t)Q * 4), *flip = (int32_t *)take(s, (size_t)Q * 4);
    int32_t *fpos = (int32_t *)take(s, (size_t)Q * 4);
    size_t t3 = 0, t4 = 0;
    CUDA_CHECK(cub::DeviceScan::ExclusiveSum(NULL, t3, qflag, qpos, (int)X, st));
    CUDA_CHECK(cub::DeviceScan::ExclusiveSum(NULL, t4, flip, fpos, (int)Q, st));
    void *tmp3 = take(s, t3 > t4 ? t3 : t4);
    uint64_t ne = 0, qf = 0;
    if (run && X > 0) {
        int32_t last[2];
        CUDA_CHECK(cudaMemsetAsync(cnt, 0, sizeof(*cnt) * CNT_N, st));
        heads_kernel<<<grid_for(X, FC_THREADS), FC_THREADS, 0, st>>>(qflag, kb, X, cnt);
        CUDA_CHECK(cub::DeviceScan::ExclusiveSum(tmp3, t3, qflag, qpos, (int)X, st));
        CUDA_CHECK(cudaMemcpyAsync(last, qpos + X - 1, 4, cudaMemcpyDeviceToHost, st));
        CUDA_CHECK(cudaMemcpyAsync(last + 1, qflag + X - 1, 4, cudaMemcpyDeviceToHost, st));
        CUDA_CHECK(cudaStreamSynchronize(st));
        ASSERT(last[0] + last[1] == Q);      /* the sorted runs of 4 = the counted quads */
        quad_list_kernel<<<grid_for(X, FC_THREADS), FC_THREADS, 0, st>>>(qlist, flip, qflag, qpos,
                                                                         kb, X, V);
        CUDA_CHECK(cudaGetLastError());
        read_u64(ctx, &ne, cnt, 1);
    }
    if (run && Q > 0) {
        int32_t last[2];
        CUDA_CHECK(cub::DeviceScan::ExclusiveSum(tmp3, t4, flip, fpos, (int)Q, st));
        CUDA_CHECK(cudaMemcpyAsync(last, fpos + Q - 1, 4, cudaMemcpyDeviceToHost, st));
        CUDA_CHECK(cudaMemcpyAsync(last + 1, flip + Q - 1, 4, cudaMemcpyDeviceToHost, st));
        CUDA_CHECK(cudaStreamSynchronize(st));
        qf = (uint64_t)(last[0] + last[1]);
        faces_kernel<<<grid_for(Q, FC_THREADS), FC_THREADS, 0, st>>>(
            fc->faces, qlist, flip, fpos, Q, (int64_t)qf, vb, cas, vbase, gam);
        CUDA_CHECK(cudaGetLastError());
    }
    n->n_edges = (int64_t)ne;
    release(s, 0, am);           /* keep only the outputs: vd_pos, vd_col, gam, faces */
    if (run) {
        take(s, (size_t)VB * 12);
        take(s, (size_t)VB * 12);
        take(s, (size_t)VB * 4);
        take(s, (size_t)Q * 24);
    }
}

int fc_finish_cuda(struct flexicubes *fc, const struct op_ctx *ctx, struct arena *scratch,
                   int64_t max_faces)
{
    struct fc_counts *n = &fc->cnt;
    const fc_view V0 = view_of(fc);
    size_t am = arena_mark(scratch);
    struct stack s = {scratch, 0, 0};
    uint64_t h[CNT_N];

    ASSERT(!fc->finished);
    if (arena_round(sizeof(unsigned long long) * CNT_N) > scratch->size - scratch->used) {
        fc->need_scratch = arena_round(sizeof(unsigned long long) * CNT_N);
        return S3D_ENOMEM;
    }
    unsigned long long *cnt = (unsigned long long *)take(&s, sizeof(*cnt) * CNT_N);
    CUDA_CHECK(cudaMemsetAsync(cnt, 0, sizeof(*cnt) * CNT_N, ctx->stream));
    if (!fc->finalized) {                     /* step 1 once, even when called again */
        if (fc->n_verts > 0)
            finalize_kernel<<<grid_for(fc->n_verts, FC_THREADS), FC_THREADS, 0, ctx->stream>>>(
                (float *)fc->vacc.data, (const uint32_t *)fc->vkeys.data, fc->n_verts, fc->R,
                cnt + CNT_S);
        read_u64(ctx, h, cnt, 1);
        fc->cnt.n_neg = (int64_t)h[0];
        fc->finalized = true;
        CUDA_CHECK(cudaMemsetAsync(cnt, 0, sizeof(*cnt) * CNT_N, ctx->stream));
    }
    int64_t n_neg = fc->cnt.n_neg;
    memset(n, 0, sizeof(*n));
    n->n_verts = fc->n_verts;
    n->n_neg = n_neg;
    if (fc->n_verts > 0)
        candidates_kernel<<<grid_for(fc->n_verts * 8, FC_THREADS), FC_THREADS, 0, ctx->stream>>>(
            V0, cnt, NULL);
    CUDA_CHECK(cudaGetLastError());
    read_u64(ctx, h, cnt, CNT_N);
    int64_t S = (int64_t)h[CNT_S], X = (int64_t)h[CNT_X], Q = (int64_t)h[CNT_Q];
    int64_t VB = (int64_t)h[CNT_VB];
    n->n_surf = S;
    n->n_slots = X;
    n->n_quads = Q;
    n->n_faces = 2 * Q;
    if (n->n_faces > max_faces) {
        release(&s, 0, am);
        return S3D_EINVAL;
    }

    struct stack plan = {NULL, 0, 0};
    extract(fc, ctx, &plan, 0, S, X, Q, VB, NULL);
    size_t need = arena_round(sizeof(*cnt) * CNT_N) + plan.peak;
    if (need > scratch->size - am) {
        release(&s, 0, am);
        fc->need_scratch = need;
        return S3D_ENOMEM;
    }
    struct stack r = {scratch, 0, 0};
    size_t am1 = arena_mark(scratch);
    extract(fc, ctx, &r, am1, S, X, Q, VB, cnt);
    op_done(ctx, "flexicubes_finish");
    fc->finished = true;
    return 0;
}

void fc_copy_to_host_cuda(const struct op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
}
