/*
 * engine_req.c - the run request the engine sends a stage: its params and the
 * descriptors of its inputs in the job directory. Contract: engine_int.h.
 */
#include "engine_int.h"

#include "log.h"
#include "err.h"
#include "safetensors.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* Replace $JOB, $IMAGE, $MASK in v into out. */
static int expand(const struct job *j, const char *v, char *out, size_t len)
{
    static const char *const vars[] = {"$JOB", "$IMAGE", "$MASK"};
    const char *vals[] = {j->dir.path, j->image, j->mask};
    size_t n = 0;

    while (*v) {
        int k = -1;

        for (int i = 0; i < 3 && k < 0; i++)
            if (!strncmp(v, vars[i], strlen(vars[i])))
                k = i;
        if (k >= 0) {
            size_t l = strlen(vals[k]);

            if (n + l >= len)
                return S3D_EINVAL;
            memcpy(out + n, vals[k], l);
            n += l;
            v += strlen(vars[k]);
        } else {
            if (n + 1 >= len)
                return S3D_EINVAL;
            out[n++] = *v++;
        }
    }
    out[n] = 0;
    return 0;
}

/* Describe tensor key of artifact file (in the job directory) as input name. */
static int add_input(struct wire_msg *m, const struct job *j, const char *file, const char *key,
                     const char *name, char *err, size_t err_len)
{
    const struct ckpt_entry *ce;
    struct wire_tensor *t;
    struct ckpt c;
    char path[PATH_MAX + WIRE_KEY_MAX];

    snprintf(path, sizeof(path), "%s/%s", j->dir.path, file);
    if (safetensors_open(&c, path) != 0) {
        snprintf(err, err_len, "input artifact '%s' is missing or unreadable (it comes from an "
                 "earlier stage; re-run that one)", file);
        return S3D_ENOTFOUND;
    }
    ce = ckpt_find(&c, key);
    if (!ce) {
        snprintf(err, err_len, "artifact '%s' has no tensor '%s'", file, key);
        ckpt_close(&c);
        return S3D_ENOTFOUND;
    }
    t = wire_add_shm(m, name, ce->dtype, ce->shape, ce->ndim, path);
    strcpy(t->key, key);
    ckpt_close(&c);
    return 0;
}

/* The run request for stage s of job j: params (pipeline's, then the job's
 * overrides) and the input descriptors. 0, or an error with err set. */
int engine_build_request(struct engine *e, struct job *j, int s, char *err, size_t err_len)
{
    const struct stage_rt *rt = &e->rt[s];
    const struct pipe_stage *ps = rt->ps;
    struct wire_msg *m = &e->req;
    char v[WIRE_STR_MAX];
    int rc;

    wire_msg_init(m, WIRE_REQUEST, 0);
    m->method = WIRE_RUN;
    if (!rt->remote)                    /* a remote stage answers inline (no job there) */
        ASSERT(wire_set_str(m, "job", j->dir.path) == 0);
    ASSERT(wire_set_str(m, "out", ps->out) == 0);
    for (int pass = 0; pass < 2; pass++) {  /* the pipeline's keys, then the job's own ones */
        int n = pass == 0 ? ps->n_params : j->n_set;

        for (int i = 0; i < n; i++) {
            const char *key = pass == 0 ? ps->param_key[i] : j->set[i].key;

            if (pass == 1 && (j->set[i].stage != s || wire_find(m, key)))
                continue;
            if (expand(j, job_param(e, j, s, key), v, sizeof(v)) != 0 ||
                wire_set_parsed(m, key, v) != 0) {
                snprintf(err, err_len, "param '%s' too long after expansion", key);
                return S3D_EINVAL;
            }
        }
    }
    if (rt->remote) {
        if (j->n_extra) {
            snprintf(err, err_len, "a remote stage cannot take this job's extra inputs");
            return S3D_EINVAL;
        }
        return remote_add_inputs(m, ps, j->dir.path, rt->rin, err, err_len);
    }
    for (int i = 0; i < ps->n_inputs; i++)
        if ((rc = add_input(m, j, ps->inputs[i].file, ps->inputs[i].key, ps->inputs[i].name,
                            err, err_len)))
            return rc;
    for (int i = 0; i < j->n_extra; i++)
        if (j->extra[i].stage == s &&
            (rc = add_input(m, j, j->extra[i].file, j->extra[i].key, j->extra[i].key, err,
                            err_len)))
            return rc;
    return 0;
}

/* Name the user's files, not the job's copies (which are gone after the run),
 * in a stage's error text. */
void engine_name_user_inputs(const struct job *j, char *text, size_t len)
{
    const char *copy[2] = {j->image, j->mask}, *user[2] = {j->user_image, j->user_mask};

    for (int k = 0; k < 2; k++) {
        char *at, out[WIRE_ERR_MAX];
        size_t cl = strlen(copy[k]);

        if (!user[k] || !cl || !(at = strstr(text, copy[k])))
            continue;
        snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - text), text, user[k], at + cl);
        snprintf(text, len, "%s", out);
    }
}

