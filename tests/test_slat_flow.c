/*
 * test_slat_flow.c - one evaluation of the SLAT flow network
 * (stages/slat_flow_net/) against the official module on the tiny fixture
 * (tests/fixtures/slat_flow_tiny, tools/ref/dump_slat_flow.py: width 64,
 * 1 head, 2 blocks, io channels 32, MLP ratio 2, cond width 64 x 80 tokens,
 * 239 voxels at 64^3 -> 67 tokens at 32^3).
 *
 * 1. Config detection from the checkpoint.
 * 2. CPU fp32, conditional pass: every activation the fixture holds (input
 *    layer, t embedding, res-block convs/skip/outputs, the APE'd tokens, the
 *    sub-modules of block 0, both block outputs, out blocks, the velocity);
 *    unconditional pass (condition x 0): t embedding and velocity; control:
 *    the two passes differ.
 *    The condition's K/V projected once (slatflow_put_cond with cache_kv):
 *    the same bytes as projecting it in the evaluation.
 * 3. Bad inputs: condition missing / mis-shaped, bad coordinates (outside the
 *    grid, duplicated, none, above the 42,000 ceiling), a checkpoint that is
 *    not a SLAT generator.
 * 4. The fp16 path on the host against the fp32 one (loose: fp16 torso).
 * 5. GPU (skipped without one): CUDA fp32 and fp16 vs the CPU fp32 velocity.
 * 6. The sampler (sampler.safetensors: the official 25-step run, CFG 1 on
 *    steps 0-12, 38 evaluations, from recorded noise): the t grid bit for
 *    bit, the evaluation count; a free run from the same noise against the
 *    official final sample; a replay (the official velocity fed into each
 *    update) comparing every step's velocity and state; the de-normalisation
 *    and its constants; the seeded noise's determinism; on a GPU the CUDA
 *    sampler in fp32 and fp16 against the CPU one.
 */
#include "harness.h"
#include "arena.h"
#include "ckpt_testutil.h"
#include "ckpt.h"
#include "err.h"
#include "log.h"
#include "slat_flow_net/slatflow.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIR  "tests/fixtures/slat_flow_tiny"
#define CKPT DIR "/slat_generator.ckpt"

/* fp32 CPU vs PyTorch CPU fp32: summation order only (rel L2 <= 1e-4). */
static const double ATOL = 1e-5, RTOL = 1e-4, NMSE = 1e-8;
/* CUDA fp32 vs CPU: order only; fp16 torso vs fp32. */
static const double GPU32_NMSE = 1e-10, F16_NMSE = 1e-4;

static const struct tensor *ref(const struct ckpt *r, const char *name, struct tensor *buf)
{
    const struct ckpt_entry *e = ckpt_find(r, name);

    CHECK(e != NULL, "fixture tensor %s", name);
    if (!e)
        return NULL;
    *buf = ckpt_entry_tensor(e);
    return buf;
}

/* Compare n floats at out with the whole fixture tensor name. */
static void cmp_ref(const struct ckpt *r, const char *name, const float *out, int64_t n)
{
    struct tensor t;
    char lab[160];

    if (!ref(r, name, &t))
        return;
    CHECK(t.dtype == DTYPE_F32 && tensor_numel(&t) == n, "%s size", name);
    if (tensor_numel(&t) != n)
        return;
    snprintf(lab, sizeof(lab), "%-36s", name);
    report_cmp(lab, compare_f32(out, (const float *)t.data, (size_t)n, ATOL, RTOL, NMSE));
}

/* Everything one device/precision needs to evaluate the model. */
struct runner {
    struct slatflow_model m;
    struct arena          act;
    struct op_ctx         ctx;
    const struct op_ctx   *c;
    struct slatflow_geom  g;
    struct slatflow_cond  cond;
};

/* ckpt: CKPT, or the deeper copy of test_stream; slots: slatflow_load's stream_slots. */
static bool runner_load(struct runner *R, enum device dev, enum dtype gd, const struct tensor *coords,
                        const struct tensor *cond, bool cache_kv, const char *ckpt, int slots)
{
    int64_t N = coords->shape[0];

    memset(R, 0, sizeof(*R));
    if (slatflow_load(&R->m, ckpt, dev, gd, slots) != 0) {
        CHECK(0, "slatflow_load %s %s", dev == DEVICE_CUDA ? "cuda" : "cpu", dtype_name(gd));
        return false;
    }
    size_t ws = dev == DEVICE_CUDA ? OP_WORKSPACE_DEFAULT : 0;
    int64_t M = slatflow_parents(coords, SLF_RESOLUTION);
    size_t bytes = slatflow_sample_bytes(&R->m, N, M, cond->shape[1], cache_kv) +
                   slatflow_geom_bytes(&R->m, N, M) + slatflow_cond_bytes(&R->m, cond->shape[1], cache_kv) +
                   ws + ((size_t)4 << 20);
    CHECK(arena_init(&R->act, dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act", bytes) == 0);
    if (dev == DEVICE_CUDA) {
        CHECK(op_ctx_init(&R->ctx, &R->act, ws) == 0);
        R->c = &R->ctx;
    }
    slatflow_geom_build(&R->m, R->c, &R->act, coords, SLF_RESOLUTION, &R->g);
    slatflow_put_cond(&R->m, R->c, &R->act, cond, cache_kv, &R->cond);
    return true;
}

static bool runner_init(struct runner *R, enum device dev, enum dtype gd, const struct tensor *coords,
                        const struct tensor *cond, bool cache_kv)
{
    return runner_load(R, dev, gd, coords, cond, cache_kv, CKPT, 0);
}

static void runner_free(struct runner *R)
{
    if (R->c)
        op_ctx_free(&R->ctx);
    arena_free(&R->act);
    slatflow_free(&R->m);
}

static float *fbuf(int64_t n)
{
    float *p = calloc((size_t)n, sizeof(float));
    ASSERT(p);
    return p;
}

/* v (N, out) of one evaluation; cond: the runner's condition or uncond. */
static void eval_once(struct runner *R, const struct tensor *x, float t, bool cond, float *v,
                      const struct slatflow_taps *taps)
{
    struct tensor tv = tensor_view(v, DTYPE_F32, DEVICE_HOST, SHAPE(R->g.n, R->m.cfg.out_ch));
    struct tensor x2 = tensor_reshape(x, SHAPE(R->g.n, R->m.cfg.in_ch));

    slatflow_forward(&R->m, R->c, &R->act, &R->g, &x2, t, cond ? &R->cond : NULL, &tv, taps);
    CHECK(R->act.high_water <= R->act.size);
}

// ----------------------------------------------------------------------------
// 2. one evaluation on the CPU

static void test_eval(struct runner *R, const struct ckpt *E, const struct tensor *x, float t,
                      float *vcond)
{
    const struct slatflow_config *g = &R->m.cfg;
    int64_t N = R->g.n, M = R->g.m, C = g->dim, c0 = g->io, nv = N * g->out_ch;
    float *te = fbuf(C), *il = fbuf(N * c0), *i0c1 = fbuf(N * c0), *i0c2 = fbuf(N * c0);
    float *i0 = fbuf(N * c0), *i1c1 = fbuf(M * C), *i1sk = fbuf(M * C), *i1 = fbuf(M * C);
    float *tok = fbuf(M * C), *sa = fbuf(M * C), *ca = fbuf(M * C), *ml = fbuf(M * C);
    float *b0 = fbuf(M * C), *b1 = fbuf(M * C), *o0c1 = fbuf(N * c0), *o0 = fbuf(N * c0);
    float *o1 = fbuf(N * c0), *vu = fbuf(nv), *v2 = fbuf(nv);
    struct slatflow_taps tp = {.block = 0, .input_layer = il, .t_emb = te, .ib0_conv1 = i0c1,
                               .ib0_conv2 = i0c2, .ib0 = i0, .ib1_conv1 = i1c1, .ib1_skip = i1sk,
                               .ib1 = i1, .tokens_ape = tok, .self_attn = sa, .cross_attn = ca,
                               .mlp = ml, .block_out = b0, .ob0_conv1 = o0c1, .ob0 = o0, .ob1 = o1};

    eval_once(R, x, t, true, vcond, &tp);
    cmp_ref(E, "cond.input_layer", il, N * c0);
    cmp_ref(E, "cond.t_embedder", te, C);
    cmp_ref(E, "cond.input_blocks.0.conv1", i0c1, N * c0);
    cmp_ref(E, "cond.input_blocks.0.conv2", i0c2, N * c0);
    cmp_ref(E, "cond.input_blocks.0", i0, N * c0);
    cmp_ref(E, "cond.input_blocks.1.conv1", i1c1, M * C);
    cmp_ref(E, "cond.input_blocks.1.skip_connection", i1sk, M * C);
    cmp_ref(E, "cond.input_blocks.1", i1, M * C);
    cmp_ref(E, "cond.tokens_ape", tok, M * C);
    cmp_ref(E, "cond.blocks.0.self_attn", sa, M * C);
    cmp_ref(E, "cond.blocks.0.cross_attn", ca, M * C);
    cmp_ref(E, "cond.blocks.0.mlp", ml, M * C);
    cmp_ref(E, "cond.blocks.0", b0, M * C);
    cmp_ref(E, "cond.out_blocks.0.conv1", o0c1, N * c0);
    cmp_ref(E, "cond.out_blocks.0", o0, N * c0);
    cmp_ref(E, "cond.out_blocks.1", o1, N * c0);
    cmp_ref(E, "cond.out_layer", vcond, nv);
    cmp_ref(E, "cond.v", vcond, nv);

    /* the last block's output (taps of block 1) and determinism */
    if (g->depth >= 2) {
        struct slatflow_taps t1 = {.block = 1, .block_out = b1};
        eval_once(R, x, t, true, v2, &t1);
        cmp_ref(E, "cond.blocks.1", b1, M * C);
        CHECK(memcmp(v2, vcond, sizeof(float) * (size_t)nv) == 0, "same input, same bytes");
    }

    /* the unconditional pass: condition x 0 */
    struct slatflow_taps tu = {.block = -1, .t_emb = te};
    eval_once(R, x, t, false, vu, &tu);
    cmp_ref(E, "uncond.t_embedder", te, C);
    cmp_ref(E, "uncond.v", vu, nv);
    struct cmp cc = compare_f32(vu, vcond, (size_t)nv, ATOL, RTOL, NMSE);
    printf("control: uncond vs cond velocities rel_l2 %.2e (must differ)\n", cc.rel_l2);
    CHECK(!cc.ok && cc.rel_l2 > 1e-2);

    free(te), free(il), free(i0c1), free(i0c2), free(i0), free(i1c1), free(i1sk), free(i1);
    free(tok), free(sa), free(ca), free(ml), free(b0), free(b1), free(o0c1), free(o0), free(o1);
    free(vu), free(v2);
}

// ----------------------------------------------------------------------------
// 3. bad inputs

static void test_bad(struct runner *R, const struct tensor *coords)
{
    struct slatflow_model other;
    float junk[2 * 80 * 64] = {0};
    struct tensor c;

    char err[512];

    printf("expected errors follow:\n");
    CHECK(slatflow_check_cond(&R->m, NULL, "cond", NULL, 0) == S3D_ENOTFOUND);
    c = tensor_view(junk, DTYPE_F32, DEVICE_HOST, SHAPE(1, 80, 32));
    CHECK(slatflow_check_cond(&R->m, &c, "cond", err, sizeof(err)) == S3D_ESHAPE, "wrong width");
    CHECK(strstr(err, "[1,80,32]") && strstr(err, "[1,N,64]"), "names got and expected: %s", err);
    c = tensor_view(junk, DTYPE_F32, DEVICE_HOST, SHAPE(2, 80, 64));
    CHECK(slatflow_check_cond(&R->m, &c, "cond", NULL, 0) == S3D_ESHAPE, "batch 2");
    c = tensor_view(junk, DTYPE_I32, DEVICE_HOST, SHAPE(1, 80, 64));
    CHECK(slatflow_check_cond(&R->m, &c, "cond", NULL, 0) == S3D_ESHAPE, "integer");
    c = tensor_view(junk, DTYPE_F32, DEVICE_HOST, SHAPE(1, 80, 64));
    CHECK(slatflow_check_cond(&R->m, &c, "cond", NULL, 0) == 0);

    CHECK(slatflow_check_coords(coords, SLF_RESOLUTION, "coords", NULL, 0) == 0);
    CHECK(slatflow_check_coords(coords, 63, "coords", NULL, 0) == S3D_ESHAPE, "odd resolution");
    CHECK(slatflow_check_coords(coords, 16, "coords", err, sizeof(err)) == S3D_ESHAPE,
          "coords out of range");
    CHECK(strstr(err, "outside the 16^3 grid") != NULL, "%s", err);
    int32_t dup[12] = {0, 1, 2, 3, 0, 5, 6, 7, 0, 1, 2, 3};
    struct tensor d = tensor_view(dup, DTYPE_I32, DEVICE_HOST, SHAPE(3, 4));
    CHECK(slatflow_check_coords(&d, SLF_RESOLUTION, "coords", err, sizeof(err)) == S3D_ESHAPE,
          "duplicate row");
    CHECK(strstr(err, "rows 0 and 2 are both (0, 1, 2, 3)") != NULL, "%s", err);
    dup[4] = 1;
    CHECK(slatflow_check_coords(&d, SLF_RESOLUTION, "coords", err, sizeof(err)) == S3D_ESHAPE,
          "batch 1");
    CHECK(strstr(err, "row 1 is (1, 5, 6, 7)") != NULL, "%s", err);
    struct tensor e = tensor_view(dup, DTYPE_I32, DEVICE_HOST, SHAPE(0, 4));
    CHECK(slatflow_check_coords(&e, SLF_RESOLUTION, "coords", err, sizeof(err)) == S3D_ESHAPE,
          "empty");
    CHECK(strstr(err, "no voxel") != NULL, "%s", err);
    /* one voxel more than the ceiling (the rows need not be valid: the count is checked first) */
    int32_t *big = calloc((size_t)(SLF_MAX_VOXELS + 1) * 4, sizeof(int32_t));
    ASSERT(big);
    struct tensor b = tensor_view(big, DTYPE_I32, DEVICE_HOST, SHAPE(SLF_MAX_VOXELS + 1, 4));
    CHECK(slatflow_check_coords(&b, SLF_RESOLUTION, "coords", err, sizeof(err)) == S3D_ESHAPE,
          "above the ceiling");
    CHECK(strstr(err, "42001 voxels, above the limit of 42000") != NULL, "%s", err);
    /* the ceiling itself is accepted: 42,000 distinct voxels */
    b = tensor_view(big, DTYPE_I32, DEVICE_HOST, SHAPE(SLF_MAX_VOXELS, 4));
    for (int i = 0; i < SLF_MAX_VOXELS; i++) {
        big[4 * i + 1] = i / 4096;
        big[4 * i + 2] = i / 64 % 64;
        big[4 * i + 3] = i % 64;
    }
    CHECK(slatflow_check_coords(&b, SLF_RESOLUTION, "coords", NULL, 0) == 0, "42,000 voxels");
    /* x 0..9 full (parents 5 x 32 x 32), x = 10: y 0..15 full (8 x 32), y = 16: z 0..15 (8) */
    CHECK(slatflow_parents(&b, SLF_RESOLUTION) == 5 * 32 * 32 + 8 * 32 + 8, "parents of 42,000");
    CHECK(slatflow_parents(coords, SLF_RESOLUTION) == 67, "the fixture's 67 tokens");
    free(big);

    CHECK(slatflow_load(&other, "tests/fixtures/cond_ss_tiny/ss_generator.ckpt", DEVICE_HOST,
                        DTYPE_F32, 0) == S3D_ENOTFOUND, "an SS generator is not a SLAT generator");
    CHECK(slatflow_load(&other, DIR "/eval.safetensors", DEVICE_HOST, DTYPE_F32, 0) < 0,
          "not a checkpoint of weights");
    CHECK(slatflow_load(&other, DIR "/missing.ckpt", DEVICE_HOST, DTYPE_F32, 0) < 0, "no file");
    printf("(end of expected errors)\n");
}

// ----------------------------------------------------------------------------
// 6. the sampler

/* Per-step checks against sampler.safetensors (a slatflow_step_fn). */
struct steps {
    const struct ckpt *S;
    bool   replay;          /* feed the official velocity into each update */
    int    seen, cfg_steps;
    double worst_v, worst_x;   /* largest rel L2 of v_k / x_k against the official */
};

static void on_step(void *user, int k, float t1000, bool cfg, const struct tensor *x,
                    struct tensor *v)
{
    struct steps *st = user;
    char name[48];
    struct tensor r;
    int64_t n = tensor_numel(v);

    st->seen++;
    st->cfg_steps += cfg;
    snprintf(name, sizeof(name), "step.%d.t", k);
    if (ref(st->S, name, &r))
        CHECK(*(const float *)r.data == t1000, "step %d: t*1000 %.9g vs official %.9g", k,
              (double)t1000, (double)*(const float *)r.data);
    CHECK(cfg == (k <= 12), "step %d: CFG %s (official: steps 0-12)", k, cfg ? "on" : "off");
    snprintf(name, sizeof(name), "step.%d.x", k);
    if (ref(st->S, name, &r) && tensor_numel(&r) == n) {
        struct cmp c = compare_f32(x->data, r.data, (size_t)n, -1, -1, -1);
        st->worst_x = c.rel_l2 > st->worst_x ? c.rel_l2 : st->worst_x;
    }
    snprintf(name, sizeof(name), "step.%d.v", k);
    if (ref(st->S, name, &r) && tensor_numel(&r) == n) {
        struct cmp c = compare_f32(v->data, r.data, (size_t)n, -1, -1, -1);
        st->worst_v = c.rel_l2 > st->worst_v ? c.rel_l2 : st->worst_v;
        if (st->replay)
            memcpy(v->data, r.data, sizeof(float) * (size_t)n);
    }
}

/* Run the sampler on R from noise into x (N, 8); returns the evaluation count. */
static int run_sampler(struct runner *R, const struct tensor *coords, const struct tensor *cond,
                       const struct tensor *noise, float *x, struct steps *st)
{
    int64_t N = coords->shape[0];
    struct slatflow_sampler sp;
    float *vbuf = fbuf(2 * N * SLF_LATENT);
    struct tensor tx = tensor_view(x, DTYPE_F32, DEVICE_HOST, SHAPE(N, SLF_LATENT));

    slatflow_sampler_defaults(&sp);
    sp.cache_kv = R->cond.kv.data != NULL;
    memcpy(x, noise->data, sizeof(float) * (size_t)(N * SLF_LATENT));
    size_t before = R->act.used;
    int evals = slatflow_sample(&R->m, R->c, &R->act, coords, cond, &tx, vbuf, &sp,
                                st ? on_step : NULL, st);
    CHECK(R->act.used == before, "the sampler released the arena to its mark");
    CHECK(R->act.high_water <= R->act.size);
    free(vbuf);
    return evals;
}

/* 7. blocks streamed from host memory (common/stage_blocks.h): a 5-block copy
 * of the fixture (block i = block 0 x (1 + i/8)); the sampler's final latents
 * with the blocks resident, streamed through 2 slots, and through 3 slots with
 * the K/V cache (its projection walks the blocks too) are the same bytes. */
static void test_stream(const struct ckpt *S, const char *deep, enum device dev, enum dtype gd)
{
    const int slots[3] = {0, 2, 3};
    struct tensor coords, cond, noise;
    float *first = NULL;

    if (!ref(S, "coords", &coords) || !ref(S, "cond", &cond) || !ref(S, "noise", &noise))
        return;
    int64_t n = coords.shape[0] * SLF_LATENT;
    for (int r = 0; r < 3; r++) {
        struct runner *R = calloc(1, sizeof(*R));
        float *x = fbuf(n);

        ASSERT(R);
        if (!runner_load(R, dev, gd, &coords, &cond, slots[r] == 3, deep, slots[r])) {
            free(R);
            free(x);
            break;
        }
        CHECK(R->m.cfg.depth == 5 && R->m.blk.slots == slots[r]);
        int ev = run_sampler(R, &coords, &cond, &noise, x, NULL);
        long long copies = R->m.blk.s ? R->m.blk.s->copies : 0;
        /* a CFG step's two evaluations (slatflow_forward_cfg: the transformer block by
         * block for both) = two slatflow_forward, bytes */
        {
            int64_t nv = R->g.n * R->m.cfg.out_ch;
            float *a = fbuf(nv), *u = fbuf(nv), *ja = fbuf(nv), *ju = fbuf(nv);
            struct tensor tx = tensor_view(noise.data, DTYPE_F32, DEVICE_HOST,
                                           SHAPE(R->g.n, R->m.cfg.in_ch));
            struct tensor ta = tensor_view(a, DTYPE_F32, DEVICE_HOST, SHAPE(R->g.n, R->m.cfg.out_ch));
            struct tensor tu = tensor_view(u, DTYPE_F32, DEVICE_HOST, SHAPE(R->g.n, R->m.cfg.out_ch));
            struct tensor tja = tensor_view(ja, DTYPE_F32, DEVICE_HOST, SHAPE(R->g.n, R->m.cfg.out_ch));
            struct tensor tju = tensor_view(ju, DTYPE_F32, DEVICE_HOST, SHAPE(R->g.n, R->m.cfg.out_ch));
            slatflow_forward(&R->m, R->c, &R->act, &R->g, &tx, 400.0f, &R->cond, &ta, NULL);
            slatflow_forward(&R->m, R->c, &R->act, &R->g, &tx, 400.0f, NULL, &tu, NULL);
            slatflow_forward_cfg(&R->m, R->c, &R->act, &R->g, &tx, 400.0f, &R->cond, &tja, &tju);
            CHECK(memcmp(a, ja, sizeof(float) * (size_t)nv) == 0 &&
                  memcmp(u, ju, sizeof(float) * (size_t)nv) == 0,
                  "%d slots: slatflow_forward_cfg = two slatflow_forward, bytes", slots[r]);
            CHECK(R->act.high_water <= R->act.size);
            free(a), free(u), free(ja), free(ju);
        }
        printf("%s %s, 5 blocks, %s: %d evaluations, %lld block copies\n",
               dev == DEVICE_CUDA ? "cuda" : "cpu", dtype_name(gd),
               slots[r] ? (slots[r] == 2 ? "streamed through 2 slots" :
                           "streamed through 3 slots, K/V cached") : "resident", ev, copies);
        /* each pass over the blocks (a step: its one or two evaluations go through the
         * blocks together; the K/V projection of runner_load and of the sampler) copies
         * every block once, and the last one fetches the first k - 1 of the next */
        int steps = ev - 13;                            /* 38 evaluations: 13 with CFG */
        CHECK(!slots[r] || copies == 5LL * (steps + 2 * (slots[r] == 3)) + slots[r] - 1,
              "block copies %lld", copies);
        if (!first) {
            first = x;
        } else {
            CHECK(memcmp(x, first, sizeof(float) * (size_t)n) == 0,
                  "%s %s, %d slots: the resident run's bytes", dev == DEVICE_CUDA ? "cuda" : "cpu",
                  dtype_name(gd), slots[r]);
            free(x);
        }
        runner_free(R);
        free(R);
    }
    free(first);
}

static void test_sampler(void)
{
    struct ckpt S;
    struct runner R;
    struct tensor coords, cond, noise, tseq, fin, feats, mean, sd;

    printf("\n6. sampler (sampler.safetensors: 25 steps, CFG 1 on [0, 500])\n");
    if (ckpt_open(&S, DIR "/sampler.safetensors", 0)) {
        CHECK(0, "fixture unreadable (tools/ref/dump_slat_flow.py --size tiny)");
        return;
    }
    if (!ref(&S, "coords", &coords) || !ref(&S, "cond", &cond) || !ref(&S, "noise", &noise) ||
        !ref(&S, "t_seq", &tseq) || !ref(&S, "final", &fin) || !ref(&S, "slat_feats", &feats) ||
        !ref(&S, "slat_mean", &mean) || !ref(&S, "slat_std", &sd)) {
        ckpt_close(&S);
        return;
    }
    int64_t N = coords.shape[0], n = N * SLF_LATENT;
    struct slatflow_sampler sp;

    /* the grid and the evaluation count */
    slatflow_sampler_defaults(&sp);
    CHECK(tensor_numel(&tseq) == sp.steps + 1);
    int grid_ok = 0;
    for (int k = 0; k <= sp.steps && k < tensor_numel(&tseq); k++)
        grid_ok += slatflow_time(&sp, k) == ((const float *)tseq.data)[k];
    CHECK(grid_ok == sp.steps + 1, "t grid equals torch.linspace(0, 1, 26) bit for bit (%d/26)",
          grid_ok);
    CHECK(slatflow_evals(&sp) == 38, "38 evaluations at the defaults (got %d)",
          slatflow_evals(&sp));
    sp.cfg = 0;
    CHECK(slatflow_evals(&sp) == 25, "no CFG: 25 evaluations");

    /* the de-normalisation: the released constants and the fixture's feats */
    CHECK(memcmp(mean.data, slatflow_slat_mean, sizeof(slatflow_slat_mean)) == 0 &&
          memcmp(sd.data, slatflow_slat_std, sizeof(slatflow_slat_std)) == 0,
          "slat_mean / slat_std equal pipeline.yaml's");
    float *out = fbuf(n), *x = fbuf(n), *xref = fbuf(n);
    struct tensor tf = tensor_view(fin.data, DTYPE_F32, DEVICE_HOST, SHAPE(N, SLF_LATENT));
    struct tensor to = tensor_view(out, DTYPE_F32, DEVICE_HOST, SHAPE(N, SLF_LATENT));
    slatflow_denorm(&to, &tf);
    report_cmp("denorm(official final) vs official slat_feats",
               compare_f32(out, feats.data, (size_t)n, 0, 0, -1));

    /* CPU fp32: free run and replay */
    if (runner_init(&R, DEVICE_HOST, DTYPE_F32, &coords, &cond, true)) {
        struct steps st = {.S = &S};
        int evals = run_sampler(&R, &coords, &cond, &noise, x, &st);
        CHECK(evals == 38 && st.seen == 25 && st.cfg_steps == 13, "38 evaluations, 13 CFG steps");
        printf("free run: worst step rel L2 v %.2e, x %.2e\n", st.worst_v, st.worst_x);
        CHECK(st.worst_v < 1e-4 && st.worst_x < 1e-4, "every step within 1e-4 (rel L2)");
        report_cmp("cpu f32 sampler final vs official",
                   compare_f32(x, fin.data, (size_t)n, 1e-4, 1e-4, 1e-9));
        memcpy(xref, x, sizeof(float) * (size_t)n);

        struct steps rp = {.S = &S, .replay = true};
        float *x2 = fbuf(n);
        run_sampler(&R, &coords, &cond, &noise, x2, &rp);
        printf("replay: worst step rel L2 v %.2e, x %.2e\n", rp.worst_v, rp.worst_x);
        CHECK(rp.worst_x == 0.0, "replayed velocities: every x_k equals the official bit for bit");
        report_cmp("replayed sampler final vs official",
                   compare_f32(x2, fin.data, (size_t)n, 0, 0, -1));
        free(x2);
        runner_free(&R);
    }

    /* the same sample without the K/V cache (bytes) */
    if (runner_init(&R, DEVICE_HOST, DTYPE_F32, &coords, &cond, false)) {
        run_sampler(&R, &coords, &cond, &noise, x, NULL);
        CHECK(memcmp(x, xref, sizeof(float) * (size_t)n) == 0, "K/V per evaluation: same bytes");
        runner_free(&R);
    }

    /* the seeded noise: deterministic, N(0, 1)-like, seeds differ */
    struct tensor ta = tensor_view(x, DTYPE_F32, DEVICE_HOST, SHAPE(N, SLF_LATENT));
    struct tensor tb = tensor_view(out, DTYPE_F32, DEVICE_HOST, SHAPE(N, SLF_LATENT));
    slatflow_noise(42, &ta);
    slatflow_noise(42, &tb);
    CHECK(memcmp(x, out, sizeof(float) * (size_t)n) == 0, "seed 42 twice: same noise");
    double m1 = 0, m2 = 0;
    for (int64_t i = 0; i < n; i++)
        m1 += x[i], m2 += (double)x[i] * x[i];
    m1 /= (double)n, m2 = m2 / (double)n - m1 * m1;
    printf("noise seed 42: mean %.3f, variance %.3f over %lld values\n", m1, m2, (long long)n);
    CHECK(fabs(m1) < 0.1 && fabs(m2 - 1.0) < 0.15, "N(0, 1)");
    slatflow_noise(43, &tb);
    CHECK(memcmp(x, out, sizeof(float) * (size_t)n) != 0, "seed 43 differs");

    /* GPU: the CUDA sampler in fp32 and fp16 against the CPU fp32 one */
    if (s3d_cuda_available()) {
        const enum dtype gdts[2] = {DTYPE_F32, DTYPE_F16};
        const double tol[2] = {1e-8, 1e-4};
        for (int i = 0; i < 2; i++) {
            char lab[96];
            if (!runner_init(&R, DEVICE_CUDA, gdts[i], &coords, &cond, true))
                continue;
            run_sampler(&R, &coords, &cond, &noise, x, NULL);
            snprintf(lab, sizeof(lab), "cuda %s sampler final vs cpu f32", dtype_name(gdts[i]));
            report_cmp(lab, compare_f32(x, xref, (size_t)n, -1, -1, tol[i]));
            runner_free(&R);
        }
    } else {
        printf("GPU sampler skipped: no CUDA device on this machine\n");
    }
    free(out), free(x), free(xref);

    char dir[] = "/tmp/s3d_slf_deep_XXXXXX", deep[64];
    CHECK(mkdtemp(dir) != NULL);
    if (dir[strlen(dir) - 1] != 'X') {
        snprintf(deep, sizeof(deep), "%s/deep.safetensors", dir);
        CHECK(deepen_blocks(CKPT, "state_dict", SLF_PREFIX, 5, deep) == 0);
        test_stream(&S, deep, DEVICE_HOST, DTYPE_F32);   /* (the host sampler is fp32 only) */
        if (s3d_cuda_available())
            test_stream(&S, deep, DEVICE_CUDA, DTYPE_F16);
        unlink(deep);
        rmdir(dir);
    }
    ckpt_close(&S);
}

int main(void)
{
    struct ckpt E;
    struct runner R;
    struct tensor coords, x, tt, cond;
    float *vcond = NULL;

    log_init("test_slat_flow");
    if (ckpt_open(&E, DIR "/eval.safetensors", 0)) {
        CHECK(0, "fixture unreadable (tools/ref/dump_slat_flow.py --size tiny)");
        return harness_done("test_slat_flow");
    }
    if (!ref(&E, "coords", &coords) || !ref(&E, "x", &x) || !ref(&E, "t", &tt) ||
        !ref(&E, "cond", &cond)) {
        ckpt_close(&E);
        return harness_done("test_slat_flow");
    }
    float t = *(const float *)tt.data;
    int64_t N = coords.shape[0];

    if (runner_init(&R, DEVICE_HOST, DTYPE_F32, &coords, &cond, false)) {
        const struct slatflow_config *g = &R.m.cfg;
        printf("config: width %d, %d heads, %d blocks, MLP %d, io %d, cond %d, %d -> %d; "
               "%lld sites -> %lld tokens; t*1000 = %g\n", g->dim, g->heads, g->depth, g->mlp,
               g->io, g->cond_dim, g->in_ch, g->out_ch, (long long)R.g.n, (long long)R.g.m,
               (double)t);
        CHECK(g->dim == 64 && g->heads == 1 && g->depth == 2 && g->mlp == 128 && g->io == 32 &&
              g->cond_dim == 64 && g->in_ch == 8 && g->out_ch == 8);
        CHECK(R.g.n == 239 && R.g.m == 67, "README: 239 voxels, 67 tokens");
        CHECK(slatflow_check_cond(&R.m, &cond, "cond", NULL, 0) == 0);
        vcond = fbuf(N * g->out_ch);
        test_eval(&R, &E, &x, t, vcond);
        runner_free(&R);
        /* the K/V projected once per request: the same bytes */
        if (runner_init(&R, DEVICE_HOST, DTYPE_F32, &coords, &cond, true)) {
            float *v = fbuf(N * R.m.cfg.out_ch);
            CHECK(R.cond.kv.data != NULL && R.cond.kv.shape[0] == 2 && R.cond.kv.shape[1] == 80 &&
                  R.cond.kv.shape[2] == 128, "K/V cache (depth, Nc, 2C)");
            eval_once(&R, &x, t, true, v, NULL);
            CHECK(memcmp(v, vcond, sizeof(float) * (size_t)(N * g->out_ch)) == 0,
                  "cached K/V: the same velocity bytes");
            free(v);
            test_bad(&R, &coords);
            printf("  cpu f32: activation arena peak %.3f MB of %.3f MB\n",
                   R.act.high_water / 1e6, R.act.size / 1e6);
            runner_free(&R);
        }
    }

    /* 4. the fp16 path on the host */
    if (vcond && runner_init(&R, DEVICE_HOST, DTYPE_F16, &coords, &cond, true)) {
        float *v = fbuf(N * R.m.cfg.out_ch);
        eval_once(&R, &x, t, true, v, NULL);
        report_cmp("cpu f16 cond velocity vs cpu f32",
                   compare_f32(v, vcond, (size_t)(N * R.m.cfg.out_ch), -1, -1, F16_NMSE));
        free(v);
        runner_free(&R);
    }

    /* 5. GPU */
    if (!s3d_cuda_available()) {
        const char *req = getenv("S3D_REQUIRE_GPU");
        CHECK(!(req && !strcmp(req, "1")), "S3D_REQUIRE_GPU=1 but no CUDA device");
        printf("GPU part skipped: no CUDA device on this machine\n");
    } else if (vcond) {
        const enum dtype gdts[2] = {DTYPE_F32, DTYPE_F16};
        for (int i = 0; i < 2; i++) {
            char lab[96];
            if (!runner_init(&R, DEVICE_CUDA, gdts[i], &coords, &cond, i == 1))
                continue;
            float *v = fbuf(N * R.m.cfg.out_ch);
            eval_once(&R, &x, t, true, v, NULL);
            snprintf(lab, sizeof(lab), "cuda %s cond velocity vs cpu f32", dtype_name(gdts[i]));
            report_cmp(lab, compare_f32(v, vcond, (size_t)(N * R.m.cfg.out_ch), -1, -1,
                                        i ? F16_NMSE : GPU32_NMSE));
            printf("  cuda %s: activation arena peak %.3f MB of %.3f MB\n", dtype_name(gdts[i]),
                   R.act.high_water / 1e6, R.act.size / 1e6);
            free(v);
            runner_free(&R);
        }
    }
    free(vcond);
    ckpt_close(&E);
    test_sampler();
    return harness_done("test_slat_flow");
}
