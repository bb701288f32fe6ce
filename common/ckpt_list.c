/*
 * ckpt_list.c - the `sam3d inspect` listing. See ckpt_list.h.
 */
#include "ckpt_list.h"
#include "log.h"
#include "sha256.h"
#include "torchzip.h"

#include <stdlib.h>
#include <string.h>

#define LIST_CHUNK (1 << 20)   /* bytes gathered per hash update */

void ckpt_entry_sha256(const struct ckpt_entry *e, char hex[65])
{
    struct sha256 s;
    uint8_t d[32];
    size_t es = dtype_size(e->dtype);
    int64_t n = ckpt_entry_numel(e);
    int64_t per = LIST_CHUNK / (int64_t)es;
    uint8_t *buf = malloc(LIST_CHUNK);

    ASSERT(buf);
    sha256_init(&s);
    for (int64_t i = 0; i < n; i += per) {
        int64_t k = n - i < per ? n - i : per;

        ckpt_gather(e, i, k, buf);
        sha256_update(&s, buf, (size_t)k * es);   /* stored bytes: little-endian already */
    }
    free(buf);
    sha256_final(&s, d);
    sha256_hex(d, hex);
}

void ckpt_list_entries(FILE *out, const struct ckpt *c, bool sha256)
{
    for (int i = 0; i < c->n_entries; i++) {
        const struct ckpt_entry *e = &c->entries[i];
        char shape[TENSOR_MAX_DIMS * 22 + 3];

        char name[4 * TORCHZIP_MAX_NAME];

        tensor_shape_str(e->shape, e->ndim, shape, sizeof(shape));
        log_escape(name, sizeof(name), e->name, LOG_ESCAPE_BACKSLASH);
        fprintf(out, "%s\t%s\t%s", name, dtype_name(e->dtype), shape);
        if (sha256) {
            char hex[65];

            ckpt_entry_sha256(e, hex);
            fprintf(out, "\t%s", hex);
        }
        fputc('\n', out);
    }
}

int ckpt_list(FILE *out, const char *path_key, bool sha256, char *err, size_t errlen)
{
    struct ckpt c;
    int rc = ckpt_open(&c, path_key, CKPT_QUIET);

    if (rc) {
        snprintf(err, errlen, "%s", c.err);
        return rc;
    }
    ckpt_list_entries(out, &c, sha256);
    ckpt_close(&c);
    return 0;
}
