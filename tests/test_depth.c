/*
 * test_depth.c - the MoGe network (stages/depth_net) on the CPU against the
 * official module: tests/fixtures/moge_tiny (tools/ref/dump_moge.py: MoGe v1
 * at a8c3734 with a tiny config and random weights in the official model.pt
 * container, run through MoGeModel.infer on a real example image, fp32 CPU).
 * Checks, in execution order: image_14, the normed taps, every head stage,
 * the raw outputs, then the depth-stage outputs (points, mask, intrinsics,
 * the flipped NaN point map). Also: the token budget read from model.pt's
 * model_config, a U8 input equal to its /255 F32 form, the pos-embed cache
 * across grid changes, and (GPU part, skipped without a device) the CUDA path
 * in F32 and F16 against the official dump and the CPU path.
 */
#include "arena.h"
#include "check.h"
#include "ckpt.h"
#include "harness.h"
#include "depth_net/lmsolve.h"
#include "log.h"
#include "ops_image.h"
#include "tensor.h"
#include "depth_net/moge.h"
#include "weights.h"
#include "err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/moge_tiny/"

static struct ckpt ref;

/* NMSE allowed for intermediates: CPU fp32 vs PyTorch fp32 is summation order
 * only; CUDA fp32 likewise; CUDA fp16 (weights and head activations fp16,
 * ViT GEMMs fp16 with fp32 accumulation) about 1e-3 relative per element. */
struct tol {
    double atol, rtol, nmse;
    const char *tag;
};
static const struct tol TOL_CPU = {1e-4, 1e-3, 1e-8, ""};
static const struct tol TOL_F32 = {-1, -1, 1e-9, "cuda f32 "};
static const struct tol TOL_F16 = {-1, -1, 1e-4, "cuda f16 "};

static void cmp_named(void *user, const char *name, const struct tensor *t)
{
    const struct tol *tol = user;
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
    const void *src = t->data;
    void *h = NULL;
    if (t->device == DEVICE_CUDA) {
        h = malloc(n * dtype_size(t->dtype));
        CUDA_CHECK(cudaMemcpy(h, t->data, n * dtype_size(t->dtype), cudaMemcpyDeviceToHost));
        src = h;
    }
    dtype_convert(a, DTYPE_F32, src, t->dtype, n);
    dtype_convert(b, DTYPE_F32, e->data, e->dtype, n);
    char label[96];
    snprintf(label, sizeof(label), "%s%-28s", tol->tag, name);
    report_cmp(label, compare_f32(a, b, n, tol->atol, tol->rtol, tol->nmse));
    free(h);
    free(a);
    free(b);
}

/* A MoGe model on one device: weights, activation arena, CUDA context. */
struct runner {
    struct moge_model m;
    struct arena      act;
    struct op_ctx     ctx;
    enum device       dev;
};

static int runner_load(struct runner *r, enum device dev, enum dtype act_dt, int num_tokens,
                       int slots)
{
    memset(r, 0, sizeof(*r));
    r->dev = dev;
    if (moge_load(&r->m, FIX "model.pt", dev, act_dt, slots) != 0) {
        CHECK(0, "moge_load");
        return -1;
    }
    CHECK(r->m.num_tokens == 36, "num_tokens %d from model_config, want 36", r->m.num_tokens);
    r->m.num_tokens = num_tokens;
    return 0;
}

/* Forward img (host) for geometry g; raw (4, rh, rw) F32 host. */
static void runner_forward(struct runner *r, const struct tensor *img_h, const struct moge_geom *g,
                           float *raw, moge_dump_fn dump, void *user)
{
    size_t ws = r->dev == DEVICE_CUDA ? OP_WORKSPACE_DEFAULT : 0;
    size_t ib = (size_t)tensor_numel(img_h) * dtype_size(img_h->dtype);
    if (!r->act.base) {
        ASSERT(arena_init(&r->act, r->dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act",
                          moge_act_bytes(&r->m, g) + ws + arena_round(ib) + (4 << 20)) == 0);
        if (r->dev == DEVICE_CUDA)
            ASSERT(op_ctx_init(&r->ctx, &r->act, ws) == 0);
    }
    size_t mark = arena_mark(&r->act);
    struct tensor img = *img_h;
    if (r->dev == DEVICE_CUDA) {
        img = arena_tensor(&r->act, img_h->dtype, img_h->shape, img_h->ndim);
        img.device = DEVICE_CUDA;
        CUDA_CHECK(cudaMemcpy(img.data, img_h->data, ib, cudaMemcpyHostToDevice));
    }
    size_t hw = r->act.high_water;
    r->act.high_water = r->act.used;         /* this forward's peak alone */
    CHECK(moge_forward(&r->m, r->dev == DEVICE_CUDA ? &r->ctx : NULL, &r->act, &img, g, raw,
                       dump, user) == 0);
    /* on the host the plan is the forward's exact peak (on CUDA cuDNN's
     * workspace takes what the arena has free, see moge_act_bytes) */
    size_t peak = r->act.high_water - mark, plan = moge_act_bytes(&r->m, g);
    if (r->dev != DEVICE_CUDA)
        CHECK(peak == plan, "moge forward peak %zu != moge_act_bytes %zu", peak, plan);
    CHECK(r->act.high_water <= r->act.size);
    r->act.high_water = hw > r->act.high_water ? hw : r->act.high_water;
    arena_release(&r->act, mark);
}

static void runner_free(struct runner *r)
{
    moge_free(&r->m);
    if (r->dev == DEVICE_CUDA && r->act.base)
        op_ctx_free(&r->ctx);
    arena_free(&r->act);
}

/* Mask agreement: pixels where ours differs from the reference must sit at the
 * threshold (|raw - 0.5| < thr, raw from the reference mask_prob); returns the
 * number that differ. */
static size_t mask_diff(const uint8_t *mask, size_t HW, double thr, size_t *valid)
{
    const struct ckpt_entry *me = ckpt_find(&ref, "mask");
    const struct ckpt_entry *mp = ckpt_find(&ref, "mask_prob");
    ASSERT(me && mp);
    size_t diff = 0;
    *valid = 0;
    for (size_t q = 0; q < HW; q++) {
        bool rm = dtype_get(me->data, me->dtype, q) != 0;
        *valid += rm;
        if (rm != (bool)mask[q]) {
            double pr = dtype_get(mp->data, mp->dtype, q);   /* sigmoid(raw) */
            double rawv = log(pr / (1 - pr));
            CHECK(fabs(rawv - 0.5) < thr, "mask differs at %zu away from the threshold (raw %g)",
                  q, rawv);
            diff++;
        }
    }
    return diff;
}

/* The GPU part: CUDA F32 and F16 against the official dump (every named
 * intermediate, then points and mask) and the CPU raw output. */
static void gpu_part(const struct tensor *img, const struct moge_geom *g, const float *raw_cpu,
                     const struct moge_result *cpu, int num_tokens)
{
    if (!harness_gpu("GPU part"))
        return;
    const enum dtype dts[2] = {DTYPE_F32, DTYPE_F16};
    size_t HW = (size_t)g->H * g->W, nraw = (size_t)4 * g->rh * g->rw;
    for (int k = 0; k < 2; k++) {
        struct runner r;
        const struct tol *tol = k ? &TOL_F16 : &TOL_F32;
        char label[96];
        if (runner_load(&r, DEVICE_CUDA, dts[k], num_tokens, 0) != 0)
            continue;
        float *raw = malloc(sizeof(float) * nraw);
        runner_forward(&r, img, g, raw, cmp_named, (void *)tol);
        snprintf(label, sizeof(label), "%sraw vs cpu", tol->tag);
        report_cmp(label, compare_f32(raw, raw_cpu, nraw, -1, -1, tol->nmse));
        /* a second run (pos-embed cache hit) gives the same bits */
        float *raw2 = malloc(sizeof(float) * nraw);
        runner_forward(&r, img, g, raw2, NULL, NULL);
        CHECK(!memcmp(raw, raw2, sizeof(float) * nraw), "%srepeat run differs", tol->tag);
        struct moge_result o = {.pointmap = malloc(sizeof(float) * 3 * HW), .mask = malloc(HW)};
        struct lm_opts lo = lm_opts_default();
        moge_postprocess(g, raw, &lo, &o);
        size_t valid, d = mask_diff(o.mask, HW, k ? 5e-2 : 1e-3, &valid);
        CHECK(d * 1000 <= HW, "%s%zu mask pixels differ (> 0.1%%)", tol->tag, d);
        /* points over pixels valid in both, vs the CPU result */
        float *a = malloc(sizeof(float) * 3 * HW), *b = malloc(sizeof(float) * 3 * HW);
        size_t nv = 0;
        for (size_t q = 0; q < HW; q++)
            if (o.mask[q] && cpu->mask[q])
                for (int c = 0; c < 3; c++) {
                    a[nv] = o.pointmap[3 * q + c];
                    b[nv++] = cpu->pointmap[3 * q + c];
                }
        snprintf(label, sizeof(label), "%spointmap vs cpu (valid)", tol->tag);
        report_cmp(label, compare_f32(a, b, nv, -1, -1, k ? 1e-4 : 1e-10));
        printf("%smask: %zu of %zu differ from the reference; focal %.7g (cpu %.7g) shift "
               "%.7g (cpu %.7g)\n", tol->tag, d, HW, o.focal, cpu->focal, o.shift, cpu->shift);
        CHECK(fabs(o.focal - cpu->focal) <= (k ? 1e-2 : 1e-4) * fabs(cpu->focal), "focal");
        CHECK(fabs(o.shift - cpu->shift) <= (k ? 1e-2 : 1e-4) * fabs(cpu->shift), "shift");
        printf("%sactivation arena peak %.2f MB of %.2f MB\n", tol->tag, r.act.high_water / 1e6,
               r.act.size / 1e6);
        free(a);
        free(b);
        free(o.pointmap);
        free(o.mask);
        free(raw);
        free(raw2);
        runner_free(&r);
    }
}

int main(void)
{
    struct runner cpu;

    if (ckpt_open(&ref, FIX "ref.safetensors", 0) != 0) {
        CHECK(!"missing fixture", FIX "ref.safetensors");
        return harness_done("test_depth");
    }
    /* the token budget from model.pt's model_config (num_tokens_range [20, 36]) */
    int nt = 0;
    CHECK(moge_config_num_tokens(FIX "model.pt", &nt) == 0 && nt == 36,
          "model_config num_tokens %d, want 36", nt);
    nt = 0;
    CHECK(moge_config_num_tokens(FIX "model.pt:model", &nt) == 0 && nt == 36, "FILE:KEY form");
    CHECK(moge_config_num_tokens(FIX "ref.safetensors", &nt) == S3D_ENOTFOUND,
          "safetensors has no model_config");
    CHECK(moge_config_num_tokens(FIX "missing.pt", &nt) == S3D_EIO ||
          moge_config_num_tokens(FIX "missing.pt", &nt) == S3D_ENOTFOUND, "missing file");
    CHECK(moge_config_num_tokens(FIX "README.md", &nt) == S3D_EFORMAT, "not a checkpoint");

    if (runner_load(&cpu, DEVICE_HOST, DTYPE_F32, 36, 0) != 0)
        return harness_done("test_depth");
    const struct ckpt_entry *ie = ckpt_find(&ref, "image");
    ASSERT(ie && ie->ndim == 3);
    int H = (int)ie->shape[1], W = (int)ie->shape[2];
    struct moge_geom g;
    moge_geometry(&cpu.m, H, W, &g);
    printf("image %dx%d -> resized %dx%d, grid %dx%d\n", H, W, g.rh, g.rw, g.ph, g.pw);
    struct tensor img = ckpt_entry_tensor(ie);
    size_t nraw = (size_t)4 * g.rh * g.rw;
    float *raw = malloc(sizeof(float) * nraw), *raw2 = malloc(sizeof(float) * nraw);
    runner_forward(&cpu, &img, &g, raw, cmp_named, (void *)&TOL_CPU);

    /* the same image as U8 (the stage's input): (float)(v / 255.0) is the
     * fixture's float, so the output is bit-identical */
    size_t HW = (size_t)H * W;
    uint8_t *u8 = malloc(3 * HW);
    int exact = 1;
    for (size_t q = 0; q < 3 * HW; q++) {
        float v = (float)dtype_get(ie->data, ie->dtype, q);
        u8[q] = (uint8_t)lrintf(v * 255.0f);
        exact &= (float)(u8[q] / 255.0) == v;
    }
    CHECK(exact, "fixture image is u8/255");
    struct tensor img8 = tensor_view(u8, DTYPE_U8, DEVICE_HOST, SHAPE(3, H, W));
    runner_forward(&cpu, &img8, &g, raw2, NULL, NULL);
    CHECK(!memcmp(raw, raw2, sizeof(float) * nraw), "U8 input differs from its F32 form");

    /* pos-embed cache: another grid, then back: the first result again */
    struct moge_geom g2;
    cpu.m.num_tokens = 20;
    moge_geometry(&cpu.m, H, W, &g2);
    cpu.m.num_tokens = 36;
    CHECK(g2.ph != g.ph || g2.pw != g.pw, "num_tokens 20 must change the grid");
    float *raw3 = malloc(sizeof(float) * 4 * (size_t)g2.rh * g2.rw);
    runner_forward(&cpu, &img, &g2, raw3, NULL, NULL);
    CHECK(cpu.m.pos_ph == g2.ph && cpu.m.pos_pw == g2.pw, "cache follows the grid");
    runner_forward(&cpu, &img, &g, raw2, NULL, NULL);
    CHECK(!memcmp(raw, raw2, sizeof(float) * nraw), "result after a grid change differs");
    free(raw3);

    /* the encoder's blocks streamed through 2 slots (stage_blocks.h): the same raw
     * output bit for bit, twice (the second forward starts from the slots the first
     * left; a wrong slot or a stale block would change it) */
    {
        static struct runner st;
        if (runner_load(&st, DEVICE_HOST, DTYPE_F32, 36, 2) == 0) {
            for (int k = 0; k < 2; k++) {
                memset(raw2, 0, sizeof(float) * nraw);
                runner_forward(&st, &img, &g, raw2, NULL, NULL);
                CHECK(!memcmp(raw, raw2, sizeof(float) * nraw),
                      "blocks streamed through 2 slots (forward %d) = resident, bit for bit", k + 1);
            }
            CHECK(st.m.blk.slots == 2 && st.m.blk.s && st.m.blk.s->copies > 0,
                  "the blocks were copied into the slots");
            runner_free(&st);
        }
    }

    struct moge_result r;
    r.pointmap = malloc(sizeof(float) * 3 * HW);
    r.points_moge = malloc(sizeof(float) * 3 * HW);
    r.mask = malloc(HW);
    struct lm_opts lo = lm_opts_default();
    moge_postprocess(&g, raw, &lo, &r);

    /* mask: identical except where the raw output sits at the threshold */
    size_t valid, diff = mask_diff(r.mask, HW, 1e-3, &valid);
    printf("mask: %zu of %zu valid in the reference, %zu differ (at the threshold)\n", valid, HW,
           diff);
    const struct ckpt_entry *me = ckpt_find(&ref, "mask");

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

    /* the threaded full-resolution pass gives the same bits as one thread */
    {
        struct moge_geom gb = {.H = 1131, .W = 2011, .rh = 301, .rw = 517};
        size_t nb = (size_t)4 * gb.rh * gb.rw, HWb = (size_t)gb.H * gb.W;
        float *rb = malloc(sizeof(float) * nb);
        struct rng rg;
        rng_seed(&rg, 7);
        fill_normal(&rg, rb, nb, 0.5f);
        struct moge_result o[2];
        for (int k = 0; k < 2; k++) {
            o[k] = (struct moge_result){.pointmap = malloc(sizeof(float) * 3 * HWb),
                                        .mask = malloc(HWb)};
            setenv("S3D_THREADS", k ? "7" : "1", 1);
            moge_postprocess(&gb, rb, &lo, &o[k]);
        }
        unsetenv("S3D_THREADS");
        CHECK(!memcmp(o[0].mask, o[1].mask, HWb) && o[0].focal == o[1].focal &&
              o[0].shift == o[1].shift, "7 threads differ from 1 (mask, focal, shift)");
        size_t same = 0;
        for (size_t q = 0; q < 3 * HWb; q++)
            same += o[0].pointmap[q] == o[1].pointmap[q] ||
                    (isnan(o[0].pointmap[q]) && isnan(o[1].pointmap[q]));
        CHECK(same == 3 * HWb, "7 threads: %zu of %zu point coordinates differ", 3 * HWb - same,
              3 * HWb);
        printf("post-processing %dx%d: 7 threads equal 1 thread bit for bit\n", gb.W, gb.H);
        /* ... and the plain formulation bit for bit: op_resize_cpu bilinear of (4, rh, rw),
         * z = exp, (x z, y z, z + shift) flipped to (-x, -y, z) where channel 3 > 0.5, NaN
         * elsewhere (the output may not change when the pass is reorganised for speed) */
        float *up = malloc(sizeof(float) * 4 * HWb);
        struct tensor tx = tensor_view(rb, DTYPE_F32, DEVICE_HOST, SHAPE(4, gb.rh, gb.rw));
        struct tensor ty = tensor_view(up, DTYPE_F32, DEVICE_HOST, SHAPE(4, gb.H, gb.W));
        op_resize_cpu(&ty, &tx, OP_RESIZE_BILINEAR, 0.0, 0.0);
        size_t bad = 0;
        for (size_t q = 0; q < HWb; q++) {
            float z = expf(up[2 * HWb + q]), e[3] = {-(up[q] * z), -(up[HWb + q] * z),
                                                     z + o[0].shift};
            int m = up[3 * HWb + q] > 0.5f;
            bad += o[0].mask[q] != m;
            for (int c = 0; c < 3; c++)
                bad += m ? memcmp(&o[0].pointmap[3 * q + c], &e[c], sizeof(float)) != 0
                         : !isnan(o[0].pointmap[3 * q + c]);
        }
        CHECK(bad == 0, "post-processing: %zu values differ from resize + remap + flip", bad);
        free(up);
        for (int k = 0; k < 2; k++) {
            free(o[k].pointmap);
            free(o[k].mask);
        }
        free(rb);
    }

    gpu_part(&img, &g, raw, &r, 36);

    free(a);
    free(b);
    free(pr);
    free(pmr);
    free(raw);
    free(raw2);
    free(u8);
    free(r.pointmap);
    free(r.points_moge);
    free(r.mask);
    runner_free(&cpu);
    ckpt_close(&ref);
    return harness_done("test_depth");
}
