/*
 * engine_int.h - what the parts of the engine share among themselves (not a
 * contract for other callers: engine.h is). engine.c runs the jobs and the
 * scheduler; engine_proc.c starts, calls and stops stage processes;
 * engine_req.c builds a stage's run request; engine_mem.c keeps the VRAM
 * budget and loads stages ahead of their turns.
 */
#ifndef S3D_ENGINE_INT_H
#define S3D_ENGINE_INT_H

#include "engine.h"

#include <stdbool.h>
#include <stddef.h>

/* A signal asked the engine to stop (engine_opts.interrupted). */
bool engine_stopping(const struct engine *e);
/* CLOCK_MONOTONIC in milliseconds. */
double engine_now_ms(void);

// engine_proc.c --------------------------------------------------------------

/* One synchronous call of method m on rt (request e->req, reply e->rep); waits
 * while the stage lives, at most timeout_ms per reply. 0, or an error with why
 * set (the stage's own error text when it answered with one: S3D_EINVAL). */
int  engine_call(struct engine *e, struct stage_rt *rt, enum wire_method m, int timeout_ms,
                 char *why, size_t why_len);
/* (Re)connect to rt's endpoint and wait until it answers status; on failure
 * rt->error says why. */
int  engine_connect_stage(struct engine *e, struct stage_rt *rt);
/* Start rt's process and open its client without waiting for it to answer (a
 * remote stage: nothing). 0, or the spawn's error. */
int  engine_spawn_stage(struct engine *e, struct stage_rt *rt);
/* Start rt's process (a remote stage: only connect) and wait until it answers status. */
int  engine_start_stage(struct engine *e, struct stage_rt *rt);
/* Stop rt's process at once (proc_stop) and keep its peak resident set. */
void engine_stop_proc(struct engine *e, struct stage_rt *rt);
/* Ask politely (shutdown), then SIGTERM/SIGKILL; always reaps. A remote stage
 * is not ours to stop: only the connection is closed. */
void engine_stop_stage(struct engine *e, struct stage_rt *rt);

// engine_req.c ---------------------------------------------------------------

/* The run request for stage s of job j into e->req: params (the pipeline's,
 * then the job's overrides, $JOB/$IMAGE/$MASK expanded) and the input
 * descriptors. 0, or an error with err set. */
int  engine_build_request(struct engine *e, struct job *j, int s, char *err, size_t err_len);
/* Name the user's files, not the job's copies (gone after the run), in a
 * stage's error text. */
void engine_name_user_inputs(const struct job *j, char *text, size_t len);

// engine_mem.c ---------------------------------------------------------------

/* Make room on rt's device for its turn: unload, then stop, idle stages there.
 * true when it fits (or nothing else can be freed and nothing is busy: then it
 * runs anyway, with a warning); false to wait for a busy stage to finish. */
bool engine_budget_fit(struct engine *e, struct stage_rt *rt);
/* Send load requests to the stages jobs will use next (engine.h, "Loading
 * ahead"); each reply goes to engine_on_preload_reply. */
void engine_preload(struct engine *e);
/* The reply to stage s's load ahead is waiting on its socket. */
void engine_on_preload_reply(struct engine *e, int s);
/* rt's load ahead is over, or given up (failed: why, logged; not asked again:
 * its turn loads and says why if it fails again). */
void engine_end_preload(struct stage_rt *rt, const char *failed);

#endif
