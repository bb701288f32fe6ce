/*
 * slatflow.h - the structured-latent (SLAT) flow network of SAM 3D Objects
 * (`SLatFlowModelTdfyWrapper`, a sparse U-shaped DiT): one network evaluation
 * (slatflow.c) and the sampler around it (sampler.c: Euler, classifier-free
 * guidance, de-normalisation). The stage glue is stages/slat_flow/main.c.
 *
 * Reference (sam-3d-objects @cf06676, sam3d_objects/model/backbone/tdfy_dit/):
 *   models/structured_latent_flow.py:15-74      SparseResBlock3d
 *   models/structured_latent_flow.py:268-301    SLatFlowModel.forward
 *   models/structured_latent_flow.py:319-354    wrapper (x[0] + coords, cond x 0 for CFG)
 *   modules/sparse/transformer/modulated.py:90-186  ModulatedSparseTransformerCrossBlock
 *   modules/sparse/attention/modules.py:16-31, 100-200  RMS norm, SparseMultiHeadAttention
 *   modules/sparse/spatial.py:10-96              SparseDownsample / SparseUpsample
 *   modules/transformer/blocks.py:9-56           AbsolutePositionEmbedder
 *   models/timestep_embedder.py:29-59            TimestepEmbedder
 * Sampler (sam3d_objects/model/backbone/generator/, sampler.c):
 *   flow_matching/model.py:190-228               t grid (torch.linspace, float32), t * 1000
 *   flow_matching/solver.py:9-51                 Euler x + v * dt
 *   classifier_free_guidance.py:99-160           CFG strength s while lo <= t <= hi
 *   sam3d_objects/pipeline/inference_pipeline.py:721-768
 *                                                25 steps, strength 1, feats * std + mean
 *
 * Shape of the network (one io level, num_io_res_blocks 2, patch size 2;
 * c0 = io channels, C = width):
 *   h   = input_layer(x)                          (N, c0)   at the input coords (res^3)
 *   s0  = ResBlock(c0 -> c0)(h)                   (N, c0)
 *   s1  = ResBlock(c0 -> C, downsample)(s0)       (M, C)    at the parent coords ((res/2)^3)
 *   h   = s1 + APE(parent coords)
 *   h   = blocks[0..depth)(h, temb, cond)
 *   h   = ResBlock(2C -> c0, upsample)([h | s1])  (N, c0)
 *   h   = ResBlock(2c0 -> c0)([h | s0])
 *   v   = out_layer(layer_norm(h))                (N, out)
 *
 * Config from the weights (slatflow_load): C from t_embedder.mlp.0.weight,
 * c0 and the input channels from input_layer.weight, heads from q_rms_norm
 * gamma (H, 64), depth from the block count, MLP width from mlp.mlp.0.weight,
 * condition width from to_kv.weight, output channels from out_layer.weight.
 * Released: C 1024, c0 128, 16 heads, 24 blocks, MLP 4096, cond width 1024.
 *
 * Precision: gemm_dt F32: everything fp32 (the reference's numbers on the
 * fp16-stored weights, as the fixture's fp32 CPU run). gemm_dt F16: the
 * reference's torso under fp16 autocast (spec §8.8): activations, the token
 * stream, modulation vectors and GEMM/conv/attention operands in fp16 with
 * fp32 accumulation; LayerNorm / RMS-norm statistics fp32; the APE rounded to
 * fp16 before the add; fp16 velocities. Unlike the reference, h*(1+scale)+shift
 * and x + gate*h are each one fp32 expression rounded once (the reference
 * rounds 1+scale, the product and the sum separately), and the MLP's fc1 +
 * GELU(tanh) is one GEMM with the GELU epilogue, rounded once (the reference
 * rounds fc1's output, then the GELU's). The F16 path is tested
 * only against the F32 one (rel L2 ~1e-3 on the tiny fixture); the fixture
 * has no autocast reference.
 */
#ifndef S3D_SLATFLOW_H
#define S3D_SLATFLOW_H

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

#define SLF_PREFIX     "_base_models.generator.reverse_fn.backbone."
#define SLF_MAX_DEPTH  64
#define SLF_FREQ_DIM   FLOW_FREQ_DIM /* TimestepEmbedder frequency_embedding_size */
#define SLF_EPS        1e-6f        /* block norms and res-block norms */
#define SLF_OUT_EPS    1e-5f        /* F.layer_norm default before out_layer */
#define SLF_RESOLUTION 64           /* yaml `resolution` (not in the checkpoint) */
/* The most voxels a request may bring: the official pipeline's ceiling after
 * downsample_sparse_structure(coords, max_coords=42000)
 * (pipeline/inference_pipeline.py:711, pipeline/inference_utils.py:412-477). */
#define SLF_MAX_VOXELS 42000
#define SLF_LATENT     8            /* latent channels (in_ch = out_ch) */

/* The released de-normalisation, slat_feats = x * std + mean per channel
 * (checkpoints/hf/pipeline.yaml:89-106; the pipeline overrides the constructor
 * defaults of inference_utils.py:24-47 with these). */
extern const float slatflow_slat_mean[SLF_LATENT];
extern const float slatflow_slat_std[SLF_LATENT];

struct slatflow_config {
    int dim;                        /* C */
    int heads;                      /* H = C / 64 */
    int depth;                      /* transformer blocks */
    int mlp;                        /* MLP hidden width */
    int cond_dim;                   /* Cc, input width of to_kv */
    int io;                         /* c0, io_block_channels[0] */
    int in_ch, out_ch;              /* latent channels (8, 8) */
};

/* SparseResBlock3d(cin -> cout). */
struct slatflow_res {
    int           cin, cout;
    struct tensor norm1_w, norm1_b; /* (cin) F32 */
    struct tensor conv1_w;          /* (cout, 3, 3, 3, cin) gemm_dt, KRSC; tap-major
                                     * (27, cout, cin) when tapwise */
    struct tensor conv1_b;          /* (cout) gemm_dt */
    struct tensor conv2_w;          /* (cout, 3, 3, 3, cout) gemm_dt */
    struct tensor conv2_b;          /* (cout) gemm_dt */
    struct tensor emb_w;            /* (2 cout, C) gemm_dt: emb_layers.1 (scale | shift) */
    struct tensor emb_b;            /* (2 cout) gemm_dt */
    struct tensor skip_w;           /* (cout, cin) gemm_dt, data NULL when cin == cout */
    struct tensor skip_b;           /* (cout) gemm_dt */
    bool          tapwise;          /* conv1 by op_sparse_conv3_tap (out_blocks.0) */
};

struct slatflow_block {
    struct flow_block_w w;          /* attention + MLP (flow_net/flow_block.h) */
    struct tensor ada_w;            /* (6C, C) gemm_dt: adaLN_modulation.1 */
    struct tensor ada_b;            /* (6C) gemm_dt */
};

struct slatflow_model {
    struct slatflow_config cfg;
    enum dtype             gemm_dt;      /* F16 or F32 */
    enum device            device;
    struct flow_temb       t_emb;        /* t_embedder (flow_block.h) */
    struct tensor          in_w, in_b;   /* (c0, in_ch), (c0) gemm_dt: input_layer */
    struct tensor          out_w, out_b; /* (out_ch, c0), (out_ch) gemm_dt: out_layer */
    struct slatflow_res    inb[2];       /* input_blocks: (c0 -> c0), (c0 -> C, down) */
    struct slatflow_res    outb[2];      /* out_blocks: (2C -> c0, up), (2c0 -> c0) */
    struct slatflow_block  blocks[SLF_MAX_DEPTH];  /* streamed: in blk's host copy; use
                                                    * stage_blocks_get(&m->blk, ctx, i) */
    struct stage_blocks    blk;          /* the blocks resident or streamed (stage_blocks.h) */
    struct arena           weights;      /* every bound tensor, exactly sized (streamed: all
                                          * but the blocks) */
};

/* Open path ("FILE" = FILE:state_dict, or "FILE:KEY"), detect the config,
 * bind every tensor under SLF_PREFIX and upload to dev (DEVICE_CUDA or
 * DEVICE_HOST) with GEMM/conv weights and biases in gemm_dt (F16 or F32),
 * norm weights and RMS gammas in F32. stream_slots 0: everything on dev;
 * k >= 2: the transformer blocks stay in (pinned) host memory and stream
 * through k slots on dev (common/stage_blocks.h; the same outputs, bit for
 * bit). Returns 0, or a negative s3d_err
 * already logged (not a SLAT generator, an unsupported layout, a missing or
 * mis-shaped tensor, no memory); on failure nothing stays allocated. */
int  slatflow_load(struct slatflow_model *m, const char *path, enum device dev, enum dtype gemm_dt,
                   int stream_slots);
void slatflow_free(struct slatflow_model *m);    /* NULL-safe, idempotent */

/* The coordinate-dependent state of one voxel set (fixed during sampling):
 * views into the arena given to slatflow_geom_build, on the model's device. */
struct slatflow_geom {
    int64_t       n, m;          /* N input sites, M parent sites */
    struct tensor nbr_hi;        /* (N, 27) I32: neighbour map at res^3 */
    struct tensor nbr_lo;        /* (M, 27) I32: neighbour map at (res/2)^3 */
    struct tensor nbr_up;        /* (N, 27) I32: nbr_hi composed with parent (-1 kept): the
                                  * parent row of each neighbour, for out_blocks.0 conv1 on
                                  * the M parent rows of its upsampled input */
    struct tensor parent;        /* (N) I32: site -> parent row (the upsample index) */
    struct tensor children;      /* (M, 8) I32: parent -> child rows or -1 */
    struct tensor ape;           /* (M, C) gemm_dt: APE of the parent coords */
};

/* Check coords from a request (host I32 (N, 4), contiguous) as a voxel set at
 * resolution res (even, <= SPARSE_DOWN_MAX_RES): 1 <= N <= SLF_MAX_VOXELS,
 * every row (0, x, y, z) with x, y, z in [0, res), no row twice. 0, or
 * S3D_ESHAPE with one line naming `what`, the first bad row and a HINT:
 * written to err (err_len bytes) when err is not NULL, else logged. */
int    slatflow_check_coords(const struct tensor *coords, int res, const char *what, char *err,
                             size_t err_len);
/* M, the number of parent sites (x>>1, y>>1, z>>1) of checked coords: the
 * token count of the transformer, for the planning pass. */
int64_t slatflow_parents(const struct tensor *coords, int res);
/* Bytes of arena that slatflow_geom_build takes for N sites and their M
 * parents (slatflow_parents). */
size_t slatflow_geom_bytes(const struct slatflow_model *m, int64_t n, int64_t mm);
/* Build the geometry of checked coords (host I32 (N, 4)) at resolution res on
 * the model's device: the x2 downsample index (computed on the host with the
 * CPU op and uploaded), then on the model's device the neighbour maps and the
 * APE of the parent coords. The views stay valid until `a` is released below
 * its mark at the call. */
void   slatflow_geom_build(const struct slatflow_model *m, const struct op_ctx *ctx,
                           struct arena *a, const struct tensor *coords, int res,
                           struct slatflow_geom *g);

/* Check a condition tensor: host, (1, Nc, Cc) with Cc the model's cond_dim,
 * Nc >= 1, F16 or F32, contiguous. 0, or S3D_ENOTFOUND (NULL) / S3D_ESHAPE
 * with one line naming `name`, got vs expected and a HINT; reported as
 * slatflow_check_coords does. */
int    slatflow_check_cond(const struct slatflow_model *m, const struct tensor *cond,
                           const char *name, char *err, size_t err_len);

/* The condition of one request on the model's device. */
struct slatflow_cond {
    struct tensor c;     /* (1, Nc, Cc) gemm_dt */
    struct tensor kv;    /* (depth, Nc, 2C) gemm_dt: to_kv of every block, projected once
                          * (the same for every evaluation, spec generators.md §10.3);
                          * data NULL when not cached (each evaluation projects again) */
};

/* Bytes slatflow_put_cond takes: the condition in gemm_dt and, with cache_kv,
 * its K/V of every block (depth x Nc x 2C in gemm_dt: 540 MB fp16 at the
 * released size with 5496 tokens). */
size_t slatflow_cond_bytes(const struct slatflow_model *m, int64_t n_cond, bool cache_kv);
/* Copy a checked host condition (F16 or F32) into `a` on the model's device,
 * converted to gemm_dt; with cache_kv also project the cross-attention K/V of
 * every block once (the numbers an evaluation would compute). The views in
 * *out are valid until `a` is released below its mark at the call. */
void   slatflow_put_cond(const struct slatflow_model *m, const struct op_ctx *ctx, struct arena *a,
                         const struct tensor *cond, bool cache_kv, struct slatflow_cond *out);

/* Bytes of the activation arena slatflow_forward takes for N input sites, M
 * parent sites and a condition of n_cond tokens whose K/V it projects (0 or 1:
 * unconditional only, or the K/V cached by slatflow_put_cond). */
size_t slatflow_act_bytes(const struct slatflow_model *m, int64_t n, int64_t mm, int64_t n_cond);

/* Optional host F32 copies of activations (fixture names in comments). */
struct slatflow_taps {
    int    block;           /* which transformer block's taps below */
    float *input_layer;     /* (N, c0) input_layer */
    float *t_emb;           /* (C) t_embedder */
    float *ib0_conv1;       /* (N, c0) input_blocks.0.conv1 */
    float *ib0_conv2;       /* (N, c0) input_blocks.0.conv2 */
    float *ib0;             /* (N, c0) input_blocks.0 */
    float *ib1_conv1;       /* (M, C) input_blocks.1.conv1 */
    float *ib1_skip;        /* (M, C) input_blocks.1.skip_connection */
    float *ib1;             /* (M, C) input_blocks.1 */
    float *tokens_ape;      /* (M, C) tokens_ape: the input of blocks.0 */
    float *self_attn;       /* (M, C) blocks.<block>.self_attn (before the gate) */
    float *cross_attn;      /* (M, C) blocks.<block>.cross_attn */
    float *mlp;             /* (M, C) blocks.<block>.mlp (before the gate) */
    float *block_out;       /* (M, C) blocks.<block> */
    float *ob0_conv1;       /* (N, c0) out_blocks.0.conv1 */
    float *ob0;             /* (N, c0) out_blocks.0 */
    float *ob1;             /* (N, c0) out_blocks.1 */
};

/* One network evaluation: x F32 (N, in_ch) contiguous, on the host or the
 * model's device (the feats of the sparse tensor, rows in coords order);
 * t = t_k * 1000 as the
 * reference's float32; g from slatflow_geom_build; cond from
 * slatflow_put_cond (its cached K/V used when present), or NULL for the
 * unconditional pass (condition x 0: every key equal, every value the to_kv
 * bias b_v, so the cross-attention output is the constant row to_out(b_v));
 * v (N, out_ch) contiguous receives the velocity: host F32 (fp16-rounded
 * values with gemm_dt F16), or on the model's device in any float dtype
 * (the sampler's gemm_dt buffer). act: an arena on the model's device with
 * slatflow_act_bytes(n, m, cond && !cond->kv.data ? Nc : 1) free; released
 * to its mark on return. ctx NULL on the host. taps may be NULL. */
void slatflow_forward(const struct slatflow_model *m, const struct op_ctx *ctx, struct arena *act,
                      const struct slatflow_geom *g, const struct tensor *x, float t,
                      const struct slatflow_cond *cond, struct tensor *v,
                      const struct slatflow_taps *taps);

/* The two evaluations of a CFG step in one call: v_cond into vc and v_uncond
 * into vu (each as slatflow_forward's v), from the same x and t. The part
 * before the transformer (temb, input layer, input blocks) does not see the
 * condition and runs once; the transformer runs block by block for both (two
 * token streams: each block's weights serve both while on the device, so a
 * streamed model copies each once a step); the same numbers as two
 * slatflow_forward calls. cond not NULL; act as for slatflow_forward with
 * cond, plus slatflow_cfg_extra_bytes. */
/* The second token stream of slatflow_forward_cfg for mm tokens: (mm, C) gemm_dt. */
size_t slatflow_cfg_extra_bytes(const struct slatflow_model *m, int64_t mm);
void slatflow_forward_cfg(const struct slatflow_model *m, const struct op_ctx *ctx,
                          struct arena *act, const struct slatflow_geom *g,
                          const struct tensor *x, float t, const struct slatflow_cond *cond,
                          struct tensor *vc, struct tensor *vu);

// ----------------------------------------------------------------------------
// sampler (sampler.c; spec generators.md §9)

struct slatflow_sampler {
    int    steps;          /* Euler steps (25) */
    double cfg;            /* guidance strength s (1): v = (1+s) v_cond - s v_uncond */
    double cfg_lo, cfg_hi; /* CFG on while cfg_lo <= float32(t*1000) <= cfg_hi ([0, 500]) */
    double rescale_t;      /* r (1): t <- t / (1 + (r-1)(1-t)), in float32 */
    bool   cache_kv;       /* project the condition's K/V once per request (off: 540 MB
                            * at full size for ~1% of the sampler's time) */
};

/* The released pipeline's settings (pipeline/inference_pipeline.py:444-464,
 * 721-740): 25 steps, CFG 1 on [0, 500], rescale 1; K/V projected per
 * evaluation (not cached). */
void   slatflow_sampler_defaults(struct slatflow_sampler *s);
/* t_k of the grid as the reference computes it: torch.linspace(0, 1, steps+1)
 * in float32 (step = 1/steps; the first half start + step*k, the second half
 * end - step*(steps-k)), then the rescale in float32; k in [0, steps]. */
float  slatflow_time(const struct slatflow_sampler *s, int k);
/* Network evaluations of a run: steps + the CFG steps (38 at the defaults). */
int    slatflow_evals(const struct slatflow_sampler *s);

/* Called once per step after the velocity is final (after CFG), before the
 * Euler update: k, the float32 t*1000 fed to the network, whether CFG ran, x
 * the step's input (N, 8) and v the velocity (host F32). The callback may
 * overwrite v (tests replay reference velocities through the update). */
typedef void (*slatflow_step_fn)(void *user, int k, float t1000, bool cfg, const struct tensor *x,
                                 struct tensor *v);

/* Bytes of the device arena slatflow_sample takes for N sites, M parents
 * and n_cond condition tokens: the geometry, the condition (+ its K/V with
 * cache_kv) and one forward (a CFG step's, with its second token stream). */
size_t slatflow_sample_bytes(const struct slatflow_model *m, int64_t n, int64_t mm, int64_t n_cond,
                             bool cache_kv);

/* Run the sampler on checked coords (host I32 (N, 4)) and a checked host
 * condition: x host F32 (N, 8) contiguous holds the initial noise on entry
 * and the sample x_steps on return (not de-normalised: slatflow_denorm).
 * Per step k: T = float32(t_k) * 1000; v_cond; with CFG (s > 0 and lo <= T
 * <= hi) also v_uncond and v = (1+s) v_cond - s v_uncond; x += v *
 * float32(t_{k+1} - t_k). With gemm_dt F16 the CFG combination and v * dt
 * are rounded to fp16 as the reference computes them on fp16 velocities
 * (spec §11.19); with F32 all fp32. x and the velocities stay on the model's
 * device for the whole run (kernels/ops_flow.h does the CFG mix and the Euler
 * step there), so the steps queue without waiting for the host; x comes back
 * at the end. vbuf: host scratch of N 8 floats (on_step's copy of v; the
 * stage passes 2 N 8); act: the model's device arena with
 * slatflow_sample_bytes free, released to its mark on return (nothing else is
 * allocated on the device). Logs one progress line per step ("slat_flow: step
 * k/steps"). on_step may be NULL (else x and v are copied to the host and v
 * back for each step). Returns the number of network evaluations. */
int    slatflow_sample(const struct slatflow_model *m, const struct op_ctx *ctx, struct arena *act,
                       const struct tensor *coords, const struct tensor *cond, struct tensor *x,
                       float *vbuf, const struct slatflow_sampler *s, slatflow_step_fn on_step,
                       void *user);

/* feats (N, 8) F32 = x * std + mean per channel, in float32 as the reference
 * (a product then a sum, each rounded); feats may be x. */
void   slatflow_denorm(struct tensor *feats, const struct tensor *x);

/* Fill x (host F32 contiguous, N x 8 values row-major) with the seeded
 * N(0, 1) stream of common/rng.h: the first N*8 values of seed's stream. */
void   slatflow_noise(uint64_t seed, struct tensor *x);

#ifdef __cplusplus
}
#endif
#endif
