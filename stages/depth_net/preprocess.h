/*
 * preprocess.h - the official SAM 3D input preprocessing, shared by the depth
 * and cond stages: RGBA merge, object-centric point-map normalisation, crop
 * around the mask (x1.2), pad to a centred square, resize (antialiased bilinear
 * for images, nearest for masks and point maps).
 *
 * Reference: .ref/sam-3d-objects (cf06676) driven by the released
 * pipeline.yaml (checkpoints/pipeline.yaml:22-88 of the released configs). Outputs equal the
 * official CPU results bit for bit (tests/test_preprocess.c against
 * tools/ref/dump_preprocess.py), including ATen's AVX2 accumulation order.
 *
 * Everything is float32 on the host; planes are CHW row-major.
 */
#ifndef S3D_PREPROCESS_H
#define S3D_PREPROCESS_H

#include "image.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PREP_SIZE            518    /* torchvision Resize(518) in both preprocessors */
#define PREP_BOX_SIZE_FACTOR 1.2f   /* crop_around_mask_with_padding(box_size_factor=1.2) */

/* Result of prep_run(). Every array is malloc'ed; prep_out_free() releases them. */
struct prep_out {
    int    size;               /* S: output side */
    float *image;              /* (3, S, S) object crop, background kept, [0, 1] */
    float *mask;               /* (1, S, S) crop of the mask, {0, 1} */
    float *rgb_image;          /* (3, S, S) whole image zero-padded to a square */
    float *rgb_image_mask;     /* (1, S, S) whole mask padded */
    float *pointmap;           /* (3, S, S) normalised crop, NaN invalid; NULL without input map */
    float *rgb_pointmap;       /* (3, S, S) whole normalised map, zero-padded; NULL likewise */
    float  pointmap_scale[3];  /* (3) s, s, s: median L-inf distance to the object median */
    float  pointmap_shift[3];  /* (3) per-axis median of the object's valid points */
    int    bbox[4];            /* crop box x0, y0, x1, y1 (exclusive end; may leave the image) */
};

/* SS preprocessor (pointmap != NULL) or SLAT preprocessor (pointmap == NULL; its
 * four image/mask outputs equal the SS ones, spec §5.6).
 *   rgb:      (H, W, 3) uint8 image (image_load_rgb)
 *   mask:     (H, W, 1) 0/1 mask of the same size (image_load_mask)
 *   pointmap: (3, H, W) float32 in PyTorch3D camera axes, NaN = invalid, or NULL
 *   size:     output side (PREP_SIZE in the release)
 * Returns 0, S3D_ESHAPE (sizes differ), S3D_EINVAL (object bounding box narrower
 * than 2 pixels: the reference raises BoundingBoxError) or S3D_ENOMEM; logged.
 * out is zeroed on failure. */
int  prep_run(const struct image *rgb, const struct image *mask, const float *pointmap,
              int size, struct prep_out *out);
/* prep_run with the point map as (H, W, 3) (the depth stage's `points`), read
 * in place: the same outputs as prep_run on its (3, H, W) transpose. */
int  prep_run_hwc(const struct image *rgb, const struct image *mask, const float *points,
                  int size, struct prep_out *out);
void prep_out_free(struct prep_out *out);   /* NULL-safe, idempotent */

// ---------------------------------------------------------------------------
// building blocks (exposed for tests and for stages that need one step)

/* image_to_float + get_mask: rgb_chw (3, H, W) = (float)(v / 255.0); alpha (H, W)
 * = mask * 255 / 255, i.e. exactly 0 or 1 (notebook/inference.py:94-99,
 * PL/inference_pipeline.py:788-792). */
void prep_rgba_to_float(const struct image *rgb, const struct image *mask, float *rgb_chw,
                        float *alpha);

/* compute_mask_bbox (TDFY/img_and_mask_transforms.py:335-389) on alpha != 0:
 * bbox = x0, y0, x1, y1 of the square crop. Returns 0, or S3D_EINVAL when the
 * mask is empty or its box is narrower than 2 pixels (logged). */
int  prep_mask_bbox(const float *alpha, int h, int w, float box_size_factor, int bbox[4]);

/* ObjectCentricSSI._compute_scale_and_shift (use_scene_scale, scale_factor 1):
 * shift = nanmedian of pointmap over alpha > 0.5, scale = nanmedian over all
 * pixels of max_c |p_c - shift_c|. pointmap (3, h, w). Returns false (and scale
 * 1, shift 0, as the reference) when no selected coordinate is finite. */
bool prep_ssi_stats(const float *pointmap, const float *alpha, int h, int w,
                    float scale[3], float shift[3]);

/* _apply_metric_to_ssi: dst_c = p_c * (1/s) + (-shift_c * (1/s)) per point, NaN
 * in any coordinate makes all three NaN. src, dst (3, n); may alias. */
void prep_ssi_apply(const float *src, float *dst, int64_t n, const float scale[3],
                    const float shift[3]);

/* Lower median of the non-NaN values of x[0..n) (torch.nanmedian); NaN when none.
 * Reorders x. */
float prep_nanmedian(float *x, int64_t n);

/* A virtual plane built by crop-then-pad: virtual pixel (vy, vx) is crop pixel
 * (vy - py, vx - px); crop pixels outside [0, ch) x [0, cw) are padding; crop
 * pixel (cy, cx) is source pixel (cy + y0, cx + x0), or 0 outside the source
 * (torchvision crop fills with 0). */
struct prep_window {
    int vh, vw;   /* virtual plane size */
    int py, px;   /* where the crop starts in the virtual plane */
    int ch, cw;   /* crop size */
    int y0, x0;   /* source pixel of crop pixel (0, 0); may be negative */
};

/* Resample one (h, w) channel seen through win to (oh, ow).
 * prep_resize_aa: F.interpolate(bilinear, antialias=True, align_corners=False),
 * ATen CPU order (W pass, then H pass, fp32 intermediate); padding is 0.
 * prep_resize_nearest: legacy 'nearest' (floor(i * (float)in / out)); padding
 * is pad (NaN for the cropped point map, 0 elsewhere). */
void prep_resize_aa(const float *src, int h, int w, const struct prep_window *win, float *dst,
                    int oh, int ow);
void prep_resize_nearest(const float *src, int h, int w, const struct prep_window *win, float pad,
                         float *dst, int oh, int ow);

#ifdef __cplusplus
}
#endif
#endif
