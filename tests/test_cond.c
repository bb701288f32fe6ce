/*
 * test_cond.c - the condition fuser (stages/cond_net/cond.c, pointmap.c) on the
 * CPU against the official EmbedderFuser, both variants, on H5's tiny fixtures
 * (tests/fixtures/cond_{ss,slat}_tiny: official modules with tiny configs,
 * random weights in the official .ckpt container, dumped activations).
 *
 * Order: the point-map embedder's output ('pointmap.embed', 'rgb_pointmap.embed'),
 * then each segment of the fused condition (so a bad segment names its
 * embedder), then the whole 'cond'. Bad inputs: the wrong checkpoint, a missing
 * input, a wrong input shape each give an error code (and one logged line).
 * GPU part: CUDA fp32 and fp16 against the CPU (skipped without a GPU).
 *
 * Inputs at another size (518 x 518, what the preprocessor makes for the
 * release's 518 DINO input): the embedders resize them as the reference does
 * (Dino bilinear, PointPatchEmbed nearest). Expected: the official fuser on the
 * same weights and the same closed-form 518 inputs
 * (tests/fixtures/cond_518_tiny, tools/ref/dump_cond.py --inputs pattern);
 * a control run with the inputs shrunk by nearest instead of bilinear must
 * miss it, so the comparison sees the resize.
 */
#include "harness.h"
#include "arena.h"
#include "ckpt.h"
#include "err.h"
#include "log.h"
#include "ops_image.h"
#include "cond_net/cond.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* fp32 CPU vs PyTorch CPU fp32: summation order only (see test_vit.c). */
static const double ATOL = 1e-4, RTOL = 1e-4, NMSE = 1e-10;
/* CUDA fp32 vs CPU: order only; fp16: fp16 GEMMs/attention and an fp16 output
 * (spec §6.7, §8.8), about 1e-3 relative per element. */
static const double GPU32_NMSE = 1e-10, GPU16_NMSE = 1e-5;

static const struct tensor *ref_tensor(const struct ckpt *r, const char *name, struct tensor *buf)
{
    const struct ckpt_entry *e = ckpt_find(r, name);

    CHECK(e != NULL, "fixture tensor %s", name);
    if (!e)
        return NULL;
    *buf = ckpt_entry_tensor(e);
    return buf;
}

/* Run the fuser on dev/gemm_dt (its DINO blocks streamed through `slots` slots;
 * 0: resident); returns a malloc'ed fp32 copy of the output. The model is loaded
 * into *m_out (left loaded for the caller: a loaded model is not copied, its
 * towers point at its blocks) or, when m_out is NULL, freed. */
static float *run_fuser_slots(const char *ckpt, enum device dev, enum dtype gd,
                              const struct cond_inputs *in, struct cond_model *m_out, int slots)
{
    static struct cond_model local;
    struct cond_model *mp = m_out ? m_out : &local;
    struct arena act;
    struct op_ctx ctx;
    float *res = NULL;

    memset(&ctx, 0, sizeof(ctx));
    if (cond_load(mp, ckpt, dev, gd, slots) != 0) {
        CHECK(0, "cond_load %s", ckpt);
        return NULL;
    }
    CHECK(cond_check_inputs(mp, in) == 0);
    size_t bytes = cond_act_bytes(mp) + (dev == DEVICE_CUDA ? OP_WORKSPACE_DEFAULT : 0);
    CHECK(arena_init(&act, dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act", bytes) == 0);
    if (dev == DEVICE_CUDA)
        CHECK(op_ctx_init(&ctx, &act, OP_WORKSPACE_DEFAULT) == 0);
    size_t n = (size_t)(mp->n_tokens * mp->dim);
    void *o = malloc(n * dtype_size(gd));
    struct tensor out = tensor_view(o, gd, DEVICE_HOST, SHAPE(1, mp->n_tokens, mp->dim));
    cond_forward(mp, dev == DEVICE_CUDA ? &ctx : NULL, &act, in, &out);
    /* the plan is the run's exact high-water mark (on CUDA the op context's
     * workspace comes from the same arena) */
    CHECK(dev == DEVICE_CUDA ? act.high_water <= act.size : act.high_water == bytes,
          "activation high-water %zu, cond_act_bytes %zu", act.high_water, bytes);
    printf("  %s %s%s: activation arena peak %.2f MB of %.2f MB sized\n",
           dev == DEVICE_CUDA ? "cuda" : "cpu", dtype_name(gd), slots ? " streamed" : "",
           act.high_water / 1e6, act.size / 1e6);
    res = malloc(sizeof(*res) * n);
    dtype_convert(res, DTYPE_F32, o, gd, n);
    free(o);
    if (dev == DEVICE_CUDA)
        op_ctx_free(&ctx);
    arena_free(&act);
    if (!m_out)
        cond_free(mp);
    return res;
}

static float *run_fuser(const char *ckpt, enum device dev, enum dtype gd,
                        const struct cond_inputs *in, struct cond_model *m_out)
{
    return run_fuser_slots(ckpt, dev, gd, in, m_out, 0);
}

static void run_variant(const char *dir, const char *ckpt_name, bool ss)
{
    char ckpt[256], refp[256], label[128];
    struct ckpt ref;
    struct tensor b[6];
    struct cond_inputs in;
    static struct cond_model m;

    snprintf(ckpt, sizeof(ckpt), "%s/%s", dir, ckpt_name);
    snprintf(refp, sizeof(refp), "%s/ref.safetensors", dir);
    if (ckpt_open(&ref, refp, 0) != 0) {
        CHECK(0, "fixture %s unreadable (regenerate with tools/ref/dump_cond.py)", refp);
        return;
    }
    memset(&in, 0, sizeof(in));
    in.image = ref_tensor(&ref, "image", &b[0]);
    in.rgb_image = ref_tensor(&ref, "rgb_image", &b[1]);
    in.mask = ref_tensor(&ref, "mask", &b[2]);
    in.rgb_image_mask = ref_tensor(&ref, "rgb_image_mask", &b[3]);
    if (ss) {
        in.pointmap = ref_tensor(&ref, "pointmap", &b[4]);
        in.rgb_pointmap = ref_tensor(&ref, "rgb_pointmap", &b[5]);
    }
    float *out = run_fuser(ckpt, DEVICE_HOST, DTYPE_F32, &in, &m);
    if (!out)
        goto out_ref;
    CHECK(m.variant == (ss ? COND_SS : COND_SLAT), "variant detected from the checkpoint");
    const struct ckpt_entry *ce = ckpt_find(&ref, "cond");
    CHECK(ce && ckpt_entry_numel(ce) == m.n_tokens * m.dim, "cond shape");
    if (!ce || ckpt_entry_numel(ce) != m.n_tokens * m.dim)
        goto out_free;

    /* the point-map embedder alone */
    if (ss) {
        struct arena act;
        int64_t W = (int64_t)m.ppe.nwin * m.ppe.nwin, D = m.ppe.dim, S = m.input_size;
        /* pm at the fixture's input size (the fuser itself resizes before uploading) */
        CHECK(arena_init(&act, ARENA_HOST, "act",
                         cond_act_bytes(&m) + arena_round(sizeof(float) * (size_t)(2 * 3 * S * S))) == 0);
        struct tensor pm = arena_tensor(&act, DTYPE_F32, SHAPE(2, 3, S, S));
        struct tensor pe = arena_tensor(&act, DTYPE_F32, SHAPE(2, W, D));
        memcpy(pm.data, in.pointmap->data, tensor_nbytes(in.pointmap));
        memcpy((char *)pm.data + tensor_nbytes(in.pointmap), in.rgb_pointmap->data,
               tensor_nbytes(in.rgb_pointmap));
        ppe_forward(&m.ppe, NULL, &act, &pe, &pm);
        const char *names[2] = {"pointmap.embed", "rgb_pointmap.embed"};
        for (int i = 0; i < 2; i++) {
            struct tensor r;
            if (!ref_tensor(&ref, names[i], &r))
                continue;
            snprintf(label, sizeof(label), "%s cpu f32 %-22s", dir + 15, names[i]);
            report_cmp(label, compare_f32((float *)pe.data + i * W * D, r.data, (size_t)(W * D),
                                          ATOL, RTOL, NMSE));
        }
        arena_free(&act);
    }

    /* each segment of the fused condition, in the reference's order (spec §8.3) */
    const float *rc = (const float *)ce->data;
    const char *segs[6] = {"image", "rgb_image", "mask", "rgb_image_mask", "pointmap", "rgb_pointmap"};
    int64_t row = 0;
    for (int s = 0; s < (ss ? 6 : 4); s++) {
        int64_t rows = s < 4 ? (m.n_tokens - (ss ? 2 * (int64_t)m.ppe.nwin * m.ppe.nwin : 0)) / 4
                             : (int64_t)m.ppe.nwin * m.ppe.nwin;
        size_t n = (size_t)(rows * m.dim);
        snprintf(label, sizeof(label), "%s cpu f32 cond rows %4lld.. (%s)", dir + 15,
                 (long long)row, segs[s]);
        report_cmp(label, compare_f32(out + row * m.dim, rc + row * m.dim, n, ATOL, RTOL, NMSE));
        row += rows;
    }
    CHECK(row == m.n_tokens);
    snprintf(label, sizeof(label), "%s cpu f32 cond (1,%lld,%d)", dir + 15,
             (long long)m.n_tokens, m.dim);
    report_cmp(label, compare_f32(out, rc, (size_t)(m.n_tokens * m.dim), ATOL, RTOL, NMSE));

    /* bad inputs: missing tensor, wrong shape */
    {
        struct cond_inputs bad = in;
        bad.mask = NULL;
        CHECK(cond_check_inputs(&m, &bad) == S3D_ENOTFOUND, "missing mask");
        bad = in;
        bad.image = in.mask;                               /* 1 channel where 3 are needed */
        CHECK(cond_check_inputs(&m, &bad) == S3D_ESHAPE, "image with 1 channel");
        if (ss) {
            bad = in;
            bad.rgb_pointmap = NULL;
            CHECK(cond_check_inputs(&m, &bad) == S3D_ENOTFOUND, "SS without rgb_pointmap");
        }
    }

    /* the DINO towers' blocks streamed through 2 and 3 slots (stage_blocks.h): the
     * resident output bit for bit; a wrong slot or a stale block would change it */
    for (int slots = 2; slots <= 3; slots++) {
        float *so = run_fuser_slots(ckpt, DEVICE_HOST, DTYPE_F32, &in, NULL, slots);
        CHECK(so && !memcmp(so, out, sizeof(float) * (size_t)(m.n_tokens * m.dim)),
              "%s: blocks streamed through %d slots = resident, bit for bit", dir + 15, slots);
        free(so);
    }

    /* GPU: CUDA fp32 and fp16 against the CPU output, fp16 streamed = fp16 resident */
    if (harness_gpu("GPU part")) {
        const enum dtype gdts[2] = {DTYPE_F32, DTYPE_F16};
        float *g16 = NULL;
        for (int g = 0; g < 2; g++) {
            float *go = run_fuser(ckpt, DEVICE_CUDA, gdts[g], &in, NULL);
            if (!go)
                continue;
            snprintf(label, sizeof(label), "%s cuda %s cond vs cpu", dir + 15, dtype_name(gdts[g]));
            report_cmp(label, compare_f32(go, out, (size_t)(m.n_tokens * m.dim), -1, -1,
                                          g ? GPU16_NMSE : GPU32_NMSE));
            if (g)
                g16 = go;
            else
                free(go);
        }
        float *gs = g16 ? run_fuser_slots(ckpt, DEVICE_CUDA, DTYPE_F16, &in, NULL, 2) : NULL;
        CHECK(gs && !memcmp(gs, g16, sizeof(float) * (size_t)(m.n_tokens * m.dim)),
              "%s: cuda fp16 streamed through 2 slots = resident, bit for bit", dir + 15);
        free(gs);
        free(g16);
    }
out_free:
    free(out);
    cond_free(&m);
out_ref:
    ckpt_close(&ref);
}

// ----------------------------------------------------------------------------
// inputs at 518: tools/ref/dump_cond.py pattern_inputs, value for value

/* Fill the six (or four) closed-form inputs at n x n into buf (6 planes of
 * 3 n^2 floats, malloc'ed by the caller) and point in at them. */
static void pattern_inputs(int64_t n, float *buf, struct tensor t[6], struct cond_inputs *in,
                           bool ss)
{
    int64_t N = n * n;
    float *im = buf, *rim = buf + 3 * N, *mk = buf + 6 * N, *rmk = buf + 9 * N;
    float *pm = buf + 12 * N, *rpm = buf + 15 * N;

    for (int64_t y = 0; y < n; y++)
        for (int64_t x = 0; x < n; x++) {
            int64_t k = y * n + x;
            bool nan1 = (x + 2 * y) % 13 == 0, nan2 = 25 * y < n;
            mk[k] = (float)((x / 37 + y / 29) % 2);
            rmk[k] = 25 * ((2 * x - n) * (2 * x - n) + (2 * y - n) * (2 * y - n)) < 9 * n * n;
            for (int64_t c = 0; c < 3; c++) {
                im[c * N + k] = (float)((7 * x + 13 * y + 5 * c) % 251) / 256.0f;
                rim[c * N + k] = (float)((3 * x + 11 * y + 17 * c) % 253) / 256.0f;
                pm[c * N + k] = nan1 ? NAN : (float)((5 * x + 3 * y + 7 * c) % 61 - 30) / 16.0f;
                rpm[c * N + k] = nan2 ? NAN : (float)((2 * x + 9 * y + 11 * c) % 47 - 23) / 8.0f;
            }
        }
    float *p[6] = {im, rim, mk, rmk, pm, rpm};
    for (int i = 0; i < 6; i++)
        t[i] = tensor_view(p[i], DTYPE_F32, DEVICE_HOST, SHAPE(1, i == 2 || i == 3 ? 1 : 3, n, n));
    memset(in, 0, sizeof(*in));
    in->image = &t[0];
    in->rgb_image = &t[1];
    in->mask = &t[2];
    in->rgb_image_mask = &t[3];
    if (ss) {
        in->pointmap = &t[4];
        in->rgb_pointmap = &t[5];
    }
}

static void run_518(const char *ckpt, const char *refp, bool ss)
{
    const int64_t n = 518;
    struct ckpt ref;
    struct tensor t[6], small[6];
    struct cond_inputs in, ctl;
    static struct cond_model m;
    char label[128];
    float *buf = malloc(sizeof(float) * (size_t)(18 * n * n));

    ASSERT(buf);
    if (ckpt_open(&ref, refp, 0) != 0) {
        CHECK(0, "fixture %s unreadable (see tests/fixtures/cond_518_tiny/README.md)", refp);
        free(buf);
        return;
    }
    pattern_inputs(n, buf, t, &in, ss);
    float *out = run_fuser(ckpt, DEVICE_HOST, DTYPE_F32, &in, &m);
    const struct ckpt_entry *ce = ckpt_find(&ref, "cond");
    CHECK(ce && out && ckpt_entry_numel(ce) == m.n_tokens * m.dim, "%s: cond shape", refp);
    if (!ce || !out || ckpt_entry_numel(ce) != m.n_tokens * m.dim)
        goto out_free;
    size_t ne = (size_t)(m.n_tokens * m.dim);
    snprintf(label, sizeof(label), "%s cpu f32 cond from 518 inputs (S %d)", ss ? "ss  " : "slat",
             m.input_size);
    report_cmp(label, compare_f32(out, (const float *)ce->data, ne, ATOL, RTOL, NMSE));

    /* control: the DINO inputs shrunk by nearest instead of bilinear must not match */
    int64_t S = m.input_size;
    float *sb = malloc(sizeof(float) * (size_t)(12 * S * S));
    ASSERT(sb);
    ctl = in;
    const struct tensor **slot[4] = {&ctl.image, &ctl.rgb_image, &ctl.mask, &ctl.rgb_image_mask};
    for (int i = 0; i < 4; i++) {
        small[i] = tensor_view(sb + i * 3 * S * S, DTYPE_F32, DEVICE_HOST,
                               SHAPE(1, t[i].shape[1], S, S));
        op_resize_cpu(&small[i], &t[i], OP_RESIZE_NEAREST, 0, 0);
        *slot[i] = &small[i];
    }
    float *bad = run_fuser(ckpt, DEVICE_HOST, DTYPE_F32, &ctl, NULL);
    struct cmp c = compare_f32(bad, (const float *)ce->data, ne, ATOL, RTOL, NMSE);
    printf("%s control (nearest instead of bilinear): rel_l2 %.1e, must fail\n",
           ss ? "ss  " : "slat", c.rel_l2);
    CHECK(!c.ok && c.rel_l2 > 1e-3, "the 518 comparison must see the resize mode");
    free(bad);
    free(sb);

    if (s3d_cuda_available()) {
        float *go = run_fuser(ckpt, DEVICE_CUDA, DTYPE_F32, &in, NULL);
        snprintf(label, sizeof(label), "%s cuda f32 cond from 518 inputs vs cpu", ss ? "ss  " : "slat");
        if (go)
            report_cmp(label, compare_f32(go, out, ne, -1, -1, GPU32_NMSE));
        free(go);
    } else {
        printf("GPU part skipped (518 inputs): no CUDA device on this machine\n");
    }
out_free:
    free(out);
    cond_free(&m);
    ckpt_close(&ref);
    free(buf);
}

int main(void)
{
    static struct cond_model m;

    log_init("test_cond");
    run_variant("tests/fixtures/cond_ss_tiny", "ss_generator.ckpt", true);
    run_variant("tests/fixtures/cond_slat_tiny", "slat_generator.ckpt", false);
    run_518("tests/fixtures/cond_ss_tiny/ss_generator.ckpt",
            "tests/fixtures/cond_518_tiny/ss_518.safetensors", true);
    run_518("tests/fixtures/cond_slat_tiny/slat_generator.ckpt",
            "tests/fixtures/cond_518_tiny/slat_518.safetensors", false);

    /* the wrong checkpoint for this stage: MoGe's (no condition embedder) */
    printf("expect one error line (wrong checkpoint):\n");
    CHECK(cond_load(&m, "tests/fixtures/moge_tiny/model.pt", DEVICE_HOST, DTYPE_F32, 0) < 0,
          "MoGe checkpoint refused");
    printf("expect one error line (missing file):\n");
    CHECK(cond_load(&m, "tests/fixtures/no_such.ckpt", DEVICE_HOST, DTYPE_F32, 0) < 0);
    return harness_done("test_cond");
}
