/*
 * test_ss_decode.c - the SS decoder (stages/ss_decode_net) against the tiny
 * fixture tests/fixtures/ss_decoder_tiny (official module, random weights,
 * fp32 CPU; tools/ref/dump_ss_decoder.py):
 *   - config detected from the checkpoint; act_bytes equals the host run's
 *     high-water mark (the plan and the run take the same buffers);
 *   - CPU F32: every dumped activation (input_layer, middle_block.{0,1},
 *     blocks.{0..4}) and the logits at rel L2 <= 1e-4, coords bit-exact;
 *   - post-processing on the fixture's official outputs, exactly: argwhere of
 *     the reference logits, prune_sparse_structure (prune_test.*),
 *     downsample_sparse_structure on its N > max_coords path (downsample_test.*);
 *     hand cases for prune, the degenerate axis and the random-subset branch;
 *   - the F16 path (autocast rounding points) on the host against F32;
 *   - bad latents and a wrong checkpoint are clean errors;
 *   - with a GPU: CUDA F32 against CPU F32, CUDA F16 against the host F16 path.
 */
#include "harness.h"
#include "arena.h"
#include "ckpt.h"
#include "err.h"
#include "log.h"
#include "ss_decode_net/ssdec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIR  "tests/fixtures/ss_decoder_tiny"
#define CKPT DIR "/ss_decoder.ckpt"

/* CPU fp32 vs PyTorch CPU fp32: summation order only. */
static const double ATOL = 1e-5, RTOL = 1e-4, NMSE = 1e-8;      /* rel L2 <= 1e-4 */
/* The F16 path (fp16 convs, fp16 stream after the first upsample) vs F32. */
static const double F16_NMSE = 1e-4;                            /* rel L2 <= 1e-2 */
/* CUDA F32 vs CPU F32: order only (cuDNN FMA math, no TF32). */
static const double GPU32_NMSE = 1e-10;
/* CUDA F16 vs the host F16 path: the same rounding points, other sum orders. */
static const double GPU16_NMSE = 1e-5;

static bool ref(const struct ckpt *r, const char *name, struct tensor *t)
{
    const struct ckpt_entry *e = ckpt_find(r, name);

    CHECK(e != NULL, "fixture tensor %s", name);
    if (e)
        *t = ckpt_entry_tensor(e);
    return e != NULL;
}

/* ---- taps: channels-last module outputs compared with the (1, C, D, H, W) dump ---- */

struct tapctx {
    const struct ckpt *r;
    int                n_cmp;
};

static void on_tap(void *user, const char *name, const struct tensor *act)
{
    struct tapctx *tc = user;
    const struct ckpt_entry *e = ckpt_find(tc->r, name);
    char label[96];

    if (!e)
        return;                 /* the fixture dumps the first modules only */
    struct tensor t = ckpt_entry_tensor(e);
    int64_t C = act->shape[4], S = act->shape[1] * act->shape[2] * act->shape[3];
    CHECK(t.ndim == 5 && t.shape[1] == C && t.shape[2] == act->shape[1] &&
          tensor_numel(&t) == C * S, "%s shape", name);
    if (tensor_numel(&t) != C * S)
        return;
    float *cf = malloc(sizeof(float) * (size_t)(C * S));
    const float *a = act->data;
    for (int64_t s = 0; s < S; s++)
        for (int64_t c = 0; c < C; c++)
            cf[c * S + s] = a[s * C + c];
    snprintf(label, sizeof(label), "cpu f32 %-16s vs torch", name);
    report_cmp(label, compare_f32(cf, t.data, (size_t)(C * S), ATOL, RTOL, NMSE));
    free(cf);
    tc->n_cmp++;
}

/* ---- one model + arena ---- */

struct runner {
    struct ssdec_model m;
    struct arena       act;
    struct op_ctx      ctx;
    bool               ok;
};

static bool runner_init(struct runner *R, enum device dev, enum dtype cdt, int r)
{
    memset(R, 0, sizeof(*R));
    if (ssdec_load(&R->m, CKPT, dev, cdt) != 0) {
        CHECK(!"ssdec_load failed");
        return false;
    }
    int rc = arena_init(&R->act, dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act",
                        ssdec_act_bytes(&R->m, r));
    if (!rc && dev == DEVICE_CUDA)
        rc = op_ctx_init(&R->ctx, NULL, 0);
    CHECK(rc == 0, "runner arenas");
    R->ok = rc == 0;
    return R->ok;
}

static void runner_free(struct runner *R)
{
    op_ctx_free(&R->ctx);
    arena_free(&R->act);
    ssdec_free(&R->m);
}

static const struct op_ctx *runner_ctx(const struct runner *R)
{
    return R->m.device == DEVICE_CUDA ? &R->ctx : NULL;
}

/* ---- coords helpers ---- */

static bool rows_equal(const int32_t *a, int64_t na, const struct tensor *t, const char *what)
{
    bool eq = t->dtype == DTYPE_I32 && t->ndim == 2 && t->shape[1] == 4 && t->shape[0] == na &&
              memcmp(a, t->data, (size_t)na * 16) == 0;
    printf("%-52s %lld rows vs %lld: %s\n", what, (long long)na, (long long)t->shape[0],
           eq ? "equal OK" : "DIFFER FAIL");
    CHECK(eq, "%s", what);
    return eq;
}

static int64_t count_flips(const float *a, const float *b, int64_t n)
{
    int64_t f = 0;
    for (int64_t i = 0; i < n; i++)
        f += (a[i] > 0.0f) != (b[i] > 0.0f);
    return f;
}

/* ---- post-processing hand cases ---- */

static bool row_less(const int32_t *a, const int32_t *b)
{
    for (int i = 0; i < 4; i++)
        if (a[i] != b[i])
            return a[i] < b[i];
    return false;
}

static void post_hand_cases(void)
{
    /* a solid 3x3x3 cube: only the centre has a full neighbourhood */
    int32_t cube[27 * 4], out[27 * 4];
    int n = 0;
    for (int x = 0; x < 3; x++)
        for (int y = 0; y < 3; y++)
            for (int z = 0; z < 3; z++) {
                int32_t *c = cube + 4 * n++;
                c[0] = 0; c[1] = 10 + x; c[2] = 20 + y; c[3] = 30 + z;
            }
    int64_t k = ssdec_prune(cube, 27, 1, out);
    bool centre_gone = k == 26;
    for (int64_t i = 0; i < k; i++)
        centre_gone &= !(out[4 * i + 1] == 11 && out[4 * i + 2] == 21 && out[4 * i + 3] == 31);
    CHECK(centre_gone, "prune of a 3x3x3 cube keeps %lld rows", (long long)k);
    CHECK(ssdec_prune(cube, 1, 1, out) == 1, "a single voxel is surface");
    CHECK(ssdec_prune(cube, 27, 2, out) == 27, "dist 2: no 5x5x5 neighbourhood is full");

    /* downsample: nothing to do at n <= max */
    int f = 0;
    CHECK(ssdec_downsample(cube, 27, 27, 2, 0, out, &f) == 27 && f == 1 &&
          memcmp(out, cube, sizeof(cube)) == 0, "downsample at n <= max is the identity");
    /* a flat slab (x constant): the 0/0 axis maps to int(target_min) */
    int32_t slab[16 * 4];
    for (int i = 0; i < 16; i++) {
        slab[4 * i] = 0; slab[4 * i + 1] = 7; slab[4 * i + 2] = i / 4; slab[4 * i + 3] = i % 4;
    }
    int64_t m = ssdec_downsample(slab, 16, 4, 2, 0, out, &f);
    /* x: size 1, target 0.5, offset 0.25, tmin 7.25 -> 7; y, z: 0..3 -> size 4, target 2,
     * offset 1, u = round(p/3 * 1 + 1) = 1, 1, 2, 2 -> 4 unique rows (7, {1,2}, {1,2}) */
    bool ok = m == 4 && f == 2;
    for (int64_t i = 0; ok && i < m; i++)
        ok = out[4 * i + 1] == 7 && out[4 * i + 2] == 1 + (int)(i / 2) && out[4 * i + 3] == 1 + (int)(i % 2);
    CHECK(ok, "downsample of a flat slab: %lld rows", (long long)m);
    /* the random-subset branch, reached with factor 1 (the rescale keeps all 27 rows):
     * 5 rows, sorted, a subset of the input, the same for the same seed */
    int32_t sub1[27 * 4], sub2[27 * 4];
    int64_t s1 = ssdec_downsample(cube, 27, 5, 1, 42, sub1, &f);
    int64_t s2 = ssdec_downsample(cube, 27, 5, 1, 42, sub2, &f);
    ok = s1 == 5 && s2 == 5 && memcmp(sub1, sub2, 5 * 16) == 0 && f == 1;
    for (int64_t i = 0; ok && i < s1; i++) {
        bool found = false;
        for (int j = 0; j < 27; j++)
            found |= memcmp(sub1 + 4 * i, cube + 4 * j, 16) == 0;
        ok = found && (i == 0 || row_less(sub1 + 4 * (i - 1), sub1 + 4 * i));
    }
    CHECK(ok, "random subset: deterministic, sorted, a subset of the input");
    int64_t s3 = ssdec_downsample(cube, 27, 5, 1, 43, sub2, &f);
    CHECK(s3 == 5 && memcmp(sub1, sub2, 5 * 16) != 0, "another seed draws another subset");
    printf("post-processing hand cases (prune cube/single/dist 2, downsample identity/slab/subset) done\n");
}

/* ---- downsample's unique rows: the bitmap path and the sort path agree with a plain sort ---- */

static int cmp_rows(const void *a, const void *b)
{
    return row_less(a, b) ? -1 : row_less(b, a) ? 1 : 0;
}

/* n rows with repeats, coordinates in [0, span) (x, y, z) and batch values in [0, nb);
 * factor 1 keeps the coordinates, max n - 1 forces the unique step, and with repeats no
 * subset is drawn: the output must be the sorted distinct rows. */
static void unique_case(int64_t n, int32_t span, int32_t nb, uint64_t seed, const char *what)
{
    int32_t *in = malloc((size_t)n * 16), *out = malloc((size_t)n * 16), *ref = malloc((size_t)n * 16);
    int64_t m = 0;
    int f = 0;

    for (int64_t i = 0; i < n; i++) {
        int32_t *r = in + 4 * i;
        if (i % 3 == 2) {                               /* a repeat of an earlier row */
            memcpy(r, in + 4 * (i / 2), 16);
            continue;
        }
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        r[0] = (int32_t)((seed >> 60) % (uint64_t)nb);
        for (int a = 1; a < 4; a++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            r[a] = (int32_t)((seed >> 33) % (uint64_t)span);
        }
    }
    in[1] = 0, in[2] = 0, in[3] = 0;                    /* both ends of every axis present */
    in[5] = span - 1, in[6] = span - 1, in[7] = span - 1;
    memcpy(ref, in, (size_t)n * 16);
    qsort(ref, (size_t)n, 16, cmp_rows);
    for (int64_t i = 0; i < n; i++)
        if (m == 0 || memcmp(ref + 4 * (m - 1), ref + 4 * i, 16) != 0)
            memmove(ref + 4 * m++, ref + 4 * i, 16);
    int64_t k = ssdec_downsample(in, n, n - 1, 1, 0, out, &f);
    CHECK(k == m && f == 1 && memcmp(out, ref, (size_t)m * 16) == 0,
          "%s: %lld rows, %lld distinct, downsample gave %lld", what, (long long)n, (long long)m,
          (long long)k);
    free(in);
    free(out);
    free(ref);
}

static void unique_cases(void)
{
    unique_case(200000, 32, 1, 1, "the pipeline's box (32^3, one batch): bitmap");
    unique_case(50000, 64, 3, 2, "three batches in a 64^3 box: bitmap");
    unique_case(30000, 1 << 20, 2, 3, "a 2^20-wide box (2^61 cells): the sort");
    printf("downsample unique rows: bitmap and sort paths equal a plain sort\n");
}

/* ---- the fixture's official post-processing outputs ---- */

static void post_fixture_cases(const struct ckpt *r)
{
    struct tensor lg, co, pin, pout, dout, fac;
    if (!ref(r, "logits", &lg) || !ref(r, "coords", &co) || !ref(r, "prune_test.coords_in", &pin) ||
        !ref(r, "prune_test.coords_out", &pout) || !ref(r, "downsample_test.coords_out", &dout) ||
        !ref(r, "downsample_factor", &fac))
        return;
    int R = (int)lg.shape[2];
    int64_t n0 = ssdec_coords(lg.data, R, NULL);
    int32_t *c = malloc((size_t)(n0 + 1) * 16), *p = malloc((size_t)(n0 + 1) * 16);
    CHECK(ssdec_coords(lg.data, R, c) == n0);
    rows_equal(c, n0, &co, "argwhere(reference logits > 0) vs coords");
    int64_t np = ssdec_prune(c, n0, 1, p);
    rows_equal(p, np, &co, "prune(coords) vs coords (no interior voxel)");
    int f = 0;
    int64_t nd = ssdec_downsample(p, np, 42000, 2, 0, c, &f);
    CHECK(f == ((const int32_t *)fac.data)[0] && nd == np, "downsample factor %d", f);
    free(c);
    free(p);

    int64_t n = pin.shape[0];
    int32_t *o = malloc((size_t)n * 16);
    int64_t k = ssdec_prune(pin.data, n, 1, o);
    rows_equal(o, k, &pout, "prune_sparse_structure(solid blob) vs official");
    k = ssdec_downsample(pin.data, n, n - 1, 2, 0, o, &f);
    rows_equal(o, k, &dout, "downsample_sparse_structure(blob, max n-1) vs official");
    CHECK(f == 2, "downsample factor %d, expected 2", f);
    free(o);
}

/* ---- error cases ---- */

static void error_cases(const struct ssdec_model *m)
{
    char err[256];
    float z[64 * 8] = {0};
    struct tensor bad1 = tensor_view(z, DTYPE_F32, DEVICE_HOST, SHAPE(1, 63, 8));   /* not a cube */
    struct tensor bad2 = tensor_view(z, DTYPE_F32, DEVICE_HOST, SHAPE(1, 64, 4));   /* channels */
    struct tensor bad3 = tensor_view(z, DTYPE_F16, DEVICE_HOST, SHAPE(1, 64, 8));   /* dtype */
    struct tensor good = tensor_view(z, DTYPE_F32, DEVICE_HOST, SHAPE(1, 64, 8));
    CHECK(ssdec_check_latent(m, &bad1, "shape_latent", err, sizeof(err)) == S3D_ESHAPE &&
          strstr(err, "shape_latent") && strstr(err, "HINT"), "%s", err);
    CHECK(ssdec_check_latent(m, &bad2, "shape_latent", err, sizeof(err)) == S3D_ESHAPE);
    CHECK(ssdec_check_latent(m, &bad3, "shape_latent", err, sizeof(err)) == S3D_ESHAPE);
    CHECK(ssdec_check_latent(m, NULL, "shape_latent", err, sizeof(err)) == S3D_ENOTFOUND);
    CHECK(ssdec_check_latent(m, &good, "shape_latent", err, sizeof(err)) == 0);
    CHECK(ssdec_latent_side(4096) == 16 && ssdec_latent_side(512) == 8 && ssdec_latent_side(0) == 0);

    struct ssdec_model w;
    CHECK(ssdec_load(&w, "tests/fixtures/ss_decoder_tiny/no-such.ckpt", DEVICE_HOST, DTYPE_F32) != 0,
          "a missing file loads");
    CHECK(ssdec_load(&w, DIR "/ref.safetensors", DEVICE_HOST, DTYPE_F32) == S3D_ENOTFOUND,
          "a file without input_layer.weight loads");
    printf("error cases (bad latents, missing file, wrong checkpoint) done\n");
}

/* ssdec_act_bytes at the released config (channels [512, 128, 32], 2 middle + 8 blocks,
 * 16^3 latent) from a model that has only its config and dtypes: the plan never reads
 * weight data. Spec decoders.md §2.4: peak "well under 0.2 GB plus convolution workspace". */
static void released_act_bytes(void)
{
    static struct ssdec_model m;
    static const int ch[3] = {512, 128, 32};
    const enum dtype dts[2] = {DTYPE_F16, DTYPE_F32};
    const enum device devs[2] = {DEVICE_CUDA, DEVICE_HOST};

    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 2; k++) {
            enum dtype cdt = dts[k];
            memset(&m, 0, sizeof(m));
            m.cfg = (struct ssdec_config){.latent_ch = 8, .out_ch = 1, .ch0 = 512, .n_middle = 2,
                                          .n_blocks = 8, .n_up = 2, .ch_last = 32};
            m.conv_dt = cdt;
            m.device = devs[d];
            m.in_w.dtype = m.out_w.dtype = cdt;
            for (int i = 0; i < 2; i++)
                m.middle[i].c1_w.dtype = m.middle[i].c2_w.dtype = cdt;
            for (int i = 0, lvl = 0; i < 8; i++) {
                struct ssdec_block *B = &m.blocks[i];
                B->up = i == 2 || i == 5;
                B->cin = ch[lvl];
                B->cout = B->up ? ch[++lvl] : ch[lvl];
                B->up_w.dtype = B->r.c1_w.dtype = B->r.c2_w.dtype = cdt;
            }
            size_t b = ssdec_act_bytes(&m, 16);
            size_t ws = devs[d] == DEVICE_CUDA ? SSDEC_CUDA_WS : 0;
            printf("act bytes, released config, %s %s: %.1f MB (+ %.0f MB cuDNN workspace)\n",
                   devs[d] == DEVICE_CUDA ? "cuda" : "host", dtype_name(cdt), (b - ws) / 1e6,
                   ws / 1e6);
            CHECK(b - ws < (cdt == DTYPE_F16 ? 100e6 : 200e6), "released act %zu bytes", b);
            CHECK(b - ws > 60e6, "released act %zu bytes: less than the 64^3 buffers", b);
        }
}

int main(void)
{
    struct ckpt r;
    struct tensor lat, lg;

    if (ckpt_open(&r, DIR "/ref.safetensors", 0) != 0)
        harness_skip("fixture %s/ref.safetensors not readable", DIR);
    if (!ref(&r, "shape_latent", &lat) || !ref(&r, "logits", &lg))
        return harness_done("test_ss_decode");

    post_hand_cases();
    unique_cases();
    post_fixture_cases(&r);
    released_act_bytes();

    /* ---- CPU F32 against the dump ---- */
    int rlat = ssdec_latent_side(lat.shape[1]);
    struct runner cpu;
    if (!runner_init(&cpu, DEVICE_HOST, DTYPE_F32, rlat))
        return harness_done("test_ss_decode");
    const struct ssdec_config *g = &cpu.m.cfg;
    CHECK(g->latent_ch == 8 && g->ch0 == 16 && g->n_middle == 2 && g->n_blocks == 8 &&
          g->n_up == 2 && g->ch_last == 8 && g->out_ch == 1, "config detected from the weights");
    error_cases(&cpu.m);
    CHECK(ssdec_check_latent(&cpu.m, &lat, "shape_latent", NULL, 0) == 0);
    int R = ssdec_out_side(&cpu.m, rlat);
    int64_t nv = (int64_t)R * R * R;
    CHECK(nv == tensor_numel(&lg), "logits side %d", R);
    float *l32 = malloc(sizeof(float) * (size_t)nv), *l16 = malloc(sizeof(float) * (size_t)nv);
    float *lgpu = malloc(sizeof(float) * (size_t)nv);
    struct tensor t32 = tensor_view(l32, DTYPE_F32, DEVICE_HOST, SHAPE(1, R, R, R, 1));
    struct tapctx tc = {&r, 0};
    ssdec_forward(&cpu.m, NULL, &cpu.act, &lat, &t32, on_tap, &tc);
    CHECK(tc.n_cmp == 8, "%d activations compared, expected 8", tc.n_cmp);
    report_cmp("cpu f32 logits                  vs torch",
               compare_f32(l32, lg.data, (size_t)nv, ATOL, RTOL, NMSE));
    CHECK(cpu.act.high_water == ssdec_act_bytes(&cpu.m, rlat),
          "act high-water %zu != act_bytes %zu", cpu.act.high_water, ssdec_act_bytes(&cpu.m, rlat));
    CHECK(cpu.act.used == 0, "act not released");
    struct tensor co;
    if (ref(&r, "coords", &co)) {
        int32_t *c = malloc((size_t)nv * 16);
        int64_t n = ssdec_coords(l32, R, c);
        rows_equal(c, n, &co, "cpu f32 coords vs torch");
        free(c);
    }
    printf("act bytes: host f32 %zu (latent %d^3 -> logits %d^3)\n", ssdec_act_bytes(&cpu.m, rlat),
           rlat, R);

    /* ---- the F16 path on the host ---- */
    struct runner h16;
    if (runner_init(&h16, DEVICE_HOST, DTYPE_F16, rlat)) {
        struct tensor t16 = tensor_view(l16, DTYPE_F32, DEVICE_HOST, SHAPE(1, R, R, R, 1));
        ssdec_forward(&h16.m, NULL, &h16.act, &lat, &t16, NULL, NULL);
        struct cmp c = compare_f32(l16, l32, (size_t)nv, -1, -1, F16_NMSE);
        report_cmp("host f16 path logits            vs f32", c);
        CHECK(c.max_abs > 0, "the F16 path rounds nothing");
        CHECK(h16.act.high_water == ssdec_act_bytes(&h16.m, rlat));
        printf("host f16 vs f32: %lld of %lld occupancy decisions flip\n",
               (long long)count_flips(l16, l32, nv), (long long)nv);
        runner_free(&h16);
    }

    /* ---- CUDA ---- */
    if (harness_gpu("CUDA part")) {
        struct runner gpu;
        for (int f16 = 0; f16 < 2; f16++) {
            if (!runner_init(&gpu, DEVICE_CUDA, f16 ? DTYPE_F16 : DTYPE_F32, rlat))
                break;
            struct tensor tg = tensor_view(lgpu, DTYPE_F32, DEVICE_HOST, SHAPE(1, R, R, R, 1));
            ssdec_forward(&gpu.m, &gpu.ctx, &gpu.act, &lat, &tg, NULL, NULL);
            struct cmp c = compare_f32(lgpu, f16 ? l16 : l32, (size_t)nv, -1, -1,
                                       f16 ? GPU16_NMSE : GPU32_NMSE);
            report_cmp(f16 ? "cuda f16 logits                 vs host f16 path"
                           : "cuda f32 logits                 vs cpu f32", c);
            printf("cuda %s: %lld occupancy flips; act high-water %zu of %zu\n",
                   f16 ? "f16" : "f32", (long long)count_flips(lgpu, f16 ? l16 : l32, nv),
                   gpu.act.high_water, gpu.act.size);
            CHECK(gpu.act.used == 0, "act not released");
            runner_free(&gpu);
        }
    }
    free(l32);
    free(l16);
    free(lgpu);
    runner_free(&cpu);
    ckpt_close(&r);
    return harness_done("test_ss_decode");
}
