/*
 * client.c - Lazy Pirate REQ client. See client.h.
 */
#include "client.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define SLICE_MS 100
#define CLIENT_IPC_RECONNECT_MS 5   /* retry a local stage's socket this often */

static int connect_sock(struct client *c)
{
    const char *server_key = getenv("S3D_CURVE_SERVERKEY");
    const char *client_sec = getenv("S3D_CURVE_CLIENT_SECRET");
    int zero = 0;

    c->sock = zmq_socket(c->ctx, ZMQ_REQ);
    ASSERT(c->sock);
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof(zero));
    if (!strncmp(c->endpoint, "ipc://", 6)) {
        /* a stage process of ours, just spawned: it binds within a few hundred ms, and
         * each failed attempt waits the reconnect interval (libzmq: 100 ms) */
        int ivl = CLIENT_IPC_RECONNECT_MS;

        zmq_setsockopt(c->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl));
    }
    if (wire_limit(c->sock, NULL, CLIENT_MAX_REPLY_BYTES) != 0) {
        log_error("cannot set the message limits of a socket: %s", zmq_strerror(errno));
        goto out_close;
    }
    if (server_key && *server_key && !strncmp(c->endpoint, "tcp://", 6)) {
        char pub[41];

        if (!client_sec || !*client_sec) {
            log_error("S3D_CURVE_SERVERKEY is set but S3D_CURVE_CLIENT_SECRET is not: a CURVE "
                      "stage answers only the clients on its --curve-clients list. HINT: "
                      "`sam3d keygen` prints a client key pair; give its S3D_CURVE_CLIENT_KEY "
                      "to the stage's list");
            goto out_close;
        }
        if (strlen(server_key) != 40 || strlen(client_sec) != 40 ||
            zmq_curve_public(pub, client_sec) != 0 ||
            zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, server_key, 40) != 0 ||
            zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, pub, 40) != 0 ||
            zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, client_sec, 40) != 0) {
            log_error("S3D_CURVE_SERVERKEY or S3D_CURVE_CLIENT_SECRET: not a 40-character Z85 "
                      "key, or no CURVE in libzmq. HINT: use the keys `sam3d keygen` prints");
            goto out_close;
        }
    }
    if (zmq_connect(c->sock, c->endpoint) != 0) {
        log_error("cannot connect to '%s': %s", c->endpoint, zmq_strerror(errno));
        goto out_close;
    }
    return 0;
out_close:
    zmq_close(c->sock);
    c->sock = NULL;
    return S3D_EIO;
}

int client_open(struct client *c, void *ctx, const char *endpoint)
{
    memset(c, 0, sizeof(*c));
    c->ctx = ctx;
    c->next_id = 1;
    if (strlen(endpoint) >= sizeof(c->endpoint)) {
        log_error("endpoint '%s' too long", endpoint);
        return S3D_EINVAL;
    }
    strcpy(c->endpoint, endpoint);
    return connect_sock(c);
}

void client_close(struct client *c)
{
    if (c && c->sock) {
        zmq_close(c->sock);
        c->sock = NULL;
    }
}

/* Lazy Pirate: a REQ socket that lost its reply is closed and opened again. */
static void reset(struct client *c)
{
    client_close(c);
    (void)connect_sock(c);    /* on failure sock stays NULL: the next call retries */
}

int client_send(struct client *c, struct wire_msg *req, char *why, size_t why_len)
{
    if (!c->sock && connect_sock(c) != 0) {
        snprintf(why, why_len, "cannot connect to %s", c->endpoint);
        return S3D_EIO;
    }
    req->id = c->next_id++;
    if (wire_send(c->sock, req) != 0) {
        snprintf(why, why_len, "send to %s failed: %s", c->endpoint, zmq_strerror(errno));
        reset(c);
        return S3D_EIO;
    }
    c->pending_id = req->id;
    return 0;
}

int client_recv(struct client *c, struct wire_msg *rep, struct wire_frames *f, char *why,
                size_t why_len)
{
    char err[WIRE_ERR_MAX];
    int rc = wire_recv(c->sock, WIRE_REPLY, rep, f, err, sizeof(err));

    if (rc == 0 && rep->id != c->pending_id) {
        snprintf(err, sizeof(err), "reply id %lld does not match request id %lld",
                 (long long)rep->id, (long long)c->pending_id);
        rc = S3D_EPROTO;
    }
    c->pending_id = 0;
    if (rc) {
        snprintf(why, why_len, "bad reply from %s: %s", c->endpoint,
                 rc == S3D_EIO ? zmq_strerror(errno) : err);
        reset(c);
        return rc == S3D_EIO ? S3D_EIO : S3D_EPROTO;
    }
    return 0;
}

void client_abandon(struct client *c)
{
    c->pending_id = 0;
    reset(c);
}

void *client_socket(const struct client *c)
{
    return c->sock;
}

int client_call(struct client *c, struct wire_msg *req, struct wire_msg *rep,
                struct wire_frames *f, int timeout_ms, client_wait_fn wait_fn, void *arg,
                char *why, size_t why_len)
{
    int waited = 0, rc;

    rc = client_send(c, req, why, why_len);
    if (rc)
        return rc;
    for (;;) {
        zmq_pollitem_t item = {c->sock, 0, ZMQ_POLLIN, 0};
        int slice = timeout_ms - waited < SLICE_MS ? timeout_ms - waited : SLICE_MS;
        int n = zmq_poll(&item, 1, slice > 0 ? slice : 0);

        if (n < 0 && errno != EINTR) {
            snprintf(why, why_len, "poll on %s: %s", c->endpoint, zmq_strerror(errno));
            client_abandon(c);
            return S3D_EIO;
        }
        if (n > 0 && (item.revents & ZMQ_POLLIN))
            break;
        waited += slice > 0 ? slice : 0;
        if (waited >= timeout_ms) {
            snprintf(why, why_len, "no reply from %s within %.1f s", c->endpoint,
                     timeout_ms / 1000.0);
            client_abandon(c);
            return S3D_ETIMEOUT;
        }
        if (wait_fn && !wait_fn(arg)) {
            snprintf(why, why_len, "gave up waiting for %s", c->endpoint);
            client_abandon(c);
            return S3D_ETIMEOUT;
        }
    }
    return client_recv(c, rep, f, why, why_len);
}
