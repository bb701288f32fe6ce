/*
 * test_weights_load.c - weights_open_key and weights_load_arena (weights.h):
 * the same tensors, bytes and arena as the long-hand sequence they replace
 * (weights_open "FILE:KEY", arena_init, staging, weights_upload), on the
 * Lightning fixture (tests/fixtures/ckpt/lightning.ckpt, key state_dict).
 */
#include "harness.h"
#include "weights.h"
#include "err.h"
#include "log.h"

#include <string.h>
#include <unistd.h>

#define FIX "tests/fixtures/ckpt/lightning.ckpt"

struct two {
    struct tensor norm;   /* (8) */
    struct tensor qkv;    /* (24, 8) */
    struct tensor fc1;    /* (6, 8), stored F16 */
};

static int bind_two(struct weights *w, struct two *t)
{
    int rc = 0;

    rc |= weights_bind(w, &t->norm, SHAPE(8), "blocks.0.norm1.weight");
    rc |= weights_bind(w, &t->qkv, SHAPE(24, 8), "blocks.0.attn.qkv.weight");
    rc |= weights_bind(w, &t->fc1, SHAPE(6, 8), "blocks.1.mlp.fc1.weight");
    return rc;
}

int main(void)
{
    struct weights w, ref;
    struct two a, b;
    struct arena wa = {0}, wb = {0}, st = {0};

    log_init("test_weights_load");
    if (access(FIX, R_OK) != 0)
        harness_skip("%s missing (tools/ref/make_ckpt_fixtures.py)", FIX);

    /* the long-hand sequence, with the key spelled out */
    CHECK(weights_open(&ref, FIX ":state_dict", "", DTYPE_F32) == 0);
    CHECK(bind_two(&ref, &b) == 0);
    CHECK(arena_init(&wb, ARENA_HOST, "weights", weights_arena_bytes(&ref)) == 0);
    CHECK(arena_init(&st, ARENA_HOST, "staging", (size_t)1 << 20) == 0);
    CHECK(weights_upload(&ref, &wb, &st) == 0);

    /* the helpers: a bare existing file gets the key appended */
    CHECK(weights_open_key(&w, FIX, "state_dict", "", DTYPE_F32) == 0);
    CHECK(bind_two(&w, &a) == 0);
    CHECK(weights_load_arena(&w, &wa, DEVICE_HOST) == 0);
    CHECK(wa.kind == ARENA_HOST && !strcmp(wa.name, "weights"), "a host arena named weights");
    CHECK(wa.used == weights_arena_bytes(&w) && wa.used == wb.used, "arena used %zu, want %zu",
          wa.used, wb.used);
    for (int i = 0; i < 3; i++) {
        const struct tensor *x = &(&a.norm)[i], *y = &(&b.norm)[i];
        CHECK(x->data && (char *)x->data >= wa.base && (char *)x->data < wa.base + wa.size,
              "tensor %d lives in the arena", i);
        CHECK(x->dtype == DTYPE_F32 && tensor_nbytes(x) == tensor_nbytes(y) &&
              !memcmp(x->data, y->data, tensor_nbytes(x)), "tensor %d equals the long-hand upload", i);
    }
    weights_close(&w);

    /* "FILE:KEY" (not a file) is passed as it is; a missing file is ENOTFOUND */
    CHECK(weights_open_key(&w, FIX ":state_dict", "state_dict", "", DTYPE_F32) == 0);
    weights_close(&w);
    CHECK(weights_open_key(&w, "tests/fixtures/ckpt/nope.ckpt", "state_dict", "", DTYPE_F32) ==
          S3D_ENOTFOUND);
    /* the wrong key for the container fails as weights_open does */
    CHECK(weights_open_key(&w, FIX, "model", "", DTYPE_F32) < 0, "no 'model' key in a .ckpt");

    weights_close(&ref);
    arena_free(&wa);
    arena_free(&wb);
    arena_free(&st);
    return harness_done("test_weights_load");
}
