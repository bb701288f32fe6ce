/*
 * pose.h - the object's pose in the camera frame, decoded from the SS flow's
 * pose latents exactly as the official pose decoder does, and its application
 * to points, Gaussians and meshes (`sam3d export --placed`, the preview).
 *
 * Reference (sam-3d-objects @cf06676; spec generators §6, decoders §7.5):
 *   sam3d_objects/pipeline/inference_utils.py:49-68, 224-325   pose_decoder("ScaleShiftInvariant")
 *   sam3d_objects/data/dataset/tdfy/pose_target.py:25-85, 283-380   _broadcast_postcompose, ssi_to_metric
 *   sam3d_objects/data/dataset/tdfy/transforms_3d.py:20-44     compose / decompose_transform
 *   sam3d_objects/pipeline/inference_pipeline_pointmap.py:357-369  scale *= downsample_factor
 *   notebook/inference.py:255-312                              make_scene (placing the Gaussians)
 *   pytorch3d @75ebeeae (the pinned commit) transforms/rotation_conversions.py,
 *   transform3d.py: quaternion_to_matrix, matrix_to_quaternion (standardised,
 *   w >= 0), quaternion_multiply (standardised), Transform3d row-vector matrices.
 *
 * Decoding (every step as the reference, evaluated in double from the fp32
 * latents, rounded to fp32 at the end; tests/test_pose.c holds it to the
 * official decoder within 1e-6):
 *   a = r6 * STD6 + MEAN6;  b1 = normalize(a[0:3]);  b2 = normalize(a[3:6] - (b1.a[3:6]) b1)
 *   b3 = b1 x b2;  R0 = [b1 b2 b3] (columns);  q0 = matrix_to_quaternion(R0)
 *   M = Scale(exp(sc)) . Rotate(quaternion_to_matrix(q0)) . Translate(tr)
 *       . Scale(pointmap_scale) . Translate(pointmap_shift)          (4x4, row vectors)
 *   s_i = |row i of M[:3,:3]|;  rotation = matrix_to_quaternion(M[:3,:3] / s_i)
 *   translation = M[3, :3];  scale = mean(s_i) (three equal values) * downsample_factor
 * exp(translation_scale) is computed by the reference and not used.
 *
 * The pose maps a point p of the decoder's z-up object frame (splat.ply, the
 * mesh artifact's vertices) to the PyTorch3D camera frame (x left, y up, z
 * forward into the scene; the MoGe points rotated into it), as row vectors:
 *     p_cam = (scale * p) @ R + translation,   R = quaternion_to_matrix(rotation)
 */
#ifndef S3D_POSE_H
#define S3D_POSE_H

#include "asset.h"

#include <stdint.h>

/* The SS flow's pose outputs and the scene normalisation (ss_flow.safetensors,
 * depth.safetensors, ss_decode.safetensors; docs/formats.md). */
struct pose_latents {
    float r6[6];                /* 6drotation_normalized (1, 1, 6) */
    float scale[3];             /* scale (1, 1, 3): log of the object scale */
    float translation[3];       /* translation (1, 1, 3) */
    float translation_scale;    /* translation_scale (1, 1, 1): unused by the decoder */
    float pointmap_scale[3];    /* (1, 3) */
    float pointmap_shift[3];    /* (1, 3) */
    int   downsample_factor;    /* ss_decode's (1) I32: 1 or 2 */
};

/* What the official pipeline returns as `rotation`, `translation`, `scale`. */
struct pose {
    float rotation[4];          /* quaternion w, x, y, z; w >= 0 */
    float translation[3];
    float scale[3];             /* three equal values */
};

void pose_decode(const struct pose_latents *in, struct pose *out);

/* pytorch3d's conversions, in double: R is row-major, R[3*i + j]. */
void pose_quat_to_matrix(const double q[4], double R[9]);
void pose_matrix_to_quat(const double R[9], double q[4]);          /* w >= 0 */
void pose_quat_multiply(const double a[4], const double b[4], double out[4]);   /* w >= 0 */

/* n points (n, 3) of the object frame to the camera frame (in place):
 * p = (scale * p) @ R + translation. */
void pose_apply_points(const struct pose *p, float *xyz, int64_t n);

/* The Gaussians placed in the scene as the official make_scene does: xyz as
 * pose_apply_points; rotation = conj(q) * normalize(rotation) (standardised);
 * scale = log(max(scale_pose * exp(scale), 1.1 * min_kernel * scale_pose)),
 * min_kernel the decoder's 3d_filter_kernel_size; f_dc and opacity unchanged.
 * The reference writes these back through from_xyz / from_rotation /
 * from_scaling and save_ply reads them out again; we skip that round trip
 * (its rounding is below 1e-6). In place. */
void pose_place_gaussians(const struct pose *p, struct gaussians *g, double min_kernel);

/* pose.json: rotation, translation, scale, the frame, the downsample factor
 * (docs/formats.md). Returns 0 or S3D_EIO (logged). */
int pose_write_json(int dirfd, const char *name, const char *label, const struct pose *p,
                    int downsample_factor);

#endif
