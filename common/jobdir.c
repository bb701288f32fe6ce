/*
 * jobdir.c - job directories under /dev/shm: create, remove, confine paths. See jobdir.h.
 * Test: tests/test_jobdir.c.
 */
#include "jobdir.h"

#include "err.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *jobdir_default_root(void)
{
    const char *r = getenv("S3D_JOB_ROOT");

    return (r && *r) ? r : JOBDIR_DEFAULT_ROOT;
}

int jobdir_create(struct jobdir *j, const char *root)
{
    static unsigned counter;
    char want[PATH_MAX];

    if (!root)
        root = jobdir_default_root();
    for (int tries = 0; tries < 1000; tries++) {
        int n = snprintf(want, sizeof(want), "%s/" JOBDIR_PREFIX "%d-%u", root, (int)getpid(),
                         counter++);

        if (n < 0 || (size_t)n >= sizeof(want)) {
            log_error("job root '%s': path too long", root);
            return S3D_EINVAL;
        }
        if (mkdir(want, 0700) == 0) {
            if (!realpath(want, j->path)) {
                log_error("job dir '%s': %s", want, strerror(errno));
                rmdir(want);
                return S3D_EIO;
            }
            return 0;
        }
        if (errno != EEXIST) {
            log_error("cannot create a job directory under '%s': %s. HINT: the root must be "
                      "a writable directory (set S3D_JOB_ROOT to another one)", root,
                      strerror(errno));
            return S3D_EIO;
        }
    }
    log_error("cannot create a job directory under '%s': 1000 names taken", root);
    return S3D_EIO;
}

static const char *last_component(const char *path)
{
    size_t n = strlen(path);

    while (n > 1 && path[n - 1] == '/')
        n--;
    while (n > 0 && path[n - 1] != '/')
        n--;
    return path + n;
}

bool jobdir_is_job(const char *dir)
{
    struct stat st;

    return !strncmp(last_component(dir), JOBDIR_PREFIX, strlen(JOBDIR_PREFIX)) &&
           lstat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Remove every entry of the directory open as dfd (consumed), depth first.
 * Subdirectories are opened with O_NOFOLLOW|O_DIRECTORY, so a symlink is only
 * ever unlinked. Returns 0 or S3D_EIO (logged). */
static int remove_contents(int dfd, const char *path, int depth)
{
    DIR *d = fdopendir(dfd);
    struct dirent *e;
    int rc = 0;

    if (!d) {
        log_error("job dir '%s': %s", path, strerror(errno));
        close(dfd);
        return S3D_EIO;
    }
    while ((e = readdir(d))) {
        struct stat st;

        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;   /* vanished meanwhile */
        if (S_ISDIR(st.st_mode)) {
            int sub;

            if (depth > 32) {
                log_error("job dir '%s': nested deeper than 32 levels", path);
                rc = S3D_EIO;
                continue;
            }
            sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0 || remove_contents(sub, path, depth + 1) != 0) {
                rc = S3D_EIO;
                continue;
            }
            if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) != 0) {
                log_error("job dir '%s': cannot remove '%s': %s", path, e->d_name,
                          strerror(errno));
                rc = S3D_EIO;
            }
        } else if (unlinkat(dirfd(d), e->d_name, 0) != 0 && errno != ENOENT) {
            log_error("job dir '%s': cannot remove '%s': %s", path, e->d_name, strerror(errno));
            rc = S3D_EIO;
        }
    }
    closedir(d);
    return rc;
}

int jobdir_remove(const char *path)
{
    struct stat st;
    int fd, rc;

    if (strncmp(last_component(path), JOBDIR_PREFIX, strlen(JOBDIR_PREFIX)) != 0) {
        log_error("refusing to remove '%s': not a job directory (name must start with "
                  "'" JOBDIR_PREFIX "')", path);
        return S3D_EINVAL;
    }
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : S3D_EIO;
    if (!S_ISDIR(st.st_mode)) {
        log_error("refusing to remove '%s': not a directory (a symlink or a file)", path);
        return S3D_EINVAL;
    }
    fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        log_error("job dir '%s': %s", path, strerror(errno));
        return S3D_EIO;
    }
    rc = remove_contents(fd, path, 0);
    if (rmdir(path) != 0 && errno != ENOENT) {
        log_error("cannot remove job dir '%s': %s", path, strerror(errno));
        rc = S3D_EIO;
    }
    return rc;
}

/* True when sub is dir itself or lies under it (both canonical). */
static bool is_under(const char *dir, const char *sub, bool allow_equal)
{
    size_t n = strlen(dir);

    if (strncmp(dir, sub, n) != 0)
        return false;
    if (sub[n] == 0)
        return allow_equal;
    return sub[n] == '/' || (n == 1 && dir[0] == '/');
}

int jobdir_resolve(const char *dir, const char *path, bool may_create, char *out,
                   size_t out_len)
{
    char rdir[PATH_MAX], rpath[PATH_MAX], parent[PATH_MAX];
    const char *base;
    int n;

    if (!realpath(dir, rdir)) {
        log_error("job dir '%s': %s", dir, strerror(errno));
        return S3D_ENOTFOUND;
    }
    if (realpath(path, rpath)) {
        if (!is_under(rdir, rpath, false))
            goto outside;
        n = snprintf(out, out_len, "%s", rpath);
        return (n < 0 || (size_t)n >= out_len) ? S3D_EINVAL : 0;
    }
    if (errno != ENOENT || !may_create) {
        log_error("'%s': %s", path, strerror(errno));
        return S3D_ENOTFOUND;
    }
    /* missing: resolve the parent, check the last component */
    {
        struct stat st;

        if (lstat(path, &st) == 0)   /* a dangling symlink: never write through it */
            goto outside;
    }
    base = last_component(path);
    if (!*base || !strcmp(base, ".") || !strcmp(base, "..") || strchr(base, '/'))
        goto outside;
    n = snprintf(parent, sizeof(parent), "%.*s", (int)(base - path), path);
    if (n < 0 || (size_t)n >= sizeof(parent))
        goto outside;
    if (!parent[0])
        strcpy(parent, ".");
    if (!realpath(parent, rpath)) {
        log_error("'%s': parent directory: %s", path, strerror(errno));
        return S3D_ENOTFOUND;
    }
    if (!is_under(rdir, rpath, true))
        goto outside;
    n = snprintf(out, out_len, "%s/%s", rpath, base);
    return (n < 0 || (size_t)n >= out_len) ? S3D_EINVAL : 0;
outside:
    log_error("refusing path '%s': it is not inside the job directory '%s'. HINT: stages "
              "read and write only inside the job directory they are given", path, dir);
    return S3D_EINVAL;
}
