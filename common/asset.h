/*
 * asset.h - the in-memory forms of what `sam3d export` writes (orchestrator/
 * export.c): the Gaussians as gs_decode.safetensors holds them (docs/formats.md)
 * and a vertex-coloured triangle mesh. Both are views: the arrays belong to the
 * caller. The writers are in ply.h and glb.h, the placement in pose.h, the
 * preview renderer in preview.h.
 */
#ifndef S3D_ASSET_H
#define S3D_ASSET_H

#include <stdint.h>

/* M Gaussians in the official order (voxel-major, row v*G + g), the values the
 * official Gaussian.save_ply writes (spec decoders §7.2). */
struct gaussians {
    int64_t  n;            /* M */
    float   *xyz;          /* (M, 3) get_xyz: z-up object frame, or placed (pose.h) */
    float   *f_dc;         /* (M, 3) raw SH DC (r, g, b); colour = 0.5 + C0 * f_dc */
    float   *opacity;      /* (M, 1) log(o / (1 - o)) of get_opacity (may be +-inf) */
    float   *scale;        /* (M, 3) log(get_scaling) */
    float   *rotation;     /* (M, 4) wxyz, not normalised */
};

/* A triangle mesh with one RGBA colour per vertex. */
struct tri_mesh {
    int64_t   n_vertices;  /* V */
    int64_t   n_faces;     /* F */
    float    *positions;   /* (V, 3) */
    uint32_t *faces;       /* (F, 3) vertex indices, winding as given */
    uint8_t  *colors;      /* (V, 4) RGBA8 */
};

#endif
