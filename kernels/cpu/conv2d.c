/*
 * conv2d.c - CPU references for op_conv2d (nn.Conv2d, zeros or replicate
 * padding, optional fused ReLU) and op_conv_transpose2x2 (nn.ConvTranspose2d
 * k=2 s=2). See ops_image.h.
 *
 * conv2d pads each input plane once into an fp32 buffer, then accumulates
 * output planes tap by tap (a row-wise axpy the compiler vectorises): fp32
 * accumulation like cuDNN, in a fixed order (input channel, ky, kx).
 */
#include "ops_conv.h"
#include "ops_image.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

static void check_bias(const char *op, const struct tensor *b, int64_t C)
{
    if (!b)
        return;
    op_check_dense(op, b, DEVICE_HOST);
    ASSERT(tensor_numel(b) == C);
}

/* bias as fp32 (zeros when b is NULL); caller frees */
static float *bias_f32(const struct tensor *b, int64_t C)
{
    float *f = calloc((size_t)(C ? C : 1), sizeof(*f));
    ASSERT(f);
    if (b)
        dtype_convert(f, DTYPE_F32, b->data, b->dtype, (size_t)C);
    return f;
}

void op_conv2d_cpu(struct tensor *y, const struct tensor *x, const struct tensor *w,
                   const struct tensor *b, int stride, int pad, enum op_pad_mode mode, bool relu)
{
    op_check_dense("conv2d.x", x, DEVICE_HOST);
    op_check_dense("conv2d.w", w, DEVICE_HOST);
    op_check_dense("conv2d.y", y, DEVICE_HOST);
    ASSERT(x->ndim == 4 && w->ndim == 4 && y->ndim == 4 && w->dtype == x->dtype);
    ASSERT(stride >= 1 && pad >= 0);
    int64_t N = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Co = w->shape[0], KH = w->shape[2], KW = w->shape[3];
    ASSERT(w->shape[1] == Ci);
    int64_t Hp = H + 2 * pad, Wp = W + 2 * pad;
    ASSERT(Hp >= KH && Wp >= KW);
    int64_t Ho = (Hp - KH) / stride + 1, Wo = (Wp - KW) / stride + 1;
    ASSERT(y->shape[0] == N && y->shape[1] == Co && y->shape[2] == Ho && y->shape[3] == Wo);
    check_bias("conv2d.b", b, Co);

    float *bf = bias_f32(b, Co);
    float *wf = malloc(sizeof(*wf) * (size_t)(Co * Ci * KH * KW));
    float *xp = malloc(sizeof(*xp) * (size_t)(Ci * Hp * Wp));
    float *row = malloc(sizeof(*row) * (size_t)(W > 0 ? W : 1));
    float *acc = malloc(sizeof(*acc) * (size_t)(Ho * Wo));
    ASSERT(wf && xp && row && acc);
    dtype_convert(wf, DTYPE_F32, w->data, w->dtype, (size_t)(Co * Ci * KH * KW));

    size_t xs = dtype_size(x->dtype), ys = dtype_size(y->dtype);
    for (int64_t n = 0; n < N; n++) {
        /* pad every input plane into xp */
        for (int64_t c = 0; c < Ci; c++) {
            float *P = xp + c * Hp * Wp;
            for (int64_t i = 0; i < Hp; i++) {
                int64_t si = i - pad;
                float *dst = P + i * Wp;
                if (mode == OP_PAD_ZEROS && (si < 0 || si >= H)) {
                    memset(dst, 0, sizeof(*dst) * (size_t)Wp);
                    continue;
                }
                si = si < 0 ? 0 : si >= H ? H - 1 : si;
                dtype_convert(row, DTYPE_F32,
                              (const char *)x->data + (size_t)(((n * Ci + c) * H + si) * W) * xs,
                              x->dtype, (size_t)W);
                for (int64_t j = 0; j < Wp; j++) {
                    int64_t sj = j - pad;
                    if (sj < 0 || sj >= W)
                        dst[j] = mode == OP_PAD_ZEROS ? 0.0f : row[sj < 0 ? 0 : W - 1];
                    else
                        dst[j] = row[sj];
                }
            }
        }
        for (int64_t co = 0; co < Co; co++) {
            for (int64_t e = 0; e < Ho * Wo; e++)
                acc[e] = 0.0f;
            for (int64_t c = 0; c < Ci; c++) {
                const float *P = xp + c * Hp * Wp;
                const float *wk = wf + ((co * Ci + c) * KH) * KW;
                for (int64_t ky = 0; ky < KH; ky++)
                    for (int64_t kx = 0; kx < KW; kx++) {
                        float wv = wk[ky * KW + kx];
                        for (int64_t oy = 0; oy < Ho; oy++) {
                            const float *src = P + (oy * stride + ky) * Wp + kx;
                            float *dst = acc + oy * Wo;
                            if (stride == 1)
                                for (int64_t ox = 0; ox < Wo; ox++)
                                    dst[ox] += wv * src[ox];
                            else
                                for (int64_t ox = 0; ox < Wo; ox++)
                                    dst[ox] += wv * src[ox * stride];
                        }
                    }
            }
            for (int64_t e = 0; e < Ho * Wo; e++) {
                float v = acc[e] + bf[co];
                acc[e] = relu && v < 0.0f ? 0.0f : v;
            }
            dtype_convert((char *)y->data + (size_t)((n * Co + co) * Ho * Wo) * ys, y->dtype,
                          acc, DTYPE_F32, (size_t)(Ho * Wo));
        }
    }
    free(acc);
    free(row);
    free(xp);
    free(wf);
    free(bf);
}

void op_conv_transpose2x2_cpu(struct tensor *y, const struct tensor *x, const struct tensor *w,
                              const struct tensor *b)
{
    op_check_dense("convt.x", x, DEVICE_HOST);
    op_check_dense("convt.w", w, DEVICE_HOST);
    op_check_dense("convt.y", y, DEVICE_HOST);
    ASSERT(x->ndim == 4 && w->ndim == 4 && y->ndim == 4 && w->dtype == x->dtype);
    int64_t N = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Co = w->shape[1];
    ASSERT(w->shape[0] == Ci && w->shape[2] == 2 && w->shape[3] == 2);
    ASSERT(y->shape[0] == N && y->shape[1] == Co && y->shape[2] == 2 * H && y->shape[3] == 2 * W);
    check_bias("convt.b", b, Co);

    float *bf = bias_f32(b, Co);
    float *wf = malloc(sizeof(*wf) * (size_t)(Ci * Co * 4));
    float *xf = malloc(sizeof(*xf) * (size_t)(Ci * H * W));
    float *acc = malloc(sizeof(*acc) * (size_t)(4 * H * W));
    ASSERT(wf && xf && acc);
    dtype_convert(wf, DTYPE_F32, w->data, w->dtype, (size_t)(Ci * Co * 4));

    size_t xs = dtype_size(x->dtype), ys = dtype_size(y->dtype);
    for (int64_t n = 0; n < N; n++) {
        dtype_convert(xf, DTYPE_F32, (const char *)x->data + (size_t)(n * Ci * H * W) * xs,
                      x->dtype, (size_t)(Ci * H * W));
        for (int64_t co = 0; co < Co; co++) {
            for (int64_t e = 0; e < 4 * H * W; e++)
                acc[e] = 0.0f;
            for (int64_t c = 0; c < Ci; c++) {
                const float *wk = wf + (c * Co + co) * 4;
                const float *src = xf + c * H * W;
                for (int64_t i = 0; i < H; i++)
                    for (int dy = 0; dy < 2; dy++) {
                        float *dst = acc + (2 * i + dy) * 2 * W;
                        float w0 = wk[dy * 2], w1 = wk[dy * 2 + 1];
                        for (int64_t j = 0; j < W; j++) {
                            dst[2 * j]     += src[i * W + j] * w0;
                            dst[2 * j + 1] += src[i * W + j] * w1;
                        }
                    }
            }
            for (int64_t e = 0; e < 4 * H * W; e++)
                acc[e] += bf[co];
            dtype_convert((char *)y->data + (size_t)((n * Co + co) * 4 * H * W) * ys, y->dtype,
                          acc, DTYPE_F32, (size_t)(4 * H * W));
        }
    }
    free(acc);
    free(xf);
    free(wf);
    free(bf);
}
