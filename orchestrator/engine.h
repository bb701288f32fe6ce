/*
 * engine.h - the stages of one pipeline as processes, and jobs run through them.
 *
 * An engine holds the stage processes (or remote endpoints) of a pipeline for
 * its whole life, so one engine can run many jobs with warm stages: `sam3d run`
 * runs one job, `sam3d batch` a list, `sam3d serve` whatever clients submit.
 * A job is one image + mask (one object) with its own job directory; each of
 * its stages gets a "turn": a run request with the job's inputs.
 *
 * Scheduling (engine_step): a running job's next stage is dispatched when that
 * stage is idle, no earlier job still has that stage ahead of it (FIFO per
 * stage), the VRAM budget lets it load, and, without `overlap`, no other turn
 * is in flight. With `overlap`, stage k of job i+1 runs while stage k+1 of job
 * i runs. Turns wait with Lazy Pirate timeouts: a stage that dies or hangs is
 * killed, restarted and asked again up to `retries` times; one that answers
 * with an error fails the job at once (the same input would fail again).
 *
 * VRAM budget (per CUDA device, default: its free memory at engine_open):
 * before a stage's turn, idle stages on its device are unloaded and then, if
 * still needed, stopped (farthest next use first) until what our processes
 * hold plus the stage's need fits. Needs come from the needs table
 * (budget.h), raised to what the driver measured once a stage has run. A
 * budget below a stage's need is refused by engine_check before any work.
 *
 * Loading ahead (engine_step): a local stage that a queued or running job will
 * use, idle and not loaded, is sent a load request while other stages run, so
 * its weight load overlaps their work instead of opening its turn: in the
 * order of next use, at most PRELOAD_MAX at once, only while what our
 * processes hold on its device plus its known need (loads in flight counted
 * at their need) fits the budget - after unloading or stopping idle stages
 * needed later than it (none needed again first), where that makes it fit -
 * and never past a stage that does not fit. The load request carries the
 * placement its turn will ask for (stream_blocks), so the turn finds the
 * weights placed. Its turn then counts that load (`preloaded`, load_ms).
 * Under a budget engine_check also gives pipeline neighbours whose needs
 * together are over it their memory-saving variants where that lets them fit
 * side by side (one loads ahead while the other runs).
 * With o.preload_idle the stages no job needs yet follow, in pipeline order
 * (sam3d serve, from its start: the pipeline's params, no job's).
 *
 * Device memory (devmem.h) is recorded per turn (the process's driver-measured
 * peak during it) and per device (our processes together, at their peak).
 * Test: tests/test_orchestrator.sh, tests/test_budget.sh, tests/test_batch.sh.
 */
#ifndef S3D_ENGINE_H
#define S3D_ENGINE_H

#include "budget.h"
#include "client.h"
#include "devmem.h"
#include "export.h"
#include "jobdir.h"
#include "pipeline.h"
#include "procs.h"
#include "remote.h"
#include "wire.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#define JOB_MAX_SET    32
#define JOB_MAX_EXTRA  16
#define JOB_SET_VAL    256

enum turn_state { TURN_NOT_RUN, TURN_MISSING, TURN_DONE, TURN_FAILED, TURN_KEPT };
/* "not run", "not built", "done", "failed", "kept" (an artifact from before: resume) */
const char *turn_state_name(enum turn_state s);

struct out_desc {                     /* one tensor of a stage's artifact */
    char    name[WIRE_KEY_MAX];
    enum dtype dtype;
    int     ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    size_t  nbytes;
};

/* One stage's turn in one job. */
struct turn {
    enum turn_state state;
    bool    warm;                      /* loaded by an earlier job: no load paid in this one */
    bool    preloaded;                 /* loaded ahead of the turn, while others ran */
    int     restarts;
    double  wall_ms, load_ms, run_ms;  /* wall: first send to reply, retries included */
    double  warmup_ms;                 /* the warm-up after a load ahead (stage_ops.warm) */
    int64_t peak_bytes, resident_bytes, host_peak_bytes;    /* the stage's arenas (status) */
    int64_t dev_bytes;                 /* driver-measured process peak in the turn; -1 unknown */
    char    error[WIRE_ERR_MAX];
    int     n_out;
    struct out_desc out[WIRE_MAX_TENSORS];
    /* the copy of its artifact to OUT/artifacts, beside the next stages' work */
    bool      copying;                 /* a copier thread to join (job_finish) */
    int       copy_rc;
    pthread_t copier;
    /* while in flight */
    int     attempt;
    double  t0, deadline;
    int64_t probe_free0;               /* cuda-probe method: free bytes before the turn */
};

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED };

struct job_set {                       /* a param override */
    int  stage;                        /* stage index; -1: every stage whose pipeline has key */
    char key[WIRE_KEY_MAX];
    char val[JOB_SET_VAL];
};

struct job_extra {                     /* an input beyond the pipeline's (multi-object depth) */
    int  stage;
    char file[WIRE_KEY_MAX];           /* artifact in the job directory */
    char key[WIRE_KEY_MAX];            /* tensor name in it, also the input name */
};

struct job {
    int            id;                 /* set by engine_submit, from 1 */
    struct export_early early;         /* preview.png drawn ahead (export.h): the job's owner
                                          sets early.want; each turn's artifact is announced
                                          to it, job_finish joins it (and drops it when the
                                          job failed), the export step uses it */
    char           name[128];          /* for logs and progress */
    struct jobdir  dir;                /* the caller creates it */
    char           image[PATH_MAX + 32], mask[PATH_MAX + 32];   /* $IMAGE, $MASK */
    const char    *user_image, *user_mask;   /* --image, --mask as given (messages), or NULL */
    char           out_dir[PATH_MAX];  /* artifacts are copied to OUT/artifacts as they
                                          complete (each on a thread of its own, beside
                                          the next stages; joined when the job finishes, a
                                          failed copy fails the job); "" = nowhere */
    int            first, last;        /* the stages to run (engine_submit clamps last) */
    int            next;               /* the next stage to run */
    bool           partial;            /* last was clamped: stages not built */
    enum job_state state;
    int            code;               /* 0 complete, 1 failed, 3 stages to come, 130 interrupted */
    bool           in_flight;
    double         t_start, wall_ms;
    int            n_set;
    struct job_set set[JOB_MAX_SET];
    int            n_extra;
    struct job_extra extra[JOB_MAX_EXTRA];
    struct turn    turn[PIPE_MAX_STAGES];
    void          *user;               /* the caller's */
};

/* What the engine tells its caller (progress, serve clients, batch). */
enum engine_ev { EV_JOB_START, EV_STAGE_START, EV_STAGE_STEP, EV_STAGE_DONE, EV_STAGE_RETRY,
                 EV_JOB_DONE };

struct engine_event {
    enum engine_ev    kind;
    struct job       *job;
    int               stage;           /* pipeline index (stage events) */
    const char       *name;            /* the stage's name */
    int               n_stages;        /* stages the job runs (first..last) */
    double            eta_ms;          /* EV_STAGE_START: table run time, 0 = unknown */
    int               step, steps;     /* EV_STAGE_STEP: the stage's own progress */
};

struct engine_opts {
    const char  *pipeline;             /* file; NULL: pipeline_default_path */
    const char  *stages_dir;           /* NULL: next to sam3d */
    const char  *weights_dir, *moge, *device, *precision;
    int          timeout_ms, retries;
    int64_t      vram_budget;          /* bytes; -1: each device's free memory at open */
    int          n_over;               /* --endpoint / --stage-device NAME=VALUE */
    const char  *over_kind[2 * PIPE_MAX_STAGES], *over_arg[2 * PIPE_MAX_STAGES];
    const char  *sock_dir;             /* s3d-* directory for the ipc sockets */
    const char  *only;                 /* the one stage that will run (sam3d stage), or NULL */
    bool         overlap;              /* turns of different jobs may run at once */
    int          max_active;           /* jobs running at once (0: unlimited) */
    bool         preload_idle;         /* also load ahead (and so warm up) the stages no job
                                        * needs yet, in pipeline order, within the budget
                                        * (sam3d serve: the first job finds them ready) */
    volatile sig_atomic_t *interrupted; /* set by a signal handler: stop everything */
    void       (*event)(void *arg, const struct engine_event *ev);     /* (optional) */
    void        *event_arg;
    void       (*idle)(void *arg);     /* (optional) called every ~100 ms while waiting */
    void        *idle_arg;
};

/* One stage of the pipeline, for the engine's whole life. */
struct stage_rt {
    const struct pipe_stage *ps;
    char            exe[PATH_MAX];
    char            weights[PATH_MAX];      /* "" = none */
    char            endpoint[WIRE_STR_MAX];
    char            device[32];             /* "" = none given (the stage's default) */
    int             cuda;                   /* its CUDA device, -1: none of ours (cpu, remote) */
    bool            remote;                 /* served elsewhere: connect, never spawn */
    bool            built;
    bool            loaded, ever_loaded;
    struct proc     proc;
    struct client   cli;
    int             beat_fd;                /* its beat file (common/beat.h), -1: none */
    uint64_t        beat_seen;              /* the count last read from it */
    char            beat_path[PATH_MAX];
    struct remote_inputs *rin;              /* remote stages: inputs mapped for a request */
    struct job     *busy;                   /* whose turn is in flight */
    bool            preloading;             /* a load ahead of its turn in flight (engine.c) */
    bool            preload_unclaimed;      /* loaded ahead; the next turn counts the load */
    bool            preload_failed;         /* a load ahead failed: the turn loads (says why) */
    double          preload_deadline;
    int             starts, loads;          /* process starts, weight loads observed */
    int64_t         need;                   /* device bytes it needs (table, learned); 0 unknown */
    double          table_ms;               /* warm run time from the table, 0 unknown */
    int64_t         rss_peak_bytes;         /* max over its processes (ru_maxrss) */
    char            error[WIRE_ERR_MAX];    /* why it could not start */
};

struct engine_dev {                         /* one CUDA device the stages use */
    bool    used;
    int64_t total, free_at_open, budget;
    int64_t probe_peak;                     /* cuda-probe: largest turn delta seen */
};

struct engine {
    struct engine_opts o;
    struct pipeline    pipe;
    struct needs       needs;
    struct devmem     *dm;
    char               pipe_path[PATH_MAX], stages_dir[PATH_MAX];
    const char        *precision;           /* effective: "fp16" or "fp32" */
    void              *zctx;
    int                n_rt, first_missing;
    struct stage_rt    rt[PIPE_MAX_STAGES];
    struct engine_dev  dev[DEVMEM_MAX_DEVICES];
    bool               budget_on, budget_exceeded;
    struct wire_msg    req, rep;
    struct wire_frames frames;
    int                n_jobs, cap_jobs, next_id;
    struct job       **jobs;                /* submitted, not owned */
};

/* Read the pipeline, apply overrides, resolve executables, weights and
 * devices, read the needs table, measure each device's free memory and set
 * the budgets. With o->only, only that stage will run (weights resolved for
 * it alone; an unknown name is an error). Returns 0 or an error after logging it. *out is set whenever the
 * pipeline could be read, also when a stage's weights are missing (that
 * stage's rt->error says why), so the caller can report; engine_close it. */
int  engine_open(struct engine **out, const struct engine_opts *o);
/* Stop every stage process (shutdown, then signals; always reaped), free. NULL-safe. */
void engine_close(struct engine *e);

/* Refuse a budget below the need of any stage in [first, last] that runs on a
 * CUDA device of ours: one error line naming the stage, its need and the
 * budget. 0 or S3D_ENOMEM. */
int  engine_check(struct engine *e, int first, int last);
/* Start the built local stages in [first, last] (connect to remote ones) and
 * check that each answers status, so a broken one fails before any work. The
 * processes are all started first and then asked, so they start up side by
 * side. 0, or the first failure (rt->error set, logged). */
int  engine_start(struct engine *e, int first, int last);

/* Initialise a job (zeroed, name, stages first..last, every turn "not run");
 * the caller then creates j->dir and fills image/mask/out_dir/sets. */
void job_init(struct job *j, const char *name, int first, int last);
/* Queue j (its id is assigned; last clamped before the first stage not built,
 * and those turns marked "not built"). */
void engine_submit(struct engine *e, struct job *j);
/* Resume j in its existing job directory (after engine_submit): the turns
 * whose artifacts are complete (readable, holding what later stages read, not
 * older than their inputs) are marked kept, as a prefix of first..last, and
 * copied to j->out_dir; j->next is the first stage to run. resume.c. 0, or
 * S3D_EIO when a kept artifact cannot be copied out (logged). */
int  engine_resume(struct engine *e, struct job *j);
/* Forget a finished job (before the caller frees it). */
void engine_forget(struct engine *e, struct job *j);
/* Dispatch what can run, wait up to timeout_ms for replies, handle them.
 * Returns the number of submitted jobs not finished yet. */
int  engine_step(struct engine *e, int timeout_ms);
/* engine_step until every submitted job has finished (or an interrupt). */
void engine_run(struct engine *e);
/* Stop every stage process now (their peak resident sets become known). */
void engine_stop_all(struct engine *e);

/* Add a param override to j (KEY=VALUE for stage index, -1 = every stage whose
 * pipeline lists KEY). 0, or S3D_EINVAL (logged) when the table is full or a
 * string too long. */
int  job_set_param(struct job *j, int stage, const char *key, const char *val);
/* The value of param key for stage s in job j (an override, else the pipeline's),
 * or NULL. */
const char *job_param(const struct engine *e, const struct job *j, int s, const char *key);

/* The device-memory figures of the engine's devices, for the report. */
bool engine_dev_peak(struct engine *e, int dev, int64_t *peak, bool *per_process);

#endif
