/*
 * meshdec.h - the SLAT mesh decoder's head (`SLatMeshDecoder` after the shared
 * transformer trunk): two SparseSubdivideBlock3d to 4x the voxel resolution,
 * the 101-channel output layer, streamed chunk by chunk into the sparse
 * FlexiCubes extraction (flexicubes.h), so the 256^3 level is never whole in
 * memory.
 *
 * Reference (sam-3d-objects @cf06676, TD = sam3d_objects/model/backbone/tdfy_dit/):
 *   TD/models/structured_latent_vae/decoder_mesh.py:17-83    SparseSubdivideBlock3d
 *   TD/models/structured_latent_vae/decoder_mesh.py:121-189  the head, fp16 torso, forward
 *   TD/modules/sparse/{norm,spatial}.py, conv/conv_spconv.py  GroupNorm32, subdivide, SubMConv3d
 * Spec: spec/decoders.md §4.4-4.6, §6.1, §6.5; stages/mesh_decode/README.md.
 *
 * Shape (C = trunk width, C1 = C/4, C2 = C/8, 32 groups; released 768/192/96):
 *   upsample.0 on x (N, C) at res:        h = SiLU(GN(x)); h, x subdivided to 8N at 2 res
 *                                          h = conv3(SiLU(GN(conv3(h)))) + skip1x1(x) (8N, C1)
 *   upsample.1 on that at 2 res:          the same to 64N at 4 res                  (64N, C2)
 *   out_layer: fp32 Linear(C2 -> 101) of the block output cast to fp32             (64N, 101)
 * Subdivided inputs are never materialised: a conv on subdivide(h) reads the
 * parent rows (meshdec_kern.h MDK_PARENT maps; on CUDA a conv over the parents
 * with rewritten weights, mdk_subconv_weight), and skip1x1(subdivide(x)) is
 * one row per parent added to its 8 children.
 *
 * The 64N level, streamed (the GroupNorm between its two convs needs the
 * statistics of all 64N rows first):
 *   pass 1, per chunk of voxels: conv3 #1 on the chunk's rows -> GroupNorm sums;
 *   pass 2, per chunk: conv3 #1 again on the chunk's voxels and their neighbour
 *   voxels (the halo conv3 #2 reads), GroupNorm + SiLU, conv3 #2 on the chunk's
 *   rows, + skip, out_layer, fc_accumulate.
 * Chunks are ranges of voxel rows (meshdec_plan), so the rows handed to
 * FlexiCubes come in ascending order (its CPU sums follow the reference's).
 *
 * Precision (ct = the compute dtype; F16 on the GPU by default, F32 with
 * --precision fp32 and on the CPU), as the reference's use_fp16 torso: convs
 * (3x3x3 and skip) in ct with fp32 accumulation and ct outputs; GroupNorm
 * statistics and normalisation in fp32/double, output in ct (the reference
 * rounds the GroupNorm output to fp16 and then SiLU's: here GroupNorm + SiLU is
 * one fp32 expression rounded once); the residual add rounded to ct; the block
 * output cast to fp32 and out_layer in fp32 (fp32 weights).
 */
#ifndef S3D_MESHDEC_H
#define S3D_MESHDEC_H

#include "arena.h"
#include "flexicubes.h"
#include "ops.h"
#include "slat_dec_net/slatdec.h"
#include "tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MDEC_GROUPS      32          /* SparseGroupNorm32(32, C) (decoder_mesh.py:32) */
#define MDEC_GN_EPS      1e-5f
#define MDEC_RESOLUTION  64          /* yaml `resolution` (not in the checkpoint) */
#define MDEC_SUB_ROWS    32768       /* rows per derived neighbour map / out_layer slice */
#define MDEC_CONV_SCRATCH ((size_t)64 << 20)   /* im2col room planned per conv (CUDA) */
/* Trunk tokens per attention group (slatdec_trunk.group_rows): 4x gs_decode's SLD_GROUP_ROWS,
 * 1/4 the group iterations; the region ~4x (~63 MB fp16 at 30k voxels), within the
 * subdivision phases' arena (mesh_decode has no 0.6 GB target). */
#define MDEC_GROUP_ROWS  8192

/* SparseSubdivideBlock3d(cin -> cout) */
struct meshdec_sub {
    int           cin, cout;
    struct tensor act_w, act_b;     /* (cin) F32: act_layers.0 */
    struct tensor conv1_w;          /* (cout, 3, 3, 3, cin) ct: out_layers.0.conv */
    struct tensor conv1_b;          /* (cout) ct */
    struct tensor gn_w, gn_b;       /* (cout) F32: out_layers.1 */
    struct tensor conv2_w;          /* (cout, 3, 3, 3, cout) ct: out_layers.3.conv */
    struct tensor conv2_b;          /* (cout) ct */
    struct tensor skip_w;           /* (cout, cin) ct: skip_connection.conv, read as spconv's
                                     * 1x1 path reads it (sparse_conv1_weight) */
    struct tensor skip_b;           /* (cout) ct */
};

struct meshdec_model {
    struct slatdec_trunk trunk;     /* input layer, APE, swin blocks (stages/slat_dec_net) */
    int                 C, C1, C2;  /* trunk width, after upsample.0, after upsample.1 */
    enum dtype          ct;         /* F16 or F32 */
    enum device         device;
    struct meshdec_sub  up[2];
    /* conv #1 of each subdivide block (on the subdivided input) as a conv over
     * the parents with rewritten weights (mdk_subconv_weight, built per request
     * in the activation arena): 8x less gathered and an 8x wider GEMM, opt-in
     * (env S3D_MESH_SUBCONV=parents at load) until a GPU run has timed and
     * checked it; the default is the 27 child taps through derived maps (the
     * reference's sums, bit for bit on the CPU). */
    bool                sub_parents;
    struct tensor       out_w;      /* (101, C2) F32: out_layer */
    struct tensor       out_b;      /* (101) F32 */
    struct arena        weights;
    /* the request's FlexiCubes state and voxel maps: their own arena, because
     * they must survive a re-reservation of the activation arena when the
     * extraction needs more than it holds (grown only when a request needs more) */
    struct arena        state;
};

/* Bind the head's tensors of an open checkpoint (a flat state dict,
 * slat_decoder_mesh.ckpt): sizes from the shapes; out_layer must have 101
 * outputs (vertex colours on). 0, or a negative s3d_err already logged. */
struct weights;
int  meshdec_bind(struct meshdec_model *m, struct weights *w, enum device dev, enum dtype ct);
/* After weights_upload of w: rewrite the skip weights as the (cout, cin)
 * matrices spconv's 1x1 path uses (ops_sparse.h, sparse_conv1_weight). */
void meshdec_bind_finish(struct meshdec_model *m, const struct weights *w);

/* Open path (slat_decoder_mesh.ckpt, a flat state dict), bind the trunk and
 * the head and upload them to dev (weights arena exactly sized; the trunk's
 * GEMMs and the head's convs in ct, out_layer F32). 0, or a negative s3d_err
 * already logged (not a mesh decoder, inconsistent shapes, no memory); on
 * failure nothing stays allocated. */
int  meshdec_load(struct meshdec_model *m, const char *path, enum device dev, enum dtype ct);
void meshdec_free(struct meshdec_model *m);    /* weights and state; NULL-safe */

/* Check the inputs of one request: coords (host I32 (N, 4), N >= 1, unique,
 * batch 0, x, y, z in [0, res)) and feats (host F32 (N, latent channels)).
 * 0, or S3D_ESHAPE with one line naming the input and a HINT in msg. */
int  meshdec_check_inputs(const struct meshdec_model *m, const struct tensor *coords,
                          const struct tensor *feats, int res, char *msg, size_t len);

/* Chunks of voxel rows for the 64N level: chunk k covers voxels [c0[k], c1[k])
 * and needs the conv outputs of the voxels list[off[k], off[k] + len[k]) (its
 * own, in order, then its neighbours outside it). Host memory (malloc), with
 * the voxel neighbour map it was made from. */
struct meshdec_plan {
    int64_t  n_vox;                 /* N */
    int32_t *nbr;                   /* (N, 27) voxel neighbour map (op_sparse_nbr) */
    int      n;                     /* chunks */
    int64_t *c0, *c1, *off, *len;   /* (n) each */
    int32_t *list;                  /* (sum len) voxel rows */
    int64_t  n_list;                /* sum len */
    int64_t  max_c, max_l;          /* the largest chunk and table, in voxels */
};

/* Plan chunks of at most cmax voxels whose tables hold at most max(2 cmax, 27)
 * voxels, for checked coords (host I32 (N, 4)). Ranges in row order; any row
 * order works, a spatially sorted one (the SS decoder's) gives small halos. */
void meshdec_plan_make(struct meshdec_plan *p, const struct tensor *coords, int64_t cmax);
void meshdec_plan_free(struct meshdec_plan *p);
/* The largest chunk (in voxels) whose buffers fit `budget` bytes, with tables
 * up to twice the chunk (>= 1). */
int64_t meshdec_chunk_voxels(const struct meshdec_model *m, size_t budget);

/* Optional host F32 copies of the head's activations (fixture names; rows of
 * the 64N level in cube-row order, assembled from the chunks). */
struct meshdec_taps {
    float *act0;        /* (N, C)     upsample.0.act_layers */
    float *conv01;      /* (8N, C1)   upsample.0.out_layers.0 */
    float *gn0;         /* (8N, C1)   upsample.0.out_layers.2 */
    float *conv02;      /* (8N, C1)   upsample.0.out_layers.3 */
    float *skip0;       /* (N, C1)    upsample.0.skip_connection, one row per parent */
    float *up0;         /* (8N, C1)   upsample.0 */
    float *act1;        /* (8N, C1)   upsample.1.act_layers */
    float *conv11;      /* (64N, C2)  upsample.1.out_layers.0 */
    float *gn1;         /* (64N, C2)  upsample.1.out_layers.2 */
    float *conv12;      /* (64N, C2)  upsample.1.out_layers.3 */
    float *skip1;       /* (8N, C2)   upsample.1.skip_connection, one row per parent */
    float *up1;         /* (64N, C2)  upsample.1 */
    float *out;         /* (64N, 101) out_layer; only its first out_rows rows when
                         * out_rows > 0 (the stage's keep_cubes) */
    int64_t out_rows;
};

/* The voxel set's neighbour maps: views into the state arena. */
struct meshdec_geom {
    int64_t       n;                /* N voxels */
    struct tensor nbr0;             /* (N, 27) I32 at res (the trunk's voxels) */
    struct tensor nbr1;             /* (8N, 27) I32 at 2 res */
    struct tensor loc;              /* (N) I32: voxel -> slot of the current chunk, else -1 */
    struct tensor list;             /* (n_list) I32: the plan's tables, on the device */
    const struct meshdec_plan *plan;
};

/* Bytes of `a` that meshdec_geom_build takes. */
size_t meshdec_geom_bytes(const struct meshdec_plan *p);
/* Put the maps and the plan's tables into a (on m's device). */
void   meshdec_geom_build(const struct meshdec_model *m, const struct op_ctx *ctx, struct arena *a,
                          const struct meshdec_plan *p, struct meshdec_geom *g);

/* Run the head on h0 (N, C) ct, the trunk's output - it must be the last
 * allocation in act, which the head overwrites and releases to below h0 - and
 * stream every cube row into fc (fc_init'ed on the same voxels, fc_accumulate
 * only). ctx NULL on the host; taps may be NULL. */
void   meshdec_head(const struct meshdec_model *m, const struct op_ctx *ctx, struct arena *act,
                    const struct meshdec_geom *g, struct tensor *h0, struct flexicubes *fc,
                    const struct meshdec_taps *taps);

// ----------------------------------------------------------------------------
// one request: decode (trunk + head into FlexiCubes), extract, download

struct meshdec_job {
    int                 res;        /* voxel resolution (64); cubes at 4 res */
    struct meshdec_geom g;          /* in m->state */
    struct flexicubes   fc;         /* in m->state */
    double              ms_geom, ms_trunk, ms_head, ms_extract;
    double              flops;      /* trunk + head convs/GEMMs (multiply-add = 2) */
};

/* Bytes of the activation arena meshdec_decode takes for plan p: the
 * high-water of a dry run of its allocations on a planning arena
 * (arena_plan_init; the largest of its phases: corner count, trunk, head).
 * meshdec_extract may want more (fc->need_scratch). */
size_t meshdec_act_bytes(const struct meshdec_model *m, const struct meshdec_plan *p);

/* Decode checked inputs at voxel resolution res with plan p (made from the same
 * coords; it must outlive the job): counts the cube corners, reserves
 * m->state, runs the trunk and the head, streaming into job->fc. act: an arena
 * on m's device with meshdec_act_bytes free, released to its mark on return.
 * 0, or S3D_ENOMEM (logged: the state arena could not be reserved). taps may
 * be NULL. */
int  meshdec_decode(struct meshdec_model *m, const struct op_ctx *ctx, struct arena *act,
                    const struct tensor *coords, const struct tensor *feats, int res,
                    const struct meshdec_plan *p, struct meshdec_job *job,
                    const struct slatdec_taps *trunk_taps, const struct meshdec_taps *taps);

/* fc_finish in act (from its mark): 0; S3D_ENOMEM when act is too small
 * (job->fc.need_scratch: re-reserve act that large, nothing else lost, and
 * call again); S3D_EINVAL (not logged; job->fc.cnt.n_faces holds the count)
 * past max_faces. The mesh then stays in act
 * until meshdec_job_end or act is reset. */
int  meshdec_extract(const struct meshdec_model *m, const struct op_ctx *ctx, struct arena *act,
                     struct meshdec_job *job, int64_t max_faces);

/* The mesh into host tensors: vertices (V, 3) F32, faces (F, 3) I32, colors
 * (V, 3) F32 (V = job->fc.cnt.n_vd, F = job->fc.cnt.n_faces). */
void meshdec_download(const struct meshdec_job *job, const struct op_ctx *ctx,
                      struct tensor *vertices, struct tensor *faces, struct tensor *colors);
void meshdec_job_end(struct meshdec_job *job);

#ifdef __cplusplus
}
#endif
#endif
