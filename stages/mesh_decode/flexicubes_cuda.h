/*
 * flexicubes_cuda.h - the CUDA side of flexicubes.h (flexicubes_cuda.cu),
 * called by the dispatching functions in flexicubes.c for device tensors.
 * Same contracts as the public functions of the same name without _cuda.
 */
#ifndef S3D_FLEXICUBES_CUDA_H
#define S3D_FLEXICUBES_CUDA_H

#include "flexicubes.h"

#ifdef __cplusplus
extern "C" {
#endif

size_t  fc_init_scratch_bytes_cuda(int64_t n_vox, int L);
int64_t fc_count_vertices_cuda(const struct op_ctx *ctx, struct arena *scratch,
                               const struct tensor *coords, int R, int L);
void    fc_init_cuda(struct flexicubes *fc, const struct op_ctx *ctx, struct arena *state,
                     struct arena *scratch, const struct tensor *coords);
void    fc_accumulate_cuda(struct flexicubes *fc, const struct op_ctx *ctx,
                           const struct tensor *feats, int64_t row0);
int     fc_finish_cuda(struct flexicubes *fc, const struct op_ctx *ctx, struct arena *scratch,
                       int64_t max_faces);
/* (flexicubes.c) Take the state tensors of fc (n_vox, n_verts, n_cubes, wdt
 * set) from the state arena. */
void    fc_state_alloc(struct flexicubes *fc, struct arena *state);
/* bytes from device src to host dst on ctx->stream, synchronised */
void    fc_copy_to_host_cuda(const struct op_ctx *ctx, void *dst, const void *src, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
