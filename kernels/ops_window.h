/*
 * ops_window.h - the coordinate-dependent ops of the SLAT decoder trunk
 * (stages/slat_dec_net/, shared by the Gaussian and the mesh decoders):
 * the shifted-window ("swin") partition of a voxel set, windowed
 * self-attention over it, and the sinusoidal absolute position embedding.
 *
 * Conventions are those of ops.h (struct tensor views in PyTorch order,
 * F32/F16/BF16, fp32 math, one rounding into the output dtype, _cpu on host
 * tensors, _cuda queued on ctx->stream, mismatches between our own ops are
 * internal faults). Coordinates are (T, 4) I32 rows (b, x, y, z) with b == 0
 * and 0 <= x, y, z < SPARSE_MAX_RES, checked by the stage that reads them
 * (sparse_coords_check in ops_sparse.h).
 *
 * Reference (sam-3d-objects cf06676, TD = sam3d_objects/model/backbone/
 * tdfy_dit/): TD/modules/sparse/attention/windowed_attn.py:24-192 (partition
 * and attention), TD/models/structured_latent_vae/base.py:11-33 (window 8,
 * shift 4 on odd blocks), TD/modules/transformer/blocks.py:9-56 (APE).
 * CPU: kernels/cpu/window.c, kernels/cpu/ape.c; CUDA: kernels/cuda/window.cu
 * (the flash kernels of kernels/cuda/attention.cuh reading rows through the
 * partition), kernels/cuda/ape.cu. Test: tests/test_op_window.c.
 */
#ifndef S3D_OPS_WINDOW_H
#define S3D_OPS_WINDOW_H

#include "log.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// window partition (host: once per coordinate set and shift)

/* The partition of calc_window_partition (windowed_attn.py:24-76): token i
 * with coords (0, x, y, z) lies in window (floor((x + shift) / window), ...
 * for y, z) - the shift is added and not cyclic, so border windows hold fewer
 * tokens. Windows are ordered by the reference's linear key
 * (wx * nwy + wy) * nwz + wz with nw_a = ceil((max_i (a_i + shift) + 1) /
 * window); empty windows are dropped. Inside a window the tokens keep their
 * row order (a stable sort; the reference's argsort is unstable, which only
 * permutes rows inside a window and does not change any result).
 * coords (T, 4) I32 host, T >= 1, valid; window >= 1, 0 <= shift < window.
 * perm (T) I32 host: slot s (window order) -> token row; off (T + 1) I32 host:
 * window w holds slots [off[w], off[w + 1]); entries past nwin + 1 untouched.
 * Returns nwin (>= 1); *max_len = the longest window. A counting sort when
 * there are at most 2^20 possible windows (always at 64^3: 9^3), else qsort
 * on (key, row); the same order either way. */
int64_t op_window_partition_cpu(struct tensor *perm, struct tensor *off,
                                const struct tensor *coords, int window, int shift,
                                int *max_len);

// ----------------------------------------------------------------------------
// windowed self-attention

/* o[i] = softmax(q_i K_w^T * scale) V_w over the tokens of i's window w, per
 * head (sparse_windowed_scaled_dot_product_self_attention; flash_attn_varlen
 * over the windows in the reference, windowed_attn.py:138-184).
 * qkv (T, 3, H, 64) contiguous F32/F16/BF16 in token order: the fused to_qkv
 * output ([q|k|v] x head x 64, modules.py:76-117); o (T, H, 64) contiguous,
 * qkv's dtype, token order, must not overlap qkv. perm (T) and off (nwin + 1,
 * the first nwin + 1 entries of op_window_partition_cpu's off) I32 on the op's
 * device. fp32 scores, online softmax and accumulation.
 * CPU: the windows gathered into slot order, op_attention_varlen_cpu, the rows
 * scattered back. CUDA: op_attention_varlen_cuda's kernels with the rows read
 * and written through perm (no gather, no T x T mask); tensor cores for
 * F16/BF16 (P rounded to the input dtype for P V, as FlashAttention), fp32
 * CUDA cores for F32. max_len >= the longest window (the grid's row tiles). */
void op_window_attention_cpu(struct tensor *o, const struct tensor *qkv, const struct tensor *perm,
                             const struct tensor *off, float scale);
void op_window_attention_cuda(const struct op_ctx *ctx, struct tensor *o, const struct tensor *qkv,
                              const struct tensor *perm, const struct tensor *off, int max_len,
                              float scale);

/* ASSERT op_window_attention's operands (above) on dev (shared by the CPU and
 * CUDA ops; kernels/cpu/window.c). */
void op_check_window_attention(const struct tensor *o, const struct tensor *qkv,
                               const struct tensor *perm, const struct tensor *off,
                               enum device dev);

// ----------------------------------------------------------------------------
// absolute position embedding

/* y = x + APE(coords) (AbsolutePositionEmbedder(C), blocks.py:9-56): with
 * fd = C / 3 / 2 and f_j = 1 / 10000^(j / fd) (fp32, j < fd), channels
 * [a * 2fd, a * 2fd + fd) hold sin(c_a f_j) and the next fd hold cos(c_a f_j)
 * for axis a = x, y, z (coords columns 1..3); channels from 6fd on are 0.
 * The argument c_a * f_j is one fp32 product, as torch.outer; the sum with x
 * is fp32, rounded once into y (the reference adds in fp32, then casts the
 * token stream to the trunk's dtype). x (T, C) any float dtype or NULL (y =
 * APE); y (T, C) any float dtype, contiguous; in place allowed. coords (T, 4)
 * I32 on y's device. */
/* f[0..C/3/2): the fp32 frequencies above (shared by the CPU and CUDA ops). */
void op_ape_freqs(float *f, int C);
void op_ape_add_cpu(struct tensor *y, const struct tensor *x, const struct tensor *coords);
void op_ape_add_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                     const struct tensor *coords);

// ----------------------------------------------------------------------------
// dispatch on the output tensor's device (ctx may be NULL for host tensors)

static inline void op_window_attention(const struct op_ctx *ctx, struct tensor *o,
                                       const struct tensor *qkv, const struct tensor *perm,
                                       const struct tensor *off, int max_len, float scale)
{
    /* max_len bounds the longest window of these T tokens: both devices check
     * it, so the CPU tests catch a bound the CUDA grid would reject */
    ASSERT(max_len >= 0 && max_len <= qkv->shape[0]);
    if (o->device == DEVICE_CUDA)
        op_window_attention_cuda(ctx, o, qkv, perm, off, max_len, scale);
    else
        op_window_attention_cpu(o, qkv, perm, off, scale);
}

static inline void op_ape_add(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                              const struct tensor *coords)
{
    if (y->device == DEVICE_CUDA)
        op_ape_add_cuda(ctx, y, x, coords);
    else
        op_ape_add_cpu(y, x, coords);
}

#ifdef __cplusplus
}
#endif
#endif
