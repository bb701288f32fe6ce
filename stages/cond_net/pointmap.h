/*
 * pointmap.h - PointPatchEmbed, the SS condition's point-map embedder
 * (sam-3d-objects sam3d_objects/model/backbone/dit/embedder/pointmap.py @cf06676;
 * spec/conditioning.md §7).
 *
 *   xyz   = nearest-resize(pointmap, S)                          (:245-248)
 *   valid = all(isfinite(xyz)); x = point_proj(xyz) (3 -> D), invalid -> invalid_xyz_token
 *   windows of P x P pixels: [cls, 64 pixels] + pos_embed_window  (:327-346)
 *   timm Block(D, 16 heads, mlp_ratio 2, LN eps 1e-6), attention within a window
 *   out[w] = token 0 of window w + pos_embed[:, :, wy, wx]           (:352-361)
 * Remap "linear" (the released config) is the identity.
 *
 * Only token 0 of each window leaves the module, so the LAST block computes
 * attention for query 0 only and its proj/MLP on one row per window: the same
 * numbers for the rows that are used, a fraction of the work.
 * Windows run in chunks of PPE_CHUNK to bound activation memory.
 *
 * Precision as the reference under fp16 autocast: point_proj, qkv, attention,
 * proj, MLP in gemm_dt (xyz rounded to fp16 before the projection); token
 * stream, LayerNorm and parameters in fp32. Output F32.
 */
#ifndef S3D_COND_POINTMAP_H
#define S3D_COND_POINTMAP_H

#include "ckpt.h"
#include "ops.h"
#include "vit/vit.h"
#include "weights.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PPE_MAX_DEPTH 4
#define PPE_HEADS     16      /* fixed in pointmap.py:211 */
#define PPE_CHUNK     256     /* windows per chunk */
#define PPE_LN_EPS    1e-6f


struct ppe {
    int              dim;             /* D (512) */
    int              patch;           /* P (8) */
    int              nwin;            /* windows per side, S / P (32) */
    int              size;            /* S, the resized map side (256) */
    int              mlp;             /* M (1024) */
    int              depth;           /* blocks (1) */
    enum dtype       gemm_dt;
    struct tensor    point_proj_w;    /* (D, 3) F32 (rounded to fp16 in the kernel when gemm_dt is F16) */
    struct tensor    point_proj_b;    /* (D) F32 */
    struct tensor    invalid_token;   /* (D) F32 */
    struct tensor    pos_embed;       /* (1, D, nwin, nwin) F32 */
    struct tensor    pos_window;      /* (1, 1 + P*P, D) F32 */
    struct tensor    cls_token;       /* (1, 1, D) F32 */
    struct vit_block blocks[PPE_MAX_DEPTH];   /* timm Blocks: ls1/ls2 unbound */
};

/* Config of the PointPatchEmbed under prefix (e.g.
 * "_base_models.condition_embedder.module_list.2."): D from point_proj, P from
 * pos_embed_window, windows from pos_embed, depth from blocks.N. Returns 0 or
 * S3D_ESHAPE (logged). */
int  ppe_detect(struct ppe *m, const struct weights *w, const char *prefix);
/* Declare its tensors to w (see vit_bind). Returns 0 or S3D_ESHAPE (logged). */
int  ppe_bind(struct ppe *m, struct weights *w, const char *prefix, enum dtype gemm_dt);
/* out (B, nwin^2, D) F32 = PointPatchEmbed(pm) for pm (B, 3, Hin, Win) F32
 * (NaN = invalid), everything on the weights' device; scratch from act,
 * released before returning. Plan mode (act a planning arena,
 * arena_plan_init): takes every buffer, runs no op, reads nothing. */
void ppe_forward(const struct ppe *m, const struct op_ctx *ctx, struct arena *act,
                 struct tensor *out, const struct tensor *pm);

/* --- the two non-op steps, CPU (pointmap.c) and CUDA (pointmap_cuda.cu) --- */
/* tok (nc, 1 + P*P, D) F32 for global windows [g0, g0 + nc) of the B * nwin^2
 * windows of xyz (B, 3, S, S) F32. half: emulate the fp16 point_proj. */
void ppe_tokens_cpu(const struct ppe *m, struct tensor *tok, const struct tensor *xyz, int64_t g0,
                    bool half);
void ppe_tokens_cuda(const struct ppe *m, const struct op_ctx *ctx, struct tensor *tok,
                     const struct tensor *xyz, int64_t g0, bool half);
/* out rows [g0, g0 + nc) (out (B*nwin^2, D) F32) = x0 (nc, D) F32 + pos_embed at each window. */
void ppe_finish_cpu(const struct ppe *m, struct tensor *out, const struct tensor *x0, int64_t g0);
void ppe_finish_cuda(const struct ppe *m, const struct op_ctx *ctx, struct tensor *out,
                     const struct tensor *x0, int64_t g0);

#ifdef __cplusplus
}
#endif
#endif
