/*
 * pickle.h - a restricted unpickler for the data.pkl of torch.save archives.
 *
 * Nothing in a pickle is ever executed. A GLOBAL (or STACK_GLOBAL) only records
 * the name "module.name". REDUCE applies one of a few whitelisted functions,
 * interpreted here, never called:
 *   collections.OrderedDict()               -> an empty dict
 *   torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
 *                                           -> a tensor (storage = the BINPERSID value)
 *   torch._utils._rebuild_parameter(t, ...) and _rebuild_parameter_with_state -> t
 *   torch._tensor._rebuild_from_type_v2(func, type, args, state) -> func(*args)
 * Any other callable (os.system, a Lightning hyper-parameter class, numpy
 * reconstructors, ...) yields an inert PK_OPAQUE value; BUILD, NEWOBJ and
 * NEWOBJ_EX on anything also yield or keep opaque values (BUILD on a dict or a
 * tensor drops the state, as it only carries Python attributes).
 *
 * Opcodes (pickletools names; protocol 2 is what torch.save emits, 3-5 are
 * accepted): PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE INT
 * BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT BINSTRING
 * SHORT_BINSTRING BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES
 * BINBYTES8 BYTEARRAY8 EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST APPEND
 * APPENDS LIST EMPTY_DICT DICT SETITEM SETITEMS EMPTY_SET ADDITEMS FROZENSET
 * GLOBAL STACK_GLOBAL REDUCE BUILD NEWOBJ NEWOBJ_EX PUT BINPUT LONG_BINPUT GET
 * BINGET LONG_BINGET MEMOIZE BINPERSID. Anything else (EXT1/2/4, INST, OBJ,
 * PERSID, STRING, UNICODE, out-of-band buffers, unknown bytes) is an error
 * naming the opcode and its offset.
 *
 * Differences from Python, on purpose: SETITEM with a key already present adds a
 * second pair (the checkpoint layer rejects duplicate tensor names); integers
 * wider than 64 bits become opaque values.
 *
 * Example (the start of a torch.save'd state dict, `python -m pickletools`):
 *     0: \x80 PROTO      2
 *     2: }    EMPTY_DICT
 *     5: (    MARK
 *     6: X        BINUNICODE 'blocks.0.norm1.weight'
 *    32: c        GLOBAL     'torch._utils _rebuild_tensor_v2'
 *    67: (        MARK
 *    68: (            MARK
 *    69: X                BINUNICODE 'storage'
 *    83: c                GLOBAL     'torch FloatStorage'
 *   105: X                BINUNICODE '0'          (record data/0)
 *   113: X                BINUNICODE 'cpu'
 *   123: K                BININT1    8            (numel)
 *   125: t                TUPLE
 *   128: Q            BINPERSID
 *   129: K            BININT1    0                (storage offset)
 *   131: K            BININT1    8
 *   133: \x85         TUPLE1                      (size)
 *   136: K            BININT1    1
 *   138: \x85         TUPLE1                      (stride)
 *   141: \x89         NEWFALSE                    (requires_grad)
 *   142: c            GLOBAL 'collections OrderedDict'  ) R   (backward hooks)
 *   ...  t            TUPLE
 *   ...  R        REDUCE
 *   ...  u    SETITEMS
 *   ...  .    STOP
 */
#ifndef S3D_PICKLE_H
#define S3D_PICKLE_H

#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

enum pk_type {
    PK_MARK,      /* internal: a MARK on the stack */
    PK_NONE,
    PK_BOOL,      /* i */
    PK_INT,       /* i */
    PK_FLOAT,     /* f */
    PK_STR,       /* s, len (UTF-8 as stored) */
    PK_BYTES,     /* s, len */
    PK_TUPLE,     /* items[n] */
    PK_LIST,      /* items[n] */
    PK_SET,       /* items[n] */
    PK_DICT,      /* items[n]: key0, value0, key1, value1, ... (n even) */
    PK_GLOBAL,    /* s = "module.name" */
    PK_OPAQUE,    /* s = what made it ("posix.system()"): inert */
    PK_PERSID,    /* items[0] = the persistent id (torch: ('storage', type, key, loc, numel)) */
    PK_TENSOR,    /* tensor: storage (a PK_PERSID), offset, ndim, shape, stride */
    PK_TYPE_COUNT
};

struct pk_tensor {                              /* a PK_TENSOR value's fields */
    struct pk_value  *storage;                  /* a PK_PERSID */
    int64_t           offset;                   /* elements */
    int               ndim;
    int64_t           shape[TENSOR_MAX_DIMS];
    int64_t           stride[TENSOR_MAX_DIMS];
};

struct pk_value {
    enum pk_type      type;
    int               n, cap;
    uint32_t          mark;                     /* scratch for a reader's walk, 0 at load */
    int64_t           i;
    double            f;
    char             *s;
    size_t            len;
    struct pk_value **items;
    struct pk_tensor *tensor;                   /* PK_TENSOR only */
};

/* Memory: every allocation of a load (values, strings, containers, the stack,
 * marks and memo) is counted against a limit of PICKLE_MEM_PER_BYTE bytes per
 * input byte plus PICKLE_MEM_BASE, checked before it is made, so a pickle can
 * never make the reader hold more than a fixed multiple of its own size (an
 * 8 MB pickle of EMPTY_TUPLE opcodes fails at its limit instead of growing to
 * gigabytes). torch.save'd state dicts need 7-8 bytes per byte
 * (tests/test_pickle.c measures the fixtures). */
#define PICKLE_MEM_PER_BYTE 24
#define PICKLE_MEM_BASE     (4u << 20)

struct pk_slab;

struct pickle {
    struct pk_value  *root;     /* the object STOP returned */
    struct pk_slab   *slabs;    /* every value made, for pickle_free */
    int               n_values; /* values made */
    size_t            bytes;    /* memory held (the accounted total) */
    size_t            limit;    /* its limit for this input */
    char              err[256]; /* reason of a failure */
};

/* Unpickle buf[0..len). Returns 0, or S3D_EFORMAT / S3D_ENOMEM with the reason
 * (opcode, offset) in pk->err; nothing is logged. Values live until pickle_free.
 * Going over the memory limit above is S3D_EFORMAT ("needs more than N bytes"). */
int  pickle_load(struct pickle *pk, const uint8_t *buf, size_t len);
void pickle_free(struct pickle *pk);          /* NULL-safe */
const char *pk_type_name(enum pk_type t);

#endif
