/*
 * moge.h - MoGe v1 (MG:moge/model/v1.py at a8c3734): the point-map network of
 * the depth stage. Library code (no main.c here) so tests link it; the
 * executable is stages/depth/main.c.
 *
 * Forward (spec conditioning.md §4.2-4.5):
 *   image (3, H, W) U8 or F32 in [0, 1]
 *   -> AA bicubic to (rh, rw) (token budget num_tokens), (x - mean) / std,
 *      AA bilinear to (rh//14*14, rw//14*14)              moge_prepare
 *   -> DINOv2 (stages/vit) with the (ph+0.1)/37 bicubic pos-embed, the last
 *      n_feat blocks through the final norm
 *   -> head: projects (1x1), 3 x [UV, ConvT 2x2, 3x3 replicate, res blocks],
 *      bilinear to (rh, rw), UV, two output blocks   -> raw (4, rh, rw) F32
 *   -> moge_postprocess (host): bilinear to (H, W), exp remap, mask > 0.5,
 *      focal/shift (stages/depth_net/lmsolve.h), intrinsics, z += shift, camera flip,
 *      NaN where invalid.
 *
 * Config from the weights: ViT by vit_detect under "backbone.", n_feat from
 * head.projects.N, widths from shapes, GroupNorm groups hidden/32 (MoGe's
 * 'group_norm'). num_tokens is not in the state dict: moge_config_num_tokens
 * reads it from the checkpoint's model_config (num_tokens_range or the legacy
 * trained_area_range, at resolution level 9): 2551 for Ruicheng/moge-vitl.
 *
 * The interpolated pos-embed depends only on the patch grid; moge_forward
 * caches it per grid (on the model's device) until the grid changes or
 * moge_release.
 *
 * Precision: act_dt is the head's activation dtype (F16 on the GPU by
 * default: autocast; F32 on the CPU and with --precision fp32); GroupNorm
 * statistics fp32; outputs fp32.
 */
#ifndef S3D_MOGE_H
#define S3D_MOGE_H

#include "arena.h"
#include "ops_conv.h"
#include "ops_image.h"
#include "stage_blocks.h"
#include "vit/vit.h"
#include "weights.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOGE_MAX_FEAT   8
#define MOGE_UP_STAGES  3
#define MOGE_MAX_RES    4
#define MOGE_NUM_TOKENS 2551   /* int(1275 + 9/9 * (2551 - 1275)), moge-vitl */

struct moge_resblock {
    int           hidden, groups2;        /* conv1 width; GroupNorm(hidden/32) */
    struct tensor gn1_w, gn1_b;           /* (C) F32, GroupNorm(1, C) */
    struct tensor conv1_w, conv1_b;       /* (hidden, C, 3, 3) act_dt, (hidden) F32 */
    struct tensor gn2_w, gn2_b;           /* (hidden) F32 */
    struct tensor conv2_w, conv2_b;       /* (C, hidden, 3, 3) act_dt, (C) F32 */
};

struct moge_up {
    int                  cin, cout;       /* cin excludes the 2 UV channels */
    struct tensor        convt_w, convt_b;/* (cin+2, cout, 2, 2) act_dt, (cout) F32 */
    struct tensor        conv_w, conv_b;  /* (cout, cout, 3, 3) act_dt, (cout) F32 */
    int                  n_res;
    struct moge_resblock res[MOGE_MAX_RES];
};

struct moge_out {
    int           cout;                   /* 3 (points) or 1 (mask) */
    struct tensor conv_w, conv_b;         /* (last, C+2, 3, 3) act_dt, (last) F32 */
    struct tensor lin_w, lin_b;           /* (cout, last, 1, 1) act_dt, (cout) F32 */
};

struct moge_model {
    struct vit     vit;                   /* backbone */
    enum dtype     act_dt;
    int            n_feat;                /* intermediate layers taken (4) */
    int            dim_proj;              /* 512 */
    struct tensor  proj_w[MOGE_MAX_FEAT]; /* (dim_proj, C, 1, 1) act_dt: used as a (P, C) matrix */
    struct tensor  proj_b[MOGE_MAX_FEAT]; /* (dim_proj) F32 */
    struct moge_up up[MOGE_UP_STAGES];
    struct moge_out out[2];
    struct tensor  image_mean, image_std; /* (1, 3, 1, 1) F32 */
    int            num_tokens;            /* 2551 */
    /* pos-embed cache (moge_forward): the interpolated patch rows for one grid */
    int            pos_ph, pos_pw;        /* grid of pos_cache; 0 = empty */
    struct tensor  pos_cache;             /* (pos_ph * pos_pw, C) F32 on the weights' device */
    struct arena   pos_arena;             /* owns pos_cache (device or host) */
    struct arena   weights;               /* every bound tensor (but the streamed blocks) */
    struct stage_blocks blk;              /* the encoder's blocks, bound last (moge_bind):
                                           * resident in weights, or streamed */
};

/* Open path ("FILE" = FILE:model, MoGe's container, or "FILE:KEY"), detect the
 * config, bind every tensor, read the token budget from the checkpoint's
 * model_config (moge_config_num_tokens; MOGE_NUM_TOKENS with a warning when
 * it has none) and upload to dev (DEVICE_CUDA or DEVICE_HOST) with the head's
 * weights in act_dt (F16 or F32); stream_slots 0: all resident; k >= 2: the
 * encoder's blocks stay in (pinned) host memory and stream through k device
 * slots (stage_blocks.h; the same output). Returns 0, or a negative s3d_err
 * already logged; on failure nothing stays allocated. */
int  moge_load(struct moge_model *m, const char *path, enum device dev, enum dtype act_dt,
               int stream_slots);
/* The weights and the pos-embed cache. NULL-safe, idempotent. */
void moge_free(struct moge_model *m);

/* Detect the config and declare every tensor (phase 1 of weights binding,
 * inside moge_load; w opened on "model.pt:model"), the encoder's blocks last
 * from bind *first on (stage_blocks.h). act_dt: F16 or F32. Returns 0 or an
 * error (logged). */
int moge_bind(struct moge_model *m, struct weights *w, enum dtype act_dt, int *first);

/* Free what moge_forward cached (the pos-embed); the weights are the caller's.
 * NULL-safe, idempotent. */
void moge_release(struct moge_model *m);

/* The token budget MoGeModel.infer uses by default (resolution_level 9):
 * int(lo + 9/9 * (hi - lo)) = hi of model_config's num_tokens_range, or of
 * trained_area_range // 196 (the legacy key, MG:v1.py:166-171). path: the
 * checkpoint FILE (a ":KEY" suffix is ignored). Returns 0 with *num_tokens
 * set; S3D_ENOTFOUND when the file has no model_config with either key (a
 * safetensors file, a bare state dict: the caller keeps MOGE_NUM_TOKENS);
 * S3D_EFORMAT / S3D_EIO when the file cannot be read (logged). */
int moge_config_num_tokens(const char *path, int *num_tokens);

/* Sizes for one image of H x W: the resized (rh, rw), the patch grid. */
struct moge_geom {
    int H, W;           /* input */
    int rh, rw;         /* token-budget resize */
    int ph, pw;         /* patch grid: rh / 14, rw / 14 */
};
void moge_geometry(const struct moge_model *m, int H, int W, struct moge_geom *g);

/* Activation bytes moge_forward takes from its arena for geometry g: the
 * high-water mark of moge_forward in plan mode (every buffer and the CUDA ops'
 * scratch), plus OP_CONV_WS_HEADROOM on CUDA for cuDNN's workspace. The input
 * image is the caller's, the pos-embed cache the model's. */
size_t moge_act_bytes(const struct moge_model *m, const struct moge_geom *g);

/* Run the network on img (3, H, W) U8 or F32 on the model's device (U8 is
 * read as (float)(v / 255.0), the pipeline's image_to_float).
 * raw: (4, rh, rw) F32 host buffer the caller owns: channels 0-2 the point
 * head, 3 the mask head, before the output resize. dump (optional, may be
 * NULL): called with every named intermediate (names as in
 * tools/ref/dump_moge.py) for parity tests; the tensor is valid only during
 * the call. Updates m's pos-embed cache. Returns 0, or S3D_ENOMEM when the
 * cache cannot be allocated (logged). Plan mode (act a planning arena,
 * arena_plan_init): takes every buffer, runs no op, reads neither img nor m's
 * cache, writes nothing (raw may be NULL); moge_act_bytes uses it. */
typedef void (*moge_dump_fn)(void *user, const char *name, const struct tensor *t);
int moge_forward(struct moge_model *m, const struct op_ctx *ctx, struct arena *act,
                 const struct tensor *img, const struct moge_geom *g, float *raw,
                 moge_dump_fn dump, void *user);

/* Outputs of the depth stage (host, caller-owned buffers). */
struct moge_result {
    float   *pointmap;      /* (H, W, 3) F32: camera flip (-x, -y, z), NaN where invalid */
    uint8_t *mask;          /* (H, W) 0/1 */
    float    intrinsics[9]; /* (3, 3) normalised, row-major */
    float    focal, shift;
    float   *points_moge;   /* optional (H, W, 3): MoGe's own points (+inf invalid), or NULL */
};

/* Post-process the raw head output (spec §4.5, §3.1-3.2). lm: solver options
 * (lm_opts_default() is scipy >= 1.16). */
struct lm_opts;
void moge_postprocess(const struct moge_geom *g, const float *raw, const struct lm_opts *lm,
                      struct moge_result *r);

/* torch.linspace(start, end, n)[i] in fp32 (CPU/CUDA kernel formula). */
float moge_linspace(double start, double end, int n, int i);

#ifdef __cplusplus
}
#endif
#endif
