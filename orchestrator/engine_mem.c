/*
 * engine_mem.c - the engine's device memory: the VRAM budget (room for a
 * stage's turn: unload, then stop, idle stages) and loading ahead (load
 * requests to the stages jobs use next while others run). engine.h says the
 * rules; engine_int.h is the contract with engine.c.
 */
#include "engine_int.h"

#include "beat.h"
#include "log.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

// ---------------------------------------------------------------- the VRAM budget

/* Device bytes rt's process holds now: measured (a stage in its turn or loading
 * ahead: at least its need, which it may still reach), or estimated from its state. */
static int64_t held(struct engine *e, const struct stage_rt *rt)
{
    const struct needs_row *ctx = needs_find(&e->needs, "context", e->precision);
    int64_t now, peak;

    if (rt->proc.pid <= 0 || rt->proc.reaped)
        return 0;
    if (devmem_process(e->dm, rt->proc.pid, &now, &peak))   /* in a turn or a load: its need */
        return (rt->busy || rt->preloading) && rt->need > now ? rt->need : now;
    if (rt->loaded || rt->preloading || rt->busy)
        return rt->need;
    return rt->ever_loaded && ctx ? ctx->bytes : 0;
}

/* Turns until a job still queued or running needs stage s again (INT32_MAX: never;
 * with preload_idle, a stage no job needs comes after every job's turns, in
 * pipeline order). */
static int next_use(const struct engine *e, int s)
{
    int base = 0;

    for (int i = 0; i < e->n_jobs; i++) {
        const struct job *j = e->jobs[i];

        if (j->state != JOB_QUEUED && j->state != JOB_RUNNING)
            continue;
        if (s >= j->next && s <= j->last)
            return base + (s - j->next);
        base += j->last - j->next + 1;
    }
    return e->o.preload_idle ? base + s : INT32_MAX;
}

/* The stages on rt's device besides rt as the eviction policy sees them
 * (slot[i] per stage; evictable: idle, alive, and not needed before `after`
 * turns: next use > after). *others: what they hold; *freeable: what stopping
 * every evictable one would free; *busy_there: one of them is in a turn or a
 * load ahead. */
static void survey(struct engine *e, const struct stage_rt *rt, int after,
                   struct budget_slot slot[PIPE_MAX_STAGES], int64_t *others, int64_t *freeable,
                   bool *busy_there)
{
    *others = *freeable = 0;
    *busy_there = false;
    for (int i = 0; i < e->n_rt; i++) {
        struct stage_rt *o = &e->rt[i];
        int64_t h;

        slot[i].evictable = false;
        if (o == rt || o->remote || o->cuda != rt->cuda)
            continue;
        h = held(e, o);
        *others += h;
        *busy_there |= o->busy != NULL || o->preloading;
        slot[i].loaded = o->loaded;
        slot[i].next_use = next_use(e, i);
        slot[i].evictable = !o->busy && !o->preloading && proc_alive(&o->proc) &&
                            slot[i].next_use > after;
        if (slot[i].evictable)
            *freeable += h;
    }
}

/* Free room on rt's device: unload stage v (it stays up with its context), or
 * stop its process when it is not loaded or the unload fails; `for_what` says
 * why in the log ("b needs 6.0 MiB" / "to load c ahead"). */
static void evict(struct engine *e, int v, const struct stage_rt *rt, const char *for_what)
{
    char a[32], c[32], why[WIRE_ERR_MAX];
    struct stage_rt *o = &e->rt[v];

    budget_size_str(held(e, o), a, sizeof(a));
    budget_size_str(e->dev[rt->cuda].budget, c, sizeof(c));
    if (o->loaded && engine_call(e, o, WIRE_UNLOAD, e->o.timeout_ms, why, sizeof(why)) == 0) {
        o->loaded = false;
        log_info("budget: unloaded %s (it held %s; %s, budget %s on cuda:%d)", o->ps->name, a,
                 for_what, c, rt->cuda);
    } else {
        log_info("budget: stopped %s (its process held %s on cuda:%d; %s)", o->ps->name, a,
                 rt->cuda, for_what);
        engine_stop_stage(e, o);
    }
    devmem_sample(e->dm);
}

/* Make room on rt's device for its turn: unload, then stop, idle stages there.
 * true when it fits (or nothing else can be freed and nothing is busy: then it
 * runs anyway, with a warning); false to wait for a busy stage to finish. */
bool engine_budget_fit(struct engine *e, struct stage_rt *rt)
{
    struct budget_slot slot[PIPE_MAX_STAGES];
    char a[32], b[32], c[32], what[WIRE_ERR_MAX];
    int d = rt->cuda;

    if (!e->budget_on || rt->remote || d < 0)
        return true;
    devmem_sample(e->dm);
    for (;;) {
        int64_t others, freeable, need = rt->need > held(e, rt) ? rt->need : held(e, rt);
        bool busy_there;
        int v;

        survey(e, rt, -1, slot, &others, &freeable, &busy_there);
        if (others + need <= e->dev[d].budget)
            return true;
        v = budget_victim(slot, e->n_rt, true);
        if (v < 0) {
            if (busy_there)
                return false;
            log_warn("budget: stage %s needs %s on cuda:%d and the other stages hold %s "
                     "that cannot be freed; the budget is %s", rt->ps->name,
                     budget_size_str(need, a, sizeof(a)), d,
                     budget_size_str(others, b, sizeof(b)),
                     budget_size_str(e->dev[d].budget, c, sizeof(c)));
            return true;
        }
        snprintf(what, sizeof(what), "%s needs %s", rt->ps->name,
                 budget_size_str(need, b, sizeof(b)));
        evict(e, v, rt, what);
    }
}

// ---------------------------------------------------------------- loading ahead

#define PRELOAD_MAX 2                   /* loads ahead in flight at once */

/* The first queued or running job that will still run stage s, or NULL. */
static struct job *next_job_of(const struct engine *e, int s)
{
    for (int i = 0; i < e->n_jobs; i++) {
        struct job *j = e->jobs[i];

        if ((j->state == JOB_QUEUED || j->state == JOB_RUNNING) && s >= j->next && s <= j->last)
            return j;
    }
    return NULL;
}

/* Would rt's known need fit its device's budget next to what our processes
 * hold there now (loads in flight at their need)? No budget: yes; a budget and
 * an unknown need: no (it loads with its turn, where budget_fit makes room).
 * When it would fit once idle stages needed later than rt (next use > use,
 * farthest first; a stage no job needs again first of all) are unloaded or
 * stopped, they are, and it fits. */
static bool preload_fits(struct engine *e, const struct stage_rt *rt, int use)
{
    struct budget_slot slot[PIPE_MAX_STAGES];
    int64_t others, freeable, budget;
    char what[WIRE_ERR_MAX];
    bool busy_there;

    if (!e->budget_on || rt->cuda < 0)
        return true;
    if (rt->need <= 0)
        return false;
    budget = e->dev[rt->cuda].budget;
    survey(e, rt, use, slot, &others, &freeable, &busy_there);
    if (others + rt->need <= budget)
        return true;
    if (others - freeable + rt->need > budget)
        return false;                   /* not even with every later stage gone */
    snprintf(what, sizeof(what), "to load %s ahead", rt->ps->name);
    do {
        int v = budget_victim(slot, e->n_rt, true);

        if (v < 0)
            return false;
        evict(e, v, rt, what);
        survey(e, rt, use, slot, &others, &freeable, &busy_there);
    } while (others + rt->need > budget);
    return true;
}

/* Send load requests to the stages that jobs will use next (engine.h,
 * "Loading ahead"); their replies come to on_preload_reply. */
void engine_preload(struct engine *e)
{
    int order[PIPE_MAX_STAGES], use[PIPE_MAX_STAGES], n = 0, inflight = 0;
    bool blocked[DEVMEM_MAX_DEVICES] = {false}, sampled = false;
    char why[WIRE_ERR_MAX];

    for (int s = 0; s < e->n_rt; s++) {
        int u = next_use(e, s), k = n++;

        inflight += e->rt[s].preloading;
        if (u == INT32_MAX) {
            n--;
            continue;
        }
        for (; k > 0 && use[k - 1] > u; k--) {  /* insertion by next use, stable */
            order[k] = order[k - 1];
            use[k] = use[k - 1];
        }
        order[k] = s;
        use[k] = u;
    }
    for (int k = 0; k < n && inflight < PRELOAD_MAX; k++) {
        struct stage_rt *rt = &e->rt[order[k]];
        const char *sb;

        if (rt->busy || rt->preloading || rt->loaded || rt->remote || rt->preload_failed ||
            !proc_alive(&rt->proc) || !client_socket(&rt->cli) ||
            (rt->cuda >= 0 && blocked[rt->cuda]))
            continue;
        if (e->budget_on && rt->cuda >= 0 && !sampled) {
            devmem_sample(e->dm);
            sampled = true;
        }
        if (!preload_fits(e, rt, use[k])) {
            if (rt->cuda >= 0)
                blocked[rt->cuda] = true;   /* the next to run comes first */
            continue;
        }
        wire_msg_init(&e->req, WIRE_REQUEST, 0);
        e->req.method = WIRE_LOAD;
        /* the placement its turn will ask for (a memory-saving variant: the blocks
         * streamed from host memory), so that the turn finds it loaded that way */
        sb = job_param(e, next_job_of(e, order[k]), order[k], "stream_blocks");
        if (sb)
            ASSERT(wire_set_parsed(&e->req, "stream_blocks", sb) == 0);
        if (client_send(&rt->cli, &e->req, why, sizeof(why)) != 0) {
            log_warn("stage %s: could not ask it to load ahead (%s); it loads with its turn",
                     rt->ps->name, why);
            rt->preload_failed = true;
            continue;
        }
        rt->preloading = true;
        rt->preload_deadline = engine_now_ms() + e->o.timeout_ms;
        rt->beat_seen = beat_read(rt->beat_fd);
        inflight++;
        log_info("stage %s: loading its weights ahead of its turn%s", rt->ps->name,
                 sb && strcmp(sb, "0") ? " (its blocks streamed: stream_blocks=1)" : "");
    }
}

/* A load ahead is over, or given up (failed: why, else NULL). A failure is
 * not repeated: the stage's turn loads and says why if it fails again. */
void engine_end_preload(struct stage_rt *rt, const char *failed)
{
    rt->preloading = false;
    if (failed) {
        rt->preload_failed = true;
        log_warn("stage %s: loading ahead failed: %s; it loads with its turn", rt->ps->name,
                 failed);
    }
}

/* The reply to a load ahead is waiting on stage s's socket. */
void engine_on_preload_reply(struct engine *e, int s)
{
    struct stage_rt *rt = &e->rt[s];
    char why[WIRE_ERR_MAX];
    bool was = rt->loaded;

    if (client_recv(&rt->cli, &e->rep, &e->frames, why, sizeof(why)) != 0) {
        engine_end_preload(rt, why);
        return;
    }
    rt->loaded = wire_get_bool(&e->rep, "loaded", !e->rep.has_error);
    if (e->rep.has_error) {
        engine_end_preload(rt, e->rep.error);
        return;
    }
    engine_end_preload(rt, NULL);
    if (rt->loaded && !was) {
        rt->loads++;
        rt->ever_loaded = true;
        rt->preload_unclaimed = true;
    }
    log_info("stage %s: loaded ahead in %.1f ms (+ warm-up %.1f ms)", rt->ps->name,
             wire_get_float(&e->rep, "load_ms", 0), wire_get_float(&e->rep, "warm_ms", 0));
}

