/*
 * fuzz_wire.c - libFuzzer target for the S3D/1 header parser (wire_unpack).
 *
 * Input: byte 0 picks the message kind (bit 0) and how many data frames follow
 * the header (bits 1-2: 0..3, of 0, 24 and 7 bytes); the rest is the header.
 * Any input must give 0 or S3D_EPROTO, and a parsed message must pack again.
 * Build and run: make fuzz (FUZZ_SECONDS=30).
 */
#include "err.h"
#include "wire.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct wire_msg m;
    static const char zeros[24];
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
    if (rc == 0) {
        char *hdr;
        size_t len;

        if (wire_pack(&m, &hdr, &len) != 0)
            abort();
        free(hdr);
    }
    return 0;
}
