/*
 * elementwise.c - CPU references for the residual and modulation ops:
 * add, add_scaled (x + g * a), add_gated (x + round_a(g * a)), modulate
 * (x * (1 + s) + t), add_bias. See ops.h.
 *
 * Row by row: each operand row is converted to fp32, combined, and rounded
 * once into y's dtype. Broadcast parameters follow ops.h's "row broadcast".
 */
#include "ops.h"
#include "log.h"

#include <stdlib.h>

enum ew_kind { EW_ADD, EW_ADD_SCALED, EW_ADD_GATED, EW_MODULATE, EW_ADD_BIAS };


/* Row r of a contiguous tensor with `cols` columns, as fp32 into dst. */
static void load_row(float *dst, const struct tensor *t, int64_t r, int64_t cols)
{
    dtype_convert(dst, DTYPE_F32, (const char *)t->data + (size_t)(r * cols) * dtype_size(t->dtype),
                  t->dtype, (size_t)cols);
}

/* The one loop behind every op here: y = f(x, p0, p1) row by row, where p0 and
 * p1 are full-size (a) or row-broadcast (g, s, t, b) as `kind` says. */
static void ew_run(const char *op, enum ew_kind kind, struct tensor *y, const struct tensor *x,
                   const struct tensor *p0, const struct tensor *p1)
{
    op_check_dense(op, x, DEVICE_HOST);
    op_check_dense(op, y, DEVICE_HOST);
    int64_t C = op_cols(x), R = op_rows(x);
    ASSERT(tensor_numel(y) == R * C);
    if (kind != EW_ADD)
        ASSERT(op_cols(y) == C);
    if (R == 0 || C == 0)
        return;

    float *buf = malloc(sizeof(*buf) * (size_t)(3 * C));
    ASSERT(buf);
    float *b0 = buf + C, *b1 = buf + 2 * C;
    int64_t g0 = 0, g1 = 0;   /* broadcast groups; 0 = full size */

    switch (kind) {
    case EW_ADD:
        op_check_dense(op, p0, DEVICE_HOST);
        ASSERT(tensor_numel(p0) == R * C);
        break;
    case EW_ADD_SCALED:    /* p0 = g (broadcast), p1 = a (full) */
    case EW_ADD_GATED:
        op_check_dense(op, p0, DEVICE_HOST);
        op_check_dense(op, p1, DEVICE_HOST);
        g0 = op_bcast_groups(op, p0, R, C);
        ASSERT(tensor_numel(p1) == R * C);
        break;
    case EW_MODULATE:      /* p0 = s, p1 = t or NULL, both broadcast */
        op_check_dense(op, p0, DEVICE_HOST);
        g0 = op_bcast_groups(op, p0, R, C);
        if (p1) {
            op_check_dense(op, p1, DEVICE_HOST);
            g1 = op_bcast_groups(op, p1, R, C);
        }
        break;
    case EW_ADD_BIAS:      /* p0 = b, broadcast */
        op_check_dense(op, p0, DEVICE_HOST);
        g0 = op_bcast_groups(op, p0, R, C);
        break;
    }

    for (int64_t r = 0; r < R; r++) {
        load_row(buf, x, r, C);
        load_row(b0, p0, g0 ? r / (R / g0) : r, C);
        if (p1)
            load_row(b1, p1, g1 ? r / (R / g1) : r, C);
        for (int64_t c = 0; c < C; c++) {
            switch (kind) {
            case EW_ADD:
            case EW_ADD_BIAS:
                buf[c] = buf[c] + b0[c];
                break;
            case EW_ADD_SCALED:
                buf[c] = buf[c] + b0[c] * b1[c];
                break;
            case EW_ADD_GATED:
                buf[c] = buf[c] + dtype_round(p1->dtype, b0[c] * b1[c]);
                break;
            case EW_MODULATE:
                buf[c] = buf[c] * (1.0f + b0[c]) + (p1 ? b1[c] : 0.0f);
                break;
            }
        }
        dtype_convert((char *)y->data + (size_t)(r * C) * dtype_size(y->dtype), y->dtype, buf,
                      DTYPE_F32, (size_t)C);
    }
    free(buf);
}

void op_add_cpu(struct tensor *y, const struct tensor *x, const struct tensor *a)
{
    ew_run("add", EW_ADD, y, x, a, NULL);
}

void op_add_scaled_cpu(struct tensor *y, const struct tensor *x, const struct tensor *g,
                       const struct tensor *a)
{
    ew_run("add_scaled", EW_ADD_SCALED, y, x, g, a);
}

void op_add_gated_cpu(struct tensor *y, const struct tensor *x, const struct tensor *g,
                      const struct tensor *a)
{
    ew_run("add_gated", EW_ADD_GATED, y, x, g, a);
}

void op_modulate_cpu(struct tensor *y, const struct tensor *x, const struct tensor *s,
                     const struct tensor *t)
{
    ew_run("modulate", EW_MODULATE, y, x, s, t);
}

void op_add_bias_cpu(struct tensor *y, const struct tensor *x, const struct tensor *b)
{
    ew_run("add_bias", EW_ADD_BIAS, y, x, b, NULL);
}
