/*
 * image_raw.h - inside the image decoders (common/image.c, common/image_jpeg.c):
 * the "raw" picture each file decodes to, in PIL's own mode, before image.c
 * applies the reference's rules. Not for other callers: common/image.h is the
 * interface.
 */
#ifndef S3D_IMAGE_RAW_H
#define S3D_IMAGE_RAW_H

#include <stddef.h>
#include <stdint.h>

enum raw_mode {
    RAW_L,      /* 1 sample; 1/2/4-bit gray already scaled to 0..255 (PIL "L", "1") */
    RAW_LA,     /* 2 samples */
    RAW_RGB,    /* 3 samples */
    RAW_RGBA,   /* 4 samples */
    RAW_P,      /* 1 sample = palette index; pal holds the RGB entries */
    RAW_I16,    /* 16-bit gray (PIL "I;16"), in px16 */
    RAW_CMYK,   /* 4 samples, as PIL holds them (Adobe files un-inverted) */
};

struct raw {
    int            w;
    int            h;
    enum raw_mode  mode;
    int            nc;          /* samples per pixel in px */
    uint8_t       *px;          /* (h, w, nc), or NULL for RAW_I16 */
    uint16_t      *px16;        /* (h, w) for RAW_I16 */
    uint8_t        pal[256][3]; /* RAW_P: entries past npal are 0 */
    int            npal;
};

/* The size check every decoder makes on its header: 0, or S3D_EFORMAT (empty)
 * / S3D_EINVAL (over image_max_pixels()), logged with name. */
int image_check_size(const char *name, int64_t w, int64_t h);

/* Decode a JPEG into r (memset first). Returns 0 or S3D_EFORMAT / S3D_ENOMEM
 * (logged with name). common/image_jpeg.c. */
int image_jpeg_decode(const uint8_t *buf, size_t len, const char *name, struct raw *r);

#endif
