/*
 * weights.h - bind a stage's weights from any checkpoint, by name and shape.
 *
 * Two phases (style.md §2.9):
 *   1. declare: weights_bind(w, &L->qkv_w, SHAPE(3 * C, C), "blocks.%d.attn.qkv.weight", l)
 *      for every tensor the stage reads. The name is looked up under the prefix
 *      given to weights_open; a missing tensor (S3D_ENOTFOUND) or a shape that
 *      differs (S3D_ESHAPE) is logged with the full name, expected and found
 *      shape. The target tensor gets its dtype and shape now, data = NULL.
 *   2. upload: weights_arena_bytes(w) is the exact size of a weights arena for
 *      everything declared; weights_upload() fills it: each tensor's logical
 *      contents (strided views made contiguous) converted exactly to the target
 *      dtype (common/dtype.h), in chunks: for device uploads through a bounded
 *      pinned staging arena (cudaMemcpyAsync double-buffered); a host or pinned
 *      arena is converted into in place (the same loop, no copy).
 * Then weights_report_unused(w, prefix) warns about each tensor under the prefix
 * that nobody bound (naming bugs) and returns the count; weights_close unmaps.
 *
 *     struct weights w;
 *     if (weights_open(&w, "ss_generator.ckpt:state_dict", "_base_models.generator.",
 *                      DTYPE_F16))
 *         return rc;
 *     ... weights_bind(...) for every tensor; stop at the first error ...
 *     arena_init(&wa, ARENA_DEVICE, "weights", weights_arena_bytes(&w));
 *     arena_init(&stage, ARENA_PINNED, "staging", 64 << 20);
 *     weights_upload(&w, &wa, &stage);
 *     weights_report_unused(&w, "");
 *     weights_close(&w);
 */
#ifndef S3D_WEIGHTS_H
#define S3D_WEIGHTS_H

#include "arena.h"
#include "ckpt.h"
#include "tensor.h"

#include <stdbool.h>
#include <stddef.h>

struct weights_bind_rec {
    const struct ckpt_entry *src;     /* into w->ck */
    struct tensor           *dst;     /* the stage's field; data set by weights_upload */
    enum dtype               dtype;   /* target dtype */
    size_t                   nbytes;  /* numel * dtype_size(dtype) */
};

struct weights {
    struct ckpt               ck;
    char                     *source;     /* "FILE[:KEY]" as opened, for messages */
    char                     *prefix;     /* prepended to every bound name ("" if none) */
    enum dtype                dtype;      /* default target for float tensors */
    struct weights_bind_rec  *binds;
    int                       n_binds, cap_binds;
    bool                     *used;       /* per ck.entries[i]: bound at least once */
    size_t                    arena_bytes;/* sum of arena_round(nbytes) over binds */
};

/* Open "FILE" or "FILE:KEY" (any format, sniffed). prefix (may be NULL) is
 * prepended to every name bound; dtype is the target of float tensors (integer
 * and bool tensors keep theirs). Returns 0 or the ckpt_open error (logged). */
int  weights_open(struct weights *w, const char *path_key, const char *prefix, enum dtype dtype);
void weights_close(struct weights *w);       /* NULL-safe; bound tensors' data stay valid */

/* Declare dst = tensor prefix+name (printf format) with the given shape
 * (shape NULL: take the file's shape), target dtype = w->dtype for float
 * tensors. Returns 0, S3D_ENOTFOUND or S3D_ESHAPE (logged with both shapes). */
int  weights_bind(struct weights *w, struct tensor *dst, const int64_t *shape, int ndim,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The same with an explicit target dtype (e.g. DTYPE_F32 for tensors kept in fp32). */
int  weights_bind_as(struct weights *w, struct tensor *dst, enum dtype dt, const int64_t *shape,
                     int ndim, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* prefix+name's entry, or NULL; binds nothing (for detecting a config from shapes). */
const struct ckpt_entry *weights_find(const struct weights *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Exact size of an arena (ARENA_ALIGN-rounded per tensor) holding every bound tensor. */
size_t weights_arena_bytes(const struct weights *w);
/* Copy every bound tensor into dst (HOST, PINNED or DEVICE arena); a DEVICE dst
 * through staging (HOST or PINNED, any size >= 2 * 64 bytes; larger = fewer
 * chunks), a host one in place (staging then only sizes the chunks). Sets each
 * dst tensor's data/device/strides (contiguous). Returns 0, or S3D_ENOMEM
 * (logged) when dst is too small. */
int  weights_upload(struct weights *w, struct arena *dst, struct arena *staging);
/* weights_upload of binds [first, first + n_binds) only (in bind order: the
 * n-th of them at dst's n-th ARENA_ALIGN-rounded place); the others keep their
 * data. Same returns. */
int  weights_upload_binds(struct weights *w, int first, int n_binds, struct arena *dst,
                          struct arena *staging);
/* The exact arena size of binds [first, first + n_binds) (weights_arena_bytes
 * for all of them). */
size_t weights_binds_bytes(const struct weights *w, int first, int n_binds);
/* Init dst as an arena `name` of kind (HOST, PINNED or DEVICE) holding exactly
 * binds [first, first + n_binds) and upload them through a 64 MiB staging arena
 * (PINNED for a DEVICE dst, else HOST; freed before returning). 0, or a
 * negative s3d_err (logged) with dst freed. A model that keeps some weights
 * apart (common/stage_blocks.h: blocks streamed from pinned host memory) loads its
 * binds in two ranges this way. */
int  weights_load_binds(struct weights *w, int first, int n_binds, struct arena *dst,
                        enum arena_kind kind, const char *name);
/* Warn once per tensor under prefix+sub (sub may be "") that no bind used;
 * returns how many. */
int  weights_report_unused(const struct weights *w, const char *sub);

/* weights_open, where a path naming an existing file stands for "path:key"
 * (the official containers: key "state_dict" for the Lightning .ckpt files,
 * "model" for MoGe's model.pt); a path that is no file ("FILE:KEY") is passed
 * as it is. Same returns as weights_open. */
int  weights_open_key(struct weights *w, const char *path, const char *key, const char *prefix,
                      enum dtype dtype);
/* After every bind: init dst as a "weights" arena of weights_arena_bytes(w)
 * (DEVICE for DEVICE_CUDA, else HOST), upload through a 64 MiB staging arena
 * (PINNED for DEVICE_CUDA, else HOST; freed before returning), then
 * weights_report_unused(w, ""). 0, or a negative s3d_err (logged) with dst
 * freed. w stays open (the caller closes it). */
int  weights_load_arena(struct weights *w, struct arena *dst, enum device dev);

#endif
