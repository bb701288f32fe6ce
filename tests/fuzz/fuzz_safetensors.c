/*
 * fuzz_safetensors.c - libFuzzer target: the safetensors reader on arbitrary
 * bytes; whatever parses is also hashed in full (every entry's bounds are used).
 *   make fuzz FUZZ_SECONDS=10   (or: build/fuzz/fuzz_safetensors tests/fuzz/corpus/fuzz_safetensors)
 */
#include "ckpt.h"
#include "ckpt_list.h"
#include "log.h"
#include "safetensors.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ckpt c;
    char hex[65];

    memset(&c, 0, sizeof(c));
    c.map = data;
    c.size = size;
    if (safetensors_parse(&c) == 0)
        for (int i = 0; i < c.n_entries; i++)
            ckpt_entry_sha256(&c.entries[i], hex);
    ckpt_close(&c);
    return 0;
}
