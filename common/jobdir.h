/*
 * jobdir.h - job directories: where one job's artifacts and sockets live.
 *
 * A job directory is "<root>/s3d-<pid>-<n>" (mode 0700), root /dev/shm unless
 * S3D_JOB_ROOT or an explicit root says otherwise. The orchestrator owns it:
 * it creates it, and removes it (recursively, never following a symlink) when
 * the job ends, unless asked to keep it. Stages only read and write files
 * inside the directory they are given, and check every path with
 * jobdir_resolve() before opening it.
 *
 * Layout inside: <stage>.sock (ipc endpoints), <artifact>.safetensors, and the
 * job's inputs (input_image.*, input_mask.*).
 */
#ifndef S3D_JOBDIR_H
#define S3D_JOBDIR_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#define JOBDIR_DEFAULT_ROOT "/dev/shm"
#define JOBDIR_PREFIX       "s3d-"

struct jobdir {
    char path[PATH_MAX];        /* absolute, canonical (realpath) */
};

/* The root new jobs go under: S3D_JOB_ROOT if set and non-empty, else /dev/shm. */
const char *jobdir_default_root(void);

/* Create a fresh job directory under root (NULL: jobdir_default_root()).
 * Returns 0, or S3D_EIO after logging the root and errno text with a HINT. */
int jobdir_create(struct jobdir *j, const char *root);

/* Remove a job directory and everything in it. Refuses (S3D_EINVAL, logged)
 * a path whose last component does not start with "s3d-" or that is a symlink;
 * never follows symlinks inside (they are unlinked, not traversed). Returns 0,
 * or S3D_EIO when something could not be removed (logged). A missing directory
 * is not an error. */
int jobdir_remove(const char *path);

/* True when dir exists, is a directory and its last component starts with "s3d-". */
bool jobdir_is_job(const char *dir);

/* Check that path lies inside dir and write its canonical form to out[out_len].
 * For an existing path: realpath (symlinks resolved) must be dir's realpath
 * followed by '/'. With may_create, the path may be missing: then its parent
 * must resolve inside (or be) dir and its last component must not be "." or
 * "..". A path that is dir itself is refused. Returns 0, S3D_EINVAL (outside,
 * logged naming both paths) or S3D_ENOTFOUND (missing, logged). */
int jobdir_resolve(const char *dir, const char *path, bool may_create, char *out,
                   size_t out_len);

#endif
