/*
 * run.c - `sam3d run` (the whole pipeline) and `sam3d stage` (one stage on an
 * existing job directory).
 *
 * A run: read the pipeline, create the job directory, copy the image and mask
 * into it, start every stage that is built (the prefix of the pipeline up to
 * the first stage not built yet) on ipc://<job>/<stage>.sock, check each
 * answers `status`, then run them in order with Lazy Pirate timeouts: a stage
 * that dies or hangs is killed, restarted and asked again, up to --retries
 * times; a stage that answers with an error fails the run at once (the same
 * input would fail again). Outputs are copied to --out/artifacts/, and
 * --out/report.json records every stage. On every exit path (success, error,
 * SIGINT/SIGTERM, crashed stage) all stage processes are stopped and reaped
 * and the job directory is removed unless --keep-job.
 *
 * Exit status: 0 complete, 1 failed, 2 usage, 3 the built prefix ran but
 * stages are still to come (listed), 130 interrupted.
 * Test: tests/test_orchestrator.sh.
 */
#include "client.h"
#include "commands.h"
#include "err.h"
#include "image.h"
#include "jobdir.h"
#include "log.h"
#include "pipeline.h"
#include "procs.h"
#include "remote.h"
#include "safetensors.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define EXIT_PARTIAL     3
#define EXIT_INTERRUPTED 130
#define STOP_GRACE_MS    2000

enum rt_state { RT_NOT_RUN, RT_MISSING, RT_DONE, RT_FAILED };
static const char *const state_names[] = {"not run", "not built", "done", "failed"};

struct stage_rt {
    const struct pipe_stage *ps;
    char            exe[PATH_MAX];
    char            weights[PATH_MAX];      /* "" = none */
    char            endpoint[WIRE_STR_MAX];
    char            device[32];             /* "" = none given (the stage's default) */
    bool            remote;                 /* served elsewhere: connect, never spawn */
    bool            built;
    bool            loaded;
    struct proc     proc;
    struct client   cli;
    enum rt_state   state;
    int             restarts;
    double          wall_ms, load_ms, run_ms;
    int64_t         peak_bytes, resident_bytes, host_peak_bytes, weights_bytes;
    int64_t         rss_peak_bytes;             /* max over its processes (ru_maxrss) */
    char            error[WIRE_ERR_MAX];
    int             n_out;
    struct wire_tensor out[WIRE_MAX_TENSORS];   /* what the stage wrote */
};

struct run_ctx {
    struct pipeline    pipe;
    char               stages_dir[PATH_MAX];
    const char        *weights_dir, *moge, *device, *precision, *out_dir;
    int                timeout_ms, retries;
    int64_t            vram_budget;              /* 0: one stage loaded at a time */
    struct jobdir      job;
    bool               own_job, keep_job;
    char               image[PATH_MAX + 32], mask[PATH_MAX + 32];   /* the job's copies */
    const char        *user_image, *user_mask;   /* --image, --mask as given (messages) */
    void              *zctx;
    int                n_rt;
    struct stage_rt    rt[PIPE_MAX_STAGES];
    struct wire_msg    req, rep;
    struct wire_frames frames;
    struct remote_inputs rin;                    /* mapped inputs of a remote request */
    int                n_over;                   /* --endpoint / --stage-device overrides */
    const char        *over_kind[2 * PIPE_MAX_STAGES], *over_arg[2 * PIPE_MAX_STAGES];
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = sig;
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Keep waiting for a reply while the stage lives (a remote one: until the
 * timeout) and no signal came. */
static bool keep_waiting(void *arg)
{
    struct stage_rt *rt = arg;

    return !interrupted && (rt->remote || proc_alive(&rt->proc));
}

// ---------------------------------------------------------------- stage processes

static int call(struct run_ctx *r, struct stage_rt *rt, enum wire_method m, int timeout_ms,
                char *why, size_t why_len)
{
    int rc;

    r->req.method = m;
    rc = client_call(&rt->cli, &r->req, &r->rep, &r->frames, timeout_ms, keep_waiting, rt,
                     why, why_len);
    if (rc == 0 && r->rep.has_error) {
        snprintf(why, why_len, "%s", r->rep.error);
        return S3D_EINVAL;
    }
    return rc;
}

/* (Re)connect to rt's endpoint and wait until it answers status; on failure
 * rt->error says why (a remote stage: where it was looked for). */
static int connect_stage(struct run_ctx *r, struct stage_rt *rt)
{
    char why[WIRE_ERR_MAX], desc[64];
    int rc;

    client_close(&rt->cli);
    rc = client_open(&rt->cli, r->zctx, rt->endpoint);
    if (rc)
        return rc;
    wire_msg_init(&r->req, WIRE_REQUEST, 0);
    rc = call(r, rt, WIRE_STATUS, r->timeout_ms, why, sizeof(why));
    if (rc && interrupted)
        return S3D_ETIMEOUT;
    if (rc && rt->remote) {
        snprintf(rt->error, sizeof(rt->error), "remote stage '%s' at %.200s did not answer "
                 "status: %.200s", rt->ps->name, rt->endpoint, why);
        log_error("%s. HINT: start it there (sam3d-<stage> --weights FILE --listen URL) "
                  "and check the address; for tcp:// beyond loopback set "
                  "S3D_CURVE_SERVERKEY to its public key and S3D_CURVE_CLIENT_SECRET to a "
                  "client key on its --curve-clients list", rt->error);
    } else if (rc) {
        snprintf(rt->error, sizeof(rt->error), "stage '%s' (%.200s) did not answer status: "
                 "%.200s (%s)", rt->ps->name, rt->exe, why,
                 proc_describe(&rt->proc, desc, sizeof(desc)));
        log_error("%s. HINT: its log lines above say why", rt->error);
    }
    if (rc)
        return rc;
    rt->loaded = wire_get_bool(&r->rep, "loaded", false);
    if (rt->remote)
        log_info("stage %s: remote at %s", rt->ps->name, rt->endpoint);
    else
        log_info("stage %s up (pid %d, %s)", rt->ps->name, (int)rt->proc.pid, rt->endpoint);
    return 0;
}

/* Start rt's process (a remote stage: only connect) and wait until it answers status. */
static int start_stage(struct run_ctx *r, struct stage_rt *rt)
{
    char *argv[16];
    int n = 0, rc;

    if (rt->remote)
        return connect_stage(r, rt);
    argv[n++] = rt->exe;
    argv[n++] = "--listen";
    argv[n++] = rt->endpoint;
    if (rt->weights[0]) {
        argv[n++] = "--weights";
        argv[n++] = rt->weights;
    }
    if (rt->device[0]) {
        argv[n++] = "--device";
        argv[n++] = rt->device;
    }
    if (r->precision) {
        argv[n++] = "--precision";
        argv[n++] = (char *)r->precision;
    }
    argv[n] = NULL;
    rc = proc_spawn(&rt->proc, argv);
    return rc ? rc : connect_stage(r, rt);
}

/* Stop rt's process (proc_stop) and keep its peak resident set. */
static void stop_proc(struct stage_rt *rt)
{
    proc_stop(&rt->proc, STOP_GRACE_MS);
    if ((int64_t)rt->proc.max_rss_kb * 1024 > rt->rss_peak_bytes)
        rt->rss_peak_bytes = (int64_t)rt->proc.max_rss_kb * 1024;
}

/* Ask politely (shutdown), then SIGTERM/SIGKILL; always reaps. A remote stage
 * is not ours to stop: only the connection is closed. */
static void stop_stage(struct run_ctx *r, struct stage_rt *rt)
{
    char why[WIRE_ERR_MAX];

    if (rt->remote) {
        client_close(&rt->cli);
        return;
    }
    if (proc_alive(&rt->proc) && !interrupted) {
        wire_msg_init(&r->req, WIRE_REQUEST, 0);
        (void)call(r, rt, WIRE_SHUTDOWN, 2000, why, sizeof(why));
    }
    stop_proc(rt);
    client_close(&rt->cli);
    rt->loaded = false;
}

static void stop_all(struct run_ctx *r)
{
    for (int i = 0; i < r->n_rt; i++)
        stop_stage(r, &r->rt[i]);
}

// ---------------------------------------------------------------- one stage's turn

/* Replace $JOB, $IMAGE, $MASK in v into out. */
static int expand(const struct run_ctx *r, const char *v, char *out, size_t len)
{
    static const char *const vars[] = {"$JOB", "$IMAGE", "$MASK"};
    const char *vals[] = {r->job.path, r->image, r->mask};
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

/* Name the user's files, not the job's copies (which are gone after the run),
 * in a stage's error text. */
static void name_user_inputs(const struct run_ctx *r, char *text, size_t len)
{
    const char *copy[2] = {r->image, r->mask}, *user[2] = {r->user_image, r->user_mask};

    for (int k = 0; k < 2; k++) {
        char *at, out[WIRE_ERR_MAX];
        size_t cl = strlen(copy[k]);

        if (!user[k] || !cl || !(at = strstr(text, copy[k])))
            continue;
        snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - text), text, user[k], at + cl);
        snprintf(text, len, "%s", out);
    }
}

/* The run request for rt: params and the input descriptors (each input file is
 * opened to read the tensor's dtype and shape; a missing one is an error). */
static int build_request(struct run_ctx *r, struct stage_rt *rt)
{
    const struct pipe_stage *ps = rt->ps;
    struct wire_msg *m = &r->req;

    wire_msg_init(m, WIRE_REQUEST, 0);
    m->method = WIRE_RUN;
    if (!rt->remote)                    /* a remote stage answers inline (no job there) */
        ASSERT(wire_set_str(m, "job", r->job.path) == 0);
    ASSERT(wire_set_str(m, "out", ps->out) == 0);
    for (int i = 0; i < ps->n_params; i++) {
        char v[WIRE_STR_MAX];

        if (expand(r, ps->param_val[i], v, sizeof(v)) != 0 ||
            wire_set_parsed(m, ps->param_key[i], v) != 0) {
            snprintf(rt->error, sizeof(rt->error), "param '%s' too long after expansion",
                     ps->param_key[i]);
            return S3D_EINVAL;
        }
    }
    if (rt->remote)
        return remote_add_inputs(m, ps, r->job.path, &r->rin, rt->error, sizeof(rt->error));
    for (int i = 0; i < ps->n_inputs; i++) {
        const struct pipe_input *in = &ps->inputs[i];
        const struct ckpt_entry *e;
        struct wire_tensor *t;
        struct ckpt c;
        char path[PATH_MAX + WIRE_KEY_MAX];

        snprintf(path, sizeof(path), "%s/%s", r->job.path, in->file);
        if (safetensors_open(&c, path) != 0) {
            snprintf(rt->error, sizeof(rt->error), "input artifact '%s' is missing or "
                     "unreadable (it comes from an earlier stage; re-run that one)", in->file);
            return S3D_ENOTFOUND;
        }
        e = ckpt_find(&c, in->key);
        if (!e) {
            snprintf(rt->error, sizeof(rt->error), "artifact '%s' has no tensor '%s'",
                     in->file, in->key);
            ckpt_close(&c);
            return S3D_ENOTFOUND;
        }
        t = wire_add_shm(m, in->name, e->dtype, e->shape, e->ndim, path);
        strcpy(t->key, in->key);
        ckpt_close(&c);
    }
    return 0;
}

/* Unload other stages when rt's weights would pass the VRAM budget. */
static void apply_budget(struct run_ctx *r, struct stage_rt *rt)
{
    int64_t sum = rt->weights_bytes;
    char why[WIRE_ERR_MAX];

    if (rt->remote)
        return;                         /* another machine's memory */
    for (int i = 0; i < r->n_rt; i++)
        if (&r->rt[i] != rt && r->rt[i].loaded && !r->rt[i].remote)
            sum += r->rt[i].resident_bytes ? r->rt[i].resident_bytes : r->rt[i].weights_bytes;
    if (r->vram_budget > 0 && sum <= r->vram_budget)
        return;
    for (int i = 0; i < r->n_rt; i++) {
        struct stage_rt *o = &r->rt[i];

        if (o == rt || o->remote || !o->loaded || !proc_alive(&o->proc))
            continue;
        wire_msg_init(&r->req, WIRE_REQUEST, 0);
        if (call(r, o, WIRE_UNLOAD, r->timeout_ms, why, sizeof(why)) == 0) {
            o->loaded = false;
            log_info("unloaded %s (VRAM budget)", o->ps->name);
        } else {
            log_warn("unload %s: %s", o->ps->name, why);
        }
    }
}

static void record_reply(struct run_ctx *r, struct stage_rt *rt)
{
    const struct wire_msg *rep = &r->rep;

    rt->loaded = wire_get_bool(rep, "loaded", true);
    rt->load_ms = wire_get_float(rep, "load_ms", 0);
    rt->run_ms = wire_get_float(rep, "last_run_ms", 0);
    rt->peak_bytes = wire_get_int(rep, "peak_bytes", 0);
    rt->resident_bytes = wire_get_int(rep, "resident_bytes", 0);
    rt->host_peak_bytes = wire_get_int(rep, "host_peak_bytes", 0);
    rt->n_out = rep->n_tensors;
    memcpy(rt->out, rep->tensors, sizeof(rep->tensors[0]) * (size_t)rep->n_tensors);
}

/* Run rt's turn with retries. 0, or an error with rt->error set. */
static int run_stage(struct run_ctx *r, struct stage_rt *rt)
{
    double t0 = now_ms();
    char why[WIRE_ERR_MAX], desc[64];
    int rc = S3D_ETIMEOUT;

    apply_budget(r, rt);
    for (int attempt = 0; attempt <= r->retries && !interrupted; attempt++) {
        if (rt->remote && attempt > 0) {
            rt->restarts++;
            log_warn("asking remote stage %s again (attempt %d of %d)", rt->ps->name,
                     attempt + 1, r->retries + 1);
        } else if (!rt->remote && (attempt > 0 || !proc_alive(&rt->proc))) {
            if (attempt > 0) {
                rt->restarts++;
                log_warn("restarting stage %s (attempt %d of %d)", rt->ps->name, attempt + 1,
                         r->retries + 1);
            }
            stop_proc(rt);
            rc = start_stage(r, rt);
            if (rc)
                continue;
        }
        rc = build_request(r, rt);
        if (rc) {
            remote_inputs_close(&r->rin);
            break;                      /* a missing artifact does not heal by retrying */
        }
        log_info("stage %s: run (%d inputs%s)", rt->ps->name, r->req.n_tensors,
                 rt->remote ? ", inline" : "");
        rc = client_call(&rt->cli, &r->req, &r->rep, &r->frames, r->timeout_ms, keep_waiting,
                         rt, why, sizeof(why));
        remote_inputs_close(&r->rin);
        if (rc == 0 && !r->rep.has_error && rt->remote) {
            char path[PATH_MAX + WIRE_KEY_MAX];

            snprintf(path, sizeof(path), "%s/%s", r->job.path, rt->ps->out);
            rc = remote_write_outputs(&r->rep, path, rt->error, sizeof(rt->error));
            if (rc)
                break;                  /* the same answer would come again */
        }
        if (interrupted)
            break;
        if (rc == 0 && r->rep.has_error) {
            snprintf(rt->error, sizeof(rt->error), "%s", r->rep.error);
            name_user_inputs(r, rt->error, sizeof(rt->error));
            rc = S3D_EINVAL;            /* the stage refused the request: do not repeat */
            break;
        }
        if (rc == 0) {
            record_reply(r, rt);
            rt->wall_ms = now_ms() - t0;
            rt->state = RT_DONE;
            log_info("stage %s done in %.1f ms (%d outputs -> %s)", rt->ps->name, rt->wall_ms,
                     rt->n_out, rt->ps->out);
            return 0;
        }
        if (rt->remote)
            snprintf(rt->error, sizeof(rt->error), "%.440s (remote)", why);
        else if (proc_alive(&rt->proc))      /* hung or stopped: it is killed next */
            snprintf(rt->error, sizeof(rt->error), "%.400s; the process was %s and is "
                     "killed", why, proc_describe(&rt->proc, desc, sizeof(desc)));
        else
            snprintf(rt->error, sizeof(rt->error), "%.440s; process %s", why,
                     proc_describe(&rt->proc, desc, sizeof(desc)));
        log_warn("stage %s: %s", rt->ps->name, rt->error);
    }
    rt->wall_ms = now_ms() - t0;
    rt->state = RT_FAILED;
    if (interrupted)
        snprintf(rt->error, sizeof(rt->error), "interrupted by a signal");
    else
        log_error("stage %s failed: %s", rt->ps->name, rt->error);
    return rc ? rc : S3D_EIO;
}

// ---------------------------------------------------------------- outputs

static int copy_file(const char *src, const char *dst)
{
    char buf[1 << 16];
    int in = open(src, O_RDONLY | O_CLOEXEC), out;
    ssize_t n = 0;

    if (in < 0)
        return S3D_EIO;
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return S3D_EIO;
    }
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n) {
            n = -1;
            break;
        }
    close(in);
    if (close(out) != 0 || n < 0)
        return S3D_EIO;
    return 0;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static int write_report(const struct run_ctx *r, const char *status, double wall_ms)
{
    char path[PATH_MAX + 16];
    FILE *f;

    snprintf(path, sizeof(path), "%s/report.json", r->out_dir);
    f = fopen(path, "w");
    if (!f) {
        log_error("cannot write '%s': %s", path, strerror(errno));
        return S3D_EIO;
    }
    fprintf(f, "{\n  \"status\": ");
    json_str(f, status);
    fprintf(f, ",\n  \"pipeline\": ");
    json_str(f, r->pipe.path);
    fprintf(f, ",\n  \"job\": ");
    json_str(f, r->job.path);
    fprintf(f, ",\n  \"wall_ms\": %.1f,\n  \"stages\": [", wall_ms);
    for (int i = 0; i < r->n_rt; i++) {
        const struct stage_rt *rt = &r->rt[i];

        fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
        json_str(f, rt->ps->name);
        fprintf(f, ", \"exe\": ");
        json_str(f, rt->ps->exe);
        fprintf(f, ", \"state\": ");
        json_str(f, state_names[rt->state]);
        if (rt->device[0]) {
            fprintf(f, ", \"device\": ");
            json_str(f, rt->device);
        }
        if (rt->remote) {
            fprintf(f, ", \"endpoint\": ");
            json_str(f, rt->endpoint);
        }
        fprintf(f, ", \"wall_ms\": %.1f, \"load_ms\": %.1f, \"run_ms\": %.1f, "
                "\"peak_bytes\": %lld, \"resident_bytes\": %lld, \"host_peak_bytes\": %lld, "
                "\"rss_peak_bytes\": %lld, \"restarts\": %d", rt->wall_ms, rt->load_ms,
                rt->run_ms, (long long)rt->peak_bytes, (long long)rt->resident_bytes,
                (long long)rt->host_peak_bytes, (long long)rt->rss_peak_bytes, rt->restarts);
        if (rt->error[0]) {
            fprintf(f, ", \"error\": ");
            json_str(f, rt->error);
        }
        fprintf(f, ",\n     \"outputs\": [");
        for (int k = 0; k < rt->n_out; k++) {
            const struct wire_tensor *t = &rt->out[k];

            fprintf(f, "%s{\"name\": ", k ? ", " : "");
            json_str(f, t->name);
            fprintf(f, ", \"dtype\": \"%s\", \"shape\": [", dtype_name(t->dtype));
            for (int d = 0; d < t->ndim; d++)
                fprintf(f, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            fprintf(f, "], \"bytes\": %zu, \"file\": ", t->nbytes);
            json_str(f, rt->ps->out);
            fprintf(f, "}");
        }
        fprintf(f, "]}");
    }
    fprintf(f, "\n  ]\n}\n");
    if (fclose(f) != 0) {
        log_error("cannot write '%s': %s", path, strerror(errno));
        return S3D_EIO;
    }
    return 0;
}

/* Copy every done stage's artifact to OUT/artifacts/. */
static int copy_artifacts(const struct run_ctx *r)
{
    char dir[PATH_MAX + 16], src[PATH_MAX + WIRE_KEY_MAX], dst[PATH_MAX + WIRE_KEY_MAX + 16];

    snprintf(dir, sizeof(dir), "%s/artifacts", r->out_dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        log_error("cannot create '%s': %s", dir, strerror(errno));
        return S3D_EIO;
    }
    for (int i = 0; i < r->n_rt; i++) {
        if (r->rt[i].state != RT_DONE)
            continue;
        snprintf(src, sizeof(src), "%s/%s", r->job.path, r->rt[i].ps->out);
        snprintf(dst, sizeof(dst), "%s/%s", dir, r->rt[i].ps->out);
        if (copy_file(src, dst) != 0) {
            log_error("cannot copy '%s' to '%s': %s", src, dst, strerror(errno));
            return S3D_EIO;
        }
    }
    return 0;
}

// ---------------------------------------------------------------- options

static void usage_run(FILE *f)
{
    fprintf(f,
        "usage: sam3d run --image IMG --mask MASK --weights DIR --out DIR [options]\n"
        "  --moge FILE          MoGe weights (default DIR/moge-vitl/model.pt)\n"
        "  --device cuda:N|cpu  passed to every stage (default: each stage's own)\n"
        "  --stage-device NAME=cuda:N|cpu   one stage's device (repeatable; overrides the\n"
        "                       pipeline's 'device' line and --device)\n"
        "  --endpoint NAME=URL  stage NAME is served elsewhere (tcp://HOST:PORT, ipc://PATH):\n"
        "                       connect instead of starting it; tensors travel inline.\n"
        "                       tcp:// uses CURVE when S3D_CURVE_SERVERKEY holds its key\n"
        "  --precision fp16|fp32\n"
        "  --keep-job           keep the job directory (its path is printed)\n"
        "  --stages-dir DIR     where the sam3d-* stage executables are (default: next to sam3d)\n"
        "  --pipeline FILE      pipeline definition (default pipelines/sam3d_objects.pipe)\n"
        "  --timeout S          seconds to wait for one reply (default 600)\n"
        "  --retries N          restarts of a stage that dies or hangs (default 1)\n"
        "  --vram-budget SIZE   e.g. 10G; stages stay loaded while they fit (default 0:\n"
        "                       only the running stage keeps its weights on the GPU)\n"
        "  --max-pixels N       largest image accepted, e.g. 150M (default 80M; the depth\n"
        "                       stage needs 13 bytes of host memory a pixel)\n"
        "exit status: 0 complete, 1 failed, 2 usage, 3 stages still to come, 130 interrupted\n"
        "job directories go under $S3D_JOB_ROOT (default /dev/shm)\n");
}

static void usage_stage(FILE *f)
{
    fprintf(f,
        "usage: sam3d stage NAME --job DIR [--weights DIR] [--moge FILE] [--out DIR]\n"
        "                   [--device D] [--precision P] [--stages-dir DIR] [--pipeline FILE]\n"
        "                   [--timeout S] [--retries N] [--stage-device NAME=D]\n"
        "                   [--endpoint NAME=URL] [--max-pixels N]\n"
        "Re-runs stage NAME of the pipeline on the artifacts in an existing job directory\n"
        "(one kept with `sam3d run --keep-job`); its artifact there is replaced.\n");
}

static bool parse_size(const char *s, int64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    double mul = 1;

    if (end == s || v < 0)
        return false;
    switch (*end) {
    case 0: break;
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1048576.0; end++; break;
    case 'g': case 'G': mul = 1073741824.0; end++; break;
    default: return false;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end)
        return false;
    *out = (int64_t)(v * mul);
    return true;
}

/* Options common to run and stage. Returns 1 when argv[*i] was consumed, 0 when
 * unknown, -1 on a bad value (printed). */
static int common_opt(struct run_ctx *r, int argc, char **argv, int *i, const char **pipe_path,
                      const char **stages_dir)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    char *end;

    if (!strcmp(a, "--weights") && v)         r->weights_dir = v;
    else if (!strcmp(a, "--moge") && v)       r->moge = v;
    else if (!strcmp(a, "--out") && v)        r->out_dir = v;
    else if (!strcmp(a, "--device") && v)     r->device = v;
    else if (!strcmp(a, "--precision") && v)  r->precision = v;
    else if (!strcmp(a, "--pipeline") && v)   *pipe_path = v;
    else if (!strcmp(a, "--stages-dir") && v) *stages_dir = v;
    else if (!strcmp(a, "--timeout") && v) {
        double s = strtod(v, &end);

        if (*end || s <= 0 || s > 86400) {
            fprintf(stderr, "error: --timeout wants seconds in (0, 86400], got '%s'\n", v);
            return -1;
        }
        r->timeout_ms = (int)(s * 1000);
    } else if (!strcmp(a, "--retries") && v) {
        long n = strtol(v, &end, 10);

        if (*end || n < 0 || n > 100) {
            fprintf(stderr, "error: --retries wants 0..100, got '%s'\n", v);
            return -1;
        }
        r->retries = (int)n;
    } else if ((!strcmp(a, "--endpoint") || !strcmp(a, "--stage-device")) && v) {
        if (r->n_over == 2 * PIPE_MAX_STAGES || !strchr(v, '=') || v[0] == '=') {
            fprintf(stderr, "error: %s wants NAME=VALUE (at most %d), got '%s'\n", a,
                    2 * PIPE_MAX_STAGES, v);
            return -1;
        }
        r->over_kind[r->n_over] = a;
        r->over_arg[r->n_over++] = v;
    } else if (!strcmp(a, "--max-pixels") && v) {
        int64_t px;

        if (!image_parse_pixels(v, &px)) {
            fprintf(stderr, "error: --max-pixels wants a pixel count like 150M (at most %lld), "
                    "got '%s'\n", IMAGE_MAX_PIXELS_CAP, v);
            return -1;
        }
        setenv("S3D_MAX_PIXELS", v, 1);          /* for the stages it starts, too */
    } else if (!strcmp(a, "--vram-budget") && v) {
        if (!parse_size(v, &r->vram_budget)) {
            fprintf(stderr, "error: --vram-budget wants a size like 10G or 512M, got '%s'\n", v);
            return -1;
        }
    } else {
        return 0;
    }
    (*i)++;
    return 1;
}

/* Apply --endpoint NAME=URL and --stage-device NAME=DEV to the loaded pipeline.
 * Returns 0, or S3D_EINVAL after one error line. */
static int apply_overrides(struct run_ctx *r)
{
    for (int i = 0; i < r->n_over; i++) {
        const char *eq = strchr(r->over_arg[i], '=');
        bool ep = !strcmp(r->over_kind[i], "--endpoint");
        char name[PIPE_NAME_MAX];
        struct pipe_stage *ps = NULL;

        if ((size_t)(eq - r->over_arg[i]) < sizeof(name)) {
            memcpy(name, r->over_arg[i], (size_t)(eq - r->over_arg[i]));
            name[eq - r->over_arg[i]] = 0;
            ps = (struct pipe_stage *)pipeline_find(&r->pipe, name);
        }
        if (!ps) {
            log_error("%s %s: no such stage in '%s'. HINT: the stage names are the 'stage' "
                      "lines of the pipeline file", r->over_kind[i], r->over_arg[i],
                      r->pipe.path);
            return S3D_EINVAL;
        }
        if (ep ? !pipeline_endpoint_ok(eq + 1) : !pipeline_device_ok(eq + 1)) {
            log_error("%s %s: %s", r->over_kind[i], r->over_arg[i],
                      ep ? "expected tcp://HOST:PORT or ipc://PATH" : "expected cuda:N or cpu");
            return S3D_EINVAL;
        }
        strcpy(ep ? ps->endpoint : ps->device, eq + 1);
    }
    return 0;
}

/* Fill r->rt from the pipeline: executables, weights, endpoints, built or not.
 * Weights are resolved (and must exist) for the built stages that will run:
 * all of them, or only stage index only when only >= 0. */
static int prepare_stages(struct run_ctx *r, int only)
{
    r->n_rt = r->pipe.n_stages;
    for (int i = 0; i < r->n_rt; i++) {        /* every entry valid for the report, */
        memset(&r->rt[i], 0, sizeof(r->rt[i]));  /* even when a later check fails */
        r->rt[i].ps = &r->pipe.stages[i];
    }
    for (int i = 0; i < r->n_rt; i++) {
        struct stage_rt *rt = &r->rt[i];
        char wfile[PATH_MAX];
        struct stat st;
        int n;

        n = snprintf(rt->exe, sizeof(rt->exe), "%s/%s", r->stages_dir, rt->ps->exe);
        if (n < 0 || (size_t)n >= sizeof(rt->exe))
            return S3D_EINVAL;
        snprintf(rt->device, sizeof(rt->device), "%s",
                 rt->ps->device[0] ? rt->ps->device : r->device ? r->device : "");
        if (rt->ps->endpoint[0]) {              /* served elsewhere, with its own weights */
            rt->remote = rt->built = true;
            rt->state = RT_NOT_RUN;
            strcpy(rt->endpoint, rt->ps->endpoint);
            continue;
        }
        rt->built = access(rt->exe, X_OK) == 0;
        rt->state = rt->built ? RT_NOT_RUN : RT_MISSING;
        n = snprintf(rt->endpoint, sizeof(rt->endpoint), "ipc://%s/%s.sock", r->job.path,
                     rt->ps->name);
        if (n < 0 || (size_t)n >= sizeof(rt->endpoint))
            return S3D_EINVAL;
        if (!rt->built || (only >= 0 && i != only))
            continue;
        if (pipeline_weights_path(rt->ps, r->weights_dir, r->moge, rt->weights,
                                  sizeof(rt->weights)) != 0)
            return S3D_EINVAL;
        if (rt->weights[0]) {
            pipeline_weights_file(rt->weights, wfile, sizeof(wfile));
            if (stat(wfile, &st) == 0)
                rt->weights_bytes = st.st_size;
            else {
                snprintf(rt->error, sizeof(rt->error), "weights '%.400s': %s", wfile,
                         strerror(errno));
                rt->state = RT_FAILED;
                log_error("stage %s: %s. HINT: check --weights DIR (and --moge FILE); "
                          "`sam3d check-weights DIR` lists what is missing", rt->ps->name,
                          rt->error);
                return S3D_ENOTFOUND;
            }
        }
    }
    return 0;
}

static void log_missing(const struct run_ctx *r, int first)
{
    char list[1024] = "";

    for (int i = first; i < r->n_rt; i++) {
        size_t n = strlen(list);

        snprintf(list + n, sizeof(list) - n, "%s%s (%s%s)", n ? ", " : "", r->rt[i].ps->name,
                 r->rt[i].ps->exe, r->rt[i].built ? ", needs the stages before it" : "");
    }
    log_warn("stages still to come: %s", list);
    fprintf(stderr, "sam3d: the pipeline stopped after the stages that are built; still to "
            "come: %s\n", list);
}

static struct run_ctx *ctx_new(void)
{
    struct run_ctx *r = calloc(1, sizeof(*r));

    ASSERT(r);
    r->timeout_ms = 600 * 1000;
    r->retries = 1;
    r->zctx = zmq_ctx_new();
    ASSERT(r->zctx);
    return r;
}

static void ctx_free(struct run_ctx *r)
{
    stop_all(r);
    wire_frames_close(&r->frames);
    zmq_ctx_term(r->zctx);
    if (r->own_job && r->job.path[0]) {
        if (r->keep_job)
            fprintf(stderr, "sam3d: job directory kept: %s\n", r->job.path);
        else
            jobdir_remove(r->job.path);
    }
    jobdir_close(&r->job);
    free(r);
}

/* Copy the user's --image/--mask into the job as name (jobdir_copy_in: regular
 * files only, O_EXCL); dst receives the copy's path. */
static int copy_input(struct run_ctx *r, const char *src, const char *name, char *dst,
                      size_t len, const char *what)
{
    snprintf(dst, len, "%s/%s", r->job.path, name);
    return jobdir_copy_in(&r->job, src, name, IMAGE_MAX_FILE_BYTES, what);
}

// ---------------------------------------------------------------- commands

int cmd_run(int argc, char **argv)
{
    const char *image = NULL, *mask = NULL, *pipe_arg = NULL, *stages_arg = NULL;
    char pipe_path[PATH_MAX];
    struct run_ctx *r = ctx_new();
    double t0 = now_ms();
    int code = 1, first_missing, rc = 0;

    for (int i = 1; i < argc; i++) {
        int c = common_opt(r, argc, argv, &i, &pipe_arg, &stages_arg);

        if (c < 0)
            goto out_usage;
        if (c > 0)
            continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage_run(stdout);
            code = 0;
            goto out_free;
        } else if (!strcmp(argv[i], "--keep-job")) {
            r->keep_job = true;
        } else if (!strcmp(argv[i], "--image") && i + 1 < argc) {
            image = argv[++i];
        } else if (!strcmp(argv[i], "--mask") && i + 1 < argc) {
            mask = argv[++i];
        } else {
            fprintf(stderr, "error: unknown option or missing value: %s\n", argv[i]);
            goto out_usage;
        }
    }
    if (!image || !mask || !r->out_dir) {
        fprintf(stderr, "error: --image, --mask and --out are required\n");
        goto out_usage;
    }
    install_signals();
    pipeline_default_path(pipe_arg, pipe_path, sizeof(pipe_path));
    pipeline_stages_dir(stages_arg, r->stages_dir, sizeof(r->stages_dir));
    if (pipeline_load(&r->pipe, pipe_path) != 0 || apply_overrides(r) != 0)
        goto out_free;
    if (mkdir(r->out_dir, 0755) != 0 && errno != EEXIST) {
        log_error("--out '%s': %s", r->out_dir, strerror(errno));
        goto out_free;
    }
    {   /* the pixel limit, checked on the user's file before anything starts */
        int64_t w, h;

        if (image_probe(image, &w, &h) == 0 && w * h > image_max_pixels()) {
            log_error("--image '%s' is %lldx%lld, %.1f Mpixels, over the limit of %.1f Mpixels. "
                      "HINT: downscale it, or raise the limit with --max-pixels %.0fM (the "
                      "depth stage then needs about %.1f GB of host memory)", image,
                      (long long)w, (long long)h, w * h / 1e6, image_max_pixels() / 1e6,
                      w * h / 1e6 + 1, (w * h * 13.0 + (160 << 20)) / 1e9);
            goto out_free;
        }
    }
    if (jobdir_create(&r->job, NULL) != 0)
        goto out_free;
    r->own_job = true;
    if (r->keep_job && jobdir_keep(&r->job) != 0)
        goto out_free;
    r->user_image = image;
    r->user_mask = mask;
    log_info("job %s, pipeline %s, stages from %s", r->job.path, pipe_path, r->stages_dir);
    if (copy_input(r, image, "input_image", r->image, sizeof(r->image), "--image") ||
        copy_input(r, mask, "input_mask", r->mask, sizeof(r->mask), "--mask") ||
        prepare_stages(r, -1) != 0)
        goto out_report;
    for (first_missing = 0; first_missing < r->n_rt; first_missing++)
        if (!r->rt[first_missing].built)
            break;
    for (int i = 0; i < first_missing && !interrupted && !rc; i++) {
        rc = start_stage(r, &r->rt[i]);             /* all up first: fail fast */
        if (rc)
            r->rt[i].state = RT_FAILED;
    }
    for (int i = 0; i < first_missing && !interrupted && !rc; i++)
        rc = run_stage(r, &r->rt[i]);
    if (!interrupted && !rc) {
        code = first_missing < r->n_rt ? EXIT_PARTIAL : 0;
        if (code == EXIT_PARTIAL)
            log_missing(r, first_missing);
    }
out_report:
    stop_all(r);
    if (interrupted) {
        code = EXIT_INTERRUPTED;
        log_error("interrupted (signal %d): stages stopped%s", (int)interrupted,
                  r->keep_job ? "" : ", job directory removed");
    }
    if (copy_artifacts(r) != 0 && code == 0)
        code = 1;
    if (write_report(r, code == 0 ? "complete" : code == EXIT_PARTIAL ? "partial" :
                     code == EXIT_INTERRUPTED ? "interrupted" : "failed",
                     now_ms() - t0) != 0 && code == 0)
        code = 1;
    if (code == 0 || code == EXIT_PARTIAL)
        log_info("outputs in %s (report.json, artifacts/)", r->out_dir);
    goto out_free;
out_usage:
    usage_run(stderr);
    code = 2;
out_free:
    ctx_free(r);
    return code;
}

int cmd_stage(int argc, char **argv)
{
    const char *name = NULL, *job = NULL, *pipe_arg = NULL, *stages_arg = NULL;
    char pipe_path[PATH_MAX], root[PATH_MAX];
    struct run_ctx *r = ctx_new();
    struct stage_rt *rt = NULL;
    double t0 = now_ms();
    int code = 1;

    for (int i = 1; i < argc; i++) {
        int c = common_opt(r, argc, argv, &i, &pipe_arg, &stages_arg);

        if (c < 0)
            goto out_usage;
        if (c > 0)
            continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage_stage(stdout);
            code = 0;
            goto out_free;
        } else if (!strcmp(argv[i], "--job") && i + 1 < argc) {
            job = argv[++i];
        } else if (argv[i][0] != '-' && !name) {
            name = argv[i];
        } else {
            fprintf(stderr, "error: unknown option or missing value: %s\n", argv[i]);
            goto out_usage;
        }
    }
    if (!name || !job) {
        fprintf(stderr, "error: a stage NAME and --job DIR are required\n");
        goto out_usage;
    }
    install_signals();
    if (!realpath(job, r->job.path) || !jobdir_is_job(r->job.path)) {
        log_error("--job '%s' is not a job directory (an existing s3d-* directory). HINT: "
                  "keep one with `sam3d run --keep-job`", job);
        goto out_free;
    }
    /* the stage accepts job directories directly under its job root */
    snprintf(root, sizeof(root), "%s", r->job.path);
    setenv("S3D_JOB_ROOT", dirname(root), 1);
    snprintf(r->image, sizeof(r->image), "%s/input_image", r->job.path);
    snprintf(r->mask, sizeof(r->mask), "%s/input_mask", r->job.path);
    pipeline_default_path(pipe_arg, pipe_path, sizeof(pipe_path));
    pipeline_stages_dir(stages_arg, r->stages_dir, sizeof(r->stages_dir));
    if (pipeline_load(&r->pipe, pipe_path) != 0 || apply_overrides(r) != 0)
        goto out_free;
    if (!pipeline_find(&r->pipe, name)) {
        log_error("no stage '%s' in '%s'", name, pipe_path);
        goto out_free;
    }
    if (prepare_stages(r, (int)(pipeline_find(&r->pipe, name) - r->pipe.stages)) != 0)
        goto out_free;
    rt = &r->rt[pipeline_find(&r->pipe, name) - r->pipe.stages];
    if (!rt->built) {
        log_error("stage '%s' is not built yet ('%s' is missing)", name, rt->exe);
        code = EXIT_PARTIAL;
        goto out_free;
    }
    if (start_stage(r, rt) == 0 && run_stage(r, rt) == 0)
        code = 0;
    stop_all(r);
    if (interrupted)
        code = EXIT_INTERRUPTED;
    if (r->out_dir) {
        if (mkdir(r->out_dir, 0755) != 0 && errno != EEXIST)
            log_error("--out '%s': %s", r->out_dir, strerror(errno));
        else if ((copy_artifacts(r) || write_report(r, code ? "failed" : "complete",
                                                    now_ms() - t0)) && !code)
            code = 1;
    }
    goto out_free;
out_usage:
    usage_stage(stderr);
    code = 2;
out_free:
    ctx_free(r);
    return code;
}
