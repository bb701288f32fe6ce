/*
 * wire.h - the S3D/1 wire protocol: ZeroMQ multipart framing with a msgpack header.
 *
 * Format (design.md "Wire", style.md §2.10; zguide "Cheap or Nasty" + msgpack-rpc):
 *
 *   frame 0   "S3D/1"                 protocol + version, checked before anything else
 *   frame 1   msgpack map (header)
 *             request: {"id": int, "method": "load"|"unload"|"run"|"status"|"shutdown",
 *                       "params": {key: nil|bool|int|float|str, ...},          (optional)
 *                       "tensors": [{"name": str, "dtype": "f32"|"F32"|...,
 *                                    "shape": [int, ...],
 *                                    "frame": int            (data in that frame), or
 *                                    "shm": str,             (a safetensors file)
 *                                    "key": str}, ...]}      (optional: the tensor's
 *                                                             name inside the file)
 *             reply:   {"id": int, "error": nil|str, "result": {key: value, ...},
 *                       "tensors": [...]}
 *   frame 2+  raw little-endian tensor bytes, one frame per "frame" tensor
 *
 * Unknown keys are ignored (the header is extensible). Multipart delivery is
 * atomic, so there are no length prefixes. A "frame" tensor's byte count must
 * equal numel * dtype size exactly; each data frame belongs to one tensor.
 *
 * Everything a message holds is copied into fixed-size fields of struct
 * wire_msg (no allocation per message except msgpack's zone, cleared after
 * each unpack); frame tensors point into the received zmq frames.
 */
#ifndef S3D_WIRE_H
#define S3D_WIRE_H

#include "dtype.h"
#include "tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#define WIRE_PROTO        "S3D/1"
#define WIRE_MAX_TENSORS  32            /* tensors per message */
#define WIRE_MAX_PARAMS   48            /* params (request) / result fields (reply) */
#define WIRE_MAX_FRAMES   (2 + WIRE_MAX_TENSORS)
#define WIRE_KEY_MAX      64            /* param keys and tensor names, incl. NUL */
#define WIRE_STR_MAX      1024          /* string values and shm paths, incl. NUL */
#define WIRE_ERR_MAX      512           /* error texts, incl. NUL */
#define WIRE_MAX_HEADER   (1u << 20)    /* a header larger than this is refused */

enum wire_kind { WIRE_REQUEST, WIRE_REPLY };

enum wire_method {
    WIRE_LOAD,
    WIRE_UNLOAD,
    WIRE_RUN,
    WIRE_STATUS,
    WIRE_SHUTDOWN,
    WIRE_METHOD_COUNT
};

enum wire_type { WIRE_NIL, WIRE_BOOL, WIRE_INT, WIRE_FLOAT, WIRE_STR };

struct wire_param {
    char           key[WIRE_KEY_MAX];
    enum wire_type type;
    bool           b;
    int64_t        i;
    double         f;
    char           s[WIRE_STR_MAX];
};

struct wire_tensor {
    char        name[WIRE_KEY_MAX];
    char        key[WIRE_KEY_MAX];    /* name inside the shm file; "" = same as name */
    enum dtype  dtype;
    int         ndim;
    int64_t     shape[TENSOR_MAX_DIMS];
    int         frame;                /* data frame index (>= 2), or -1 for shm */
    char        shm[WIRE_STR_MAX];    /* safetensors file path when frame == -1 */
    const void *data;                 /* frame tensors after wire_unpack: the bytes */
    size_t      nbytes;               /* numel * dtype size */
};

struct wire_msg {
    enum wire_kind     kind;
    int64_t            id;
    enum wire_method   method;                  /* requests */
    bool               has_error;               /* replies: error is not nil */
    char               error[WIRE_ERR_MAX];
    int                n_params;                /* request "params" / reply "result" */
    struct wire_param  params[WIRE_MAX_PARAMS];
    int                n_tensors;
    struct wire_tensor tensors[WIRE_MAX_TENSORS];
};

/* "load", "run", ...; "?" when out of range. */
const char *wire_method_name(enum wire_method m);
/* Parse a method name; false for unknown names. */
bool wire_method_from_name(const char *s, size_t len, enum wire_method *out);
/* Lower-case wire spelling of a dtype ("f32", "bf16", "u8", "bool"). */
const char *wire_dtype_name(enum dtype dt);

/* Reset m to an empty message of the given kind and id (method WIRE_STATUS). */
void wire_msg_init(struct wire_msg *m, enum wire_kind kind, int64_t id);

/* Set a param (request) or result field (reply), replacing one with the same key.
 * Return 0, or S3D_EINVAL when the key or string is too long or the table is full
 * (an internal fault for the callers that build messages: they ASSERT it). */
int wire_set_int(struct wire_msg *m, const char *key, int64_t v);
int wire_set_float(struct wire_msg *m, const char *key, double v);
int wire_set_bool(struct wire_msg *m, const char *key, bool v);
int wire_set_str(struct wire_msg *m, const char *key, const char *v);
/* Set from text: "true"/"false" a bool, "nil" nil, an integer an int, another
 * number a float, anything else a string. Same returns as wire_set_*. */
int wire_set_parsed(struct wire_msg *m, const char *key, const char *text);

/* Typed accessors: the value of key, or def when the key is absent or nil.
 * wire_get_int accepts an integral float; wire_get_float accepts an int.
 * A present value of another type is not silently converted: the accessors
 * return def and wire_param_ok() tells the caller (for a clear error). */
const struct wire_param *wire_find(const struct wire_msg *m, const char *key);
int64_t     wire_get_int(const struct wire_msg *m, const char *key, int64_t def);
double      wire_get_float(const struct wire_msg *m, const char *key, double def);
bool        wire_get_bool(const struct wire_msg *m, const char *key, bool def);
const char *wire_get_str(const struct wire_msg *m, const char *key, const char *def);
/* True when key is absent/nil or holds a value convertible to type. */
bool        wire_param_ok(const struct wire_msg *m, const char *key, enum wire_type type);

/* Append a tensor descriptor; returns it (ASSERTs the table has room and the
 * strings fit). Data frames are numbered in the order of wire_add_frame calls. */
struct wire_tensor *wire_add_shm(struct wire_msg *m, const char *name, enum dtype dt,
                                 const int64_t *shape, int ndim, const char *path);
struct wire_tensor *wire_add_frame(struct wire_msg *m, const char *name, enum dtype dt,
                                   const int64_t *shape, int ndim, const void *data);
/* The descriptor named name, or NULL. */
const struct wire_tensor *wire_tensor_find(const struct wire_msg *m, const char *name);

/* Pack m's header (frame 1) into a malloc'ed buffer; *out_len its size. Frame
 * tensors get frame indices 2, 3, ... in descriptor order. Caller frees *out. */
int wire_pack(const struct wire_msg *m, char **out, size_t *out_len);

/* Parse and validate a header (frame 1) of the given kind into m. frame_sizes
 * [0..n_frames) are the sizes of all frames of the message (n_frames counts frame
 * 0 and 1 too) and frames[i] their data (may be NULL for a pure header check);
 * frame tensors get data = frames[frame]. Returns 0, or S3D_EPROTO with a
 * one-line reason in err (never aborts, never logs). m->id is set as soon as it
 * is known (0 otherwise) so the error reply can carry it. */
int wire_unpack(enum wire_kind kind, const void *hdr, size_t len, const void *const *frames,
                const size_t *frame_sizes, int n_frames, struct wire_msg *m,
                char *err, size_t err_len);

/* --- sockets (libzmq) --- */

/* A received message's frames, kept alive while tensors point into them.
 * max_bytes (set by wire_limit; 0 = none): the most bytes one message may bring. */
struct wire_frames {
    int       n;
    uint64_t  max_bytes;
    zmq_msg_t parts[WIRE_MAX_FRAMES];
};

/* The receive limits of a socket, set before it binds or connects (docs/
 * security.md "Message sizes"): ZMQ_MAXMSGSIZE = max_tensor_bytes (at least
 * WIRE_MAX_HEADER), so libzmq drops a peer that announces a larger frame
 * before allocating it; ZMQ_RCVHWM = WIRE_RCVHWM messages queued per peer; and
 * f->max_bytes = max_tensor_bytes + WIRE_MAX_HEADER + 64, the budget wire_recv
 * checks as the frames of a message come in (frames past the budget are
 * released at once, never kept). Returns 0 or S3D_EIO (errno kept). */
#define WIRE_RCVHWM 4
int wire_limit(void *sock, struct wire_frames *f, uint64_t max_tensor_bytes);

/* The policy for endpoints a stage listens on (docs/security.md):
 *   ipc://PATH         allowed (the socket file's permissions guard it; the
 *                      job directory is 0700)
 *   ipc://@NAME        an abstract socket has no permissions: needs CURVE
 *   inproc://          allowed
 *   tcp://127.x.x.x:P, tcp://[::1]:P  allowed in the clear (loopback)
 *   tcp://localhost:P  refused: ZeroMQ binds addresses, not host names
 *   anything else      needs CURVE
 * Returns 0 when endpoint may be bound (curve: a secret key is set), else
 * S3D_EINVAL with the reason and a HINT in why. */
int wire_endpoint_check(const char *endpoint, bool curve, char *why, size_t why_len);

/* Send m with its frame tensors' data as one atomic multipart message.
 * Returns 0 or S3D_EIO (errno kept; EINTR/EAGAIN are the caller's to judge). */
int wire_send(void *sock, const struct wire_msg *m);

/* Receive one multipart message into f (released first) and unpack it as kind.
 * Returns 0; S3D_EPROTO with err set when the message is malformed or brings
 * more than f->max_bytes (the whole message was consumed, so a REP socket may
 * reply); S3D_EIO on a socket error
 * (errno kept: EINTR, EAGAIN for a timeout). */
int wire_recv(void *sock, enum wire_kind kind, struct wire_msg *m, struct wire_frames *f,
              char *err, size_t err_len);
/* Release the frames (NULL-safe, idempotent). */
void wire_frames_close(struct wire_frames *f);

/* Send an error reply {id, error: text}. Returns as wire_send. */
int wire_send_error(void *sock, int64_t id, const char *text);

#endif
