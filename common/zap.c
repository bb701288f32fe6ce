/*
 * zap.c - the ZAP handler thread and its allow-list of CURVE client keys.
 * See zap.h; protocol: ZeroMQ RFC 27 (ZAP 1.0). Test: tests/test_wire.c
 * (a listed client is answered, an unlisted one gets nothing).
 *
 * Request frames: version "1.0", request id, domain, address, routing id,
 * mechanism, then the credentials (for CURVE: the client's 32-byte public key).
 * Reply frames: version "1.0", the request id, status "200" or "400", a status
 * text, the user id and empty metadata.
 */
#include "zap.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_FRAMES   8            /* frames kept of a request (CURVE sends 7) */

struct zap {
    void            *ctx;
    void            *sock;
    pthread_t        thread;
    int              n_keys;
    uint8_t        (*keys)[32];
    atomic_uint_fast64_t allowed, refused;
};

int zap_read_keys(const char *path, uint8_t (*keys)[32], int max_keys, char *err,
                  size_t err_len)
{
    FILE *f = fopen(path, "re");
    char line[256];
    int n = 0, lineno = 0;

    if (!f) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        size_t len = strlen(line);

        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ' ||
                       line[len - 1] == '\t'))
            line[--len] = 0;
        if (!len || line[0] == '#')
            continue;
        if (n == max_keys) {
            snprintf(err, err_len, "%s:%d: more than %d keys", path, lineno, max_keys);
            fclose(f);
            return -1;
        }
        if (len != 40 || !zmq_z85_decode(keys[n], line)) {
            snprintf(err, err_len, "%s:%d: not a 40-character Z85 public key", path, lineno);
            fclose(f);
            return -1;
        }
        n++;
    }
    fclose(f);
    if (!n) {
        snprintf(err, err_len, "%s: no keys (one Z85 public key a line)", path);
        return -1;
    }
    return n;
}

static bool key_listed(const struct zap *z, const void *key, size_t len)
{
    if (len != 32)
        return false;
    for (int i = 0; i < z->n_keys; i++)
        if (!memcmp(z->keys[i], key, 32))
            return true;
    return false;
}

static int send_str(void *sock, const char *s, size_t n, bool more)
{
    return zmq_send(sock, s, n, more ? ZMQ_SNDMORE : 0) < 0 ? -1 : 0;
}

/* Answer one request; false when the context is going away. */
static bool serve_one(struct zap *z)
{
    zmq_msg_t part[ZAP_FRAMES];
    int n = 0, more = 1;
    bool ok;

    while (more) {
        zmq_msg_t extra, *m = n < ZAP_FRAMES ? &part[n] : &extra;

        zmq_msg_init(m);
        if (zmq_msg_recv(m, z->sock, 0) < 0) {
            int e = errno;

            zmq_msg_close(m);
            for (int i = 0; i < n; i++)
                zmq_msg_close(&part[i]);
            return e != ETERM;
        }
        more = zmq_msg_more(m);
        if (m == &extra)
            zmq_msg_close(&extra);
        else
            n++;
    }
    /* version, request id, domain, address, routing id, mechanism, key */
    ok = n >= 7 && zmq_msg_size(&part[0]) == 3 && !memcmp(zmq_msg_data(&part[0]), "1.0", 3) &&
         zmq_msg_size(&part[5]) == 5 && !memcmp(zmq_msg_data(&part[5]), "CURVE", 5) &&
         key_listed(z, zmq_msg_data(&part[6]), zmq_msg_size(&part[6]));
    if (ok) {
        atomic_fetch_add(&z->allowed, 1);
    } else {
        char addr[64] = "?";

        if (n >= 4)
            snprintf(addr, sizeof(addr), "%.*s", (int)(zmq_msg_size(&part[3]) < 60 ?
                     zmq_msg_size(&part[3]) : 60), (const char *)zmq_msg_data(&part[3]));
        atomic_fetch_add(&z->refused, 1);
        log_warn("CURVE client from %s refused: its public key is not on the --curve-clients "
                 "list", addr);
    }
    if (n >= 2) {
        (void)(send_str(z->sock, "1.0", 3, true) ||
               zmq_send(z->sock, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]),
                        ZMQ_SNDMORE) < 0 ||
               send_str(z->sock, ok ? "200" : "400", 3, true) ||
               send_str(z->sock, ok ? "OK" : "key not allowed",
                        ok ? 2 : strlen("key not allowed"), true) ||
               send_str(z->sock, "", 0, true) || send_str(z->sock, "", 0, false));
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
    return true;
}

static void *zap_main(void *arg)
{
    struct zap *z = arg;

    while (serve_one(z))
        ;
    zmq_close(z->sock);
    return NULL;
}

int zap_start(void *ctx, const char *path, struct zap **out)
{
    struct zap *z = calloc(1, sizeof(*z));
    char err[300];
    int zero = 0;

    *out = NULL;
    if (!z || !(z->keys = malloc(ZAP_MAX_KEYS * sizeof(*z->keys)))) {
        free(z);
        log_error("out of memory for the CURVE client list");
        return S3D_ENOMEM;
    }
    z->n_keys = zap_read_keys(path, z->keys, ZAP_MAX_KEYS, err, sizeof(err));
    if (z->n_keys < 0) {
        log_error("--curve-clients %s. HINT: one client public key a line, as `sam3d keygen` "
                  "prints it in S3D_CURVE_CLIENT_KEY", err);
        free(z->keys);
        free(z);
        return S3D_EINVAL;
    }
    z->ctx = ctx;
    z->sock = zmq_socket(ctx, ZMQ_REP);
    if (!z->sock || zmq_setsockopt(z->sock, ZMQ_LINGER, &zero, sizeof(zero)) != 0 ||
        zmq_bind(z->sock, ZAP_ENDPOINT) != 0) {
        log_error("cannot start the CURVE client check (%s): %s", ZAP_ENDPOINT,
                  zmq_strerror(errno));
        if (z->sock)
            zmq_close(z->sock);
        free(z->keys);
        free(z);
        return S3D_EIO;
    }
    if (pthread_create(&z->thread, NULL, zap_main, z) != 0) {
        log_error("cannot start the CURVE client check thread");
        zmq_close(z->sock);
        free(z->keys);
        free(z);
        return S3D_EIO;
    }
    log_info("CURVE clients: %d public keys allowed (%s)", z->n_keys, path);
    *out = z;
    return 0;
}

void zap_stop(struct zap *z)
{
    if (!z)
        return;
    zmq_ctx_shutdown(z->ctx);
    pthread_join(z->thread, NULL);
    free(z->keys);
    free(z);
}

void zap_counts(const struct zap *z, uint64_t *allowed, uint64_t *refused)
{
    *allowed = z ? atomic_load(&((struct zap *)z)->allowed) : 0;
    *refused = z ? atomic_load(&((struct zap *)z)->refused) : 0;
}
