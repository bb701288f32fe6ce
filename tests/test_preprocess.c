/*
 * test_preprocess.c - stages/depth_net/preprocess.c against the official preprocessing.
 *
 * Fixtures from tools/ref/dump_preprocess.py (the released ss/slat PreProcessor
 * objects run on cropped example images with a synthetic point map):
 *   tests/fixtures/preprocess/case_*.safetensors  inputs and every output, checked bit for bit
 *   tests/fixtures/preprocess/full.txt            CRC-32 of the outputs on the whole
 *                                                 example images at 518 (examples/ or $S3D_EXAMPLES:
 *                                                 cases whose images are absent are skipped)
 * plus unit checks of nanmedian, the bounding box rules, resampling identities
 * and the error paths. On the whole images also: prep_run_hwc (the point map
 * read as (H, W, 3)) and prep_run on one thread (S3D_THREADS=1) give the same
 * bytes as the multi-threaded prep_run.
 */
#include "ckpt.h"
#include "err.h"
#include "harness.h"
#include "image.h"
#include "log.h"
#include "depth_net/preprocess.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FIX "tests/fixtures/preprocess"

/* The synthetic point map of dump_preprocess.py (float32 ops in the same order). */
static float *synthetic_pointmap(int h, int w)
{
    size_t n = (size_t)h * w;
    float *p = malloc(sizeof(float) * 3 * n);
    float  f = (float)(0.9 * (h > w ? h : w));

    ASSERT(p);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            float  u = ((float)x - (float)(w / 2)) / f;
            float  v = ((float)y - (float)(h / 2)) / f;
            float  uu = u * u;
            float  a = 0.5f * uu;
            float  b = 0.25f * v;
            float  z = (2.0f + a) + b;
            float  px = u * z, py = v * z;

            if ((x * 7 + y * 13) % 97 == 0 || y < h / 10) {
                p[i] = p[n + i] = p[2 * n + i] = NAN;
            } else {
                p[i] = -px;
                p[n + i] = -py;
                p[2 * n + i] = z;
            }
        }
    return p;
}

static uint32_t crc32_bytes(const void *data, size_t n)
{
    static uint32_t table[256];
    const uint8_t  *p = data;
    uint32_t        c = 0xffffffffu;

    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t v = i;

            for (int k = 0; k < 8; k++)
                v = (v & 1) ? 0xedb88320u ^ (v >> 1) : v >> 1;
            table[i] = v;
        }
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* Bit-level comparison (NaN equals NaN); prints one line. */
static void check_equal(const char *label, const float *got, const float *want, size_t n)
{
    size_t bad = 0, first = 0;
    double max_abs = 0;

    for (size_t i = 0; i < n; i++) {
        bool same = (isnan(got[i]) && isnan(want[i])) || memcmp(&got[i], &want[i], 4) == 0;

        if (!same) {
            double d = fabs((double)got[i] - want[i]);

            if (!bad)
                first = i;
            bad++;
            max_abs = isnan(d) || d > max_abs ? d : max_abs;
        }
    }
    printf("  %-22s n %-8zu bit-different %-6zu max_abs %.3g%s\n", label, n, bad, max_abs,
           bad ? "" : "  equal");
    if (bad)
        printf("    first at %zu: got %.9g want %.9g\n", first, got[first], want[first]);
    CHECK(bad == 0, "%s: %zu values differ from the official preprocessing", label, bad);
}

static const float *tensor_f32(struct ckpt *c, const char *name, size_t numel)
{
    const struct ckpt_entry *e = ckpt_find(c, name);

    CHECK(e && e->dtype == DTYPE_F32 && (size_t)ckpt_entry_numel(e) == numel, "%s", name);
    return e && e->dtype == DTYPE_F32 && (size_t)ckpt_entry_numel(e) == numel
               ? (const float *)e->data : NULL;
}

static void test_case(const char *name)
{
    char                     path[256];
    struct ckpt              c;
    const struct ckpt_entry *ergb, *emask, *epm;
    struct image             rgb = {0}, mask = {0};
    struct prep_out          o, slat;
    float                   *pm;
    int                      s, h, w;
    size_t                   ss;

    snprintf(path, sizeof(path), FIX "/case_%s.safetensors", name);
    if (safetensors_open(&c, path) != 0) {
        CHECK(0, "cannot open %s", path);
        return;
    }
    ergb = ckpt_find(&c, "rgb");
    emask = ckpt_find(&c, "mask");
    CHECK(ergb && emask && ergb->ndim == 3 && emask->ndim == 2, "%s: inputs", name);
    if (!ergb || !emask || !ckpt_meta(&c, "size"))
        goto out_close;
    h = (int)ergb->shape[0];
    w = (int)ergb->shape[1];
    s = atoi(ckpt_meta(&c, "size"));
    ss = (size_t)s * s;
    printf("case %s: %dx%d -> %d (%s, window %s)\n", name, w, h, s, ckpt_meta(&c, "source"),
           ckpt_meta(&c, "window"));
    rgb = (struct image){.w = w, .h = h, .c = 3, .data = (uint8_t *)ergb->data};
    mask = (struct image){.w = w, .h = h, .c = 1, .data = (uint8_t *)emask->data};
    pm = synthetic_pointmap(h, w);
    if ((epm = ckpt_find(&c, "pointmap_in")) != NULL)
        check_equal("synthetic pointmap", pm, (const float *)epm->data, (size_t)3 * h * w);

    CHECK(prep_run(&rgb, &mask, pm, s, &o) == 0, "%s: prep_run", name);
    CHECK(prep_run(&rgb, &mask, NULL, s, &slat) == 0, "%s: prep_run slat", name);
    if (o.image && slat.image) {
        const float *t;

        if ((t = tensor_f32(&c, "image", 3 * ss)))
            check_equal("image", o.image, t, 3 * ss);
        if ((t = tensor_f32(&c, "mask_out", ss)))
            check_equal("mask", o.mask, t, ss);
        if ((t = tensor_f32(&c, "rgb_image", 3 * ss)))
            check_equal("rgb_image", o.rgb_image, t, 3 * ss);
        if ((t = tensor_f32(&c, "rgb_image_mask", ss)))
            check_equal("rgb_image_mask", o.rgb_image_mask, t, ss);
        if ((t = tensor_f32(&c, "pointmap", 3 * ss)))
            check_equal("pointmap", o.pointmap, t, 3 * ss);
        if ((t = tensor_f32(&c, "rgb_pointmap", 3 * ss)))
            check_equal("rgb_pointmap", o.rgb_pointmap, t, 3 * ss);
        if ((t = tensor_f32(&c, "pointmap_scale", 3)))
            check_equal("pointmap_scale", o.pointmap_scale, t, 3);
        if ((t = tensor_f32(&c, "pointmap_shift", 3)))
            check_equal("pointmap_shift", o.pointmap_shift, t, 3);
        /* SLAT preprocessor: the official run found its outputs equal to SS's */
        CHECK(ckpt_meta(&c, "slat_equal") && !strcmp(ckpt_meta(&c, "slat_equal"), "true"));
        CHECK(slat.pointmap == NULL && slat.rgb_pointmap == NULL);
        CHECK(!memcmp(slat.image, o.image, 3 * ss * 4) && !memcmp(slat.mask, o.mask, ss * 4) &&
              !memcmp(slat.rgb_image, o.rgb_image, 3 * ss * 4) &&
              !memcmp(slat.rgb_image_mask, o.rgb_image_mask, ss * 4), "%s: slat differs", name);
    }
    prep_out_free(&o);
    prep_out_free(&slat);
    free(pm);
out_close:
    ckpt_close(&c);
}

static void hex_to_floats(const char *hex, float *v)
{
    uint8_t b[4];

    for (int k = 0; k < 4; k++) {
        unsigned x;

        sscanf(hex + 2 * k, "%2x", &x);
        b[k] = (uint8_t)x;
    }
    memcpy(v, b, 4);
}

/* a and b hold the same bytes in every output, box and statistic. */
static bool prep_same(const struct prep_out *a, const struct prep_out *b)
{
    size_t ss = (size_t)a->size * a->size;
    const float *x[6] = {a->image, a->mask, a->rgb_image, a->rgb_image_mask, a->pointmap,
                         a->rgb_pointmap};
    const float *y[6] = {b->image, b->mask, b->rgb_image, b->rgb_image_mask, b->pointmap,
                         b->rgb_pointmap};
    size_t ns[6] = {3 * ss, ss, 3 * ss, ss, 3 * ss, 3 * ss};

    if (a->size != b->size || memcmp(a->bbox, b->bbox, sizeof(a->bbox)) ||
        memcmp(a->pointmap_scale, b->pointmap_scale, sizeof(a->pointmap_scale)) ||
        memcmp(a->pointmap_shift, b->pointmap_shift, sizeof(a->pointmap_shift)))
        return false;
    for (int k = 0; k < 6; k++)
        if ((x[k] == NULL) != (y[k] == NULL) || (x[k] && memcmp(x[k], y[k], ns[k] * 4)))
            return false;
    return true;
}

/* The (H, W, 3) point map reader and one thread against o. */
static void check_variants(const char *name, const struct image *rgb, const struct image *mask,
                           const float *pm, const struct prep_out *o)
{
    size_t n = (size_t)rgb->h * rgb->w;
    float *hwc = malloc(sizeof(float) * 3 * n);
    struct prep_out v;

    ASSERT(hwc);
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++)
            hwc[3 * i + c] = pm[c * n + i];
    CHECK(prep_run_hwc(rgb, mask, hwc, PREP_SIZE, &v) == 0 && prep_same(o, &v),
          "%s: prep_run_hwc = prep_run", name);
    prep_out_free(&v);
    free(hwc);
    setenv("S3D_THREADS", "1", 1);
    CHECK(prep_run(rgb, mask, pm, PREP_SIZE, &v) == 0 && prep_same(o, &v),
          "%s: one thread = all cores", name);
    unsetenv("S3D_THREADS");
    prep_out_free(&v);
    printf("  prep_run_hwc and one thread: the same bytes\n");
}

static void test_full(void)
{
    const char *dir = getenv("S3D_EXAMPLES") ? getenv("S3D_EXAMPLES") : "examples";
    FILE       *f = fopen(FIX "/full.txt", "r");
    char        line[1024];

    CHECK(f != NULL, "missing " FIX "/full.txt");
    if (!f)
        return;
    if (access(dir, R_OK) != 0) {
        printf("full-size cases: %s not found, not run (set S3D_EXAMPLES)\n", dir);
        fclose(f);
        return;
    }
    while (fgets(line, sizeof(line), f)) {
        char            name[64], ir[128], mr[128], hx[12][16], p1[256], p2[256];
        unsigned        crc[6];
        int             slat_eq;
        struct image    rgb, mask;
        struct prep_out o;
        float          *pm;

        if (line[0] == '#')
            continue;
        if (sscanf(line, "%63s %127s %127s %d %x %x %x %x %x %x %15s %15s %15s %15s %15s %15s",
                   name, ir, mr, &slat_eq, &crc[0], &crc[1], &crc[2], &crc[3], &crc[4], &crc[5],
                   hx[0], hx[1], hx[2], hx[3], hx[4], hx[5]) != 16) {
            CHECK(0, "bad line in full.txt: %s", line);
            continue;
        }
        snprintf(p1, sizeof(p1), "%s/%s", dir, ir);
        snprintf(p2, sizeof(p2), "%s/%s", dir, mr);
        if (access(p1, R_OK) != 0 || access(p2, R_OK) != 0) {
            printf("full %s: %s or %s not present, not run (S3D_EXAMPLES)\n", name, p1, p2);
            continue;
        }
        if (image_load_rgb(p1, &rgb) != 0 || image_load_mask(p2, rgb.w, rgb.h, &mask) != 0) {
            CHECK(0, "%s: cannot load", name);
            image_free(&rgb);
            continue;
        }
        pm = synthetic_pointmap(rgb.h, rgb.w);
        if (prep_run(&rgb, &mask, pm, PREP_SIZE, &o) == 0) {
            size_t       ss = (size_t)PREP_SIZE * PREP_SIZE;
            const float *outs[6] = {o.image, o.mask, o.rgb_image, o.rgb_image_mask, o.pointmap,
                                    o.rgb_pointmap};
            size_t       ns[6] = {3 * ss, ss, 3 * ss, ss, 3 * ss, 3 * ss};
            const char  *names[6] = {"image", "mask", "rgb_image", "rgb_image_mask", "pointmap",
                                     "rgb_pointmap"};

            printf("full %s %dx%d bbox %d,%d,%d,%d\n", name, rgb.w, rgb.h, o.bbox[0], o.bbox[1],
                   o.bbox[2], o.bbox[3]);
            for (int k = 0; k < 6; k++) {
                uint32_t got = crc32_bytes(outs[k], ns[k] * 4);

                printf("  %-16s crc %08x (official %08x) %s\n", names[k], got, crc[k],
                       got == crc[k] ? "equal" : "DIFFERENT");
                CHECK(got == crc[k], "%s %s", name, names[k]);
            }
            for (int k = 0; k < 6; k++) {
                float want, got = k < 3 ? o.pointmap_scale[k] : o.pointmap_shift[k - 3];

                hex_to_floats(hx[k], &want);
                CHECK(memcmp(&got, &want, 4) == 0, "%s %s[%d]: got %.9g want %.9g", name,
                      k < 3 ? "scale" : "shift", k % 3, got, want);
            }
            printf("  scale %.7g shift %.7g %.7g %.7g\n", o.pointmap_scale[0],
                   o.pointmap_shift[0], o.pointmap_shift[1], o.pointmap_shift[2]);
            check_variants(name, &rgb, &mask, pm, &o);
        } else {
            CHECK(0, "%s: prep_run failed", name);
        }
        prep_out_free(&o);
        free(pm);
        image_free(&rgb);
        image_free(&mask);
    }
    fclose(f);
}

static void test_units(void)
{
    float        a[] = {3, NAN, 1, 4, 2, NAN};
    float        b[] = {NAN, NAN};
    float        c[] = {5};
    float        alpha[6 * 5] = {0}, bbox_img[6 * 5];
    int          bbox[4];
    float        src[4 * 3], dst[4 * 3], dst2[4 * 3];
    uint8_t      px[3 * 4] = {0}, mpx[4] = {0, 1, 0, 0};
    struct image rgb = {.w = 2, .h = 2, .c = 3, .data = px};
    struct image m = {.w = 2, .h = 2, .c = 1, .data = mpx};
    struct image m_wrong = {.w = 3, .h = 2, .c = 1, .data = mpx};
    struct prep_out o;
    struct prep_window whole = {.vh = 3, .vw = 4, .ch = 3, .cw = 4};
    struct prep_window shifted = {.vh = 3, .vw = 4, .py = 1, .ch = 2, .cw = 4, .y0 = -1, .x0 = 1};
    struct prep_window const_win = {.vh = 5, .vw = 6, .ch = 5, .cw = 6};

    CHECK(prep_nanmedian(a, 6) == 2.0f, "even count: lower middle");   /* {1,2,3,4} -> 2 */
    CHECK(isnan(prep_nanmedian(b, 2)), "all NaN -> NaN");
    CHECK(prep_nanmedian(c, 1) == 5.0f);

    CHECK(prep_mask_bbox(alpha, 5, 6, 1.2f, bbox) == S3D_EINVAL, "empty mask");
    alpha[1 * 6 + 2] = alpha[3 * 6 + 2] = 1.0f;          /* a column: width 0 */
    CHECK(prep_mask_bbox(alpha, 5, 6, 1.2f, bbox) == S3D_EINVAL, "box narrower than 2");
    alpha[0 * 6 + 0] = alpha[4 * 6 + 5] = 0.25f;         /* soft alpha counts (!= 0) */
    CHECK(prep_mask_bbox(alpha, 5, 6, 1.2f, bbox) == 0);
    /* x 0..5, y 0..4: cx 2.5 cy 2, size int(5 * 1.2) = 6, half 3:
     * int(-0.5) = 0 (toward zero), int(-1) = -1, int(5.5) = 5, int(5) = 5 */
    CHECK(bbox[0] == 0 && bbox[1] == -1 && bbox[2] == 5 && bbox[3] == 5, "bbox %d %d %d %d",
          bbox[0], bbox[1], bbox[2], bbox[3]);

    for (int i = 0; i < 12; i++)
        src[i] = (float)(i * i) / 7.0f;
    prep_resize_aa(src, 3, 4, &whole, dst, 3, 4);
    prep_resize_nearest(src, 3, 4, &whole, NAN, dst2, 3, 4);
    CHECK(!memcmp(dst, src, sizeof(src)) && !memcmp(dst2, src, sizeof(src)), "same size: copy");
    /* crop 2x4 starting at source (-1, 1), placed at virtual row 1: virtual row 0 and
     * row 3.. are padding, crop row 0 is above the source (0), crop row 1 is source row 0 */
    prep_resize_nearest(src, 3, 4, &shifted, NAN, dst2, 3, 4);
    CHECK(isnan(dst2[0]) && dst2[4] == 0.0f && dst2[8] == src[1] && dst2[10] == src[3] &&
          dst2[11] == 0.0f, "window: pad, zero outside the source, source");
    prep_resize_aa(src, 3, 4, &shifted, dst, 3, 4);
    CHECK(dst[0] == 0.0f && dst[4] == 0.0f && dst[8] == src[1], "aa window at scale 1");
    for (int i = 0; i < 30; i++)
        bbox_img[i] = 0.5f;
    prep_resize_aa(bbox_img, 5, 6, &const_win, dst, 2, 3);   /* constant in -> constant out */
    for (int i = 0; i < 6; i++)
        CHECK(fabsf(dst[i] - 0.5f) < 1e-7f, "constant %d: %g", i, dst[i]);

    CHECK(prep_run(&rgb, &m_wrong, NULL, 8, &o) == S3D_ESHAPE && o.image == NULL);
    CHECK(prep_run(&rgb, &m, NULL, 8, &o) == S3D_EINVAL, "single-pixel object");
    prep_out_free(&o);
    prep_out_free(NULL);
    {
        float pm[3 * 4] = {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
        float al[4] = {1, 1, 0, 0}, sc[3], sh[3];

        pm[2] = 1.0f;                                     /* finite, but not under the mask */
        CHECK(!prep_ssi_stats(pm, al, 2, 2, sc, sh), "no finite point under the mask");
        CHECK(sc[0] == 1 && sc[2] == 1 && sh[0] == 0 && sh[1] == 0, "scale 1, shift 0");
    }
}

int main(void)
{
    log_init("test_preprocess");
    test_units();
    test_case("human_crop");
    test_case("socrates12_up");
    test_case("fencers0_top");
    test_full();
    return harness_done("test_preprocess");
}
