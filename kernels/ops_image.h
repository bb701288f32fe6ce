/*
 * ops_image.h - image-space ops (NCHW) besides the convolutions (ops_conv.h):
 * GroupNorm, and resampling with PyTorch's F.interpolate semantics. MoGe's
 * head and input resize are built from these and the 2-D convolutions.
 *
 * Conventions are those of ops.h: struct tensor views in PyTorch order,
 * contiguous, F32/F16/BF16, fp32 math, one rounding into the output dtype,
 * op_<name>_cpu on DEVICE_HOST tensors, op_<name>_cuda queued on ctx->stream,
 * op_<name>() dispatching on the output's device. Shape or dtype mismatches
 * are internal faults (ASSERT).
 *
 * Resampling formulas follow ATen's CPU kernels (aten/src/ATen/native/UpSample.h and
 * cpu/UpSampleKernel.cpp) and are checked against torch in tests/test_op_resize.c.
 */
#ifndef S3D_OPS_IMAGE_H
#define S3D_OPS_IMAGE_H

#include "arena.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// GroupNorm

/* nn.GroupNorm(groups, C, eps, affine) on x (N, C, ...): per (n, group) mean
 * and biased variance over C/groups channels and all spatial positions (fp32
 * statistics), y = (x - mean) * rsqrt(var + eps) * w[c] + b[c], then ReLU
 * when relu is set (MoGe's GroupNorm -> ReLU pairs). x, y the same shape,
 * any float dtypes; w, b (C) any float dtype or both NULL. C % groups == 0.
 * In place allowed. The CUDA op takes op_groupnorm_scratch_bytes (a few KB of
 * statistics) from scratch (a device arena), released before it returns. */
void op_groupnorm_cpu(struct tensor *y, const struct tensor *x, int groups,
                      const struct tensor *w, const struct tensor *b, float eps, bool relu);
void op_groupnorm_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                       const struct tensor *x, int groups, const struct tensor *w,
                       const struct tensor *b, float eps, bool relu);
/* Scratch bytes op_groupnorm_cuda takes for x (N, C, ...) in groups. */
size_t op_groupnorm_scratch_bytes(const struct tensor *x, int groups);

// ----------------------------------------------------------------------------
// resampling (F.interpolate, align_corners=False)

enum op_resize_mode {
    OP_RESIZE_NEAREST,       /* mode='nearest' (legacy, floor(i * in/out)), A.1 */
    OP_RESIZE_BILINEAR,      /* mode='bilinear', antialias=False, A.2 */
    OP_RESIZE_BICUBIC,       /* mode='bicubic', antialias=False, A = -0.75, A.4 */
    OP_RESIZE_BILINEAR_AA,   /* mode='bilinear', antialias=True (triangle filter), A.3 */
    OP_RESIZE_BICUBIC_AA,    /* mode='bicubic', antialias=True (cubic, a = -0.5), A.3 */
};

/* y = F.interpolate(x, size=(Ho, Wo), mode, align_corners=False).
 * x (..., H, W), y (..., Ho, Wo): the same leading dims, any float dtypes,
 * H, W, Ho, Wo >= 1. scale_h / scale_w: the scale_factor passed to
 * interpolate (then the source coordinate uses 1/scale_factor, not H/Ho, as
 * ATen does when a scale factor is given; DINOv2's pos-embed resize relies on
 * it), or 0 to use the sizes. Only OP_RESIZE_NEAREST, _BILINEAR and _BICUBIC
 * accept a scale factor. The antialiased modes resample W first, then H, with
 * an fp32 intermediate (ATen's CPU order); the others nest the H sum around
 * the W sum. x may also be U8 (an image), read as (float)(v / 255.0), the
 * pipeline's image_to_float. Must not overlap. */
void op_resize_cpu(struct tensor *y, const struct tensor *x, enum op_resize_mode mode,
                   double scale_h, double scale_w);
void op_resize_cuda(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                    const struct tensor *x, enum op_resize_mode mode, double scale_h,
                    double scale_w);
/* Scratch bytes op_resize_cuda takes (a device arena, released before it
 * returns): the two axis tables, and the fp32 intermediate (..., H, Wo) of
 * the antialiased modes when both axes resample. */
size_t op_resize_scratch_bytes(const struct tensor *y, const struct tensor *x,
                               enum op_resize_mode mode);

/* Interpolation tables for one axis, shared by the CPU and CUDA ops and
 * computed in fp32/double exactly as ATen computes them: output i reads taps
 * op_resize_tap_index(mode, n_in, idx[i], j) for j < cnt[i] with weights
 * wt[i * max_taps + j]. */
/* Largest number of taps per output for a resampling of n_in to n_out. */
int  op_resize_max_taps(enum op_resize_mode mode, int n_in, int n_out);
/* Fill idx[n_out] (first source index, clamped where the mode clamps),
 * cnt[n_out] (taps) and wt[n_out * max_taps] for one axis. scale: the
 * scale_factor or 0 (see op_resize_cpu). */
void op_resize_axis(enum op_resize_mode mode, int n_in, int n_out, double scale, int max_taps,
                    int *idx, int *cnt, float *wt);
/* Source index of tap j of output i for the axis tables above. */
static inline int op_resize_tap_index(enum op_resize_mode mode, int n_in, int first, int j)
{
    int s = first + j;

    if (mode == OP_RESIZE_BICUBIC)              /* taps i0-1 .. i0+2, clamped */
        s = first - 1 + j;
    if (mode == OP_RESIZE_BICUBIC || mode == OP_RESIZE_BILINEAR)
        s = s < 0 ? 0 : s > n_in - 1 ? n_in - 1 : s;
    return s;
}

// ----------------------------------------------------------------------------
// dispatch on the output tensor's device; with a planning scratch arena
// (arena_plan_init) the op only counts the scratch the CUDA op would take

static inline void op_groupnorm(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                                const struct tensor *x, int groups, const struct tensor *w,
                                const struct tensor *b, float eps, bool relu)
{
    if (scratch && scratch->plan) {
        if (y->device == DEVICE_CUDA)
            arena_transient(scratch, op_groupnorm_scratch_bytes(x, groups));
        return;
    }
    if (y->device == DEVICE_CUDA)
        op_groupnorm_cuda(ctx, scratch, y, x, groups, w, b, eps, relu);
    else
        op_groupnorm_cpu(y, x, groups, w, b, eps, relu);
}

static inline void op_resize(const struct op_ctx *ctx, struct arena *scratch, struct tensor *y,
                             const struct tensor *x, enum op_resize_mode mode, double scale_h,
                             double scale_w)
{
    if (scratch && scratch->plan) {
        if (y->device == DEVICE_CUDA)
            arena_transient(scratch, op_resize_scratch_bytes(y, x, mode));
        return;
    }
    if (y->device == DEVICE_CUDA)
        op_resize_cuda(ctx, scratch, y, x, mode, scale_h, scale_w);
    else
        op_resize_cpu(y, x, mode, scale_h, scale_w);
}

#ifdef __cplusplus
}
#endif
#endif
