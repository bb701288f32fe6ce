/*
 * test_op_sparse.c - the sparse op family (kernels/ops_sparse.h).
 *
 * CPU part (always):
 * - neighbour map: nbr[p, 13] = p, symmetry nbr[nbr[p, r], 26 - r] = p, and every
 *   entry against a brute-force search over all rows;
 * - submanifold conv against a dense 3-D cross-correlation (padding 1, double
 *   accumulation) evaluated at the active sites: a random set with all 8 grid
 *   corners, a fully occupied block, one isolated voxel (the impulse test: only
 *   W[:, 1, 1, 1, :] acts), a voxel pair along each axis, and T = 0; small-integer
 *   inputs make F32 and F16 exact;
 * - against the official modules (tests/fixtures/sparse_ops, made by
 *   tools/ref/dump_sparse_ops.py): spconv SubMConv3d through the official
 *   SparseConv3d (pins KRSC and the offset orientation), SparseDownsample(2) +
 *   SparseUpsample(2), SparseSubdivide, SparseGroupNorm32;
 * - down/upsample and subdivide on hand-computed cases; sparse GroupNorm against
 *   op_groupnorm_cpu on the transposed (1, C, T) data, and in chunks (stats +
 *   apply) against the whole; conv3 on a chunk of output rows; sparse_coords_check.
 * CUDA part (with a GPU): every op against the CPU op, with guard bytes; the
 * conv in F32, F16 and F16 -> F32 and through many small im2col chunks.
 */
#include "arena.h"
#include "check.h"
#include "ckpt.h"
#include "harness.h"
#include "log.h"
#include "op_harness.h"
#include "ops_image.h"
#include "ops_sparse.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIXTURE "tests/fixtures/sparse_ops/sparse_ops.safetensors"

/* tolerances: why each is what it is */
static const struct op_tol TOL_EXACT[] = {
    {DTYPE_F32, 0, 0, -1, "small integers: every sum exact in fp32"},
    {DTYPE_F16, 0, 0, -1, "small integers: results representable in fp16"},
};
static const struct op_tol TOL_REF[] = {
    {DTYPE_F32, 2e-5, 2e-5, -1, "fp32 sums of <= 27*Cin terms, order differs from spconv/torch"},
    {DTYPE_F16, 2e-3, 2e-3, -1, "one fp16 rounding of the output"},
};
static const struct op_tol TOL_GPU[] = {
    {DTYPE_F32, 1e-4, 1e-4, -1, "fp32, different summation order (cuBLASLt, Chan combine)"},
    {DTYPE_F16, 2e-3, 4e-3, -1, "fp16 output, one rounding either side of a tie"},
    {DTYPE_BF16, 1e-2, 1.6e-2, -1, "bf16 output"},
};
#define NT(t) (sizeof(t) / sizeof((t)[0]))

// ----------------------------------------------------------------------------
// helpers

static struct tensor i32_host(const int64_t *shape, int ndim, const int32_t *v)
{
    struct tensor t = ot_host(DTYPE_I32, shape, ndim, NULL);
    if (v)
        memcpy(t.data, v, tensor_nbytes(&t));
    return t;
}

/* n unique sites in [0, R)^3 (b = 0), plus the 8 corners when corners is set, in a
 * shuffled row order. coords malloc'ed (T * 4). */
static int32_t *random_sites(struct rng *r, int R, int n, bool corners, int64_t *T)
{
    char *occ = calloc((size_t)R * R * R, 1);
    int32_t *c = malloc(sizeof(int32_t) * 4 * (size_t)(n + 8));
    int64_t k = 0;
    ASSERT(occ && c);
    if (corners)
        for (int i = 0; i < 8; i++) {
            int x = (i >> 2) * (R - 1), y = ((i >> 1) & 1) * (R - 1), z = (i & 1) * (R - 1);
            if (!occ[(x * R + y) * R + z]) {
                occ[(x * R + y) * R + z] = 1;
                int32_t row[4] = {0, x, y, z};
                memcpy(c + 4 * k++, row, sizeof(row));
            }
        }
    for (int i = 0; i < n; i++) {
        int x = (int)(rng_u64(r) % (uint64_t)R), y = (int)(rng_u64(r) % (uint64_t)R);
        int z = (int)(rng_u64(r) % (uint64_t)R);
        if (occ[(x * R + y) * R + z])
            continue;
        occ[(x * R + y) * R + z] = 1;
        int32_t row[4] = {0, x, y, z};
        memcpy(c + 4 * k++, row, sizeof(row));
    }
    for (int64_t i = k - 1; i > 0; i--) {        /* Fisher-Yates */
        int64_t j = (int64_t)(rng_u64(r) % (uint64_t)(i + 1));
        int32_t t[4];
        memcpy(t, c + 4 * i, sizeof(t));
        memcpy(c + 4 * i, c + 4 * j, sizeof(t));
        memcpy(c + 4 * j, t, sizeof(t));
    }
    free(occ);
    *T = k;
    return c;
}

/* Dense Conv3d(k=3, padding=1) cross-correlation at the active sites, double sums:
 * y[p, co] = b[co] + sum_{d in {-1,0,1}^3, ci} W[co, dx+1, dy+1, dz+1, ci] vol[ci, p + d]. */
static void dense_conv(float *y, const int32_t *c, int64_t T, int R, const float *x, int Cin,
                       const float *w, const float *b, int Cout)
{
    float *vol = calloc((size_t)R * R * R * Cin, sizeof(float));
    ASSERT(vol);
    for (int64_t i = 0; i < T; i++)
        for (int ci = 0; ci < Cin; ci++)
            vol[((size_t)ci * R + c[4 * i + 1]) * R * R + (size_t)c[4 * i + 2] * R +
                c[4 * i + 3]] = x[i * Cin + ci];
    for (int64_t i = 0; i < T; i++)
        for (int co = 0; co < Cout; co++) {
            double s = b ? b[co] : 0.0;
            for (int dx = -1; dx <= 1; dx++)
                for (int dy = -1; dy <= 1; dy++)
                    for (int dz = -1; dz <= 1; dz++) {
                        int X = c[4 * i + 1] + dx, Y = c[4 * i + 2] + dy, Z = c[4 * i + 3] + dz;
                        if (X < 0 || X >= R || Y < 0 || Y >= R || Z < 0 || Z >= R)
                            continue;
                        for (int ci = 0; ci < Cin; ci++)
                            s += (double)w[(((size_t)co * 3 + dx + 1) * 3 + dy + 1) * 3 * Cin +
                                           (size_t)(dz + 1) * Cin + ci] *
                                 vol[((size_t)ci * R + X) * R * R + (size_t)Y * R + Z];
                    }
            y[i * Cout + co] = (float)s;
        }
    free(vol);
}

/* nbr checks: centre, symmetry, and brute force */
static void check_nbr(const char *label, const int32_t *nbr, const int32_t *c, int64_t T)
{
    int64_t bad = 0;
    for (int64_t p = 0; p < T; p++)
        for (int r = 0; r < SPARSE_K3; r++) {
            int32_t want = -1;
            for (int64_t q = 0; q < T; q++)
                if (c[4 * q] == c[4 * p] && c[4 * q + 1] == c[4 * p + 1] + r / 9 - 1 &&
                    c[4 * q + 2] == c[4 * p + 2] + r / 3 % 3 - 1 &&
                    c[4 * q + 3] == c[4 * p + 3] + r % 3 - 1)
                    want = (int32_t)q;
            int32_t got = nbr[p * SPARSE_K3 + r];
            if (got != want || (got >= 0 && nbr[(int64_t)got * SPARSE_K3 + 26 - r] != p))
                bad++;
        }
    printf("%-44s T %-5lld bad entries %lld %s\n", label, (long long)T, (long long)bad,
           bad ? "FAIL" : "OK");
    CHECK(bad == 0, "%s", label);
}

/* The CPU map's two paths (a dense grid over a small bounding box, sorted keys over a
 * large one) on the same clusters of sites: far apart (bounding box > 2^23 cells) and moved
 * next to each other with the same row order: brute force, and the same maps. */
static void nbr_paths(struct rng *r)
{
    enum { K = 24, PER = 6 };
    int32_t far[K * PER * 4], near[K * PER * 4];
    int64_t T = 0;
    for (int k = 0; k < K; k++) {
        int32_t cx = (int32_t)(rng_u64(r) % 1000), cy = (int32_t)(rng_u64(r) % 1000);
        int32_t cz = (int32_t)(rng_u64(r) % 1000);
        for (int j = 0; j < PER; j++) {             /* a few sites of a 2^3 block, unique */
            int32_t o[4] = {0, j & 1, j >> 1 & 1, j >= 4};
            int32_t *f = far + 4 * T, *n = near + 4 * T;
            f[0] = n[0] = 0;
            f[1] = 4 * cx + o[1], f[2] = 4 * cy + o[2], f[3] = 4 * cz + o[3];
            n[1] = 3 * k + o[1], n[2] = o[2], n[3] = o[3];
            T++;
        }
    }
    struct tensor tf = i32_host(SHAPE(T, 4), far), tnr = i32_host(SHAPE(T, 4), near);
    struct tensor mf = i32_host(SHAPE(T, SPARSE_K3), NULL), mn = i32_host(SHAPE(T, SPARSE_K3), NULL);
    op_sparse_nbr_cpu(&mf, &tf);
    op_sparse_nbr_cpu(&mn, &tnr);
    check_nbr("nbr cpu sorted keys (box > 2^23 cells)", mf.data, far, T);
    check_nbr("nbr cpu dense grid", mn.data, near, T);
    bool same = !memcmp(mf.data, mn.data, sizeof(int32_t) * (size_t)(T * SPARSE_K3));
    printf("nbr cpu sorted keys vs dense grid: %s\n", same ? "same map" : "DIFFER");
    CHECK(same);
    ot_free(&tf);
    ot_free(&tnr);
    ot_free(&mf);
    ot_free(&mn);
}

// ----------------------------------------------------------------------------
// CPU: conv against dense

struct conv_case {
    const char *name;
    int         R, n, Cin, Cout;
    int         kind;   /* 0 random + corners, 1 full block, 2 isolated voxel, 3 axis pairs */
};

static int32_t *case_sites(struct rng *r, const struct conv_case *cc, int64_t *T)
{
    if (cc->kind == 0)
        return random_sites(r, cc->R, cc->n, true, T);
    int32_t *c = malloc(sizeof(int32_t) * 4 * (size_t)(cc->R * cc->R * cc->R + 8));
    int64_t k = 0;
    if (cc->kind == 1) {
        for (int x = 0; x < cc->R; x++)
            for (int y = 0; y < cc->R; y++)
                for (int z = 0; z < cc->R; z++) {
                    int32_t row[4] = {0, x, y, z};
                    memcpy(c + 4 * k++, row, sizeof(row));
                }
    } else if (cc->kind == 2) {
        int32_t row[4] = {0, cc->R / 2, cc->R / 2, cc->R / 2};
        memcpy(c, row, sizeof(row));
        k = cc->n;                                  /* 0 or 1 */
    } else {
        /* (2,2,2) with one neighbour along +x, +y, -z and a far site at the border */
        int32_t rows[5][4] = {{0, 2, 2, 2}, {0, 3, 2, 2}, {0, 2, 3, 2}, {0, 2, 2, 1},
                              {0, cc->R - 1, 0, cc->R - 1}};
        memcpy(c, rows, sizeof(rows));
        k = 5;
    }
    *T = k;
    return c;
}

static void cpu_conv_dense(struct rng *r, const struct conv_case *cc, enum dtype dt)
{
    int64_t T;
    int32_t *c = case_sites(r, cc, &T);
    int Cin = cc->Cin, Cout = cc->Cout;
    size_t nw = (size_t)Cout * 27 * Cin;
    float *x = malloc(sizeof(float) * (size_t)(T * Cin + 1)), *w = malloc(sizeof(float) * nw);
    float b[64], *ref = malloc(sizeof(float) * (size_t)(T * Cout + 1));
    float *got = malloc(sizeof(float) * (size_t)(T * Cout + 1));
    fill_small_int(r, x, (size_t)(T * Cin), -3, 3);
    fill_small_int(r, w, nw, -3, 3);
    fill_small_int(r, b, (size_t)Cout, -4, 4);
    if (cc->kind == 2)                              /* impulse: x = 1 at the one voxel */
        for (int64_t i = 0; i < T * Cin; i++)
            x[i] = 1.0f;
    dense_conv(ref, c, T, cc->R, x, Cin, w, b, Cout);

    struct tensor tc = i32_host(SHAPE(T, 4), c);
    struct tensor tn = i32_host(SHAPE(T, SPARSE_K3), NULL);
    struct tensor tx = ot_host(dt, SHAPE(T, Cin), x);
    struct tensor tw = ot_host(dt, SHAPE(Cout, 3, 3, 3, Cin), w);
    struct tensor tb = ot_host(DTYPE_F32, SHAPE(Cout), b);
    struct tensor ty = ot_host(dt, SHAPE(T, Cout), NULL);
    op_sparse_nbr_cpu(&tn, &tc);
    char label[128];
    snprintf(label, sizeof(label), "nbr cpu %s", cc->name);
    check_nbr(label, tn.data, c, T);
    op_sparse_conv3_cpu(&ty, &tx, &tw, &tb, &tn);
    CHECK(ot_guard_ok(&ty) && ot_guard_ok(&tn), "%s guard", cc->name);
    ot_to_f32(&ty, got);
    snprintf(label, sizeof(label), "conv3 cpu %s %s (%lld,%d->%d) vs dense", cc->name,
             dtype_name(dt), (long long)T, Cin, Cout);
    ot_report(label, got, ref, (size_t)(T * Cout), TOL_EXACT, NT(TOL_EXACT), dt);
    if (cc->kind == 2 && T == 1) {                  /* impulse: y = b + sum_ci W[:, 1,1,1, ci] */
        for (int co = 0; co < Cout; co++) {
            float s = b[co];
            for (int ci = 0; ci < Cin; ci++)
                s += w[(size_t)co * 27 * Cin + 13 * (size_t)Cin + ci];
            CHECK(got[co] == s, "impulse co %d: %g != %g", co, got[co], s);
        }
    }
    ot_free(&tc); ot_free(&tn); ot_free(&tx); ot_free(&tw); ot_free(&tb); ot_free(&ty);
    free(c); free(x); free(w); free(ref); free(got);
}

// ----------------------------------------------------------------------------
// CPU: fixtures from the official modules

static struct tensor fx(const struct ckpt *ck, const char *name)
{
    const struct ckpt_entry *e = ckpt_find(ck, name);
    if (!e) {
        CHECK(!"fixture tensor missing", "%s", name);
        return tensor_view(NULL, DTYPE_F32, DEVICE_HOST, SHAPE(0));
    }
    return ckpt_entry_tensor(e);
}

static void cpu_fixtures(void)
{
    struct ckpt ck = {0};
    if (ckpt_open(&ck, FIXTURE, 0) != 0) {
        CHECK(!"cannot open " FIXTURE, "HINT: python3 tools/ref/dump_sparse_ops.py");
        return;
    }
    for (int k = 0; k < 2; k++) {
        char n[64], label[128];
        const char *cn = k ? "conv_b" : "conv_a";
        snprintf(n, sizeof(n), "%s.coords", cn);
        struct tensor c = fx(&ck, n);
        snprintf(n, sizeof(n), "%s.x", cn);
        struct tensor x = fx(&ck, n);
        snprintf(n, sizeof(n), "%s.weight", cn);
        struct tensor w = fx(&ck, n);
        snprintf(n, sizeof(n), "%s.bias", cn);
        struct tensor b = fx(&ck, n);
        snprintf(n, sizeof(n), "%s.y", cn);
        struct tensor yref = fx(&ck, n);
        if (!c.data || !x.data || !w.data || !b.data || !yref.data)
            continue;
        int64_t T = c.shape[0], Cout = w.shape[0];
        struct tensor nb = i32_host(SHAPE(T, SPARSE_K3), NULL);
        struct tensor y = ot_host(DTYPE_F32, SHAPE(T, Cout), NULL);
        op_sparse_nbr_cpu(&nb, &c);
        op_sparse_conv3_cpu(&y, &x, &w, &b, &nb);
        snprintf(label, sizeof(label), "conv3 cpu vs spconv SubMConv3d %s (%lld,%lld->%lld)", cn,
                 (long long)T, (long long)x.shape[1], (long long)Cout);
        ot_report(label, y.data, yref.data, (size_t)(T * Cout), TOL_REF, NT(TOL_REF), DTYPE_F32);
        ot_free(&nb);
        ot_free(&y);
    }

    /* SparseDownsample(2) + SparseUpsample(2) */
    struct tensor c = fx(&ck, "down.coords"), x = fx(&ck, "down.x"), pref = fx(&ck, "down.pcoords");
    struct tensor yref = fx(&ck, "down.y"), paref = fx(&ck, "down.parent"), uref = fx(&ck, "down.up");
    if (c.data && x.data && pref.data && yref.data && paref.data && uref.data) {
        int64_t T = c.shape[0], C = x.shape[1];
        struct tensor pc = i32_host(SHAPE(T, 4), NULL), pa = i32_host(SHAPE(T), NULL);
        struct tensor ch = i32_host(SHAPE(T, 8), NULL);
        int64_t M = op_sparse_down_index_cpu(&pc, &pa, &ch, &c, 10);
        CHECK(M == pref.shape[0], "down M %lld != %lld", (long long)M, (long long)pref.shape[0]);
        bool same = M == pref.shape[0] && memcmp(pc.data, pref.data, (size_t)M * 16) == 0 &&
                    memcmp(pa.data, paref.data, (size_t)T * 4) == 0;
        printf("%-44s M %lld %s\n", "down index cpu vs SparseDownsample", (long long)M,
               same ? "OK" : "FAIL");
        CHECK(same, "down coords/parent differ from the official module");
        if (same) {
            struct tensor y = ot_host(DTYPE_F32, SHAPE(M, C), NULL);
            struct tensor u = ot_host(DTYPE_F32, SHAPE(T, C), NULL);
            op_sparse_down_mean_cpu(&y, &x, &ch);
            ot_report("down mean cpu vs SparseDownsample (n/(n+1))", y.data, yref.data,
                      (size_t)(M * C), TOL_REF, NT(TOL_REF), DTYPE_F32);
            op_sparse_gather_rows_cpu(&u, &y, &pa);
            ot_report("upsample cpu vs SparseUpsample", u.data, uref.data, (size_t)(T * C),
                      TOL_REF, NT(TOL_REF), DTYPE_F32);
            CHECK(ot_guard_ok(&y) && ot_guard_ok(&u));
            /* scatter through the reversed rows, gather back: u again, bit for bit */
            int32_t *rv = malloc(sizeof(int32_t) * (size_t)T);
            for (int64_t i = 0; i < T; i++)
                rv[i] = (int32_t)(T - 1 - i);
            struct tensor trv = i32_host(SHAPE(T), rv);
            struct tensor s = ot_host(DTYPE_F32, SHAPE(T, C), NULL);
            struct tensor u2 = ot_host(DTYPE_F32, SHAPE(T, C), NULL);
            op_sparse_scatter_rows_cpu(&s, &u, &trv);
            op_sparse_gather_rows_cpu(&u2, &s, &trv);
            bool rt = memcmp(u2.data, u.data, tensor_nbytes(&u)) == 0 &&
                      memcmp(s.data, (float *)u.data + (T - 1) * C, sizeof(float) * C) == 0;
            printf("scatter rows cpu: reversed, gathered back %s\n", rt ? "OK" : "FAIL");
            CHECK(rt && ot_guard_ok(&s) && ot_guard_ok(&u2));
            free(rv);
            ot_free(&trv);
            ot_free(&s);
            ot_free(&u2);
            ot_free(&y);
            ot_free(&u);
        }
        CHECK(ot_guard_ok(&pc) && ot_guard_ok(&pa) && ot_guard_ok(&ch));
        ot_free(&pc); ot_free(&pa); ot_free(&ch);
    }

    /* SparseSubdivide */
    c = fx(&ck, "sub.coords");
    x = fx(&ck, "sub.x");
    struct tensor ycref = fx(&ck, "sub.ycoords");
    yref = fx(&ck, "sub.y");
    if (c.data && x.data && ycref.data && yref.data) {
        int64_t T = c.shape[0], C = x.shape[1];
        struct tensor yc = i32_host(SHAPE(8 * T, 4), NULL);
        struct tensor y = ot_host(DTYPE_F32, SHAPE(8 * T, C), NULL);
        op_sparse_subdivide_cpu(&yc, &c, &y, &x);
        bool same = memcmp(yc.data, ycref.data, (size_t)(8 * T * 16)) == 0;
        printf("%-44s T %lld %s\n", "subdivide coords cpu vs SparseSubdivide", (long long)T,
               same ? "OK" : "FAIL");
        CHECK(same);
        ot_report("subdivide feats cpu vs SparseSubdivide", y.data, yref.data,
                  (size_t)(8 * T * C), TOL_EXACT, NT(TOL_EXACT), DTYPE_F32);
        ot_free(&yc);
        ot_free(&y);
    }

    /* SparseGroupNorm32(4, 16) */
    x = fx(&ck, "gn.x");
    struct tensor w = fx(&ck, "gn.weight"), b = fx(&ck, "gn.bias");
    yref = fx(&ck, "gn.y");
    if (x.data && w.data && b.data && yref.data) {
        struct tensor y = ot_host(DTYPE_F32, x.shape, 2, NULL);
        op_sparse_groupnorm_cpu(&y, &x, 4, &w, &b, 1e-5f, false);
        ot_report("groupnorm cpu vs SparseGroupNorm32(4, 16)", y.data, yref.data,
                  (size_t)tensor_numel(&x), TOL_REF, NT(TOL_REF), DTYPE_F32);
        ot_free(&y);
    }
    ckpt_close(&ck);
}

// ----------------------------------------------------------------------------
// CPU: hand-computed cases

static void cpu_hand(struct rng *r)
{
    /* downsample at res 6; rows deliberately not in lexicographic order */
    const int32_t c[5][4] = {{0, 5, 4, 3}, {0, 1, 1, 1}, {0, 2, 2, 2}, {0, 0, 0, 0}, {0, 1, 0, 0}};
    const int32_t want_pc[3][4] = {{0, 0, 0, 0}, {0, 1, 1, 1}, {0, 2, 2, 1}};
    const int32_t want_pa[5] = {2, 0, 1, 0, 0};
    const int32_t want_ch[3][8] = {{3, -1, -1, -1, 4, -1, -1, 1},
                                   {2, -1, -1, -1, -1, -1, -1, -1},
                                   {-1, -1, -1, -1, -1, 0, -1, -1}};
    struct tensor tc = i32_host(SHAPE(5, 4), &c[0][0]);
    struct tensor pc = i32_host(SHAPE(5, 4), NULL), pa = i32_host(SHAPE(5), NULL);
    struct tensor ch = i32_host(SHAPE(5, 8), NULL);
    int64_t M = op_sparse_down_index_cpu(&pc, &pa, &ch, &tc, 6);
    bool ok = M == 3 && memcmp(pc.data, want_pc, sizeof(want_pc)) == 0 &&
              memcmp(pa.data, want_pa, sizeof(want_pa)) == 0 &&
              memcmp(ch.data, want_ch, sizeof(want_ch)) == 0;
    printf("%-44s M %lld %s\n", "down index cpu hand case", (long long)M, ok ? "OK" : "FAIL");
    CHECK(ok);
    float x[5 * 2] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    /* parent 0: rows 3, 4, 1 -> (7+9+3)/4, (8+10+4)/4; parent 1: row 2 -> 5/2, 6/2;
     * parent 2: row 0 -> 1/2, 2/2 (include_self: n/(n+1)) */
    float want_y[6] = {19.0f / 4, 22.0f / 4, 2.5f, 3.0f, 0.5f, 1.0f};
    struct tensor tx = ot_host(DTYPE_F32, SHAPE(5, 2), x);
    struct tensor ty = ot_host(DTYPE_F32, SHAPE(3, 2), NULL);
    struct tensor tu = ot_host(DTYPE_F32, SHAPE(5, 2), NULL);
    op_sparse_down_mean_cpu(&ty, &tx, &ch);
    ot_report("down mean cpu hand case", ty.data, want_y, 6, TOL_EXACT, NT(TOL_EXACT),
              DTYPE_F32);
    op_sparse_gather_rows_cpu(&tu, &ty, &pa);
    float want_u[10] = {0.5f, 1.0f, 19.0f / 4, 22.0f / 4, 2.5f, 3.0f, 19.0f / 4, 22.0f / 4,
                        19.0f / 4, 22.0f / 4};
    ot_report("upsample cpu hand case", tu.data, want_u, 10, TOL_EXACT, NT(TOL_EXACT),
              DTYPE_F32);
    CHECK(ot_guard_ok(&pc) && ot_guard_ok(&pa) && ot_guard_ok(&ch) && ot_guard_ok(&ty) &&
          ot_guard_ok(&tu));
    ot_free(&tc); ot_free(&pc); ot_free(&pa); ot_free(&ch); ot_free(&tx); ot_free(&ty);
    ot_free(&tu);

    /* subdivide: voxel (0, 1, 2, 3) -> children (2..3, 4..5, 6..7) in z-fastest order */
    const int32_t sc[2][4] = {{0, 1, 2, 3}, {0, 0, 0, 0}};
    struct tensor tsc = i32_host(SHAPE(2, 4), &sc[0][0]);
    struct tensor tyc = i32_host(SHAPE(16, 4), NULL);
    float sx[2 * 3] = {1, 2, 3, -1, -2, -3};
    struct tensor tsx = ot_host(DTYPE_F32, SHAPE(2, 3), sx);
    struct tensor tsy = ot_host(DTYPE_F16, SHAPE(16, 3), NULL);
    op_sparse_subdivide_cpu(&tyc, &tsc, &tsy, &tsx);
    const int32_t *yc = tyc.data;
    float ysf[48];
    ot_to_f32(&tsy, ysf);
    bool sok = true;
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 8; k++) {
            const int32_t *row = yc + 4 * (8 * i + k);
            sok &= row[0] == 0 && row[1] == 2 * sc[i][1] + (k >> 2) &&
                   row[2] == 2 * sc[i][2] + ((k >> 1) & 1) && row[3] == 2 * sc[i][3] + (k & 1);
            for (int cc = 0; cc < 3; cc++)
                sok &= ysf[(8 * i + k) * 3 + cc] == sx[i * 3 + cc];
        }
    sok &= yc[4 * 7 + 1] == 3 && yc[4 * 7 + 2] == 5 && yc[4 * 7 + 3] == 7;   /* child 7 */
    printf("%-44s %s\n", "subdivide cpu hand case (F32 -> F16)", sok ? "OK" : "FAIL");
    CHECK(sok && ot_guard_ok(&tyc) && ot_guard_ok(&tsy));
    ot_free(&tsc); ot_free(&tyc); ot_free(&tsx); ot_free(&tsy);

    /* sparse GroupNorm == op_groupnorm_cpu on (1, C, T), with and without SiLU */
    const int64_t T = 37, C = 12;
    const int G = 3;
    float *gx = malloc(sizeof(float) * T * C), *gxt = malloc(sizeof(float) * T * C);
    float *gref = malloc(sizeof(float) * T * C), *gy = malloc(sizeof(float) * T * C);
    float gw[12], gb[12];
    fill_normal(r, gx, (size_t)(T * C), 3.0f);
    for (int64_t i = 0; i < T * C; i++)
        gx[i] += 10.0f;
    fill_normal(r, gw, 12, 1.0f);
    fill_normal(r, gb, 12, 1.0f);
    for (int64_t t = 0; t < T; t++)
        for (int64_t cc = 0; cc < C; cc++)
            gxt[cc * T + t] = gx[t * C + cc];
    struct tensor w = tensor_view(gw, DTYPE_F32, DEVICE_HOST, SHAPE(C));
    struct tensor b = tensor_view(gb, DTYPE_F32, DEVICE_HOST, SHAPE(C));
    struct tensor xt = tensor_view(gxt, DTYPE_F32, DEVICE_HOST, SHAPE(1, C, T));
    op_groupnorm_cpu(&xt, &xt, G, &w, &b, 1e-5f, false);
    for (int silu = 0; silu < 2; silu++) {
        for (int64_t t = 0; t < T; t++)
            for (int64_t cc = 0; cc < C; cc++) {
                float v = gxt[cc * T + t];
                gref[t * C + cc] = silu ? v / (1.0f + expf(-v)) : v;
            }
        struct tensor x = tensor_view(gx, DTYPE_F32, DEVICE_HOST, SHAPE(T, C));
        struct tensor y = tensor_view(gy, DTYPE_F32, DEVICE_HOST, SHAPE(T, C));
        op_sparse_groupnorm_cpu(&y, &x, G, &w, &b, 1e-5f, silu);
        ot_report(silu ? "groupnorm+silu cpu vs op_groupnorm (1,C,T)"
                       : "groupnorm cpu vs op_groupnorm (1,C,T)",
                  gy, gref, (size_t)(T * C), TOL_GPU, NT(TOL_GPU), DTYPE_F32);
    }
    /* chunked GroupNorm: statistics over uneven row chunks, then each chunk normalised;
     * one chunk of every row is op_sparse_groupnorm bit for bit */
    {
        double acc[3 * 3];
        float *gc = malloc(sizeof(float) * T * C);
        struct tensor ta = tensor_view(acc, DTYPE_F64, DEVICE_HOST, SHAPE(G, 3));
        struct tensor x = tensor_view(gx, DTYPE_F32, DEVICE_HOST, SHAPE(T, C));
        struct tensor y = tensor_view(gy, DTYPE_F32, DEVICE_HOST, SHAPE(T, C));
        op_sparse_groupnorm_cpu(&y, &x, G, &w, &b, 1e-5f, true);
        memset(acc, 0, sizeof(acc));
        op_sparse_groupnorm_stats_cpu(&ta, &x, G);
        struct tensor yc = tensor_view(gc, DTYPE_F32, DEVICE_HOST, SHAPE(T, C));
        op_sparse_groupnorm_apply_cpu(&yc, &x, &ta, G, &w, &b, 1e-5f, true);
        bool same = memcmp(gc, gy, sizeof(float) * T * C) == 0;
        printf("%-44s %s\n", "groupnorm stats+apply, one chunk: same bytes", same ? "OK" : "FAIL");
        CHECK(same);
        const int64_t cut[4] = {0, 1, 20, T};
        memset(acc, 0, sizeof(acc));
        for (int k = 0; k < 3; k++) {
            struct tensor xs = tensor_slice(&x, 0, cut[k], cut[k + 1] - cut[k]);
            op_sparse_groupnorm_stats_cpu(&ta, &xs, G);
        }
        for (int k = 0; k < 3; k++) {
            struct tensor xs = tensor_slice(&x, 0, cut[k], cut[k + 1] - cut[k]);
            struct tensor ys = tensor_slice(&yc, 0, cut[k], cut[k + 1] - cut[k]);
            op_sparse_groupnorm_apply_cpu(&ys, &xs, &ta, G, &w, &b, 1e-5f, true);
        }
        ot_report("groupnorm+silu in chunks 1/19/17 vs whole", gc, gy, (size_t)(T * C), TOL_GPU,
                  NT(TOL_GPU), DTYPE_F32);
        free(gc);
    }
    free(gx); free(gxt); free(gref); free(gy);

    /* conv3 on a chunk of output rows (x all rows, nbr the chunk's rows): the
     * chunk's rows of the whole conv, bit for bit; and a map into another row
     * set (x = 2 rows, every entry 0 or 1) */
    {
        int64_t Tn;
        int32_t *cs = random_sites(r, 6, 60, false, &Tn);
        const int64_t Ci = 5, Co = 3;
        float *xs = malloc(sizeof(float) * (size_t)(Tn * Ci)), *ws = malloc(sizeof(float) * Co * 27 * Ci);
        float *yw = malloc(sizeof(float) * (size_t)(Tn * Co)), *yk = malloc(sizeof(float) * (size_t)(Tn * Co));
        int32_t *nb = malloc(sizeof(int32_t) * (size_t)(Tn * 27));
        fill_normal(r, xs, (size_t)(Tn * Ci), 1.0f);
        fill_normal(r, ws, (size_t)(Co * 27 * Ci), 1.0f);
        struct tensor tc = tensor_view(cs, DTYPE_I32, DEVICE_HOST, SHAPE(Tn, 4));
        struct tensor tn = tensor_view(nb, DTYPE_I32, DEVICE_HOST, SHAPE(Tn, 27));
        struct tensor tx = tensor_view(xs, DTYPE_F32, DEVICE_HOST, SHAPE(Tn, Ci));
        struct tensor tw = tensor_view(ws, DTYPE_F32, DEVICE_HOST, SHAPE(Co, 3, 3, 3, Ci));
        struct tensor ty = tensor_view(yw, DTYPE_F32, DEVICE_HOST, SHAPE(Tn, Co));
        op_sparse_nbr_cpu(&tn, &tc);
        op_sparse_conv3_cpu(&ty, &tx, &tw, NULL, &tn);
        int64_t a = Tn / 3, n = Tn / 2;
        struct tensor tnc = tensor_slice(&tn, 0, a, n);
        struct tensor tyc = tensor_view(yk, DTYPE_F32, DEVICE_HOST, SHAPE(n, Co));
        op_sparse_conv3_cpu(&tyc, &tx, &tw, NULL, &tnc);
        bool same = memcmp(yk, yw + a * Co, sizeof(float) * (size_t)(n * Co)) == 0;
        printf("%-44s %s\n", "conv3 cpu on a chunk of output rows", same ? "OK" : "FAIL");
        CHECK(same);
        free(cs); free(xs); free(ws); free(yw); free(yk); free(nb);
    }

    /* kernel size 1 (skip_connection): spconv's reading of the stored (Cout,1,1,1,Cin)
     * buffer as (Cin, Cout), by hand; then op_sparse_conv1 == conv3 with only the
     * centre tap, both through the dispatchers on host tensors */
    {
        float st[2 * 3], lin[2 * 3];            /* Cout 2, Cin 3: st[i * 2 + o] is W[i][o] */
        for (int i = 0; i < 6; i++)
            st[i] = (float)(i + 1);
        sparse_conv1_weight(lin, st, DTYPE_F32, 2, 3);
        bool ok = lin[0] == 1 && lin[1] == 3 && lin[2] == 5 && lin[3] == 2 && lin[4] == 4 &&
                  lin[5] == 6;
        printf("%-44s %s\n", "sparse_conv1_weight: (Cin, Cout) view transposed", ok ? "OK" : "FAIL");
        CHECK(ok);
    }
    {
        const int64_t T1 = 9, Ci = 5, Co = 4;
        float x1[9 * 5], w1[4 * 5], w3[4 * 27 * 5], b1[4], y1[9 * 4], y3[9 * 4];
        int32_t c1[9][4];
        fill_small_int(r, x1, (size_t)(T1 * Ci), -3, 3);
        fill_small_int(r, w1, (size_t)(Co * Ci), -3, 3);
        fill_small_int(r, b1, (size_t)Co, -3, 3);
        memset(w3, 0, sizeof(w3));
        for (int64_t co = 0; co < Co; co++)
            memcpy(w3 + (co * 27 + 13) * Ci, w1 + co * Ci, sizeof(float) * (size_t)Ci);
        for (int i = 0; i < 9; i++) {                /* a 3x3 plane: centres have neighbours */
            int32_t row[4] = {0, 1, i / 3, i % 3};
            memcpy(c1[i], row, sizeof(row));
        }
        int32_t n1[9 * 27];
        struct tensor tc1 = tensor_view(c1, DTYPE_I32, DEVICE_HOST, SHAPE(T1, 4));
        struct tensor tn1 = tensor_view(n1, DTYPE_I32, DEVICE_HOST, SHAPE(T1, 27));
        struct tensor tx1 = tensor_view(x1, DTYPE_F32, DEVICE_HOST, SHAPE(T1, Ci));
        struct tensor tw1 = tensor_view(w1, DTYPE_F32, DEVICE_HOST, SHAPE(Co, Ci));
        struct tensor tw3 = tensor_view(w3, DTYPE_F32, DEVICE_HOST, SHAPE(Co, 3, 3, 3, Ci));
        struct tensor tb1 = tensor_view(b1, DTYPE_F32, DEVICE_HOST, SHAPE(Co));
        struct tensor ty1 = tensor_view(y1, DTYPE_F32, DEVICE_HOST, SHAPE(T1, Co));
        struct tensor ty3 = tensor_view(y3, DTYPE_F32, DEVICE_HOST, SHAPE(T1, Co));
        op_sparse_nbr(NULL, NULL, &tn1, &tc1);
        op_sparse_conv1(NULL, &ty1, &tx1, &tw1, &tb1);
        op_sparse_conv3(NULL, NULL, &ty3, &tx1, &tw3, &tb1, &tn1);
        ot_report("conv1 cpu vs conv3 centre tap", y1, y3, (size_t)(T1 * Co), TOL_EXACT,
                  NT(TOL_EXACT), DTYPE_F32);
    }

    /* coordinate checks (an external-input validator: must reject, not abort) */
    int32_t good[3][4] = {{0, 0, 0, 0}, {0, 7, 7, 7}, {0, 3, 1, 2}};
    int32_t dup[3][4] = {{0, 1, 2, 3}, {0, 0, 0, 0}, {0, 1, 2, 3}};
    int32_t far[2][4] = {{0, 0, 0, 0}, {0, 8, 0, 0}};
    int32_t neg[1][4] = {{0, 0, -1, 0}};
    int32_t bat[1][4] = {{1, 0, 0, 0}};
    struct tensor t1 = tensor_view(good, DTYPE_I32, DEVICE_HOST, SHAPE(3, 4));
    struct tensor t2 = tensor_view(dup, DTYPE_I32, DEVICE_HOST, SHAPE(3, 4));
    struct tensor t3 = tensor_view(far, DTYPE_I32, DEVICE_HOST, SHAPE(2, 4));
    struct tensor t4 = tensor_view(neg, DTYPE_I32, DEVICE_HOST, SHAPE(1, 4));
    struct tensor t5 = tensor_view(bat, DTYPE_I32, DEVICE_HOST, SHAPE(1, 4));
    struct tensor t6 = tensor_view(good, DTYPE_F32, DEVICE_HOST, SHAPE(3, 4));
    struct tensor t7 = tensor_view(good, DTYPE_I32, DEVICE_HOST, SHAPE(4, 3));
    bool cok = sparse_coords_check(&t1, 8, "test good") && !sparse_coords_check(&t1, 7, "test res") &&
               !sparse_coords_check(&t2, 8, "test dup") && !sparse_coords_check(&t3, 8, "test far") &&
               !sparse_coords_check(&t4, 8, "test neg") && !sparse_coords_check(&t5, 8, "test batch") &&
               !sparse_coords_check(&t6, 8, "test dtype") && !sparse_coords_check(&t7, 8, "test shape");
    printf("%-44s %s\n", "sparse_coords_check accepts/rejects", cok ? "OK" : "FAIL");
    CHECK(cok);
}

// ----------------------------------------------------------------------------
// CUDA vs CPU

static struct tensor dev_i32(struct arena *a, const struct tensor *h)
{
    return ot_dev(a, h);
}

static void i32_back(int32_t *dst, const struct tensor *d)
{
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(dst, d->data, tensor_nbytes(d), cudaMemcpyDeviceToHost));
}

/* A random conv case: sites (random_sites, corners included), x N(0, 1), w N(0, 1/(27 Cin)),
 * b N(0, 0.1), and room for the reference and the result (T x Cout each); malloc'ed. */
struct conv_rand {
    int64_t  T;
    int32_t *c;
    float   *x, *w, *b, *ref, *got;
};

static struct conv_rand conv_rand_make(struct rng *r, int R, int n, int Cin, int Cout)
{
    struct conv_rand cr;
    size_t nw = (size_t)Cout * 27 * Cin;

    cr.c = random_sites(r, R, n, true, &cr.T);
    cr.x = malloc(sizeof(float) * (size_t)(cr.T * Cin));
    cr.w = malloc(sizeof(float) * nw);
    cr.b = malloc(sizeof(float) * (size_t)Cout);
    cr.ref = malloc(sizeof(float) * (size_t)(cr.T * Cout));
    cr.got = malloc(sizeof(float) * (size_t)(cr.T * Cout));
    ASSERT(cr.x && cr.w && cr.b && cr.ref && cr.got);
    fill_normal(r, cr.x, (size_t)(cr.T * Cin), 1.0f);
    fill_normal(r, cr.w, nw, 1.0f / sqrtf(27.0f * Cin));
    fill_normal(r, cr.b, (size_t)Cout, 0.1f);
    return cr;
}

static void conv_rand_free(struct conv_rand *cr)
{
    free(cr->c), free(cr->x), free(cr->w), free(cr->b), free(cr->ref), free(cr->got);
}

/* op_sparse_gather_rows / op_sparse_scatter_rows, CUDA vs CPU, on both kernels: the
 * 16-byte vector path (same dtype, whole 16-byte rows, aligned bases: C = 768 as in the
 * SLAT trunk, and rows of 1 and 3 vectors, fewer than a warp's threads) and the
 * per-element fallback (odd C, F32 -> F16, a gather from a base off 16-byte alignment). A
 * gather of T rows from M with repeats; a scatter of T distinct rows into M prefilled ones.
 * Exact. */
static void gpu_move_rows(struct arena *dev, struct op_ctx *ctx, struct rng *r)
{
    const struct { enum dtype xd, yd; int C, skew; const char *path; } cases[] = {
        {DTYPE_F16, DTYPE_F16, 768, 0, "vector"},  {DTYPE_F32, DTYPE_F32, 768, 0, "vector"},
        {DTYPE_F16, DTYPE_F16, 8, 0, "vector"},    {DTYPE_F32, DTYPE_F32, 12, 0, "vector"},
        {DTYPE_F16, DTYPE_F16, 13, 0, "element"},  {DTYPE_F32, DTYPE_F32, 7, 0, "element"},
        {DTYPE_F32, DTYPE_F16, 768, 0, "element"}, {DTYPE_F16, DTYPE_F16, 768, 1, "element"},
    };
    const int64_t T = 3001, M = 4999;
    char label[160];
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        size_t mark = arena_mark(dev);
        int C = cases[k].C, sk = cases[k].skew;
        size_t nx = (size_t)(M * C) + (size_t)sk, xs = dtype_size(cases[k].xd);
        float *v = malloc(sizeof(float) * nx), *ref = malloc(sizeof(float) * (size_t)(M * C));
        float *got = malloc(sizeof(float) * (size_t)(M * C));
        int32_t *gi = malloc(sizeof(int32_t) * (size_t)T);
        int32_t *si = malloc(sizeof(int32_t) * (size_t)M);
        ASSERT(v && ref && got && gi && si);
        fill_normal(r, v, nx, 1.0f);
        for (int64_t i = 0; i < T; i++)         /* gather: any rows, repeats allowed */
            gi[i] = (int32_t)(rng_u64(r) % (uint64_t)M);
        for (int64_t i = 0; i < M; i++)         /* scatter: the first T of a permutation */
            si[i] = (int32_t)i;
        for (int64_t i = M - 1; i > 0; i--) {
            int64_t j = (int64_t)(rng_u64(r) % (uint64_t)(i + 1));
            int32_t t = si[i];
            si[i] = si[j], si[j] = t;
        }
        /* x: M rows (skew elements in front of them, so the base may lose alignment) */
        struct tensor hxa = ot_host(cases[k].xd, SHAPE((int64_t)nx), v);
        struct tensor dxa = ot_dev(dev, &hxa);
        struct tensor hx = tensor_view((char *)hxa.data + sk * xs, cases[k].xd, DEVICE_HOST,
                                       SHAPE(M, C));
        struct tensor dx = tensor_view((char *)dxa.data + sk * xs, cases[k].xd, DEVICE_CUDA,
                                       SHAPE(M, C));
        struct tensor hgi = i32_host(SHAPE(T), gi), dgi = dev_i32(dev, &hgi);
        struct tensor hsi = i32_host(SHAPE(T), si), dsi = dev_i32(dev, &hsi);
        struct tensor hg = ot_host(cases[k].yd, SHAPE(T, C), NULL), dg = ot_dev(dev, &hg);
        op_sparse_gather_rows_cpu(&hg, &hx, &hgi);
        op_sparse_gather_rows_cuda(ctx, &dg, &dx, &dgi);
        ot_to_f32(&hg, ref);
        ot_to_f32(&dg, got);
        snprintf(label, sizeof(label), "gather rows cuda vs cpu %s->%s (%lld of %lld,%d)%s %s",
                 dtype_name(cases[k].xd), dtype_name(cases[k].yd), (long long)T, (long long)M,
                 C, sk ? " skewed" : "", cases[k].path);
        ot_report(label, got, ref, (size_t)(T * C), TOL_EXACT, NT(TOL_EXACT), cases[k].yd);
        CHECK(ot_guard_ok(&dg));
        /* scatter the gathered rows (x = hg / dg, T rows) into M rows prefilled from v */
        struct tensor hs = ot_host(cases[k].yd, SHAPE(M, C), v + nx - (size_t)(M * C));
        struct tensor ds = ot_dev(dev, &hs);
        struct tensor hgx = hg, dgx = dg;
        if (cases[k].yd != cases[k].xd) {       /* scatter x in xd, y in yd: convert too */
            hgx = ot_host(cases[k].xd, SHAPE(T, C), ref);
            dgx = ot_dev(dev, &hgx);
        }
        op_sparse_scatter_rows_cpu(&hs, &hgx, &hsi);
        op_sparse_scatter_rows_cuda(ctx, &ds, &dgx, &dsi);
        ot_to_f32(&hs, ref);
        ot_to_f32(&ds, got);
        /* the scatter reads the aligned gathered rows: the skewed case's scatter is a vector one */
        snprintf(label, sizeof(label), "scatter rows cuda vs cpu %s->%s (%lld into %lld,%d) %s",
                 dtype_name(cases[k].xd), dtype_name(cases[k].yd), (long long)T, (long long)M,
                 C, sk ? "vector" : cases[k].path);
        ot_report(label, got, ref, (size_t)(M * C), TOL_EXACT, NT(TOL_EXACT), cases[k].yd);
        CHECK(ot_guard_ok(&ds));
        if (cases[k].yd != cases[k].xd)
            ot_free(&hgx);
        ot_free(&hxa); ot_free(&hgi); ot_free(&hsi); ot_free(&hg); ot_free(&hs);
        free(v), free(ref), free(got), free(gi), free(si);
        arena_release(dev, mark);
    }
}

/* op_sparse_conv3_igemm_cuda (the implicit GEMM) against the CPU conv on the same F16
 * inputs: tile edges (T not a multiple of 128), y F16 and F32, bias F16 / F32 / none, a
 * column tile whose taps are partly all-zero (the tap mask), and the shapes it declines. */
static void gpu_igemm(struct arena *dev, struct op_ctx *ctx, struct rng *r)
{
    const struct { int R, n, Cin, Cout; enum dtype yd, bd; bool bias, zero_taps; } cases[] = {
        {24, 3000, 32, 96, DTYPE_F16, DTYPE_F16, true, false},
        {24, 3000, 64, 192, DTYPE_F32, DTYPE_F32, true, true},
        {40, 9000, 96, 96, DTYPE_F16, DTYPE_F32, false, true},
        {12, 300, 192, 288, DTYPE_F16, DTYPE_F16, true, false},
    };
    char label[160];
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        size_t mark = arena_mark(dev);
        int Cin = cases[k].Cin, Cout = cases[k].Cout;
        struct conv_rand cr = conv_rand_make(r, cases[k].R, cases[k].n, Cin, Cout);
        int64_t T = cr.T;
        int32_t *c = cr.c;
        float *x = cr.x, *w = cr.w, *b = cr.b, *ref = cr.ref, *got = cr.got;
        if (cases[k].zero_taps)     /* last column tile: only taps 4, 13, 22 (and all 27 of -0) */
            for (int64_t n = Cout - 96; n < Cout; n++)
                for (int t = 0; t < 27; t++)
                    if (t != 4 && t != 13 && t != 22)
                        for (int ci = 0; ci < Cin; ci++)
                            w[((size_t)n * 27 + t) * Cin + ci] = (t & 1) ? -0.0f : 0.0f;
        struct tensor hc = i32_host(SHAPE(T, 4), c), hn = i32_host(SHAPE(T, SPARSE_K3), NULL);
        struct tensor hx = ot_host(DTYPE_F16, SHAPE(T, Cin), x);
        struct tensor hw = ot_host(DTYPE_F16, SHAPE(Cout, 3, 3, 3, Cin), w);
        struct tensor hb = ot_host(cases[k].bd, SHAPE(Cout), b);
        struct tensor hy = ot_host(cases[k].yd, SHAPE(T, Cout), NULL);
        op_sparse_nbr_cpu(&hn, &hc);
        op_sparse_conv3_cpu(&hy, &hx, &hw, cases[k].bias ? &hb : NULL, &hn);
        ot_to_f32(&hy, ref);
        struct tensor dx = ot_dev(dev, &hx), dw = ot_dev(dev, &hw), db = ot_dev(dev, &hb);
        struct tensor dn = dev_i32(dev, &hn), dy = ot_dev(dev, &hy);
        CUDA_CHECK(cudaMemset(dy.data, 0xff, tensor_nbytes(&dy)));
        bool ran = op_sparse_conv3_igemm_cuda(ctx, dev, &dy, &dx, &dw,
                                              cases[k].bias ? &db : NULL, &dn);
        CHECK(ran, "igemm declined (%d -> %d)", Cin, Cout);
        ot_to_f32(&dy, got);
        snprintf(label, sizeof(label), "conv3 igemm vs cpu y %s b %s (%lld,%d->%d)%s",
                 dtype_name(cases[k].yd), cases[k].bias ? dtype_name(cases[k].bd) : "none",
                 (long long)T, Cin, Cout, cases[k].zero_taps ? " zero taps" : "");
        ot_report(label, got, ref, (size_t)(T * Cout), TOL_GPU, NT(TOL_GPU), cases[k].yd);
        CHECK(ot_guard_ok(&dy));
        /* declined: Cout not a multiple of 96, F32 x */
        struct tensor w48 = tensor_slice(&dw, 0, 0, 48);
        struct tensor y48 = arena_tensor(dev, DTYPE_F16, SHAPE(T, 48));
        CHECK(!op_sparse_conv3_igemm_cuda(ctx, dev, &y48, &dx, &w48, NULL, &dn),
              "igemm declines Cout 48");
        ot_free(&hc); ot_free(&hn); ot_free(&hx); ot_free(&hw); ot_free(&hb); ot_free(&hy);
        conv_rand_free(&cr);
        arena_release(dev, mark);
    }
}

static void gpu_part(struct arena *dev, struct op_ctx *ctx, struct rng *r)
{
    char label[160];
    struct arena small = {0};

    /* a scratch arena that holds ~100 im2col rows at Cin 32 F32: many chunks */
    ASSERT(arena_init(&small, ARENA_DEVICE, "small-scratch",
                      arena_round((size_t)100 * 27 * 32 * 4) + 4 * ARENA_ALIGN) == 0);
    const struct { int R, n, Cin, Cout; enum dtype xd, wd, yd; bool small; } cases[] = {
        {5, 40, 3, 5, DTYPE_F32, DTYPE_F32, DTYPE_F32, false},
        {24, 3000, 32, 48, DTYPE_F32, DTYPE_F32, DTYPE_F32, true},
        {24, 3000, 32, 48, DTYPE_F16, DTYPE_F16, DTYPE_F16, false},
        {24, 3000, 32, 48, DTYPE_F32, DTYPE_F16, DTYPE_F32, false},
        {64, 20000, 128, 128, DTYPE_F16, DTYPE_F16, DTYPE_F16, false},
        {16, 900, 67, 9, DTYPE_BF16, DTYPE_BF16, DTYPE_BF16, false},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        size_t mark = arena_mark(dev);
        int Cin = cases[k].Cin, Cout = cases[k].Cout;
        struct conv_rand cr = conv_rand_make(r, cases[k].R, cases[k].n, Cin, Cout);
        int64_t T = cr.T;
        int32_t *c = cr.c;
        float *x = cr.x, *w = cr.w, *b = cr.b, *ref = cr.ref, *got = cr.got;
        struct tensor hc = i32_host(SHAPE(T, 4), c), hn = i32_host(SHAPE(T, SPARSE_K3), NULL);
        struct tensor hx = ot_host(cases[k].xd, SHAPE(T, Cin), x);
        struct tensor hw = ot_host(cases[k].wd, SHAPE(Cout, 3, 3, 3, Cin), w);
        struct tensor hb = ot_host(DTYPE_F32, SHAPE(Cout), b);
        struct tensor hy = ot_host(cases[k].yd, SHAPE(T, Cout), NULL);
        op_sparse_nbr_cpu(&hn, &hc);
        op_sparse_conv3_cpu(&hy, &hx, &hw, &hb, &hn);
        ot_to_f32(&hy, ref);

        struct tensor dc = dev_i32(dev, &hc), dx = ot_dev(dev, &hx), dw = ot_dev(dev, &hw);
        struct tensor db = ot_dev(dev, &hb);
        struct tensor dn = dev_i32(dev, &hn), dy = ot_dev(dev, &hy);
        CUDA_CHECK(cudaMemset(dn.data, 0x7f, tensor_nbytes(&dn)));
        CUDA_CHECK(cudaMemset(dy.data, 0xff, tensor_nbytes(&dy)));
        op_sparse_nbr_cuda(ctx, dev, &dn, &dc);
        int32_t *gn = malloc(tensor_nbytes(&hn));
        i32_back(gn, &dn);
        bool same = memcmp(gn, hn.data, tensor_nbytes(&hn)) == 0;
        printf("nbr cuda vs cpu R %-3d T %-6lld %s\n", cases[k].R, (long long)T,
               same ? "OK" : "FAIL");
        CHECK(same && ot_guard_ok(&dn));
        op_sparse_conv3_cuda(ctx, cases[k].small ? &small : dev, &dy, &dx, &dw, &db, &dn);
        ot_to_f32(&dy, got);
        snprintf(label, sizeof(label), "conv3 cuda vs cpu x %s w %s y %s (%lld,%d->%d)%s",
                 dtype_name(cases[k].xd), dtype_name(cases[k].wd), dtype_name(cases[k].yd),
                 (long long)T, Cin, Cout, cases[k].small ? " chunked" : "");
        ot_report(label, got, ref, (size_t)(T * Cout), TOL_GPU, NT(TOL_GPU), cases[k].yd);
        CHECK(ot_guard_ok(&dy));
        free(gn);
        ot_free(&hc); ot_free(&hn); ot_free(&hx); ot_free(&hw); ot_free(&hb); ot_free(&hy);
        conv_rand_free(&cr);
        arena_release(dev, mark);
    }
    arena_free(&small);
    gpu_igemm(dev, ctx, r);
    gpu_move_rows(dev, ctx, r);

    /* down index / mean / upsample / subdivide / groupnorm on a shell-like set at 64 */
    for (int k = 0; k < 2; k++) {
        size_t mark = arena_mark(dev);
        int R = k ? 64 : 10;
        int64_t T;
        int32_t *c = random_sites(r, R, k ? 30000 : 300, true, &T);
        const int C = k ? 128 : 7;
        enum dtype dt = k ? DTYPE_F16 : DTYPE_F32;
        float *x = malloc(sizeof(float) * (size_t)(T * C) * 8);
        float *ref = malloc(sizeof(float) * (size_t)(T * C) * 8);
        float *got = malloc(sizeof(float) * (size_t)(T * C) * 8);
        fill_normal(r, x, (size_t)(T * C), 1.0f);
        struct tensor hc = i32_host(SHAPE(T, 4), c);
        struct tensor hpc = i32_host(SHAPE(T, 4), NULL), hpa = i32_host(SHAPE(T), NULL);
        struct tensor hch = i32_host(SHAPE(T, 8), NULL);
        int64_t M = op_sparse_down_index_cpu(&hpc, &hpa, &hch, &hc, R);
        struct tensor dc = dev_i32(dev, &hc), dpc = dev_i32(dev, &hpc), dpa = dev_i32(dev, &hpa);
        struct tensor dch = dev_i32(dev, &hch);
        int64_t Mg = op_sparse_down_index_cuda(ctx, dev, &dpc, &dpa, &dch, &dc, R);
        int32_t *buf = malloc(sizeof(int32_t) * 8 * (size_t)T);
        bool same = Mg == M;
        i32_back(buf, &dpc);
        same &= memcmp(buf, hpc.data, (size_t)M * 16) == 0;
        i32_back(buf, &dpa);
        same &= memcmp(buf, hpa.data, (size_t)T * 4) == 0;
        i32_back(buf, &dch);
        same &= memcmp(buf, hch.data, (size_t)M * 32) == 0;
        printf("down index cuda vs cpu R %d T %lld M %lld (cuda %lld) %s\n", R, (long long)T,
               (long long)M, (long long)Mg, same ? "OK" : "FAIL");
        CHECK(same && ot_guard_ok(&dpc) && ot_guard_ok(&dpa) && ot_guard_ok(&dch));

        struct tensor hx = ot_host(dt, SHAPE(T, C), x), hy = ot_host(dt, SHAPE(M, C), NULL);
        struct tensor hu = ot_host(dt, SHAPE(T, C), NULL);
        op_sparse_down_mean_cpu(&hy, &hx, &hch);
        op_sparse_gather_rows_cpu(&hu, &hy, &hpa);
        struct tensor dx = ot_dev(dev, &hx), dy = ot_dev(dev, &hy), du = ot_dev(dev, &hu);
        op_sparse_down_mean_cuda(ctx, &dy, &dx, &dch);
        op_sparse_gather_rows_cuda(ctx, &du, &dy, &dpa);
        ot_to_f32(&hy, ref);
        ot_to_f32(&dy, got);
        snprintf(label, sizeof(label), "down mean cuda vs cpu %s (%lld,%d)", dtype_name(dt),
                 (long long)M, C);
        ot_report(label, got, ref, (size_t)(M * C), TOL_GPU, NT(TOL_GPU), dt);
        ot_to_f32(&hu, ref);
        ot_to_f32(&du, got);
        snprintf(label, sizeof(label), "upsample cuda vs cpu %s (%lld,%d)", dtype_name(dt),
                 (long long)T, C);
        ot_report(label, got, ref, (size_t)(T * C), TOL_EXACT, NT(TOL_EXACT), dt);
        CHECK(ot_guard_ok(&dy) && ot_guard_ok(&du));
        /* scatter the upsampled rows back in reversed order: y[T-1-i] = u[i] */
        int32_t *rv = malloc(sizeof(int32_t) * (size_t)T);
        for (int64_t i = 0; i < T; i++)
            rv[i] = (int32_t)(T - 1 - i);
        struct tensor hrv = i32_host(SHAPE(T), rv), drv = dev_i32(dev, &hrv);
        struct tensor hs = ot_host(dt, SHAPE(T, C), NULL), ds = ot_dev(dev, &hs);
        op_sparse_scatter_rows_cpu(&hs, &hu, &hrv);
        op_sparse_scatter_rows_cuda(ctx, &ds, &du, &drv);
        ot_to_f32(&hs, ref);
        ot_to_f32(&ds, got);
        snprintf(label, sizeof(label), "scatter rows cuda vs cpu %s (%lld,%d)", dtype_name(dt),
                 (long long)T, C);
        ot_report(label, got, ref, (size_t)(T * C), TOL_EXACT, NT(TOL_EXACT), dt);
        CHECK(ot_guard_ok(&ds));
        free(rv);

        /* subdivide (coords + feats) */
        struct tensor hsc = i32_host(SHAPE(8 * T, 4), NULL), hsf = ot_host(dt, SHAPE(8 * T, C), NULL);
        op_sparse_subdivide_cpu(&hsc, &hc, &hsf, &hx);
        struct tensor dsc = dev_i32(dev, &hsc), dsf = ot_dev(dev, &hsf);
        CUDA_CHECK(cudaMemset(dsc.data, 0xff, tensor_nbytes(&dsc)));
        op_sparse_subdivide_cuda(ctx, &dsc, &dc, &dsf, &dx);
        int32_t *sb = malloc(tensor_nbytes(&hsc));
        i32_back(sb, &dsc);
        same = memcmp(sb, hsc.data, tensor_nbytes(&hsc)) == 0;
        printf("subdivide coords cuda vs cpu T %lld %s\n", (long long)T, same ? "OK" : "FAIL");
        CHECK(same && ot_guard_ok(&dsc) && ot_guard_ok(&dsf));
        ot_to_f32(&hsf, ref);
        ot_to_f32(&dsf, got);
        ot_report("subdivide feats cuda vs cpu", got, ref, (size_t)(8 * T * C), TOL_EXACT,
                  NT(TOL_EXACT), dt);
        free(sb);

        /* groupnorm (+ silu), in place on the device copy of x */
        float gw[128], gb[128];
        fill_normal(r, gw, (size_t)C, 1.0f);
        fill_normal(r, gb, (size_t)C, 1.0f);
        int G = k ? 32 : 7;
        struct tensor hw = ot_host(DTYPE_F32, SHAPE(C), gw), hb = ot_host(DTYPE_F32, SHAPE(C), gb);
        struct tensor dw = ot_dev(dev, &hw), dbb = ot_dev(dev, &hb);
        op_sparse_groupnorm_cpu(&hu, &hx, G, &hw, &hb, 1e-5f, k == 1);
        op_sparse_groupnorm_cuda(ctx, dev, &dx, &dx, G, &dw, &dbb, 1e-5f, k == 1);
        ot_to_f32(&hu, ref);
        ot_to_f32(&dx, got);
        snprintf(label, sizeof(label), "groupnorm%s cuda vs cpu %s (%lld,%d) G%d in place",
                 k ? "+silu" : "", dtype_name(dt), (long long)T, C, G);
        ot_report(label, got, ref, (size_t)(T * C), TOL_GPU, NT(TOL_GPU), dt);
        CHECK(ot_guard_ok(&dx));

        /* chunked groupnorm: cuda stats over 3 chunks + apply vs the cpu op on the whole */
        struct tensor hacc = ot_host(DTYPE_F64, SHAPE(G, 3), NULL);
        memset(hacc.data, 0, tensor_nbytes(&hacc));
        struct tensor dacc = ot_dev(dev, &hacc), dx2 = ot_dev(dev, &hx);
        const int64_t cut[4] = {0, T / 5, T / 5 + 1, T};
        for (int q = 0; q < 3; q++) {
            struct tensor xs = tensor_slice(&dx2, 0, cut[q], cut[q + 1] - cut[q]);
            op_sparse_groupnorm_stats_cuda(ctx, dev, &dacc, &xs, G);
        }
        op_sparse_groupnorm_apply_cuda(ctx, dev, &dx2, &dx2, &dacc, G, &dw, &dbb, 1e-5f, k == 1);
        ot_to_f32(&dx2, got);
        snprintf(label, sizeof(label), "groupnorm%s chunked cuda vs cpu %s (%lld,%d) G%d",
                 k ? "+silu" : "", dtype_name(dt), (long long)T, C, G);
        ot_report(label, got, ref, (size_t)(T * C), TOL_GPU, NT(TOL_GPU), dt);
        CHECK(ot_guard_ok(&dx2) && ot_guard_ok(&dacc));
        ot_free(&hacc);

        ot_free(&hc); ot_free(&hpc); ot_free(&hpa); ot_free(&hch); ot_free(&hx); ot_free(&hy);
        ot_free(&hu); ot_free(&hsc); ot_free(&hsf); ot_free(&hw); ot_free(&hb);
        free(buf); free(c); free(x); free(ref); free(got);
        arena_release(dev, mark);
    }
}

int main(void)
{
    struct rng r;
    rng_seed(&r, 2024);
    ot_print_tols(TOL_EXACT, NT(TOL_EXACT));
    ot_print_tols(TOL_REF, NT(TOL_REF));
    ot_print_tols(TOL_GPU, NT(TOL_GPU));

    const struct conv_case cases[] = {
        {"random R7 + corners", 7, 90, 5, 6, 0},
        {"random R9 odd C", 9, 200, 7, 3, 0},
        {"full block 5^3", 5, 0, 4, 5, 1},
        {"isolated voxel (impulse)", 6, 1, 3, 4, 2},
        {"empty T=0", 6, 0, 3, 4, 2},
        {"axis pairs + border", 6, 0, 2, 3, 3},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        cpu_conv_dense(&r, &cases[k], DTYPE_F32);
        cpu_conv_dense(&r, &cases[k], DTYPE_F16);
    }
    cpu_fixtures();
    cpu_hand(&r);
    nbr_paths(&r);

    struct arena dev = {0};
    struct op_ctx ctx = {0};
    if (harness_gpu("CUDA part (the CPU checks above ran)")) {
        bool up = ot_gpu_begin(&dev, &ctx, (size_t)1 << 30);
        CHECK(up, "a 1 GiB device arena and an op context");
        if (up) {
            gpu_part(&dev, &ctx, &r);
            ot_gpu_end(&dev, &ctx);
        }
    }
    return harness_done("test_op_sparse");
}
