/*
 * ply.h - binary little-endian PLY writers: the Gaussian splat (splat.ply) in
 * exactly the layout of the official Gaussian.save_ply, and a vertex-coloured
 * mesh (mesh.ply, on request).
 *
 * splat.ply (sam-3d-objects sam3d_objects/model/backbone/tdfy_dit/representations/
 * gaussian/gaussian_model.py:124-161 save_ply, written through plyfile: native
 * byte order, no comment, 'f4' = "float"; docs/formats.md). The header is these
 * lines, each ending in "\n":
 *     ply
 *     format binary_little_endian 1.0
 *     element vertex <M>
 *     property float x | y | z | nx | ny | nz | f_dc_0 | f_dc_1 | f_dc_2 | opacity |
 *                    scale_0 | scale_1 | scale_2 | rot_0 | rot_1 | rot_2 | rot_3
 *     end_header
 * (one "property float NAME" line per name, in that order), then M records of
 * 17 little-endian float32 (68 bytes, no padding): xyz, three zero normals,
 * f_dc, opacity, scale, rotation, the struct gaussians values as they are.
 *
 * mesh.ply (no official counterpart; spec decoders §7.7 (b), the layout trimesh
 * writes): "element vertex V" with float x y z and uchar red green blue alpha,
 * "element face F" with "property list uchar int vertex_indices", records
 * 16 bytes a vertex and 13 bytes a face (the count 3, then three int32).
 *
 * Both go through outfile.h (a temporary renamed over the name when complete).
 * Test: tests/test_ply.c (bytes against the official writer's file).
 */
#ifndef S3D_PLY_H
#define S3D_PLY_H

#include "asset.h"

/* Write g as name in dirfd (label names it in messages). Returns 0 or S3D_EIO
 * (logged). */
int ply_write_gaussians(int dirfd, const char *name, const char *label,
                        const struct gaussians *g);
/* Write m as name in dirfd. Returns 0 or S3D_EIO (logged). */
int ply_write_mesh(int dirfd, const char *name, const char *label, const struct tri_mesh *m);

#endif
