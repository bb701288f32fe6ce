/*
 * fixture_opimg.c - see fixture_opimg.h.
 */
#include "fixture_opimg.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int opimg_load(struct opimg_case *c, const char *name)
{
    char path[512];
    size_t len = 0, off = 0;

    memset(c, 0, sizeof(*c));
    snprintf(path, sizeof(path), "tests/fixtures/ops_image/%s.bin", name);
    c->buf = read_file(path, &len);
    if (!c->buf)
        return -1;

    const char *p = c->buf;
    int32_t hdr[3];
    if (len < 20 || memcmp(p, "S3DOPIMG", 8) != 0)
        goto bad;
    memcpy(hdr, p + 8, sizeof(hdr));
    off = 20;
    c->n_int = hdr[0];
    c->n_f64 = hdr[1];
    c->n_arr = hdr[2];
    if (c->n_int < 0 || c->n_int > OPIMG_MAX || c->n_f64 < 0 || c->n_f64 > OPIMG_MAX ||
        c->n_arr < 0 || c->n_arr > OPIMG_MAX)
        goto bad;
    if (off + 4 * (size_t)c->n_int + 8 * (size_t)c->n_f64 > len)
        goto bad;
    memcpy(c->ints, p + off, 4 * (size_t)c->n_int);
    off += 4 * (size_t)c->n_int;
    memcpy(c->f64s, p + off, 8 * (size_t)c->n_f64);
    off += 8 * (size_t)c->n_f64;
    for (int i = 0; i < c->n_arr; i++) {
        int32_t n;
        if (off + 4 > len)
            goto bad;
        memcpy(&n, p + off, 4);
        off += 4;
        if (n < 0 || off + 4 * (size_t)n > len || off % 4)
            goto bad;
        c->arr[i] = (float *)(void *)(c->buf + off);   /* 4-byte aligned: off % 4 == 0 */
        c->numel[i] = n;
        off += 4 * (size_t)n;
    }
    return 0;
bad:
    fprintf(stderr, "FAIL: %s: malformed fixture (regenerate with tools/ref/dump_ops_image.py)\n",
            path);
    exit(1);
}

void opimg_free(struct opimg_case *c)
{
    free(c->buf);
    memset(c, 0, sizeof(*c));
}
