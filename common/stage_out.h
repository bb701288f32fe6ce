/*
 * stage_out.h - the stage library's side of a request's outputs (common/stage_out.c):
 * used by the serve loop (common/stage.c); stages use stage_output and
 * stage_write_ahead (stage.h).
 */
#ifndef S3D_STAGE_OUT_H
#define S3D_STAGE_OUT_H

#include "stage.h"
#include "wire.h"

/* After a successful run: the outputs into the artifact file in rq->out_job (the
 * rest of a file written ahead, then put in place) and their shm entries into rep,
 * or, with no job directory, rep's frames. 0, or an error after stage_fail (no file
 * left behind). */
int stage_out_emit(struct stage_req *rq, struct wire_msg *rep);

/* After a failed run: a file written ahead is abandoned (its thread joined, the
 * temporary file removed). No-op otherwise. */
void stage_out_abort(struct stage_req *rq);

#endif
