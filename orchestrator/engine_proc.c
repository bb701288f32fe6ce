/*
 * engine_proc.c - the engine's stage processes: start, connect, synchronous
 * calls, stop. Contract: engine_int.h; the engine: engine.h.
 */
#include "engine_int.h"

#include "beat.h"
#include "err.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define STOP_GRACE_MS 2000

struct waiter {
    struct engine   *e;
    struct stage_rt *rt;
};

/* A synchronous call keeps waiting while the stage lives (a remote one: until
 * the timeout) and no signal came; the idle hook runs meanwhile. */
static bool keep_waiting(void *arg)
{
    struct waiter *w = arg;

    if (w->e->o.idle)
        w->e->o.idle(w->e->o.idle_arg);
    return !engine_stopping(w->e) && (w->rt->remote || proc_alive(&w->rt->proc));
}

int engine_call(struct engine *e, struct stage_rt *rt, enum wire_method m, int timeout_ms,
                char *why, size_t why_len)
{
    struct waiter w = {e, rt};
    int rc;

    wire_msg_init(&e->req, WIRE_REQUEST, 0);
    e->req.method = m;
    rc = client_call(&rt->cli, &e->req, &e->rep, &e->frames, timeout_ms, keep_waiting, &w,
                     why, why_len);
    if (rc == 0 && e->rep.has_error) {
        snprintf(why, why_len, "%s", e->rep.error);
        return S3D_EINVAL;
    }
    return rc;
}

/* (Re)connect to rt's endpoint and wait until it answers status; on failure
 * rt->error says why (a remote stage: where it was looked for). */
int engine_connect_stage(struct engine *e, struct stage_rt *rt)
{
    char why[WIRE_ERR_MAX], desc[64];
    int rc;

    client_close(&rt->cli);
    rc = client_open(&rt->cli, e->zctx, rt->endpoint);
    if (rc)
        return rc;
    rc = engine_call(e, rt, WIRE_STATUS, e->o.timeout_ms, why, sizeof(why));
    if (rc && engine_stopping(e))
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
    rt->loaded = wire_get_bool(&e->rep, "loaded", false);
    if (rt->remote)
        log_info("stage %s: remote at %s", rt->ps->name, rt->endpoint);
    else
        log_info("stage %s up (pid %d, %s)", rt->ps->name, (int)rt->proc.pid, rt->endpoint);
    return 0;
}

/* Start rt's process and open its client, without waiting for it (a remote
 * stage: nothing to start). */
int engine_spawn_stage(struct engine *e, struct stage_rt *rt)
{
    char *argv[16];
    int n = 0, rc;

    if (rt->remote)
        return 0;
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
    if (e->o.precision) {
        argv[n++] = "--precision";
        argv[n++] = (char *)e->o.precision;
    }
    if (rt->beat_fd < 0 &&       /* beside its socket; none: --timeout stays per reply */
        snprintf(rt->beat_path, sizeof(rt->beat_path), "%s/%s.beat", e->o.sock_dir,
                 rt->ps->name) < (int)sizeof(rt->beat_path) &&
        (rt->beat_fd = beat_create(rt->beat_path)) < 0)
        log_warn("stage %s: cannot create its beat file '%s': %s (--timeout is then a limit "
                 "per reply)", rt->ps->name, rt->beat_path, strerror(errno));
    if (rt->beat_fd >= 0) {
        argv[n++] = "--beat";
        argv[n++] = rt->beat_path;
    }
    argv[n] = NULL;
    rt->loaded = false;
    rc = proc_spawn(&rt->proc, argv);
    if (rc)
        return rc;
    rt->starts++;
    if (rt->cuda >= 0)
        devmem_watch(e->dm, rt->proc.pid, rt->cuda);
    client_close(&rt->cli);
    return client_open(&rt->cli, e->zctx, rt->endpoint);
}

/* Start rt's process (a remote stage: only connect) and wait until it answers status. */
int engine_start_stage(struct engine *e, struct stage_rt *rt)
{
    int rc = engine_spawn_stage(e, rt);

    return rc ? rc : engine_connect_stage(e, rt);
}

/* Stop rt's process (proc_stop) and keep its peak resident set. */
void engine_stop_proc(struct engine *e, struct stage_rt *rt)
{
    if (rt->proc.pid > 0)
        devmem_unwatch(e->dm, rt->proc.pid);
    proc_stop(&rt->proc, STOP_GRACE_MS);
    if (rt->beat_fd >= 0) {
        close(rt->beat_fd);
        unlink(rt->beat_path);
        rt->beat_fd = -1;
    }
    if ((int64_t)rt->proc.max_rss_kb * 1024 > rt->rss_peak_bytes)
        rt->rss_peak_bytes = (int64_t)rt->proc.max_rss_kb * 1024;
    rt->loaded = false;
}

/* Ask politely (shutdown), then SIGTERM/SIGKILL; always reaps. A remote stage
 * is not ours to stop: only the connection is closed. */
void engine_stop_stage(struct engine *e, struct stage_rt *rt)
{
    char why[WIRE_ERR_MAX];

    if (rt->preloading) {               /* its socket awaits a load's reply: reset it */
        client_abandon(&rt->cli);
        rt->preloading = false;
    }
    if (rt->remote) {
        client_close(&rt->cli);
        return;
    }
    if (proc_alive(&rt->proc) && !engine_stopping(e) && !rt->busy)
        (void)engine_call(e, rt, WIRE_SHUTDOWN, 2000, why, sizeof(why));
    engine_stop_proc(e, rt);
    client_close(&rt->cli);
}

