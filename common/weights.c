/*
 * weights.c - declare-then-upload weight binding. See weights.h.
 */
#include "weights.h"
#include "beat.h"
#include "check.h"
#include "err.h"
#include "log.h"

#include <cuda_runtime_api.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define WEIGHTS_NAME_MAX 1024

int weights_open(struct weights *w, const char *path_key, const char *prefix, enum dtype dtype)
{
    int rc;

    memset(w, 0, sizeof(*w));
    rc = ckpt_open(&w->ck, path_key, 0);
    if (rc)
        return rc;
    w->source = strdup(path_key);
    w->prefix = strdup(prefix ? prefix : "");
    w->used = calloc((size_t)w->ck.n_entries + 1, sizeof(*w->used));
    if (!w->source || !w->prefix || !w->used) {
        log_error("%s: out of memory", path_key);
        weights_close(w);
        return S3D_ENOMEM;
    }
    w->dtype = dtype;
    return 0;
}

void weights_close(struct weights *w)
{
    if (!w)
        return;
    ckpt_close(&w->ck);
    free(w->source);
    free(w->prefix);
    free(w->binds);
    free(w->used);
    memset(w, 0, sizeof(*w));
}

/* prefix + formatted name into buf; false when it does not fit. */
static bool full_name(const struct weights *w, char *buf, const char *fmt, va_list ap)
{
    size_t pl = strlen(w->prefix);
    int n;

    if (pl >= WEIGHTS_NAME_MAX)
        return false;
    memcpy(buf, w->prefix, pl);
    n = vsnprintf(buf + pl, WEIGHTS_NAME_MAX - pl, fmt, ap);
    return n >= 0 && (size_t)n < WEIGHTS_NAME_MAX - pl;
}

const struct ckpt_entry *weights_find(const struct weights *w, const char *fmt, ...)
{
    char name[WEIGHTS_NAME_MAX];
    va_list ap;
    bool ok;

    va_start(ap, fmt);
    ok = full_name(w, name, fmt, ap);
    va_end(ap);
    return ok ? ckpt_find(&w->ck, name) : NULL;
}

static bool grow_binds(struct weights *w)
{
    if (w->n_binds == w->cap_binds) {
        int cap = w->cap_binds ? w->cap_binds * 2 : 64;
        struct weights_bind_rec *nb = realloc(w->binds, (size_t)cap * sizeof(*nb));

        if (!nb) {
            log_error("%s: out of memory", w->source);
            return false;
        }
        w->binds = nb;
        w->cap_binds = cap;
    }
    return true;
}

static int bind_v(struct weights *w, struct tensor *dst, int dt, const int64_t *shape,
                  int ndim, const char *fmt, va_list ap)
{
    char name[WEIGHTS_NAME_MAX];
    const struct ckpt_entry *e;
    struct weights_bind_rec *r;
    enum dtype target;
    bool same;

    if (!full_name(w, name, fmt, ap)) {
        log_error("%s: tensor name too long (prefix '%s')", w->source, w->prefix);
        return S3D_EINVAL;
    }
    e = ckpt_find(&w->ck, name);
    if (!e) {
        log_error("%s: tensor '%s' not found (HINT: wrong file for this stage, or a naming "
                  "bug; `sam3d inspect %s` lists the names)", w->source, name, w->source);
        return S3D_ENOTFOUND;
    }
    same = shape == NULL || ndim == e->ndim;
    for (int i = 0; same && shape && i < ndim; i++)
        same = shape[i] == e->shape[i];
    if (!same) {
        char want[TENSOR_MAX_DIMS * 22 + 3], got[TENSOR_MAX_DIMS * 22 + 3];

        tensor_shape_str(shape, ndim, want, sizeof(want));
        tensor_shape_str(e->shape, e->ndim, got, sizeof(got));
        log_error("%s: tensor '%s' has shape %s, expected %s (HINT: a checkpoint of a "
                  "different model size or version?)", w->source, name, got, want);
        return S3D_ESHAPE;
    }
    if (dt >= 0)
        target = (enum dtype)dt;
    else
        target = dtype_is_float(e->dtype) ? w->dtype : e->dtype;
    if (!grow_binds(w))
        return S3D_ENOMEM;
    r = &w->binds[w->n_binds++];
    r->src = e;
    r->dst = dst;
    r->dtype = target;
    r->nbytes = (size_t)ckpt_entry_numel(e) * dtype_size(target);
    w->arena_bytes += arena_round(r->nbytes);
    w->used[e - w->ck.entries] = true;
    *dst = tensor_view(NULL, target, DEVICE_HOST, e->shape, e->ndim);
    return 0;
}

int weights_bind(struct weights *w, struct tensor *dst, const int64_t *shape, int ndim,
                 const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = bind_v(w, dst, -1, shape, ndim, fmt, ap);
    va_end(ap);
    return rc;
}

int weights_bind_as(struct weights *w, struct tensor *dst, enum dtype dt, const int64_t *shape,
                    int ndim, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = bind_v(w, dst, (int)dt, shape, ndim, fmt, ap);
    va_end(ap);
    return rc;
}

size_t weights_arena_bytes(const struct weights *w)
{
    return w->arena_bytes;
}

// ----------------------------------------------------------------------------
// upload: gather + convert into a staging slot, then copy the slot to dst

struct copier {
    bool         device;       /* dst is device memory */
    cudaStream_t stream;
    cudaEvent_t  done[2];      /* slot s may be rewritten once done[s] completed */
    bool         pending[2];
};

static void copier_wait(struct copier *cp, int slot)
{
    if (cp->device && cp->pending[slot])
        CUDA_CHECK(cudaEventSynchronize(cp->done[slot]));
    cp->pending[slot] = false;
}

static void copier_copy(struct copier *cp, int slot, void *dst, const void *src, size_t n)
{
    if (!cp->device) {
        memcpy(dst, src, n);
        return;
    }
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, cp->stream));
    CUDA_CHECK(cudaEventRecord(cp->done[slot], cp->stream));
    cp->pending[slot] = true;
}

int weights_upload(struct weights *w, struct arena *dst, struct arena *staging)
{
    return weights_upload_binds(w, 0, w->n_binds, dst, staging);
}

int weights_upload_binds(struct weights *w, int first, int n_binds, struct arena *dst,
                         struct arena *staging)
{
    struct copier cp = {0};
    size_t mark = arena_mark(staging);
    size_t avail = staging->size - staging->used;
    size_t half = avail > 2 * ARENA_ALIGN ? ((avail - 2 * ARENA_ALIGN) / 2) & ~(size_t)63 : 0;
    uint8_t *slot[2] = {NULL, NULL};
    uint8_t *tmp = NULL;       /* gather buffer for strided sources that also convert */
    int next = 0;
    int nt = dtype_threads();  /* S3D_THREADS, else the online cores */
    int rc = 0;

    ASSERT(staging->kind != ARENA_DEVICE);
    ASSERT(half >= 64);        /* a staging arena of a few KiB at least */
    slot[0] = arena_alloc(staging, half);
    slot[1] = arena_alloc(staging, half);
    tmp = malloc(half);
    ASSERT(slot[0] && slot[1] && tmp);
    cp.device = dst->kind == ARENA_DEVICE;
    if (cp.device) {
        CUDA_CHECK(cudaStreamCreateWithFlags(&cp.stream, cudaStreamNonBlocking));
        CUDA_CHECK(cudaEventCreateWithFlags(&cp.done[0], cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&cp.done[1], cudaEventDisableTiming));
    }
    ASSERT(first >= 0 && n_binds >= 0 && first + n_binds <= w->n_binds);
    for (int b = first; b < first + n_binds; b++) {
        struct weights_bind_rec *r = &w->binds[b];
        const struct ckpt_entry *e = r->src;
        size_t es = dtype_size(e->dtype), ed = dtype_size(r->dtype);
        int64_t n = ckpt_entry_numel(e);
        int64_t per = (int64_t)(half / (es > ed ? es : ed));
        struct tensor src_t = ckpt_entry_tensor(e);
        bool contig = tensor_is_contiguous(&src_t);
        uint8_t *out = arena_alloc(dst, r->nbytes);

        if (!out && r->nbytes) {
            log_error("%s: weights arena '%s' too small for '%s' (%zu of %zu bytes used; "
                      "size it with weights_arena_bytes)", w->source, dst->name, e->name,
                      dst->used, dst->size);
            rc = S3D_ENOMEM;
            goto out;
        }
        for (int64_t i = 0; i < n; i += per) {
            int64_t k = n - i < per ? n - i : per;
            /* a host or pinned dst is written in place (no staging copy: the streamed
             * blocks' 1.9 GB of pinned memory, the CPU path) */
            uint8_t *sl = cp.device ? slot[next] : out + (size_t)i * ed;

            copier_wait(&cp, next);
            /* contiguous chunks (nearly all weight bytes) are read and converted by nt
             * threads while the other slot's cudaMemcpyAsync runs; the mapping's page
             * faults are spread over the threads too */
            if (contig) {
                dtype_convert_mt(sl, r->dtype, e->data + (size_t)i * es, e->dtype, (size_t)k,
                                 nt);
            } else if (e->dtype == r->dtype) {
                ckpt_gather(e, i, k, sl);
            } else {
                ckpt_gather(e, i, k, tmp);
                dtype_convert_mt(sl, r->dtype, tmp, e->dtype, (size_t)k, nt);
            }
            if (cp.device)
                copier_copy(&cp, next, out + (size_t)i * ed, sl, (size_t)k * ed);
            next ^= 1;
            beat_progress();              /* a long load is a sign of life too (beat.h) */
        }
        *r->dst = tensor_view(out, r->dtype, cp.device ? DEVICE_CUDA : DEVICE_HOST,
                              e->shape, e->ndim);
    }
out:
    if (cp.device) {
        CUDA_CHECK(cudaStreamSynchronize(cp.stream));
        CUDA_CHECK(cudaEventDestroy(cp.done[0]));
        CUDA_CHECK(cudaEventDestroy(cp.done[1]));
        CUDA_CHECK(cudaStreamDestroy(cp.stream));
    }
    free(tmp);
    arena_release(staging, mark);
    return rc;
}

int weights_report_unused(const struct weights *w, const char *sub)
{
    char pre[WEIGHTS_NAME_MAX];
    size_t pl;
    int count = 0;

    snprintf(pre, sizeof(pre), "%s%s", w->prefix, sub ? sub : "");
    pl = strlen(pre);
    for (int i = 0; i < w->ck.n_entries; i++) {
        const struct ckpt_entry *e = &w->ck.entries[i];

        if (w->used[i] || strncmp(e->name, pre, pl))
            continue;
        log_warn("%s: tensor '%s' %s is not used by this stage", w->source, e->name,
                 dtype_name(e->dtype));
        count++;
    }
    return count;
}

int weights_open_key(struct weights *w, const char *path, const char *key, const char *prefix,
                     enum dtype dtype)
{
    struct stat st;
    char *pk = NULL;
    int rc;

    if (stat(path, &st) == 0) {
        size_t n = strlen(path) + strlen(key) + 2;
        pk = malloc(n);
        ASSERT(pk);
        snprintf(pk, n, "%s:%s", path, key);
    }
    rc = weights_open(w, pk ? pk : path, prefix, dtype);
    free(pk);
    return rc;
}

size_t weights_binds_bytes(const struct weights *w, int first, int n_binds)
{
    size_t n = 0;

    ASSERT(first >= 0 && n_binds >= 0 && first + n_binds <= w->n_binds);
    for (int b = first; b < first + n_binds; b++)
        n += arena_round(w->binds[b].nbytes);
    return n;
}

int weights_load_binds(struct weights *w, int first, int n_binds, struct arena *dst,
                       enum arena_kind kind, const char *name)
{
    struct arena staging;
    int rc;

    memset(&staging, 0, sizeof(staging));
    rc = arena_init(dst, kind, name, weights_binds_bytes(w, first, n_binds));
    if (!rc)
        rc = arena_init(&staging, kind == ARENA_DEVICE ? ARENA_PINNED : ARENA_HOST, "staging",
                        (size_t)64 << 20);
    if (!rc)
        rc = weights_upload_binds(w, first, n_binds, dst, &staging);
    arena_free(&staging);
    if (rc)
        arena_free(dst);
    return rc;
}

int weights_load_arena(struct weights *w, struct arena *dst, enum device dev)
{
    int rc = weights_load_binds(w, 0, w->n_binds, dst,
                                dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "weights");

    if (!rc)
        weights_report_unused(w, "");
    return rc;
}
