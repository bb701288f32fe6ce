/*
 * par.h - a parallel for over index ranges on the host, for the bulk
 * full-resolution loops (image preprocessing): [0, n) cut into one contiguous
 * range per thread, each run by fn(arg, k, lo, hi); the calling thread takes the
 * first range and waits for the others. Threads: dtype_threads() (S3D_THREADS,
 * else the online cores), fewer when n / min_per_thread is smaller; one range
 * (no thread at all) below 2 x min_per_thread. k is the range's index (0 ..
 * ranges - 1), for per-range partial results; fn must only write what its
 * range owns, so results are the same as one thread's.
 */
#ifndef S3D_PAR_H
#define S3D_PAR_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PAR_MAX_THREADS 64

typedef void (*par_fn)(void *arg, int k, int64_t lo, int64_t hi);

/* Run fn over [0, n) in at most nthreads ranges (<= 0: dtype_threads()), each
 * at least min_per_thread long (>= 1). Returns the number of ranges used. */
int par_for(int64_t n, int64_t min_per_thread, int nthreads, par_fn fn, void *arg);

/* One call fn(arg) beside the caller's work: par_task_start runs it on a
 * thread of its own (in place, before returning, when dtype_threads() is 1 or
 * no thread starts); par_task_join waits for it. Every started task must be
 * joined once, before what fn reads or writes is touched. */
struct par_task {
    void    (*fn)(void *arg);
    void     *arg;
    pthread_t tid;
    bool      started;
};

void par_task_start(struct par_task *t, void (*fn)(void *arg), void *arg);
void par_task_join(struct par_task *t);

#ifdef __cplusplus
}
#endif
#endif
