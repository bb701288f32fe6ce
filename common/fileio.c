/*
 * fileio.c - safe opening of named files for reading, exclusive creation and
 * atomic replacement relative to a directory descriptor. See fileio.h.
 * Test: tests/test_fileio.c.
 */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

const char *file_kind(mode_t mode)
{
    return S_ISDIR(mode) ? "a directory" : S_ISFIFO(mode) ? "a FIFO" :
           S_ISSOCK(mode) ? "a socket" : S_ISCHR(mode) ? "a character device" :
           S_ISBLK(mode) ? "a block device" : S_ISLNK(mode) ? "a symbolic link" :
           S_ISREG(mode) ? "a regular file" : "not a regular file";
}

int file_open_read(int dirfd, const char *path, int flags, uint64_t max_bytes,
                   uint64_t *size, char *err, size_t err_len)
{
    int oflags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    struct stat st;
    int fd;

    if (flags & FILE_NOFOLLOW)
        oflags |= O_NOFOLLOW;
    fd = openat(dirfd, path, oflags);
    if (fd < 0) {
        if (errno == ELOOP && (flags & FILE_NOFOLLOW))
            snprintf(err, err_len, "is a symbolic link (refused here: the file itself must "
                     "be there)");
        else
            snprintf(err, err_len, "cannot open: %s", strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(err, err_len, "cannot stat: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "is %s, not a regular file", file_kind(st.st_mode));
        close(fd);
        errno = EINVAL;
        return -1;
    }
    if (max_bytes && (uint64_t)st.st_size > max_bytes) {
        snprintf(err, err_len, "is %lld bytes, over the limit of %llu for this input",
                 (long long)st.st_size, (unsigned long long)max_bytes);
        close(fd);
        errno = EFBIG;
        return -1;
    }
    /* a regular file never blocks; clear the flag so later reads behave as usual */
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
        snprintf(err, err_len, "fcntl: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (size)
        *size = (uint64_t)st.st_size;
    return fd;
}

int file_create_at(int dirfd, const char *name, int world_readable)
{
    return openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  world_readable ? 0644 : 0600);
}

int file_create_tmp_at(int dirfd, const char *name, char *tmp, size_t tmp_len)
{
    static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

    for (int tries = 0; tries < 100; tries++) {
        unsigned char rnd[6];
        char suffix[7];
        int fd, n;

        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            return -1;
        for (int i = 0; i < 6; i++)
            suffix[i] = letters[rnd[i] % (sizeof(letters) - 1)];
        suffix[6] = 0;
        n = snprintf(tmp, tmp_len, "%s.tmp.%s", name, suffix);
        if (n < 0 || (size_t)n >= tmp_len) {
            errno = ENAMETOOLONG;
            return -1;
        }
        fd = file_create_at(dirfd, tmp, 0);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}


/* write (off < 0) or pwrite at off all n bytes of p, retrying short writes and EINTR. */
static int write_loop(int fd, const void *p, size_t n, int64_t off)
{
    const char *b = p;

    while (n) {
        ssize_t w = off < 0 ? write(fd, b, n) : pwrite(fd, b, n, (off_t)off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        b += w;
        n -= (size_t)w;
        if (off >= 0)
            off += w;
    }
    return 0;
}

int file_write_all(int fd, const void *p, size_t n)
{
    return write_loop(fd, p, n, -1);
}

int file_pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    return write_loop(fd, p, n, (int64_t)off);
}

int file_commit_at(int fd, int dirfd, const char *tmp, const char *name)
{
    int e;

    if (fsync(fd) != 0) {
        e = errno;
        close(fd);
        goto fail;
    }
    if (close(fd) != 0) {
        e = errno;
        goto fail;
    }
    if (renameat(dirfd, tmp, dirfd, name) == 0)
        return 0;
    e = errno;
fail:
    unlinkat(dirfd, tmp, 0);
    errno = e;
    return -1;
}
