/*
 * test_image.c - PNG/JPEG decoding against PIL, mask rules of the reference's
 * load_mask, error paths (truncated PNG, corrupt JPEG, wrong-size and empty
 * masks, unsupported files), a 6000x4500 image, and the PNG writer.
 *
 * Fixtures: tests/fixtures/images/ from tools/ref/make_image_fixtures.py
 * (manifest.txt; <stem>.rgb and <stem>.mask hold PIL's pixels). The real
 * example images are checked by CRC-32 of PIL's pixels (examples.txt) when
 * present under examples/ (or $S3D_EXAMPLES, a folder laid out like it: examples/README.md);
 * entries whose file is absent are counted and skipped.
 */
#include "err.h"
#include "harness.h"
#include "image.h"
#include "log.h"

#include <stdio.h>          /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#define FIX "tests/fixtures/images"

static uint32_t crc32_bytes(const uint8_t *p, size_t n)
{
    static uint32_t table[256];
    uint32_t        c = 0xffffffffu;

    if (!table[1]) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t v = i;

            for (int k = 0; k < 8; k++)
                v = (v & 1) ? 0xedb88320u ^ (v >> 1) : v >> 1;
            table[i] = v;
        }
    }
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* Count bytes that differ; print the first one. */
static size_t diff_bytes(const char *what, const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t bad = 0;

    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            if (!bad)
                printf("  %s: first difference at byte %zu: got %u want %u\n", what, i, a[i],
                       b[i]);
            bad++;
        }
    }
    return bad;
}

static void test_fixtures(void)
{
    FILE *f = fopen(FIX "/manifest.txt", "r");
    char  name[128], mode[16];
    int   w, h, n = 0;

    CHECK(f != NULL, "missing " FIX "/manifest.txt");
    if (!f)
        return;
    while (fscanf(f, "%127s %d %d %15s", name, &w, &h, mode) == 4) {
        char          path[256], stem[128], ref_path[256];
        struct image  img, mask;
        uint8_t      *ref_rgb, *ref_mask;
        size_t        len_rgb = 0, len_mask = 0, bad_rgb = 0, bad_mask = 0;
        int           rc1, rc2;

        snprintf(stem, sizeof(stem), "%.*s", (int)(strrchr(name, '.') - name), name);
        snprintf(path, sizeof(path), FIX "/%s", name);
        snprintf(ref_path, sizeof(ref_path), FIX "/%s.rgb", stem);
        ref_rgb = read_file(ref_path, &len_rgb);
        snprintf(ref_path, sizeof(ref_path), FIX "/%s.mask", stem);
        ref_mask = read_file(ref_path, &len_mask);
        CHECK(ref_rgb && len_rgb == (size_t)w * h * 3, "%s.rgb", stem);
        CHECK(ref_mask && len_mask == (size_t)w * h, "%s.mask", stem);

        rc1 = image_load_rgb(path, &img);
        rc2 = image_load_mask(path, w, h, &mask);
        CHECK(rc1 == 0 && img.w == w && img.h == h && img.c == 3, "%s rgb rc %d", name, rc1);
        CHECK(rc2 == 0 && mask.w == w && mask.h == h && mask.c == 1, "%s mask rc %d", name, rc2);
        if (rc1 == 0 && ref_rgb && len_rgb == (size_t)w * h * 3)
            bad_rgb = diff_bytes(name, img.data, ref_rgb, len_rgb);
        if (rc2 == 0 && ref_mask && len_mask == (size_t)w * h)
            bad_mask = diff_bytes(name, mask.data, ref_mask, len_mask);
        printf("%-28s %-5s %dx%d  rgb %s  mask %s\n", name, mode, w, h,
               rc1 ? "ERR" : bad_rgb ? "DIFF" : "equal", rc2 ? "ERR" : bad_mask ? "DIFF" : "equal");
        CHECK(bad_rgb == 0, "%s: %zu rgb bytes differ from PIL", name, bad_rgb);
        CHECK(bad_mask == 0, "%s: %zu mask bytes differ from load_mask", name, bad_mask);
        image_free(&img);
        image_free(&mask);
        free(ref_rgb);
        free(ref_mask);
        n++;
    }
    fclose(f);
    CHECK(n >= 20, "only %d fixtures listed", n);
}

static void test_examples(void)
{
    const char *dir = getenv("S3D_EXAMPLES") ? getenv("S3D_EXAMPLES") : "examples";
    FILE       *f = fopen(FIX "/examples.txt", "r");
    char        rel[256], kind[8];
    int         w, h, absent = 0;
    unsigned    want;

    CHECK(f != NULL, "missing " FIX "/examples.txt");
    if (!f)
        return;
    if (access(dir, R_OK) != 0) {
        printf("examples: %s not found, real-image checks not run (set S3D_EXAMPLES)\n", dir);
        fclose(f);
        return;
    }
    while (fscanf(f, "%255s %7s %d %d %x", rel, kind, &w, &h, &want) == 5) {
        char         path[512];
        struct image img;
        int          rc;
        uint32_t     got = 0;

        snprintf(path, sizeof(path), "%s/%s", dir, rel);
        if (access(path, R_OK) != 0) {
            absent++;
            continue;
        }
        if (strcmp(kind, "rgb") == 0)
            rc = image_load_rgb(path, &img);
        else
            rc = image_load_mask(path, w, h, &img);
        if (rc == 0)
            got = crc32_bytes(img.data, (size_t)img.w * img.h * img.c);
        printf("example %-24s %-4s %dx%d crc %08x (PIL %08x) %s\n", rel, kind, img.w, img.h, got,
               want, rc == 0 && got == want ? "equal" : "DIFFERENT");
        CHECK(rc == 0 && img.w == w && img.h == h && got == want, "%s", rel);
        image_free(&img);
    }
    if (absent)
        printf("examples: %d listed images not under %s, not checked (S3D_EXAMPLES)\n", absent, dir);
    fclose(f);
}

/* Decoding a damaged copy of a fixture must fail with code want. */
static void expect_decode_error(const char *label, const uint8_t *buf, size_t len, int want)
{
    struct image img;
    int          rc1 = image_decode_rgb(buf, len, label, &img);
    int          rc2 = image_decode_mask(buf, len, label, &img);

    printf("error case %-34s rc %s / %s\n", label, s3d_strerror(rc1), s3d_strerror(rc2));
    CHECK(rc1 == want && rc2 == want, "%s: got %d %d want %d", label, rc1, rc2, want);
    CHECK(img.data == NULL && img.w == 0, "%s: output not cleared", label);
}

static void test_errors(void)
{
    size_t       plen = 0, jlen = 0;
    uint8_t     *png = read_file(FIX "/rgb8.png", &plen);
    uint8_t     *jpg = read_file(FIX "/jpeg_420.jpg", &jlen);
    uint8_t     *tmp;
    struct image img;
    const char  *junk = "GIF89a not a supported format";

    CHECK(png && jpg, "fixtures missing");
    if (!png || !jpg)
        goto out;
    tmp = malloc(plen > jlen ? plen : jlen);

    expect_decode_error("empty buffer", png, 0, S3D_EFORMAT);
    expect_decode_error("gif magic", (const uint8_t *)junk, strlen(junk), S3D_EFORMAT);
    expect_decode_error("png signature only", png, 8, S3D_EFORMAT);
    expect_decode_error("png cut inside IHDR", png, 20, S3D_EFORMAT);
    expect_decode_error("png cut inside IDAT", png, plen / 2, S3D_EFORMAT);
    expect_decode_error("png cut before IEND", png, plen - 20, S3D_EFORMAT);
    memcpy(tmp, png, plen);
    tmp[29] ^= 0x55;                                  /* IHDR CRC */
    expect_decode_error("png bad IHDR crc", tmp, plen, S3D_EFORMAT);
    memcpy(tmp, png, plen);
    tmp[16] = 0x7f;                                   /* width 2^31-ish */
    expect_decode_error("png absurd width", tmp, plen, S3D_EFORMAT);

    expect_decode_error("jpeg magic only", jpg, 3, S3D_EFORMAT);
    expect_decode_error("jpeg cut in header", jpg, 100, S3D_EFORMAT);
    expect_decode_error("jpeg cut in scan data", jpg, jlen * 3 / 4, S3D_EFORMAT);
    memcpy(tmp, jpg, jlen);
    for (size_t i = 2; i + 1 < jlen; i++) {           /* SOF0 precision 8 -> 3 */
        if (tmp[i] == 0xff && tmp[i + 1] == 0xc0) {
            tmp[i + 4] = 3;
            break;
        }
    }
    expect_decode_error("jpeg bad SOF precision", tmp, jlen, S3D_EFORMAT);
    memcpy(tmp, jpg, jlen);
    for (size_t i = 2; i + 5 < jlen; i++) {           /* SOS names a component that is absent */
        if (tmp[i] == 0xff && tmp[i + 1] == 0xda) {
            tmp[i + 5] = 0x77;
            break;
        }
    }
    expect_decode_error("jpeg bad SOS component", tmp, jlen, S3D_EFORMAT);

    CHECK(image_load_rgb("tests/fixtures/images/does-not-exist.png", &img) == S3D_EIO);
    CHECK(image_load_rgb("tests/fixtures/images", &img) != 0, "a directory is not an image");
    /* issue 15, finding 8: a device or a FIFO is refused, never read */
    CHECK(image_load_rgb("/dev/zero", &img) == S3D_EINVAL, "/dev/zero is not an image");
    {
        char dir[] = "/tmp/s3d-img-fifo-XXXXXX", fifo[64];

        if (mkdtemp(dir)) {
            snprintf(fifo, sizeof(fifo), "%s/image.png", dir);
            CHECK(mkfifo(fifo, 0600) == 0);
            alarm(20);
            CHECK(image_load_mask(fifo, 0, 0, &img) == S3D_EINVAL, "a FIFO is not a mask");
            alarm(0);
            unlink(fifo);
            rmdir(dir);
        }
    }
    CHECK(image_load_mask(FIX "/rgba8.png", 36, 23, &img) == S3D_ESHAPE, "wrong width");
    CHECK(image_load_mask(FIX "/rgba8.png", 37, 24, &img) == S3D_ESHAPE, "wrong height");
    CHECK(img.data == NULL);
    CHECK(image_load_mask(FIX "/rgba8.png", 0, 0, &img) == 0, "size check skipped");
    image_free(&img);
    image_free(&img);                                 /* idempotent */
    image_free(NULL);
    free(tmp);
out:
    free(png);
    free(jpg);
}

static void test_writer_and_empty_mask(void)
{
    char         path[64];
    struct image src = {.w = 5, .h = 3}, back, m;
    uint8_t      px[5 * 3 * 4];

    snprintf(path, sizeof(path), "/tmp/s3d_test_image_%d.png", (int)getpid());
    for (int c = 1; c <= 4; c++) {
        if (c == 2)
            continue;
        for (size_t i = 0; i < sizeof(px); i++)
            px[i] = (uint8_t)(i * 37 % 251);
        src.c = c;
        src.data = px;
        CHECK(image_write_png(path, &src) == 0, "write c=%d", c);
        CHECK(image_load_rgb(path, &back) == 0 && back.w == 5 && back.h == 3, "read c=%d", c);
        CHECK(image_load_mask(path, 5, 3, &m) == 0, "mask c=%d", c);
        for (int i = 0; back.data && m.data && i < 15; i++) {
            const uint8_t *p = px + i * c;

            CHECK(back.data[3 * i] == p[0] && back.data[3 * i + 1] == p[c >= 3 ? 1 : 0] &&
                  back.data[3 * i + 2] == p[c >= 3 ? 2 : 0], "pixel %d c=%d", i, c);
            CHECK(m.data[i] == (p[c - 1] != 0), "mask pixel %d c=%d", i, c);
        }
        image_free(&back);
        image_free(&m);
    }
    memset(px, 0, sizeof(px));
    src.c = 1;
    CHECK(image_write_png(path, &src) == 0);
    CHECK(image_load_mask(path, 5, 3, &m) == S3D_EINVAL, "empty mask must be refused");
    CHECK(image_load_rgb(path, &back) == 0, "an all-black image is fine");
    image_free(&back);
    unlink(path);
    CHECK(image_write_png("/nonexistent-dir/x.png", &src) == S3D_EIO);
}

/* 6000x4500 RGB written with libpng here, then loaded (never committed). */
static void test_large(void)
{
    enum { W = 6000, H = 4500 };
    char         path[64];
    struct image src = {.w = W, .h = H, .c = 3}, back, m;
    bool         ok = true;

    snprintf(path, sizeof(path), "/tmp/s3d_test_large_%d.png", (int)getpid());
    src.data = malloc((size_t)W * H * 3);
    CHECK(src.data != NULL);
    if (!src.data)
        return;
    for (size_t y = 0; y < H; y++)
        for (size_t x = 0; x < W; x++) {
            uint8_t *p = src.data + (y * W + x) * 3;

            p[0] = (uint8_t)x;
            p[1] = (uint8_t)y;
            p[2] = (uint8_t)((x / 64 + y / 64) & 1);  /* blue 0/1: the mask channel */
        }
    CHECK(image_write_png(path, &src) == 0);
    CHECK(image_load_rgb(path, &back) == 0 && back.w == W && back.h == H);
    CHECK(image_load_mask(path, W, H, &m) == 0);
    if (back.data && m.data) {
        ok = memcmp(back.data, src.data, (size_t)W * H * 3) == 0;
        for (size_t i = 0; ok && i < (size_t)W * H; i++)
            ok = m.data[i] == src.data[3 * i + 2];
    }
    printf("large %dx%d png: rgb and mask %s\n", W, H, ok ? "equal" : "DIFFERENT");
    CHECK(ok);
    image_free(&back);
    image_free(&m);
    free(src.data);
    unlink(path);
}

/* A textured w x h picture (gradients, edges and noise, so that every DCT
 * coefficient band and the entropy coder are exercised) encoded here by
 * libjpeg: gray, or YCbCr with the luma sampled (hs, vs) against chroma 1x1,
 * or RGB stored as RGB; restart every `restart` MCU rows (0: none). *len set. */
static uint8_t *encode_jpeg(int w, int h, int gray, int rgb, int hs, int vs, int restart,
                            int progressive, size_t *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr       e;
    unsigned char              *out = NULL;
    unsigned long               n = 0;
    int                         nc = gray ? 1 : 3;
    uint8_t                    *row = malloc((size_t)w * nc);
    uint32_t                    seed = 12345u + (uint32_t)(w * 31 + h);

    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, &n);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = nc;
    c.in_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    if (rgb)
        jpeg_set_colorspace(&c, JCS_RGB);
    if (!gray && !rgb) {
        c.comp_info[0].h_samp_factor = hs;
        c.comp_info[0].v_samp_factor = vs;
    }
    c.restart_in_rows = restart;
    if (progressive)
        jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        int y = (int)c.next_scanline;

        for (int x = 0; x < w; x++)
            for (int k = 0; k < nc; k++) {
                seed = seed * 1664525u + 1013904223u;
                int v = (x * (k + 1) + y * (3 - k)) / 3 + ((x / 17 + y / 13) & 1) * 60 +
                        (int)(seed >> 27);
                row[x * nc + k] = (uint8_t)(v & 255);
            }
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    *len = n;
    return out;
}

/* Decode buf with at most `stripes` stripes (1: one decoder); rc, *used the
 * stripes the decode used. */
static int decode_striped(const uint8_t *buf, size_t len, int stripes, struct image *img,
                          int *used)
{
    image_set_jpeg_stripes(stripes);
    int rc = image_decode_rgb(buf, len, "striped", img);

    *used = image_last_jpeg_stripes();
    image_set_jpeg_stripes(0);
    return rc;
}

/* The striped JPEG decode (image_set_jpeg_stripes) gives one decoder's bytes
 * for every layout it takes (luma 1x1, 2x1, 2x2, 1x2; gray; RGB stored as RGB;
 * restart markers; sizes that are not whole MCUs), refuses the ones it does
 * not take (progressive, 4x1 luma: one decoder), and fails like one decoder on
 * truncated and damaged data and on a marker it refuses after the scan (the
 * last stripe reads on to the end as one decoder's finish does). */
static void test_jpeg_stripes(void)
{
    static const struct { int w, h, gray, rgb, hs, vs, restart, prog, striped; } cases[] = {
        {640, 480, 0, 0, 2, 2, 0, 0, 1},  {257, 131, 0, 0, 2, 2, 0, 0, 1},
        {333, 250, 0, 0, 1, 1, 0, 0, 1},  {301, 199, 0, 0, 2, 1, 0, 0, 1},
        {300, 203, 0, 0, 1, 2, 0, 0, 1},  {411, 173, 1, 0, 1, 1, 0, 0, 1},
        {280, 190, 0, 1, 1, 1, 0, 0, 1},  {517, 389, 0, 0, 2, 2, 2, 0, 1},
        {1000, 33, 0, 0, 2, 2, 0, 0, 1},  {64, 40, 0, 0, 2, 2, 0, 0, 1},
        {320, 240, 0, 0, 2, 2, 0, 1, 0},  {320, 240, 0, 0, 4, 1, 0, 0, 0},
        {64, 16, 0, 0, 2, 2, 0, 0, 0},
    };
    static const int tries[] = {2, 3, 7, 16};

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t       len = 0;
        uint8_t     *jpg = encode_jpeg(cases[i].w, cases[i].h, cases[i].gray, cases[i].rgb,
                                       cases[i].hs, cases[i].vs, cases[i].restart,
                                       cases[i].prog, &len);
        struct image one, many;
        int          used = 0, most = 0;
        bool         same = true;

        CHECK(decode_striped(jpg, len, 1, &one, &used) == 0 && used == 0, "case %zu", i);
        for (size_t t = 0; t < sizeof(tries) / sizeof(tries[0]); t++) {
            if (decode_striped(jpg, len, tries[t], &many, &used) != 0 || !one.data) {
                same = false;
                continue;
            }
            most = used > most ? used : most;
            same = same && many.w == one.w && many.h == one.h &&
                   memcmp(many.data, one.data, (size_t)one.w * one.h * 3) == 0;
            image_free(&many);
        }
        printf("jpeg stripes %4dx%-4d %s luma %dx%d restart %d%s: up to %d stripes, %s\n",
               cases[i].w, cases[i].h, cases[i].gray ? "gray " : cases[i].rgb ? "rgb  " : "ycbcr",
               cases[i].hs, cases[i].vs, cases[i].restart, cases[i].prog ? " progressive" : "",
               most, same ? "same bytes" : "DIFFERENT");
        CHECK(same, "case %zu: striped decode differs from one decoder", i);
        CHECK(cases[i].striped ? most >= 2 : most == 0, "case %zu: %d stripes", i, most);

        if (i == 0 || i == 7) {                       /* damaged copies: same rc, same bytes */
            uint8_t *bad = malloc(len);
            int      rc1, rc2;

            for (int cut = 1; cut <= 3; cut++) {      /* truncated: refused either way */
                rc1 = decode_striped(jpg, len * cut / 4, 1, &many, &used);
                image_free(&many);
                rc2 = decode_striped(jpg, len * cut / 4, 16, &many, &used);
                image_free(&many);
                CHECK(rc1 == S3D_EFORMAT && rc2 == S3D_EFORMAT, "cut %d/4: %d %d", cut, rc1, rc2);
            }
            for (int flip = 1; flip <= 9; flip++) {   /* flipped bytes in the scan */
                struct image a, b;

                memcpy(bad, jpg, len);
                bad[len - len * (size_t)flip / 12] ^= 0x5a;
                rc1 = decode_striped(bad, len, 1, &a, &used);
                rc2 = decode_striped(bad, len, 16, &b, &used);
                CHECK(rc1 == rc2 && (rc1 != 0 || (a.w == b.w && a.h == b.h &&
                      memcmp(a.data, b.data, (size_t)a.w * a.h * 3) == 0)),
                      "case %zu flip %d: rc %d / %d or different bytes", i, flip, rc1, rc2);
                image_free(&a);
                image_free(&b);
            }
            /* a second SOF after the scan, where one decoder's finish reads: refused alike */
            size_t sof = 0;
            for (size_t k = 2; k + 3 < len && !sof; k++)
                if (jpg[k] == 0xff && jpg[k + 1] == 0xc0)
                    sof = k;
            size_t seg = sof ? 2 + ((size_t)jpg[sof + 2] << 8 | jpg[sof + 3]) : 0;
            uint8_t *two = malloc(len + seg);
            memcpy(two, jpg, len - 2);                /* all but EOI */
            memcpy(two + len - 2, jpg + sof, seg);
            two[len - 2 + seg] = 0xff;
            two[len - 1 + seg] = 0xd9;
            rc1 = decode_striped(two, len + seg, 1, &many, &used);
            image_free(&many);
            rc2 = decode_striped(two, len + seg, 16, &many, &used);
            image_free(&many);
            CHECK(sof && rc1 == S3D_EFORMAT && rc2 == S3D_EFORMAT && used >= 2,
                  "case %zu: a second SOF after the scan: %d %d (%d stripes)", i, rc1, rc2, used);
            free(two);
            free(bad);
        }
        image_free(&one);
        free(jpg);
    }
}

/* Issue 15, finding 10: the pixel limit (S3D_MAX_PIXELS) and the header probe
 * the orchestrator checks it with. */
static void test_pixel_limit(void)
{
    static const char *files[] = {"gray8.png", "jpeg_420.jpg", "jpeg_420_progressive.png",
                                  "jpeg_cmyk.jpg", "jpeg_gray.jpg"};
    struct image img;
    int64_t w, h, px;
    char path[256];

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "tests/fixtures/images/%s", files[i]);
        CHECK(image_probe(path, &w, &h) == 0 && image_load_rgb(path, &img) == 0 &&
              w == img.w && h == img.h, "%s: probe %lldx%lld", files[i], (long long)w,
              (long long)h);
        image_free(&img);
    }
    CHECK(image_probe("tests/fixtures/images/examples.txt", &w, &h) == S3D_EFORMAT);
    CHECK(image_probe("/nonexistent.png", &w, &h) == S3D_EIO);
    CHECK(image_probe("/dev/zero", &w, &h) == S3D_EIO, "a device is not probed");
    CHECK(image_max_pixels() == IMAGE_DEFAULT_MAX_PIXELS);
    CHECK(image_parse_pixels("150M", &px) && px == 150000000);
    CHECK(image_parse_pixels("2.5k", &px) && px == 2500);
    CHECK(!image_parse_pixels("0", &px) && !image_parse_pixels("5X", &px) &&
          !image_parse_pixels("2G", &px) && !image_parse_pixels("", &px));
    snprintf(path, sizeof(path), "tests/fixtures/images/gray8.png");
    CHECK(image_probe(path, &w, &h) == 0);
    {
        char lim[32];

        snprintf(lim, sizeof(lim), "%lld", (long long)(w * h - 1));
        setenv("S3D_MAX_PIXELS", lim, 1);
        CHECK(image_load_rgb(path, &img) == S3D_EINVAL, "one pixel over the limit");
        snprintf(lim, sizeof(lim), "%lld", (long long)(w * h));
        setenv("S3D_MAX_PIXELS", lim, 1);
        CHECK(image_load_rgb(path, &img) == 0, "at the limit");
        image_free(&img);
        unsetenv("S3D_MAX_PIXELS");
    }
    printf("pixel limit: header probes equal the decoded sizes; S3D_MAX_PIXELS enforced\n");
}

int main(void)
{
    log_init("test_image");
    test_fixtures();
    test_examples();
    test_errors();
    test_writer_and_empty_mask();
    test_large();
    test_jpeg_stripes();
    test_pixel_limit();
    return harness_done("test_image");
}
