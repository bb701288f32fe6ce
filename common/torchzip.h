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
 *
 * The object may be a graph, not a tree (the memo lets a pickle reference one
 * container from many places). The walk first marks, once per container, whether
 * any tensor lies under it (containers without tensors are never entered), then
 * names the tensors: a container reached twice names its tensors twice, as
 * Python would see them, but all reaching together is limited to
 * TORCHZIP_VISITS_PER_VALUE visits per unpickled value and the names to
 * TORCHZIP_NAME_BYTES_PER_BYTE bytes per pickle byte (plus a base), so a pickle
 * whose lists each hold the one before twice fails at once instead of making
 * 2^depth names. A cycle through tensors, nesting deeper than
 * TORCHZIP_MAX_DEPTH and names longer than TORCHZIP_MAX_NAME are errors.
 */
#ifndef S3D_TORCHZIP_H
#define S3D_TORCHZIP_H

#include "ckpt.h"

#define TORCHZIP_MAX_DEPTH 100   /* nesting of dicts/lists the flattener follows */
#define TORCHZIP_MAX_NAME  4096  /* bytes of a tensor name, with its NUL */
#define TORCHZIP_VISITS_PER_VALUE    4
#define TORCHZIP_VISITS_BASE         4096
#define TORCHZIP_NAME_BYTES_PER_BYTE 16
#define TORCHZIP_NAME_BYTES_BASE     (1u << 20)

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
