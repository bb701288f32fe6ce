/*
 * cond.h - the condition fuser (EmbedderFuser) of SAM 3D Objects, SS and SLAT
 * variants, built from the checkpoint's `_base_models.condition_embedder.*`.
 *
 * Reference (sam-3d-objects @cf06676, sam3d_objects/model/backbone/dit/embedder/):
 *   embedder_fuser.py:203-238  per embedder, per kwarg: module(x) -> projection
 *                              net -> += idx_emb[group] -> concat over tokens
 *   dino.py:70-113             resize (identity at input_size), mask -> 3 channels,
 *                              ImageNet normalisation, DINOv2; SS: final-normed cls +
 *                              patches; SLAT (prenorm_features): F.layer_norm of the
 *                              pre-norm stream, all tokens, no affine, eps 1e-5
 *   pointmap.py                PointPatchEmbed (pointmap.h)
 *   layers/llama3/ff.py        projection net: LayerNorm(eps 1e-5) + w2(silu(w1 x) * w3 x)
 *
 * Token layout (spec §8.3): SS [image, rgb_image | mask, rgb_image_mask |
 * pointmap, rgb_pointmap] = 4 x (1 + N) + 2 x W rows; SLAT [image, rgb_image |
 * mask, rgb_image_mask] = 4 x (1 + R + N). idx_emb row 0 for the cropped inputs,
 * row 1 for the full ones. The two inputs of one embedder run as one batch of 2.
 *
 * Precision: gemm_dt F16 (GPU default, the reference's fp16 autocast; the
 * output is F16 as in the reference, §8.8) or F32 (CPU, --precision fp32; output
 * F32).
 */
#ifndef S3D_COND_MODEL_H
#define S3D_COND_MODEL_H

#include "arena.h"
#include "ops.h"
#include "pointmap.h"
#include "stage_blocks.h"
#include "vit/vit.h"
#include "weights.h"

#ifdef __cplusplus
extern "C" {
#endif

#define COND_PREFIX  "_base_models.condition_embedder."
#define COND_LN_EPS  1e-5f       /* nn.LayerNorm default (projection nets, prenorm LN) */

enum cond_variant { COND_SS, COND_SLAT };

/* One projection net: Sequential(LayerNorm(d_in), FeedForward(d_in -> hidden -> C)). */
struct cond_proj {
    int           d_in;          /* 1024 (DINO) or 512 (point map) */
    int           hidden;        /* 2816 */
    struct tensor ln_w, ln_b;    /* (d_in) F32 */
    struct tensor w1;            /* (hidden, d_in) gemm_dt */
    struct tensor w3;            /* (hidden, d_in) gemm_dt */
    struct tensor w2;            /* (C, hidden) gemm_dt */
};

struct cond_model {
    enum cond_variant variant;    /* SS when module_list.2 exists */
    enum dtype        gemm_dt;
    enum device       device;
    int               input_size; /* DINO input side S = patch * grid (518) */
    int               dim;        /* C, the fused width (1024) */
    int64_t           n_tokens;   /* rows of the output (7528 SS, 5496 SLAT) */
    struct vit        dino[2];    /* module_list.0 (image), module_list.1 (mask) */
    struct ppe        ppe;        /* module_list.2, SS only */
    struct cond_proj  proj[3];    /* projection_nets.{0,1,2} */
    struct tensor     idx_emb;    /* (3, C) F32 */
    struct arena      weights;    /* the bound tensors but the blocks when streamed */
    /* both towers' transformer blocks, tower e's block i at e * depth + i (bound after
     * every other tensor: stage_blocks.h), resident in `weights` or streamed */
    struct vit_block  blocks[2 * VIT_MAX_DEPTH];
    struct stage_blocks blk;
};

/* Open path ("FILE" or "FILE:KEY"; a bare file means FILE:state_dict), detect
 * the variant and config, bind and upload every tensor of the fuser to dev
 * (DEVICE_CUDA or DEVICE_HOST) with GEMM weights in gemm_dt; stream_slots 0:
 * every tensor resident; k >= 2: the two DINO towers' 48 blocks stay in
 * (pinned) host memory and stream through k device slots (stage_blocks.h; the
 * same output bit for bit). Returns 0, or a negative s3d_err already logged
 * (wrong checkpoint, missing tensor, ...). On failure nothing stays allocated. */
int  cond_load(struct cond_model *m, const char *path, enum device dev, enum dtype gemm_dt,
               int stream_slots);
void cond_free(struct cond_model *m);    /* NULL-safe, idempotent */

/* Bytes cond_forward takes from its activation arena (on the model's device):
 * the high-water mark of cond_forward run in plan mode. */
size_t cond_act_bytes(const struct cond_model *m);

/* The inputs of one request: host tensors, F32, contiguous, batch 1, as the
 * preprocessors produce them (spec §5.5; 518 x 518 in the release). Any H, W:
 * like the reference, the DINO towers resize each input to input_size with
 * F.interpolate(bilinear, align_corners=False) (dino.py:70-76) and the point-map
 * embedder resizes to its own size with nearest (pointmap.py:245-248); inputs
 * already at those sizes are used as they are (the identity).
 * pointmap/rgb_pointmap only for SS. */
struct cond_inputs {
    const struct tensor *image, *rgb_image;          /* (1, 3, H, W) */
    const struct tensor *mask, *rgb_image_mask;      /* (1, 1, H, W) */
    const struct tensor *pointmap, *rgb_pointmap;    /* (1, 3, H, W), NaN = invalid */
};

/* Check the inputs' presence, dtypes and shapes (F32, contiguous, (1, c, H, W)
 * with c as above, H, W >= 1); 0 or S3D_ESHAPE / S3D_ENOTFOUND with one logged
 * line naming the input and the expected shape. */
int  cond_check_inputs(const struct cond_model *m, const struct cond_inputs *in);

/* out (1, n_tokens, C) host tensor of dtype gemm_dt = the fused condition.
 * Uploads the inputs into act, runs, downloads, and releases act to its mark
 * at entry. Inputs must have passed cond_check_inputs. Plan mode (act a
 * planning arena, arena_plan_init): takes every buffer the run takes, runs no
 * op and reads no input (cond_act_bytes). */
void cond_forward(const struct cond_model *m, const struct op_ctx *ctx, struct arena *act,
                  const struct cond_inputs *in, struct tensor *out);

#ifdef __cplusplus
}
#endif
#endif
