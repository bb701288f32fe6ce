/*
 * sparse.cu - CUDA versions of the sparse 3-D ops (ops_sparse.h): hash-built
 * neighbour map, im2col + cuBLASLt submanifold conv, x2 down/upsampling,
 * subdivision and sparse GroupNorm.
 *
 * CPU reference: kernels/cpu/sparse.c. Test: tests/test_op_sparse.c (CUDA vs
 * CPU for every op). Bench: make CUDA_ARCH=90 dev && build/dev/sparse_bench.
 *
 * Design notes:
 * - Neighbour map: open addressing over 2^k >= 2T slots of 64-bit keys (the
 *   CPU's packing: 16 bits each of b, x+1, y+1, z+1), linear probing, inserted
 *   with atomicCAS; one thread per (site, offset) probes. Deterministic: each
 *   key is unique, so the slot contents do not depend on the insertion order
 *   except for where a key lands, and the lookup result is the row either way.
 * - Conv: the KRSC weight (Cout, 3, 3, 3, Cin) is already a row-major
 *   (Cout, 27*Cin) matrix whose column r*Cin + ci matches an im2col row laid
 *   out as (r, ci). So y = im2col(x) @ W^T + b is one cuBLASLt GEMM (fp32
 *   accumulation, bias epilogue) per chunk of rows, with zero im2col rows for
 *   missing neighbours (dense-equivalent FLOPs; spconv's MaskImplicitGemm also
 *   multiplies through tiles whose rows miss an offset). The gather moves
 *   16-byte vectors when x already has w's dtype and Cin * size is a multiple
 *   of 16 (all real convs); else one converted element per thread.
 * - Row gather / scatter: the same 16-byte vectors under the same condition
 *   (same dtype, whole 16-byte rows, aligned bases), up to a warp per row.
 * - Downsample: a dense (res/2)^3 occupancy grid and an exclusive scan give
 *   each occupied parent cell its rank, which is its row in lexicographic
 *   (x, y, z) order, exactly torch's sorted unique codes.
 */
#include "common.cuh"

#include "arena.h"
#include "ops_sparse.h"

#define SP_THREADS 256
#define SP_EMPTY   0xffffffffffffffffull   /* no valid key has b = 0xffff */
#define SCAN_THREADS 1024
#define SCAN_ITEMS   4
#define SCAN_TILE    (SCAN_THREADS * SCAN_ITEMS)
#define CONV_MIN_ROWS 64

// ----------------------------------------------------------------------------
// neighbour map

__device__ __forceinline__ uint64_t sp_key(const int32_t *c, int dx, int dy, int dz)
{
    return ((uint64_t)(uint32_t)c[0] << 48) | ((uint64_t)(uint32_t)(c[1] + 1 + dx) << 32) |
           ((uint64_t)(uint32_t)(c[2] + 1 + dy) << 16) | (uint64_t)(uint32_t)(c[3] + 1 + dz);
}

__device__ __forceinline__ uint64_t sp_hash(uint64_t k)     /* splitmix64 finaliser */
{
    k ^= k >> 30;
    k *= 0xbf58476d1ce4e5b9ull;
    k ^= k >> 27;
    k *= 0x94d049bb133111ebull;
    k ^= k >> 31;
    return k;
}

static int64_t nbr_capacity(int64_t T)
{
    int64_t cap = 64;

    while (cap < 2 * T)
        cap <<= 1;
    return cap;
}

size_t op_sparse_nbr_scratch_bytes(int64_t T)
{
    int64_t cap = nbr_capacity(T);

    return arena_round((size_t)cap * sizeof(uint64_t)) + arena_round((size_t)cap * sizeof(int32_t));
}

static __global__ void nbr_insert_kernel(unsigned long long *keys, int32_t *vals,
                                         const int32_t *coords, int64_t T, uint64_t mask)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < T;
         i += (int64_t)gridDim.x * blockDim.x) {
        unsigned long long key = sp_key(coords + 4 * i, 0, 0, 0);
        uint64_t h = sp_hash(key) & mask;
        for (;;) {
            unsigned long long prev = atomicCAS(&keys[h], SP_EMPTY, key);
            if (prev == SP_EMPTY || prev == key) {
                vals[h] = (int32_t)i;
                break;
            }
            h = (h + 1) & mask;
        }
    }
}

static __global__ void nbr_lookup_kernel(int32_t *nbr, const unsigned long long *keys,
                                         const int32_t *vals, const int32_t *coords, int64_t T,
                                         uint64_t mask)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < T * SPARSE_K3;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t p = e / SPARSE_K3;
        int r = (int)(e - p * SPARSE_K3);
        unsigned long long key = sp_key(coords + 4 * p, r / 9 - 1, r / 3 % 3 - 1, r % 3 - 1);
        uint64_t h = sp_hash(key) & mask;
        int32_t q = -1;
        for (;;) {
            unsigned long long k = keys[h];
            if (k == key) {
                q = vals[h];
                break;
            }
            if (k == SP_EMPTY)
                break;
            h = (h + 1) & mask;
        }
        nbr[e] = q;
    }
}

void op_sparse_nbr_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *nbr,
                        const struct tensor *coords)
{
    sparse_check_i32("sparse_nbr.coords", coords, DEVICE_CUDA, -1, 4);
    int64_t T = coords->shape[0];
    sparse_check_i32("sparse_nbr.nbr", nbr, DEVICE_CUDA, T, SPARSE_K3);
    if (T == 0)
        return;
    int64_t cap = nbr_capacity(T);
    size_t mark = arena_mark(scratch);
    unsigned long long *keys = (unsigned long long *)arena_must_alloc(scratch,
                                                                      (size_t)cap * 8);
    int32_t *vals = (int32_t *)arena_must_alloc(scratch, (size_t)cap * 4);

    CUDA_CHECK(cudaMemsetAsync(keys, 0xff, (size_t)cap * 8, ctx->stream));
    nbr_insert_kernel<<<grid_for(T, SP_THREADS), SP_THREADS, 0, ctx->stream>>>(
        keys, vals, (const int32_t *)coords->data, T, (uint64_t)(cap - 1));
    CUDA_CHECK(cudaGetLastError());
    nbr_lookup_kernel<<<grid_for(T * SPARSE_K3, SP_THREADS), SP_THREADS, 0, ctx->stream>>>(
        (int32_t *)nbr->data, keys, vals, (const int32_t *)coords->data, T,
        (uint64_t)(cap - 1));
    op_done(ctx, "sparse_nbr");
    arena_release(scratch, mark);
}

// ----------------------------------------------------------------------------
// submanifold conv: im2col + one GEMM per chunk of rows

/* col[i, r, ci] = x[nbr[p0 + i, r], ci] (converted to Tw), or 0 */
template <typename Tx, typename Tw>
static __global__ void im2col_kernel(Tw *col, const Tx *x, const int32_t *nbr, int64_t p0,
                                     int64_t rows, int64_t Cin)
{
    int64_t n = rows * SPARSE_K3 * Cin;

    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t ir = e / Cin, ci = e - ir * Cin;          /* ir = i * 27 + r */
        int32_t q = nbr[p0 * SPARSE_K3 + ir];
        col[e] = from_f32<Tw>(q >= 0 ? to_f32(x[(int64_t)q * Cin + ci]) : 0.0f);
    }
}

/* The same gather when x and col share a dtype and a row is a whole number of
 * 16-byte vectors (every real conv: Cin is a multiple of 8): V vectors per row. */
static __global__ void im2col_vec_kernel(uint4 *col, const uint4 *x, const int32_t *nbr,
                                         int64_t p0, int64_t rows, int64_t V)
{
    int64_t n = rows * SPARSE_K3 * V;

    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t ir = e / V, v = e - ir * V;
        int32_t q = nbr[p0 * SPARSE_K3 + ir];
        col[e] = q >= 0 ? x[(int64_t)q * V + v] : make_uint4(0, 0, 0, 0);
    }
}

static int64_t conv_chunk_rows(int64_t T, int64_t Cin, enum dtype wdt, size_t avail)
{
    size_t row_bytes = (size_t)SPARSE_K3 * (size_t)Cin * dtype_size(wdt);
    size_t budget = avail < SPARSE_CONV_CHUNK_BYTES ? avail : SPARSE_CONV_CHUNK_BYTES;
    int64_t rows = (int64_t)(budget / (row_bytes ? row_bytes : 1));

    if (rows < CONV_MIN_ROWS)
        rows = CONV_MIN_ROWS;
    return rows < T ? rows : T;
}

size_t op_sparse_conv3_scratch_bytes(int64_t T, int64_t Cin, enum dtype wdt)
{
    int64_t rows = conv_chunk_rows(T, Cin, wdt, SPARSE_CONV_CHUNK_BYTES);

    return arena_round((size_t)rows * SPARSE_K3 * (size_t)Cin * dtype_size(wdt));
}

void op_sparse_conv3_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                          const struct tensor *x, const struct tensor *w, const struct tensor *b,
                          const struct tensor *nbr)
{
    op_check_dense("sparse_conv3.x", x, DEVICE_CUDA);
    op_check_dense("sparse_conv3.w", w, DEVICE_CUDA);
    op_check_dense("sparse_conv3.y", y, DEVICE_CUDA);
    ASSERT(x->ndim == 2 && y->ndim == 2 && w->ndim == 5);
    int64_t T = y->shape[0], Cin = x->shape[1], Cout = w->shape[0];
    ASSERT(w->shape[1] == 3 && w->shape[2] == 3 && w->shape[3] == 3 && w->shape[4] == Cin);
    ASSERT(y->shape[1] == Cout);
    ASSERT(y->dtype == DTYPE_F32 || y->dtype == w->dtype);
    sparse_check_i32("sparse_conv3.nbr", nbr, DEVICE_CUDA, T, SPARSE_K3);
    if (T == 0 || Cout == 0)
        return;
    if (sparse_igemm_enabled() && op_sparse_conv3_igemm_cuda(ctx, scratch, y, x, w, b, nbr))
        return;

    size_t used = scratch->used, avail = scratch->size > used + ARENA_ALIGN ?
                                         scratch->size - used - ARENA_ALIGN : 0;
    int64_t chunk = conv_chunk_rows(T, Cin, w->dtype, avail);
    size_t mark = arena_mark(scratch);
    void *col = arena_must_alloc(scratch, (size_t)chunk * SPARSE_K3 * (size_t)Cin *
                                          dtype_size(w->dtype));
    const int64_t wshape[2] = {Cout, (int64_t)SPARSE_K3 * Cin};
    struct tensor wm = tensor_view(w->data, w->dtype, DEVICE_CUDA, wshape, 2);

    size_t row_bytes = (size_t)Cin * dtype_size(x->dtype);
    bool vec = x->dtype == w->dtype && row_bytes % 16 == 0 && (uintptr_t)x->data % 16 == 0;
    int64_t V = (int64_t)(row_bytes / 16);

    for (int64_t p0 = 0; p0 < T; p0 += chunk) {
        int64_t rows = T - p0 < chunk ? T - p0 : chunk;
        if (vec)
            im2col_vec_kernel<<<grid_for(rows * SPARSE_K3 * V, SP_THREADS), SP_THREADS, 0,
                                ctx->stream>>>((uint4 *)col, (const uint4 *)x->data,
                                               (const int32_t *)nbr->data, p0, rows, V);
        else
            DISPATCH_2(x->dtype, Tx, w->dtype, Tw,
                       im2col_kernel<Tx, Tw><<<grid_for(rows * SPARSE_K3 * Cin, SP_THREADS),
                                               SP_THREADS, 0, ctx->stream>>>(
                           (Tw *)col, (const Tx *)x->data, (const int32_t *)nbr->data, p0,
                           rows, Cin));
        CUDA_CHECK(cudaGetLastError());
        const int64_t cshape[2] = {rows, (int64_t)SPARSE_K3 * Cin};
        struct tensor xc = tensor_view(col, w->dtype, DEVICE_CUDA, cshape, 2);
        struct tensor yc = tensor_slice(y, 0, p0, rows);
        op_linear_cuda(ctx, &yc, &xc, &wm, b, false);
    }
    op_done(ctx, "sparse_conv3");
    arena_release(scratch, mark);
}

// ----------------------------------------------------------------------------
// downsample index: occupancy grid + exclusive scan

/* Exclusive scan of SCAN_TILE ints per block in place; the block's total goes
 * to sums[blockIdx.x] (when sums is not NULL). */
static __global__ void scan_tile_kernel(int32_t *v, int64_t n, int32_t *sums)
{
    __shared__ int32_t warp_tot[SCAN_THREADS / 32];
    int64_t base = (int64_t)blockIdx.x * SCAN_TILE + (int64_t)threadIdx.x * SCAN_ITEMS;
    int32_t a[SCAN_ITEMS], s = 0;

    for (int j = 0; j < SCAN_ITEMS; j++) {
        a[j] = base + j < n ? v[base + j] : 0;
        s += a[j];
    }
    /* inclusive scan of the per-thread sums over the block */
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int32_t inc = s;
    for (int o = 1; o < 32; o <<= 1) {
        int32_t t = __shfl_up_sync(0xffffffffu, inc, o);
        if (lane >= o)
            inc += t;
    }
    if (lane == 31)
        warp_tot[warp] = inc;
    __syncthreads();
    if (warp == 0) {
        int32_t t = warp_tot[lane];
        for (int o = 1; o < 32; o <<= 1) {
            int32_t u = __shfl_up_sync(0xffffffffu, t, o);
            if (lane >= o)
                t += u;
        }
        warp_tot[lane] = t;                    /* inclusive over warps */
    }
    __syncthreads();
    int32_t run = inc - s + (warp > 0 ? warp_tot[warp - 1] : 0);   /* exclusive */
    for (int j = 0; j < SCAN_ITEMS; j++) {
        if (base + j < n)
            v[base + j] = run;
        run += a[j];
    }
    if (sums && threadIdx.x == SCAN_THREADS - 1)
        sums[blockIdx.x] = run;
}

static __global__ void scan_add_kernel(int32_t *v, int64_t n, const int32_t *sums)
{
    int64_t i = (int64_t)blockIdx.x * SCAN_TILE + threadIdx.x;

    for (int j = 0; j < SCAN_ITEMS; j++, i += SCAN_THREADS)
        if (i < n)
            v[i] += sums[blockIdx.x];
}

static __global__ void down_mark_kernel(int32_t *occ, const int32_t *coords, int64_t T, int R2)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < T;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int32_t *c = coords + 4 * i;
        int x = c[1] >> 1, y = c[2] >> 1, z = c[3] >> 1;
        if (c[0] == 0 && x >= 0 && x < R2 && y >= 0 && y < R2 && z >= 0 && z < R2)
            occ[((int64_t)x * R2 + y) * R2 + z] = 1;
    }
}

/* every occupied cell writes its parent row: coords and 8 empty child slots */
static __global__ void down_emit_kernel(int32_t *pcoords, int32_t *children, int32_t *total,
                                        const int32_t *occ, const int32_t *rank, int64_t G,
                                        int R2)
{
    for (int64_t g = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; g < G;
         g += (int64_t)gridDim.x * blockDim.x) {
        if (g == G - 1)
            *total = rank[g] + occ[g];
        if (!occ[g])
            continue;
        int32_t m = rank[g];
        pcoords[4 * (int64_t)m + 0] = 0;
        pcoords[4 * (int64_t)m + 1] = (int32_t)(g / ((int64_t)R2 * R2));
        pcoords[4 * (int64_t)m + 2] = (int32_t)(g / R2 % R2);
        pcoords[4 * (int64_t)m + 3] = (int32_t)(g % R2);
        for (int k = 0; k < 8; k++)
            children[8 * (int64_t)m + k] = -1;
    }
}

static __global__ void down_link_kernel(int32_t *parent, int32_t *children, const int32_t *rank,
                                        const int32_t *coords, int64_t T, int R2)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < T;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int32_t *c = coords + 4 * i;
        int x = c[1] >> 1, y = c[2] >> 1, z = c[3] >> 1;
        if (c[0] != 0 || x < 0 || x >= R2 || y < 0 || y >= R2 || z < 0 || z >= R2) {
            parent[i] = -1;                    /* precondition broken: no write outside */
            continue;
        }
        int32_t m = rank[((int64_t)x * R2 + y) * R2 + z];
        parent[i] = m;
        children[8 * (int64_t)m + ((c[1] & 1) << 2 | (c[2] & 1) << 1 | (c[3] & 1))] = (int32_t)i;
    }
}

size_t op_sparse_down_scratch_bytes(int res)
{
    int64_t G = (int64_t)(res / 2) * (res / 2) * (res / 2);
    int64_t nt = (G + SCAN_TILE - 1) / SCAN_TILE;

    return 2 * arena_round((size_t)G * 4) + arena_round((size_t)nt * 4) + arena_round(4);
}

int64_t op_sparse_down_index_cuda(const struct op_ctx *ctx, struct arena *scratch,
                                  struct tensor *pcoords, struct tensor *parent,
                                  struct tensor *children, const struct tensor *coords, int res)
{
    sparse_check_i32("sparse_down.coords", coords, DEVICE_CUDA, -1, 4);
    int64_t T = coords->shape[0];
    sparse_check_i32("sparse_down.pcoords", pcoords, DEVICE_CUDA, T, 4);
    sparse_check_i32("sparse_down.parent", parent, DEVICE_CUDA, T, 0);
    sparse_check_i32("sparse_down.children", children, DEVICE_CUDA, T, 8);
    ASSERT(res >= 2 && res % 2 == 0 && res <= SPARSE_DOWN_MAX_RES);
    if (T == 0)
        return 0;
    int R2 = res / 2;
    int64_t G = (int64_t)R2 * R2 * R2, nt = (G + SCAN_TILE - 1) / SCAN_TILE;
    ASSERT(nt <= SCAN_TILE);                   /* one block scans the tile sums */
    size_t mark = arena_mark(scratch);
    int32_t *occ = (int32_t *)arena_must_alloc(scratch, (size_t)G * 4);
    int32_t *rank = (int32_t *)arena_must_alloc(scratch, (size_t)G * 4);
    int32_t *sums = (int32_t *)arena_must_alloc(scratch, (size_t)nt * 4);
    int32_t *total = (int32_t *)arena_must_alloc(scratch, 4);
    int32_t M = 0;

    CUDA_CHECK(cudaMemsetAsync(occ, 0, (size_t)G * 4, ctx->stream));
    down_mark_kernel<<<grid_for(T, SP_THREADS), SP_THREADS, 0, ctx->stream>>>(
        occ, (const int32_t *)coords->data, T, R2);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaMemcpyAsync(rank, occ, (size_t)G * 4, cudaMemcpyDeviceToDevice, ctx->stream));
    scan_tile_kernel<<<(unsigned)nt, SCAN_THREADS, 0, ctx->stream>>>(rank, G, sums);
    CUDA_CHECK(cudaGetLastError());
    scan_tile_kernel<<<1, SCAN_THREADS, 0, ctx->stream>>>(sums, nt, NULL);
    CUDA_CHECK(cudaGetLastError());
    scan_add_kernel<<<(unsigned)nt, SCAN_THREADS, 0, ctx->stream>>>(rank, G, sums);
    CUDA_CHECK(cudaGetLastError());
    down_emit_kernel<<<grid_for(G, SP_THREADS), SP_THREADS, 0, ctx->stream>>>(
        (int32_t *)pcoords->data, (int32_t *)children->data, total, occ, rank, G, R2);
    CUDA_CHECK(cudaGetLastError());
    down_link_kernel<<<grid_for(T, SP_THREADS), SP_THREADS, 0, ctx->stream>>>(
        (int32_t *)parent->data, (int32_t *)children->data, rank,
        (const int32_t *)coords->data, T, R2);
    op_done(ctx, "sparse_down_index");
    CUDA_CHECK(cudaMemcpyAsync(&M, total, 4, cudaMemcpyDeviceToHost, ctx->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    arena_release(scratch, mark);
    ASSERT(M >= 1 && M <= T);
    return M;
}

// ----------------------------------------------------------------------------
// down mean, row gather, subdivide

template <typename Tx, typename Ty>
static __global__ void down_mean_kernel(Ty *y, const Tx *x, const int32_t *children, int64_t M,
                                        int64_t C)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < M * C;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t m = e / C, c = e - m * C;
        float s = 0.0f;
        int n = 0;
        for (int k = 0; k < 8; k++) {
            int32_t q = children[8 * m + k];
            if (q >= 0) {
                s += to_f32(x[(int64_t)q * C + c]);
                n++;
            }
        }
        y[e] = from_f32<Ty>(s / (float)(n + 1));    /* include_self: the zero counts */
    }
}

void op_sparse_down_mean_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                              const struct tensor *children)
{
    op_check_dense("sparse_down_mean.x", x, DEVICE_CUDA);
    op_check_dense("sparse_down_mean.y", y, DEVICE_CUDA);
    ASSERT(x->ndim == 2 && y->ndim == 2 && x->shape[1] == y->shape[1]);
    int64_t M = y->shape[0], C = x->shape[1];
    sparse_check_i32("sparse_down_mean.children", children, DEVICE_CUDA, -1, 8);
    ASSERT(children->shape[0] >= M);
    if (M * C == 0)
        return;
    DISPATCH_2(x->dtype, Tx, y->dtype, Ty,
               down_mean_kernel<Tx, Ty><<<grid_for(M * C, SP_THREADS), SP_THREADS, 0,
                                          ctx->stream>>>(
                   (Ty *)y->data, (const Tx *)x->data, (const int32_t *)children->data, M, C));
    op_done(ctx, "sparse_down_mean");
}

/* Gather (y[i] = x[idx[i]]) or scatter (y[idx[i]] = x[i]) of T rows of C. */
template <typename Tx, typename Ty>
static __global__ void move_rows_kernel(Ty *y, const Tx *x, const int32_t *idx, int64_t T,
                                        int64_t C, bool scatter)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < T * C;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e / C, c = e - i * C, j = (int64_t)idx[i] * C + c;
        if (scatter)
            y[j] = from_f32<Ty>(to_f32(x[e]));
        else
            y[e] = from_f32<Ty>(to_f32(x[j]));
    }
}

/* The same move for whole rows of V 16-byte vectors (same dtype, aligned):
 * 2^lg threads per row (lg <= 5, so a row stays within one warp), each thread
 * strides over its row's vectors; the row and lane come from a shift and a
 * mask, not a division per element. */
static __global__ void move_rows_vec_kernel(uint4 *y, const uint4 *x, const int32_t *idx,
                                            int64_t T, int64_t V, int lg, bool scatter)
{
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    int64_t stride = ((int64_t)gridDim.x * blockDim.x) >> lg;
    int64_t lane = t & ((1 << lg) - 1);

    for (int64_t i = t >> lg; i < T; i += stride) {
        int64_t j = idx[i];
        const uint4 *src = x + (scatter ? i : j) * V;
        uint4       *dst = y + (scatter ? j : i) * V;
        for (int64_t v = lane; v < V; v += (int64_t)1 << lg)
            dst[v] = src[v];
    }
}

/* The CUDA side of op_sparse_gather_rows / op_sparse_scatter_rows (T = the
 * rows idx has: y's for a gather, x's for a scatter). Same dtype, rows a
 * multiple of 16 bytes and both bases 16-byte aligned (every trunk move): the
 * vector kernel; else one converted element per thread. */
static void move_rows(const struct op_ctx *ctx, const char *op, struct tensor *y,
                      const struct tensor *x, const struct tensor *idx, bool scatter)
{
    char nm[64];

    snprintf(nm, sizeof(nm), "%s.x", op);
    op_check_dense(nm, x, DEVICE_CUDA);
    snprintf(nm, sizeof(nm), "%s.y", op);
    op_check_dense(nm, y, DEVICE_CUDA);
    ASSERT(x->ndim == 2 && y->ndim == 2 && x->shape[1] == y->shape[1]);
    int64_t T = scatter ? x->shape[0] : y->shape[0], C = x->shape[1];
    snprintf(nm, sizeof(nm), "%s.idx", op);
    sparse_check_i32(nm, idx, DEVICE_CUDA, T, 0);
    if (T * C == 0)
        return;
    size_t row_bytes = (size_t)C * dtype_size(x->dtype);
    if (x->dtype == y->dtype && row_bytes % 16 == 0 && (uintptr_t)x->data % 16 == 0 &&
        (uintptr_t)y->data % 16 == 0) {
        int64_t V = (int64_t)(row_bytes / 16);
        int     lg = 0;                 /* threads per row: the power of 2 >= V, at most 32 */
        while (lg < 5 && ((int64_t)1 << lg) < V)
            lg++;
        move_rows_vec_kernel<<<grid_for(T << lg, SP_THREADS), SP_THREADS, 0, ctx->stream>>>(
            (uint4 *)y->data, (const uint4 *)x->data, (const int32_t *)idx->data, T, V, lg,
            scatter);
        op_done(ctx, op);
        return;
    }
    DISPATCH_2(x->dtype, Tx, y->dtype, Ty,
               move_rows_kernel<Tx, Ty><<<grid_for(T * C, SP_THREADS), SP_THREADS, 0,
                                          ctx->stream>>>(
                   (Ty *)y->data, (const Tx *)x->data, (const int32_t *)idx->data, T, C,
                   scatter));
    op_done(ctx, op);
}

void op_sparse_gather_rows_cuda(const struct op_ctx *ctx, struct tensor *y,
                                const struct tensor *x, const struct tensor *idx)
{
    move_rows(ctx, "sparse_gather_rows", y, x, idx, false);
}

void op_sparse_scatter_rows_cuda(const struct op_ctx *ctx, struct tensor *y,
                                 const struct tensor *x, const struct tensor *idx)
{
    move_rows(ctx, "sparse_scatter_rows", y, x, idx, true);
}

static __global__ void subdivide_coords_kernel(int32_t *y, const int32_t *x, int64_t T)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < 8 * T;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = e >> 3;
        int k = (int)(e & 7);
        y[4 * e + 0] = x[4 * i + 0];
        y[4 * e + 1] = 2 * x[4 * i + 1] + (k >> 2);
        y[4 * e + 2] = 2 * x[4 * i + 2] + ((k >> 1) & 1);
        y[4 * e + 3] = 2 * x[4 * i + 3] + (k & 1);
    }
}

template <typename Tx, typename Ty>
static __global__ void subdivide_feats_kernel(Ty *y, const Tx *x, int64_t T, int64_t C)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < 8 * T * C;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t row = e / C, c = e - row * C;
        y[e] = from_f32<Ty>(to_f32(x[(row >> 3) * C + c]));
    }
}

void op_sparse_subdivide_cuda(const struct op_ctx *ctx, struct tensor *y_coords,
                              const struct tensor *x_coords, struct tensor *y_feats,
                              const struct tensor *x_feats)
{
    ASSERT((y_coords == NULL) == (x_coords == NULL) && (y_feats == NULL) == (x_feats == NULL));
    if (x_coords) {
        sparse_check_i32("sparse_subdivide.x_coords", x_coords, DEVICE_CUDA, -1, 4);
        int64_t T = x_coords->shape[0];
        sparse_check_i32("sparse_subdivide.y_coords", y_coords, DEVICE_CUDA, 8 * T, 4);
        if (T > 0)
            subdivide_coords_kernel<<<grid_for(8 * T, SP_THREADS), SP_THREADS, 0,
                                      ctx->stream>>>((int32_t *)y_coords->data,
                                                     (const int32_t *)x_coords->data, T);
    }
    if (x_feats) {
        op_check_dense("sparse_subdivide.x_feats", x_feats, DEVICE_CUDA);
        op_check_dense("sparse_subdivide.y_feats", y_feats, DEVICE_CUDA);
        ASSERT(x_feats->ndim == 2 && y_feats->ndim == 2);
        int64_t T = x_feats->shape[0], C = x_feats->shape[1];
        ASSERT(y_feats->shape[0] == 8 * T && y_feats->shape[1] == C);
        if (x_coords)
            ASSERT(x_coords->shape[0] == T);
        if (T * C > 0)
            DISPATCH_2(x_feats->dtype, Tx, y_feats->dtype, Ty,
                       subdivide_feats_kernel<Tx, Ty><<<grid_for(8 * T * C, SP_THREADS),
                                                        SP_THREADS, 0, ctx->stream>>>(
                           (Ty *)y_feats->data, (const Tx *)x_feats->data, T, C));
    }
    op_done(ctx, "sparse_subdivide");
}

// ----------------------------------------------------------------------------
// GroupNorm over sites

#define SGN_MAX_SLICES 256
#define SGN_ELEMS_PER_SLICE 16384

static int sgn_slices(int64_t T, int64_t Cg)
{
    int64_t nb = (T * Cg + SGN_ELEMS_PER_SLICE - 1) / SGN_ELEMS_PER_SLICE;

    nb = nb < 1 ? 1 : nb > SGN_MAX_SLICES ? SGN_MAX_SLICES : nb;
    return (int)(nb < T ? nb : (T > 0 ? T : 1));
}

size_t op_sparse_groupnorm_scratch_bytes(int64_t T, int groups)
{
    (void)T;
    return arena_round((size_t)groups * SGN_MAX_SLICES * sizeof(float2)) +
           arena_round((size_t)groups * sizeof(float2));
}

/* partial[g * nb + k] = (mean, M2) of rows [lo, hi) of group g (slice k) */
template <typename T>
static __global__ void sgn_partial_kernel(float2 *partial, const T *x, int64_t Trows, int64_t C,
                                          int Cg, int nb)
{
    __shared__ float red[32];
    int g = blockIdx.y, k = blockIdx.x;
    int64_t per = (Trows + nb - 1) / nb;
    int64_t lo = (int64_t)k * per, hi = min(Trows, lo + per);
    int64_t n = hi > lo ? (hi - lo) * Cg : 0;
    float shift = n > 0 ? to_f32(x[lo * C + (int64_t)g * Cg]) : 0.0f;
    float s = 0.0f, ss = 0.0f;

    for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
        int64_t t = lo + e / Cg, c = (int64_t)g * Cg + e % Cg;
        float d = to_f32(x[t * C + c]) - shift;
        s += d;
        ss += d * d;
    }
    s = block_sum(s, red);
    ss = block_sum(ss, red);
    if (threadIdx.x == 0) {
        float cnt = (float)n;
        float mean = n > 0 ? s / cnt : 0.0f;
        float m2 = n > 0 ? fmaxf(ss - s * mean, 0.0f) : 0.0f;
        partial[(int64_t)g * nb + k] = make_float2(shift + mean, m2);
    }
}

/* stats[g] = (mean, rstd) of group g from its nb slice partials */
static __global__ void sgn_combine_kernel(float2 *stats, const float2 *partial, int64_t Trows,
                                          int Cg, int nb, int G, float eps)
{
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= G)
        return;
    /* two passes over the slices: the group mean as the count-weighted mean of
     * the slice means, then M2 = sum_k M2_k + n_k (mean_k - mean)^2 */
    int64_t per = (Trows + nb - 1) / nb;
    const float2 *pg = partial + (int64_t)g * nb;
    double tot = 0, sum = 0;
    for (int k = 0; k < nb; k++) {
        double nk = (double)max((int64_t)0, min(Trows, (int64_t)k * per + per) - (int64_t)k * per);
        tot += nk * Cg;
        sum += nk * Cg * (double)pg[k].x;
    }
    double gmean = tot > 0 ? sum / tot : 0.0, m2 = 0;
    for (int k = 0; k < nb; k++) {
        double nk = (double)max((int64_t)0, min(Trows, (int64_t)k * per + per) - (int64_t)k * per);
        double dm = (double)pg[k].x - gmean;
        m2 += (double)pg[k].y + nk * Cg * dm * dm;
    }
    double var = tot > 0 ? m2 / tot : 0.0;
    stats[g] = make_float2((float)gmean, (float)(1.0 / sqrt(var + (double)eps)));
}

template <typename Tx, typename Ty>
static __global__ void sgn_apply_kernel(Ty *y, const Tx *x, const float2 *stats, const void *w,
                                        const void *b, enum dtype pt, int64_t C, int Cg,
                                        int64_t n, bool silu)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < n;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = e % C;
        float2 st = stats[c / Cg];
        float v = (to_f32(x[e]) - st.x) * st.y;
        if (w)
            v = v * load_dt(w, pt, c) + load_dt(b, pt, c);
        y[e] = from_f32<Ty>(silu ? v / (1.0f + expf(-v)) : v);
    }
}

void op_sparse_groupnorm_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                              const struct tensor *x, int groups, const struct tensor *w,
                              const struct tensor *b, float eps, bool silu)
{
    op_check_dense("sparse_groupnorm.x", x, DEVICE_CUDA);
    op_check_dense("sparse_groupnorm.y", y, DEVICE_CUDA);
    ASSERT(x->ndim == 2 && tensor_same_shape(x, y));
    ASSERT((w == NULL) == (b == NULL));
    int64_t T = x->shape[0], C = x->shape[1];
    ASSERT(groups >= 1 && C % groups == 0);
    int Cg = (int)(C / groups);
    if (w) {
        op_check_dense("sparse_groupnorm.w", w, DEVICE_CUDA);
        op_check_dense("sparse_groupnorm.b", b, DEVICE_CUDA);
        ASSERT(tensor_numel(w) == C && tensor_numel(b) == C && w->dtype == b->dtype);
    }
    if (T == 0 || C == 0)
        return;
    int nb = sgn_slices(T, Cg);
    size_t mark = arena_mark(scratch);
    float2 *partial = (float2 *)arena_must_alloc(scratch, (size_t)groups * nb * sizeof(float2));
    float2 *stats = (float2 *)arena_must_alloc(scratch, (size_t)groups * sizeof(float2));

    DISPATCH_1(x->dtype, Tx,
               sgn_partial_kernel<Tx><<<dim3(nb, groups), SP_THREADS, 0, ctx->stream>>>(
                   partial, (const Tx *)x->data, T, C, Cg, nb));
    CUDA_CHECK(cudaGetLastError());
    sgn_combine_kernel<<<(groups + 127) / 128, 128, 0, ctx->stream>>>(stats, partial, T, Cg, nb,
                                                                      groups, eps);
    CUDA_CHECK(cudaGetLastError());
    DISPATCH_2(x->dtype, Tx, y->dtype, Ty,
               sgn_apply_kernel<Tx, Ty><<<grid_for(T * C, SP_THREADS), SP_THREADS, 0,
                                          ctx->stream>>>(
                   (Ty *)y->data, (const Tx *)x->data, stats, w ? w->data : NULL,
                   b ? b->data : NULL, w ? w->dtype : DTYPE_F32, C, Cg, T * C, silu));
    op_done(ctx, "sparse_groupnorm");
    arena_release(scratch, mark);
}

/* acc[g] (count, mean, M2) += the nb slice partials of a chunk of Trows rows
 * (Chan et al.'s merge, sequential over the slices, in double) */
static __global__ void sgn_merge_kernel(double *acc, const float2 *partial, int64_t Trows, int Cg,
                                        int nb, int G)
{
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= G)
        return;
    int64_t per = (Trows + nb - 1) / nb;
    const float2 *pg = partial + (int64_t)g * nb;
    double *a = acc + 3 * g;
    for (int k = 0; k < nb; k++) {
        double n = (double)max((int64_t)0, min(Trows, (int64_t)k * per + per) - (int64_t)k * per) * Cg;
        if (n <= 0)
            continue;
        double mean = (double)pg[k].x, m2 = (double)pg[k].y;
        if (a[0] == 0) {
            a[0] = n, a[1] = mean, a[2] = m2;
        } else {
            double tot = a[0] + n, d = mean - a[1];
            a[1] += d * n / tot;
            a[2] += m2 + d * d * a[0] * n / tot;
            a[0] = tot;
        }
    }
}

void op_sparse_groupnorm_stats_cuda(const struct op_ctx *ctx, struct arena *scratch,
                                    struct tensor *acc, const struct tensor *x, int groups)
{
    op_check_dense("sparse_groupnorm_stats.x", x, DEVICE_CUDA);
    ASSERT(acc->dtype == DTYPE_F64 && acc->device == DEVICE_CUDA && tensor_is_contiguous(acc) &&
           tensor_numel(acc) == 3 * (int64_t)groups && x->ndim == 2);
    int64_t T = x->shape[0], C = x->shape[1];
    ASSERT(groups >= 1 && C % groups == 0);
    int Cg = (int)(C / groups);
    if (T == 0 || C == 0)
        return;
    int nb = sgn_slices(T, Cg);
    size_t mark = arena_mark(scratch);
    float2 *partial = (float2 *)arena_must_alloc(scratch, (size_t)groups * nb * sizeof(float2));

    DISPATCH_1(x->dtype, Tx,
               sgn_partial_kernel<Tx><<<dim3(nb, groups), SP_THREADS, 0, ctx->stream>>>(
                   partial, (const Tx *)x->data, T, C, Cg, nb));
    CUDA_CHECK(cudaGetLastError());
    sgn_merge_kernel<<<(groups + 127) / 128, 128, 0, ctx->stream>>>((double *)acc->data, partial,
                                                                    T, Cg, nb, groups);
    op_done(ctx, "sparse_groupnorm_stats");
    arena_release(scratch, mark);
}

/* stats[g] = (mean, rstd) from acc[g] = (count, mean, M2) */
static __global__ void sgn_final_kernel(float2 *stats, const double *acc, int G, float eps)
{
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= G)
        return;
    const double *a = acc + 3 * g;
    double var = a[0] > 0 ? a[2] / a[0] : 0.0;
    stats[g] = make_float2((float)a[1], (float)(1.0 / sqrt(var + (double)eps)));
}

void op_sparse_groupnorm_apply_cuda(const struct op_ctx *ctx, struct arena *scratch,
                                    struct tensor *y, const struct tensor *x,
                                    const struct tensor *acc, int groups, const struct tensor *w,
                                    const struct tensor *b, float eps, bool silu)
{
    op_check_dense("sparse_groupnorm.x", x, DEVICE_CUDA);
    op_check_dense("sparse_groupnorm.y", y, DEVICE_CUDA);
    ASSERT(x->ndim == 2 && tensor_same_shape(x, y));
    ASSERT((w == NULL) == (b == NULL));
    ASSERT(acc->dtype == DTYPE_F64 && acc->device == DEVICE_CUDA &&
           tensor_numel(acc) == 3 * (int64_t)groups);
    int64_t T = x->shape[0], C = x->shape[1];
    ASSERT(groups >= 1 && C % groups == 0);
    int Cg = (int)(C / groups);
    if (w) {
        op_check_dense("sparse_groupnorm.w", w, DEVICE_CUDA);
        op_check_dense("sparse_groupnorm.b", b, DEVICE_CUDA);
        ASSERT(tensor_numel(w) == C && tensor_numel(b) == C && w->dtype == b->dtype);
    }
    if (T == 0 || C == 0)
        return;
    size_t mark = arena_mark(scratch);
    float2 *stats = (float2 *)arena_must_alloc(scratch, (size_t)groups * sizeof(float2));

    sgn_final_kernel<<<(groups + 127) / 128, 128, 0, ctx->stream>>>(
        stats, (const double *)acc->data, groups, eps);
    CUDA_CHECK(cudaGetLastError());
    DISPATCH_2(x->dtype, Tx, y->dtype, Ty,
               sgn_apply_kernel<Tx, Ty><<<grid_for(T * C, SP_THREADS), SP_THREADS, 0,
                                          ctx->stream>>>(
                   (Ty *)y->data, (const Tx *)x->data, stats, w ? w->data : NULL,
                   b ? b->data : NULL, w ? w->dtype : DTYPE_F32, C, Cg, T * C, silu));
    op_done(ctx, "sparse_groupnorm_apply");
    arena_release(scratch, mark);
}
