/*
 * stage.h - the library every stage executable is built on: options, the serve
 * loop on a ZeroMQ REP socket, --once, --check-weights. design.md "Stage
 * executables", style.md §2.3.
 *
 *   sam3d-<stage> --weights FILE[:KEY] --listen ENDPOINT [--device cuda:N|cpu|auto]
 *                 [--precision fp16|fp32] [-v|-q]
 *                 [--curve-secret Z85 --curve-clients FILE]
 *   sam3d-<stage> --weights FILE --once IN_DIR OUT_DIR [--param KEY=VALUE ...]
 *   sam3d-<stage> --weights FILE --check-weights
 *   sam3d-<stage> --help | --version      (stage_opts.c; params: stage_param.c;
 *                                          a run's inputs and outputs: stage_req.c)
 *
 * Methods (wire.h): load (weights to the device; a `stream_blocks` param places
 * them as a run would), unload (free device memory), run, status, shutdown.
 * `run` loads first when needed. Every reply carries
 * result fields; `status` answers name, pid, loaded, device, precision,
 * resident_bytes, peak_bytes (device arenas, arena.h), host_peak_bytes,
 * requests, load_ms, last_run_ms, total_run_ms.
 *
 * A run request names its job directory in the string param "job" (a "s3d-*"
 * directory directly under the job root, owned by the stage's user, mode 0700:
 * jobdir.h) and its output file in "out" (default "<stage>.safetensors"; else
 * "<stage>_<tag>.safetensors": jobdir_out_name_ok). Inputs are tensor
 * descriptors: "shm" ones are safetensors files directly inside the job
 * directory (regular files, opened O_NOFOLLOW|O_NONBLOCK, read-only, mmapped:
 * no copy; at most STAGE_MAX_SHM_BYTES), "frame" ones arrive inline (at most
 * ops->max_input_bytes in all). Outputs are written into one safetensors file
 * in the job directory (a fresh O_EXCL temporary renamed into place) and the
 * reply lists them as shm descriptors; a request without "job" gets its outputs
 * inline as data frames (remote stages). --once runs one request from files:
 * every tensor of every IN_DIR/NAME.safetensors is an input, --param gives the
 * params, outputs go to OUT_DIR/<out>.
 *
 * A malformed request, a missing or mis-shaped input, a path outside the job
 * directory: an error reply, and the loop keeps serving. Internal faults abort
 * (the orchestrator sees the process die and restarts it).
 *
 * Security (docs/security.md): the endpoint must pass wire_endpoint_check; with
 * CURVE keys the stage answers only the clients of --curve-clients (a ZAP
 * handler, zap.h). A stage started by `sam3d run` gets env S3D_PARENT_FD, the
 * read end of a pipe only the orchestrator writes: the serve loop polls it and
 * exits when it reads EOF, and SIGTERM/SIGINT during a request end the process
 * at once (the parent-death signal), so no stage outlives its orchestrator.
 */
#ifndef S3D_STAGE_H
#define S3D_STAGE_H

#include "arena.h"
#include "ckpt.h"
#include "jobdir.h"
#include "stage_rt.h"
#include "tensor.h"
#include "wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum stage_precision { STAGE_FP16, STAGE_FP32 };

#define STAGE_MAX_SHM_BYTES (16ull << 30)   /* the largest safetensors file read as an input */
/* Request params (stage_param.c). Each stage declares its params in a table
 * (stage_ops.params, ended by an entry with name NULL); the library checks
 * every request against it before the run callback: an unknown key, a value
 * of the wrong type or out of range is an error reply naming the param (and,
 * for an unknown one, the known ones); `--help` lists the table. The library's
 * own params "job" and "out" are always known. */
enum stage_param_type {
    STAGE_PARAM_INT,        /* an integer in [lo, hi]; a float with an integral value is accepted */
    STAGE_PARAM_FLOAT,      /* a number in [lo, hi] (NaN never) */
    STAGE_PARAM_FLAG,       /* true/false or 0/1 */
    STAGE_PARAM_STRING,     /* any text */
    STAGE_PARAM_PATH,       /* a file inside the job directory (stage_param_path fails when
                             * it is absent) */
};

struct stage_param {
    const char            *name;
    enum stage_param_type  type;
    double                 def;      /* INT, FLOAT, FLAG: the value when absent */
    double                 lo, hi;   /* INT, FLOAT: the accepted range, inclusive */
    const char            *help;     /* one line for --help */
    const char            *def_text; /* (optional) the default in words when it comes from
                                      * elsewhere (the checkpoint): use stage_param_given */
};

#define STAGE_MAX_PARAMS 32         /* entries of a stage's table */

/* The `repeat` param of stages with a timed loop (stage_loop). */
#define STAGE_PARAM_REPEAT \
    {"repeat", STAGE_PARAM_INT, 1, 1, STAGE_MAX_REPEAT, \
     "run the work that many times and log min/median/max (benchmarks; outputs are the last run's)", \
     NULL}
/* The `stream_blocks` param of a stage whose model can stream its blocks
 * (common/stage_blocks.h; load with STAGE_MODEL_STREAM). Its value decides how
 * the weights are placed at load: a run request asking for the other placement
 * than the loaded one unloads and reloads the model first (logged). */
#define STAGE_PARAM_STREAM_BLOCKS \
    {"stream_blocks", STAGE_PARAM_FLAG, 0, 0, 1, \
     "keep the transformer blocks in pinned host memory and copy each into one of two device " \
     "slots before it runs (far less device memory, the same output; slower where the copies " \
     "do not hide behind the work; sam3d run sets it when --vram-budget needs it)", NULL}
/* The table of a stage whose only param is repeat: {STAGE_PARAM_REPEAT, {NULL}}. */
extern const struct stage_param stage_params_repeat[];

struct stage_opts {
    const char          *name;          /* stage name: logs, default output file */
    const char          *exe;           /* the executable's name (argv[0] without its directory) */
    const char          *weights;       /* --weights FILE[:KEY], or NULL */
    const char          *listen;        /* --listen ENDPOINT, or NULL */
    int                  device;        /* --device: -1 cpu, N cuda:N (default cuda:0 if usable) */
    enum stage_precision precision;     /* --precision fp16 (default) | fp32 */
    const char          *once_in;       /* --once IN_DIR OUT_DIR */
    const char          *once_out;
    bool                 check_weights; /* --check-weights */
    const char          *beat;          /* --beat FILE: where beats go (beat.h; sam3d sets it) */
    const char          *curve_secret;  /* --curve-secret Z85 (or env S3D_CURVE_SECRET) */
    const char          *curve_clients; /* --curve-clients FILE (or env S3D_CURVE_CLIENTS):
                                         * the client public keys answered (zap.h) */
    int                  n_params;      /* --param KEY=VALUE (for --once) */
    const char          *params[WIRE_MAX_PARAMS];
};

/* One input of a request: its descriptor and a host view of its data (inside
 * a read-only file mapping or a received frame; valid for the request). */
struct stage_input {
    const struct wire_tensor *desc;
    struct tensor             t;
};

struct stage_req {
    const struct wire_msg   *msg;          /* id, params: wire_get_int(rq->msg, "steps", 25) */
    const struct stage_opts *opts;
    struct stage_rt         *rt;           /* device, op context, activation arena (stage_rt.h) */
    const char              *in_dir;       /* inputs and path params must lie inside */
    const char              *out_dir;      /* where the output file goes; NULL: inline reply */
    const struct jobdir     *in_job;       /* in_dir / out_dir, open (jobdir.h); NULL inline */
    const struct jobdir     *out_job;
    struct arena            *arena;        /* host: outputs + scratch, reset after the request */
    int                      n_in;
    struct stage_input       in[WIRE_MAX_TENSORS];
    int                      n_out;
    char                     out_name[WIRE_MAX_TENSORS][WIRE_KEY_MAX];
    struct tensor            out[WIRE_MAX_TENSORS];     /* host, in arena */
    char                     err[WIRE_ERR_MAX];         /* error reply text */
    const struct stage_param *params;                   /* the stage's table */
    double                   val[STAGE_MAX_PARAMS];     /* checked values of INT/FLOAT/FLAG */
    bool                     given[STAGE_MAX_PARAMS];   /* present in the request */
    struct ckpt              files[WIRE_MAX_TENSORS];   /* open shm inputs (library-owned) */
    int                      n_files;
    struct stage_ahead      *ahead;        /* the output file being written ahead, or NULL */
};

/*
 * What a stage provides (stages/README.md). Only run is required; every
 * "(optional)" one may be NULL. model is the stage's own state, passed back
 * untouched. The library starts the runtime (stage_rt_init with
 * workspace_bytes) before load and frees it after unload.
 */
struct stage_ops {
    const char *name;            /* "depth", "cond", ... */
    const struct stage_param *params;   /* the request params, ended by {NULL}; NULL: none */
    size_t      arena_bytes;     /* host request arena (outputs + scratch); 0: 256 MiB */
    size_t      max_input_bytes; /* the most bytes of inline tensors one request may bring,
                                  * from the stage's input shapes: its socket's
                                  * ZMQ_MAXMSGSIZE and message budget (wire_limit;
                                  * docs/security.md); 0: the request arena's size */
    size_t      workspace_bytes; /* device workspace of the op context on CUDA (cuBLASLt:
                                  * OP_WORKSPACE_DEFAULT); 0: none */
    bool        uses_cudnn;      /* the model convolves through cuDNN: its handle is made
                                  * on a thread beside the weight load (stage_rt_dnn_begin) */
    /* (optional) Bind the weights (rt->opts->weights) and upload them to rt->device
     * in rt->compute_dt where the model computes in it; set rt->weights to the
     * model's weights arena (STAGE_MODEL below defines load and unload from the
     * model's own *_load and *_free). 0, or a negative s3d_err after logging the reason
     * with a HINT; on failure the model holds nothing. */
    int  (*load)(void *model, struct stage_rt *rt);
    /* (optional) Free the model's memory (its weights arena); the runtime's
     * arenas are freed by the library right after. */
    void (*unload)(void *model);
    /* Run one request: read inputs (stage_input), write outputs (stage_output).
     * 0, or a negative s3d_err after stage_fail() set the reply text. */
    int  (*run)(void *model, struct stage_req *rq);
    /* (optional) --check-weights: bind every weight without running; print what is
     * missing, unexpected or mis-shaped. 0 when all is well. Default: load + unload. */
    int  (*check)(void *model, const struct stage_opts *opts);
    /* (optional) Add stage-specific fields to a status reply (wire_set_*). */
    void (*status)(void *model, struct wire_msg *rep);
    /* (optional) Warm-up: run the model once on made-up inputs of a typical
     * request's shapes (values irrelevant, outputs dropped), so that the first
     * real request does not pay the first-use costs of the CUDA libraries and
     * kernels (module loading, cuDNN/cuBLASLt set-up: 0.2-1.1 s per stage on an
     * H100, docs/performance.md "Whole pipeline"). The library calls it on CUDA,
     * after a load that a load request asked for (the orchestrator's
     * loads ahead, which hide it behind the earlier stages; a run that loads
     * the model does not warm it up: its own first run is the warm-up), unless
     * S3D_WARMUP=0 (S3D_WARMUP=all: on the host too, for tests). host: the
     * request arena, reset before and after; activations
     * on rt->act (stage_rt_act to size it), which stays reserved as after a
     * request. 0, or a negative s3d_err: the library logs a warning and the
     * model stays loaded (a warm-up is never needed for correctness). */
    int  (*warm)(void *model, struct stage_rt *rt, struct arena *host);
};

/*
 * STAGE_MODEL(prefix, type, load_fn, free_fn): the load and unload callbacks
 * of a stage whose state is one model of `type` (every stage; stages/README.md),
 * so that a stage writes no wrapper. It defines
 *   static int  prefix_stage_load(void *model, struct stage_rt *rt):
 *       load_fn(model, rt->opts->weights, rt->device, rt->compute_dt), then
 *       on success rt->weights = &model->weights (the model's weights arena);
 *   static void prefix_stage_unload(void *model): free_fn(model);
 * and STAGE_MODEL_OPS(prefix) names them in the ops table. load_fn has the
 * model API's shape, int load_fn(type *, const char *path, enum device,
 * enum dtype) (0 or a negative s3d_err after logging the reason), free_fn
 * void free_fn(type *); the compiler checks both and that `type` has its
 * weights arena in a member `weights`.
 *
 *   STAGE_MODEL(cond, struct cond_model, cond_load, cond_free);
 *   ... const struct stage_ops ops = {.name = "cond", STAGE_MODEL_OPS(cond), .run = ...};
 */
#define STAGE_MODEL(prefix, type, load_fn, free_fn)                                        \
    STAGE_MODEL_WITH(prefix, type, free_fn,                                                \
                     load_fn(m_, rt->opts->weights, rt->device, rt->compute_dt))
/* The same for a model that can stream its blocks (STAGE_PARAM_STREAM_BLOCKS):
 * load_fn takes a fifth argument, the device block slots (0: all resident;
 * STAGE_STREAM_SLOTS when the request asked for stream_blocks=1). */
#define STAGE_MODEL_STREAM(prefix, type, load_fn, free_fn)                                 \
    STAGE_MODEL_WITH(prefix, type, free_fn,                                                \
                     load_fn(m_, rt->opts->weights, rt->device, rt->compute_dt,            \
                             rt->stream_blocks ? STAGE_STREAM_SLOTS : 0))
#define STAGE_MODEL_WITH(prefix, type, free_fn, load_call)                                 \
    static int prefix##_stage_load(void *model, struct stage_rt *rt)                       \
    {                                                                                      \
        type *m_ = model;                                                                  \
        int rc_ = load_call;                                                               \
        if (!rc_)                                                                          \
            rt->weights = &m_->weights;                                                    \
        return rc_;                                                                        \
    }                                                                                      \
    static void prefix##_stage_unload(void *model)                                         \
    {                                                                                      \
        free_fn((type *)model);                                                            \
    }                                                                                      \
    _Static_assert(sizeof(((type *)0)->weights) == sizeof(struct arena),                   \
                   #type " keeps its weights arena in member weights")
#define STAGE_MODEL_OPS(prefix) .load = prefix##_stage_load, .unload = prefix##_stage_unload

/* Parse argv with getopt_long (stage_opts.c): --opt VALUE and --opt=VALUE,
 * short forms -w -l -p -d -v -q -V -h. Returns 0; 1 after printing --help or
 * --version to stdout; S3D_EINVAL after printing the problem and the usage to
 * stderr. Without --device (or with auto): cuda:0 when usable, else the CPU,
 * said at info level with the reason. Strings point into argv. */
int stage_parse_opts(struct stage_opts *o, const struct stage_ops *ops, int argc, char **argv);

/* Everything a main() needs: parse, then --check-weights, --once or serve.
 * Returns the process exit code (0 ok, 1 failure, 2 usage). */
int stage_main(const struct stage_ops *ops, void *model, int argc, char **argv);

/* Serve on o->listen until shutdown, SIGINT or SIGTERM. Exit code. */
int stage_serve(const struct stage_opts *o, const struct stage_ops *ops, void *model);
/* Run one request from o->once_in into o->once_out. Exit code. */
int stage_run_once(const struct stage_opts *o, const struct stage_ops *ops, void *model);
/* --check-weights. Exit code. */
int stage_check_weights(const struct stage_opts *o, const struct stage_ops *ops, void *model);

/* --- for run callbacks --- */

/* The input named name, checked against dt and shape (ndim entries; -1 matches
 * any size; shape NULL: any shape). NULL after stage_fail() named got vs
 * expected, so the callback just returns S3D_ESHAPE. */
const struct tensor *stage_input(struct stage_req *rq, const char *name, enum dtype dt,
                                 const int64_t *shape, int ndim);
/* stage_input for an input that comes as F16 or F32 (a stage's output in the
 * compute dtype of the stage that wrote it: F16 by default on CUDA, F32 with
 * --precision fp32 or on the CPU): checked as F32 when it is F32, else as F16. */
const struct tensor *stage_input_float(struct stage_req *rq, const char *name,
                                       const int64_t *shape, int ndim);
/* A structured latent's two inputs (the SLAT decoders' request): coords I32
 * (N, 4) and feats F32 (N, C). 0, or S3D_ESHAPE after stage_input's
 * stage_fail() (the callback returns it). */
int stage_input_slat(struct stage_req *rq, const struct tensor **coords,
                     const struct tensor **feats);
/* The input named name as it came (any dtype and shape), or NULL when the
 * request has none: for optional inputs (no reply text is set). */
const struct tensor *stage_input_opt(const struct stage_req *rq, const char *name);
/* A new contiguous host output tensor (uninitialised) in rq->arena, written to the
 * output file after run returns. NULL after stage_fail() when the arena is full,
 * the name repeats, or there are more than WIRE_MAX_TENSORS outputs. */
struct tensor *stage_output(struct stage_req *rq, const char *name, enum dtype dt,
                            const int64_t *shape, int ndim);
/* Start writing the output file while the run goes on (a request with a job
 * directory; with an inline reply it does nothing): every output of the request
 * must be declared (stage_output) before, and the data of the first n_ready of them
 * final and left untouched from now on; those are written on a thread beside the
 * rest of the run, the others after it returns (the same file as without). A
 * stage_output after it fails. 0, or an error after stage_fail. */
int stage_write_ahead(struct stage_req *rq, int n_ready);
/* Resolve the string param key as a path inside rq->in_dir (must exist) into out.
 * 0, or an error code after stage_fail(). */
int stage_param_path(struct stage_req *rq, const char *key, char *out, size_t out_len);
/* Set the reply's error text (and log it); returns code. */
int stage_fail(struct stage_req *rq, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The checked value of param name (declared in the stage's table with that
 * type; anything else is an internal fault): the request's value, or the
 * table's default when absent. */
int64_t stage_get_int(const struct stage_req *rq, const char *name);
double  stage_get_float(const struct stage_req *rq, const char *name);
bool    stage_get_flag(const struct stage_req *rq, const char *name);
/* A STRING param's text, or def when absent. */
const char *stage_get_str(const struct stage_req *rq, const char *name, const char *def);
/* Whether the request gave param name (for defaults that come from the model). */
bool    stage_param_given(const struct stage_req *rq, const char *name);

/* Check every param of rq->msg against rq->params (the library does this for
 * each run request and for --once before loading anything) and keep the
 * values for stage_get_*. 0, or S3D_EINVAL after stage_fail() named the
 * param: "<stage>: unknown param 'sed' (known: ...)", "<stage>: param steps 0
 * is outside [1, 1000]", "<stage>: param cfg must be a number", ... */
int stage_params_check(struct stage_req *rq);
/* The --help lines of a table: name, type, range and default, help text. */
void stage_params_help(FILE *f, const struct stage_param *params);

/* The activation arena rq->rt->act, empty, holding at least bytes (sized by a
 * dry run: arena_plan_init); grown only when a request needs more. 0, or
 * S3D_ENOMEM after stage_fail() named the size and a HINT. */
int stage_act(struct stage_req *rq, size_t bytes);

/* The timed repeat loop of a run (stage_rt.h "stage_loop"), `repeat` runs
 * from the request param repeat (int in [1, STAGE_MAX_REPEAT], default 1:
 * benchmarks repeat the work on the same inputs; the outputs are the last
 * run's):
 *     for (stage_loop(rq, "cond forward", &L); stage_loop_next(&L);) ...;
 *     rc = stage_loop_end(&L, rc);          L.tm: the timings
 * The params were checked before run, so the value is in range. */
void stage_loop(struct stage_req *rq, const char *what, struct stage_loop *L);

/* --- timing helpers for run callbacks --- */

/* CLOCK_MONOTONIC in milliseconds. */
double stage_now_ms(void);
/* Sort the n >= 1 timings ms ascending in place, so that ms[0], ms[n / 2] and
 * ms[n - 1] are the min, median and max of a repeat loop. */
void stage_sort_ms(double *ms, int n);


#endif
