/*
 * gsdec.h - the SLAT Gaussian decoder of SAM 3D Objects
 * (`SLatGaussianDecoderTdfyWrapper`): structured latent -> the arrays that
 * Gaussian.save_ply writes. The trunk is stages/slat_dec_net/ (shared with
 * the mesh decoder); the head is here.
 *
 * Reference (sam-3d-objects @cf06676, TD = sam3d_objects/model/backbone/tdfy_dit/):
 *   TD/models/structured_latent_vae/decoder_gs.py:15-157  SLatGaussianDecoder
 *   TD/models/structured_latent_vae/base.py:127-134       the trunk (slatdec.h)
 *   TD/representations/gaussian/gaussian_model.py         activations, save_ply (gs_head.h)
 *   PL/inference_pipeline.py:589-615                      decode_slat (no autocast)
 * Spec: spec decoders.md §3-§5, §7.2.
 *
 * Forward (decoder_gs.py:152-157): h = trunk(x); h.type(fp32);
 * F.layer_norm(h, [C]) (no affine, eps 1e-5, fp32); out_layer (fp32 Linear
 * C -> 14G); to_representation + the save_ply transforms (gs_head.h).
 * G (32 in slat_decoder_gs.ckpt, 4 in slat_decoder_gs_4.ckpt) comes from the
 * stored offset_perturbation buffer (G, 3), checked against out_layer (14G).
 *
 * Outputs, for M = G * N Gaussians in the reference's order (voxel-major,
 * v * G + g), F32: xyz (M, 3) = get_xyz (z-up object frame, in [-0.5, 0.5]^3
 * up to the 0.75-voxel offsets), f_dc (M, 3), opacity (M, 1) = logit of
 * get_opacity (+-inf when it saturates), scale (M, 3) = log(get_scaling),
 * rotation (M, 4) = _rotation + (1, 0, 0, 0) (wxyz, not normalised): the
 * values of the official save_ply records (docs/formats.md).
 *
 * Precision: the trunk's (slatdec.h); the head always fp32 as the reference
 * (LayerNorm on the fp16 trunk output converted to fp32, fp32 out_layer
 * without TF32, fp32 transforms). The head runs in row chunks of
 * GSD_HEAD_ROWS voxels (LN, GEMM, transform, download), so its device memory
 * does not grow with N beyond the trunk's.
 */
#ifndef S3D_GSDEC_H
#define S3D_GSDEC_H

#include "arena.h"
#include "gs_head.h"
#include "ops.h"
#include "slat_dec_net/slatdec.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GSD_LN_EPS    1e-5f         /* F.layer_norm default (decoder_gs.py:155) */
#define GSD_HEAD_ROWS 2048          /* voxels per head chunk (13.6 MB fp32 at G = 32: within
                                     * the trunk's region, slatdec.h "Memory") */
#define GSD_MAX_G     1024

struct gsdec_model {
    struct slatdec_trunk trunk;
    int                  G;         /* Gaussians per voxel */
    struct tensor        out_w;     /* (14G, C) F32: out_layer */
    struct tensor        out_b;     /* (14G) F32 */
    struct tensor        perturb;   /* (G, 3) F32: offset_perturbation */
    struct arena         weights;   /* every bound tensor */
    enum device          device;
};

/* Open a Gaussian decoder checkpoint (a flat state dict, as released), detect
 * the trunk and G, bind and upload to dev with the trunk's GEMMs in gemm_dt
 * (F16 or F32; the head stays F32). 0, or a negative s3d_err already logged
 * (not a Gaussian decoder, inconsistent shapes, no memory); nothing stays
 * allocated on failure. */
int  gsdec_load(struct gsdec_model *m, const char *path, enum device dev, enum dtype gemm_dt);
void gsdec_free(struct gsdec_model *m);      /* NULL-safe, idempotent */

/* Check the inputs of one request: coords (host I32 (N, 4), see
 * slatdec_check_coords) and feats (host F32 (N, latent channels)). 0, or
 * S3D_ESHAPE with one line naming the input and a HINT in msg. */
int  gsdec_check_inputs(const struct gsdec_model *m, const struct tensor *coords,
                        const struct tensor *feats, char *msg, size_t len);

/* Bytes of the activation arena gsdec_forward takes for N voxels (device
 * arena on CUDA, host arena on the CPU), the op_ctx workspace not included:
 * the high-water mark of gsdec_forward in plan mode. */
size_t gsdec_act_bytes(const struct gsdec_model *m, int64_t n);

/* Host F32 outputs of M = G N Gaussians, filled by gsdec_forward. */
struct gsdec_out {
    float *xyz;                     /* (M, 3) */
    float *f_dc;                    /* (M, 3) */
    float *opacity;                 /* (M, 1) */
    float *scale;                   /* (M, 3) */
    float *rotation;                /* (M, 4) */
};

/* Optional taps: the trunk's, plus the head's (host F32, fixture names). */
struct gsdec_taps {
    struct slatdec_taps trunk;
    float              *head_ln;    /* (N, C) head_ln */
    float              *out_layer;  /* (N, 14G) out_layer */
};

/* What the last forward cost: wall ms per part (with ctx, after synchronising
 * the stream) and FLOPs (multiply-add = 2: the trunk's GEMMs and windowed
 * attention, the head's GEMM). */
struct gsdec_times {
    double geom, trunk, head;       /* ms */
    double flops;
    int64_t nwin[2];                /* windows of the two partitions */
    int     max_len[2];             /* their longest */
};

/* Decode checked inputs (gsdec_check_inputs) into out. act: an arena on the
 * model's device with gsdec_act_bytes(N) free, released to its mark on
 * return; ctx NULL on the host. taps and times may be NULL. Plan mode (act a
 * planning arena, arena_plan_init): takes the buffers, runs no op, reads no
 * input, writes no output (gsdec_act_bytes). */
void gsdec_forward(const struct gsdec_model *m, const struct op_ctx *ctx, struct arena *act,
                   const struct tensor *coords, const struct tensor *feats,
                   const struct gsdec_out *out, const struct gsdec_taps *taps,
                   struct gsdec_times *times);

#ifdef __cplusplus
}
#endif
#endif
