/*
 * ops_small.h - ops beside ops.h that the condition stage needs and ops.h does
 * not cover (same conventions as ops.h: PyTorch-order struct tensor views,
 * fp32 math, F16/BF16 rounded once when stored, ASSERT at the boundary):
 *
 * - op_attention_small: attention over many short sequences with any head size
 *   up to 128. PointPatchEmbed's window attention (sam-3d-objects
 *   EMB/pointmap.py:207-217, a timm Block of 16 heads of 32 over 65-token
 *   windows) has head size 32, which op_attention (head size 64) rejects.
 * - op_swiglu: y = silu(a) * b, the gate of the llama3 FeedForward
 *   (sam3d_objects/model/layers/llama3/ff.py:37-41) used by the fuser's
 *   projection nets.
 *
 * CPU references: kernels/cpu/attention_small.c, kernels/cpu/swiglu.c.
 * CUDA: kernels/cuda/attention_small.cu, kernels/cuda/swiglu.cu.
 * Tests: tests/test_op_attention_small.c (both ops).
 */
#ifndef S3D_OPS_SMALL_H
#define S3D_OPS_SMALL_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OP_SMALL_MAX_D  128    /* largest head size */
#define OP_SMALL_MAX_TK 256    /* longest key sequence (CUDA keeps K and V in shared memory) */
#define OP_SMALL_MAX_KV 4096   /* Tk * D limit of the CUDA kernel (K + V fp32 in 48 KB) */

/* o = softmax(q k^T * scale) v per batch item and head, no mask, like
 * op_attention but for any head size D in [1, 128] and short key sequences.
 * q (B, Tq, H, D), k and v (B, Tk, H, D): any strides for B, T and H, last dim
 * contiguous (stride 1), same dtype (F32/F16/BF16); B, Tq >= 0, 1 <= Tk <= 256,
 * Tk * D <= 4096. o (B, Tq, H, D) contiguous, q's dtype; must not overlap q, k, v.
 * fp32 scores, max-subtracted softmax and accumulation; o rounded once.
 * CUDA: one block per (batch item, head), K and V staged in shared memory in
 * fp32, one warp per query row. */
void op_attention_small_cpu(struct tensor *o, const struct tensor *q, const struct tensor *k,
                            const struct tensor *v, float scale);
void op_attention_small_cuda(const struct op_ctx *ctx, struct tensor *o, const struct tensor *q,
                             const struct tensor *k, const struct tensor *v, float scale);

/* y = silu(a) * b elementwise, as PyTorch evaluates F.silu(a) * b: silu(a) is
 * rounded to a's dtype (an fp16 tensor under autocast), then the product is
 * rounded to y's dtype. a, b, y contiguous, same numel, any float dtypes;
 * y may be a or b (in place). */
void op_swiglu_cpu(struct tensor *y, const struct tensor *a, const struct tensor *b);
void op_swiglu_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *a,
                    const struct tensor *b);

/* The shape/dtype/device ASSERTs both attention_small ops share (dev = where
 * the tensors must live). */
void op_attention_small_check(const struct tensor *o, const struct tensor *q,
                              const struct tensor *k, const struct tensor *v, enum device dev);

static inline void op_attention_small(const struct op_ctx *ctx, struct tensor *o,
                                      const struct tensor *q, const struct tensor *k,
                                      const struct tensor *v, float scale)
{
    if (o->device == DEVICE_CUDA)
        op_attention_small_cuda(ctx, o, q, k, v, scale);
    else
        op_attention_small_cpu(o, q, k, v, scale);
}

static inline void op_swiglu(const struct op_ctx *ctx, struct tensor *y, const struct tensor *a,
                             const struct tensor *b)
{
    if (y->device == DEVICE_CUDA)
        op_swiglu_cuda(ctx, y, a, b);
    else
        op_swiglu_cpu(y, a, b);
}

#ifdef __cplusplus
}
#endif
#endif
