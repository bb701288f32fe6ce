/*
 * test_gs_decode.c - the Gaussian decoder (stages/gs_decode/: trunk from
 * stages/slat_dec_net/, head and save_ply transforms) against the official
 * SLatGaussianDecoder + Gaussian.save_ply on the tiny fixtures
 * (tests/fixtures/gs_decoder_tiny/{g32,g4}, tools/ref/dump_gs_decoder.py).
 *
 * 1. Config: G from offset_perturbation (32 and 4), trunk as test_slat_dec.
 * 2. CPU fp32, both checkpoints: head_ln and out_layer taps; the five output
 *    arrays against the records of the official splat.ply (x y z, f_dc,
 *    opacity, scale, rot) and the normals there are zero.
 * 3. The head transform alone on the official out_layer: the save_ply values
 *    to within an ulp or two (counts of bit-identical values printed); the
 *    saturating cases by hand: opacity +inf / -inf, softplus above 20.
 * 4. Bad inputs and checkpoints.
 * 5. fp16 on the host against fp32.
 * 6. GPU (skipped without one): CUDA fp32 / fp16 against the CPU fp32
 *    outputs; the CUDA head transform against the CPU one, saturation included.
 * 7. The activation plan at the released size (no weights needed): per voxel
 *    the token stream and the attention phase's qkv + LN/attention output,
 *    everything else inside them, beside the geometry (README "Memory").
 */
#include "harness.h"
#include "arena.h"
#include "check.h"
#include "ckpt.h"
#include "err.h"
#include "log.h"
#include "gs_decode/gsdec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FX "tests/fixtures/gs_decoder_tiny/"

/* fp32 CPU vs PyTorch CPU fp32: the GEMM summation order, through tanh/log. */
static const double ATOL = 1e-5, RTOL = 1e-4, NMSE = 1e-9;
/* The head transform alone on the official out_layer: fp32 libm vs torch's (Sleef)
 * exp/log/tanh/log1p, an ulp or two of the result. */
static const double HEAD_ATOL = 1e-6, HEAD_RTOL = 1e-6;
/* CUDA fp32 vs CPU (order); fp16 trunk vs fp32. */
static const double GPU32_NMSE = 1e-10, F16_NMSE = 1e-4;

static const char *NAMES[5] = {"xyz", "f_dc", "opacity", "scale", "rotation"};
static const int   DIMS[5] = {3, 3, 1, 3, 4};
static const int   PLY_COL[5] = {0, 6, 9, 10, 13};   /* first column of each in a record */

struct gset {
    int         G;
    const char *dir, *ckpt;
};
static const struct gset SETS[2] = {
    {32, FX "g32", FX "g32/slat_decoder_gs.ckpt"},
    {4, FX "g4", FX "g4/slat_decoder_gs_4.ckpt"},
};

/* Five malloc'ed host arrays of M Gaussians. */
struct outs {
    int64_t M;
    float  *a[5];
};

static void outs_init(struct outs *o, int64_t M)
{
    o->M = M;
    for (int i = 0; i < 5; i++) {
        o->a[i] = calloc((size_t)(M * DIMS[i]), sizeof(float));
        ASSERT(o->a[i]);
    }
}

static void outs_free(struct outs *o)
{
    for (int i = 0; i < 5; i++)
        free(o->a[i]);
}

static struct gsdec_out as_out(const struct outs *o)
{
    struct gsdec_out g = {o->a[0], o->a[1], o->a[2], o->a[3], o->a[4]};
    return g;
}

/* The official splat.ply as columns: out[i] = the M x DIMS[i] values of array i. */
static bool read_ply(const char *dir, int64_t M, struct outs *o, bool *normals_zero)
{
    char path[256];
    size_t len;

    snprintf(path, sizeof(path), "%s/splat.ply", dir);
    char *raw = read_file(path, &len);
    CHECK(raw != NULL, "%s", path);
    if (!raw)
        return false;
    char *end = memmem(raw, len, "end_header\n", 11);
    CHECK(end != NULL, "PLY header");
    if (!end) {
        free(raw);
        return false;
    }
    size_t off = (size_t)(end + 11 - raw);
    CHECK(len - off == (size_t)M * 68, "PLY has %lld records of 17 floats", (long long)M);
    if (len - off != (size_t)M * 68) {
        free(raw);
        return false;
    }
    outs_init(o, M);
    *normals_zero = true;
    for (int64_t m = 0; m < M; m++) {
        float rec[17];
        memcpy(rec, raw + off + (size_t)m * 68, 68);
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < DIMS[i]; j++)
                o->a[i][m * DIMS[i] + j] = rec[PLY_COL[i] + j];
        *normals_zero &= rec[3] == 0 && rec[4] == 0 && rec[5] == 0;
    }
    free(raw);
    return true;
}

/* Compare ours with the reference arrays; counts bit-identical values. */
static void cmp_outs(const char *what, const struct outs *o, const struct outs *r, double atol,
                     double rtol, double nmse)
{
    for (int i = 0; i < 5; i++) {
        size_t n = (size_t)(o->M * DIMS[i]), same = 0;
        char lab[128];
        for (size_t k = 0; k < n; k++)
            same += memcmp(&o->a[i][k], &r->a[i][k], 4) == 0;
        snprintf(lab, sizeof(lab), "%s %-8s (%5.1f%% bit-equal)", what, NAMES[i], 100.0 * same / n);
        report_cmp(lab, compare_f32(o->a[i], r->a[i], n, atol, rtol, nmse));
    }
}

static const struct tensor *ref_t(const struct ckpt *r, const char *name, struct tensor *buf)
{
    const struct ckpt_entry *e = ckpt_find(r, name);

    CHECK(e != NULL, "fixture tensor %s", name);
    if (!e)
        return NULL;
    *buf = ckpt_entry_tensor(e);
    return buf;
}

struct runner {
    struct gsdec_model  m;
    struct arena        act;
    struct op_ctx       ctx;
    const struct op_ctx *c;
};

static bool runner_init(struct runner *R, const char *ckpt, enum device dev, enum dtype gd, int64_t N)
{
    memset(R, 0, sizeof(*R));
    if (gsdec_load(&R->m, ckpt, dev, gd)) {
        CHECK(0, "gsdec_load %s", ckpt);
        return false;
    }
    size_t ws = dev == DEVICE_CUDA ? OP_WORKSPACE_DEFAULT : 0;
    CHECK(arena_init(&R->act, dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act",
                     gsdec_act_bytes(&R->m, N) + ws) == 0);
    if (dev == DEVICE_CUDA) {
        CHECK(op_ctx_init(&R->ctx, &R->act, ws) == 0);
        R->c = &R->ctx;
    }
    return true;
}

static void runner_free(struct runner *R)
{
    if (R->c)
        op_ctx_free(&R->ctx);
    arena_free(&R->act);
    gsdec_free(&R->m);
}

// ----------------------------------------------------------------------------
// 3. the head transform alone

/* gs_head on host arrays (dev: through device copies). raw (rows, 14G). */
static void run_head(const struct op_ctx *ctx, struct arena *a, const float *raw, const int32_t *coords,
                     const float *perturb, int64_t rows, int G, struct outs *o)
{
    struct tensor hr = tensor_view((void *)raw, DTYPE_F32, DEVICE_HOST, SHAPE(rows, GS_CHANNELS * G));
    struct tensor hc = tensor_view((void *)coords, DTYPE_I32, DEVICE_HOST, SHAPE(rows, 4));
    struct tensor hp = tensor_view((void *)perturb, DTYPE_F32, DEVICE_HOST, SHAPE(G, 3));
    int64_t M = rows * G;

    if (!ctx) {
        struct gs_arrays ga = {
            tensor_view(o->a[0], DTYPE_F32, DEVICE_HOST, SHAPE(M, 3)),
            tensor_view(o->a[1], DTYPE_F32, DEVICE_HOST, SHAPE(M, 3)),
            tensor_view(o->a[2], DTYPE_F32, DEVICE_HOST, SHAPE(M, 1)),
            tensor_view(o->a[3], DTYPE_F32, DEVICE_HOST, SHAPE(M, 3)),
            tensor_view(o->a[4], DTYPE_F32, DEVICE_HOST, SHAPE(M, 4)),
        };
        gs_head_cpu(&ga, &hr, &hc, &hp);
        return;
    }
    size_t mark = arena_mark(a);
    struct tensor dr = arena_tensor(a, DTYPE_F32, hr.shape, 2), dc = arena_tensor(a, DTYPE_I32, hc.shape, 2);
    struct tensor dp = arena_tensor(a, DTYPE_F32, hp.shape, 2);
    CUDA_CHECK(cudaMemcpy(dr.data, raw, tensor_nbytes(&dr), cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(dc.data, coords, tensor_nbytes(&dc), cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(dp.data, perturb, tensor_nbytes(&dp), cudaMemcpyHostToDevice));
    struct gs_arrays ga;
    struct tensor *t[5] = {&ga.xyz, &ga.f_dc, &ga.opacity, &ga.scale, &ga.rotation};
    for (int i = 0; i < 5; i++)
        *t[i] = arena_tensor(a, DTYPE_F32, SHAPE(M, DIMS[i]));
    gs_head_cuda(ctx, &ga, &dr, &dc, &dp);
    for (int i = 0; i < 5; i++)
        CUDA_CHECK(cudaMemcpy(o->a[i], t[i]->data, tensor_nbytes(t[i]), cudaMemcpyDeviceToHost));
    arena_release(a, mark);
}

/* Hand cases: voxel (0, 0, 63, 1), G = 1, raw chosen to saturate. */
static void head_saturation(const struct op_ctx *ctx, struct arena *a, const char *what)
{
    float raw[2][GS_CHANNELS] = {{0}}, P[3] = {0, 0, 0};
    int32_t c[8] = {0, 0, 63, 1, 0, 5, 6, 7};
    struct outs o;
    struct gs_consts k;

    gs_head_consts(&k);
    raw[0][13] = 40.0f;         /* o = sigmoid(37.8) = 1 in fp32: log(1 / 0) = +inf */
    raw[1][13] = -200.0f;       /* exp(202) = inf, o = 0: log(0 / 1) = -inf */
    raw[0][6] = 30.0f;          /* softplus(30 - 5.52) = 24.48 (linear branch) */
    raw[1][6] = -200.0f;        /* softplus = 0: scale = log(0.0009) */
    raw[0][0] = 50.0f;          /* tanh = 1: x = (0.5 + 0.75) / 64 - 0.5 */
    raw[0][9] = 2.0f;           /* rotation w = 2 * 0.1 + 1 */
    outs_init(&o, 2);
    run_head(ctx, a, &raw[0][0], c, P, 2, 1, &o);
    bool ok = isinf(o.a[2][0]) && o.a[2][0] > 0 && isinf(o.a[2][1]) && o.a[2][1] < 0;
    ok &= o.a[3][0] == logf(sqrtf((30.0f + k.scale_bias) * (30.0f + k.scale_bias) + k.kernel2));
    ok &= o.a[3][3] == logf(sqrtf(k.kernel2));
    ok &= o.a[0][0] == (1.25f / 64.0f) + -0.5f;
    ok &= o.a[4][0] == 2.0f * 0.1f + 1.0f && o.a[4][1] == 0.0f;
    printf("%s head saturation: opacity %g / %g, scale %g / %g, x %.9g, rot_w %.9g  %s\n", what,
           (double)o.a[2][0], (double)o.a[2][1], (double)o.a[3][0], (double)o.a[3][3],
           (double)o.a[0][0], (double)o.a[4][0], ok ? "OK" : "FAIL");
    CHECK(ok, "%s head saturation", what);
    outs_free(&o);
}

// ----------------------------------------------------------------------------
// 2. the decoder on the CPU

static void test_set(const struct gset *S, struct outs *mine)
{
    struct ckpt E;
    char path[256];
    struct tensor coords, feats, hl, ol, pt;
    struct runner R;

    snprintf(path, sizeof(path), "%s/ref.safetensors", S->dir);
    if (ckpt_open(&E, path, 0)) {
        CHECK(0, "%s unreadable", path);
        return;
    }
    if (!ref_t(&E, "coords", &coords) || !ref_t(&E, "feats", &feats) ||
        !ref_t(&E, "head_ln", &hl) || !ref_t(&E, "out_layer", &ol) ||
        !ref_t(&E, "offset_perturbation", &pt)) {
        ckpt_close(&E);
        return;
    }
    int64_t N = coords.shape[0], M = N * S->G;
    struct outs ply;
    bool nz;
    if (!read_ply(S->dir, M, &ply, &nz)) {
        ckpt_close(&E);
        return;
    }
    CHECK(nz, "official normals are zero");
    if (runner_init(&R, S->ckpt, DEVICE_HOST, DTYPE_F32, N)) {
        char msg[512];
        int64_t C = R.m.trunk.cfg.dim;
        printf("G %d: %d Gaussians per voxel, width %d, %d blocks; N %lld -> M %lld\n", S->G,
               R.m.G, R.m.trunk.cfg.dim, R.m.trunk.cfg.depth, (long long)N, (long long)M);
        CHECK(R.m.G == S->G);
        CHECK(gsdec_check_inputs(&R.m, &coords, &feats, msg, sizeof(msg)) == 0);
        float *thl = calloc((size_t)(N * C), 4), *tol = calloc((size_t)(N * 14 * S->G), 4);
        struct gsdec_taps tp = {.trunk = {.block = -1}, .head_ln = thl, .out_layer = tol};
        struct gsdec_times tm;
        outs_init(mine, M);
        struct gsdec_out go = as_out(mine);
        gsdec_forward(&R.m, NULL, &R.act, &coords, &feats, &go, &tp, &tm);
        /* gsdec_act_bytes (the forward's plan) is the run's exact high-water mark */
        CHECK(R.act.high_water == gsdec_act_bytes(&R.m, N), "act high-water %zu, planned %zu",
              R.act.high_water, gsdec_act_bytes(&R.m, N));
        char lab[96];
        snprintf(lab, sizeof(lab), "g%d cpu f32 head_ln", S->G);
        report_cmp(lab, compare_f32(thl, hl.data, (size_t)(N * C), ATOL, RTOL, NMSE));
        snprintf(lab, sizeof(lab), "g%d cpu f32 out_layer", S->G);
        report_cmp(lab, compare_f32(tol, ol.data, (size_t)(N * 14 * S->G), ATOL, RTOL, NMSE));
        snprintf(lab, sizeof(lab), "g%d cpu f32 vs splat.ply", S->G);
        cmp_outs(lab, mine, &ply, ATOL, RTOL, NMSE);
        printf("  %.3f MFLOP; windows %lld / %lld; act arena peak %.3f MB\n", tm.flops / 1e6,
               (long long)tm.nwin[0], (long long)tm.nwin[1], R.act.high_water / 1e6);

        /* 3. the head transform alone on the official out_layer */
        struct outs h;
        outs_init(&h, M);
        run_head(NULL, NULL, ol.data, coords.data, pt.data, N, S->G, &h);
        snprintf(lab, sizeof(lab), "g%d head(official out_layer) vs splat.ply", S->G);
        cmp_outs(lab, &h, &ply, HEAD_ATOL, HEAD_RTOL, -1);
        outs_free(&h);

        /* 5. fp16 on the host */
        struct runner R16;
        if (runner_init(&R16, S->ckpt, DEVICE_HOST, DTYPE_F16, N)) {
            struct outs o16;
            outs_init(&o16, M);
            struct gsdec_out g16 = as_out(&o16);
            gsdec_forward(&R16.m, NULL, &R16.act, &coords, &feats, &g16, NULL, NULL);
            snprintf(lab, sizeof(lab), "g%d cpu f16 vs cpu f32", S->G);
            cmp_outs(lab, &o16, mine, -1, -1, F16_NMSE);
            outs_free(&o16);
            runner_free(&R16);
        }
        free(thl);
        free(tol);
        runner_free(&R);
    }
    outs_free(&ply);
    ckpt_close(&E);
}

// ----------------------------------------------------------------------------
// 4. bad inputs and checkpoints

static void test_bad(void)
{
    struct runner R;
    struct gsdec_model o;
    int32_t c[8] = {0, 1, 2, 3, 0, 1, 2, 4};
    float f[16] = {0};
    char msg[512];

    printf("expected errors follow:\n");
    if (runner_init(&R, SETS[0].ckpt, DEVICE_HOST, DTYPE_F32, 2)) {
        struct tensor tc = tensor_view(c, DTYPE_I32, DEVICE_HOST, SHAPE(2, 4));
        struct tensor tf = tensor_view(f, DTYPE_F32, DEVICE_HOST, SHAPE(2, 8));
        CHECK(gsdec_check_inputs(&R.m, &tc, &tf, msg, sizeof(msg)) == 0);
        struct tensor w7 = tensor_view(f, DTYPE_F32, DEVICE_HOST, SHAPE(2, 7));
        CHECK(gsdec_check_inputs(&R.m, &tc, &w7, msg, sizeof(msg)) == S3D_ESHAPE, "latent width 7");
        printf("  %s\n", msg);
        struct tensor r1 = tensor_view(f, DTYPE_F32, DEVICE_HOST, SHAPE(1, 8));
        CHECK(gsdec_check_inputs(&R.m, &tc, &r1, msg, sizeof(msg)) == S3D_ESHAPE, "1 row of feats for 2 voxels");
        struct tensor h16 = tensor_view(f, DTYPE_F16, DEVICE_HOST, SHAPE(2, 8));
        CHECK(gsdec_check_inputs(&R.m, &tc, &h16, msg, sizeof(msg)) == S3D_ESHAPE, "F16 feats");
        c[7] = 64;
        CHECK(gsdec_check_inputs(&R.m, &tc, &tf, msg, sizeof(msg)) == S3D_ESHAPE, "z = 64");
        printf("  %s\n", msg);
        struct tensor t0 = tensor_view(c, DTYPE_I32, DEVICE_HOST, SHAPE(0, 4));
        struct tensor f0 = tensor_view(f, DTYPE_F32, DEVICE_HOST, SHAPE(0, 8));
        CHECK(gsdec_check_inputs(&R.m, &t0, &f0, msg, sizeof(msg)) == S3D_ESHAPE, "no voxel");
        printf("  %s\n", msg);
        runner_free(&R);
    }
    CHECK(gsdec_load(&o, "tests/fixtures/mesh_decoder_tiny/slat_decoder_mesh.ckpt", DEVICE_HOST, DTYPE_F32) ==
          S3D_ENOTFOUND, "a mesh decoder is not a Gaussian decoder");
    CHECK(gsdec_load(&o, "tests/fixtures/ss_decoder_tiny/ss_decoder.ckpt", DEVICE_HOST, DTYPE_F32) ==
          S3D_ENOTFOUND, "an SS decoder is not a SLAT decoder");
    CHECK(gsdec_load(&o, FX "g32/ref.safetensors", DEVICE_HOST, DTYPE_F32) < 0, "activations, not weights");
    CHECK(gsdec_load(&o, FX "g32/missing.ckpt", DEVICE_HOST, DTYPE_F32) < 0, "no file");
    printf("(end of expected errors)\n");
}

// ----------------------------------------------------------------------------
// 6. GPU

static void test_gpu(const struct outs *cpu)
{
    for (int s = 0; s < 2; s++) {
        const struct gset *S = &SETS[s];
        struct ckpt E;
        char path[256];
        struct tensor coords, feats, ol, pt;
        snprintf(path, sizeof(path), "%s/ref.safetensors", S->dir);
        if (ckpt_open(&E, path, 0))
            continue;
        if (ref_t(&E, "coords", &coords) && ref_t(&E, "feats", &feats) &&
            ref_t(&E, "out_layer", &ol) && ref_t(&E, "offset_perturbation", &pt)) {
            int64_t N = coords.shape[0], M = N * S->G;
            const enum dtype dts[2] = {DTYPE_F32, DTYPE_F16};
            for (int i = 0; i < 2; i++) {
                struct runner R;
                if (!runner_init(&R, S->ckpt, DEVICE_CUDA, dts[i], N))
                    continue;
                struct outs o;
                outs_init(&o, M);
                struct gsdec_out go = as_out(&o);
                gsdec_forward(&R.m, R.c, &R.act, &coords, &feats, &go, NULL, NULL);
                char lab[96];
                snprintf(lab, sizeof(lab), "g%d cuda %s vs cpu f32", S->G, dtype_name(dts[i]));
                cmp_outs(lab, &o, &cpu[s], -1, -1, i ? F16_NMSE : GPU32_NMSE);
                if (i == 0) {       /* the CUDA head on the official out_layer vs the CPU head */
                    struct outs hc, hg;
                    outs_init(&hc, M);
                    outs_init(&hg, M);
                    run_head(NULL, NULL, ol.data, coords.data, pt.data, N, S->G, &hc);
                    run_head(R.c, &R.act, ol.data, coords.data, pt.data, N, S->G, &hg);
                    snprintf(lab, sizeof(lab), "g%d head cuda vs cpu", S->G);
                    cmp_outs(lab, &hg, &hc, HEAD_ATOL, HEAD_RTOL, -1);
                    head_saturation(R.c, &R.act, "cuda");
                    outs_free(&hc);
                    outs_free(&hg);
                }
                outs_free(&o);
                runner_free(&R);
            }
        }
        ckpt_close(&E);
    }
}

/* 7. gsdec_act_bytes at the released configuration (slat_decoder_gs.yaml: C 768, 12 heads,
 * 12 blocks, MLP 3072, latent 8; G 32) on the device: the geometry + the (N, C) token stream
 * + the larger of the trunk's region at its attention phase - one group of
 * min(N, SLD_GROUP_ROWS) tokens: qkv (R, 3C), LN / attention output (R, C), the gathered rows
 * (R, C) in the GEMM dtype - and one fp32 head chunk of min(N, GSD_HEAD_ROWS) voxels (LN
 * (n, C), out_layer (n, 14G), the five arrays (n G, 14)); the latent (N, 8) fp32 with the
 * input layer's fp32 chunk (R, C), and the MLP row chunks fit inside the region (the latent,
 * 32 bytes a voxel, stays within a group's size up to 64^3 voxels). Neither term grows with
 * N past 2048 voxels: the activations are the stream + a constant. */
static size_t head_chunk_bytes(int64_t n, int64_t C, int64_t G)
{
    static const int K[5] = {3, 3, 1, 3, 4};
    size_t b = arena_round((size_t)(n * C) * 4) + arena_round((size_t)(n * 14 * G) * 4);

    for (int i = 0; i < 5; i++)
        b += arena_round((size_t)(n * G * K[i]) * 4);
    return b;
}

static void test_released_plan(void)
{
    static const int64_t NS[3] = {4096, 30000, 42000};
    const int64_t C = 768;

    for (int d = 0; d < 2; d++) {
        enum dtype gd = d ? DTYPE_F32 : DTYPE_F16;
        struct gsdec_model m;
        memset(&m, 0, sizeof(m));
        m.trunk.cfg = (struct slatdec_config){.dim = (int)C, .heads = 12, .depth = 12,
                                              .mlp = 3072, .in_ch = 8};
        m.trunk.gemm_dt = gd;
        m.trunk.device = m.device = DEVICE_CUDA;
        m.G = 32;
        for (int i = 0; i < 3; i++) {
            int64_t n = NS[i];
            size_t es = dtype_size(gd), got = gsdec_act_bytes(&m, n);
            int64_t R = n < SLD_GROUP_ROWS ? n : SLD_GROUP_ROWS;
            size_t attn = arena_round((size_t)(R * 3 * C) * es) +
                          2 * arena_round((size_t)(R * C) * es);
            size_t in = arena_round((size_t)(n * 8) * 4) + arena_round((size_t)(R * C) * 4);
            size_t head = head_chunk_bytes(n < GSD_HEAD_ROWS ? n : GSD_HEAD_ROWS, C, m.G);
            size_t want = slatdec_geom_bytes(&m.trunk, n) + arena_round((size_t)(n * C) * es) +
                          (attn > head ? attn : head);
            CHECK(in <= attn, "input chunk %zu within the attention group %zu", in, attn);
            CHECK(got == want, "released plan, %s, N = %lld: %zu bytes, expected %zu (geometry "
                  "%zu + stream + max(attention phase %zu, head chunk %zu))", dtype_name(gd),
                  (long long)n, got, want, slatdec_geom_bytes(&m.trunk, n), attn, head);
            printf("released plan, %s trunk, N = %lld: activations %.1f MB (geometry %.1f, "
                   "stream %.1f, attention phase %.1f, head chunk %.1f)\n", dtype_name(gd),
                   (long long)n, got / 1e6, slatdec_geom_bytes(&m.trunk, n) / 1e6,
                   (double)(n * C * es) / 1e6, attn / 1e6, head / 1e6);
        }
    }
}

int main(void)
{
    struct outs cpu[2];

    log_init("test_gs_decode");
    memset(cpu, 0, sizeof(cpu));
    for (int s = 0; s < 2; s++)
        test_set(&SETS[s], &cpu[s]);
    head_saturation(NULL, NULL, "cpu");
    test_bad();
    test_released_plan();
    if (!s3d_cuda_available()) {
        const char *req = getenv("S3D_REQUIRE_GPU");
        CHECK(!(req && !strcmp(req, "1")), "S3D_REQUIRE_GPU=1 but no CUDA device");
        printf("GPU part skipped: no CUDA device on this machine\n");
    } else if (cpu[0].a[0] && cpu[1].a[0]) {
        test_gpu(cpu);
    }
    for (int s = 0; s < 2; s++)
        if (cpu[s].a[0])
            outs_free(&cpu[s]);
    return harness_done("test_gs_decode");
}
