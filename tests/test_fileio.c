/*
 * test_fileio.c - opening named files without trusting them (common/fileio.h)
 * and making quoted text visible (log_escape, common/log.h): a FIFO, /dev/zero,
 * a directory and a socket refused at once, a symlink refused with
 * FILE_NOFOLLOW, the size cap; exclusive creation that never follows a planted
 * symlink nor reuses a file; the temporary-then-rename commit; control bytes,
 * C1 controls and invalid UTF-8 escaped, valid UTF-8 kept.
 */
#include "fileio.h"
#include "harness.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char dir[PATH_MAX];

static void path_of(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static void test_open_read(void)
{
    char p[PATH_MAX + 32], q[PATH_MAX + 32], err[256];
    uint64_t size = 0;
    int fd, dfd = open(dir, O_RDONLY | O_DIRECTORY);

    path_of(p, sizeof(p), "data");
    CHECK(write_file(p, "0123456789", 10) == 0);
    fd = file_open_read(AT_FDCWD, p, 0, 0, &size, err, sizeof(err));
    CHECK(fd >= 0 && size == 10 && !(fcntl(fd, F_GETFL) & O_NONBLOCK), "%s", err);
    close(fd);
    CHECK(file_open_read(dfd, "data", FILE_NOFOLLOW, 10, &size, err, sizeof(err)) >= 0);
    CHECK(file_open_read(dfd, "data", 0, 9, &size, err, sizeof(err)) < 0 && errno == EFBIG &&
          strstr(err, "over the limit of 9"), "%s", err);
    path_of(q, sizeof(q), "fifo");
    CHECK(mkfifo(q, 0600) == 0);
    alarm(20);                              /* a regression blocks in open(): fail, not hang */
    CHECK(file_open_read(AT_FDCWD, q, 0, 0, &size, err, sizeof(err)) < 0 && errno == EINVAL &&
          !strcmp(err, "is a FIFO, not a regular file"), "%s", err);
    alarm(0);
    CHECK(file_open_read(AT_FDCWD, "/dev/zero", 0, 0, &size, err, sizeof(err)) < 0 &&
          strstr(err, "character device"), "%s", err);
    CHECK(file_open_read(AT_FDCWD, dir, 0, 0, &size, err, sizeof(err)) < 0 &&
          strstr(err, "a directory"), "%s", err);
    {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        int s = socket(AF_UNIX, SOCK_STREAM, 0);

        CHECK(strlen(dir) + 6 < sizeof(a.sun_path));
        memcpy(a.sun_path, dir, strlen(dir));
        memcpy(a.sun_path + strlen(dir), "/sock", 6);
        CHECK(s >= 0 && bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
        CHECK(file_open_read(AT_FDCWD, a.sun_path, 0, 0, &size, err, sizeof(err)) < 0 &&
              strstr(err, "cannot open"), "a socket: %s", err);
        close(s);
    }
    path_of(q, sizeof(q), "link");
    CHECK(symlink(p, q) == 0);
    CHECK(file_open_read(dfd, "link", 0, 0, &size, err, sizeof(err)) >= 0, "followed");
    CHECK(file_open_read(dfd, "link", FILE_NOFOLLOW, 0, &size, err, sizeof(err)) < 0 &&
          strstr(err, "symbolic link"), "%s", err);
    CHECK(file_open_read(dfd, "missing", 0, 0, &size, err, sizeof(err)) < 0 && errno == ENOENT);
    close(dfd);
    printf("file_open_read: FIFO, /dev/zero, a directory, a socket, a symlink (NOFOLLOW) and "
           "an oversized file refused without blocking\n");
}

static void test_create(void)
{
    char p[PATH_MAX + 32], tmp[256], buf[16];
    int dfd = open(dir, O_RDONLY | O_DIRECTORY), fd;
    struct stat st;

    /* a planted symlink under the name: never written through */
    path_of(p, sizeof(p), "victim");
    CHECK(write_file(p, "precious", 8) == 0);
    CHECK(symlinkat(p, dfd, "out.safetensors") == 0);
    CHECK(file_create_at(dfd, "out.safetensors", 0) < 0 && errno == EEXIST);
    CHECK(file_create_at(dfd, "victim", 0) < 0 && errno == EEXIST, "existing file reused");
    fd = file_create_tmp_at(dfd, "out.safetensors", tmp, sizeof(tmp));
    CHECK(fd >= 0 && !strncmp(tmp, "out.safetensors.tmp.", 20), "%s", tmp);
    CHECK(fstat(fd, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(file_write_all(fd, "new", 3) == 0);
    CHECK(file_commit_at(fd, dfd, tmp, "out.safetensors") == 0);
    /* the symlink was replaced by the new file; its target is untouched */
    CHECK(fstatat(dfd, "out.safetensors", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode));
    fd = open(p, O_RDONLY);
    CHECK(fd >= 0 && read(fd, buf, sizeof(buf)) == 8 && !memcmp(buf, "precious", 8));
    close(fd);
    CHECK(faccessat(dfd, tmp, F_OK, 0) != 0, "temporary gone");
    /* a failed commit leaves no temporary behind */
    fd = file_create_tmp_at(dfd, "x", tmp, sizeof(tmp));
    CHECK(fd >= 0);
    CHECK(mkdirat(dfd, "adir", 0700) == 0 && mkdirat(dfd, "adir/y", 0700) == 0);
    CHECK(file_commit_at(fd, dfd, tmp, "adir") < 0 && faccessat(dfd, tmp, F_OK, 0) != 0);
    close(dfd);
    printf("file_create_at: O_EXCL|O_NOFOLLOW (planted symlink and existing file refused), "
           "temporary + renameat commit replaces the name, never its target\n");
}

static void test_escape(void)
{
    static const struct { const char *in; const char *out; int flags; } cases[] = {
        {"plain.name", "plain.name", 0},
        {"a\nfake line", "a\\nfake line", 0},
        {"tab\there\r", "tab\\there\\r", 0},
        {"\x1b[2Jclear", "\\x1b[2Jclear", 0},
        {"del\x7f", "del\\x7f", 0},
        {"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 0},
        {"csi\xc2\x9b" "2J", "csi\\xc2\\x9b2J", 0},
        {"raw\x9b", "raw\\x9b", 0},
        {"bad\xc3(", "bad\\xc3(", 0},
        {"overlong\xc0\xaf", "overlong\\xc0\\xaf", 0},
        {"surrogate\xed\xa0\x80", "surrogate\\xed\\xa0\\x80", 0},
        {"back\\slash", "back\\slash", 0},
        {"back\\slash", "back\\\\slash", LOG_ESCAPE_BACKSLASH},
    };
    char out[64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        log_escape(out, sizeof(out), cases[i].in, cases[i].flags);
        CHECK(!strcmp(out, cases[i].out), "case %zu: '%s' want '%s'", i, out, cases[i].out);
    }
    CHECK(log_escape(out, 6, "abc\ndef", 0) == 5 && !strcmp(out, "abc\\n"), "cut: %s", out);
    CHECK(log_escape(out, 5, "abc\ndef", 0) == 3 && !strcmp(out, "abc"), "cut whole: %s", out);
    printf("log_escape: %zu cases (controls, C1, invalid UTF-8 escaped; UTF-8 kept)\n",
           sizeof(cases) / sizeof(cases[0]));
}

int main(void)
{
    char tmpl[] = "/tmp/s3d-test-fileio-XXXXXX";
    char cmd[PATH_MAX + 16];

    log_init("test_fileio");
    if (!mkdtemp(tmpl) || !realpath(tmpl, dir))
        harness_skip("cannot make a temporary directory");
    test_open_read();
    test_create();
    test_escape();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return harness_done("test_fileio");
}
