/*
 * batch.c - `sam3d batch LIST`: image/mask pairs through warm stages (multi.h).
 *
 * LIST is a text file, one job a line: "IMAGE MASK" (paths without spaces,
 * relative ones from LIST's folder); blank lines and lines starting with '#'
 * are skipped. Each job writes OUT/<k>_<image stem>/ as `sam3d run` writes
 * OUT/; OUT/summary.json lists them with the objects per minute.
 *
 * Exit status: 0 every job complete, 3 every job ran the stages that are
 * built, 1 a job failed (the others still ran), 2 usage or a bad LIST, 130
 * interrupted. Test: tests/test_batch.sh.
 */
#include "commands.h"
#include "log.h"
#include "multi.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_MAX_JOBS 100000
#define LINE_MAX_LEN   (2 * PATH_MAX + 16)

static void usage(FILE *f)
{
    fprintf(f,
        "usage: sam3d batch LIST --weights DIR --out DIR [options of sam3d run]\n"
        "Runs every \"IMAGE MASK\" line of LIST (relative paths from LIST's folder; '#'\n"
        "comments) through one set of stage processes: each stage starts and loads its\n"
        "weights once (the VRAM budget permitting), consecutive jobs overlap (stage k of job\n"
        "i+1 while stage k+1 of job i runs). OUT/<k>_<image>/ gets each job's artifacts/,\n"
        "report.json and files (splat.ply, mesh.glb, pose.json, preview.png);\n"
        "OUT/summary.json every job, the objects per minute and each stage's loads.\n"
        "Options as sam3d run: --moge, --device, --stage-device, --endpoint, --precision,\n"
        "--preset, --outputs, --placed, --pipeline, --stages-dir, --timeout, --retries,\n"
        "--vram-budget, --max-pixels, --keep-job, -q, --json.\n"
        "exit status: 0 complete, 1 a job failed, 2 usage, 3 stages still to come, "
        "130 interrupted\n");
}

/* Read LIST into *items (paths strdup'ed into *store). 0, or 2 after an error line. */
static int read_list(const char *list, struct multi_item **items, int *n, char ***store)
{
    FILE *f = fopen(list, "r");
    char line[LINE_MAX_LEN], dir[PATH_MAX];
    const char *slash = strrchr(list, '/');
    int lineno = 0, cap = 0, n_store = 0;

    if (!f) {
        log_error("LIST '%s': cannot open it (%s). HINT: a text file of \"IMAGE MASK\" lines",
                  list, strerror(errno));
        return 2;
    }
    snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - list) : 1, slash ? list : ".");
    *n = 0;
    while (fgets(line, sizeof(line), f)) {
        char *tok[3] = {NULL, NULL, NULL}, *save = NULL, *p = line;
        int nt = 0;

        lineno++;
        while ((tok[nt] = strtok_r(p, " \t\r\n", &save)) && nt < 2) {
            p = NULL;
            nt++;
        }
        if (nt == 0 || tok[0][0] == '#')
            continue;
        if (nt != 2 || tok[2]) {
            log_error("LIST '%s' line %d: want \"IMAGE MASK\" (two paths), got %d field%s",
                      list, lineno, nt + (tok[2] != NULL), nt == 1 ? "" : "s");
            fclose(f);
            return 2;
        }
        if (*n == BATCH_MAX_JOBS) {
            log_error("LIST '%s': more than %d jobs (HINT: split it)", list, BATCH_MAX_JOBS);
            fclose(f);
            return 2;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            *items = realloc(*items, sizeof(**items) * (size_t)cap);
            *store = realloc(*store, sizeof(**store) * (size_t)cap * 2);
            ASSERT(*items && *store);
        }
        for (int k = 0; k < 2; k++) {
            char *path = NULL;

            if (tok[k][0] == '/')
                path = strdup(tok[k]);
            else if (asprintf(&path, "%s/%s", dir, tok[k]) < 0)
                path = NULL;
            ASSERT(path);
            (*store)[n_store++] = path;
        }
        (*items)[*n].image = (*store)[n_store - 2];
        (*items)[*n].mask = (*store)[n_store - 1];
        multi_name(*items, *n, (*items)[*n].image, true);
        (*n)++;
    }
    fclose(f);
    if (!*n) {
        log_error("LIST '%s' names no job (HINT: one \"IMAGE MASK\" line each)", list);
        return 2;
    }
    return 0;
}

/* sam3d batch's own option and operand (run_parse): --keep-job, LIST. */
static int batch_own_opt(void *user, struct run_args *a, int argc, char **argv, int *i)
{
    const char **list = user;

    (void)argc;
    if (!strcmp(argv[*i], "--keep-job"))
        a->keep_job = true;
    else if (argv[*i][0] != '-' && !*list)
        *list = argv[*i];
    else
        return 0;
    return 1;
}

int cmd_batch(int argc, char **argv)
{
    const char *list = NULL;
    struct run_args a;
    struct multi_item *items = NULL;
    char **store = NULL;
    int n = 0, code;
    const struct run_cmd cmd = {.export_step = true, .usage = usage, .own = batch_own_opt,
                                .user = &list};

    if ((code = run_parse(&a, argc, argv, &cmd)) != RUN_PARSED)
        return code;
    if (!list || !a.out_dir) {
        fprintf(stderr, "error: LIST and --out are required\n");
        goto usage;
    }
    code = read_list(list, &items, &n, &store);
    if (!code) {
        run_install_signals();
        code = multi_run(&a, items, n, false, "batch");
    }
    for (int k = 0; k < 2 * n; k++)
        free(store[k]);
    free(store);
    free(items);
    return code;
usage:
    usage(stderr);
    return 2;
}
