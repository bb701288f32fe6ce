/*
 * wire.c - S3D/1 header pack/unpack (msgpack-c) and multipart send/receive (libzmq).
 * Format and ownership: wire.h. Test: tests/test_wire.c; fuzz: tests/fuzz/fuzz_wire.c.
 *
 * Unpacking is two passes: a bounds pre-scan of the raw msgpack (every declared
 * string/container length must fit in the bytes that remain, so a 9-byte header
 * cannot make msgpack-c reserve gigabytes), then msgpack_unpack_next into a zone
 * and a walk of the object tree that copies what we keep into struct wire_msg.
 */
#include "wire.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_names[WIRE_METHOD_COUNT] = {
    [WIRE_LOAD] = "load", [WIRE_UNLOAD] = "unload", [WIRE_RUN] = "run",
    [WIRE_STATUS] = "status", [WIRE_SHUTDOWN] = "shutdown",
};
_Static_assert(WIRE_METHOD_COUNT == 5, "method_names must list every method");

static const char *const dtype_wire_names[DTYPE_COUNT] = {
    [DTYPE_F64] = "f64", [DTYPE_F32] = "f32", [DTYPE_F16] = "f16", [DTYPE_BF16] = "bf16",
    [DTYPE_I64] = "i64", [DTYPE_I32] = "i32", [DTYPE_I16] = "i16", [DTYPE_I8] = "i8",
    [DTYPE_U8] = "u8", [DTYPE_BOOL] = "bool",
};
_Static_assert(DTYPE_COUNT == 10, "dtype_wire_names must list every dtype");

const char *wire_method_name(enum wire_method m)
{
    return (unsigned)m < WIRE_METHOD_COUNT ? method_names[m] : "?";
}

bool wire_method_from_name(const char *s, size_t len, enum wire_method *out)
{
    for (int i = 0; i < WIRE_METHOD_COUNT; i++)
        if (strlen(method_names[i]) == len && !memcmp(method_names[i], s, len)) {
            *out = (enum wire_method)i;
            return true;
        }
    return false;
}

const char *wire_dtype_name(enum dtype dt)
{
    return (unsigned)dt < DTYPE_COUNT ? dtype_wire_names[dt] : "?";
}

/* "f32" or "F32" (safetensors spelling), "bool"/"BOOL". */
static bool dtype_from_wire(const char *s, size_t len, enum dtype *out)
{
    char buf[8];

    if (len == 0 || len >= sizeof(buf))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        buf[i] = (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
    }
    buf[len] = 0;
    return dtype_from_name(buf, out);
}

// ---------------------------------------------------------------- building messages

void wire_msg_init(struct wire_msg *m, enum wire_kind kind, int64_t id)
{
    m->kind = kind;
    m->id = id;
    m->method = WIRE_STATUS;
    m->has_error = false;
    m->error[0] = 0;
    m->n_params = 0;
    m->n_tensors = 0;
}

/* The slot for key (existing or new), or NULL when the key is too long / table full. */
static struct wire_param *param_slot(struct wire_msg *m, const char *key)
{
    struct wire_param *p;

    if (strlen(key) >= WIRE_KEY_MAX)
        return NULL;
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].key, key))
            return &m->params[i];
    if (m->n_params >= WIRE_MAX_PARAMS)
        return NULL;
    p = &m->params[m->n_params++];
    memset(p, 0, sizeof(*p));
    strcpy(p->key, key);
    return p;
}

int wire_set_int(struct wire_msg *m, const char *key, int64_t v)
{
    struct wire_param *p = param_slot(m, key);

    if (!p)
        return S3D_EINVAL;
    p->type = WIRE_INT;
    p->i = v;
    return 0;
}

int wire_set_float(struct wire_msg *m, const char *key, double v)
{
    struct wire_param *p = param_slot(m, key);

    if (!p)
        return S3D_EINVAL;
    p->type = WIRE_FLOAT;
    p->f = v;
    return 0;
}

int wire_set_bool(struct wire_msg *m, const char *key, bool v)
{
    struct wire_param *p = param_slot(m, key);

    if (!p)
        return S3D_EINVAL;
    p->type = WIRE_BOOL;
    p->b = v;
    return 0;
}

int wire_set_str(struct wire_msg *m, const char *key, const char *v)
{
    struct wire_param *p;

    if (strlen(v) >= WIRE_STR_MAX)
        return S3D_EINVAL;
    p = param_slot(m, key);
    if (!p)
        return S3D_EINVAL;
    p->type = WIRE_STR;
    strcpy(p->s, v);
    return 0;
}

int wire_set_parsed(struct wire_msg *m, const char *key, const char *text)
{
    char *end;
    long long iv;
    double fv;

    if (!strcmp(text, "true") || !strcmp(text, "false"))
        return wire_set_bool(m, key, text[0] == 't');
    if (!strcmp(text, "nil")) {
        struct wire_param *p = param_slot(m, key);

        if (!p)
            return S3D_EINVAL;
        p->type = WIRE_NIL;
        return 0;
    }
    errno = 0;
    iv = strtoll(text, &end, 10);
    if (*text && !*end && !errno)
        return wire_set_int(m, key, iv);
    fv = strtod(text, &end);
    if (*text && !*end)
        return wire_set_float(m, key, fv);
    return wire_set_str(m, key, text);
}

const struct wire_param *wire_find(const struct wire_msg *m, const char *key)
{
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].key, key))
            return &m->params[i];
    return NULL;
}

bool wire_param_ok(const struct wire_msg *m, const char *key, enum wire_type type)
{
    const struct wire_param *p = wire_find(m, key);

    if (!p || p->type == WIRE_NIL || p->type == type)
        return true;
    if (type == WIRE_FLOAT && p->type == WIRE_INT)
        return true;
    if (type == WIRE_INT && p->type == WIRE_FLOAT)
        return p->f == (double)(int64_t)p->f;
    return false;
}

int64_t wire_get_int(const struct wire_msg *m, const char *key, int64_t def)
{
    const struct wire_param *p = wire_find(m, key);

    if (!p || !wire_param_ok(m, key, WIRE_INT))
        return def;
    if (p->type == WIRE_INT)
        return p->i;
    if (p->type == WIRE_FLOAT)
        return (int64_t)p->f;
    return def;
}

double wire_get_float(const struct wire_msg *m, const char *key, double def)
{
    const struct wire_param *p = wire_find(m, key);

    if (!p)
        return def;
    if (p->type == WIRE_FLOAT)
        return p->f;
    if (p->type == WIRE_INT)
        return (double)p->i;
    return def;
}

bool wire_get_bool(const struct wire_msg *m, const char *key, bool def)
{
    const struct wire_param *p = wire_find(m, key);

    return (p && p->type == WIRE_BOOL) ? p->b : def;
}

const char *wire_get_str(const struct wire_msg *m, const char *key, const char *def)
{
    const struct wire_param *p = wire_find(m, key);

    return (p && p->type == WIRE_STR) ? p->s : def;
}

static struct wire_tensor *add_tensor(struct wire_msg *m, const char *name, enum dtype dt,
                                      const int64_t *shape, int ndim)
{
    struct wire_tensor *t;

    ASSERT(m->n_tensors < WIRE_MAX_TENSORS);
    ASSERT(strlen(name) < WIRE_KEY_MAX);
    ASSERT(ndim >= 0 && ndim <= TENSOR_MAX_DIMS);
    ASSERT((unsigned)dt < DTYPE_COUNT);
    t = &m->tensors[m->n_tensors++];
    memset(t, 0, sizeof(*t));
    strcpy(t->name, name);
    t->dtype = dt;
    t->ndim = ndim;
    t->nbytes = dtype_size(dt);
    for (int d = 0; d < ndim; d++) {
        ASSERT(shape[d] >= 0);
        t->shape[d] = shape[d];
        t->nbytes *= (size_t)shape[d];
    }
    t->frame = -1;
    return t;
}

struct wire_tensor *wire_add_shm(struct wire_msg *m, const char *name, enum dtype dt,
                                 const int64_t *shape, int ndim, const char *path)
{
    struct wire_tensor *t = add_tensor(m, name, dt, shape, ndim);

    ASSERT(strlen(path) < WIRE_STR_MAX);
    strcpy(t->shm, path);
    return t;
}

struct wire_tensor *wire_add_frame(struct wire_msg *m, const char *name, enum dtype dt,
                                   const int64_t *shape, int ndim, const void *data)
{
    struct wire_tensor *t = add_tensor(m, name, dt, shape, ndim);
    int frame = 2;

    for (int i = 0; i < m->n_tensors - 1; i++)
        if (m->tensors[i].frame >= 0)
            frame++;
    t->frame = frame;
    t->data = data;
    return t;
}

const struct wire_tensor *wire_tensor_find(const struct wire_msg *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name))
            return &m->tensors[i];
    return NULL;
}

// ---------------------------------------------------------------- pack

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);

    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_params(msgpack_packer *pk, const struct wire_msg *m)
{
    msgpack_pack_map(pk, (size_t)m->n_params);
    for (int i = 0; i < m->n_params; i++) {
        const struct wire_param *p = &m->params[i];

        pack_str(pk, p->key);
        switch (p->type) {
        case WIRE_NIL:   msgpack_pack_nil(pk); break;
        case WIRE_BOOL:  p->b ? msgpack_pack_true(pk) : msgpack_pack_false(pk); break;
        case WIRE_INT:   msgpack_pack_int64(pk, p->i); break;
        case WIRE_FLOAT: msgpack_pack_double(pk, p->f); break;
        case WIRE_STR:   pack_str(pk, p->s); break;
        }
    }
}

static void pack_tensors(msgpack_packer *pk, const struct wire_msg *m)
{
    int frame = 2;

    msgpack_pack_array(pk, (size_t)m->n_tensors);
    for (int i = 0; i < m->n_tensors; i++) {
        const struct wire_tensor *t = &m->tensors[i];
        bool has_key = t->key[0] && t->frame < 0;

        msgpack_pack_map(pk, 4 + (has_key ? 1 : 0));
        pack_str(pk, "name");
        pack_str(pk, t->name);
        pack_str(pk, "dtype");
        pack_str(pk, wire_dtype_name(t->dtype));
        pack_str(pk, "shape");
        msgpack_pack_array(pk, (size_t)t->ndim);
        for (int d = 0; d < t->ndim; d++)
            msgpack_pack_int64(pk, t->shape[d]);
        if (t->frame >= 0) {
            pack_str(pk, "frame");
            msgpack_pack_int(pk, frame++);
        } else {
            pack_str(pk, "shm");
            pack_str(pk, t->shm);
        }
        if (has_key) {
            pack_str(pk, "key");
            pack_str(pk, t->key);
        }
    }
}

int wire_pack(const struct wire_msg *m, char **out, size_t *out_len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    pack_str(&pk, "id");
    msgpack_pack_int64(&pk, m->id);
    if (m->kind == WIRE_REQUEST) {
        pack_str(&pk, "method");
        pack_str(&pk, wire_method_name(m->method));
        pack_str(&pk, "params");
    } else {
        pack_str(&pk, "error");
        if (m->has_error)
            pack_str(&pk, m->error);
        else
            msgpack_pack_nil(&pk);
        pack_str(&pk, "result");
    }
    pack_params(&pk, m);
    pack_str(&pk, "tensors");
    pack_tensors(&pk, m);
    if (!sb.data)   /* msgpack-c returns no buffer only when malloc failed */
        return S3D_ENOMEM;
    *out = sb.data;          /* sbuffer data is malloc'ed: the caller frees it */
    *out_len = sb.size;
    return 0;
}

// ---------------------------------------------------------------- unpack

static int fail(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;

    if (err && err_len) {
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return S3D_EPROTO;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;

    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Bounds pre-scan: walk the msgpack objects of p[0..len) without building them,
 * checking every declared length against the bytes that remain and that exactly
 * one object fills the buffer. A container of n items needs at least n bytes. */
static bool msgpack_bounds_ok(const uint8_t *p, size_t len)
{
    size_t pos = 0;
    uint64_t pending = 1;      /* objects still to read */

    while (pending > 0) {
        uint64_t skip = 0, items = 0;
        uint8_t c;

        if (pos >= len)
            return false;
        c = p[pos++];
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
            /* fixint, nil, bool */
        } else if (c >= 0x80 && c <= 0x8f) {
            items = 2u * (c & 0x0f);
        } else if (c >= 0x90 && c <= 0x9f) {
            items = c & 0x0f;
        } else if (c >= 0xa0 && c <= 0xbf) {
            skip = c & 0x1f;
        } else {
            static const struct { uint8_t code, hdr, kind; } t[] = {
                /* kind: 0 fixed size hdr, 1 length of hdr bytes, 2 ext (len + 1 type),
                 *       3 array count, 4 map count */
                {0xc4, 1, 1}, {0xc5, 2, 1}, {0xc6, 4, 1},           /* bin */
                {0xc7, 1, 2}, {0xc8, 2, 2}, {0xc9, 4, 2},           /* ext */
                {0xca, 4, 0}, {0xcb, 8, 0},                         /* float */
                {0xcc, 1, 0}, {0xcd, 2, 0}, {0xce, 4, 0}, {0xcf, 8, 0},
                {0xd0, 1, 0}, {0xd1, 2, 0}, {0xd2, 4, 0}, {0xd3, 8, 0},
                {0xd4, 2, 0}, {0xd5, 3, 0}, {0xd6, 5, 0}, {0xd7, 9, 0}, {0xd8, 17, 0},
                {0xd9, 1, 1}, {0xda, 2, 1}, {0xdb, 4, 1},           /* str */
                {0xdc, 2, 3}, {0xdd, 4, 3}, {0xde, 2, 4}, {0xdf, 4, 4},
            };
            size_t k;

            for (k = 0; k < sizeof(t) / sizeof(t[0]); k++)
                if (t[k].code == c)
                    break;
            if (k == sizeof(t) / sizeof(t[0]))
                return false;                       /* 0xc1: never used */
            if (len - pos < t[k].hdr)
                return false;
            switch (t[k].kind) {
            case 0: skip = t[k].hdr; break;
            case 1: skip = t[k].hdr + be(p + pos, t[k].hdr); break;
            case 2: skip = t[k].hdr + 1 + be(p + pos, t[k].hdr); break;
            case 3: skip = t[k].hdr; items = be(p + pos, t[k].hdr); break;
            case 4: skip = t[k].hdr; items = 2 * be(p + pos, t[k].hdr); break;
            }
        }
        if (skip > len - pos)
            return false;
        pos += skip;
        if (items > len - pos)
            return false;
        pending += items;
        pending--;
    }
    return pos == len;
}

static bool key_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);

    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           !memcmp(k->via.str.ptr, s, n);
}

/* Copy a msgpack string into dst[cap] (NUL-terminated); false if too long or has NUL. */
static bool copy_str(char *dst, size_t cap, const msgpack_object *o)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap ||
        memchr(o->via.str.ptr, 0, o->via.str.size))
        return false;
    memcpy(dst, o->via.str.ptr, o->via.str.size);
    dst[o->via.str.size] = 0;
    return true;
}

static bool get_i64(const msgpack_object *o, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return false;
        *v = (int64_t)o->via.u64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return true;
    }
    return false;
}

static int unpack_params(const msgpack_object *o, struct wire_msg *m, const char *what,
                         char *err, size_t err_len)
{
    if (o->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (o->type != MSGPACK_OBJECT_MAP)
        return fail(err, err_len, "'%s' is not a map", what);
    if (o->via.map.size > WIRE_MAX_PARAMS)
        return fail(err, err_len, "'%s' has %u entries (at most %d)", what,
                    o->via.map.size, WIRE_MAX_PARAMS);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        char key[WIRE_KEY_MAX];
        struct wire_param *p;

        if (!copy_str(key, sizeof(key), k))
            return fail(err, err_len, "'%s' key %u is not a string of at most %d bytes",
                        what, i, WIRE_KEY_MAX - 1);
        if (wire_find(m, key))
            return fail(err, err_len, "'%s' has key '%s' twice", what, key);
        p = param_slot(m, key);
        ASSERT(p);
        switch (v->type) {
        case MSGPACK_OBJECT_NIL:
            p->type = WIRE_NIL;
            break;
        case MSGPACK_OBJECT_BOOLEAN:
            p->type = WIRE_BOOL;
            p->b = v->via.boolean;
            break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            p->type = WIRE_INT;
            if (!get_i64(v, &p->i))
                return fail(err, err_len, "'%s.%s' is out of int64 range", what, key);
            break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            p->type = WIRE_FLOAT;
            p->f = v->via.f64;
            break;
        case MSGPACK_OBJECT_STR:
            p->type = WIRE_STR;
            if (!copy_str(p->s, sizeof(p->s), v))
                return fail(err, err_len, "'%s.%s' is longer than %d bytes or holds NUL",
                            what, key, WIRE_STR_MAX - 1);
            break;
        default:
            return fail(err, err_len, "'%s.%s' must be nil, bool, int, float or string",
                        what, key);
        }
    }
    return 0;
}

static int unpack_tensor(const msgpack_object *o, int idx, struct wire_msg *m,
                         const void *const *frames, const size_t *frame_sizes, int n_frames,
                         bool *frame_used, char *err, size_t err_len)
{
    struct wire_tensor *t = &m->tensors[idx];
    const msgpack_object *name = NULL, *dtype = NULL, *shape = NULL, *frame = NULL,
                         *shm = NULL, *key = NULL;
    uint64_t bytes;

    memset(t, 0, sizeof(*t));
    t->frame = -1;
    if (o->type != MSGPACK_OBJECT_MAP)
        return fail(err, err_len, "tensors[%d] is not a map", idx);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;

        if (key_is(k, "name"))        name = v;
        else if (key_is(k, "dtype"))  dtype = v;
        else if (key_is(k, "shape"))  shape = v;
        else if (key_is(k, "frame"))  frame = v;
        else if (key_is(k, "shm"))    shm = v;
        else if (key_is(k, "key"))    key = v;
    }
    if (!name || !dtype || !shape)
        return fail(err, err_len, "tensors[%d] lacks '%s'", idx,
                    !name ? "name" : !dtype ? "dtype" : "shape");
    if (!copy_str(t->name, sizeof(t->name), name) || !t->name[0])
        return fail(err, err_len, "tensors[%d].name is not a non-empty string of at most "
                    "%d bytes", idx, WIRE_KEY_MAX - 1);
    if (dtype->type != MSGPACK_OBJECT_STR ||
        !dtype_from_wire(dtype->via.str.ptr, dtype->via.str.size, &t->dtype))
        return fail(err, err_len, "tensor '%s': unknown dtype (expected f64 f32 f16 bf16 "
                    "i64 i32 i16 i8 u8 bool)", t->name);
    if (shape->type != MSGPACK_OBJECT_ARRAY || shape->via.array.size > TENSOR_MAX_DIMS)
        return fail(err, err_len, "tensor '%s': shape is not an array of at most %d ints",
                    t->name, TENSOR_MAX_DIMS);
    t->ndim = (int)shape->via.array.size;
    bytes = dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++) {
        int64_t v;

        if (!get_i64(&shape->via.array.ptr[d], &v) || v < 0)
            return fail(err, err_len, "tensor '%s': shape[%d] is not a non-negative int",
                        t->name, d);
        t->shape[d] = v;
        if (v != 0 && bytes > (UINT64_MAX >> 1) / (uint64_t)v)
            return fail(err, err_len, "tensor '%s': shape overflows", t->name);
        bytes *= (uint64_t)v;
    }
    if (bytes > SIZE_MAX)
        return fail(err, err_len, "tensor '%s': shape overflows", t->name);
    t->nbytes = (size_t)bytes;
    if ((frame != NULL) == (shm != NULL))
        return fail(err, err_len, "tensor '%s': needs exactly one of 'frame' and 'shm'",
                    t->name);
    if (key && !copy_str(t->key, sizeof(t->key), key))
        return fail(err, err_len, "tensor '%s': 'key' is not a string of at most %d bytes",
                    t->name, WIRE_KEY_MAX - 1);
    if (shm) {
        if (!copy_str(t->shm, sizeof(t->shm), shm) || !t->shm[0])
            return fail(err, err_len, "tensor '%s': 'shm' is not a non-empty path of at "
                        "most %d bytes", t->name, WIRE_STR_MAX - 1);
        return 0;
    }
    {
        int64_t f;

        if (!get_i64(frame, &f) || f < 2 || f >= n_frames)
            return fail(err, err_len, "tensor '%s': frame index out of range (message has "
                        "%d frames, data frames start at 2)", t->name, n_frames);
        if (frame_used[f])
            return fail(err, err_len, "tensor '%s': frame %d is used twice", t->name, (int)f);
        frame_used[f] = true;
        if (frame_sizes[f] != t->nbytes)
            return fail(err, err_len, "tensor '%s': shape x %s is %zu bytes but frame %d "
                        "holds %zu", t->name, wire_dtype_name(t->dtype), t->nbytes, (int)f,
                        frame_sizes[f]);
        t->frame = (int)f;
        t->data = frames ? frames[f] : NULL;
    }
    return 0;
}

int wire_unpack(enum wire_kind kind, const void *hdr, size_t len, const void *const *frames,
                const size_t *frame_sizes, int n_frames, struct wire_msg *m,
                char *err, size_t err_len)
{
    msgpack_unpacked up;
    const msgpack_object *root, *id = NULL, *method = NULL, *params = NULL, *tensors = NULL,
                         *error = NULL;
    bool has_error_key = false;
    bool frame_used[WIRE_MAX_FRAMES] = {false};
    size_t off = 0;
    int rc;

    wire_msg_init(m, kind, 0);
    if (n_frames < 2 || n_frames > WIRE_MAX_FRAMES)
        return fail(err, err_len, "message has %d frames (expected 2..%d)", n_frames,
                    WIRE_MAX_FRAMES);
    if (len == 0)
        return fail(err, err_len, "empty header frame");
    if (len > WIRE_MAX_HEADER)
        return fail(err, err_len, "header frame of %zu bytes (at most %u)", len,
                    WIRE_MAX_HEADER);
    if (!msgpack_bounds_ok(hdr, len))
        return fail(err, err_len, "header frame is not one well-formed msgpack object");
    msgpack_unpacked_init(&up);
    if (msgpack_unpack_next(&up, hdr, len, &off) != MSGPACK_UNPACK_SUCCESS) {
        rc = fail(err, err_len, "header frame is not valid msgpack");
        goto out_destroy;
    }
    root = &up.data;
    if (root->type != MSGPACK_OBJECT_MAP) {
        rc = fail(err, err_len, "header is not a msgpack map");
        goto out_destroy;
    }
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object *k = &root->via.map.ptr[i].key, *v = &root->via.map.ptr[i].val;

        if (key_is(k, "id"))           id = v;
        else if (key_is(k, "method"))  method = v;
        else if (key_is(k, "params") && kind == WIRE_REQUEST) params = v;
        else if (key_is(k, "result") && kind == WIRE_REPLY)   params = v;
        else if (key_is(k, "tensors")) tensors = v;
        else if (key_is(k, "error")) { error = v; has_error_key = true; }
    }
    if (!id) {
        rc = fail(err, err_len, "header lacks 'id'");
        goto out_destroy;
    }
    if (!get_i64(id, &m->id)) {
        rc = fail(err, err_len, "'id' is not an integer");
        goto out_destroy;
    }
    if (kind == WIRE_REQUEST) {
        if (!method) {
            rc = fail(err, err_len, "request %lld lacks 'method'", (long long)m->id);
            goto out_destroy;
        }
        if (method->type != MSGPACK_OBJECT_STR) {
            rc = fail(err, err_len, "request %lld: 'method' is not a string", (long long)m->id);
            goto out_destroy;
        }
        if (!wire_method_from_name(method->via.str.ptr, method->via.str.size, &m->method)) {
            rc = fail(err, err_len, "request %lld: unknown method '%.*s' (expected load, "
                      "unload, run, status or shutdown)", (long long)m->id,
                      (int)(method->via.str.size > 40 ? 40 : method->via.str.size),
                      method->via.str.ptr);
            goto out_destroy;
        }
    } else {
        if (!has_error_key) {
            rc = fail(err, err_len, "reply %lld lacks 'error'", (long long)m->id);
            goto out_destroy;
        }
        if (error->type == MSGPACK_OBJECT_STR) {
            size_t n = error->via.str.size < WIRE_ERR_MAX - 1 ? error->via.str.size
                                                              : WIRE_ERR_MAX - 1;
            m->has_error = true;
            memcpy(m->error, error->via.str.ptr, n);   /* long texts are cut, not refused */
            m->error[n] = 0;
        } else if (error->type != MSGPACK_OBJECT_NIL) {
            rc = fail(err, err_len, "reply %lld: 'error' is neither nil nor a string",
                      (long long)m->id);
            goto out_destroy;
        }
    }
    if (params) {
        rc = unpack_params(params, m, kind == WIRE_REQUEST ? "params" : "result", err, err_len);
        if (rc)
            goto out_destroy;
    }
    if (tensors && tensors->type != MSGPACK_OBJECT_NIL) {
        if (tensors->type != MSGPACK_OBJECT_ARRAY) {
            rc = fail(err, err_len, "'tensors' is not an array");
            goto out_destroy;
        }
        if (tensors->via.array.size > WIRE_MAX_TENSORS) {
            rc = fail(err, err_len, "%u tensors (at most %d)", tensors->via.array.size,
                      WIRE_MAX_TENSORS);
            goto out_destroy;
        }
        for (uint32_t i = 0; i < tensors->via.array.size; i++) {
            rc = unpack_tensor(&tensors->via.array.ptr[i], (int)i, m, frames, frame_sizes,
                               n_frames, frame_used, err, err_len);
            if (rc)
                goto out_destroy;
            m->n_tensors = (int)i + 1;
            for (uint32_t j = 0; j < i; j++)
                if (!strcmp(m->tensors[j].name, m->tensors[i].name)) {
                    rc = fail(err, err_len, "tensor '%s' appears twice", m->tensors[i].name);
                    goto out_destroy;
                }
        }
    }
    for (int f = 2; f < n_frames; f++)
        if (!frame_used[f]) {
            rc = fail(err, err_len, "data frame %d belongs to no tensor", f);
            goto out_destroy;
        }
    rc = 0;
out_destroy:
    msgpack_unpacked_destroy(&up);
    if (rc) {
        m->n_tensors = 0;
        m->n_params = 0;
    }
    return rc;
}

// ---------------------------------------------------------------- sockets

static int send_part(void *sock, const void *data, size_t len, bool more)
{
    if (zmq_send(sock, data, len, more ? ZMQ_SNDMORE : 0) < 0)
        return S3D_EIO;
    return 0;
}

int wire_send(void *sock, const struct wire_msg *m)
{
    char *hdr = NULL;
    size_t hdr_len = 0;
    int n_data = 0, sent = 0, rc;

    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].frame >= 0)
            n_data++;
    rc = wire_pack(m, &hdr, &hdr_len);
    if (rc)
        return rc;
    rc = send_part(sock, WIRE_PROTO, strlen(WIRE_PROTO), true);
    if (!rc)
        rc = send_part(sock, hdr, hdr_len, n_data > 0);
    for (int i = 0; !rc && i < m->n_tensors; i++) {
        const struct wire_tensor *t = &m->tensors[i];

        if (t->frame < 0)
            continue;
        sent++;
        rc = send_part(sock, t->data, t->nbytes, sent < n_data);
    }
    free(hdr);
    /* zmq sends a multipart message atomically: a failure mid-way discards it */
    return rc;
}

void wire_frames_close(struct wire_frames *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        zmq_msg_close(&f->parts[i]);
    f->n = 0;
}

int wire_limit(void *sock, struct wire_frames *f, uint64_t max_tensor_bytes)
{
    int64_t frame = (int64_t)(max_tensor_bytes > WIRE_MAX_HEADER ? max_tensor_bytes
                                                                  : WIRE_MAX_HEADER);
    int hwm = WIRE_RCVHWM;

    if (zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &frame, sizeof(frame)) != 0 ||
        zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(hwm)) != 0)
        return S3D_EIO;
    if (f)
        f->max_bytes = max_tensor_bytes + WIRE_MAX_HEADER + 64;
    return 0;
}

/* "tcp://HOST:PORT" host part into host[len] (brackets kept); false if not tcp. */
static bool tcp_host(const char *ep, char *host, size_t len)
{
    const char *h, *colon;

    if (strncmp(ep, "tcp://", 6))
        return false;
    h = ep + 6;
    colon = strrchr(h, ':');
    if (!colon || (size_t)(colon - h) >= len)
        return false;
    memcpy(host, h, (size_t)(colon - h));
    host[colon - h] = 0;
    return true;
}

int wire_endpoint_check(const char *ep, bool curve, char *why, size_t why_len)
{
    char host[256];

    if (!strncmp(ep, "ipc://@", 7)) {
        if (curve)
            return 0;
        snprintf(why, why_len, "'%s' is an abstract socket: it has no file permissions, so "
                 "any local user could connect (HINT: listen on ipc://PATH in a private "
                 "directory, or give CURVE keys)", ep);
        return S3D_EINVAL;
    }
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9))
        return 0;
    if (tcp_host(ep, host, sizeof(host)) && !strcmp(host, "localhost")) {
        snprintf(why, why_len, "'%s': ZeroMQ binds interface addresses, not host names "
                 "(HINT: listen on tcp://127.0.0.1:%s)", ep, strrchr(ep, ':') + 1);
        return S3D_EINVAL;
    }
    if (curve)
        return 0;
    if (tcp_host(ep, host, sizeof(host)) &&
        (!strncmp(host, "127.", 4) || !strcmp(host, "[::1]")))
        return 0;
    snprintf(why, why_len, "refusing to listen on '%s' without CURVE keys: only ipc://, "
             "inproc:// and loopback tcp:// are allowed in the clear (HINT: pass "
             "--curve-secret and --curve-clients, or listen on ipc:// or tcp://127.0.0.1)", ep);
    return S3D_EINVAL;
}

int wire_recv(void *sock, enum wire_kind kind, struct wire_msg *m, struct wire_frames *f,
              char *err, size_t err_len)
{
    const void *data[WIRE_MAX_FRAMES];
    size_t sizes[WIRE_MAX_FRAMES];
    int total = 0;
    uint64_t bytes = 0;
    bool more = true, over = false;
    zmq_msg_t extra;

    wire_frames_close(f);
    wire_msg_init(m, kind, 0);
    while (more) {
        zmq_msg_t *part = f->n < WIRE_MAX_FRAMES && !over ? &f->parts[f->n] : &extra;

        zmq_msg_init(part);
        if (zmq_msg_recv(part, sock, 0) < 0) {
            int e = errno;

            zmq_msg_close(part);
            wire_frames_close(f);   /* mid-message cannot happen: multipart is atomic */
            errno = e;
            return S3D_EIO;
        }
        more = zmq_msg_more(part);
        total++;
        bytes += zmq_msg_size(part);
        if (f->max_bytes && bytes > f->max_bytes && !over) {
            over = true;               /* keep nothing more of this message */
            wire_frames_close(f);
        }
        if (part == &extra || over)
            zmq_msg_close(part);       /* drain frames beyond the limits */
        else
            f->n++;
    }
    if (over)
        return fail(err, err_len, "a message of %llu bytes refused: this endpoint "
                    "accepts at most %llu bytes a message", (unsigned long long)bytes,
                    (unsigned long long)f->max_bytes);
    if (total > WIRE_MAX_FRAMES)
        return fail(err, err_len, "message has %d frames (at most %d)", total, WIRE_MAX_FRAMES);
    if (zmq_msg_size(&f->parts[0]) != strlen(WIRE_PROTO) ||
        memcmp(zmq_msg_data(&f->parts[0]), WIRE_PROTO, strlen(WIRE_PROTO)))
        return fail(err, err_len, "frame 0 is not the protocol frame \"%s\"", WIRE_PROTO);
    if (f->n < 2)
        return fail(err, err_len, "message has no header frame");
    for (int i = 0; i < f->n; i++) {
        data[i] = zmq_msg_data(&f->parts[i]);
        sizes[i] = zmq_msg_size(&f->parts[i]);
    }
    return wire_unpack(kind, data[1], sizes[1], data, sizes, f->n, m, err, err_len);
}

int wire_send_error(void *sock, int64_t id, const char *text)
{
    static struct wire_msg rep;   /* ~90 KB: kept off the stack; callers are single-threaded */

    wire_msg_init(&rep, WIRE_REPLY, id);
    rep.has_error = true;
    snprintf(rep.error, sizeof(rep.error), "%s", text);
    return wire_send(sock, &rep);
}
