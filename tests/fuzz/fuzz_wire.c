/*
 * fuzz_wire.c - libFuzzer target for the S3D/1 decoder: the header parser
 * (wire_unpack) and the receive path with its message budget (wire_recv over an
 * inproc socket pair).
 *
 * Input: byte 0 picks the message kind (bit 0), how many data frames follow the
 * header (bits 1-2: 0..3, of 0, 24 and 7 bytes), whether frame 0 is the protocol
 * frame (bit 3 clear) or the header's first 5 bytes, and the receive budget
 * (bits 4-7: 16 steps of 64 bytes, 0 = none); the rest is the header. Any input
 * must give 0 or S3D_EPROTO both ways, with nothing kept past a refused budget,
 * and a parsed message must pack again.
 * Build and run: make fuzz (FUZZ_SECONDS=30).
 */
#include "err.h"
#include "wire.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <zmq.h>

static void check_parsed(const struct wire_msg *m)
{
    char *hdr;
    size_t len;

    if (wire_pack(m, &hdr, &len) != 0)
        abort();
    free(hdr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct wire_msg m;
    static struct wire_frames f;
    static void *ctx, *tx, *rx;
    static const char zeros[24];
    static const size_t data_sizes[3] = {0, 24, 7};
    char err[256];
    const void *frames[5];
    size_t sizes[5];
    enum wire_kind kind;
    int n_data, rc;

    if (size < 1)
        return 0;
    kind = (data[0] & 1) ? WIRE_REPLY : WIRE_REQUEST;
    n_data = (data[0] >> 1) & 3;
    frames[0] = WIRE_PROTO; sizes[0] = 5;
    frames[1] = data + 1;   sizes[1] = size - 1;
    frames[2] = zeros;      sizes[2] = 0;
    frames[3] = zeros;      sizes[3] = 24;
    frames[4] = zeros;      sizes[4] = 7;
    rc = wire_unpack(kind, data + 1, size - 1, frames, sizes, 2 + n_data, &m, err, sizeof(err));
    if (rc != 0 && rc != S3D_EPROTO)
        abort();
    if (rc == 0)
        check_parsed(&m);

    /* the same message through a socket, under a budget */
    if (!ctx) {
        ctx = zmq_ctx_new();
        tx = zmq_socket(ctx, ZMQ_PAIR);
        rx = zmq_socket(ctx, ZMQ_PAIR);
        if (!ctx || !tx || !rx || zmq_bind(rx, "inproc://fuzz") || zmq_connect(tx, "inproc://fuzz"))
            abort();
    }
    if (data[0] & 8)
        zmq_send(tx, data + 1, size - 1 < 5 ? size - 1 : 5, ZMQ_SNDMORE);
    else
        zmq_send(tx, WIRE_PROTO, 5, ZMQ_SNDMORE);
    zmq_send(tx, data + 1, size - 1, n_data ? ZMQ_SNDMORE : 0);
    for (int i = 0; i < n_data; i++)
        zmq_send(tx, zeros, data_sizes[i], i + 1 < n_data ? ZMQ_SNDMORE : 0);
    f.max_bytes = (uint64_t)(data[0] >> 4) * 64;
    rc = wire_recv(rx, kind, &m, &f, err, sizeof(err));
    if (rc != 0 && rc != S3D_EPROTO)
        abort();
    if (rc == 0) {
        uint64_t total = 0;

        for (int i = 0; i < f.n; i++)
            total += zmq_msg_size(&f.parts[i]);
        if (f.max_bytes && total > f.max_bytes)
            abort();                               /* over budget yet accepted */
        check_parsed(&m);
    }
    wire_frames_close(&f);
    return 0;
}
