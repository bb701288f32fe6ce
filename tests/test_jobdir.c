/*
 * test_jobdir.c - job directories: create under a private root, confine paths
 * (.., absolute paths, symlink escapes, dangling symlinks, the dir itself),
 * remove recursively without following symlinks, refuse non-job paths.
 */
#include "err.h"
#include "harness.h"
#include "jobdir.h"
#include "log.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    {
        char p[PATH_MAX + 64];

        snprintf(p, sizeof(p), "%s/outside.txt", root);
        unlink(p);
        rmdir(root);
    }
    return harness_done("test_jobdir");
}
