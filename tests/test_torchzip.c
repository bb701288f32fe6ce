/*
 * test_torchzip.c - PyTorch zip checkpoints: every fixture listed exactly as
 * Python computed it and bit-identical to its safetensors twin; FILE:KEY;
 * zip64; legacy, compressed and hostile files; one corrupt-input case per
 * validation branch of the zip walk and the tensor bounds checks; the hostile
 * graphs and shapes of issue 15 (a DAG of lists, cycles, stride 0, a FIFO).
 */
#include "ckpt_list.h"
#include "ckpt_testutil.h"
#include "err.h"
#include "harness.h"
#include "log.h"
#include "zipbuild.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void test_fixtures(void)
{
    static const struct { const char *file, *key, *listing, *ref; } fx[] = {
        {"plain.pt", NULL, "plain.pt.inspect", "plain.pt.ref.safetensors"},
        {"zip64.pt", NULL, "plain.pt.inspect", "plain.pt.ref.safetensors"},
        {"lightning.ckpt", NULL, "lightning.ckpt.inspect", "lightning.ckpt.ref.safetensors"},
        {"moge_like.pt", NULL, "moge_like.pt.inspect", "moge_like.pt.ref.safetensors"},
        {"bare_list.pt", NULL, "bare_list.pt.inspect", "bare_list.pt.ref.safetensors"},
        {"lightning.ckpt", "state_dict", "lightning.ckpt.state_dict.inspect", NULL},
        {"lightning.ckpt", "lists.layers", "lightning.ckpt.lists.layers.inspect", NULL},
        {"moge_like.pt", "model", "moge_like.pt.model.inspect", NULL},
    };

    for (size_t i = 0; i < sizeof(fx) / sizeof(fx[0]); i++) {
        char pk[512];
        struct ckpt c;

        snprintf(pk, sizeof(pk), "%s%s%s", fixture(fx[i].file), fx[i].key ? ":" : "",
                 fx[i].key ? fx[i].key : "");
        if (ckpt_open(&c, pk, 0)) {
            CHECK(0, "cannot open %s", pk);
            continue;
        }
        CHECK(c.format == CKPT_TORCHZIP);
        check_listing(&c, fx[i].listing, pk);
        if (fx[i].ref)
            check_against_ref(&c, fx[i].ref);
        ckpt_close(&c);
    }
}

static void test_views(void)
{
    struct ckpt c;
    const struct ckpt_entry *a, *b, *t, *s, *x;

    if (ckpt_open(&c, "tests/fixtures/ckpt/lightning.ckpt:state_dict", 0)) {
        CHECK(0, "open lightning.ckpt");
        return;
    }
    a = ckpt_find(&c, "share_a");
    b = ckpt_find(&c, "share_b");
    t = ckpt_find(&c, "transposed");
    s = ckpt_find(&c, "sliced");
    x = ckpt_find(&c, "expanded");
    CHECK(a && b && a->storage == b->storage && a->data == a->storage + 4 * 4 &&
          b->data == b->storage + 32 * 4, "two tensors share one storage at offsets 4 and 32");
    CHECK(t && t->stride[0] == 1 && t->stride[1] == 8, "transposed strides kept");
    CHECK(s && s->stride[0] == 8 && s->stride[1] == 2 && s->data == s->storage + (8 + 2) * 4,
          "sliced view: strides (8,2), offset 10");
    CHECK(x && x->stride[0] == 0, "expanded view: stride 0");
    CHECK((uintptr_t)(ckpt_find(&c, "blocks.0.attn.qkv.weight")->storage - c.map) % 64 == 0,
          "torch.save records are 64-byte aligned");
    ckpt_close(&c);
    printf("views: shared storage, transposed, sliced, expanded OK\n");
}

static void test_refused(void)
{
    char err[600];
    struct ckpt c;
    int rc;

    unlink(PWNED_MARKER);
    rc = ckpt_open(&c, fixture("legacy.pt"), CKPT_QUIET);
    CHECK(rc == S3D_EFORMAT && strstr(c.err, "legacy") && strstr(c.err, "torch.save"),
          "legacy: %s", c.err);
    rc = ckpt_open(&c, fixture("compressed.pt"), CKPT_QUIET);
    CHECK(rc == S3D_EFORMAT && strstr(c.err, "compressed") && strstr(c.err, "HINT"), "%s", c.err);
    rc = ckpt_open(&c, fixture("hostile_p2.pkl"), CKPT_QUIET);
    CHECK(rc == S3D_EFORMAT && strstr(c.err, "bare pickle"), "%s", c.err);
    rc = ckpt_open(&c, fixture("hostile_root.pt"), CKPT_QUIET);
    CHECK(rc == S3D_EFORMAT && strstr(c.err, "posix.system"), "hostile root: %s", c.err);
    rc = ckpt_open(&c, fixture("hostile.pt"), CKPT_QUIET);
    CHECK(rc == 0 && c.n_entries == 1 && ckpt_find(&c, "w"), "hostile.pt: the tensor is read, "
          "the os.system object is inert");
    ckpt_close(&c);
    rc = ckpt_open(&c, fixture("cycle.pt"), CKPT_QUIET);   /* the cycle holds no tensor */
    CHECK(rc == 0 && c.n_entries == 1 && ckpt_find(&c, "w"), "cycle: %s", c.err);
    ckpt_close(&c);
    rc = ckpt_open(&c, "tests/fixtures/ckpt/lightning.ckpt:state_dict.scalar", CKPT_QUIET);
    CHECK(rc == S3D_EINVAL && strstr(c.err, "is a tensor"), "%s", c.err);
    rc = ckpt_open(&c, "tests/fixtures/ckpt/lightning.ckpt:nope", CKPT_QUIET);
    CHECK(rc == S3D_ENOTFOUND && strstr(c.err, "no tensors under key 'nope'"), "%s", c.err);
    rc = ckpt_open(&c, "tests/fixtures/ckpt/lightning.ckpt:state", CKPT_QUIET);
    CHECK(rc == S3D_ENOTFOUND, "a key prefix is not a key");
    rc = open_copy("hello world, not a checkpoint", 29, NULL, err, sizeof(err));
    CHECK(rc == S3D_EFORMAT && strstr(err, "not a checkpoint"), "%s", err);
    CHECK(access(PWNED_MARKER, F_OK) != 0, "nothing was executed");
    printf("legacy, compressed, bare pickle, hostile, cyclic, bad keys: refused cleanly\n");
}

// ----------------------------------------------------------------------------
// corrupt zips, made by editing plain.pt / zip64.pt in memory

static uint32_t rd32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static void wr16(uint8_t *p, unsigned v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, v & 0xFFFF); wr16(p + 2, v >> 16); }

/* Offset of the central-directory record named name, or 0. */
static size_t cd_record(const uint8_t *z, size_t n, const char *name)
{
    size_t nl = strlen(name);

    for (size_t p = 0; p + 46 + nl <= n; p++)
        if (rd32(z + p) == 0x02014b50 && (size_t)(z[p + 28] | z[p + 29] << 8) == nl &&
            !memcmp(z + p + 46, name, nl))
            return p;
    return 0;
}

/* Offset of the data of the record whose central-directory entry is at r. */
static size_t rec_data(const uint8_t *z, size_t r)
{
    size_t lo = rd32(z + r + 42);

    return lo + 30 + (z[lo + 26] | z[lo + 27] << 8) + (z[lo + 28] | z[lo + 29] << 8);
}

static size_t eocd_of(size_t n)
{
    return n - 22;   /* torch writes no archive comment */
}

struct zcase {
    const char *what;
    const char *expect;      /* substring of the error */
};

static void expect_err(const uint8_t *z, size_t n, const struct zcase *zc)
{
    char err[600];
    int rc = open_copy(z, n, NULL, err, sizeof(err));

    CHECK(rc < 0 && strstr(err, zc->expect), "%s: rc %d '%s' (want '%s')", zc->what, rc, err,
          zc->expect);
    if (rc < 0 && strstr(err, zc->expect))
        printf("  %-34s -> %s\n", zc->what, err);
}

static void test_corrupt_zip(void)
{
    size_t n, n64;
    uint8_t *orig = read_file(fixture("plain.pt"), &n);
    uint8_t *o64 = read_file(fixture("zip64.pt"), &n64);
    uint8_t *z = malloc(n + n64);
    size_t e, r;
    int fails = 0;
    char err[600];

    if (!orig || !o64 || !z) {
        CHECK(0, "fixtures missing");
        return;
    }
    e = eocd_of(n);
    CHECK(rd32(orig + e) == 0x06054b50);
    printf("corrupt zips (each must fail with its reason):\n");
#define FRESH() memcpy(z, orig, n)
    FRESH(); wr32(z + e + 16, (uint32_t)n + 100);
    expect_err(z, n, &(struct zcase){"central directory offset past end", "past the end"});
    FRESH(); wr16(z + e + 10, 60000);
    expect_err(z, n, &(struct zcase){"record count too large", "cannot fit"});
    FRESH(); wr16(z + e + 10, 0);
    expect_err(z, n, &(struct zcase){"no records", "empty archive"});
    FRESH(); wr16(z + e + 6, 3);
    expect_err(z, n, &(struct zcase){"multi-disk", "multi-disk"});
    FRESH(); z[rd32(orig + e + 16)] = 'X';
    expect_err(z, n, &(struct zcase){"broken central directory", "record 0 is broken"});
    FRESH(); wr16(z + rd32(orig + e + 16) + 28, 60000);
    expect_err(z, n, &(struct zcase){"CD name runs past the directory", "runs past"});
    FRESH(); z[e + 1] = 'X';
    expect_err(z, n, &(struct zcase){"no end record", "no end-of-central-directory"});
    r = cd_record(orig, n, "plain/data.pkl");
    CHECK(r > 0);
    FRESH(); wr32(z + r + 42, (uint32_t)n - 10);
    expect_err(z, n, &(struct zcase){"local header offset out of range", "local header"});
    FRESH(); wr16(z + r + 10, 8);
    expect_err(z, n, &(struct zcase){"compressed data.pkl", "compressed"});
    FRESH(); wr16(z + r + 8, 1);
    expect_err(z, n, &(struct zcase){"encrypted", "encrypted"});
    FRESH(); z[r + 46 + 13] = 'X';
    expect_err(z, n, &(struct zcase){"no data.pkl", "data.pkl"});
    FRESH(); wr32(z + r + 20, 1u << 30); wr32(z + r + 24, 1u << 30);
    expect_err(z, n, &(struct zcase){"record data past the end", "past the end"});
    r = cd_record(orig, n, "plain/data/0");
    CHECK(r > 0);
    FRESH(); z[r + 46 + 11] = 'Z';
    expect_err(z, n, &(struct zcase){"missing storage record", "storage record 'data/0' is "
                                     "missing"});
    FRESH(); z[rd32(orig + r + 42)] = 'X';
    expect_err(z, n, &(struct zcase){"local header signature", "local header"});
    FRESH(); wr32(z + r + 20, 4); wr32(z + r + 24, 4);
    expect_err(z, n, &(struct zcase){"storage shorter than numel", "holds 4 bytes"});
    r = cd_record(orig, n, "plain/byteorder");
    FRESH(); z[rec_data(orig, r)] = 'L';
    expect_err(z, n, &(struct zcase){"big-endian / bad byteorder", "byteorder"});
    r = cd_record(orig, n, "plain/data.pkl");
    {
        size_t pkl = rec_data(orig, r);
        uint8_t *fs;

        FRESH();
        fs = memmem(z + pkl, 600, "FloatStorage", 12);
        CHECK(fs != NULL);
        if (fs) {
            fs[2] = 'X';
            expect_err(z, n, &(struct zcase){"unsupported storage type", "torch.FlXatStorage"});
        }
        FRESH();
        z[pkl] = 0xFF;
        expect_err(z, n, &(struct zcase){"unknown pickle opcode", "unsupported pickle opcode 0xff"});
        FRESH();
        z[pkl + 1] = 9;
        expect_err(z, n, &(struct zcase){"pickle protocol 9", "protocol 9"});
    }
    /* zip64 */
    e = eocd_of(n64);
    memcpy(z, o64, n64);
    z[e - 20] = 'X';
    expect_err(z, n64, &(struct zcase){"zip64 locator missing", "zip64 locator"});
    memcpy(z, o64, n64);
    wr32(z + e - 20 + 8, (uint32_t)n64);
    expect_err(z, n64, &(struct zcase){"zip64 end record out of range", "zip64 end record"});
    memcpy(z, o64, n64);
    r = cd_record(o64, n64, "plain/data.pkl");
    z[r + 46 + 14] = 2;          /* zip64 extra id 1 -> 2 */
    expect_err(z, n64, &(struct zcase){"zip64 extra missing", "zip64 extra"});
    /* every truncation of both files fails, never crashes */
    for (size_t k = 0; k < n; k++)
        fails += open_copy(orig, k, NULL, err, sizeof(err)) < 0;
    for (size_t k = 0; k < n64; k++)
        fails += open_copy(o64, k, NULL, err, sizeof(err)) < 0;
    CHECK(fails == (int)(n + n64), "%d of %zu truncations refused", fails, n + n64);
    printf("  all %zu truncations refused\n", n + n64);
    /* random byte mutations: any rc, but no crash (ASan build checks memory) */
    {
        struct rng g;
        int ok = 0;

        rng_seed(&g, 7);
        for (int it = 0; it < 3000; it++) {
            FRESH();
            for (int m = 0; m < 1 + (int)(rng_u64(&g) % 4); m++)
                z[rng_u64(&g) % n] = (uint8_t)rng_u64(&g);
            ok += open_copy(z, n, NULL, err, sizeof(err)) == 0;
        }
        printf("  3000 random mutations: %d still parse, the rest refused\n", ok);
    }
#undef FRESH
    free(orig);
    free(o64);
    free(z);
}

static void test_bounds(void)
{
    struct ckpt c;
    uint8_t storage[64] = {0};
    int64_t sh[9] = {2, 3, 1, 1, 1, 1, 1, 1, 1}, st[9] = {3, 1, 1, 1, 1, 1, 1, 1, 1};
    int64_t big[2] = {4, (int64_t)1 << 62}, bst[2] = {(int64_t)1 << 62, 1};

    memset(&c, 0, sizeof(c));
    CHECK(ckpt_add(&c, "ok", DTYPE_F32, 2, sh, st, storage, 24, 0) == 0);
    CHECK(ckpt_add(&c, "ok_ofs", DTYPE_F32, 2, sh, st, storage, 64, 10) == 0);
    CHECK(ckpt_add(&c, "past", DTYPE_F32, 2, sh, st, storage, 24, 1) == S3D_EFORMAT &&
          strstr(c.err, "past its storage"), "%s", c.err);
    CHECK(ckpt_add(&c, "past2", DTYPE_F32, 2, sh, st, storage, 20, 0) == S3D_EFORMAT);
    CHECK(ckpt_add(&c, "ndim9", DTYPE_F32, 9, sh, st, storage, 64, 0) == S3D_EFORMAT &&
          strstr(c.err, "dimensions"));
    st[1] = -1;
    CHECK(ckpt_add(&c, "negstride", DTYPE_F32, 2, sh, st, storage, 64, 0) == S3D_EFORMAT &&
          strstr(c.err, "negative"));
    st[1] = 1;
    CHECK(ckpt_add(&c, "negofs", DTYPE_F32, 2, sh, st, storage, 64, -1) == S3D_EFORMAT);
    CHECK(ckpt_add(&c, "overflow", DTYPE_F32, 2, big, bst, storage, 64, 0) == S3D_EFORMAT,
          "huge shape x stride must not wrap around");
    sh[0] = 0;
    CHECK(ckpt_add(&c, "empty", DTYPE_F32, 2, sh, st, storage, 0, 0) == 0);
    CHECK(ckpt_add(&c, "empty_far", DTYPE_F32, 2, sh, st, storage, 0, 5) == S3D_EFORMAT);
    CHECK(ckpt_add(&c, "scalar", DTYPE_F64, 0, sh, st, storage, 8, 0) == 0);
    CHECK(ckpt_add(&c, "scalar_past", DTYPE_F64, 0, sh, st, storage, 8, 1) == S3D_EFORMAT);
    CHECK(c.n_entries == 4);
    ckpt_close(&c);
    printf("tensor bounds checks OK\n");
}

// ----------------------------------------------------------------------------
// issue 15: hostile object graphs, shapes and files

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint8_t *live_zip;   /* the buffer the last open_pkl's entries point into */

/* Open a torch zip around pkl with n_st storages of st_bytes; rc, c->err set.
 * The zip stays alive until the next call (close c first). */
static int open_pkl(struct ckpt *c, const struct zbuf *pkl, int n_st, size_t st_bytes,
                    double *secs)
{
    size_t n;
    double t0;
    int rc;

    free(live_zip);
    live_zip = torch_zip(pkl->p, pkl->n, n_st, st_bytes, &n);
    t0 = now_s();
    rc = ckpt_open_mem(c, live_zip, n, "hostile.pt", NULL);
    *secs = now_s() - t0;
    return rc;
}

/* {"a": x_depth} where x_0 = leaf (a tensor, or an empty list) and
 * x_{i+1} = [x_i, x_i]: 2^depth paths to the leaf in a few bytes per level. */
static void dag_pickle(struct zbuf *b, int depth, bool tensor_leaf)
{
    static const int64_t one = 1;

    zb_put(b, "\x80\x02", 2);
    if (tensor_leaf)
        pk_tensor(b, "0", 1, 0, 1, &one, &one);
    else
        zb_byte(b, ']');
    pk_put(b, 0);
    zb_byte(b, '0');                                  /* POP */
    for (int i = 1; i <= depth; i++) {
        zb_byte(b, ']');
        zb_byte(b, '(');
        pk_get(b, (uint32_t)i - 1);
        pk_get(b, (uint32_t)i - 1);
        zb_byte(b, 'e');                              /* APPENDS */
        pk_put(b, (uint32_t)i);
        zb_byte(b, '0');
    }
    zb_byte(b, '}');
    zb_byte(b, '(');
    pk_str(b, "a");
    pk_get(b, (uint32_t)depth);
    zb_byte(b, 'u');
    zb_byte(b, '.');
}

static void test_hostile_graphs(void)
{
    static const int64_t one = 1;
    struct zbuf b = {0};
    struct ckpt c;
    double secs;
    int rc;

    /* finding 5: a 1.3 KB pickle whose lists each hold the one before twice */
    dag_pickle(&b, 60, false);
    rc = open_pkl(&c, &b, 0, 0, &secs);
    CHECK(rc == 0 && c.n_entries == 0 && secs < 1.0, "DAG of 60 lists without tensors: rc %d "
          "%s in %.2f s", rc, c.err, secs);
    printf("DAG of 60 lists (%zu-byte pickle, 2^60 paths), no tensor: read in %.3f s, "
           "0 tensors\n", b.n, secs);
    ckpt_close(&c);
    zb_free(&b);
    dag_pickle(&b, 60, true);
    rc = open_pkl(&c, &b, 1, 4, &secs);
    CHECK(rc == S3D_EFORMAT && strstr(c.err, "shared over and over") && secs < 1.0,
          "DAG with a tensor leaf: rc %d '%s' in %.2f s", rc, c.err, secs);
    printf("DAG of 60 lists with a tensor leaf: refused in %.3f s: %s\n", secs, c.err);
    zb_free(&b);

    /* a tied sub-dictionary (one dict under two keys) still names both */
    zb_put(&b, "\x80\x02}(", 4);
    pk_str(&b, "a");
    zb_byte(&b, '}');
    zb_byte(&b, '(');
    pk_str(&b, "w");
    pk_tensor(&b, "0", 1, 0, 1, &one, &one);
    zb_byte(&b, 'u');
    pk_put(&b, 0);
    pk_str(&b, "b");
    pk_get(&b, 0);
    zb_put(&b, "u.", 2);
    rc = open_pkl(&c, &b, 1, 4, &secs);
    CHECK(rc == 0 && c.n_entries == 2 && ckpt_find(&c, "a.w") && ckpt_find(&c, "b.w") &&
          ckpt_find(&c, "a.w")->data == ckpt_find(&c, "b.w")->data, "tied dict: %s", c.err);
    ckpt_close(&c);
    zb_free(&b);

    /* a cycle through a tensor: l = [t]; l.append(l) */
    zb_put(&b, "\x80\x02}(", 4);
    pk_str(&b, "l");
    zb_byte(&b, ']');
    pk_put(&b, 0);
    pk_tensor(&b, "0", 1, 0, 1, &one, &one);
    zb_byte(&b, 'a');
    pk_get(&b, 0);
    zb_byte(&b, 'a');
    zb_put(&b, "u.", 2);
    rc = open_pkl(&c, &b, 1, 4, &secs);
    CHECK(rc == S3D_EFORMAT && strstr(c.err, "holds itself"), "tensor cycle: rc %d %s", rc,
          c.err);
    zb_free(&b);
    printf("tied sub-dictionary named twice; a cycle through a tensor refused: %s\n", c.err);
}

/* One tensor "t" of the given shape/stride over a 16-element storage. */
static int open_shape(struct ckpt *c, int ndim, const int64_t *shape, const int64_t *stride)
{
    struct zbuf b = {0};
    double secs;
    int rc;

    zb_put(&b, "\x80\x02}(", 4);
    pk_str(&b, "t");
    pk_tensor(&b, "0", 16, 0, ndim, shape, stride);
    zb_put(&b, "u.", 2);
    rc = open_pkl(c, &b, 1, 64, &secs);
    zb_free(&b);
    return rc;
}

static void test_hostile_shapes(void)
{
    int64_t sh[2], st[2] = {0, 0};
    struct ckpt c;
    int rc;

    /* finding 6: stride 0 makes the element count independent of the storage */
    sh[0] = sh[1] = (int64_t)1 << 32;
    rc = open_shape(&c, 2, sh, st);
    CHECK(rc == S3D_EFORMAT && strstr(c.err, "more than 2^63 bytes"), "[2^32, 2^32] stride 0: "
          "rc %d %s", rc, c.err);
    printf("[2^32, 2^32] stride 0: %s\n", c.err);
    sh[0] = sh[1] = (int64_t)1 << 30;
    rc = open_shape(&c, 2, sh, st);
    CHECK(rc == S3D_EFORMAT && strstr(c.err, "stride 0"), "[2^30, 2^30] stride 0: rc %d %s",
          rc, c.err);
    printf("[2^30, 2^30] stride 0: %s\n", c.err);
    sh[0] = 1000;                          /* a modest expanded view is a valid tensor */
    sh[1] = 4;
    st[1] = 1;
    rc = open_shape(&c, 2, sh, st);
    CHECK(rc == 0 && ckpt_entry_numel(ckpt_find(&c, "t")) == 4000, "[1000, 4] stride (0, 1): "
          "%s", c.err);
    if (!rc) {
        float out[8];

        ckpt_gather(ckpt_find(&c, "t"), 3996, 4, out);   /* the last row reads row 0 */
        CHECK(out[0] == 0.0f && out[3] == 0.0f);
    }
    ckpt_close(&c);
}

static void test_stored_sizes(void)
{
    static const int64_t one = 1;
    struct zbuf b = {0};
    struct ckpt c;
    size_t n;
    uint8_t *z, *cd;
    int rc;

    /* finding 10: a stored record whose two sizes differ is corrupt, not "compressed" */
    zb_put(&b, "\x80\x02}(", 4);
    pk_str(&b, "t");
    pk_tensor(&b, "0", 1, 0, 1, &one, &one);
    zb_put(&b, "u.", 2);
    z = torch_zip(b.p, b.n, 1, 4, &n);
    cd = memmem(z + 64, n - 64, "PK\x01\x02", 4);          /* a/data.pkl's directory record */
    CHECK(cd != NULL);
    if (cd) {
        cd[20] ^= 1;                                          /* compressed size */
        rc = ckpt_open_mem(&c, z, n, "sizes.pt", NULL);
        CHECK(rc == S3D_EFORMAT && strstr(c.err, "stored (not compressed)") &&
              strstr(c.err, "two sizes") && !strstr(c.err, "is compressed"), "%s", c.err);
        printf("stored record with two sizes: %s\n", c.err);
    }
    free(z);
    zb_free(&b);
}

static void test_fifo(void)
{
    char dir[] = "/tmp/s3d-fifo-XXXXXX", path[64];
    struct ckpt c;
    int rc;

    /* finding 7: a FIFO as the checkpoint must be refused, not waited on */
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/w.pt", dir);
    CHECK(mkfifo(path, 0600) == 0);
    alarm(20);                             /* a regression hangs: fail instead */
    rc = ckpt_open(&c, path, CKPT_QUIET);
    alarm(0);
    CHECK(rc == S3D_EINVAL && strstr(c.err, "is a FIFO"), "FIFO: rc %d %s", rc, c.err);
    printf("FIFO as a checkpoint: refused at once: %s\n", c.err);
    rc = ckpt_open(&c, "/dev/zero", CKPT_QUIET);
    CHECK(rc == S3D_EINVAL && strstr(c.err, "character device"), "/dev/zero: %s", c.err);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    log_init("test_torchzip");
    log_set_level(LOG_ERROR);
    test_fixtures();
    test_views();
    test_refused();
    test_corrupt_zip();
    test_bounds();
    test_hostile_graphs();
    test_hostile_shapes();
    test_stored_sizes();
    test_fifo();
    free(live_zip);
    return harness_done("test_torchzip");
}
