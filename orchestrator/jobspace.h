/*
 * jobspace.h - room for a job's artifacts, checked before the job starts.
 *
 * The job directory holds every stage's artifact until the job ends; its
 * default root, /dev/shm, is 64 MB in a Docker container by default. The bytes
 * a job needs are bounded from the artifact shapes (docs/formats.md
 * "Artifacts"): the depth artifact grows with the image (13 bytes a pixel:
 * points (H, W, 3) F32 and valid (H, W) U8, plus the 518-pixel inputs of cond),
 * the others are bounded by the model's sizes (cond tokens (1, 7528 + 5496, 1024)
 * F32, at most 42 000 voxels after ss_decode, 32 Gaussians a voxel, ...).
 *
 * When the root has less room than that: with S3D_JOB_ROOT unset, the job goes
 * to the first disk directory with room ($TMPDIR, /var/tmp, /tmp) with a warning
 * (and S3D_JOB_ROOT is set to it for the stages, which accept job directories
 * under their root only); with S3D_JOB_ROOT set, the run fails with one error
 * line naming S3D_JOB_ROOT, the room and the need. A stage that fails while the
 * job's file system is nearly full anyway (a resumed job, which is not checked,
 * or a root filled by something else during the run) has its error say so.
 * Test: tests/test_jobspace.sh.
 */
#ifndef S3D_JOBSPACE_H
#define S3D_JOBSPACE_H

#include <stddef.h>
#include <stdint.h>

/* Upper bound of the bytes a job's directory holds: the artifacts of every
 * stage of the pipeline for an image of `pixels` pixels, plus input_bytes (the
 * copies of the image and the mask). */
int64_t jobspace_need(int64_t pixels, int64_t input_bytes);

/* Choose the job root for a job needing `need` bytes (see above): root[len]
 * receives it. 0, or S3D_EIO after one error line. what describes the job
 * in messages ("a 1600x898 image"). */
int jobspace_root(int64_t need, const char *what, char *root, size_t len);

/* Free bytes under which a failure names the job root (jobspace_failure_hint). */
#define JOBSPACE_LOW ((int64_t)64 << 20)

/* After a stage of the job in job_dir failed with err[len]: when the job's file
 * system has under JOBSPACE_LOW free (the likely cause), append to err that the
 * job root (job_dir's parent) has only so much free, naming S3D_JOB_ROOT and the
 * fix. err is left as it is otherwise. */
void jobspace_failure_hint(const char *job_dir, char *err, size_t len);

#endif
