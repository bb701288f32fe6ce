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
 * intrinsics are refused.
 */
#include "harness.h"
#include "err.h"
#include "preview.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define NG 5

static const uint8_t *px(const struct image *im, int panel, int x, int y)
{
    return im->data + ((size_t)y * im->w + panel * (im->w / 2) + x) * 3;
}

static bool is_bg(const uint8_t *p)
{
    return p[0] == PREVIEW_BACKGROUND && p[1] == PREVIEW_BACKGROUND && p[2] == PREVIEW_BACKGROUND;
}

int main(void)
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

        fprintf(stderr, "expected error follows:\n");
        CHECK(preview_render(&g, &p, Kbad, 100, 100, 100, &im) == S3D_EINVAL);
    }
    return harness_done("test_preview");
}
