/*
 * fuzz_torchzip.c - libFuzzer target: the zip walk, the unpickler and the
 * flattening of a torch archive on arbitrary bytes; whatever parses is hashed
 * in full (so every tensor's bounds are exercised).
 *   make fuzz FUZZ_SECONDS=10   (or: build/fuzz/fuzz_torchzip tests/fuzz/corpus/fuzz_torchzip)
 */
#include "ckpt.h"
#include "ckpt_list.h"
#include "torchzip.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ckpt c;
    char hex[65];

    memset(&c, 0, sizeof(c));
    c.map = data;
    c.size = size;
    if (torchzip_parse(&c) == 0)
        for (int i = 0; i < c.n_entries; i++)
            ckpt_entry_sha256(&c.entries[i], hex);
    ckpt_close(&c);
    return 0;
}
