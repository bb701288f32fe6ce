/*
 * image.c - PNG/JPEG decoding into PIL's pixel values, and a PNG writer.
 *
 * Both decoders first produce a "raw" picture in PIL's own mode for the file
 * (L, LA, RGB, RGBA, P with its palette, I;16, CMYK), then raw_to_rgb() and
 * raw_to_mask() apply the reference's rules (image.h explains them). libpng
 * and libjpeg report errors through longjmp back into the decoder, never exit().
 * The JPEG decoder is common/image_jpeg.c; the raw picture is image_raw.h.
 */
#include "image.h"
#include "image_raw.h"
#include "fileio.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>

#include <png.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ---------------------------------------------------------------------------
// raw pictures in PIL's modes

static void raw_free(struct raw *r)
{
    free(r->px);
    free(r->px16);
    r->px = NULL;
    r->px16 = NULL;
}

int image_parse_pixels(const char *s, int64_t *out)
{
    char *end;
    double v = strtod(s, &end);

    if (end == s || v < 1)
        return 0;
    if (*end == 'k' || *end == 'K')
        v *= 1e3, end++;
    else if (*end == 'm' || *end == 'M')
        v *= 1e6, end++;
    else if (*end == 'g' || *end == 'G')
        v *= 1e9, end++;
    if (*end || v > (double)IMAGE_MAX_PIXELS_CAP)
        return 0;
    *out = (int64_t)v;
    return 1;
}

int64_t image_max_pixels(void)
{
    const char *e = getenv("S3D_MAX_PIXELS");
    int64_t v;

    return e && *e && image_parse_pixels(e, &v) ? v : IMAGE_DEFAULT_MAX_PIXELS;
}

int image_check_size(const char *name, int64_t w, int64_t h)
{
    int64_t max = image_max_pixels();

    if (w <= 0 || h <= 0) {
        log_error("%s: image size %lldx%lld is empty", name, (long long)w, (long long)h);
        return S3D_EFORMAT;
    }
    if (w * h > max) {
        log_error("%s: %lldx%lld = %lld pixels, over the limit of %lld (HINT: downscale "
                  "the image, or raise the limit with `sam3d run --max-pixels N` (env "
                  "S3D_MAX_PIXELS); the depth stage needs 13 bytes of memory a pixel)",
                  name, (long long)w, (long long)h, (long long)(w * h), (long long)max);
        return S3D_EINVAL;
    }
    return 0;
}

/* big-endian 16/32-bit reads for the header probe */
static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(const uint8_t *p) { return be16(p) << 16 | be16(p + 2); }

int image_probe(const char *path, int64_t *w, int64_t *h)
{
    enum { PROBE = 1 << 20 };             /* a JPEG's frame header follows its APPn segments */
    char why[200];
    uint8_t *b;
    ssize_t n;
    int fd = file_open_read(AT_FDCWD, path, 0, IMAGE_MAX_FILE_BYTES, NULL, why, sizeof(why));
    int rc = S3D_EFORMAT;

    if (fd < 0)
        return S3D_EIO;
    b = malloc(PROBE);
    n = b ? read(fd, b, PROBE) : -1;
    close(fd);
    if (n < 0) {
        free(b);
        return S3D_EIO;
    }
    if (n >= 24 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8) && !memcmp(b + 12, "IHDR", 4)) {
        *w = be32(b + 16);
        *h = be32(b + 20);
        rc = 0;
    } else if (n >= 4 && b[0] == 0xff && b[1] == 0xd8) {
        for (ssize_t p = 2; p + 9 <= n && b[p] == 0xff;) {
            uint8_t m = b[p + 1];

            if (m == 0xff) {                      /* fill byte */
                p++;
                continue;
            }
            if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
                *h = be16(b + p + 5);             /* SOFn: length, precision, height, width */
                *w = be16(b + p + 7);
                rc = 0;
                break;
            }
            if (m == 0xd9 || m == 0xda)           /* end of image / start of scan: no SOF */
                break;
            p += 2 + (m >= 0xd0 && m <= 0xd7 ? 0 : be16(b + p + 2));
        }
    }
    free(b);
    return rc;
}

// ---------------------------------------------------------------------------
// PNG (libpng, reading from memory)

struct png_src {
    const uint8_t *buf;
    size_t         len;
    size_t         pos;
    const char    *name;
    char           msg[160];
};

static void png_read_mem(png_structp png, png_bytep out, png_size_t n)
{
    struct png_src *s = png_get_io_ptr(png);

    if (n > s->len - s->pos)
        png_error(png, "file is truncated");
    memcpy(out, s->buf + s->pos, n);
    s->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    struct png_src *s = png_get_error_ptr(png);

    snprintf(s->msg, sizeof(s->msg), "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    struct png_src *s = png_get_error_ptr(png);

    log_debug("%s: libpng warning: %s", s->name, msg);
}

/* Decode a PNG into r. Returns 0 or S3D_EFORMAT / S3D_ENOMEM (logged). */
static int png_decode(const uint8_t *buf, size_t len, const char *name, struct raw *r)
{
    struct png_src src = {.buf = buf, .len = len, .name = name};
    png_structp    png;
    png_infop      info = NULL;
    png_bytep *volatile rows = NULL;
    uint8_t *volatile   pix = NULL;
    volatile int   rc = S3D_EFORMAT;
    png_uint_32    w, h;
    int            depth, ctype, interlace;
    size_t         rowbytes;

    memset(r, 0, sizeof(*r));
    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    if (!png)
        return S3D_ENOMEM;
    info = png_create_info_struct(png);
    if (!info)
        goto out_destroy;
    if (setjmp(png_jmpbuf(png))) {
        log_error("%s: corrupt or truncated PNG: %s (HINT: re-export the file)", name, src.msg);
        rc = S3D_EFORMAT;
        goto out_destroy;
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    if ((rc = image_check_size(name, w, h)) != 0)
        goto out_destroy;
    rc = S3D_EFORMAT;
    r->w = (int)w;
    r->h = (int)h;

    switch (ctype) {
    case PNG_COLOR_TYPE_GRAY:
        r->mode = depth == 16 ? RAW_I16 : RAW_L;
        r->nc = 1;
        if (depth < 8)
            png_set_expand_gray_1_2_4_to_8(png);   /* v * 255 / (2^d - 1), as PIL's L;2, L;4, 1 */
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        r->mode = RAW_LA;
        r->nc = 2;
        break;
    case PNG_COLOR_TYPE_RGB:
        r->mode = RAW_RGB;
        r->nc = 3;
        break;
    case PNG_COLOR_TYPE_RGB_ALPHA:
        r->mode = RAW_RGBA;
        r->nc = 4;
        break;
    case PNG_COLOR_TYPE_PALETTE: {
        png_colorp plte;
        int        n = 0;

        r->mode = RAW_P;
        r->nc = 1;
        if (depth < 8)
            png_set_packing(png);                  /* one index per byte */
        if (png_get_PLTE(png, info, &plte, &n) & PNG_INFO_PLTE) {
            for (int i = 0; i < n && i < 256; i++) {
                r->pal[i][0] = plte[i].red;
                r->pal[i][1] = plte[i].green;
                r->pal[i][2] = plte[i].blue;
            }
        }
        r->npal = n;
        break;
    }
    default:
        log_error("%s: unsupported PNG colour type %d", name, ctype);
        goto out_destroy;
    }
    if (depth == 16 && r->mode != RAW_I16)
        png_set_strip_16(png);                     /* high byte, as PIL's "RGB;16B" etc. */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    rowbytes = png_get_rowbytes(png, info);
    if (rowbytes != (size_t)w * r->nc * (r->mode == RAW_I16 ? 2 : 1)) {
        log_error("%s: unexpected PNG row size %zu", name, rowbytes);
        goto out_destroy;
    }
    pix = malloc(rowbytes * h);
    rows = malloc(sizeof(*rows) * h);
    if (!pix || !rows) {
        log_error("%s: out of memory for a %ux%u image", name, (unsigned)w, (unsigned)h);
        rc = S3D_ENOMEM;
        goto out_destroy;
    }
    for (png_uint_32 y = 0; y < h; y++)
        rows[y] = pix + y * rowbytes;
    png_read_image(png, rows);

    if (r->mode == RAW_I16) {                      /* big-endian samples -> uint16 */
        r->px16 = malloc(sizeof(uint16_t) * w * h);
        if (!r->px16) {
            rc = S3D_ENOMEM;
            goto out_destroy;
        }
        for (size_t i = 0; i < (size_t)w * h; i++)
            r->px16[i] = (uint16_t)(pix[2 * i] << 8 | pix[2 * i + 1]);
    } else {
        r->px = pix;
        pix = NULL;
    }
    rc = 0;
out_destroy:
    free(rows);
    free(pix);
    png_destroy_read_struct(&png, info ? &info : NULL, NULL);
    if (rc != 0)
        raw_free(r);
    return rc;
}

// ---------------------------------------------------------------------------
// decode dispatch and conversions

static int raw_decode(const void *buf, size_t len, const char *name, struct raw *r)
{
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const uint8_t       *b = buf;

    memset(r, 0, sizeof(*r));
    if (len >= 8 && memcmp(b, png_magic, 8) == 0)
        return png_decode(b, len, name, r);
    if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return image_jpeg_decode(b, len, name, r);
    log_error("%s: not a PNG or JPEG file (first bytes %02x %02x %02x %02x) "
              "(HINT: convert it to PNG)", name, len > 0 ? b[0] : 0, len > 1 ? b[1] : 0,
              len > 2 ? b[2] : 0, len > 3 ? b[3] : 0);
    return S3D_EFORMAT;
}

/* Pillow's MULDIV255: a * b / 255 rounded, in integers (libImaging/ImPlatform.h). */
static inline int muldiv255(int a, int b)
{
    int t = a * b + 128;

    return ((t >> 8) + t) >> 8;
}

/* PIL convert("RGB") for the raw mode (the reference's image[..., :3] for RGB/RGBA). */
static int raw_to_rgb(struct raw *r, const char *name, struct image *out)
{
    size_t   n = (size_t)r->w * r->h;
    uint8_t *d;

    if (r->mode == RAW_RGB) {           /* already (h, w, 3): take the decoder's buffer */
        out->w = r->w;
        out->h = r->h;
        out->c = 3;
        out->data = r->px;
        r->px = NULL;
        return 0;
    }
    d = malloc(n * 3);

    if (!d) {
        log_error("%s: out of memory for a %dx%d image", name, r->w, r->h);
        return S3D_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t       *o = d + 3 * i;
        const uint8_t *p = r->px ? r->px + r->nc * i : NULL;

        switch (r->mode) {
        case RAW_L:
        case RAW_LA:
            o[0] = o[1] = o[2] = p[0];
            break;
        case RAW_RGB:
        case RAW_RGBA:
            o[0] = p[0];
            o[1] = p[1];
            o[2] = p[2];
            break;
        case RAW_P:
            memcpy(o, r->pal[p[0]], 3);
            break;
        case RAW_I16:
            o[0] = o[1] = o[2] = (uint8_t)(r->px16[i] >> 8);   /* deliberate: see image.h */
            break;
        case RAW_CMYK: {                                       /* Pillow Convert.c cmyk2rgb */
            int nk = 255 - p[3];

            o[0] = (uint8_t)(nk - muldiv255(p[0], nk));
            o[1] = (uint8_t)(nk - muldiv255(p[1], nk));
            o[2] = (uint8_t)(nk - muldiv255(p[2], nk));
            break;
        }
        }
    }
    out->w = r->w;
    out->h = r->h;
    out->c = 3;
    out->data = d;
    return 0;
}

/* load_mask: astype(uint8) > 0 on the last channel of PIL's raw samples. */
static int raw_to_mask(struct raw *r, const char *name, struct image *out)
{
    size_t   n = (size_t)r->w * r->h;
    size_t   differ = 0;
    /* in place over the decoder's samples (pixel i reads sample nc i + nc - 1 >= i
     * before byte i is written), else a new buffer for 16-bit gray */
    uint8_t *d = r->px ? r->px : malloc(n);

    if (!d) {
        log_error("%s: out of memory for a %dx%d mask", name, r->w, r->h);
        return S3D_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (r->mode == RAW_I16) {
            d[i] = (r->px16[i] & 0xff) != 0;                  /* astype(uint8) wraps */
            differ += d[i] != (r->px16[i] != 0);
        } else {
            d[i] = r->px[r->nc * i + r->nc - 1] != 0;
        }
    }
    if (differ)
        log_warn("%s: 16-bit gray mask: %zu pixels are nonzero but have a zero low byte; "
                 "they are background, as in the reference's load_mask (HINT: save masks "
                 "as 8-bit)", name, differ);
    if (d == r->px) {
        uint8_t *fit = r->nc > 1 ? realloc(d, n) : d;     /* shrinking: no copy as a rule */

        d = fit ? fit : d;
        r->px = NULL;
    }
    out->w = r->w;
    out->h = r->h;
    out->c = 1;
    out->data = d;
    return 0;
}

/* Decode buf into out as RGB or as a mask. */
static int decode(const void *buf, size_t len, const char *name, bool as_mask,
                  struct image *out)
{
    struct raw r;
    int        rc;

    memset(out, 0, sizeof(*out));
    if ((rc = raw_decode(buf, len, name, &r)) != 0)
        return rc;
    rc = as_mask ? raw_to_mask(&r, name, out) : raw_to_rgb(&r, name, out);
    raw_free(&r);
    return rc;
}

int image_decode_rgb(const void *buf, size_t len, const char *name, struct image *out)
{
    return decode(buf, len, name, false, out);
}

int image_decode_mask(const void *buf, size_t len, const char *name, struct image *out)
{
    return decode(buf, len, name, true, out);
}

// ---------------------------------------------------------------------------
// files

/* Read a whole file into a malloc'ed buffer: a regular file of at most
 * IMAGE_MAX_FILE_BYTES, opened without blocking (fileio.h: /dev/zero or a FIFO
 * is refused, not read). Returns 0 or S3D_EIO / S3D_EINVAL / S3D_ENOMEM. */
static int slurp(const char *path, uint8_t **buf, size_t *len)
{
    char        why[200];
    uint64_t    n = 0;
    uint8_t    *b = NULL;
    size_t      got = 0;
    int         fd = file_open_read(AT_FDCWD, path, 0, IMAGE_MAX_FILE_BYTES, &n, why,
                                    sizeof(why));

    *buf = NULL;
    *len = 0;
    if (fd < 0) {
        log_error("%s: %s (HINT: give the path of a PNG or JPEG file%s)", path, why,
                  errno == EFBIG ? " of at most 1 GiB" : "");
        return errno == ENOENT || errno == EACCES ? S3D_EIO : S3D_EINVAL;
    }
    b = malloc(n > 0 ? (size_t)n : 1);
    if (!b) {
        close(fd);
        return S3D_ENOMEM;
    }
    while (got < n) {
        ssize_t r = read(fd, b + got, (size_t)n - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            log_error("%s: short read", path);
            free(b);
            close(fd);
            return S3D_EIO;
        }
        got += (size_t)r;
    }
    close(fd);
    *buf = b;
    *len = (size_t)n;
    return 0;
}

/* Read path and decode it as RGB or as a mask. */
static int load(const char *path, bool as_mask, struct image *out)
{
    uint8_t *buf;
    size_t   len;
    int      rc;

    memset(out, 0, sizeof(*out));
    if ((rc = slurp(path, &buf, &len)) != 0)
        return rc;
    rc = decode(buf, len, path, as_mask, out);
    free(buf);
    return rc;
}

int image_load_rgb(const char *path, struct image *out)
{
    return load(path, false, out);
}

int64_t image_count_nonzero(const struct image *mask)
{
    int64_t n = 0;
    size_t  total = (size_t)mask->w * mask->h * mask->c;

    for (size_t i = 0; i < total; i++)
        n += mask->data[i] != 0;
    return n;
}

int image_read_mask(const char *path, struct image *out)
{
    return load(path, true, out);
}

int image_load_mask(const char *path, int expect_w, int expect_h, struct image *out)
{
    int rc = load(path, true, out);

    return rc != 0 ? rc : image_check_mask(path, expect_w, expect_h, out);
}

/* The first nonzero sample of mask, or -1. */
static int64_t first_nonzero(const struct image *mask)
{
    size_t total = (size_t)mask->w * mask->h * mask->c;

    for (size_t i = 0; i < total; i++)
        if (mask->data[i])
            return (int64_t)i;
    return -1;
}

int image_check_mask(const char *path, int expect_w, int expect_h, struct image *out)
{
    if (expect_w > 0 && (out->w != expect_w || out->h != expect_h)) {
        log_error("%s: mask is %dx%d but the image is %dx%d (HINT: the mask must have the "
                  "image's exact size)", path, out->w, out->h, expect_w, expect_h);
        image_free(out);
        return S3D_ESHAPE;
    }
    if (first_nonzero(out) < 0) {
        log_error("%s: mask is empty, no pixel is marked as the object (HINT: nonzero pixels "
                  "of the last channel mark the object)", path);
        image_free(out);
        return S3D_EINVAL;
    }
    return 0;
}

void image_free(struct image *img)
{
    if (!img)
        return;
    free(img->data);
    memset(img, 0, sizeof(*img));
}

// ---------------------------------------------------------------------------
// PNG writer

/* growing output buffer of image_encode_png */
struct png_sink {
    uint8_t *p;
    size_t   n, cap;
};

static void png_write_mem(png_structp png, png_bytep data, png_size_t n)
{
    struct png_sink *s = png_get_io_ptr(png);

    if (n > s->cap - s->n) {
        size_t cap = s->cap ? s->cap : 1 << 16;
        uint8_t *p;

        while (cap - s->n < n)
            cap *= 2;
        p = realloc(s->p, cap);
        if (!p)
            png_error(png, "out of memory");
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->n, data, n);
    s->n += n;
}

static void png_flush_mem(png_structp png)
{
    (void)png;
}

int image_encode_png(const struct image *img, uint8_t **out, size_t *len)
{
    static const int ctype[5] = {-1, PNG_COLOR_TYPE_GRAY, -1, PNG_COLOR_TYPE_RGB,
                                 PNG_COLOR_TYPE_RGB_ALPHA};
    struct png_sink *sink = calloc(1, sizeof(*sink));   /* on the heap: survives longjmp */
    png_structp  png;
    png_infop    info = NULL;
    struct png_src err = {.name = "PNG encoder"};
    volatile int rc = S3D_ENOMEM;

    ASSERT(img->c == 1 || img->c == 3 || img->c == 4);
    ASSERT(img->w > 0 && img->h > 0 && img->data);
    *out = NULL;
    *len = 0;
    png = sink ? png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, png_on_error,
                                         png_on_warning) : NULL;
    if (!png) {
        free(sink);
        log_error("cannot encode a %dx%d PNG: out of memory", img->w, img->h);
        return S3D_ENOMEM;
    }
    info = png_create_info_struct(png);
    if (!info)
        goto out_destroy;
    if (setjmp(png_jmpbuf(png))) {
        log_error("cannot encode a %dx%d PNG: %s", img->w, img->h, err.msg);
        goto out_destroy;
    }
    png_set_write_fn(png, sink, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, (png_uint_32)img->w, (png_uint_32)img->h, 8, ctype[img->c],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < img->h; y++)
        png_write_row(png, img->data + (size_t)y * img->w * img->c);
    png_write_end(png, NULL);
    rc = 0;
out_destroy:
    png_destroy_write_struct(&png, info ? &info : NULL);
    if (rc == 0) {
        *out = sink->p;
        *len = sink->n;
    } else {
        free(sink->p);
    }
    free(sink);
    return rc;
}

int image_write_png(const char *path, const struct image *img)
{
    uint8_t *buf;
    size_t len;
    FILE *f;
    int rc = image_encode_png(img, &buf, &len);

    if (rc)
        return rc;
    f = fopen(path, "wb");
    if (!f) {
        log_error("%s: cannot create file (HINT: check the directory exists and is writable)",
                  path);
        free(buf);
        return S3D_EIO;
    }
    if (fwrite(buf, 1, len, f) != len)
        rc = S3D_EIO;
    if (fclose(f) != 0)
        rc = S3D_EIO;
    if (rc)
        log_error("%s: write failed (disk full?)", path);
    free(buf);
    return rc;
}
