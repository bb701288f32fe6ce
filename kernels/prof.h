/*
 * prof.h - S3D_PROFILE=1: where a CUDA forward spends its time, by op name.
 *
 * Every CUDA op ends with op_done() (kernels/cuda/common.cuh), which, while
 * profiling is on, records a CUDA event on the op's stream tagged with the op's
 * name. The stream runs ops one after another, so the device time between two
 * consecutive events belongs to the second one: its kernels, plus any time the
 * device sat idle waiting for the host to queue them (launch overhead, host work
 * between ops). Host work a stage wants named (input preparation, copies) gets
 * its own tag with op_prof_record() right after it.
 *
 *     op_prof_begin(ctx);                 one profiled section (a forward)
 *     ... ops ...
 *     op_prof_end(ctx, keep);             waits, adds each interval to its name's row
 *     op_prof_report(stderr, "cond");     table: name, count, total ms, share, per section
 *
 * Off (the default) every entry point returns at once and op_done tests one
 * global flag, so nothing is recorded and nothing synchronizes.
 */
#ifndef S3D_PROF_H
#define S3D_PROF_H

#include <stdbool.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct op_ctx;

/* True when profiling: set from env S3D_PROFILE (non-empty, not "0") by
 * op_prof_init, which op_ctx_init calls. */
extern bool op_prof_on;

/* Read S3D_PROFILE into op_prof_on. Idempotent. */
void op_prof_init(void);
/* Start a section: an event on ctx's stream that the first interval starts from. */
void op_prof_begin(const struct op_ctx *ctx);
/* Tag the device time since the previous event with name (a string that lives
 * as long as the process, e.g. a literal). Called by op_done for every op. */
void op_prof_record(const struct op_ctx *ctx, const char *name);
/* End the section: record "(tail)", wait for the stream, add every interval
 * to its name's row when keep (false drops the section, e.g. a cold first run). */
void op_prof_end(const struct op_ctx *ctx, bool keep);
/* Add ms to name's row (host side; what op_prof_end does for each interval). */
void op_prof_account(const char *name, double ms);
/* Print the rows to f, largest total first: count, total ms, share of the sum,
 * ms per kept section (when any); then clear rows and sections. Prints nothing
 * when there are no rows. */
void op_prof_report(FILE *f, const char *title);
/* Rows held now, and row i's name, count and total ms (for tests). */
int  op_prof_rows(void);
void op_prof_row(int i, const char **name, long *count, double *ms);
/* Sections kept (op_prof_end with keep) since the last report. */
int  op_prof_sections(void);

#ifdef __cplusplus
}
#endif
#endif
