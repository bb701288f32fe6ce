/*
 * test_stage.c - the stage library's serve loop, through a real stage process
 * (build/tests/tools/echo_stage) on an ipc:// socket: every kind of malformed
 * request gets an error reply and the stage keeps serving; inline and shm data
 * paths; job-directory confinement; load/unload/status/shutdown; refusing a
 * clear-text non-loopback bind; CURVE when libzmq has it; option errors.
 */
#include "echo_fixture.h"
#include "err.h"
#include "harness.h"
#include "jobdir.h"
#include "log.h"
#include "safetensors.h"
#include "wire.h"

#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

static struct echo_fixture fx;       /* the echo binary, the job root (echo_fixture.h) */
static char *const echo_bin = fx.bin, *const root = fx.root;
static void *zctx;
static struct wire_msg req, rep;
static struct wire_frames frames;

static pid_t spawn(char *const argv[])
{
    pid_t pid = fork();

    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid)
{
    int st;

    for (int i = 0; i < 500; i++) {            /* 5 s */
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static void *connect_req(const char *ep)
{
    void *s = zmq_socket(zctx, ZMQ_REQ);
    int ms = 5000, zero = 0;

    zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof(ms));
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    CHECK(zmq_connect(s, ep) == 0);
    return s;
}

/* Send raw frames, receive the reply; returns the reply's error text or NULL. */
static const char *raw(void *s, int n, const void *const *data, const size_t *len)
{
    char err[256];

    for (int i = 0; i < n; i++)
        CHECK(zmq_send(s, data[i], len[i], i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
    CHECK(wire_recv(s, WIRE_REPLY, &rep, &frames, err, sizeof(err)) == 0, "reply: %s", err);
    return rep.has_error ? rep.error : NULL;
}

/* Send req (method m), receive the reply; returns the error text or NULL. */
static const char *call(void *s, enum wire_method m)
{
    char err[256];

    req.method = m;
    CHECK(wire_send(s, &req) == 0);
    CHECK(wire_recv(s, WIRE_REPLY, &rep, &frames, err, sizeof(err)) == 0, "reply: %s", err);
    CHECK(rep.id == req.id);
    return rep.has_error ? rep.error : NULL;
}

static void expect_err(const char *label, const char *e, const char *want)
{
    CHECK(e && strstr(e, want), "%s: got '%s', want '%s'", label, e ? e : "(no error)", want);
    printf("%-28s -> %s\n", label, e ? e : "(no error)");
}

static void test_malformed(void *s)
{
    const void *d[4];
    size_t l[4];
    char *hdr;
    size_t hl;
    static const float x[4] = {1, 2, 3, 4};

    d[0] = "hello"; l[0] = 5;
    expect_err("garbage single frame", raw(s, 1, d, l), "protocol frame");
    d[0] = "S3D/2"; l[0] = 5; d[1] = "x"; l[1] = 1;
    expect_err("wrong protocol frame", raw(s, 2, d, l), "protocol frame");
    d[0] = WIRE_PROTO; l[0] = 5; d[1] = "\xc1garbage"; l[1] = 8;
    expect_err("garbage header", raw(s, 2, d, l), "msgpack");
    d[1] = "\x81\xa2id\x07"; l[1] = 5;                      /* {"id": 7} */
    expect_err("missing method", raw(s, 2, d, l), "lacks 'method'");
    CHECK(rep.id == 7, "error reply carries the id");
    d[1] = "\x82\xa2id\x07\xa6method\xa6kaboom"; l[1] = 19;  /* method "kaboom" */
    expect_err("unknown method", raw(s, 2, d, l), "unknown method 'kaboom'");
    /* shape larger than the data frame */
    wire_msg_init(&req, WIRE_REQUEST, 8);
    req.method = WIRE_RUN;
    wire_add_frame(&req, "x", DTYPE_F32, SHAPE(2, 2), x);
    CHECK(wire_pack(&req, &hdr, &hl) == 0);
    d[1] = hdr; l[1] = hl; d[2] = x; l[2] = 12;
    expect_err("shape > data frame", raw(s, 3, d, l), "holds 12");
    free(hdr);
    /* still serving */
    wire_msg_init(&req, WIRE_REQUEST, 9);
    CHECK(call(s, WIRE_STATUS) == NULL);
    CHECK(wire_find(&rep, "loaded") && !wire_get_bool(&rep, "loaded", true));
    CHECK(!strcmp(wire_get_str(&rep, "name", ""), "echo"));
    CHECK(wire_get_int(&rep, "pid", 0) > 0);
}

static void test_inline(void *s)
{
    static const float x[6] = {1, -2, 3.5f, 0, 10, -0.25f};
    const float *y;

    wire_msg_init(&req, WIRE_REQUEST, 20);
    CHECK(wire_set_float(&req, "scale", 3.0) == 0);
    CHECK(wire_set_str(&req, "prefix", "y_") == 0);
    wire_add_frame(&req, "x", DTYPE_F32, SHAPE(2, 3), x);
    CHECK(call(s, WIRE_RUN) == NULL, "%s", rep.error);
    CHECK(rep.n_tensors == 1 && !strcmp(rep.tensors[0].name, "y_x") &&
          rep.tensors[0].frame == 2 && rep.tensors[0].shape[1] == 3);
    y = rep.tensors[0].data;
    for (int i = 0; y && i < 6; i++)
        CHECK(y[i] == 3 * x[i], "y[%d] = %g", i, y[i]);
    CHECK(wire_get_bool(&rep, "loaded", false), "run loads first");
    CHECK(wire_get_int(&rep, "requests", 0) == 1);
    /* the stage's own validation: a bad param type */
    wire_msg_init(&req, WIRE_REQUEST, 21);
    CHECK(wire_set_str(&req, "scale", "big") == 0);
    expect_err("bad param type", call(s, WIRE_RUN), "scale must be a number");
    /* an shm input without a job directory */
    wire_msg_init(&req, WIRE_REQUEST, 22);
    wire_add_shm(&req, "x", DTYPE_F32, SHAPE(1), "/etc/passwd");
    expect_err("shm without job", call(s, WIRE_RUN), "needs a job directory");
}

static void test_shm(void *s)
{
    static const int16_t v[5] = {1, -2, 300, 4, 5};
    struct st_write_item item = {"v", tensor_view((void *)v, DTYPE_I16, DEVICE_HOST,
                                                  SHAPE(5))};
    struct jobdir j;
    struct ckpt c;
    char in[PATH_MAX + 32], out[PATH_MAX + 32];

    CHECK(jobdir_create(&j, root) == 0);
    snprintf(in, sizeof(in), "%s/in.safetensors", j.path);
    CHECK(safetensors_write(in, &item, 1, NULL, 0) == 0);
    wire_msg_init(&req, WIRE_REQUEST, 30);
    CHECK(wire_set_str(&req, "job", j.path) == 0);
    CHECK(wire_set_str(&req, "out", "echo_res.safetensors") == 0);
    wire_add_shm(&req, "v", DTYPE_I16, SHAPE(5), in);
    CHECK(call(s, WIRE_RUN) == NULL, "%s", rep.error);
    snprintf(out, sizeof(out), "%s/echo_res.safetensors", j.path);
    CHECK(rep.n_tensors == 1 && !strcmp(rep.tensors[0].shm, out) && rep.tensors[0].frame < 0);
    if (safetensors_open(&c, out) == 0) {
        const struct ckpt_entry *e = ckpt_find(&c, "v");

        CHECK(e && e->dtype == DTYPE_I16 && e->shape[0] == 5 && !memcmp(e->data, v, 10));
        ckpt_close(&c);
    } else {
        CHECK(0, "output file written");
    }
    /* descriptor disagrees with the file */
    wire_msg_init(&req, WIRE_REQUEST, 31);
    CHECK(wire_set_str(&req, "job", j.path) == 0);
    wire_add_shm(&req, "v", DTYPE_I16, SHAPE(6), in);
    expect_err("shm shape mismatch", call(s, WIRE_RUN), "holds I16 [5]");
    /* a path outside the job directory, and a path param outside */
    wire_msg_init(&req, WIRE_REQUEST, 32);
    CHECK(wire_set_str(&req, "job", j.path) == 0);
    snprintf(out, sizeof(out), "%s/../../etc/passwd", j.path);
    wire_add_shm(&req, "v", DTYPE_I16, SHAPE(5), out);
    expect_err("shm outside job", call(s, WIRE_RUN), "not inside");
    wire_msg_init(&req, WIRE_REQUEST, 33);
    CHECK(wire_set_str(&req, "job", j.path) == 0);
    CHECK(wire_set_str(&req, "file", "/etc/passwd") == 0);
    expect_err("path param outside", call(s, WIRE_RUN), "not inside");
    wire_msg_init(&req, WIRE_REQUEST, 34);
    CHECK(wire_set_str(&req, "job", j.path) == 0);
    CHECK(wire_set_str(&req, "out", "../escape.safetensors") == 0);
    expect_err("out escapes", call(s, WIRE_RUN), "not an output name");
    /* a job that is not a job directory under the root */
    wire_msg_init(&req, WIRE_REQUEST, 35);
    CHECK(wire_set_str(&req, "job", "/tmp") == 0);
    expect_err("job not a job dir", call(s, WIRE_RUN), "is not a job directory");
    /* a missing input */
    wire_msg_init(&req, WIRE_REQUEST, 36);
    CHECK(wire_set_str(&req, "job", j.path) == 0);
    snprintf(out, sizeof(out), "%s/none.safetensors", j.path);
    wire_add_shm(&req, "v", DTYPE_I16, SHAPE(5), out);
    expect_err("missing shm file", call(s, WIRE_RUN), "missing");
    CHECK(jobdir_remove(j.path) == 0);
}

/* The files of job directory dir whose names contain part: how many. */
static int count_files(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    while (d && (e = readdir(d)))
        n += strstr(e->d_name, part) != NULL;
    if (d)
        closedir(d);
    return n;
}

/* Params write_ahead / fail_after / late_output (stage_write_ahead): the file written
 * ahead holds the same tensors at the same offsets as the one written at the end; a run
 * failing after it, or declaring an output after it, leaves no file behind; inline
 * replies ignore it; the stage serves on. */
static void test_write_ahead(void *s)
{
    static float a[1000];
    static const int16_t b[5] = {1, -2, 300, 4, 5};
    static const uint8_t c[3] = {7, 8, 9};
    struct st_write_item items[3] = {
        {"a", tensor_view(a, DTYPE_F32, DEVICE_HOST, SHAPE(1000))},
        {"c", tensor_view((void *)c, DTYPE_U8, DEVICE_HOST, SHAPE(3))},
        {"b", tensor_view((void *)b, DTYPE_I16, DEVICE_HOST, SHAPE(5))},
    };
    static const char *const outs[2] = {"echo_end.safetensors", "echo_ahead.safetensors"};
    struct ckpt ck[2];
    struct jobdir j;
    char in[PATH_MAX + 32], out[2][PATH_MAX + 32];

    for (int i = 0; i < 1000; i++)
        a[i] = (float)i * 0.5f - 7.0f;
    CHECK(jobdir_create(&j, root) == 0);
    snprintf(in, sizeof(in), "%s/in.safetensors", j.path);
    CHECK(safetensors_write(in, items, 3, NULL, 0) == 0);
    for (int k = 0; k < 2; k++) {             /* at the end, then two of three ahead */
        wire_msg_init(&req, WIRE_REQUEST, 40 + k);
        CHECK(wire_set_str(&req, "job", j.path) == 0);
        CHECK(wire_set_str(&req, "out", outs[k]) == 0);
        CHECK(wire_set_float(&req, "scale", 2.0) == 0);
        if (k)
            CHECK(wire_set_int(&req, "write_ahead", 2) == 0);
        for (int i = 0; i < 3; i++)
            wire_add_shm(&req, items[i].name, items[i].t.dtype, items[i].t.shape,
                         items[i].t.ndim, in);
        CHECK(call(s, WIRE_RUN) == NULL, "write_ahead %d: %s", k ? 2 : -1, rep.error);
        snprintf(out[k], sizeof(out[k]), "%s/%s", j.path, outs[k]);
        CHECK(rep.n_tensors == 3 && !strcmp(rep.tensors[0].shm, out[k]));
    }
    if (safetensors_open(&ck[0], out[0]) == 0 && safetensors_open(&ck[1], out[1]) == 0) {
        bool same = ck[0].n_entries == 3 && ck[1].n_entries == 3;
        for (int i = 0; same && i < 3; i++) {   /* the same bytes, as far from the end */
            const struct ckpt_entry *e0 = ckpt_find(&ck[0], items[i].name);
            const struct ckpt_entry *e1 = ckpt_find(&ck[1], items[i].name);
            size_t nb = tensor_nbytes(&items[i].t);
            same = e0 && e1 && e0->dtype == e1->dtype && e0->shape[0] == e1->shape[0] &&
                   ck[0].size - (size_t)(e0->data - ck[0].map) ==
                       ck[1].size - (size_t)(e1->data - ck[1].map) &&
                   !memcmp(e0->data, e1->data, nb);
        }
        const struct ckpt_entry *ea = ckpt_find(&ck[1], "a");
        CHECK(same && ea && ((const float *)ea->data)[999] == 2.0f * a[999],
              "written ahead: the same tensors, data block and order as written at the end");
        ckpt_close(&ck[0]);
        ckpt_close(&ck[1]);
    } else {
        CHECK(0, "both output files written");
    }
    /* a failure after the file was started: the error, nothing left in the job */
    wire_msg_init(&req, WIRE_REQUEST, 42);
    CHECK(wire_set_str(&req, "job", j.path) == 0);
    CHECK(wire_set_str(&req, "out", "echo_fail.safetensors") == 0);
    CHECK(wire_set_int(&req, "write_ahead", 1) == 0);
    CHECK(wire_set_str(&req, "fail_after", "failed after the write ahead") == 0);
    wire_add_shm(&req, "a", DTYPE_F32, SHAPE(1000), in);
    expect_err("fail after write_ahead", call(s, WIRE_RUN), "failed after the write ahead");
    CHECK(count_files(j.path, "echo_fail") == 0, "no file (or temporary file) left behind");
    /* an output declared after it: refused, nothing left */
    wire_msg_init(&req, WIRE_REQUEST, 43);
    CHECK(wire_set_str(&req, "job", j.path) == 0);
    CHECK(wire_set_str(&req, "out", "echo_late.safetensors") == 0);
    CHECK(wire_set_int(&req, "write_ahead", 0) == 0);
    CHECK(wire_set_bool(&req, "late_output", true) == 0);
    wire_add_shm(&req, "a", DTYPE_F32, SHAPE(1000), in);
    expect_err("output after write_ahead", call(s, WIRE_RUN), "declared after");
    CHECK(count_files(j.path, "echo_late") == 0, "no file left behind");
    /* inline: nothing to write ahead */
    wire_msg_init(&req, WIRE_REQUEST, 44);
    CHECK(wire_set_int(&req, "write_ahead", 1) == 0);
    wire_add_frame(&req, "b", DTYPE_I16, SHAPE(5), b);
    CHECK(call(s, WIRE_RUN) == NULL, "%s", rep.error);
    CHECK(rep.n_tensors == 1 && rep.tensors[0].frame >= 0 &&
          !memcmp(rep.tensors[0].data, b, sizeof(b)), "inline reply unchanged");
    CHECK(jobdir_remove(j.path) == 0);
}

static void test_methods(void *s)
{
    wire_msg_init(&req, WIRE_REQUEST, 40);
    CHECK(call(s, WIRE_UNLOAD) == NULL);
    CHECK(!wire_get_bool(&rep, "loaded", true) && wire_get_int(&rep, "weights_bytes", 1) == 0);
    CHECK(call(s, WIRE_LOAD) == NULL);
    CHECK(wire_get_bool(&rep, "loaded", false) && wire_get_int(&rep, "weights_bytes", 0) == 7);
    CHECK(call(s, WIRE_STATUS) == NULL);
    CHECK(wire_get_int(&rep, "host_peak_bytes", 0) > 0);
    /* stream_blocks places the weights at load: a run asking for the other placement
     * reloads first, one asking for the same does not, a load message keeps the last */
    int64_t loads = wire_get_int(&rep, "loads", -1);
    CHECK(!wire_get_bool(&rep, "stream_blocks", true) && loads >= 1);
    for (int k = 0; k < 4; k++) {
        static const bool want[4] = {true, true, false, true};
        static const int64_t more[4] = {1, 1, 2, 3};
        wire_msg_init(&req, WIRE_REQUEST, 41 + k);
        CHECK(wire_set_bool(&req, "stream_blocks", want[k]) == 0);
        CHECK(call(s, WIRE_RUN) == NULL, "%s", rep.error);
        CHECK(wire_get_bool(&rep, "stream_blocks", !want[k]) == want[k] &&
              wire_get_int(&rep, "loads", -1) == loads + more[k],
              "run %d with stream_blocks=%d: loads %lld", k, want[k],
              (long long)wire_get_int(&rep, "loads", -1));
    }
    CHECK(call(s, WIRE_UNLOAD) == NULL);
    CHECK(call(s, WIRE_LOAD) == NULL);
    CHECK(wire_get_bool(&rep, "stream_blocks", false) && wire_get_int(&rep, "loads", -1) ==
          loads + 4, "a load message places the weights as the last run asked");
    /* the warm-up (S3D_WARMUP=all, set before the spawn): after each load a load message
     * made (the one above and the first one), never after a run's own load, nor when the
     * load message finds the weights loaded */
    CHECK(wire_get_int(&rep, "warms", -1) == 2 && wire_get_float(&rep, "warm_ms", -1) >= 0,
          "warms %lld after two requested loads", (long long)wire_get_int(&rep, "warms", -1));
    CHECK(call(s, WIRE_LOAD) == NULL);
    CHECK(wire_get_int(&rep, "warms", -1) == 2, "a load of loaded weights warmed up again");
    CHECK(call(s, WIRE_SHUTDOWN) == NULL);
}

/* S3D_WARMUP=0: a requested load does not warm up. */
static void test_warmup_off(const char *weights)
{
    char ep[PATH_MAX + 32];
    char *argv[8] = {echo_bin, "--listen", ep, "--weights", (char *)weights, NULL};
    void *s;

    snprintf(ep, sizeof(ep), "%s-off", fx.ep);
    setenv("S3D_WARMUP", "0", 1);
    pid_t pid = spawn(argv);
    setenv("S3D_WARMUP", "all", 1);
    s = connect_req(ep);
    wire_msg_init(&req, WIRE_REQUEST, 60);
    CHECK(call(s, WIRE_LOAD) == NULL);
    CHECK(wire_get_bool(&rep, "loaded", false) && wire_get_int(&rep, "warms", -1) == 0 &&
          wire_get_float(&rep, "warm_ms", -1) == 0, "S3D_WARMUP=0: warms %lld",
          (long long)wire_get_int(&rep, "warms", -1));
    CHECK(call(s, WIRE_SHUTDOWN) == NULL);
    CHECK(wait_exit(pid) == 0);
    zmq_close(s);
}

/* Bind refusals and CURVE. */
static void test_binds(const char *weights)
{
    char *argv[8] = {echo_bin, "--listen", "tcp://0.0.0.0:47311", "--weights",
                     (char *)weights, NULL};
    pid_t pid = spawn(argv);

    CHECK(wait_exit(pid) == 1, "clear-text non-loopback bind must be refused");
    if (zmq_has("curve")) {
        char pub[41], sec[41], cpub[41], csec[41];
        char ep[64];
        void *s;
        char list[PATH_MAX + 16];
        char *av[8] = {echo_bin, "--listen", "tcp://0.0.0.0:47312", "--curve-secret", sec,
                       "--curve-clients", list, NULL};

        CHECK(zmq_curve_keypair(pub, sec) == 0 && zmq_curve_keypair(cpub, csec) == 0);
        snprintf(list, sizeof(list), "%s/clients", root);
        CHECK(write_file(list, cpub, 40) == 0);
        pid = spawn(av);
        s = zmq_socket(zctx, ZMQ_REQ);
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, pub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, cpub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, csec, 40);
        {
            int ms = 5000, zero = 0;

            zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof(ms));
            zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
        }
        snprintf(ep, sizeof(ep), "tcp://127.0.0.1:47312");
        CHECK(zmq_connect(s, ep) == 0);
        wire_msg_init(&req, WIRE_REQUEST, 50);
        CHECK(call(s, WIRE_SHUTDOWN) == NULL);
        zmq_close(s);
        CHECK(wait_exit(pid) == 0, "CURVE stage served and shut down");
        printf("CURVE tcp bind OK\n");
    } else {
        printf("CURVE: libzmq without CURVE, that part not tested\n");
    }
    {
        char *h[3] = {echo_bin, "--help", NULL};
        char *b[4] = {echo_bin, "--device", "gpu7", NULL};
        char *n[2] = {echo_bin, NULL};

        CHECK(wait_exit(spawn(h)) == 0);
        CHECK(wait_exit(spawn(b)) == 2);
        CHECK(wait_exit(spawn(n)) == 2);
    }
}

int main(void)
{
    char *ep = fx.ep, *weights = fx.weights;
    char *argv[8];
    pid_t pid;
    void *s;

    log_init("test_stage");
    echo_fixture_init(&fx, "s3d-test-stage");
    argv[0] = echo_bin; argv[1] = "--listen"; argv[2] = ep;
    argv[3] = "--weights"; argv[4] = weights; argv[5] = NULL;
    zctx = zmq_ctx_new();
    setenv("S3D_WARMUP", "all", 1);    /* the echo stage runs on the host */
    pid = spawn(argv);
    s = connect_req(ep);
    test_malformed(s);
    test_inline(s);
    test_shm(s);
    test_write_ahead(s);
    test_methods(s);
    CHECK(wait_exit(pid) == 0, "stage exits 0 after shutdown");
    zmq_close(s);
    test_warmup_off(weights);
    test_binds(weights);
    wire_frames_close(&frames);
    zmq_ctx_term(zctx);
    unlink(weights);
    rmdir(root);
    return harness_done("test_stage");
}
