/*
 * ckpt_testutil.c - see ckpt_testutil.h.
 */
#include "ckpt_testutil.h"
#include "ckpt_list.h"
#include "dtype.h"
#include "log.h"
#include "harness.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *fixture(const char *name)
{
    static char buf[512];

    snprintf(buf, sizeof(buf), "%s%s", CKPT_FIXTURES, name);
    return buf;
}

char *listing_of(const struct ckpt *c)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);

    if (!f)
        return NULL;
    ckpt_list_entries(f, c, true);
    fclose(f);
    return s;
}

bool check_listing(const struct ckpt *c, const char *expected_name, const char *label)
{
    size_t n;
    char *want = read_file(fixture(expected_name), &n);
    char *got = listing_of(c);
    bool ok = want && got && strlen(got) == n && !memcmp(got, want, n);

    CHECK(ok, "%s: listing differs from %s", label, expected_name);
    if (!ok)
        fprintf(stderr, "--- got:\n%s--- expected:\n%s", got ? got : "(null)",
                want ? want : "(missing)\n");
    else
        printf("%-44s listing of %d tensors matches %s\n", label, c->n_entries, expected_name);
    free(want);
    free(got);
    return ok;
}

bool check_against_ref(const struct ckpt *c, const char *ref_name)
{
    struct ckpt ref;
    bool ok = true;

    if (ckpt_open(&ref, fixture(ref_name), 0)) {
        CHECK(0, "cannot open %s", ref_name);
        return false;
    }
    CHECK(ref.n_entries == c->n_entries, "%s: %d tensors vs %d", ref_name, ref.n_entries,
          c->n_entries);
    for (int i = 0; i < c->n_entries; i++) {
        const struct ckpt_entry *e = &c->entries[i];
        const struct ckpt_entry *r = ckpt_find(&ref, e->name);
        int64_t n = ckpt_entry_numel(e);
        size_t nb = (size_t)n * dtype_size(e->dtype);
        void *a, *b;

        if (!r || r->dtype != e->dtype || r->ndim != e->ndim ||
            memcmp(r->shape, e->shape, sizeof(int64_t) * (size_t)e->ndim)) {
            CHECK(0, "%s: '%s' missing or dtype/shape differ", ref_name, e->name);
            ok = false;
            continue;
        }
        a = malloc(nb + 1);
        b = malloc(nb + 1);
        ckpt_gather(e, 0, n, a);
        ckpt_gather(r, 0, n, b);
        if (memcmp(a, b, nb)) {
            CHECK(0, "%s: '%s' bytes differ", ref_name, e->name);
            ok = false;
        }
        free(a);
        free(b);
    }
    if (ok)
        printf("%-44s %d tensors bit-identical to %s\n", c->path, c->n_entries, ref_name);
    ckpt_close(&ref);
    return ok;
}

int open_copy(const void *buf, size_t n, const char *key, char *err, size_t errlen)
{
    struct ckpt c;
    void *copy = malloc(n ? n : 1);
    int rc;

    memcpy(copy, buf, n);
    rc = ckpt_open_mem(&c, copy, n, "(mutated)", key);
    if (err)
        snprintf(err, errlen, "%s", c.err);
    if (!rc) {      /* whatever parsed must be readable end to end */
        char *l = listing_of(&c);

        free(l);
    }
    ckpt_close(&c);
    free(copy);
    return rc;
}

int deepen_blocks(const char *src, const char *key, const char *prefix, int depth,
                  const char *out)
{
    char path_key[600], blk0[300];
    struct ckpt c;
    struct st_write_item *items;
    void **bufs;
    int n = 0, cap, rc;

    snprintf(path_key, sizeof(path_key), "%s:%s", src, key);
    snprintf(blk0, sizeof(blk0), "%sblocks.0.", prefix);
    if ((rc = ckpt_open(&c, path_key, 0)))
        return rc;
    cap = c.n_entries * depth;
    items = calloc((size_t)cap, sizeof(*items));
    bufs = calloc((size_t)cap, sizeof(*bufs));
    ASSERT(items && bufs);
    for (int e = 0; e < c.n_entries; e++) {
        const struct ckpt_entry *en = &c.entries[e];
        const char *name = en->name, *rest = NULL;
        size_t pl = strlen(prefix);
        int copies = 1;

        if (!strncmp(name, blk0, strlen(blk0))) {
            rest = name + strlen(blk0);
            copies = depth;
        } else if (!strncmp(name, prefix, pl) && !strncmp(name + pl, "blocks.", 7)) {
            continue;                               /* the source's other blocks */
        }
        int64_t numel = ckpt_entry_numel(en);
        for (int i = 0; i < copies; i++) {
            bool fl = dtype_is_float(en->dtype);
            enum dtype dt = fl ? DTYPE_F32 : en->dtype;
            void *raw = malloc((size_t)numel * dtype_size(en->dtype) + 1);
            void *buf = malloc((size_t)numel * dtype_size(dt) + 1);
            char *nm = malloc(strlen(name) + strlen(key) + 16);

            ASSERT(raw && buf && nm);
            ckpt_gather(en, 0, numel, raw);
            if (fl) {
                dtype_convert(buf, DTYPE_F32, raw, en->dtype, (size_t)numel);
                for (int64_t k = 0; k < numel; k++)
                    ((float *)buf)[k] *= 1.0f + (float)i / 8.0f;
            } else {
                memcpy(buf, raw, (size_t)numel * dtype_size(dt));
            }
            free(raw);
            if (rest)
                sprintf(nm, "%s.%sblocks.%d.%s", key, prefix, i, rest);
            else
                sprintf(nm, "%s.%s", key, name);
            items[n].name = nm;
            items[n].t = tensor_view(buf, dt, DEVICE_HOST, en->shape, en->ndim);
            bufs[n++] = buf;
        }
    }
    rc = safetensors_write(out, items, n, NULL, 0);
    for (int i = 0; i < n; i++) {
        free((void *)items[i].name);
        free(bufs[i]);
    }
    free(items);
    free(bufs);
    ckpt_close(&c);
    return rc;
}
