/*
 * zipbuild.c - in-memory pickles and torch zips for tests and fuzz targets.
 * See zipbuild.h. Zip layout: APPNOTE.TXT (local header 30 bytes + name + extra,
 * central directory record 46 bytes + name, end record 22 bytes).
 */
#include "zipbuild.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void zb_put(struct zbuf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 64;
        uint8_t *np = realloc(b->p, cap);

        if (!np)
            abort();
        b->p = np;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
}

void zb_byte(struct zbuf *b, uint8_t c) { zb_put(b, &c, 1); }

void zb_u16(struct zbuf *b, uint32_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};

    zb_put(b, x, 2);
}

void zb_u32(struct zbuf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};

    zb_put(b, x, 4);
}

void zb_free(struct zbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

void pk_str(struct zbuf *b, const char *s)
{
    zb_byte(b, 'X');
    zb_u32(b, (uint32_t)strlen(s));
    zb_put(b, s, strlen(s));
}

void pk_int(struct zbuf *b, int64_t v)
{
    if (v >= 0 && v < 256) {
        zb_byte(b, 'K');
        zb_byte(b, (uint8_t)v);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        zb_byte(b, 'J');
        zb_u32(b, (uint32_t)(int32_t)v);
    } else {
        zb_byte(b, 0x8a);                    /* LONG1, 8 bytes little-endian */
        zb_byte(b, 8);
        for (int i = 0; i < 8; i++)
            zb_byte(b, (uint8_t)((uint64_t)v >> (8 * i)));
    }
}

void pk_put(struct zbuf *b, uint32_t memo)
{
    zb_byte(b, 'r');
    zb_u32(b, memo);
}

void pk_get(struct zbuf *b, uint32_t memo)
{
    zb_byte(b, 'j');
    zb_u32(b, memo);
}

static void pk_int_tuple(struct zbuf *b, int n, const int64_t *v)
{
    zb_byte(b, '(');
    for (int i = 0; i < n; i++)
        pk_int(b, v[i]);
    zb_byte(b, 't');
}

void pk_tensor(struct zbuf *b, const char *key, int64_t numel, int64_t offset, int ndim,
               const int64_t *shape, const int64_t *stride)
{
    static const char rebuild[] = "ctorch._utils\n_rebuild_tensor_v2\n";
    static const char storage[] = "ctorch\nFloatStorage\n";

    zb_put(b, rebuild, sizeof(rebuild) - 1);
    zb_byte(b, '(');                          /* args */
    zb_byte(b, '(');                          /* persistent id */
    pk_str(b, "storage");
    zb_put(b, storage, sizeof(storage) - 1);
    pk_str(b, key);
    pk_str(b, "cpu");
    pk_int(b, numel);
    zb_byte(b, 't');
    zb_byte(b, 'Q');                          /* BINPERSID */
    pk_int(b, offset);
    pk_int_tuple(b, ndim, shape);
    pk_int_tuple(b, ndim, stride);
    zb_byte(b, 0x89);                         /* requires_grad False */
    zb_byte(b, 't');
    zb_byte(b, 'R');
}

struct zent {
    char   name[64];
    size_t ofs, len;
};

static void local_record(struct zbuf *z, struct zent *e, const char *name, const void *data,
                         size_t len)
{
    size_t nl = strlen(name);
    /* pad the extra field so the data starts 64-byte aligned, as torch.save does */
    size_t extra = (64 - (z->n + 30 + nl + 4) % 64) % 64 + 4;

    snprintf(e->name, sizeof(e->name), "%s", name);
    e->ofs = z->n;
    e->len = len;
    zb_u32(z, 0x04034b50);
    zb_u16(z, 20);                            /* version */
    zb_u16(z, 0);                             /* flags */
    zb_u16(z, 0);                             /* stored */
    zb_u32(z, 0);                             /* time, date */
    zb_u32(z, 0);                             /* crc (not checked by the reader) */
    zb_u32(z, (uint32_t)len);
    zb_u32(z, (uint32_t)len);
    zb_u16(z, (uint32_t)nl);
    zb_u16(z, (uint32_t)extra);
    zb_put(z, name, nl);
    zb_u16(z, 0xcafe);                        /* padding extra field */
    zb_u16(z, (uint32_t)(extra - 4));
    for (size_t i = 0; i < extra - 4; i++)
        zb_byte(z, 'Z');
    zb_put(z, data, len);
}

uint8_t *torch_zip(const void *pkl, size_t pkl_len, int n_storages, size_t storage_bytes,
                   size_t *len)
{
    struct zbuf z = {0};
    struct zent *e = calloc((size_t)n_storages + 2, sizeof(*e));
    uint8_t *zeros = calloc(1, storage_bytes + 1);
    size_t cd, cd_size;
    int n = 0;

    if (!e || !zeros)
        abort();
    local_record(&z, &e[n++], "a/data.pkl", pkl, pkl_len);
    local_record(&z, &e[n++], "a/byteorder", "little", 6);
    for (int i = 0; i < n_storages; i++) {
        char name[32];

        snprintf(name, sizeof(name), "a/data/%d", i);
        local_record(&z, &e[n++], name, zeros, storage_bytes);
    }
    cd = z.n;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(e[i].name);

        zb_u32(&z, 0x02014b50);
        zb_u16(&z, 20);
        zb_u16(&z, 20);
        zb_u16(&z, 0);
        zb_u16(&z, 0);
        zb_u32(&z, 0);
        zb_u32(&z, 0);
        zb_u32(&z, (uint32_t)e[i].len);
        zb_u32(&z, (uint32_t)e[i].len);
        zb_u16(&z, (uint32_t)nl);
        zb_u16(&z, 0);                        /* extra */
        zb_u16(&z, 0);                        /* comment */
        zb_u16(&z, 0);                        /* disk */
        zb_u16(&z, 0);                        /* internal attributes */
        zb_u32(&z, 0);                        /* external attributes */
        zb_u32(&z, (uint32_t)e[i].ofs);
        zb_put(&z, e[i].name, nl);
    }
    cd_size = z.n - cd;
    zb_u32(&z, 0x06054b50);
    zb_u16(&z, 0);
    zb_u16(&z, 0);
    zb_u16(&z, (uint32_t)n);
    zb_u16(&z, (uint32_t)n);
    zb_u32(&z, (uint32_t)cd_size);
    zb_u32(&z, (uint32_t)cd);
    zb_u16(&z, 0);
    free(e);
    free(zeros);
    *len = z.n;
    return z.p;
}
