/*
 * remote.h - the inline side of a stage served elsewhere (pipeline `endpoint`,
 * `sam3d run --endpoint NAME=URL`). design.md "Wire": locally tensors travel as
 * safetensors paths in the job directory; to a remote stage they travel inline
 * as data frames, and its outputs come back inline. These helpers turn the
 * job's artifacts into frames and the reply's frames into the stage's artifact,
 * so the rest of the run (report, artifacts/, later stages) is the same for
 * local and remote stages.
 */
#ifndef S3D_REMOTE_H
#define S3D_REMOTE_H

#include "ckpt.h"
#include "pipeline.h"
#include "wire.h"

/* The artifact files mapped for one request's frames (zero-copy: the frames point
 * into the mappings, so they stay open until the call returns). */
struct remote_inputs {
    int         n;
    struct ckpt files[WIRE_MAX_TENSORS];
};

/* Add every input of stage ps to request m as a data frame, read from
 * <job>/<artifact>. Returns 0, or S3D_ENOTFOUND / S3D_EFORMAT with one line in
 * err naming the artifact (nothing logged). in must be remote_inputs_close()d
 * after the call, also on failure. */
int  remote_add_inputs(struct wire_msg *m, const struct pipe_stage *ps, const char *job,
                       struct remote_inputs *in, char *err, size_t err_len);
void remote_inputs_close(struct remote_inputs *in);     /* idempotent */

/* Write the inline tensors of a reply to path (safetensors, atomic). A reply
 * holding a tensor that is not inline (a path on the other machine) or no
 * tensor at all is an error. Returns 0, or S3D_EPROTO / S3D_EIO with one line
 * in err. */
int  remote_write_outputs(const struct wire_msg *rep, const char *path, char *err,
                          size_t err_len);

#endif
