/*
 * par.c - the host parallel for. See par.h.
 */
#include "par.h"
#include "beat.h"

#include "dtype.h"

#include <pthread.h>
#include <stdbool.h>

struct par_part {
    par_fn  fn;
    void   *arg;
    int     k;
    int64_t lo, hi;
};

static void *par_part_run(void *p)
{
    struct par_part *r = p;

    r->fn(r->arg, r->k, r->lo, r->hi);
    return NULL;
}

int par_for(int64_t n, int64_t min_per_thread, int nthreads, par_fn fn, void *arg)
{
    struct par_part part[PAR_MAX_THREADS];
    pthread_t tid[PAR_MAX_THREADS];
    bool started[PAR_MAX_THREADS] = {false};
    int64_t nt = nthreads > 0 ? nthreads : dtype_threads();

    beat_progress();                  /* bulk host work is a progress point (beat.h) */
    if (n <= 0)
        return 0;
    if (min_per_thread < 1)
        min_per_thread = 1;
    if (nt > PAR_MAX_THREADS)
        nt = PAR_MAX_THREADS;
    if (nt > n / min_per_thread)
        nt = n / min_per_thread;
    if (nt <= 1) {
        fn(arg, 0, 0, n);
        return 1;
    }
    for (int64_t k = 0; k < nt; k++)
        part[k] = (struct par_part){fn, arg, (int)k, n * k / nt, n * (k + 1) / nt};
    for (int64_t k = 1; k < nt; k++)
        started[k] = pthread_create(&tid[k], NULL, par_part_run, &part[k]) == 0;
    for (int64_t k = 0; k < nt; k++)
        if (!started[k])
            par_part_run(&part[k]);       /* range 0, and any range without a thread */
    for (int64_t k = 1; k < nt; k++)
        if (started[k])
            pthread_join(tid[k], NULL);
    return (int)nt;
}

static void *par_task_main(void *p)
{
    struct par_task *t = p;

    t->fn(t->arg);
    return NULL;
}

void par_task_start(struct par_task *t, void (*fn)(void *arg), void *arg)
{
    *t = (struct par_task){.fn = fn, .arg = arg};
    if (dtype_threads() > 1)
        t->started = pthread_create(&t->tid, NULL, par_task_main, t) == 0;
    if (!t->started)
        fn(arg);
}

void par_task_join(struct par_task *t)
{
    if (t->started)
        pthread_join(t->tid, NULL);
    t->started = false;
}
