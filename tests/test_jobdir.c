/*
 * test_jobdir.c - job directories: create under a private root, confine paths
 * (.., absolute paths, symlink escapes, dangling symlinks, the dir itself),
 * remove recursively without following symlinks, refuse non-job paths; issue
 * 15: a stage's checks on a job directory (owner, mode 0700, directly under the
 * root, no symlink), plain input names opened O_NOFOLLOW|O_NONBLOCK, the output
 * names a stage may write, copying the user's inputs in (/dev/zero and FIFOs
 * refused), and removing the stale directories of dead orchestrators.
 */
#include "err.h"
#include "harness.h"
#include "jobdir.h"
#include "log.h"

#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[PATH_MAX];

static void touch(const char *dir, const char *name)
{
    char p[2 * PATH_MAX];

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    CHECK(write_file(p, "x", 1) == 0, "%s", p);
}

static void test_create(struct jobdir *j)
{
    struct jobdir k;
    struct stat st;

    CHECK(jobdir_create(j, root) == 0);
    CHECK(strncmp(j->path, root, strlen(root)) == 0, "%s under %s", j->path, root);
    CHECK(strstr(j->path, "/s3d-") != NULL);
    CHECK(stat(j->path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    CHECK(jobdir_is_job(j->path));
    CHECK(jobdir_create(&k, root) == 0 && strcmp(k.path, j->path) != 0, "unique names");
    CHECK(jobdir_remove(k.path) == 0 && access(k.path, F_OK) != 0);
    jobdir_close(&k);
    setenv("S3D_JOB_ROOT", root, 1);
    CHECK(!strcmp(jobdir_default_root(), root));
    unsetenv("S3D_JOB_ROOT");
    CHECK(!strcmp(jobdir_default_root(), "/dev/shm"));
    CHECK(jobdir_create(&k, "/nonexistent/dir") == S3D_EIO);
}

static void test_resolve(const struct jobdir *j)
{
    char out[PATH_MAX], p[PATH_MAX + 64], outside[PATH_MAX + 64];

    touch(j->path, "a.safetensors");
    snprintf(p, sizeof(p), "%s/sub", j->path);
    CHECK(mkdir(p, 0700) == 0);
    touch(p, "b");
    snprintf(outside, sizeof(outside), "%s/outside.txt", root);
    touch(root, "outside.txt");

    snprintf(p, sizeof(p), "%s/a.safetensors", j->path);
    CHECK(jobdir_resolve(j->path, p, false, out, sizeof(out)) == 0 && !strcmp(out, p));
    snprintf(p, sizeof(p), "%s/sub/../a.safetensors", j->path);
    CHECK(jobdir_resolve(j->path, p, false, out, sizeof(out)) == 0, ".. that stays inside");
    snprintf(p, sizeof(p), "%s/../outside.txt", j->path);
    CHECK(jobdir_resolve(j->path, p, false, out, sizeof(out)) == S3D_EINVAL, ".. escape");
    CHECK(jobdir_resolve(j->path, outside, false, out, sizeof(out)) == S3D_EINVAL, "abs");
    CHECK(jobdir_resolve(j->path, "/etc/passwd", false, out, sizeof(out)) == S3D_EINVAL);
    CHECK(jobdir_resolve(j->path, j->path, false, out, sizeof(out)) == S3D_EINVAL, "dir itself");
    snprintf(p, sizeof(p), "%s/missing", j->path);
    CHECK(jobdir_resolve(j->path, p, false, out, sizeof(out)) == S3D_ENOTFOUND);
    CHECK(jobdir_resolve(j->path, p, true, out, sizeof(out)) == 0 && !strcmp(out, p));
    snprintf(p, sizeof(p), "%s/nodir/missing", j->path);
    CHECK(jobdir_resolve(j->path, p, true, out, sizeof(out)) == S3D_ENOTFOUND);
    snprintf(p, sizeof(p), "%s/../new.txt", j->path);
    CHECK(jobdir_resolve(j->path, p, true, out, sizeof(out)) == S3D_EINVAL, "new file outside");
    snprintf(p, sizeof(p), "%s/sub/..", j->path);
    CHECK(jobdir_resolve(j->path, p, true, out, sizeof(out)) == S3D_EINVAL, "the dir via ..");

    /* symlinks: one to a file outside, one to a directory outside, one dangling */
    snprintf(p, sizeof(p), "%s/link", j->path);
    CHECK(symlink(outside, p) == 0);
    CHECK(jobdir_resolve(j->path, p, false, out, sizeof(out)) == S3D_EINVAL, "symlink escape");
    CHECK(jobdir_resolve(j->path, p, true, out, sizeof(out)) == S3D_EINVAL);
    snprintf(p, sizeof(p), "%s/dirlink", j->path);
    CHECK(symlink(root, p) == 0);
    snprintf(p, sizeof(p), "%s/dirlink/outside.txt", j->path);
    CHECK(jobdir_resolve(j->path, p, false, out, sizeof(out)) == S3D_EINVAL, "dir symlink");
    snprintf(p, sizeof(p), "%s/dirlink/fresh", j->path);
    CHECK(jobdir_resolve(j->path, p, true, out, sizeof(out)) == S3D_EINVAL, "new via dirlink");
    snprintf(p, sizeof(p), "%s/dangling", j->path);
    snprintf(out, sizeof(out), "%s/not-yet", root);
    CHECK(symlink(out, p) == 0);
    CHECK(jobdir_resolve(j->path, p, true, out, sizeof(out)) == S3D_EINVAL, "dangling link");
}

static void test_remove(const struct jobdir *j)
{
    char p[PATH_MAX + 64];

    /* not a job dir name, a symlink to a job dir, a file: all refused */
    snprintf(p, sizeof(p), "%s/keepme", root);
    CHECK(mkdir(p, 0700) == 0);
    CHECK(jobdir_remove(p) == S3D_EINVAL && access(p, F_OK) == 0);
    CHECK(!jobdir_is_job(p));
    snprintf(p, sizeof(p), "%s/s3d-link", root);
    CHECK(symlink(j->path, p) == 0);
    CHECK(jobdir_remove(p) == S3D_EINVAL && access(j->path, F_OK) == 0);
    CHECK(!jobdir_is_job(p));
    unlink(p);
    snprintf(p, sizeof(p), "%s/sub/deeper", j->path);
    CHECK(mkdir(p, 0700) == 0);
    touch(p, "c");
    /* remove: the links inside are unlinked, their targets survive */
    CHECK(jobdir_remove(j->path) == 0);
    CHECK(access(j->path, F_OK) != 0);
    snprintf(p, sizeof(p), "%s/outside.txt", root);
    CHECK(access(p, F_OK) == 0, "symlink target outside survived");
    snprintf(p, sizeof(p), "%s/keepme", root);
    CHECK(access(p, F_OK) == 0);
    rmdir(p);
    CHECK(jobdir_remove(j->path) == 0, "already gone is fine");
}

static void test_stage_open(void)
{
    struct jobdir j, k;
    char p[PATH_MAX + 64], why[512];

    setenv("S3D_JOB_ROOT", root, 1);
    CHECK(jobdir_create(&j, NULL) == 0 && j.open);
    CHECK(jobdir_open(&k, j.path, JOBDIR_UNDER_ROOT, why, sizeof(why)) == 0 &&
          !strcmp(k.path, j.path), "%s", why);
    jobdir_close(&k);
    jobdir_close(&k);                                   /* idempotent */
    /* finding 1: another mode, another owner, a symlink, not under the root */
    CHECK(chmod(j.path, 0755) == 0);
    CHECK(jobdir_open(&k, j.path, JOBDIR_UNDER_ROOT, why, sizeof(why)) == S3D_EINVAL &&
          strstr(why, "mode 0755") && strstr(why, "0700"), "%s", why);
    printf("a job directory of mode 0755: %s\n", why);
    CHECK(chmod(j.path, 0700) == 0);
    if (geteuid() == 0) {
        CHECK(chown(j.path, 12345, 12345) == 0);
        CHECK(jobdir_open(&k, j.path, JOBDIR_UNDER_ROOT, why, sizeof(why)) == S3D_EINVAL &&
              strstr(why, "owned by uid 12345"), "%s", why);
        printf("another user's job directory: %s\n", why);
        CHECK(chown(j.path, 0, 0) == 0);
    }
    snprintf(p, sizeof(p), "%s/s3d-link", root);
    CHECK(symlink(j.path, p) == 0);
    CHECK(jobdir_open(&k, p, JOBDIR_UNDER_ROOT, why, sizeof(why)) == S3D_EINVAL &&
          strstr(why, "symbolic link"), "%s", why);
    unlink(p);
    snprintf(p, sizeof(p), "%s/s3d-nested", j.path);
    CHECK(mkdir(p, 0700) == 0);
    CHECK(jobdir_open(&k, p, JOBDIR_UNDER_ROOT, why, sizeof(why)) == S3D_EINVAL &&
          strstr(why, "not directly under"), "%s", why);
    rmdir(p);
    snprintf(p, sizeof(p), "%s/other", root);
    CHECK(mkdir(p, 0700) == 0);
    CHECK(jobdir_open(&k, p, JOBDIR_UNDER_ROOT, why, sizeof(why)) == S3D_EINVAL &&
          strstr(why, "not a job directory"), "%s", why);
    CHECK(jobdir_open(&k, p, 0, why, sizeof(why)) == 0, "--once dirs: %s", why);
    jobdir_close(&k);
    rmdir(p);

    /* inputs: plain names, regular files, no symlinks, no FIFOs, a size cap */
    {
        int fd;

        snprintf(p, sizeof(p), "%s/a.safetensors", j.path);
        CHECK(write_file(p, "12345678", 8) == 0);
        CHECK((fd = jobdir_open_input(&j, p, 8, why, sizeof(why))) >= 0, "%s", why);
        close(fd);
        CHECK((fd = jobdir_open_input(&j, "a.safetensors", 0, why, sizeof(why))) >= 0);
        close(fd);
        CHECK(jobdir_open_input(&j, p, 7, why, sizeof(why)) < 0 && strstr(why, "over the limit"));
        snprintf(p, sizeof(p), "%s/fifo", j.path);
        CHECK(mkfifo(p, 0600) == 0);
        alarm(20);
        CHECK(jobdir_open_input(&j, p, 0, why, sizeof(why)) < 0 && strstr(why, "FIFO"), "%s", why);
        alarm(0);
        printf("an shm input that is a FIFO: %s\n", why);
        snprintf(p, sizeof(p), "%s/link", j.path);
        CHECK(symlink("/etc/passwd", p) == 0);
        CHECK(jobdir_open_input(&j, p, 0, why, sizeof(why)) < 0 && strstr(why, "symbolic"),
              "%s", why);
        snprintf(p, sizeof(p), "%s/../outside.txt", j.path);
        CHECK(jobdir_open_input(&j, p, 0, why, sizeof(why)) < 0 && strstr(why, "plain file name"));
        CHECK(jobdir_open_input(&j, "/etc/passwd", 0, why, sizeof(why)) < 0);
        CHECK(jobdir_open_input(&j, ".hidden", 0, why, sizeof(why)) < 0);
    }
    /* outputs: the names a stage may write */
    {
        static const struct { const char *stage, *name; bool ok; } names[] = {
            {"cond", "cond.safetensors", true}, {"cond", "cond_ss.safetensors", true},
            {"cond", "cond_slat.safetensors", true}, {"ss_flow", "ss_flow.safetensors", true},
            {"ss_flow", "ss_flow-2.safetensors", true}, {"cond", "cond.sock", false},
            {"ss_decode", "ss_decode.sock", false}, {"depth", "input_image", false},
            {"cond", "depth.safetensors", false}, {"cond", "cond_.safetensors", false},
            {"cond", "condx.safetensors", false}, {"cond", "cond.x.safetensors", false},
            {"cond", "../cond.safetensors", false}, {"cond", "cond/x.safetensors", false},
            {"cond", "cond_ss.safetensors.tmp.abc", false}, {"cond", "", false},
        };

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            CHECK(jobdir_out_name_ok(names[i].stage, names[i].name) == names[i].ok,
                  "%s may write '%s': want %d", names[i].stage, names[i].name, names[i].ok);
        CHECK(jobdir_name_ok("input_image") && !jobdir_name_ok("a b") && !jobdir_name_ok("..") &&
              !jobdir_name_ok("a\nb"));
    }
    /* copying the user's inputs in: /dev/zero, a FIFO, a directory refused */
    {
        char src[PATH_MAX + 64];
        struct stat st;

        snprintf(src, sizeof(src), "%s/user.png", root);
        CHECK(write_file(src, "PNGDATA", 7) == 0);
        CHECK(jobdir_copy_in(&j, src, "input_image", 100, "--image") == 0);
        snprintf(p, sizeof(p), "%s/input_image", j.path);
        CHECK(stat(p, &st) == 0 && st.st_size == 7 && (st.st_mode & 0777) == 0600);
        CHECK(jobdir_copy_in(&j, src, "input_image", 100, "--image") == S3D_EIO, "O_EXCL");
        CHECK(jobdir_copy_in(&j, "/dev/zero", "input_mask", 100, "--mask") == S3D_EINVAL);
        snprintf(p, sizeof(p), "%s/fifo", j.path);
        CHECK(jobdir_copy_in(&j, p, "input_mask", 100, "--mask") == S3D_EINVAL);
        CHECK(jobdir_copy_in(&j, root, "input_mask", 100, "--mask") == S3D_EINVAL);
        CHECK(jobdir_copy_in(&j, src, "input_mask", 6, "--mask") == S3D_EINVAL);
        snprintf(p, sizeof(p), "%s/input_mask", j.path);
        CHECK(access(p, F_OK) != 0, "nothing left after refusals");
        unlink(src);
    }
    CHECK(jobdir_remove(j.path) == 0);
    jobdir_close(&j);
    unsetenv("S3D_JOB_ROOT");
}

static void test_stale(void)
{
    struct jobdir j;
    char dead[PATH_MAX + 64], kept[PATH_MAX + 64], alive[PATH_MAX + 64], locked[PATH_MAX + 64];
    pid_t pid = fork();
    int lk;

    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);                              /* a pid that no longer exists */
    snprintf(dead, sizeof(dead), "%s/s3d-%d-0", root, (int)pid);
    snprintf(kept, sizeof(kept), "%s/s3d-%d-1", root, (int)pid);
    snprintf(locked, sizeof(locked), "%s/s3d-%d-2", root, (int)pid);
    snprintf(alive, sizeof(alive), "%s/s3d-%d-9", root, (int)getpid());
    CHECK(mkdir(dead, 0700) == 0 && mkdir(kept, 0700) == 0 && mkdir(alive, 0700) == 0 &&
          mkdir(locked, 0700) == 0);
    touch(dead, "cond_ss.safetensors");
    touch(kept, JOBDIR_KEEP_MARK);
    lk = open(locked, O_RDONLY | O_DIRECTORY);
    CHECK(lk >= 0 && flock(lk, LOCK_EX) == 0);
    CHECK(jobdir_create(&j, root) == 0);                 /* cleans up first */
    CHECK(access(dead, F_OK) != 0, "the dead orchestrator's job directory was removed");
    CHECK(access(kept, F_OK) == 0 && access(alive, F_OK) == 0 && access(locked, F_OK) == 0,
          "kept, alive and locked directories stay");
    /* a kept job of ours survives too */
    CHECK(jobdir_keep(&j) == 0);
    close(lk);
    printf("stale job directories: a dead orchestrator's removed; kept, live and locked ones "
           "stay\n");
    jobdir_remove(kept);
    jobdir_remove(alive);
    jobdir_remove(locked);
    jobdir_remove(j.path);
    jobdir_close(&j);
}

/* jobdir_adopt: a job of ours in use is refused (the lock), a free one is
 * taken over with the lock, anything but a job directory refused. */
static void test_adopt(void)
{
    struct jobdir j, k, l;

    CHECK(jobdir_create(&j, root) == 0);
    CHECK(jobdir_adopt(&k, j.path) == S3D_EIO && !k.open, "a locked job is in use");
    jobdir_close(&j);
    CHECK(jobdir_adopt(&k, j.path) == 0 && k.open && !strcmp(k.path, j.path));
    CHECK(jobdir_adopt(&l, j.path) == S3D_EIO, "the adopter holds the lock");
    jobdir_close(&k);
    CHECK(jobdir_adopt(&k, "/tmp") == S3D_EINVAL && !k.open, "not an s3d-* directory");
    CHECK(jobdir_adopt(&k, "/nonexistent/s3d-1-1") == S3D_EINVAL);
    jobdir_remove(j.path);
    printf("jobdir_adopt: in use refused, a free job taken over, others refused\n");
}

int main(void)
{
    struct jobdir j;
    char tmpl[] = "/tmp/s3d-test-jobdir-XXXXXX";

    log_init("test_jobdir");
    if (!mkdtemp(tmpl) || !realpath(tmpl, root))
        harness_skip("cannot make a temporary directory");
    test_create(&j);
    test_resolve(&j);
    test_remove(&j);
    jobdir_close(&j);
    test_stage_open();
    test_adopt();
    test_stale();
    {
        char p[PATH_MAX + 64];

        snprintf(p, sizeof(p), "%s/outside.txt", root);
        unlink(p);
        rmdir(root);
    }
    return harness_done("test_jobdir");
}
