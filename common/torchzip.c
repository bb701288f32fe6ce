/*
 * torchzip.c - zip central directory walk, the torch archive layout, and the
 * flattening of the unpickled object into ckpt entries. See torchzip.h.
 */
#include "torchzip.h"
#include "err.h"
#include "pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct zrec {
    const char    *name;      /* into the mapping, not NUL-terminated */
    size_t         name_len;
    const uint8_t *data;      /* NULL if the local header was not checked yet */
    uint64_t       size;      /* uncompressed size */
    uint64_t       csize;
    uint64_t       local_ofs;
    int            method;
    int            flags;
};

struct zip {
    struct ckpt *c;
    struct zrec *recs;        /* sorted by name */
    int          n;
    const char  *archive;     /* first record's directory */
    size_t       archive_len;
};

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;

    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int zrec_cmp(const void *a, const void *b)
{
    const struct zrec *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int r = memcmp(x->name, y->name, n);

    return r ? r : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* Read the 64-bit values a zip64 extra field (id 1) supplies, in APPNOTE order. */
static int zip64_extra(struct ckpt *c, const uint8_t *ex, size_t ex_len, struct zrec *r,
                       bool want_size, bool want_csize, bool want_ofs)
{
    size_t q = 0;

    while (q + 4 <= ex_len) {
        unsigned id = (unsigned)le(ex + q, 2);
        size_t len = (size_t)le(ex + q + 2, 2);
        size_t k = q + 4;

        if (q + 4 + len > ex_len)
            break;
        if (id == 1) {
            if (want_size) {
                if (k + 8 > q + 4 + len)
                    goto bad;
                r->size = le(ex + k, 8);
                k += 8;
            }
            if (want_csize) {
                if (k + 8 > q + 4 + len)
                    goto bad;
                r->csize = le(ex + k, 8);
                k += 8;
            }
            if (want_ofs) {
                if (k + 8 > q + 4 + len)
                    goto bad;
                r->local_ofs = le(ex + k, 8);
            }
            return 0;
        }
        q += 4 + len;
    }
    if (!want_size && !want_csize && !want_ofs)
        return 0;
bad:
    return ckpt_fail(c, S3D_EFORMAT, "zip: record '%.*s' needs a zip64 extra field that is "
                     "missing or short", (int)(r->name_len > 200 ? 200 : r->name_len), r->name);
}

/* Find the central directory: its offset, size and record count. */
static int find_cd(struct ckpt *c, uint64_t *cd_ofs, uint64_t *cd_size, uint64_t *count)
{
    const uint8_t *m = c->map;
    size_t eocd = 0;
    bool found = false;

    if (c->size < 22)
        return ckpt_fail(c, S3D_EFORMAT, "zip: file too short for an end-of-central-directory "
                         "record (truncated?)");
    for (size_t p = c->size - 22 + 1; p-- > 0 && c->size - 22 - p <= 0xFFFF;) {
        if (le(m + p, 4) == 0x06054b50 && p + 22 + le(m + p + 20, 2) == c->size) {
            eocd = p;
            found = true;
            break;
        }
    }
    if (!found)
        return ckpt_fail(c, S3D_EFORMAT, "zip: no end-of-central-directory record (file "
                         "truncated? HINT: download it again)");
    *count = le(m + eocd + 10, 2);
    *cd_size = le(m + eocd + 12, 4);
    *cd_ofs = le(m + eocd + 16, 4);
    if ((le(m + eocd + 4, 2) != 0 && le(m + eocd + 4, 2) != 0xFFFF) ||
        (le(m + eocd + 6, 2) != 0 && le(m + eocd + 6, 2) != 0xFFFF))
        return ckpt_fail(c, S3D_EFORMAT, "zip: multi-disk archives are not supported");
    if (*count == 0xFFFF || *cd_size == 0xFFFFFFFF || *cd_ofs == 0xFFFFFFFF) {
        uint64_t z64;

        if (eocd < 20 || le(m + eocd - 20, 4) != 0x07064b50)
            return ckpt_fail(c, S3D_EFORMAT, "zip: zip64 sizes without a zip64 locator");
        z64 = le(m + eocd - 20 + 8, 8);
        if (c->size < 56 || z64 > c->size - 56 || le(m + z64, 4) != 0x06064b50)
            return ckpt_fail(c, S3D_EFORMAT, "zip: zip64 end record out of range or broken");
        *count = le(m + z64 + 32, 8);
        *cd_size = le(m + z64 + 40, 8);
        *cd_ofs = le(m + z64 + 48, 8);
    }
    if (*cd_ofs > c->size || *cd_size > c->size - *cd_ofs)
        return ckpt_fail(c, S3D_EFORMAT, "zip: central directory [%llu, +%llu) is past the end "
                         "of the file (%zu bytes; truncated?)", (unsigned long long)*cd_ofs,
                         (unsigned long long)*cd_size, c->size);
    if (*count > *cd_size / 46)
        return ckpt_fail(c, S3D_EFORMAT, "zip: %llu records cannot fit in a %llu-byte central "
                         "directory", (unsigned long long)*count, (unsigned long long)*cd_size);
    return 0;
}

static int read_cd(struct zip *z)
{
    struct ckpt *c = z->c;
    const uint8_t *m = c->map;
    uint64_t cd_ofs = 0, cd_size = 0, count = 0, q;
    int rc;

    if ((rc = find_cd(c, &cd_ofs, &cd_size, &count)))
        return rc;
    if (!count)
        return ckpt_fail(c, S3D_EFORMAT, "zip: empty archive");
    z->recs = calloc((size_t)count, sizeof(*z->recs));
    if (!z->recs)
        return ckpt_fail(c, S3D_ENOMEM, "out of memory");
    q = cd_ofs;
    for (uint64_t i = 0; i < count; i++) {
        struct zrec *r = &z->recs[i];
        uint64_t end = cd_ofs + cd_size;
        size_t nl, el, cl;

        if (end - q < 46 || le(m + q, 4) != 0x02014b50)
            return ckpt_fail(c, S3D_EFORMAT, "zip: central directory record %llu is broken "
                             "(bad signature or truncated)", (unsigned long long)i);
        nl = (size_t)le(m + q + 28, 2);
        el = (size_t)le(m + q + 30, 2);
        cl = (size_t)le(m + q + 32, 2);
        if (end - q - 46 < (uint64_t)nl + el + cl)
            return ckpt_fail(c, S3D_EFORMAT, "zip: central directory record %llu runs past "
                             "the directory", (unsigned long long)i);
        r->flags = (int)le(m + q + 8, 2);
        r->method = (int)le(m + q + 10, 2);
        r->csize = le(m + q + 20, 4);
        r->size = le(m + q + 24, 4);
        r->local_ofs = le(m + q + 42, 4);
        r->name = (const char *)m + q + 46;
        r->name_len = nl;
        if ((rc = zip64_extra(c, m + q + 46 + nl, el, r, r->size == 0xFFFFFFFF,
                              r->csize == 0xFFFFFFFF, r->local_ofs == 0xFFFFFFFF)))
            return rc;
        q += 46 + nl + el + cl;
        z->n++;
    }
    /* torch: the archive name is the first record's directory */
    {
        const char *slash = memchr(z->recs[0].name, '/', z->recs[0].name_len);

        if (!slash)
            return ckpt_fail(c, S3D_EFORMAT, "zip: not a PyTorch archive (first record '%.*s' "
                             "has no directory)", (int)(z->recs[0].name_len > 200 ? 200 :
                                                        z->recs[0].name_len), z->recs[0].name);
        z->archive = z->recs[0].name;
        z->archive_len = (size_t)(slash - z->recs[0].name);
    }
    qsort(z->recs, (size_t)z->n, sizeof(*z->recs), zrec_cmp);
    return 0;
}

/* The record "<archive>/<name>", its data checked against the local header; NULL
 * with *rc = 0 if absent, NULL with *rc < 0 on a broken/compressed record. */
static const struct zrec *get_record(struct zip *z, const char *name, int *rc)
{
    struct ckpt *c = z->c;
    char full[1024];
    struct zrec key = {0};
    struct zrec *r;
    uint64_t lo;
    int n = snprintf(full, sizeof(full), "%.*s/%s", (int)z->archive_len, z->archive, name);

    *rc = 0;
    if (n < 0 || (size_t)n >= sizeof(full))
        return NULL;
    key.name = full;
    key.name_len = (size_t)n;
    r = bsearch(&key, z->recs, (size_t)z->n, sizeof(key), zrec_cmp);
    if (!r || r->data)
        return r;
    if (r->flags & 1) {
        *rc = ckpt_fail(c, S3D_EFORMAT, "zip: record '%s' is encrypted", full);
        return NULL;
    }
    if (r->method != 0) {
        *rc = ckpt_fail(c, S3D_EFORMAT, "zip: record '%s' is compressed (method %d); only "
                        "stored records are read in place (HINT: re-save with torch.save, or "
                        "re-zip with `zip -0`)", full, r->method);
        return NULL;
    }
    if (r->csize != r->size) {
        *rc = ckpt_fail(c, S3D_EFORMAT, "zip: record '%s' is stored (not compressed) but its "
                        "central directory gives two sizes, %llu and %llu bytes: the archive "
                        "is corrupt (HINT: download or save the file again)", full,
                        (unsigned long long)r->csize, (unsigned long long)r->size);
        return NULL;
    }
    lo = r->local_ofs;
    if (lo > c->size || c->size - lo < 30 || le(c->map + lo, 4) != 0x04034b50) {
        *rc = ckpt_fail(c, S3D_EFORMAT, "zip: local header of '%s' at offset %llu is missing "
                        "or broken (truncated file?)", full, (unsigned long long)lo);
        return NULL;
    }
    lo += 30 + le(c->map + lo + 26, 2) + le(c->map + lo + 28, 2);
    if (lo > c->size || r->size > c->size - lo) {
        *rc = ckpt_fail(c, S3D_EFORMAT, "zip: data of '%s' [%llu, +%llu) is past the end of "
                        "the file (%zu bytes; truncated?)", full, (unsigned long long)lo,
                        (unsigned long long)r->size, c->size);
        return NULL;
    }
    r->data = c->map + lo;
    return r;
}

static bool storage_dtype(const char *s, enum dtype *dt)
{
    static const struct { const char *name; enum dtype dt; } tab[] = {
        {"torch.DoubleStorage", DTYPE_F64}, {"torch.FloatStorage", DTYPE_F32},
        {"torch.HalfStorage", DTYPE_F16},   {"torch.BFloat16Storage", DTYPE_BF16},
        {"torch.LongStorage", DTYPE_I64},   {"torch.IntStorage", DTYPE_I32},
        {"torch.ShortStorage", DTYPE_I16},  {"torch.CharStorage", DTYPE_I8},
        {"torch.ByteStorage", DTYPE_U8},    {"torch.BoolStorage", DTYPE_BOOL},
        {"torch.float64", DTYPE_F64}, {"torch.float32", DTYPE_F32}, {"torch.float16", DTYPE_F16},
        {"torch.bfloat16", DTYPE_BF16}, {"torch.int64", DTYPE_I64}, {"torch.int32", DTYPE_I32},
        {"torch.int16", DTYPE_I16}, {"torch.int8", DTYPE_I8}, {"torch.uint8", DTYPE_U8},
        {"torch.bool", DTYPE_BOOL},
    };

    for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (!strcmp(s, tab[i].name)) {
            *dt = tab[i].dt;
            return true;
        }
    return false;
}

static int add_tensor(struct zip *z, const char *name, const struct pk_value *t)
{
    struct ckpt *c = z->c;
    const struct pk_tensor *tt = t->tensor;
    const struct pk_value *pid = tt->storage->n ? tt->storage->items[0] : NULL;
    const struct zrec *r;
    char rec[600];
    enum dtype dt;
    int rc;

    /* ('storage', <storage type>, key, location, numel) */
    if (!pid || pid->type != PK_TUPLE || pid->n < 5 || pid->items[0]->type != PK_STR ||
        strcmp(pid->items[0]->s, "storage") || pid->items[1]->type != PK_GLOBAL ||
        pid->items[2]->type != PK_STR || pid->items[4]->type != PK_INT)
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': persistent id is not ('storage', type, "
                         "key, location, numel)", name);
    if (!storage_dtype(pid->items[1]->s, &dt))
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': unsupported storage type %s (HINT: "
                         "supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)", name,
                         pid->items[1]->s);
    if (strchr(pid->items[2]->s, '/') || pid->items[2]->len > 500)
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': bad storage key", name);
    snprintf(rec, sizeof(rec), "data/%s", pid->items[2]->s);
    r = get_record(z, rec, &rc);
    if (rc)
        return rc;
    if (!r)
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': storage record '%s' is missing (HINT: "
                         "the file is incomplete; download or save it again)", name, rec);
    if (pid->items[4]->i < 0 || (uint64_t)pid->items[4]->i > r->size / dtype_size(dt))
        return ckpt_fail(c, S3D_EFORMAT, "tensor '%s': storage '%s' holds %llu bytes, not %lld "
                         "elements of %s", name, rec, (unsigned long long)r->size,
                         (long long)pid->items[4]->i, dtype_name(dt));
    return ckpt_add(c, name, dt, tt->ndim, tt->shape, tt->stride, r->data,
                    (size_t)pid->items[4]->i * dtype_size(dt), tt->offset);
}

/* Marks of the walks (pk_value.mark): what scan() found under a container, and
 * the bit flatten() sets while it is inside one. */
enum { M_NEW, M_BUSY, M_NONE, M_SOME, M_DEEP, M_INSIDE = 0x10 };

static bool is_container(const struct pk_value *v)
{
    return v->type == PK_DICT || v->type == PK_LIST || v->type == PK_TUPLE;
}

/* Does v hold a tensor (M_SOME), none (M_NONE), or lie deeper than the limit
 * (M_DEEP)? Memoised in v->mark, so a DAG costs one visit per container and edge;
 * an edge back into a container being scanned (a cycle) adds nothing. */
static int scan(struct pk_value *v, int depth)
{
    int r = M_NONE;

    if (v->type == PK_TENSOR)
        return M_SOME;
    if (!is_container(v) || v->mark == M_BUSY)
        return M_NONE;
    if (v->mark != M_NEW)
        return v->mark;
    if (depth >= TORCHZIP_MAX_DEPTH)
        return v->mark = M_DEEP;
    v->mark = M_BUSY;
    for (int i = v->type == PK_DICT ? 1 : 0; i < v->n; i += v->type == PK_DICT ? 2 : 1) {
        int c = scan(v->items[i], depth + 1);

        if (c == M_DEEP || (c == M_SOME && r != M_DEEP))
            r = c;
    }
    return v->mark = r;
}

/* The walk that names the tensors: its budgets (torchzip.h). */
struct walk {
    struct zip *z;
    char       *name;        /* TORCHZIP_MAX_NAME bytes */
    uint64_t    visits, max_visits;
    uint64_t    name_bytes, max_name_bytes;
};

/* Append every tensor under v, named w->name[0..len) + ".key". */
static int flatten(struct walk *w, struct pk_value *v, size_t len, int depth)
{
    struct ckpt *c = w->z->c;
    char *name = w->name;
    bool is_dict = v->type == PK_DICT;
    int step = is_dict ? 2 : 1;
    int rc = 0;

    if (++w->visits > w->max_visits || (w->name_bytes += len + 1) > w->max_name_bytes)
        return ckpt_fail(c, S3D_EFORMAT, "the pickled object reaches its containers %llu times "
                         "(%llu bytes of names) in a %zu-byte file: containers are shared "
                         "over and over (a DAG made to multiply the names). HINT: re-save the "
                         "state dict with torch.save", (unsigned long long)w->visits,
                         (unsigned long long)w->name_bytes, c->size);
    if (v->type == PK_TENSOR)
        return add_tensor(w->z, name, v);
    if ((v->mark & ~M_INSIDE) == M_NONE)
        return 0;                         /* numbers, strings, opaque objects: no tensors */
    if ((v->mark & ~M_INSIDE) == M_DEEP || depth >= TORCHZIP_MAX_DEPTH)
        return ckpt_fail(c, S3D_EFORMAT, "containers nested deeper than %d at '%.60s...'",
                         TORCHZIP_MAX_DEPTH, name);
    if (v->mark & M_INSIDE)
        return ckpt_fail(c, S3D_EFORMAT, "'%.100s' holds itself (a cycle of containers with "
                         "tensors): its tensors would have endless names", name);
    v->mark |= M_INSIDE;
    for (int i = 0; i + step <= v->n && !rc; i += step) {
        struct pk_value *child = v->items[i + step - 1];
        char key[32];
        const char *k = key;
        size_t kl;

        if (child->type != PK_TENSOR && (scan(child, depth + 1) & ~M_INSIDE) == M_NONE)
            continue;
        if (!is_dict) {
            snprintf(key, sizeof(key), "%d", i);
        } else if (v->items[i]->type == PK_STR) {
            k = v->items[i]->s;
        } else if (v->items[i]->type == PK_INT) {
            snprintf(key, sizeof(key), "%lld", (long long)v->items[i]->i);
        } else {
            rc = ckpt_fail(c, S3D_EFORMAT, "tensors under a %s dictionary key in '%s' cannot "
                           "be named", pk_type_name(v->items[i]->type), name);
            break;
        }
        kl = strlen(k);
        if (len + 1 + kl + 1 > TORCHZIP_MAX_NAME) {
            rc = ckpt_fail(c, S3D_EFORMAT, "tensor name longer than %d bytes under '%.100s'",
                           TORCHZIP_MAX_NAME - 1, name);
            break;
        }
        if (len)
            name[len] = '.';
        memcpy(name + len + (len ? 1 : 0), k, kl + 1);
        rc = flatten(w, child, len + (len ? 1 : 0) + kl, depth + 1);
        name[len] = 0;
    }
    v->mark &= ~M_INSIDE;
    return rc;
}

int torchzip_parse(struct ckpt *c)
{
    struct zip z = {c, NULL, 0, NULL, 0};
    struct pickle pk;
    const struct zrec *r;
    char *name = NULL;
    int rc;

    if ((rc = read_cd(&z)))
        goto out;
    r = get_record(&z, "byteorder", &rc);
    if (rc)
        goto out;
    if (r && !(r->size == 6 && !memcmp(r->data, "little", 6))) {
        rc = ckpt_fail(c, S3D_EFORMAT, "torch: byteorder is not 'little' (big-endian files are "
                       "not supported)");
        goto out;
    }
    r = get_record(&z, "data.pkl", &rc);
    if (rc)
        goto out;
    if (!r) {
        rc = ckpt_fail(c, S3D_EFORMAT, "zip: no '%.*s/data.pkl' record (a zip, but not a "
                       "torch.save archive)", (int)z.archive_len, z.archive);
        goto out;
    }
    rc = pickle_load(&pk, r->data, (size_t)r->size);
    if (rc) {
        rc = ckpt_fail(c, rc, "%.*s/data.pkl: %s", (int)z.archive_len, z.archive, pk.err);
        goto out;
    }
    if (pk.root->type != PK_DICT && pk.root->type != PK_LIST && pk.root->type != PK_TUPLE) {
        rc = ckpt_fail(c, S3D_EFORMAT, "torch: the saved object is not a dict, list or tuple "
                       "of tensors but %s %s%s%s", pk.root->type == PK_OPAQUE ? "an" : "a",
                       pk_type_name(pk.root->type), pk.root->s ? " " : "",
                       pk.root->s ? pk.root->s : "");
        goto out_pickle;
    }
    name = calloc(1, TORCHZIP_MAX_NAME);
    if (!name) {
        rc = ckpt_fail(c, S3D_ENOMEM, "out of memory");
        goto out_pickle;
    }
    {
        struct walk w = {&z, name, 0, 0, 0, 0};

        w.max_visits = TORCHZIP_VISITS_PER_VALUE * (uint64_t)pk.n_values + TORCHZIP_VISITS_BASE;
        w.max_name_bytes = TORCHZIP_NAME_BYTES_PER_BYTE * (uint64_t)r->size +
                           TORCHZIP_NAME_BYTES_BASE;
        scan(pk.root, 0);
        rc = flatten(&w, pk.root, 0, 0);
    }
    free(name);
out_pickle:
    pickle_free(&pk);
out:
    free(z.recs);
    return rc;
}

int torchzip_record(struct ckpt *c, const char *name, const uint8_t **data, size_t *len)
{
    struct zip z = {c, NULL, 0, NULL, 0};
    const struct zrec *r;
    int rc;

    *data = NULL;
    *len = 0;
    if ((rc = read_cd(&z)))
        goto out;
    r = get_record(&z, name, &rc);
    if (!rc && !r)
        rc = S3D_ENOTFOUND;
    if (!rc) {
        *data = r->data;
        *len = (size_t)r->size;
    }
out:
    free(z.recs);
    return rc;
}
