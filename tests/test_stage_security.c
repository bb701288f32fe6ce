/*
 * test_stage_security.c - issue 15's findings against a real stage process
 * (build/tests/tools/echo_stage, docs/security.md): each reproduction is refused
 * or handled, nothing outside the job directory is touched, and the stage is
 * still serving afterwards.
 *   F1 a planted symlink under the output's names; job directories of mode 0777,
 *      of another user, reached through a symlink
 *   F2 'out' naming the stage's socket, an input, another stage's artifact
 *   F3 a frame over the stage's limit (dropped by libzmq), a message over its
 *      budget (an error reply)
 *   F4 CURVE: an unlisted client gets nothing; CURVE without a client list is
 *      refused at start
 *   F7 an shm input that is a FIFO
 *   F9 the stage exits when the pipe from its parent (S3D_PARENT_FD) closes
 *  F10 tcp://localhost and ipc://@abstract refused at start with the fix
 */
#include "echo_fixture.h"
#include "err.h"
#include "harness.h"
#include "jobdir.h"
#include "log.h"
#include "safetensors.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

static struct echo_fixture fx;       /* the echo binary, the job root (echo_fixture.h) */
static char *const echo_bin = fx.bin, *const root = fx.root;
static void *zctx;
static struct wire_msg req, rep;
static struct wire_frames frames;
static uint8_t big[4u << 20];

static pid_t spawn(char *const argv[], int keep_fd)
{
    pid_t pid = fork();

    if (pid == 0) {
        if (keep_fd >= 0)
            fcntl(keep_fd, F_SETFD, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Wait up to ms for pid to exit; its exit code, or -1 (then it is killed). */
static int wait_exit(pid_t pid, int ms)
{
    int st;

    for (int i = 0; i < ms / 10; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static void *connect_req(const char *ep, const char *spub, const char *cpub, const char *csec)
{
    void *s = zmq_socket(zctx, ZMQ_REQ);
    int ms = 5000, zero = 0;

    zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof(ms));
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
    if (spub) {
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, spub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, cpub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, csec, 40);
    }
    CHECK(zmq_connect(s, ep) == 0);
    return s;
}

/* Send req as method m; the reply's error text, NULL when it succeeded, or
 * "(no reply)" when none came within ms. */
static const char *call_ms(void *s, enum wire_method m, int ms)
{
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    char err[256];

    req.method = m;
    CHECK(wire_send(s, &req) == 0);
    if (zmq_poll(&it, 1, ms) != 1)
        return "(no reply)";
    CHECK(wire_recv(s, WIRE_REPLY, &rep, &frames, err, sizeof(err)) == 0, "reply: %s", err);
    return rep.has_error ? rep.error : NULL;
}

static const char *call(void *s, enum wire_method m) { return call_ms(s, m, 5000); }

static void expect_err(const char *label, const char *e, const char *want)
{
    CHECK(e && strstr(e, want), "%s: got '%s', want '%s'", label, e ? e : "(no error)", want);
    printf("%-40s -> %.300s\n", label, e ? e : "(no error)");
}

static bool file_is(const char *path, const char *content)
{
    char buf[64] = {0};
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

    if (fd >= 0)
        close(fd);
    return n == (ssize_t)strlen(content) && !memcmp(buf, content, (size_t)n);
}

static void status_ok(void *s, const char *when)
{
    wire_msg_init(&req, WIRE_REQUEST, 99);
    CHECK(call(s, WIRE_STATUS) == NULL, "still serving %s", when);
}

static void run_req(const char *job, const char *out, int64_t id)
{
    static const float x[3] = {1, 2, 3};

    wire_msg_init(&req, WIRE_REQUEST, id);
    if (job)
        CHECK(wire_set_str(&req, "job", job) == 0);
    if (out)
        CHECK(wire_set_str(&req, "out", out) == 0);
    wire_add_frame(&req, "x", DTYPE_F32, SHAPE(3), x);
}

static void test_job_dirs(void *s, const struct jobdir *j)
{
    char victim[PATH_MAX + 16], p[PATH_MAX + 64], evil[PATH_MAX + 16];
    struct stat st;

    /* F1: symlinks planted under the output's name and the old temporary's name */
    snprintf(victim, sizeof(victim), "%s/victim", root);
    CHECK(write_file(victim, "precious", 8) == 0);
    CHECK(chmod(victim, 0600) == 0);
    snprintf(p, sizeof(p), "%s/echo.safetensors", j->path);
    CHECK(symlink(victim, p) == 0);
    for (int pid = 1; pid < 64; pid++) {               /* the names <out>.tmp.<pid> once had */
        snprintf(p, sizeof(p), "%s/echo.safetensors.tmp.%d", j->path, pid);
        CHECK(symlink(victim, p) == 0);
    }
    run_req(j->path, NULL, 1);
    CHECK(call(s, WIRE_RUN) == NULL, "run with planted symlinks: %s", rep.error);
    snprintf(p, sizeof(p), "%s/echo.safetensors", j->path);
    CHECK(lstat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0600,
          "the output replaced the symlink");
    CHECK(file_is(victim, "precious"), "the symlink's target outside the job is untouched");
    printf("F1 planted symlinks: the output replaced its symlink, the target is untouched\n");

    /* F1: job directories a stage must refuse */
    snprintf(evil, sizeof(evil), "%s/s3d-evil", root);
    CHECK(mkdir(evil, 0700) == 0 && chmod(evil, 0777) == 0);
    run_req(evil, NULL, 2);
    expect_err("F1 job dir of mode 0777", call(s, WIRE_RUN), "mode 0777");
    if (geteuid() == 0) {
        CHECK(chmod(evil, 0700) == 0 && chown(evil, 12345, 12345) == 0);
        run_req(evil, NULL, 3);
        expect_err("F1 another user's job dir", call(s, WIRE_RUN), "owned by uid 12345");
    }
    snprintf(p, sizeof(p), "%s/echo.safetensors", evil);
    CHECK(access(p, F_OK) != 0, "nothing written into a refused job directory");
    snprintf(p, sizeof(p), "%s/s3d-link", root);
    CHECK(symlink(j->path, p) == 0);
    run_req(p, NULL, 4);
    expect_err("F1 job dir through a symlink", call(s, WIRE_RUN), "symbolic link");
    unlink(p);

    /* F2: outputs that would overwrite the socket, an input, another artifact */
    {
        static const char *outs[] = {"echo.sock", "input_image", "cond_ss.safetensors",
                                     "echo.safetensors.tmp.x", ".echo.safetensors"};
        char sock[PATH_MAX + 16];

        snprintf(p, sizeof(p), "%s/input_image", j->path);
        CHECK(write_file(p, "IMAGE", 5) == 0);
        snprintf(p, sizeof(p), "%s/cond_ss.safetensors", j->path);
        CHECK(write_file(p, "COND", 4) == 0);
        snprintf(sock, sizeof(sock), "%s/echo.sock", j->path);
        CHECK(write_file(sock, "SOCK", 4) == 0);
        for (size_t i = 0; i < sizeof(outs) / sizeof(outs[0]); i++) {
            char label[64];

            snprintf(label, sizeof(label), "F2 out '%s'", outs[i]);
            run_req(j->path, outs[i], 10 + (int64_t)i);
            expect_err(label, call(s, WIRE_RUN), "not an output name");
        }
        snprintf(p, sizeof(p), "%s/input_image", j->path);
        CHECK(file_is(p, "IMAGE") && file_is(sock, "SOCK"), "input and socket untouched");
        snprintf(p, sizeof(p), "%s/cond_ss.safetensors", j->path);
        CHECK(file_is(p, "COND"), "another stage's artifact untouched");
        run_req(j->path, "echo_2.safetensors", 19);
        CHECK(call(s, WIRE_RUN) == NULL, "echo_<tag>.safetensors is allowed: %s", rep.error);
    }

    /* F7: an shm input that is a FIFO in the job */
    snprintf(p, sizeof(p), "%s/fifo.safetensors", j->path);
    CHECK(mkfifo(p, 0600) == 0);
    wire_msg_init(&req, WIRE_REQUEST, 20);
    CHECK(wire_set_str(&req, "job", j->path) == 0);
    wire_add_shm(&req, "x", DTYPE_F32, SHAPE(3), p);
    expect_err("F7 shm input that is a FIFO", call_ms(s, WIRE_RUN, 5000), "is a FIFO");
    status_ok(s, "after the refusals");
}

static void test_messages(const char *ep)
{
    void *s = connect_req(ep, NULL, NULL, NULL), *t;

    /* F3: the echo stage accepts 1 MiB of tensors (stage_ops.max_input_bytes) */
    wire_msg_init(&req, WIRE_REQUEST, 30);
    for (int i = 0; i < 3; i++) {
        char name[8];

        snprintf(name, sizeof(name), "t%d", i);
        wire_add_frame(&req, name, DTYPE_U8, SHAPE(900000), big);
    }
    expect_err("F3 3 x 900 KB over the budget", call(s, WIRE_RUN), "refused");
    t = connect_req(ep, NULL, NULL, NULL);
    wire_msg_init(&req, WIRE_REQUEST, 31);
    wire_add_frame(&req, "huge", DTYPE_U8, SHAPE(sizeof(big)), big);
    expect_err("F3 a 4 MiB frame (MAXMSGSIZE)", call_ms(t, WIRE_RUN, 1500), "(no reply)");
    zmq_close(t);
    status_ok(s, "after an oversized frame");
    zmq_close(s);
}

static void test_curve(const char *weights)
{
    char spub[41], ssec[41], apub[41], asec[41], bpub[41], bsec[41], ep[64], list[PATH_MAX + 16];
    int port = 20000 + (int)(getpid() % 20000);
    pid_t pid;
    void *a, *b;
    FILE *f;

    if (!zmq_has("curve")) {
        printf("F4: libzmq without CURVE, not tested\n");
        return;
    }
    CHECK(zmq_curve_keypair(spub, ssec) == 0 && zmq_curve_keypair(apub, asec) == 0 &&
          zmq_curve_keypair(bpub, bsec) == 0);
    snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", port);
    {   /* CURVE without a client list: refused at start */
        char *av[] = {echo_bin, "--listen", ep, "--weights", (char *)weights, "--curve-secret",
                      ssec, NULL};

        CHECK(wait_exit(spawn(av, -1), 5000) == 2, "CURVE without --curve-clients must fail");
    }
    snprintf(list, sizeof(list), "%s/clients", root);
    f = fopen(list, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fprintf(f, "# allowed\n%s\n", apub);
    fclose(f);
    {
        char *av[] = {echo_bin, "--listen", ep, "--weights", (char *)weights, "--curve-secret",
                      ssec, "--curve-clients", list, NULL};

        pid = spawn(av, -1);
    }
    b = connect_req(ep, spub, bpub, bsec);
    wire_msg_init(&req, WIRE_REQUEST, 40);
    expect_err("F4 unlisted CURVE client: shutdown", call_ms(b, WIRE_SHUTDOWN, 1500),
               "(no reply)");
    a = connect_req(ep, spub, apub, asec);
    wire_msg_init(&req, WIRE_REQUEST, 41);
    CHECK(call(a, WIRE_STATUS) == NULL, "the listed client is served");
    CHECK(call(a, WIRE_SHUTDOWN) == NULL);
    CHECK(wait_exit(pid, 5000) == 0, "served the listed client, then shut down");
    printf("F4 CURVE: the listed client is served, an unlisted one gets nothing\n");
    zmq_close(a);
    zmq_close(b);
}

static void test_endpoints(const char *weights)
{
    static const char *eps[] = {"tcp://localhost:47913", "ipc://@s3d-test-abstract"};

    for (int i = 0; i < 2; i++) {
        char *av[] = {echo_bin, "--listen", (char *)eps[i], "--weights", (char *)weights, NULL};

        CHECK(wait_exit(spawn(av, -1), 5000) == 1, "%s must be refused", eps[i]);
    }
    printf("F10 tcp://localhost and ipc://@abstract refused at start\n");
}

static void test_parent_pipe(const char *weights)
{
    char ep[PATH_MAX + 32], env[32];
    int fds[2];
    pid_t pid;
    void *s;

    CHECK(pipe2(fds, O_CLOEXEC) == 0);
    snprintf(ep, sizeof(ep), "ipc://%s/watched.sock", root);
    snprintf(env, sizeof(env), "%d", fds[0]);
    setenv("S3D_PARENT_FD", env, 1);
    {
        char *av[] = {echo_bin, "--listen", ep, "--weights", (char *)weights, NULL};

        pid = spawn(av, fds[0]);
    }
    unsetenv("S3D_PARENT_FD");
    close(fds[0]);
    s = connect_req(ep, NULL, NULL, NULL);
    status_ok(s, "while its parent lives");
    close(fds[1]);                                     /* the parent is gone */
    CHECK(wait_exit(pid, 3000) == 0, "an idle stage exits when its parent's pipe closes");
    printf("F9 the stage exits when the pipe from its parent closes\n");
    zmq_close(s);
}

int main(void)
{
    char *ep = fx.ep, *weights = fx.weights;
    struct jobdir j;
    pid_t pid;
    void *s;

    log_init("test_stage_security");
    echo_fixture_init(&fx, "s3d-test-sec");
    zctx = zmq_ctx_new();
    {
        char *av[] = {echo_bin, "--listen", ep, "--weights", weights, NULL};

        pid = spawn(av, -1);
    }
    s = connect_req(ep, NULL, NULL, NULL);
    CHECK(jobdir_create(&j, root) == 0);
    test_job_dirs(s, &j);
    test_messages(ep);
    wire_msg_init(&req, WIRE_REQUEST, 98);
    CHECK(call(s, WIRE_SHUTDOWN) == NULL);
    CHECK(wait_exit(pid, 5000) == 0, "the stage served to the end");
    zmq_close(s);
    test_curve(weights);
    test_endpoints(weights);
    test_parent_pipe(weights);
    wire_frames_close(&frames);
    zmq_ctx_term(zctx);
    jobdir_close(&j);
    {
        char cmd[2 * PATH_MAX + 64];

        snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s'; rm -rf '%s'", root, root);
        CHECK(system(cmd) == 0);
    }
    return harness_done("test_stage_security");
}
