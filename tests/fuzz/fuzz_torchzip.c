/*
 * fuzz_torchzip.c - libFuzzer target: the zip walk, the unpickler and the
 * flattening of a torch archive on arbitrary bytes; whatever parses is hashed
 * in full (so every tensor's bounds are exercised) when it reads at most 16 MiB
 * (stride 0 lets a valid file name up to ckpt_max_logical() bytes).
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
            if (ckpt_entry_numel(&c.entries[i]) * (int64_t)dtype_size(c.entries[i].dtype) <=
                (16 << 20))
                ckpt_entry_sha256(&c.entries[i], hex);
    ckpt_close(&c);
    return 0;
}
