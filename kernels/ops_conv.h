/*
 * ops_conv.h - the convolution family: 2-D convolution (NCHW, cuDNN), the k=2
 * s=2 transposed 2-D convolution, and the channels-last 3-D ops (the "same"
 * 3-D convolution through cuDNN's NDHWC path, its weight packing, and the 3-D
 * pixel shuffle of TRELLIS's UpsampleBlock3d). MoGe's head uses the 2-D ones,
 * the SS decoder (stages/ss_decode_net) the 3-D ones.
 *
 * 3-D layout: grids are channels-last, x (N, D, H, W, C) - what PyTorch calls
 * channels_last_3d (NDHWC) - so a per-voxel LayerNorm over channels is
 * op_layernorm over the last dim, and cuDNN runs its tensor-core NDHWC path.
 * A PyTorch (N, C, D, H, W) tensor and ours hold the same numbers with the
 * channel axis moved last. Conv weights are packed once at load from the
 * checkpoint's (Co, Ci, K, K, K) into (Co, K, K, K, Ci) (cuDNN's NDHWC
 * filter layout, "KTRSC"): op_conv3d_pack_weight.
 *
 * Conventions are those of ops.h: struct tensor views in PyTorch dimension
 * order, contiguous, F32/F16/BF16, fp32 math and accumulation, one rounding
 * into the output dtype, op_<name>_cpu on DEVICE_HOST tensors,
 * op_<name>_cuda queued on ctx->stream, op_<name>() dispatching on the
 * output's device. Shape or dtype mismatches are internal faults (ASSERT).
 * cuDNN's handle and algorithm cache are the op context's (kernels/cuda/dnn.cuh).
 *
 * CPU references: kernels/cpu/conv2d.c, kernels/cpu/conv3d.c. CUDA:
 * kernels/cuda/cudnn.cu (conv2d), kernels/cuda/conv2d.cu (transposed),
 * kernels/cuda/conv3d.cu. Tests: tests/test_op_conv2d.c, tests/test_op_conv3d.c.
 */
#ifndef S3D_OPS_CONV_H
#define S3D_OPS_CONV_H

#include "arena.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Make ctx's cuDNN handle now (else the first convolution makes it): cuDNN's
 * libraries load then, a large part of a convolving stage's first-use cost.
 * Any host thread whose current device is ctx's may call it (the handle's
 * lock is taken); stage_rt_dnn_begin calls it beside a weight load. */
void op_ctx_dnn_prepare(const struct op_ctx *ctx);

// ----------------------------------------------------------------------------
// 2-D convolution (NCHW)

enum op_pad_mode {
    OP_PAD_ZEROS,       /* nn.Conv2d default */
    OP_PAD_REPLICATE,   /* padding_mode='replicate' (edge pixels repeated) */
};

/* y = conv2d(pad(x), w) + b, then ReLU when relu is set (nn.Conv2d with
 * dilation 1, groups 1; the ReLU fuses MoGe's output block).
 * x (N, Cin, H, W); w (Cout, Cin, KH, KW) with x's dtype; b (Cout) any float
 * dtype or NULL; y (N, Cout, Ho, Wo) any float dtype on the CPU, x's dtype on
 * CUDA (cuDNN writes x's type), Ho = (H + 2 pad - KH) /
 * stride + 1 (same for W). pad >= 0 on all four sides (replicate padding
 * works for any size, like F.pad(mode='replicate')). fp32 accumulation.
 * y must not overlap x.
 * The CUDA op uses cuDNN (kernels/cuda/cudnn.cu); replicate padding is a
 * separate copy into scratch memory taken from `scratch` (a device arena,
 * released again before returning). */
void op_conv2d_cpu(struct tensor *y, const struct tensor *x, const struct tensor *w,
                   const struct tensor *b, int stride, int pad, enum op_pad_mode mode, bool relu);
void op_conv2d_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                    const struct tensor *x, const struct tensor *w, const struct tensor *b,
                    int stride, int pad, enum op_pad_mode mode, bool relu);
/* Scratch bytes op_conv2d_cuda takes besides cuDNN's workspace: the
 * replicate-padded copy of x (0 for zero padding or pad 0). The workspace is
 * that of the fastest deterministic algorithm fitting the scratch arena's free
 * space (IMPLICIT_GEMM needs none), so an arena sized by a plan needs
 * OP_CONV_WS_HEADROOM on top for the fast algorithms. */
size_t op_conv2d_scratch_bytes(const struct tensor *y, const struct tensor *x, int pad,
                               enum op_pad_mode mode);
#define OP_CONV_WS_HEADROOM ((size_t)64 << 20)

/* nn.ConvTranspose2d(kernel_size=2, stride=2, padding=0):
 *     y[n, co, 2i+dy, 2j+dx] = b[co] + sum_ci x[n, ci, i, j] * w[ci, co, dy, dx]
 * x (N, Cin, H, W); w (Cin, Cout, 2, 2) with x's dtype; b (Cout) any float
 * dtype or NULL; y (N, Cout, 2H, 2W) any float dtype. fp32 accumulation. */
void op_conv_transpose2x2_cpu(struct tensor *y, const struct tensor *x, const struct tensor *w,
                              const struct tensor *b);
void op_conv_transpose2x2_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                               const struct tensor *w, const struct tensor *b);

// ----------------------------------------------------------------------------
// 3-D (channels-last)

/* y = conv3d(x, w, padding=K/2) + b, as nn.Conv3d(Ci, Co, K, padding=K//2)
 * (cross-correlation, stride 1, dilation 1, groups 1, zero padding) in
 * channels-last layout:
 *     y[n, d, h, w, o] = b[o] + sum_{i, a, c, e} x[n, d+a-P, h+c-P, w+e-P, i] * wp[o, a, c, e, i]
 * with P = K / 2 and out-of-grid x read as 0.
 * x (N, D, H, W, Ci) any float dtype; wp (Co, K, K, K, Ci) packed
 * (op_conv3d_pack_weight), K odd, F32/F16/BF16; b (Co) any float dtype or
 * NULL; y (N, D, H, W, Co). When x's dtype differs from wp's, x is first
 * rounded to wp's dtype (autocast's cast of a conv input; CUDA: into scratch).
 * CPU: y any float dtype, fp32 accumulation, one rounding into y.
 * CUDA: y has wp's dtype; cuDNN (compute type FLOAT,
 * tensor cores for F16/BF16, plain FMA - no TF32 - for F32) writes the
 * convolution in y's dtype, then the bias is added in fp32 and rounded again,
 * the two roundings of PyTorch's cuDNN conv (convolution, then
 * output.add_(bias)). The cuDNN workspace is taken from the free space of
 * `scratch` (a device arena) and released before returning. y must not
 * overlap x. */
void op_conv3d_cpu(struct tensor *y, const struct tensor *x, const struct tensor *wp,
                   const struct tensor *b);
void op_conv3d_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                    const struct tensor *x, const struct tensor *wp, const struct tensor *b);

/* Pack a PyTorch Conv3d weight w (Co, Ci, K, K, K) F32 host (contiguous) into
 * dst (Co, K, K, K, Ci) host, converted exactly once to dtype dt (F32, F16,
 * BF16; round to nearest even). dst holds Co*Ci*K^3 elements of dt. */
void op_conv3d_pack_weight(void *dst, enum dtype dt, const float *w, int64_t Co, int64_t Ci,
                           int64_t K);

/* 3-D pixel shuffle by 2 (TRELLIS modules/spatial.py:5-14, sam-3d-objects
 * tdfy_dit/modules/spatial.py), channels-last:
 *     y[n, 2d+i, 2h+j, 2w+k, c] = x[n, d, h, w, 8c + 4i + 2j + k],  i, j, k in {0, 1}
 * (PyTorch: in[b, 8c + 4i + 2j + k, d, h, w] -> out[b, c, 2d+i, 2h+j, 2w+k]).
 * x (N, D, H, W, 8C), y (N, 2D, 2H, 2W, C), any float dtypes (a pure copy
 * when they match). Must not overlap. */
void op_pixel_shuffle3d_cpu(struct tensor *y, const struct tensor *x);
void op_pixel_shuffle3d_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x);

/* The shape/dtype ASSERTs of op_conv3d_* on device dev; returns K. */
int64_t op_conv3d_check(const struct tensor *y, const struct tensor *x, const struct tensor *wp,
                        const struct tensor *b, enum device dev);
/* The shape/dtype ASSERTs of op_pixel_shuffle3d_* on device dev. */
void op_pixel_shuffle3d_check(const struct tensor *y, const struct tensor *x, enum device dev);

// ----------------------------------------------------------------------------
// dispatch on the output tensor's device

static inline void op_conv3d(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                             const struct tensor *x, const struct tensor *wp,
                             const struct tensor *b)
{
    if (y->device == DEVICE_CUDA)
        op_conv3d_cuda(ctx, scratch, y, x, wp, b);
    else
        op_conv3d_cpu(y, x, wp, b);
}

static inline void op_pixel_shuffle3d(const struct op_ctx *ctx, struct tensor *y,
                                      const struct tensor *x)
{
    if (y->device == DEVICE_CUDA)
        op_pixel_shuffle3d_cuda(ctx, y, x);
    else
        op_pixel_shuffle3d_cpu(y, x);
}

static inline void op_conv2d(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                             const struct tensor *x, const struct tensor *w,
                             const struct tensor *b, int stride, int pad, enum op_pad_mode mode,
                             bool relu)
{
    if (scratch && scratch->plan) {      /* plan mode: count the scratch only (arena.h) */
        if (y->device == DEVICE_CUDA)
            arena_transient(scratch, op_conv2d_scratch_bytes(y, x, pad, mode));
        return;
    }
    if (y->device == DEVICE_CUDA)
        op_conv2d_cuda(ctx, scratch, y, x, w, b, stride, pad, mode, relu);
    else
        op_conv2d_cpu(y, x, w, b, stride, pad, mode, relu);
}

static inline void op_conv_transpose2x2(const struct op_ctx *ctx, struct tensor *y,
                                        const struct tensor *x, const struct tensor *w,
                                        const struct tensor *b)
{
    if (y->device == DEVICE_CUDA)
        op_conv_transpose2x2_cuda(ctx, y, x, w, b);
    else
        op_conv_transpose2x2_cpu(y, x, w, b);
}

#ifdef __cplusplus
}
#endif
#endif
