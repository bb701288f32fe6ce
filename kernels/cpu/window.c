/*
 * window.c - the swin window partition and the CPU reference of windowed
 * self-attention. See ops_window.h.
 *
 * Reference: sam-3d-objects cf06676, sam3d_objects/model/backbone/tdfy_dit/
 * modules/sparse/attention/windowed_attn.py:24-76 (calc_window_partition) and
 * :79-192 (gather by the forward indices, varlen attention per window, scatter
 * by the backward indices).
 */
#include "ops_window.h"
#include "ops_sparse.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

/* Key ranges up to this many windows sort by counting, larger ones by qsort. */
#define WINDOW_COUNTING_MAX ((int64_t)1 << 20)

struct win_key {
    int64_t key;    /* linear window key */
    int32_t row;    /* token row: the tie-break that makes the sort stable */
};

static int win_key_cmp(const void *a, const void *b)
{
    const struct win_key *x = a, *y = b;

    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

int64_t op_window_partition_cpu(struct tensor *perm, struct tensor *off,
                                const struct tensor *coords, int window, int shift,
                                int *max_len)
{
    int64_t T = coords->shape[0];

    sparse_check_i32("window_partition.coords", coords, DEVICE_HOST, -1, 4);
    sparse_check_i32("window_partition.perm", perm, DEVICE_HOST, T, 0);
    sparse_check_i32("window_partition.off", off, DEVICE_HOST, T + 1, 0);
    ASSERT(T >= 1 && T < INT32_MAX && window >= 1 && shift >= 0 && shift < window);
    const int32_t *c = coords->data;
    int32_t *pm = perm->data, *of = off->data;

    /* windows per axis from the largest shifted coordinate (windowed_attn.py:53-55) */
    int64_t nw[3] = {0, 0, 0};
    for (int64_t i = 0; i < T; i++)
        for (int a = 0; a < 3; a++) {
            int64_t n = (c[i * 4 + 1 + a] + shift) / window + 1;
            nw[a] = n > nw[a] ? n : nw[a];
        }
    struct win_key *k = malloc(sizeof(*k) * (size_t)T);
    ASSERT(k);
    for (int64_t i = 0; i < T; i++) {
        const int32_t *p = c + i * 4;
        int64_t w[3];
        for (int a = 0; a < 3; a++)
            w[a] = (p[1 + a] + shift) / window;     /* coordinates are >= 0: floor */
        k[i].key = (w[0] * nw[1] + w[1]) * nw[2] + w[2];
        k[i].row = (int32_t)i;
    }
    int64_t K = nw[0] * nw[1] * nw[2];
    if (K <= WINDOW_COUNTING_MAX) {
        /* counting sort by key (729 keys at 64^3): stable, O(T + K) */
        int32_t *cnt = calloc((size_t)K + 1, sizeof(int32_t));
        struct win_key *sorted = malloc(sizeof(*sorted) * (size_t)T);
        ASSERT(cnt && sorted);
        for (int64_t i = 0; i < T; i++)
            cnt[k[i].key + 1]++;
        for (int64_t q = 0; q < K; q++)
            cnt[q + 1] += cnt[q];
        for (int64_t i = 0; i < T; i++)
            sorted[cnt[k[i].key]++] = k[i];
        free(cnt);
        free(k);
        k = sorted;
    } else {
        qsort(k, (size_t)T, sizeof(*k), win_key_cmp);   /* (key, row): the same order */
    }

    int64_t nwin = 0;
    int longest = 0;
    for (int64_t s = 0; s < T; s++) {
        pm[s] = k[s].row;
        if (s == 0 || k[s].key != k[s - 1].key)
            of[nwin++] = (int32_t)s;
    }
    of[nwin] = (int32_t)T;
    for (int64_t w = 0; w < nwin; w++)
        longest = of[w + 1] - of[w] > longest ? of[w + 1] - of[w] : longest;
    free(k);
    *max_len = longest;
    return nwin;
}

void op_check_window_attention(const struct tensor *o, const struct tensor *qkv,
                               const struct tensor *perm, const struct tensor *off,
                               enum device dev)
{
    op_check_dense("window_attention.qkv", qkv, dev);
    op_check_dense("window_attention.o", o, dev);
    ASSERT(qkv->ndim == 4 && qkv->shape[1] == 3 && qkv->shape[3] == OP_HEAD_DIM);
    ASSERT(o->ndim == 3 && o->shape[0] == qkv->shape[0] && o->shape[1] == qkv->shape[2] &&
           o->shape[2] == OP_HEAD_DIM && o->dtype == qkv->dtype);
    sparse_check_i32("window_attention.perm", perm, dev, qkv->shape[0], 0);
    sparse_check_i32("window_attention.off", off, dev, -1, 0);
    ASSERT(off->shape[0] >= 1);
}

/* The (T, 3, H, 64) qkv's part `which` as a (T, H, 64) view. */
static struct tensor qkv_part(const struct tensor *qkv, int which)
{
    struct tensor t = *qkv;

    t.ndim = 3;
    t.data = (char *)qkv->data + (size_t)(which * qkv->stride[1]) * dtype_size(qkv->dtype);
    t.shape[1] = qkv->shape[2];
    t.stride[1] = qkv->stride[2];
    t.shape[2] = qkv->shape[3];
    t.stride[2] = qkv->stride[3];
    return t;
}

void op_window_attention_cpu(struct tensor *o, const struct tensor *qkv, const struct tensor *perm,
                             const struct tensor *off, float scale)
{
    op_check_window_attention(o, qkv, perm, off, DEVICE_HOST);
    int64_t T = qkv->shape[0], H = qkv->shape[2], nwin = off->shape[0] - 1;
    const int32_t *pm = perm->data, *of = off->data;
    ASSERT(of[0] == 0 && of[nwin] == T);
    if (T == 0 || H == 0)
        return;

    /* gather the windows into slot order (qkv_feats[fwd_indices]) */
    size_t es = dtype_size(qkv->dtype), row = (size_t)(3 * H * OP_HEAD_DIM) * es;
    size_t orow = (size_t)(H * OP_HEAD_DIM) * es;
    char *g = malloc(row * (size_t)T), *go = malloc(orow * (size_t)T);
    ASSERT(g && go);
    for (int64_t s = 0; s < T; s++) {
        ASSERT(pm[s] >= 0 && pm[s] < T);
        memcpy(g + (size_t)s * row, (const char *)qkv->data + (size_t)pm[s] * row, row);
    }
    struct tensor gq = tensor_view(g, qkv->dtype, DEVICE_HOST, SHAPE(T, 3, H, OP_HEAD_DIM));
    struct tensor q = qkv_part(&gq, 0), k = qkv_part(&gq, 1), v = qkv_part(&gq, 2);
    struct tensor ot = tensor_view(go, o->dtype, DEVICE_HOST, SHAPE(T, H, OP_HEAD_DIM));
    op_attention_varlen_cpu(&ot, &q, &k, &v, off, off, scale);

    /* scatter back to token order (out[bwd_indices]) */
    for (int64_t s = 0; s < T; s++)
        memcpy((char *)o->data + (size_t)pm[s] * orow, go + (size_t)s * orow, orow);
    free(g);
    free(go);
}
