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
#include "mesh_decode/meshdec.h"
#include "mesh_decode/meshdec_kern.h"
#include "ops_sparse.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR  "tests/fixtures/mesh_decoder_tiny"
#define REF  DIR "/ref.safetensors"
#define CKPT DIR "/slat_decoder_mesh.ckpt"
#define MESH_RES 64           /* 4 * the fixture's resolution 16 */

/* FlexiCubes CPU vs the official CPU run: the same fp32 operations, libm ulps. */
static const double POS_ATOL = 1e-5;
/* F16-stored raw weights: beta, alpha, gamma move by ~1e-3 relative. */
static const double F16_POS_ATOL = 2e-4;
/* The head, CPU fp32 vs PyTorch CPU fp32: summation order only (rel L2 <= 1e-4). */
static const double ATOL = 1e-5, RTOL = 1e-4, NMSE = 1e-8;
/* The fp16 torso (fp16 convs and activations) vs fp32: rel L2 <= 1e-2. */
static const double F16_NMSE = 1e-4;
/* CUDA fp16 vs the host fp16 path: the same rounding points, other sum orders. */
static const double GPU16_NMSE = 1e-5;

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

/* Two of our meshes: counts and faces equal, vertices and colours within atol. */
static void cmp_ours(const char *what, const struct mesh *a, const struct mesh *b, double atol)
{
    char lab[128];

    CHECK(a->nv == b->nv && a->nf == b->nf, "%s: %lld/%lld vertices/faces vs %lld/%lld", what,
          (long long)a->nv, (long long)a->nf, (long long)b->nv, (long long)b->nf);
    if (a->nv != b->nv || a->nf != b->nf)
        return;
    bool same = !memcmp(a->f, b->f, sizeof(int32_t) * (size_t)(3 * a->nf));
    printf("%s: faces %s\n", what, same ? "the same" : "DIFFER");
    CHECK(same, "%s: the same faces", what);
    snprintf(lab, sizeof(lab), "%s vertices", what);
    report_cmp(lab, compare_f32(a->v, b->v, (size_t)(3 * a->nv), atol, 0, -1));
    snprintf(lab, sizeof(lab), "%s colours", what);
    report_cmp(lab, compare_f32(a->c, b->c, (size_t)(3 * a->nv), atol, 0, -1));
}

// ----------------------------------------------------------------------------
// neighbour maps of subdivided sets (meshdec_kern.h)

/* The fixture's voxels subdivided once: the derived maps against op_sparse_nbr on
 * the subdivided coordinates; the chunk-table map through a scrambled loc; with a
 * GPU the CUDA ops against these. */
static void test_kern(const struct ckpt *r)
{
    struct tensor coords;
    if (!ref(r, "coords", &coords))
        return;
    int64_t N = coords.shape[0], M = 8 * N;
    int32_t *n0 = malloc(sizeof(int32_t) * N * 27), *sc = malloc(sizeof(int32_t) * M * 4);
    int32_t *n1 = malloc(sizeof(int32_t) * M * 27), *d1 = malloc(sizeof(int32_t) * M * 27);
    int32_t *dp = malloc(sizeof(int32_t) * M * 27), *dl = malloc(sizeof(int32_t) * M * 27);
    int32_t *loc = malloc(sizeof(int32_t) * N), *units = malloc(sizeof(int32_t) * N);
    struct tensor t0 = tensor_view(n0, DTYPE_I32, DEVICE_HOST, SHAPE(N, 27));
    struct tensor ts = tensor_view(sc, DTYPE_I32, DEVICE_HOST, SHAPE(M, 4));
    struct tensor t1 = tensor_view(n1, DTYPE_I32, DEVICE_HOST, SHAPE(M, 27));
    struct tensor td = tensor_view(d1, DTYPE_I32, DEVICE_HOST, SHAPE(M, 27));
    struct tensor tp = tensor_view(dp, DTYPE_I32, DEVICE_HOST, SHAPE(M, 27));
    struct tensor tl = tensor_view(dl, DTYPE_I32, DEVICE_HOST, SHAPE(M, 27));
    struct tensor tloc = tensor_view(loc, DTYPE_I32, DEVICE_HOST, SHAPE(N));
    struct tensor tu = tensor_view(units, DTYPE_I32, DEVICE_HOST, SHAPE(N));

    op_sparse_nbr_cpu(&t0, &coords);
    op_sparse_subdivide_cpu(&ts, &coords, NULL, NULL);
    op_sparse_nbr_cpu(&t1, &ts);
    mdk_nbr_sub_cpu(&td, &t0, NULL, 8, 0, MDK_CHILD, NULL);
    mdk_nbr_sub_cpu(&tp, &t0, NULL, 8, 0, MDK_PARENT, NULL);
    /* a chunk table holding every parent, in reverse order: slot of parent p = N-1-p */
    for (int64_t i = 0; i < N; i++)
        units[i] = (int32_t)(N - 1 - i);
    for (int64_t i = 0; i < N; i++)
        loc[i] = -1;
    mdk_loc_cpu(&tloc, &tu, true);
    mdk_nbr_sub_cpu(&tl, &t0, NULL, 8, 0, MDK_LOCAL, &tloc);
    int64_t bad_c = 0, bad_p = 0, bad_l = 0, present = 0;
    for (int64_t e = 0; e < M * 27; e++) {
        int32_t q = n1[e];
        present += q >= 0;
        bad_c += d1[e] != q;
        bad_p += dp[e] != (q < 0 ? -1 : q >> 3);
        bad_l += dl[e] != (q < 0 ? -1 : 8 * (int32_t)(N - 1 - (q >> 3)) + (q & 7));
    }
    printf("subdivided neighbour maps (%lld sites, %lld neighbours present): child %lld, parent "
           "%lld, chunk-table %lld entries differ\n", (long long)M, (long long)present,
           (long long)bad_c, (long long)bad_p, (long long)bad_l);
    CHECK(bad_c == 0 && bad_p == 0 && bad_l == 0 && present > M);
    mdk_loc_cpu(&tloc, &tu, false);
    bool cleared = true;
    for (int64_t i = 0; i < N; i++)
        cleared &= loc[i] == -1;
    CHECK(cleared, "mdk_loc clear");

    if (s3d_cuda_available()) {
        struct arena a;
        struct op_ctx ctx;
        CHECK(arena_init(&a, ARENA_DEVICE, "kern", (size_t)16 << 20) == 0);
        CHECK(op_ctx_init(&ctx, NULL, 0) == 0);
        struct tensor g0 = arena_tensor(&a, DTYPE_I32, SHAPE(N, 27));
        struct tensor gd = arena_tensor(&a, DTYPE_I32, SHAPE(M, 27));
        struct tensor gl = arena_tensor(&a, DTYPE_I32, SHAPE(N));
        struct tensor gu = arena_tensor(&a, DTYPE_I32, SHAPE(N));
        CHECK(cudaMemcpy(g0.data, n0, tensor_nbytes(&g0), cudaMemcpyHostToDevice) == 0);
        CHECK(cudaMemcpy(gu.data, units, tensor_nbytes(&gu), cudaMemcpyHostToDevice) == 0);
        CHECK(cudaMemset(gl.data, 0xff, tensor_nbytes(&gl)) == 0);
        int32_t *back = malloc(sizeof(int32_t) * M * 27);
        const enum mdk_nbr_mode modes[3] = {MDK_CHILD, MDK_PARENT, MDK_LOCAL};
        const int32_t *want[3] = {d1, dp, dl};
        mdk_loc_cuda(&ctx, &gl, &gu, true);
        for (int k = 0; k < 3; k++) {
            mdk_nbr_sub_cuda(&ctx, &gd, &g0, NULL, 8, 0, modes[k], &gl);
            CHECK(cudaMemcpy(back, gd.data, tensor_nbytes(&gd), cudaMemcpyDeviceToHost) == 0);
            bool same = !memcmp(back, want[k], tensor_nbytes(&gd));
            printf("mdk_nbr_sub cuda vs cpu, mode %d: %s\n", k, same ? "same" : "DIFFER");
            CHECK(same);
        }
        free(back);
        op_ctx_free(&ctx);
        arena_free(&a);
    }
    free(n0), free(sc), free(n1), free(d1), free(dp), free(dl), free(loc), free(units);
}

static float *fbuf(int64_t n)
{
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    ASSERT(p);
    return p;
}

/* mdk_subconv_weight: mdk_sub_taps against its definition; the conv over the parents with
 * the rewritten weights against the 27-tap conv of the subdivided input (op_sparse_conv3_cpu
 * through the derived parent map), fp32 and fp16 weights; with a GPU the CUDA weights bit
 * for bit against the CPU's. */
static void test_subconv(const struct ckpt *r)
{
    int bad = 0;
    for (int b = 0; b < 2; b++)
        for (int s = 0; s < 3; s++) {
            int lo, hi;
            mdk_sub_taps(b, s, &lo, &hi);
            for (int t = 0; t < 3; t++)
                bad += ((b + t + 1) / 2 == s) != (t >= lo && t <= hi);
        }
    CHECK(bad == 0, "mdk_sub_taps: %d taps misplaced", bad);

    struct tensor coords;
    if (!ref(r, "coords", &coords))
        return;
    const int64_t N = coords.shape[0], Cin = 16, Cout = 8, nw = Cout * 27 * Cin;
    int32_t *n0 = malloc(sizeof(int32_t) * N * 27), *mp = malloc(sizeof(int32_t) * 8 * N * 27);
    float *x = fbuf(N * Cin), *w = fbuf(nw), *b = fbuf(Cout), *wp = fbuf(8 * nw);
    float *bp = fbuf(8 * Cout), *y1 = fbuf(8 * N * Cout), *y2 = fbuf(8 * N * Cout);
    uint32_t st = 12345;
    float *fill[3] = {x, w, b};
    int64_t len[3] = {N * Cin, nw, Cout};
    for (int i = 0; i < 3; i++)
        for (int64_t j = 0; j < len[i]; j++) {
            st = st * 1664525u + 1013904223u;
            fill[i][j] = (float)((st >> 8) / 16777216.0 * 2.0 - 1.0);
        }
    struct tensor t0 = tensor_view(n0, DTYPE_I32, DEVICE_HOST, SHAPE(N, 27));
    struct tensor tm = tensor_view(mp, DTYPE_I32, DEVICE_HOST, SHAPE(8 * N, 27));
    struct tensor tx = tensor_view(x, DTYPE_F32, DEVICE_HOST, SHAPE(N, Cin));
    struct tensor tw = tensor_view(w, DTYPE_F32, DEVICE_HOST, SHAPE(Cout, 3, 3, 3, Cin));
    struct tensor tb = tensor_view(b, DTYPE_F32, DEVICE_HOST, SHAPE(Cout));
    struct tensor twp = tensor_view(wp, DTYPE_F32, DEVICE_HOST, SHAPE(8 * Cout, 3, 3, 3, Cin));
    struct tensor tbp = tensor_view(bp, DTYPE_F32, DEVICE_HOST, SHAPE(8 * Cout));
    struct tensor ty1 = tensor_view(y1, DTYPE_F32, DEVICE_HOST, SHAPE(8 * N, Cout));
    struct tensor ty2 = tensor_view(y2, DTYPE_F32, DEVICE_HOST, SHAPE(N, 8 * Cout));
    op_sparse_nbr_cpu(&t0, &coords);
    mdk_nbr_sub_cpu(&tm, &t0, NULL, 8, 0, MDK_PARENT, NULL);
    op_sparse_conv3_cpu(&ty1, &tx, &tw, &tb, &tm);
    mdk_subconv_weight_cpu(&twp, &tbp, &tw, &tb);
    op_sparse_conv3_cpu(&ty2, &tx, &twp, &tbp, &t0);
    report_cmp("subconv over parents vs 27 taps f32", compare_f32(y2, y1, (size_t)(8 * N * Cout),
                                                                  1e-5, 1e-5, 1e-12));
    /* fp16 weights: the same conv on the fp16-rounded w */
    uint16_t *w16 = malloc(2 * (size_t)nw), *b16 = malloc(2 * (size_t)Cout);
    uint16_t *wp16 = malloc(16 * (size_t)nw), *bp16 = malloc(16 * (size_t)Cout);
    dtype_convert(w16, DTYPE_F16, w, DTYPE_F32, (size_t)nw);
    dtype_convert(b16, DTYPE_F16, b, DTYPE_F32, (size_t)Cout);
    struct tensor hw = tensor_view(w16, DTYPE_F16, DEVICE_HOST, SHAPE(Cout, 3, 3, 3, Cin));
    struct tensor hb = tensor_view(b16, DTYPE_F16, DEVICE_HOST, SHAPE(Cout));
    struct tensor hwp = tensor_view(wp16, DTYPE_F16, DEVICE_HOST, SHAPE(8 * Cout, 3, 3, 3, Cin));
    struct tensor hbp = tensor_view(bp16, DTYPE_F16, DEVICE_HOST, SHAPE(8 * Cout));
    op_sparse_conv3_cpu(&ty1, &tx, &hw, &hb, &tm);
    mdk_subconv_weight_cpu(&hwp, &hbp, &hw, &hb);
    op_sparse_conv3_cpu(&ty2, &tx, &hwp, &hbp, &t0);
    /* each rewritten weight rounded once to fp16: ~2^-12 of a sum of up to 8 taps */
    report_cmp("subconv over parents vs 27 taps f16", compare_f32(y2, y1, (size_t)(8 * N * Cout),
                                                                  -1, -1, 1e-6));

    if (s3d_cuda_available()) {
        struct arena a;
        struct op_ctx ctx;
        CHECK(arena_init(&a, ARENA_DEVICE, "subconv", (size_t)4 << 20) == 0);
        CHECK(op_ctx_init(&ctx, NULL, 0) == 0);
        const enum dtype dts[2] = {DTYPE_F32, DTYPE_F16};
        const void *hws[2] = {w, w16}, *hbs[2] = {b, b16}, *want_w[2] = {wp, wp16};
        const void *want_b[2] = {bp, bp16};
        void *back = malloc(8 * (size_t)nw * 4);
        for (int i = 0; i < 2; i++) {
            size_t mk = arena_mark(&a), es = dtype_size(dts[i]);
            struct tensor gw = arena_tensor(&a, dts[i], SHAPE(Cout, 3, 3, 3, Cin));
            struct tensor gb = arena_tensor(&a, dts[i], SHAPE(Cout));
            struct tensor gwp = arena_tensor(&a, dts[i], SHAPE(8 * Cout, 3, 3, 3, Cin));
            struct tensor gbp = arena_tensor(&a, dts[i], SHAPE(8 * Cout));
            CHECK(cudaMemcpy(gw.data, hws[i], (size_t)nw * es, cudaMemcpyHostToDevice) == 0);
            CHECK(cudaMemcpy(gb.data, hbs[i], (size_t)Cout * es, cudaMemcpyHostToDevice) == 0);
            mdk_subconv_weight_cuda(&ctx, &gwp, &gbp, &gw, &gb);
            CHECK(cudaMemcpy(back, gwp.data, 8 * (size_t)nw * es, cudaMemcpyDeviceToHost) == 0);
            bool same = !memcmp(back, want_w[i], 8 * (size_t)nw * es);
            CHECK(cudaMemcpy(back, gbp.data, 8 * (size_t)Cout * es, cudaMemcpyDeviceToHost) == 0);
            same &= !memcmp(back, want_b[i], 8 * (size_t)Cout * es);
            printf("mdk_subconv_weight cuda vs cpu %s: %s\n", dtype_name(dts[i]),
                   same ? "same" : "DIFFER");
            CHECK(same);
            arena_release(&a, mk);
        }
        free(back);
        op_ctx_free(&ctx);
        arena_free(&a);
    }
    free(n0), free(mp), free(x), free(w), free(b), free(wp), free(bp), free(y1), free(y2);
    free(w16), free(b16), free(wp16), free(bp16);
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

// ----------------------------------------------------------------------------
// the decoder: trunk (stages/slat_dec_net) + head (upsample blocks + out_layer)

/* Compare n floats with the fixture tensor name (rows expanded x8 when `per_parent`:
 * our skip is one row per parent, the fixture's is the subdivided tensor). */
static void cmp_tap(const struct ckpt *r, const char *name, const float *out, int64_t n,
                    int64_t C, bool per_parent, double nmse)
{
    struct tensor t;
    char lab[128];

    if (!ref(r, name, &t))
        return;
    int64_t want = per_parent ? 8 * n : n;
    CHECK(tensor_numel(&t) == want, "%s size %lld, ours %lld", name, (long long)tensor_numel(&t),
          (long long)want);
    if (tensor_numel(&t) != want)
        return;
    float *o = (float *)out, *x = NULL;
    if (per_parent) {
        x = fbuf(want);
        for (int64_t row = 0; row < want / C; row++)
            memcpy(x + row * C, out + (row >> 3) * C, sizeof(float) * (size_t)C);
        o = x;
    }
    snprintf(lab, sizeof(lab), "%-30s", name);
    report_cmp(lab, compare_f32(o, t.data, (size_t)want, nmse == NMSE ? ATOL : -1,
                                nmse == NMSE ? RTOL : -1, nmse));
    free(x);
}

struct head_result {
    struct mesh mesh;
    size_t      plan_bytes, high_water;
    int         chunks;
    int64_t     max_c, max_l;
};

/* The whole decoder (trunk + head + extraction) on dev/ct with chunks of at most
 * cmax voxels, as the stage sequences it. */
static bool run_head(const struct ckpt *r, enum device dev, enum dtype ct, int64_t cmax,
                     const struct slatdec_taps *ttp, const struct meshdec_taps *tp,
                     struct head_result *res)
{
    struct meshdec_model m;
    struct tensor coords, feats;
    struct arena act = {0};
    struct op_ctx ctx, *c = NULL;
    struct meshdec_plan plan;
    struct meshdec_job job;
    enum arena_kind k = dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST;
    char msg[256];

    memset(res, 0, sizeof(*res));
    if (!ref(r, "coords", &coords) || !ref(r, "feats", &feats))
        return false;
    if (meshdec_load(&m, CKPT, dev, ct)) {
        CHECK(0, "meshdec_load %s", dtype_name(ct));
        return false;
    }
    CHECK(meshdec_check_inputs(&m, &coords, &feats, MESH_RES / 4, msg, sizeof(msg)) == 0, "%s", msg);
    if (dev == DEVICE_CUDA) {
        CHECK(op_ctx_init(&ctx, NULL, 0) == 0);
        c = &ctx;
    }
    meshdec_plan_make(&plan, &coords, cmax);
    res->chunks = plan.n;
    res->max_c = plan.max_c;
    res->max_l = plan.max_l;
    res->plan_bytes = meshdec_act_bytes(&m, &plan);
    CHECK(arena_init(&act, k, "act", res->plan_bytes) == 0);
    int rc = meshdec_decode(&m, c, &act, &coords, &feats, MESH_RES / 4, &plan, &job, ttp, tp);
    CHECK(rc == 0);
    res->high_water = act.high_water;
    CHECK(act.used == 0, "the decoder releases its activations");
    if (rc == 0)
        rc = meshdec_extract(&m, c, &act, &job, INT64_MAX);
    if (rc == S3D_ENOMEM) {                   /* re-reserve act; the state lives on */
        size_t need = job.fc.need_scratch;
        arena_free(&act);
        CHECK(arena_init(&act, k, "act", need) == 0);
        rc = meshdec_extract(&m, c, &act, &job, INT64_MAX);
    }
    CHECK(rc == 0);
    if (rc == 0) {
        struct mesh *o = &res->mesh;
        o->cnt = job.fc.cnt;
        o->nv = job.fc.cnt.n_vd;
        o->nf = job.fc.cnt.n_faces;
        o->v = fbuf(3 * o->nv);
        o->c = fbuf(3 * o->nv);
        o->f = malloc(sizeof(int32_t) * (size_t)(3 * o->nf + 1));
        struct tensor tv = tensor_view(o->v, DTYPE_F32, DEVICE_HOST, SHAPE(o->nv, 3));
        struct tensor tcl = tensor_view(o->c, DTYPE_F32, DEVICE_HOST, SHAPE(o->nv, 3));
        struct tensor tf = tensor_view(o->f, DTYPE_I32, DEVICE_HOST, SHAPE(o->nf, 3));
        meshdec_download(&job, c, &tv, &tf, &tcl);
    }
    meshdec_job_end(&job);
    meshdec_plan_free(&plan);
    if (c)
        op_ctx_free(&ctx);
    arena_free(&act);
    meshdec_free(&m);
    return rc == 0;
}

static void test_head(const struct ckpt *r, struct head_result *cpu)
{
    struct tensor coords, v, vc, f;
    if (!ref(r, "coords", &coords) || !ref(r, "vertices", &v) || !ref(r, "vertex_attrs", &vc) ||
        !ref(r, "faces", &f))
        return;
    int64_t N = coords.shape[0];
    const int64_t C = 256, C1 = 64, C2 = 32;       /* the tiny config (README) */
    struct meshdec_taps tp = {
        .act0 = fbuf(N * C), .conv01 = fbuf(8 * N * C1), .gn0 = fbuf(8 * N * C1),
        .conv02 = fbuf(8 * N * C1), .skip0 = fbuf(N * C1), .up0 = fbuf(8 * N * C1),
        .act1 = fbuf(8 * N * C1), .conv11 = fbuf(64 * N * C2), .gn1 = fbuf(64 * N * C2),
        .conv12 = fbuf(64 * N * C2), .skip1 = fbuf(8 * N * C2), .up1 = fbuf(64 * N * C2),
        .out = fbuf(64 * N * FC_CH)};

    float *il = fbuf(N * C), *b0 = fbuf(N * C);
    struct slatdec_taps ttp = {.block = 0, .input_layer = il, .block_out = b0};

    /* one chunk per 3 voxels: several chunks with halos */
    if (!run_head(r, DEVICE_HOST, DTYPE_F32, 3, &ttp, &tp, cpu))
        return;
    cmp_tap(r, "input_layer", il, N * C, C, false, NMSE);
    cmp_tap(r, "blocks.0", b0, N * C, C, false, NMSE);
    free(il);
    free(b0);
    printf("cpu f32 head: %d chunks (largest %lld voxels, table %lld); act plan %.3f MB, "
           "high-water %.3f MB\n", cpu->chunks, (long long)cpu->max_c, (long long)cpu->max_l,
           cpu->plan_bytes / 1e6, cpu->high_water / 1e6);
    CHECK(cpu->chunks > 1 && cpu->high_water == cpu->plan_bytes, "plan = what the run takes");
    cmp_tap(r, "upsample.0.act_layers", tp.act0, N * C, C, false, NMSE);
    cmp_tap(r, "upsample.0.out_layers.0", tp.conv01, 8 * N * C1, C1, false, NMSE);
    cmp_tap(r, "upsample.0.out_layers.2", tp.gn0, 8 * N * C1, C1, false, NMSE);
    cmp_tap(r, "upsample.0.out_layers.3", tp.conv02, 8 * N * C1, C1, false, NMSE);
    cmp_tap(r, "upsample.0.skip_connection", tp.skip0, N * C1, C1, true, NMSE);
    cmp_tap(r, "upsample.0", tp.up0, 8 * N * C1, C1, false, NMSE);
    cmp_tap(r, "upsample.1.act_layers", tp.act1, 8 * N * C1, C1, false, NMSE);
    cmp_tap(r, "upsample.1.out_layers.0", tp.conv11, 64 * N * C2, C2, false, NMSE);
    cmp_tap(r, "upsample.1.out_layers.2", tp.gn1, 64 * N * C2, C2, false, NMSE);
    cmp_tap(r, "upsample.1.out_layers.3", tp.conv12, 64 * N * C2, C2, false, NMSE);
    cmp_tap(r, "upsample.1.skip_connection", tp.skip1, 8 * N * C2, C2, true, NMSE);
    cmp_tap(r, "upsample.1", tp.up1, 64 * N * C2, C2, false, NMSE);
    cmp_tap(r, "out_layer", tp.out, 64 * N * FC_CH, FC_CH, false, NMSE);
    print_counts("cpu f32 decoder", &cpu->mesh.cnt);
    cmp_mesh("cpu f32 decoder", &cpu->mesh, v.data, vc.data, f.data, v.shape[0], f.shape[0],
             POS_ATOL);

    /* chunking does not change the mesh: one chunk for everything, 1-voxel chunks */
    const int64_t cm[2] = {1000, 1};
    for (int i = 0; i < 2; i++) {
        struct head_result h;
        if (!run_head(r, DEVICE_HOST, DTYPE_F32, cm[i], NULL, NULL, &h))
            continue;
        char lab[64];
        snprintf(lab, sizeof(lab), "cpu f32 %d chunk%s vs 7", h.chunks, h.chunks > 1 ? "s" : "");
        cmp_ours(lab, &h.mesh, &cpu->mesh, 1e-6);
        mesh_free(&h.mesh);
    }

    /* the subdivided convs over the parents (CUDA's default, S3D_MESH_SUBCONV=parents) on the host: as close to
     * the official taps as the 27-tap path, the same mesh */
    const char *sc = getenv("S3D_MESH_SUBCONV");
    char *sc_keep = sc ? strdup(sc) : NULL;
    setenv("S3D_MESH_SUBCONV", "parents", 1);
    float *outp = fbuf(64 * N * FC_CH);
    struct meshdec_taps tpp = {.out = outp};
    struct head_result hp;
    if (run_head(r, DEVICE_HOST, DTYPE_F32, 3, NULL, &tpp, &hp)) {
        cmp_tap(r, "out_layer", outp, 64 * N * FC_CH, FC_CH, false, NMSE);
        report_cmp("cpu f32 parents out_layer vs taps",
                   compare_f32(outp, tp.out, (size_t)(64 * N * FC_CH), ATOL, RTOL, NMSE));
        cmp_ours("cpu f32 parents vs taps", &hp.mesh, &cpu->mesh, POS_ATOL);
        mesh_free(&hp.mesh);
    }
    free(outp);
    if (sc_keep)
        setenv("S3D_MESH_SUBCONV", sc_keep, 1);
    else
        unsetenv("S3D_MESH_SUBCONV");
    free(sc_keep);

    /* the fp16 torso on the host vs fp32 */
    float *out16 = fbuf(64 * N * FC_CH);
    struct meshdec_taps t16 = {.out = out16};
    struct head_result h16;
    if (run_head(r, DEVICE_HOST, DTYPE_F16, 3, NULL, &t16, &h16)) {
        report_cmp("cpu f16 out_layer vs cpu f32",
                   compare_f32(out16, tp.out, (size_t)(64 * N * FC_CH), -1, -1, F16_NMSE));
        print_counts("cpu f16 decoder", &h16.mesh.cnt);
        printf("cpu f16 decoder: %lld vertices / %lld faces vs %lld / %lld in fp32\n",
               (long long)h16.mesh.nv, (long long)h16.mesh.nf, (long long)cpu->mesh.nv,
               (long long)cpu->mesh.nf);
        mesh_free(&h16.mesh);
    }
    free(out16);
    float **all[] = {&tp.act0, &tp.conv01, &tp.gn0, &tp.conv02, &tp.skip0, &tp.up0, &tp.act1,
                     &tp.conv11, &tp.gn1, &tp.conv12, &tp.skip1, &tp.up1, &tp.out};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        free(*all[i]);
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
    test_kern(&r);
    test_subconv(&r);
    test_fixture(&r, &cpu);
    test_hand();
    struct head_result hc;
    memset(&hc, 0, sizeof(hc));
    test_head(&r, &hc);

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
        print_counts("cuda f32 flexicubes", &g.cnt);
        cmp_mesh("cuda f32 flexicubes", &g, v.data, vc.data, f.data, v.shape[0], f.shape[0],
                 POS_ATOL);
        mesh_free(&g);
        /* the whole head on CUDA: fp32 against the CPU (the 27 child taps, then the convs
         * over the parents, CUDA's default), fp16 against the host fp16 path */
        static const char *const subconv[2] = {"taps", "parents"};
        for (int k = 0; k < 2 && hc.mesh.nv; k++) {
            struct head_result h;
            char lab[64];
            setenv("S3D_MESH_SUBCONV", subconv[k], 1);
            if (run_head(&r, DEVICE_CUDA, DTYPE_F32, 3, NULL, NULL, &h)) {
                snprintf(lab, sizeof(lab), "cuda f32 decoder (%s)", subconv[k]);
                print_counts(lab, &h.mesh.cnt);
                snprintf(lab, sizeof(lab), "cuda f32 decoder (%s) vs cpu f32", subconv[k]);
                cmp_ours(lab, &h.mesh, &hc.mesh, POS_ATOL);
                printf("cuda f32 decoder (%s): act plan %.3f MB, high-water %.3f MB\n",
                       subconv[k], h.plan_bytes / 1e6, h.high_water / 1e6);
                CHECK(h.high_water <= h.plan_bytes);
                mesh_free(&h.mesh);
            }
        }
        unsetenv("S3D_MESH_SUBCONV");
        int64_t N = coords.shape[0];
        float *o16 = fbuf(64 * N * FC_CH), *g16 = fbuf(64 * N * FC_CH);
        struct meshdec_taps th = {.out = o16}, tg = {.out = g16};
        struct head_result a16, b16;
        if (run_head(&r, DEVICE_HOST, DTYPE_F16, 3, NULL, &th, &a16) &&
            run_head(&r, DEVICE_CUDA, DTYPE_F16, 3, NULL, &tg, &b16)) {
            report_cmp("cuda f16 out_layer vs cpu f16",
                       compare_f32(g16, o16, (size_t)(64 * N * FC_CH), -1, -1, GPU16_NMSE));
            print_counts("cuda f16 decoder", &b16.mesh.cnt);
            CHECK(llabs(b16.mesh.nf - a16.mesh.nf) <= a16.mesh.nf / 100, "face counts within 1%");
            mesh_free(&a16.mesh);
            mesh_free(&b16.mesh);
        }
        free(o16);
        free(g16);
    }
    mesh_free(&hc.mesh);
    mesh_free(&cpu);
    ckpt_close(&r);
    return harness_done("test_mesh_decode");
}
