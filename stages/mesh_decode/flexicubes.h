/*
 * flexicubes.h - sparse FlexiCubes surface extraction: the mesh decoder's
 * 101-channel cube features -> dual vertices, triangles, vertex colours, as the
 * official SparseFeatures2Mesh + FlexiCubes inference path computes them, but
 * only on the occupied cubes and their neighbours (no dense grid).
 *
 * Reference (sam-3d-objects @cf06676, TD = sam3d_objects/model/backbone/tdfy_dit/):
 *   TD/representations/mesh/cube2mesh.py:70-159   channel layout, sdf bias, call
 *   TD/representations/mesh/utils_cube.py:4-85     corners, edges, corner -> vertex mean,
 *                                                  deformed vertex positions
 *   TD/representations/mesh/flexicubes/flexicubes.py:57-391   surface cubes, case ids
 *                                                  (+ ambiguity check), weights, surface
 *                                                  edges, dual vertices, quads -> triangles
 *   .../flexicubes/tables.py                       -> flexicubes_tables.h (generated)
 * Spec: spec/decoders.md §6.2-6.4; stages/mesh_decode/README.md.
 *
 * The cube set. N voxels at resolution R >> L (coords (N, 4) I32 rows
 * (0, x, y, z)); each voxel is an aligned block of B^3 cubes (B = 2^L) at
 * resolution R, and cube rows follow L SparseSubdivide steps:
 *     row = i * 8^L + sum_l k_l * 8^(L-1-l),  k_l = 4 bx_l + 2 by_l + bz_l
 * where (bx_l, by_l, bz_l) is bit L-1-l of the cube's offset inside voxel i.
 * Released: R = 256, L = 2 (the decoder's 64^3 voxels subdivided twice).
 *
 * Per cube (FC_CH = 101 F32 channels, cube2mesh.py:70-99): sdf[8] at 0, deform
 * [8][3] at 8, weights [21] at 32 (beta[12], alpha[8], gamma), colour [8][6] at
 * 53 (only the first 3 of each 6 reach the output; the other 3 are ignored).
 * Corner c sits at (c & 1, c >> 1 & 1, c >> 2); vertex keys are
 * (x (R+1) + y)(R+1) + z, cube keys (x R + y) R + z (u32: R <= FC_MAX_RES).
 *
 * What is computed (every float op in fp32 in the reference's order, so the
 * CPU path reproduces its bits up to libm ulps):
 *   1. vertex field: each active cube adds (sdf + (-1/R), deform, rgb) at its 8
 *      corners; a vertex is the mean over the cubes that touch it (untouched:
 *      sdf 1, deform 0, colour 0). Position v/R - 0.5 + (1/(2R)) tanh(deform),
 *      colour sigmoid(mean).
 *   2. surface cubes: any cube (active or not) with 1..7 corners at sdf < 0: the
 *      cubes around the vertices with sdf < 0, sorted by cube key. Inactive cubes
 *      have raw weights 0.
 *   3. case id from the corner bits, replaced by the inverted case when it and the
 *      neighbour given by the table are both flagged surface cubes.
 *   4. weights beta = 0.99 tanh + 1, alpha = 0.99 tanh + 1, gamma = 0.99 sigmoid +
 *      0.005 (flexicubes.py:121-142).
 *   5. surface edges: the edges of surface cubes whose endpoints differ in sign,
 *      numbered in (first endpoint, second endpoint) order (torch.unique's sort).
 *   6. dual vertices: grouped by the case's count (1..4), then cube key, then k;
 *      each the beta-weighted mean of its edges' alpha-weighted zero crossings
 *      (colour the same way).
 *   7. triangles: per surface edge shared by 4 cubes, a quad of their dual
 *      vertices (ascending cube key), oriented by the sign of the edge's first
 *      endpoint (those with sdf > 0 first, then the rest, each in edge order),
 *      split along the diagonal with the larger gamma product.
 *
 * Use: fc_init (geometry from the coords), fc_accumulate for consecutive row
 * ranges of cube features (the decoder streams them), fc_finish, fc_download,
 * fc_end. The persistent state (voxel and vertex keys, vertex sums, the raw
 * weights of every active cube) lives in the `state` arena; fc_finish works in
 * `scratch` and keeps its results there until fc_end. CPU: host arenas (and
 * malloc'ed temporaries); CUDA: device arenas, kernels on ctx->stream (a few
 * synchronisations to read counts), CUB radix sorts with temporary storage
 * from the arenas.
 */
#ifndef S3D_FLEXICUBES_H
#define S3D_FLEXICUBES_H

#include "arena.h"
#include "ops.h"
#include "tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FC_CH       101          /* channels per cube */
#define FC_SDF      0            /* [8] */
#define FC_DEFORM   8            /* [8][3] */
#define FC_WEIGHTS  32           /* [21]: beta[12], alpha[8], gamma */
#define FC_NW       21
#define FC_COLOR    53           /* [8][6]; the first 3 of each corner are used */
#define FC_MAX_RES  1024         /* keys in u32: (R + 1)^3 < 2^32 */
#define FC_MAX_L    3

/* What fc_finish produces, and what it needed. */
struct fc_counts {
    int64_t n_verts;        /* unique cube corners (the vertex field) */
    int64_t n_neg;          /* of them with sdf < 0 */
    int64_t n_surf;         /* surface cubes */
    int64_t n_inverted;     /* of them with an ambiguous case inverted (step 3) */
    int64_t n_slots;        /* (surface cube, edge) pairs on a surface edge */
    int64_t n_edges;        /* surface edges */
    int64_t n_quads;        /* surface edges shared by 4 surface cubes */
    int64_t n_vd;           /* dual vertices = output vertices */
    int64_t n_faces;        /* 2 n_quads */
};

struct flexicubes {
    int           R, L;          /* cube resolution, subdivisions per voxel */
    enum device   dev;
    enum dtype    wdt;           /* storage dtype of the raw cube weights (F32 or F16) */
    int64_t       n_vox;         /* N */
    int64_t       n_cubes;       /* N * 8^L */
    int64_t       n_verts;       /* unique corners */
    struct tensor row_keys;      /* (N) I32: voxel key (x Rv + y) Rv + z of each coords row */
    struct tensor vox_keys;      /* (N) I32: the voxel keys sorted */
    struct tensor vox_rows;      /* (N) I32: the coords row of each sorted key */
    struct tensor vkeys;         /* (n_verts) I32: corner keys, sorted, unique */
    struct tensor vacc;          /* (n_verts, 8) F32: sum sdf, deform[3], rgb[3], count;
                                  * after fc_finish: sdf, position[3], colour[3], - */
    struct tensor cube_w;        /* (n_cubes, 21) wdt: raw weights by cube row */
    struct fc_counts cnt;        /* valid after fc_finish */
    /* results of fc_finish (in scratch on CUDA, malloc'ed on the CPU) */
    float        *vd_pos;        /* (n_vd, 3) */
    float        *vd_col;        /* (n_vd, 3) */
    int32_t      *faces;         /* (n_faces, 3) */
    size_t        need_scratch;  /* fc_finish: scratch bytes it needed (S3D_ENOMEM) */
    bool          finalized;     /* step 1 done (vacc holds sdf, position, colour) */
    bool          finished;
};

/* The 12 cube edges as corner pairs (utils_cube.py:20-24), first endpoint first. */
extern const uint8_t FC_EDGE_CORNERS[12][2];

/* Check a voxel set for extraction: coords host I32 (N, 4), N >= 1, rows
 * (0, x, y, z) unique within [0, R >> L). 0, or S3D_ESHAPE with one logged
 * line naming `what` and a HINT. */
int    fc_check(const struct tensor *coords, int R, int L, const char *what);

/* Unique cube corners of the voxel set (to size the state arena): coords I32
 * (N, 4) on dev (checked). CUDA: scratch for the sort, one synchronisation. */
int64_t fc_count_vertices(const struct op_ctx *ctx, struct arena *scratch,
                          const struct tensor *coords, int R, int L);
/* Bytes of the state arena fc_init takes. */
size_t fc_state_bytes(int64_t n_vox, int64_t n_verts, int L, enum dtype wdt);
/* Scratch bytes fc_init and fc_count_vertices take for N voxels on dev (the
 * CUDA corner-key sort; 0 on the host). */
size_t fc_init_scratch_bytes(int64_t n_vox, int L, enum device dev);

/* Build the geometry of coords (I32 (N, 4) on dev, checked) in `state`: the
 * sorted voxel and corner keys, zeroed vertex sums. wdt: F32, or F16 to halve
 * the stored raw weights (the fp16 decoder path). ctx NULL on the host. */
void   fc_init(struct flexicubes *fc, const struct op_ctx *ctx, struct arena *state,
               struct arena *scratch, const struct tensor *coords, int R, int L,
               enum dtype wdt);

/* Add cube rows [row0, row0 + rows) to the vertex field and keep their raw
 * weights: feats (rows, FC_CH) F32 contiguous on fc->dev. Rows may come in any
 * order of ranges, each once; on the CPU sums follow the calls' row order (the
 * reference's scatter order when called in ascending order), on CUDA they are
 * atomic. */
void   fc_accumulate(struct flexicubes *fc, const struct op_ctx *ctx, const struct tensor *feats,
                     int64_t row0);

/* Extract the mesh (steps 1-7 above) after every row was accumulated. Returns
 * 0 (counts in fc->cnt; an SDF with no sign change gives 0 vertices and faces);
 * S3D_ENOMEM when scratch has less free space than fc->need_scratch (nothing
 * changed: grow the arena and call again); S3D_EINVAL (nothing logged: the
 * caller names its ceiling) when the mesh would have more than max_faces
 * faces (fc->cnt holds the counts). */
int    fc_finish(struct flexicubes *fc, const struct op_ctx *ctx, struct arena *scratch,
                 int64_t max_faces);

/* Copy the results into host tensors: vertices (n_vd, 3) F32, faces
 * (n_faces, 3) I32, colors (n_vd, 3) F32 (any may be NULL). */
void   fc_download(const struct flexicubes *fc, const struct op_ctx *ctx, struct tensor *vertices,
                   struct tensor *faces, struct tensor *colors);

/* Release what fc_finish malloc'ed (the CPU results); the arenas are the
 * caller's. NULL-safe. */
void   fc_end(struct flexicubes *fc);

/* --- the pieces shared by the CPU and CUDA paths --- */

#ifdef __CUDACC__
#define FC_HD static __host__ __device__ __forceinline__
#else
#define FC_HD static inline
#endif

/* Offset (ox, oy, oz) in [0, 2^L)^3 of cube row `rem` (< 8^L) inside its voxel. */
FC_HD void fc_row_offset(int64_t rem, int L, int *ox, int *oy, int *oz)
{
    int x = 0, y = 0, z = 0;

    for (int l = 0; l < L; l++) {
        int k = (int)(rem >> (3 * (L - 1 - l))) & 7;
        x |= (k >> 2 & 1) << (L - 1 - l);
        y |= (k >> 1 & 1) << (L - 1 - l);
        z |= (k & 1) << (L - 1 - l);
    }
    *ox = x, *oy = y, *oz = z;
}

/* The inverse: the row of offset (ox, oy, oz) inside a voxel (< 8^L). */
FC_HD int64_t fc_offset_row(int ox, int oy, int oz, int L)
{
    int64_t r = 0;

    for (int l = 0; l < L; l++) {
        int b = L - 1 - l;
        r = r * 8 + ((ox >> b & 1) << 2 | (oy >> b & 1) << 1 | (oz >> b & 1));
    }
    return r;
}

/* Index of key in the ascending array a[0, n), or -1. */
FC_HD int64_t fc_find(const uint32_t *a, int64_t n, uint32_t key)
{
    int64_t lo = 0, hi = n;

    while (lo < hi) {
        int64_t mid = (lo + hi) >> 1;
        if (a[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && a[lo] == key ? lo : -1;
}

/* Number of dual vertices of a case (nonzero FC_DMC masks). */
int    fc_num_vd(int case_id);
/* Index into FC_CHECK of a flagged case, or -1. */
int    fc_check_index(int case_id);

#ifdef __cplusplus
}
#endif
#endif
