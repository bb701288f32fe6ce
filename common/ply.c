/*
 * ply.c - PLY writers for the Gaussian splat and the coloured mesh. See ply.h.
 */
#include "ply.h"

#include "err.h"
#include "outfile.h"

#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ply.c writes records from memory: a little-endian host is assumed"
#endif

/* save_ply's attribute names (construct_list_of_attributes with SH degree 0) */
static const char *const splat_props[17] = {
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
};

int ply_write_gaussians(int dirfd, const char *name, const char *label,
                        const struct gaussians *g)
{
    enum { CHUNK = 4096 };
    struct outfile *f = malloc(sizeof(*f));
    float *rec = malloc(sizeof(float) * 17 * CHUNK);
    int rc = S3D_EIO;

    if (!f || !rec || outfile_open(f, dirfd, name, label) != 0)
        goto out_free;
    outfile_printf(f, "ply\nformat binary_little_endian 1.0\nelement vertex %lld\n",
                   (long long)g->n);
    for (int i = 0; i < 17; i++)
        outfile_printf(f, "property float %s\n", splat_props[i]);
    outfile_printf(f, "end_header\n");
    for (int64_t m0 = 0; m0 < g->n; m0 += CHUNK) {
        int64_t k = g->n - m0 < CHUNK ? g->n - m0 : CHUNK;

        for (int64_t j = 0; j < k; j++) {
            int64_t m = m0 + j;
            float *r = rec + 17 * j;

            memcpy(r, g->xyz + 3 * m, 3 * sizeof(float));
            r[3] = r[4] = r[5] = 0.0f;                     /* normals */
            memcpy(r + 6, g->f_dc + 3 * m, 3 * sizeof(float));
            r[9] = g->opacity[m];
            memcpy(r + 10, g->scale + 3 * m, 3 * sizeof(float));
            memcpy(r + 13, g->rotation + 4 * m, 4 * sizeof(float));
        }
        outfile_write(f, rec, (size_t)k * 17 * sizeof(float));
    }
    rc = outfile_commit(f);
out_free:
    free(rec);
    free(f);
    return rc;
}

int ply_write_mesh(int dirfd, const char *name, const char *label, const struct tri_mesh *m)
{
    struct outfile *f = malloc(sizeof(*f));
    int rc = S3D_EIO;

    if (!f || outfile_open(f, dirfd, name, label) != 0)
        goto out_free;
    outfile_printf(f, "ply\nformat binary_little_endian 1.0\nelement vertex %lld\n"
                   "property float x\nproperty float y\nproperty float z\n"
                   "property uchar red\nproperty uchar green\nproperty uchar blue\n"
                   "property uchar alpha\nelement face %lld\n"
                   "property list uchar int vertex_indices\nend_header\n",
                   (long long)m->n_vertices, (long long)m->n_faces);
    for (int64_t v = 0; v < m->n_vertices; v++) {
        unsigned char r[16];

        memcpy(r, m->positions + 3 * v, 12);
        memcpy(r + 12, m->colors + 4 * v, 4);
        outfile_write(f, r, sizeof(r));
    }
    for (int64_t i = 0; i < m->n_faces; i++) {
        unsigned char r[13];

        r[0] = 3;
        memcpy(r + 1, m->faces + 3 * i, 12);              /* uint32 < 2^31: as int32 */
        outfile_write(f, r, sizeof(r));
    }
    rc = outfile_commit(f);
out_free:
    free(f);
    return rc;
}
