/*
 * op_harness.h - support for the op tests (tests/test_op_*.c): host and device
 * test tensors with guard bytes (sentinels) after their data, fp32 views of
 * their contents, and the op tests' shared start-up (device arena + op_ctx).
 *
 * Every buffer made here is malloc'ed (host) or taken from the test's device
 * arena, with SENTINEL_BYTES of guard after the data; ot_free releases host
 * buffers, device memory goes back with the arena.
 */
#ifndef S3D_OP_HARNESS_H
#define S3D_OP_HARNESS_H

#include "arena.h"
#include "ops.h"
#include "tensor.h"

#include <stdbool.h>
#include <stddef.h>

/* Round every value to the nearest dt value (so CPU and GPU see equal inputs). */
void ot_round(float *v, size_t n, enum dtype dt);

/* A contiguous host tensor of dtype dt holding vals rounded to dt, or, when
 * vals is NULL, all 0xff bytes (NaN in F32/F16/BF16: an unwritten output shows). */
struct tensor ot_host(enum dtype dt, const int64_t *shape, int ndim, const float *vals);
void          ot_free(struct tensor *t);
/* The guard after a host or device tensor's data is intact. */
bool          ot_guard_ok(const struct tensor *t);
/* Contents of a contiguous host or device tensor as fp32 (numel values). */
void          ot_to_f32(const struct tensor *t, float *out);
/* A device copy of a host tensor (same dtype, shape), guard after it. */
struct tensor ot_dev(struct arena *a, const struct tensor *host);

/* One row of a test's tolerance table: outputs of dtype dt pass when every
 * |o - r| <= atol + rtol |r| and (nmse >= 0) NMSE <= nmse; why is printed. */
struct op_tol {
    enum dtype  dt;
    double      atol, rtol, nmse;
    const char *why;
};

/* The row for dt (the first row when none matches). */
const struct op_tol *ot_tol(const struct op_tol *table, size_t n, enum dtype dt);
/* Print every row, one line each, at the top of a test's output. */
void ot_print_tols(const struct op_tol *table, size_t n);
/* Compare n floats with the row for dt and report under label (report_cmp). */
bool ot_report(const char *label, const float *out, const float *ref, size_t n,
               const struct op_tol *table, size_t ntab, enum dtype dt);

/* The GPU part of an op test: a device arena of `bytes` and an op context.
 * Returns false (nothing to free) when there is no usable CUDA device. */
bool ot_gpu_begin(struct arena *a, struct op_ctx *ctx, size_t bytes);
void ot_gpu_end(struct arena *a, struct op_ctx *ctx);

/* After the CPU part: without a GPU, print the skip line and exit 77 (or fail
 * if the CPU part failed); with S3D_REQUIRE_GPU=1 a missing GPU is a failure. */
void ot_skip_without_gpu(const char *name);

#endif
