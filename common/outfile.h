/*
 * outfile.h - writing one file a user opens (splat.ply, mesh.glb, pose.json,
 * preview.png) into an output directory: buffered, through a fresh temporary
 * beside it (fileio.h: O_CREAT|O_EXCL|O_NOFOLLOW), put in place by renameat
 * only when complete. A reader never sees a half-written file, a failed write
 * leaves the previous file of that name as it was, and a symlink planted under
 * either name is never written through. The file gets mode 0644 less the umask,
 * as any file the user creates.
 *
 *     struct outfile f;
 *     if (outfile_open(&f, dirfd, "splat.ply", "out/splat.ply") != 0) return S3D_EIO;
 *     outfile_write(&f, header, n);  ...            (errors are remembered)
 *     return outfile_commit(&f);                    (0, or S3D_EIO logged)
 *
 * Test: tests/test_ply.c (with the writers that use it).
 */
#ifndef S3D_OUTFILE_H
#define S3D_OUTFILE_H

#include <stdbool.h>
#include <stddef.h>

#define OUTFILE_BUF (1 << 16)

struct outfile {
    int         dirfd;
    int         fd;                 /* the temporary; -1 once committed or aborted */
    char        tmp[256];           /* its name in dirfd */
    char        name[128];          /* the final name in dirfd */
    char        label[512];         /* the path for messages (e.g. "out/splat.ply") */
    bool        failed;             /* a write failed (logged once) */
    size_t      n;                  /* bytes in buf */
    unsigned char buf[OUTFILE_BUF];
};

/* Create the temporary for name in dirfd. label names the file in messages.
 * Returns 0 or S3D_EIO (logged with label, errno text and a HINT). */
int  outfile_open(struct outfile *f, int dirfd, const char *name, const char *label);
/* Append n bytes (buffered). A failure is logged once and makes the commit fail. */
void outfile_write(struct outfile *f, const void *p, size_t n);
/* printf-style append of at most 4 KiB. */
void outfile_printf(struct outfile *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Flush, fsync, rename over name. Returns 0, or S3D_EIO (logged; the temporary
 * is removed and an existing file of that name is left untouched). */
int  outfile_commit(struct outfile *f);
/* Give up: remove the temporary. NULL-safe; a no-op after commit. */
void outfile_abort(struct outfile *f);

#endif
