/*
 * jobspace.c - room for a job's artifacts. Contract: jobspace.h.
 */
#include "jobspace.h"

#include "budget.h"
#include "err.h"
#include "jobdir.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define MB (1024 * 1024)

/* Each artifact's upper bound (docs/formats.md "Artifacts"), F32 where the GPU
 * path writes F16: bytes = fixed + per_pixel * the image's pixels. */
static const struct {
    const char *artifact;
    int64_t     fixed, per_pixel;
} sizes[] = {
    {"depth",       16LL * MB, 13},    /* points + valid at full size; 6 tensors at 518^2 */
    {"cond_ss",     31LL * MB, 0},     /* (1, 7528, 1024) */
    {"cond_slat",   23LL * MB, 0},     /* (1, 5496, 1024) */
    {"ss_flow",      1LL * MB, 0},     /* (1, 4096, 8) and the pose latents */
    {"ss_decode",    6LL * MB, 0},     /* coords (<= 42000, 4) + coords_original (<= 64^3, 4) */
    {"slat_flow",    2LL * MB, 0},     /* coords + feats (<= 42000, 4 + 8) */
    {"gs_decode",   76LL * MB, 0},     /* 56 bytes x 32 Gaussians x 42000 voxels */
    {"mesh_decode", 48LL * MB, 0},     /* vertices + colors (V, 3) + faces (2V, 3), V <= 1M */
};

int64_t jobspace_need(int64_t pixels, int64_t input_bytes)
{
    int64_t n = input_bytes;

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        n += sizes[i].fixed + sizes[i].per_pixel * pixels;
    return n;
}

/* Bytes an unprivileged process may still write under dir; -1 unknown. */
static int64_t room(const char *dir)
{
    struct statvfs st;

    if (statvfs(dir, &st) != 0 || access(dir, W_OK | X_OK) != 0)
        return -1;
    return (int64_t)st.f_bavail * (int64_t)st.f_frsize;
}

int jobspace_root(int64_t need, const char *what, char *root, size_t len)
{
    const char *env = getenv("S3D_JOB_ROOT"), *tmpdir = getenv("TMPDIR");
    const char *fallback[] = {tmpdir && *tmpdir ? tmpdir : "/var/tmp", "/var/tmp", "/tmp"};
    const char *want = jobdir_default_root();
    int64_t have = room(want);
    char a[32], b[32];

    snprintf(root, len, "%s", want);
    if (have < 0 || have >= need)      /* unknown: jobdir_create says what is wrong */
        return 0;
    budget_size_str(have, a, sizeof(a));
    budget_size_str(need, b, sizeof(b));
    if (env && *env) {
        log_error("S3D_JOB_ROOT=%s has %s free, and a job on %s needs up to %s for its "
                  "artifacts. HINT: point S3D_JOB_ROOT at a directory with more room (a disk "
                  "directory works; in Docker, or grow /dev/shm with --shm-size)", want, a, what,
                  b);
        return S3D_EIO;
    }
    for (size_t i = 0; i < sizeof(fallback) / sizeof(fallback[0]); i++) {
        int64_t r = room(fallback[i]);
        char c[32];

        if (r < need)
            continue;
        snprintf(root, len, "%s", fallback[i]);
        log_warn("job root %s has %s free, and a job on %s needs up to %s for its artifacts: "
                 "using %s (%s free) instead, slower than memory. HINT: set S3D_JOB_ROOT=DIR to "
                 "choose (in Docker: --shm-size=1g keeps it in memory)", want, a, what, b, root,
                 budget_size_str(r, c, sizeof(c)));
        setenv("S3D_JOB_ROOT", root, 1);      /* the stages accept jobs under their root */
        return 0;
    }
    log_error("job root %s has %s free, and a job on %s needs up to %s for its artifacts; "
              "no fallback ($TMPDIR, /var/tmp, /tmp) has room either. HINT: set "
              "S3D_JOB_ROOT=DIR to a directory with room", want, a, what, b);
    return S3D_EIO;
}

void jobspace_failure_hint(const char *job_dir, char *err, size_t len)
{
    const char *slash = strrchr(job_dir, '/');
    int64_t have = room(job_dir);
    size_t n = strlen(err);
    char a[32];

    if (have < 0 || have >= JOBSPACE_LOW || n + 1 >= len)
        return;
    snprintf(err + n, len - n, "; the job root %.*s (S3D_JOB_ROOT) has only %s free. HINT: "
             "free space there, or set S3D_JOB_ROOT to a directory on a larger file system "
             "(in Docker: --shm-size=1g)", slash ? (int)(slash > job_dir ? slash - job_dir : 1) : 1,
             slash ? job_dir : ".", budget_size_str(have, a, sizeof(a)));
}
