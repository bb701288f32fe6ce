/*
 * glb.c - the GLB container for one vertex-coloured triangle mesh, and the
 * to_glb conversions (axis change, RGBA8 colours). See glb.h.
 */
#include "glb.h"

#include "err.h"
#include "log.h"
#include "outfile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "glb.c writes buffers from memory: a little-endian host is assumed"
#endif

#define GLB_MAGIC      0x46546C67u     /* "glTF" */
#define GLB_VERSION    2u
#define GLB_CHUNK_JSON 0x4E4F534Au     /* "JSON" */
#define GLB_CHUNK_BIN  0x004E4942u     /* "BIN\0" */
#define GL_UNSIGNED_BYTE 5121
#define GL_UNSIGNED_INT  5125
#define GL_FLOAT         5126
#define GL_ARRAY_BUFFER          34962
#define GL_ELEMENT_ARRAY_BUFFER  34963

void glb_zup_to_yup(const float *in, float *out, int64_t n)
{
    static const double M[3][3] = {{1, 0, 0}, {0, 0, -1}, {0, 1, 0}};

    for (int64_t v = 0; v < n; v++) {
        double x = in[3 * v], y = in[3 * v + 1], z = in[3 * v + 2], r[3];

        for (int j = 0; j < 3; j++)            /* (x, y, z) @ M, products summed */
            r[j] = x * M[0][j] + y * M[1][j] + z * M[2][j];
        for (int j = 0; j < 3; j++)
            out[3 * v + j] = (float)r[j];
    }
}

void glb_colors_rgba8(const float *rgb, uint8_t *rgba, int64_t n)
{
    for (int64_t v = 0; v < n; v++) {
        for (int j = 0; j < 3; j++) {
            float c = rgb[3 * v + j];

            c = isfinite(c) ? c * 255.0f : 0.0f;     /* float32 product, as numpy */
            c = c < 0.0f ? 0.0f : c > 255.0f ? 255.0f : c;
            rgba[4 * v + j] = (uint8_t)nearbyintf(c);   /* round half to even */
        }
        rgba[4 * v + 3] = 255;
    }
}

/* The JSON chunk's text into buf[cap]; returns its length (without padding). */
static size_t glb_json(char *buf, size_t cap, const struct tri_mesh *m, uint32_t idx_min,
                       uint32_t idx_max, const float mn[3], const float mx[3])
{
    size_t bi = (size_t)m->n_faces * 12, bp = (size_t)m->n_vertices * 12;
    size_t bc = (size_t)m->n_vertices * 4;
    int n = snprintf(buf, cap,
        "{\"asset\":{\"version\":\"2.0\",\"generator\":\"sam3d\"},"
        "\"scene\":0,\"scenes\":[{\"nodes\":[0]}],"
        "\"nodes\":[{\"name\":\"object\",\"mesh\":0}],"
        "\"meshes\":[{\"name\":\"object\",\"primitives\":[{\"attributes\":"
        "{\"POSITION\":1,\"COLOR_0\":2},\"indices\":0,\"mode\":4}]}],"
        "\"accessors\":["
        "{\"bufferView\":0,\"componentType\":%d,\"type\":\"SCALAR\",\"count\":%lld,"
        "\"min\":[%u],\"max\":[%u]},"
        "{\"bufferView\":1,\"componentType\":%d,\"type\":\"VEC3\",\"count\":%lld,"
        "\"min\":[%.9g,%.9g,%.9g],\"max\":[%.9g,%.9g,%.9g]},"
        "{\"bufferView\":2,\"componentType\":%d,\"normalized\":true,\"type\":\"VEC4\","
        "\"count\":%lld}],"
        "\"bufferViews\":["
        "{\"buffer\":0,\"byteOffset\":0,\"byteLength\":%zu,\"target\":%d},"
        "{\"buffer\":0,\"byteOffset\":%zu,\"byteLength\":%zu,\"target\":%d},"
        "{\"buffer\":0,\"byteOffset\":%zu,\"byteLength\":%zu,\"target\":%d}],"
        "\"buffers\":[{\"byteLength\":%zu}]}",
        GL_UNSIGNED_INT, (long long)m->n_faces * 3, idx_min, idx_max,
        GL_FLOAT, (long long)m->n_vertices, mn[0], mn[1], mn[2], mx[0], mx[1], mx[2],
        GL_UNSIGNED_BYTE, (long long)m->n_vertices,
        bi, GL_ELEMENT_ARRAY_BUFFER, bi, bp, GL_ARRAY_BUFFER, bi + bp, bc, GL_ARRAY_BUFFER,
        bi + bp + bc);

    ASSERT(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

static void put_u32(struct outfile *f, uint32_t v)
{
    outfile_write(f, &v, 4);
}

int glb_write_mesh(int dirfd, const char *name, const char *label, const struct tri_mesh *m)
{
    static const char spaces[4] = {' ', ' ', ' ', ' '};
    static const char zeros[4] = {0};
    struct outfile *f;
    char json[2048];
    size_t jlen, jpad, blen, bpad;
    uint32_t idx_min = UINT32_MAX, idx_max = 0;
    float mn[3] = {INFINITY, INFINITY, INFINITY}, mx[3] = {-INFINITY, -INFINITY, -INFINITY};
    uint64_t total;
    int rc;

    ASSERT(m->n_faces > 0 && m->n_vertices > 0);
    for (int64_t i = 0; i < 3 * m->n_faces; i++) {
        uint32_t k = m->faces[i];

        ASSERT(k < (uint64_t)m->n_vertices);
        idx_min = k < idx_min ? k : idx_min;
        idx_max = k > idx_max ? k : idx_max;
    }
    for (int64_t v = 0; v < m->n_vertices; v++)
        for (int j = 0; j < 3; j++) {
            float p = m->positions[3 * v + j];

            mn[j] = p < mn[j] ? p : mn[j];
            mx[j] = p > mx[j] ? p : mx[j];
        }
    jlen = glb_json(json, sizeof(json), m, idx_min, idx_max, mn, mx);
    jpad = (4 - jlen % 4) % 4;
    blen = (size_t)m->n_faces * 12 + (size_t)m->n_vertices * 16;     /* multiple of 4 */
    bpad = (4 - blen % 4) % 4;
    total = 12 + 8 + jlen + jpad + 8 + blen + bpad;
    if (total > UINT32_MAX) {
        log_error("%s: the mesh (%lld vertices, %lld faces) is over the 4 GiB a GLB file can "
                  "hold. HINT: write mesh.ply instead (--outputs mesh_ply)", label,
                  (long long)m->n_vertices, (long long)m->n_faces);
        return S3D_EINVAL;
    }
    f = malloc(sizeof(*f));
    if (!f || outfile_open(f, dirfd, name, label) != 0) {
        free(f);
        return S3D_EIO;
    }
    put_u32(f, GLB_MAGIC);
    put_u32(f, GLB_VERSION);
    put_u32(f, (uint32_t)total);
    put_u32(f, (uint32_t)(jlen + jpad));
    put_u32(f, GLB_CHUNK_JSON);
    outfile_write(f, json, jlen);
    outfile_write(f, spaces, jpad);
    put_u32(f, (uint32_t)(blen + bpad));
    put_u32(f, GLB_CHUNK_BIN);
    outfile_write(f, m->faces, (size_t)m->n_faces * 12);
    outfile_write(f, m->positions, (size_t)m->n_vertices * 12);
    outfile_write(f, m->colors, (size_t)m->n_vertices * 4);
    outfile_write(f, zeros, bpad);
    rc = outfile_commit(f);
    free(f);
    return rc;
}
