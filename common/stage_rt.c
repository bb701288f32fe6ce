/*
 * stage_rt.c - the stage runtime: device, op context, activation arena,
 * repeat loop, memory line. Contract: stage_rt.h (and stage.h for the
 * request-side helpers stage_act and stage_loop). Test: tests/test_stage_rt.c.
 */
#include "stage_rt.h"

#include "err.h"
#include "log.h"
#include "ops_conv.h"
#include "prof.h"
#include "stage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB(x) ((double)(x) / 1048576.0)

size_t stage_rt_driver_used(void)
{
    size_t free_b = 0, total_b = 0;

    if (!s3d_cuda_available() || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return total_b - free_b;
}

/* Make cuda:n current and create its context (cudaMemGetInfo does); when it
 * cannot be used, err gets one line naming the device, the reason and the fix. */
static int use_cuda(int n, size_t *used, char *err, size_t err_len)
{
    size_t free_b = 0, total_b = 0;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);

    if (e == cudaSuccess && n >= count)
        e = cudaErrorInvalidDevice;
    if (e == cudaSuccess)
        e = cudaSetDevice(n);
    if (e == cudaSuccess)
        e = cudaMemGetInfo(&free_b, &total_b);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(err, err_len, "device cuda:%d cannot be used: %s (%s; %d CUDA device%s "
                 "visible). HINT: check the driver with `nvidia-smi`, pick another --device "
                 "cuda:N, or run on the CPU with --device cpu", n, cudaGetErrorString(e),
                 cudaGetErrorName(e), count, count == 1 ? "" : "s");
        return S3D_EDEVICE;
    }
    *used = total_b - free_b;
    return 0;
}

int stage_rt_init(struct stage_rt *rt, const struct stage_opts *o, size_t workspace_bytes)
{
    int rc;

    memset(rt, 0, sizeof(*rt));
    rt->opts = o;
    rt->cuda_index = o->device;
    rt->device = o->device < 0 ? DEVICE_HOST : DEVICE_CUDA;
    rt->compute_dt = rt->device == DEVICE_CUDA && o->precision == STAGE_FP16 ? DTYPE_F16
                                                                              : DTYPE_F32;
    if (rt->device == DEVICE_HOST)
        return 0;
    if ((rc = use_cuda(o->device, &rt->drv_used0, rt->err, sizeof(rt->err))))
        return rc;
    if (workspace_bytes && (rc = arena_init(&rt->work, ARENA_DEVICE, "workspace", workspace_bytes)))
        goto out_free;
    if ((rc = op_ctx_init(&rt->ctx, workspace_bytes ? &rt->work : NULL, workspace_bytes)))
        goto out_free;
    rt->op = &rt->ctx;
    return 0;
out_free:
    stage_rt_free(rt);
    return rc;
}

static void *dnn_main(void *arg)
{
    struct stage_rt *rt = arg;

    if (cudaSetDevice(rt->cuda_index) == cudaSuccess)   /* the current device is per thread */
        op_ctx_dnn_prepare(rt->op);
    return NULL;
}

void stage_rt_dnn_begin(struct stage_rt *rt)
{
    if (rt->device == DEVICE_CUDA && rt->op && !rt->dnn_on)
        rt->dnn_on = pthread_create(&rt->dnn_thread, NULL, dnn_main, rt) == 0;
}

void stage_rt_dnn_end(struct stage_rt *rt)
{
    if (rt->dnn_on) {
        pthread_join(rt->dnn_thread, NULL);
        rt->dnn_on = false;
    }
}

void stage_rt_free(struct stage_rt *rt)
{
    if (!rt)
        return;
    stage_rt_dnn_end(rt);
    char err[sizeof(rt->err)];

    memcpy(err, rt->err, sizeof(err));
    op_ctx_free(&rt->ctx);
    arena_free(&rt->act);
    arena_free(&rt->work);
    memset(rt, 0, sizeof(*rt));
    rt->cuda_index = -1;
    memcpy(rt->err, err, sizeof(err));
}

int stage_rt_act(struct stage_rt *rt, size_t bytes)
{
    if (rt->act.base && rt->act.size >= bytes) {
        arena_reset(&rt->act);
        return 0;
    }
    arena_free(&rt->act);
    return arena_init(&rt->act, rt->device == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act",
                      bytes);
}

void stage_rt_loop(struct stage_rt *rt, const char *what, int repeat, struct stage_loop *L)
{
    ASSERT(repeat >= 1);
    *L = (struct stage_loop){.rt = rt, .what = what, .repeat = repeat, .k = -1,
                             .ms = calloc((size_t)repeat, sizeof(double))};
    ASSERT(L->ms);
}

bool stage_loop_next(struct stage_loop *L)
{
    if (L->k >= 0) {                       /* the run in progress ended well */
        if (L->rt->op)
            op_prof_end(L->rt->op, L->k > 0 || L->repeat == 1);
        L->ms[L->k] = stage_now_ms() - L->t0;
    }
    if (++L->k >= L->repeat)
        return false;
    L->t0 = stage_now_ms();
    if (L->rt->op)
        op_prof_begin(L->rt->op);
    return true;
}

int stage_loop_end(struct stage_loop *L, int rc)
{
    ASSERT(rc || L->k == L->repeat);       /* left early only with an error */
    if (rc && L->k < L->repeat && L->rt->op)
        op_prof_end(L->rt->op, false);     /* the run that failed */
    if (!rc) {
        op_prof_report(stderr, L->what);
        stage_sort_ms(L->ms, L->repeat);
        L->tm.n = L->repeat;
        L->tm.median = L->ms[L->repeat / 2];
        L->tm.min = L->ms[0];
        L->tm.max = L->ms[L->repeat - 1];
    }
    free(L->ms);
    L->ms = NULL;
    return rc;
}

char *stage_timing_str(const struct stage_timing *tm, char *buf, size_t len)
{
    if (tm->n <= 1)
        snprintf(buf, len, "%.2f ms", tm->median);
    else
        snprintf(buf, len, "%.2f ms median of %d (min %.2f, max %.2f)", tm->median, tm->n,
                 tm->min, tm->max);
    return buf;
}

void stage_rt_log_memory(const struct stage_rt *rt)
{
    size_t w = rt->weights ? rt->weights->used : 0;

    if (rt->device != DEVICE_CUDA) {
        log_info("memory: host arenas: weights %.1f MiB + activations high-water %.1f MiB "
                 "(no device memory: CPU path)", MIB(w), MIB(rt->act.high_water));
        return;
    }
    size_t used = stage_rt_driver_used();
    log_info("memory: device peak %.1f MiB (arenas: weights %.1f + activations high-water %.1f + "
             "workspace %.1f), resident %.1f MiB; driver: %.1f MiB in use on cuda:%d (%+.1f since "
             "the stage started)", MIB(arena_device_peak()), MIB(w), MIB(rt->act.high_water),
             MIB(rt->work.used), MIB(arena_device_resident()), MIB(used), rt->cuda_index,
             MIB(used) - MIB(rt->drv_used0));
}

// ----------------------------------------------------------------------------
// request-side helpers (declared in stage.h)

int stage_act(struct stage_req *rq, size_t bytes)
{
    int rc = stage_rt_act(rq->rt, bytes);

    if (rc && rq->rt->device == DEVICE_CUDA)
        return stage_fail(rq, S3D_ENOMEM, "%s: cannot reserve %.1f MiB of activations on "
                          "cuda:%d (HINT: free device memory, or run with --device cpu)",
                          rq->opts->name, MIB(bytes), rq->rt->cuda_index);
    if (rc)
        return stage_fail(rq, S3D_ENOMEM, "%s: cannot reserve %.1f MiB of activations on the "
                          "host (HINT: free host memory, or use a smaller input)", rq->opts->name,
                          MIB(bytes));
    return 0;
}

void stage_loop(struct stage_req *rq, const char *what, struct stage_loop *L)
{
    stage_rt_loop(rq->rt, what, (int)stage_get_int(rq, "repeat"), L);
}
