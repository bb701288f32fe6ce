/*
 * test_safetensors.c - sha256, json_min, the safetensors reader and writer, and
 * one corrupt-input case per validation branch of the reader.
 */
#include "ckpt_list.h"
#include "ckpt_testutil.h"
#include "err.h"
#include "harness.h"
#include "json_min.h"
#include "log.h"
#include "safetensors.h"
#include "sha256.h"

#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// sha256: NIST FIPS 180-2 examples

static void hash_hex(const void *p, size_t n, char hex[65])
{
    struct sha256 s;
    uint8_t d[32];

    sha256_init(&s);
    /* feed in uneven pieces to exercise the block buffer */
    for (size_t i = 0; i < n;) {
        size_t k = i % 3 ? 7 : 61;

        if (k > n - i)
            k = n - i;

        sha256_update(&s, (const uint8_t *)p + i, k);
        i += k;
    }
    sha256_final(&s, d);
    sha256_hex(d, hex);
}

static void test_sha256(void)
{
    static const struct { const char *msg; const char *hex; } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    char hex[65];
    char *a = malloc(1000000);

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        hash_hex(v[i].msg, strlen(v[i].msg), hex);
        CHECK(!strcmp(hex, v[i].hex), "sha256('%s') = %s", v[i].msg, hex);
    }
    memset(a, 'a', 1000000);
    hash_hex(a, 1000000, hex);
    CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
          "sha256(1e6 x 'a') = %s", hex);
    for (size_t n = 50; n < 130; n++) {    /* every padding length around a block edge */
        char h2[65];
        struct sha256 s;
        uint8_t d[32];

        hash_hex(a, n, hex);
        sha256_init(&s);
        sha256_update(&s, a, n);
        sha256_final(&s, d);
        sha256_hex(d, h2);
        CHECK(!strcmp(hex, h2), "split hashing differs at %zu bytes", n);
    }
    free(a);
    printf("sha256 NIST vectors OK\n");
}

// ----------------------------------------------------------------------------
// json_min

static int jparse(const char *s, struct json_doc *d, char *err)
{
    return json_parse(d, s, strlen(s), err, 128);
}

static void test_json(void)
{
    struct json_doc d;
    char err[128], buf[64];
    int64_t v;
    int i;
    static const char *bad[] = {
        "", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,2,]", "[1 2]", "{\"a\" 1}",
        "{1:2}", "\"abc", "\"a\\x\"", "\"a\\u12G4\"", "01", "-", "1.", "1e", "tru", "nul",
        "{\"a\":1}x", "[}", "{]", "\"tab\there\"", "{\"a\":[1,{\"b\":]}}",
    };

    CHECK(jparse(" {\"a\": [1, -2, 3.5e2, true, false, null], \"b\\\"q\\u00e9\\ud83d\\ude00\""
                 ": {\"c\": \"x\\n\"}, \"e\": {}, \"f\": []} ", &d, err) == 0, "%s", err);
    CHECK(d.nodes[0].type == JSON_OBJECT && d.nodes[0].size == 4);
    i = json_object_get(&d, 0, "a");
    CHECK(i > 0 && d.nodes[i].type == JSON_ARRAY && d.nodes[i].size == 6);
    CHECK(json_int64(&d, i + 1, &v) && v == 1);
    CHECK(json_int64(&d, i + 2, &v) && v == -2);
    CHECK(!json_int64(&d, i + 3, &v), "3.5e2 is not an exact integer");
    CHECK(d.nodes[i + 4].type == JSON_BOOL && d.nodes[i + 6].type == JSON_NULL);
    CHECK(json_string(&d, d.nodes[i].next, buf, sizeof(buf)) > 0 &&
          !strcmp(buf, "b\"q\xc3\xa9\xf0\x9f\x98\x80"), "escapes decode to UTF-8: %s", buf);
    i = json_object_get(&d, 0, "b\"q\xc3\xa9\xf0\x9f\x98\x80");
    CHECK(i > 0 && json_string(&d, json_object_get(&d, i, "c"), buf, sizeof(buf)) == 2 &&
          !strcmp(buf, "x\n"));
    CHECK(json_object_get(&d, 0, "e") > 0 && json_object_get(&d, 0, "zz") < 0);
    CHECK(json_string(&d, json_object_get(&d, i, "c"), buf, 2) < 0, "too small a buffer");
    json_free(&d);
    CHECK(jparse("9223372036854775807", &d, err) == 0 && json_int64(&d, 0, &v) &&
          v == INT64_MAX);
    json_free(&d);
    CHECK(jparse("9223372036854775808", &d, err) == 0 && !json_int64(&d, 0, &v), "overflow");
    json_free(&d);
    CHECK(jparse("\"a\\u0000b\"", &d, err) == 0 && json_string(&d, 0, buf, sizeof(buf)) < 0,
          "embedded NUL refused");
    json_free(&d);
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        int rc = jparse(bad[k], &d, err);

        CHECK(rc == S3D_EFORMAT && err[0], "bad JSON '%s' accepted", bad[k]);
    }
    {   /* nesting limit: 64 ok, 65 refused, 100000 refused without recursion */
        char deep[200001];
        int n;

        for (n = 0; n < JSON_MAX_DEPTH; n++) deep[n] = '[';
        for (int k = 0; k < JSON_MAX_DEPTH; k++) deep[n++] = ']';
        deep[n] = 0;
        CHECK(jparse(deep, &d, err) == 0, "depth 64: %s", err);
        json_free(&d);
        memset(deep, '[', 100000);
        memset(deep + 100000, ']', 100000);
        deep[200000] = 0;
        CHECK(jparse(deep, &d, err) == S3D_EFORMAT && strstr(err, "nesting"), "%s", err);
    }
    {   /* json_escape_byte: every byte escaped reads back as itself */
        char lit[2 + 255 * 6 + 1], e[7];
        size_t n = 0;

        CHECK(json_escape_byte(e, '"') == 2 && !strcmp(e, "\\\""));
        CHECK(json_escape_byte(e, '\n') == 6 && !strcmp(e, "\\u000a"));
        CHECK(json_escape_byte(e, 0xc3) == 1 && (unsigned char)e[0] == 0xc3 && !e[1]);
        lit[n++] = '"';
        for (int c = 1; c < 256; c++)
            n += (size_t)json_escape_byte(lit + n, (unsigned char)c);
        lit[n++] = '"';
        lit[n] = 0;
        CHECK(jparse(lit, &d, err) == 0, "%s", err);
        {
            char back[300];

            CHECK(json_string(&d, 0, back, sizeof(back)) == 255);
            for (int c = 1; c < 256; c++)
                CHECK((unsigned char)back[c - 1] == c, "byte %d", c);
        }
        json_free(&d);
    }
    printf("json_min OK (%zu malformed inputs refused)\n", sizeof(bad) / sizeof(bad[0]));
}

// ----------------------------------------------------------------------------
// reader on the Python-written fixture

static void test_read_fixture(void)
{
    struct ckpt c;
    const struct ckpt_entry *e;

    CHECK(safetensors_open(&c, fixture("all_dtypes.safetensors")) == 0);
    CHECK(c.format == CKPT_SAFETENSORS);
    check_listing(&c, "all_dtypes.safetensors.inspect", "all_dtypes.safetensors");
    CHECK(ckpt_meta(&c, "format") && !strcmp(ckpt_meta(&c, "format"), "pt"));
    CHECK(ckpt_meta(&c, "note") && !strcmp(ckpt_meta(&c, "note"), "fixture \"quoted\""));
    CHECK(!ckpt_meta(&c, "nope"));
    e = ckpt_find(&c, "c.i64");
    CHECK(e && e->dtype == DTYPE_I64 && e->ndim == 1 && e->shape[0] == 2);
    if (e) {
        struct tensor t = ckpt_entry_tensor(e);
        CHECK(((const int64_t *)t.data)[1] == (int64_t)1 << 40);
    }
    CHECK(!ckpt_find(&c, "c.i6") && !ckpt_find(&c, "zzz") && !ckpt_find(&c, ""));
    e = ckpt_find(&c, "scalar");
    CHECK(e && e->ndim == 0 && *(const float *)e->data == 2.0f);
    ckpt_close(&c);
    ckpt_close(&c);                                  /* idempotent */
    CHECK(ckpt_open(&c, "tests/fixtures/ckpt/all_dtypes.safetensors:c", 0) == 0);
    check_listing(&c, "all_dtypes.safetensors.c.inspect", "all_dtypes.safetensors:c");
    ckpt_close(&c);
    CHECK(safetensors_open(&c, fixture("plain.pt")) == S3D_EFORMAT, "a zip is not safetensors");
    CHECK(ckpt_open(&c, fixture("does_not_exist.safetensors"), CKPT_QUIET) == S3D_ENOTFOUND);
    CHECK(ckpt_open(&c, "tests/fixtures/ckpt", CKPT_QUIET) == S3D_EINVAL &&
          strstr(c.err, "is a directory"), "a directory: %s", c.err);
}

// ----------------------------------------------------------------------------
// writer round trip

static void test_write(void)
{
    char path[] = "/tmp/s3d_test_st_XXXXXX";
    int fd = mkstemp(path);
    float m[2][3] = {{1, 2, 3}, {4, 5, 6}};
    uint16_t h[3] = {0x3c00, 0xc000, 0x7e00};
    int64_t ids[2] = {-7, (int64_t)1 << 50};
    uint8_t flags[4] = {1, 0, 0, 1};
    double sc = 0.125;
    struct st_write_item items[6];
    const char *meta[] = {"format", "pt", "wéird \"key\"\n", "va\\lue"};
    struct ckpt c;
    const struct ckpt_entry *e;
    float got[6];
    size_t n;
    uint8_t *raw;

    close(fd);
    items[0] = (struct st_write_item){"m", tensor_view(m, DTYPE_F32, DEVICE_HOST, SHAPE(2, 3))};
    items[1] = (struct st_write_item){"m.t", items[0].t};
    items[1].t.shape[0] = 3; items[1].t.shape[1] = 2;            /* transposed view */
    items[1].t.stride[0] = 1; items[1].t.stride[1] = 3;
    items[2] = (struct st_write_item){"h", tensor_view(h, DTYPE_F16, DEVICE_HOST, SHAPE(3))};
    items[3] = (struct st_write_item){"ids", tensor_view(ids, DTYPE_I64, DEVICE_HOST, SHAPE(2))};
    items[4] = (struct st_write_item){"flags \"q\"", tensor_view(flags, DTYPE_BOOL, DEVICE_HOST,
                                                                 SHAPE(2, 2))};
    items[5] = (struct st_write_item){"sc", tensor_view(&sc, DTYPE_F64, DEVICE_HOST, NULL, 0)};
    CHECK(safetensors_write(path, items, 6, meta, 2) == 0);
    raw = read_file(path, &n);
    CHECK(raw && n > 8);
    if (raw) {
        uint64_t hl = 0;

        for (int i = 7; i >= 0; i--)
            hl = hl << 8 | raw[i];
        CHECK((8 + hl) % 64 == 0, "data starts at %llu, not 64-byte aligned",
              (unsigned long long)(8 + hl));
        free(raw);
    }
    CHECK(safetensors_open(&c, path) == 0);
    CHECK(c.n_entries == 6);
    for (int i = 0; i < c.n_entries; i++)   /* widest first: each tensor aligned in place */
        CHECK((uintptr_t)c.entries[i].data % dtype_size(c.entries[i].dtype) == 0,
              "tensor %s at a misaligned address", c.entries[i].name);
    e = ckpt_find(&c, "m.t");
    CHECK(e && e->shape[0] == 3 && e->shape[1] == 2);
    if (e) {
        ckpt_gather(e, 0, 6, got);
        CHECK(got[0] == 1 && got[1] == 4 && got[2] == 2 && got[5] == 6, "transposed contents");
    }
    e = ckpt_find(&c, "h");
    CHECK(e && e->dtype == DTYPE_F16 && !memcmp(e->data, h, sizeof(h)));
    e = ckpt_find(&c, "ids");
    CHECK(e && !memcmp(e->data, ids, sizeof(ids)));
    e = ckpt_find(&c, "flags \"q\"");
    CHECK(e && e->dtype == DTYPE_BOOL && !memcmp(e->data, flags, 4));
    e = ckpt_find(&c, "sc");
    CHECK(e && e->ndim == 0 && *(const double *)e->data == 0.125);
    CHECK(ckpt_meta(&c, "wéird \"key\"\n") && !strcmp(ckpt_meta(&c, "wéird \"key\"\n"),
                                                       "va\\lue"));
    ckpt_close(&c);
    /* st_writer: the items put last to first (the transposed view among them), the same
     * bytes; aborted after a put, nothing left */
    {
        char dir[] = "/tmp/s3d_test_stw_XXXXXX", p2[64];
        uint8_t *raw2;
        size_t n2;
        struct st_writer w;
        int dfd;

        CHECK(mkdtemp(dir) != NULL);
        dfd = open(dir, O_RDONLY | O_DIRECTORY);
        CHECK(dfd >= 0 && st_writer_open(&w, dfd, "w.safetensors", NULL, items, 6, meta, 2) == 0);
        for (int i = 5; i >= 0; i--)
            CHECK(st_writer_put(&w, items, i) == 0);
        CHECK(st_writer_commit(&w) == 0);
        snprintf(p2, sizeof(p2), "%s/w.safetensors", dir);
        raw = read_file(path, &n);
        raw2 = read_file(p2, &n2);
        CHECK(raw && raw2 && n == n2 && !memcmp(raw, raw2, n),
              "st_writer out of order: the bytes of safetensors_write");
        free(raw);
        free(raw2);
        unlink(p2);
        CHECK(st_writer_open(&w, dfd, "a.safetensors", NULL, items, 6, NULL, 0) == 0);
        CHECK(st_writer_put(&w, items, 0) == 0);
        st_writer_abort(&w);
        DIR *d = opendir(dir);
        int left = 0;
        for (struct dirent *de; d && (de = readdir(d));)
            left += de->d_name[0] != '.';
        if (d)
            closedir(d);
        CHECK(left == 0, "st_writer_abort leaves nothing (%d files)", left);
        close(dfd);
        rmdir(dir);
    }
    /* nothing written, no data, no meta: still a valid file */
    CHECK(safetensors_write(path, NULL, 0, NULL, 0) == 0);
    CHECK(safetensors_open(&c, path) == 0 && c.n_entries == 0);
    ckpt_close(&c);
    /* errors: duplicate name, reserved name, unwritable directory (nothing left behind) */
    items[1].name = "m";
    CHECK(safetensors_write(path, items, 2, NULL, 0) == S3D_EINVAL);
    items[1].name = "__metadata__";
    CHECK(safetensors_write(path, items, 2, NULL, 0) == S3D_EINVAL);
    CHECK(safetensors_write("/nonexistent_dir_s3d/x.safetensors", items, 1, NULL, 0) == S3D_EIO);
    CHECK(access("/nonexistent_dir_s3d", F_OK) != 0);
    unlink(path);
    printf("safetensors writer round trip OK\n");
}

// ----------------------------------------------------------------------------
// corrupt inputs: one per validation branch

static size_t make_st(uint8_t *buf, uint64_t hlen_field, const char *hdr, size_t data_len)
{
    size_t hl = strlen(hdr);

    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(hlen_field >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    memset(buf + 8 + hl, 0x3c, data_len);
    return 8 + hl + data_len;
}

static void test_corrupt(void)
{
    static const struct { const char *hdr; size_t data; const char *why; } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,9]}}", 8, "past the data"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,0]}}", 8, "not ordered"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-1,7]}}", 8, "not ordered"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "bytes of data"},
        {"{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 8, "unknown dtype"},
        {"{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "non-negative"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8, "non-negative"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, "shape"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 8,
         "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "needs dtype"},
        {"{\"a\":[1,2]}", 8, "not an object"},
        {"[1,2]", 8, "not a checkpoint"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}", 8, "both named"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "not a string"},
        {"{\"__metadata__\":[\"k\"]}", 0, "not an object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,8]}}",
         8, "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0,4611686018427387904,4],\"data_offsets\":"
         "[0,0]}}", 8, "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],}}", 8, "JSON"},
    };
    uint8_t buf[512];
    char err[600];
    size_t n;
    int rc;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        n = make_st(buf, strlen(cases[i].hdr), cases[i].hdr, cases[i].data);
        rc = open_copy(buf, n, NULL, err, sizeof(err));
        CHECK(rc < 0 && strstr(err, cases[i].why), "case %zu: rc %d, '%s' (want '%s')", i, rc,
              err, cases[i].why);
    }
    /* header length 2^60, length past the end, file shorter than 8 bytes */
    n = make_st(buf, (uint64_t)1 << 60, "{}", 0);
    rc = open_copy(buf, n, NULL, err, sizeof(err));
    CHECK(rc == S3D_EFORMAT && strstr(err, "past the end"), "2^60: %s", err);
    n = make_st(buf, 300, "{\"a\":1}", 0);
    rc = open_copy(buf, n, NULL, err, sizeof(err));
    CHECK(rc == S3D_EFORMAT && strstr(err, "past the end"), "%s", err);
    rc = open_copy("\x02\0\0\0\0\0\0", 7, NULL, err, sizeof(err));
    CHECK(rc == S3D_EFORMAT, "7 bytes: %s", err);
    /* a valid file truncated at every length fails cleanly */
    {
        size_t len;
        uint8_t *f = read_file(fixture("all_dtypes.safetensors"), &len);
        int fails = 0;

        for (size_t k = 0; f && k < len; k++)
            fails += open_copy(f, k, NULL, err, sizeof(err)) < 0;
        CHECK(f && fails == (int)len, "%d of %zu truncations refused", fails, len);
        /* the header-length bytes of a valid file set to 2^60 */
        if (f) {
            f[7] = 0x10;
            CHECK(open_copy(f, len, NULL, err, sizeof(err)) == S3D_EFORMAT);
        }
        free(f);
    }
    /* finding 6: strides are 64-bit: [3, 2^32] U8 reads rows 2^32 apart, not stride 0 */
    {
        static const char h[] = "{\"a\":{\"dtype\":\"U8\",\"shape\":[3,4294967296],"
                                "\"data_offsets\":[0,12884901888]}}";
        size_t hl = strlen(h);
        uint8_t *f = calloc(1, 8 + hl);
        struct ckpt c;

        CHECK(f != NULL);
        for (int i = 0; f && i < 8; i++)
            f[i] = (uint8_t)((uint64_t)hl >> (8 * i));
        if (f) {
            memcpy(f + 8, h, hl);
            memset(&c, 0, sizeof(c));
            c.map = f;
            c.size = 8 + hl + ((size_t)3 << 32);   /* the parser reads only the header */
            rc = safetensors_parse(&c);
            CHECK(rc == 0 && c.n_entries == 1 && c.entries[0].stride[0] == (int64_t)1 << 32 &&
                  c.entries[0].stride[1] == 1, "[3, 2^32]: rc %d %s stride %lld", rc, c.err,
                  c.n_entries ? (long long)c.entries[0].stride[0] : -1LL);
            c.map = NULL;
            ckpt_close(&c);
        }
        free(f);
    }
    /* a valid header with an empty tensor and trailing spaces is fine */
    n = make_st(buf, strlen("{\"e\":{\"dtype\":\"BF16\",\"shape\":[0,5],\"data_offsets\":[0,0]}}   "),
                "{\"e\":{\"dtype\":\"BF16\",\"shape\":[0,5],\"data_offsets\":[0,0]}}   ", 0);
    CHECK(open_copy(buf, n, NULL, err, sizeof(err)) == 0, "%s", err);
    printf("safetensors: %zu corrupt headers, 2^60 length and every truncation refused\n",
           sizeof(cases) / sizeof(cases[0]));
}

int main(void)
{
    log_init("test_safetensors");
    log_set_level(LOG_ERROR);
    test_sha256();
    test_json();
    test_read_fixture();
    test_write();
    test_corrupt();
    return harness_done("test_safetensors");
}
