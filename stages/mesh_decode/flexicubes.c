/*
 * flexicubes.c - sparse FlexiCubes extraction, CPU reference and dispatch
 * (see flexicubes.h for the algorithm and its references; CUDA in
 * flexicubes_cuda.cu, same steps and data layout).
 *
 * Every float expression below follows the reference's operation order
 * (cube2mesh.py, utils_cube.py, flexicubes.py), one fp32 rounding per torch op:
 * no fused multiply-adds, sums in the order torch's CPU kernels take (the
 * scatter mean in cube-row order, index_add_ in entry order).
 */
#include "flexicubes.h"
#include "flexicubes_tables.h"
#include "flexicubes_cuda.h"
#include "check.h"
#include "err.h"
#include "log.h"
#include "ops_sparse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const uint8_t FC_EDGE_CORNERS[12][2] = {
    {0, 1}, {1, 5}, {4, 5}, {0, 4}, {2, 3}, {3, 7},
    {6, 7}, {2, 6}, {2, 0}, {3, 1}, {7, 5}, {6, 4},
};

int fc_num_vd(int case_id)
{
    int n = 0;

    while (n < 4 && FC_DMC[case_id][n])
        n++;
    return n;
}

int fc_check_index(int case_id)
{
    for (int i = 0; i < FC_N_CHECK; i++)
        if (FC_CHECK[i][0] == case_id)
            return i;
    return -1;
}

int fc_check(const struct tensor *coords, int R, int L, const char *what)
{
    if (L < 0 || L > FC_MAX_L || R < 2 || R > FC_MAX_RES || R % (1 << L)) {
        log_error("%s: mesh resolution %d with %d subdivisions is not supported (HINT: the "
                  "resolution must be a multiple of %d and at most %d)", what, R, L, 1 << L,
                  FC_MAX_RES);
        return S3D_ESHAPE;
    }
    if (coords->ndim == 2 && coords->shape[0] < 1) {
        log_error("%s: no voxels (HINT: the mesh is decoded from the voxels of the SS decode "
                  "stage; an empty set has no surface)", what);
        return S3D_ESHAPE;
    }
    return sparse_coords_check(coords, R >> L, what) ? 0 : S3D_ESHAPE;
}

size_t fc_state_bytes(int64_t n_vox, int64_t n_verts, int L, enum dtype wdt)
{
    int64_t n_cubes = n_vox << (3 * L);

    return 3 * arena_round((size_t)n_vox * 4) + arena_round((size_t)n_verts * 4) +
           arena_round((size_t)n_verts * 8 * sizeof(float)) +
           arena_round((size_t)n_cubes * FC_NW * dtype_size(wdt));
}

size_t fc_init_scratch_bytes(int64_t n_vox, int L, enum device dev)
{
    return dev == DEVICE_CUDA ? fc_init_scratch_bytes_cuda(n_vox, L) : 0;
}

// ----------------------------------------------------------------------------
// CPU: geometry

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

/* The sorted unique corner keys of the voxel set, malloc'ed; *n gets the count. */
static uint32_t *corner_keys_cpu(const int32_t *c, int64_t N, int R, int L, int64_t *n)
{
    int B = 1 << L, P = B + 1;
    uint32_t Rv = (uint32_t)R + 1;
    int64_t m = N * P * P * P;
    uint32_t *k = malloc(sizeof(*k) * (size_t)(m ? m : 1));

    ASSERT(k);
    int64_t j = 0;
    for (int64_t i = 0; i < N; i++) {
        uint32_t x = (uint32_t)(B * c[4 * i + 1]), y = (uint32_t)(B * c[4 * i + 2]),
                 z = (uint32_t)(B * c[4 * i + 3]);
        for (int a = 0; a < P; a++)
            for (int b = 0; b < P; b++)
                for (int d = 0; d < P; d++)
                    k[j++] = ((x + a) * Rv + (y + b)) * Rv + (z + d);
    }
    qsort(k, (size_t)m, sizeof(*k), cmp_u32);
    int64_t u = 0;
    for (int64_t i = 0; i < m; i++)
        if (u == 0 || k[i] != k[u - 1])
            k[u++] = k[i];
    *n = u;
    return k;
}

int64_t fc_count_vertices(const struct op_ctx *ctx, struct arena *scratch,
                          const struct tensor *coords, int R, int L)
{
    if (coords->device == DEVICE_CUDA)
        return fc_count_vertices_cuda(ctx, scratch, coords, R, L);
    int64_t n;
    free(corner_keys_cpu(coords->data, coords->shape[0], R, L, &n));
    return n;
}

void fc_state_alloc(struct flexicubes *fc, struct arena *state)
{
    int64_t N = fc->n_vox, V = fc->n_verts;

    fc->row_keys = arena_tensor(state, DTYPE_I32, SHAPE(N));
    fc->vox_keys = arena_tensor(state, DTYPE_I32, SHAPE(N));
    fc->vox_rows = arena_tensor(state, DTYPE_I32, SHAPE(N));
    fc->vkeys = arena_tensor(state, DTYPE_I32, SHAPE(V > 0 ? V : 1));
    fc->vacc = arena_tensor(state, DTYPE_F32, SHAPE(V > 0 ? V : 1, 8));
    fc->cube_w = arena_tensor(state, fc->wdt, SHAPE(fc->n_cubes, FC_NW));
}

void fc_init(struct flexicubes *fc, const struct op_ctx *ctx, struct arena *state,
             struct arena *scratch, const struct tensor *coords, int R, int L, enum dtype wdt)
{
    ASSERT(coords->dtype == DTYPE_I32 && coords->ndim == 2 && coords->shape[1] == 4);
    ASSERT(wdt == DTYPE_F32 || wdt == DTYPE_F16);
    ASSERT(L >= 0 && L <= FC_MAX_L && R <= FC_MAX_RES && R % (1 << L) == 0);
    memset(fc, 0, sizeof(*fc));
    fc->R = R;
    fc->L = L;
    fc->dev = coords->device;
    fc->wdt = wdt;
    fc->n_vox = coords->shape[0];
    fc->n_cubes = fc->n_vox << (3 * L);
    if (fc->dev == DEVICE_CUDA) {
        fc_init_cuda(fc, ctx, state, scratch, coords);
        return;
    }
    int64_t N = fc->n_vox, n;
    const int32_t *c = coords->data;
    uint32_t *k = corner_keys_cpu(c, N, R, L, &n);
    fc->n_verts = n;
    fc_state_alloc(fc, state);
    memcpy(fc->vkeys.data, k, sizeof(*k) * (size_t)n);
    free(k);
    memset(fc->vacc.data, 0, tensor_nbytes(&fc->vacc));
    memset(fc->cube_w.data, 0, tensor_nbytes(&fc->cube_w));

    /* voxel keys with their rows, sorted by key */
    uint32_t Rv = (uint32_t)(R >> L);
    uint64_t *kr = malloc(sizeof(*kr) * (size_t)N);
    uint32_t *vk = fc->vox_keys.data, *rk = fc->row_keys.data;
    int32_t *vr = fc->vox_rows.data;
    ASSERT(kr);
    for (int64_t i = 0; i < N; i++) {
        uint32_t key = ((uint32_t)c[4 * i + 1] * Rv + (uint32_t)c[4 * i + 2]) * Rv +
                       (uint32_t)c[4 * i + 3];
        kr[i] = (uint64_t)key << 32 | (uint64_t)i;
        rk[i] = key;
    }
    qsort(kr, (size_t)N, sizeof(*kr), cmp_u64);
    for (int64_t i = 0; i < N; i++) {
        vk[i] = (uint32_t)(kr[i] >> 32);
        vr[i] = (int32_t)(kr[i] & 0xffffffffu);
    }
    free(kr);
}

// ----------------------------------------------------------------------------
// CPU: accumulation of the vertex field

void fc_accumulate(struct flexicubes *fc, const struct op_ctx *ctx, const struct tensor *feats,
                   int64_t row0)
{
    op_check_dense("fc_accumulate.feats", feats, fc->dev);
    ASSERT(feats->dtype == DTYPE_F32 && feats->ndim == 2 && feats->shape[1] == FC_CH);
    int64_t rows = feats->shape[0];
    ASSERT(row0 >= 0 && row0 + rows <= fc->n_cubes && !fc->finished);
    if (rows == 0)
        return;
    if (fc->dev == DEVICE_CUDA) {
        fc_accumulate_cuda(fc, ctx, feats, row0);
        return;
    }
    const int R = fc->R, L = fc->L, B = 1 << L;
    const uint32_t Rv = (uint32_t)R + 1;
    const float bias = (float)(-1.0 / R);       /* sdf_bias = -1/res (cube2mesh.py:63) */
    const float *f = feats->data;
    const uint32_t *vk = fc->vkeys.data;
    float *acc = fc->vacc.data;
    const uint32_t *row_key = fc->row_keys.data;
    uint32_t Rx = (uint32_t)(R >> L);

    for (int64_t r = 0; r < rows; r++) {
        int64_t row = row0 + r;
        const float *x = f + r * FC_CH;
        uint32_t vkey = row_key[row >> (3 * L)];
        int ox, oy, oz;
        fc_row_offset(row & (((int64_t)1 << (3 * L)) - 1), L, &ox, &oy, &oz);
        uint32_t cx = vkey / (Rx * Rx) * B + ox, cy = vkey / Rx % Rx * B + oy,
                 cz = vkey % Rx * B + oz;
        for (int c = 0; c < 8; c++) {
            uint32_t key = ((cx + (c & 1)) * Rv + (cy + (c >> 1 & 1))) * Rv + (cz + (c >> 2));
            int64_t v = fc_find(vk, fc->n_verts, key);
            ASSERT(v >= 0);
            float *a = acc + 8 * v;
            a[0] += x[FC_SDF + c] + bias;
            for (int j = 0; j < 3; j++)
                a[1 + j] += x[FC_DEFORM + 3 * c + j];
            for (int j = 0; j < 3; j++)
                a[4 + j] += x[FC_COLOR + 6 * c + j];
            a[7] += 1.0f;
        }
        dtype_convert((char *)fc->cube_w.data + (size_t)(row * FC_NW) * dtype_size(fc->wdt),
                      fc->wdt, x + FC_WEIGHTS, DTYPE_F32, FC_NW);
    }
}

// ----------------------------------------------------------------------------
// CPU: extraction

/* sdf, position and colour of the vertex with key `key` (after step 1): from
 * the vertex field, or the untouched defaults (sdf 1, grid position, colour
 * sigmoid(0) = 0.5) for a corner no active cube has. */
static void vertex_get(const struct flexicubes *fc, uint32_t key, float *sdf, float *pos,
                       float *col)
{
    int64_t v = fc_find(fc->vkeys.data, fc->n_verts, key);

    if (v >= 0) {
        const float *a = (const float *)fc->vacc.data + 8 * v;
        *sdf = a[0];
        for (int j = 0; j < 3; j++) {
            pos[j] = a[1 + j];
            col[j] = a[4 + j];
        }
        return;
    }
    uint32_t Rv = (uint32_t)fc->R + 1, k[3] = {key / (Rv * Rv), key / Rv % Rv, key % Rv};
    *sdf = 1.0f;
    for (int j = 0; j < 3; j++) {
        pos[j] = (float)k[j] / (float)fc->R - 0.5f;
        col[j] = 0.5f;
    }
}

static bool vertex_occupied(const struct flexicubes *fc, uint32_t key)
{
    int64_t v = fc_find(fc->vkeys.data, fc->n_verts, key);

    return v >= 0 && ((const float *)fc->vacc.data)[8 * v] < 0.0f;
}

static uint32_t corner_key(const struct flexicubes *fc, const uint32_t c[3], int corner)
{
    uint32_t Rv = (uint32_t)fc->R + 1;

    return ((c[0] + (corner & 1)) * Rv + (c[1] + (corner >> 1 & 1))) * Rv + (c[2] + (corner >> 2));
}

static void cube_of_key(const struct flexicubes *fc, uint32_t key, uint32_t c[3])
{
    uint32_t R = (uint32_t)fc->R;

    c[0] = key / (R * R);
    c[1] = key / R % R;
    c[2] = key % R;
}

/* Raw weights (21) of the cube at c: its stored row, or zeros when inactive. */
static void cube_raw_weights(const struct flexicubes *fc, const uint32_t c[3], float *w)
{
    int L = fc->L;
    uint32_t Rx = (uint32_t)(fc->R >> L), B = 1u << L;
    uint32_t vkey = ((c[0] >> L) * Rx + (c[1] >> L)) * Rx + (c[2] >> L);
    int64_t i = fc_find(fc->vox_keys.data, fc->n_vox, vkey);

    if (i < 0) {
        memset(w, 0, sizeof(float) * FC_NW);
        return;
    }
    int64_t row = ((int64_t)((const int32_t *)fc->vox_rows.data)[i] << (3 * L)) +
                  fc_offset_row((int)(c[0] & (B - 1)), (int)(c[1] & (B - 1)), (int)(c[2] & (B - 1)), L);
    dtype_convert(w, DTYPE_F32, (const char *)fc->cube_w.data +
                  (size_t)(row * FC_NW) * dtype_size(fc->wdt), fc->wdt, FC_NW);
}

/* Step 1 in place: vacc rows become (sdf, position, colour); returns n_neg. */
static int64_t vertex_finalize_cpu(struct flexicubes *fc)
{
    const uint32_t Rv = (uint32_t)fc->R + 1;
    const float h = (float)((1.0 - 1e-8) / (fc->R * 2.0));   /* utils_cube.py:82-85 */
    const uint32_t *vk = fc->vkeys.data;
    float *acc = fc->vacc.data;
    int64_t n_neg = 0;

    for (int64_t v = 0; v < fc->n_verts; v++) {
        float *a = acc + 8 * v, cnt = a[7], m[7];
        uint32_t k[3] = {vk[v] / (Rv * Rv), vk[v] / Rv % Rv, vk[v] % Rv};
        for (int j = 0; j < 7; j++)
            m[j] = a[j] / cnt;                       /* scatter_reduce "mean" */
        a[0] = m[0];
        for (int j = 0; j < 3; j++) {
            float g = (float)k[j] / (float)fc->R - 0.5f;
            a[1 + j] = g + h * tanhf(m[1 + j]);
            a[4 + j] = 1.0f / (1.0f + expf(-m[4 + j]));   /* torch.sigmoid */
        }
        n_neg += a[0] < 0.0f;
    }
    return n_neg;
}

/* Direction code of edge e for the sort: the reference sorts edges by (first
 * endpoint, second endpoint); for one first endpoint a the second is a - (R+1)
 * (y edges, stored high to low), a + 1 (z) or a + (R+1)^2 (x). */
static int edge_dir(int e)
{
    int a = FC_EDGE_CORNERS[e][0], b = FC_EDGE_CORNERS[e][1];

    return (a ^ b) == 1 ? 2 : (a ^ b) == 4 ? 1 : 0;
}

struct slot {
    uint64_t key;           /* first endpoint key * 4 + edge_dir */
    uint32_t se;            /* surface cube * 12 + edge */
};

static int cmp_slot(const void *a, const void *b)
{
    const struct slot *x = a, *y = b;

    if (x->key != y->key)
        return (x->key > y->key) - (x->key < y->key);
    return (x->se > y->se) - (x->se < y->se);        /* = a stable sort */
}

static int fc_finish_cpu(struct flexicubes *fc, int64_t max_faces)
{
    struct fc_counts *n = &fc->cnt;
    int rc = 0;

    memset(n, 0, sizeof(*n));
    n->n_verts = fc->n_verts;
    n->n_neg = vertex_finalize_cpu(fc);
    fc->finalized = fc->finished = true;

    /* step 2: candidate cubes around the occupied vertices; each emitted once,
     * by its lowest occupied corner */
    const uint32_t *vk = fc->vkeys.data;
    const float *acc = fc->vacc.data;
    const uint32_t Rv = (uint32_t)fc->R + 1, R = (uint32_t)fc->R;
    uint64_t *sc = malloc(sizeof(*sc) * (size_t)(8 * n->n_neg + 1));   /* key << 8 | case */
    ASSERT(sc);
    int64_t S = 0;
    for (int64_t v = 0; v < fc->n_verts; v++) {
        if (!(acc[8 * v] < 0.0f))
            continue;
        uint32_t k[3] = {vk[v] / (Rv * Rv), vk[v] / Rv % Rv, vk[v] % Rv};
        for (int d = 0; d < 8; d++) {
            int o[3] = {d & 1, d >> 1 & 1, d >> 2};
            if ((int64_t)k[0] - o[0] < 0 || (int64_t)k[1] - o[1] < 0 || (int64_t)k[2] - o[2] < 0 ||
                k[0] - o[0] >= R || k[1] - o[1] >= R || k[2] - o[2] >= R)
                continue;
            uint32_t c[3] = {k[0] - o[0], k[1] - o[1], k[2] - o[2]};
            int cs = 0;
            for (int j = 0; j < 8; j++)
                if (j == d || vertex_occupied(fc, corner_key(fc, c, j)))
                    cs |= 1 << j;
            if (cs == 255 || (cs & -cs) != (1 << d))
                continue;
            sc[S++] = (uint64_t)((c[0] * R + c[1]) * R + c[2]) << 8 | (uint64_t)cs;
        }
    }
    qsort(sc, (size_t)S, sizeof(*sc), cmp_u64);
    n->n_surf = S;

    /* step 3: case ids with the ambiguity check (flexicubes.py:145-185) */
    uint32_t *skey = malloc(sizeof(*skey) * (size_t)(S + 1));
    uint8_t *occ = malloc((size_t)(S + 1)), *cas = malloc((size_t)(S + 1));
    float *wt = malloc(sizeof(float) * (size_t)(FC_NW * S + 1));       /* beta, alpha, gamma */
    ASSERT(skey && occ && cas && wt);
    for (int64_t s = 0; s < S; s++) {
        skey[s] = (uint32_t)(sc[s] >> 8);
        occ[s] = cas[s] = (uint8_t)(sc[s] & 0xff);
    }
    free(sc);
    for (int64_t s = 0; s < S; s++) {
        int ci = fc_check_index(occ[s]);
        if (ci < 0)
            continue;
        uint32_t c[3];
        cube_of_key(fc, skey[s], c);
        int64_t q[3] = {(int64_t)c[0] + FC_CHECK[ci][1], (int64_t)c[1] + FC_CHECK[ci][2],
                        (int64_t)c[2] + FC_CHECK[ci][3]};
        if (q[0] < 0 || q[1] < 0 || q[2] < 0 || q[0] >= R || q[1] >= R || q[2] >= R)
            continue;
        int64_t t = fc_find(skey, S, (uint32_t)((q[0] * R + q[1]) * R + q[2]));
        if (t >= 0 && fc_check_index(occ[t]) >= 0) {
            cas[s] = (uint8_t)FC_CHECK[ci][4];
            n->n_inverted++;
        }
    }

    /* step 4: weights (flexicubes.py:121-142; weight_scale 0.99) */
    for (int64_t s = 0; s < S; s++) {
        uint32_t c[3];
        float raw[FC_NW], *w = wt + FC_NW * s;
        cube_of_key(fc, skey[s], c);
        cube_raw_weights(fc, c, raw);
        for (int j = 0; j < 20; j++)
            w[j] = tanhf(raw[j]) * 0.99f + 1.0f;
        w[20] = 1.0f / (1.0f + expf(-raw[20])) * 0.99f + 0.005f;
    }

    /* step 5: surface-edge slots, sorted as torch.unique sorts the edge pairs */
    int64_t X = 0;
    for (int64_t s = 0; s < S; s++)
        for (int e = 0; e < 12; e++)
            X += (occ[s] >> FC_EDGE_CORNERS[e][0] & 1) != (occ[s] >> FC_EDGE_CORNERS[e][1] & 1);
    struct slot *sl = malloc(sizeof(*sl) * (size_t)(X + 1));
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)(12 * S + 1));     /* idx_map */
    int32_t *vdx = malloc(sizeof(int32_t) * (size_t)(12 * S + 1));     /* vd_idx_map */
    ASSERT(sl && idx && vdx);
    X = 0;
    for (int64_t s = 0; s < S; s++) {
        uint32_t c[3];
        cube_of_key(fc, skey[s], c);
        for (int e = 0; e < 12; e++) {
            idx[12 * s + e] = -1;
            vdx[12 * s + e] = 0;
            if ((occ[s] >> FC_EDGE_CORNERS[e][0] & 1) == (occ[s] >> FC_EDGE_CORNERS[e][1] & 1))
                continue;
            sl[X].key = (uint64_t)corner_key(fc, c, FC_EDGE_CORNERS[e][0]) * 4 + (uint64_t)edge_dir(e);
            sl[X++].se = (uint32_t)(12 * s + e);
        }
    }
    qsort(sl, (size_t)X, sizeof(*sl), cmp_slot);
    n->n_slots = X;
    int64_t E = 0, Q = 0;
    for (int64_t i = 0; i < X; i++) {
        if (i > 0 && sl[i].key != sl[i - 1].key)
            E++;
        idx[sl[i].se] = (int32_t)E;
    }
    E = X ? E + 1 : 0;
    for (int64_t i = 0; i < X;) {
        int64_t j = i;
        while (j < X && sl[j].key == sl[i].key)
            j++;
        Q += j - i == 4;
        i = j;
    }
    n->n_edges = E;
    n->n_quads = Q;
    n->n_faces = 2 * Q;
    if (n->n_faces > max_faces) {
        rc = S3D_EINVAL;
        goto out;
    }

    /* step 6: dual vertices, grouped by count, then cube, then k (flexicubes.py:251-343) */
    int64_t base[5] = {0}, cnt[5] = {0};
    for (int64_t s = 0; s < S; s++)
        cnt[fc_num_vd(cas[s])]++;
    for (int m = 1; m < 5; m++)
        base[m] = (m > 1 ? base[m - 1] + cnt[m - 1] * (m - 1) : 0);
    n->n_vd = base[4] + cnt[4] * 4;
    fc->vd_pos = malloc(sizeof(float) * (size_t)(3 * n->n_vd + 1));
    fc->vd_col = malloc(sizeof(float) * (size_t)(3 * n->n_vd + 1));
    fc->faces = malloc(sizeof(int32_t) * (size_t)(3 * n->n_faces + 1));
    float *gam = malloc(sizeof(float) * (size_t)(n->n_vd + 1));
    ASSERT(fc->vd_pos && fc->vd_col && fc->faces && gam);
    int64_t seen[5] = {0};
    for (int64_t s = 0; s < S; s++) {
        int m = fc_num_vd(cas[s]);
        int64_t v0 = base[m] + seen[m]++ * m;
        uint32_t c[3];
        const float *w = wt + FC_NW * s;
        cube_of_key(fc, skey[s], c);
        for (int k = 0; k < m; k++) {
            float vp[3] = {0, 0, 0}, vc[3] = {0, 0, 0}, bsum = 0.0f;
            for (int e = 0; e < 12; e++) {
                if (!(FC_DMC[cas[s]][k] >> e & 1))
                    continue;
                int ca = FC_EDGE_CORNERS[e][0], cb = FC_EDGE_CORNERS[e][1];
                float sa, sb, xa[3], xb[3], qa[3], qb[3];
                ASSERT(idx[12 * s + e] >= 0);
                vertex_get(fc, corner_key(fc, c, ca), &sa, xa, qa);
                vertex_get(fc, corner_key(fc, c, cb), &sb, xb, qb);
                float wa = sa * w[12 + ca], wb = sb * w[12 + cb];
                float nwa = -wa, den = wb + nwa, beta = w[e];
                for (int j = 0; j < 3; j++) {
                    float ue = (xa[j] * wb + xb[j] * nwa) / den;
                    float uc = (qa[j] * wb + qb[j] * nwa) / den;
                    vp[j] += ue * beta;
                    vc[j] += uc * beta;
                }
                bsum += beta;
                vdx[12 * s + e] = (int32_t)(v0 + k);
            }
            for (int j = 0; j < 3; j++) {
                fc->vd_pos[3 * (v0 + k) + j] = vp[j] / bsum;
                fc->vd_col[3 * (v0 + k) + j] = vc[j] / bsum;
            }
            gam[v0 + k] = w[20];
        }
    }

    /* step 7: quads around the edges shared by 4 surface cubes (flexicubes.py:345-371) */
    int64_t qf = 0, qi = 0;
    for (int64_t i = 0; i < X;) {                      /* quads with sdf(a) > 0 go first */
        int64_t j = i;
        while (j < X && sl[j].key == sl[i].key)
            j++;
        if (j - i == 4) {
            float sa, xa[3], qa[3];
            vertex_get(fc, (uint32_t)(sl[i].key >> 2), &sa, xa, qa);
            qf += sa > 0.0f;
        }
        i = j;
    }
    int64_t pos_f = 0, pos_n = qf;
    for (int64_t i = 0; i < X;) {
        int64_t j = i;
        while (j < X && sl[j].key == sl[i].key)
            j++;
        if (j - i == 4) {
            float sa, xa[3], qa[3];
            int32_t v[4], q[4];
            for (int t = 0; t < 4; t++)
                v[t] = vdx[sl[i + t].se];
            vertex_get(fc, (uint32_t)(sl[i].key >> 2), &sa, xa, qa);
            bool flip = sa > 0.0f;
            if (flip) {
                q[0] = v[0], q[1] = v[1], q[2] = v[3], q[3] = v[2];
            } else {
                q[0] = v[2], q[1] = v[3], q[2] = v[1], q[3] = v[0];
            }
            float g02 = gam[q[0]] * gam[q[2]], g13 = gam[q[1]] * gam[q[3]];
            int32_t *f = fc->faces + 6 * (flip ? pos_f++ : pos_n++);
            if (g02 > g13) {
                f[0] = q[0], f[1] = q[1], f[2] = q[2], f[3] = q[0], f[4] = q[2], f[5] = q[3];
            } else {
                f[0] = q[0], f[1] = q[1], f[2] = q[3], f[3] = q[3], f[4] = q[1], f[5] = q[2];
            }
            qi++;
        }
        i = j;
    }
    ASSERT(qi == Q && pos_f == qf && pos_n == Q);
    free(gam);
out:
    free(sl);
    free(idx);
    free(vdx);
    free(skey);
    free(occ);
    free(cas);
    free(wt);
    return rc;
}

int fc_finish(struct flexicubes *fc, const struct op_ctx *ctx, struct arena *scratch,
              int64_t max_faces)
{
    ASSERT(!fc->finished || fc->dev == DEVICE_CUDA);
    if (fc->dev == DEVICE_CUDA)
        return fc_finish_cuda(fc, ctx, scratch, max_faces);
    return fc_finish_cpu(fc, max_faces);
}

void fc_download(const struct flexicubes *fc, const struct op_ctx *ctx, struct tensor *vertices,
                 struct tensor *faces, struct tensor *colors)
{
    const struct fc_counts *n = &fc->cnt;
    struct { struct tensor *t; const void *src; enum dtype dt; int64_t rows; } o[3] = {
        {vertices, fc->vd_pos, DTYPE_F32, n->n_vd},
        {faces, fc->faces, DTYPE_I32, n->n_faces},
        {colors, fc->vd_col, DTYPE_F32, n->n_vd},
    };

    ASSERT(fc->finished);
    for (int i = 0; i < 3; i++) {
        if (!o[i].t)
            continue;
        ASSERT(o[i].t->device == DEVICE_HOST && o[i].t->dtype == o[i].dt &&
               tensor_is_contiguous(o[i].t) && tensor_numel(o[i].t) == 3 * o[i].rows);
        size_t bytes = (size_t)(3 * o[i].rows) * 4;
        if (!bytes)
            continue;
        if (fc->dev == DEVICE_CUDA)
            fc_copy_to_host_cuda(ctx, o[i].t->data, o[i].src, bytes);
        else
            memcpy(o[i].t->data, o[i].src, bytes);
    }
}

void fc_end(struct flexicubes *fc)
{
    if (!fc || fc->dev == DEVICE_CUDA)
        return;
    free(fc->vd_pos);
    free(fc->vd_col);
    free(fc->faces);
    fc->vd_pos = fc->vd_col = NULL;
    fc->faces = NULL;
}
