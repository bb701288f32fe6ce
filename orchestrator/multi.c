/*
 * multi.c - many jobs through one engine's warm stages. Contract: multi.h.
 * Test: tests/test_batch.sh (batch and many objects of one image).
 */
#include "multi.h"
#include "cli.h"

#include "err.h"
#include "image.h"
#include "jobdir.h"
#include "log.h"
#include "preset.h"
#include "report.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHARED_DEPTH "input_depth.safetensors"   /* another object's depth artifact */

/* the depth outputs a later object's depth request takes (stages/depth: reuse_points) */
static const char *const depth_keys[] = {"points", "valid", "intrinsics", "focal", "shift"};
#define N_DEPTH_KEYS ((int)(sizeof(depth_keys) / sizeof(depth_keys[0])))

struct mrun {
    struct run_args   *a;
    struct engine     *e;
    struct progress   *prog;
    struct multi_item *items;
    int                n, n_submitted, n_finished;
    bool               same_image;
    const char        *what;
    struct job       **jobs;            /* per item; NULL: not submitted or could not be */
    int               *code;            /* per item: exit status of its job */
    double            *wall_ms, *export_ms;
    int                depth;           /* index of the stage "depth", -1: none */
    char               shared[PATH_MAX + WIRE_KEY_MAX + 8];   /* a finished depth artifact, "" none yet */
};

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void multi_name(struct multi_item *items, int k, const char *path, bool with_index)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char stem[48];
    size_t n = 0;

    for (; base[n] && base[n] != '.' && n + 1 < sizeof(stem); n++)
        stem[n] = (char)(((base[n] >= 'a' && base[n] <= 'z') || (base[n] >= 'A' && base[n] <= 'Z') ||
                          (base[n] >= '0' && base[n] <= '9') || base[n] == '-' || base[n] == '_')
                         ? base[n] : '_');
    stem[n] = 0;
    if (with_index || !n)
        snprintf(items[k].name, sizeof(items[k].name), "%03d_%s", k + 1, stem);
    else
        snprintf(items[k].name, sizeof(items[k].name), "%s", stem);
    for (int i = 0; i < k; i++)         /* the same stem twice: number this one */
        if (!strcmp(items[i].name, items[k].name)) {
            snprintf(items[k].name, sizeof(items[k].name), "%03d_%s", k + 1, stem);
            break;
        }
}

/* Give job j the shared depth artifact as extra inputs of its depth stage. */
static void take_shared_depth(struct mrun *m, struct job *j)
{
    char dst[PATH_MAX + 64];

    if (!m->shared[0] || m->depth < 0 || j->next != m->depth || j->in_flight)
        return;
    snprintf(dst, sizeof(dst), "%s/%s", j->dir.path, SHARED_DEPTH);
    if (link(m->shared, dst) != 0 && report_copy_file(m->shared, dst) != 0) {
        log_warn("%s: cannot share the depth artifact (%s); MoGe runs again for it", j->name,
                 strerror(errno));
        return;
    }
    for (int k = 0; k < N_DEPTH_KEYS && j->n_extra < JOB_MAX_EXTRA; k++) {
        struct job_extra *x = &j->extra[j->n_extra++];

        x->stage = m->depth;
        snprintf(x->file, sizeof(x->file), "%s", SHARED_DEPTH);
        snprintf(x->key, sizeof(x->key), "%s", depth_keys[k]);
    }
    log_info("%s: depth reuses the point map of this image (MoGe runs once)", j->name);
}

/* The first depth artifact made with MoGe becomes the one the others reuse. */
static void share_depth(struct mrun *m, struct job *j)
{
    if (m->shared[0] || j->n_extra)
        return;
    snprintf(m->shared, sizeof(m->shared), "%s/%s", j->dir.path, m->e->rt[m->depth].ps->out);
    for (int i = 0; i < m->n_submitted; i++)
        if (m->jobs[i] && m->jobs[i]->state != JOB_DONE && m->jobs[i]->state != JOB_FAILED)
            take_shared_depth(m, m->jobs[i]);
}

/* Job k ended: its files (the export step), its report, its directory. */
static void finish_job(struct mrun *m, struct job *j)
{
    int k = (int)(intptr_t)j->user;
    int code = j->code;

    if (code == 0 || code == 3) {
        struct export_opts xo = m->a->export;
        char art[PATH_MAX + 16];
        double t0 = now_ms();

        xo.early = &j->early;
        snprintf(art, sizeof(art), "%s/artifacts", j->out_dir);
        if (export_outputs(art, j->out_dir, &xo) != 0)
            code = 1;
        m->export_ms[k] = now_ms() - t0;
    }
    if (report_write(m->e, j, report_status(code)) != 0 && code == 0)
        code = 1;
    export_early_discard(&j->early);
    m->code[k] = code;
    m->wall_ms[k] = j->wall_ms + m->export_ms[k];
    m->n_finished++;
    progress_say(m->prog, "sam3d: %s %d of %d, %s: %s in %.1f s -> %s", m->what, k + 1, m->n,
                 m->items[k].name, report_status(code), m->wall_ms[k] / 1000, j->out_dir);
    if (code == 1 && j->turn[j->first].state == TURN_DONE && jobdir_keep(&j->dir) == 0) {
        progress_say(m->prog, "sam3d: %s failed; its job directory is kept for `sam3d run "
                     "--job %s --out %s`", m->items[k].name, j->dir.path, j->out_dir);
    } else if (!m->a->keep_job) {
        /* the shared depth artifact is a link: removing its first job keeps it */
        jobdir_remove(j->dir.path);
    }
    jobdir_close(&j->dir);
}

static void on_event(void *arg, const struct engine_event *ev)
{
    struct mrun *m = arg;

    progress_event(m->prog, ev);
    if (ev->kind == EV_STAGE_DONE && m->same_image && ev->stage == m->depth &&
        ev->job->turn[ev->stage].state == TURN_DONE)
        share_depth(m, ev->job);
    else if (ev->kind == EV_JOB_DONE)
        finish_job(m, ev->job);
}

/* Create and submit item k's job. Its failure to start (an input that is not
 * a file, no room for the job) fails that item alone. */
static void submit(struct mrun *m, int k)
{
    const struct multi_item *it = &m->items[k];
    struct job *j = calloc(1, sizeof(*j));
    bool ok = false;

    ASSERT(j);
    job_init(j, it->name, 0, PIPE_MAX_STAGES - 1);
    j->early.want = (m->a->export.what & EXPORT_PREVIEW) != 0;
    j->user = (void *)(intptr_t)k;
    j->user_image = it->image;
    j->user_mask = it->mask;
    snprintf(j->out_dir, sizeof(j->out_dir), "%s/%s", m->a->out_dir, it->name);
    m->code[k] = 1;
    if (jobdir_create(&j->dir, NULL) != 0) {
        free(j);
        m->n_finished++;
        return;
    }
    if (m->a->keep_job)
        (void)jobdir_keep(&j->dir);
    snprintf(j->image, sizeof(j->image), "%s/input_image", j->dir.path);
    snprintf(j->mask, sizeof(j->mask), "%s/input_mask", j->dir.path);
    if (mkdir(j->out_dir, 0755) != 0 && errno != EEXIST)
        log_error("%s: cannot create '%s': %s", it->name, j->out_dir, strerror(errno));
    else if (!jobdir_copy_in(&j->dir, it->image, "input_image", IMAGE_MAX_FILE_BYTES, "image") &&
             !jobdir_copy_in(&j->dir, it->mask, "input_mask", IMAGE_MAX_FILE_BYTES, "mask") &&
             !cli_apply(m->a, m->e, j, -1))
        ok = true;
    if (!ok) {                          /* each failure above logged its line */
        jobdir_remove(j->dir.path);
        jobdir_close(&j->dir);
        free(j);
        m->n_finished++;
        return;
    }
    m->jobs[k] = j;
    engine_submit(m->e, j);
    if (m->same_image)
        take_shared_depth(m, j);
}

/* OUT/summary.json (docs/formats.md). */
static int write_summary(const struct mrun *m, double wall_ms, double start_ms, int n_ok)
{
    char path[PATH_MAX + 16], tmp[PATH_MAX + 32];
    FILE *f;

    snprintf(path, sizeof(path), "%s/summary.json", m->a->out_dir);
    if (!(f = report_open_tmp(path, tmp, sizeof(tmp))))
        return S3D_EIO;
    fprintf(f, "{\n  \"what\": \"%s\",\n  \"jobs\": %d,\n  \"done\": %d,\n  \"failed\": %d,\n"
            "  \"start_ms\": %.1f,\n  \"wall_ms\": %.1f,\n  \"objects_per_minute\": %.3f,\n"
            "  \"overlap\": %s,\n  \"stages\": [", m->what, m->n, n_ok, m->n - n_ok, start_ms,
            wall_ms, wall_ms > 0 ? n_ok * 60000.0 / wall_ms : 0.0,
            m->e->o.overlap ? "true" : "false");
    for (int s = 0; s < m->e->n_rt; s++) {
        fprintf(f, "%s\n    {\"name\": ", s ? "," : "");
        report_json_str(f, m->e->rt[s].ps->name);
        fprintf(f, ", \"built\": %s, \"starts\": %d, \"loads\": %d}",
                m->e->rt[s].built ? "true" : "false", m->e->rt[s].starts, m->e->rt[s].loads);
    }
    fprintf(f, "\n  ],\n  \"items\": [");
    for (int k = 0; k < m->n; k++) {
        fprintf(f, "%s\n    {\"name\": ", k ? "," : "");
        report_json_str(f, m->items[k].name);
        fprintf(f, ", \"image\": ");
        report_json_str(f, m->items[k].image);
        fprintf(f, ", \"mask\": ");
        report_json_str(f, m->items[k].mask);
        fprintf(f, ", \"status\": \"%s\", \"wall_ms\": %.1f, \"export_ms\": %.1f}",
                m->jobs[k] ? report_status(m->code[k]) : "not run", m->wall_ms[k],
                m->export_ms[k]);
    }
    fprintf(f, "\n  ]\n}\n");
    return report_commit(f, tmp, path);
}

/* OUT/scene.glb from every finished object (export_scene). */
static void write_scene(const struct mrun *m)
{
    const char *dirs[256];
    char *buf = calloc((size_t)m->n, PATH_MAX + 16);
    int n = 0;

    ASSERT(buf);
    for (int k = 0; k < m->n && n < 256; k++)
        if (m->jobs[k] && (m->code[k] == 0 || m->code[k] == 3)) {
            char *d = buf + (size_t)k * (PATH_MAX + 16);

            snprintf(d, PATH_MAX + 16, "%s/artifacts", m->jobs[k]->out_dir);
            dirs[n++] = d;
        }
    if (n)
        (void)export_scene(dirs, n, m->a->out_dir);
    free(buf);
}

int multi_run(struct run_args *a, struct multi_item *items, int n, bool same_image,
              const char *what)
{
    struct mrun m = {.a = a, .items = items, .n = n, .same_image = same_image, .what = what,
                     .depth = -1};
    struct jobdir socks = {0};
    char log_path[PATH_MAX + 16];
    double t0 = now_ms(), start_ms = 0;
    int code = 1, n_ok = 0, n_partial = 0;

    m.jobs = calloc((size_t)n, sizeof(*m.jobs));
    m.code = calloc((size_t)n, sizeof(*m.code));
    m.wall_ms = calloc((size_t)n, sizeof(double));
    m.export_ms = calloc((size_t)n, sizeof(double));
    ASSERT(m.jobs && m.code && m.wall_ms && m.export_ms);
    if (mkdir(a->out_dir, 0755) != 0 && errno != EEXIST) {
        log_error("--out '%s': %s", a->out_dir, strerror(errno));
        goto out_free;
    }
    snprintf(log_path, sizeof(log_path), "%s/sam3d.log", a->out_dir);
    m.prog = progress_open(a->progress, log_path);
    if (jobdir_create(&socks, NULL) != 0)  /* the stages' sockets, for every job */
        goto out_free;
    a->o.sock_dir = socks.path;
    a->o.overlap = true;
    a->o.event = on_event;
    a->o.event_arg = &m;
    a->o.idle = progress_tick;
    a->o.idle_arg = m.prog;
    if (engine_open(&m.e, &a->o) != 0)
        goto out_close;
    {
        const struct pipe_stage *d = pipeline_find(&m.e->pipe, "depth");

        m.depth = d ? (int)(d - m.e->pipe.stages) : -1;
    }
    log_info("%s: %d job%s, pipeline %s, stages from %s", what, n, n == 1 ? "" : "s",
             m.e->pipe_path, m.e->stages_dir);
    if (engine_check(m.e, 0, m.e->n_rt - 1) != 0 || engine_start(m.e, 0, m.e->n_rt - 1) != 0)
        goto out_close;
    start_ms = now_ms() - t0;
    for (;;) {
        int left;

        while (!run_interrupted && m.n_submitted < n &&
               m.n_submitted - m.n_finished < MULTI_WINDOW)
            submit(&m, m.n_submitted++);
        left = engine_step(m.e, 100);
        for (int i = 0; i < m.n_submitted; i++)      /* forget the finished ones */
            if (m.jobs[i] && (m.jobs[i]->state == JOB_DONE || m.jobs[i]->state == JOB_FAILED))
                engine_forget(m.e, m.jobs[i]);
        if (run_interrupted || (!left && m.n_submitted == n && m.n_finished == n))
            break;
    }
    engine_stop_all(m.e);
    for (int k = 0; k < n; k++) {
        n_ok += m.jobs[k] && (m.code[k] == 0 || m.code[k] == 3);
        n_partial += m.jobs[k] && m.code[k] == 3;
    }
    if (same_image && !run_interrupted)
        write_scene(&m);
    {
        double wall = now_ms() - t0;
        char line[1024];
        size_t len = 0;

        for (int s = 0; s < m.e->n_rt && len < sizeof(line); s++)
            if (m.e->rt[s].starts)
                len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s %d/%d",
                                        len ? ", " : "", m.e->rt[s].ps->name,
                                        m.e->rt[s].starts, m.e->rt[s].loads);
        progress_say(m.prog, "sam3d: %s: %d of %d done in %.1f s (%.2f objects per minute; "
                     "stage processes started once, %.1f s); stage starts/loads: %s", what,
                     n_ok, n, wall / 1000, wall > 0 ? n_ok * 60000.0 / wall : 0.0,
                     start_ms / 1000, line);
        code = write_summary(&m, wall, start_ms, n_ok) != 0 ? 1 : 0;
    }
    if (run_interrupted)
        code = 130;
    else if (!code)
        code = n_ok < n ? 1 : n_partial ? 3 : 0;
out_close:
    engine_close(m.e);
    jobdir_remove(socks.path);
    jobdir_close(&socks);
out_free:
    for (int k = 0; k < n; k++)
        free(m.jobs[k]);
    progress_close(m.prog);
    free(m.jobs);
    free(m.code);
    free(m.wall_ms);
    free(m.export_ms);
    return code;
}
