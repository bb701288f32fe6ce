/*
 * test_wire.c - S3D/1 header pack/unpack: round trips of requests and replies,
 * then one hand-built malformed header per validation branch (each must give
 * S3D_EPROTO with a reason, never abort), then the same over a real ZeroMQ
 * socket pair (inproc) including a wrong protocol frame.
 */
#include "err.h"
#include "harness.h"
#include "log.h"
#include "wire.h"
#include "zap.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static struct wire_msg a, b;

static void test_roundtrip_request(void)
{
    static const float x[6] = {1, 2, 3, 4, 5, 6};
    static const uint8_t y[3] = {7, 8, 9};
    const void *frames[4];
    size_t sizes[4];
    char *hdr;
    size_t len;
    char err[256];

    wire_msg_init(&a, WIRE_REQUEST, 17);
    a.method = WIRE_RUN;
    CHECK(wire_set_int(&a, "steps", 25) == 0);
    CHECK(wire_set_int(&a, "neg", -5) == 0);
    CHECK(wire_set_float(&a, "cfg", 7.5) == 0);
    CHECK(wire_set_bool(&a, "flag", true) == 0);
    CHECK(wire_set_str(&a, "job", "/dev/shm/s3d-1-0") == 0);
    CHECK(wire_set_int(&a, "steps", 12) == 0);              /* replaces */
    wire_add_frame(&a, "x", DTYPE_F32, SHAPE(2, 3), x);
    wire_add_shm(&a, "cond", DTYPE_F16, SHAPE(1, 1374, 1024), "/dev/shm/s3d-1-0/c.safetensors");
    wire_add_frame(&a, "y", DTYPE_U8, SHAPE(3), y);
    CHECK(wire_pack(&a, &hdr, &len) == 0);
    frames[0] = WIRE_PROTO; sizes[0] = 5;
    frames[1] = hdr;        sizes[1] = len;
    frames[2] = x;          sizes[2] = sizeof(x);
    frames[3] = y;          sizes[3] = sizeof(y);
    CHECK(wire_unpack(WIRE_REQUEST, hdr, len, frames, sizes, 4, &b, err, sizeof(err)) == 0,
          "%s", err);
    CHECK(b.id == 17 && b.method == WIRE_RUN);
    CHECK(b.n_params == 5);
    CHECK(wire_get_int(&b, "steps", 0) == 12);
    CHECK(wire_get_int(&b, "neg", 0) == -5);
    CHECK(wire_get_float(&b, "cfg", 0) == 7.5);
    CHECK(wire_get_float(&b, "steps", 0) == 12.0);          /* int read as float */
    CHECK(wire_get_bool(&b, "flag", false) == true);
    CHECK(!strcmp(wire_get_str(&b, "job", ""), "/dev/shm/s3d-1-0"));
    CHECK(wire_get_int(&b, "absent", 42) == 42);
    CHECK(wire_get_int(&b, "job", 42) == 42 && !wire_param_ok(&b, "job", WIRE_INT));
    CHECK(!wire_param_ok(&b, "cfg", WIRE_INT) && wire_param_ok(&b, "steps", WIRE_FLOAT));
    CHECK(b.n_tensors == 3);
    CHECK(!strcmp(b.tensors[0].name, "x") && b.tensors[0].frame == 2 &&
          b.tensors[0].data == x && b.tensors[0].nbytes == 24 && b.tensors[0].ndim == 2 &&
          b.tensors[0].shape[1] == 3 && b.tensors[0].dtype == DTYPE_F32);
    CHECK(!strcmp(b.tensors[1].shm, "/dev/shm/s3d-1-0/c.safetensors") &&
          b.tensors[1].frame == -1 && b.tensors[1].shape[1] == 1374 &&
          b.tensors[1].dtype == DTYPE_F16);
    CHECK(b.tensors[2].frame == 3 && b.tensors[2].data == y && b.tensors[2].dtype == DTYPE_U8);
    CHECK(wire_tensor_find(&b, "cond") == &b.tensors[1] && !wire_tensor_find(&b, "zz"));
    free(hdr);
    printf("roundtrip request OK (%zu header bytes)\n", len);
}

static void test_roundtrip_reply(void)
{
    const void *frames[2];
    size_t sizes[2];
    char *hdr;
    size_t len;
    char err[256];

    wire_msg_init(&a, WIRE_REPLY, 5);
    a.has_error = true;
    strcpy(a.error, "input 'x': expected F32 [2,3]");
    CHECK(wire_set_int(&a, "peak_bytes", 1LL << 40) == 0);
    CHECK(wire_set_bool(&a, "loaded", false) == 0);
    wire_add_shm(&a, "out", DTYPE_BF16, SHAPE(0), "/x");   /* empty tensor */
    CHECK(wire_pack(&a, &hdr, &len) == 0);
    frames[0] = WIRE_PROTO; sizes[0] = 5;
    frames[1] = hdr;        sizes[1] = len;
    CHECK(wire_unpack(WIRE_REPLY, hdr, len, frames, sizes, 2, &b, err, sizeof(err)) == 0,
          "%s", err);
    CHECK(b.id == 5 && b.has_error && !strcmp(b.error, a.error));
    CHECK(wire_get_int(&b, "peak_bytes", 0) == 1LL << 40);
    CHECK(wire_find(&b, "loaded") && !wire_get_bool(&b, "loaded", true));
    CHECK(b.n_tensors == 1 && b.tensors[0].nbytes == 0 && b.tensors[0].dtype == DTYPE_BF16);
    free(hdr);
    /* a request header is not a valid reply (no 'error'), and vice versa (no 'method') */
    wire_msg_init(&a, WIRE_REQUEST, 1);
    CHECK(wire_pack(&a, &hdr, &len) == 0);
    CHECK(wire_unpack(WIRE_REPLY, hdr, len, frames, sizes, 2, &b, err, sizeof(err)) ==
          S3D_EPROTO);
    free(hdr);
    printf("roundtrip reply OK\n");
}

// ------------------------------------------------------------ malformed headers

/* A tiny msgpack writer for hand-made headers. */
static msgpack_sbuffer sb;
static msgpack_packer pk;

static void mp_begin(void)
{
    msgpack_sbuffer_clear(&sb);
}

static void mp_str(const char *s)
{
    msgpack_pack_str(&pk, strlen(s));
    msgpack_pack_str_body(&pk, s, strlen(s));
}

/* {"name": n, "dtype": dt, "shape": [d0, d1]} plus the caller's extra pairs */
static void mp_tensor_head(const char *n, const char *dt, int ndim, int64_t d0, int64_t d1,
                           int extra)
{
    msgpack_pack_map(&pk, (size_t)(3 + extra));
    mp_str("name");  mp_str(n);
    mp_str("dtype"); mp_str(dt);
    mp_str("shape");
    msgpack_pack_array(&pk, (size_t)ndim);
    if (ndim > 0) msgpack_pack_int64(&pk, d0);
    if (ndim > 1) msgpack_pack_int64(&pk, d1);
}

/* {"id": 9, "method": "run", "tensors": [<one tensor>]} header opening */
static void mp_req_head(void)
{
    msgpack_pack_map(&pk, 3);
    mp_str("id");     msgpack_pack_int(&pk, 9);
    mp_str("method"); mp_str("run");
    mp_str("tensors");
    msgpack_pack_array(&pk, 1);
}

/* Unpack sb as a request with n_frames frames of the given sizes; expect EPROTO
 * and a reason containing want. */
static void expect_bad(const char *label, int n_frames, const size_t *data_sizes,
                       const char *want)
{
    static char data[4][64];
    const void *frames[6] = {WIRE_PROTO, sb.data, data[0], data[1], data[2], data[3]};
    size_t sizes[6] = {5, sb.size, 0, 0, 0, 0};
    char err[512] = "";
    int rc;

    for (int i = 2; i < n_frames; i++)
        sizes[i] = data_sizes[i - 2];
    rc = wire_unpack(WIRE_REQUEST, sb.data, sb.size, frames, sizes, n_frames, &b, err,
                     sizeof(err));
    CHECK(rc == S3D_EPROTO, "%s: rc %d", label, rc);
    CHECK(strstr(err, want) != NULL, "%s: reason '%s' lacks '%s'", label, err, want);
    printf("malformed %-26s -> %s\n", label, err);
}

static void test_malformed(void)
{
    static const size_t f24[1] = {24}, f23[1] = {23}, f2[2] = {24, 24};

    /* garbage and non-map headers */
    mp_begin();
    msgpack_sbuffer_write(&sb, "\xc1\x00\x01", 3);
    expect_bad("garbage bytes", 2, NULL, "msgpack");
    mp_begin();
    msgpack_pack_array(&pk, 1);
    msgpack_pack_int(&pk, 1);
    expect_bad("array, not map", 2, NULL, "not a msgpack map");
    mp_begin();
    msgpack_sbuffer_write(&sb, "\xdd\xff\xff\xff\xff", 5);   /* array of 2^32-1, no items */
    expect_bad("huge declared array", 2, NULL, "msgpack");
    mp_begin();
    msgpack_sbuffer_write(&sb, "\x81\xa2id", 4);              /* map missing its value */
    expect_bad("truncated map", 2, NULL, "msgpack");
    mp_begin();
    msgpack_pack_map(&pk, 1); mp_str("id"); msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 2);                                /* trailing bytes */
    expect_bad("trailing bytes", 2, NULL, "msgpack");

    /* missing fields and wrong types */
    mp_begin();
    msgpack_pack_map(&pk, 1); mp_str("method"); mp_str("run");
    expect_bad("missing id", 2, NULL, "lacks 'id'");
    mp_begin();
    msgpack_pack_map(&pk, 2); mp_str("id"); mp_str("seven"); mp_str("method"); mp_str("run");
    expect_bad("id not int", 2, NULL, "'id' is not an integer");
    mp_begin();
    msgpack_pack_map(&pk, 1); mp_str("id"); msgpack_pack_int(&pk, 3);
    expect_bad("missing method", 2, NULL, "lacks 'method'");
    mp_begin();
    msgpack_pack_map(&pk, 2); mp_str("id"); msgpack_pack_int(&pk, 3);
    mp_str("method"); msgpack_pack_int(&pk, 1);
    expect_bad("method not str", 2, NULL, "'method' is not a string");
    mp_begin();
    msgpack_pack_map(&pk, 2); mp_str("id"); msgpack_pack_int(&pk, 3);
    mp_str("method"); mp_str("explode");
    expect_bad("unknown method", 2, NULL, "unknown method 'explode'");
    CHECK(b.id == 3, "id known before the failure is kept for the error reply");
    mp_begin();
    msgpack_pack_map(&pk, 3); mp_str("id"); msgpack_pack_int(&pk, 3);
    mp_str("method"); mp_str("run"); mp_str("params"); msgpack_pack_int(&pk, 1);
    expect_bad("params not map", 2, NULL, "'params' is not a map");
    mp_begin();
    msgpack_pack_map(&pk, 3); mp_str("id"); msgpack_pack_int(&pk, 3);
    mp_str("method"); mp_str("run"); mp_str("params");
    msgpack_pack_map(&pk, 1); mp_str("k"); msgpack_pack_array(&pk, 0);
    expect_bad("param of bad type", 2, NULL, "must be nil, bool, int, float or string");
    mp_begin();
    msgpack_pack_map(&pk, 3); mp_str("id"); msgpack_pack_int(&pk, 3);
    mp_str("method"); mp_str("run"); mp_str("tensors"); msgpack_pack_map(&pk, 0);
    expect_bad("tensors not array", 2, NULL, "'tensors' is not an array");

    /* tensor descriptors */
    mp_begin(); mp_req_head();
    msgpack_pack_map(&pk, 1); mp_str("name"); mp_str("x");
    expect_bad("tensor lacks dtype", 2, NULL, "lacks 'dtype'");
    mp_begin(); mp_req_head();
    mp_tensor_head("x", "f33", 2, 2, 3, 1); mp_str("frame"); msgpack_pack_int(&pk, 2);
    expect_bad("unknown dtype", 3, f24, "unknown dtype");
    mp_begin(); mp_req_head();
    mp_tensor_head("x", "f32", 2, 2, -3, 1); mp_str("frame"); msgpack_pack_int(&pk, 2);
    expect_bad("negative dim", 3, f24, "shape[1]");
    mp_begin(); mp_req_head();
    mp_tensor_head("x", "f32", 2, 1LL << 40, 1LL << 40, 1); mp_str("frame");
    msgpack_pack_int(&pk, 2);
    expect_bad("shape overflow", 3, f24, "overflows");
    mp_begin(); mp_req_head();
    mp_tensor_head("x", "f32", 2, 2, 3, 1); mp_str("frame"); msgpack_pack_int(&pk, 2);
    expect_bad("shape > data frame", 3, f23, "holds 23");
    mp_begin(); mp_req_head();
    mp_tensor_head("x", "f32", 2, 2, 3, 1); mp_str("frame"); msgpack_pack_int(&pk, 3);
    expect_bad("frame index out of range", 3, f24, "frame index out of range");
    mp_begin(); mp_req_head();
    mp_tensor_head("x", "f32", 2, 2, 3, 1); mp_str("frame"); msgpack_pack_int(&pk, 1);
    expect_bad("frame index 1 (header)", 3, f24, "frame index out of range");
    mp_begin(); mp_req_head();
    mp_tensor_head("x", "f32", 2, 2, 3, 0);
    expect_bad("neither frame nor shm", 2, NULL, "exactly one of");
    mp_begin(); mp_req_head();
    mp_tensor_head("x", "f32", 2, 2, 3, 2); mp_str("frame"); msgpack_pack_int(&pk, 2);
    mp_str("shm"); mp_str("/a");
    expect_bad("both frame and shm", 3, f24, "exactly one of");
    mp_begin(); mp_req_head();
    mp_tensor_head("x", "f32", 2, 2, 3, 1); mp_str("frame"); msgpack_pack_int(&pk, 2);
    expect_bad("extra data frame", 4, f2, "belongs to no tensor");
    mp_begin();
    msgpack_pack_map(&pk, 3); mp_str("id"); msgpack_pack_int(&pk, 9);
    mp_str("method"); mp_str("run"); mp_str("tensors"); msgpack_pack_array(&pk, 2);
    mp_tensor_head("x", "f32", 2, 2, 3, 1); mp_str("frame"); msgpack_pack_int(&pk, 2);
    mp_tensor_head("x", "f32", 2, 2, 3, 1); mp_str("frame"); msgpack_pack_int(&pk, 3);
    expect_bad("duplicate tensor name", 4, f2, "appears twice");
    mp_begin();
    msgpack_pack_map(&pk, 3); mp_str("id"); msgpack_pack_int(&pk, 9);
    mp_str("method"); mp_str("run"); mp_str("tensors"); msgpack_pack_array(&pk, 2);
    mp_tensor_head("x", "f32", 2, 2, 3, 1); mp_str("frame"); msgpack_pack_int(&pk, 2);
    mp_tensor_head("y", "f32", 2, 2, 3, 1); mp_str("frame"); msgpack_pack_int(&pk, 2);
    expect_bad("frame used twice", 4, f2, "used twice");
    mp_begin(); mp_req_head();
    mp_tensor_head("x", "f32", 2, 2, 3, 1); mp_str("shm"); mp_str("");
    expect_bad("empty shm path", 2, NULL, "'shm'");

    /* the good version of the same header passes (the tests above fail for their reason) */
    mp_begin(); mp_req_head();
    mp_tensor_head("x", "f32", 2, 2, 3, 1); mp_str("frame"); msgpack_pack_int(&pk, 2);
    {
        const void *frames[3] = {WIRE_PROTO, sb.data, "012345678901234567890123"};
        size_t sizes[3] = {5, sb.size, 24};
        char err[256];

        CHECK(wire_unpack(WIRE_REQUEST, sb.data, sb.size, frames, sizes, 3, &b, err,
                          sizeof(err)) == 0, "%s", err);
        /* extra unknown keys are ignored; upper-case dtype names are accepted */
    }
    mp_begin();
    msgpack_pack_map(&pk, 4); mp_str("id"); msgpack_pack_int(&pk, 9);
    mp_str("method"); mp_str("status"); mp_str("future"); msgpack_pack_array(&pk, 0);
    mp_str("tensors"); msgpack_pack_array(&pk, 1);
    mp_tensor_head("x", "BF16", 1, 4, 0, 1); mp_str("shm"); mp_str("/a/b");
    {
        const void *frames[2] = {WIRE_PROTO, sb.data};
        size_t sizes[2] = {5, sb.size};
        char err[256];

        CHECK(wire_unpack(WIRE_REQUEST, sb.data, sb.size, frames, sizes, 2, &b, err,
                          sizeof(err)) == 0, "%s", err);
        CHECK(b.method == WIRE_STATUS && b.tensors[0].dtype == DTYPE_BF16);
    }
}

// ------------------------------------------------------------ over sockets

static void test_sockets(void)
{
    static const int32_t v[4] = {1, -2, 3, -4};
    static struct wire_frames fr;
    void *ctx = zmq_ctx_new();
    void *rep = zmq_socket(ctx, ZMQ_PAIR), *req = zmq_socket(ctx, ZMQ_PAIR);
    char err[256];
    int rc;

    CHECK(zmq_bind(rep, "inproc://w") == 0 && zmq_connect(req, "inproc://w") == 0);
    wire_msg_init(&a, WIRE_REQUEST, 77);
    a.method = WIRE_SHUTDOWN;
    wire_add_frame(&a, "v", DTYPE_I32, SHAPE(2, 2), v);
    CHECK(wire_send(req, &a) == 0);
    rc = wire_recv(rep, WIRE_REQUEST, &b, &fr, err, sizeof(err));
    CHECK(rc == 0, "%s", err);
    CHECK(b.id == 77 && b.method == WIRE_SHUTDOWN && b.n_tensors == 1 &&
          !memcmp(b.tensors[0].data, v, sizeof(v)) && b.tensors[0].data != v);
    wire_frames_close(&fr);

    /* wrong protocol frame: consumed whole, S3D_EPROTO */
    zmq_send(req, "S3D/2", 5, ZMQ_SNDMORE);
    zmq_send(req, "x", 1, ZMQ_SNDMORE);
    zmq_send(req, "y", 1, 0);
    rc = wire_recv(rep, WIRE_REQUEST, &b, &fr, err, sizeof(err));
    CHECK(rc == S3D_EPROTO && strstr(err, "protocol frame"), "%d %s", rc, err);
    printf("socket: wrong protocol frame -> %s\n", err);
    /* single frame */
    zmq_send(req, WIRE_PROTO, 5, 0);
    rc = wire_recv(rep, WIRE_REQUEST, &b, &fr, err, sizeof(err));
    CHECK(rc == S3D_EPROTO && strstr(err, "no header"), "%d %s", rc, err);
    /* too many frames: drained, then refused */
    for (int i = 0; i < WIRE_MAX_FRAMES + 5; i++)
        zmq_send(req, i == 0 ? WIRE_PROTO : "z", i == 0 ? 5 : 1,
                 i < WIRE_MAX_FRAMES + 4 ? ZMQ_SNDMORE : 0);
    rc = wire_recv(rep, WIRE_REQUEST, &b, &fr, err, sizeof(err));
    CHECK(rc == S3D_EPROTO && strstr(err, "frames"), "%d %s", rc, err);
    /* and the socket still works: an error reply round trip */
    CHECK(wire_send_error(rep, 12, "bad thing") == 0);
    rc = wire_recv(req, WIRE_REPLY, &b, &fr, err, sizeof(err));
    CHECK(rc == 0 && b.id == 12 && b.has_error && !strcmp(b.error, "bad thing"), "%s", err);
    wire_frames_close(&fr);
    zmq_close(req);
    zmq_close(rep);
    zmq_ctx_term(ctx);
}

// ------------------------------------------------------------ issue 15: limits, CURVE clients

static void *tcp_pair(void *ctx, int type, const char *ep, bool bind_it)
{
    void *s = zmq_socket(ctx, type);
    int zero = 0, ms = 2000;

    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof(ms));
    CHECK((bind_it ? zmq_bind(s, ep) : zmq_connect(s, ep)) == 0, "%s: %s", ep,
          zmq_strerror(errno));
    return s;
}

/* Does a message arrive on s within ms? */
static bool readable(void *s, int ms)
{
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};

    return zmq_poll(&it, 1, ms) == 1;
}

static void test_limits(void)
{
    static struct wire_frames fr, cf;
    static uint8_t big[2u << 20];
    void *ctx = zmq_ctx_new();
    char ep[64], err[256];
    void *rep, *req, *bad;
    int rc, port = 20000 + (int)(getpid() % 20000);

    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", port);
    rep = zmq_socket(ctx, ZMQ_REP);
    CHECK(wire_limit(rep, &fr, 4096) == 0);
    CHECK(fr.max_bytes == 4096 + WIRE_MAX_HEADER + 64);
    {
        int zero = 0;

        zmq_setsockopt(rep, ZMQ_LINGER, &zero, sizeof(zero));
    }
    CHECK(zmq_bind(rep, ep) == 0, "%s", zmq_strerror(errno));
    /* finding 3: frames under the frame limit but over the message budget */
    req = tcp_pair(ctx, ZMQ_REQ, ep, false);
    wire_msg_init(&a, WIRE_REQUEST, 5);
    a.method = WIRE_RUN;
    for (int i = 0; i < 3; i++) {
        char name[8];

        snprintf(name, sizeof(name), "t%d", i);
        wire_add_frame(&a, name, DTYPE_U8, SHAPE(600000), big);
    }
    CHECK(wire_send(req, &a) == 0);
    rc = wire_recv(rep, WIRE_REQUEST, &b, &fr, err, sizeof(err));
    CHECK(rc == S3D_EPROTO && strstr(err, "refused") && fr.n == 0, "budget: %d %s", rc, err);
    printf("limits: 3 x 600 KB against a %llu-byte budget -> %s\n",
           (unsigned long long)fr.max_bytes, err);
    CHECK(wire_send_error(rep, 5, err) == 0);
    CHECK(wire_recv(req, WIRE_REPLY, &b, &cf, err, sizeof(err)) == 0 && b.has_error);
    /* a frame over ZMQ_MAXMSGSIZE: libzmq drops that peer, nothing reaches the stage */
    bad = tcp_pair(ctx, ZMQ_REQ, ep, false);
    wire_msg_init(&a, WIRE_REQUEST, 6);
    a.method = WIRE_RUN;
    wire_add_frame(&a, "huge", DTYPE_U8, SHAPE(sizeof(big)), big);
    CHECK(wire_send(bad, &a) == 0);
    CHECK(!readable(rep, 500), "a 2 MiB frame reached a socket limited to 1 MiB frames");
    /* and the socket still serves others */
    wire_msg_init(&a, WIRE_REQUEST, 7);
    CHECK(wire_send(req, &a) == 0);
    rc = wire_recv(rep, WIRE_REQUEST, &b, &fr, err, sizeof(err));
    CHECK(rc == 0 && b.id == 7, "after the drop: %d %s", rc, err);
    printf("limits: a 2 MiB frame dropped by ZMQ_MAXMSGSIZE; the next client is served\n");
    wire_frames_close(&fr);
    wire_frames_close(&cf);
    zmq_close(bad);
    zmq_close(req);
    zmq_close(rep);
    zmq_ctx_term(ctx);
}

static void test_curve_clients(void)
{
    static struct wire_frames fr, cf;
    char spub[41], ssec[41], apub[41], asec[41], bpub[41], bsec[41];
    char ep[64], err[256], list[] = "/tmp/s3d-test-zap-XXXXXX";
    void *ctx, *rep, *ca, *cb;
    struct zap *z = NULL;
    uint64_t allowed, refused;
    int one = 1, fd, port = 20000 + (int)((getpid() + 7) % 20000);
    FILE *f;

    if (!zmq_has("curve")) {
        printf("CURVE: this libzmq has none; skipped\n");
        return;
    }
    CHECK(zmq_curve_keypair(spub, ssec) == 0 && zmq_curve_keypair(apub, asec) == 0 &&
          zmq_curve_keypair(bpub, bsec) == 0);
    fd = mkstemp(list);
    f = fd >= 0 ? fdopen(fd, "w") : NULL;
    CHECK(f != NULL);
    if (!f)
        return;
    fprintf(f, "# the clients allowed\n\n%s\n", apub);
    fclose(f);
    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", port);
    ctx = zmq_ctx_new();
    CHECK(zap_start(ctx, list, &z) == 0);
    rep = zmq_socket(ctx, ZMQ_REP);
    CHECK(zmq_setsockopt(rep, ZMQ_CURVE_SERVER, &one, sizeof(one)) == 0 &&
          zmq_setsockopt(rep, ZMQ_CURVE_SECRETKEY, ssec, 40) == 0);
    {
        int zero = 0;

        zmq_setsockopt(rep, ZMQ_LINGER, &zero, sizeof(zero));
    }
    CHECK(zmq_bind(rep, ep) == 0);
    ca = zmq_socket(ctx, ZMQ_REQ);
    cb = zmq_socket(ctx, ZMQ_REQ);
    for (int i = 0; i < 2; i++) {
        void *c = i ? cb : ca;
        int zero = 0;

        zmq_setsockopt(c, ZMQ_LINGER, &zero, sizeof(zero));
        zmq_setsockopt(c, ZMQ_CURVE_SERVERKEY, spub, 40);
        zmq_setsockopt(c, ZMQ_CURVE_PUBLICKEY, i ? bpub : apub, 40);
        zmq_setsockopt(c, ZMQ_CURVE_SECRETKEY, i ? bsec : asec, 40);
        CHECK(zmq_connect(c, ep) == 0);
    }
    /* finding 4: a client with its own key pair, not on the list, gets nothing */
    wire_msg_init(&a, WIRE_REQUEST, 1);
    a.method = WIRE_SHUTDOWN;
    CHECK(wire_send(cb, &a) == 0);
    CHECK(!readable(rep, 1000), "an unlisted CURVE client reached the server");
    wire_msg_init(&a, WIRE_REQUEST, 2);
    CHECK(wire_send(ca, &a) == 0);
    CHECK(readable(rep, 5000) && wire_recv(rep, WIRE_REQUEST, &b, &fr, err, sizeof(err)) == 0 &&
          b.id == 2, "the listed client: %s", err);
    CHECK(wire_send_error(rep, 2, "fine") == 0);
    CHECK(wire_recv(ca, WIRE_REPLY, &b, &cf, err, sizeof(err)) == 0 && b.id == 2);
    zap_counts(z, &allowed, &refused);
    CHECK(allowed >= 1 && refused >= 1, "allowed %llu refused %llu", (unsigned long long)allowed,
          (unsigned long long)refused);
    printf("CURVE clients: the listed key is served, an unlisted one refused by the ZAP "
           "handler (%llu allowed, %llu refused)\n", (unsigned long long)allowed,
           (unsigned long long)refused);
    wire_frames_close(&fr);
    wire_frames_close(&cf);
    zmq_close(ca);
    zmq_close(cb);
    zmq_close(rep);
    zap_stop(z);
    zmq_ctx_term(ctx);
    /* allow-list files: each bad one named with its line */
    {
        uint8_t keys[2][32];
        static const struct { const char *text; const char *why; } bad[] = {
            {"", "no keys"}, {"# only a comment\n", "no keys"},
            {"short\n", ":1: not a 40-character"},
            {"\n0123456789012345678901234567890123456789~\n", ":2: not a 40-character"},
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            f = fopen(list, "w");
            fputs(bad[i].text, f);
            fclose(f);
            CHECK(zap_read_keys(list, keys, 2, err, sizeof(err)) < 0 && strstr(err, bad[i].why),
                  "case %zu: %s", i, err);
        }
        f = fopen(list, "w");
        fprintf(f, "%s\n%s\n%s\n", apub, bpub, spub);
        fclose(f);
        CHECK(zap_read_keys(list, keys, 2, err, sizeof(err)) < 0 && strstr(err, "more than 2"));
        CHECK(zap_read_keys("/nonexistent/list", keys, 2, err, sizeof(err)) < 0);
    }
    unlink(list);
}

static void test_endpoints(void)
{
    static const struct { const char *ep; bool curve; int rc; const char *why; } cases[] = {
        {"ipc:///dev/shm/s3d-1-0/x.sock", false, 0, NULL},
        {"inproc://x", false, 0, NULL},
        {"tcp://127.0.0.1:5555", false, 0, NULL},
        {"tcp://127.3.2.1:5555", false, 0, NULL},
        {"tcp://[::1]:5555", false, 0, NULL},
        {"tcp://0.0.0.0:5555", false, S3D_EINVAL, "without CURVE"},
        {"tcp://0.0.0.0:5555", true, 0, NULL},
        {"tcp://10.0.0.2:5555", false, S3D_EINVAL, "without CURVE"},
        {"tcp://localhost:5555", false, S3D_EINVAL, "tcp://127.0.0.1:5555"},
        {"tcp://localhost:5555", true, S3D_EINVAL, "not host names"},
        {"ipc://@s3d", false, S3D_EINVAL, "abstract socket"},
        {"ipc://@s3d", true, 0, NULL},
    };
    char why[300];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc;

        why[0] = 0;
        rc = wire_endpoint_check(cases[i].ep, cases[i].curve, why, sizeof(why));
        CHECK(rc == cases[i].rc && (!cases[i].why || strstr(why, cases[i].why)),
              "%s curve %d: rc %d '%s'", cases[i].ep, cases[i].curve, rc, why);
    }
    printf("endpoint policy: %zu cases (localhost and ipc://@ refused with the reason)\n",
           sizeof(cases) / sizeof(cases[0]));
}

int main(void)
{
    log_init("test_wire");
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    test_roundtrip_request();
    test_roundtrip_reply();
    test_malformed();
    test_sockets();
    test_limits();
    test_curve_clients();
    test_endpoints();
    msgpack_sbuffer_destroy(&sb);
    return harness_done("test_wire");
}
