/*
 * stage_param.c - request params against the stage's table: the check the
 * library runs before every run callback, the typed accessors, the --help
 * lines. Contract: stage.h. Test: tests/test_stage_params.c.
 */
#include "stage.h"

#include "err.h"
#include "log.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The library's own params, known to every stage (strings). */
static const char *const LIBRARY_PARAMS[] = {"job", "out"};
#define N_LIBRARY_PARAMS (sizeof(LIBRARY_PARAMS) / sizeof(LIBRARY_PARAMS[0]))

static const char *const TYPE_NAME[] = {"int", "float", "flag", "string", "path"};

const struct stage_param stage_params_repeat[] = {STAGE_PARAM_REPEAT, {NULL}};

static int table_find(const struct stage_param *t, const char *name)
{
    for (int i = 0; t && t[i].name; i++)
        if (!strcmp(t[i].name, name))
            return i;
    return -1;
}

/* "a, b, c, job, out" into buf. */
static void known_list(const struct stage_param *t, char *buf, size_t len)
{
    size_t n = 0;

    buf[0] = 0;
    for (int i = 0; t && t[i].name && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s, ", t[i].name);
    for (size_t i = 0; i < N_LIBRARY_PARAMS && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s", LIBRARY_PARAMS[i],
                              i + 1 < N_LIBRARY_PARAMS ? ", " : "");
}

/* Check one present value p against its entry e; *v receives INT/FLOAT/FLAG. */
static int check_one(struct stage_req *rq, const struct stage_param *e, const struct wire_param *p,
                     double *v)
{
    const char *st = rq->opts->name, *k = e->name;

    switch (e->type) {
    case STAGE_PARAM_INT:
        if (!wire_param_ok(rq->msg, k, WIRE_INT))
            return stage_fail(rq, S3D_EINVAL, "%s: param %s must be an integer", st, k);
        *v = (double)wire_get_int(rq->msg, k, 0);
        if (*v < e->lo || *v > e->hi)
            return stage_fail(rq, S3D_EINVAL, "%s: param %s %lld is outside [%.17g, %.17g]", st,
                              k, (long long)wire_get_int(rq->msg, k, 0), e->lo, e->hi);
        return 0;
    case STAGE_PARAM_FLOAT:
        if (!wire_param_ok(rq->msg, k, WIRE_FLOAT))
            return stage_fail(rq, S3D_EINVAL, "%s: param %s must be a number", st, k);
        *v = wire_get_float(rq->msg, k, 0);
        if (!(*v >= e->lo && *v <= e->hi))      /* NaN fails too */
            return stage_fail(rq, S3D_EINVAL, "%s: param %s %g is outside [%g, %g]", st, k, *v,
                              e->lo, e->hi);
        return 0;
    case STAGE_PARAM_FLAG:
        if (p->type == WIRE_BOOL) {
            *v = p->b;
            return 0;
        }
        if (!wire_param_ok(rq->msg, k, WIRE_INT) || (wire_get_int(rq->msg, k, 2) != 0 &&
                                                     wire_get_int(rq->msg, k, 2) != 1))
            return stage_fail(rq, S3D_EINVAL, "%s: param %s must be true/false or 0/1", st, k);
        *v = (double)wire_get_int(rq->msg, k, 0);
        return 0;
    case STAGE_PARAM_STRING:
    case STAGE_PARAM_PATH:
        if (p->type != WIRE_STR)
            return stage_fail(rq, S3D_EINVAL, "%s: param %s must be a %s", st, k,
                              e->type == STAGE_PARAM_PATH ? "path" : "string");
        return 0;
    }
    ASSERT(0);
    return S3D_EINVAL;
}

int stage_params_check(struct stage_req *rq)
{
    const struct stage_param *t = rq->params;
    char known[512];
    int n = 0;

    while (t && t[n].name)
        n++;
    ASSERT(n <= STAGE_MAX_PARAMS);
    for (int i = 0; i < n; i++) {
        rq->val[i] = t[i].def;
        rq->given[i] = false;
    }
    for (int k = 0; k < rq->msg->n_params; k++) {
        const struct wire_param *p = &rq->msg->params[k];
        int i = table_find(t, p->key);
        bool lib = false;

        for (size_t j = 0; j < N_LIBRARY_PARAMS; j++)
            lib = lib || !strcmp(p->key, LIBRARY_PARAMS[j]);
        if (lib) {
            if (p->type != WIRE_STR && p->type != WIRE_NIL)
                return stage_fail(rq, S3D_EINVAL, "param '%s' must be a string", p->key);
            continue;
        }
        if (i < 0) {
            known_list(t, known, sizeof(known));
            return stage_fail(rq, S3D_EINVAL, "%s: unknown param '%s' (known: %s). HINT: "
                              "`%s --help` lists them with their ranges", rq->opts->name, p->key,
                              known, rq->opts->exe ? rq->opts->exe : rq->opts->name);
        }
        if (p->type == WIRE_NIL)
            continue;                           /* nil: the default */
        int rc = check_one(rq, &t[i], p, &rq->val[i]);
        if (rc)
            return rc;
        rq->given[i] = true;
    }
    return 0;
}

/* The entry of name with one of the types; an undeclared name is a bug. */
static int entry(const struct stage_req *rq, const char *name, enum stage_param_type a,
                 enum stage_param_type b)
{
    int i = table_find(rq->params, name);

    if (i < 0 || (rq->params[i].type != a && rq->params[i].type != b)) {
        log_error("param '%s' is not declared as %s in the stage's table", name, TYPE_NAME[a]);
        ASSERT(!"param not declared");
    }
    return i;
}

int64_t stage_get_int(const struct stage_req *rq, const char *name)
{
    return (int64_t)rq->val[entry(rq, name, STAGE_PARAM_INT, STAGE_PARAM_INT)];
}

double stage_get_float(const struct stage_req *rq, const char *name)
{
    return rq->val[entry(rq, name, STAGE_PARAM_FLOAT, STAGE_PARAM_FLOAT)];
}

bool stage_get_flag(const struct stage_req *rq, const char *name)
{
    return rq->val[entry(rq, name, STAGE_PARAM_FLAG, STAGE_PARAM_FLAG)] != 0;
}

const char *stage_get_str(const struct stage_req *rq, const char *name, const char *def)
{
    entry(rq, name, STAGE_PARAM_STRING, STAGE_PARAM_PATH);
    return wire_get_str(rq->msg, name, def);
}

bool stage_param_given(const struct stage_req *rq, const char *name)
{
    int i = table_find(rq->params, name);

    ASSERT(i >= 0);
    return rq->given[i];
}

void stage_params_help(FILE *f, const struct stage_param *t)
{
    char what[96];

    for (int i = 0; t && t[i].name; i++) {
        const struct stage_param *e = &t[i];
        switch (e->type) {
        case STAGE_PARAM_INT:
            snprintf(what, sizeof(what), "int %.17g..%.17g, default %s", e->lo, e->hi, "");
            if (!e->def_text)
                snprintf(what + strlen(what), sizeof(what) - strlen(what), "%.17g", e->def);
            break;
        case STAGE_PARAM_FLOAT:
            snprintf(what, sizeof(what), "float %g..%g, default %s", e->lo, e->hi, "");
            if (!e->def_text)
                snprintf(what + strlen(what), sizeof(what) - strlen(what), "%g", e->def);
            break;
        case STAGE_PARAM_FLAG:
            snprintf(what, sizeof(what), "true/false, default %s",
                     e->def_text ? "" : e->def != 0 ? "true" : "false");
            break;
        case STAGE_PARAM_STRING:
            snprintf(what, sizeof(what), "string%s", e->def_text ? ", default " : "");
            break;
        case STAGE_PARAM_PATH:
            snprintf(what, sizeof(what), "path inside the job directory");
            break;
        }
        if (e->def_text)
            snprintf(what + strlen(what), sizeof(what) - strlen(what), "%s", e->def_text);
        fprintf(f, "  %-14s %s\n  %-14s   %s\n", e->name, what, "", e->help);
    }
    fprintf(f, "  %-14s %s\n", "job, out", "set by the orchestrator: the job directory and the "
            "output file name");
}
