/*
 * rng.c - our seeded N(0, 1) stream. See rng.h.
 */
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** (Blackman & Vigna). */
static uint64_t xoshiro(uint64_t st[4])
{
    uint64_t r = rotl(st[1] * 5, 7) * 9, t = st[1] << 17;

    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return r;
}

/* Uniform in (0, 1]: 53 random bits, never 0 (log below). */
static double unif(uint64_t st[4])
{
    return ((double)(xoshiro(st) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

void s3d_randn_init(struct s3d_randn *r, uint64_t seed)
{
    uint64_t sm = seed;

    for (int i = 0; i < 4; i++)
        r->st[i] = splitmix64(&sm);
    r->spare = 0.0;
    r->have = false;
}

void s3d_randn_fill(struct s3d_randn *r, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (r->have) {
            dst[i] = (float)r->spare;
            r->have = false;
            continue;
        }
        double a = sqrt(-2.0 * log(unif(r->st))), b = 6.283185307179586476925 * unif(r->st);
        dst[i] = (float)(a * cos(b));
        r->spare = a * sin(b);
        r->have = true;
    }
}
