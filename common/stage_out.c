/*
 * stage_out.c - a request's outputs leave the stage: the artifact file in the job
 * directory (its __metadata__: the stage, version, weights, device, precision and
 * params) or the reply's frames; and the same file written ahead, while the run
 * computes its last outputs (stage_write_ahead). Contract: stage.h, stage_out.h.
 * Test: tests/test_stage.c with tests/tools/echo_stage.c (param write_ahead).
 */
#include "stage_out.h"

#include "err.h"
#include "jobdir.h"
#include "json_min.h"
#include "log.h"
#include "safetensors.h"
#include "version.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Text built by sbuf_put: b[len) holds what fits; n counts every byte asked
 * for, so a pass with len 0 measures. */
struct sbuf {
    char  *b;
    size_t len, n;
};

static void sbuf_put(struct sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sbuf_put(struct sbuf *s, const char *fmt, ...)
{
    va_list ap;
    int k;

    va_start(ap, fmt);
    k = vsnprintf(s->n < s->len ? s->b + s->n : NULL, s->n < s->len ? s->len - s->n : 0, fmt,
                  ap);
    va_end(ap);
    s->n += k > 0 ? (size_t)k : 0;
}

/* v as a JSON string: quotes, backslashes and control characters escaped. */
static void sbuf_json_str(struct sbuf *s, const char *v)
{
    char e[7];

    sbuf_put(s, "\"");
    for (; *v; v++) {
        json_escape_byte(e, (unsigned char)*v);
        sbuf_put(s, "%s", e);
    }
    sbuf_put(s, "\"");
}

/* Every request param of rq with the value it runs with (defaults included),
 * as one JSON object: {"steps": 25, "cfg": 7, "seed": 42, "cache_kv": false}; numbers
 * in the shortest of %.15g / %.17g that reads back as the value, paths inside the
 * job directory relative to it (the same run in another job: the same bytes). */
static void params_json(const struct stage_req *rq, struct sbuf *s)
{
    sbuf_put(s, "{");
    for (int i = 0; rq->params && rq->params[i].name; i++) {
        const struct stage_param *p = &rq->params[i];

        sbuf_put(s, "%s", i ? ", " : "");
        sbuf_json_str(s, p->name);
        sbuf_put(s, ": ");
        if (p->type == STAGE_PARAM_STRING || p->type == STAGE_PARAM_PATH) {
            const char *v = wire_get_str(rq->msg, p->name, NULL);
            size_t d = rq->in_dir ? strlen(rq->in_dir) : 0;

            if (v && p->type == STAGE_PARAM_PATH && d && !strncmp(v, rq->in_dir, d) &&
                v[d] == '/')
                v += d + 1;                 /* inside the job: its name there, not the job's */
            if (v)
                sbuf_json_str(s, v);
            else
                sbuf_put(s, "null");
        } else if (p->type == STAGE_PARAM_FLAG) {
            sbuf_put(s, "%s", rq->val[i] != 0 ? "true" : "false");
        } else {
            char num[32];

            snprintf(num, sizeof(num), "%.15g", rq->val[i]);
            if (strtod(num, NULL) != rq->val[i])
                snprintf(num, sizeof(num), "%.17g", rq->val[i]);
            sbuf_put(s, "%s", num);
        }
    }
    sbuf_put(s, "}");
}

/* The artifact's __metadata__ (docs/formats.md "Artifacts") as (key, value)
 * pairs in kv[12]: the stage, the version, its weights, the device and compute
 * precision it ran on (rq->rt), and params_json, built in the request arena.
 * The number of pairs, or S3D_ENOMEM after stage_fail. */
static int artifact_meta(struct stage_req *rq, const char **kv, char *dev, size_t dev_len)
{
    const struct stage_rt *rt = rq->rt;
    bool cuda = rt ? rt->device == DEVICE_CUDA : rq->opts->device >= 0;
    struct sbuf s = {0};
    int k = 0;

    params_json(rq, &s);
    s.len = s.n + 1;
    s.n = 0;
    s.b = arena_alloc(rq->arena, s.len);
    if (!s.b)
        return stage_fail(rq, S3D_ENOMEM, "the artifact's params (%zu bytes) do not fit the "
                          "request arena", s.len);
    params_json(rq, &s);
    if (cuda)
        snprintf(dev, dev_len, "cuda:%d", rt ? rt->cuda_index : rq->opts->device);
    else
        snprintf(dev, dev_len, "cpu");
    kv[k++] = "stage";     kv[k++] = rq->opts->name;
    kv[k++] = "version";   kv[k++] = s3d_version();
    kv[k++] = "weights";   kv[k++] = rq->opts->weights ? rq->opts->weights : "";
    kv[k++] = "device";    kv[k++] = dev;
    kv[k++] = "precision"; kv[k++] = !cuda ? "fp32" :
                                     rt ? (rt->compute_dt == DTYPE_F16 ? "fp16" : "fp32") :
                                     rq->opts->precision == STAGE_FP32 ? "fp32" : "fp16";
    kv[k++] = "params";    kv[k++] = s.b;
    return k / 2;
}

/* The artifact's file name in the job directory (param out, or <stage>.safetensors)
 * into file, its path into path. 0, or S3D_EINVAL after stage_fail. */
static int out_target(struct stage_req *rq, char *file, size_t file_len, char *path,
                      size_t path_len)
{
    const char *out = wire_get_str(rq->msg, "out", NULL);
    int n;

    if (out)
        n = snprintf(file, file_len, "%s", out);
    else
        n = snprintf(file, file_len, "%s.safetensors", rq->opts->name);
    if (n < 0 || (size_t)n >= file_len || !jobdir_out_name_ok(rq->opts->name, file))
        return stage_fail(rq, S3D_EINVAL, "param 'out': '%.100s' is not an output name of "
                          "stage %s (%s.safetensors or %s_<tag>.safetensors, so that no request "
                          "can make it write over a socket, an input or another stage's "
                          "artifact)", out ? out : file, rq->opts->name, rq->opts->name,
                          rq->opts->name);
    n = snprintf(path, path_len, "%s/%s", rq->out_job->path, file);
    if (n < 0 || (size_t)n >= path_len || (size_t)n >= WIRE_STR_MAX)
        return stage_fail(rq, S3D_EINVAL, "output path '%s/%s' is too long", rq->out_job->path,
                          file);
    return 0;
}

/* The file being written ahead (one request at a time per stage process). */
struct stage_ahead {
    struct st_writer     w;
    struct st_write_item items[WIRE_MAX_TENSORS];
    char                 path[PATH_MAX];
    int                  n, n_ready, rc;
    pthread_t            th;
    bool                 thread;
};

static struct stage_ahead ahead;

static void *ahead_run(void *arg)
{
    struct stage_ahead *a = arg;

    for (int i = 0; i < a->n_ready && !a->rc; i++)
        a->rc = st_writer_put(&a->w, a->items, i);
    return NULL;
}

/* Wait for the thread; its result (0 or an error code). */
static int ahead_join(struct stage_ahead *a)
{
    if (a->thread) {
        pthread_join(a->th, NULL);
        a->thread = false;
    }
    return a->rc;
}

/* The open (header written) file of rq's outputs: st_writer_open with the metadata. */
static int open_file(struct stage_req *rq, struct stage_ahead *a)
{
    char file[WIRE_KEY_MAX + 16], dev[16];
    const char *meta[12];
    int n_meta, rc;

    if ((rc = out_target(rq, file, sizeof(file), a->path, sizeof(a->path))))
        return rc;
    for (int i = 0; i < rq->n_out; i++) {
        a->items[i].name = rq->out_name[i];
        a->items[i].t = rq->out[i];
    }
    a->n = rq->n_out;
    if ((n_meta = artifact_meta(rq, meta, dev, sizeof(dev))) < 0)
        return n_meta;
    rc = st_writer_open(&a->w, rq->out_job->fd, file, a->path, a->items, a->n, meta, n_meta);
    if (rc)
        return stage_fail(rq, rc == S3D_EIO ? S3D_EIO : rc, "cannot write the outputs to "
                          "'%s': %s", a->path, rc == S3D_EIO ? strerror(errno) :
                          s3d_strerror(rc));
    return 0;
}

int stage_write_ahead(struct stage_req *rq, int n_ready)
{
    struct stage_ahead *a = &ahead;
    int rc;

    ASSERT(n_ready >= 0 && n_ready <= rq->n_out && !rq->ahead);
    if (!rq->out_job)
        return 0;                                 /* inline reply: the frames at the end */
    memset(a, 0, sizeof(*a));
    if ((rc = open_file(rq, a)))
        return rc;
    a->n_ready = n_ready;
    rq->ahead = a;
    a->thread = pthread_create(&a->th, NULL, ahead_run, a) == 0;
    if (!a->thread)
        ahead_run(a);                             /* no thread: write them now */
    return 0;
}

void stage_out_abort(struct stage_req *rq)
{
    if (!rq->ahead)
        return;
    ahead_join(rq->ahead);
    st_writer_abort(&rq->ahead->w);
    rq->ahead = NULL;
}

int stage_out_emit(struct stage_req *rq, struct wire_msg *rep)
{
    struct stage_ahead *a = rq->ahead ? rq->ahead : &ahead;
    int rc;

    if (!rq->out_job) {          /* inline: the frames, and the metadata as meta_KEY fields */
        const char *meta[12];
        char dev[16];
        int n_meta = artifact_meta(rq, meta, dev, sizeof(dev));

        if (n_meta < 0)
            return n_meta;
        for (int i = 0; i < rq->n_out; i++)
            wire_add_frame(rep, rq->out_name[i], rq->out[i].dtype, rq->out[i].shape,
                           rq->out[i].ndim, rq->out[i].data);
        for (int k = 0; k < n_meta; k++) {
            char key[WIRE_KEY_MAX];

            snprintf(key, sizeof(key), "meta_%s", meta[2 * k]);
            if (strlen(meta[2 * k + 1]) < WIRE_STR_MAX)  /* params too long for a field: left out */
                (void)wire_set_str(rep, key, meta[2 * k + 1]);
        }
        return 0;
    }
    if (!rq->ahead) {            /* nothing written ahead: the whole file now */
        memset(a, 0, sizeof(*a));
        if ((rc = open_file(rq, a)))
            return rc;
    }
    ASSERT(a->n == rq->n_out);   /* stage_output refuses outputs after stage_write_ahead */
    rc = ahead_join(a);
    for (int i = a->n_ready; i < a->n && !rc; i++)
        rc = st_writer_put(&a->w, a->items, i);
    rq->ahead = NULL;
    if (rc) {
        st_writer_abort(&a->w);
        return stage_fail(rq, S3D_EIO, "cannot write the outputs to '%s': %s", a->path,
                          rc == S3D_EIO ? strerror(errno) : s3d_strerror(rc));
    }
    if (st_writer_commit(&a->w))
        return stage_fail(rq, S3D_EIO, "cannot write the outputs to '%s': %s", a->path,
                          strerror(errno));
    for (int i = 0; i < rq->n_out; i++)
        wire_add_shm(rep, rq->out_name[i], rq->out[i].dtype, rq->out[i].shape,
                     rq->out[i].ndim, a->path);
    return 0;
}
