/*
 * dtype.h - element types, their names and sizes, and exact conversions.
 *
 * Names are the safetensors spellings (F32, BF16, ...). Conversions to F16 and
 * BF16 round to nearest even, keep NaN (quiet) and Inf, and go straight from the
 * source type (F64 -> F16 is one rounding, not two). Integer <- float truncates
 * toward zero like torch's .to(); BOOL is 0/1.
 */
#ifndef S3D_DTYPE_H
#define S3D_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum dtype {
    DTYPE_F64,
    DTYPE_F32,
    DTYPE_F16,
    DTYPE_BF16,
    DTYPE_I64,
    DTYPE_I32,
    DTYPE_I16,
    DTYPE_I8,
    DTYPE_U8,
    DTYPE_BOOL,
    DTYPE_COUNT
};

size_t      dtype_size(enum dtype dt);            /* bytes per element */
const char *dtype_name(enum dtype dt);            /* "F32"; "?" when out of range */
/* Parse a safetensors dtype name; returns false for unknown names. */
bool        dtype_from_name(const char *name, enum dtype *out);
bool        dtype_is_float(enum dtype dt);

uint16_t f32_to_f16(float f);
float    f16_to_f32(uint16_t h);
uint16_t f64_to_f16(double d);
uint16_t f32_to_bf16(float f);
float    bf16_to_f32(uint16_t h);
uint16_t f64_to_bf16(double d);
/* v rounded once through dtype dt (round to nearest even); v itself for F32. */
float    dtype_round(enum dtype dt, float v);

/* Convert n elements from src (type st) to dst (type dt). Buffers must not
 * overlap unless dt == st. Contiguous, host memory. */
void dtype_convert(void *dst, enum dtype dt, const void *src, enum dtype st, size_t n);

/* dtype_convert split over nthreads threads (<= 0: dtype_threads()); the same
 * bytes as dtype_convert. Runs on the calling thread when n is small (under
 * 2^18 elements per thread). Blocks until done; dst and src as for dtype_convert. */
void dtype_convert_mt(void *dst, enum dtype dt, const void *src, enum dtype st, size_t n,
                      int nthreads);
/* Threads for bulk host work: env S3D_THREADS when > 0, else the online cores;
 * between 1 and 64. */
int  dtype_threads(void);

/* Read element i of a host buffer as double / write a double into element i. */
double dtype_get(const void *p, enum dtype dt, size_t i);
void   dtype_set(void *p, enum dtype dt, size_t i, double v);

#ifdef __cplusplus
}
#endif
#endif
