/*
 * sha256.h - SHA-256 (FIPS 180-4), incremental.
 */
#ifndef S3D_SHA256_H
#define S3D_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sha256 {
    uint32_t h[8];
    uint64_t len;        /* bytes hashed so far */
    uint8_t  buf[64];
    size_t   nbuf;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t n);
/* Finish and write the 32-byte digest; s must be re-initialised before reuse. */
void sha256_final(struct sha256 *s, uint8_t out[32]);
/* Lower-case hex of a 32-byte digest into hex[65]. */
void sha256_hex(const uint8_t d[32], char hex[65]);

#endif
