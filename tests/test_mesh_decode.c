/*
 * test_mesh_decode.c - the mesh decoder's pieces (stages/mesh_decode) against
 * the official code on the tiny fixture tests/fixtures/mesh_decoder_tiny
 * (tools/ref/dump_mesh_decoder.py: width 256, 1 block, resolution 16, so
 * FlexiCubes runs on a 64^3 grid; fp32 CPU):
 *
 * FlexiCubes (flexicubes.h), from the fixture's out_layer (the official head
 * output, 1280 cubes x 101):
 *   - cube rows <-> coordinates: the subdivide order of upsample.1.coords;
 *   - vertices, faces, colours against the official extraction: same counts,
 *     same face order, positions and colours within 1e-5;
 *   - the same bytes when the rows arrive in chunks; raw weights stored as F16
 *     (the fp16 path) stay close; the face ceiling is a clean error;
 *   - hand cases on single cubes (L = 0): an empty and a full field give no
 *     surface, one inside corner gives one dual vertex and no face;
 *   - with a GPU: CUDA against the CPU (same counts and faces, positions close).
 */
#include "harness.h"
#include "arena.h"
#include "ckpt.h"
#include "err.h"
#include "log.h"
#include "mesh_decode/flexicubes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR  "tests/fixtures/mesh_decoder_tiny"
#define REF  DIR "/ref.safetensors"
#define MESH_RES 64           /* 4 * the fixture's resolution 16 */

/* FlexiCubes CPU vs the official CPU run: the same fp32 operations, libm ulps. */
static const double POS_ATOL = 1e-5;
/* F16-stored raw weights: beta, alpha, gamma move by ~1e-3 relative. */
static const double F16_POS_ATOL = 2e-4;

static bool ref(const struct ckpt *r, const char *name, struct tensor *t)
{
    const struct ckpt_entry *e = ckpt_find(r, name);

    CHECK(e != NULL, "fixture tensor %s", name);
    if (e)
        *t = ckpt_entry_tensor(e);
    return e != NULL;
}

/* A mesh on the host (what fc_download fills). */
struct mesh {
    int64_t nv, nf;
    float  *v, *c;
    int32_t *f;
    struct fc_counts cnt;
};

static void mesh_free(struct mesh *m)
{
    free(m->v);
    free(m->c);
    free(m->f);
    memset(m, 0, sizeof(*m));
}

/* Run the extraction on dev over coords (N, 4) at R >> L and feats (N 8^L, 101)
 * host F32, accumulating `chunk` rows at a time (0: all at once). */
static int extract(const struct tensor *coords, const struct tensor *feats, int R, int L,
                   enum device dev, enum dtype wdt, int64_t chunk, int64_t max_faces,
                   struct mesh *out)
{
    struct arena state, scratch;
    struct op_ctx ctx, *c = NULL;
    struct flexicubes fc;
    int64_t N = coords->shape[0], rows = feats->shape[0];
    enum arena_kind k = dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST;
    int rc;

    memset(out, 0, sizeof(*out));
    CHECK(arena_init(&scratch, k, "scratch", fc_init_scratch_bytes(N, L, dev) +
                     (size_t)(rows + N) * 64 + ((size_t)8 << 20)) == 0);
    if (dev == DEVICE_CUDA) {
        CHECK(op_ctx_init(&ctx, NULL, 0) == 0);
        c = &ctx;
    }
    /* coords and feats on dev */
    struct tensor cd = arena_tensor(&scratch, DTYPE_I32, SHAPE(N, 4));
    if (dev == DEVICE_CUDA)
        CHECK(cudaMemcpy(cd.data, coords->data, tensor_nbytes(coords), cudaMemcpyHostToDevice) == 0);
    else
        memcpy(cd.data, coords->data, tensor_nbytes(coords));
    int64_t nverts = fc_count_vertices(c, &scratch, &cd, R, L);
    CHECK(arena_init(&state, k, "state", fc_state_bytes(N, nverts, L, wdt)) == 0);
    fc_init(&fc, c, &state, &scratch, &cd, R, L, wdt);
    CHECK(fc.n_verts == nverts && state.used <= state.size);
    if (chunk <= 0)
        chunk = rows;
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
        int64_t n = rows - r0 < chunk ? rows - r0 : chunk;
        struct tensor h = tensor_slice(feats, 0, r0, n);
        size_t m = arena_mark(&scratch);
        struct tensor d = arena_tensor(&scratch, DTYPE_F32, SHAPE(n, FC_CH));
        if (dev == DEVICE_CUDA)
            CHECK(cudaMemcpy(d.data, h.data, tensor_nbytes(&h), cudaMemcpyHostToDevice) == 0);
        else
            memcpy(d.data, h.data, tensor_nbytes(&h));
        fc_accumulate(&fc, c, &d, r0);
        if (c)
            op_ctx_synchronize(c);
        arena_release(&scratch, m);
    }
    rc = fc_finish(&fc, c, &scratch, max_faces);
    while (rc == S3D_ENOMEM) {              /* grow the scratch, as the stage does */
        size_t need = fc.need_scratch + scratch.used;
        printf("  scratch %.2f MB too small for the extraction: %.2f MB, again\n",
               scratch.size / 1e6, need / 1e6);
        /* the coords copy lives in scratch: keep a host copy semantics by re-copying */
        arena_free(&scratch);
        CHECK(arena_init(&scratch, k, "scratch", need + ((size_t)1 << 20)) == 0);
        rc = fc_finish(&fc, c, &scratch, max_faces);
    }
    if (rc == 0) {
        out->cnt = fc.cnt;
        out->nv = fc.cnt.n_vd;
        out->nf = fc.cnt.n_faces;
        out->v = malloc(sizeof(float) * (size_t)(3 * out->nv + 1));
        out->c = malloc(sizeof(float) * (size_t)(3 * out->nv + 1));
        out->f = malloc(sizeof(int32_t) * (size_t)(3 * out->nf + 1));
        struct tensor tv = tensor_view(out->v, DTYPE_F32, DEVICE_HOST, SHAPE(out->nv, 3));
        struct tensor tc = tensor_view(out->c, DTYPE_F32, DEVICE_HOST, SHAPE(out->nv, 3));
        struct tensor tf = tensor_view(out->f, DTYPE_I32, DEVICE_HOST, SHAPE(out->nf, 3));
        fc_download(&fc, c, &tv, &tf, &tc);
    }
    fc_end(&fc);
    if (c)
        op_ctx_free(&ctx);
    arena_free(&state);
    arena_free(&scratch);
    return rc;
}

static void print_counts(const char *what, const struct fc_counts *n)
{
    printf("%s: %lld corners (%lld inside), %lld surface cubes (%lld ambiguous inverted), %lld "
           "edge slots, %lld surface edges, %lld quads -> %lld vertices, %lld faces\n", what,
           (long long)n->n_verts, (long long)n->n_neg, (long long)n->n_surf,
           (long long)n->n_inverted, (long long)n->n_slots, (long long)n->n_edges,
           (long long)n->n_quads, (long long)n->n_vd, (long long)n->n_faces);
}

/* out vs the official mesh: counts, faces exactly, positions/colours within atol. */
static void cmp_mesh(const char *what, const struct mesh *m, const float *rv, const float *rc,
                     const int32_t *rf, int64_t nv, int64_t nf, double atol)
{
    char lab[128];

    CHECK(m->nv == nv && m->nf == nf, "%s: %lld/%lld vertices/faces, official %lld/%lld", what,
          (long long)m->nv, (long long)m->nf, (long long)nv, (long long)nf);
    if (m->nv != nv || m->nf != nf)
        return;
    int64_t bad = 0;
    for (int64_t i = 0; i < 3 * nf; i++)
        bad += m->f[i] != rf[i];
    printf("%s: faces differing from the official order: %lld of %lld\n", what, (long long)bad,
           (long long)nf);
    CHECK(bad == 0, "%s: same faces in the same order", what);
    snprintf(lab, sizeof(lab), "%s vertices", what);
    report_cmp(lab, compare_f32(m->v, rv, (size_t)(3 * nv), atol, 0, -1));
    float *c3 = malloc(sizeof(float) * (size_t)(3 * nv + 1));
    for (int64_t i = 0; i < nv; i++)
        memcpy(c3 + 3 * i, rc + 6 * i, 3 * sizeof(float));
    snprintf(lab, sizeof(lab), "%s colours", what);
    report_cmp(lab, compare_f32(m->c, c3, (size_t)(3 * nv), atol, 0, -1));
    free(c3);
}

// ----------------------------------------------------------------------------
// FlexiCubes

static void test_rows_coords(const struct tensor *coords, const struct tensor *c256)
{
    const int32_t *c = coords->data, *f = c256->data;
    int64_t bad = 0;

    for (int64_t row = 0; row < c256->shape[0]; row++) {
        int ox, oy, oz;
        int64_t i = row >> 6;
        fc_row_offset(row & 63, 2, &ox, &oy, &oz);
        bad += f[4 * row + 1] != 4 * c[4 * i + 1] + ox || f[4 * row + 2] != 4 * c[4 * i + 2] + oy ||
               f[4 * row + 3] != 4 * c[4 * i + 3] + oz || fc_offset_row(ox, oy, oz, 2) != (row & 63);
    }
    printf("cube rows -> coordinates (two subdivisions): %lld of %lld rows differ\n",
           (long long)bad, (long long)c256->shape[0]);
    CHECK(bad == 0);
}

static void test_fixture(const struct ckpt *r, struct mesh *cpu)
{
    struct tensor coords, c256, out, v, vc, f;

    if (!ref(r, "coords", &coords) || !ref(r, "upsample.1.coords", &c256) ||
        !ref(r, "out_layer", &out) || !ref(r, "vertices", &v) || !ref(r, "vertex_attrs", &vc) ||
        !ref(r, "faces", &f))
        return;
    test_rows_coords(&coords, &c256);
    CHECK(fc_check(&coords, MESH_RES, 2, "coords") == 0);
    int rc = extract(&coords, &out, MESH_RES, 2, DEVICE_HOST, DTYPE_F32, 0, INT64_MAX, cpu);
    CHECK(rc == 0);
    if (rc)
        return;
    print_counts("cpu f32", &cpu->cnt);
    cmp_mesh("cpu f32", cpu, v.data, vc.data, f.data, v.shape[0], f.shape[0], POS_ATOL);

    /* chunks of rows: the same bytes */
    const int64_t chunks[3] = {1, 64, 333};
    for (int i = 0; i < 3; i++) {
        struct mesh m;
        CHECK(extract(&coords, &out, MESH_RES, 2, DEVICE_HOST, DTYPE_F32, chunks[i], INT64_MAX,
                      &m) == 0);
        bool same = m.nv == cpu->nv && m.nf == cpu->nf &&
                    !memcmp(m.v, cpu->v, sizeof(float) * (size_t)(3 * m.nv)) &&
                    !memcmp(m.c, cpu->c, sizeof(float) * (size_t)(3 * m.nv)) &&
                    !memcmp(m.f, cpu->f, sizeof(int32_t) * (size_t)(3 * m.nf));
        printf("rows in chunks of %lld: %s\n", (long long)chunks[i], same ? "same bytes" : "DIFFER");
        CHECK(same);
        mesh_free(&m);
    }

    /* raw weights stored in fp16 (the fp16 path): same topology, close positions */
    struct mesh h;
    CHECK(extract(&coords, &out, MESH_RES, 2, DEVICE_HOST, DTYPE_F16, 0, INT64_MAX, &h) == 0);
    cmp_mesh("cpu f16 weights", &h, v.data, vc.data, f.data, v.shape[0], f.shape[0],
             F16_POS_ATOL);
    mesh_free(&h);

    /* the face ceiling */
    printf("expected error follows:\n");
    CHECK(extract(&coords, &out, MESH_RES, 2, DEVICE_HOST, DTYPE_F32, 0, f.shape[0] - 1, &h) ==
          S3D_EINVAL, "more faces than max_faces");
    mesh_free(&h);
    CHECK(extract(&coords, &out, MESH_RES, 2, DEVICE_HOST, DTYPE_F32, 0, f.shape[0], &h) == 0,
          "exactly max_faces");
    mesh_free(&h);
}

/* One cube (L = 0) at (1, 1, 1) of a 4^3 grid with the given corner sdfs. */
static void one_cube(const float sdf[8], struct mesh *m)
{
    int32_t c[4] = {0, 1, 1, 1};
    float f[FC_CH] = {0};
    struct tensor tc = tensor_view(c, DTYPE_I32, DEVICE_HOST, SHAPE(1, 4));
    struct tensor tf = tensor_view(f, DTYPE_F32, DEVICE_HOST, SHAPE(1, FC_CH));

    for (int i = 0; i < 8; i++)
        f[FC_SDF + i] = sdf[i] + 0.25f;        /* + the -1/R bias (R = 4) */
    CHECK(extract(&tc, &tf, 4, 0, DEVICE_HOST, DTYPE_F32, 0, INT64_MAX, m) == 0);
}

static void test_hand(void)
{
    struct mesh m;
    float out8[8] = {1, 1, 1, 1, 1, 1, 1, 1}, in8[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    float one[8] = {-1, 1, 1, 1, 1, 1, 1, 1};

    one_cube(out8, &m);
    CHECK(m.nv == 0 && m.nf == 0, "all outside: no surface");
    mesh_free(&m);
    /* all inside: the cube is full, but its outside neighbours (untouched
     * corners at sdf 1) share its corners: 26 neighbour cubes are surface cubes */
    one_cube(in8, &m);
    print_counts("one full cube", &m.cnt);
    CHECK(m.cnt.n_neg == 8 && m.cnt.n_surf == 26 && m.nf > 0);
    mesh_free(&m);
    /* corner 0 inside: it is a corner of 8 cubes, each with one dual vertex on
     * the 3 edges around it (case 1 or its rotations); the 6 edges at the
     * corner are interior (4 surface cubes each): 6 quads */
    one_cube(one, &m);
    print_counts("one inside corner", &m.cnt);
    CHECK(m.cnt.n_neg == 1 && m.cnt.n_surf == 8 && m.nv == 8 && m.cnt.n_edges == 6 &&
          m.cnt.n_quads == 6 && m.nf == 12);
    /* the dual vertex of cube (1,1,1): on its 3 edges from corner 0 the zero
     * crossing of sdf -1 -> 1 (alpha 1) is the midpoint; beta 1: their mean */
    float expect = 1.0f / 4 - 0.5f;     /* corner 0 at grid 1 of R = 4 */
    bool found = false;
    for (int64_t i = 0; i < m.nv; i++) {
        float *p = m.v + 3 * i;
        if (fabsf(p[0] - (expect + 0.125f / 3 * 1)) < 1e-6f &&
            fabsf(p[1] - (expect + 0.125f / 3)) < 1e-6f && fabsf(p[2] - (expect + 0.125f / 3)) < 1e-6f)
            found = true;
    }
    CHECK(found, "the dual vertex of the cube at the corner: centroid of its 3 edge midpoints");
    mesh_free(&m);
}

int main(void)
{
    struct ckpt r;
    struct mesh cpu;

    log_init("test_mesh_decode");
    memset(&cpu, 0, sizeof(cpu));
    if (ckpt_open(&r, REF, 0)) {
        CHECK(0, "fixture unreadable (tools/ref/dump_mesh_decoder.py --size tiny)");
        return harness_done("test_mesh_decode");
    }
    test_fixture(&r, &cpu);
    test_hand();

    if (!s3d_cuda_available()) {
        const char *req = getenv("S3D_REQUIRE_GPU");
        CHECK(!(req && !strcmp(req, "1")), "S3D_REQUIRE_GPU=1 but no CUDA device");
        printf("GPU part skipped: no CUDA device on this machine\n");
    } else if (cpu.nv) {
        struct tensor coords, out, v, vc, f;
        struct mesh g;
        ref(&r, "coords", &coords);
        ref(&r, "out_layer", &out);
        ref(&r, "vertices", &v);
        ref(&r, "vertex_attrs", &vc);
        ref(&r, "faces", &f);
        CHECK(extract(&coords, &out, MESH_RES, 2, DEVICE_CUDA, DTYPE_F32, 333, INT64_MAX, &g) == 0);
        print_counts("cuda f32", &g.cnt);
        cmp_mesh("cuda f32", &g, v.data, vc.data, f.data, v.shape[0], f.shape[0], POS_ATOL);
        mesh_free(&g);
    }
    mesh_free(&cpu);
    ckpt_close(&r);
    return harness_done("test_mesh_decode");
}
