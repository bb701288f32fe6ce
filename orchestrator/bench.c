/*
 * bench.c - `sam3d bench`: the whole pipeline run several times on one image
 * and mask through the same stage processes, and the time and device memory
 * of every stage in every run.
 *
 * Each run ends with the export step of `sam3d run` (export.h: splat.ply,
 * mesh.glb, pose.json, preview.png into OUT/run<k>/), timed apart ("export"):
 * the user's measure is the image in and those files out.
 *
 * Run 1 is cold: the stage processes are started (timed apart: "start"), each
 * loads its weights (the page cache permitting) and runs its first request.
 * The runs after it are warm: the stages stay loaded between jobs when the VRAM
 * budget allows (engine.h), so they show the steady state a `sam3d serve` or a
 * batch reaches. Each run is a job of its own (own job directory, own
 * artifacts and report.json in OUT/run<k>/, docs/formats.md); OUT/bench.json
 * names the runs, the start time and the settings; tools/ref/bench_report.py
 * adds the FLOP model (achieved TFLOP/s, compute floors) and the official
 * pipeline's times (tools/ref/bench_official.py); tools/gpu/bench_full.sh runs
 * all of it on the GPU machine (docs/performance.md "Whole pipeline").
 *
 * Exit status: 0 every run complete, 3 the runs ran every stage that is built
 * (later stages do not exist yet), 1 a run failed, 2 usage, 130 interrupted.
 * Test: tests/test_bench.sh.
 */
#include "budget.h"
#include "commands.h"
#include "engine.h"
#include "err.h"
#include "export.h"
#include "image.h"
#include "jobdir.h"
#include "log.h"
#include "preset.h"
#include "report.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define BENCH_MAX_RUNS 16

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

static void usage(FILE *f)
{
    fprintf(f,
        "usage: sam3d bench --image IMG --mask MASK --weights DIR --out DIR [options]\n"
        "Runs the pipeline --runs times on IMG through the same stage processes (run 1\n"
        "cold: processes started, weights loaded; then warm) and prints, per stage and run,\n"
        "the wall, load and run time and the device memory the driver counted.\n"
        "  --runs N             runs (default 2, at most %d)\n"
        "  --preset NAME        %s (as sam3d run)\n"
        "  --moge FILE          MoGe weights (default DIR/moge-vitl/model.pt)\n"
        "  --device cuda:N|cpu  passed to every stage (default: each stage's own)\n"
        "  --stage-device NAME=cuda:N|cpu   one stage's device (repeatable)\n"
        "  --precision fp16|fp32\n"
        "  --stages-dir DIR     where the sam3d-* executables are (default: next to sam3d)\n"
        "  --pipeline FILE      pipeline definition (default pipelines/sam3d_objects.pipe)\n"
        "  --timeout S          seconds a busy stage may go without a sign of life (its\n"
        "                       beats; a stage served elsewhere: its reply) (default 600)\n"
        "  --vram-budget SIZE   as sam3d run (default: the free memory at start)\n"
        "OUT/run<k>/ gets run k's artifacts/, report.json and the exported files (splat.ply,\n"
        "mesh.glb, pose.json, preview.png), OUT/bench.json the summary.\n"
        "exit status: 0 complete, 1 failed, 2 usage, 3 stages still to come, 130 interrupted\n",
        BENCH_MAX_RUNS, preset_names());
}

struct bench {
    struct engine_opts o;
    const char        *image, *mask, *out, *preset;
    int                runs;
    double             start_ms;            /* engine_start: processes up, status answered */
    int                n_done;
    struct job        *job[BENCH_MAX_RUNS];
    double             export_ms[BENCH_MAX_RUNS];   /* the export step of each run */
};

/* Parse argv into b. 0, 1 (--help printed), or 2 (usage error printed). */
static int parse(struct bench *b, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;

        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!v) {
            fprintf(stderr, "error: unknown option or missing value: %s\n", a);
            usage(stderr);
            return 2;
        }
        if (!strcmp(a, "--image"))                b->image = v;
        else if (!strcmp(a, "--mask"))            b->mask = v;
        else if (!strcmp(a, "--weights"))         b->o.weights_dir = v;
        else if (!strcmp(a, "--out"))             b->out = v;
        else if (!strcmp(a, "--moge"))            b->o.moge = v;
        else if (!strcmp(a, "--device"))          b->o.device = v;
        else if (!strcmp(a, "--precision"))       b->o.precision = v;
        else if (!strcmp(a, "--stages-dir"))      b->o.stages_dir = v;
        else if (!strcmp(a, "--pipeline"))        b->o.pipeline = v;
        else if (!strcmp(a, "--runs")) {
            long n = strtol(v, &end, 10);

            if (*end || n < 1 || n > BENCH_MAX_RUNS) {
                fprintf(stderr, "error: --runs wants 1..%d, got '%s'\n", BENCH_MAX_RUNS, v);
                return 2;
            }
            b->runs = (int)n;
        } else if (!strcmp(a, "--preset")) {
            if (!preset_known(v)) {
                fprintf(stderr, "error: --preset wants one of %s, got '%s'\n", preset_names(), v);
                return 2;
            }
            b->preset = v;
        } else if (!strcmp(a, "--timeout")) {
            double s = strtod(v, &end);

            if (*end || s <= 0 || s > 86400) {
                fprintf(stderr, "error: --timeout wants seconds in (0, 86400], got '%s'\n", v);
                return 2;
            }
            b->o.timeout_ms = (int)(s * 1000);
        } else if (!strcmp(a, "--vram-budget")) {
            if (!budget_parse_size(v, &b->o.vram_budget)) {
                fprintf(stderr, "error: --vram-budget wants a size like 10G or 512M, got '%s'\n",
                        v);
                return 2;
            }
        } else if (!strcmp(a, "--stage-device")) {
            if (b->o.n_over == 2 * PIPE_MAX_STAGES || !strchr(v, '=') || v[0] == '=') {
                fprintf(stderr, "error: --stage-device wants NAME=cuda:N|cpu, got '%s'\n", v);
                return 2;
            }
            b->o.over_kind[b->o.n_over] = a;
            b->o.over_arg[b->o.n_over++] = v;
        } else {
            fprintf(stderr, "error: unknown option: %s\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!b->image || !b->mask || !b->o.weights_dir || !b->out) {
        fprintf(stderr, "error: --image, --mask, --weights and --out are required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

/* Create run k's job: its directory with the inputs, OUT/run<k> for its files,
 * the preset's params. NULL after logging. */
static struct job *new_job(struct bench *b, struct engine *e, int k)
{
    struct job *j = calloc(1, sizeof(*j));
    char name[32];

    ASSERT(j);
    snprintf(name, sizeof(name), "run%d", k);
    job_init(j, name, 0, PIPE_MAX_STAGES - 1);
    j->early.want = true;               /* the export below writes the preview */
    j->user_image = b->image;
    j->user_mask = b->mask;
    snprintf(j->out_dir, sizeof(j->out_dir), "%s/%s", b->out, name);
    if (jobdir_create(&j->dir, NULL) != 0)
        goto out_free;
    snprintf(j->image, sizeof(j->image), "%s/input_image", j->dir.path);
    snprintf(j->mask, sizeof(j->mask), "%s/input_mask", j->dir.path);
    if (jobdir_copy_in(&j->dir, b->image, "input_image", IMAGE_MAX_FILE_BYTES, "--image") ||
        jobdir_copy_in(&j->dir, b->mask, "input_mask", IMAGE_MAX_FILE_BYTES, "--mask") ||
        (b->preset && preset_apply(b->preset, e, j)))
        goto out_remove;
    if (mkdir(j->out_dir, 0755) != 0 && errno != EEXIST) {
        log_error("cannot create '%s': %s", j->out_dir, strerror(errno));
        goto out_remove;
    }
    return j;
out_remove:
    jobdir_remove(j->dir.path);
    jobdir_close(&j->dir);
out_free:
    free(j);
    return NULL;
}

static double mib(int64_t bytes)
{
    return bytes / 1048576.0;
}

/* The table: one line per stage, one column group per run. */
static void print_table(const struct bench *b, const struct engine *e)
{
    printf("\nsam3d bench: %d run%s of %s, preset %s, %s; stage processes started in %.0f ms "
           "before run 1\n", b->n_done, b->n_done == 1 ? "" : "s", b->image,
           b->preset ? b->preset : "default", e->precision, b->start_ms);
    printf("%-12s", "stage");
    for (int k = 0; k < b->n_done; k++)
        printf(" | run %d %-5s  wall ms  load ms   run ms  dev MiB", k + 1, k ? "warm" : "cold");
    printf("\n");
    for (int s = 0; s < e->n_rt; s++) {
        printf("%-12s", e->rt[s].ps->name);
        for (int k = 0; k < b->n_done; k++) {
            const struct turn *t = &b->job[k]->turn[s];

            if (t->state != TURN_DONE) {
                printf(" | %-11s %35s", turn_state_name(t->state), "");
                continue;
            }
            printf(" | %11s %8.1f %8.1f %8.1f ", "", t->wall_ms, t->load_ms, t->run_ms);
            if (t->dev_bytes >= 0)
                printf("%8.0f", mib(t->dev_bytes));
            else
                printf("%8s", "-");
        }
        printf("\n");
    }
    printf("%-12s", "between");         /* the job's wall time outside the stages' turns */
    for (int k = 0; k < b->n_done; k++) {
        double in_turns = 0;

        for (int s = 0; s < e->n_rt; s++)
            if (b->job[k]->turn[s].state == TURN_DONE)
                in_turns += b->job[k]->turn[s].wall_ms;
        printf(" | %11s %8.1f %26s", "", b->job[k]->wall_ms - in_turns, "");
    }
    printf("\n%-12s", "export");
    for (int k = 0; k < b->n_done; k++)
        printf(" | %11s %8.1f %26s", "", b->export_ms[k], "");
    printf("\n%-12s", "total");
    for (int k = 0; k < b->n_done; k++)
        printf(" | %11s %8.1f %26s", "",
               b->job[k]->wall_ms + b->export_ms[k] + (k ? 0 : b->start_ms), "");
    printf("\n(total: the stages, the job's time between and around their turns, the export step "
           "and, for run 1, the process start; dev MiB: the stage process's peak as the driver "
           "counts it, '-' where unknown)\n");
}

/* OUT/bench.json: the settings and one entry per run (details in run<k>/report.json). */
static int write_json(const struct bench *b, const struct engine *e)
{
    char path[PATH_MAX + 16], tmp[PATH_MAX + 32];
    FILE *f;

    snprintf(path, sizeof(path), "%s/bench.json", b->out);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (!(f = fopen(tmp, "w"))) {
        log_error("cannot write '%s': %s", tmp, strerror(errno));
        return S3D_EIO;
    }
    int64_t w = 0, h = 0;
    (void)image_probe(b->image, &w, &h);
    fprintf(f, "{\n  \"image\": ");
    report_json_str(f, b->image);
    fprintf(f, ",\n  \"image_hw\": [%lld, %lld],\n  \"preset\": \"%s\",\n  \"precision\": "
            "\"%s\",\n  \"device\": ", (long long)h, (long long)w,
            b->preset ? b->preset : "default", e->precision);
    report_json_str(f, b->o.device ? b->o.device : "");
    fprintf(f, ",\n  \"pipeline\": ");
    report_json_str(f, e->pipe_path);
    fprintf(f, ",\n  \"start_ms\": %.1f,\n  \"runs\": [", b->start_ms);
    for (int k = 0; k < b->n_done; k++)
        fprintf(f, "%s\n    {\"dir\": \"run%d\", \"kind\": \"%s\", \"status\": \"%s\", "
                "\"wall_ms\": %.1f, \"export_ms\": %.1f}", k ? "," : "", k + 1,
                k ? "warm" : "cold", report_status(b->job[k]->code), b->job[k]->wall_ms,
                b->export_ms[k]);
    fprintf(f, "\n  ]\n}\n");
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        log_error("cannot write '%s': %s", path, strerror(errno));
        return S3D_EIO;
    }
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    struct bench b = {.runs = 2};
    struct engine *e = NULL;
    struct jobdir socks = {0};
    struct sigaction sa;
    int code, rc;

    b.o.timeout_ms = 600 * 1000;
    b.o.retries = 0;                    /* a failure is a result here, not something to hide */
    b.o.vram_budget = -1;
    b.o.interrupted = &interrupted;
    if ((rc = parse(&b, argc, argv)))
        return rc == 1 ? 0 : 2;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (mkdir(b.out, 0755) != 0 && errno != EEXIST) {
        log_error("--out '%s': %s", b.out, strerror(errno));
        return 1;
    }
    if (jobdir_create(&socks, NULL) != 0)  /* the stages' sockets, for all the runs */
        return 1;
    b.o.sock_dir = socks.path;
    code = 1;
    if (engine_open(&e, &b.o) != 0)
        goto out;
    for (int k = 1; k <= b.runs && !interrupted; k++) {
        struct job *j = new_job(&b, e, k);

        if (!j)
            break;
        b.job[b.n_done++] = j;
        engine_submit(e, j);
        if (k == 1) {
            double t0 = now_ms();

            if (engine_check(e, j->first, j->last) != 0 ||
                engine_start(e, j->first, j->last) != 0) {
                j->code = interrupted ? 130 : 1;
                engine_forget(e, j);
                break;
            }
            b.start_ms = now_ms() - t0;
        }
        engine_run(e);
        engine_forget(e, j);
        if (j->code == 0 || j->code == 3) {         /* the files users open, as sam3d run */
            struct export_opts xo = {.early = &j->early, .what = EXPORT_DEFAULT,
                                     .allow_empty = true};
            char art[PATH_MAX + 16];
            double t0 = now_ms();

            snprintf(art, sizeof(art), "%s/artifacts", j->out_dir);
            if (export_outputs(art, j->out_dir, &xo) != 0)
                j->code = 1;
            b.export_ms[k - 1] = now_ms() - t0;
        }
        log_info("bench: run %d %s in %.1f ms", k, report_status(j->code), j->wall_ms);
        jobdir_remove(j->dir.path);
        jobdir_close(&j->dir);
        if (j->code != 0 && j->code != 3)
            break;
    }
    engine_stop_all(e);
    for (int k = 0; k < b.n_done; k++)
        if (report_write(e, b.job[k], report_status(b.job[k]->code)) != 0)
            b.job[k]->code = 1;
    code = interrupted ? 130 : b.n_done < b.runs ? 1 : 0;
    for (int k = 0; k < b.n_done && !code; k++)
        code = b.job[k]->code;
    if (b.n_done) {
        print_table(&b, e);
        if (write_json(&b, e) != 0 && !code)
            code = 1;
    }
out:
    engine_close(e);
    for (int k = 0; k < b.n_done; k++) {
        if (b.job[k]->dir.open) {
            jobdir_remove(b.job[k]->dir.path);
            jobdir_close(&b.job[k]->dir);
        }
        free(b.job[k]);
    }
    jobdir_remove(socks.path);
    jobdir_close(&socks);
    return code;
}
