/*
 * ckpt_testutil.c - see ckpt_testutil.h.
 */
#include "ckpt_testutil.h"
#include "ckpt_list.h"
#include "harness.h"

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
