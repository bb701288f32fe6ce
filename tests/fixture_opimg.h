/*
 * fixture_opimg.h - reader for the image-op fixtures written by
 * tools/ref/dump_ops_image.py (tests/fixtures/ops_image/<op>_<k>.bin).
 *
 * File layout (little-endian): "S3DOPIMG", int32 n_int, n_f64, n_arrays,
 * int32 ints[n_int], float64 f64s[n_f64], then per array int32 numel and
 * float32 data[numel].
 */
#ifndef S3D_FIXTURE_OPIMG_H
#define S3D_FIXTURE_OPIMG_H

#include <stdint.h>

#define OPIMG_MAX 16

struct opimg_case {
    int      n_int, n_f64, n_arr;
    int32_t  ints[OPIMG_MAX];
    double   f64s[OPIMG_MAX];
    float   *arr[OPIMG_MAX];     /* views into buf */
    int64_t  numel[OPIMG_MAX];
    void    *buf;                /* the whole file (malloc'ed) */
};

/* Read tests/fixtures/ops_image/<name>.bin (relative to the repository root,
 * where run_tests.sh runs). Returns 0, -1 when the file is missing (caller may
 * stop looping), or aborts the test on a malformed file. */
int  opimg_load(struct opimg_case *c, const char *name);
void opimg_free(struct opimg_case *c);

#endif
