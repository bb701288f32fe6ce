/*
 * test_weights.c - declare-then-upload binding: names under a prefix, shape and
 * name errors, dtype conversion (exact, through common/dtype.h) of contiguous
 * and strided tensors, chunked staging (tiny and large), exact arena sizing,
 * report_unused. Expected values come from the independent safetensors twin of
 * the fixture. The device path runs only where a GPU exists.
 */
#include "arena.h"
#include "ckpt_testutil.h"
#include "err.h"
#include "harness.h"
#include "log.h"
#include "safetensors.h"
#include "weights.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct model {
    struct tensor norm1_w;   /* (8) F32 -> target */
    struct tensor qkv_w;     /* (24, 8) */
    struct tensor qkv_b;     /* (24) BF16 in the file, kept F32 */
    struct tensor fc1_w;     /* (6, 8) F16 in the file */
    struct tensor transposed;/* (8, 5) strided */
    struct tensor sliced;    /* (3, 3) strided, offset */
    struct tensor expanded;  /* (4, 3) stride 0 */
    struct tensor ids;       /* (3, 4) I64: keeps its dtype */
    struct tensor scalar;    /* () */
    struct tensor empty;     /* (0, 3) */
};

static int bind_model(struct weights *w, struct model *m)
{
    int rc;

    if ((rc = weights_bind(w, &m->norm1_w, SHAPE(8), "blocks.%d.norm1.weight", 0)) ||
        (rc = weights_bind(w, &m->qkv_w, SHAPE(24, 8), "blocks.%d.attn.qkv.weight", 0)) ||
        (rc = weights_bind_as(w, &m->qkv_b, DTYPE_F32, SHAPE(24), "blocks.0.attn.qkv.bias")) ||
        (rc = weights_bind(w, &m->fc1_w, SHAPE(6, 8), "blocks.1.mlp.fc1.weight")) ||
        (rc = weights_bind(w, &m->transposed, SHAPE(8, 5), "transposed")) ||
        (rc = weights_bind(w, &m->sliced, SHAPE(3, 3), "sliced")) ||
        (rc = weights_bind(w, &m->expanded, NULL, 0, "expanded")) ||
        (rc = weights_bind(w, &m->ids, SHAPE(3, 4), "ids_i64")) ||
        (rc = weights_bind(w, &m->scalar, NULL, 0, "scalar")) ||
        (rc = weights_bind(w, &m->empty, SHAPE(0, 3), "empty")))
        return rc;
    return 0;
}

/* Expected contents of a bound tensor: the reference file's values converted
 * to the target dtype element by element with dtype_convert. */
static void check_tensor(const struct ckpt *ref, const char *name, const struct tensor *t,
                         const void *host_data)
{
    const struct ckpt_entry *e = ckpt_find(ref, name);
    int64_t n = tensor_numel(t);
    size_t nb = (size_t)n * dtype_size(t->dtype);
    uint8_t *src, *want;

    if (!e) {
        CHECK(0, "reference has no %s", name);
        return;
    }
    CHECK(t->ndim == e->ndim && !memcmp(t->shape, e->shape, sizeof(int64_t) * (size_t)e->ndim),
          "%s: shape", name);
    CHECK(tensor_is_contiguous(t), "%s: bound tensors are contiguous", name);
    src = malloc((size_t)n * 8 + 8);
    want = malloc(nb + 8);
    ckpt_gather(e, 0, n, src);
    dtype_convert(want, t->dtype, src, e->dtype, (size_t)n);
    CHECK(!memcmp(want, host_data, nb), "%s: contents differ from the reference", name);
    free(src);
    free(want);
}

static void check_model(const struct model *m, const struct tensor *host_views, const char *label)
{
    static const char *names[] = {
        "state_dict.blocks.0.norm1.weight", "state_dict.blocks.0.attn.qkv.weight",
        "state_dict.blocks.0.attn.qkv.bias", "state_dict.blocks.1.mlp.fc1.weight",
        "state_dict.transposed", "state_dict.sliced", "state_dict.expanded",
        "state_dict.ids_i64", "state_dict.scalar", "state_dict.empty",
    };
    struct ckpt ref;
    const struct tensor *ts = &m->norm1_w;

    if (ckpt_open(&ref, fixture("lightning.ckpt.ref.safetensors"), 0)) {
        CHECK(0, "reference missing");
        return;
    }
    for (int i = 0; i < 10; i++)
        check_tensor(&ref, names[i], &ts[i], host_views ? host_views[i].data : ts[i].data);
    ckpt_close(&ref);
    printf("%-40s 10 tensors equal the converted reference\n", label);
}

static void run_host(enum dtype target, size_t staging_bytes, const char *label)
{
    struct weights w;
    struct model m;
    struct arena wa = {0}, st = {0};
    size_t want = 0;

    CHECK(weights_open(&w, "tests/fixtures/ckpt/lightning.ckpt:state_dict", "", target) == 0);
    CHECK(bind_model(&w, &m) == 0);
    CHECK(m.norm1_w.dtype == target && m.qkv_b.dtype == DTYPE_F32 && m.ids.dtype == DTYPE_I64,
          "target dtypes: float -> %s, kept F32, ints keep theirs", dtype_name(target));
    CHECK(m.norm1_w.data == NULL, "declaration does not allocate");
    for (const struct tensor *t = &m.norm1_w; t <= &m.empty; t++)
        want += arena_round(tensor_nbytes(t));
    CHECK(weights_arena_bytes(&w) == want, "arena bytes %zu, want %zu", weights_arena_bytes(&w),
          want);
    CHECK(arena_init(&wa, ARENA_HOST, "weights", weights_arena_bytes(&w)) == 0);
    CHECK(arena_init(&st, ARENA_PINNED, "staging", staging_bytes) == 0);
    CHECK(weights_upload(&w, &wa, &st) == 0);
    CHECK(wa.used == want, "the arena is used exactly (%zu of %zu)", wa.used, want);
    CHECK(st.used == 0, "staging released after upload");
    weights_close(&w);                          /* data lives in the arena, not the mapping */
    check_model(&m, NULL, label);
    arena_free(&wa);
    arena_free(&st);
}

static void test_errors(void)
{
    struct weights w;
    struct tensor t;
    struct arena wa = {0}, st = {0};

    CHECK(weights_open(&w, fixture("nope.ckpt"), NULL, DTYPE_F32) == S3D_ENOTFOUND);
    CHECK(weights_open(&w, fixture("legacy.pt"), NULL, DTYPE_F32) == S3D_EFORMAT);
    CHECK(weights_open(&w, "tests/fixtures/ckpt/lightning.ckpt:state_dict", "blocks.0.",
                       DTYPE_F16) == 0);
    CHECK(weights_bind(&w, &t, SHAPE(8), "norm1.weight") == 0, "prefix applied");
    CHECK(weights_bind(&w, &t, SHAPE(8), "norm2.weight") == S3D_ENOTFOUND);
    CHECK(weights_bind(&w, &t, SHAPE(8, 24), "attn.qkv.weight") == S3D_ESHAPE, "transposed shape");
    CHECK(weights_bind(&w, &t, SHAPE(24), "attn.qkv.weight") == S3D_ESHAPE, "wrong ndim");
    CHECK(weights_find(&w, "attn.qkv.%s", "weight") && weights_find(&w, "attn.qkv.weight")->shape[0] == 24);
    CHECK(!weights_find(&w, "attn.nope"));
    /* qkv.weight and qkv.bias under blocks.0. are unused; blocks.1.* is outside the prefix */
    CHECK(weights_report_unused(&w, "") == 2, "two unused under blocks.0.");
    CHECK(weights_report_unused(&w, "attn.") == 2);
    CHECK(weights_report_unused(&w, "norm1.") == 0);
    /* an arena too small for what was declared */
    CHECK(weights_bind(&w, &t, NULL, 0, "attn.qkv.weight") == 0);
    CHECK(arena_init(&wa, ARENA_HOST, "weights", ARENA_ALIGN) == 0);
    CHECK(arena_init(&st, ARENA_HOST, "staging", 4096) == 0);
    CHECK(weights_upload(&w, &wa, &st) == S3D_ENOMEM);
    CHECK(st.used == 0);
    arena_free(&wa);
    arena_free(&st);
    weights_close(&w);
    weights_close(&w);
    weights_close(NULL);
    /* report_unused with the whole file as prefix counts everything not bound */
    CHECK(weights_open(&w, fixture("plain.pt"), "", DTYPE_F32) == 0);
    CHECK(weights_bind(&w, &t, SHAPE(3, 5), "0.weight") == 0);
    CHECK(weights_report_unused(&w, NULL) == 3);
    weights_close(&w);
    printf("bind errors (missing, mis-shaped), report_unused, arena too small: OK\n");
}

static void test_device(void)
{
    struct weights w;
    struct model m;
    struct tensor hv[10];
    struct arena wa = {0}, st = {0};

    if (!s3d_cuda_available()) {
        printf("device upload: skipped (no usable CUDA device on this machine)\n");
        return;
    }
    CHECK(weights_open(&w, "tests/fixtures/ckpt/lightning.ckpt:state_dict", "", DTYPE_F16) == 0);
    CHECK(bind_model(&w, &m) == 0);
    CHECK(arena_init(&wa, ARENA_DEVICE, "weights", weights_arena_bytes(&w)) == 0);
    CHECK(arena_init(&st, ARENA_PINNED, "staging", 2 * ARENA_ALIGN + 128) == 0);
    CHECK(weights_upload(&w, &wa, &st) == 0);
    weights_close(&w);
    for (int i = 0; i < 10; i++) {
        const struct tensor *t = &(&m.norm1_w)[i];

        CHECK(t->device == DEVICE_CUDA);
        hv[i] = *t;
        hv[i].data = malloc(tensor_nbytes(t) + 1);
        if (tensor_nbytes(t))
            CHECK(cudaMemcpy(hv[i].data, t->data, tensor_nbytes(t), cudaMemcpyDeviceToHost) ==
                  cudaSuccess);
    }
    check_model(&m, hv, "device upload, F16, 64-byte staging");
    for (int i = 0; i < 10; i++)
        free(hv[i].data);
    arena_free(&wa);
    arena_free(&st);
}

/* Large tensors take the threaded path (dtype_convert_mt, >= 2^18 elements a
 * thread): a 5 MiB F32 tensor and a 1-element one uploaded as F16 and as F32
 * with 3 threads and 4 MiB staging chunks (1M F32 elements: 3 parts), to a host and (where a GPU exists)
 * a device arena; every byte equals dtype_convert of the file's data. */
static void test_threaded(void)
{
    char path[64];
    int64_t n = ((int64_t)5 << 18) + 7;
    float *big = malloc((size_t)n * sizeof(*big));
    float one = -3.0f;
    uint8_t *want = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
    struct st_write_item it[2];
    struct rng r;

    ASSERT(big && want && got);
    snprintf(path, sizeof(path), "/tmp/s3d_test_weights_big.%d.safetensors", (int)getpid());
    rng_seed(&r, 11);
    fill_normal(&r, big, (size_t)n, 2.0f);
    it[0] = (struct st_write_item){"big", tensor_view(big, DTYPE_F32, DEVICE_HOST, SHAPE(n))};
    it[1] = (struct st_write_item){"one", tensor_view(&one, DTYPE_F32, DEVICE_HOST, SHAPE(1))};
    CHECK(safetensors_write(path, it, 2, NULL, 0) == 0);
    setenv("S3D_THREADS", "3", 1);
    for (int dev = 0; dev < 2; dev++) {
        if (dev && !s3d_cuda_available())
            break;
        for (int d = 0; d < 2; d++) {
            enum dtype dt = d ? DTYPE_F32 : DTYPE_F16;
            struct weights w;
            struct tensor tb, to;
            struct arena wa = {0}, st = {0};

            CHECK(weights_open(&w, path, "", dt) == 0);
            CHECK(weights_bind(&w, &tb, SHAPE(n), "big") == 0 &&
                  weights_bind(&w, &to, SHAPE(1), "one") == 0);
            CHECK(arena_init(&wa, dev ? ARENA_DEVICE : ARENA_HOST, "weights",
                             weights_arena_bytes(&w)) == 0);
            CHECK(arena_init(&st, dev ? ARENA_PINNED : ARENA_HOST, "staging",
                             2 * ARENA_ALIGN + (8 << 20)) == 0);
            CHECK(weights_upload(&w, &wa, &st) == 0);
            weights_close(&w);
            dtype_convert(want, dt, big, DTYPE_F32, (size_t)n);
            if (dev)
                CHECK(cudaMemcpy(got, tb.data, (size_t)n * dtype_size(dt),
                                 cudaMemcpyDeviceToHost) == cudaSuccess);
            else
                memcpy(got, tb.data, (size_t)n * dtype_size(dt));
            CHECK(!memcmp(want, got, (size_t)n * dtype_size(dt)), "threaded upload %s %s",
                  dev ? "device" : "host", dtype_name(dt));
            if (!dev)
                CHECK(dtype_get(to.data, dt, 0) == -3.0, "1-element tensor");
            arena_free(&wa);
            arena_free(&st);
        }
    }
    unsetenv("S3D_THREADS");
    unlink(path);
    printf("threaded upload, 1.3M elements, 3 threads, F16 and F32: OK\n");
    free(big);
    free(want);
    free(got);
}

int main(void)
{
    log_init("test_weights");
    run_host(DTYPE_F32, 1 << 20, "host F32, 1 MiB staging");
    run_host(DTYPE_F16, 2 * ARENA_ALIGN + 128, "host F16, 64-byte staging chunks");
    run_host(DTYPE_BF16, 2 * ARENA_ALIGN + 1000, "host BF16, 448-byte staging chunks");
    run_host(DTYPE_F64, 4096, "host F64, 1.8 KiB staging");
    test_errors();
    test_device();
    test_threaded();
    return harness_done("test_weights");
}
