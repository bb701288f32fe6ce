/*
 * stage_req.c - the request helpers a stage's run uses: its inputs by name,
 * dtype and shape, its outputs in the request arena, the one-line failure
 * text of the reply, path params inside the job directory. Contract: stage.h.
 * Test: tests/test_stage.c with tests/tools/echo_stage.c.
 */
#include "stage.h"

#include "err.h"
#include "jobdir.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int stage_fail(struct stage_req *rq, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(rq->err, sizeof(rq->err), fmt, ap);
    va_end(ap);
    log_error("req %lld: %s", (long long)rq->msg->id, rq->err);
    return code;
}

const struct tensor *stage_input(struct stage_req *rq, const char *name, enum dtype dt,
                                 const int64_t *shape, int ndim)
{
    char got[128], want[128];

    for (int i = 0; i < rq->n_in; i++) {
        const struct tensor *t = &rq->in[i].t;
        bool ok;

        if (strcmp(rq->in[i].desc->name, name) != 0)
            continue;
        ok = t->dtype == dt && (!shape || t->ndim == ndim);
        for (int d = 0; ok && shape && d < ndim; d++)
            ok = shape[d] < 0 || shape[d] == t->shape[d];
        if (ok)
            return t;
        tensor_shape_str(t->shape, t->ndim, got, sizeof(got));
        if (shape)
            tensor_shape_str(shape, ndim, want, sizeof(want));
        else
            snprintf(want, sizeof(want), "(any shape)");
        stage_fail(rq, S3D_ESHAPE, "input '%s': expected %s %s, got %s %s (-1 = any size)",
                   name, dtype_name(dt), want, dtype_name(t->dtype), got);
        return NULL;
    }
    stage_fail(rq, S3D_ESHAPE, "input '%s' is missing from the request. HINT: check the "
               "pipeline's input lines for stage '%s'", name, rq->opts->name);
    return NULL;
}

const struct tensor *stage_input_opt(const struct stage_req *rq, const char *name)
{
    for (int i = 0; i < rq->n_in; i++)
        if (!strcmp(rq->in[i].desc->name, name))
            return &rq->in[i].t;
    return NULL;
}

const struct tensor *stage_input_float(struct stage_req *rq, const char *name,
                                       const int64_t *shape, int ndim)
{
    const struct tensor *t = stage_input_opt(rq, name);

    return stage_input(rq, name, t && t->dtype == DTYPE_F32 ? DTYPE_F32 : DTYPE_F16, shape, ndim);
}

int stage_input_slat(struct stage_req *rq, const struct tensor **coords,
                     const struct tensor **feats)
{
    *coords = stage_input(rq, "coords", DTYPE_I32, SHAPE(-1, 4));
    *feats = *coords ? stage_input(rq, "feats", DTYPE_F32, SHAPE(-1, -1)) : NULL;
    return *feats ? 0 : S3D_ESHAPE;              /* stage_input named got vs expected */
}

struct tensor *stage_output(struct stage_req *rq, const char *name, enum dtype dt,
                            const int64_t *shape, int ndim)
{
    struct tensor *t;
    size_t bytes = dtype_size(dt);
    void *p;

    if (rq->ahead) {
        stage_fail(rq, S3D_EINVAL, "output '%s' declared after the output file was started "
                   "(stage_write_ahead)", name);
        return NULL;
    }
    if (rq->n_out >= WIRE_MAX_TENSORS || strlen(name) >= WIRE_KEY_MAX || !name[0]) {
        stage_fail(rq, S3D_EINVAL, "output '%s': too many outputs or a bad name", name);
        return NULL;
    }
    for (int i = 0; i < rq->n_out; i++)
        if (!strcmp(rq->out_name[i], name)) {
            stage_fail(rq, S3D_EINVAL, "output '%s' written twice", name);
            return NULL;
        }
    ASSERT(ndim >= 0 && ndim <= TENSOR_MAX_DIMS);
    for (int d = 0; d < ndim; d++) {
        ASSERT(shape[d] >= 0);
        bytes *= (size_t)shape[d];
    }
    p = arena_alloc(rq->arena, bytes ? bytes : 1);
    if (!p) {
        stage_fail(rq, S3D_ENOMEM, "output '%s' (%zu bytes) does not fit the request arena "
                   "(%zu of %zu bytes used): the inputs are larger than this stage was sized "
                   "for (HINT: for images, see --max-pixels)", name, bytes, rq->arena->used,
                   rq->arena->size);
        return NULL;
    }
    strcpy(rq->out_name[rq->n_out], name);
    t = &rq->out[rq->n_out++];
    *t = tensor_view(p, dt, DEVICE_HOST, shape, ndim);
    return t;
}

int stage_param_path(struct stage_req *rq, const char *key, char *out, size_t out_len)
{
    const char *p = wire_get_str(rq->msg, key, NULL);

    if (!p)
        return stage_fail(rq, S3D_EINVAL, "param '%s' (a path string) is missing", key);
    if (!rq->in_dir)
        return stage_fail(rq, S3D_EINVAL, "param '%s': a path needs a job directory "
                          "(param 'job')", key);
    if (jobdir_resolve(rq->in_dir, p, false, out, out_len) != 0)
        return stage_fail(rq, S3D_EINVAL, "param '%s': '%s' is missing or not inside '%s'",
                          key, p, rq->in_dir);
    return 0;
}
