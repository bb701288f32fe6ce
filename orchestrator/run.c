/*
 * run.c - `sam3d run` (the whole pipeline on one image and mask) and `sam3d
 * stage` (one stage on an existing job directory), on the engine (engine.h).
 *
 * A run: read the pipeline, create the job directory, copy the image and mask
 * into it, refuse a VRAM budget below a stage's need, start every stage that
 * is built (the prefix of the pipeline up to the first stage not built yet)
 * on ipc://<job>/<stage>.sock, check each answers `status`, then run the job
 * through them. Artifacts are copied to --out/artifacts/ as each stage
 * completes, and --out/report.json records every stage. On every exit path
 * (success, error, SIGINT/SIGTERM, crashed stage) all stage processes are
 * stopped and reaped and the job directory is removed unless --keep-job.
 *
 * Exit status: 0 complete, 1 failed, 2 usage, 3 the built prefix ran but
 * stages are still to come (listed), 130 interrupted.
 * Test: tests/test_orchestrator.sh.
 */
#include "budget.h"
#include "commands.h"
#include "engine.h"
#include "export.h"
#include "err.h"
#include "image.h"
#include "jobdir.h"
#include "log.h"
#include "preset.h"
#include "progress.h"
#include "report.h"

#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXIT_PARTIAL     3
#define EXIT_INTERRUPTED 130

/* What the command line of run / stage gives. */
struct run_args {
    struct engine_opts o;
    const char        *out_dir;
    bool               keep_job;
    enum progress_mode progress;                 /* --quiet, --json; else by the terminal */
    int                n_param;                  /* sam3d stage --param KEY=VALUE */
    const char        *param[JOB_MAX_SET];
    struct export_opts export;                   /* sam3d run: the export step at its end */
    const char        *preset;                   /* sam3d run --preset NAME (preset.h) */
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    interrupted = sig;
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
        "  --preset NAME        default, or fast: both flows in the official shortcut\n"
        "                       (distillation) mode with 4 steps each, no CFG\n"
        "  --keep-job           keep the job directory (its path is printed)\n"
        "  --stages-dir DIR     where the sam3d-* stage executables are (default: next to sam3d)\n"
        "  --pipeline FILE      pipeline definition (default pipelines/sam3d_objects.pipe)\n"
        "  --timeout S          seconds to wait for one reply (default 600)\n"
        "  --retries N          restarts of a stage that dies or hangs (default 1)\n"
        "  --vram-budget SIZE   device memory the stages may hold at once on each GPU, e.g.\n"
        "                       8G (default: the free memory at start); stages that fit stay\n"
        "                       loaded, the others are unloaded before the next one loads\n"
        "  -q, --quiet          warnings and errors only\n"
        "  --json               progress as JSON events on stdout, one a line\n"
        "  --max-pixels N       largest image accepted, e.g. 150M (default 80M; the depth\n"
        "                       stage needs 13 bytes of host memory a pixel)\n"
        "  --outputs LIST       files written at the end from the artifacts (`sam3d export\n"
        "                       --help`): splat,mesh,pose,preview (default), mesh_ply\n"
        "  --placed             splat.ply and mesh.glb in the camera frame (pose applied)\n"
        "exit status: 0 complete, 1 failed, 2 usage, 3 stages still to come, 130 interrupted\n"
        "job directories go under $S3D_JOB_ROOT (default /dev/shm)\n");
}

static void usage_stage(FILE *f)
{
    fprintf(f,
        "usage: sam3d stage NAME --job DIR [--weights DIR] [--moge FILE] [--out DIR]\n"
        "                   [--param KEY=VALUE] [--device D] [--precision P]\n"
        "                   [--stages-dir DIR] [--pipeline FILE] [--timeout S] [--retries N]\n"
        "                   [--stage-device NAME=D] [--endpoint NAME=URL] [--vram-budget SIZE]\n"
        "                   [--max-pixels N]\n"
        "Re-runs stage NAME of the pipeline on the artifacts in an existing job directory\n"
        "(one kept with `sam3d run --keep-job`); its artifact there is replaced.\n"
        "--param KEY=VALUE overrides one of its request params (repeatable).\n");
}

/* Options common to run and stage. Returns 1 when argv[*i] was consumed, 0 when
 * unknown, -1 on a bad value (printed). */
static int common_opt(struct run_args *r, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    char *end;

    if (!strcmp(a, "--weights") && v)         r->o.weights_dir = v;
    else if (!strcmp(a, "--moge") && v)       r->o.moge = v;
    else if (!strcmp(a, "--out") && v)        r->out_dir = v;
    else if (!strcmp(a, "--device") && v)     r->o.device = v;
    else if (!strcmp(a, "--precision") && v)  r->o.precision = v;
    else if (!strcmp(a, "--pipeline") && v)   r->o.pipeline = v;
    else if (!strcmp(a, "--stages-dir") && v) r->o.stages_dir = v;
    else if (!strcmp(a, "--timeout") && v) {
        double s = strtod(v, &end);

        if (*end || s <= 0 || s > 86400) {
            fprintf(stderr, "error: --timeout wants seconds in (0, 86400], got '%s'\n", v);
            return -1;
        }
        r->o.timeout_ms = (int)(s * 1000);
    } else if (!strcmp(a, "--retries") && v) {
        long n = strtol(v, &end, 10);

        if (*end || n < 0 || n > 100) {
            fprintf(stderr, "error: --retries wants 0..100, got '%s'\n", v);
            return -1;
        }
        r->o.retries = (int)n;
    } else if ((!strcmp(a, "--endpoint") || !strcmp(a, "--stage-device")) && v) {
        if (r->o.n_over == 2 * PIPE_MAX_STAGES || !strchr(v, '=') || v[0] == '=') {
            fprintf(stderr, "error: %s wants NAME=VALUE (at most %d), got '%s'\n", a,
                    2 * PIPE_MAX_STAGES, v);
            return -1;
        }
        r->o.over_kind[r->o.n_over] = a;
        r->o.over_arg[r->o.n_over++] = v;
    } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q") || !strcmp(a, "--json")) {
        r->progress = !strcmp(a, "--json") ? PROGRESS_JSON : PROGRESS_QUIET;
        return 1;                           /* no value */
    } else if (!strcmp(a, "--max-pixels") && v) {
        int64_t px;

        if (!image_parse_pixels(v, &px)) {
            fprintf(stderr, "error: --max-pixels wants a pixel count like 150M (at most %lld), "
                    "got '%s'\n", IMAGE_MAX_PIXELS_CAP, v);
            return -1;
        }
        setenv("S3D_MAX_PIXELS", v, 1);          /* for the stages it starts, too */
    } else if (!strcmp(a, "--vram-budget") && v) {
        if (!budget_parse_size(v, &r->o.vram_budget)) {
            fprintf(stderr, "error: --vram-budget wants a size like 10G or 512M, got '%s'\n", v);
            return -1;
        }
    } else {
        return 0;
    }
    (*i)++;
    return 1;
}

static void args_init(struct run_args *r)
{
    memset(r, 0, sizeof(*r));
    r->o.timeout_ms = 600 * 1000;
    r->o.retries = 1;
    r->o.vram_budget = -1;
    r->o.interrupted = &interrupted;
    r->export = (struct export_opts){.what = EXPORT_DEFAULT, .allow_empty = true};
}

// ---------------------------------------------------------------- helpers

static void log_missing(const struct engine *e)
{
    char list[1024] = "";

    for (int i = e->first_missing; i < e->n_rt; i++) {
        size_t n = strlen(list);

        snprintf(list + n, sizeof(list) - n, "%s%s (%s%s)", n ? ", " : "", e->rt[i].ps->name,
                 e->rt[i].ps->exe, e->rt[i].built ? ", needs the stages before it" : "");
    }
    log_warn("stages still to come: %s", list);
    fprintf(stderr, "sam3d: the pipeline stopped after the stages that are built; still to "
            "come: %s\n", list);
}

/* Copy the user's --image/--mask into the job as name (jobdir_copy_in: regular
 * files only, O_EXCL); dst receives the copy's path. */
static int copy_input(struct job *j, const char *src, const char *name, char *dst, size_t len,
                      const char *what)
{
    snprintf(dst, len, "%s/%s", j->dir.path, name);
    return jobdir_copy_in(&j->dir, src, name, IMAGE_MAX_FILE_BYTES, what);
}

/* A stage that could not start or be prepared fails the job there. */
static void fail_stage_of(struct engine *e, struct job *j)
{
    for (int i = 0; i < e->n_rt; i++)
        if (e->rt[i].error[0]) {
            j->turn[i].state = TURN_FAILED;
            snprintf(j->turn[i].error, sizeof(j->turn[i].error), "%s", e->rt[i].error);
            return;
        }
}

/* The export step (export.h) on the artifacts copied to OUT/artifacts/: the
 * files of a->export.what whose stages ran (a partial run writes what it can). */
static int run_export(const struct run_args *a)
{
    char art[PATH_MAX + 16];

    snprintf(art, sizeof(art), "%s/artifacts", a->out_dir);
    return export_outputs(art, a->out_dir, &a->export);
}

// ---------------------------------------------------------------- commands

int cmd_run(int argc, char **argv)
{
    const char *image = NULL, *mask = NULL;
    struct run_args a;
    struct engine *e = NULL;
    struct progress *prog = NULL;
    struct job *j = calloc(1, sizeof(*j));
    char log_path[PATH_MAX + 16];
    bool have_job = false;
    int code = 1, rc;

    ASSERT(j);
    args_init(&a);
    for (int i = 1; i < argc; i++) {
        int c = common_opt(&a, argc, argv, &i);

        if (c < 0)
            goto out_usage;
        if (c > 0)
            continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage_run(stdout);
            code = 0;
            goto out_free;
        } else if (!strcmp(argv[i], "--keep-job")) {
            a.keep_job = true;
        } else if (!strcmp(argv[i], "--image") && i + 1 < argc) {
            image = argv[++i];
        } else if (!strcmp(argv[i], "--mask") && i + 1 < argc) {
            mask = argv[++i];
        } else if (!strcmp(argv[i], "--outputs") && i + 1 < argc) {
            if (!export_parse_outputs(argv[++i], &a.export.what))
                goto out_usage;
        } else if (!strcmp(argv[i], "--placed")) {
            a.export.placed = true;
        } else if (!strcmp(argv[i], "--preset") && i + 1 < argc) {
            a.preset = argv[++i];
            if (!preset_known(a.preset)) {
                fprintf(stderr, "error: --preset wants one of %s, got '%s'\n", preset_names(),
                        a.preset);
                goto out_usage;
            }
        } else {
            fprintf(stderr, "error: unknown option or missing value: %s\n", argv[i]);
            goto out_usage;
        }
    }
    if (!image || !mask || !a.out_dir) {
        fprintf(stderr, "error: --image, --mask and --out are required\n");
        goto out_usage;
    }
    install_signals();
    if (mkdir(a.out_dir, 0755) != 0 && errno != EEXIST) {
        log_error("--out '%s': %s", a.out_dir, strerror(errno));
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
    snprintf(log_path, sizeof(log_path), "%s/sam3d.log", a.out_dir);
    prog = progress_open(a.progress, log_path);
    a.o.event = progress_event;
    a.o.event_arg = prog;
    a.o.idle = progress_tick;
    a.o.idle_arg = prog;
    job_init(j, "job", 0, PIPE_MAX_STAGES - 1);
    if (jobdir_create(&j->dir, NULL) != 0)
        goto out_free;
    have_job = true;
    if (a.keep_job && jobdir_keep(&j->dir) != 0)
        goto out_free;
    j->user_image = image;
    j->user_mask = mask;
    snprintf(j->out_dir, sizeof(j->out_dir), "%s", a.out_dir);
    a.o.sock_dir = j->dir.path;
    rc = copy_input(j, image, "input_image", j->image, sizeof(j->image), "--image");
    if (!rc)
        rc = copy_input(j, mask, "input_mask", j->mask, sizeof(j->mask), "--mask");
    if (engine_open(&e, &a.o) != 0 && !rc)
        rc = S3D_EINVAL;
    if (!e)
        goto out_free;
    if (!rc && a.preset && preset_apply(a.preset, e, j) != 0)
        rc = S3D_EINVAL;
    log_info("job %s, pipeline %s, stages from %s", j->dir.path, e->pipe_path, e->stages_dir);
    engine_submit(e, j);
    if (rc || engine_check(e, j->first, j->last) != 0 || engine_start(e, j->first, j->last) != 0) {
        fail_stage_of(e, j);
        j->code = interrupted ? EXIT_INTERRUPTED : 1;
    } else {
        engine_run(e);
    }
    engine_stop_all(e);
    code = interrupted ? EXIT_INTERRUPTED : j->code;
    if (interrupted)
        log_error("interrupted (signal %d): stages stopped%s", (int)interrupted,
                  a.keep_job ? "" : ", job directory removed");
    if (code == EXIT_PARTIAL)
        log_missing(e);
    if ((code == 0 || code == EXIT_PARTIAL) && run_export(&a) != 0)
        code = 1;
    if (report_write(e, j, report_status(code)) != 0 && code == 0)
        code = 1;
    if (code == 0 || code == EXIT_PARTIAL)
        log_info("outputs in %s (report.json, artifacts/)", a.out_dir);
    goto out_free;
out_usage:
    usage_run(stderr);
    code = 2;
out_free:
    engine_close(e);
    progress_close(prog);
    if (have_job) {
        if (a.keep_job)
            fprintf(stderr, "sam3d: job directory kept: %s\n", j->dir.path);
        else
            jobdir_remove(j->dir.path);
    }
    jobdir_close(&j->dir);
    free(j);
    return code;
}

int cmd_stage(int argc, char **argv)
{
    const char *name = NULL, *job = NULL;
    struct run_args a;
    struct engine *e = NULL;
    struct job *j = calloc(1, sizeof(*j));
    char root[PATH_MAX];
    int code = 1, idx;

    ASSERT(j);
    args_init(&a);
    for (int i = 1; i < argc; i++) {
        int c = common_opt(&a, argc, argv, &i);

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
        } else if (!strcmp(argv[i], "--param") && i + 1 < argc) {
            const char *kv = argv[++i];

            if (!strchr(kv, '=') || kv[0] == '=' || a.n_param == JOB_MAX_SET) {
                fprintf(stderr, "error: --param wants KEY=VALUE (at most %d), got '%s'\n",
                        JOB_MAX_SET, kv);
                goto out_usage;
            }
            a.param[a.n_param++] = kv;
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
    if (!realpath(job, j->dir.path) || !jobdir_is_job(j->dir.path)) {
        log_error("--job '%s' is not a job directory (an existing s3d-* directory). HINT: "
                  "keep one with `sam3d run --keep-job`", job);
        goto out_free;
    }
    /* the stage accepts job directories directly under its job root */
    snprintf(root, sizeof(root), "%s", j->dir.path);
    setenv("S3D_JOB_ROOT", dirname(root), 1);
    a.o.sock_dir = j->dir.path;
    a.o.only = name;
    if (engine_open(&e, &a.o) != 0)
        goto out_free;
    idx = (int)(pipeline_find(&e->pipe, name) - e->pipe.stages);
    if (!e->rt[idx].built) {
        log_error("stage '%s' is not built yet ('%s' is missing)", name, e->rt[idx].exe);
        code = EXIT_PARTIAL;
        goto out_free;
    }
    {
        struct jobdir keep = j->dir;

        job_init(j, name, idx, idx);
        j->dir = keep;
    }
    snprintf(j->image, sizeof(j->image), "%s/input_image", j->dir.path);
    snprintf(j->mask, sizeof(j->mask), "%s/input_mask", j->dir.path);
    for (int i = 0; i < a.n_param; i++) {
        char key[WIRE_KEY_MAX];
        const char *eq = strchr(a.param[i], '=');

        snprintf(key, sizeof(key), "%.*s", (int)(eq - a.param[i]), a.param[i]);
        if (job_set_param(j, idx, key, eq + 1) != 0)
            goto out_free;
    }
    if (a.out_dir) {
        if (mkdir(a.out_dir, 0755) != 0 && errno != EEXIST) {
            log_error("--out '%s': %s", a.out_dir, strerror(errno));
            goto out_free;
        }
        snprintf(j->out_dir, sizeof(j->out_dir), "%s", a.out_dir);
    }
    engine_submit(e, j);
    if (engine_check(e, idx, idx) != 0 || engine_start(e, idx, idx) != 0) {
        fail_stage_of(e, j);
        j->code = 1;
    } else {
        engine_run(e);
    }
    engine_stop_all(e);
    code = interrupted ? EXIT_INTERRUPTED : j->code;
    if (report_write(e, j, code ? report_status(code) : "complete") != 0 && !code)
        code = 1;
    goto out_free;
out_usage:
    usage_stage(stderr);
    code = 2;
out_free:
    engine_close(e);
    free(j);
    return code;
}
