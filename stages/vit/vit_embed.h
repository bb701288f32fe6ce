/*
 * vit_embed.h - the two token-building steps of the ViT that are not ops.h
 * ops: im2col for the stride-p patch convolution (then one op_linear), and the
 * assembly of [cls + pos, registers, patches + pos] into the fp32 stream
 * (DINOv2 prepare_tokens_with_masks, vision_transformer.py:214-233).
 * CPU: stages/vit/vit_embed.c; CUDA: stages/vit/vit_embed_cuda.cu.
 * Tested through tests/test_vit.c.
 */
#ifndef S3D_VIT_EMBED_H
#define S3D_VIT_EMBED_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* cols[b*ph*pw + py*pw + px, c*p*p + ky*p + kx] = img[b, c, py*p + ky, px*p + kx].
 * img (B, Cin, ph*p, pw*p) F32 contiguous; cols (B*ph*pw, Cin*p*p) contiguous,
 * any float dtype (rounded once). The column order matches a (Cout, Cin, p, p)
 * conv weight viewed as (Cout, Cin*p*p). */
void vit_im2col_cpu(struct tensor *cols, const struct tensor *img, int p);
void vit_im2col_cuda(const struct op_ctx *ctx, struct tensor *cols, const struct tensor *img,
                     int p);

/* x[b, 0] = cls + pos_cls; x[b, 1 + r] = reg[r]; x[b, 1 + R + i] = pe[b, i] + pos_patch[i].
 * x (B, 1 + R + N, C) F32; pe (B*N, C) any float dtype; cls, pos_cls (C) F32;
 * reg (R, C) F32 or NULL when R == 0; pos_patch (N, C) F32. All contiguous on
 * x's device. */
void vit_assemble_cpu(struct tensor *x, const struct tensor *pe, const struct tensor *cls,
                      const struct tensor *reg, const struct tensor *pos_cls,
                      const struct tensor *pos_patch);
void vit_assemble_cuda(const struct op_ctx *ctx, struct tensor *x, const struct tensor *pe,
                       const struct tensor *cls, const struct tensor *reg,
                       const struct tensor *pos_cls, const struct tensor *pos_patch);

/* Shape checks both versions share (dev = where the tensors must live);
 * returns (B, R, N, C) through the pointers. */
void vit_assemble_check(const struct tensor *x, const struct tensor *pe, const struct tensor *cls,
                        const struct tensor *reg, const struct tensor *pos_cls,
                        const struct tensor *pos_patch, enum device dev, int64_t *B, int64_t *R,
                        int64_t *N, int64_t *C);
void vit_im2col_check(const struct tensor *cols, const struct tensor *img, int p, enum device dev);

#ifdef __cplusplus
}
#endif
#endif
