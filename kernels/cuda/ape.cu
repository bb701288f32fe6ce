/*
 * ape.cu - op_ape_add_cuda: y = x + APE(coords), one thread per element, the
 * frequencies computed once on the host (op_ape_freqs, the same fp32 values as
 * the CPU op) and passed by value. See ops_window.h.
 */
#include "common.cuh"
#include "ops_sparse.h"
#include "ops_window.h"

#define APE_THREADS 256
#define APE_MAX_FD  512          /* C <= 3072 */

struct ape_freqs {
    float f[APE_MAX_FD];
};

template <typename Tx, typename Ty>
static __global__ void ape_add_kernel(Ty *y, const Tx *x, const int32_t *coords, int64_t T, int C,
                                      int fd, const struct ape_freqs fr)
{
    for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < T * C;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i  = e / C;
        int     ch = (int)(e - i * C);
        float   v  = 0.0f;
        if (ch < 6 * fd) {
            int   a = ch / (2 * fd), j = ch - a * 2 * fd;
            float arg = __fmul_rn((float)coords[i * 4 + 1 + a], fr.f[j < fd ? j : j - fd]);
            v = j < fd ? sinf(arg) : cosf(arg);
        }
        if (x)
            v = __fadd_rn(to_f32(x[e]), v);
        y[e] = from_f32<Ty>(v);
    }
}

void op_ape_add_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                     const struct tensor *coords)
{
    struct ape_freqs fr;

    op_check_dense("ape_add.y", y, DEVICE_CUDA);
    ASSERT(y->ndim == 2);
    int64_t T = y->shape[0];
    int C = (int)y->shape[1], fd = C / 3 / 2;
    ASSERT(fd <= APE_MAX_FD);
    if (x) {
        op_check_dense("ape_add.x", x, DEVICE_CUDA);
        ASSERT(tensor_same_shape(x, y));
    }
    sparse_check_i32("ape_add.coords", coords, DEVICE_CUDA, T, 4);
    if (T * C == 0)
        return;
    op_ape_freqs(fr.f, C);
    const int32_t *c = (const int32_t *)coords->data;
    /* x NULL: the same kernel with Tx = Ty and a null pointer */
    if (!x)
        DISPATCH_1(y->dtype, Ty,
                   ape_add_kernel<Ty, Ty><<<grid_for(T * C, APE_THREADS), APE_THREADS, 0,
                                            ctx->stream>>>((Ty *)y->data, (const Ty *)NULL, c, T,
                                                           C, fd, fr));
    else
        DISPATCH_2(x->dtype, Tx, y->dtype, Ty,
                   ape_add_kernel<Tx, Ty><<<grid_for(T * C, APE_THREADS), APE_THREADS, 0,
                                            ctx->stream>>>((Ty *)y->data, (const Tx *)x->data, c,
                                                           T, C, fd, fr));
    op_done(ctx, "ape_add");
}
