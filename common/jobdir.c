/*
 * jobdir.c - job directories under /dev/shm: create (locked), remove, remove the
 * stale ones of dead orchestrators, open one for a stage (owner and mode checked),
 * names of inputs and outputs inside it, confine paths. See jobdir.h.
 * Test: tests/test_jobdir.c.
 */
#include "jobdir.h"

#include "err.h"
#include "fileio.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
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

    memset(j, 0, sizeof(*j));
    if (!root)
        root = jobdir_default_root();
    jobdir_remove_stale(root);
    for (int tries = 0; tries < 1000; tries++) {
        int n = snprintf(want, sizeof(want), "%s/" JOBDIR_PREFIX "%d-%u", root, (int)getpid(),
                         counter++);

        if (n < 0 || (size_t)n >= sizeof(want)) {
            log_error("job root '%s': path too long", root);
            return S3D_EINVAL;
        }
        if (mkdir(want, 0700) == 0) {
            j->fd = open(want, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (j->fd < 0 || fchmod(j->fd, 0700) != 0 || flock(j->fd, LOCK_EX | LOCK_NB) != 0 ||
                !realpath(want, j->path)) {
                log_error("job dir '%s': %s", want, strerror(errno));
                if (j->fd >= 0)
                    close(j->fd);
                rmdir(want);
                return S3D_EIO;
            }
            j->open = true;
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

int jobdir_adopt(struct jobdir *j, const char *dir)
{
    memset(j, 0, sizeof(*j));
    if (!realpath(dir, j->path) || !jobdir_is_job(j->path)) {
        log_error("'%s' is not a job directory (an existing " JOBDIR_PREFIX "* directory). "
                  "HINT: a failed run keeps its job and prints its path; `sam3d run "
                  "--keep-job` keeps any", dir);
        return S3D_EINVAL;
    }
    j->fd = open(j->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (j->fd < 0) {
        log_error("job dir '%s': %s", j->path, strerror(errno));
        return S3D_EIO;
    }
    if (flock(j->fd, LOCK_EX | LOCK_NB) != 0) {
        log_error("job dir '%s' is in use by another sam3d (%s). HINT: wait for it to end",
                  j->path, strerror(errno));
        close(j->fd);
        return S3D_EIO;
    }
    j->open = true;
    return 0;
}

void jobdir_close(struct jobdir *j)
{
    if (j && j->open) {
        close(j->fd);
        j->open = false;
    }
}

int jobdir_keep(const struct jobdir *j)
{
    int fd = j->open ? file_create_at(j->fd, JOBDIR_KEEP_MARK, 0) : -1;

    if (fd < 0 && errno != EEXIST) {
        log_error("job dir '%s': cannot mark it kept: %s", j->path, strerror(errno));
        return S3D_EIO;
    }
    if (fd >= 0)
        close(fd);
    return 0;
}

/* Is the job directory name (in the open root rfd) stale: ours, not kept, its
 * orchestrator's pid gone and its lock free? */
static bool is_stale(int rfd, const char *name)
{
    struct stat st;
    int pid, sub;
    unsigned n;
    bool stale = false;
    char end;

    if (sscanf(name, JOBDIR_PREFIX "%d-%u%c", &pid, &n, &end) != 2 || pid <= 0 ||
        fstatat(rfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_uid != geteuid() || kill(pid, 0) == 0 || errno != ESRCH)
        return false;
    sub = openat(rfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0)
        return false;
    if (flock(sub, LOCK_EX | LOCK_NB) == 0)
        stale = faccessat(sub, JOBDIR_KEEP_MARK, F_OK, AT_SYMLINK_NOFOLLOW) != 0;
    close(sub);                     /* releases the lock: a stale dir has no owner left */
    return stale;
}

int jobdir_remove_stale(const char *root)
{
    DIR *d = opendir(root);
    struct dirent *e;
    int removed = 0;

    if (!d)
        return 0;
    while ((e = readdir(d))) {
        char path[PATH_MAX];

        if (strncmp(e->d_name, JOBDIR_PREFIX, strlen(JOBDIR_PREFIX)) ||
            !is_stale(dirfd(d), e->d_name))
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", root, e->d_name) >= (int)sizeof(path))
            continue;
        if (jobdir_remove(path) == 0) {
            log_info("removed the job directory of an orchestrator that died: %s", path);
            removed++;
        }
    }
    closedir(d);
    return removed;
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

// ---------------------------------------------------------------- for stages

bool jobdir_name_ok(const char *name)
{
    if (!name[0] || name[0] == '.')
        return false;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '.' || *c == '-'))
            return false;
    return true;
}

bool jobdir_out_name_ok(const char *stage, const char *name)
{
    static const char ext[] = ".safetensors";
    size_t sl = strlen(stage), nl = strlen(name), el = sizeof(ext) - 1;

    if (!jobdir_name_ok(name) || nl < sl + el || strncmp(name, stage, sl) ||
        strcmp(name + nl - el, ext))
        return false;
    if (nl == sl + el)
        return true;                                   /* <stage>.safetensors */
    if (name[sl] != '_' && name[sl] != '-')
        return false;
    for (size_t i = sl + 1; i < nl - el; i++)           /* the tag: no dots */
        if (name[i] == '.')
            return false;
    return nl > sl + 1 + el;
}

int jobdir_open(struct jobdir *j, const char *dir, int flags, char *why, size_t why_len)
{
    struct stat st;

    memset(j, 0, sizeof(*j));
    if (flags & JOBDIR_UNDER_ROOT) {
        const char *root = jobdir_default_root(), *base = last_component(dir);
        char parent[PATH_MAX], rparent[PATH_MAX], rroot[PATH_MAX];
        int rfd, n;

        if (strncmp(base, JOBDIR_PREFIX, strlen(JOBDIR_PREFIX)) || !jobdir_name_ok(base)) {
            snprintf(why, why_len, "'%.300s' is not a job directory (its name must be "
                     JOBDIR_PREFIX "* and plain)", dir);
            return S3D_EINVAL;
        }
        n = snprintf(parent, sizeof(parent), "%.*s", (int)(base - dir), dir);
        if (n <= 0 || (size_t)n >= sizeof(parent) || !realpath(parent, rparent) ||
            !realpath(root, rroot) || strcmp(rparent, rroot)) {
            snprintf(why, why_len, "'%.300s' is not directly under the job root '%.300s' "
                     "(S3D_JOB_ROOT)", dir, root);
            return S3D_EINVAL;
        }
        rfd = open(rroot, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        j->fd = rfd < 0 ? -1 : openat(rfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                                                  O_CLOEXEC);
        if (rfd >= 0)
            close(rfd);
        if (j->fd < 0) {
            snprintf(why, why_len, "job directory '%.300s': %s", dir, errno == ELOOP ||
                     errno == ENOTDIR ? "a symbolic link or not a directory" : strerror(errno));
            return S3D_EINVAL;
        }
        if (fstat(j->fd, &st) != 0) {
            snprintf(why, why_len, "job directory '%.300s': %s", dir, strerror(errno));
            close(j->fd);
            return S3D_EINVAL;
        }
        if (st.st_uid != geteuid() || (st.st_mode & 07777) != 0700) {
            snprintf(why, why_len, "job directory '%.300s' is owned by uid %u with mode %04o; "
                     "a stage (uid %u) accepts only its own user's job directories of mode "
                     "0700, where no one else can have put anything (HINT: let `sam3d run` "
                     "create it)", dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
                     (unsigned)geteuid());
            close(j->fd);
            return S3D_EINVAL;
        }
        n = snprintf(j->path, sizeof(j->path), "%s%s%s", rroot, rroot[1] ? "/" : "", base);
        if (n < 0 || (size_t)n >= sizeof(j->path)) {
            snprintf(why, why_len, "job directory '%.300s': path too long", dir);
            close(j->fd);
            return S3D_EINVAL;
        }
    } else {
        j->fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (j->fd < 0 || !realpath(dir, j->path)) {
            snprintf(why, why_len, "'%.300s': %s", dir, strerror(errno));
            if (j->fd >= 0)
                close(j->fd);
            return S3D_EINVAL;
        }
    }
    j->open = true;
    return 0;
}

int jobdir_open_input(const struct jobdir *j, const char *path, uint64_t max_bytes,
                      char *why, size_t why_len)
{
    size_t dl = strlen(j->path);
    const char *name = path;
    char what[200];
    int fd;

    if (!strncmp(path, j->path, dl) && path[dl] == '/')
        name = path + dl + 1;
    if (!jobdir_name_ok(name)) {
        snprintf(why, why_len, "'%.300s' is not inside '%.300s' as a plain file name "
                 "(letters, digits, '_', '.', '-')", path, j->path);
        return -1;
    }
    fd = file_open_read(j->fd, name, FILE_NOFOLLOW, max_bytes, NULL, what, sizeof(what));
    if (fd < 0 && errno == ENOENT)
        snprintf(why, why_len, "'%.300s' is missing (HINT: the stage that writes it must "
                 "run first)", path);
    else if (fd < 0)
        snprintf(why, why_len, "'%.300s' %s", path, what);
    return fd;
}

int jobdir_copy_in(const struct jobdir *j, const char *src, const char *name,
                   uint64_t max_bytes, const char *what)
{
    char why[200], buf[1 << 16];
    ssize_t n = 0;
    int in, out, e;

    in = file_open_read(AT_FDCWD, src, 0, max_bytes, NULL, why, sizeof(why));
    if (in < 0) {
        log_error("%s '%s' %s. HINT: give the image file itself (PNG or JPEG)%s", what, src,
                  why, errno == EFBIG ? " or a smaller one" : "");
        return S3D_EINVAL;
    }
    out = file_create_at(j->fd, name, 0);
    if (out < 0) {
        log_error("%s: cannot create '%s' in the job directory '%s': %s", what, name, j->path,
                  strerror(errno));
        close(in);
        return S3D_EIO;
    }
    while ((n = read(in, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
        if (n > 0 && file_write_all(out, buf, (size_t)n) != 0) {
            n = -1;
            break;
        }
    e = errno;
    close(in);
    if (close(out) != 0 && n == 0) {
        e = errno;
        n = -1;
    }
    if (n < 0) {
        log_error("%s '%s': copying into the job directory failed: %s (HINT: is %s full?)",
                  what, src, strerror(e), j->path);
        unlinkat(j->fd, name, 0);
        return S3D_EIO;
    }
    return 0;
}
