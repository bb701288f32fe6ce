/*
 * moge_kern.h - MoGe's small elementwise helpers (CPU in moge_kern.c, CUDA in
 * moge_kern.cu), dispatching on the output's device.
 */
#ifndef S3D_MOGE_KERN_H
#define S3D_MOGE_KERN_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y (3, h, w) F32 = (x - mean[c]) / std[c]; mean, std (3) F32 on y's device. In place allowed. */
void moge_normalise(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                    const struct tensor *mean, const struct tensor *std);
/* uv (2, h, w), any float dtype: normalized_view_plane_uv(w, h, aspect) as
 * planes u, v, computed with torch.linspace's fp32 formula, rounded to uv's dtype. */
void moge_fill_uv(const struct op_ctx *ctx, struct tensor *uv, double aspect);
/* y (C, S) += b[c] (b (C) any float dtype), fp32 math. */
void moge_channel_bias(const struct op_ctx *ctx, struct tensor *y, const struct tensor *b);

void moge_normalise_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                         const struct tensor *mean, const struct tensor *std);
void moge_fill_uv_cuda(const struct op_ctx *ctx, struct tensor *uv, double aspect);
void moge_channel_bias_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *b);

#ifdef __cplusplus
}
#endif
#endif
