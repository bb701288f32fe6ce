/*
 * slatdec.h - the SLAT decoder trunk of SAM 3D Objects (`SparseTransformerBase`
 * with attn_mode "swin"), shared by the Gaussian decoder (stages/gs_decode/)
 * and the mesh decoder (stages/mesh_decode/): structured latent (coords +
 * feats) -> per-voxel features (N, C) on the device. The heads live with
 * their stages.
 *
 * Reference (sam-3d-objects @cf06676, sam3d_objects/model/backbone/tdfy_dit/):
 *   models/structured_latent_vae/base.py:11-33     block_attn_config (window 8, shift 4 on odd blocks)
 *   models/structured_latent_vae/base.py:36-134    SparseTransformerBase (use_fp16, forward)
 *   modules/sparse/transformer/blocks.py:12-84     SparseFeedForwardNet, SparseTransformerBlock
 *   modules/sparse/attention/modules.py:76-200     SparseMultiHeadAttention (to_qkv, to_out)
 *   modules/sparse/attention/windowed_attn.py      partition + windowed attention (kernels/ops_window.h)
 *   modules/transformer/blocks.py:9-56             AbsolutePositionEmbedder
 *   modules/norm.py:6-9                            LayerNorm32
 *   modules/utils.py:7-41                          convert_module_to_f16 (the blocks' Linears only)
 * Spec: spec decoders.md §3-§4; docs/parity.md.
 *
 * Forward (base.py:127-134), C = width, H = C / 64 heads:
 *   h = input_layer(feats)                     (N, C)  fp32 Linear (8 -> C)
 *   h = h + APE(coords[:, 1:])                 fp32, then h.type(dtype)
 *   for block i (shift_i = i odd ? window / 2 : 0):
 *     x = x + to_out(WinAttn_i(to_qkv(LN(x))))   LN: no affine, eps 1e-6, fp32 statistics
 *     x = x + fc2(GELU_tanh(fc1(LN(x))))
 *   output x (N, C) in gemm_dt
 * WinAttn_i: self-attention inside the 8^3 windows of the coordinates shifted
 * by shift_i (no wrap-around, no mask), scale 1/8, via the two partitions of
 * slatdec_geom (op_window_partition_cpu, shift 0 and window / 2).
 *
 * Config from the weights (slatdec_bind): C from input_layer.weight (C, in_ch),
 * depth from the block count, MLP width from mlp.mlp.0.weight; window 8 and
 * resolution 64 are the yaml's (not in the checkpoint). Released: C 768,
 * 12 heads, 12 blocks, MLP 3072, latent 8 (all three decoders).
 *
 * Precision (gemm_dt): F16 is the reference's use_fp16 trunk (decode_slat runs
 * without autocast; convert_to_fp16 makes only the blocks' Linears fp16):
 * input_layer and the APE in fp32, the token stream fp16 from the first block
 * on; LayerNorm statistics fp32, output rounded to fp16; GEMMs fp16 with fp32
 * accumulation, bias in the epilogue; attention fp16 in, fp32 softmax and
 * accumulation (P rounded to fp16 for P V, as flash_attn); GELU in fp32,
 * rounded to fp16. One difference: the residual adds are fused into the
 * to_out / fc2 GEMMs (x + W a + b rounded once), where the reference rounds
 * W a + b to fp16 and then the sum (at most a few fp16 ulps of x apart).
 * F32 (--precision fp32, the CPU reference): everything fp32 on the stored
 * (fp16) values, as the tiny fixture's fp32 reference run.
 *
 * Memory (activations, slatdec_act_bytes): the token stream x (N, C) is the
 * caller's; one region of at most group_rows tokens' worth (the trunk's
 * parameter: SLD_GROUP_ROWS unless the stage sets more) is reused by
 * every phase: the input layer + APE in row chunks (the latent (N, in_ch),
 * uploaded once, + an fp32 output chunk (rows, C)); per block the attention over groups of whole
 * windows (a group's rows of x gathered in window order (R, C), the LN /
 * attention output (R, C), qkv (R, 3C); to_out adds into the gathered rows,
 * which are scattered back; R <= group_rows); the MLP in row chunks
 * (hidden (rows, mlp)). Every token's result is the same computation as over
 * all N at once (windows are independent; LN and the GEMMs act per row): the
 * CPU bytes do not depend on the grouping. At N = 30k, fp16: 46 MB of stream
 * + a 15.7 MB region (group_rows 2048; 4x the rows: ~4x the region, 1/4 the
 * group iterations). The region's size is the largest of its phases, each
 * measured by carving its views (the same functions the forward carves them
 * with) from an unbounded region.
 */
#ifndef S3D_SLATDEC_H
#define S3D_SLATDEC_H

#include "arena.h"
#include "ops.h"
#include "tensor.h"
#include "weights.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLD_MAX_DEPTH  64
#define SLD_WINDOW     8            /* yaml window_size */
#define SLD_RESOLUTION 64           /* yaml resolution: coords in [0, 64) */
#define SLD_EPS        1e-6f        /* LayerNorm32 of the blocks (blocks.py:50-51) */
/* Tokens per attention group by default (whole windows; >= SLD_WINDOW^3, the
 * fullest window): the activation region's size (slatdec.h "Memory"); a trunk's
 * group_rows may raise it. */
#define SLD_GROUP_ROWS 2048
/* A group's gather, LN and GEMMs run on its rows rounded up to this (slatdec.c attn_forward). */
#define SLD_GROUP_PAD  256
/* Windows of a partition at most: ceil((SLD_RESOLUTION - 1 + shift + 1) / window)^3, shift
 * up to SLD_WINDOW / 2 (729). */
#define SLD_WIN_AXIS    ((SLD_RESOLUTION + SLD_WINDOW / 2 + SLD_WINDOW - 1) / SLD_WINDOW)
#define SLD_MAX_WINDOWS (SLD_WIN_AXIS * SLD_WIN_AXIS * SLD_WIN_AXIS)
/* The inline input bytes a decoder stage's request may bring (stage_ops.max_input_bytes):
 * coords (N, 4) I32 + feats (N, 8) F32 at N <= 64^3 are 12.6 MB. */
#define SLD_MAX_INPUT_BYTES ((size_t)32 << 20)
/* The stage_ops fields both SLAT decoder stages share (gs_decode, mesh_decode):
 * the default GEMM workspace and the request size above (coords + feats). */
#define SLD_STAGE_OPS .workspace_bytes = OP_WORKSPACE_DEFAULT, .max_input_bytes = SLD_MAX_INPUT_BYTES

struct slatdec_config {
    int dim;                        /* C */
    int heads;                      /* H = C / 64 */
    int depth;                      /* transformer blocks */
    int mlp;                        /* MLP hidden width */
    int in_ch;                      /* latent channels (8) */
};

struct slatdec_block {
    struct tensor qkv_w;            /* (3C, C) gemm_dt: attn.to_qkv, rows [q|k|v] x head x 64 */
    struct tensor qkv_b;            /* (3C) gemm_dt */
    struct tensor out_w;            /* (C, C) gemm_dt: attn.to_out */
    struct tensor out_b;            /* (C) gemm_dt */
    struct tensor fc1_w;            /* (mlp, C) gemm_dt: mlp.mlp.0 */
    struct tensor fc1_b;            /* (mlp) gemm_dt */
    struct tensor fc2_w;            /* (C, mlp) gemm_dt: mlp.mlp.2 */
    struct tensor fc2_b;            /* (C) gemm_dt */
};

struct slatdec_trunk {
    struct slatdec_config cfg;
    enum dtype            gemm_dt;     /* F16 or F32 */
    enum device           device;
    struct tensor         in_w;        /* (C, in_ch) F32: input_layer (fp32 in the reference) */
    struct tensor         in_b;        /* (C) F32 */
    struct slatdec_block  blocks[SLD_MAX_DEPTH];
    int64_t               mlp_rows;    /* 0: MLP chunk from the region; > 0 caps it (tests) */
    int64_t               group_rows;  /* tokens per attention group at most, >= SLD_WINDOW^3
                                        * (0: SLD_GROUP_ROWS): sizes the region and the
                                        * geometry; set before planning (slatdec_bind: 0) */
};

/* Detect the config from w (opened with the decoder's prefix, usually none)
 * and declare every trunk tensor (weights_bind_as: input_layer F32, the
 * blocks' Linears gemm_dt). The caller binds its head, then uploads with
 * weights_load_arena. who names the decoder in messages ("gs_decode").
 * 0, or S3D_ENOTFOUND / S3D_ESHAPE logged with a HINT (not a SLAT decoder,
 * inconsistent shapes, a missing tensor). */
int  slatdec_bind(struct slatdec_trunk *t, struct weights *w, enum device dev, enum dtype gemm_dt,
                  const char *who);

/* Check coords (host I32 (N, 4), the structured latent's support): non-empty,
 * b == 0, 0 <= x, y, z < SLD_RESOLUTION, unique. 0, or S3D_ESHAPE with one
 * line naming `what` and a HINT in msg (for the stage's error reply; the
 * caller logs it). */
int  slatdec_check_coords(const struct tensor *coords, const char *what, char *msg, size_t len);

/* The coordinate-dependent state of one voxel set: views into the arena given
 * to slatdec_geom_build, on the trunk's device, and the host table of the
 * attention groups (consecutive windows of a partition, slot order). */
struct slatdec_geom {
    int64_t       n;                /* N voxels */
    struct tensor coords;           /* (N, 4) I32 */
    struct tensor perm[2];          /* (N) I32: window partition, shift 0 and SLD_WINDOW / 2 */
    struct tensor roff[2];          /* (nwin + ngroups) I32: group k's window offsets,
                                     * relative to its first slot, at [gwin[k] + k,
                                     * gwin[k + 1] + k] (gwin[k + 1] - gwin[k] + 1 entries) */
    struct tensor iota;             /* (min(N, group rows)) I32: 0, 1, ... (a group's rows
                                     * are gathered in slot order); its length bounds
                                     * every group's tokens */
    int64_t       nwin[2];          /* non-empty windows */
    int           max_len[2];       /* longest window */
    double        sum_l2[2];        /* sum over windows of len^2 (attention cost) */
    int           ngroups[2];       /* attention groups */
    int32_t       gwin[2][SLD_MAX_WINDOWS + 1];   /* group k: windows [gwin[k], gwin[k + 1]) */
    int32_t       gslot[2][SLD_MAX_WINDOWS + 1];  /* group k: slots [gslot[k], gslot[k + 1]) */
};

/* Arena bytes slatdec_geom_build takes for N voxels with t's group size (its
 * plan mode; at least what slatdec_geom_build_rows takes for fewer rows). */
size_t slatdec_geom_bytes(const struct slatdec_trunk *t, int64_t n);
/* Partition checked coords (host I32 (N, 4)) for both shifts on the host,
 * group the windows (consecutive windows while a group holds at most
 * t's group_rows tokens) and put coords, partitions, group offsets and iota
 * into `a` (an arena on the trunk's device; ctx NULL on the host). The views
 * stay valid until `a` is released below its mark at the call. Plan mode (`a`
 * a planning arena, arena_plan_init): takes the buffers any N-voxel set needs
 * and reads nothing (coords may have NULL data). */
void   slatdec_geom_build(const struct slatdec_trunk *t, const struct op_ctx *ctx,
                          struct arena *a, const struct tensor *coords, struct slatdec_geom *g);
/* The same with groups of at most group_rows tokens (>= 1; a window longer
 * than that is a group alone, so the groups hold at most max(group_rows,
 * SLD_WINDOW^3) tokens, which must be within the forward's trunk group_rows):
 * the tests' many-group runs. */
void   slatdec_geom_build_rows(const struct op_ctx *ctx, struct arena *a,
                               const struct tensor *coords, int group_rows,
                               struct slatdec_geom *g);

/* Bytes of the activation arena slatdec_forward takes for N voxels (beyond
 * the caller's output): the region, the largest of the phases it is carved
 * into, sized by the carving code itself. */
size_t slatdec_act_bytes(const struct slatdec_trunk *t, int64_t n);

/* Optional host F32 copies of activations (the fixture's names). */
struct slatdec_taps {
    int    block;                   /* which block's taps below (-1: none) */
    float *input_layer;             /* (N, C) input_layer: before the APE */
    float *tokens_ape;              /* (N, C) tokens_ape: the input of blocks.0 */
    float *attn;                    /* (N, C) blocks.<block>.attn (to_out output) */
    float *mlp;                     /* (N, C) blocks.<block>.mlp (fc2 output) */
    float *block_out;               /* (N, C) blocks.<block> */
};

/* The trunk on feats (host F32 (N, in_ch) contiguous, rows in coords order):
 * x receives the output, (N, C) gemm_dt contiguous on the trunk's device
 * (allocated by the caller, outside `act`'s part used here). act: an arena on
 * the trunk's device with slatdec_act_bytes free; released to its mark on
 * return. ctx NULL on the host. taps may be NULL (tapping the attn / mlp
 * outputs runs those GEMMs unfused). Plan mode (act a planning arena): takes
 * the buffers, runs no op, reads nothing. */
void slatdec_forward(const struct slatdec_trunk *t, const struct op_ctx *ctx, struct arena *act,
                     const struct slatdec_geom *g, const struct tensor *feats, struct tensor *x,
                     const struct slatdec_taps *taps);

/* FLOPs (multiply-add = 2) of one forward on g: the GEMMs plus QK^T and P V
 * inside the windows (4 C len^2 per window and block). */
double slatdec_flops(const struct slatdec_trunk *t, const struct slatdec_geom *g);

#ifdef __cplusplus
}
#endif
#endif
