/*
 * check_weights.c - `sam3d check-weights DIR`: every stage of the pipeline binds
 * its weights without running (`sam3d-<stage> --check-weights`) and reports;
 * stages not built yet are listed as such.
 *
 * Exit status: 0 all built stages OK and none missing, 1 a check failed,
 * 2 usage, 3 all built stages OK but some stages are not built yet.
 */
#include "commands.h"
#include "err.h"
#include "log.h"
#include "pipeline.h"
#include "procs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: sam3d check-weights --weights DIR [--moge FILE] [--stages-dir DIR] "
            "[--pipeline FILE]\n"
            "       sam3d check-weights DIR [options]\n"
            "Binds every stage's weights from DIR without running; one line per stage.\n"
            "DIR holds the .ckpt files itself, or in checkpoints/, hf/ or checkpoints/hf/\n"
            "(the official layouts, README \"Getting the official weights\").\n"
            "exit status: 0 all OK, 1 a stage's weights failed, 3 stages not built yet\n");
}

/* Run exe --check-weights --weights W --device cpu; its exit status (or -1). */
static int check_one(const char *exe, const char *weights)
{
    char *argv[8];
    struct proc p;
    int n = 0;

    argv[n++] = (char *)exe;
    argv[n++] = "--check-weights";
    if (weights[0]) {
        argv[n++] = "--weights";
        argv[n++] = (char *)weights;
    }
    argv[n++] = "--device";
    argv[n++] = "cpu";
    argv[n] = NULL;
    if (proc_spawn(&p, argv) != 0)
        return -1;
    while (waitpid(p.pid, &p.status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(p.status) ? WEXITSTATUS(p.status) : -1;
}

int cmd_check_weights(int argc, char **argv)
{
    const char *dir = NULL, *moge = NULL, *pipe_arg = NULL, *stages_arg = NULL;
    char pipe_path[PATH_MAX], stages_dir[PATH_MAX];
    struct pipeline *p;
    int failed = 0, missing = 0, code;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--weights") && v && !dir) {
            dir = argv[++i];
        } else if (!strcmp(a, "--moge") && v) {
            moge = argv[++i];
        } else if (!strcmp(a, "--pipeline") && v) {
            pipe_arg = argv[++i];
        } else if (!strcmp(a, "--stages-dir") && v) {
            stages_arg = argv[++i];
        } else if (a[0] != '-' && !dir) {
            dir = a;
        } else {
            fprintf(stderr, "error: unknown option or missing value: %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        usage(stderr);
        return 2;
    }
    p = malloc(sizeof(*p));
    ASSERT(p);
    pipeline_default_path(pipe_arg, pipe_path, sizeof(pipe_path));
    pipeline_stages_dir(stages_arg, stages_dir, sizeof(stages_dir));
    if (pipeline_load(p, pipe_path) != 0) {
        free(p);
        return 1;
    }
    for (int i = 0; i < p->n_stages; i++) {
        const struct pipe_stage *s = &p->stages[i];
        char exe[PATH_MAX + 64], weights[PATH_MAX], file[PATH_MAX];
        int rc;

        snprintf(exe, sizeof(exe), "%s/%s", stages_dir, s->exe);
        if (access(exe, X_OK) != 0) {
            printf("%-12s not built yet (%s)\n", s->name, exe);
            missing++;
            continue;
        }
        if (pipeline_weights_path(s, dir, moge, weights, sizeof(weights)) != 0) {
            failed++;
            continue;
        }
        pipeline_weights_file(weights, file, sizeof(file));
        if (weights[0] && access(file, R_OK) != 0) {
            char looked[1024];

            pipeline_weights_looked(s, dir, moge, looked, sizeof(looked));
            printf("%-12s FAILED  missing, looked for %s\n", s->name, looked);
            failed++;
            continue;
        }
        rc = check_one(exe, weights);
        printf("%-12s %s  %s\n", s->name, rc == 0 ? "OK    " : "FAILED",
               weights[0] ? weights : "(no weights)");
        fflush(stdout);
        if (rc != 0)
            failed++;
    }
    code = failed ? 1 : missing ? 3 : 0;
    printf("%d stages: %d OK, %d failed, %d not built yet\n", p->n_stages,
           p->n_stages - failed - missing, failed, missing);
    free(p);
    return code;
}
