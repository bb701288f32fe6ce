/*
 * attention_small.cu - attention over many short sequences with any head size
 * up to 128 (PointPatchEmbed's 65-token windows, head size 32), and the
 * SwiGLU gate y = silu(a) * b. See kernels/ops.h.
 * CPU references: kernels/cpu/attention_small.c, kernels/cpu/swiglu.c.
 * Test: tests/test_op_attention_small.c.
 */
#include "common.cuh"

#define ATTS_WARPS 8

// ----------------------------------------------------------------------------
// attention

/* One block per (batch item b, head h): K and V of that head staged in shared
 * memory as fp32 rows padded to D + 1 floats (no bank conflicts when lanes walk
 * keys), then each warp takes query rows i = warp, warp + 8, ...: lanes split
 * the keys for the scores and the head dims for the output. */
template <typename T>
__global__ void attention_small_kernel(T *o, const T *q, const T *k, const T *v, int H, int Tq,
                                       int Tk, int D, int64_t qsb, int64_t qst, int64_t qsh,
                                       int64_t ksb, int64_t kst, int64_t ksh, int64_t vsb,
                                       int64_t vst, int64_t vsh, float scale)
{
    extern __shared__ float smem[];
    int     bh = blockIdx.x, b = bh / H, h = bh % H;
    int     ld = D + 1;
    float  *ks = smem, *vs = ks + Tk * ld;
    int     lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float  *qs = vs + Tk * ld + warp * (D + Tk);   /* this warp's query row */
    float  *ps = qs + D;                           /* and its Tk probabilities */

    for (int e = threadIdx.x; e < Tk * D; e += blockDim.x) {
        int j = e / D, d = e % D;
        ks[j * ld + d] = to_f32(k[b * ksb + j * kst + h * ksh + d]);
        vs[j * ld + d] = to_f32(v[b * vsb + j * vst + h * vsh + d]);
    }
    __syncthreads();

    for (int i = warp; i < Tq; i += ATTS_WARPS) {
        const T *qi = q + b * qsb + (int64_t)i * qst + h * qsh;
        for (int d = lane; d < D; d += 32)
            qs[d] = to_f32(qi[d]);
        __syncwarp();
        float mx = -INFINITY;
        for (int j = lane; j < Tk; j += 32) {
            float dot = 0.0f;
            for (int d = 0; d < D; d++)
                dot += qs[d] * ks[j * ld + d];
            ps[j] = dot * scale;
            mx = fmaxf(mx, ps[j]);
        }
        mx = warp_max(mx);
        float sum = 0.0f;
        for (int j = lane; j < Tk; j += 32) {
            float p = expf(ps[j] - mx);
            ps[j] = p;
            sum += p;
        }
        sum = warp_sum(sum);
        __syncwarp();
        float inv = 1.0f / sum;
        T *oi = o + (((int64_t)b * Tq + i) * H + h) * D;
        for (int d = lane; d < D; d += 32) {
            float acc = 0.0f;
            for (int j = 0; j < Tk; j++)
                acc += ps[j] * vs[j * ld + d];
            oi[d] = from_f32<T>(acc * inv);
        }
        __syncwarp();   /* qs and ps are rewritten by the next row */
    }
}

static size_t attention_small_smem(int Tk, int D)
{
    return sizeof(float) * ((size_t)2 * Tk * (D + 1) + (size_t)ATTS_WARPS * (D + Tk));
}

void op_attention_small_cuda(const struct op_ctx *ctx, struct tensor *o, const struct tensor *q,
                             const struct tensor *k, const struct tensor *v, float scale)
{
    op_attention_small_check(o, q, k, v, DEVICE_CUDA);
    int64_t D = q->shape[3], Tk = k->shape[1];
    int64_t B = q->shape[0], Tq = q->shape[1], H = q->shape[2];
    if (B == 0 || Tq == 0 || H == 0)
        return;
    ASSERT(B * H <= 0x7fffffff);

    size_t smem = attention_small_smem((int)Tk, (int)D);
    ASSERT(smem <= 48 * 1024);
    DISPATCH_1(q->dtype, T,
        attention_small_kernel<T><<<(unsigned)(B * H), ATTS_WARPS * 32, smem, ctx->stream>>>(
            (T *)o->data, (const T *)q->data, (const T *)k->data, (const T *)v->data, (int)H,
            (int)Tq, (int)Tk, (int)D, q->stride[0], q->stride[1], q->stride[2], k->stride[0],
            k->stride[1], k->stride[2], v->stride[0], v->stride[1], v->stride[2], scale));
    op_done(ctx, "attention_small");
}

// ----------------------------------------------------------------------------
// swiglu

template <typename Ta, typename Tb, typename Ty>
__global__ void swiglu_kernel(Ty *y, const Ta *a, const Tb *b, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float x = to_f32(a[i]);
        float s = to_f32(from_f32<Ta>(x / (1.0f + expf(-x))));   /* silu(a) stored in a's dtype */
        y[i] = from_f32<Ty>(s * to_f32(b[i]));
    }
}

void op_swiglu_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *a,
                    const struct tensor *b)
{
    op_check_dense("swiglu.a", a, DEVICE_CUDA);
    op_check_dense("swiglu.b", b, DEVICE_CUDA);
    op_check_dense("swiglu.y", y, DEVICE_CUDA);
    int64_t n = tensor_numel(y);
    ASSERT(tensor_numel(a) == n && tensor_numel(b) == n);
    if (n == 0)
        return;
    DISPATCH_2(a->dtype, Ta, b->dtype, Tb, DISPATCH_1(y->dtype, Ty,
        swiglu_kernel<Ta, Tb, Ty><<<grid_for(n, 256), 256, 0, ctx->stream>>>(
            (Ty *)y->data, (const Ta *)a->data, (const Tb *)b->data, n)));
    op_done(ctx, "swiglu");
}
