/*
 * pipeline.c - read pipelines/NAME.pipe. Format: pipeline.h. Tested through
 * tests/test_orchestrator.sh (good pipelines and one case per syntax error).
 */
#include "pipeline.h"

#include "err.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_WORDS 6

static int perr(const struct pipeline *p, int line, const char *what)
{
    log_error("%s:%d: %s", p->path, line, what);
    return S3D_EFORMAT;
}

static bool copy_word(char *dst, size_t cap, const char *w)
{
    size_t n = strlen(w);

    if (n >= cap)
        return false;
    memcpy(dst, w, n + 1);
    return true;
}

static bool valid_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
            return false;
    return true;
}

static bool plain_file(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

/* Does an earlier stage (before index k) write file? */
static bool written_before(const struct pipeline *p, int k, const char *file)
{
    for (int i = 0; i < k; i++)
        if (!strcmp(p->stages[i].out, file))
            return true;
    return false;
}

static int load_file(struct pipeline *p, const char *path, bool top);

/* "include FILE": FILE relative to the folder of p->path */
static int parse_include(struct pipeline *p, int ln, char **w, int nw)
{
    char        dir[PATH_MAX], inc[PATH_MAX];
    const char *slash = strrchr(p->path, '/');
    struct pipeline *sub;
    int         rc;

    if (nw != 2 || p->n_stages || p->included[0])
        return perr(p, ln, "expected 'include FILE' once, before any stage");
    snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - p->path) : 1, slash ? p->path : ".");
    if (w[1][0] == '/')
        snprintf(inc, sizeof(inc), "%s", w[1]);
    else if ((size_t)snprintf(inc, sizeof(inc), "%s/%s", dir, w[1]) >= sizeof(inc))
        return perr(p, ln, "include path too long");
    sub = malloc(sizeof(*sub));
    if (!sub)
        return perr(p, ln, "out of memory");
    rc = load_file(sub, inc, false);
    if (!rc) {
        memcpy(p->stages, sub->stages, sizeof(p->stages));
        p->n_stages = sub->n_stages;
        snprintf(p->included, sizeof(p->included), "%s", inc);
    }
    free(sub);
    return rc ? perr(p, ln, "the included pipeline has errors (above)") : 0;
}

static int parse_line(struct pipeline *p, int ln, char **w, int nw, bool top)
{
    struct pipe_stage *s = p->n_stages ? &p->stages[p->n_stages - 1] : NULL;

    if (!strcmp(w[0], "include")) {
        if (!top)
            return perr(p, ln, "'include' inside an included file");
        return parse_include(p, ln, w, nw);
    }
    if (!strcmp(w[0], "place")) {
        struct pipe_stage *t = NULL;

        for (int i = 0; i < p->n_stages; i++)
            if (!strcmp(p->stages[i].name, w[1]))
                t = &p->stages[i];
        if (nw != 3 || !pipeline_device_ok(w[2]))
            return perr(p, ln, "expected 'place NAME cuda:N' or 'place NAME cpu'");
        if (!t)
            return perr(p, ln, "'place' names a stage not defined above");
        strcpy(t->device, w[2]);
        return 0;
    }
    if (!strcmp(w[0], "stage")) {
        if (nw != 2 || !valid_name(w[1]) || strlen(w[1]) >= PIPE_NAME_MAX)
            return perr(p, ln, "expected 'stage NAME' with NAME of [a-z0-9_], under 32 chars");
        if (p->n_stages == PIPE_MAX_STAGES)
            return perr(p, ln, "too many stages (at most 16)");
        if (pipeline_find(p, w[1]))
            return perr(p, ln, "stage name used twice");
        s = &p->stages[p->n_stages++];
        memset(s, 0, sizeof(*s));
        strcpy(s->name, w[1]);
        strcpy(s->out, w[1]);                       /* < 32 chars, fits */
        strcat(s->out, ".safetensors");
        s->line = ln;
        return 0;
    }
    if (!s)
        return perr(p, ln, "a directive before the first 'stage' line");
    if (!strcmp(w[0], "exe")) {
        if (nw != 2 || !plain_file(w[1]) || !copy_word(s->exe, sizeof(s->exe), w[1]))
            return perr(p, ln, "expected 'exe FILE' (a file name in the stages directory)");
    } else if (!strcmp(w[0], "weights")) {
        if (nw != 2 || !copy_word(s->weights, sizeof(s->weights), w[1]))
            return perr(p, ln, "expected 'weights PATH' or 'weights none'");
        if (!strcmp(s->weights, "none"))
            s->weights[0] = 0;
    } else if (!strcmp(w[0], "out")) {
        if (nw != 2 || !plain_file(w[1]) || !copy_word(s->out, sizeof(s->out), w[1]))
            return perr(p, ln, "expected 'out FILE' (a plain file name)");
        for (int i = 0; i < p->n_stages - 1; i++)
            if (!strcmp(p->stages[i].out, s->out))
                return perr(p, ln, "two stages write the same artifact file");
    } else if (!strcmp(w[0], "input")) {
        struct pipe_input *in;
        char *colon = strchr(w[1], ':');

        if ((nw != 2 && nw != 4) || (nw == 4 && strcmp(w[2], "as")) || !colon ||
            colon == w[1] || !colon[1])
            return perr(p, ln, "expected 'input FILE:TENSOR [as NAME]'");
        if (s->n_inputs == WIRE_MAX_TENSORS)
            return perr(p, ln, "too many inputs (at most 32)");
        in = &s->inputs[s->n_inputs++];
        *colon = 0;
        if (!plain_file(w[1]) || !copy_word(in->file, sizeof(in->file), w[1]) ||
            !copy_word(in->key, sizeof(in->key), colon + 1) ||
            !copy_word(in->name, sizeof(in->name), nw == 4 ? w[3] : colon + 1))
            return perr(p, ln, "input file or tensor name too long");
        if (!written_before(p, p->n_stages - 1, in->file))
            return perr(p, ln, "input from an artifact no earlier stage writes ('out' lines)");
        for (int i = 0; i < s->n_inputs - 1; i++)
            if (!strcmp(s->inputs[i].name, in->name))
                return perr(p, ln, "two inputs with the same name (use 'as NAME')");
    } else if (!strcmp(w[0], "param")) {
        if (nw != 3)
            return perr(p, ln, "expected 'param KEY VALUE'");
        if (s->n_params == PIPE_MAX_PARAMS)
            return perr(p, ln, "too many params (at most 16)");
        if (!strcmp(w[1], "job") || !strcmp(w[1], "out"))
            return perr(p, ln, "params 'job' and 'out' are set by the orchestrator");
        if (!copy_word(s->param_key[s->n_params], WIRE_KEY_MAX, w[1]) ||
            !copy_word(s->param_val[s->n_params], WIRE_STR_MAX, w[2]))
            return perr(p, ln, "param key or value too long");
        s->n_params++;
    } else if (!strcmp(w[0], "device")) {
        if (nw != 2 || !pipeline_device_ok(w[1]))
            return perr(p, ln, "expected 'device cuda:N' or 'device cpu'");
        strcpy(s->device, w[1]);
    } else if (!strcmp(w[0], "endpoint")) {
        if (nw != 2 || !pipeline_endpoint_ok(w[1]))
            return perr(p, ln, "expected 'endpoint tcp://HOST:PORT' or 'endpoint ipc://PATH'");
        strcpy(s->endpoint, w[1]);
    } else {
        return perr(p, ln, "unknown directive (stage, exe, weights, out, input, param, "
                    "device, endpoint, include, place)");
    }
    return 0;
}

int pipeline_load(struct pipeline *p, const char *path)
{
    return load_file(p, path, true);
}

const char *pipeline_needs_base(const struct pipeline *p)
{
    char   needs[PATH_MAX];
    size_t n = strlen(p->path);

    if (!p->included[0])
        return p->path;
    if (n > 5 && !strcmp(p->path + n - 5, ".pipe"))
        n -= 5;
    snprintf(needs, sizeof(needs), "%.*s.needs", (int)n, p->path);
    return access(needs, F_OK) == 0 ? p->path : p->included;
}

static int load_file(struct pipeline *p, const char *path, bool top)
{
    char line[2048];
    FILE *f;
    int ln = 0, rc = 0;

    memset(p, 0, sizeof(*p));
    snprintf(p->path, sizeof(p->path), "%s", path);
    f = fopen(path, "r");
    if (!f) {
        log_error("pipeline '%s': %s. HINT: pass --pipeline FILE or set S3D_PIPELINE=FILE "
                  "(sam3d looks in ../share/sam3d/pipelines next to itself, as `make install` "
                  "puts it, then ../pipelines, as in the build tree)", path, strerror(errno));
        return S3D_EIO;
    }
    while (!rc && fgets(line, sizeof(line), f)) {
        char *w[MAX_WORDS + 1], *save = NULL, *hash = strchr(line, '#');
        int nw = 0;

        ln++;
        if (!strchr(line, '\n') && !feof(f)) {
            rc = perr(p, ln, "line longer than 2047 characters");
            break;
        }
        if (hash)
            *hash = 0;
        for (char *t = strtok_r(line, " \t\r\n", &save); t; t = strtok_r(NULL, " \t\r\n", &save))
            if (nw <= MAX_WORDS)
                w[nw++] = t;
        if (nw == 0)
            continue;
        if (nw > MAX_WORDS) {
            rc = perr(p, ln, "too many words");
            break;
        }
        rc = parse_line(p, ln, w, nw, top);
    }
    fclose(f);
    if (rc)
        return rc;
    if (p->n_stages == 0)
        return perr(p, ln, "no stages");
    for (int i = 0; i < p->n_stages; i++)
        if (!p->stages[i].exe[0])
            return perr(p, p->stages[i].line, "stage without an 'exe' line");
    return 0;
}

bool pipeline_device_ok(const char *d)
{
    const char *n = d + 5;

    if (!strcmp(d, "cpu") || !strcmp(d, "cuda"))
        return true;
    if (strncmp(d, "cuda:", 5) || !*n || strlen(d) >= sizeof(((struct pipe_stage *)0)->device))
        return false;
    for (; *n; n++)
        if (!isdigit((unsigned char)*n))
            return false;
    return true;
}

bool pipeline_endpoint_ok(const char *e)
{
    size_t n = strlen(e);

    return n < WIRE_STR_MAX && ((!strncmp(e, "tcp://", 6) && n > 6) ||
                                (!strncmp(e, "ipc://", 6) && n > 6));
}

const struct pipe_stage *pipeline_find(const struct pipeline *p, const char *name)
{
    for (int i = 0; i < p->n_stages; i++)
        if (!strcmp(p->stages[i].name, name))
            return &p->stages[i];
    return NULL;
}

// ---------------------------------------------------------------- paths

/* Directory of the running executable ("." when unknown). */
static void exe_dir(char *out, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", out, len - 1);
    char *slash;

    if (n <= 0) {
        snprintf(out, len, ".");
        return;
    }
    out[n] = 0;
    slash = strrchr(out, '/');
    if (slash)
        *slash = 0;
}

void pipeline_default_path(const char *explicit_path, char *out, size_t len)
{
    const char *env = getenv("S3D_PIPELINE");
    char dir[PATH_MAX], cand[PATH_MAX + 64];

    if (explicit_path) {
        snprintf(out, len, "%s", explicit_path);
        return;
    }
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return;
    }
    exe_dir(dir, sizeof(dir));
    /* installed (make install: PREFIX/bin/sam3d), then the build tree (build/sam3d) */
    snprintf(cand, sizeof(cand), "%s/../share/sam3d/pipelines/sam3d_objects.pipe", dir);
    if (access(cand, R_OK) != 0)
        snprintf(cand, sizeof(cand), "%s/../pipelines/sam3d_objects.pipe", dir);
    if (access(cand, R_OK) == 0)
        snprintf(out, len, "%s", cand);
    else
        snprintf(out, len, "pipelines/sam3d_objects.pipe");
}

void pipeline_stages_dir(const char *explicit_dir, char *out, size_t len)
{
    if (explicit_dir)
        snprintf(out, len, "%s", explicit_dir);
    else
        exe_dir(out, len);
}

/* The layouts --weights DIR may have (README "Getting the official weights"): the
 * files in DIR itself (ours; the official checkpoints/hf after sam-3d-objects
 * doc/setup.md moves the download's checkpoints/ there), or below it in
 * checkpoints/ (the download before that move), hf/ (DIR is the official
 * checkpoints/ folder) or checkpoints/hf/ (DIR is the sam-3d-objects checkout). */
static const char *const layouts[] = {"", "checkpoints/", "hf/", "checkpoints/hf/"};
#define N_LAYOUTS ((int)(sizeof(layouts) / sizeof(layouts[0])))

int pipeline_weights_path(const struct pipe_stage *s, const char *weights_dir,
                          const char *moge, char *out, size_t len)
{
    const char *rel;
    int n;

    if (!s->weights[0]) {
        out[0] = 0;
        return 0;
    }
    if (!strcmp(s->weights, "$MOGE") && moge) {
        n = snprintf(out, len, "%s", moge);
    } else if (!weights_dir) {
        log_error("stage '%s' needs weights (%s) but no --weights DIR was given", s->name,
                  s->weights);
        return S3D_EINVAL;
    } else {
        rel = !strcmp(s->weights, "$MOGE") ? "moge-vitl/model.pt" : s->weights;
        for (int k = 0; k <= N_LAYOUTS; k++) {      /* the first layout holding it; */
            char file[PATH_MAX];                       /* none: DIR/rel, for the caller's */
            struct stat st;                            /* error (pipeline_weights_looked) */

            n = snprintf(out, len, "%s/%s%s", weights_dir, layouts[k % N_LAYOUTS], rel);
            if (n < 0 || (size_t)n >= len || k == N_LAYOUTS)
                break;
            pipeline_weights_file(out, file, sizeof(file));
            if (stat(file, &st) == 0)
                break;
        }
    }
    if (n < 0 || (size_t)n >= len) {
        log_error("stage '%s': weights path too long", s->name);
        return S3D_EINVAL;
    }
    return 0;
}

void pipeline_weights_looked(const struct pipe_stage *s, const char *weights_dir,
                             const char *moge, char *out, size_t len)
{
    const char *rel = !strcmp(s->weights, "$MOGE") ? "moge-vitl/model.pt" : s->weights;
    size_t n;

    if ((!strcmp(s->weights, "$MOGE") && moge) || !weights_dir) {
        snprintf(out, len, "--moge %s", moge ? moge : "");
        return;
    }
    n = (size_t)snprintf(out, len, "%s in %s", rel, weights_dir);
    for (int k = 1; k < N_LAYOUTS && n < len; k++)
        n += (size_t)snprintf(out + n, len - n, "%s%s", k == N_LAYOUTS - 1 ? " and " : ", ",
                              layouts[k]);
}

void pipeline_weights_file(const char *weights_arg, char *out, size_t len)
{
    struct stat st;
    char *colon;

    snprintf(out, len, "%s", weights_arg);
    if (stat(out, &st) == 0)
        return;
    colon = strrchr(out, ':');
    if (colon && colon != out)
        *colon = 0;
}
