/*
 * client.h - Lazy Pirate REQ client for one stage (zguide ch. 4).
 *
 * One REQ socket per stage. A call sends one request and polls for the reply
 * in short slices; between slices it asks the caller whether to keep waiting
 * (the stage process is still alive, no Ctrl-C). When the reply does not come
 * (timeout, dead peer, interrupt) the socket is closed and reopened, because
 * a REQ socket that missed a reply cannot send again. Retrying and restarting
 * the stage is the caller's policy (run.c).
 */
#ifndef S3D_CLIENT_H
#define S3D_CLIENT_H

#include "wire.h"

#include <stdbool.h>
#include <stdint.h>

struct client {
    void   *ctx;                 /* borrowed zmq context */
    void   *sock;                /* REQ, or NULL */
    char    endpoint[WIRE_STR_MAX];
    int64_t next_id;
    int64_t pending_id;          /* id of the request sent and not answered yet, 0: none */
};

/* Connect to endpoint. CURVE: for a tcp:// endpoint, when env S3D_CURVE_SERVERKEY
 * holds the stage's public key, the client uses CURVE with the key pair whose
 * secret is env S3D_CURVE_CLIENT_SECRET (the stage answers only the public keys
 * on its --curve-clients list; `sam3d keygen` prints both); ipc:// stages, the
 * ones the orchestrator starts itself, never do. Replies are limited to
 * CLIENT_MAX_REPLY_BYTES of tensors (wire_limit). Returns 0 or S3D_EIO. */
#define CLIENT_MAX_REPLY_BYTES (8ull << 30)
int  client_open(struct client *c, void *ctx, const char *endpoint);
void client_close(struct client *c);              /* NULL-safe */

/* Should a call keep waiting? Called every slice (~100 ms); false aborts the call. */
typedef bool (*client_wait_fn)(void *arg);

/* Send req (its id is assigned here) and wait up to timeout_ms for the reply into
 * rep (and f, whose frames rep's inline tensors point into). Returns 0 when a
 * reply came (rep->has_error tells whether the stage failed the request);
 * S3D_ETIMEOUT after timeout_ms or when wait_fn said stop (the socket is reset);
 * S3D_EPROTO for a malformed or mismatched reply (socket reset); S3D_EIO when
 * sending failed. why[why_len] gets one line for any failure. */
int  client_call(struct client *c, struct wire_msg *req, struct wire_msg *rep,
                 struct wire_frames *f, int timeout_ms, client_wait_fn wait_fn, void *arg,
                 char *why, size_t why_len);

/* The two halves of client_call, for callers that wait on several stages at
 * once (zmq_poll on client_socket). client_send: 0, or S3D_EIO (socket reset)
 * with why set. client_recv, once the socket is readable: 0 with rep filled
 * (rep->has_error: the stage failed the request), or S3D_EPROTO / S3D_EIO with
 * why set (socket reset). client_abandon: the reply will not be waited for
 * (timeout, dead peer): the socket is reset (Lazy Pirate). */
int   client_send(struct client *c, struct wire_msg *req, char *why, size_t why_len);
int   client_recv(struct client *c, struct wire_msg *rep, struct wire_frames *f, char *why,
                  size_t why_len);
void  client_abandon(struct client *c);
void *client_socket(const struct client *c);     /* the REQ socket, NULL while reset failed */

#endif
