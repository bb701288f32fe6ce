/*
 * attention_small.c - CPU reference for op_attention_small (any head size up
 * to 128, short key sequences) and op_swiglu. See kernels/ops.h.
 *
 * Attention: for each (batch item, head, query row), fp32 scores
 * s_j = scale * q . k_j, max-subtracted exp, o = sum_j p_j v_j / sum_j p_j
 * with the sum of p in double, as kernels/cpu/attention.c does for head size 64.
 */
#include "log.h"
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Element (t, h, 0..D) of a strided (B, T, H, D) host tensor, batch item b,
 * converted to fp32 into dst (D floats). */
static void load_vec(float *dst, const struct tensor *t, int64_t b, int64_t i, int64_t h)
{
    size_t es = dtype_size(t->dtype);
    const char *p = (const char *)t->data +
                    (size_t)(b * t->stride[0] + i * t->stride[1] + h * t->stride[2]) * es;

    dtype_convert(dst, DTYPE_F32, p, t->dtype, (size_t)t->shape[3]);
}

void op_attention_small_check(const struct tensor *o, const struct tensor *q,
                              const struct tensor *k, const struct tensor *v, enum device dev)
{
    const struct tensor *in[3] = {q, k, v};
    int64_t D = q->shape[3];

    for (int i = 0; i < 3; i++) {
        ASSERT(in[i]->device == dev && in[i]->ndim == 4);
        ASSERT(in[i]->dtype == q->dtype && op_dtype_ok(q->dtype));
        ASSERT(in[i]->shape[3] == D && in[i]->stride[3] == 1);
        ASSERT(in[i]->shape[0] == q->shape[0] && in[i]->shape[2] == q->shape[2]);
    }
    ASSERT(D >= 1 && D <= OP_SMALL_MAX_D);
    ASSERT(tensor_same_shape(k, v));
    ASSERT(k->shape[1] >= 1 && k->shape[1] <= OP_SMALL_MAX_TK && k->shape[1] * D <= OP_SMALL_MAX_KV);
    op_check_dense("attention_small.o", o, dev);
    ASSERT(tensor_same_shape(o, q) && o->dtype == q->dtype);
}

void op_attention_small_cpu(struct tensor *o, const struct tensor *q, const struct tensor *k,
                            const struct tensor *v, float scale)
{
    op_attention_small_check(o, q, k, v, DEVICE_HOST);
    int64_t B = q->shape[0], Tq = q->shape[1], H = q->shape[2], D = q->shape[3];
    int64_t Tk = k->shape[1];
    size_t  oes = dtype_size(o->dtype);

    if (B == 0 || Tq == 0 || H == 0)
        return;
    float *kf = malloc(sizeof(*kf) * (size_t)(2 * Tk * D + Tk + 2 * D));
    ASSERT(kf);
    float *vf = kf + Tk * D, *s = vf + Tk * D, *qi = s + Tk, *acc = qi + D;

    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++) {
            for (int64_t j = 0; j < Tk; j++) {
                load_vec(kf + j * D, k, b, j, h);
                load_vec(vf + j * D, v, b, j, h);
            }
            for (int64_t i = 0; i < Tq; i++) {
                float  mx = -INFINITY;
                double sum = 0;

                load_vec(qi, q, b, i, h);
                for (int64_t j = 0; j < Tk; j++) {
                    float dot = 0;
                    for (int64_t d = 0; d < D; d++)
                        dot += qi[d] * kf[j * D + d];
                    s[j] = dot * scale;
                    mx = s[j] > mx ? s[j] : mx;
                }
                memset(acc, 0, sizeof(*acc) * (size_t)D);
                for (int64_t j = 0; j < Tk; j++) {
                    float p = expf(s[j] - mx);
                    sum += p;
                    for (int64_t d = 0; d < D; d++)
                        acc[d] += p * vf[j * D + d];
                }
                float inv = (float)(1.0 / sum);
                for (int64_t d = 0; d < D; d++)
                    acc[d] *= inv;
                dtype_convert((char *)o->data + (size_t)(((b * Tq + i) * H + h) * D) * oes,
                              o->dtype, acc, DTYPE_F32, (size_t)D);
            }
        }
    }
    free(kf);
}
