/*
 * ops.h - the op library: every dense op a transformer stage needs, each with a
 * CPU reference (kernels/cpu/) and a CUDA version (kernels/cuda/).
 *
 * Conventions (all ops):
 * - Tensors are struct tensor views in PyTorch order (common/tensor.h). An op
 *   ASSERTs shapes, dtypes, devices and contiguity at its boundary: a mismatch
 *   between our own ops is an internal fault, never user input.
 * - Float dtypes are F32, F16 and BF16; all math is done in fp32 (fp32
 *   accumulation, fp32 statistics), F16/BF16 are rounded once, to nearest even,
 *   when stored.
 * - op_<name>_cpu works on DEVICE_HOST tensors; op_<name>_cuda on DEVICE_CUDA
 *   tensors, queued on ctx->stream (asynchronous unless S3D_SYNC=1).
 *   op_<name>() dispatches on the output tensor's device.
 * - "In place allowed" means y may be the same view as x (same data, same
 *   strides); any other overlap between outputs and inputs is not allowed.
 * - "Row broadcast" (elementwise and modulate ops): x is seen as R rows of C
 *   (C = last dim); a parameter p of numel G*C (G divides R) gives row r the
 *   vector p[(r / (R / G)) * C ...]. So p (C) applies to every row, and p (B, C)
 *   or (B, 1, C) applies row-block b of x (B, T, C) to batch item b.
 *
 * Head size is 64 everywhere in SAM 3D (design.md); attention asserts it.
 */
#ifndef S3D_OPS_H
#define S3D_OPS_H

#include "tensor.h"

#include <stdbool.h>
#include <stddef.h>

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

struct arena;
struct op_dnn;
struct op_gemm;

// ----------------------------------------------------------------------------
// CUDA context for ops

/* What every CUDA op needs. Created by op_ctx_init, destroyed by op_ctx_free.
 * Every library handle and cache lives here, none in file-level globals. */
struct op_ctx {
    cudaStream_t     stream;          /* every op is queued here (a blocking stream) */
    cublasLtHandle_t lt;              /* cuBLASLt handle for op_linear_cuda */
    struct op_gemm  *gemm;            /* op_linear_cuda's algorithm cache (gemm.cu) */
    struct op_dnn   *dnn;             /* cuDNN handle (made on the first convolution) and
                                       * algorithm cache (kernels/cuda/dnn.cuh) */
    void            *workspace;       /* device bytes for cuBLASLt, from an arena */
    size_t           workspace_size;  /* bytes at workspace */
    bool             sync;            /* S3D_SYNC=1: synchronize + check after each op */
};

#define OP_WORKSPACE_DEFAULT ((size_t)32 << 20)   /* cuBLAS's advice for Hopper */

/* Create the stream and cuBLASLt handle and take workspace_bytes (may be 0)
 * from dev (a device arena; NULL when workspace_bytes is 0). Reads S3D_SYNC.
 * Lowers the device's per-thread stack limit to 128 bytes (the driver reserves
 * it for every resident thread; a kernel needing more grows it at launch).
 * Returns 0, S3D_EDEVICE when there is no usable CUDA device, or S3D_ENOMEM
 * when the arena cannot hold the workspace (both logged). */
int  op_ctx_init(struct op_ctx *ctx, struct arena *dev, size_t workspace_bytes);
/* Destroy the stream and handle; the workspace goes back with its arena.
 * A zeroed or already-freed ctx is a no-op. */
void op_ctx_free(struct op_ctx *ctx);
/* Wait until every op queued on ctx->stream has finished; aborts on a CUDA error. */
void op_ctx_synchronize(const struct op_ctx *ctx);

// ----------------------------------------------------------------------------
// GEMM as torch.nn.Linear

/* y = x @ w^T (+ b) (+ y when accumulate), like F.linear.
 * x (..., K) contiguous, F32/F16/BF16; w (N, K) contiguous, same dtype as x
 * (row-major as stored in the checkpoint); b (N) any float dtype or NULL;
 * y (..., N) contiguous with the same leading dims as x, dtype of x or F32.
 * fp32 accumulation. accumulate: y is read and the product added to it (a
 * residual add; the old y is rounded to y's dtype as stored). y must not
 * overlap x, w or b. The CUDA op uses cuBLASLt (no TF32 for F32 inputs) with
 * the bias fused as an epilogue when b's dtype equals y's. */
void op_linear_cpu(struct tensor *y, const struct tensor *x, const struct tensor *w,
                   const struct tensor *b, bool accumulate);
void op_linear_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                    const struct tensor *w, const struct tensor *b, bool accumulate);

/* y = gelu_tanh(x @ w^T + b): the Linear -> GELU(approximate="tanh") of the
 * DiT and SLAT decoder MLPs in one pass. Operands as op_linear (b may be NULL,
 * no accumulate). The GELU is applied to the fp32 sum, which is rounded to y's
 * dtype once (the unfused pair rounds the Linear's output first: for F16/BF16
 * y the results differ by about one rounding, for F32 they are the same).
 * CUDA: the cuBLASLt GELU_BIAS / GELU epilogue (its GELU is the tanh form);
 * where cuBLASLt offers no such kernel, or the bias dtype is not y's, or
 * S3D_GEMM_EPILOGUE=0, op_linear then op_act (the unfused pair). */
void op_linear_gelu_cpu(struct tensor *y, const struct tensor *x, const struct tensor *w,
                        const struct tensor *b);
void op_linear_gelu_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                         const struct tensor *w, const struct tensor *b);

// ----------------------------------------------------------------------------
// norms

/* LayerNorm over the last dim: y = (x - mean) / sqrt(var + eps) * w + b, with
 * biased variance, fp32 statistics (torch.nn.functional.layer_norm).
 * x (..., C) contiguous F32/F16/BF16; y same shape, contiguous, any float dtype;
 * w, b (C) any float dtype, or NULL (no affine; w and b are NULL together or
 * b alone may be NULL). In place allowed. */
void op_layernorm_cpu(struct tensor *y, const struct tensor *x, const struct tensor *w,
                      const struct tensor *b, float eps);
void op_layernorm_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                       const struct tensor *w, const struct tensor *b, float eps);

/* LayerNorm then the adaLN modulation in one pass (the DiT blocks' norm +
 * modulate, with no rounding between them):
 *     y = (LN(x) * w + b) * (1 + scale) + shift
 * the same values as op_layernorm into an F32 tensor followed by op_modulate
 * with (C) vectors. x, y, w, b as op_layernorm; scale, shift (C) contiguous,
 * any float dtype, or NULL (scale NULL: op_layernorm; shift NULL: no shift).
 * round_scale: 1 + scale is rounded to scale's dtype first (computed in fp32,
 * then rounded), as autocast's fp16 `1 + scale` is before it meets the fp32 norm
 * (the SS flow); no-op for an F32 scale.
 * CUDA: one warp per row; rows of 2-byte x and y of one dtype with C a
 * multiple of 256 (at most 2048), 16-byte aligned, are held in registers and
 * moved with 16-byte loads and stores (op_layernorm takes that path too). */
void op_layernorm_mod_cpu(struct tensor *y, const struct tensor *x, const struct tensor *w,
                          const struct tensor *b, const struct tensor *scale,
                          const struct tensor *shift, float eps, bool round_scale);
void op_layernorm_mod_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                           const struct tensor *w, const struct tensor *b,
                           const struct tensor *scale, const struct tensor *shift, float eps,
                           bool round_scale);

/* Per-head RMS norm of the flow transformers (MultiHeadRMSNorm,
 * sam-3d-objects tdfy_dit/modules/attention/modules.py:14-21 and
 * sparse/attention/modules.py:16-31):
 *     y = x / max(||x||_2, 1e-12) * gamma[h] * scale      (over the last dim D)
 * computed in fp32, rounded once to y's dtype; scale is sqrt(D) in the model.
 * x (..., H, D): up to 6 dims, last dim contiguous (stride 1), other strides
 * free, so q and k can be normed inside a fused qkv output (see op_heads_view);
 * y the same shape and dtype (any strides with last stride 1); gamma (H, D)
 * contiguous, any float dtype. In place allowed. */
void op_rmsnorm_heads_cpu(struct tensor *y, const struct tensor *x, const struct tensor *gamma,
                          float scale);
void op_rmsnorm_heads_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                           const struct tensor *gamma, float scale);

// ----------------------------------------------------------------------------
// activations (elementwise, fp32 math; in place allowed)

enum op_act {
    OP_ACT_GELU_ERF,    /* 0.5 x (1 + erf(x / sqrt 2)): nn.GELU() */
    OP_ACT_GELU_TANH,   /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): GELU(approximate="tanh") */
    OP_ACT_SILU,        /* x / (1 + exp(-x)): nn.SiLU() */
};

/* act(v) in fp32, the scalar the CPU ops use (act.c). */
float op_act_f32(float v, enum op_act act);

/* y = act(x). x, y contiguous, same numel, any float dtypes. */
void op_act_cpu(struct tensor *y, const struct tensor *x, enum op_act act);
void op_act_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                 enum op_act act);

/* y = silu(a) * b elementwise (SwiGLU: the gate of the llama3 FeedForward,
 * sam3d_objects/model/layers/llama3/ff.py:37-41, in the fuser's projection
 * nets), as PyTorch evaluates F.silu(a) * b: silu(a) is
 * rounded to a's dtype (an fp16 tensor under autocast), then the product is
 * rounded to y's dtype. a, b, y contiguous, same numel, any float dtypes;
 * y may be a or b (in place). */
void op_swiglu_cpu(struct tensor *y, const struct tensor *a, const struct tensor *b);
void op_swiglu_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *a,
                    const struct tensor *b);

// ----------------------------------------------------------------------------
// softmax

/* Softmax over the last dim, fp32 math (max-subtracted, like torch).
 * x (..., N) contiguous; y same shape, contiguous, any float dtype. In place allowed. */
void op_softmax_cpu(struct tensor *y, const struct tensor *x);
void op_softmax_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x);

// ----------------------------------------------------------------------------
// elementwise (residuals and adaLN modulation), fp32 math, any float dtypes,
// all tensors contiguous, in place allowed (y == x or y == a)

/* y = x + a; x, a, y the same numel. */
void op_add_cpu(struct tensor *y, const struct tensor *x, const struct tensor *a);
void op_add_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                 const struct tensor *a);

/* y = x + g * a (layer-scale or gated residual); x, a, y (..., C) the same numel;
 * g row-broadcast (see the top of this file): (C) or (B, C). */
void op_add_scaled_cpu(struct tensor *y, const struct tensor *x, const struct tensor *g,
                       const struct tensor *a);
void op_add_scaled_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                        const struct tensor *g, const struct tensor *a);

/* y = x + round_a(g * a): add_scaled with the product rounded once into a's
 * dtype before the add (the reference's `h * gate` computed in h's dtype under
 * autocast, then added to an fp32 stream); the same as add_scaled for fp32 a. */
void op_add_gated_cpu(struct tensor *y, const struct tensor *x, const struct tensor *g,
                      const struct tensor *a);
void op_add_gated_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                       const struct tensor *g, const struct tensor *a);

/* y = x * (1 + s) + t (adaLN modulate); x, y (..., C); s, t row-broadcast,
 * same numel as each other; t may be NULL (no shift). */
void op_modulate_cpu(struct tensor *y, const struct tensor *x, const struct tensor *s,
                     const struct tensor *t);
void op_modulate_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                      const struct tensor *s, const struct tensor *t);

/* y = x + b; x, y (..., C); b row-broadcast (a bias added outside a GEMM). */
void op_add_bias_cpu(struct tensor *y, const struct tensor *x, const struct tensor *b);
void op_add_bias_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                      const struct tensor *b);

// ----------------------------------------------------------------------------
// fused scaled-dot-product attention

#define OP_HEAD_DIM 64

/* The (B, T, H, D) view of part `which` of a fused projection output
 * t (B, T, S, H, D) (S = 3 for qkv, 2 for kv; PyTorch's qkv.unbind(2)).
 * Never allocates; strides are t's. */
struct tensor op_heads_view(const struct tensor *t, int which);

/* o = softmax(q k^T * scale) v per batch item and head, no mask
 * (F.scaled_dot_product_attention; scale is 1/sqrt(64) in every model here).
 * q (B, Tq, H, 64), k and v (B, Tk, H, 64): any strides for B, T and H, last
 * dim contiguous, same dtype (F32/F16/BF16); Tq, Tk >= 1, any sizes.
 * o (B, Tq, H, 64) contiguous, q's dtype; must not overlap q, k, v.
 * fp32 scores, softmax and accumulation. The CUDA op is flash-style (online
 * softmax, no Tq x Tk matrix in memory): F16/BF16 on tensor cores when every
 * stride is a multiple of 8 elements and the bases are 16-byte aligned, else
 * (and for F32) a simpler fp32 kernel. The CPU op holds one row of Tk scores. */
void op_attention_cpu(struct tensor *o, const struct tensor *q, const struct tensor *k,
                      const struct tensor *v, float scale);
void op_attention_cuda(const struct op_ctx *ctx, struct tensor *o, const struct tensor *q,
                       const struct tensor *k, const struct tensor *v, float scale);

/* Variable-length attention (sequences packed along T, no padding; for
 * TRELLIS-style windows and batches of sparse tensors). q (Tq_total, H, 64),
 * k, v (Tk_total, H, 64), strides as above; o (Tq_total, H, 64) contiguous.
 * Sequence i is q rows [q_off[i], q_off[i+1]) attending to k/v rows
 * [k_off[i], k_off[i+1]). q_off, k_off: I32 (nseq + 1), on the tensors' device,
 * non-decreasing, q_off[0] = k_off[0] = 0, q_off[nseq] = Tq_total,
 * k_off[nseq] = Tk_total. max_tq >= every q length (the CUDA grid size).
 * A sequence with no keys gets zeros. */
void op_attention_varlen_cpu(struct tensor *o, const struct tensor *q, const struct tensor *k,
                             const struct tensor *v, const struct tensor *q_off,
                             const struct tensor *k_off, float scale);
void op_attention_varlen_cuda(const struct op_ctx *ctx, struct tensor *o, const struct tensor *q,
                              const struct tensor *k, const struct tensor *v,
                              const struct tensor *q_off, const struct tensor *k_off,
                              int max_tq, float scale);

#define OP_SMALL_MAX_D  128    /* largest head size */
#define OP_SMALL_MAX_TK 256    /* longest key sequence (CUDA keeps K and V in shared memory) */
#define OP_SMALL_MAX_KV 4096   /* Tk * D limit of the CUDA kernel (K + V fp32 in 48 KB) */

/* o = softmax(q k^T * scale) v per batch item and head, no mask, like
 * op_attention but for any head size D in [1, 128] and short key sequences:
 * PointPatchEmbed's window attention (sam-3d-objects EMB/pointmap.py:207-217,
 * 16 heads of 32 over 65-token windows).
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

/* The shape/dtype/device ASSERTs both attention_small ops share (dev = where
 * the tensors must live). */
void op_attention_small_check(const struct tensor *o, const struct tensor *q,
                              const struct tensor *k, const struct tensor *v, enum device dev);

// ----------------------------------------------------------------------------
// dispatch on the output tensor's device (ctx may be NULL for host tensors)

static inline void op_linear(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                             const struct tensor *w, const struct tensor *b, bool accumulate)
{
    if (y->device == DEVICE_CUDA)
        op_linear_cuda(ctx, y, x, w, b, accumulate);
    else
        op_linear_cpu(y, x, w, b, accumulate);
}

static inline void op_linear_gelu(const struct op_ctx *ctx, struct tensor *y,
                                  const struct tensor *x, const struct tensor *w,
                                  const struct tensor *b)
{
    if (y->device == DEVICE_CUDA)
        op_linear_gelu_cuda(ctx, y, x, w, b);
    else
        op_linear_gelu_cpu(y, x, w, b);
}

static inline void op_layernorm(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                                const struct tensor *w, const struct tensor *b, float eps)
{
    if (y->device == DEVICE_CUDA)
        op_layernorm_cuda(ctx, y, x, w, b, eps);
    else
        op_layernorm_cpu(y, x, w, b, eps);
}

static inline void op_layernorm_mod(const struct op_ctx *ctx, struct tensor *y,
                                    const struct tensor *x, const struct tensor *w,
                                    const struct tensor *b, const struct tensor *scale,
                                    const struct tensor *shift, float eps,
                                    bool round_scale)
{
    if (y->device == DEVICE_CUDA)
        op_layernorm_mod_cuda(ctx, y, x, w, b, scale, shift, eps, round_scale);
    else
        op_layernorm_mod_cpu(y, x, w, b, scale, shift, eps, round_scale);
}

static inline void op_rmsnorm_heads(const struct op_ctx *ctx, struct tensor *y,
                                    const struct tensor *x, const struct tensor *gamma, float scale)
{
    if (y->device == DEVICE_CUDA)
        op_rmsnorm_heads_cuda(ctx, y, x, gamma, scale);
    else
        op_rmsnorm_heads_cpu(y, x, gamma, scale);
}

static inline void op_act(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                          enum op_act act)
{
    if (y->device == DEVICE_CUDA)
        op_act_cuda(ctx, y, x, act);
    else
        op_act_cpu(y, x, act);
}

static inline void op_softmax(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x)
{
    if (y->device == DEVICE_CUDA)
        op_softmax_cuda(ctx, y, x);
    else
        op_softmax_cpu(y, x);
}

static inline void op_add(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                          const struct tensor *a)
{
    if (y->device == DEVICE_CUDA)
        op_add_cuda(ctx, y, x, a);
    else
        op_add_cpu(y, x, a);
}

static inline void op_add_scaled(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                                 const struct tensor *g, const struct tensor *a)
{
    if (y->device == DEVICE_CUDA)
        op_add_scaled_cuda(ctx, y, x, g, a);
    else
        op_add_scaled_cpu(y, x, g, a);
}

static inline void op_add_gated(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                                const struct tensor *g, const struct tensor *a)
{
    if (y->device == DEVICE_CUDA)
        op_add_gated_cuda(ctx, y, x, g, a);
    else
        op_add_gated_cpu(y, x, g, a);
}

static inline void op_modulate(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                               const struct tensor *s, const struct tensor *t)
{
    if (y->device == DEVICE_CUDA)
        op_modulate_cuda(ctx, y, x, s, t);
    else
        op_modulate_cpu(y, x, s, t);
}

static inline void op_add_bias(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                               const struct tensor *b)
{
    if (y->device == DEVICE_CUDA)
        op_add_bias_cuda(ctx, y, x, b);
    else
        op_add_bias_cpu(y, x, b);
}

static inline void op_attention(const struct op_ctx *ctx, struct tensor *o, const struct tensor *q,
                                const struct tensor *k, const struct tensor *v, float scale)
{
    if (o->device == DEVICE_CUDA)
        op_attention_cuda(ctx, o, q, k, v, scale);
    else
        op_attention_cpu(o, q, k, v, scale);
}

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

// ----------------------------------------------------------------------------
// helpers shared by the CPU and CUDA ops (kernels/cpu/op_util.c)

/* True for F32, F16, BF16. */
bool op_dtype_ok(enum dtype dt);
/* ASSERT that t is a float tensor on dev, contiguous; names the op on failure. */
void op_check_dense(const char *op, const struct tensor *t, enum device dev);
/* Rows (numel / last dim) and last dim of a contiguous tensor. */
int64_t op_rows(const struct tensor *t);
int64_t op_cols(const struct tensor *t);
/* Group count G of a row-broadcast parameter p for x with R rows of C
 * (see the top of this file); ASSERTs that p fits. */
int64_t op_bcast_groups(const char *op, const struct tensor *p, int64_t rows, int64_t cols);
/* ASSERT op_linear's operands (see op_linear_cpu) on dev; sets M, N, K. */
void op_check_linear(const struct tensor *y, const struct tensor *x, const struct tensor *w,
                     const struct tensor *b, enum device dev, int64_t *M, int64_t *N, int64_t *K);
/* ASSERT attention operands on dev: q, k, v with nd dims (4 dense, 3 varlen),
 * last dim 64 contiguous, one dtype, k and v the same shape; o contiguous with
 * q's shape and dtype. */
void op_check_attention(const struct tensor *o, const struct tensor *q, const struct tensor *k,
                        const struct tensor *v, int nd, enum device dev);

#ifdef __cplusplus
}
#endif
#endif
