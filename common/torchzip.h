/*
 * torchzip.h - PyTorch's zip checkpoint (.pt/.pth/.ckpt written by torch.save
 * since torch 1.6) read in place from the mapping.
 *
 * Zip layout (APPNOTE.TXT): the end-of-central-directory record (EOCD, found
 * scanning back from the end over at most a 64 KiB comment), or its zip64
 * locator + zip64 EOCD when counts/offsets overflow 16/32 bits; the central
 * directory (46-byte records + name + extra + comment; zip64 extra id 0x0001
 * carries the 64-bit sizes/offset); each record's local header, whose data
 * begins at local_ofs + 30 + name_len + extra_len (as PyTorch's
 * getRecordOffset() computes it). Only stored (method 0), unencrypted records are
 * read; torch.save pads records so data is 64-byte aligned.
 *
 * The archive: "<archive>/data.pkl" (the object, pickled; see pickle.h),
 * "<archive>/data/<key>" (one record per storage), "<archive>/byteorder"
 * ("little"; big-endian files are refused), where <archive> is the first
 * record's directory, as in caffe2/serialize/inline_container.cc. Tensors are
 * found in nested dicts, lists and tuples (named by key or index, joined by
 * '.'); values inside opaque objects (unknown classes) are not looked into.
 */
#ifndef S3D_TORCHZIP_H
#define S3D_TORCHZIP_H

#include "ckpt.h"

#define TORCHZIP_MAX_DEPTH 100   /* nesting of dicts/lists the flattener follows */

/* Parse c->map[0..c->size) as a torch zip, appending one entry per tensor
 * (unsorted). Returns 0, or S3D_EFORMAT / S3D_ENOMEM with the reason in c->err. */
int torchzip_parse(struct ckpt *c);

/* The bytes of record "<archive>/<name>" (e.g. "data.pkl") of the torch zip
 * that c maps (ckpt_open'ed, format CKPT_TORCHZIP): *data points into c->map,
 * *len its size. For reading non-tensor values (a model_config dict) with
 * pickle_load. Returns 0, S3D_ENOTFOUND (no such record), or S3D_EFORMAT /
 * S3D_ENOMEM with the reason in c->err. */
int torchzip_record(struct ckpt *c, const char *name, const uint8_t **data, size_t *len);

#endif
