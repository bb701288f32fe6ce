/*
 * ape.c - CPU reference of the absolute position embedding. See ops_window.h.
 *
 * Reference: sam-3d-objects cf06676, sam3d_objects/model/backbone/tdfy_dit/
 * modules/transformer/blocks.py:9-56 (AbsolutePositionEmbedder).
 */
#include "ops_window.h"
#include "ops_sparse.h"
#include "log.h"

#include <math.h>
#include <stdlib.h>

void op_ape_freqs(float *f, int C)
{
    int fd = C / 3 / 2;

    /* torch.arange(fd) / fd in fp32, 10000 ** that (correctly rounded here via
     * double), then 1.0 / it in fp32 */
    for (int j = 0; j < fd; j++) {
        float e = (float)j / (float)fd;
        f[j] = 1.0f / (float)pow(10000.0, (double)e);
    }
}

void op_ape_add_cpu(struct tensor *y, const struct tensor *x, const struct tensor *coords)
{
    op_check_dense("ape_add.y", y, DEVICE_HOST);
    ASSERT(y->ndim == 2);
    int64_t T = y->shape[0];
    int C = (int)y->shape[1], fd = C / 3 / 2;
    if (x) {
        op_check_dense("ape_add.x", x, DEVICE_HOST);
        ASSERT(tensor_same_shape(x, y));
    }
    sparse_check_i32("ape_add.coords", coords, DEVICE_HOST, T, 4);
    float *f = malloc(sizeof(float) * (size_t)(fd + 1)), *row = malloc(sizeof(float) * (size_t)C);
    ASSERT(f && row);
    op_ape_freqs(f, C);
    const int32_t *c = coords->data;
    for (int64_t i = 0; i < T; i++) {
        if (x)
            dtype_convert(row, DTYPE_F32, (const char *)x->data + (size_t)(i * C) *
                          dtype_size(x->dtype), x->dtype, (size_t)C);
        for (int ch = 0; ch < C; ch++) {
            float e = 0.0f;
            if (ch < 6 * fd) {
                int a = ch / (2 * fd), j = ch % (2 * fd);
                float arg = (float)c[i * 4 + 1 + a] * f[j % fd];
                e = j < fd ? sinf(arg) : cosf(arg);
            }
            row[ch] = x ? row[ch] + e : e;
        }
        dtype_convert((char *)y->data + (size_t)(i * C) * dtype_size(y->dtype), y->dtype, row,
                      DTYPE_F32, (size_t)C);
    }
    free(f);
    free(row);
}
