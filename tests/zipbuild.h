/*
 * zipbuild.h - hostile checkpoints built in memory, for tests and fuzz targets:
 * a byte buffer that grows, a pickle assembler for the opcodes torch.save uses,
 * and a torch zip (stored records) around a given data.pkl.
 *
 * Nothing here checks what it builds: the point is to make files the readers
 * must refuse (or survive) as well as valid ones.
 */
#ifndef S3D_ZIPBUILD_H
#define S3D_ZIPBUILD_H

#include <stddef.h>
#include <stdint.h>

struct zbuf {
    uint8_t *p;
    size_t   n, cap;
};

void zb_put(struct zbuf *b, const void *p, size_t n);   /* aborts when out of memory */
void zb_byte(struct zbuf *b, uint8_t c);
void zb_u16(struct zbuf *b, uint32_t v);                /* little-endian */
void zb_u32(struct zbuf *b, uint32_t v);
void zb_free(struct zbuf *b);

/* pickle pieces (protocol 2) */
void pk_str(struct zbuf *b, const char *s);             /* BINUNICODE */
void pk_int(struct zbuf *b, int64_t v);                 /* BININT1/BININT/LONG1 */
void pk_put(struct zbuf *b, uint32_t memo);             /* LONG_BINPUT */
void pk_get(struct zbuf *b, uint32_t memo);             /* LONG_BINGET */
/* A torch tensor of storage record data/<key>, F32 with the given shape and
 * stride (ndim <= 8) and element offset, as torch.save writes it (REDUCE of
 * _rebuild_tensor_v2); numel is the storage's element count. */
void pk_tensor(struct zbuf *b, const char *key, int64_t numel, int64_t offset, int ndim,
               const int64_t *shape, const int64_t *stride);

/* A torch zip: records "a/data.pkl" (pkl), "a/byteorder" ("little") and
 * "a/data/<i>" for i < n_storages, each storage_bytes zero bytes, all stored
 * (method 0) at 64-byte aligned offsets. Returns a malloc'ed buffer, *len its size. */
uint8_t *torch_zip(const void *pkl, size_t pkl_len, int n_storages, size_t storage_bytes,
                   size_t *len);

#endif
