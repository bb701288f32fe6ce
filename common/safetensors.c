/*
 * safetensors.c - safetensors reader (into struct ckpt) and atomic writer.
 * See safetensors.h for the format and the checks.
 */
#include "safetensors.h"
#include "err.h"
#include "json_min.h"
#include "fileio.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// reader

struct span { uint64_t begin, end; const char *name; };

static int span_cmp(const void *a, const void *b)
{
    const struct span *x = a, *y = b;

    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static uint64_t rd_u64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Parse the "__metadata__" object at node v into c->meta. */
static int parse_meta(struct ckpt *c, const struct json_doc *d, int v)
{
    int i = v + 1;
    int n = d->nodes[v].size;

    if (d->nodes[v].type != JSON_OBJECT)
        return ckpt_fail(c, S3D_EFORMAT, "__metadata__ is not an object");
    c->meta = calloc((size_t)n * 2 + 1, sizeof(char *));
    if (!c->meta)
        return ckpt_fail(c, S3D_ENOMEM, "out of memory");
    for (int k = 0; k < n; k++) {
        int val = d->nodes[i].next;
        size_t kl = d->nodes[i].end - d->nodes[i].start + 1;
        size_t vl = d->nodes[val].end - d->nodes[val].start + 1;

        if (d->nodes[val].type != JSON_STRING)
            return ckpt_fail(c, S3D_EFORMAT, "__metadata__ value %d is not a string", k);
        c->meta[2 * k] = malloc(kl);
        c->meta[2 * k + 1] = malloc(vl);
        c->n_meta = k + 1;
        if (!c->meta[2 * k] || !c->meta[2 * k + 1])
            return ckpt_fail(c, S3D_ENOMEM, "out of memory");
        if (json_string(d, i, c->meta[2 * k], kl) < 0 ||
            json_string(d, val, c->meta[2 * k + 1], vl) < 0)
            return ckpt_fail(c, S3D_EFORMAT, "__metadata__ entry %d: bad string", k);
        i = d->nodes[val].next;
    }
    return 0;
}

/* One tensor entry: node v is {"dtype":..., "shape":[...], "data_offsets":[b,e]}. */
static int parse_entry(struct ckpt *c, const struct json_doc *d, int v, const char *name,
                       const uint8_t *buf, uint64_t buf_len, struct span *sp)
{
    char dts[16];
    enum dtype dt;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t stride[TENSOR_MAX_DIMS];
    int64_t b, e;
    uint64_t numel = 1;
    int idt, ish, iof, ndim;

    if (d->nodes[v].type != JSON_OBJECT)
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': entry is not an object", name);
    idt = json_object_get(d, v, "dtype");
    ish = json_object_get(d, v, "shape");
    iof = json_object_get(d, v, "data_offsets");
    if (idt < 0 || ish < 0 || iof < 0)
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': needs dtype, shape and data_offsets",
                         name);
    if (json_string(d, idt, dts, sizeof(dts)) < 0 || !dtype_from_name(dts, &dt))
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': unknown dtype %.*s (HINT: supported: "
                         "F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)", name,
                         (int)(d->nodes[idt].end - d->nodes[idt].start > 20 ? 20 :
                               d->nodes[idt].end - d->nodes[idt].start),
                         d->text + d->nodes[idt].start);
    if (d->nodes[ish].type != JSON_ARRAY || d->nodes[ish].size > TENSOR_MAX_DIMS)
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': shape is not an array of at most %d "
                         "integers", name, TENSOR_MAX_DIMS);
    ndim = d->nodes[ish].size;
    for (int k = 0, i = ish + 1; k < ndim; k++, i = d->nodes[i].next) {
        if (!json_int64(d, i, &shape[k]) || shape[k] < 0)
            return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': dimension %d is not a "
                             "non-negative integer", name, k);
        if (shape[k] && numel > UINT64_MAX / 16 / (uint64_t)shape[k])
            return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': shape overflows", name);
        numel *= (uint64_t)shape[k];
    }
    {   /* row-major strides, in 64 bits (an empty dimension counts as 1) */
        int64_t s = 1;

        for (int k = ndim - 1; k >= 0; k--) {
            int64_t dim = shape[k] ? shape[k] : 1;

            stride[k] = s;
            if (k && s > INT64_MAX / 16 / dim)
                return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': shape overflows", name);
            s *= dim;
        }
    }
    if (d->nodes[iof].type != JSON_ARRAY || d->nodes[iof].size != 2 ||
        !json_int64(d, iof + 1, &b) || !json_int64(d, d->nodes[iof + 1].next, &e))
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': data_offsets is not [begin, end]", name);
    if (b < 0 || e < b)
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': data_offsets [%lld, %lld] are not "
                         "ordered", name, (long long)b, (long long)e);
    if ((uint64_t)e > buf_len)
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': data_offsets end %lld is past the data "
                         "(%llu bytes; file truncated?)", name, (long long)e,
                         (unsigned long long)buf_len);
    if ((uint64_t)(e - b) != numel * dtype_size(dt))
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': %lld bytes of data for %llu elements "
                         "of %s", name, (long long)(e - b), (unsigned long long)numel, dts);
    *sp = (struct span){(uint64_t)b, (uint64_t)e, NULL};
    return ckpt_add(c, name, dt, ndim, shape, stride, buf + b, (size_t)(e - b), 0);
}

int safetensors_parse(struct ckpt *c)
{
    struct json_doc d;
    struct span *spans = NULL;
    uint64_t hlen, buf_len;
    char jerr[160];
    char name[1024];
    int n_span = 0;
    int rc, i;

    if (c->size < 8)
        return ckpt_fail(c, S3D_EFORMAT, "safetensors: file shorter than its 8-byte header "
                         "length");
    hlen = rd_u64(c->map);
    if (hlen > c->size - 8)
        return ckpt_fail(c, S3D_EFORMAT, "safetensors: header length %llu is past the end of "
                         "the file (%zu bytes; truncated or not safetensors)",
                         (unsigned long long)hlen, c->size);
    if (hlen > SAFETENSORS_MAX_HEADER)
        return ckpt_fail(c, S3D_EFORMAT, "safetensors: header length %llu is over the %u-byte "
                         "limit", (unsigned long long)hlen, SAFETENSORS_MAX_HEADER);
    buf_len = c->size - 8 - hlen;
    rc = json_parse(&d, (const char *)c->map + 8, (size_t)hlen, jerr, sizeof(jerr));
    if (rc)
        return ckpt_fail(c, rc, "safetensors: header JSON: %s", jerr);
    if (d.nodes[0].type != JSON_OBJECT) {
        rc = ckpt_fail(c, S3D_EFORMAT, "safetensors: header is not a JSON object");
        goto out_json;
    }
    spans = calloc((size_t)d.nodes[0].size + 1, sizeof(*spans));
    if (!spans) {
        rc = ckpt_fail(c, S3D_ENOMEM, "out of memory");
        goto out_json;
    }
    i = 1;
    for (int k = 0; k < d.nodes[0].size; k++) {
        int v = d.nodes[i].next;

        if (json_string(&d, i, name, sizeof(name)) < 0) {
            rc = ckpt_fail(c, S3D_EFORMAT, "safetensors: tensor name %d is not a string of at "
                           "most %zu bytes", k, sizeof(name) - 1);
            goto out_spans;
        }
        if (!strcmp(name, "__metadata__")) {
            if (c->meta) {
                rc = ckpt_fail(c, S3D_EFORMAT, "safetensors: two __metadata__ entries");
                goto out_spans;
            }
            if ((rc = parse_meta(c, &d, v)))
                goto out_spans;
        } else {
            if ((rc = parse_entry(c, &d, v, name, c->map + 8 + hlen, buf_len, &spans[n_span])))
                goto out_spans;
            spans[n_span].name = c->entries[c->n_entries - 1].name;
            n_span++;
        }
        i = d.nodes[v].next;
    }
    qsort(spans, (size_t)n_span, sizeof(*spans), span_cmp);
    for (int k = 1, last = -1; k <= n_span; k++) {
        /* compare each non-empty span with the last non-empty one before it */
        int j = k - 1;

        if (spans[j].begin == spans[j].end)
            continue;
        if (last >= 0 && spans[j].begin < spans[last].end) {
            rc = ckpt_fail(c, S3D_EFORMAT, "safetensors: tensors '%s' and '%s' overlap",
                           spans[last].name, spans[j].name);
            goto out_spans;
        }
        last = j;
    }
    rc = 0;
out_spans:
    free(spans);
out_json:
    json_free(&d);
    return rc;
}

int safetensors_open(struct ckpt *c, const char *path)
{
    int rc = ckpt_open(c, path, CKPT_QUIET);

    if (!rc && c->format != CKPT_SAFETENSORS)
        rc = ckpt_fail(c, S3D_EFORMAT, "not a safetensors file (a PyTorch zip)");
    if (rc) {
        log_error("%s: %s", path, c->err);
        ckpt_close(c);
    }
    return rc;
}

// ----------------------------------------------------------------------------
// writer

struct sbuf { char *p; size_t n, cap; bool oom; };

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *np = realloc(b->p, cap);

        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_json_str(struct sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[8];

        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            sb_put(b, esc, 2);
        } else if (ch < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, s, 1);
        }
    }
    sb_put(b, "\"", 1);
}

int safetensors_write(const char *path, const struct st_write_item *items, int n,
                      const char *const *meta_kv, int n_meta)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    int dfd, rc;

    if (slash && (size_t)(slash - path) >= sizeof(dir)) {
        log_error("%s: path too long", path);
        return S3D_EINVAL;
    }
    snprintf(dir, sizeof(dir), "%.*s", slash ? (slash == path ? 1 : (int)(slash - path)) : 1,
             slash ? path : ".");
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        log_error("%s: cannot open its directory: %s (HINT: check the directory exists)", path,
                  strerror(errno));
        return S3D_EIO;
    }
    rc = safetensors_write_at(dfd, slash ? slash + 1 : path, path, items, n, meta_kv, n_meta);
    close(dfd);
    return rc;
}

int st_writer_open(struct st_writer *w, int dirfd, const char *name, const char *label,
                   const struct st_write_item *items, int n, const char *const *meta_kv,
                   int n_meta)
{
    struct sbuf h = {0};
    char num[64];
    uint64_t off = 0;
    uint8_t len8[8];
    int *ord = NULL;             /* data order: widest elements first */
    const char *path = label ? label : name;
    int rc = S3D_EIO;

    memset(w, 0, sizeof(*w));
    w->fd = -1;
    w->dirfd = dirfd;
    if (snprintf(w->name, sizeof(w->name), "%s", name) >= (int)sizeof(w->name) ||
        snprintf(w->label, sizeof(w->label), "%s", path) >= (int)sizeof(w->label)) {
        log_error("%s: name too long", path);
        return S3D_EINVAL;
    }
    for (int i = 0; i < n; i++) {
        if (!items[i].name || !items[i].name[0] || !strcmp(items[i].name, "__metadata__")) {
            log_error("%s: tensor %d has an empty or reserved name", path, i);
            return S3D_EINVAL;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(items[i].name, items[j].name)) {
                log_error("%s: tensor name '%s' given twice", path, items[i].name);
                return S3D_EINVAL;
            }
        ASSERT(items[i].t.device == DEVICE_HOST);
    }
    /* Data goes in order of element size, widest first (stable): with the data block
     * 64-byte aligned, every tensor then starts aligned to its element size, so readers
     * can use it in place (an F64 after an odd-length F16 would not be). The format has
     * no gaps between tensors, so ordering is the only way to align them. */
    ord = malloc(sizeof(*ord) * (size_t)(n > 0 ? n : 1));
    w->ofs = malloc(sizeof(*w->ofs) * (size_t)(n > 0 ? n : 1));
    if (!ord || !w->ofs) {
        log_error("%s: out of memory ordering %d tensors", path, n);
        rc = S3D_ENOMEM;
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        int j = i;

        while (j > 0 && dtype_size(items[ord[j - 1]].t.dtype) < dtype_size(items[i].t.dtype)) {
            ord[j] = ord[j - 1];
            j--;
        }
        ord[j] = i;
    }
    for (int k = 0; k < n; k++) {
        w->ofs[ord[k]] = off;
        off += tensor_nbytes(&items[ord[k]].t);
    }
    sb_str(&h, "{");
    if (n_meta > 0) {
        sb_str(&h, "\"__metadata__\":{");
        for (int k = 0; k < n_meta; k++) {
            if (k)
                sb_str(&h, ",");
            sb_json_str(&h, meta_kv[2 * k]);
            sb_str(&h, ":");
            sb_json_str(&h, meta_kv[2 * k + 1]);
        }
        sb_str(&h, "}");
    }
    for (int i = 0; i < n; i++) {
        const struct tensor *t = &items[i].t;
        uint64_t nb = tensor_nbytes(t);

        if (i || n_meta > 0)
            sb_str(&h, ",");
        sb_json_str(&h, items[i].name);
        sb_str(&h, ":{\"dtype\":\"");
        sb_str(&h, dtype_name(t->dtype));
        sb_str(&h, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof(num), "%s%lld", d ? "," : "", (long long)t->shape[d]);
            sb_str(&h, num);
        }
        snprintf(num, sizeof(num), "],\"data_offsets\":[%llu,%llu]}",
                 (unsigned long long)w->ofs[i], (unsigned long long)(w->ofs[i] + nb));
        sb_str(&h, num);
    }
    sb_str(&h, "}");
    while ((8 + h.n) % 64)
        sb_str(&h, " ");
    if (h.oom) {
        log_error("%s: out of memory building the safetensors header", path);
        rc = S3D_ENOMEM;
        goto fail;
    }
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    w->data0 = 8 + h.n;
    w->n = n;
    w->fd = file_create_tmp_at(dirfd, name, w->tmp, sizeof(w->tmp));
    if (w->fd < 0) {
        w->why = errno;
        log_error("%s: cannot create a temporary file beside it: %s (HINT: check the directory "
                  "exists and is writable)", path, strerror(errno));
        goto fail;
    }
    if (file_pwrite_all(w->fd, len8, 8, 0) || file_pwrite_all(w->fd, h.p, h.n, 8)) {
        w->why = errno;
        log_error("%s: write failed: %s (HINT: disk or /dev/shm full?)", path, strerror(errno));
        goto fail;
    }
    free(ord);
    free(h.p);
    return 0;
fail:
    free(ord);
    free(h.p);
    st_writer_abort(w);
    return rc;
}

int st_writer_put(struct st_writer *w, const struct st_write_item *items, int i)
{
    const struct tensor *t = &items[i].t;
    size_t nb = tensor_nbytes(t);
    void *buf;
    int r;

    ASSERT(w->fd >= 0 && i >= 0 && i < w->n);
    if (!nb)
        return 0;
    if (tensor_is_contiguous(t)) {
        r = file_pwrite_all(w->fd, t->data, nb, w->data0 + w->ofs[i]);
    } else {
        buf = malloc(nb);
        if (!buf) {
            log_error("%s: out of memory copying tensor '%s'", w->label, items[i].name);
            return S3D_ENOMEM;
        }
        tensor_copy_contiguous(buf, t);
        r = file_pwrite_all(w->fd, buf, nb, w->data0 + w->ofs[i]);
        free(buf);
    }
    if (r) {
        w->why = errno;
        log_error("%s: write failed: %s (HINT: disk or /dev/shm full?)", w->label,
                  strerror(errno));
        return S3D_EIO;
    }
    return 0;
}

int st_writer_commit(struct st_writer *w)
{
    int rc = 0;

    ASSERT(w->fd >= 0);
    if (file_commit_at(w->fd, w->dirfd, w->tmp, w->name) != 0) {
        w->why = errno;
        log_error("%s: cannot put the new file in place: %s (HINT: disk or /dev/shm full?)",
                  w->label, strerror(errno));
        rc = S3D_EIO;
    }
    w->fd = -1;                                   /* closed; on failure tmp unlinked */
    free(w->ofs);
    w->ofs = NULL;
    if (rc)
        errno = w->why;
    return rc;
}

void st_writer_abort(struct st_writer *w)
{
    if (w->fd >= 0) {
        close(w->fd);
        unlinkat(w->dirfd, w->tmp, 0);
        w->fd = -1;
    }
    free(w->ofs);
    w->ofs = NULL;
    if (w->why)
        errno = w->why;
}

int safetensors_write_at(int dirfd, const char *name, const char *label,
                         const struct st_write_item *items, int n,
                         const char *const *meta_kv, int n_meta)
{
    struct st_writer w;
    int rc = st_writer_open(&w, dirfd, name, label, items, n, meta_kv, n_meta);

    if (rc)
        return rc;
    for (int i = 0; i < n; i++)
        if ((rc = st_writer_put(&w, items, i))) {
            st_writer_abort(&w);
            return rc;
        }
    return st_writer_commit(&w);
}
