/*
 * vit_embed.c - CPU versions of the ViT's im2col and token assembly, and the
 * checks shared with the CUDA versions. See vit_embed.h.
 */
#include "vit_embed.h"
#include "log.h"

#include <string.h>

void vit_im2col_check(const struct tensor *cols, const struct tensor *img, int p, enum device dev)
{
    op_check_dense("vit_im2col.img", img, dev);
    op_check_dense("vit_im2col.cols", cols, dev);
    ASSERT(img->dtype == DTYPE_F32 && img->ndim == 4 && p >= 1);
    ASSERT(img->shape[2] % p == 0 && img->shape[3] % p == 0);
    int64_t np = img->shape[0] * (img->shape[2] / p) * (img->shape[3] / p);
    ASSERT(cols->ndim == 2 && cols->shape[0] == np && cols->shape[1] == img->shape[1] * p * p);
}

void vit_im2col_cpu(struct tensor *cols, const struct tensor *img, int p)
{
    vit_im2col_check(cols, img, p, DEVICE_HOST);
    int64_t B = img->shape[0], Cin = img->shape[1], H = img->shape[2], W = img->shape[3];
    int64_t ph = H / p, pw = W / p, K = Cin * p * p;
    const float *src = img->data;
    float row[4096];

    ASSERT(K <= 4096);
    for (int64_t b = 0; b < B; b++)
        for (int64_t py = 0; py < ph; py++)
            for (int64_t px = 0; px < pw; px++) {
                int64_t r = (b * ph + py) * pw + px;
                for (int64_t c = 0; c < Cin; c++)
                    for (int ky = 0; ky < p; ky++)
                        memcpy(row + (c * p + ky) * p,
                               src + ((b * Cin + c) * H + py * p + ky) * W + px * p,
                               sizeof(float) * (size_t)p);
                dtype_convert((char *)cols->data + (size_t)(r * K) * dtype_size(cols->dtype),
                              cols->dtype, row, DTYPE_F32, (size_t)K);
            }
}

void vit_assemble_check(const struct tensor *x, const struct tensor *pe, const struct tensor *cls,
                        const struct tensor *reg, const struct tensor *pos_cls,
                        const struct tensor *pos_patch, enum device dev, int64_t *B, int64_t *R,
                        int64_t *N, int64_t *C)
{
    op_check_dense("vit_assemble.x", x, dev);
    op_check_dense("vit_assemble.pe", pe, dev);
    op_check_dense("vit_assemble.cls", cls, dev);
    op_check_dense("vit_assemble.pos_cls", pos_cls, dev);
    op_check_dense("vit_assemble.pos_patch", pos_patch, dev);
    ASSERT(x->dtype == DTYPE_F32 && x->ndim == 3);
    *B = x->shape[0];
    *C = x->shape[2];
    *N = pos_patch->shape[0];
    *R = reg ? reg->shape[0] : 0;
    if (reg) {
        op_check_dense("vit_assemble.reg", reg, dev);
        ASSERT(reg->dtype == DTYPE_F32 && reg->ndim == 2 && reg->shape[1] == *C);
    }
    ASSERT(x->shape[1] == 1 + *R + *N);
    ASSERT(pe->ndim == 2 && pe->shape[0] == *B * *N && pe->shape[1] == *C);
    ASSERT(cls->dtype == DTYPE_F32 && tensor_numel(cls) == *C);
    ASSERT(pos_cls->dtype == DTYPE_F32 && tensor_numel(pos_cls) == *C);
    ASSERT(pos_patch->dtype == DTYPE_F32 && pos_patch->ndim == 2 && pos_patch->shape[1] == *C);
}

void vit_assemble_cpu(struct tensor *x, const struct tensor *pe, const struct tensor *cls,
                      const struct tensor *reg, const struct tensor *pos_cls,
                      const struct tensor *pos_patch)
{
    int64_t B, R, N, C;

    vit_assemble_check(x, pe, cls, reg, pos_cls, pos_patch, DEVICE_HOST, &B, &R, &N, &C);
    const float *cl = cls->data, *pc = pos_cls->data, *pp = pos_patch->data;
    float *xo = x->data;
    int64_t T = 1 + R + N;

    for (int64_t b = 0; b < B; b++) {
        float *xb = xo + b * T * C;
        for (int64_t c = 0; c < C; c++)
            xb[c] = cl[c] + pc[c];
        if (R)
            memcpy(xb + C, reg->data, sizeof(float) * (size_t)(R * C));
        float *xp = xb + (1 + R) * C;
        dtype_convert(xp, DTYPE_F32,
                      (const char *)pe->data + (size_t)(b * N * C) * dtype_size(pe->dtype),
                      pe->dtype, (size_t)(N * C));
        for (int64_t i = 0; i < N * C; i++)
            xp[i] += pp[i];
    }
}
