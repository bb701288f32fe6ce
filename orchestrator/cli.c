/*
 * cli.c - one command-line behaviour for every subcommand, and the job
 * settings. Contract: cli.h. Test: tests/test_run_cli.sh.
 */
#include "cli.h"

#include "err.h"
#include "log.h"
#include "preset.h"
#include "version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_print_version(const char *cmd)
{
    printf("sam3d%s%s %s\n", cmd ? " " : "", cmd ? cmd : "", s3d_version());
}

static int    inv_argc;
static char **inv_argv;
static time_t inv_start;

void cli_invocation(int *argc, char *const **argv, time_t *start)
{
    *argc = inv_argc;
    *argv = inv_argv;
    *start = inv_start;
}

void cli_normalize(int *argc, char ***argv)
{
    static const char *const shorts[][2] = {
        {"-i", "--image"}, {"-m", "--mask"}, {"-w", "--weights"}, {"-o", "--out"},
        {"-s", "--seed"}, {"-d", "--device"}, {"-p", "--param"}, {"-v", "--verbose"},
        {"-V", "--version"},
    };
    char **in = *argv, **out = calloc(2 * (size_t)*argc + 1, sizeof(*out));
    int n = 0;

    ASSERT(out);
    inv_argc = *argc;
    inv_argv = *argv;
    inv_start = time(NULL);
    for (int i = 0; i < *argc; i++) {
        const char *a = in[i], *eq = strchr(a, '=');

        if (i > 0 && !strncmp(a, "--", 2) && a[2] && eq) {       /* --opt=VALUE */
            out[n] = strndup(a, (size_t)(eq - a));
            ASSERT(out[n]);
            n++;
            out[n++] = (char *)eq + 1;
            continue;
        }
        out[n] = in[i];
        for (size_t k = 0; i > 0 && k < sizeof(shorts) / sizeof(shorts[0]); k++)
            if (!strcmp(a, shorts[k][0]))
                out[n] = (char *)shorts[k][1];
        n++;
    }
    out[n] = NULL;
    *argc = n;
    *argv = out;
}

/* "N" or "N,M": every comma-separated value an integer in [lo, hi] (is_int) or
 * a number in [lo, hi]. */
static bool values_ok(const char *v, bool is_int, double lo, double hi)
{
    char *end;

    do {
        double x = is_int ? (double)strtoll(v, &end, 10) : strtod(v, &end);

        if (end == v || (*end && *end != ',') || !(x >= lo && x <= hi))
            return false;
        v = *end ? end + 1 : end;
    } while (*v || v[-1] == ',');
    return true;
}

/* A NAME=VALUE override of one stage (cli.h). */
int cli_add_override(struct run_args *r, const char *kind, const char *v)
{
    if (r->o.n_over == 2 * PIPE_MAX_STAGES || !strchr(v, '=') || v[0] == '=') {
        fprintf(stderr, "error: %s wants NAME=VALUE (at most %d), got '%s'\n", kind,
                2 * PIPE_MAX_STAGES, v);
        return -1;
    }
    r->o.over_kind[r->o.n_over] = kind;
    r->o.over_arg[r->o.n_over++] = v;
    return 1;
}

int cli_setting_opt(struct run_args *r, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    int rc = 1;

    if (!v)
        return 0;
    if (!strcmp(a, "--seed")) {
        if (!values_ok(v, true, 0, 9e15) || strchr(v, ',')) {
            fprintf(stderr, "error: --seed wants an integer in 0..9e15, got '%s'\n", v);
            return -1;
        }
        r->seed = v;
    } else if (!strcmp(a, "--steps")) {
        if (!values_ok(v, true, 1, 1e6)) {
            fprintf(stderr, "error: --steps wants N or SS,SLAT (integers >= 1), got '%s'\n", v);
            return -1;
        }
        r->steps = v;
    } else if (!strcmp(a, "--cfg")) {
        if (!values_ok(v, false, 0, 1e6)) {
            fprintf(stderr, "error: --cfg wants X or SS,SLAT (numbers >= 0), got '%s'\n", v);
            return -1;
        }
        r->cfg = v;
    } else if (!strcmp(a, "--gaussians")) {
        if (!strcmp(v, "32"))
            rc = cli_add_override(r, "--gaussians", "gs_decode=slat_decoder_gs.ckpt");
        else if (!strcmp(v, "4"))
            rc = cli_add_override(r, "--gaussians", "gs_decode=slat_decoder_gs_4.ckpt");
        else {
            fprintf(stderr, "error: --gaussians wants 32 or 4 (Gaussians per voxel of the "
                    "official decoders slat_decoder_gs.ckpt and slat_decoder_gs_4.ckpt), got "
                    "'%s'\n", v);
            return -1;
        }
    } else if (!strcmp(a, "--stage-weights")) {
        rc = cli_add_override(r, "--stage-weights", v);
    } else if (!strcmp(a, "--param")) {
        if (!strchr(v, '=') || v[0] == '=' || r->n_param == JOB_MAX_SET) {
            fprintf(stderr, "error: --param wants STAGE.KEY=VALUE (at most %d), got '%s'\n",
                    JOB_MAX_SET, v);
            return -1;
        }
        r->param[r->n_param++] = v;
    } else {
        return 0;
    }
    if (rc > 0)
        (*i)++;
    return rc;
}

/* Set key to the values of list ("v" or "v1,v2,..."): one value for every
 * stage whose pipeline has a `param key` line, or one each in pipeline order. */
static int apply_list(const struct engine *e, struct job *j, const char *opt, const char *key,
                      const char *list)
{
    int idx[PIPE_MAX_STAGES], n = 0, n_val = 1;
    char names[256] = "";

    for (const char *p = list; *p; p++)
        n_val += *p == ',';
    for (int s = 0; s < e->pipe.n_stages; s++)
        for (int k = 0; k < e->pipe.stages[s].n_params; k++)
            if (!strcmp(e->pipe.stages[s].param_key[k], key)) {
                snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
                         n ? ", " : "", e->pipe.stages[s].name);
                idx[n++] = s;
                break;
            }
    if (n == 0) {
        log_error("%s %s: no stage of '%s' has a 'param %s' line. HINT: --param STAGE.%s=VALUE "
                  "sets it on one stage", opt, list, e->pipe.path, key, key);
        return S3D_EINVAL;
    }
    if (n_val != 1 && n_val != n) {
        log_error("%s %s: %d values for %d stages (%s). HINT: give one value for all, or one "
                  "each in that order", opt, list, n_val, n, names);
        return S3D_EINVAL;
    }
    for (int i = 0; i < n; i++) {
        const char *v = list;
        char val[64];

        for (int k = 0; k < (n_val == 1 ? 0 : i); k++)
            v = strchr(v, ',') + 1;
        snprintf(val, sizeof(val), "%.*s", (int)strcspn(v, ","), v);
        if (job_set_param(j, idx[i], key, val) != 0)
            return S3D_EINVAL;
    }
    return 0;
}

int cli_apply(const struct run_args *r, const struct engine *e, struct job *j, int stage)
{
    if (r->preset && preset_apply(r->preset, e, j) != 0)
        return S3D_EINVAL;
    if ((r->seed && apply_list(e, j, "--seed", "seed", r->seed)) ||
        (r->steps && apply_list(e, j, "--steps", "steps", r->steps)) ||
        (r->cfg && apply_list(e, j, "--cfg", "cfg", r->cfg)))
        return S3D_EINVAL;
    for (int i = 0; i < r->n_param; i++) {
        const char *p = r->param[i], *eq = strchr(p, '=');
        const char *dot = memchr(p, '.', (size_t)(eq - p));
        char name[PIPE_NAME_MAX], key[WIRE_KEY_MAX];
        const struct pipe_stage *ps = NULL;
        int idx = stage;

        if (stage < 0) {                      /* run, batch, serve: STAGE.KEY=VALUE */
            if (dot && (size_t)(dot - p) < sizeof(name)) {
                snprintf(name, sizeof(name), "%.*s", (int)(dot - p), p);
                ps = pipeline_find(&e->pipe, name);
            }
            if (!ps) {
                log_error("--param %s: %s. HINT: STAGE.KEY=VALUE with STAGE one of the 'stage' "
                          "lines of '%s'", p, dot ? "no such stage" : "no STAGE. before the key",
                          e->pipe.path);
                return S3D_EINVAL;
            }
            idx = (int)(ps - e->pipe.stages);
            p = dot + 1;
        }
        if (eq == p || (size_t)(eq - p) >= sizeof(key)) {
            log_error("--param %s: the key is empty or too long", r->param[i]);
            return S3D_EINVAL;
        }
        snprintf(key, sizeof(key), "%.*s", (int)(eq - p), p);
        if (job_set_param(j, idx, key, eq + 1) != 0)
            return S3D_EINVAL;
    }
    return 0;
}
