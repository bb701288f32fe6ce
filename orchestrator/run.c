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
#include "jobspace.h"
#include "log.h"
#include "preset.h"
#include "progress.h"
#include "report.h"
#include "cli.h"
#include "runopts.h"
#include "multi.h"
#include "serve.h"

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXIT_PARTIAL     3
#define EXIT_INTERRUPTED 130
#define RUN_MAX_OBJECTS  256              /* --mask A --mask B ... */

volatile sig_atomic_t run_interrupted;

static void on_signal(int sig)
{
    run_interrupted = sig;
}

void run_install_signals(void)
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
        "       sam3d run --job JOBDIR --weights DIR --out DIR [options]   (resume)\n"
        "  --mask MASK          repeatable, or a folder of mask PNGs: many objects of one\n"
        "                       image: depth runs once, each object the rest through the\n"
        "                       same warm stages; OUT/<mask name>/ per object, OUT/scene.glb\n"
        "                       (every object's mesh placed by its pose), OUT/summary.json\n"
        "  --server ADDR        submit the job to `sam3d serve --listen ADDR` (warm stages)\n"
        "                       and wait for it; OUT appears whole when the job ends\n"
        "  --job JOBDIR         continue a kept job (a failed run keeps its job directory\n"
        "                       and prints its path) from its last complete artifact\n"
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
        CLI_SETTINGS_HELP
        "  --keep-job           keep the job directory (its path is printed); a failed run\n"
        "                       that completed a stage keeps it anyway, for --job\n"
        "  --stages-dir DIR     where the sam3d-* stage executables are (default: next to sam3d)\n"
        "  --pipeline FILE      pipeline definition (default pipelines/sam3d_objects.pipe)\n"
        "  --timeout S          seconds a busy stage may go without a sign of life (its\n"
        "                       beats; a stage served elsewhere: its reply) (default 600)\n"
        "  --retries N          restarts of a stage that dies or hangs (default 1)\n"
        "  --vram-budget SIZE   device memory the stages may hold at once on each GPU, e.g.\n"
        "                       8G (default: the free memory at start); stages that fit stay\n"
        "                       loaded, the others are unloaded before the next one loads\n"
        "  -q, --quiet          warnings and errors only\n"
        "  -v, --verbose        debug log lines, the stages' too (as S3D_LOG=debug)\n"
        "  --json               progress as JSON events on stdout, one a line\n"
        "  -V, --version        print the version\n"
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

int run_common_opt(struct run_args *r, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    char *end;

    if (!strcmp(a, "--verbose")) {
        log_set_level(LOG_DEBUG);
        setenv("S3D_LOG", "debug", 1);          /* the stages it starts, too */
        return 1;                               /* no value */
    }
    if (!strcmp(a, "--device") && v && !pipeline_device_ok(v)) {
        fprintf(stderr, "error: --device wants cuda:N, cuda or cpu, got '%s'\n", v);
        return -1;
    }
    if (!strcmp(a, "--precision") && v && strcmp(v, "fp16") && strcmp(v, "fp32")) {
        fprintf(stderr, "error: --precision wants fp16 or fp32, got '%s'\n", v);
        return -1;
    }
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
        if (cli_add_override(r, a, v) < 0)
            return -1;
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

int run_output_opt(struct run_args *r, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;

    int c = cli_setting_opt(r, argc, argv, i);

    if (c)
        return c;
    if (!strcmp(a, "--placed")) {
        r->export.placed = true;
        return 1;
    }
    if (!strcmp(a, "--outputs") && v) {
        if (!export_parse_outputs(v, &r->export.what))
            return -1;
    } else if (!strcmp(a, "--preset") && v) {
        if (!preset_known(v)) {
            fprintf(stderr, "error: --preset wants one of %s, got '%s'\n", preset_names(), v);
            return -1;
        }
        r->preset = v;
    } else {
        return 0;
    }
    (*i)++;
    return 1;
}

int run_opt(struct run_args *r, bool export_step, int argc, char **argv, int *i)
{
    int c = run_common_opt(r, argc, argv, i);

    return c || !export_step ? c : run_output_opt(r, argc, argv, i);
}

int run_parse(struct run_args *r, int argc, char **argv, const struct run_cmd *c)
{
    run_args_init(r);
    for (int i = 1; i < argc; i++) {
        int t = run_opt(r, c->export_step, argc, argv, &i);

        if (t > 0)
            continue;
        if (!t && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) {
            c->usage(stdout);
            return 0;
        }
        if (!t && c->version && !strcmp(argv[i], "--version")) {
            cli_print_version(c->version);
            return 0;
        }
        if (!t && !(t = c->own(c->user, r, argc, argv, &i))) {
            fprintf(stderr, "error: unknown option or missing value: %s\n", argv[i]);
            t = RUN_PARSE_USAGE;
        }
        if (t == RUN_PARSE_FAIL)
            return 1;
        if (t < 0) {
            c->usage(stderr);
            return 2;
        }
    }
    return RUN_PARSED;
}

void run_args_init(struct run_args *r)
{
    memset(r, 0, sizeof(*r));
    r->o.timeout_ms = 600 * 1000;
    r->o.retries = 1;
    r->o.vram_budget = -1;
    r->o.interrupted = &run_interrupted;
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

/* Resume: take over the kept job directory dir into j (its inputs are the
 * job's own input_image / input_mask); its stages accept it under its root. */
static int adopt_job(struct job *j, const char *dir)
{
    char root[PATH_MAX];

    if (jobdir_adopt(&j->dir, dir) != 0)
        return S3D_EINVAL;
    snprintf(root, sizeof(root), "%s", j->dir.path);
    setenv("S3D_JOB_ROOT", dirname(root), 1);
    snprintf(j->image, sizeof(j->image), "%s/input_image", j->dir.path);
    snprintf(j->mask, sizeof(j->mask), "%s/input_mask", j->dir.path);
    log_info("job %s (an existing one, taken over)", j->dir.path);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --mask PATH: one mask file, or a folder: each of its *.png files in name
 * order. Appended to masks[*n]. 0, or 1 after an error line. */
static int add_masks(const char *path, char masks[][PATH_MAX], int *n)
{
    struct stat st;
    struct dirent *d;
    char *names[RUN_MAX_OBJECTS];
    int k = 0;
    DIR *dir;

    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (*n == RUN_MAX_OBJECTS)
            goto too_many;
        snprintf(masks[(*n)++], PATH_MAX, "%s", path);
        return 0;
    }
    if (!(dir = opendir(path))) {
        log_error("--mask '%s': %s", path, strerror(errno));
        return 1;
    }
    while ((d = readdir(dir))) {
        size_t l = strlen(d->d_name);

        if (d->d_name[0] == '.' || l < 5 || strcasecmp(d->d_name + l - 4, ".png"))
            continue;
        if (k == RUN_MAX_OBJECTS) {
            closedir(dir);
            goto too_many_free;
        }
        names[k] = strdup(d->d_name);
        ASSERT(names[k]);
        k++;
    }
    closedir(dir);
    qsort(names, (size_t)k, sizeof(names[0]), cmp_str);
    if (!k)
        log_error("--mask '%s': a folder with no .png file (HINT: one mask PNG per object)",
                  path);
    for (int i = 0; i < k; i++) {
        if (*n == RUN_MAX_OBJECTS) {
            k -= i;
            memmove(names, names + i, sizeof(names[0]) * (size_t)k);
            goto too_many_free;
        }
        snprintf(masks[(*n)++], PATH_MAX, "%s/%s", path, names[i]);
        free(names[i]);
    }
    return k ? 0 : 1;
too_many_free:
    for (int i = 0; i < k; i++)
        free(names[i]);
too_many:
    log_error("--mask: more than %d objects (HINT: split them over runs)", RUN_MAX_OBJECTS);
    return 1;
}

/* Many objects of one image (multi.h): OUT/<mask stem>/ per object, OUT/scene.glb. */
static int run_objects(struct run_args *a, const char *image, char masks[][PATH_MAX], int n)
{
    struct multi_item *items = calloc((size_t)n, sizeof(*items));
    int code;

    ASSERT(items);
    for (int k = 0; k < n; k++) {
        items[k].image = image;
        items[k].mask = masks[k];
        multi_name(items, k, masks[k], false);
    }
    code = multi_run(a, items, n, true, "objects");
    free(items);
    return code;
}

/* Did j complete (or keep) a stage, so that its job directory is worth keeping? */
static bool job_made_something(const struct engine *e, const struct job *j)
{
    for (int s = 0; s < e->n_rt; s++)
        if (j->turn[s].state == TURN_DONE || j->turn[s].state == TURN_KEPT ||
            j->turn[s].copy_rc != 0)    /* made, but not copied to --out */
            return true;
    return false;
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
 * files of a->export.what whose stages ran (a partial run writes what it can),
 * with j's preview drawn ahead. */
static int run_export(const struct run_args *a, struct job *j)
{
    struct export_opts xo = a->export;
    char art[PATH_MAX + 16];

    xo.early = &j->early;
    snprintf(art, sizeof(art), "%s/artifacts", a->out_dir);
    return export_outputs(art, a->out_dir, &xo);
}

// ---------------------------------------------------------------- commands

/* sam3d run's own options (run_parse). */
struct run_own {
    const char *image, *mask, *resume, *server;
    char      (*masks)[PATH_MAX];       /* every --mask, a folder's PNGs one by one */
    int         n_masks;
};

static int run_own_opt(void *user, struct run_args *a, int argc, char **argv, int *i)
{
    struct run_own *o = user;
    const char *arg = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;

    if (!strcmp(arg, "--keep-job")) {
        a->keep_job = true;
        return 1;
    }
    if (!v)
        return 0;
    if (!strcmp(arg, "--job"))
        o->resume = v;
    else if (!strcmp(arg, "--server"))
        o->server = v;
    else if (!strcmp(arg, "--image"))
        o->image = v;
    else if (!strcmp(arg, "--mask")) {
        o->mask = v;
        if (add_masks(v, o->masks, &o->n_masks) != 0)
            return RUN_PARSE_FAIL;
    } else {
        return 0;
    }
    (*i)++;
    return 1;
}

int cmd_run(int argc, char **argv)
{
    static char masks[RUN_MAX_OBJECTS][PATH_MAX];
    struct run_own ro = {.masks = masks};
    const char *image, *mask, *resume, *server;
    int n_masks;
    struct run_args a;
    struct engine *e = NULL;
    struct progress *prog = NULL;
    struct job *j = calloc(1, sizeof(*j));
    char log_path[PATH_MAX + 16], job_root[PATH_MAX];
    bool have_job = false;
    int code = 1, rc;
    const struct run_cmd cmd = {.export_step = true, .version = "run", .usage = usage_run,
                                .own = run_own_opt, .user = &ro};

    ASSERT(j);
    if ((code = run_parse(&a, argc, argv, &cmd)) != RUN_PARSED)
        goto out_free;
    code = 1;
    image = ro.image;
    mask = ro.mask;
    resume = ro.resume;
    server = ro.server;
    n_masks = ro.n_masks;
    if (resume && (image || mask)) {
        fprintf(stderr, "error: --job resumes with the job's own image and mask; drop --image "
                "and --mask\n");
        goto out_usage;
    }
    if ((!resume && (!image || !mask)) || !a.out_dir) {
        fprintf(stderr, "error: --image, --mask (or --job) and --out are required\n");
        goto out_usage;
    }
    run_install_signals();
    if (server) {
        if (resume || n_masks > 1) {
            fprintf(stderr, "error: --server takes one image and one mask\n");
            goto out_usage;
        }
        code = serve_client(server, image, mask, a.out_dir, a.preset, a.progress);
        goto out_free;
    }
    if (n_masks > 1 || (mask && n_masks == 1 && strcmp(masks[0], mask))) {  /* many objects */
        if (resume) {
            fprintf(stderr, "error: --job resumes one object; run each object's job alone\n");
            goto out_usage;
        }
        code = run_objects(&a, image, masks, n_masks);
        goto out_free;
    }
    if (mkdir(a.out_dir, 0755) != 0 && errno != EEXIST) {
        log_error("--out '%s': %s", a.out_dir, strerror(errno));
        goto out_free;
    }
    {   /* the pixel limit and the job root's room, checked before anything starts */
        int64_t w = 0, h = 0;
        struct stat si, sm;
        char what[64];

        if (image && image_probe(image, &w, &h) == 0 && w * h > image_max_pixels()) {
            log_error("--image '%s' is %lldx%lld, %.1f Mpixels, over the limit of %.1f Mpixels. "
                      "HINT: downscale it, or raise the limit with --max-pixels %.0fM (the "
                      "depth stage then needs about %.1f GB of host memory)", image,
                      (long long)w, (long long)h, w * h / 1e6, image_max_pixels() / 1e6,
                      w * h / 1e6 + 1, (w * h * 13.0 + (160 << 20)) / 1e9);
            goto out_free;
        }
        snprintf(what, sizeof(what), "a %lldx%lld image", (long long)w, (long long)h);
        if (!resume &&
            jobspace_root(jobspace_need(w * h, (stat(image, &si) ? 0 : si.st_size) +
                                        (stat(mask, &sm) ? 0 : sm.st_size)),
                          what, job_root, sizeof(job_root)) != 0)
            goto out_free;
    }
    snprintf(log_path, sizeof(log_path), "%s/sam3d.log", a.out_dir);
    prog = progress_open(a.progress, log_path);
    a.o.event = progress_event;
    a.o.event_arg = prog;
    a.o.idle = progress_tick;
    a.o.idle_arg = prog;
    job_init(j, "job", 0, PIPE_MAX_STAGES - 1);
    j->early.want = (a.export.what & EXPORT_PREVIEW) != 0;
    if (resume ? adopt_job(j, resume) != 0 : jobdir_create(&j->dir, job_root) != 0)
        goto out_free;
    have_job = true;
    if (a.keep_job && jobdir_keep(&j->dir) != 0)
        goto out_free;
    j->user_image = image;
    j->user_mask = mask;
    snprintf(j->out_dir, sizeof(j->out_dir), "%s", a.out_dir);
    a.o.sock_dir = j->dir.path;
    if (resume) {
        rc = 0;
    } else {
        rc = copy_input(j, image, "input_image", j->image, sizeof(j->image), "--image");
        if (!rc)
            rc = copy_input(j, mask, "input_mask", j->mask, sizeof(j->mask), "--mask");
    }
    if (engine_open(&e, &a.o) != 0 && !rc)
        rc = S3D_EINVAL;
    if (!e)
        goto out_free;
    if (!rc && cli_apply(&a, e, j, -1) != 0)
        rc = S3D_EINVAL;
    log_info("job %s, pipeline %s, stages from %s", j->dir.path, e->pipe_path, e->stages_dir);
    engine_submit(e, j);
    if (!rc && resume)
        rc = engine_resume(e, j);
    if (rc || engine_check(e, j->next, j->last) != 0 || engine_start(e, j->next, j->last) != 0) {
        fail_stage_of(e, j);
        j->code = run_interrupted ? EXIT_INTERRUPTED : 1;
    } else {
        engine_run(e);
    }
    engine_stop_all(e);
    code = run_interrupted ? EXIT_INTERRUPTED : j->code;
    if (code == 1 && !a.keep_job && job_made_something(e, j) && jobdir_keep(&j->dir) == 0) {
        a.keep_job = true;              /* what it finished is not lost: resume with --job */
        fprintf(stderr, "sam3d: the run failed; its job directory is kept for `sam3d run --job "
                "%s --out %s` (remove it with rm -r when not needed)\n", j->dir.path,
                a.out_dir);
    }
    if (resume && code != 0 && code != EXIT_PARTIAL)
        a.keep_job = true;              /* a resumed job stays until it completes */
    if (run_interrupted)
        log_error("interrupted (signal %d): stages stopped%s", (int)run_interrupted,
                  a.keep_job ? "" : ", job directory removed");
    if (code == EXIT_PARTIAL)
        log_missing(e);
    if ((code == 0 || code == EXIT_PARTIAL) && run_export(&a, j) != 0)
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
    if (j)
        export_early_discard(&j->early);   /* nothing reads the job directory now */
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

/* sam3d stage's own options and operand (run_parse). */
struct stage_own {
    const char *name, *job;
};

static int stage_own_opt(void *user, struct run_args *a, int argc, char **argv, int *i)
{
    struct stage_own *o = user;
    const char *arg = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;

    if (arg[0] != '-' && !o->name) {
        o->name = arg;
        return 1;
    }
    if (!v)
        return 0;
    if (!strcmp(arg, "--job")) {
        o->job = v;
    } else if (!strcmp(arg, "--param")) {
        if (!strchr(v, '=') || v[0] == '=' || a->n_param == JOB_MAX_SET) {
            fprintf(stderr, "error: --param wants KEY=VALUE (at most %d), got '%s'\n",
                    JOB_MAX_SET, v);
            return RUN_PARSE_USAGE;
        }
        a->param[a->n_param++] = v;
    } else {
        return 0;
    }
    (*i)++;
    return 1;
}

int cmd_stage(int argc, char **argv)
{
    struct stage_own so = {0};
    struct run_args a;
    struct engine *e = NULL;
    struct job *j = calloc(1, sizeof(*j));
    int code = 1, idx;
    const struct run_cmd cmd = {.version = "stage", .usage = usage_stage, .own = stage_own_opt,
                                .user = &so};

    ASSERT(j);
    if ((code = run_parse(&a, argc, argv, &cmd)) != RUN_PARSED)
        goto out_free;
    code = 1;
    if (!so.name || !so.job) {
        fprintf(stderr, "error: a stage NAME and --job DIR are required\n");
        goto out_usage;
    }
    run_install_signals();
    if (adopt_job(j, so.job) != 0)         /* locked: no run works in it meanwhile */
        goto out_free;
    a.o.sock_dir = j->dir.path;
    a.o.only = so.name;
    if (engine_open(&e, &a.o) != 0)
        goto out_free;
    idx = (int)(pipeline_find(&e->pipe, so.name) - e->pipe.stages);
    if (!e->rt[idx].built) {
        log_error("stage '%s' is not built yet ('%s' is missing)", so.name, e->rt[idx].exe);
        code = EXIT_PARTIAL;
        goto out_free;
    }
    {
        struct jobdir keep = j->dir;
        char img[sizeof(j->image)], msk[sizeof(j->mask)];

        memcpy(img, j->image, sizeof(img));
        memcpy(msk, j->mask, sizeof(msk));
        job_init(j, so.name, idx, idx);
        j->dir = keep;
        memcpy(j->image, img, sizeof(img));
        memcpy(j->mask, msk, sizeof(msk));
    }
    if (cli_apply(&a, e, j, idx) != 0)
        goto out_free;
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
    code = run_interrupted ? EXIT_INTERRUPTED : j->code;
    if (report_write(e, j, code ? report_status(code) : "complete") != 0 && !code)
        code = 1;
    goto out_free;
out_usage:
    usage_stage(stderr);
    code = 2;
out_free:
    engine_close(e);
    jobdir_close(&j->dir);
    free(j);
    return code;
}
