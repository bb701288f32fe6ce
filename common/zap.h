/*
 * zap.h - CURVE client authentication: a ZAP handler (ZeroMQ RFC 27/ZAP) that
 * lets only the clients whose public keys are on an allow-list talk to a stage
 * (docs/security.md "Who may talk to a stage").
 *
 * CURVE alone authenticates the server: any client that knows the server's
 * public key (it is in the stage's log) and makes its own key pair could run
 * and shut the stage down. With a ZAP handler bound in the socket's context,
 * libzmq asks the handler about every CURVE handshake before the connection
 * carries a message; the handler answers 200 only for listed keys, and libzmq
 * drops the connection otherwise (the client sees no reply).
 *
 * Allow-list file (`--curve-clients FILE`, env S3D_CURVE_CLIENTS): one Z85
 * public key (40 characters) a line, as `sam3d keygen` prints it in
 * S3D_CURVE_CLIENT_KEY; blank lines and lines starting with '#' are skipped,
 * anything else is an error naming the line. Keys are compared in binary.
 *
 * Threads: zap_start runs the handler on its own thread with its own socket
 * (inproc://zeromq.zap.01) in the given context; zap_stop shuts that context
 * down (zmq_ctx_shutdown: every blocking call in it returns ETERM), joins the
 * thread and frees the list. Call zap_stop after closing the served socket and
 * before zmq_ctx_term.
 */
#ifndef S3D_ZAP_H
#define S3D_ZAP_H

#include <stddef.h>
#include <stdint.h>

#define ZAP_MAX_KEYS 1024

struct zap;

/* Read the allow-list file path (see above) into keys[n][32]. Returns the number
 * of keys (>= 1), or -1 after writing the reason (file, line) into err. */
int zap_read_keys(const char *path, uint8_t (*keys)[32], int max_keys, char *err,
                  size_t err_len);

/* Start the handler in ctx with the keys of the allow-list file path. Returns
 * 0 with *out set, or S3D_EINVAL / S3D_EIO after logging the reason with a HINT. */
int zap_start(void *ctx, const char *path, struct zap **out);

/* Shut down ctx, join the handler, free it. NULL-safe. */
void zap_stop(struct zap *z);

/* How many handshakes the handler allowed / refused so far (logs, tests). */
void zap_counts(const struct zap *z, uint64_t *allowed, uint64_t *refused);

#endif
