/*
 * outfile.c - buffered, atomically replaced output files. See outfile.h.
 */
#include "outfile.h"

#include "err.h"
#include "fileio.h"
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int outfile_open(struct outfile *f, int dirfd, const char *name, const char *label)
{
    f->dirfd = dirfd;
    f->failed = false;
    f->n = 0;
    snprintf(f->name, sizeof(f->name), "%s", name);
    snprintf(f->label, sizeof(f->label), "%s", label);
    f->fd = file_create_tmp_at(dirfd, name, f->tmp, sizeof(f->tmp));
    if (f->fd < 0) {
        log_error("%s: cannot create a temporary file beside it: %s (HINT: check the directory "
                  "exists and is writable)", label, strerror(errno));
        return S3D_EIO;
    }
    return 0;
}

static void flush(struct outfile *f)
{
    if (!f->failed && f->n && file_write_all(f->fd, f->buf, f->n) != 0) {
        log_error("%s: write failed: %s (HINT: disk full?)", f->label, strerror(errno));
        f->failed = true;
    }
    f->n = 0;
}

void outfile_write(struct outfile *f, const void *p, size_t n)
{
    const unsigned char *b = p;

    if (f->failed)
        return;
    if (n >= OUTFILE_BUF) {                       /* large blocks go straight through */
        flush(f);
        if (!f->failed && file_write_all(f->fd, b, n) != 0) {
            log_error("%s: write failed: %s (HINT: disk full?)", f->label, strerror(errno));
            f->failed = true;
        }
        return;
    }
    if (f->n + n > OUTFILE_BUF)
        flush(f);
    memcpy(f->buf + f->n, b, n);
    f->n += n;
}

void outfile_printf(struct outfile *f, const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    ASSERT(n >= 0 && (size_t)n < sizeof(line));
    outfile_write(f, line, (size_t)n);
}

int outfile_commit(struct outfile *f)
{
    mode_t mask;

    flush(f);
    if (f->failed) {
        outfile_abort(f);
        return S3D_EIO;
    }
    mask = umask(0);                              /* read it back: umask has no getter */
    umask(mask);
    if (fchmod(f->fd, 0644 & ~mask) != 0) {
        log_error("%s: chmod failed: %s", f->label, strerror(errno));
        outfile_abort(f);
        return S3D_EIO;
    }
    if (file_commit_at(f->fd, f->dirfd, f->tmp, f->name) != 0) {
        f->fd = -1;                               /* closed, tmp unlinked */
        log_error("%s: cannot put the new file in place: %s (HINT: disk full?)", f->label,
                  strerror(errno));
        return S3D_EIO;
    }
    f->fd = -1;
    return 0;
}

void outfile_abort(struct outfile *f)
{
    if (!f || f->fd < 0)
        return;
    close(f->fd);
    unlinkat(f->dirfd, f->tmp, 0);
    f->fd = -1;
}
