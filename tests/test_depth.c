/*
 * test_depth.c - the MoGe network (stages/moge) on the CPU against the
 * official module: tests/fixtures/moge_tiny (tools/ref/dump_moge.py: MoGe v1
 * at a8c3734 with a tiny config and random weights in the official model.pt
 * container, run through MoGeModel.infer on a real example image, fp32 CPU).
 * Checks, in execution order: image_14, the normed taps, every head stage,
 * the raw outputs, then the depth-stage outputs (points, mask, intrinsics,
 * the flipped NaN point map).
 */
#include "arena.h"
#include "ckpt.h"
#include "harness.h"
#include "lmsolve.h"
#include "log.h"
#include "moge/moge.h"
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/moge_tiny/"

static struct ckpt ref;

static void cmp_named(void *user, const char *name, const struct tensor *t)
{
    (void)user;
    const struct ckpt_entry *e = ckpt_find(&ref, name);
    CHECK(e != NULL, "reference has no %s", name);
    if (!e)
        return;
    size_t n = (size_t)tensor_numel(t);
    CHECK(ckpt_entry_numel(e) == (int64_t)n, "%s: %zu elements, reference %lld", name, n,
          (long long)ckpt_entry_numel(e));
    if (ckpt_entry_numel(e) != (int64_t)n)
        return;
    float *a = malloc(n * 4), *b = malloc(n * 4);
    dtype_convert(a, DTYPE_F32, t->data, t->dtype, n);
    dtype_convert(b, DTYPE_F32, e->data, e->dtype, n);
    char label[96];
    snprintf(label, sizeof(label), "%-28s", name);
    report_cmp(label, compare_f32(a, b, n, 1e-4, 1e-3, 1e-8));
    free(a);
    free(b);
}

int main(void)
{
    struct weights w;
    struct moge_model m;
    struct arena wa = {0}, stg = {0}, act = {0};

    if (ckpt_open(&ref, FIX "ref.safetensors", 0) != 0) {
        CHECK(!"missing fixture", FIX "ref.safetensors");
        return harness_done("test_depth");
    }
    CHECK(weights_open(&w, FIX "model.pt:model", NULL, DTYPE_F32) == 0);
    CHECK(moge_bind(&m, &w, DTYPE_F32) == 0);
    m.num_tokens = 36;            /* tiny config: num_tokens_range [20, 36], level 9 */
    ASSERT(arena_init(&wa, ARENA_HOST, "weights", weights_arena_bytes(&w)) == 0);
    ASSERT(arena_init(&stg, ARENA_HOST, "staging", 1 << 20) == 0);
    CHECK(weights_upload(&w, &wa, &stg) == 0);
    CHECK(weights_report_unused(&w, "") == 0, "unbound tensors in model.pt");
    weights_close(&w);

    const struct ckpt_entry *ie = ckpt_find(&ref, "image");
    ASSERT(ie && ie->ndim == 3);
    int H = (int)ie->shape[1], W = (int)ie->shape[2];
    struct moge_geom g;
    moge_geometry(&m, H, W, &g);
    printf("image %dx%d -> resized %dx%d, grid %dx%d\n", H, W, g.rh, g.rw, g.ph, g.pw);
    ASSERT(arena_init(&act, ARENA_HOST, "act", moge_act_bytes(&m, &g)) == 0);
    struct tensor img = ckpt_entry_tensor(ie);
    float *raw = malloc(sizeof(float) * 4 * (size_t)g.rh * g.rw);
    moge_forward(&m, NULL, &act, &img, &g, raw, cmp_named, NULL);

    struct moge_result r;
    size_t HW = (size_t)H * W;
    r.pointmap = malloc(sizeof(float) * 3 * HW);
    r.points_moge = malloc(sizeof(float) * 3 * HW);
    r.mask = malloc(HW);
    struct lm_opts lo = lm_opts_default();
    moge_postprocess(&g, raw, &lo, &r);

    /* mask: identical except where the raw output sits at the threshold */
    const struct ckpt_entry *me = ckpt_find(&ref, "mask");
    const struct ckpt_entry *mp = ckpt_find(&ref, "mask_prob");
    ASSERT(me && mp);
    size_t diff = 0, valid = 0;
    for (size_t q = 0; q < HW; q++) {
        bool rm = dtype_get(me->data, me->dtype, q) != 0;
        valid += rm;
        if (rm != (bool)r.mask[q]) {
            double pr = dtype_get(mp->data, mp->dtype, q);   /* sigmoid(raw) */
            double rawv = log(pr / (1 - pr));
            CHECK(fabs(rawv - 0.5) < 1e-3, "mask differs at %zu away from the threshold (raw %g)",
                  q, rawv);
            diff++;
        }
    }
    printf("mask: %zu of %zu valid in the reference, %zu differ (at the threshold)\n", valid, HW,
           diff);

    /* points (MoGe, +inf invalid) and pointmap (3, H, W) NaN invalid */
    const struct ckpt_entry *pe = ckpt_find(&ref, "points");
    const struct ckpt_entry *pm = ckpt_find(&ref, "pointmap");
    const struct ckpt_entry *ke = ckpt_find(&ref, "intrinsics");
    ASSERT(pe && pm && ke);
    float *pr = malloc(sizeof(float) * 3 * HW), *pmr = malloc(sizeof(float) * 3 * HW);
    dtype_convert(pr, DTYPE_F32, pe->data, pe->dtype, 3 * HW);
    dtype_convert(pmr, DTYPE_F32, pm->data, pm->dtype, 3 * HW);
    float *a = malloc(sizeof(float) * 3 * HW), *b = malloc(sizeof(float) * 3 * HW);
    size_t nv = 0;
    int nan_ok = 1;
    for (size_t q = 0; q < HW; q++) {
        bool v = r.mask[q] && dtype_get(me->data, me->dtype, q) != 0;
        for (int c = 0; c < 3; c++) {
            if (v) {
                a[nv] = r.pointmap[3 * q + c];
                b[nv] = pmr[(size_t)c * HW + q];      /* reference pointmap is (3, H, W) */
                nv++;
            } else if (!r.mask[q]) {
                nan_ok &= isnan(r.pointmap[3 * q + c]) && isinf(r.points_moge[3 * q + c]);
            }
        }
    }
    CHECK(nan_ok, "invalid pixels must be NaN in pointmap and +inf in MoGe's points");
    report_cmp("pointmap (valid pixels)", compare_f32(a, b, nv, 1e-4, 1e-3, 1e-8));
    nv = 0;
    for (size_t q = 0; q < HW; q++)
        if (r.mask[q] && dtype_get(me->data, me->dtype, q) != 0)
            for (int c = 0; c < 3; c++) {
                a[nv] = r.points_moge[3 * q + c];
                b[nv++] = pr[3 * q + c];
            }
    report_cmp("points (MoGe, valid pixels)", compare_f32(a, b, nv, 1e-4, 1e-3, 1e-8));
    float kr[9];
    dtype_convert(kr, DTYPE_F32, ke->data, ke->dtype, 9);
    report_cmp("intrinsics", compare_f32(r.intrinsics, kr, 9, 1e-6, 1e-4, -1));
    printf("focal %.7g shift %.7g; reference fx %.7g, ours %.7g\n", r.focal, r.shift, kr[0],
           r.intrinsics[0]);

    free(a);
    free(b);
    free(pr);
    free(pmr);
    free(raw);
    free(r.pointmap);
    free(r.points_moge);
    free(r.mask);
    arena_free(&act);
    arena_free(&stg);
    arena_free(&wa);
    ckpt_close(&ref);
    return harness_done("test_depth");
}
