/*
 * flow_block.h - what the two flow transformers share (stages/ss_flow_net,
 * stages/slat_flow_net): the weights of one modulated cross-attention
 * transformer block, the timestep embedder, how both are named in the
 * official checkpoints, the block sizes read from them, and the check of the
 * condition input. The forwards stay in each net (the SS flow runs the block
 * as two streams over one residual, the SLAT flow over sparse tokens).
 *
 * Reference (sam-3d-objects @cf06676, sam3d_objects/model/backbone/tdfy_dit/):
 *   modules/transformer/modulated.py:174-341          MoT block (SS flow, per stream)
 *   modules/sparse/transformer/modulated.py:90-186    sparse block (SLAT flow)
 *   models/timestep_embedder.py:7-59                  TimestepEmbedder
 *
 * Names: the SS flow's MoT block keeps one copy per stream with the stream's
 * name right after each module's name ("blocks.3.self_attn.to_qkv.shape.weight",
 * "blocks.3.cross_attn.shape.to_q.weight", "blocks.3.mlp.shape.mlp.0.weight");
 * the SLAT flow's block has none ("blocks.3.self_attn.to_qkv.weight"). The
 * functions below take that suffix: ".shape", ".6drotation_normalized" or "".
 */
#ifndef S3D_FLOW_BLOCK_H
#define S3D_FLOW_BLOCK_H

#include "arena.h"
#include "ops.h"
#include "stage_blocks.h"
#include "tensor.h"
#include "weights.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FLOW_FREQ_DIM 256           /* TimestepEmbedder frequency_embedding_size */

/* One block's attention and MLP weights (C width, H heads, M MLP width, Cc
 * condition width); the adaLN modulation is the net's (shared by the SS
 * flow's two streams). */
struct flow_block_w {
    struct tensor norm2_w, norm2_b; /* (C) F32 */
    struct tensor qkv_w;            /* (3C, C) gemm_dt */
    struct tensor qkv_b;            /* (3C) gemm_dt */
    struct tensor q_gamma, k_gamma; /* (H, 64) F32 */
    struct tensor sa_out_w;         /* (C, C) gemm_dt */
    struct tensor sa_out_b;         /* (C) gemm_dt */
    struct tensor cq_w;             /* (C, C) gemm_dt */
    struct tensor cq_b;             /* (C) gemm_dt */
    struct tensor ckv_w;            /* (2C, Cc) gemm_dt */
    struct tensor ckv_b;            /* (2C) gemm_dt */
    struct tensor co_w;             /* (C, C) gemm_dt */
    struct tensor co_b;             /* (C) gemm_dt */
    struct tensor fc1_w;            /* (M, C) gemm_dt */
    struct tensor fc1_b;            /* (M) gemm_dt */
    struct tensor fc2_w;            /* (C, M) gemm_dt */
    struct tensor fc2_b;            /* (C) gemm_dt */
};

/* Timestep embedder: Linear(256, C) -> SiLU -> Linear(C, C). */
struct flow_temb {
    struct tensor w0;               /* (C, 256) gemm_dt */
    struct tensor b0;               /* (C) gemm_dt */
    struct tensor w2;               /* (C, C) gemm_dt */
    struct tensor b2;               /* (C) gemm_dt */
};

/* Bind block i's tensors (names with suffix sfx, see above): norms and RMS
 * gammas F32, the rest gemm_dt, of the sizes C, H, M, Cc. 0, or nonzero when
 * a tensor is missing or mis-shaped (weights_bind_as logged it). */
int  flow_block_bind(struct flow_block_w *b, struct weights *w, int i, const char *sfx,
                     int64_t C, int64_t H, int64_t M, int64_t Cc, enum dtype gd);

/* Bind the TimestepEmbedder `name` ("t_embedder", "d_embedder") of width C
 * in gd. 0, or nonzero as flow_block_bind. */
int  flow_temb_bind(struct flow_temb *e, struct weights *w, const char *name, int64_t C,
                    enum dtype gd);

/* How a flow net names itself in its load errors. */
struct flow_names {
    const char *prefix;             /* the tensors' prefix in the checkpoint */
    const char *who;                /* "sam3d-ss-flow", "the SLAT flow" */
    const char *file;               /* the official checkpoint: "ss_generator.ckpt" */
};

/* Log "PATH: no <prefix><what> (HINT: <who> reads the official <file>; `sam3d
 * inspect PATH` lists its tensors)" for a tensor `what` that w lacks; returns
 * S3D_ENOTFOUND. */
int  flow_missing(const struct weights *w, const struct flow_names *n, const char *what);

/* The sizes every block shares, read from the tensor shapes (block names with
 * suffix sfx): *dim C from t_embedder.mlp.0.weight (C, 256); *depth, the
 * blocks N with blocks.N.adaLN_modulation.1.weight (at most max_depth); *heads
 * H from q_rms_norm gamma (H, 64), H * 64 == C; *mlp M from mlp.0.weight
 * (M, C); *cond_dim Cc from cross_attn to_kv.weight (2C, Cc). 0, or
 * S3D_ENOTFOUND (flow_missing logged the tensor) or S3D_ESHAPE (logged: the
 * shapes disagree, the checkpoint is damaged or not n->file). */
int  flow_dims_detect(const struct weights *w, const struct flow_names *n, const char *sfx,
                      int max_depth, int *dim, int *depth, int *heads, int *mlp, int *cond_dim);

/* e = mlp(freq(v)) of a TimestepEmbedder (timestep_embedder.py:29-59): freqs
 * exp(-ln(10000) k / 128) in fp32, [cos | sin] of v * freqs in fp32, uploaded
 * into tf (1, 256), then Linear -> SiLU into e1 (1, C) -> Linear into e
 * (1, C); all three on ctx's device in the embedder's dtype. */
void flow_temb_eval(const struct op_ctx *ctx, const struct flow_temb *E, float v,
                    struct tensor *tf, struct tensor *e1, struct tensor *e);

/* The end of a flow net's load line: "<MB> MB of <dtype> weights on <cpu|cuda>", and
 * " besides the streamed blocks" when blk streams them (stage_blocks.h). Returns buf. */
const char *flow_weights_str(char *buf, size_t n, const struct arena *weights, enum dtype dt,
                             enum device dev, const struct stage_blocks *blk);
/* A flow net's binding of its checkpoint: read the sizes (model config), bind
 * every tensor, the blocks last; *first = the first block bind, *n_blocks. */
typedef int (*flow_bind_fn)(void *model, struct weights *w, int *first, int *n_blocks);
/* Open a flow checkpoint into *w (a bare official .ckpt means its state_dict;
 * "FILE:KEY" as weights_open_key takes it) with tensor names under prefix, in
 * gemm_dt (F16 or F32); bind(model, ...); then load binds [0, first) into
 * *weights on dev and the blocks (each `stride` bytes apart from `blocks`)
 * resident or streamed through `slots` device slots (stage_blocks_load).
 * 0 with w open (the caller logs, then weights_close), or a negative s3d_err
 * (logged) with w closed and nothing allocated. */
int flow_load_weights(struct weights *w, const char *path, const char *prefix,
                      enum dtype gemm_dt, flow_bind_fn bind, void *model,
                      struct stage_blocks *blk, struct arena *weights, enum device dev,
                      void *blocks, size_t stride, int slots);
/* What every flow net's loading has alike, given its model struct MODEL (with
 * cfg.depth, gemm_dt, device, blk, weights, blocks[]), its BLOCK struct and its
 * static detect(cfg, w) / bind_all(m, w, first):
 * FLOW_BIND_FN(PFX, MODEL, BLOCK) defines static PFX##_bind, its flow_bind_fn
 * (the sizes, then every tensor, the blocks last), and checks that a block is
 * an array of tensors (stage_blocks.h); FLOW_MODEL_LOAD(m, w, path, prefix,
 * bind, gemm_dt, dev, slots) zeroes *m, sets its dtype and device and runs
 * flow_load_weights into it (0 with w open, or the error). */
#define FLOW_BIND_FN(PFX, MODEL, BLOCK)                                                    \
    _Static_assert(sizeof(BLOCK) % sizeof(struct tensor) == 0,                             \
                   "a block is an array of tensors (stage_blocks.h)");                     \
    static int PFX##_bind(void *model, struct weights *w, int *first, int *n_blocks)       \
    {                                                                                      \
        MODEL *m_ = model;                                                                 \
        int rc_ = detect(&m_->cfg, w);                                                     \
                                                                                           \
        *n_blocks = m_->cfg.depth;                                                         \
        return rc_ ? rc_ : bind_all(m_, w, first);                                         \
    }
#define FLOW_MODEL_LOAD(m, w, path, prefix, bind, gemm_dt, dev, slots)                     \
    (memset((m), 0, sizeof(*(m))), (m)->gemm_dt = (gemm_dt), (m)->device = (dev),          \
     flow_load_weights((w), (path), (prefix), (gemm_dt), (bind), (m), &(m)->blk,           \
                       &(m)->weights, (dev), (m)->blocks, sizeof((m)->blocks[0]), (slots)))

/* Free a flow net's weights: its streamed blocks (stage_blocks_free) and its
 * weights arena. */
void flow_weights_free(struct stage_blocks *blk, struct arena *weights);

/* Check the condition input `name` of stage `stage`: F16 or F32 (1, N >= 1,
 * cond_dim), contiguous, on the host. 0, or S3D_ENOTFOUND (c NULL) /
 * S3D_ESHAPE with one error line in err (and logged) whose HINT says it is
 * the output of sam3d-cond on ckpt (the generator checkpoint's file name). */
int  flow_check_cond(const struct tensor *c, int cond_dim, const char *stage, const char *ckpt,
                     const char *name, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
#endif
