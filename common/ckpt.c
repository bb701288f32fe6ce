/*
 * ckpt.c - open any checkpoint (sniffed), FILE:KEY selection, sorted entry
 * table, logical-order gather. See ckpt.h.
 */
#include "ckpt.h"
#include "err.h"
#include "fileio.h"
#include "log.h"
#include "safetensors.h"
#include "torchzip.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int ckpt_fail(struct ckpt *c, int code, const char *fmt, ...)
{
    char raw[sizeof(c->err)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    log_escape(c->err, sizeof(c->err), raw, 0);    /* names from the file, made visible */
    return code;
}

int64_t ckpt_entry_numel(const struct ckpt_entry *e)
{
    int64_t n = 1;

    for (int i = 0; i < e->ndim; i++)
        n *= e->shape[i];
    return n;
}

uint64_t ckpt_max_logical(const struct ckpt *c)
{
    return CKPT_LOGICAL_PER_BYTE * (uint64_t)c->size + CKPT_LOGICAL_BASE;
}

int ckpt_add(struct ckpt *c, const char *name, enum dtype dt, int ndim,
             const int64_t *shape, const int64_t *stride, const uint8_t *storage,
             size_t storage_nbytes, int64_t offset_elems)
{
    struct ckpt_entry *e;
    size_t es = dtype_size(dt);
    uint64_t last = 0;         /* largest addressed element index, from the offset */
    bool empty = false;

    if (ndim < 0 || ndim > TENSOR_MAX_DIMS)
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': %d dimensions (at most %d supported)",
                         name, ndim, TENSOR_MAX_DIMS);
    if (offset_elems < 0)
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': negative storage offset", name);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || stride[i] < 0)
            return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': negative size or stride in "
                             "dimension %d", name, i);
        if (shape[i] == 0)
            empty = true;
    }
    /* its logical size (numel x dtype size) in 64 bits: stride 0 (an expanded view)
     * addresses few stored elements but may name 2^64 of them */
    if (!empty) {
        uint64_t bytes = es;

        for (int i = 0; i < ndim; i++) {
            if ((uint64_t)shape[i] > (uint64_t)INT64_MAX / bytes)
                return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': its shape holds more than 2^63 "
                                 "bytes (dimension %d is %lld)", name, i, (long long)shape[i]);
            bytes *= (uint64_t)shape[i];
        }
        if (bytes > ckpt_max_logical(c) - c->logical_bytes)
            return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': %llu bytes as its shape reads them; "
                             "with the tensors before it that is more than %llu bytes for a "
                             "%zu-byte file (views with stride 0 repeat their elements; "
                             "HINT: save such tensors with .contiguous())", name,
                             (unsigned long long)bytes, (unsigned long long)ckpt_max_logical(c),
                             c->size);
        c->logical_bytes += bytes;
    }
    if (!empty) {
        /* overflow-safe: every term is bounded by the storage size before adding */
        uint64_t cap = storage_nbytes / es;

        last = (uint64_t)offset_elems;
        for (int i = 0; i < ndim && last < cap; i++) {
            uint64_t s = (uint64_t)stride[i], m = (uint64_t)shape[i] - 1;

            if (m && s > (cap - last) / m) {
                last = cap;
                break;
            }
            last += m * s;
        }
        if (last >= cap)
            return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': shape, stride and offset address "
                             "past its storage (%zu bytes)", name, storage_nbytes);
    } else if ((uint64_t)offset_elems > storage_nbytes / es) {
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': storage offset past its storage", name);
    }
    if (c->n_entries == c->cap_entries) {
        int cap = c->cap_entries ? c->cap_entries * 2 : 64;
        struct ckpt_entry *ne = realloc(c->entries, (size_t)cap * sizeof(*ne));

        if (!ne)
            return ckpt_fail(c, S3D_ENOMEM, "out of memory");
        c->entries = ne;
        c->cap_entries = cap;
    }
    e = &c->entries[c->n_entries];
    memset(e, 0, sizeof(*e));
    e->name = strdup(name);
    if (!e->name)
        return ckpt_fail(c, S3D_ENOMEM, "out of memory");
    e->dtype = dt;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        e->stride[i] = stride[i];
    }
    e->storage = storage;
    e->storage_nbytes = storage_nbytes;
    e->data = storage + (size_t)offset_elems * es;
    c->n_entries++;
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct ckpt_entry *)a)->name, ((const struct ckpt_entry *)b)->name);
}

/* Keep only the entries under key (renamed relative to it), then sort and
 * reject duplicate names. */
static int ckpt_finish(struct ckpt *c, const char *key)
{
    if (key && *key) {
        size_t kl = strlen(key);
        int m = 0;

        for (int i = 0; i < c->n_entries; i++)
            if (!strcmp(c->entries[i].name, key))
                return ckpt_fail(c, S3D_EINVAL, "key '%s' is a tensor, not a dictionary "
                                 "(HINT: name its parent key)", key);
        for (int i = 0; i < c->n_entries; i++) {
            struct ckpt_entry *e = &c->entries[i];

            if (!strncmp(e->name, key, kl) && e->name[kl] == '.') {
                memmove(e->name, e->name + kl + 1, strlen(e->name + kl + 1) + 1);
                c->entries[m++] = *e;
            } else {
                free(e->name);
            }
        }
        c->n_entries = m;
        if (!m)
            return ckpt_fail(c, S3D_ENOTFOUND, "no tensors under key '%s' (HINT: `sam3d "
                             "inspect FILE` lists the names)", key);
    }
    if (c->n_entries)
        qsort(c->entries, (size_t)c->n_entries, sizeof(*c->entries), entry_cmp);
    for (int i = 1; i < c->n_entries; i++)
        if (!strcmp(c->entries[i].name, c->entries[i - 1].name))
            return ckpt_fail(c, S3D_EFORMAT, "two tensors are both named '%s'",
                             c->entries[i].name);
    return 0;
}

static bool is_legacy_torch(const uint8_t *p, size_t n)
{
    /* protocol-2 pickle of torch's magic number 0x1950a86a20f9469cfc6c (LONG1, 10 bytes) */
    static const uint8_t magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                    0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

    return n >= sizeof(magic) && !memcmp(p, magic, sizeof(magic));
}

static int ckpt_parse(struct ckpt *c, const char *key)
{
    const uint8_t *p = c->map;
    int rc;

    if (c->size >= 4 && !memcmp(p, "PK\x03\x04", 4)) {
        c->format = CKPT_TORCHZIP;
        rc = torchzip_parse(c);
    } else if (is_legacy_torch(p, c->size)) {
        return ckpt_fail(c, S3D_EFORMAT, "legacy (pre-1.6, non-zip) PyTorch file (HINT: "
                         "re-save it with a current torch: python -c \"import torch; "
                         "torch.save(torch.load('OLD', weights_only=False), 'NEW')\")");
    } else if (c->size >= 9 && p[8] == '{') {
        c->format = CKPT_SAFETENSORS;
        rc = safetensors_parse(c);
    } else if (c->size >= 2 && p[0] == 0x80 && p[1] <= 5) {
        return ckpt_fail(c, S3D_EFORMAT, "a bare pickle, not a checkpoint container (HINT: "
                         "save it with torch.save, or as safetensors)");
    } else {
        return ckpt_fail(c, S3D_EFORMAT, "not a checkpoint (neither safetensors nor a "
                         "PyTorch zip)");
    }
    if (rc)
        return rc;
    return ckpt_finish(c, key);
}

/* Release everything c holds but its failure reason; returns rc. */
static int close_keep_err(struct ckpt *c, int rc)
{
    char err[sizeof(c->err)];

    memcpy(err, c->err, sizeof(err));
    ckpt_close(c);
    memcpy(c->err, err, sizeof(err));
    return rc;
}

int ckpt_open_mem(struct ckpt *c, const void *data, size_t size, const char *label,
                  const char *key)
{
    int rc;

    memset(c, 0, sizeof(*c));
    c->path = strdup(label ? label : "(memory)");
    if (!c->path)
        return ckpt_fail(c, S3D_ENOMEM, "out of memory");
    c->map = data;
    c->size = size;
    rc = ckpt_parse(c, key);
    return rc ? close_keep_err(c, rc) : 0;
}

/* Map the regular file open as fd (consumed, size bytes) into c, which holds path. */
static int map_fd(struct ckpt *c, int fd, uint64_t size)
{
    void *map;

    if (size == 0) {
        close(fd);
        return ckpt_fail(c, S3D_EFORMAT, "empty file");
    }
    if (size > SIZE_MAX) {
        close(fd);
        return ckpt_fail(c, S3D_EFORMAT, "%llu bytes do not fit the address space",
                         (unsigned long long)size);
    }
    map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return ckpt_fail(c, S3D_EIO, "mmap failed: %s", strerror(errno));
    c->map = map;
    c->size = (size_t)size;
    c->mapped = true;
    return 0;
}

/* Map fd (size bytes; consumed) and parse; on failure c holds only the reason. */
static int open_fd(struct ckpt *c, int fd, uint64_t size, const char *label, const char *key)
{
    int rc;

    c->path = strdup(label);
    if (!c->path) {
        close(fd);
        return ckpt_fail(c, S3D_ENOMEM, "out of memory");
    }
    rc = map_fd(c, fd, size);
    if (!rc)
        rc = ckpt_parse(c, key);
    return rc ? close_keep_err(c, rc) : 0;
}

int ckpt_open(struct ckpt *c, const char *path_key, int flags)
{
    struct stat st;
    const char *key = NULL;
    char *path;
    int fd, rc;

    memset(c, 0, sizeof(*c));
    path = strdup(path_key);
    if (!path)
        return ckpt_fail(c, S3D_ENOMEM, "out of memory");
    if (stat(path, &st) != 0) {
        char *colon = strrchr(path, ':');

        if (colon && colon != path) {
            *colon = 0;
            key = colon + 1;
        }
    }
    /* a FIFO, a device or a directory is refused without blocking (fileio.h) */
    {
        char why[200];
        uint64_t size = 0;

        fd = file_open_read(AT_FDCWD, path, 0, 0, &size, why, sizeof(why));
        if (fd < 0)
            rc = ckpt_fail(c, errno == ENOENT ? S3D_ENOTFOUND : errno == EINVAL ? S3D_EINVAL
                           : S3D_EIO, "%s%s", why, errno == EINVAL ? " (HINT: give the "
                           "checkpoint file itself)" : "");
        else
            rc = open_fd(c, fd, size, path, key);
    }
    if (rc && !(flags & CKPT_QUIET))
        log_error("%s: %s", path, c->err);
    free(path);
    return rc;
}

int ckpt_open_fd(struct ckpt *c, int fd, const char *label)
{
    struct stat st;

    memset(c, 0, sizeof(*c));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ckpt_fail(c, S3D_EINVAL, "not a regular file");
    }
    return open_fd(c, fd, (uint64_t)st.st_size, label, NULL);
}

void ckpt_close(struct ckpt *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n_entries; i++)
        free(c->entries[i].name);
    free(c->entries);
    for (int i = 0; i < 2 * c->n_meta; i++)
        free(c->meta[i]);
    free(c->meta);
    if (c->mapped && c->map)
        munmap((void *)c->map, c->size);
    free(c->path);
    memset(c, 0, sizeof(*c));
}

const struct ckpt_entry *ckpt_find(const struct ckpt *c, const char *name)
{
    struct ckpt_entry key = {0};

    if (!c->n_entries)
        return NULL;
    key.name = (char *)name;
    return bsearch(&key, c->entries, (size_t)c->n_entries, sizeof(key), entry_cmp);
}

struct tensor ckpt_entry_tensor(const struct ckpt_entry *e)
{
    struct tensor t;

    memset(&t, 0, sizeof(t));
    t.dtype = e->dtype;
    t.device = DEVICE_HOST;
    t.ndim = e->ndim;
    for (int i = 0; i < e->ndim; i++) {
        t.shape[i] = e->shape[i];
        t.stride[i] = e->stride[i];
    }
    t.data = (void *)e->data;
    return t;
}

const char *ckpt_meta(const struct ckpt *c, const char *key)
{
    for (int i = 0; i < c->n_meta; i++)
        if (c->meta[2 * i] && !strcmp(c->meta[2 * i], key))
            return c->meta[2 * i + 1];
    return NULL;
}

void ckpt_gather(const struct ckpt_entry *e, int64_t first, int64_t count, void *dst)
{
    size_t es = dtype_size(e->dtype);
    int64_t idx[TENSOR_MAX_DIMS];
    int nd = e->ndim;
    uint8_t *o = dst;

    ASSERT(first >= 0 && count >= 0 && first + count <= ckpt_entry_numel(e));
    if (!count)
        return;
    if (nd == 0) {
        memcpy(o, e->data, es);
        return;
    }
    for (int d = nd - 1; d >= 0; d--) {   /* unravel first */
        idx[d] = first % e->shape[d];
        first /= e->shape[d];
    }
    while (count > 0) {
        int64_t off = 0;
        int64_t run = e->shape[nd - 1] - idx[nd - 1];

        for (int d = 0; d < nd; d++)
            off += idx[d] * e->stride[d];
        if (run > count)
            run = count;
        if (e->stride[nd - 1] == 1) {
            memcpy(o, e->data + (size_t)off * es, (size_t)run * es);
        } else {
            for (int64_t k = 0; k < run; k++)
                memcpy(o + (size_t)k * es,
                       e->data + (size_t)(off + k * e->stride[nd - 1]) * es, es);
        }
        o += (size_t)run * es;
        count -= run;
        idx[nd - 1] += run;
        for (int d = nd - 1; d > 0 && idx[d] >= e->shape[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
        }
    }
}
