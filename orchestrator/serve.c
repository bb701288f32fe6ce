/*
 * serve.c - `sam3d serve` (warm stages for whatever local clients submit) and
 * its client, `sam3d run --server ADDR`.
 *
 * The server holds one engine (engine.h) for its whole life: every stage
 * process starts once and keeps its weights loaded between jobs (the VRAM
 * budget permitting), so a job after the first pays no process start and no
 * weight load. Jobs queue in arrival order and run one at a time (no overlap:
 * one job at a time on the GPU). It listens on a ZeroMQ ROUTER socket, only
 * ipc:// or loopback tcp:// (a client names files on this machine, so it must
 * be a local user; an ipc socket lives in a 0700 directory or wherever the
 * user puts it).
 *
 * Protocol: one JSON object per message, each way.
 *   client -> server  {"op": "submit", "image": PATH, "mask": PATH, "out": PATH,
 *                      "preset": NAME (optional)}      absolute paths
 *                     {"op": "status"}
 *   server -> client  {"event": "accepted", "job": ID, "queued": N}
 *                     {"event": "error", "text": ...}   (a refused submit)
 *                     {"event": "stage_done", "job": ID, "stage": NAME, "state": ...,
 *                      "warm": BOOL, "wall_ms": MS}
 *                     {"event": "job_done", "job": ID, "status": ..., "code": N,
 *                      "out": PATH, "wall_ms": MS}
 *                     {"event": "status", "queued": N, "done": N, "stages": [{"name",
 *                      "starts", "loads", "loaded"}]}
 * A client that goes away does not stop its job (messages to it are dropped).
 * A job's --out appears whole: everything is written into "<out>.s3d-part-<id>"
 * (artifacts, report.json, the exported files) and renamed to <out> when the
 * job ends (out must not exist, or be an empty directory), so a reader never
 * sees half a job.
 *
 * Exit status (serve): 0 after SIGINT/SIGTERM (jobs in flight are stopped and
 * reported interrupted), 1 when it could not start, 2 usage.
 * Test: tests/test_serve.sh.
 */
#include "commands.h"
#include "err.h"
#include "image.h"
#include "json_min.h"
#include "log.h"
#include "preset.h"
#include "report.h"
#include "runopts.h"
#include "serve.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define SERVE_MAX_QUEUE  1000
#define SERVE_MSG_MAX    (3 * PATH_MAX + 512)
#define ACCEPT_WAIT_MS   10000

struct sjob {
    struct job j;
    unsigned char ident[256];           /* the client's ROUTER identity */
    size_t   ident_len;
    char     out[PATH_MAX];             /* the user's --out; j.out_dir is the part dir */
};

struct server {
    struct run_args *a;
    struct engine   *e;
    void            *sock;
    int              n_queued, n_done;
    struct sjob     *jobs[SERVE_MAX_QUEUE];
    int              n_jobs;
};

// ---------------------------------------------------------------- messages

/* A JSON message to client ident (dropped when it is gone). */
static void send_to(struct server *s, const unsigned char *ident, size_t ident_len,
                    const char *json)
{
    if (!ident_len)
        return;
    zmq_send(s->sock, ident, ident_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(s->sock, json, strlen(json), ZMQ_DONTWAIT);
}

/* json string s escaped into out (quotes included). */
static void jstr(char *out, size_t cap, const char *s)
{
    size_t n = 0;

    if (cap < 3)
        return;
    out[n++] = '"';
    for (; *s && n + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            n += (size_t)snprintf(out + n, cap - n, "\\%c", c);
        else if (c < 0x20)
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        else
            out[n++] = (char)c;
    }
    out[n++] = '"';
    out[n] = 0;
}

static void send_error(struct server *s, const unsigned char *ident, size_t len, const char *text)
{
    char msg[1200], q[1100];

    jstr(q, sizeof(q), text);
    snprintf(msg, sizeof(msg), "{\"event\": \"error\", \"text\": %s}", q);
    send_to(s, ident, len, msg);
    log_warn("serve: refused a submit: %s", text);
}

// ---------------------------------------------------------------- jobs

/* The job ended: its outputs (the export step, report.json) into the part
 * dir, then the part dir renamed to the user's --out; tell the client. */
static void job_ended(struct server *s, struct sjob *sj)
{
    struct job *j = &sj->j;
    int code = j->code;
    char msg[SERVE_MSG_MAX], q[PATH_MAX + 16], art[PATH_MAX + 16];
    const char *where = sj->out;

    if (code == 0 || code == 3) {
        struct export_opts xo = s->a->export;

        xo.early = &j->early;
        snprintf(art, sizeof(art), "%s/artifacts", j->out_dir);
        if (export_outputs(art, j->out_dir, &xo) != 0)
            code = 1;
    }
    export_early_discard(&j->early);
    if (report_write(s->e, j, report_status(code)) != 0 && code == 0)
        code = 1;
    jobdir_remove(j->dir.path);
    jobdir_close(&j->dir);
    rmdir(sj->out);                     /* an empty directory the user made is replaced */
    if (rename(j->out_dir, sj->out) != 0) {
        log_error("serve: job %d: cannot rename '%s' to '%s': %s; the outputs stay in the "
                  "former", j->id, j->out_dir, sj->out, strerror(errno));
        where = j->out_dir;
        code = code ? code : 1;
    }
    s->n_done++;
    log_info("serve: job %d (%s) %s in %.1f s -> %s", j->id, j->name, report_status(code),
             j->wall_ms / 1000, where);
    jstr(q, sizeof(q), where);
    snprintf(msg, sizeof(msg), "{\"event\": \"job_done\", \"job\": %d, \"status\": \"%s\", "
             "\"code\": %d, \"out\": %s, \"wall_ms\": %.1f}", j->id, report_status(code), code,
             q, j->wall_ms);
    send_to(s, sj->ident, sj->ident_len, msg);
}

static void on_event(void *arg, const struct engine_event *ev)
{
    struct server *s = arg;
    struct sjob *sj = ev->job ? ev->job->user : NULL;
    char msg[512];

    if (!sj)
        return;
    if (ev->kind == EV_STAGE_DONE) {
        const struct turn *t = &ev->job->turn[ev->stage];

        snprintf(msg, sizeof(msg), "{\"event\": \"stage_done\", \"job\": %d, \"stage\": "
                 "\"%s\", \"state\": \"%s\", \"warm\": %s, \"wall_ms\": %.1f}", ev->job->id,
                 ev->name, turn_state_name(t->state), t->warm ? "true" : "false", t->wall_ms);
        send_to(s, sj->ident, sj->ident_len, msg);
    } else if (ev->kind == EV_JOB_DONE) {
        job_ended(s, sj);
    }
}

/* Is out usable as a job's --out: absent or an empty directory, in an existing
 * directory? Else why. */
static bool out_ok(const char *out, char *why, size_t len)
{
    char parent[PATH_MAX];
    struct stat st;

    snprintf(parent, sizeof(parent), "%s", out);
    if (out[0] != '/' || stat(dirname(parent), &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(why, len, "out '%s': not an absolute path in an existing directory", out);
        return false;
    }
    if (stat(out, &st) == 0 && (!S_ISDIR(st.st_mode) || rmdir(out) != 0 ||
                                mkdir(out, 0755) != 0)) {
        snprintf(why, len, "out '%s' exists and is not an empty directory (a served job's "
                 "outputs appear whole, by renaming: give a new path)", out);
        return false;
    }
    return true;
}

/* {"op": "submit", ...}: queue a job, or tell the client why not. */
static void submit(struct server *s, const unsigned char *ident, size_t ident_len,
                   const struct json_doc *d)
{
    char image[PATH_MAX], mask[PATH_MAX], out[PATH_MAX], preset[64] = "", why[PATH_MAX + 200];
    char msg[256];
    int ki = json_object_get(d, 0, "image"), km = json_object_get(d, 0, "mask");
    int ko = json_object_get(d, 0, "out"), kp = json_object_get(d, 0, "preset");
    struct sjob *sj;
    struct job *j;

    if (ki < 0 || km < 0 || ko < 0 || json_string(d, ki, image, sizeof(image)) < 1 ||
        json_string(d, km, mask, sizeof(mask)) < 1 || json_string(d, ko, out, sizeof(out)) < 1 ||
        (kp >= 0 && json_string(d, kp, preset, sizeof(preset)) < 1)) {
        send_error(s, ident, ident_len, "submit wants \"image\", \"mask\" and \"out\" (absolute "
                   "paths) and optionally \"preset\"");
        return;
    }
    if (s->n_jobs == SERVE_MAX_QUEUE) {
        send_error(s, ident, ident_len, "the queue is full; submit later");
        return;
    }
    if (preset[0] && !preset_known(preset)) {
        snprintf(why, sizeof(why), "preset '%s': want one of %s", preset, preset_names());
        send_error(s, ident, ident_len, why);
        return;
    }
    if (!out_ok(out, why, sizeof(why))) {
        send_error(s, ident, ident_len, why);
        return;
    }
    sj = calloc(1, sizeof(*sj));
    ASSERT(sj);
    j = &sj->j;
    job_init(j, "job", 0, PIPE_MAX_STAGES - 1);
    j->early.want = (s->a->export.what & EXPORT_PREVIEW) != 0;
    j->user = sj;
    memcpy(sj->ident, ident, ident_len);
    sj->ident_len = ident_len;
    snprintf(sj->out, sizeof(sj->out), "%s", out);
    if (jobdir_create(&j->dir, NULL) != 0) {
        free(sj);
        send_error(s, ident, ident_len, "no job directory could be made (the server's log "
                   "says why; S3D_JOB_ROOT)");
        return;
    }
    snprintf(j->name, sizeof(j->name), "%s", strrchr(j->dir.path, '/') + 1);
    snprintf(j->image, sizeof(j->image), "%s/input_image", j->dir.path);
    snprintf(j->mask, sizeof(j->mask), "%s/input_mask", j->dir.path);
    snprintf(j->out_dir, sizeof(j->out_dir), "%.*s.s3d-part-%d", PATH_MAX - 32, out,
             (int)getpid());
    if (jobdir_copy_in(&j->dir, image, "input_image", IMAGE_MAX_FILE_BYTES, "image") ||
        jobdir_copy_in(&j->dir, mask, "input_mask", IMAGE_MAX_FILE_BYTES, "mask") ||
        (preset[0] && preset_apply(preset, s->e, j)) ||
        (mkdir(j->out_dir, 0755) != 0 && errno != EEXIST)) {
        snprintf(why, sizeof(why), "cannot take image '%.1000s' / mask '%.1000s' / out "
                 "'%.1000s' (the server's log says which and why)", image, mask, out);
        jobdir_remove(j->dir.path);
        jobdir_close(&j->dir);
        free(sj);
        send_error(s, ident, ident_len, why);
        return;
    }
    s->jobs[s->n_jobs++] = sj;
    engine_submit(s->e, j);
    s->n_queued++;
    log_info("serve: job %d queued (%s, %s -> %s)", j->id, image, mask, out);
    snprintf(msg, sizeof(msg), "{\"event\": \"accepted\", \"job\": %d, \"queued\": %d}", j->id,
             s->n_jobs);
    send_to(s, ident, ident_len, msg);
}

static void status(struct server *s, const unsigned char *ident, size_t ident_len)
{
    char msg[4096];
    size_t n = (size_t)snprintf(msg, sizeof(msg), "{\"event\": \"status\", \"queued\": %d, "
                                "\"done\": %d, \"stages\": [", s->n_jobs, s->n_done);

    for (int i = 0; i < s->e->n_rt && n < sizeof(msg) - 200; i++)
        n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%s{\"name\": \"%s\", \"starts\": %d, "
                              "\"loads\": %d, \"loaded\": %s}", i ? ", " : "",
                              s->e->rt[i].ps->name, s->e->rt[i].starts, s->e->rt[i].loads,
                              s->e->rt[i].loaded ? "true" : "false");
    snprintf(msg + n, sizeof(msg) - n, "]}");
    send_to(s, ident, ident_len, msg);
}

/* Every message waiting on the socket. */
static void read_clients(struct server *s)
{
    for (;;) {
        unsigned char ident[256];
        char text[SERVE_MSG_MAX], err[128];
        struct json_doc d;
        int il = zmq_recv(s->sock, ident, sizeof(ident), ZMQ_DONTWAIT), tl, more = 0, op;
        size_t ml = sizeof(more);

        if (il < 0)
            return;
        zmq_getsockopt(s->sock, ZMQ_RCVMORE, &more, &ml);
        if (!more)
            continue;
        tl = zmq_recv(s->sock, text, sizeof(text) - 1, 0);
        zmq_getsockopt(s->sock, ZMQ_RCVMORE, &more, &ml);
        while (more) {                  /* ignore extra frames */
            char junk[64];

            zmq_recv(s->sock, junk, sizeof(junk), 0);
            zmq_getsockopt(s->sock, ZMQ_RCVMORE, &more, &ml);
        }
        if (il > (int)sizeof(ident) || tl < 0 || tl >= (int)sizeof(text) - 1)
            continue;
        text[tl] = 0;
        if (json_parse(&d, text, (size_t)tl, err, sizeof(err)) != 0 ||
            d.nodes[0].type != JSON_OBJECT || (op = json_object_get(&d, 0, "op")) < 0) {
            if (d.nodes)
                json_free(&d);
            send_error(s, ident, (size_t)il, "not a request: want a JSON object with \"op\"");
            continue;
        }
        json_string(&d, op, err, sizeof(err));
        if (!strcmp(err, "submit"))
            submit(s, ident, (size_t)il, &d);
        else if (!strcmp(err, "status"))
            status(s, ident, (size_t)il);
        else
            send_error(s, ident, (size_t)il, "unknown op (submit, status)");
        json_free(&d);
    }
}

/* Forget and free the jobs that ended. */
static void reap_jobs(struct server *s)
{
    for (int i = 0; i < s->n_jobs; i++) {
        struct sjob *sj = s->jobs[i];

        if (sj->j.state != JOB_DONE && sj->j.state != JOB_FAILED)
            continue;
        engine_forget(s->e, &sj->j);
        free(sj);
        s->jobs[i--] = s->jobs[--s->n_jobs];
    }
}

// ---------------------------------------------------------------- sam3d serve

static void usage(FILE *f)
{
    fprintf(f,
        "usage: sam3d serve --listen ADDR --weights DIR [options of sam3d run]\n"
        "Keeps the stage processes of the pipeline alive and loaded between jobs and runs\n"
        "the jobs local clients submit (`sam3d run --server ADDR --image --mask --out`),\n"
        "one at a time, in arrival order. ADDR: ipc://PATH, or tcp://127.0.0.1:PORT.\n"
        "Options as sam3d run: --moge, --device, --stage-device, --precision, --outputs,\n"
        "--placed, --pipeline, --stages-dir, --timeout, --retries, --vram-budget,\n"
        "--max-pixels, -q. SIGINT/SIGTERM stop it (jobs in flight end 'interrupted').\n");
}

/* sam3d serve's own option (run_parse): --listen ADDR. */
static int serve_own_opt(void *user, struct run_args *a, int argc, char **argv, int *i)
{
    const char **listen = user;

    (void)a;
    if (strcmp(argv[*i], "--listen") || *i + 1 >= argc)
        return 0;
    *listen = argv[++*i];
    return 1;
}

int cmd_serve(int argc, char **argv)
{
    struct run_args a;
    struct server s = {.a = &a};
    struct jobdir socks = {0};
    const char *listen = NULL;
    char why[512];
    int code = 1, zero = 0;
    void *ctx = NULL;
    const struct run_cmd cmd = {.export_step = true, .usage = usage, .own = serve_own_opt,
                                .user = &listen};

    if ((code = run_parse(&a, argc, argv, &cmd)) != RUN_PARSED)
        return code;
    code = 1;
    if (!listen) {
        fprintf(stderr, "error: --listen ADDR is required\n");
        goto usage;
    }
    if (strncmp(listen, "ipc://", 6) && strncmp(listen, "tcp://127.0.0.1:", 16)) {
        fprintf(stderr, "error: --listen '%s': sam3d serve takes local clients only: ipc://PATH "
                "or tcp://127.0.0.1:PORT\n", listen);
        goto usage;
    }
    if (a.preset) {
        fprintf(stderr, "error: --preset is per job (the client's sam3d run --preset)\n");
        goto usage;
    }
    run_install_signals();
    if (jobdir_create(&socks, NULL) != 0)
        return 1;
    a.o.sock_dir = socks.path;
    a.o.max_active = 1;                 /* one job at a time on the GPU */
    a.o.preload_idle = true;            /* load (and warm up) the stages before the first job */
    a.o.event = on_event;
    a.o.event_arg = &s;
    if (engine_open(&s.e, &a.o) != 0 || engine_check(s.e, 0, s.e->n_rt - 1) != 0 ||
        engine_start(s.e, 0, s.e->n_rt - 1) != 0)
        goto out;
    ctx = zmq_ctx_new();
    s.sock = zmq_socket(ctx, ZMQ_ROUTER);
    zmq_setsockopt(s.sock, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_bind(s.sock, listen) != 0) {
        snprintf(why, sizeof(why), "%s", zmq_strerror(zmq_errno()));
        log_error("serve: cannot listen on '%s': %s (HINT: another server there? pick another "
                  "address)", listen, why);
        goto out;
    }
    log_info("serve: listening on %s; stages up: submit with `sam3d run --server %s --image "
             "IMG --mask MASK --out DIR`", listen, listen);
    fprintf(stderr, "sam3d: serving on %s\n", listen);
    while (!run_interrupted) {
        zmq_pollitem_t it = {s.sock, 0, ZMQ_POLLIN, 0};

        if (zmq_poll(&it, 1, s.n_jobs ? 0 : 100) > 0)
            read_clients(&s);
        engine_step(s.e, s.n_jobs ? 50 : 0);    /* idle: the loads ahead's replies */
        reap_jobs(&s);
    }
    engine_step(s.e, 0);                /* interrupted: the jobs in flight end (130) */
    reap_jobs(&s);
    log_info("serve: stopped by a signal after %d jobs", s.n_done);
    code = 0;
out:
    if (s.sock)
        zmq_close(s.sock);
    if (ctx)
        zmq_ctx_term(ctx);
    for (int i = 0; i < s.n_jobs; i++) {
        jobdir_remove(s.jobs[i]->j.dir.path);
        jobdir_close(&s.jobs[i]->j.dir);
        free(s.jobs[i]);
    }
    engine_close(s.e);
    jobdir_remove(socks.path);
    jobdir_close(&socks);
    if (!strncmp(listen, "ipc://", 6))
        unlink(listen + 6);
    return code;
usage:
    usage(stderr);
    return 2;
}

// ---------------------------------------------------------------- the client

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* An absolute form of path (its directory resolved; the file may not exist). */
static int absolute(const char *path, char *out, size_t len, bool must_exist, const char *what)
{
    char dir[PATH_MAX], base[PATH_MAX], real[PATH_MAX];

    if (must_exist) {
        if (realpath(path, real)) {
            snprintf(out, len, "%s", real);
            return 0;
        }
        log_error("%s '%s': %s", what, path, strerror(errno));
        return S3D_ENOTFOUND;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    snprintf(base, sizeof(base), "%s", path);
    if (!realpath(dirname(dir), real)) {
        log_error("%s '%s': its directory: %s", what, path, strerror(errno));
        return S3D_ENOTFOUND;
    }
    if ((size_t)snprintf(out, len, "%.*s/%s", (int)(len / 2), real, basename(base)) >= len) {
        log_error("%s '%s': path too long", what, path);
        return S3D_EINVAL;
    }
    return 0;
}

int serve_client(const char *addr, const char *image, const char *mask, const char *out,
                 const char *preset, enum progress_mode mode)
{
    char img[PATH_MAX], msk[PATH_MAX], o[PATH_MAX], q[3][PATH_MAX + 16], pq[80] = "";
    char msg[SERVE_MSG_MAX], text[SERVE_MSG_MAX];
    void *ctx, *sock;
    int code = 1, zero = 0, job = -1;
    double t0 = now_ms();

    if (absolute(image, img, sizeof(img), true, "--image") ||
        absolute(mask, msk, sizeof(msk), true, "--mask") ||
        absolute(out, o, sizeof(o), false, "--out"))
        return 1;
    jstr(q[0], sizeof(q[0]), img);
    jstr(q[1], sizeof(q[1]), msk);
    jstr(q[2], sizeof(q[2]), o);
    if (preset)
        snprintf(pq, sizeof(pq), ", \"preset\": \"%.40s\"", preset);
    snprintf(msg, sizeof(msg), "{\"op\": \"submit\", \"image\": %s, \"mask\": %s, \"out\": %s%s}",
             q[0], q[1], q[2], pq);
    ctx = zmq_ctx_new();
    sock = zmq_socket(ctx, ZMQ_DEALER);
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof(zero));
    if (zmq_connect(sock, addr) != 0) {
        log_error("--server '%s': %s", addr, zmq_strerror(zmq_errno()));
        goto out;
    }
    zmq_send(sock, msg, strlen(msg), 0);
    while (!run_interrupted) {
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        struct json_doc d;
        char ev[32] = "", err[64];
        int n, k;

        if (zmq_poll(&it, 1, 200) <= 0) {
            if (job < 0 && now_ms() - t0 > ACCEPT_WAIT_MS) {
                log_error("--server %s: no answer in %d s. HINT: start one with `sam3d serve "
                          "--listen %s --weights DIR`", addr, ACCEPT_WAIT_MS / 1000, addr);
                goto out;
            }
            continue;
        }
        n = zmq_recv(sock, text, sizeof(text) - 1, 0);
        if (n < 0 || n >= (int)sizeof(text) - 1)
            continue;
        text[n] = 0;
        if (mode == PROGRESS_JSON) {
            printf("%s\n", text);
            fflush(stdout);
        }
        if (json_parse(&d, text, (size_t)n, err, sizeof(err)) != 0)
            continue;
        if ((k = json_object_get(&d, 0, "event")) >= 0)
            json_string(&d, k, ev, sizeof(ev));
        if (!strcmp(ev, "error")) {
            char t[SERVE_MSG_MAX];

            k = json_object_get(&d, 0, "text");
            json_string(&d, k, t, sizeof(t));
            log_error("sam3d serve at %s refused the job: %s", addr, t);
            json_free(&d);
            goto out;
        } else if (!strcmp(ev, "accepted")) {
            int64_t v = 0, qn = 0;

            json_int64(&d, json_object_get(&d, 0, "job"), &v);
            json_int64(&d, json_object_get(&d, 0, "queued"), &qn);
            job = (int)v;
            if (mode != PROGRESS_QUIET && mode != PROGRESS_JSON)
                fprintf(stderr, "sam3d: job %d accepted by %s (%lld in its queue)\n", job, addr,
                        (long long)qn);
        } else if (!strcmp(ev, "stage_done") && mode != PROGRESS_QUIET && mode != PROGRESS_JSON) {
            char st[64] = "", state[32] = "";
            bool warm = strstr(text, "\"warm\": true") != NULL;

            json_string(&d, json_object_get(&d, 0, "stage"), st, sizeof(st));
            json_string(&d, json_object_get(&d, 0, "state"), state, sizeof(state));
            fprintf(stderr, "sam3d: %-12s %s%s\n", st, state, warm ? " (warm)" : "");
        } else if (!strcmp(ev, "job_done")) {
            int64_t c = 1;
            char where[PATH_MAX] = "", status[32] = "";

            json_int64(&d, json_object_get(&d, 0, "code"), &c);
            json_string(&d, json_object_get(&d, 0, "out"), where, sizeof(where));
            json_string(&d, json_object_get(&d, 0, "status"), status, sizeof(status));
            code = (int)c;
            if (mode != PROGRESS_JSON)
                fprintf(stderr, "sam3d: %s in %.1f s -> %s\n", status, (now_ms() - t0) / 1000,
                        where);
            json_free(&d);
            goto out;
        }
        json_free(&d);
    }
    if (run_interrupted) {
        fprintf(stderr, "sam3d: interrupted; job %d goes on in the server, its outputs will "
                "appear in %s\n", job, o);
        code = 130;
    }
out:
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return code;
}
