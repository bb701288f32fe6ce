/*
 * arena.h - bump allocators for host, pinned host and device memory.
 *
 * The only cudaMalloc/cudaFree/cudaMallocHost/cudaFreeHost calls in the project
 * live in arena.c. A stage sizes its arenas once (weights exactly from the bind
 * table, activations from the largest request) and resets the activation arena
 * after each request, so nothing is allocated on the request path.
 *
 * Sizing by a dry run: a planning arena (arena_plan_init) hands out no memory
 * but counts bytes exactly as a real arena of its kind would. Run the code
 * that allocates (a forward with its ops skipped, an allocation list) once on
 * a planning arena; its high_water is the size of the real arena:
 *
 *     struct arena plan;
 *     arena_plan_init(&plan, ARENA_DEVICE, "act");
 *     my_alloc_list(&plan, ...);          (arena_tensor gives data == NULL here)
 *     arena_init(&act, ARENA_DEVICE, "act", plan.high_water);
 *
 * The ops that take scratch memory from the arena they are given (op_conv2d,
 * op_groupnorm, op_resize: kernels/ops_conv.h, ops_image.h) count it there and
 * launch nothing when that arena is a planning one, so a forward in plan mode
 * calls them as it does when it runs and skips only the other ops.
 *
 * Every arena keeps a high-water mark of bytes handed out; arena_device_peak()
 * gives the process-wide peak of bytes handed out by all device arenas at once
 * (what `status` reports, comparable to torch.cuda.max_memory_allocated()).
 */
#ifndef S3D_ARENA_H
#define S3D_ARENA_H

#include "tensor.h"

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum arena_kind { ARENA_HOST, ARENA_PINNED, ARENA_DEVICE };

struct arena {
    enum arena_kind kind;
    const char     *name;       /* for messages: "weights", "act", ... */
    char           *base;
    size_t          size;       /* capacity in bytes */
    size_t          used;       /* bytes handed out (incl. alignment padding) */
    size_t          high_water; /* max of used since init */
    bool            plan;       /* a planning arena: no memory, no limit (arena_plan_init) */
};

#define ARENA_ALIGN 256          /* enough for cp.async, TMA and any vector load */

/* Reserve size bytes of the given kind. Returns 0, or S3D_ENOMEM / S3D_EDEVICE
 * after logging the arena name and size. size 0 is allowed (an empty arena). */
int   arena_init(struct arena *a, enum arena_kind kind, const char *name, size_t size);
/* A planning arena of the given kind: holds no memory and has no limit;
 * arena_alloc and arena_must_alloc return NULL and arena_tensor a tensor with
 * data NULL (device from kind), while used, high_water, marks and releases
 * behave exactly as in a real arena (same alignment). Not counted in the
 * device totals below. */
void  arena_plan_init(struct arena *a, enum arena_kind kind, const char *name);
/* Release the memory; a zeroed or already-freed arena is a no-op. */
void  arena_free(struct arena *a);
/* Bytes aligned to ARENA_ALIGN, or NULL when the arena is full (nothing logged:
 * the caller knows what it was allocating). A planning arena counts the bytes
 * and returns NULL. */
void *arena_alloc(struct arena *a, size_t bytes);
/* Like arena_alloc but an exhausted arena is an internal fault (aborts);
 * NULL only from a planning arena. */
void *arena_must_alloc(struct arena *a, size_t bytes);
/* A contiguous tensor in the arena; aborts when the arena is full. */
struct tensor arena_tensor(struct arena *a, enum dtype dt, const int64_t *shape, int ndim);
void  arena_reset(struct arena *a);                 /* used = 0; high_water kept */
size_t arena_mark(const struct arena *a);           /* current position */
void  arena_release(struct arena *a, size_t mark);  /* pop back to a mark */
/* Round a byte count up to the arena alignment (for sizing arenas). */
size_t arena_round(size_t bytes);
/* A buffer of bytes taken and given back at once (an op's scratch, in plan
 * mode): moves the high-water mark as arena_alloc + arena_release would;
 * aborts when the arena is full. */
void  arena_transient(struct arena *a, size_t bytes);

/* Device bytes reserved by live device arenas (resident), and the peak over the
 * process's life of the bytes handed out by all device arenas together. */
size_t arena_device_resident(void);
size_t arena_device_peak(void);

/* True when a CUDA device can be used; logs why not at debug level. */
bool s3d_cuda_available(void);
/* Why no CUDA device can be used ("CUDA driver version is insufficient ...",
 * "no CUDA device"); "" when one can. */
const char *s3d_cuda_why_not(void);

#ifdef __cplusplus
}
#endif
#endif
