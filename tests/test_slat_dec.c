/*
 * test_slat_dec.c - the SLAT decoder trunk (stages/slat_dec_net/) against the
 * official SLatGaussianDecoder's trunk on the tiny fixture
 * (tests/fixtures/gs_decoder_tiny/g32, tools/ref/dump_gs_decoder.py: width
 * 128, 2 heads, 2 blocks (unshifted and shifted windows), MLP 256, 125
 * voxels whose windows hold 1 to 74 tokens).
 *
 * 1. Config detection from the checkpoint; bad inputs (coords, checkpoints).
 * 2. CPU fp32: input_layer, tokens_ape, and per block the attention output,
 *    the MLP output and the block output; the fused path (no taps) gives the
 *    same last block within fp32 rounding; the MLP in 48-row chunks (3
 *    chunks) gives the same bytes as in one.
 * 3. The fp16 path on the host against the fp32 one.
 * 4. GPU (skipped without one): CUDA fp32 and fp16 against the CPU fp32 output.
 */
#include "harness.h"
#include "arena.h"
#include "check.h"
#include "ckpt.h"
#include "err.h"
#include "log.h"
#include "slat_dec_net/slatdec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR  "tests/fixtures/gs_decoder_tiny/g32"
#define CKPT DIR "/slat_decoder_gs.ckpt"

/* fp32 CPU vs PyTorch CPU fp32: summation order only. */
static const double ATOL = 1e-5, RTOL = 1e-4, NMSE = 1e-9;
/* CUDA fp32 vs CPU: order only; fp16 trunk vs fp32 (token stream ~15, fp16 ulp 2^-7). */
static const double GPU32_NMSE = 1e-10, F16_NMSE = 1e-5;

struct runner {
    struct slatdec_trunk t;
    struct arena         w;       /* weights */
    struct arena         act;
    struct op_ctx        ctx;
    const struct op_ctx  *c;
    struct slatdec_geom  g;
    struct tensor        x;       /* (N, C) output */
};

static bool runner_init(struct runner *R, enum device dev, enum dtype gd, const struct tensor *coords)
{
    struct weights w;
    int64_t N = coords->shape[0];

    memset(R, 0, sizeof(*R));
    if (weights_open(&w, CKPT, NULL, gd)) {
        CHECK(0, "weights_open " CKPT);
        return false;
    }
    int rc = slatdec_bind(&R->t, &w, dev, gd, "test");
    rc = rc ? rc : weights_load_arena(&w, &R->w, dev);
    weights_close(&w);
    if (rc) {
        CHECK(0, "slatdec_bind / load %s %s", dev == DEVICE_CUDA ? "cuda" : "cpu", dtype_name(gd));
        return false;
    }
    size_t ws = dev == DEVICE_CUDA ? OP_WORKSPACE_DEFAULT : 0;
    size_t bytes = slatdec_geom_bytes(&R->t, N) + slatdec_act_bytes(&R->t, N) + ws +
                   arena_round((size_t)N * R->t.cfg.dim * dtype_size(gd));
    CHECK(arena_init(&R->act, dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act", bytes) == 0);
    if (dev == DEVICE_CUDA) {
        CHECK(op_ctx_init(&R->ctx, &R->act, ws) == 0);
        R->c = &R->ctx;
    }
    slatdec_geom_build(&R->t, R->c, &R->act, coords, &R->g);
    R->x = arena_tensor(&R->act, gd, SHAPE(N, R->t.cfg.dim));
    return true;
}

static void runner_free(struct runner *R)
{
    if (R->c)
        op_ctx_free(&R->ctx);
    arena_free(&R->act);
    arena_free(&R->w);
}

static float *fbuf(int64_t n)
{
    float *p = calloc((size_t)n, sizeof(float));
    ASSERT(p);
    return p;
}

/* The trunk output as fp32 into out (N * C). */
static void run(struct runner *R, const struct tensor *feats, float *out, const struct slatdec_taps *tp)
{
    slatdec_forward(&R->t, R->c, &R->act, &R->g, feats, &R->x, tp);
    CHECK(R->act.high_water <= R->act.size);
    size_t n = (size_t)tensor_numel(&R->x);
    if (R->x.device == DEVICE_HOST) {
        dtype_convert(out, DTYPE_F32, R->x.data, R->x.dtype, n);
        return;
    }
    void *tmp = malloc(tensor_nbytes(&R->x));
    ASSERT(tmp);
    CUDA_CHECK(cudaMemcpy(tmp, R->x.data, tensor_nbytes(&R->x), cudaMemcpyDeviceToHost));
    dtype_convert(out, DTYPE_F32, tmp, R->x.dtype, n);
    free(tmp);
}

static void cmp_ref(const struct ckpt *r, const char *name, const float *out, int64_t n)
{
    const struct ckpt_entry *e = ckpt_find(r, name);
    char lab[96];

    CHECK(e != NULL, "fixture tensor %s", name);
    if (!e)
        return;
    struct tensor t = ckpt_entry_tensor(e);
    CHECK(t.dtype == DTYPE_F32 && tensor_numel(&t) == n, "%s size", name);
    if (tensor_numel(&t) != n)
        return;
    snprintf(lab, sizeof(lab), "cpu f32 %-26s", name);
    report_cmp(lab, compare_f32(out, (const float *)t.data, (size_t)n, ATOL, RTOL, NMSE));
}

static void test_cpu(struct runner *R, const struct ckpt *E, const struct tensor *feats, float *xout)
{
    int64_t N = R->g.n, C = R->t.cfg.dim, nc = N * C;
    float *il = fbuf(nc), *ta = fbuf(nc), *at = fbuf(nc), *ml = fbuf(nc), *bo = fbuf(nc);
    float *x2 = fbuf(nc);
    char name[64];

    for (int b = 0; b < R->t.cfg.depth; b++) {
        struct slatdec_taps tp = {.block = b, .input_layer = il, .tokens_ape = ta, .attn = at,
                                  .mlp = ml, .block_out = bo};
        run(R, feats, x2, &tp);
        if (b == 0) {
            cmp_ref(E, "input_layer", il, nc);
            cmp_ref(E, "tokens_ape", ta, nc);
        }
        snprintf(name, sizeof(name), "blocks.%d.attn", b);
        cmp_ref(E, name, at, nc);
        snprintf(name, sizeof(name), "blocks.%d.mlp", b);
        cmp_ref(E, name, ml, nc);
        snprintf(name, sizeof(name), "blocks.%d", b);
        cmp_ref(E, name, bo, nc);
    }
    /* the fused residuals (no taps): the trunk output */
    run(R, feats, xout, NULL);
    snprintf(name, sizeof(name), "blocks.%d", R->t.cfg.depth - 1);
    cmp_ref(E, name, xout, nc);
    /* the MLP in chunks of 48 rows: the same bytes */
    R->t.mlp_rows = 48;
    run(R, feats, x2, NULL);
    R->t.mlp_rows = 0;
    CHECK(memcmp(x2, xout, sizeof(float) * (size_t)nc) == 0, "MLP in 3 chunks = in one");
    printf("MLP in 48-row chunks: %s\n", memcmp(x2, xout, sizeof(float) * (size_t)nc) ? "differs"
                                                                                        : "same bytes");
    /* the attention in groups of at most 40 tokens (several windows, or one longer window
     * alone): the same bytes, and the attention tap of every token in its place */
    struct slatdec_geom g1 = R->g;
    struct arena ga;
    CHECK(arena_init(&ga, ARENA_HOST, "geom40", slatdec_geom_bytes(&R->t, N)) == 0);
    slatdec_geom_build_rows(NULL, &ga, &g1.coords, 40, &R->g);
    CHECK(g1.ngroups[0] == 1 && g1.ngroups[1] == 1 && R->g.ngroups[0] > 1 &&
          R->g.ngroups[1] > 2 && R->g.ngroups[1] < R->g.nwin[1], "groups %d/%d of 40 rows",
          R->g.ngroups[0], R->g.ngroups[1]);
    run(R, feats, x2, NULL);
    CHECK(memcmp(x2, xout, sizeof(float) * (size_t)nc) == 0, "attention in groups = in one");
    printf("attention in groups of <= 40 tokens (%d / %d groups of %lld / %lld windows): %s\n",
           R->g.ngroups[0], R->g.ngroups[1], (long long)R->g.nwin[0], (long long)R->g.nwin[1],
           memcmp(x2, xout, sizeof(float) * (size_t)nc) ? "differs" : "same bytes");
    float *at2 = fbuf(nc);
    struct slatdec_taps tg = {.block = R->t.cfg.depth - 1, .attn = at2};
    struct slatdec_taps t1 = {.block = R->t.cfg.depth - 1, .attn = at};
    run(R, feats, x2, &tg);
    R->g = g1;
    run(R, feats, x2, &t1);
    CHECK(memcmp(at2, at, sizeof(float) * (size_t)nc) == 0, "grouped attention tap");
    free(at2);
    arena_free(&ga);
    free(il), free(ta), free(at), free(ml), free(bo), free(x2);
}

static void test_bad(const struct tensor *coords)
{
    struct weights w;
    struct slatdec_trunk t;
    int32_t c[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    char m[512];

    printf("expected errors follow:\n");
    CHECK(slatdec_check_coords(coords, "coords", m, sizeof(m)) == 0);
    struct tensor d = tensor_view(c, DTYPE_I32, DEVICE_HOST, SHAPE(2, 4));
    CHECK(slatdec_check_coords(&d, "coords", m, sizeof(m)) == S3D_ESHAPE, "duplicate row");
    struct tensor e = tensor_view(c, DTYPE_I32, DEVICE_HOST, SHAPE(0, 4));
    CHECK(slatdec_check_coords(&e, "coords", m, sizeof(m)) == S3D_ESHAPE, "no voxel");
    c[5] = 64;
    struct tensor o = tensor_view(c, DTYPE_I32, DEVICE_HOST, SHAPE(2, 4));
    CHECK(slatdec_check_coords(&o, "coords", m, sizeof(m)) == S3D_ESHAPE, "x = 64 is outside 64^3");
    c[5] = 1, c[4] = 1;
    CHECK(slatdec_check_coords(&o, "coords", m, sizeof(m)) == S3D_ESHAPE, "batch 1");
    struct tensor f = tensor_view(c, DTYPE_F32, DEVICE_HOST, SHAPE(2, 4));
    CHECK(slatdec_check_coords(&f, "coords", m, sizeof(m)) == S3D_ESHAPE, "float coords");
    struct tensor s = tensor_view(c, DTYPE_I32, DEVICE_HOST, SHAPE(2, 3));
    CHECK(slatdec_check_coords(&s, "coords", m, sizeof(m)) == S3D_ESHAPE, "3 columns");
    printf("  last message: %s\n", m);

    if (weights_open(&w, "tests/fixtures/ss_decoder_tiny/ss_decoder.ckpt", NULL, DTYPE_F32) == 0) {
        CHECK(slatdec_bind(&t, &w, DEVICE_HOST, DTYPE_F32, "test") == S3D_ENOTFOUND,
              "an SS decoder is not a SLAT decoder");
        weights_close(&w);
    }
    printf("(end of expected errors)\n");
}

/* The trunk's group size (slatdec_trunk.group_rows) sizes the plan: at the released width and
 * N = 30000, the region is the attention phase of group_rows tokens (qkv (R, 3C), LN /
 * attention out (R, C), the gathered rows (R, C)) for 2048 (the default, gs_decode) and 8192
 * (mesh_decode, MDEC_GROUP_ROWS); the geometry grows by the longer iota only. */
static void test_group_rows(void)
{
    const int64_t n = 30000, C = 768;

    for (int d = 0; d < 2; d++) {
        enum dtype gd = d ? DTYPE_F32 : DTYPE_F16;
        size_t es = dtype_size(gd), act[2], geom[2];
        struct slatdec_trunk t;
        memset(&t, 0, sizeof(t));
        t.cfg = (struct slatdec_config){.dim = (int)C, .heads = 12, .depth = 12, .mlp = 3072,
                                        .in_ch = 8};
        t.gemm_dt = gd;
        t.device = DEVICE_CUDA;
        for (int k = 0; k < 2; k++) {
            int64_t R = k ? 8192 : SLD_GROUP_ROWS;
            t.group_rows = k ? R : 0;
            act[k] = slatdec_act_bytes(&t, n);
            geom[k] = slatdec_geom_bytes(&t, n);
            size_t want = arena_round((size_t)(R * 3 * C) * es) +
                          2 * arena_round((size_t)(R * C) * es);
            CHECK(act[k] == want, "%s, group_rows %lld: region %zu bytes, expected %zu",
                  dtype_name(gd), (long long)R, act[k], want);
        }
        CHECK(geom[1] - geom[0] == arena_round(8192 * 4) - arena_round(SLD_GROUP_ROWS * 4),
              "geometry %zu -> %zu bytes", geom[0], geom[1]);
        printf("plan at N = %lld, %s: region %.1f MB (group_rows %d), %.1f MB (8192); geometry "
               "%.2f / %.2f MB\n", (long long)n, dtype_name(gd), act[0] / 1e6, SLD_GROUP_ROWS,
               act[1] / 1e6, geom[0] / 1e6, geom[1] / 1e6);
    }
}

int main(void)
{
    struct ckpt E;
    struct runner R;
    float *xref = NULL;

    log_init("test_slat_dec");
    if (ckpt_open(&E, DIR "/ref.safetensors", 0)) {
        CHECK(0, "fixture unreadable (tools/ref/dump_gs_decoder.py --size tiny)");
        return harness_done("test_slat_dec");
    }
    const struct ckpt_entry *ec = ckpt_find(&E, "coords"), *ef = ckpt_find(&E, "feats");
    CHECK(ec && ef, "fixture coords, feats");
    if (!ec || !ef) {
        ckpt_close(&E);
        return harness_done("test_slat_dec");
    }
    struct tensor coords = ckpt_entry_tensor(ec), feats = ckpt_entry_tensor(ef);
    int64_t N = coords.shape[0];

    if (runner_init(&R, DEVICE_HOST, DTYPE_F32, &coords)) {
        const struct slatdec_config *g = &R.t.cfg;
        printf("config: width %d, %d heads, %d blocks, MLP %d, latent %d; N %lld; windows %lld "
               "(longest %d) / %lld (longest %d); %.3f MFLOP\n", g->dim, g->heads, g->depth,
               g->mlp, g->in_ch, (long long)N, (long long)R.g.nwin[0], R.g.max_len[0],
               (long long)R.g.nwin[1], R.g.max_len[1], slatdec_flops(&R.t, &R.g) / 1e6);
        CHECK(g->dim == 128 && g->heads == 2 && g->depth == 2 && g->mlp == 256 && g->in_ch == 8);
        CHECK(R.g.nwin[0] == 4 && R.g.nwin[1] == 9 && R.g.max_len[1] == 74, "fixture README");
        xref = fbuf(N * g->dim);
        test_cpu(&R, &E, &feats, xref);
        test_bad(&coords);
        test_group_rows();
        printf("  cpu f32: activation arena peak %.3f MB of %.3f MB\n", R.act.high_water / 1e6,
               R.act.size / 1e6);
        runner_free(&R);
    }

    if (xref && runner_init(&R, DEVICE_HOST, DTYPE_F16, &coords)) {
        float *x = fbuf(N * R.t.cfg.dim);
        run(&R, &feats, x, NULL);
        report_cmp("cpu f16 trunk output vs cpu f32",
                   compare_f32(x, xref, (size_t)(N * R.t.cfg.dim), -1, -1, F16_NMSE));
        free(x);
        runner_free(&R);
    }

    if (!s3d_cuda_available()) {
        const char *req = getenv("S3D_REQUIRE_GPU");
        CHECK(!(req && !strcmp(req, "1")), "S3D_REQUIRE_GPU=1 but no CUDA device");
        printf("GPU part skipped: no CUDA device on this machine\n");
    } else if (xref) {
        const enum dtype gdts[2] = {DTYPE_F32, DTYPE_F16};
        for (int i = 0; i < 2; i++) {
            char lab[96];
            if (!runner_init(&R, DEVICE_CUDA, gdts[i], &coords))
                continue;
            float *x = fbuf(N * R.t.cfg.dim);
            run(&R, &feats, x, NULL);
            snprintf(lab, sizeof(lab), "cuda %s trunk output vs cpu f32", dtype_name(gdts[i]));
            report_cmp(lab, compare_f32(x, xref, (size_t)(N * R.t.cfg.dim), -1, -1,
                                        i ? F16_NMSE : GPU32_NMSE));
            /* the attention in groups of <= 40 tokens (gather, padded GEMMs, scatter) */
            struct slatdec_geom g1 = R.g;
            struct arena ga;
            CHECK(arena_init(&ga, ARENA_DEVICE, "geom40", slatdec_geom_bytes(&R.t, N)) == 0);
            slatdec_geom_build_rows(R.c, &ga, &coords, 40, &R.g);
            run(&R, &feats, x, NULL);
            snprintf(lab, sizeof(lab), "cuda %s trunk, groups <= 40 tokens, vs cpu f32",
                     dtype_name(gdts[i]));
            report_cmp(lab, compare_f32(x, xref, (size_t)(N * R.t.cfg.dim), -1, -1,
                                        i ? F16_NMSE : GPU32_NMSE));
            R.g = g1;
            arena_free(&ga);
            free(x);
            runner_free(&R);
        }
    }
    free(xref);
    ckpt_close(&E);
    return harness_done("test_slat_dec");
}
