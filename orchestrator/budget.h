/*
 * budget.h - the VRAM budget's numbers: sizes, the table of what each stage's
 * process needs on the device, and the order stages are evicted in.
 *
 * Needs table: "<pipeline file without .pipe>.needs" beside the pipeline
 * (pipelines/sam3d_objects.needs). One row per line, '#' starts a comment:
 *
 *   STAGE[KEY=VALUE]  PRECISION  SIZE  [RUN_MS  [SOURCE ...]]
 *
 * SIZE (e.g. 3.4G, 512M, 1048576) is the device memory the stage's process
 * holds at its peak as the driver sees it (CUDA context, weights, activations,
 * library workspaces) at the released model size; RUN_MS its warm run time
 * (for progress ETAs; 0 = unknown); SOURCE says where the numbers come from
 * (tools/gpu/budget_full.sh prints measured rows). The row "context" is what a
 * process keeps after `unload` (its CUDA context and library handles). A row
 * with [KEY=VALUE] is a variant: the stage's need when run with that request
 * param (ss_flow[stream_blocks=1]: the transformer blocks streamed from host
 * memory, common/stage_blocks.h; less memory, slower); the engine picks it
 * when the plain row does not fit the budget, or when two pipeline neighbours'
 * rows together do not fit and a variant of one (the larger first) or of both
 * makes them fit (so that one can load ahead while the other runs); a refusal
 * names the least need of a stage's rows.
 * A missing file is an empty table; a malformed line is an error naming it.
 */
#ifndef S3D_BUDGET_H
#define S3D_BUDGET_H

#include "pipeline.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NEEDS_MAX_ROWS 64

struct needs_row {
    char    stage[PIPE_NAME_MAX];
    char    key[WIRE_KEY_MAX];     /* a variant's param, "" for the plain row */
    char    val[64];
    char    precision[8];
    int64_t bytes;
    double  run_ms;
    char    source[96];
};

struct needs {
    char             path[PATH_MAX];   /* "" when the pipeline has no table */
    int              n;
    struct needs_row rows[NEEDS_MAX_ROWS];
};

/* Load the table beside pipeline_path into t. A missing file: 0 with t->n = 0
 * and t->path "". Returns 0, or S3D_EFORMAT after logging "FILE:LINE: reason". */
int needs_load(struct needs *t, const char *pipeline_path);
/* The plain row for (stage, precision), or NULL. */
const struct needs_row *needs_find(const struct needs *t, const char *stage,
                                   const char *precision);
/* The row to run (stage, precision) with inside budget bytes: the plain row
 * when it fits, else the variant that fits with the largest need, else the
 * plain row (which then does not fit: the caller refuses). NULL: no row. */
const struct needs_row *needs_fit(const struct needs *t, const char *stage,
                                  const char *precision, int64_t budget);

/* The row of (stage, precision) that needs the least (plain or variant), or NULL:
 * what a refusal names as the smallest budget that runs the stage. */
const struct needs_row *needs_least(const struct needs *t, const char *stage,
                                    const char *precision);

/* "10G", "512M", "1.5GiB", "1048576" (bytes) -> *out. K/M/G/T are powers of 1024.
 * false for anything else (negative, empty, unknown suffix). */
bool budget_parse_size(const char *s, int64_t *out);
/* "3.40 GiB" / "512.0 MiB" / "12 KiB" into buf; returns buf. */
const char *budget_size_str(int64_t bytes, char *buf, size_t len);
/* bytes rounded up to an option value budget_parse_size reads ("3.5G", "700M"). */
const char *budget_size_arg(int64_t bytes, char *buf, size_t len);

/* One stage as the eviction policy sees it. */
struct budget_slot {
    bool    evictable;    /* alive (or loaded), idle, on the device in question, not the one to run */
    bool    loaded;       /* its weights are on the device (an unload frees them) */
    int     next_use;     /* turns until a queued job needs it again; INT32_MAX: never */
};

/* The slot to evict next: the evictable one with the farthest next use, loaded
 * ones first when loaded_first (an unload is cheaper than a stop). -1: none. */
int budget_victim(const struct budget_slot *s, int n, bool loaded_first);

#endif
