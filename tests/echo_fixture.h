/*
 * echo_fixture.h - the opening of the tests that drive a real echo stage
 * (build/tests/tools/echo_stage): test_stage.c, test_stage_security.c.
 */
#ifndef S3D_ECHO_FIXTURE_H
#define S3D_ECHO_FIXTURE_H

#include <limits.h>

struct echo_fixture {
    char bin[PATH_MAX];            /* $BUILD/tests/tools/echo_stage */
    char root[PATH_MAX];           /* a fresh private directory, exported as S3D_JOB_ROOT */
    char weights[PATH_MAX + 16];   /* root/w.bin, 7 bytes */
    char ep[PATH_MAX + 16];        /* ipc://root/echo.sock */
};

/* Fill f, or skip the test (exit 77) when the echo stage is not built or no
 * temporary directory can be made. prefix names the directory (/tmp/PREFIX-XXXXXX). */
void echo_fixture_init(struct echo_fixture *f, const char *prefix);

#endif
