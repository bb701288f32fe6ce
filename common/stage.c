/*
 * stage.c - options, serve loop, --once and --check-weights for stage executables.
 * Contract: stage.h. Test: tests/test_stage.c with tests/tools/echo_stage.c.
 *
 * The serve loop is the zguide's cellular wall: anything wrong with a request
 * (framing, header, inputs, paths, the stage's own validation) becomes an error
 * reply and the loop continues; an internal fault aborts the process.
 */
#include "stage.h"

#include "beat.h"
#include "check.h"
#include "err.h"
#include "jobdir.h"
#include "log.h"
#include "safetensors.h"
#include "stage_out.h"
#include "zap.h"
#include "version.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define STAGE_DEFAULT_ARENA (256u << 20)

/* Process state of the one stage this executable serves. */
struct stage_state {
    const struct stage_opts *opts;
    const struct stage_ops  *ops;
    void                    *model;
    bool                     loaded;
    bool                     stream_blocks; /* how the next load places the weights */
    struct stage_rt          rt;          /* device, op context, activations (while loaded) */
    struct arena             arena;       /* host request arena */
    int64_t                  requests;
    double                   load_ms, warm_ms, last_run_ms, total_run_ms;
};

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t in_request;   /* a request is being handled */

/* SIGINT/SIGTERM: idle, leave the serve loop; inside a request (which may run for
 * minutes, or hang), end the process now: it is the parent-death signal too. */
static void on_signal(int sig)
{
    if (in_request)
        _exit(128 + sig);
    stop_requested = 1;
}

double stage_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void stage_sort_ms(double *ms, int n)
{
    ASSERT(ms && n >= 1);
    qsort(ms, (size_t)n, sizeof(*ms), cmp_double);
}

// ---------------------------------------------------------------- one request

static bool shape_eq(const int64_t *a, int na, const int64_t *b, int nb)
{
    if (na != nb)
        return false;
    for (int d = 0; d < na; d++)
        if (a[d] != b[d])
            return false;
    return true;
}

/* Map each input descriptor to a host tensor: frames as they are, shm files
 * opened (inside in_dir only) and matched by key, dtype and shape. */
static int open_inputs(struct stage_req *rq)
{
    for (int i = 0; i < rq->msg->n_tensors; i++) {
        const struct wire_tensor *d = &rq->msg->tensors[i];
        struct stage_input *in = &rq->in[rq->n_in];
        const struct ckpt_entry *e;
        struct ckpt *c;
        const char *key = d->key[0] ? d->key : d->name;
        char path[PATH_MAX], got[128], want[128];

        in->desc = d;
        if (d->frame >= 0) {
            in->t = tensor_view((void *)d->data, d->dtype, DEVICE_HOST, d->shape, d->ndim);
            rq->n_in++;
            continue;
        }
        if (!rq->in_job)
            return stage_fail(rq, S3D_EINVAL, "input '%s': an shm tensor needs a job "
                              "directory (param 'job')", d->name);
        snprintf(path, sizeof(path), "%s", d->shm);
        c = NULL;
        for (int f = 0; f < rq->n_files; f++)
            if (!strcmp(rq->files[f].path, path))
                c = &rq->files[f];
        if (!c) {
            char why[WIRE_ERR_MAX];
            int fd = jobdir_open_input(rq->in_job, path, STAGE_MAX_SHM_BYTES, why, sizeof(why));

            if (fd < 0)
                return stage_fail(rq, S3D_EINVAL, "input '%s': %s", d->name, why);
            c = &rq->files[rq->n_files];
            if (ckpt_open_fd(c, fd, path) != 0 || c->format != CKPT_SAFETENSORS) {
                stage_fail(rq, S3D_EFORMAT, "input '%s': '%s' is not a readable safetensors "
                           "file (%s)", d->name, path, c->format ? "a PyTorch zip" : c->err);
                ckpt_close(c);
                return S3D_EFORMAT;
            }
            rq->n_files++;
        }
        e = ckpt_find(c, key);
        if (!e)
            return stage_fail(rq, S3D_ENOTFOUND, "input '%s': no tensor '%s' in '%s'",
                              d->name, key, path);
        in->t = ckpt_entry_tensor(e);
        if (e->dtype != d->dtype || !shape_eq(e->shape, e->ndim, d->shape, d->ndim)) {
            tensor_shape_str(e->shape, e->ndim, got, sizeof(got));
            tensor_shape_str(d->shape, d->ndim, want, sizeof(want));
            return stage_fail(rq, S3D_ESHAPE, "input '%s': the request says %s %s but '%s' "
                              "holds %s %s", d->name, dtype_name(d->dtype), want, path,
                              dtype_name(e->dtype), got);
        }
        rq->n_in++;
    }
    return 0;
}

static void close_inputs(struct stage_req *rq)
{
    for (int f = 0; f < rq->n_files; f++)
        ckpt_close(&rq->files[f]);
    rq->n_files = 0;
    rq->n_in = 0;
}

/* Start the runtime, then the stage's load (its blocks streamed when stream);
 * on failure neither holds anything. */
static int load_model(const struct stage_opts *o, const struct stage_ops *ops, void *model,
                      struct stage_rt *rt, bool stream)
{
    double t0 = stage_now_ms();
    int    rc = stage_rt_init(rt, o, ops->workspace_bytes);
    double t1 = stage_now_ms();

    rt->stream_blocks = stream;
    if (!rc && ops->uses_cudnn)
        stage_rt_dnn_begin(rt);
    if (!rc && ops->load)
        rc = ops->load(model, rt);
    double t2 = stage_now_ms();
    stage_rt_dnn_end(rt);
    if (rc)
        stage_rt_free(rt);
    else if (rt->device == DEVICE_CUDA)      /* where a load's time goes (issue 16: s per GB) */
        log_info("load: device context, cuBLASLt and workspace %.1f ms, the model %.1f ms%s "
                 "(then %.1f ms more for cuDNN's handle)", t1 - t0, t2 - t1,
                 ops->uses_cudnn ? ", cuDNN's handle made beside it" : "", stage_now_ms() - t2);
    return rc;
}

static void unload_model(const struct stage_ops *ops, void *model, struct stage_rt *rt)
{
    if (ops->unload)
        ops->unload(model);
    stage_rt_free(rt);
}

static int do_load(struct stage_state *s, char *err, size_t err_len)
{
    double t0 = stage_now_ms();
    int rc;

    if (s->loaded)
        return 0;
    rc = load_model(s->opts, s->ops, s->model, &s->rt, s->stream_blocks);
    if (rc == S3D_EDEVICE && s->rt.err[0])
        snprintf(err, err_len, "%s", s->rt.err);
    else if (rc)
        snprintf(err, err_len, "load failed (%s): the weights '%s' could not be loaded; the "
                 "stage log says why", s3d_strerror(rc), s->opts->weights ? s->opts->weights
                 : "(none)");
    if (rc) {
        log_error("%s", err);
        return rc;
    }
    s->loaded = true;
    s->load_ms = stage_now_ms() - t0;
    s->warm_ms = 0;                             /* do_warm sets it after a requested load */
    log_info("loaded %s in %.1f ms (%zu device bytes resident)",
             s->opts->weights ? s->opts->weights : "(no weights)", s->load_ms,
             arena_device_resident());
    return 0;
}

/* S3D_WARMUP: whether a requested load warms the model up on this device:
 * unset or "1" on CUDA only (the host path has no first-use costs worth a
 * forward), "0" never, "all" on the host too (tests: the warm-up must leave
 * every output unchanged). */
static bool warmup_wanted(enum device dev)
{
    const char *e = getenv("S3D_WARMUP");

    if (e && !strcmp(e, "0"))
        return false;
    return dev == DEVICE_CUDA || (e && !strcmp(e, "all"));
}

/* After a requested load: the stage's warm-up (stage_ops.warm), CUDA only.
 * A failed warm-up is a warning; the model stays loaded. */
static void do_warm(struct stage_state *s)
{
    double t0 = stage_now_ms();
    int rc;

    s->warm_ms = 0;
    if (!s->ops->warm || !warmup_wanted(s->rt.device))
        return;
    arena_reset(&s->arena);
    rc = s->ops->warm(s->model, &s->rt, &s->arena);
    arena_reset(&s->arena);
    arena_reset(&s->rt.act);
    s->warm_ms = stage_now_ms() - t0;
    if (rc)
        log_warn("warm-up failed (%s) after %.1f ms: the first request pays the first-use "
                 "costs instead", s3d_strerror(rc), s->warm_ms);
    else
        log_info("warmed up in %.1f ms (one run on made-up inputs; S3D_WARMUP=0 skips it)",
                 s->warm_ms);
}

static void do_unload(struct stage_state *s)
{
    if (!s->loaded)
        return;
    unload_model(s->ops, s->model, &s->rt);
    s->loaded = false;
}

/* A stage with the stream_blocks param (STAGE_PARAM_STREAM_BLOCKS) loads its
 * weights as the request asks: a loaded model placed the other way is
 * unloaded here, and do_load loads it again. only_given: a load request
 * without the param keeps the placement of the last one (a run request's
 * missing param is the default, resident). */
static void place_weights(struct stage_state *s, const struct stage_req *rq, bool only_given)
{
    const struct stage_param *p = s->ops->params;
    bool want;

    while (p && p->name && strcmp(p->name, "stream_blocks"))
        p++;
    if (!p || !p->name || (only_given && !stage_param_given(rq, "stream_blocks")))
        return;
    want = stage_get_flag(rq, "stream_blocks");
    if (s->loaded && s->rt.stream_blocks != want) {
        log_info("stream_blocks=%d: reloading the weights %s", want,
                 want ? "with the blocks streamed from host memory" : "all on the device");
        do_unload(s);
    }
    s->stream_blocks = want;
}

static void add_status(struct stage_state *s, struct wire_msg *rep)
{
    char dev[16];

    if (s->opts->device < 0)
        snprintf(dev, sizeof(dev), "cpu");
    else
        snprintf(dev, sizeof(dev), "cuda:%d", s->opts->device);
    ASSERT(wire_set_str(rep, "name", s->opts->name) == 0);
    ASSERT(wire_set_int(rep, "pid", (int64_t)getpid()) == 0);
    ASSERT(wire_set_bool(rep, "loaded", s->loaded) == 0);
    ASSERT(wire_set_str(rep, "device", dev) == 0);
    ASSERT(wire_set_str(rep, "precision", s->opts->precision == STAGE_FP32 ? "fp32" : "fp16")
           == 0);
    ASSERT(wire_set_int(rep, "resident_bytes", (int64_t)arena_device_resident()) == 0);
    ASSERT(wire_set_int(rep, "peak_bytes", (int64_t)arena_device_peak()) == 0);
    ASSERT(wire_set_int(rep, "host_peak_bytes", (int64_t)s->arena.high_water) == 0);
    ASSERT(wire_set_int(rep, "requests", s->requests) == 0);
    ASSERT(wire_set_float(rep, "load_ms", s->load_ms) == 0);
    ASSERT(wire_set_float(rep, "warm_ms", s->warm_ms) == 0);
    ASSERT(wire_set_float(rep, "last_run_ms", s->last_run_ms) == 0);
    ASSERT(wire_set_float(rep, "total_run_ms", s->total_run_ms) == 0);
    if (s->ops->status)
        s->ops->status(s->model, rep);
}

/* Handle one request: fill rep (its id already set). The request arena and the
 * inputs are released before returning; rep's frame tensors point into the
 * arena and stay valid until the next request. */
static void handle(struct stage_state *s, const struct wire_msg *req,
                   const struct jobdir *in_job, const struct jobdir *out_job,
                   struct wire_msg *rep)
{
    static struct stage_req rq;
    double t0 = stage_now_ms();
    int rc;

    memset(&rq, 0, sizeof(rq));
    rq.msg = req;
    rq.opts = s->opts;
    rq.rt = &s->rt;
    rq.params = s->ops->params;
    rq.in_job = in_job;
    rq.out_job = out_job;
    rq.in_dir = in_job ? in_job->path : NULL;
    rq.out_dir = out_job ? out_job->path : NULL;
    rq.arena = &s->arena;
    switch (req->method) {
    case WIRE_LOAD: {
        bool was_loaded;

        rc = stage_params_check(&rq);   /* a load ahead may say how to place the weights */
        if (!rc)
            place_weights(s, &rq, true);
        was_loaded = s->loaded;
        if (!rc)
            rc = do_load(s, rq.err, sizeof(rq.err));
        if (!rc && !was_loaded)
            do_warm(s);             /* a requested load: ready for the first request */
        break;
    }
    case WIRE_UNLOAD:
        do_unload(s);
        rc = 0;
        break;
    case WIRE_STATUS:
    case WIRE_SHUTDOWN:
        rc = 0;
        break;
    case WIRE_RUN:
        arena_reset(&s->arena);
        rc = stage_params_check(&rq);
        if (!rc)
            place_weights(s, &rq, false);
        if (!rc)
            rc = do_load(s, rq.err, sizeof(rq.err));
        if (!rc)
            rc = open_inputs(&rq);
        if (!rc) {
            rc = s->ops->run(s->model, &rq);
            if (rc && !rq.err[0])
                stage_fail(&rq, rc, "run failed: %s", s3d_strerror(rc));
        }
        if (!rc)
            rc = stage_out_emit(&rq, rep);
        else
            stage_out_abort(&rq);               /* a file written ahead is abandoned */
        close_inputs(&rq);
        s->requests++;
        s->last_run_ms = stage_now_ms() - t0;
        s->total_run_ms += s->last_run_ms;
        if (!rc) {
            log_info("req %lld run: %d inputs -> %d outputs in %.1f ms", (long long)req->id,
                     req->n_tensors, rq.n_out, s->last_run_ms);
            stage_rt_log_memory(&s->rt);
        }
        break;
    default:
        ASSERT(0);
    }
    if (rc) {
        rep->has_error = true;
        snprintf(rep->error, sizeof(rep->error), "%s", rq.err[0] ? rq.err : s3d_strerror(rc));
        rep->n_tensors = 0;
    }
    add_status(s, rep);
}

static int state_init(struct stage_state *s, const struct stage_opts *o,
                      const struct stage_ops *ops, void *model)
{
    memset(s, 0, sizeof(*s));
    s->opts = o;
    s->ops = ops;
    s->model = model;
    return arena_init(&s->arena, ARENA_HOST, "request",
                      ops->arena_bytes ? ops->arena_bytes : STAGE_DEFAULT_ARENA);
}

static void state_free(struct stage_state *s)
{
    do_unload(s);
    arena_free(&s->arena);
}

// ---------------------------------------------------------------- serve

/* A served request: its job directory (param "job") confines inputs and outputs;
 * without one, only inline tensors are accepted and outputs go back inline. */
static void serve_request(struct stage_state *s, const struct wire_msg *req,
                          struct wire_msg *rep)
{
    const char *job = wire_get_str(req, "job", NULL);
    struct jobdir j;
    char why[WIRE_ERR_MAX - 32];

    if (!wire_param_ok(req, "job", WIRE_STR)) {
        rep->has_error = true;
        snprintf(rep->error, sizeof(rep->error), "param 'job' must be a string");
        return;
    }
    if (job && jobdir_open(&j, job, JOBDIR_UNDER_ROOT, why, sizeof(why)) != 0) {
        rep->has_error = true;
        snprintf(rep->error, sizeof(rep->error), "param 'job': %s", why);
        log_warn("req %lld: %s", (long long)req->id, rep->error);
        return;
    }
    handle(s, req, job ? &j : NULL, job ? &j : NULL, rep);
    if (job)
        jobdir_close(&j);
}

/* The read end of the pipe from the orchestrator (env S3D_PARENT_FD), or -1. */
static int parent_pipe(void)
{
    const char *e = getenv("S3D_PARENT_FD");
    struct stat st;
    char *end;
    long fd;

    if (!e || !*e)
        return -1;
    fd = strtol(e, &end, 10);
    unsetenv("S3D_PARENT_FD");
    if (*end || fd < 3 || fd > 1 << 20 || fstat((int)fd, &st) != 0 || !S_ISFIFO(st.st_mode)) {
        log_warn("S3D_PARENT_FD=%s is not an open pipe: not watching the parent", e);
        return -1;
    }
    fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    return (int)fd;
}

/* Limits, endpoint policy, CURVE (with the ZAP handler in ctx: *zap), bind. */
static int bind_socket(void *ctx, void *sock, const struct stage_opts *o,
                       const struct stage_ops *ops, struct wire_frames *frames, struct zap **zap)
{
    size_t max_in = ops->max_input_bytes ? ops->max_input_bytes :
                    ops->arena_bytes ? ops->arena_bytes : STAGE_DEFAULT_ARENA;
    char why[512];
    int zero = 0;

    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
    if (wire_endpoint_check(o->listen, o->curve_secret != NULL, why, sizeof(why)) != 0) {
        log_error("%s", why);
        return S3D_EINVAL;
    }
    if (wire_limit(sock, frames, max_in) != 0) {
        log_error("cannot set the message limits of '%s': %s", o->listen, zmq_strerror(errno));
        return S3D_EIO;
    }
    if (o->curve_secret) {
        int one = 1;

        if (!zmq_has("curve")) {
            log_error("--curve-secret given but this libzmq has no CURVE support. HINT: "
                      "install a libzmq built with libsodium");
            return S3D_EINVAL;
        }
        if (strlen(o->curve_secret) != 40 ||
            zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) != 0 ||
            zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, o->curve_secret, 40) != 0) {
            log_error("CURVE secret key is not a 40-character Z85 key. HINT: make a pair "
                      "with `sam3d keygen`");
            return S3D_EINVAL;
        }
        if (zap_start(ctx, o->curve_clients, zap) != 0)
            return S3D_EINVAL;
        {
            char pub[41];

            if (zmq_curve_public(pub, o->curve_secret) == 0)
                log_info("CURVE on; clients need S3D_CURVE_SERVERKEY=%s", pub);
        }
    }
    if (zmq_bind(sock, o->listen) != 0) {
        log_error("cannot listen on '%s': %s. HINT: check the endpoint and that no other "
                  "process uses it", o->listen, zmq_strerror(errno));
        return S3D_EIO;
    }
    log_info("accepting requests of at most %zu bytes of inline tensors", max_in);
    return 0;
}

int stage_serve(const struct stage_opts *o, const struct stage_ops *ops, void *model)
{
    static struct stage_state s;
    static struct wire_msg req, rep;
    static struct wire_frames frames;
    struct sigaction sa;
    struct zap *zap = NULL;
    void *ctx, *sock;
    char err[WIRE_ERR_MAX];
    int code = 1, parent = parent_pipe();

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;          /* no SA_RESTART: poll returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (state_init(&s, o, ops, model) != 0)
        return 1;
    ctx = zmq_ctx_new();
    ASSERT(ctx);
    sock = zmq_socket(ctx, ZMQ_REP);
    ASSERT(sock);
    if (bind_socket(ctx, sock, o, ops, &frames, &zap) != 0)
        goto out_close;
    log_info("serving on %s (device %s)%s", o->listen, o->device < 0 ? "cpu" : "cuda",
             parent >= 0 ? ", exiting with its parent" : "");
    while (!stop_requested) {
        /* the socket and the parent's pipe; the timeout re-checks the signal flag */
        zmq_pollitem_t items[2] = {{sock, 0, ZMQ_POLLIN, 0}, {NULL, parent, ZMQ_POLLIN, 0}};
        int n = zmq_poll(items, parent >= 0 ? 2 : 1, 1000), rc;

        if (n < 0 && errno != EINTR) {
            log_error("poll failed on '%s': %s", o->listen, zmq_strerror(errno));
            goto out_close;
        }
        if (n > 0 && parent >= 0 && (items[1].revents & (ZMQ_POLLIN | ZMQ_POLLERR))) {
            log_info("the orchestrator is gone (its pipe closed): exiting");
            break;
        }
        if (n <= 0 || !(items[0].revents & ZMQ_POLLIN))
            continue;
        rc = wire_recv(sock, WIRE_REQUEST, &req, &frames, err, sizeof(err));
        if (rc == S3D_EIO) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            log_error("receive failed on '%s': %s", o->listen, zmq_strerror(errno));
            goto out_close;
        }
        wire_msg_init(&rep, WIRE_REPLY, req.id);
        in_request = 1;
        if (rc) {
            log_warn("bad request (id %lld): %s", (long long)req.id, err);
            rep.has_error = true;
            snprintf(rep.error, sizeof(rep.error), "bad request: %.480s", err);
        } else {
            serve_request(&s, &req, &rep);
        }
        in_request = 0;
        if (wire_send(sock, &rep) != 0)
            log_warn("reply %lld not sent: %s", (long long)req.id, zmq_strerror(errno));
        wire_frames_close(&frames);
        if (!rc && req.method == WIRE_SHUTDOWN) {
            log_info("shutdown requested");
            break;
        }
    }
    if (stop_requested)
        log_info("stopping on a signal");
    code = 0;
out_close:
    wire_frames_close(&frames);
    zmq_close(sock);
    zap_stop(zap);
    zmq_ctx_term(ctx);
    state_free(&s);
    if (parent >= 0)
        close(parent);
    return code;
}

// ---------------------------------------------------------------- --once, --check-weights

/* Parse "KEY=VALUE" into a param: typed (wire_set_parsed), except that a key
 * the table declares a string or a path keeps its text ("--param prefix=12"). */
static int set_param_kv(struct wire_msg *m, const struct stage_param *t, const char *kv)
{
    const char *eq = strchr(kv, '=');
    char key[WIRE_KEY_MAX];

    if ((size_t)(eq - kv) >= sizeof(key))
        return S3D_EINVAL;
    memcpy(key, kv, (size_t)(eq - kv));
    key[eq - kv] = 0;
    for (int i = 0; t && t[i].name; i++)
        if (!strcmp(t[i].name, key) &&
            (t[i].type == STAGE_PARAM_STRING || t[i].type == STAGE_PARAM_PATH))
            return wire_set_str(m, key, eq + 1);
    return wire_set_parsed(m, key, eq + 1);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Describe every tensor of every IN_DIR/ *.safetensors file (sorted by file name) as
 * an shm input of req. */
static int once_inputs(const char *in_dir, struct wire_msg *req)
{
    DIR *d = opendir(in_dir);
    struct dirent *e;
    char *names[WIRE_MAX_TENSORS];
    int n = 0, rc = 0;

    if (!d) {
        log_error("--once: cannot read '%s': %s", in_dir, strerror(errno));
        return S3D_EIO;
    }
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);

        if (len <= 12 || strcmp(e->d_name + len - 12, ".safetensors") != 0)
            continue;
        if (n == WIRE_MAX_TENSORS) {
            log_error("--once: more than %d files in '%s'", WIRE_MAX_TENSORS, in_dir);
            rc = S3D_EINVAL;
            break;
        }
        names[n] = strdup(e->d_name);
        ASSERT(names[n]);
        n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(names[0]), name_cmp);
    for (int i = 0; i < n && !rc; i++) {
        struct ckpt c;
        char path[PATH_MAX];

        if ((size_t)snprintf(path, sizeof(path), "%s/%s", in_dir, names[i]) >= WIRE_STR_MAX) {
            log_error("--once: path '%s' longer than %d bytes", path, WIRE_STR_MAX - 1);
            rc = S3D_EINVAL;
            break;
        }
        rc = safetensors_open(&c, path);
        if (rc)
            break;
        for (int k = 0; k < c.n_entries; k++) {
            const struct ckpt_entry *en = &c.entries[k];

            if (strlen(en->name) >= WIRE_KEY_MAX || req->n_tensors >= WIRE_MAX_TENSORS ||
                wire_tensor_find(req, en->name)) {
                log_error("--once: tensor '%s' in '%s' is too long a name, one too many, or "
                          "a name seen in an earlier file", en->name, path);
                rc = S3D_EINVAL;
                break;
            }
            wire_add_shm(req, en->name, en->dtype, en->shape, en->ndim, path);
        }
        ckpt_close(&c);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    return rc;
}

int stage_run_once(const struct stage_opts *o, const struct stage_ops *ops, void *model)
{
    static struct stage_state s;
    static struct wire_msg req, rep;
    struct jobdir in, out;
    char why[600];
    int code = 1;

    if (jobdir_open(&in, o->once_in, 0, why, sizeof(why)) != 0) {
        log_error("--once IN_DIR %s. HINT: both directories must exist", why);
        return 1;
    }
    if (jobdir_open(&out, o->once_out, 0, why, sizeof(why)) != 0) {
        log_error("--once OUT_DIR %s. HINT: both directories must exist", why);
        jobdir_close(&in);
        return 1;
    }
    wire_msg_init(&req, WIRE_REQUEST, 1);
    req.method = WIRE_RUN;
    for (int i = 0; i < o->n_params; i++)
        if (set_param_kv(&req, ops->params, o->params[i]) != 0) {
            log_error("--param '%s': key or value too long", o->params[i]);
            code = 2;
            goto out_close;
        }
    {                                   /* a bad --param is a usage error, before any load */
        static struct stage_req rq;

        memset(&rq, 0, sizeof(rq));
        rq.msg = &req;
        rq.opts = o;
        rq.params = ops->params;
        if (stage_params_check(&rq) != 0) {
            code = 2;
            goto out_close;
        }
    }
    if (once_inputs(in.path, &req) != 0 || state_init(&s, o, ops, model) != 0)
        goto out_close;
    wire_msg_init(&rep, WIRE_REPLY, req.id);
    handle(&s, &req, &in, &out, &rep);
    if (rep.has_error)
        goto out_free;                  /* the one error line is logged */
    for (int i = 0; i < rep.n_tensors; i++) {
        char shape[128];

        tensor_shape_str(rep.tensors[i].shape, rep.tensors[i].ndim, shape, sizeof(shape));
        log_info("output %s %s %s -> %s", rep.tensors[i].name,
                 dtype_name(rep.tensors[i].dtype), shape, rep.tensors[i].shm);
    }
    code = 0;
out_free:
    state_free(&s);
out_close:
    jobdir_close(&in);
    jobdir_close(&out);
    return code;
}

int stage_check_weights(const struct stage_opts *o, const struct stage_ops *ops, void *model)
{
    static struct stage_rt rt;
    const char *rt_err = rt.err;
    int rc;

    if (ops->check) {
        rc = ops->check(model, o);
    } else {
        rc = load_model(o, ops, model, &rt, false);
        if (!rc)
            unload_model(ops, model, &rt);
    }
    if (rc) {
        log_error("check-weights %s: FAILED (%s) for '%s'%s%s", o->name, s3d_strerror(rc),
                  o->weights ? o->weights : "(no --weights)", rc == S3D_EDEVICE ? ": " : "",
                  rc == S3D_EDEVICE ? rt_err : "");
        return 1;
    }
    log_info("check-weights %s: OK ('%s')", o->name, o->weights ? o->weights : "(no weights)");
    return 0;
}

int stage_main(const struct stage_ops *ops, void *model, int argc, char **argv)
{
    struct stage_opts o;
    int rc;

    log_init(ops->name);
    rc = stage_parse_opts(&o, ops, argc, argv);
    if (rc == 1)
        return 0;
    if (rc)
        return 2;
    log_debug("%s %s: weights %s, device %s (cuda index %d), precision %s", o.exe,
              s3d_version(), o.weights ? o.weights : "(none)", o.device < 0 ? "cpu" : "cuda",
              o.device, o.precision == STAGE_FP32 ? "fp32" : "fp16");
    if (o.beat && beat_open(o.beat) != 0)
        return 1;
    if (o.check_weights)
        return stage_check_weights(&o, ops, model);
    if (o.once_in)
        return stage_run_once(&o, ops, model);
    return stage_serve(&o, ops, model);
}
