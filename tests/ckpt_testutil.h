/*
 * ckpt_testutil.h - helpers shared by the checkpoint-reader tests
 * (test_safetensors, test_torchzip, test_pickle, test_weights).
 * Fixtures: tests/fixtures/ckpt/, written by tools/ref/make_ckpt_fixtures.py.
 */
#ifndef S3D_CKPT_TESTUTIL_H
#define S3D_CKPT_TESTUTIL_H

#include "ckpt.h"

#include <stdbool.h>
#include <stddef.h>

#define CKPT_FIXTURES "tests/fixtures/ckpt/"
#define PWNED_MARKER  "/tmp/s3d_pickle_pwned_marker"   /* what the hostile fixtures touch */

/* CKPT_FIXTURES name, in a static buffer (valid until the next call). */
const char *fixture(const char *name);
/* The `inspect --sha256` listing of c, malloc'ed. */
char *listing_of(const struct ckpt *c);
/* CHECKs that c's listing equals the file expected_name (under CKPT_FIXTURES);
 * prints both on mismatch. */
bool check_listing(const struct ckpt *c, const char *expected_name, const char *label);
/* CHECKs that every entry of c has the same dtype, shape and logical bytes as the
 * same-named tensor of the safetensors file ref_name (and that counts match). */
bool check_against_ref(const struct ckpt *c, const char *ref_name);
/* Open a malloc'ed copy of buf[0..n) as a checkpoint; returns the rc and leaves
 * c->err set; the copy is freed (c is closed) unless keep. Any rc is allowed:
 * the point is that it returns. */
int  open_copy(const void *buf, size_t n, const char *key, char *err, size_t errlen);
/* A deeper copy of a tiny model (the flow tests' streamed-vs-resident runs):
 * write to out (safetensors) every tensor of "src:key" in F32 (other dtypes as
 * they are) named "key." + its name, where the tensors "<prefix>blocks.0.*"
 * become blocks 0 .. depth-1, block i's values times 1 + i/8 (distinct blocks:
 * one run from the wrong slot changes the output); the source's other blocks
 * are left out. 0, or the ckpt_open / safetensors_write error. */
int  deepen_blocks(const char *src, const char *key, const char *prefix, int depth,
                   const char *out);

#endif
