/*
 * gs_head.h - the Gaussian decoder's to_representation and the transforms of
 * Gaussian.save_ply, per voxel and Gaussian, in fp32 exactly as the reference
 * writes them (CPU: gs_head.c, CUDA: gs_head_cuda.cu; the same expressions,
 * with no fused multiply-add on the GPU).
 *
 * Reference (sam-3d-objects @cf06676, TD = sam3d_objects/model/backbone/tdfy_dit/):
 *   TD/models/structured_latent_vae/decoder_gs.py:75-150  channel layout, to_representation
 *   TD/representations/gaussian/gaussian_model.py:45-161 activations, biases, save_ply
 *   TD/representations/gaussian/general_utils.py:20-21   inverse_sigmoid
 *   FS:checkpoints/hf/slat_decoder_gs.yaml               representation_config
 * Spec: spec decoders.md §5, §7.2.
 *
 * raw (N, 14G) F32 is the out_layer output of N voxels; Gaussian m = v*G + g
 * of voxel v (coords c = coords[v, 1:]), with P = offset_perturbation[g]:
 *   xyz      = ((c + 0.5) / 64 + tanh(raw_xyz * 1 + P) / 64 * 0.5 * 1.5) * 1 + (-0.5)
 *   f_dc     = raw_fdc * 1
 *   opacity  = log(o / (1 - o)),  o = sigmoid(raw_o * 1 + logit(0.1))
 *   scale    = log(sqrt(softplus(raw_s * 1 + softplus^-1(0.004))^2 + 0.0009^2))
 *   rotation = raw_r * 0.1 + (1, 0, 0, 0)        (wxyz, not normalised)
 * channels: xyz [0, 3G), f_dc [3G, 6G), scaling [6G, 9G), rotation [9G, 13G),
 * opacity [13G, 14G), attribute j of Gaussian g at g*d + j. Each line is
 * evaluated left to right in fp32 (the multiplications by 1 are exact and
 * skipped); softplus is torch's (x > 20: x, else log1p(exp(x))); opacity is
 * +inf when o rounds to 1 and -inf when it rounds to 0, as the reference
 * writes it. The biases are computed once in fp32 as the reference does on
 * 0-dim tensors (gs_head_consts).
 */
#ifndef S3D_GS_HEAD_H
#define S3D_GS_HEAD_H

#include "ops.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* representation_config of the released slat_decoder_gs(_4).yaml (not stored
 * in the checkpoints) */
#define GS_RESOLUTION     64
#define GS_VOXEL_SIZE     1.5f
#define GS_LR_ROTATION    0.1f      /* lr._rotation; the other lr factors are 1.0 */
#define GS_KERNEL_3D      0.0009    /* 3d_filter_kernel_size (mininum_kernel_size) */
#define GS_SCALING_BIAS   0.004f
#define GS_OPACITY_BIAS   0.1f
#define GS_CHANNELS       14        /* per Gaussian: 3 + 3 + 3 + 4 + 1 */

struct gs_consts {
    float scale_bias;               /* softplus^-1(0.004) = -5.51946 */
    float opacity_bias;             /* logit(0.1) = -2.197225 */
    float kernel2;                  /* 0.0009^2 as the float the reference adds */
};

/* The fp32 constants, as the reference computes them (gaussian_model.py:59-67). */
void gs_head_consts(struct gs_consts *k);

/* The five save_ply arrays of M = rows * G Gaussians (contiguous F32, on the
 * op's device): xyz (M, 3), f_dc (M, 3), opacity (M, 1), scale (M, 3),
 * rotation (M, 4). */
struct gs_arrays {
    struct tensor xyz, f_dc, opacity, scale, rotation;
};

/* The transform above for `rows` voxels: raw (rows, 14G) F32 contiguous;
 * coords (rows, 4) I32 (the same voxels); perturb (G, 3) F32 (the stored
 * offset_perturbation buffer); out arrays of rows * G Gaussians. All on the
 * op's device. */
void gs_head_cpu(const struct gs_arrays *out, const struct tensor *raw,
                 const struct tensor *coords, const struct tensor *perturb);
void gs_head_cuda(const struct op_ctx *ctx, const struct gs_arrays *out, const struct tensor *raw,
                  const struct tensor *coords, const struct tensor *perturb);
/* ASSERT the operands (shared by both). Returns G. */
int  gs_head_check(const struct gs_arrays *out, const struct tensor *raw,
                   const struct tensor *coords, const struct tensor *perturb, enum device dev);

static inline void gs_head(const struct op_ctx *ctx, const struct gs_arrays *out,
                           const struct tensor *raw, const struct tensor *coords,
                           const struct tensor *perturb)
{
    if (raw->device == DEVICE_CUDA)
        gs_head_cuda(ctx, out, raw, coords, perturb);
    else
        gs_head_cpu(out, raw, coords, perturb);
}

#ifdef __cplusplus
}
#endif
#endif
