/*
 * test_preview.c - common/preview.c on a known set of Gaussians, pixels
 * checked: a 100x100 image, fx = fy = 100 px, centre (50.5, 50.5) (the middle
 * of pixel 50); the pose puts
 * the object's origin 2 units in front of the camera.
 *   A red, opaque, at the origin: pixel (50, 50) in both panels;
 *   B green, 0.5 behind A: hidden by A in front, at (75, 50) in the side view;
 *   C invisible (opacity -inf), D behind the camera: drawn nowhere;
 *   E blue, flat along the object's x (sigma 5 px by 0.25 px), above A:
 *     a horizontal streak at row 25; with the pose turned a quarter about the
 *     object's z it becomes a vertical one at column 25;
 * background grey elsewhere; panel sizes follow the image's aspect; bad
 * intrinsics are refused. Then a random cloud (200,000 Gaussians, so the depth
 * sort runs over several ranges; M given as
 * the first argument instead) rendered with S3D_THREADS=1 and with 3 threads
 * (or the online cores when M is given): the same bytes, and both times
 * printed - `build/tests/test_preview 1048544` times a full-size splat
 * (32 Gaussians on ~32k voxels), docs/performance.md "Export".
 */
#include "harness.h"
#include "dtype.h"
#include "err.h"
#include "preview.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NG 5

static const uint8_t *px(const struct image *im, int panel, int x, int y)
{
    return im->data + ((size_t)y * im->w + panel * (im->w / 2) + x) * 3;
}

static bool is_bg(const uint8_t *p)
{
    return p[0] == PREVIEW_BACKGROUND && p[1] == PREVIEW_BACKGROUND && p[2] == PREVIEW_BACKGROUND;
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The preview of a random cloud of m Gaussians (a ball of radius 0.4, scales
 * 0.002-0.02, a turned pose 2.5 in front of a 1600x898 camera), image into
 * *im, milliseconds returned; threads: S3D_THREADS for the call. */
static double render_cloud(int64_t m, const char *threads, struct image *im)
{
    float *buf = malloc(sizeof(float) * 14 * (size_t)m);
    struct s3d_randn r;
    const float K[9] = {0.9f, 0, 0.5f, 0, 1.6f, 0.5f, 0, 0, 1};
    struct pose p = {{0.9f, 0.1f, 0.3f, -0.2f}, {0.1f, -0.05f, 2.5f}, {1, 1, 1}};
    struct gaussians g;
    double t0;
    int rc;

    CHECK(buf != NULL);
    s3d_randn_init(&r, 7);
    s3d_randn_fill(&r, buf, 14 * m);
    g = (struct gaussians){m, buf, buf + 3 * m, buf + 6 * m, buf + 7 * m, buf + 10 * m};
    for (int64_t i = 0; i < m; i++) {
        float *x = g.xyz + 3 * i, nx = sqrtf(x[0] * x[0] + x[1] * x[1] + x[2] * x[2]) + 1e-6f;
        float u = 0.5f + 0.5f * erff(g.scale[3 * i] / sqrtf(2.0f));    /* uniform (0, 1) */

        for (int k = 0; k < 3; k++)                /* radius 0.4 u^(1/3) */
            x[k] *= 0.4f * cbrtf(u) / nx;
        for (int k = 0; k < 3; k++)
            g.scale[3 * i + k] = logf(0.002f) + (logf(0.02f) - logf(0.002f)) *
                                 (0.5f + 0.5f * erff(g.scale[3 * i + k] / 3));
        g.opacity[i] *= 2;
    }
    setenv("S3D_THREADS", threads, 1);
    t0 = now_ms();
    rc = preview_render(&g, &p, K, 1600, 898, PREVIEW_SIDE, im);
    t0 = now_ms() - t0;
    unsetenv("S3D_THREADS");
    CHECK(rc == 0);
    free(buf);
    return t0;
}

int main(int argc, char **argv)
{
    const float big = 0.5f / 0.28209479f;        /* 0.5 + C0 * big = 1 */
    float xyz[3 * NG] = {0, 0, 0, 0, 0, 0.5f, 0.2f, 0, 0, 0, 0, -3, 0, 0.5f, 0};
    float fdc[3 * NG] = {big, -big, -big, -big, big, -big, big, big, big, big, big, big,
                         -big, -big, big};
    float opa[NG] = {10, 10, -INFINITY, 10, 10};
    float l2 = logf(0.02f), lf = logf(0.1f), ln = logf(0.005f);
    float scl[3 * NG] = {l2, l2, l2, l2, l2, l2, l2, l2, l2, l2, l2, l2, lf, ln, ln};
    float rot[4 * NG] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0};
    struct gaussians g = {NG, xyz, fdc, opa, scl, rot};
    const float K[9] = {1, 0, 0.505f, 0, 1, 0.505f, 0, 0, 1};   /* centre at pixel centre 50 */
    struct pose p = {{1, 0, 0, 0}, {0, 0, 2}, {1, 1, 1}};
    struct image im;
    const uint8_t *c;

    CHECK(preview_render(&g, &p, K, 100, 100, 100, &im) == 0);
    CHECK(im.w == 200 && im.h == 100 && im.c == 3, "%dx%dx%d", im.w, im.h, im.c);
    c = px(&im, 0, 50, 50);
    CHECK(c[0] >= 250 && c[1] <= 5 && c[2] <= 5, "front centre %u %u %u: A (red) in front",
          c[0], c[1], c[2]);
    c = px(&im, 1, 50, 50);
    CHECK(c[0] >= 250 && c[1] <= 5, "side centre %u %u %u: A", c[0], c[1], c[2]);
    c = px(&im, 1, 75, 50);
    CHECK(c[1] >= 250 && c[0] <= 5 && c[2] <= 5, "side (75,50) %u %u %u: B (green)", c[0], c[1],
          c[2]);
    CHECK(is_bg(px(&im, 0, 75, 50)), "front (75,50): background");
    CHECK(is_bg(px(&im, 0, 40, 50)), "front (40,50): C is invisible");
    CHECK(is_bg(px(&im, 0, 5, 5)) && is_bg(px(&im, 1, 95, 95)), "corners: background");
    c = px(&im, 0, 50, 25);
    CHECK(c[2] >= 250 && c[0] <= 5, "E centre %u %u %u", c[0], c[1], c[2]);
    c = px(&im, 0, 58, 25);
    CHECK(c[2] > 80 && c[2] < 200, "E 8 px along its long axis %u: partly covered", c[2]);
    CHECK(is_bg(px(&im, 0, 50, 28)), "E 3 px across: background");
    printf("front: A over B at the centre, E a horizontal streak; side: B at (75, 50); "
           "C and D nowhere\n");
    image_free(&im);

    /* a quarter turn about the object's z: E's long axis becomes vertical, at column 25 */
    p.rotation[0] = p.rotation[3] = (float)sqrt(0.5);
    CHECK(preview_render(&g, &p, K, 100, 100, 100, &im) == 0);
    c = px(&im, 0, 25, 50);
    CHECK(c[2] >= 250, "turned E centre %u %u %u", c[0], c[1], c[2]);
    CHECK(px(&im, 0, 25, 58)[2] > 80 && is_bg(px(&im, 0, 28, 50)) && is_bg(px(&im, 0, 50, 25)),
          "turned E: vertical streak");
    printf("pose turned: E vertical at column 25\n");
    image_free(&im);

    /* aspect: a 160x80 image gives 100x50 panels */
    CHECK(preview_render(&g, &p, K, 160, 80, 100, &im) == 0);
    CHECK(im.w == 200 && im.h == 50, "%dx%d", im.w, im.h);
    image_free(&im);
    {
        const float Kbad[9] = {0, 0, 0.5f, 0, 1, 0.5f, 0, 0, 1};

        const float Kneg[9] = {-0.0158f, 0, 0.5f, 0, -0.0211f, 0.5f, 0, 0, 1};
        const float Knan[9] = {1, 0, NAN, 0, 1, 0.5f, 0, 0, 1};
        float Kp[9];

        fprintf(stderr, "expected error follows:\n");
        CHECK(preview_render(&g, &p, Kbad, 100, 100, 100, &im) == S3D_EINVAL);
        /* the stand-in camera: a usable K passes through, a negative focal (random depth
         * weights) or a NaN centre gets 60 degrees across, square pixels, centred */
        CHECK(!preview_camera(K, 160, 80, Kp) && memcmp(K, Kp, sizeof(Kp)) == 0, "K kept");
        CHECK(preview_camera(Kneg, 160, 80, Kp) && fabsf(Kp[0] - 0.8660254f) < 1e-6f &&
              fabsf(Kp[4] - 2 * 0.8660254f) < 1e-6f && Kp[2] == 0.5f && Kp[5] == 0.5f &&
              Kp[8] == 1, "stand-in %g %g %g %g", Kp[0], Kp[4], Kp[2], Kp[5]);
        CHECK(preview_camera(Knan, 100, 100, Kp) && Kp[0] == Kp[4], "NaN centre");
        CHECK(preview_camera(Kneg, 160, 80, Kp) &&
              preview_render(&g, &p, Kp, 160, 80, 100, &im) == 0 && im.w == 200 && im.h == 50,
              "render through the stand-in");
        image_free(&im);
    }
    {
        int64_t m = argc > 1 ? atoll(argv[1]) : 200000;   /* > 2 x 65536: the sort in ranges */
        char nt[16];
        struct image one, many;
        double t1, tn;
        int covered = 0;

        snprintf(nt, sizeof(nt), "%d", argc > 1 ? dtype_threads() : 3);
        CHECK(m > 0 && m < (1 << 28), "cloud size %lld", (long long)m);
        t1 = render_cloud(m, "1", &one);
        tn = render_cloud(m, nt, &many);
        CHECK(one.w == many.w && one.h == many.h && one.w == 1024 && one.h == 287,
              "%dx%d", one.w, one.h);
        CHECK(memcmp(one.data, many.data, (size_t)one.w * one.h * 3) == 0,
              "the image differs between 1 and %s threads", nt);
        for (int64_t i = 0; i < (int64_t)one.w * one.h; i++)
            covered += !is_bg(one.data + 3 * i);
        CHECK(covered > one.w * one.h / 50, "the cloud covers %d pixels", covered);
        printf("random cloud of %lld Gaussians: %d pixels covered, the same bytes with 1 and "
               "%s threads; %.1f ms and %.1f ms\n", (long long)m, covered, nt, t1, tn);
        image_free(&one);
        image_free(&many);
    }
    return harness_done("test_preview");
}
