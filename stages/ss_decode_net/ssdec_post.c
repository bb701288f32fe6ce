/*
 * ssdec_post.c - from SS decoder logits to the SLAT stages' voxel coordinates:
 * threshold (argwhere), prune_sparse_structure, downsample_sparse_structure.
 * See ssdec.h for the contracts; reference: sam-3d-objects @cf06676
 * pipeline/inference_pipeline.py:701-716 and pipeline/inference_utils.py:367-477.
 * Host code, int32 rows (b, x, y, z).
 */
#include "ssdec.h"
#include "check.h"
#include "log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t ssdec_coords(const float *logits, int R, int32_t *coords)
{
    int64_t n = 0;

    for (int x = 0; x < R; x++)
        for (int y = 0; y < R; y++)
            for (int z = 0; z < R; z++) {
                if (!(logits[((int64_t)x * R + y) * R + z] > 0.0f))
                    continue;
                if (coords) {
                    int32_t *c = coords + 4 * n;
                    c[0] = 0;
                    c[1] = x;
                    c[2] = y;
                    c[3] = z;
                }
                n++;
            }
    return n;
}

// ----------------------------------------------------------------------------
// prune

int64_t ssdec_prune(const int32_t *in, int64_t n, int dist, int32_t *out)
{
    int32_t lo[3], hi[3];
    int64_t dim[3], kept = 0;
    int full = (2 * dist + 1) * (2 * dist + 1) * (2 * dist + 1);

    ASSERT(n >= 1 && dist >= 1 && in != out);
    for (int a = 0; a < 3; a++)
        lo[a] = hi[a] = in[1 + a];
    for (int64_t i = 1; i < n; i++)
        for (int a = 0; a < 3; a++) {
            int32_t v = in[4 * i + 1 + a];
            lo[a] = v < lo[a] ? v : lo[a];
            hi[a] = v > hi[a] ? v : hi[a];
        }
    for (int a = 0; a < 3; a++)
        dim[a] = (int64_t)hi[a] - lo[a] + 1;
    /* 1) occupancy of the bounding box (the reference's occ grid) */
    uint8_t *occ = calloc((size_t)(dim[0] * dim[1] * dim[2]), 1);
    ASSERT(occ);
    for (int64_t i = 0; i < n; i++) {
        const int32_t *c = in + 4 * i;
        occ[((int64_t)(c[1] - lo[0]) * dim[1] + (c[2] - lo[1])) * dim[2] + (c[3] - lo[2])] = 1;
    }
    /* 2) the zero-padded (2d+1)^3 box sum at each voxel; keep the non-full ones */
    for (int64_t i = 0; i < n; i++) {
        const int32_t *c = in + 4 * i;
        int64_t p[3] = {c[1] - lo[0], c[2] - lo[1], c[3] - lo[2]};
        int count = 0;
        for (int64_t x = p[0] - dist; x <= p[0] + dist; x++) {
            if (x < 0 || x >= dim[0])
                continue;
            for (int64_t y = p[1] - dist; y <= p[1] + dist; y++) {
                if (y < 0 || y >= dim[1])
                    continue;
                for (int64_t z = p[2] - dist; z <= p[2] + dist; z++)
                    if (z >= 0 && z < dim[2])
                        count += occ[(x * dim[1] + y) * dim[2] + z];
            }
        }
        if (count < full) {
            memcpy(out + 4 * kept, c, 4 * sizeof(*c));
            kept++;
        }
    }
    free(occ);
    return kept;
}

// ----------------------------------------------------------------------------
// downsample

static int cmp_row(const void *a, const void *b)
{
    const int32_t *x = a, *y = b;

    for (int i = 0; i < 4; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

/* Cells of the rows' 4-column bounding box up to which unique_rows marks a bitmap instead of
 * sorting (2^27 bits: 16 MiB; the pipeline's downsampled 64^3 grid needs 32^3 cells). */
#define UNIQUE_BOX_MAX ((int64_t)1 << 27)

/* unique_rows for rows whose bounding box has at most UNIQUE_BOX_MAX cells: mark each row's
 * cell, then emit the marked cells in index order, which is lexicographic row order. O(n + box)
 * instead of a comparison sort: 45 ms -> a few ms for the ~189k rows of a full-size object.
 * Returns the count, or -1 (nothing written) when the box is too large or memory is short. */
static int64_t unique_rows_box(int32_t *rows, int64_t n)
{
    int32_t lo[4], hi[4];
    int64_t dim[4], cells = 1, m = 0;
    uint64_t *bits;

    for (int a = 0; a < 4; a++)
        lo[a] = hi[a] = rows[a];
    for (int64_t i = 1; i < n; i++)
        for (int a = 0; a < 4; a++) {
            int32_t v = rows[4 * i + a];
            lo[a] = v < lo[a] ? v : lo[a];
            hi[a] = v > hi[a] ? v : hi[a];
        }
    for (int a = 0; a < 4; a++) {
        dim[a] = (int64_t)hi[a] - lo[a] + 1;
        if (dim[a] > UNIQUE_BOX_MAX / cells)
            return -1;
        cells *= dim[a];
    }
    bits = calloc((size_t)((cells + 63) / 64), sizeof(*bits));
    if (!bits)
        return -1;
    for (int64_t i = 0; i < n; i++) {
        const int32_t *r = rows + 4 * i;
        int64_t k = (int64_t)(r[0] - lo[0]);
        for (int a = 1; a < 4; a++)
            k = k * dim[a] + (r[a] - lo[a]);
        bits[k >> 6] |= 1ull << (k & 63);
    }
    for (int64_t w = 0; w < (cells + 63) / 64; w++)
        for (uint64_t b = bits[w]; b; b &= b - 1) {
            int64_t k = w * 64 + __builtin_ctzll(b);
            int32_t *r = rows + 4 * m++;
            for (int a = 3; a >= 0; a--) {
                r[a] = (int32_t)(k % dim[a]) + lo[a];
                k /= dim[a];
            }
        }
    free(bits);
    return m;
}

/* Sort rows lexicographically and drop repeats (torch.unique(dim=0)); returns the count. */
static int64_t unique_rows(int32_t *rows, int64_t n)
{
    int64_t m = unique_rows_box(rows, n);

    if (m >= 0)
        return m;
    m = 0;
    qsort(rows, (size_t)n, 4 * sizeof(*rows), cmp_row);
    for (int64_t i = 0; i < n; i++)
        if (m == 0 || cmp_row(rows + 4 * (m - 1), rows + 4 * i) != 0) {
            if (m != i)
                memcpy(rows + 4 * m, rows + 4 * i, 4 * sizeof(*rows));
            m++;
        }
    return m;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

int64_t ssdec_downsample(const int32_t *in, int64_t n, int64_t max_coords, int factor,
                         uint64_t seed, int32_t *out, int *factor_out)
{
    ASSERT(n >= 1 && max_coords >= 1 && factor >= 1 && in != out);
    memcpy(out, in, (size_t)n * 4 * sizeof(*in));
    *factor_out = 1;
    if (n <= max_coords)
        return n;

    /* every step in float32, in the reference's order (inference_utils.py:444-466) */
    float cmin[3], cmax[3], tmin[3], tmax[3], tm1[3], span[3];
    int32_t lo[3], hi[3];
    for (int a = 0; a < 3; a++) {
        cmin[a] = cmax[a] = (float)in[1 + a];
        for (int64_t i = 1; i < n; i++) {
            float v = (float)in[4 * i + 1 + a];
            cmin[a] = v < cmin[a] ? v : cmin[a];
            cmax[a] = v > cmax[a] ? v : cmax[a];
        }
        float size = cmax[a] - cmin[a] + 1.0f;
        float target = size / (float)factor;
        float offset = (size - target) / 2.0f;
        tmin[a] = cmin[a] + offset;
        tmax[a] = cmin[a] + offset + target - 1.0f;
        tm1[a] = target - 1.0f;
        span[a] = cmax[a] - cmin[a];
        lo[a] = (int32_t)tmin[a];               /* target_min.int(): truncation */
        hi[a] = (int32_t)tmax[a];
    }
    for (int64_t i = 0; i < n; i++)
        for (int a = 0; a < 3; a++) {
            int32_t u;
            if (span[a] == 0.0f) {
                u = lo[a];          /* 0/0 = NaN; torch CPU's NaN.int() is INT_MIN, clamped up */
            } else {
                float norm = ((float)in[4 * i + 1 + a] - cmin[a]) / span[a];
                float v = norm * tm1[a] + tmin[a];
                u = (int32_t)rintf(v);              /* torch.round: half to even */
                u = u < lo[a] ? lo[a] : u > hi[a] ? hi[a] : u;
            }
            out[4 * i + 1 + a] = u;
        }
    int64_t m = unique_rows(out, n);
    if (m > max_coords) {
        /* the reference keeps randperm(m)[:max_coords]; ours: a seeded shuffle, re-sorted */
        uint64_t s = seed;
        for (int64_t i = 0; i < max_coords; i++) {
            int64_t j = i + (int64_t)(splitmix64(&s) % (uint64_t)(m - i));
            int32_t tmp[4];
            memcpy(tmp, out + 4 * i, sizeof(tmp));
            memcpy(out + 4 * i, out + 4 * j, sizeof(tmp));
            memcpy(out + 4 * j, tmp, sizeof(tmp));
        }
        m = max_coords;
        qsort(out, (size_t)m, 4 * sizeof(*out), cmp_row);
    }
    *factor_out = factor;
    return m;
}
