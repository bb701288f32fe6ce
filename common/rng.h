/*
 * rng.h - our deterministic N(0, 1) noise for the flow samplers: xoshiro256**
 * (Blackman & Vigna) seeded by four splitmix64 steps from the seed, Box-Muller
 * in double (pairs: r cos a, then r sin a), each value rounded to float32.
 * The same numbers on every machine; not PyTorch's stream (spec generators.md
 * §5.2 and §9.2 allow this; parity runs give the noise as an input instead).
 * tools/ref/s3d_rng.py is the same generator in Python (the official sampler
 * started from our noise).
 *
 * Users: the SS sampler (stages/ss_flow_net: the five latents from one stream,
 * in the reference's draw order) and the SLAT sampler (stages/slat_flow_net:
 * (N, 8) from its own stream), each from param `seed`.
 */
#ifndef S3D_RNG_H
#define S3D_RNG_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct s3d_randn {
    uint64_t st[4];     /* xoshiro256** state */
    double   spare;     /* the sin half of the last Box-Muller pair */
    bool     have;      /* spare not yet used */
};

/* Start the stream of seed. */
void s3d_randn_init(struct s3d_randn *r, uint64_t seed);
/* The next n values of the stream into dst (n >= 0); consecutive calls
 * continue the stream (a pair may straddle two calls). */
void s3d_randn_fill(struct s3d_randn *r, float *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
