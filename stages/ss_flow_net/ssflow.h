/*
 * ssflow.h - the sparse-structure flow generator of SAM 3D Objects (the MoT
 * DiT `SparseStructureFlowTdfyWrapper`) and its sampler (ShortCut in plain
 * flow-matching mode, Euler, classifier-free guidance).
 *
 * Reference (sam-3d-objects @cf06676, sam3d_objects/model/backbone/):
 *   tdfy_dit/models/mot_sparse_structure_flow.py:140-290   forward, I/O projection
 *   tdfy_dit/models/mm_latent.py:12-57                      Latent: Linear + pos_emb, LN + Linear
 *   tdfy_dit/models/timestep_embedder.py:7-59               [cos | sin] 256-d, MLP
 *   tdfy_dit/modules/transformer/modulated.py:174-341       MoT block
 *   tdfy_dit/modules/attention/modules.py:14-21, 180-374    RMS norm, MoT self-attention
 *   generator/shortcut/model.py:395-450                     time grid, t*1000, d*1000
 *   generator/classifier_free_guidance.py:99-160            CFG
 *   generator/flow_matching/solver.py:9-51                  Euler
 *
 * Streams: all T = Ns + P tokens live in one residual stream X (T, C) F32,
 * rows [0, Ns) the shape stream, rows [Ns, T) the pose stream (the 4 pose
 * latents in the order rotation, translation, scale, translation_scale,
 * mot_sparse_structure_flow.py:256-271). Shape queries attend keys [0, Ns);
 * pose queries attend [0, T) (= [pose; shape], order irrelevant).
 *
 * Config from the weights (ssflow_load): width C from t_embedder.mlp.0.weight,
 * heads from q_rms_norm gamma (H, 64), depth from the block count, MLP width
 * from mlp.0.weight, condition width from to_kv.weight, token counts from each
 * latent's pos_emb rows, latent channels from input_layer.weight. Released:
 * C 1024, 16 heads, 24 blocks, Ns 4096, Cc 1024.
 *
 * Precision: gemm_dt F16 (GPU default) follows the reference under fp16
 * autocast (spec §4.10): GEMMs, q/k RMS norm and attention in fp16 with fp32
 * accumulation, adaLN vectors and t/d embeddings fp16, residual stream and all
 * LayerNorm statistics fp32, velocities fp16, and the two fp16 tensors the
 * reference forms inside the block (1 + scale, gate * h) rounded as it does.
 * gemm_dt F16 also runs on the host (CPU ops), which the tests use to compare
 * the rounding points with the official module under fp16 autocast.
 * gemm_dt F32: everything fp32 (CPU, --precision fp32).
 */
#ifndef S3D_SSFLOW_H
#define S3D_SSFLOW_H

#include "arena.h"
#include "flow_net/flow_block.h"
#include "ops.h"
#include "stage_blocks.h"
#include "tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SSF_PREFIX     "_base_models.generator.reverse_fn.backbone."
#define SSF_MAX_DEPTH  64
#define SSF_N_LATENT   5
#define SSF_FREQ_DIM   FLOW_FREQ_DIM /* TimestepEmbedder frequency_embedding_size */
#define SSF_BLOCK_EPS  1e-6f        /* norm1/2/3 (modulated.py:200-217) */
#define SSF_OUT_EPS    1e-5f        /* F.layer_norm default in Latent.to_output */

/* The latents in the reference's (sorted = yaml) order: noise draw order and
 * the order of every array indexed by latent below. */
enum ssf_latent {
    SSF_ROT,       /* "6drotation_normalized" (1, 1, 6) */
    SSF_SCALE,     /* "scale" (1, 1, 3) */
    SSF_SHAPE,     /* "shape" (1, Ns, 8) */
    SSF_TRANS,     /* "translation" (1, 1, 3) */
    SSF_TSCALE,    /* "translation_scale" (1, 1, 1) */
};
extern const char *const ssflow_latent_name[SSF_N_LATENT];

enum ssf_stream { SSF_S_SHAPE, SSF_S_POSE };
extern const char *const ssflow_stream_name[2];      /* "shape", "6drotation_normalized" */

struct ssflow_config {
    int     dim;                    /* C */
    int     heads;                  /* H = C / 64 */
    int     depth;                  /* blocks */
    int     mlp;                    /* MLP hidden width (4C) */
    int     cond_dim;               /* Cc, input width of to_kv */
    int     cin[SSF_N_LATENT];      /* channels per latent (6, 3, 8, 3, 1) */
    int64_t ntok[SSF_N_LATENT];     /* tokens per latent (1, 1, Ns, 1, 1) */
    int64_t row[SSF_N_LATENT];      /* first row of each latent in X */
    int64_t n_shape;                /* Ns */
    int64_t n_tok;                  /* T = Ns + P */
};

struct ssflow_latent {
    struct tensor in_w;             /* (C, cin) gemm_dt */
    struct tensor in_b;             /* (C) gemm_dt */
    struct tensor pos;              /* (ntok, C) F32 */
    struct tensor out_w;            /* (cin, C) gemm_dt */
    struct tensor out_b;            /* (cin) gemm_dt */
};

struct ssflow_block {
    struct flow_block_w s[2];       /* [SSF_S_SHAPE], [SSF_S_POSE] (flow_net/flow_block.h) */
    struct tensor ada_w;            /* (6C, C) gemm_dt: adaLN_modulation.1, shared */
    struct tensor ada_b;            /* (6C) gemm_dt */
};

struct ssflow_model {
    struct ssflow_config cfg;
    enum dtype           gemm_dt;   /* F16 or F32 */
    enum device          device;
    struct flow_temb     t_emb, d_emb;  /* t_embedder, d_embedder (flow_block.h) */
    struct ssflow_latent lat[SSF_N_LATENT];
    struct ssflow_block  blocks[SSF_MAX_DEPTH];  /* streamed: in blk's host copy; use
                                                  * stage_blocks_get(&m->blk, ctx, i) */
    struct stage_blocks  blk;       /* the blocks resident or streamed (stage_blocks.h) */
    struct arena         weights;   /* every bound tensor, exactly sized (streamed: all but
                                     * the blocks) */
};

/* Open path ("FILE" = FILE:state_dict, or "FILE:KEY"), detect the config,
 * bind every tensor under SSF_PREFIX and upload to dev (DEVICE_CUDA or
 * DEVICE_HOST) with GEMM weights/biases in gemm_dt (F16 or F32), norms,
 * RMS gammas and pos_emb in F32. stream_slots 0: everything on dev; k >= 2:
 * the transformer blocks stay in (pinned) host memory and stream through k
 * slots on dev (common/stage_blocks.h; the same outputs, bit for bit). The condition embedder's tensors in the same
 * file are ignored. Returns 0, or a negative s3d_err already logged (not an
 * SS generator, missing or mis-shaped tensor, no memory); on failure nothing
 * stays allocated. */
int  ssflow_load(struct ssflow_model *m, const char *path, enum device dev, enum dtype gemm_dt,
                 int stream_slots);
void ssflow_free(struct ssflow_model *m);      /* NULL-safe, idempotent */

/* Bytes of the model's device arena that ssflow_forward takes for a condition
 * of n_cond tokens (the condition itself not included: ssflow_cond_bytes). */
size_t ssflow_act_bytes(const struct ssflow_model *m, int64_t n_cond);
/* Bytes ssflow_put_cond takes: n_cond tokens in gemm_dt, and with cache_kv
 * the K/V of every block and stream (depth x 2 x n_cond x 2C in gemm_dt;
 * 1.48 GB fp16 at the released size with 7528 tokens). */
size_t ssflow_cond_bytes(const struct ssflow_model *m, int64_t n_cond, bool cache_kv);

/* Check a condition tensor from a request: host, (1, Nc, Cc) with Cc the
 * model's cond_dim, Nc >= 1, F16 or F32, contiguous. 0, or S3D_ENOTFOUND
 * (NULL) / S3D_ESHAPE with one line naming `name`, got vs expected and a HINT:
 * written to err (err_len bytes) when err is not NULL, else logged. */
int  ssflow_check_cond(const struct ssflow_model *m, const struct tensor *cond, const char *name,
                       char *err, size_t err_len);
/* Check the five latents x[l] (host F32 contiguous (1, ntok[l], cin[l])), named
 * prefix + latent name in the message; returns and reports as ssflow_check_cond. */
int  ssflow_check_latents(const struct ssflow_model *m, const struct tensor *const x[SSF_N_LATENT],
                          const char *prefix, char *err, size_t err_len);

/* The condition of one request on the model's device. */
struct ssflow_cond {
    struct tensor c;     /* (1, Nc, Cc) gemm_dt */
    struct tensor kv;    /* (depth, 2, Nc, 2C) gemm_dt: to_kv of every block and stream
                          * (spec §10.3: the same for every step); data NULL when not
                          * cached (each evaluation projects the condition again) */
};

/* Copy a checked host condition (F16 or F32) into act, converted to gemm_dt,
 * on the model's device; with cache_kv also compute the cross-attention K/V
 * of every block and stream once (the same numbers an evaluation computes).
 * The views in *out are valid until act is released below the mark at the call. */
void ssflow_put_cond(const struct ssflow_model *m, const struct op_ctx *ctx, struct arena *act,
                     const struct tensor *cond, bool cache_kv, struct ssflow_cond *out);

/* Optional copies of activations of block `block` (ssflow_forward's taps):
 * each non-NULL pointer receives host F32 data; rows are X's rows (shape
 * stream then pose stream, T rows of C). */
struct ssflow_taps {
    int    block;        /* which block's sub-module outputs to copy */
    float *t_emb;        /* (C) t_embedder(t) */
    float *d_emb;        /* (C) d_embedder(d) */
    float *tokens_in;    /* (T, C) stream input to block 0 (latent projections + pos_emb) */
    float *self_attn;    /* (T, C) MoT self-attention output (to_out, before the gate) */
    float *cross_attn;   /* (T, C) cross-attention output (to_out) */
    float *mlp;          /* (T, C) MLP output (before the gate) */
    float *block_out;    /* (T, C) residual stream after the block */
};

/* One network evaluation (SparseStructureFlowTdfyWrapper.forward):
 * x[l] host F32 (1, ntok[l], cin[l]) contiguous (checked by the caller);
 * t = t_grid * 1000, d = d * 1000 (0 in default inference) as the reference's
 * float32 tensors; cond from ssflow_put_cond, or NULL for the unconditional
 * pass (the condition x 0: every key of the cross-attention is the same and
 * every value is the to_kv bias b_v, so each query's output is b_v and the
 * sub-module output the constant row to_out(b_v) - spec §10.3; no K/V, no
 * to_q, no attention); v[l] host F32 of x[l]'s shape
 * receive the velocities (fp16-rounded values with gemm_dt F16). act: the
 * model's device arena with ssflow_act_bytes free; released to its mark at
 * entry. ctx NULL on the host. taps may be NULL. */
void ssflow_forward(const struct ssflow_model *m, const struct op_ctx *ctx, struct arena *act,
                    const struct tensor *const x[SSF_N_LATENT], float t, float d,
                    const struct ssflow_cond *cond, struct tensor *const v[SSF_N_LATENT],
                    const struct ssflow_taps *taps);

/* The two evaluations of a CFG step at once: vc[l] = ssflow_forward(x, t, d,
 * cond) and vu[l] = ssflow_forward(x, t, d, NULL), the same bytes, with the
 * blocks taken in turn for both (each block's weights used twice while they
 * are on the device: the streamed model copies each once a step). act needs
 * ssflow_act_bytes + ssflow_cfg_extra_bytes free (a second residual stream). */
void ssflow_forward_cfg(const struct ssflow_model *m, const struct op_ctx *ctx, struct arena *act,
                        const struct tensor *const x[SSF_N_LATENT], float t, float d,
                        const struct ssflow_cond *cond, struct tensor *const vc[SSF_N_LATENT],
                        struct tensor *const vu[SSF_N_LATENT]);
/* The second residual stream of ssflow_forward_cfg: (T, C) F32. */
size_t ssflow_cfg_extra_bytes(const struct ssflow_model *m);

// ----------------------------------------------------------------------------
// sampler (spec §5)

struct ssflow_sampler {
    int    steps;          /* Euler steps (25) */
    double cfg;            /* guidance strength s (7): v = (1+s) v_cond - s v_uncond */
    double cfg_lo, cfg_hi; /* CFG on while cfg_lo <= float32(t*1000) <= cfg_hi ([0, 500]) */
    double rescale_t;      /* r (3): t <- t / (1 + (r-1)(1-t)) */
    double d;              /* shortcut step d (0: plain flow matching, the default) */
    bool   cache_kv;       /* project the condition once per request, not per evaluation */
};

/* The pipeline's defaults (spec §2.1): 25 steps, CFG 7 on [0, 500], rescale 3, d 0;
 * and cache_kv off (the cache is 1.48 GB at full size for ~3% of the sampler's time:
 * issue 16's 3 GiB per stage needs it off; docs/performance.md "ss_flow"). */
void   ssflow_sampler_defaults(struct ssflow_sampler *s);
/* The official shortcut (distillation) mode for s->steps steps, as
 * InferencePipeline.sample_sparse_structure(use_distillation=True) sets it
 * (pipeline/inference_pipeline.py:647-650, generator/shortcut/model.py:395-412):
 * d = 1/steps (fed as d*1000 to the d_embedder) and CFG strength 0 (one pass a
 * step). Call after setting s->steps. */
void   ssflow_sampler_shortcut(struct ssflow_sampler *s);
/* t_k of the grid as the reference computes it in float64 (np.linspace(0, 1,
 * steps+1) = k * (1/steps), last exactly 1, then the rescale), k in [0, steps]. */
double ssflow_time(const struct ssflow_sampler *s, int k);

/* Called once per step after the velocity is final (after CFG), before the
 * Euler update: k, the float32 t*1000 fed to the network, whether CFG ran,
 * x[l] the step's input and v[l] the velocity (host F32). The callback may
 * overwrite v (tests replay reference velocities through the update). */
typedef void (*ssflow_step_fn)(void *user, int k, float t1000, bool cfg,
                               const struct tensor *const x[SSF_N_LATENT],
                               struct tensor *const v[SSF_N_LATENT]);

/* Run the sampler: x[l] host F32 (1, ntok[l], cin[l]) holds the initial noise
 * on entry and the sample on return. cond: a checked host condition
 * (ssflow_check_cond), uploaded once into act (with its K/V when
 * s->cache_kv). Per step: t = float32(t_k*1000);
 * v_cond; with CFG also v_uncond (cond x 0) and v = (1+s) v_cond - s v_uncond;
 * x += v * float32(t_{k+1} - t_k) (a CFG step's two evaluations through
 * ssflow_forward_cfg). With gemm_dt F16 the CFG combination and
 * the product v * dt are rounded to fp16 as the reference does them in fp16
 * (spec §11.19); with F32 all fp32. act needs ssflow_sample_bytes free
 * (the condition + one forward). on_step may be NULL. Returns the number of
 * network evaluations (44 at the defaults). */
int    ssflow_sample(const struct ssflow_model *m, const struct op_ctx *ctx, struct arena *act,
                     const struct tensor *cond, struct tensor *const x[SSF_N_LATENT],
                     const struct ssflow_sampler *s, ssflow_step_fn on_step, void *user);
/* Bytes of act that ssflow_sample takes for n_cond condition tokens (the
 * condition, its K/V when cache_kv, one forward and the second stream of a CFG
 * step, ssflow_forward_cfg); its velocity buffers are malloc'ed. */
size_t ssflow_sample_bytes(const struct ssflow_model *m, int64_t n_cond, bool cache_kv);

/* Fill x[l] (host F32, contiguous) with N(0, 1) noise from our own generator
 * (common/rng.h: splitmix64-seeded xoshiro256**, Box-Muller in double), drawn
 * latent by latent in enum order from one stream, row-major: deterministic for a seed on every machine,
 * not PyTorch's stream (spec §5.2 allows this). */
void   ssflow_noise(uint64_t seed, struct tensor *const x[SSF_N_LATENT]);

#ifdef __cplusplus
}
#endif
#endif
