/*
 * budget.c - sizes, the needs table, the eviction order. Contract: budget.h.
 * Test: tests/test_budget.c (parsing, table, victims), tests/test_budget.sh.
 */
#include "budget.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool budget_parse_size(const char *s, int64_t *out)
{
    static const char units[] = "KMGT";
    char *end;
    double v, mul = 1;
    const char *u;

    if (!s || !*s)
        return false;
    v = strtod(s, &end);
    if (end == s || !(v >= 0) || isinf(v))
        return false;
    if (*end && (u = strchr(units, *end & ~0x20)) != NULL) {
        mul = pow(1024.0, (double)(u - units + 1));
        end++;
        if (*end == 'i')
            end++;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || v * mul > 9.0e18)
        return false;
    *out = (int64_t)(v * mul);
    return true;
}

const char *budget_size_str(int64_t bytes, char *buf, size_t len)
{
    double v = (double)bytes;

    if (v >= 1073741824.0)
        snprintf(buf, len, "%.2f GiB", v / 1073741824.0);
    else if (v >= 1048576.0)
        snprintf(buf, len, "%.1f MiB", v / 1048576.0);
    else if (v >= 1024.0)
        snprintf(buf, len, "%.0f KiB", v / 1024.0);
    else
        snprintf(buf, len, "%lld B", (long long)bytes);
    return buf;
}

const char *budget_size_arg(int64_t bytes, char *buf, size_t len)
{
    if (bytes >= 1073741824LL)
        snprintf(buf, len, "%.1fG", ceil(bytes / 107374182.4) / 10);
    else
        snprintf(buf, len, "%.0fM", ceil(bytes / 1048576.0));
    return buf;
}

static int bad_line(const char *path, int ln, const char *what)
{
    log_error("%s:%d: %s. HINT: a row is 'STAGE PRECISION SIZE [RUN_MS [SOURCE]]', e.g. "
              "'ss_flow fp16 3.9G 1870 measured'", path, ln, what);
    return S3D_EFORMAT;
}

int needs_load(struct needs *t, const char *pipeline_path)
{
    char path[PATH_MAX], line[512];
    size_t n = strlen(pipeline_path);
    FILE *f;
    int ln = 0, rc = 0;

    memset(t, 0, sizeof(*t));
    if (n > 5 && !strcmp(pipeline_path + n - 5, ".pipe"))
        n -= 5;
    if (n + 7 > sizeof(path))
        return 0;
    memcpy(path, pipeline_path, n);
    strcpy(path + n, ".needs");
    f = fopen(path, "r");
    if (!f) {
        if (errno != ENOENT)
            log_warn("needs table '%s': %s; stage needs are learned while running", path,
                     strerror(errno));
        return 0;
    }
    snprintf(t->path, sizeof(t->path), "%s", path);
    while (!rc && fgets(line, sizeof(line), f)) {
        char *hash = strchr(line, '#'), *save = NULL, *w[3];
        struct needs_row *r;
        int nw = 0;

        ln++;
        if (hash)
            *hash = 0;
        for (char *p = strtok_r(line, " \t\r\n", &save); p;   /* three words, then the rest */
             p = nw < 3 ? strtok_r(NULL, " \t\r\n", &save) : NULL)
            w[nw++] = p;
        if (nw == 0)
            continue;
        if (nw < 3) {
            rc = bad_line(path, ln, "fewer than three words");
            break;
        }
        if (t->n == NEEDS_MAX_ROWS) {
            rc = bad_line(path, ln, "too many rows (at most 64)");
            break;
        }
        r = &t->rows[t->n];
        memset(r, 0, sizeof(*r));
        if (strlen(w[0]) >= sizeof(r->stage) || strlen(w[1]) >= sizeof(r->precision) ||
            !budget_parse_size(w[2], &r->bytes)) {
            rc = bad_line(path, ln, "a stage name, a precision and a size expected");
            break;
        }
        char *br = strchr(w[0], '['), *eq = br ? strchr(br, '=') : NULL;
        if (br) {                               /* a variant: stage[key=value] */
            size_t vl = eq ? strlen(eq + 1) : 0;

            if (!eq || eq == br + 1 || vl < 2 || eq[vl] != ']' ||
                (size_t)(eq - br - 1) >= sizeof(r->key) || vl - 1 >= sizeof(r->val)) {
                rc = bad_line(path, ln, "a variant is written STAGE[KEY=VALUE]");
                break;
            }
            *br = 0;
            memcpy(r->key, br + 1, (size_t)(eq - br - 1));
            memcpy(r->val, eq + 1, vl - 1);
        }
        strcpy(r->stage, w[0]);
        strcpy(r->precision, w[1]);
        if (save && *save) {                    /* RUN_MS and SOURCE: the rest of the line */
            char *rest = save + strspn(save, " \t"), *end;

            r->run_ms = strtod(rest, &end);
            if (end == rest || r->run_ms < 0) {
                rc = bad_line(path, ln, "RUN_MS must be a number of milliseconds");
                break;
            }
            end += strspn(end, " \t");
            snprintf(r->source, sizeof(r->source), "%.*s", (int)strcspn(end, "\r\n"), end);
        }
        bool twice = false;
        for (int i = 0; i < t->n; i++)
            twice |= !strcmp(t->rows[i].stage, r->stage) && !strcmp(t->rows[i].key, r->key) &&
                     !strcmp(t->rows[i].val, r->val) && !strcmp(t->rows[i].precision,
                                                                r->precision);
        if (twice) {
            rc = bad_line(path, ln, "a second row for the same stage and precision");
            break;
        }
        t->n++;
    }
    fclose(f);
    return rc;
}

const struct needs_row *needs_find(const struct needs *t, const char *stage,
                                   const char *precision)
{
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->rows[i].stage, stage) && !strcmp(t->rows[i].precision, precision) &&
            !t->rows[i].key[0])
            return &t->rows[i];
    return NULL;
}

const struct needs_row *needs_fit(const struct needs *t, const char *stage,
                                  const char *precision, int64_t budget)
{
    const struct needs_row *plain = needs_find(t, stage, precision), *best = NULL;

    if (plain && plain->bytes <= budget)
        return plain;
    for (int i = 0; i < t->n; i++) {
        const struct needs_row *r = &t->rows[i];

        if (r->key[0] && !strcmp(r->stage, stage) && !strcmp(r->precision, precision) &&
            r->bytes <= budget && (!best || r->bytes > best->bytes))
            best = r;
    }
    return best ? best : plain;
}

const struct needs_row *needs_least(const struct needs *t, const char *stage,
                                    const char *precision)
{
    const struct needs_row *best = NULL;

    for (int i = 0; i < t->n; i++) {
        const struct needs_row *r = &t->rows[i];

        if (!strcmp(r->stage, stage) && !strcmp(r->precision, precision) &&
            (!best || r->bytes < best->bytes))
            best = r;
    }
    return best;
}

int budget_victim(const struct budget_slot *s, int n, bool loaded_first)
{
    int best = -1;

    for (int i = 0; i < n; i++) {
        if (!s[i].evictable)
            continue;
        if (best < 0) {
            best = i;
            continue;
        }
        if (loaded_first && s[i].loaded != s[best].loaded) {
            if (s[i].loaded)
                best = i;
            continue;
        }
        if (s[i].next_use > s[best].next_use)
            best = i;
    }
    return best;
}
