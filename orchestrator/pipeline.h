/*
 * pipeline.h - plain-text pipeline definitions (pipelines/NAME.pipe).
 *
 * Format: one directive per line, '#' starts a comment, words separated by
 * blanks (a value may not contain blanks). A "stage" line opens a stage; the
 * indented lines after it describe it:
 *
 *   stage NAME                  unique, [a-z0-9_]+; also the socket name
 *     exe     FILE              executable in the stages dir (sam3d-depth)
 *     weights PATH|none         relative to --weights DIR (":KEY" allowed);
 *                               "$MOGE" is --moge FILE or DIR/moge-vitl/model.pt
 *     out     FILE              artifact file the stage writes (NAME.safetensors)
 *     input   FILE:TENSOR [as NAME]   a tensor of an earlier artifact
 *     param   KEY VALUE         true/false, int, float or string; in strings
 *                               $JOB, $IMAGE and $MASK expand to job paths
 *     device  cuda:N|cpu        (optional) this stage's device; default: the
 *                               run's --device
 *     endpoint URL              (optional) the stage is served elsewhere
 *                               (tcp://HOST:PORT or ipc://PATH): the orchestrator
 *                               connects instead of starting it, sends its inputs
 *                               inline and writes the outputs it gets back
 *
 * Two more directives place an existing pipeline on other devices without copying it
 * (pipelines/sam3d_objects_2gpu.pipe):
 *
 *   include FILE                the first directive only: the stages of FILE (relative
 *                               to this file's folder; one level, no include inside it)
 *   place   NAME cuda:N|cpu     the device of stage NAME, defined above (or included);
 *                               the same as a 'device' line in its block
 *
 * The needs table (budget.h) of an including file is its own NAME.needs if present, else
 * the included file's (p->needs_base).
 *
 * Order of "stage" lines is execution order. pipeline_load checks the syntax,
 * that every input names an artifact written by an earlier stage, and limits.
 */
#ifndef S3D_PIPELINE_H
#define S3D_PIPELINE_H

#include "wire.h"

#include <limits.h>

#define PIPE_MAX_STAGES 16
#define PIPE_MAX_PARAMS 16
#define PIPE_NAME_MAX   32

struct pipe_input {
    char file[WIRE_KEY_MAX];      /* artifact file name, e.g. depth.safetensors */
    char key[WIRE_KEY_MAX];       /* tensor name inside it */
    char name[WIRE_KEY_MAX];      /* name the stage sees (default: key) */
};

struct pipe_stage {
    char              name[PIPE_NAME_MAX];
    char              exe[PIPE_NAME_MAX * 2];
    char              weights[PATH_MAX];      /* "" = none */
    char              out[WIRE_KEY_MAX];
    int               n_inputs;
    struct pipe_input inputs[WIRE_MAX_TENSORS];
    int               n_params;
    char              param_key[PIPE_MAX_PARAMS][WIRE_KEY_MAX];
    char              param_val[PIPE_MAX_PARAMS][WIRE_STR_MAX];
    char              device[32];             /* "" = the run's --device */
    char              endpoint[WIRE_STR_MAX]; /* "" = started locally on ipc:// */
    int               line;                   /* of the "stage" line */
};

struct pipeline {
    char              path[PATH_MAX];
    char              included[PATH_MAX];     /* the 'include' file, "" = none */
    int               n_stages;
    struct pipe_stage stages[PIPE_MAX_STAGES];
};

/* Parse path into p (caller-owned, ~300 KB: allocate it). Returns 0, or
 * S3D_EIO / S3D_EFORMAT after logging "FILE:LINE: reason". */
int pipeline_load(struct pipeline *p, const char *path);
/* The pipeline file whose NAME.needs table applies: p->path when that file has one,
 * else the included file (so a placement file shares its base's needs). */
const char *pipeline_needs_base(const struct pipeline *p);
/* The stage named name, or NULL. */
const struct pipe_stage *pipeline_find(const struct pipeline *p, const char *name);

/* Validity of the optional per-stage values (also used for the command-line
 * overrides): a device is "cpu" or "cuda" or "cuda:N"; an endpoint starts with
 * tcp:// or ipc:// and fits WIRE_STR_MAX. */
bool pipeline_device_ok(const char *device);
bool pipeline_endpoint_ok(const char *endpoint);

/* --- paths around a pipeline (shared by run, stage and check-weights) --- */

/* The pipeline file to use: explicit if non-NULL, else env S3D_PIPELINE, else the
 * first that exists of <dir of the sam3d binary>/../share/sam3d/pipelines/
 * sam3d_objects.pipe (installed) and <dir>/../pipelines/sam3d_objects.pipe (the
 * build tree), else pipelines/sam3d_objects.pipe. Written to out. */
void pipeline_default_path(const char *explicit_path, char *out, size_t len);
/* The stages directory: explicit if non-NULL, else the directory of the sam3d binary. */
void pipeline_stages_dir(const char *explicit_dir, char *out, size_t len);
/* The weights argument for stage s: "" when it has none; "$MOGE" -> moge if
 * non-NULL; else REL = <weights> (moge-vitl/model.pt for "$MOGE") in the first
 * layout of WEIGHTS that holds it: WEIGHTS/REL (ours, and the official
 * checkpoints/hf), WEIGHTS/checkpoints/REL (the downloaded model repository),
 * WEIGHTS/hf/REL (the official checkpoints/ folder), WEIGHTS/checkpoints/hf/REL
 * (a sam-3d-objects checkout); none: WEIGHTS/REL.
 * Returns 0, or S3D_EINVAL (logged) when weights are needed but weights_dir is NULL. */
int  pipeline_weights_path(const struct pipe_stage *s, const char *weights_dir,
                           const char *moge, char *out, size_t len);
/* For an error message: where pipeline_weights_path looked ("ss_generator.ckpt in
 * DIR, checkpoints/, hf/ and checkpoints/hf/", or "--moge FILE"). */
void pipeline_weights_looked(const struct pipe_stage *s, const char *weights_dir,
                             const char *moge, char *out, size_t len);
/* The file a "weights" argument names, without a ":KEY" suffix that is not part
 * of an existing file name. */
void pipeline_weights_file(const char *weights_arg, char *out, size_t len);

#endif
