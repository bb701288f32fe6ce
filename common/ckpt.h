/*
 * ckpt.h - one read-only view of any checkpoint file: safetensors or a PyTorch
 * zip (.pt/.pth/.ckpt), sniffed from the bytes, never from the name.
 *
 * Both readers (safetensors.c, torchzip.c) produce the same entry record
 * (sd.cpp's TensorStorage): a name, a dtype, a shape and strides in PyTorch
 * order, and a pointer to the first element inside the file mapping, with the
 * bounds of the storage it lives in (every element the shape/strides address is
 * inside [storage, storage + storage_nbytes), checked at open). Entries are
 * sorted bytewise by name for bsearch. Nested containers become dotted names
 * (state_dict.blocks.0.norm1.weight; list and tuple items are named by index).
 *
 * "FILE:KEY" opens FILE and keeps only the tensors under KEY, named relative to
 * it (torch: the sub-dictionary; safetensors: the "KEY." name prefix). If the
 * whole string names an existing file, it is taken as a path with no key.
 *
 * Ownership: everything belongs to struct ckpt; entry data pointers are valid
 * until ckpt_close().
 */
#ifndef S3D_CKPT_H
#define S3D_CKPT_H

#include "tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ckpt_format { CKPT_UNKNOWN, CKPT_SAFETENSORS, CKPT_TORCHZIP };

struct ckpt_entry {
    char          *name;                       /* NUL-terminated, owned by the ckpt */
    enum dtype     dtype;
    int            ndim;                       /* 0 for a 0-d tensor */
    int64_t        shape[TENSOR_MAX_DIMS];
    int64_t        stride[TENSOR_MAX_DIMS];    /* elements; >= 0 */
    const uint8_t *data;                       /* element [0,...,0] */
    const uint8_t *storage;                    /* bounds of the backing storage */
    size_t         storage_nbytes;
};

struct ckpt {
    char               *path;       /* the file, without ":KEY" */
    enum ckpt_format    format;
    const uint8_t      *map;        /* the whole file, read-only */
    size_t              size;
    bool                mapped;     /* map came from mmap (else borrowed memory) */
    struct ckpt_entry  *entries;    /* sorted by name, n_entries */
    int                 n_entries, cap_entries;
    char              **meta;       /* safetensors __metadata__: key0, value0, key1, ... */
    int                 n_meta;     /* number of pairs */
    uint64_t            logical_bytes; /* sum of the entries' numel x dtype size */
    char                err[512];   /* reason of the last failure (no file name) */
};

/* The entries together may read at most CKPT_LOGICAL_PER_BYTE bytes per file byte
 * plus CKPT_LOGICAL_BASE as their shapes count them (ckpt_max_logical): a tensor
 * with stride 0 names many elements from one stored one, and a listing, a hash or
 * a load costs what the shape says, not what the file stores. Tied weights
 * (two names, one storage) double a file's logical size; 16 leaves room. */
#define CKPT_LOGICAL_PER_BYTE 16
#define CKPT_LOGICAL_BASE     (1ull << 30)

#define CKPT_QUIET 1   /* ckpt_open flag: do not log failures (the caller prints c->err) */

/* Open "FILE" or "FILE:KEY" (a FIFO, a device or a directory is refused without
 * blocking: opened O_NONBLOCK, then fstat). Returns 0, or S3D_EIO / S3D_EFORMAT /
 * S3D_ENOTFOUND / S3D_EINVAL (not a regular file) with the reason in c->err; without CKPT_QUIET it is also logged as one line
 * naming the file. On failure c holds nothing (ckpt_close is still safe). */
int  ckpt_open(struct ckpt *c, const char *path_key, int flags);
/* Open the regular file open as fd (consumed: closed on every path), e.g. one
 * that file_open_read() opened inside a job directory with its size checked.
 * label names it (c->path). Returns as ckpt_open; never logs. */
int  ckpt_open_fd(struct ckpt *c, int fd, const char *label);
/* The same over a caller buffer (borrowed, must outlive c); key may be NULL.
 * label names the buffer in messages. Never logs (see c->err). */
int  ckpt_open_mem(struct ckpt *c, const void *data, size_t size, const char *label,
                   const char *key);
void ckpt_close(struct ckpt *c);                 /* NULL-safe, idempotent */

/* The entry named name, or NULL (bsearch). */
const struct ckpt_entry *ckpt_find(const struct ckpt *c, const char *name);
/* A host tensor view of an entry (data points into the mapping: read only). */
struct tensor ckpt_entry_tensor(const struct ckpt_entry *e);
/* __metadata__ value for key, or NULL. */
const char *ckpt_meta(const struct ckpt *c, const char *key);
int64_t     ckpt_entry_numel(const struct ckpt_entry *e);

/* Copy logical elements [first, first + count) of e (row-major order of its
 * shape) into dst, contiguous, in the stored dtype. */
void ckpt_gather(const struct ckpt_entry *e, int64_t first, int64_t count, void *dst);

/* --- for the readers (safetensors.c, torchzip.c) --- */
/* Format the reason into c->err (through log_escape: names quoted from the file
 * cannot carry control characters into messages); returns code. */
int  ckpt_fail(struct ckpt *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Append an entry (name copied). Checks ndim, non-negative shape/stride, that
 * every addressed element lies in [storage, storage + storage_nbytes), and that
 * numel x dtype size fits in 63 bits and in what is left of ckpt_max_logical(c)
 * (all in 64-bit arithmetic): returns S3D_EFORMAT via ckpt_fail otherwise.
 * data = storage + offset_elems*dtype size. */
uint64_t ckpt_max_logical(const struct ckpt *c);
int  ckpt_add(struct ckpt *c, const char *name, enum dtype dt, int ndim,
              const int64_t *shape, const int64_t *stride, const uint8_t *storage,
              size_t storage_nbytes, int64_t offset_elems);

#endif
