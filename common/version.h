/*
 * version.h - the version every executable prints with --version.
 *
 * S3D_VERSION is the project's release number; s3d_version() adds the git
 * description of the tree the binary was built from ("0.1.0 (git
 * 5beecb1-dirty)"), generated at build time by the Makefile from `git describe
 * --always --dirty` into $(BUILD)/gen/version.c ("unknown" outside a git
 * checkout), so it is always the build's own.
 */
#ifndef S3D_VERSION_H
#define S3D_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

#define S3D_VERSION "0.1.0"

/* "0.1.0 (git <describe>)": static storage. */
const char *s3d_version(void);

#ifdef __cplusplus
}
#endif
#endif
