/*
 * report.h - what a job leaves in its --out directory: artifacts/ (each
 * stage's artifact, copied as soon as the stage completes, so a run stopped
 * by anything keeps what it finished) and report.json (docs/formats.md).
 * Every file is written under a temporary name and renamed into place:
 * complete or absent, never half-written.
 */
#ifndef S3D_REPORT_H
#define S3D_REPORT_H

#include "engine.h"

#include <stdio.h>

/* "complete" (code 0), "partial" (3), "interrupted" (130), "failed" (else). */
const char *report_status(int code);

/* s as a JSON string (quotes, escapes) to f. */
void report_json_str(FILE *f, const char *s);

/* Copy src to dst through "<dst>.tmp.<pid>" + rename. 0 or S3D_EIO (errno kept). */
int  report_copy_file(const char *src, const char *dst);

/* A file written whole or not at all: report_open_tmp opens "<path>.tmp.<pid>"
 * (its name into tmp[len]; NULL after logging), report_commit closes it and
 * renames it to path (0, or S3D_EIO after logging, the temporary removed). */
FILE *report_open_tmp(const char *path, char *tmp, size_t len);
int   report_commit(FILE *f, const char *tmp, const char *path);

/* Copy stage s's artifact of job j into j->out_dir/artifacts/ (nothing when
 * out_dir is ""). 0, or S3D_EIO after logging. */
int  report_copy_artifact(const struct engine *e, const struct job *j, int s);

/* Write j->out_dir/report.json for job j with the given status. 0 or S3D_EIO
 * (logged). */
int  report_write(struct engine *e, const struct job *j, const char *status);

#endif
