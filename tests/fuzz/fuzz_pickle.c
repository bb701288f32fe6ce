/*
 * fuzz_pickle.c - libFuzzer target: the restricted unpickler on arbitrary bytes.
 *   make fuzz FUZZ_SECONDS=10   (or: build/fuzz/fuzz_pickle tests/fuzz/corpus/fuzz_pickle)
 */
#include "pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pickle pk;

    pickle_load(&pk, data, size);
    pickle_free(&pk);
    return 0;
}
