/*
 * attention.c - CPU reference for scaled-dot-product attention, dense and
 * variable-length. See ops.h.
 *
 * For each (sequence, head, query row): fp32 scores s_j = scale * q . k_j,
 * max-subtracted exp, o = sum_j p_j v_j / sum_j p_j with fp32 accumulation
 * (sum in double). One row of Tk scores is held at a time, K and V are
 * converted to fp32 once per (sequence, head).
 */
#include "ops.h"
#include "log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One strided (T, H, 64) operand of one sequence: element (t, h, d) is at
 * base[t * st + h * sh + d]. */
struct seq_view {
    const char *base;
    enum dtype  dtype;
    int64_t     st, sh;
};

/* Rows [0, T) of head h of v into dst (T, 64) fp32. */
static void gather_head(float *dst, const struct seq_view *v, int64_t T, int64_t h)
{
    size_t es = dtype_size(v->dtype);

    for (int64_t t = 0; t < T; t++)
        dtype_convert(dst + t * OP_HEAD_DIM, DTYPE_F32,
                      v->base + (size_t)(t * v->st + h * v->sh) * es, v->dtype, OP_HEAD_DIM);
}

/* o (Tq, H, 64) contiguous rows for one sequence. scratch holds
 * (Tq + 2 Tk) * 64 + Tk floats. */
static void attend_seq(char *o, enum dtype odt, const struct seq_view *q, const struct seq_view *k,
                       const struct seq_view *v, int64_t Tq, int64_t Tk, int64_t H, float scale,
                       float *scratch)
{
    float *qf = scratch, *kf = qf + Tq * OP_HEAD_DIM, *vf = kf + Tk * OP_HEAD_DIM;
    float *s = vf + Tk * OP_HEAD_DIM;
    size_t oes = dtype_size(odt);

    for (int64_t h = 0; h < H; h++) {
        gather_head(qf, q, Tq, h);
        gather_head(kf, k, Tk, h);
        gather_head(vf, v, Tk, h);
        for (int64_t i = 0; i < Tq; i++) {
            const float *qi = qf + i * OP_HEAD_DIM;
            float  acc[OP_HEAD_DIM];
            float  mx = -INFINITY;
            double sum = 0;

            for (int64_t j = 0; j < Tk; j++) {
                const float *kj = kf + j * OP_HEAD_DIM;
                float dot = 0;
                for (int d = 0; d < OP_HEAD_DIM; d++)
                    dot += qi[d] * kj[d];
                s[j] = dot * scale;
                mx = s[j] > mx ? s[j] : mx;
            }
            memset(acc, 0, sizeof(acc));
            for (int64_t j = 0; j < Tk; j++) {
                const float *vj = vf + j * OP_HEAD_DIM;
                float p = expf(s[j] - mx);
                sum += p;
                for (int d = 0; d < OP_HEAD_DIM; d++)
                    acc[d] += p * vj[d];
            }
            float inv = Tk ? (float)(1.0 / sum) : 0.0f;   /* no keys: zeros */
            for (int d = 0; d < OP_HEAD_DIM; d++)
                acc[d] *= inv;
            dtype_convert(o + (size_t)((i * H + h) * OP_HEAD_DIM) * oes, odt, acc, DTYPE_F32,
                          OP_HEAD_DIM);
        }
    }
}

void op_attention_cpu(struct tensor *o, const struct tensor *q, const struct tensor *k,
                      const struct tensor *v, float scale)
{
    op_check_attention(o, q, k, v, 4, DEVICE_HOST);
    int64_t B = q->shape[0], Tq = q->shape[1], H = q->shape[2], Tk = k->shape[1];
    ASSERT(k->shape[0] == B);
    if (B == 0 || Tq == 0 || H == 0)
        return;

    float *scratch = malloc(sizeof(*scratch) * (size_t)((Tq + 2 * Tk) * OP_HEAD_DIM + Tk + 1));
    ASSERT(scratch);
    size_t es = dtype_size(q->dtype);
    for (int64_t b = 0; b < B; b++) {
        struct seq_view qs = {(const char *)q->data + (size_t)(b * q->stride[0]) * es, q->dtype,
                              q->stride[1], q->stride[2]};
        struct seq_view ks = {(const char *)k->data + (size_t)(b * k->stride[0]) * es, k->dtype,
                              k->stride[1], k->stride[2]};
        struct seq_view vs = {(const char *)v->data + (size_t)(b * v->stride[0]) * es, v->dtype,
                              v->stride[1], v->stride[2]};
        attend_seq((char *)o->data + (size_t)(b * Tq * H * OP_HEAD_DIM) * es, o->dtype, &qs, &ks,
                   &vs, Tq, Tk, H, scale, scratch);
    }
    free(scratch);
}

void op_attention_varlen_cpu(struct tensor *o, const struct tensor *q, const struct tensor *k,
                             const struct tensor *v, const struct tensor *q_off,
                             const struct tensor *k_off, float scale)
{
    op_check_attention(o, q, k, v, 3, DEVICE_HOST);
    ASSERT(q_off->dtype == DTYPE_I32 && k_off->dtype == DTYPE_I32);
    ASSERT(q_off->device == DEVICE_HOST && k_off->device == DEVICE_HOST);
    ASSERT(tensor_is_contiguous(q_off) && tensor_is_contiguous(k_off));
    int64_t n = tensor_numel(q_off) - 1, H = q->shape[1];
    ASSERT(n >= 0 && tensor_numel(k_off) == n + 1);
    const int32_t *qo = q_off->data, *ko = k_off->data;
    ASSERT(qo[0] == 0 && ko[0] == 0 && qo[n] == q->shape[0] && ko[n] == k->shape[0]);

    int64_t maxq = 0, maxk = 0;
    for (int64_t i = 0; i < n; i++) {
        ASSERT(qo[i + 1] >= qo[i] && ko[i + 1] >= ko[i]);
        maxq = qo[i + 1] - qo[i] > maxq ? qo[i + 1] - qo[i] : maxq;
        maxk = ko[i + 1] - ko[i] > maxk ? ko[i + 1] - ko[i] : maxk;
    }
    float *scratch = malloc(sizeof(*scratch) * (size_t)((maxq + 2 * maxk) * OP_HEAD_DIM + maxk + 1));
    ASSERT(scratch);
    size_t es = dtype_size(q->dtype);
    for (int64_t i = 0; i < n; i++) {
        struct seq_view qs = {(const char *)q->data + (size_t)(qo[i] * q->stride[0]) * es, q->dtype,
                              q->stride[0], q->stride[1]};
        struct seq_view ks = {(const char *)k->data + (size_t)(ko[i] * k->stride[0]) * es, k->dtype,
                              k->stride[0], k->stride[1]};
        struct seq_view vs = {(const char *)v->data + (size_t)(ko[i] * v->stride[0]) * es, v->dtype,
                              v->stride[0], v->stride[1]};
        attend_seq((char *)o->data + (size_t)(qo[i] * H * OP_HEAD_DIM) * es, o->dtype, &qs, &ks,
                   &vs, qo[i + 1] - qo[i], ko[i + 1] - ko[i], H, scale, scratch);
    }
    free(scratch);
}

struct tensor op_heads_view(const struct tensor *t, int which)
{
    struct tensor v;

    ASSERT(t->ndim == 5 && which >= 0 && which < t->shape[2]);
    v = *t;
    v.ndim = 4;
    v.data = (char *)t->data + (size_t)(which * t->stride[2]) * dtype_size(t->dtype);
    v.shape[0] = t->shape[0];  v.stride[0] = t->stride[0];
    v.shape[1] = t->shape[1];  v.stride[1] = t->stride[1];
    v.shape[2] = t->shape[3];  v.stride[2] = t->stride[3];
    v.shape[3] = t->shape[4];  v.stride[3] = t->stride[4];
    v.shape[4] = 0;            v.stride[4] = 0;
    return v;
}
