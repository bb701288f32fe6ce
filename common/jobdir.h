/*
 * jobdir.h - job directories: where one job's artifacts and sockets live, and
 * what a stage trusts one for (docs/security.md "Job directories").
 *
 * A job directory is "<root>/s3d-<pid>-<n>" (mode 0700), root /dev/shm unless
 * S3D_JOB_ROOT or an explicit root says otherwise. The orchestrator owns it:
 * it creates it (holding an flock on it while it lives), and removes it
 * (recursively, never following a symlink) when the job ends, unless asked to
 * keep it; the next orchestrator removes the directories of orchestrators that
 * died (their lock is gone and their pid too) unless they were kept.
 *
 * A stage accepts a job directory only when it is a "s3d-*" directory directly
 * under its job root, owned by the stage's own user and of mode 0700 (no one
 * else can have planted anything in it), and from then on works relative to
 * the directory's descriptor: inputs are plain names inside it, opened
 * O_NOFOLLOW|O_NONBLOCK as regular files within a size cap; outputs are created
 * O_CREAT|O_EXCL|O_NOFOLLOW under a temporary name and renamed into place, and
 * their names are fixed per stage (jobdir_out_name_ok), so a request can never
 * make a stage write over its socket, an input or another stage's artifact.
 *
 * Layout inside: <stage>.sock (ipc endpoints), <artifact>.safetensors, the
 * job's inputs (input_image, input_mask), and JOBDIR_KEEP_MARK when kept.
 */
#ifndef S3D_JOBDIR_H
#define S3D_JOBDIR_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JOBDIR_DEFAULT_ROOT "/dev/shm"
#define JOBDIR_PREFIX       "s3d-"

#define JOBDIR_KEEP_MARK    ".s3d-keep"   /* a kept job: never removed as stale */

struct jobdir {
    char path[PATH_MAX];        /* absolute, canonical (realpath) */
    int  fd;                    /* the directory (O_DIRECTORY|O_CLOEXEC) when open */
    bool open;                  /* fd is valid: release it with jobdir_close */
};

/* The root new jobs go under: S3D_JOB_ROOT if set and non-empty, else /dev/shm. */
const char *jobdir_default_root(void);

/* Create a fresh job directory under root (NULL: jobdir_default_root()), open
 * it and hold an flock on it until jobdir_close. First removes the stale job
 * directories under root (jobdir_remove_stale). Returns 0, or S3D_EIO after
 * logging the root and errno text with a HINT. */
int jobdir_create(struct jobdir *j, const char *root);

/* Remove every job directory under root that belongs to this user, is not kept
 * (JOBDIR_KEEP_MARK), whose orchestrator pid (from its name) no longer exists
 * and whose lock is free. Logs each removal. Returns how many were removed. */
int jobdir_remove_stale(const char *root);

/* Mark j kept (creates JOBDIR_KEEP_MARK in it): no later orchestrator removes
 * it as stale. Returns 0 or S3D_EIO (logged). */
int jobdir_keep(const struct jobdir *j);

/* Take over the existing job directory dir (one kept by an earlier run, to
 * resume it): canonical path, open, and the same flock jobdir_create holds, so
 * two orchestrators never work in one job. Returns 0, or S3D_EINVAL (not a
 * job directory) / S3D_EIO (in use by another orchestrator, or unreadable)
 * after one error line naming dir with a HINT. */
int jobdir_adopt(struct jobdir *j, const char *dir);

/* Close j's descriptor (releasing its lock). NULL-safe, idempotent. */
void jobdir_close(struct jobdir *j);

/* How jobdir_open checks the directory. */
#define JOBDIR_UNDER_ROOT 1   /* a job: "s3d-*" directly under the job root, ours, 0700 */

/* Open dir for a stage: with JOBDIR_UNDER_ROOT as a job directory (see above;
 * a symlink as the last component is refused), without (--once directories
 * the user names) any directory. Returns 0 with j open, or S3D_EINVAL with the
 * reason (the directory's owner or mode, where it is, what it is) in why. */
int jobdir_open(struct jobdir *j, const char *dir, int flags, char *why, size_t why_len);

/* True when name is a plain file name: [A-Za-z0-9_.-]+, not starting with '.'. */
bool jobdir_name_ok(const char *name);

/* True when name may be an output of stage: "<stage>.safetensors" or
 * "<stage>_<tag>.safetensors" / "<stage>-<tag>.safetensors" with tag in
 * [A-Za-z0-9_-]+ (cond writes cond_ss and cond_slat). No such name can be a
 * socket (.sock), an input (input_*) or another stage's artifact. */
bool jobdir_out_name_ok(const char *stage, const char *name);

/* Open the input path inside the open directory j: path is j->path + "/" +
 * a plain name (or the plain name alone), opened relative to j->fd with
 * O_NOFOLLOW|O_NONBLOCK as a regular file of at most max_bytes (0: any).
 * Returns the descriptor (blocking, O_CLOEXEC), or -1 with the reason in why. */
int jobdir_open_input(const struct jobdir *j, const char *path, uint64_t max_bytes,
                      char *why, size_t why_len);

/* Copy the user's file src (a regular file of at most max_bytes; a FIFO, a
 * device or a directory is refused without reading it) into j as the new file
 * name (O_CREAT|O_EXCL|O_NOFOLLOW). what names the input in messages
 * ("--image"). Returns 0, or S3D_EINVAL / S3D_EIO after one error line naming
 * src and a HINT; nothing is left behind on failure. */
int jobdir_copy_in(const struct jobdir *j, const char *src, const char *name,
                   uint64_t max_bytes, const char *what);

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
