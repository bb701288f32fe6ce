/*
 * window.cu - op_window_attention_cuda: the windows of a swin partition
 * (ops_window.h) through the flash-attention kernels of attention.cuh, which
 * read q, k, v and write o through the partition's perm (attn_params.rows):
 * no gathered copy of qkv, no scatter pass, no T x T mask. One grid
 * (ceil(max_len / rows per block), H, nwin); a block whose row tile starts
 * past its window's length returns at once.
 */
#include "attention.cuh"
#include "ops_window.h"

#include <string.h>

void op_window_attention_cuda(const struct op_ctx *ctx, struct tensor *o, const struct tensor *qkv,
                              const struct tensor *perm, const struct tensor *off, int max_len,
                              float scale)
{
    struct attn_params p;

    op_check_window_attention(o, qkv, perm, off, DEVICE_CUDA);
    int64_t T = qkv->shape[0], H = qkv->shape[2], nwin = off->shape[0] - 1;
    ASSERT(T < (1ll << 31) && max_len >= 0 && max_len <= T);
    if (T == 0 || H == 0 || nwin == 0 || max_len == 0)
        return;
    memset(&p, 0, sizeof(p));
    size_t part = (size_t)qkv->stride[1] * dtype_size(qkv->dtype);   /* q -> k -> v */
    p.q = qkv->data;
    p.k = (const char *)qkv->data + part;
    p.v = (const char *)qkv->data + 2 * part;
    p.q_st = p.k_st = p.v_st = qkv->stride[0];
    p.q_sh = p.k_sh = p.v_sh = qkv->stride[2];
    p.o = o->data;
    p.o_st = H * OP_HEAD_DIM;
    p.o_sh = OP_HEAD_DIM;
    p.q_off = p.k_off = (const int *)off->data;
    p.rows = (const int *)perm->data;
    p.scale = scale;
    const int64_t st[2] = {qkv->stride[0], qkv->stride[2]};
    bool mma_ok = attn_rows_16b(p.q, st, 2) && attn_rows_16b(p.k, st, 2) &&
                  attn_rows_16b(p.v, st, 2) && attn_rows_16b(o->data, o->stride, 2);
    attn_launch(ctx, &p, qkv->dtype, (int)nwin, (int)H, max_len, mma_ok);
    op_done(ctx, "window_attention");
}
