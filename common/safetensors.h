/*
 * safetensors.h - the safetensors container: reader (into struct ckpt) and writer.
 *
 * Format (huggingface/safetensors): u64 little-endian N, then N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [2,3], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * then the data buffer; offsets are relative to the buffer (byte 8 + N). Tensors
 * are contiguous, row-major, little-endian, and never overlap.
 *
 * Checks at open: N <= file size - 8 and N <= 100 MB (so 2^60 fails), valid JSON
 * whose top level is an object, each entry an object with a known dtype string,
 * a shape of non-negative integers (at most TENSOR_MAX_DIMS), two integer offsets
 * with begin <= end <= buffer size and end - begin == numel * dtype size, no two
 * tensors overlapping, no duplicate names, __metadata__ values all strings.
 *
 * Writer: header padded with spaces so the data starts at a multiple of 64 bytes;
 * the file is written to a fresh "<name>.tmp.XXXXXX" created O_CREAT|O_EXCL|
 * O_NOFOLLOW beside it (fileio.h), then renamed over the name, so a reader
 * never sees a half-written file and a symlink planted under either name is
 * never written through.
 */
#ifndef S3D_SAFETENSORS_H
#define S3D_SAFETENSORS_H

#include "ckpt.h"
#include "tensor.h"

#define SAFETENSORS_MAX_HEADER (100u << 20)

/* Parse c->map[0..c->size) as safetensors, appending entries to c (unsorted)
 * and setting c->meta. Returns 0 or S3D_EFORMAT with the reason in c->err. */
int safetensors_parse(struct ckpt *c);

/* Open path (no ":KEY") and require the safetensors format; logs failures.
 * The same struct ckpt as ckpt_open, for artifacts. */
int safetensors_open(struct ckpt *c, const char *path);

struct st_write_item {
    const char   *name;
    struct tensor t;     /* host tensor, any strides; its logical contents are written */
};

/* Write n tensors and n_meta (key, value) string pairs (meta_kv[2*i], [2*i+1])
 * to path atomically. Returns 0, S3D_EINVAL (duplicate/empty name, logged) or
 * S3D_EIO (logged with the path and errno text, errno left set to it: ENOSPC
 * for a full disk; no file is left behind). */
int safetensors_write(const char *path, const struct st_write_item *items, int n,
                      const char *const *meta_kv, int n_meta);
/* The same as the file name in the directory open as dirfd (a job directory);
 * label names it in messages (NULL: name). */
int safetensors_write_at(int dirfd, const char *name, const char *label,
                         const struct st_write_item *items, int n,
                         const char *const *meta_kv, int n_meta);

/* The same file written in steps, its tensors' data in any order and from any
 * threads (one item per call; pwrite at the item's offset), so that a stage can
 * write outputs that are done while it computes the others: st_writer_open checks
 * the n items' names, plans the header from their dtypes and shapes (the data of
 * items[] need not be final yet: only their dtype, shape and, at st_writer_put, the
 * data of the item put) and writes it to a temporary file beside `name`;
 * st_writer_put writes item i's data (items must be the same array every call);
 * st_writer_commit puts the file in place once every item was put (fsync, rename);
 * st_writer_abort closes and removes the temporary file. Errors as
 * safetensors_write_at (logged; after open, commit and abort errno holds the first
 * failure). The bytes are those safetensors_write_at writes for the same items. */
struct st_writer {
    int       dirfd, fd;        /* fd: the temporary file, -1 once committed or aborted */
    char      tmp[512], name[256], label[512];
    uint64_t  data0;            /* file offset of the data block */
    uint64_t *ofs;              /* per item: its data's offset in the data block */
    int       n;
    int       why;              /* errno of the first failure */
};
int  st_writer_open(struct st_writer *w, int dirfd, const char *name, const char *label,
                    const struct st_write_item *items, int n, const char *const *meta_kv,
                    int n_meta);
int  st_writer_put(struct st_writer *w, const struct st_write_item *items, int i);
int  st_writer_commit(struct st_writer *w);
void st_writer_abort(struct st_writer *w);

#endif
