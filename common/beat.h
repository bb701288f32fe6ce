/*
 * beat.h - a busy stage's sign of life, so that the orchestrator's --timeout
 * means "no sign of life for S seconds", not "slower than S seconds".
 *
 * The orchestrator creates an empty beat file beside the stage's socket
 * (<sock_dir>/<stage>.beat) and starts the stage with --beat FILE. The stage
 * counts progress points - every op (op_check_dense, which the CPU and CUDA ops
 * call on entry), every weight chunk uploaded, and any call a long host loop
 * makes - and at most every BEAT_PERIOD_MS writes the count to the file: 8
 * bytes at offset 0, native byte order. While a request is in flight the
 * orchestrator reads it every slice (~100 ms) and, when it changed, moves the
 * request's deadline to now + --timeout. A stage stuck where no progress point
 * is reached (a hung driver call, a deadlock, an endless loop) stops beating and
 * is abandoned at the deadline. Stages served elsewhere (--endpoint) have no
 * beat file: their --timeout stays a limit per reply.
 * Test: tests/test_beat.sh.
 */
#ifndef S3D_BEAT_H
#define S3D_BEAT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define BEAT_PERIOD_MS 200     /* the most often the count is written */

/* Stage side: write beats to path (an existing file; --beat). 0, or S3D_EIO
 * after one error line naming the file. Called once, before serving. */
int  beat_open(const char *path);
/* A progress point: count it; write the count when BEAT_PERIOD_MS passed since
 * the last write. A no-op without beat_open; cheap enough for every op
 * (an atomic add and a coarse clock read). Any thread. */
void beat_progress(void);

/* Orchestrator side: create (or empty) the beat file path for a stage about to
 * start; returns its descriptor open for reading, or -1 (errno set). */
int  beat_create(const char *path);
/* The count in the beat file open as fd (0 before the first write). */
uint64_t beat_read(int fd);

#ifdef __cplusplus
}
#endif
#endif
