/*
 * fuzz_jpeg.c - libFuzzer target for the JPEG path of common/image.c (the decoder in
 * common/image_jpeg.c).
 *
 * Any input is prefixed with the JPEG SOI marker FF D8 FF (so the fuzzer explores the
 * marker and entropy-coded layers, not the magic check), decoded as RGB with one decoder
 * and in up to 3 stripes (image_set_jpeg_stripes: any image of 2 iMCU rows or more), and
 * as a mask. Must never crash, leak or read out of bounds; errors are expected, but the
 * striped decode must give the one decoder's result (the same error code, or the same
 * bytes): a difference aborts.
 * Build: make fuzz (clang -fsanitize=fuzzer,address,undefined).
 */
#include "image.h"
#include "log.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t sig[3] = {0xff, 0xd8, 0xff};
    static int           quiet;
    struct image         img;
    uint8_t             *buf;

    if (!quiet) {
        log_init("fuzz_jpeg");
        log_set_level((enum log_level)(LOG_ERROR + 1));   /* silence expected errors */
        /* at most 4 Mpixel a picture: a header claiming 65466x245 took 11 s for the three
         * decodes under ASan on a loaded machine (0.13 s without it); larger sizes take
         * the same code, refused by the same check */
        setenv("S3D_MAX_PIXELS", "4M", 1);
        quiet = 1;
    }
    if (size > (1u << 20))
        return 0;
    buf = malloc(size + 3);
    if (!buf)
        return 0;
    memcpy(buf, sig, 3);
    memcpy(buf + 3, data, size);
    struct image one;
    int          rc1, rc2;

    image_set_jpeg_stripes(1);
    rc1 = image_decode_rgb(buf, size + 3, "fuzz", &one);
    image_set_jpeg_stripes(3);
    rc2 = image_decode_rgb(buf, size + 3, "fuzz", &img);
    image_set_jpeg_stripes(0);
    if (rc1 != rc2 || (rc1 == 0 && (one.w != img.w || one.h != img.h ||
                                    memcmp(one.data, img.data, (size_t)one.w * one.h * 3))))
        abort();                                      /* striped != one decoder */
    if (rc1 == 0) {
        image_free(&one);
        image_free(&img);
    }
    if (image_decode_mask(buf, size + 3, "fuzz", &img) == 0)
        image_free(&img);
    free(buf);
    return 0;
}
