/*
 * fuzz_png.c - libFuzzer target for the PNG path of common/image.c.
 *
 * Any input is prefixed with the PNG signature (so the fuzzer explores the
 * chunk and zlib layers, not the magic check), decoded as RGB and as a mask.
 * Must never crash, leak or read out of bounds; errors are expected.
 * Build: make fuzz (clang -fsanitize=fuzzer,address,undefined).
 */
#include "image.h"
#include "log.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static int           quiet;
    struct image         img;
    uint8_t             *buf;

    if (!quiet) {
        log_init("fuzz_png");
        log_set_level((enum log_level)(LOG_ERROR + 1));   /* silence expected errors */
        quiet = 1;
    }
    if (size > (1u << 20))
        return 0;
    buf = malloc(size + 8);
    if (!buf)
        return 0;
    memcpy(buf, sig, 8);
    memcpy(buf + 8, data, size);
    if (image_decode_rgb(buf, size + 8, "fuzz", &img) == 0)
        image_free(&img);
    if (image_decode_mask(buf, size + 8, "fuzz", &img) == 0)
        image_free(&img);
    free(buf);
    return 0;
}
