/*
 * serve.h - the client side of `sam3d serve` (serve.c): `sam3d run --server ADDR`.
 */
#ifndef S3D_SERVE_H
#define S3D_SERVE_H

#include "progress.h"

/* Submit image + mask (out: the job's --out, made whole by the server) to the
 * server at addr, print its progress as mode says, and wait for the job's
 * end. Returns the job's exit status (0, 1, 3, 130 as sam3d run), 1 when the
 * server refused the job or did not answer (one error line), 130 after
 * SIGINT here (the job goes on in the server). preset may be NULL. */
int serve_client(const char *addr, const char *image, const char *mask, const char *out,
                 const char *preset, enum progress_mode mode);

#endif
