/*
 * err.h - error codes shared by every module.
 *
 * Commands return 0 or a negative enum s3d_err. The function that detects an
 * external fault logs it with full context; callers only propagate the code.
 * Internal faults never return: they go through s3d_fatal() (log.h).
 */
#ifndef S3D_ERR_H
#define S3D_ERR_H

#ifdef __cplusplus
extern "C" {
#endif

enum s3d_err {
    S3D_OK        = 0,
    S3D_EIO       = -1,   /* a file or socket could not be read or written */
    S3D_EFORMAT   = -2,   /* bytes are not the format they claim to be */
    S3D_ESHAPE    = -3,   /* a tensor has the wrong name, dtype or shape */
    S3D_EPROTO    = -4,   /* a malformed wire message */
    S3D_ENOMEM    = -5,   /* an arena or allocation is exhausted */
    S3D_EINVAL    = -6,   /* a bad argument or option from the user */
    S3D_ETIMEOUT  = -7,   /* a peer did not answer in time */
    S3D_ENOTFOUND = -8,   /* a named file, key or tensor does not exist */
    S3D_EDEVICE   = -9,   /* no usable CUDA device where one was asked for */
    S3D_ERR_COUNT = 10
};

/* Symbolic name of an error code ("S3D_EFORMAT"); "S3D_E?" for unknown codes. */
const char *s3d_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
