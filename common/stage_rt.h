/*
 * stage_rt.h - the runtime a stage's model runs in (stages/README.md): the
 * device and compute dtype that --device and --precision chose, the op context
 * (CUDA stream and library handles) with its device workspace, and the
 * activation arena, sized before the work and grown only when a request needs
 * more. Also the timed repeat loop (with the S3D_PROFILE=1 per-op table,
 * kernels/prof.h) and the one memory line every stage logs after a request.
 *
 * The stage library (stage.h) owns one stage_rt per process: it starts it
 * before the stage's load callback (stage_rt_init), hands it to load (which
 * sets rt->weights to the model's weights arena) and to every run (rq->rt),
 * logs the memory line after each request and frees it after unload. A model
 * never allocates device memory outside its weights arena and rt->act, and
 * never calls the CUDA runtime itself: ops run on rt->op (NULL on the host)
 * and data moves with the copy ops (kernels/ops_copy.h).
 */
#ifndef S3D_STAGE_RT_H
#define S3D_STAGE_RT_H

#include "arena.h"
#include "ops.h"
#include "tensor.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct stage_opts;

#define STAGE_MAX_REPEAT 1000      /* the largest `repeat` param a stage accepts */
#define STAGE_STREAM_SLOTS 2       /* device block slots of a stream_blocks load */

struct stage_rt {
    const struct stage_opts *opts;       /* the stage's options (--weights: opts->weights) */
    enum device              device;     /* DEVICE_CUDA (--device cuda:N) or DEVICE_HOST */
    int                      cuda_index; /* N of cuda:N, -1 on the host */
    enum dtype               compute_dt; /* F16 (cuda, --precision fp16) or F32 */
    bool                     stream_blocks; /* load with the model's blocks streamed from host
                                          * memory (request param stream_blocks, stage.h;
                                          * common/stage_blocks.h); set before load */
    const struct arena      *weights;    /* the model's weights arena, set by load; may stay NULL */
    struct arena             work;       /* device workspace of the op context (cuBLASLt) */
    struct arena             act;        /* activations: device arena on CUDA, host otherwise */
    struct op_ctx            ctx;        /* CUDA: stream and handles; zeroed on the host */
    const struct op_ctx     *op;         /* what ops take: &ctx on CUDA, NULL on the host */
    size_t                   drv_used0;  /* device bytes in use (driver) when init ran, CUDA */
    pthread_t                dnn_thread; /* stage_rt_dnn_begin's, while dnn_on */
    bool                     dnn_on;
    char                     err[400];   /* why init failed with S3D_EDEVICE (kept by free) */
};

/* Start the runtime for opts: device and compute dtype from --device and
 * --precision, cuda:N made the calling thread's current device, and on CUDA
 * the op context with workspace_bytes of device workspace (0: none). 0, or
 * S3D_EDEVICE with rt->err the one line to report (the device, why it cannot
 * be used, the fix; not logged here), or S3D_ENOMEM (logged); on failure
 * nothing stays allocated. */
int  stage_rt_init(struct stage_rt *rt, const struct stage_opts *opts, size_t workspace_bytes);
/* Release the op context, the workspace and the activation arena (rt->err is
 * kept). The weights are the model's. A zeroed or already-freed rt is a no-op. */
void stage_rt_free(struct stage_rt *rt);

/* A convolving stage's cuDNN handle (op_ctx_dnn_prepare: cuDNN's libraries
 * load) made on a thread of its own while the weights load: begin starts it
 * on CUDA (nothing on the host, or when no thread can be made: the first
 * convolution makes the handle then), end joins it (stage_rt_free joins too).
 * The library calls them around stage_ops.load when stage_ops.uses_cudnn. */
void stage_rt_dnn_begin(struct stage_rt *rt);
void stage_rt_dnn_end(struct stage_rt *rt);

/* Make rt->act an empty arena of at least bytes on rt's device (kept when it
 * is large enough, else re-reserved at exactly bytes). Size bytes by a dry run
 * (arena_plan_init, arena.h). 0, or S3D_ENOMEM / S3D_EDEVICE (logged with the
 * arena's name and size). */
int  stage_rt_act(struct stage_rt *rt, size_t bytes);

/* Timings of a repeat loop, in wall milliseconds. */
struct stage_timing {
    int    n;                 /* runs */
    double median, min, max;  /* over the n runs */
};

/* The timed repeat loop, written as a for loop around the work itself (no
 * callback, no struct of operands):
 *
 *     struct stage_loop L;
 *     for (stage_rt_loop(rt, "what", repeat, &L); stage_loop_next(&L);) {
 *         ... one run on L.rt (L.rt->op, L.rt->act); its results on the host
 *         at the end (so wall time is device time); on an error:
 *         rc = ...; break ...
 *     }
 *     rc = stage_loop_end(&L, rc);          then L.tm holds the timings
 *
 * Every run is timed. With S3D_PROFILE=1 on CUDA the per-op device time of
 * the warm runs (all but the first when repeat > 1) is printed to stderr as
 * one table titled `what` by stage_loop_end. Leave the loop only by break
 * and always call stage_loop_end (it frees the loop). */
struct stage_loop {
    struct stage_rt *rt;
    const char      *what;
    int              repeat;   /* runs to do (>= 1) */
    int              k;        /* the run in progress, -1 before the first */
    double           t0;       /* when it started (stage_now_ms) */
    double          *ms;       /* each run's wall milliseconds */
    struct stage_timing tm;    /* set by stage_loop_end */
};

/* Start a loop of repeat (>= 1) runs on rt; what titles the profile table. */
void stage_rt_loop(struct stage_rt *rt, const char *what, int repeat, struct stage_loop *L);
/* End the run in progress (time it, keep its profile) and start the next:
 * true while a run is to be done. */
bool stage_loop_next(struct stage_loop *L);
/* Finish the loop. rc: 0 when it ran to the end, else the error that broke
 * it (the run in progress is not counted, the profile is dropped). Returns
 * rc; when 0, L->tm holds the timings of the repeat runs and the profile
 * table is printed (S3D_PROFILE=1, CUDA). */
int  stage_loop_end(struct stage_loop *L, int rc);

/* "12.34 ms median of 5 (min 12.01, max 13.10)", or "12.34 ms" for one run,
 * into buf; returns buf. */
char *stage_timing_str(const struct stage_timing *tm, char *buf, size_t len);

/* The memory line (info level): on CUDA "memory: device peak P MiB (arenas:
 * weights W + activations high-water A + workspace K), resident R MiB; driver:
 * U MiB in use on cuda:N (+D since the stage started)"; on the host the
 * arenas' sizes. P and R are process-wide (arena_device_peak/resident); D is
 * the driver's count (cudaMemGetInfo), which includes other processes' changes
 * on a shared GPU. */
void stage_rt_log_memory(const struct stage_rt *rt);

/* Device bytes in use on the current device as the driver counts them
 * (total - free of cudaMemGetInfo), 0 without a device. */
size_t stage_rt_driver_used(void);

#ifdef __cplusplus
}
#endif
#endif
