/*
 * preview.h - preview.png: the Gaussians rendered as splats, so a user sees
 * what came out without a viewer. Two panels side by side: the object placed
 * with the pose and seen through the input camera (the depth stage's
 * intrinsics), and the same scene seen from the side (the camera orbited 90
 * degrees about the vertical axis through the object's origin, pose.h's
 * translation).
 *
 * Each Gaussian is splatted as 3D Gaussian Splatting rasterises it, without
 * the spherical harmonics beyond degree 0: the covariance R S^2 R^T of the
 * object frame (R from the normalised rotation, S = exp(scale)) is placed
 * with the pose (scale^2 R_pose^T Sigma R_pose, row-vector pose of pose.h),
 * projected with the pinhole's Jacobian, widened by 0.3 px^2 (the 3DGS
 * low-pass); alpha = min(0.99, sigmoid(opacity) * exp(-d^T Sigma2^-1 d / 2)),
 * dropped below 1/255 (which bounds each splat's box; at most 128 px from its
 * centre); colour = clamp(0.5 + C0 * f_dc, 0, 1) with C0 = 0.28209479 (SH
 * degree 0). Splats are sorted by depth (radix sort) and composited front to
 * back, C += T a c, T *= 1 - a, a pixel taking nothing more once T < 1/255
 * (the image of back-to-front "over" compositing); what is left of T shows
 * a dark grey background. The two panels are drawn at once (the side one on a
 * thread of its own); in each, the projection runs over S3D_THREADS threads
 * (the online cores by default) by Gaussians, the compositing by bands of rows
 * in the same per-pixel order: the image is the same bytes for any thread count.
 *
 * The camera follows the PyTorch3D frame of pose.h (x left, y up, z forward):
 * pixel u = fx * (-x / z) + cx, v = fy * (-y / z) + cy, with the normalised
 * intrinsics of depth.safetensors (fx, cx relative to the width; fy, cy to
 * the height) scaled to the panel.
 * Test: tests/test_preview.c.
 */
#ifndef S3D_PREVIEW_H
#define S3D_PREVIEW_H

#include "asset.h"
#include "image.h"
#include "pose.h"

#include <stdbool.h>

#define PREVIEW_SIDE       512         /* default longer side of one panel, pixels */
#define PREVIEW_BACKGROUND 40          /* grey level of empty pixels */

/* Render g (object frame, as gs_decode writes it) placed with p through the
 * camera K (3x3 row-major normalised intrinsics) of an image img_w x img_h,
 * each panel scaled so its longer side is `side` pixels. out: a malloc'ed RGB
 * image (2 * panel width, panel height); free with image_free. Returns 0, or
 * S3D_EINVAL (bad intrinsics or sizes, logged) or S3D_ENOMEM. */
int preview_render(const struct gaussians *g, const struct pose *p, const float K[9],
                   int img_w, int img_h, int side, struct image *out);

/* The camera the preview draws through: K when its focal lengths are positive and finite and
 * its principal point finite, else (returns true) a stand-in with a 60-degree horizontal
 * field of view, square pixels and the principal point at the centre of an img_w x img_h
 * image. A depth stage run on random weights, or a degenerate point map, can solve a
 * negative focal; the splat and mesh are still worth a look, so the preview must not fail
 * the run for it. out: normalised 3x3 row-major intrinsics, as K. */
bool preview_camera(const float K[9], int img_w, int img_h, float out[9]);

#endif
