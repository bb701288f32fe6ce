/*
 * stage_warm.h - made-up inputs for the stages' warm-ups (stage_ops.warm in
 * stage.h): zeroed or pseudo-random host tensors and a typical voxel set.
 * A warm-up's outputs are dropped, so only the shapes matter: they pick the
 * kernels and the cuBLASLt / cuDNN algorithms the first real request will use,
 * and those are what a warm-up loads and sets up ahead of it.
 */
#ifndef S3D_STAGE_WARM_H
#define S3D_STAGE_WARM_H

#include "arena.h"
#include "stage_rt.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The voxel count of a typical object after the SS decoder (its downsample
 * caps it at 42,000; the bench's objects have 30-33k; docs/performance.md),
 * and the one a warm-up on the host uses (S3D_WARMUP=all, tests: the host path
 * picks no algorithm by shape, and its forward of 30k voxels takes a minute). */
#define STAGE_WARM_VOXELS      30000
#define STAGE_WARM_VOXELS_HOST 512

/* A zeroed contiguous host tensor of dt and shape from host. 0, or S3D_ENOMEM
 * (logged) when host cannot hold it. */
int stage_warm_tensor(struct arena *host, enum dtype dt, const int64_t *shape, int ndim,
                      struct tensor *t);

/* The same, F32, filled with a fixed pseudo-random sequence uniform in [-1, 1). */
int stage_warm_noise(struct arena *host, const int64_t *shape, int ndim, struct tensor *t);

/* The voxels of a spherical shell centred in a res^3 grid with about n cells
 * (at most what the grid holds): (N, 4) I32 rows (0, x, y, z), unique, in
 * increasing order, the form ss_decode writes. 0, or S3D_ENOMEM / S3D_EINVAL
 * (res < 4 or n < 1; logged). */
int stage_warm_shell(struct arena *host, int res, int64_t n, struct tensor *coords);

/* The shell a warm-up on rt's device decodes: STAGE_WARM_VOXELS at res on
 * CUDA, STAGE_WARM_VOXELS_HOST on the host. */
int stage_warm_voxels(const struct stage_rt *rt, struct arena *host, int res,
                      struct tensor *coords);

#ifdef __cplusplus
}
#endif
#endif
