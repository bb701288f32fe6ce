/*
 * prof.cu - S3D_PROFILE=1 per-op device time from CUDA events. See prof.h.
 *
 * One section's events live in a growing array (reused across sections, so a
 * steady-state forward creates no events); op_prof_end waits once for the last
 * event and turns consecutive pairs into intervals. Rows are few (one per op
 * name), so they are a small array searched linearly.
 */
#include "common.cuh"
#include "prof.h"

#include <stdlib.h>
#include <string.h>

#define PROF_MAX_ROWS 128

bool op_prof_on = false;

struct prof_event {
    cudaEvent_t ev;
    const char *name;          /* the interval that ends at ev; NULL for the section start */
};

struct prof_row {
    const char *name;
    long        count;
    double      ms;
};

static struct prof_event *events;   /* [cap_events], the first n_events in use */
static int                n_events, cap_events;
static struct prof_row    rows[PROF_MAX_ROWS];
static int                n_rows, n_sections;

void op_prof_init(void)
{
    const char *e = getenv("S3D_PROFILE");

    op_prof_on = e && *e && strcmp(e, "0") != 0;
}

static void push_event(const struct op_ctx *ctx, const char *name)
{
    if (n_events == cap_events) {
        int cap = cap_events ? cap_events * 2 : 1024;
        struct prof_event *ne = (struct prof_event *)realloc(events, sizeof(*ne) * (size_t)cap);

        ASSERT(ne);
        for (int i = cap_events; i < cap; i++)
            CUDA_CHECK(cudaEventCreate(&ne[i].ev));
        events = ne;
        cap_events = cap;
    }
    CUDA_CHECK(cudaEventRecord(events[n_events].ev, ctx->stream));
    events[n_events++].name = name;
}

void op_prof_begin(const struct op_ctx *ctx)
{
    if (!op_prof_on)
        return;
    n_events = 0;
    push_event(ctx, NULL);
}

void op_prof_record(const struct op_ctx *ctx, const char *name)
{
    if (!op_prof_on || n_events == 0)       /* outside a section: nothing to measure from */
        return;
    push_event(ctx, name);
}

void op_prof_end(const struct op_ctx *ctx, bool keep)
{
    if (!op_prof_on || n_events == 0)
        return;
    push_event(ctx, "(tail)");
    CUDA_CHECK(cudaEventSynchronize(events[n_events - 1].ev));
    for (int i = 1; keep && i < n_events; i++) {
        float ms;

        CUDA_CHECK(cudaEventElapsedTime(&ms, events[i - 1].ev, events[i].ev));
        op_prof_account(events[i].name, ms);
    }
    n_sections += keep;
    n_events = 0;
}

void op_prof_account(const char *name, double ms)
{
    int i;

    for (i = 0; i < n_rows; i++)
        if (rows[i].name == name || !strcmp(rows[i].name, name))
            break;
    if (i == n_rows) {
        if (n_rows == PROF_MAX_ROWS)
            i = n_rows - 1;                  /* fold the rest into the last row */
        else
            rows[n_rows++] = (struct prof_row){name, 0, 0.0};
    }
    rows[i].count++;
    rows[i].ms += ms;
}

static int row_cmp(const void *a, const void *b)
{
    double x = ((const struct prof_row *)a)->ms, y = ((const struct prof_row *)b)->ms;

    return (x < y) - (x > y);                /* descending */
}

void op_prof_report(FILE *f, const char *title)
{
    double total = 0;

    if (n_rows == 0)
        return;
    qsort(rows, (size_t)n_rows, sizeof(rows[0]), row_cmp);
    for (int i = 0; i < n_rows; i++)
        total += rows[i].ms;
    fprintf(f, "S3D_PROFILE %s: %d section%s, %.3f ms device time in all%s\n", title, n_sections,
            n_sections == 1 ? "" : "s", total, n_sections ? "" : " (no sections)");
    fprintf(f, "  %-28s %8s %12s %7s %14s\n", "op", "count", "total ms", "share", "ms/section");
    for (int i = 0; i < n_rows; i++) {
        const struct prof_row *r = &rows[i];

        fprintf(f, "  %-28s %8ld %12.3f %6.1f%% %14.3f\n", r->name, r->count, r->ms,
                total > 0 ? 100.0 * r->ms / total : 0.0, n_sections ? r->ms / n_sections : r->ms);
    }
    n_rows = 0;
    n_sections = 0;
}

int op_prof_rows(void)
{
    return n_rows;
}

void op_prof_row(int i, const char **name, long *count, double *ms)
{
    ASSERT(i >= 0 && i < n_rows);
    *name = rows[i].name;
    *count = rows[i].count;
    *ms = rows[i].ms;
}

int op_prof_sections(void)
{
    return n_sections;
}
