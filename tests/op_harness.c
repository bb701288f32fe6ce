/*
 * op_harness.c - host/device test tensors with guard bytes for the op tests.
 * See op_harness.h.
 */
#include "op_harness.h"
#include "check.h"
#include "harness.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ot_round(float *v, size_t n, enum dtype dt)
{
    for (size_t i = 0; i < n; i++) {
        if (dt == DTYPE_F16)
            v[i] = f16_to_f32(f32_to_f16(v[i]));
        else if (dt == DTYPE_BF16)
            v[i] = bf16_to_f32(f32_to_bf16(v[i]));
    }
}

struct tensor ot_host(enum dtype dt, const int64_t *shape, int ndim, const float *vals)
{
    struct tensor t = tensor_view(NULL, dt, DEVICE_HOST, shape, ndim);
    size_t        nb = tensor_nbytes(&t);

    t.data = malloc(nb + SENTINEL_BYTES);
    ASSERT(t.data);
    if (vals)
        dtype_convert(t.data, dt, vals, DTYPE_F32, (size_t)tensor_numel(&t));
    else
        memset(t.data, 0xff, nb);
    sentinel_fill((char *)t.data + nb, SENTINEL_BYTES);
    return t;
}

void ot_free(struct tensor *t)
{
    if (t->device == DEVICE_HOST)
        free(t->data);
    t->data = NULL;
}

bool ot_guard_ok(const struct tensor *t)
{
    unsigned char g[SENTINEL_BYTES];
    size_t        nb = tensor_nbytes(t);

    if (t->device == DEVICE_HOST)
        return sentinel_ok((const char *)t->data + nb, SENTINEL_BYTES);
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(g, (const char *)t->data + nb, SENTINEL_BYTES, cudaMemcpyDeviceToHost));
    return sentinel_ok(g, SENTINEL_BYTES);
}

void ot_to_f32(const struct tensor *t, float *out)
{
    size_t n = (size_t)tensor_numel(t), nb = tensor_nbytes(t);

    ASSERT(tensor_is_contiguous(t));
    if (t->device == DEVICE_HOST) {
        dtype_convert(out, DTYPE_F32, t->data, t->dtype, n);
        return;
    }
    void *tmp = malloc(nb ? nb : 1);
    ASSERT(tmp);
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(tmp, t->data, nb, cudaMemcpyDeviceToHost));
    dtype_convert(out, DTYPE_F32, tmp, t->dtype, n);
    free(tmp);
}

struct tensor ot_dev(struct arena *a, const struct tensor *host)
{
    struct tensor d = *host;
    size_t        nb = tensor_nbytes(host);

    ASSERT(host->device == DEVICE_HOST && tensor_is_contiguous(host));
    d.device = DEVICE_CUDA;
    d.data = arena_must_alloc(a, nb + SENTINEL_BYTES);
    /* the host buffer carries its own guard right after the data: copy both */
    CUDA_CHECK(cudaMemcpy(d.data, host->data, nb + SENTINEL_BYTES, cudaMemcpyHostToDevice));
    return d;
}

const struct op_tol *ot_tol(const struct op_tol *table, size_t n, enum dtype dt)
{
    for (size_t i = 0; i < n; i++)
        if (table[i].dt == dt)
            return &table[i];
    return &table[0];
}

void ot_print_tols(const struct op_tol *table, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("tolerance %-4s atol %.0e rtol %.0e nmse %s%.0e: %s\n", dtype_name(table[i].dt),
               table[i].atol, table[i].rtol, table[i].nmse < 0 ? "-" : "",
               table[i].nmse < 0 ? 0.0 : table[i].nmse, table[i].why);
}

bool ot_report(const char *label, const float *out, const float *ref, size_t n,
               const struct op_tol *table, size_t ntab, enum dtype dt)
{
    const struct op_tol *t = ot_tol(table, ntab, dt);

    return report_cmp(label, compare_f32(out, ref, n, t->atol, t->rtol, t->nmse));
}

bool ot_gpu_begin(struct arena *a, struct op_ctx *ctx, size_t bytes)
{
    if (!s3d_cuda_available())
        return false;
    if (arena_init(a, ARENA_DEVICE, "op-test", bytes + OP_WORKSPACE_DEFAULT) != 0)
        return false;
    if (op_ctx_init(ctx, a, OP_WORKSPACE_DEFAULT) != 0) {
        arena_free(a);
        return false;
    }
    return true;
}

void ot_gpu_end(struct arena *a, struct op_ctx *ctx)
{
    op_ctx_free(ctx);
    arena_free(a);
}

void ot_skip_without_gpu(const char *name)
{
    if (s3d_cuda_available())
        return;
    if (harness_failures)
        exit(harness_done(name));
    if (harness_gpu_required()) {
        printf("%s: no CUDA device but S3D_REQUIRE_GPU=1\n", name);
        exit(1);
    }
    printf("%s: CPU reference checks passed\n", name);
    harness_skip("no CUDA device (CPU reference checks passed)");
}
