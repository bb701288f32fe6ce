/*
 * progress.h - what a person (or a program) sees while jobs run.
 *
 *   tty    stderr is a terminal: one live line per stage in flight (job, stage
 *          k/n of the job, step k/n when the stage reports it, elapsed, ETA),
 *          replaced by a line that stays when the stage ends. The log lines
 *          of sam3d and of every stage go to a log file (OUT/sam3d.log)
 *          instead of the terminal; warnings and errors are also shown.
 *   plain  stderr is not a terminal: the log as before, plus one
 *          "sam3d: [k/n] stage ..." line when a stage starts and ends (and at
 *          most every 5 s of steps).
 *   quiet  --quiet: warnings and errors only (S3D_LOG=warn for the stages too).
 *   json   --json: one JSON object a line on stdout per event (job_start,
 *          stage_start, stage_step, stage_retry, stage_done, job_done), for
 *          programs; the log stays on stderr. docs/formats.md lists the fields.
 *
 * Test: tests/test_progress.sh.
 */
#ifndef S3D_PROGRESS_H
#define S3D_PROGRESS_H

#include "engine.h"

enum progress_mode { PROGRESS_AUTO, PROGRESS_PLAIN, PROGRESS_TTY, PROGRESS_QUIET, PROGRESS_JSON };

struct progress;

/* Start reporting in mode (AUTO: tty when stderr is a terminal, else plain).
 * log_path: where the log goes in tty mode (NULL: tty mode falls back to
 * plain). Quiet sets the log level to warn here and in the stages' S3D_LOG
 * unless S3D_LOG is set. Never fails (falls back to plain). */
struct progress *progress_open(enum progress_mode mode, const char *log_path);
/* Restore stderr (tty mode), print nothing more. NULL-safe. */
void progress_close(struct progress *p);

/* The engine's event callback (engine_opts.event, arg = the progress). */
void progress_event(void *arg, const struct engine_event *ev);
/* Redraw the live lines (elapsed time); call often (engine_opts.idle). */
void progress_tick(void *arg);
/* A line for the person (tty: above the live lines; plain/quiet: stderr;
 * json: {"event": "message", "text": ...}). */
void progress_say(struct progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
