/*
 * image.h - PNG and JPEG input (libpng, libjpeg-turbo) as the official pipeline
 * reads it, and an 8-bit PNG writer for debug outputs.
 *
 * The format is chosen by the file's first bytes, never by its name (the
 * socrates example "image.png" is a JPEG). Decoded values equal PIL's
 * (Pillow 13, libjpeg-turbo with ISLOW IDCT and fancy upsampling, the settings
 * Pillow uses), checked against PIL fixtures in tests/test_image.c.
 *
 * What the reference does (.ref/sam-3d-objects notebook/inference.py):
 *   load_image (:344-348)  np.array(PIL.Image.open(path)).astype(np.uint8)
 *   load_mask  (:351-356)  load_image(path) > 0, then the last channel if 3-D
 *   merge_mask_to_rgba (:94-99)  rgba = concat(image[..., :3], mask * 255)
 * image_load_rgb() returns image[..., :3] of that for RGB and RGBA files. The
 * reference cannot use other modes as images (a 2-D array breaks the merge);
 * for them we return PIL's convert("RGB"): gray (and gray+alpha, and 1/2/4-bit
 * gray, which PIL scales to 0..255) is replicated, palette indices are looked
 * up in PLTE (tRNS is ignored, as convert("RGB") ignores it), CMYK JPEG goes
 * through Pillow's cmyk2rgb. 16-bit: PIL reduces 16-bit RGB, RGBA and gray+alpha
 * PNGs to their high byte when it opens them ("RGB;16B" etc.), and so do we. A
 * 16-bit gray PNG opens as mode "I;16": the reference's astype(np.uint8) keeps
 * the LOW byte and convert("RGB") clips at 255; for images neither is usable,
 * so image_load_rgb takes the high byte as for the other 16-bit modes
 * (deliberate, documented deviation), while image_load_mask matches the
 * reference exactly ((v & 0xff) != 0) and warns when that differs from v != 0.
 * Masks use the raw samples of PIL's mode: last channel of RGB(A)/LA, the
 * palette INDEX for palette PNGs, K for CMYK; nonzero = object.
 *
 * Memory: decoded pixels are malloc'ed and owned by the struct image; release
 * them with image_free() (NULL-safe, idempotent). Images with more pixels than
 * image_max_pixels() are refused, and so are files that are not regular files
 * or exceed IMAGE_MAX_FILE_BYTES.
 */
#ifndef S3D_IMAGE_H
#define S3D_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The pixel limit: images with more pixels are refused before they are decoded.
 * The default is what the depth stage's default host arena holds (13 bytes a
 * pixel, stages/depth); env S3D_MAX_PIXELS (`sam3d run --max-pixels N`) raises
 * or lowers it, up to IMAGE_MAX_PIXELS_CAP. For reference, PIL raises
 * DecompressionBombError above 2 * 89478485 pixels. */
#define IMAGE_DEFAULT_MAX_PIXELS 80000000LL
#define IMAGE_MAX_PIXELS_CAP     1000000000LL
/* The largest image file read (a regular file; a FIFO or a device is refused). */
#define IMAGE_MAX_FILE_BYTES (1ull << 30)

struct image {
    int      w;      /* width in pixels */
    int      h;      /* height in pixels */
    int      c;      /* channels: 3 (RGB) from image_*_rgb, 1 from image_*_mask */
    uint8_t *data;   /* (h, w, c) row-major; masks hold 0 or 1; malloc'ed, see image_free */
};

/* The pixel limit in force: S3D_MAX_PIXELS when set (an integer, or one with a
 * K/M/G suffix of 10^3/10^6/10^9), else IMAGE_DEFAULT_MAX_PIXELS. */
int64_t image_max_pixels(void);
/* Parse a pixel count ("150M", "12000000") into *out; false when it is not a
 * number in [1, IMAGE_MAX_PIXELS_CAP]. */
int     image_parse_pixels(const char *s, int64_t *out);

/* The width and height a PNG or JPEG file declares, read from its first bytes
 * without decoding it (the orchestrator checks the pixel limit before starting
 * anything). Returns 0, S3D_EIO (cannot read; nothing logged) or S3D_EFORMAT
 * (no size found in the header: the decoder will say why). */
int image_probe(const char *path, int64_t *w, int64_t *h);

/* Decode an image file as RGB (see the header comment for each mode).
 * out: filled on success (c = 3), zeroed on failure. Returns 0, or S3D_EIO (cannot
 * read), S3D_EFORMAT (not PNG/JPEG, truncated, corrupt, unsupported variant, too
 * large); the one error line names path. */
int image_load_rgb(const char *path, struct image *out);

/* Decode a mask file as load_mask does: (h, w, 1) of 0/1, 1 = object.
 * expect_w, expect_h: the image's size; a mask of another size fails with
 * S3D_ESHAPE (pass expect_w <= 0 to skip the check). A mask with no object pixel
 * fails with S3D_EINVAL. Other errors as image_load_rgb. */
int image_load_mask(const char *path, int expect_w, int expect_h, struct image *out);
/* image_load_mask in two steps (the mask decoded while another thread decodes the
 * image): image_read_mask decodes only (errors as image_load_rgb); image_check_mask
 * then does the size and emptiness checks with their error lines, freeing *out on
 * failure. */
int image_read_mask(const char *path, struct image *out);
int image_check_mask(const char *path, int expect_w, int expect_h, struct image *out);

/* The same decoders on a buffer in memory (fuzzing, shm inputs). name is only
 * used in error messages. No size or emptiness check for masks. */
int image_decode_rgb(const void *buf, size_t len, const char *name, struct image *out);
int image_decode_mask(const void *buf, size_t len, const char *name, struct image *out);

/* A large single-scan (baseline) JPEG is decoded in horizontal stripes, one
 * decoder a stripe on its own thread, each entropy-decoding the rows above its
 * stripe without reconstructing them: the same bytes as one decoder, in about
 * the entropy-decoding share of its time on many cores (docs/performance.md,
 * "depth"). n = 0 (the default): up to 16 stripes by the thread count (S3D_THREADS,
 * else the online cores), from 1 Mpixel; n = 1: one decoder always; n >= 2: up
 * to n stripes at any size (tests, benchmarks). Progressive, arithmetic-coded,
 * CMYK and unusually subsampled files always use one decoder. */
void image_set_jpeg_stripes(int n);

/* The stripes this thread's last JPEG decode used (0: one decoder). */
int image_last_jpeg_stripes(void);

/* Encode img as an 8-bit PNG in memory: c = 1 (gray), 3 (RGB) or 4 (RGBA).
 * *out is malloc'ed (free it), *len its size. Returns 0 or S3D_ENOMEM (logged).
 * Files users open are written from it through outfile.h (preview.png). */
int image_encode_png(const struct image *img, uint8_t **out, size_t *len);
/* Write img as an 8-bit PNG: c = 1 (gray), 3 (RGB) or 4 (RGBA). Mask images
 * (0/1) are written as they are; scale them first to see them. Returns 0 or
 * S3D_EIO (logged with path). */
int image_write_png(const char *path, const struct image *img);

/* Release img->data and zero the struct. NULL-safe; safe to call twice. */
void image_free(struct image *img);

/* Number of nonzero samples in a mask image (c = 1). */
int64_t image_count_nonzero(const struct image *mask);

#ifdef __cplusplus
}
#endif
#endif
