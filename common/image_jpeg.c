/*
 * image_jpeg.c - JPEG decoding with libjpeg-turbo from memory, as Pillow decodes
 * (islow IDCT, fancy upsampling; RGB, gray or CMYK out), into image.c's raw
 * picture; a large baseline JPEG in horizontal stripes on several threads
 * (image_set_jpeg_stripes in image.h). Errors come back through longjmp into
 * the decoder, never exit(). Test: tests/test_image.c.
 */
#include "image.h"
#include "image_raw.h"

#include "dtype.h"
#include "err.h"
#include "log.h"
#include "par.h"

#include <math.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>          /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

struct jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf               jb;
    int                   truncated;   /* libjpeg hit the end of the data */
};

static void jpeg_on_error(j_common_ptr cinfo)
{
    struct jpeg_err *e = (struct jpeg_err *)cinfo->err;

    longjmp(e->jb, 1);
}

/* Warnings: remember premature end of data (PIL raises "image file is truncated"
 * there); other corruption warnings are ignored, as PIL ignores them. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    struct jpeg_err *e = (struct jpeg_err *)cinfo->err;

    if (level < 0 && e->pub.msg_code == JWRN_JPEG_EOF)
        e->truncated = 1;
}

/* Stripes for large single-scan JPEGs (image_set_jpeg_stripes): 0 = by the
 * thread count, above JPEG_STRIPE_MIN_PIXELS; n >= 1 = at most n, any size. */
static int jpeg_stripes_max;
static _Thread_local int jpeg_stripes_last;

#define JPEG_STRIPE_MIN_PIXELS (1 << 20)
#define JPEG_STRIPE_LIMIT      16
/* The share of a baseline decode that is entropy decoding, which a stripe pays
 * for every row above it: ~0.2 for the 6000x4500 q92 bench JPEGs (0.14-0.30
 * over the subsamplings), more for noisy photos. The stripe cuts below balance
 * for it; a different true share costs little (tools: a 16-stripe split for
 * 0.2 runs a 0.3 file in 0.305 of the one-decoder time, against 0.301 at best). */
#define JPEG_ENTROPY_SHARE     0.2

void image_set_jpeg_stripes(int n)
{
    jpeg_stripes_max = n < 0 ? 0 : n;
}

int image_last_jpeg_stripes(void)
{
    return jpeg_stripes_last;
}

/* Open a decoder on buf with the settings every JPEG decode here uses (Pillow's:
 * islow IDCT, fancy upsampling; RGB or gray out) and start it. Errors longjmp to
 * e->jb, which the caller has set. */
static void jpeg_begin(struct jpeg_decompress_struct *c, struct jpeg_err *e, const uint8_t *buf,
                       size_t len)
{
    c->err = jpeg_std_error(&e->pub);
    e->pub.error_exit = jpeg_on_error;
    e->pub.emit_message = jpeg_on_message;
    jpeg_create_decompress(c);
    jpeg_mem_src(c, buf, (unsigned long)len);
    jpeg_save_markers(c, JPEG_APP0 + 14, 0xffff);       /* keep Adobe for saw_Adobe_marker */
    jpeg_read_header(c, TRUE);
}

/* Decode rows [y0, y1) of the started decoder c into pix (w * nc bytes a row),
 * one row a call (as one decoder reads the whole image: libjpeg-turbo's skip is
 * only used from row 0 to an iMCU-row boundary, where it is exact). */
static void jpeg_rows(struct jpeg_decompress_struct *c, uint8_t *pix, size_t row_bytes, int y0,
                      int y1)
{
    if (y0 > 0)
        jpeg_skip_scanlines(c, (JDIMENSION)y0);
    while ((int)c->output_scanline < y1) {
        JSAMPROW row = pix + (size_t)c->output_scanline * row_bytes;

        jpeg_read_scanlines(c, &row, 1);
    }
}

/* One stripe: its own decoder over the whole buffer, entropy-decoding the rows
 * above y0 without reconstructing them (jpeg_skip_scanlines), then decoding
 * [y0, y1). rc 0, or 1 with msg set (an error, or the data ended early). */
struct jpeg_stripe {
    const uint8_t *buf;
    size_t         len;
    uint8_t       *pix;
    size_t         row_bytes;
    J_COLOR_SPACE  out_space;
    int            y0, y1;
    int            rc;
    int            truncated;
    char           msg[JMSG_LENGTH_MAX];
};

static void jpeg_stripe_one(struct jpeg_stripe *st)
{
    struct jpeg_decompress_struct c;
    struct jpeg_err               e;

    memset(&e, 0, sizeof(e));
    st->rc = 1;
    if (setjmp(e.jb)) {
        (*c.err->format_message)((j_common_ptr)&c, st->msg);
        jpeg_destroy_decompress(&c);
        return;
    }
    jpeg_begin(&c, &e, st->buf, st->len);
    c.out_color_space = st->out_space;
    c.dct_method = JDCT_ISLOW;
    c.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&c);
    jpeg_rows(&c, st->pix, st->row_bytes, st->y0, st->y1);
    st->truncated = e.truncated;
    /* the last stripe reads on to the end of the file as one decoder's finish does (a
     * marker there that it refuses fails the decode alike); the others are not
     * finished: the rows below them are another's */
    if (!st->truncated && st->y1 == (int)c.output_height)
        jpeg_finish_decompress(&c);
    st->rc = 0;
    jpeg_destroy_decompress(&c);
}

static void jpeg_stripe_run(void *arg, int k, int64_t s0, int64_t s1)
{
    (void)k;
    for (int64_t s = s0; s < s1; s++)
        jpeg_stripe_one((struct jpeg_stripe *)arg + s);
}

/* The stripes for the started decoder c: 0 (decode it whole) unless it is one
 * scan, Huffman-coded, of YCbCr/RGB/gray with sampling factors of 1 or 2, large
 * enough and more than one thread is allowed. Else fills y[0..n] with the row
 * cuts (multiples of the iMCU row height, y[0] = 0, y[n] = height) and returns n. */
static int jpeg_stripe_cuts(const struct jpeg_decompress_struct *c, int y[JPEG_STRIPE_LIMIT + 1])
{
    int n = jpeg_stripes_max ? jpeg_stripes_max : dtype_threads();
    int H = (int)c->output_height, imcu = c->max_v_samp_factor * DCTSIZE;

    if (jpeg_has_multiple_scans((j_decompress_ptr)c) || c->arith_code ||
        (jpeg_stripes_max == 0 && (int64_t)c->output_width * H < JPEG_STRIPE_MIN_PIXELS) ||
        (c->jpeg_color_space != JCS_YCbCr && c->jpeg_color_space != JCS_RGB &&
         c->jpeg_color_space != JCS_GRAYSCALE))
        return 0;
    for (int i = 0; i < c->num_components; i++)
        if (c->comp_info[i].h_samp_factor > 2 || c->comp_info[i].v_samp_factor > 2)
            return 0;
    if (n > JPEG_STRIPE_LIMIT)
        n = JPEG_STRIPE_LIMIT;
    if (n > H / imcu)
        n = H / imcu;                      /* every stripe at least one iMCU row */
    if (n < 2)
        return 0;
    /* stripe k spends share * y[k] + (y[k+1] - y[k]) of the whole decode; equal for
     * every k when y[k+1] = y[k] (1 - share) + tau */
    double share = JPEG_ENTROPY_SHARE, tau = share / (1.0 - pow(1.0 - share, n)), f = 0;
    int    m = 0;

    y[0] = 0;
    for (int k = 1; k < n; k++) {
        f = f * (1.0 - share) + tau;
        int cut = (int)(f * H) / imcu * imcu;
        if (cut > y[m] && cut < H)
            y[++m] = cut;
    }
    y[++m] = H;
    return m >= 2 ? m : 0;
}

/* Decode the scan of the started decoder c into pix: whole, or (jpeg_stripe_cuts)
 * in stripes on as many threads, the same bytes. Returns 0, or 1 with the
 * failing stripe's message in msg (the first stripe that failed: the rows above
 * an error are every later stripe's too, so this is where one decoder fails). */
static int jpeg_scan(struct jpeg_decompress_struct *c, struct jpeg_err *e, const uint8_t *buf,
                     size_t len, uint8_t *pix, size_t row_bytes, char *msg)
{
    int                y[JPEG_STRIPE_LIMIT + 1];
    int                n = jpeg_stripe_cuts(c, y);
    struct jpeg_stripe st[JPEG_STRIPE_LIMIT];

    jpeg_stripes_last = n;
    if (n == 0) {
        jpeg_rows(c, pix, row_bytes, 0, (int)c->output_height);
        return 0;
    }
    for (int k = 0; k < n; k++)
        st[k] = (struct jpeg_stripe){buf, len, pix, row_bytes, c->out_color_space,
                                     y[k], y[k + 1], 1, 0, ""};
    par_for(n, 1, n, jpeg_stripe_run, st);
    for (int k = 0; k < n; k++) {
        if (st[k].rc) {
            memcpy(msg, st[k].msg, JMSG_LENGTH_MAX);
            return 1;
        }
        e->truncated |= st[k].truncated;
    }
    return 0;                            /* c read no scan data: destroyed unfinished */
}

int image_jpeg_decode(const uint8_t *buf, size_t len, const char *name, struct raw *r)
{
    struct jpeg_decompress_struct cinfo;
    struct jpeg_err               jerr;
    volatile int                  rc = S3D_EFORMAT;
    uint8_t *volatile             pix = NULL;
    volatile int                  adobe_inverted = 0;
    char                          msg[JMSG_LENGTH_MAX];

    memset(r, 0, sizeof(*r));
    memset(&jerr, 0, sizeof(jerr));
    jpeg_stripes_last = 0;
    if (setjmp(jerr.jb)) {
        (*cinfo.err->format_message)((j_common_ptr)&cinfo, msg);
        log_error("%s: corrupt JPEG: %s (HINT: re-export the file)", name, msg);
        goto out_destroy;
    }
    jpeg_begin(&cinfo, &jerr, buf, len);
    if ((rc = image_check_size(name, cinfo.image_width, cinfo.image_height)) != 0)
        goto out_destroy;
    rc = S3D_EFORMAT;
    r->w = (int)cinfo.image_width;
    r->h = (int)cinfo.image_height;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo.out_color_space = JCS_GRAYSCALE;
        r->mode = RAW_L;
        r->nc = 1;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo.out_color_space = JCS_RGB;
        r->mode = RAW_RGB;
        r->nc = 3;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo.out_color_space = JCS_CMYK;
        r->mode = RAW_CMYK;
        r->nc = 4;
        adobe_inverted = cinfo.saw_Adobe_marker;   /* Pillow: rawmode "CMYK;I" */
        break;
    default:
        log_error("%s: unsupported JPEG colour space %d (HINT: convert the image to RGB)",
                  name, (int)cinfo.jpeg_color_space);
        goto out_destroy;
    }
    cinfo.dct_method = JDCT_ISLOW;                 /* Pillow's defaults */
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&cinfo);
    if ((int)cinfo.output_components != r->nc) {
        log_error("%s: JPEG decodes to %d components, expected %d", name,
                  cinfo.output_components, r->nc);
        goto out_destroy;
    }
    pix = malloc((size_t)r->w * r->h * r->nc);
    if (!pix) {
        log_error("%s: out of memory for a %dx%d image", name, r->w, r->h);
        rc = S3D_ENOMEM;
        goto out_destroy;
    }
    if (jpeg_scan(&cinfo, &jerr, buf, len, pix, (size_t)r->w * r->nc, msg)) {
        log_error("%s: corrupt JPEG: %s (HINT: re-export the file)", name, msg);
        goto out_destroy;
    }
    if (jerr.truncated) {
        log_error("%s: JPEG data is truncated (HINT: the file is incomplete; re-download it)",
                  name);
        goto out_destroy;
    }
    if (cinfo.output_scanline == cinfo.output_height)
        jpeg_finish_decompress(&cinfo);   /* one decoder; stripes: their decoders are gone */
    if (adobe_inverted) {
        for (size_t i = 0; i < (size_t)r->w * r->h * 4; i++)
            pix[i] = (uint8_t)(255 - pix[i]);
    }
    r->px = pix;
    pix = NULL;
    rc = 0;
out_destroy:
    jpeg_destroy_decompress(&cinfo);
    free(pix);
    return rc;
}
