/*
 * fileio.h - opening files that a user or a client names, without trusting them
 * (docs/security.md "Files").
 *
 * Reading: file_open_read() opens with O_NONBLOCK (a FIFO must not make us wait
 * for a writer), fstats the descriptor, requires a regular file no larger than a
 * cap, then clears O_NONBLOCK. With FILE_NOFOLLOW a symlink as the last component
 * is refused (inside job directories). /dev/zero, a FIFO, a directory or a socket
 * is refused in one line that says what it is.
 *
 * Writing: file_create_at() creates a fresh file with O_CREAT|O_EXCL|O_NOFOLLOW
 * relative to a directory descriptor, so it can never open a file that exists
 * already, nor write through a symlink planted under the name. Complete files are
 * put in place with file_commit_at() (renameat: atomic, replaces the name, never
 * follows a symlink there).
 */
#ifndef S3D_FILEIO_H
#define S3D_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FILE_NOFOLLOW 1   /* file_open_read: refuse a symlink as the last component */

/* "a FIFO", "a directory", "a character device", ... for st_mode (messages). */
const char *file_kind(mode_t mode);

/* Open path (relative to dirfd, or AT_FDCWD) read-only as above. max_bytes 0 is
 * no cap. Returns the descriptor (O_CLOEXEC, blocking) and its size in *size;
 * or -1 with the reason (no path: the caller names the input) in err and errno
 * set (the open's errno; EINVAL not a regular file; EFBIG over the cap):
 * "cannot open: No such file or directory", "is a FIFO, not a regular file",
 * "is 3000000000 bytes, over the limit of 1073741824 for this input". */
int file_open_read(int dirfd, const char *path, int flags, uint64_t max_bytes,
                   uint64_t *size, char *err, size_t err_len);

/* Create a new file name in dirfd, mode 0600 (or 0644 with world_readable),
 * O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC. Returns the descriptor or -1
 * (errno kept). */
int file_create_at(int dirfd, const char *name, int world_readable);

/* Create a temporary file "<name>.tmp.XXXXXX" in dirfd (as file_create_at, with
 * random letters until a fresh name is found); its name goes to tmp[tmp_len].
 * Returns the descriptor or -1 (errno kept). */
int file_create_tmp_at(int dirfd, const char *name, char *tmp, size_t tmp_len);

/* fsync fd, close it, then renameat(dirfd, tmp -> name). On any failure tmp is
 * unlinked. Returns 0 or -1 (errno kept). fd is closed on every path. */
int file_commit_at(int fd, int dirfd, const char *tmp, const char *name);

/* Write all n bytes (retrying short writes and EINTR). 0 or -1 (errno kept). */
int file_write_all(int fd, const void *p, size_t n);
/* The same at file offset off (pwrite: the file position untouched, so threads may
 * write different ranges of one file). */
int file_pwrite_all(int fd, const void *p, size_t n, uint64_t off);

#endif
