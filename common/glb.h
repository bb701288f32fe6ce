/*
 * glb.h - mesh.glb: a binary glTF 2.0 file holding one vertex-coloured
 * triangle mesh, as the official API's mesh reaches the user (to_glb with
 * the public settings, then trimesh's GLB export).
 *
 * Reference (sam-3d-objects @cf06676, spec decoders §7.3):
 *   TD/utils/postprocessing_utils.py:585-682 to_glb: vertices @ [[1,0,0],[0,0,-1],[0,1,0]]
 *     (z-up to y-up: (x, y, z) -> (x, z, -y), in float64, stored as float32), faces in
 *     order with no processing (process=False: nothing merged, unreferenced vertices
 *     kept), colours vertex_attrs[:, :3]
 *   trimesh visual/color.py to_rgba: RGBA8 = round-half-even(clip(255 * c, 0, 255)) in
 *     float32, non-finite -> 0, alpha 255
 *   trimesh exchange/gltf.py: one buffer, views in the order indices (uint32 SCALAR),
 *     POSITION (float32 VEC3, min/max), COLOR_0 (uint8 normalised VEC4); mode 4
 * (TD = sam3d_objects/model/backbone/tdfy_dit.)
 *
 * Why our own writer rather than a vendored one (cgltf): the file is one
 * mesh with three accessors; the container (12-byte header, a JSON chunk
 * padded with spaces and a BIN chunk padded with zeros to 4 bytes) is about
 * 150 lines here, while cgltf's writer is a 7,000-line header whose parsing
 * half we would carry unused. tests/test_glb.c validates the structure (chunk
 * lengths and alignment, accessor bounds and counts, buffer view ranges,
 * index range, POSITION min/max); tests/test_outputs_py.sh loads the file with
 * pygltflib and trimesh and compares it with trimesh's export of the official
 * to_glb mesh (tests/fixtures/outputs_tiny/mesh.glb): the BIN chunk is
 * byte-identical.
 */
#ifndef S3D_GLB_H
#define S3D_GLB_H

#include "asset.h"

#include <stdint.h>

/* to_glb's axis change: out[v] = in[v] @ [[1,0,0],[0,0,-1],[0,1,0]] = (x, z, -y),
 * evaluated as numpy does (float64 sums of the products, so a zero keeps the
 * sign numpy gives it), stored as float32. in and out may be the same. */
void glb_zup_to_yup(const float *in, float *out, int64_t n);

/* trimesh's to_rgba of n float RGB colours in [0, 1] (n, 3) -> RGBA8 (n, 4). */
void glb_colors_rgba8(const float *rgb, uint8_t *rgba, int64_t n);

/* Write m as a GLB file named name in dirfd (through outfile.h). m must hold
 * at least one face, finite positions and face indices below n_vertices (the
 * caller checks what came from a file). Returns 0, S3D_EIO (logged) or
 * S3D_EINVAL (over the 4 GiB a GLB can hold; logged with a HINT). */
int glb_write_mesh(int dirfd, const char *name, const char *label, const struct tri_mesh *m);

#endif
