/*
 * echo_fixture.c - see echo_fixture.h.
 */
#include "echo_fixture.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void echo_fixture_init(struct echo_fixture *f, const char *prefix)
{
    const char *build = getenv("BUILD");
    char tmpl[64];

    snprintf(f->bin, sizeof(f->bin), "%s/tests/tools/echo_stage", build ? build : "build");
    if (access(f->bin, X_OK) != 0)
        harness_skip("%s not built (make build/tests/tools/echo_stage)", f->bin);
    snprintf(tmpl, sizeof(tmpl), "/tmp/%s-XXXXXX", prefix);
    if (!mkdtemp(tmpl) || !realpath(tmpl, f->root))
        harness_skip("no temporary directory");
    setenv("S3D_JOB_ROOT", f->root, 1);
    snprintf(f->weights, sizeof(f->weights), "%s/w.bin", f->root);
    CHECK(write_file(f->weights, "weights", 7) == 0);
    snprintf(f->ep, sizeof(f->ep), "ipc://%s/echo.sock", f->root);
}
