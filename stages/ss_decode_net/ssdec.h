/*
 * ssdec.h - the sparse-structure (SS) decoder of SAM 3D Objects
 * (`SparseStructureDecoder`, a dense 3-D conv net: shape latent -> occupancy
 * logits) and the host-side post-processing that turns logits into the voxel
 * coordinates the SLAT stages run on.
 *
 * Reference (sam-3d-objects @cf06676, sam3d_objects/):
 *   model/backbone/tdfy_dit/models/sparse_structure_vae.py:27-58     ResBlock3d
 *   model/backbone/tdfy_dit/models/sparse_structure_vae.py:86-113    UpsampleBlock3d (conv + pixel shuffle)
 *   model/backbone/tdfy_dit/models/sparse_structure_vae.py:226-324   decoder, forward
 *   model/backbone/tdfy_dit/modules/norm.py:6-26                     ChannelLayerNorm32
 *   model/backbone/tdfy_dit/modules/spatial.py:5-14                  pixel_shuffle_3d
 *   pipeline/inference_pipeline.py:695-716                            latent view, threshold, prune, downsample
 *   pipeline/inference_utils.py:367-477                               prune_sparse_structure, downsample_sparse_structure
 *
 * Network: input_layer Conv3d(Lc -> C0) -> middle_block (ResBlock3d x n) ->
 * blocks (ResBlock3d per channel level, UpsampleBlock3d between levels) ->
 * out_layer (ChannelLayerNorm32, SiLU, Conv3d(C_last -> 1)). ResBlock3d:
 * h = conv2(SiLU(LN2(conv1(SiLU(LN1(x)))))) + x; every conv 3x3x3 padding 1
 * with bias; LayerNorm over channels at each voxel, eps 1e-5.
 * Config from the weights (ssdec_load): widths, block kinds and counts from
 * the state dict's names and shapes (released channels [512, 128, 32], 2
 * middle + 8 blocks, latent 8; the tiny fixture [16, 8, 8]).
 *
 * Layout: activations are channels-last grids (1, R, R, R, C) (kernels/ops_conv.h),
 * so the per-voxel LayerNorm is op_layernorm over the last dim, and the
 * latent (1, T, 8) - token t = (d*R + h)*R + w, the pipeline's
 * permute(0,2,1).view(1, 8, R, R, R) - already is the (1, R, R, R, 8) grid.
 *
 * Precision (conv_dt):
 * - F16 (GPU default) follows the pipeline, which runs the decoder under
 *   torch.autocast(fp16) (spec decoders.md §2.2): every conv in fp16 (input
 *   rounded to fp16, fp16 weights and bias, fp32 accumulation, the conv and
 *   the bias add each rounded to fp16 as PyTorch's cuDNN path does);
 *   LayerNorm in fp32, its output in the dtype of its input; SiLU in the
 *   dtype of its input. The stream after input_layer is cast to fp32
 *   (h.type(self.dtype), use_fp16 False), so the middle blocks and the blocks
 *   before the first upsample add their fp16 conv output into an fp32
 *   residual; the upsample's conv output is fp16 and everything after it is
 *   fp16 (fp16 residual adds); out_layer runs on h.type(fp32): LayerNorm and
 *   SiLU fp32, conv fp16, fp16 logits.
 * - F32 (--precision fp32, and the CPU reference): everything fp32.
 * Both run on either device (CPU ops for DEVICE_HOST); the tests run the F16
 * path on the host too.
 */
#ifndef S3D_SSDEC_H
#define S3D_SSDEC_H

#include "arena.h"
#include "ops.h"
#include "tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SSDEC_MAX_MIDDLE   8
#define SSDEC_MAX_BLOCKS   32
#define SSDEC_LN_EPS       1e-5f            /* nn.LayerNorm default (norm.py:6-26) */
#define SSDEC_MAX_LATENT_R 64               /* largest latent grid side accepted */
#define SSDEC_CUDA_WS      ((size_t)64 << 20)  /* cuDNN workspace headroom in act */

/* One ResBlock3d (channels unchanged, identity skip). */
struct ssdec_res {
    struct tensor n1_w, n1_b;       /* (C) F32: norm1 */
    struct tensor c1_w;             /* (C, 3, 3, 3, C) conv_dt, packed from (C, C, 3, 3, 3) */
    struct tensor c1_b;             /* (C) conv_dt */
    struct tensor n2_w, n2_b;       /* (C) F32: norm2 */
    struct tensor c2_w;             /* (C, 3, 3, 3, C) conv_dt */
    struct tensor c2_b;             /* (C) conv_dt */
};

/* One entry of `blocks`: a ResBlock3d, or an UpsampleBlock3d (conv to 8*cout
 * channels, then pixel shuffle x2). */
struct ssdec_block {
    bool             up;            /* UpsampleBlock3d */
    int              cin, cout;     /* channels in / out (equal for a ResBlock3d) */
    struct ssdec_res r;             /* when !up */
    struct tensor    up_w;          /* (8*cout, 3, 3, 3, cin) conv_dt, when up */
    struct tensor    up_b;          /* (8*cout) conv_dt */
};

struct ssdec_config {
    int latent_ch;                  /* Lc: input channels of input_layer (8) */
    int out_ch;                     /* channels of the logits (1) */
    int ch0;                        /* C0: width of input_layer and middle_block */
    int n_middle;                   /* ResBlocks in middle_block (2) */
    int n_blocks;                   /* entries of blocks (8) */
    int n_up;                       /* UpsampleBlocks among them (2): output side = R * 2^n_up */
    int ch_last;                    /* width of out_layer's input (32) */
};

struct ssdec_model {
    struct ssdec_config cfg;
    enum dtype          conv_dt;    /* F16 or F32 */
    enum device         device;
    struct tensor       in_w;       /* (C0, 3, 3, 3, Lc) conv_dt */
    struct tensor       in_b;       /* (C0) conv_dt */
    struct ssdec_res    middle[SSDEC_MAX_MIDDLE];
    struct ssdec_block  blocks[SSDEC_MAX_BLOCKS];
    struct tensor       out_n_w;    /* (C_last) F32: out_layer.0 */
    struct tensor       out_n_b;    /* (C_last) F32 */
    struct tensor       out_w;      /* (out_ch, 3, 3, 3, C_last) conv_dt: out_layer.2 */
    struct tensor       out_b;      /* (out_ch) conv_dt */
    struct arena        weights;    /* every tensor above, exactly sized */
};

/* Open path ("FILE" or "FILE:KEY"; the official ss_decoder.ckpt is a flat
 * state dict), detect the config, bind every tensor, pack the conv weights to
 * the channels-last layout in conv_dt (F16 or F32), norms in F32, and put
 * them on dev (DEVICE_CUDA or DEVICE_HOST). Returns 0, or a negative s3d_err
 * already logged with a HINT (not an SS decoder, missing or mis-shaped
 * tensor, no memory); on failure nothing stays allocated. */
int  ssdec_load(struct ssdec_model *m, const char *path, enum device dev, enum dtype conv_dt);
void ssdec_free(struct ssdec_model *m);      /* NULL-safe, idempotent */

/* Side of the latent grid for a (1, T, Lc) latent: the integer cube root of
 * T, or 0 when T is not a cube in [1, SSDEC_MAX_LATENT_R^3]. */
int  ssdec_latent_side(int64_t T);
/* Side of the logits grid for latent side r: r * 2^n_up. */
int  ssdec_out_side(const struct ssdec_model *m, int r);
/* Bytes of the model's activation arena that ssdec_forward takes for latent
 * side r (every buffer, plus SSDEC_CUDA_WS of cuDNN workspace on CUDA). */
size_t ssdec_act_bytes(const struct ssdec_model *m, int r);

/* Check a latent from a request: host F32 contiguous (1, T, Lc) with T a
 * cube (ssdec_latent_side). 0, or S3D_ENOTFOUND (NULL) / S3D_ESHAPE with one
 * line naming `name`, got vs expected and a HINT, written to err (err_len
 * bytes) when err is not NULL, else logged. */
int  ssdec_check_latent(const struct ssdec_model *m, const struct tensor *lat, const char *name,
                        char *err, size_t err_len);

/* Called by ssdec_forward after each module with the module's output:
 * name as in the reference's state dict ("input_layer", "middle_block.0",
 * "blocks.3"), act a host F32 contiguous channels-last view (1, R, R, R, C),
 * valid during the call. */
typedef void (*ssdec_tap_fn)(void *user, const char *name, const struct tensor *act);

/* One decoder pass: lat a checked host latent (1, T, Lc), T = r^3; logits
 * host F32 contiguous (1, R, R, R, out_ch) (channels-last; with out_ch 1 the
 * same bytes as the reference's (1, 1, R, R, R)), R = ssdec_out_side(m, r),
 * receives the logits (fp16 values with conv_dt F16). act: the model's
 * activation arena (device for DEVICE_CUDA, host otherwise) with
 * ssdec_act_bytes(m, r) free; released to its mark at the call before
 * returning. ctx NULL on the host. tap may be NULL (else called after
 * input_layer and after every middle block and block; on CUDA each call
 * synchronises and copies the module's output down). */
void ssdec_forward(const struct ssdec_model *m, const struct op_ctx *ctx, struct arena *act,
                   const struct tensor *lat, struct tensor *logits, ssdec_tap_fn tap, void *user);

// ----------------------------------------------------------------------------
// post-processing (host, int32 coords (b, x, y, z); ssdec_post.c)

/* coords = argwhere(logits > 0) of a (1, 1, R, R, R) grid given as R^3
 * floats in (x, y, z) row-major order (the channels-last logits with one
 * channel are exactly that), as rows (0, x, y, z) in lexicographic order -
 * torch.argwhere order (pipeline L701). Strict > 0: NaN and 0 are empty.
 * coords may be NULL (count only); else room for the count. Returns N0. */
int64_t ssdec_coords(const float *logits, int R, int32_t *coords);

/* prune_sparse_structure(coords, max_neighbor_axes_dist=dist)
 * (inference_utils.py:367-409): with the occupancy of the coords' bounding
 * box (batch column ignored, as the reference ignores it) and zero padding,
 * keep a voxel iff fewer than (2 dist + 1)^3 cells of its (2 dist + 1)^3
 * neighbourhood are occupied (the interior is dropped), in input order.
 * in (n, 4) with n >= 1, no duplicate rows; out room for n rows (may not
 * alias in); dist >= 1. Returns the rows kept. */
int64_t ssdec_prune(const int32_t *in, int64_t n, int dist, int32_t *out);

/* downsample_sparse_structure(coords, max_coords, factor)
 * (inference_utils.py:412-477). n <= max_coords: out = in, returns n and
 * *factor_out = 1. Else, per axis in float32 as torch computes it:
 * size = max - min + 1, target = size / factor, offset = (size - target) / 2,
 * tmin = min + offset, tmax = min + offset + target - 1,
 * u = round_half_even((p - min) / (max - min) * (target - 1) + tmin) clamped to
 * [int(tmin), int(tmax)] (int() truncates; an axis with max == min, where the
 * reference divides 0 by 0, gives int(tmin), torch's CPU result); then unique
 * rows sorted lexicographically (torch.unique(dim=0)), and *factor_out = factor.
 * If more than max_coords rows remain, the reference keeps a torch.randperm
 * subset; we keep the first max_coords of a Fisher-Yates shuffle seeded with
 * `seed` (splitmix64), re-sorted - deterministic, not torch's draw. This
 * cannot happen at the pipeline's setting (64^3 grid, max 42000: a halved
 * box holds at most 32^3 = 32768 cells). in (n, 4), n >= 1; out room for n
 * rows (may not alias in). Returns the rows written. */
int64_t ssdec_downsample(const int32_t *in, int64_t n, int64_t max_coords, int factor,
                         uint64_t seed, int32_t *out, int *factor_out);

#ifdef __cplusplus
}
#endif
#endif
