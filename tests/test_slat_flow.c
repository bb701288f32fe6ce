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
 * 3. Bad inputs: condition missing / mis-shaped, bad coordinates, a checkpoint
 *    that is not a SLAT generator.
 * 4. The fp16 path on the host against the fp32 one (loose: fp16 torso).
 * 5. GPU (skipped without one): CUDA fp32 and fp16 vs the CPU fp32 velocity.
 */
#include "harness.h"
#include "arena.h"
#include "ckpt.h"
#include "err.h"
#include "log.h"
#include "slat_flow_net/slatflow.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    struct tensor         cond;
};

static bool runner_init(struct runner *R, enum device dev, enum dtype gd, const struct tensor *coords,
                        const struct tensor *cond)
{
    int64_t N = coords->shape[0];

    memset(R, 0, sizeof(*R));
    if (slatflow_load(&R->m, CKPT, dev, gd) != 0) {
        CHECK(0, "slatflow_load %s %s", dev == DEVICE_CUDA ? "cuda" : "cpu", dtype_name(gd));
        return false;
    }
    size_t ws = dev == DEVICE_CUDA ? OP_WORKSPACE_DEFAULT : 0;
    size_t bytes = slatflow_geom_bytes(&R->m, N) + slatflow_act_bytes(&R->m, N, N, cond->shape[1]) +
                   arena_round(tensor_nbytes(cond)) + ws + ((size_t)4 << 20);
    CHECK(arena_init(&R->act, dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act", bytes) == 0);
    if (dev == DEVICE_CUDA) {
        CHECK(op_ctx_init(&R->ctx, &R->act, ws) == 0);
        R->c = &R->ctx;
    }
    slatflow_geom_build(&R->m, R->c, &R->act, coords, SLF_RESOLUTION, &R->g);
    R->cond = slatflow_put_cond(&R->m, R->c, &R->act, cond);
    return true;
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

    printf("expected errors follow:\n");
    CHECK(slatflow_check_cond(&R->m, NULL, "cond") == S3D_ENOTFOUND);
    c = tensor_view(junk, DTYPE_F32, DEVICE_HOST, SHAPE(1, 80, 32));
    CHECK(slatflow_check_cond(&R->m, &c, "cond") == S3D_ESHAPE, "wrong width");
    c = tensor_view(junk, DTYPE_F32, DEVICE_HOST, SHAPE(2, 80, 64));
    CHECK(slatflow_check_cond(&R->m, &c, "cond") == S3D_ESHAPE, "batch 2");
    c = tensor_view(junk, DTYPE_I32, DEVICE_HOST, SHAPE(1, 80, 64));
    CHECK(slatflow_check_cond(&R->m, &c, "cond") == S3D_ESHAPE, "integer");
    c = tensor_view(junk, DTYPE_F32, DEVICE_HOST, SHAPE(1, 80, 64));
    CHECK(slatflow_check_cond(&R->m, &c, "cond") == 0);

    CHECK(slatflow_check_coords(coords, SLF_RESOLUTION, "coords") == 0);
    CHECK(slatflow_check_coords(coords, 63, "coords") == S3D_ESHAPE, "odd resolution");
    CHECK(slatflow_check_coords(coords, 16, "coords") == S3D_ESHAPE, "coords out of range");
    int32_t dup[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    struct tensor d = tensor_view(dup, DTYPE_I32, DEVICE_HOST, SHAPE(2, 4));
    CHECK(slatflow_check_coords(&d, SLF_RESOLUTION, "coords") == S3D_ESHAPE, "duplicate row");
    struct tensor e = tensor_view(dup, DTYPE_I32, DEVICE_HOST, SHAPE(0, 4));
    CHECK(slatflow_check_coords(&e, SLF_RESOLUTION, "coords") == S3D_ESHAPE, "empty");

    CHECK(slatflow_load(&other, "tests/fixtures/cond_ss_tiny/ss_generator.ckpt", DEVICE_HOST,
                        DTYPE_F32) == S3D_ENOTFOUND, "an SS generator is not a SLAT generator");
    CHECK(slatflow_load(&other, DIR "/eval.safetensors", DEVICE_HOST, DTYPE_F32) < 0,
          "not a checkpoint of weights");
    CHECK(slatflow_load(&other, DIR "/missing.ckpt", DEVICE_HOST, DTYPE_F32) < 0, "no file");
    printf("(end of expected errors)\n");
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

    if (runner_init(&R, DEVICE_HOST, DTYPE_F32, &coords, &cond)) {
        const struct slatflow_config *g = &R.m.cfg;
        printf("config: width %d, %d heads, %d blocks, MLP %d, io %d, cond %d, %d -> %d; "
               "%lld sites -> %lld tokens; t*1000 = %g\n", g->dim, g->heads, g->depth, g->mlp,
               g->io, g->cond_dim, g->in_ch, g->out_ch, (long long)R.g.n, (long long)R.g.m,
               (double)t);
        CHECK(g->dim == 64 && g->heads == 1 && g->depth == 2 && g->mlp == 128 && g->io == 32 &&
              g->cond_dim == 64 && g->in_ch == 8 && g->out_ch == 8);
        CHECK(R.g.n == 239 && R.g.m == 67, "README: 239 voxels, 67 tokens");
        CHECK(slatflow_check_cond(&R.m, &cond, "cond") == 0);
        vcond = fbuf(N * g->out_ch);
        test_eval(&R, &E, &x, t, vcond);
        test_bad(&R, &coords);
        printf("  cpu f32: activation arena peak %.3f MB of %.3f MB\n", R.act.high_water / 1e6,
               R.act.size / 1e6);
        runner_free(&R);
    }

    /* 4. the fp16 path on the host */
    if (vcond && runner_init(&R, DEVICE_HOST, DTYPE_F16, &coords, &cond)) {
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
            if (!runner_init(&R, DEVICE_CUDA, gdts[i], &coords, &cond))
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
    return harness_done("test_slat_flow");
}
