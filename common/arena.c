/*
 * arena.c - host, pinned and device bump arenas. See arena.h.
 */
#include "arena.h"
#include "check.h"
#include "err.h"
#include "log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t device_resident;   /* capacity of live device arenas */
static size_t device_used;       /* bytes handed out now, over all device arenas */
static size_t device_used_peak;  /* max of device_used over the process's life */

static void device_used_add(const struct arena *a, size_t old_used)
{
    if (a->kind != ARENA_DEVICE || a->plan)
        return;
    device_used = device_used - old_used + a->used;
    if (device_used > device_used_peak)
        device_used_peak = device_used;
}

size_t arena_round(size_t bytes)
{
    return (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

static char cuda_why[160];       /* why no device is usable, once probed */

bool s3d_cuda_available(void)
{
    static int cached = -1;
    int n = 0;

    if (cached < 0) {
        cudaError_t e = cudaGetDeviceCount(&n);
        cached = (e == cudaSuccess && n > 0);
        if (!cached) {
            snprintf(cuda_why, sizeof(cuda_why), "%s", e == cudaSuccess ? "no CUDA device"
                     : cudaGetErrorString(e));
            log_debug("no usable CUDA device: %s", cuda_why);
            (void)cudaGetLastError();
        }
    }
    return cached == 1;
}

const char *s3d_cuda_why_not(void)
{
    return s3d_cuda_available() ? "" : cuda_why;
}

int arena_init(struct arena *a, enum arena_kind kind, const char *name, size_t size)
{
    memset(a, 0, sizeof(*a));
    a->kind = kind;
    a->name = name;
    size = arena_round(size);
    if (size == 0)
        return 0;
    switch (kind) {
    case ARENA_HOST:
        if (posix_memalign((void **)&a->base, ARENA_ALIGN, size) != 0)
            a->base = NULL;
        break;
    case ARENA_PINNED:
        if (!s3d_cuda_available()) {   /* no driver: plain memory still works for staging */
            if (posix_memalign((void **)&a->base, ARENA_ALIGN, size) != 0)
                a->base = NULL;
            a->kind = ARENA_HOST;
        } else if (cudaMallocHost((void **)&a->base, size) != cudaSuccess) {
            (void)cudaGetLastError();
            a->base = NULL;
        }
        break;
    case ARENA_DEVICE:
        if (!s3d_cuda_available()) {
            log_error("arena %s: no CUDA device for %zu bytes; HINT: run with --device cpu",
                      name, size);
            return S3D_EDEVICE;
        }
        if (cudaMalloc((void **)&a->base, size) != cudaSuccess) {
            size_t free_b = 0, total_b = 0;
            (void)cudaGetLastError();
            cudaMemGetInfo(&free_b, &total_b);
            log_error("arena %s: cannot allocate %.1f MiB of device memory (%.1f MiB free of %.1f)",
                      name, size / 1048576.0, free_b / 1048576.0, total_b / 1048576.0);
            a->base = NULL;
            return S3D_ENOMEM;
        }
        device_resident += size;
        break;
    }
    if (!a->base) {
        log_error("arena %s: cannot allocate %.1f MiB of host memory", name, size / 1048576.0);
        return S3D_ENOMEM;
    }
    a->size = size;
    return 0;
}

void arena_plan_init(struct arena *a, enum arena_kind kind, const char *name)
{
    memset(a, 0, sizeof(*a));
    a->kind = kind;
    a->name = name;
    a->size = SIZE_MAX;
    a->plan = true;
}

void arena_free(struct arena *a)
{
    if (a && a->plan) {
        memset(a, 0, sizeof(*a));
        return;
    }
    if (!a || !a->base)
        return;
    switch (a->kind) {
    case ARENA_HOST:   free(a->base); break;
    case ARENA_PINNED: CUDA_CHECK(cudaFreeHost(a->base)); break;
    case ARENA_DEVICE:
        CUDA_CHECK(cudaFree(a->base));
        device_resident -= a->size;
        device_used -= a->used;
        break;
    }
    a->base = NULL;
    a->size = a->used = 0;
}

void *arena_alloc(struct arena *a, size_t bytes)
{
    size_t need = arena_round(bytes);
    void  *p;

    if (need > a->size - a->used)
        return NULL;
    p = a->plan ? NULL : a->base + a->used;
    a->used += need;
    device_used_add(a, a->used - need);
    if (a->used > a->high_water)
        a->high_water = a->used;
    return p;
}

void *arena_must_alloc(struct arena *a, size_t bytes)
{
    void *p = arena_alloc(a, bytes);

    if (!p && !a->plan) {
        log_error("arena %s: %zu bytes requested, %zu of %zu used", a->name ? a->name : "?",
                  bytes, a->used, a->size);
        s3d_fatal(__FILE__, __LINE__, "arena_alloc", "S3D_ENOMEM", "arena sized too small");
    }
    return p;
}

struct tensor arena_tensor(struct arena *a, enum dtype dt, const int64_t *shape, int ndim)
{
    struct tensor t = tensor_view(NULL, dt, a->kind == ARENA_DEVICE ? DEVICE_CUDA : DEVICE_HOST,
                                  shape, ndim);

    t.data = arena_must_alloc(a, tensor_nbytes(&t));
    return t;
}

void arena_reset(struct arena *a)
{
    size_t old = a->used;

    a->used = 0;
    device_used_add(a, old);
}

size_t arena_mark(const struct arena *a) { return a->used; }

void arena_transient(struct arena *a, size_t bytes)
{
    size_t mark = arena_mark(a);

    arena_must_alloc(a, bytes);
    arena_release(a, mark);
}

void arena_release(struct arena *a, size_t mark)
{
    size_t old = a->used;

    ASSERT(mark <= a->used);
    a->used = mark;
    device_used_add(a, old);
}

size_t arena_device_resident(void) { return device_resident; }

size_t arena_device_peak(void) { return device_used_peak; }
