/*
 * engine.c - stage processes and the jobs that run through them. Contract: engine.h.
 *
 * Sections: opening (pipeline, stages, devices, budgets), jobs, turns (reply,
 * retry), the scheduler. The stage processes (start, stop, synchronous calls)
 * are in engine_proc.c, the run request in engine_req.c, the VRAM budget and
 * loading ahead in engine_mem.c (engine_int.h).
 */
#include "engine.h"
#include "engine_int.h"

#include "beat.h"

#include "err.h"
#include "jobspace.h"
#include "log.h"
#include "report.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define SLICE_MS      100

static volatile sig_atomic_t never;

static const char *const turn_names[] = {"not run", "not built", "done", "failed", "kept"};

const char *turn_state_name(enum turn_state s)
{
    return (unsigned)s < sizeof(turn_names) / sizeof(turn_names[0]) ? turn_names[s] : "?";
}

double engine_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

bool engine_stopping(const struct engine *e)
{
    return *e->o.interrupted != 0;
}

static void emit(struct engine *e, enum engine_ev kind, struct job *j, int s)
{
    struct engine_event ev = {kind, j, s, s >= 0 ? e->rt[s].ps->name : NULL,
                              j ? j->last - j->first + 1 : 0, s >= 0 ? e->rt[s].table_ms : 0,
                              0, 0};

    if (e->o.event)
        e->o.event(e->o.event_arg, &ev);
}

// ---------------------------------------------------------------- opening

/* Apply --endpoint NAME=URL, --stage-device NAME=DEV and --stage-weights /
 * --gaussians NAME=FILE (cli.h) to the loaded pipeline.
 * Returns 0, or S3D_EINVAL after one error line. */
static int apply_overrides(struct engine *e)
{
    for (int i = 0; i < e->o.n_over; i++) {
        const char *arg = e->o.over_arg[i], *eq = strchr(arg, '=');
        bool ep = !strcmp(e->o.over_kind[i], "--endpoint");
        bool wt = !strcmp(e->o.over_kind[i], "--stage-weights") ||
                  !strcmp(e->o.over_kind[i], "--gaussians");
        char name[PIPE_NAME_MAX];
        struct pipe_stage *ps = NULL;

        if (eq && (size_t)(eq - arg) < sizeof(name)) {
            memcpy(name, arg, (size_t)(eq - arg));
            name[eq - arg] = 0;
            ps = (struct pipe_stage *)pipeline_find(&e->pipe, name);
        }
        if (!ps) {
            log_error("%s %s: no such stage in '%s'. HINT: the stage names are the 'stage' "
                      "lines of the pipeline file", e->o.over_kind[i], arg, e->pipe.path);
            return S3D_EINVAL;
        }
        if (wt) {
            if (!eq[1] || strlen(eq + 1) >= sizeof(ps->weights)) {
                log_error("%s %s: expected NAME=FILE (relative to --weights DIR)",
                          e->o.over_kind[i], arg);
                return S3D_EINVAL;
            }
            strcpy(ps->weights, eq + 1);
            continue;
        }
        if (ep ? !pipeline_endpoint_ok(eq + 1) : !pipeline_device_ok(eq + 1)) {
            log_error("%s %s: %s", e->o.over_kind[i], arg,
                      ep ? "expected tcp://HOST:PORT or ipc://PATH" : "expected cuda:N or cpu");
            return S3D_EINVAL;
        }
        strcpy(ep ? ps->endpoint : ps->device, eq + 1);
    }
    return 0;
}

/* The CUDA device a stage given device string dev runs on: -1 for cpu; the
 * stage's own default (cuda:0 when a GPU is usable) for "". */
static int cuda_index(const struct engine *e, const char *dev)
{
    if (!strcmp(dev, "cpu"))
        return -1;
    if (!dev[0])
        return devmem_device_count(e->dm) > 0 ? 0 : -1;
    if (!strcmp(dev, "cuda"))
        return 0;
    return atoi(dev + 5);
}

/* Fill e->rt from the pipeline: executables, weights, endpoints, devices. Weights
 * are resolved (and must exist) for the built stages that will run: all of them,
 * or only stage index only when only >= 0. */
static int prepare_stages(struct engine *e, int only)
{
    e->n_rt = e->pipe.n_stages;
    e->first_missing = e->n_rt;
    for (int i = 0; i < e->n_rt; i++) {        /* every entry valid for the report, */
        e->rt[i].ps = &e->pipe.stages[i];      /* even when a later check fails */
        e->rt[i].cuda = -1;
        e->rt[i].beat_fd = -1;
    }
    for (int i = 0; i < e->n_rt; i++) {
        struct stage_rt *rt = &e->rt[i];
        const struct needs_row *row;
        char wfile[PATH_MAX];
        struct stat st;
        int n;

        n = snprintf(rt->exe, sizeof(rt->exe), "%s/%s", e->stages_dir, rt->ps->exe);
        if (n < 0 || (size_t)n >= sizeof(rt->exe))
            return S3D_EINVAL;
        snprintf(rt->device, sizeof(rt->device), "%s",
                 rt->ps->device[0] ? rt->ps->device : e->o.device ? e->o.device : "");
        if (rt->ps->endpoint[0]) {              /* served elsewhere, with its own weights */
            rt->remote = rt->built = true;
            strcpy(rt->endpoint, rt->ps->endpoint);
            continue;
        }
        rt->built = access(rt->exe, X_OK) == 0;
        if (!rt->built && e->first_missing == e->n_rt)
            e->first_missing = i;
        rt->cuda = cuda_index(e, rt->device);
        if (rt->cuda >= devmem_device_count(e->dm) && devmem_device_count(e->dm) > 0) {
            log_error("stage %s: device %s does not exist (%d CUDA device(s)). HINT: pick one "
                      "of cuda:0..cuda:%d", rt->ps->name, rt->device,
                      devmem_device_count(e->dm), devmem_device_count(e->dm) - 1);
            return S3D_EINVAL;
        }
        if (rt->cuda >= DEVMEM_MAX_DEVICES)
            rt->cuda = -1;
        row = needs_find(&e->needs, rt->ps->name, e->precision);
        rt->need = row ? row->bytes : 0;
        rt->table_ms = row ? row->run_ms : 0;
        n = snprintf(rt->endpoint, sizeof(rt->endpoint), "ipc://%s/%s.sock", e->o.sock_dir,
                     rt->ps->name);
        if (n < 0 || (size_t)n >= sizeof(rt->endpoint))
            return S3D_EINVAL;
        if (!rt->built || (only >= 0 && i != only))
            continue;
        if (pipeline_weights_path(rt->ps, e->o.weights_dir, e->o.moge, rt->weights,
                                  sizeof(rt->weights)) != 0)
            return S3D_EINVAL;
        if (rt->weights[0]) {
            pipeline_weights_file(rt->weights, wfile, sizeof(wfile));
            if (stat(wfile, &st) != 0) {
                char looked[WIRE_ERR_MAX / 2];

                pipeline_weights_looked(rt->ps, e->o.weights_dir, e->o.moge, looked,
                                        sizeof(looked));
                snprintf(rt->error, sizeof(rt->error),
                         "weights '%.200s': %s (looked for %.200s)", wfile, strerror(errno),
                         looked);
                log_error("stage %s: %s. HINT: check --weights DIR (and --moge FILE); "
                          "`sam3d check-weights --weights DIR` lists what is missing",
                          rt->ps->name, rt->error);
                return S3D_ENOTFOUND;
            }
        }
    }
    return 0;
}

/* Each CUDA device a local stage uses: its free memory now and the budget. */
static void open_devices(struct engine *e)
{
    char a[32], b[32], c[32];

    for (int i = 0; i < e->n_rt; i++)
        if (e->rt[i].built && e->rt[i].cuda >= 0)
            e->dev[e->rt[i].cuda].used = true;
    for (int d = 0; d < DEVMEM_MAX_DEVICES; d++) {
        struct engine_dev *v = &e->dev[d];

        if (!v->used)
            continue;
        if (devmem_device_free(e->dm, d, &v->free_at_open, &v->total) != 0) {
            v->free_at_open = v->total = 0;
            log_warn("cuda:%d: free device memory unknown (%s); %s", d,
                     devmem_method_name(devmem_method(e->dm)),
                     e->o.vram_budget >= 0 ? "the budget is taken as given" :
                     "no budget applies (pass --vram-budget SIZE)");
        }
        v->budget = e->o.vram_budget >= 0 ? e->o.vram_budget : v->free_at_open;
        if (v->free_at_open > 0 && v->budget > v->free_at_open)
            log_warn("cuda:%d: --vram-budget %s is more than the %s free now: stages may run "
                     "out of device memory", d, budget_size_str(v->budget, a, sizeof(a)),
                     budget_size_str(v->free_at_open, b, sizeof(b)));
        if (v->budget > 0 || e->o.vram_budget >= 0)
            e->budget_on = true;
        log_info("cuda:%d: %s free of %s at start; VRAM budget %s (%s; measured with %s)", d,
                 budget_size_str(v->free_at_open, a, sizeof(a)),
                 budget_size_str(v->total, b, sizeof(b)),
                 budget_size_str(v->budget, c, sizeof(c)),
                 e->o.vram_budget >= 0 ? "--vram-budget" : "the free memory",
                 devmem_method_name(devmem_method(e->dm)));
    }
}

int engine_open(struct engine **out, const struct engine_opts *o)
{
    struct engine *e = calloc(1, sizeof(*e));
    const struct pipe_stage *only = NULL;
    int rc;

    ASSERT(e);
    *out = NULL;
    e->o = *o;
    if (!e->o.interrupted)
        e->o.interrupted = &never;
    e->precision = o->precision ? o->precision : "fp16";
    e->zctx = zmq_ctx_new();
    ASSERT(e->zctx);
    pipeline_default_path(o->pipeline, e->pipe_path, sizeof(e->pipe_path));
    pipeline_stages_dir(o->stages_dir, e->stages_dir, sizeof(e->stages_dir));
    if ((rc = pipeline_load(&e->pipe, e->pipe_path)) || (rc = apply_overrides(e)) ||
        (rc = needs_load(&e->needs, pipeline_needs_base(&e->pipe))))
        goto out_close;
    if (o->only && !(only = pipeline_find(&e->pipe, o->only))) {
        log_error("no stage '%s' in '%s'", o->only, e->pipe_path);
        rc = S3D_EINVAL;
        goto out_close;
    }
    e->dm = devmem_open();
    rc = prepare_stages(e, only ? (int)(only - e->pipe.stages) : -1);
    if (!rc)
        open_devices(e);
    *out = e;                           /* also on a stage's failure: the caller reports it */
    return rc;
out_close:
    engine_close(e);
    return rc;
}

void engine_close(struct engine *e)
{
    if (!e)
        return;
    for (int i = 0; i < e->n_rt; i++) {
        engine_stop_stage(e, &e->rt[i]);
        if (e->rt[i].rin) {
            remote_inputs_close(e->rt[i].rin);
            free(e->rt[i].rin);
        }
    }
    wire_frames_close(&e->frames);
    if (e->zctx)
        zmq_ctx_term(e->zctx);
    devmem_close(e->dm);
    free(e->jobs);
    free(e);
}

/* Run stage s with param key=val by default (a memory-saving variant). */
static void set_default_param(struct engine *e, int s, const char *key, const char *val)
{
    struct pipe_stage *ps = &e->pipe.stages[s];
    int i = 0;

    while (i < ps->n_params && strcmp(ps->param_key[i], key))
        i++;
    if (i == ps->n_params) {
        ASSERT(ps->n_params < PIPE_MAX_PARAMS);
        snprintf(ps->param_key[ps->n_params++], WIRE_KEY_MAX, "%s", key);
    }
    snprintf(ps->param_val[i], WIRE_STR_MAX, "%s", val);
}

/* Stage i's memory-saving variant (the needs table's least row with a param),
 * or NULL when it has none that needs less than its plan now. */
static const struct needs_row *variant_of(struct engine *e, int i)
{
    const struct needs_row *row = needs_least(&e->needs, e->rt[i].ps->name, e->precision);

    return row && row->key[0] && row->bytes < e->rt[i].need ? row : NULL;
}

static void take_variant(struct engine *e, int i, const struct needs_row *row, int nb)
{
    struct stage_rt *rt = &e->rt[i];
    char a[32], b[32], c[32];

    log_info("budget: stage %s runs with %s=%s (needs %s on cuda:%d, %s without; budget %s), "
             "so that it and %s fit side by side", rt->ps->name, row->key, row->val,
             budget_size_str(row->bytes, a, sizeof(a)), rt->cuda,
             budget_size_str(rt->need, b, sizeof(b)),
             budget_size_str(e->dev[rt->cuda].budget, c, sizeof(c)), e->rt[nb].ps->name);
    set_default_param(e, i, row->key, row->val);
    rt->need = row->bytes;
    rt->table_ms = row->run_ms;
}

/* Under a budget, two pipeline neighbours on one device whose needs together
 * are over it take memory-saving variants where that makes them fit side by
 * side, so that one can load ahead while the other runs (a streamed stage
 * costs a few percent of its time; a load and first use seen in a turn cost
 * more): the variant of the one that needs more, else of the other, else of
 * both. One pass over the pairs; true when a stage took a variant. */
static bool prefer_overlap_pass(struct engine *e, int first, int last)
{
    bool changed = false;

    for (int i = first; i + 1 <= last && i + 1 < e->first_missing; i++) {
        int p[2] = {i, i + 1};
        struct stage_rt *x = &e->rt[i], *y = &e->rt[i + 1];
        int64_t budget;

        if (x->remote || y->remote || x->cuda < 0 || x->cuda != y->cuda || x->need <= 0 ||
            y->need <= 0 || x->need + y->need <= (budget = e->dev[x->cuda].budget))
            continue;
        if (y->need > x->need) {        /* the one that needs more first */
            p[0] = i + 1;
            p[1] = i;
        }
        const struct needs_row *v0 = variant_of(e, p[0]), *v1 = variant_of(e, p[1]);
        int64_t n0 = e->rt[p[0]].need, n1 = e->rt[p[1]].need;
        if (v0 && v0->bytes + n1 <= budget) {
            take_variant(e, p[0], v0, p[1]);
        } else if (v1 && n0 + v1->bytes <= budget) {
            take_variant(e, p[1], v1, p[0]);
        } else if (v0 && v1 && v0->bytes + v1->bytes <= budget) {
            take_variant(e, p[0], v0, p[1]);
            take_variant(e, p[1], v1, p[0]);
        } else {
            continue;
        }
        changed = true;
    }
    return changed;
}

/* prefer_overlap_pass until nothing changes (a neighbour's variant can make
 * room for a pair further on). */
static void prefer_overlap(struct engine *e, int first, int last)
{
    for (int pass = 0; pass < PIPE_MAX_STAGES && prefer_overlap_pass(e, first, last); pass++)
        ;
}

int engine_check(struct engine *e, int first, int last)
{
    char a[32], b[32], c[32], d[32];

    if (!e->budget_on)
        return 0;
    for (int i = first; i <= last && i < e->first_missing; i++) {
        struct stage_rt *rt = &e->rt[i];
        const struct engine_dev *v;
        const struct needs_row *row;

        if (rt->remote || rt->cuda < 0)
            continue;
        v = &e->dev[rt->cuda];
        row = needs_fit(&e->needs, rt->ps->name, e->precision, v->budget);
        if (!row)
            continue;                   /* unknown need: learned while running */
        if (row->key[0] && row->bytes <= v->budget && rt->need > v->budget) {
            log_info("budget: stage %s runs with %s=%s (needs %s on cuda:%d, %s without; "
                     "budget %s)", rt->ps->name, row->key, row->val,
                     budget_size_str(row->bytes, a, sizeof(a)), rt->cuda,
                     budget_size_str(rt->need, b, sizeof(b)),
                     budget_size_str(v->budget, c, sizeof(c)));
            set_default_param(e, i, row->key, row->val);
            rt->need = row->bytes;
            rt->table_ms = row->run_ms;
        }
        if (rt->need <= v->budget)
            continue;
        /* the least any row of the stage needs (a memory-saving variant's) */
        const struct needs_row *least = needs_least(&e->needs, rt->ps->name, e->precision);
        char alt[WIRE_KEY_MAX + 96] = "";
        int64_t min_need = rt->need;
        if (least && least->key[0] && least->bytes < rt->need) {
            snprintf(alt, sizeof(alt), "; %s with %s=%s", budget_size_str(least->bytes, d,
                     sizeof(d)), least->key, least->val);
            min_need = least->bytes;
        }
        if (e->o.vram_budget >= 0)
            log_error("--vram-budget %s is below what stage %s needs on cuda:%d: %s (%s%s, "
                      "needs table %s). HINT: pass --vram-budget %s or more, or run it on "
                      "another device (--stage-device %s=cpu)",
                      budget_size_str(v->budget, a, sizeof(a)), rt->ps->name, rt->cuda,
                      budget_size_str(rt->need, b, sizeof(b)), e->precision, alt,
                      e->needs.path, budget_size_arg(min_need, c, sizeof(c)), rt->ps->name);
        else
            log_error("cuda:%d has %s free, below what stage %s needs: %s (%s%s, needs table "
                      "%s). HINT: free the GPU, pick another (--device cuda:N), or pass "
                      "--vram-budget to insist", rt->cuda,
                      budget_size_str(v->budget, a, sizeof(a)), rt->ps->name,
                      budget_size_str(rt->need, b, sizeof(b)), e->precision, alt,
                      e->needs.path);
        return S3D_ENOMEM;
    }
    prefer_overlap(e, first, last);
    return 0;
}

int engine_start(struct engine *e, int first, int last)
{
    /* every process first, then the status of each: they start up side by side
     * (their libraries and the CUDA driver), not one after another */
    for (int i = first; i <= last && i < e->first_missing && !engine_stopping(e); i++) {
        int rc = engine_spawn_stage(e, &e->rt[i]);

        if (rc)
            return rc;
    }
    for (int i = first; i <= last && i < e->first_missing && !engine_stopping(e); i++) {
        int rc = engine_connect_stage(e, &e->rt[i]);

        if (rc)
            return rc;
    }
    return engine_stopping(e) ? S3D_ETIMEOUT : 0;
}

// ---------------------------------------------------------------- jobs

void job_init(struct job *j, const char *name, int first, int last)
{
    memset(j, 0, sizeof(*j));
    snprintf(j->name, sizeof(j->name), "%s", name);
    j->first = j->next = first;
    j->last = last;
    for (int s = 0; s < PIPE_MAX_STAGES; s++)
        j->turn[s].dev_bytes = -1;
}

int job_set_param(struct job *j, int stage, const char *key, const char *val)
{
    struct job_set *t = NULL;

    for (int i = 0; i < j->n_set && !t; i++)
        if (j->set[i].stage == stage && !strcmp(j->set[i].key, key))
            t = &j->set[i];
    if (!t && j->n_set == JOB_MAX_SET) {
        log_error("more than %d param overrides", JOB_MAX_SET);
        return S3D_EINVAL;
    }
    if (strlen(key) >= WIRE_KEY_MAX || strlen(val) >= JOB_SET_VAL || !key[0]) {
        log_error("param '%s=%s': key or value too long (at most %d and %d characters)", key,
                  val, WIRE_KEY_MAX - 1, JOB_SET_VAL - 1);
        return S3D_EINVAL;
    }
    if (!t)
        t = &j->set[j->n_set++];
    t->stage = stage;
    strcpy(t->key, key);
    strcpy(t->val, val);
    return 0;
}

const char *job_param(const struct engine *e, const struct job *j, int s, const char *key)
{
    const struct pipe_stage *ps = &e->pipe.stages[s];
    const char *v = NULL;

    for (int i = 0; i < ps->n_params; i++)
        if (!strcmp(ps->param_key[i], key))
            v = ps->param_val[i];
    for (int i = 0; j && i < j->n_set && v; i++)    /* a general override: where the key exists */
        if (j->set[i].stage == -1 && !strcmp(j->set[i].key, key))
            v = j->set[i].val;
    for (int i = 0; j && i < j->n_set; i++)     /* the stage's own override wins */
        if (j->set[i].stage == s && !strcmp(j->set[i].key, key))
            v = j->set[i].val;
    return v;
}

void engine_submit(struct engine *e, struct job *j)
{
    if (e->n_jobs == e->cap_jobs) {
        e->cap_jobs = e->cap_jobs ? 2 * e->cap_jobs : 16;
        e->jobs = realloc(e->jobs, sizeof(*e->jobs) * (size_t)e->cap_jobs);
        ASSERT(e->jobs);
    }
    j->id = ++e->next_id;
    j->state = JOB_QUEUED;
    if (j->last >= e->n_rt)
        j->last = e->n_rt - 1;
    if (j->last >= e->first_missing) {
        j->last = e->first_missing - 1;
        j->partial = true;
    }
    for (int s = e->first_missing; s < e->n_rt; s++)
        j->turn[s].state = TURN_MISSING;
    j->next = j->first;
    e->jobs[e->n_jobs++] = j;
}

void engine_forget(struct engine *e, struct job *j)
{
    for (int i = 0; i < e->n_jobs; i++)
        if (e->jobs[i] == j) {
            memmove(&e->jobs[i], &e->jobs[i + 1], sizeof(*e->jobs) * (size_t)(e->n_jobs - i - 1));
            e->n_jobs--;
            return;
        }
}

/* Wait for the copies of j's artifacts to OUT/artifacts; a failed one fails its
 * turn and the job. Returns the job's code after them. */
static int join_copies(struct job *j, int code)
{
    for (int s = j->first; s <= j->last; s++) {
        struct turn *t = &j->turn[s];

        if (t->copying) {
            pthread_join(t->copier, NULL);
            t->copying = false;
        }
        if (t->copy_rc && t->state == TURN_DONE) {
            t->state = TURN_FAILED;
            snprintf(t->error, sizeof(t->error), "cannot copy the artifact to '%.400s'",
                     j->out_dir);
            if (code == 0 || code == 3)
                code = 1;
        }
    }
    return code;
}

static void job_finish(struct engine *e, struct job *j, int code)
{
    code = join_copies(j, code);
    /* a preview drawn ahead may still be drawing: the export step joins it beside its
     * own file writes (export_outputs), and every caller discards it after that */
    if (code != 0 && code != 3)
        export_early_discard(&j->early);   /* no export step for a failed job */
    j->state = code == 0 || code == 3 ? JOB_DONE : JOB_FAILED;
    j->code = code;
    j->wall_ms = engine_now_ms() - j->t_start;
    emit(e, EV_JOB_DONE, j, -1);
}

// ---------------------------------------------------------------- turns

static void record_reply(struct engine *e, struct stage_rt *rt, struct turn *t)
{
    const struct wire_msg *rep = &e->rep;
    bool was = rt->loaded;

    rt->loaded = wire_get_bool(rep, "loaded", true);
    if (rt->loaded)
        rt->preload_failed = false;     /* it loads again: later jobs may load it ahead */
    if (rt->loaded && !was) {
        rt->loads++;
        rt->ever_loaded = true;
    }
    t->load_ms = t->warm ? 0 : wire_get_float(rep, "load_ms", 0);
    t->warmup_ms = t->preloaded ? wire_get_float(rep, "warm_ms", 0) : 0;
    t->run_ms = wire_get_float(rep, "last_run_ms", 0);
    t->peak_bytes = wire_get_int(rep, "peak_bytes", 0);
    t->resident_bytes = wire_get_int(rep, "resident_bytes", 0);
    t->host_peak_bytes = wire_get_int(rep, "host_peak_bytes", 0);
    t->n_out = 0;
    for (int i = 0; i < rep->n_tensors; i++) {
        const struct wire_tensor *w = &rep->tensors[i];
        struct out_desc *o = &t->out[t->n_out++];

        memcpy(o->name, w->name, sizeof(o->name));
        o->dtype = w->dtype;
        o->ndim = w->ndim;
        memcpy(o->shape, w->shape, sizeof(o->shape));
        o->nbytes = w->nbytes;
    }
}

/* The device memory rt's process reached during turn t (devmem.h methods). */
static void record_devmem(struct engine *e, struct stage_rt *rt, struct turn *t)
{
    int64_t now, peak, f, tot;

    if (rt->remote || rt->cuda < 0)
        return;
    devmem_sample(e->dm);
    if (devmem_process(e->dm, rt->proc.pid, &now, &peak)) {
        t->dev_bytes = peak;
        if (peak > rt->need)
            rt->need = peak;                    /* learned: the table may be low */
    } else if (t->probe_free0 > 0 && devmem_device_free(e->dm, rt->cuda, &f, &tot) == 0) {
        struct engine_dev *v = &e->dev[rt->cuda];

        t->dev_bytes = t->probe_free0 > f ? t->probe_free0 - f : 0;
        if (v->free_at_open - f > v->probe_peak)
            v->probe_peak = v->free_at_open - f;
    }
}

struct copy_arg {
    const struct engine *e;
    struct job          *j;
    int                  s;
};

static void *copy_main(void *p)
{
    struct copy_arg *a = p;

    a->j->turn[a->s].copy_rc = report_copy_artifact(a->e, a->j, a->s);
    free(a);
    return NULL;
}

/* Copy stage s's artifact of job j to OUT/artifacts on a thread of its own, so
 * the next stage need not wait for it (the depth artifact of a large image is
 * hundreds of MB); job_finish joins it. Without a thread: here and now. */
static void start_copy(const struct engine *e, struct job *j, int s)
{
    struct turn *t = &j->turn[s];
    struct copy_arg *a;

    t->copy_rc = 0;
    if (!j->out_dir[0])
        return;
    a = malloc(sizeof(*a));
    if (a) {
        *a = (struct copy_arg){e, j, s};
        if (pthread_create(&t->copier, NULL, copy_main, a) == 0) {
            t->copying = true;
            return;
        }
        free(a);
    }
    t->copy_rc = report_copy_artifact(e, j, s);
}

/* Turn s of job j is over (done, or failed for good). */
static void end_turn(struct engine *e, struct job *j, int s, bool ok)
{
    struct stage_rt *rt = &e->rt[s];
    struct turn *t = &j->turn[s];

    rt->busy = NULL;
    j->in_flight = false;
    t->wall_ms = engine_now_ms() - t->t0;
    t->state = ok ? TURN_DONE : TURN_FAILED;
    if (ok) {
        log_info("stage %s done in %.1f ms (%d outputs -> %s)%s%s", rt->ps->name, t->wall_ms,
                 t->n_out, rt->ps->out, e->n_jobs > 1 ? " for " : "",
                 e->n_jobs > 1 ? j->name : "");
        start_copy(e, j, s);
        export_early_artifact(&j->early, j->dir.path, rt->ps->out);
    } else if (engine_stopping(e)) {
        snprintf(t->error, sizeof(t->error), "interrupted by a signal");
    } else {
        jobspace_failure_hint(j->dir.path, t->error, sizeof(t->error));
        log_error("stage %s failed%s%s: %s", rt->ps->name, e->n_jobs > 1 ? " for job " : "",
                  e->n_jobs > 1 ? j->name : "", t->error);
    }
    emit(e, EV_STAGE_DONE, j, s);
    if (t->state != TURN_DONE)
        job_finish(e, j, engine_stopping(e) ? 130 : 1);
    else if (++j->next > j->last)
        job_finish(e, j, j->partial ? 3 : 0);
}

static void begin_turn(struct engine *e, struct job *j, int s);

/* The stage died, hung or sent garbage: ask again (restarting it) or give up. */
static void retry_turn(struct engine *e, struct job *j, int s, const char *why)
{
    struct stage_rt *rt = &e->rt[s];
    struct turn *t = &j->turn[s];
    char desc[64];

    if (rt->remote)
        snprintf(t->error, sizeof(t->error), "%.440s (remote)", why);
    else if (proc_alive(&rt->proc))      /* hung or stopped: it is killed next */
        snprintf(t->error, sizeof(t->error), "%.400s; the process was %s and is killed", why,
                 proc_describe(&rt->proc, desc, sizeof(desc)));
    else
        snprintf(t->error, sizeof(t->error), "%.440s; process %s", why,
                 proc_describe(&rt->proc, desc, sizeof(desc)));
    log_warn("stage %s: %s", rt->ps->name, t->error);
    if (rt->rin)
        remote_inputs_close(rt->rin);
    if (engine_stopping(e) || ++t->attempt > e->o.retries) {
        if (!rt->remote && !engine_stopping(e))
            engine_stop_proc(e, rt);           /* a hung one must not keep its device memory */
        end_turn(e, j, s, false);
        return;
    }
    t->restarts++;
    if (rt->remote) {
        log_warn("asking remote stage %s again (attempt %d of %d)", rt->ps->name,
                 t->attempt + 1, e->o.retries + 1);
    } else {
        log_warn("restarting stage %s (attempt %d of %d)", rt->ps->name, t->attempt + 1,
                 e->o.retries + 1);
        engine_stop_proc(e, rt);
    }
    emit(e, EV_STAGE_RETRY, j, s);
    rt->busy = NULL;
    j->in_flight = false;
    begin_turn(e, j, s);
}

/* Send stage s's run request for job j (starting the stage first if needed). */
static void begin_turn(struct engine *e, struct job *j, int s)
{
    struct stage_rt *rt = &e->rt[s];
    struct turn *t = &j->turn[s];
    char why[WIRE_ERR_MAX];
    int64_t tot;
    int rc;

    rt->busy = j;
    j->in_flight = true;
    if (t->attempt == 0 && t->t0 == 0) {
        t->t0 = engine_now_ms();
        emit(e, EV_STAGE_START, j, s);
    }
    if (rt->remote && !rt->rin) {
        rt->rin = calloc(1, sizeof(*rt->rin));
        ASSERT(rt->rin);
    }
    if (!rt->remote && !proc_alive(&rt->proc)) {
        engine_stop_proc(e, rt);
        if (engine_start_stage(e, rt) != 0) {
            retry_turn(e, j, s, rt->error[0] ? rt->error : "the stage did not start");
            return;
        }
    } else if (rt->remote && !client_socket(&rt->cli) && engine_connect_stage(e, rt) != 0) {
        retry_turn(e, j, s, rt->error);
        return;
    }
    rc = engine_build_request(e, j, s, t->error, sizeof(t->error));
    if (rc) {
        if (rt->rin)
            remote_inputs_close(rt->rin);
        end_turn(e, j, s, false);       /* a missing artifact does not heal by retrying */
        return;
    }
    t->preloaded = rt->loaded && rt->preload_unclaimed;  /* its load counts for this turn */
    t->warm = rt->loaded && !t->preloaded;
    rt->preload_unclaimed = false;
    t->probe_free0 = 0;
    if (devmem_method(e->dm) == DEVMEM_PROBE && rt->cuda >= 0 &&
        devmem_device_free(e->dm, rt->cuda, &t->probe_free0, &tot) != 0)
        t->probe_free0 = 0;
    if (rt->proc.pid > 0)
        devmem_mark(e->dm, rt->proc.pid);
    log_info("stage %s: run%s%s (%d inputs%s%s)", rt->ps->name, e->n_jobs > 1 ? " for " : "",
             e->n_jobs > 1 ? j->name : "", e->req.n_tensors, rt->remote ? ", inline" : "",
             t->warm ? ", loaded" : t->preloaded ? ", loaded ahead" : "");
    if (client_send(&rt->cli, &e->req, why, sizeof(why)) != 0) {
        retry_turn(e, j, s, why);
        return;
    }
    t->deadline = engine_now_ms() + e->o.timeout_ms;
    rt->beat_seen = beat_read(rt->beat_fd);
}

/* A reply is waiting on stage s's socket. */
static void on_reply(struct engine *e, int s)
{
    struct stage_rt *rt = &e->rt[s];
    struct job *j = rt->busy;
    struct turn *t = &j->turn[s];
    char why[WIRE_ERR_MAX];
    int rc = client_recv(&rt->cli, &e->rep, &e->frames, why, sizeof(why));

    if (rt->rin)
        remote_inputs_close(rt->rin);
    if (rc) {
        retry_turn(e, j, s, why);
        return;
    }
    if (e->rep.has_error) {             /* the stage refused the request: do not repeat */
        snprintf(t->error, sizeof(t->error), "%s", e->rep.error);
        engine_name_user_inputs(j, t->error, sizeof(t->error));
        rt->loaded = wire_get_bool(&e->rep, "loaded", rt->loaded);
        end_turn(e, j, s, false);
        return;
    }
    if (rt->remote) {
        char path[PATH_MAX + WIRE_KEY_MAX];

        snprintf(path, sizeof(path), "%s/%s", j->dir.path, rt->ps->out);
        if (remote_write_outputs(&e->rep, path, t->error, sizeof(t->error)) != 0) {
            end_turn(e, j, s, false);   /* the same answer would come again */
            return;
        }
    }
    record_reply(e, rt, t);
    record_devmem(e, rt, t);
    end_turn(e, j, s, true);
}

// ---------------------------------------------------------------- the scheduler

/* May job index ji run stage s now, as far as earlier jobs go (FIFO per stage)? */
static bool earlier_first(const struct engine *e, int ji, int s)
{
    for (int i = 0; i < ji; i++) {
        const struct job *o = e->jobs[i];

        if ((o->state == JOB_RUNNING || o->state == JOB_QUEUED) && o->next <= s && s <= o->last)
            return false;
    }
    return true;
}

static bool any_busy(const struct engine *e)
{
    for (int i = 0; i < e->n_rt; i++)
        if (e->rt[i].busy)
            return true;
    return false;
}

static void dispatch(struct engine *e)
{
    int running = 0;

    for (int i = 0; i < e->n_jobs; i++)
        running += e->jobs[i]->state == JOB_RUNNING;
    for (int i = 0; i < e->n_jobs && !engine_stopping(e); i++) {
        struct job *j = e->jobs[i];
        int s;

        if (j->state == JOB_QUEUED && (e->o.max_active <= 0 || running < e->o.max_active)) {
            j->state = JOB_RUNNING;
            j->t_start = engine_now_ms();
            running++;
            emit(e, EV_JOB_START, j, -1);
            if (j->next > j->last) {    /* nothing to run (all kept, or none built) */
                job_finish(e, j, j->partial ? 3 : 0);
                continue;
            }
        }
        if (j->state != JOB_RUNNING || j->in_flight)
            continue;
        s = j->next;
        if (e->rt[s].busy || e->rt[s].preloading || (!e->o.overlap && any_busy(e)) ||
            !earlier_first(e, i, s) || !engine_budget_fit(e, &e->rt[s]))
            continue;
        begin_turn(e, j, s);
    }
    if (!engine_stopping(e))
        engine_preload(e);
}

/* Abandon every turn in flight (a signal came). */
static void abort_all(struct engine *e)
{
    for (int s = 0; s < e->n_rt; s++)
        if (e->rt[s].preloading) {
            client_abandon(&e->rt[s].cli);
            e->rt[s].preloading = false;
        }
    for (int s = 0; s < e->n_rt; s++)
        if (e->rt[s].busy) {
            client_abandon(&e->rt[s].cli);
            end_turn(e, e->rt[s].busy, s, false);
        }
    for (int i = 0; i < e->n_jobs; i++)
        if (e->jobs[i]->state == JOB_QUEUED || e->jobs[i]->state == JOB_RUNNING)
            job_finish(e, e->jobs[i], 130);
}

int engine_step(struct engine *e, int timeout_ms)
{
    zmq_pollitem_t items[PIPE_MAX_STAGES];
    int who[PIPE_MAX_STAGES], n = 0, left = 0;
    double now;

    if (!engine_stopping(e))
        dispatch(e);
    for (int s = 0; s < e->n_rt; s++)
        if ((e->rt[s].busy || e->rt[s].preloading) && client_socket(&e->rt[s].cli)) {
            items[n] = (zmq_pollitem_t){client_socket(&e->rt[s].cli), 0, ZMQ_POLLIN, 0};
            who[n++] = s;
        }
    if (n && zmq_poll(items, n, timeout_ms < SLICE_MS ? timeout_ms : SLICE_MS) > 0)
        for (int k = 0; k < n; k++) {
            if (!(items[k].revents & ZMQ_POLLIN))
                continue;
            if (e->rt[who[k]].busy)
                on_reply(e, who[k]);
            else if (e->rt[who[k]].preloading)
                engine_on_preload_reply(e, who[k]);
        }
    if (!n && timeout_ms > 0) {
        struct timespec ts = {0, (timeout_ms < SLICE_MS ? timeout_ms : SLICE_MS) * 1000000L};

        if (!e->n_jobs || !engine_stopping(e))
            nanosleep(&ts, NULL);
    }
    if (e->o.idle)
        e->o.idle(e->o.idle_arg);
    if (engine_stopping(e)) {
        abort_all(e);
        return 0;
    }
    now = engine_now_ms();
    for (int s = 0; s < e->n_rt; s++) {
        struct stage_rt *rt = &e->rt[s];
        struct job *j = rt->busy;
        char why[WIRE_ERR_MAX];

        if (!j && rt->preloading) {     /* a load ahead: the same clock, then given up */
            uint64_t beat = beat_read(rt->beat_fd);

            if (rt->beat_fd >= 0 && beat != rt->beat_seen) {
                rt->beat_seen = beat;
                rt->preload_deadline = now + e->o.timeout_ms;
            }
            if (now >= rt->preload_deadline || !proc_alive(&rt->proc)) {
                client_abandon(&rt->cli);
                engine_end_preload(rt, now >= rt->preload_deadline ? "no reply in time"
                            : "the process is gone");
            }
        }
        if (!j)
            continue;
        uint64_t beat = beat_read(rt->beat_fd);

        if (rt->beat_fd >= 0 && beat != rt->beat_seen) {
            rt->beat_seen = beat;                       /* a sign of life: the clock restarts */
            j->turn[s].deadline = now + e->o.timeout_ms;
        }
        if (now >= j->turn[s].deadline) {
            snprintf(why, sizeof(why), "no reply from %s%s within %.1f s", rt->endpoint,
                     rt->beat_fd >= 0 ? " and no sign of life (beat)" : "",
                     e->o.timeout_ms / 1000.0);
            client_abandon(&rt->cli);
            retry_turn(e, j, s, why);
        } else if (!rt->remote && !proc_alive(&rt->proc)) {
            snprintf(why, sizeof(why), "gave up waiting for %s", rt->endpoint);
            client_abandon(&rt->cli);
            retry_turn(e, j, s, why);
        }
    }
    for (int i = 0; i < e->n_jobs; i++)
        left += e->jobs[i]->state == JOB_QUEUED || e->jobs[i]->state == JOB_RUNNING;
    return left;
}

void engine_stop_all(struct engine *e)
{
    for (int i = 0; i < e->n_rt; i++)
        engine_stop_stage(e, &e->rt[i]);
}

void engine_run(struct engine *e)
{
    while (engine_step(e, SLICE_MS) > 0)
        ;
}

bool engine_dev_peak(struct engine *e, int dev, int64_t *peak, bool *per_process)
{
    int64_t now;

    if (dev < 0 || dev >= DEVMEM_MAX_DEVICES || !e->dev[dev].used)
        return false;
    if (devmem_ours(e->dm, dev, &now, peak, per_process))
        return true;
    *per_process = false;
    *peak = e->dev[dev].probe_peak;
    return devmem_method(e->dm) == DEVMEM_PROBE;
}
