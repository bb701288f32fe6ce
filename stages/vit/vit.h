/*
 * vit.h - the DINOv2 vision transformer shared by the cond stage (4 towers of
 * ViT-L/14 with 4 registers) and the depth stage (MoGe's ViT-L/14 encoder, no
 * registers).
 *
 * Reference: .ref/dinov2 dinov2/models/vision_transformer.py
 *   prepare_tokens_with_masks (:214-233): patch embed (Conv2d k=p s=p), cls,
 *     + pos_embed, then the register tokens inserted after cls (no pos-embed);
 *   forward_features (:247-271): blocks, final norm; x_prenorm = residual stream;
 *   dinov2/layers/block.py:89-114 (Block), attention.py, layer_scale.py, mlp.py.
 *
 * Config comes from the weights (vit_detect): depth from the highest
 * blocks.N, dim from pos_embed, registers from register_tokens, patch size from
 * patch_embed.proj.weight, heads = dim / 64 (design.md: head size 64),
 * LayerScale from blocks.0.ls1.gamma. LayerNorm eps is 1e-6 everywhere.
 *
 * Precision (spec §6.7, the reference under fp16 autocast): GEMMs, attention and
 * GELU in gemm_dt (F16 on the GPU by default: inputs, weights and outputs
 * fp16, fp32 accumulation), residual stream, LayerNorm statistics, LayerScale,
 * cls/pos/register tokens in fp32. With gemm_dt F32 everything is fp32 (the CPU
 * path and --precision fp32).
 *
 * Memory: weights are views into the caller's weights arena (see vit_bind);
 * activations come from the caller's activation arena (vit_act_bytes sizes it).
 */
#ifndef S3D_VIT_H
#define S3D_VIT_H

#include "ckpt.h"
#include "ops.h"
#include "stage_blocks.h"
#include "tensor.h"
#include "weights.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VIT_MAX_DEPTH 48
#define VIT_MAX_TAPS  8
#define VIT_LN_EPS    1e-6f

struct vit_config {
    int  depth;    /* blocks (24 for ViT-L) */
    int  dim;      /* C (1024) */
    int  heads;    /* C / 64 */
    int  mlp;      /* MLP hidden width (4096) */
    int  patch;    /* p (14) */
    int  in_ch;    /* image channels (3) */
    int  n_reg;    /* register tokens R (4, or 0 for MoGe) */
    int  grid;     /* side of the stored pos-embed grid (37 at 518) */
    bool ls;       /* LayerScale present (ls1.gamma, ls2.gamma) */
};

struct vit_block {
    struct tensor norm1_w, norm1_b;   /* (C) F32 */
    struct tensor qkv_w;              /* (3C, C) gemm_dt */
    struct tensor qkv_b;              /* (3C) gemm_dt */
    struct tensor proj_w;             /* (C, C) gemm_dt */
    struct tensor proj_b;             /* (C) gemm_dt */
    struct tensor ls1;                /* (C) F32; unbound when !cfg.ls */
    struct tensor norm2_w, norm2_b;   /* (C) F32 */
    struct tensor fc1_w;              /* (M, C) gemm_dt */
    struct tensor fc1_b;              /* (M) gemm_dt */
    struct tensor fc2_w;              /* (C, M) gemm_dt */
    struct tensor fc2_b;              /* (C) gemm_dt */
    struct tensor ls2;                /* (C) F32; unbound when !cfg.ls */
};

struct vit {
    struct vit_config cfg;
    enum dtype        gemm_dt;        /* F16 (GPU default) or F32 */
    struct tensor     patch_w;        /* (C, in_ch*p*p): the (C, in_ch, p, p) conv weight, gemm_dt */
    struct tensor     patch_b;        /* (C) gemm_dt */
    struct tensor     cls_token;      /* (1, 1, C) F32 */
    struct tensor     reg_tokens;     /* (1, R, C) F32; unbound when R == 0 */
    struct tensor     pos_embed;      /* (1, 1 + grid^2, C) F32 */
    struct tensor     mask_token;     /* (1, C) F32: bound (strict checkpoint), unused at inference */
    struct tensor     norm_w, norm_b; /* (C) F32: final norm */
    struct vit_block  blocks[VIT_MAX_DEPTH];
    /* where the blocks come from: NULL, blocks[] above (vit_bind); else block i is
     * stage_blocks_get(blk, ctx, blk0 + i): a model that keeps the blocks of its
     * towers together (resident or streamed, common/stage_blocks.h; the cond stage) */
    const struct stage_blocks *blk;
    int               blk0;
};

/* Detect the config of the ViT stored under prefix (e.g.
 * "_base_models.condition_embedder.module_list.0.backbone.") in c. Returns 0,
 * or S3D_ESHAPE when a tensor the ViT needs is missing or inconsistent (logged
 * once, naming the checkpoint, the tensor and a HINT). */
int  vit_detect(struct vit_config *cfg, const struct weights *w, const char *prefix);

/* Declare every tensor of the ViT under prefix to w (the first phase of
 * weights binding): GEMM weights and biases as gemm_dt, the rest F32. m->cfg must
 * be set (vit_detect). The views in m become valid after weights_upload.
 * Returns 0 or the weights_bind error (already logged). */
int  vit_bind(struct vit *m, struct weights *w, const char *prefix, enum dtype gemm_dt);
/* vit_bind without the blocks (a model that binds them apart, after all its
 * other tensors, with vit_bind_block: the stage_blocks.h layout). */
int  vit_bind_head(struct vit *m, struct weights *w, const char *prefix, enum dtype gemm_dt);

/* Declare block i (prefix + "blocks.<i>."): a DINOv2 Block, or with ls false a
 * timm Block without LayerScale (PointPatchEmbed); C width, M MLP hidden.
 * ls1/ls2 stay unbound when ls is false. Returns 0 or S3D_ESHAPE (logged). */
int  vit_bind_block(struct vit_block *L, struct weights *w, const char *prefix, int i, int64_t C,
                    int64_t M, enum dtype gemm_dt, bool ls);

/* Tokens T for a ph x pw patch grid: 1 + R + ph*pw. */
int64_t vit_tokens(const struct vit_config *cfg, int64_t ph, int64_t pw);

/* Activation bytes vit_forward takes from its arena for B images of ph x pw
 * patches (the returned residual stream included): the high-water mark of
 * vit_forward run in plan mode (on a planning arena, arena_plan_init: every
 * buffer taken, no op run) on the model's device. */
size_t vit_act_bytes(const struct vit *m, int64_t B, int64_t ph, int64_t pw);

/* Tap the output of chosen blocks through the final norm (MoGe's
 * get_intermediate_layers(n=4, norm=True): blocks 20..23). */
struct vit_taps {
    int           n;                     /* 0..VIT_MAX_TAPS */
    int           block[VIT_MAX_TAPS];   /* 0-based block index, ascending or not */
    struct tensor out[VIT_MAX_TAPS];     /* (B, T, C) contiguous, any float dtype, model's device */
};

/* Run the ViT on img (B, in_ch, ph*p, pw*p) F32 contiguous (already
 * normalised), on the device the weights live on (ctx may be NULL on the host).
 * pos_patch: NULL adds the stored pos-embed (requires ph == pw == grid), else a
 * caller-interpolated patch pos-embed (ph*pw, C) F32 (row-major over the grid;
 * the cls row is always pos_embed[0]). taps may be NULL.
 * Returns the residual stream after the last block, x (B, T, C) F32
 * (DINOv2's x_prenorm): a view into act valid until act is reset or released
 * below its mark at entry. Everything else taken from act is released. */
struct tensor vit_forward(const struct vit *m, const struct op_ctx *ctx, struct arena *act,
                          const struct tensor *img, const struct tensor *pos_patch,
                          const struct vit_taps *taps);

/* The final norm (LayerNorm, affine, eps 1e-6) of x (B, T, C) into y, any float
 * dtype, contiguous. drop_registers: y is (B, T - R, C) holding the normed cls
 * and patch rows (x_norm_clstoken + x_norm_patchtokens, the SS Dino output);
 * else y is (B, T, C). */
void vit_final_norm(const struct vit *m, const struct op_ctx *ctx, struct tensor *y,
                    const struct tensor *x, bool drop_registers);

#ifdef __cplusplus
}
#endif
#endif
