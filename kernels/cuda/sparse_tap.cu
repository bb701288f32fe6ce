/*
 * sparse_tap.cu - op_sparse_conv3_tap_cuda: the tap-wise submanifold conv
 * (ops_sparse.h). Per group of g taps: one cuBLASLt GEMM Z = x . wt[k0..k0+g)^T
 * with fp32 output (Tx, g Cout), then one gather-sum kernel over the T output
 * rows (a thread per output element, Z rows read coalesced along Cout) that
 * adds the group's taps in k order to the fp32 accumulator (started from b),
 * and on the last group rounds into y. CPU reference: kernels/cpu/sparse_tap.c.
 * Test: tests/test_op_sparse_tap.c.
 */
#include "common.cuh"

#include "arena.h"
#include "ops_sparse.h"

#define TAP_THREADS 256

size_t op_sparse_conv3_tap_scratch_bytes(int64_t T, int64_t Tx, int64_t Cout, int taps)
{
    ASSERT(taps >= 1 && taps <= SPARSE_K3);
    size_t z = arena_round((size_t)Tx * (size_t)taps * (size_t)Cout * sizeof(float));

    return z + (taps < SPARSE_K3 ? arena_round((size_t)T * (size_t)Cout * sizeof(float)) : 0);
}

/* acc[p][o] (or y when last) = (first ? b[o] : acc[p][o]) + sum over the g taps
 * k0 + j of z[nbr[p][k0 + j]][j][o] for the present neighbours, in j order. */
template <typename Ty>
static __global__ void tap_gather_kernel(Ty *y, float *acc, const float *z, const void *b,
                                         enum dtype bdt, const int32_t *nbr, int64_t T,
                                         int Cout, int k0, int g, bool first, bool last)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < T * Cout;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t p = e / Cout;
        int     o = (int)(e - p * Cout);
        float   a = first ? (b ? load_dt(b, bdt, o) : 0.0f) : acc[e];
        const int32_t *nr = nbr + p * SPARSE_K3 + k0;
        for (int j = 0; j < g; j++) {
            int32_t r = nr[j];
            if (r >= 0)
                a += z[((int64_t)r * g + j) * Cout + o];
        }
        if (last)
            y[e] = from_f32<Ty>(a);
        else
            acc[e] = a;
    }
}

void op_sparse_conv3_tap_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                              const struct tensor *x, const struct tensor *wt,
                              const struct tensor *b, const struct tensor *nbr)
{
    sparse_conv3_tap_check(y, x, wt, b, nbr, DEVICE_CUDA);
    ASSERT(x->dtype == wt->dtype);
    int64_t T = y->shape[0], Tx = x->shape[0], Cin = x->shape[1], Cout = wt->shape[1];
    if (T == 0 || Cout == 0)
        return;

    /* the most taps per group that the free scratch holds */
    size_t used = scratch->used, avail = scratch->size > used + ARENA_ALIGN ?
                                         scratch->size - used - ARENA_ALIGN : 0;
    int g = SPARSE_K3;
    while (g > 1 && op_sparse_conv3_tap_scratch_bytes(T, Tx, Cout, g) > avail)
        g--;
    size_t mark = arena_mark(scratch);
    float *acc = g < SPARSE_K3 ? (float *)arena_must_alloc(scratch, (size_t)T * (size_t)Cout * 4)
                               : NULL;
    float *zb = (float *)arena_must_alloc(scratch, (size_t)Tx * (size_t)g * (size_t)Cout * 4);

    for (int k0 = 0; k0 < SPARSE_K3; k0 += g) {
        int gk = SPARSE_K3 - k0 < g ? SPARSE_K3 - k0 : g;
        const int64_t wshape[2] = {gk * Cout, Cin}, zshape[2] = {Tx, gk * Cout};
        struct tensor wg = tensor_view((char *)wt->data + (size_t)(k0 * Cout * Cin) *
                                       dtype_size(wt->dtype), wt->dtype, DEVICE_CUDA, wshape, 2);
        struct tensor zt = tensor_view(zb, DTYPE_F32, DEVICE_CUDA, zshape, 2);
        op_linear_cuda(ctx, &zt, x, &wg, NULL, false);
        bool first = k0 == 0, last = k0 + gk == SPARSE_K3;
        DISPATCH_1(y->dtype, Ty,
            tap_gather_kernel<Ty><<<grid_for(T * Cout, TAP_THREADS), TAP_THREADS, 0,
                                    ctx->stream>>>((Ty *)y->data, acc, zb,
                                                   b ? b->data : NULL,
                                                   b ? b->dtype : DTYPE_F32,
                                                   (const int32_t *)nbr->data, T, (int)Cout,
                                                   k0, gk, first, last));
        CUDA_CHECK(cudaGetLastError());
    }
    op_done(ctx, "sparse_conv3_tap");
    arena_release(scratch, mark);
}
