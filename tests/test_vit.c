/*
 * test_vit.c - the shared DINOv2 ViT (stages/vit) on the CPU against the
 * official module, on H5's tiny fixture (tests/fixtures/cond_ss_tiny: a tiny
 * dinov2 ViT with 4 registers, random weights in the official .ckpt container,
 * activations dumped by tools/ref/dump_cond.py).
 *
 * Layer by layer so the first diverging layer is obvious: the tokens entering
 * block 0 (patch embed + cls + pos + registers), the output of every block (a
 * model truncated to i+1 blocks), the final norm; then the taps API (final norm
 * of chosen blocks), a caller-given pos-embed, and batching two images.
 * GPU part: CUDA fp32 and fp16 against the CPU on the same weights (skipped
 * with a reason without a GPU).
 */
#include "harness.h"
#include "arena.h"
#include "check.h"
#include "ckpt.h"
#include "err.h"
#include "log.h"
#include "vit/vit.h"
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX    "tests/fixtures/cond_ss_tiny/"
#define PREFIX "module_list.0.backbone."

/* Tolerances (fp32 CPU vs PyTorch CPU fp32): different summation orders in
 * GEMMs/attention over <= 600 terms: ~1e-6 relative per op, growing a little
 * through the residual stream. */
static const double ATOL = 1e-4, RTOL = 1e-4, NMSE = 1e-10;
/* CUDA vs CPU: fp32 ~1e-6; fp16 GEMMs/attention (11-bit mantissa, spec §6.7). */
static const double GPU32_NMSE = 1e-10, GPU16_NMSE = 1e-5;

static const float MEAN[3] = {0.485f, 0.456f, 0.406f}, STD[3] = {0.229f, 0.224f, 0.225f};

static const float *ref_data(const struct ckpt *r, const char *name, int64_t numel)
{
    const struct ckpt_entry *e = ckpt_find(r, name);

    CHECK(e != NULL, "fixture tensor %s", name);
    if (!e)
        return NULL;
    CHECK(e->dtype == DTYPE_F32 && ckpt_entry_numel(e) == numel, "%s numel %lld", name,
          (long long)ckpt_entry_numel(e));
    return (const float *)e->data;
}

static void cmp(const char *label, const float *out, const float *ref, size_t n, double atol,
                double rtol, double nmse)
{
    if (ref)
        report_cmp(label, compare_f32(out, ref, n, atol, rtol, nmse));
}

/* Dino's input normalisation of image (1, 3, S, S) into dst. */
static void normalise(float *dst, const float *src, int64_t hw)
{
    for (int c = 0; c < 3; c++)
        for (int64_t i = 0; i < hw; i++)
            dst[c * hw + i] = (src[c * hw + i] - MEAN[c]) / STD[c];
}

int main(void)
{
    struct weights w;
    struct vit m;
    struct arena wa, st, act;
    struct ckpt ref;
    char label[96];

    log_init("test_vit");
    if (weights_open(&w, FIX "ss_generator.ckpt:state_dict", "_base_models.condition_embedder.",
                     DTYPE_F32) != 0 ||
        ckpt_open(&ref, FIX "ref.safetensors", 0) != 0) {
        CHECK(0, "fixtures " FIX " unreadable (regenerate with tools/ref/dump_cond.py)");
        return harness_done("test_vit");
    }
    memset(&m, 0, sizeof(m));
    CHECK(vit_detect(&m.cfg, &w, PREFIX) == 0);
    printf("config: depth %d dim %d heads %d mlp %d patch %d regs %d grid %d ls %d\n", m.cfg.depth,
           m.cfg.dim, m.cfg.heads, m.cfg.mlp, m.cfg.patch, m.cfg.n_reg, m.cfg.grid, m.cfg.ls);
    CHECK(m.cfg.depth == 2 && m.cfg.dim == 128 && m.cfg.heads == 2 && m.cfg.mlp == 256 &&
          m.cfg.patch == 14 && m.cfg.n_reg == 4 && m.cfg.ls);
    const struct ckpt_entry *ie = ckpt_find(&ref, "image");
    CHECK(ie && ie->ndim == 4 && ie->shape[3] == (int64_t)m.cfg.grid * m.cfg.patch,
          "grid %d x patch %d must be the fixture's input size", m.cfg.grid, m.cfg.patch);
    CHECK(vit_bind(&m, &w, PREFIX, DTYPE_F32) == 0);
    CHECK(arena_init(&wa, ARENA_HOST, "weights", weights_arena_bytes(&w)) == 0);
    CHECK(arena_init(&st, ARENA_HOST, "staging", 1 << 20) == 0);
    CHECK(weights_upload(&w, &wa, &st) == 0);

    int64_t S = m.cfg.patch * m.cfg.grid, HW = S * S, C = m.cfg.dim;
    int64_t T = vit_tokens(&m.cfg, m.cfg.grid, m.cfg.grid);
    size_t nx = (size_t)(T * C);
    CHECK(arena_init(&act, ARENA_HOST, "act", vit_act_bytes(&m, 2, m.cfg.grid, m.cfg.grid) + ((size_t)4 << 20)) == 0);
    const float *image = ref_data(&ref, "image", 3 * HW);
    const float *rgb = ref_data(&ref, "rgb_image", 3 * HW);
    if (!image || !rgb)
        return harness_done("test_vit");
    struct tensor img = arena_tensor(&act, DTYPE_F32, SHAPE(2, 3, S, S));
    normalise(img.data, image, HW);
    normalise((float *)img.data + 3 * HW, rgb, HW);
    struct tensor img1 = tensor_slice(&img, 0, 0, 1);

    /* layer by layer: depth 0 = the tokens entering block 0 */
    for (int d = 0; d <= m.cfg.depth; d++) {
        struct vit cut = m;
        char name[64];
        size_t mark = arena_mark(&act);
        cut.cfg.depth = d;
        struct tensor x = vit_forward(&cut, NULL, &act, &img1, NULL, NULL);
        if (d == 0)
            snprintf(name, sizeof(name), "image.tokens");
        else
            snprintf(name, sizeof(name), "image.blocks.%d", d - 1);
        snprintf(label, sizeof(label), "vit cpu f32 %-18s", name);
        cmp(label, x.data, ref_data(&ref, name, (int64_t)nx), nx, ATOL, RTOL, NMSE);
        arena_release(&act, mark);
    }

    /* whole model, batch of 2 (image, rgb_image), taps of every block, final norm */
    size_t mark = arena_mark(&act);
    struct vit_taps taps = {.n = 2, .block = {1, 0}};
    for (int t = 0; t < 2; t++)
        taps.out[t] = arena_tensor(&act, DTYPE_F32, SHAPE(2, T, C));
    struct tensor x = vit_forward(&m, NULL, &act, &img, NULL, &taps);
    cmp("vit cpu f32 batch item 1 rgb_image.blocks.1", (float *)x.data + nx,
        ref_data(&ref, "rgb_image.blocks.1", (int64_t)nx), nx, ATOL, RTOL, NMSE);
    cmp("vit cpu f32 tap block 1 = image.norm     ", taps.out[0].data,
        ref_data(&ref, "image.norm", (int64_t)nx), nx, ATOL, RTOL, NMSE);
    cmp("vit cpu f32 tap item 1 = rgb_image.norm  ", (float *)taps.out[0].data + nx,
        ref_data(&ref, "rgb_image.norm", (int64_t)nx), nx, ATOL, RTOL, NMSE);
    struct tensor y = arena_tensor(&act, DTYPE_F32, SHAPE(2, T - m.cfg.n_reg, C));
    vit_final_norm(&m, NULL, &y, &x, true);
    size_t ne = (size_t)((T - m.cfg.n_reg) * C);
    cmp("vit cpu f32 final norm, no registers     ", y.data,
        ref_data(&ref, "image.embed", (int64_t)ne), ne, ATOL, RTOL, NMSE);
    /* tap of block 0 = final norm applied to the block-0 output (independent check) */
    {
        struct vit cut = m;
        cut.cfg.depth = 1;
        size_t m2 = arena_mark(&act);
        struct tensor x0 = vit_forward(&cut, NULL, &act, &img, NULL, NULL);
        struct tensor y0 = arena_tensor(&act, DTYPE_F32, SHAPE(2, T, C));
        vit_final_norm(&m, NULL, &y0, &x0, false);
        report_cmp("vit cpu f32 tap block 0 = norm(block 0)  ",
                   compare_f32(taps.out[1].data, y0.data, 2 * nx, 0, 0, 0));
        arena_release(&act, m2);
    }

    /* a caller-given pos-embed equal to the stored one gives the same result */
    {
        size_t m2 = arena_mark(&act);
        int64_t N = (int64_t)m.cfg.grid * m.cfg.grid;
        struct tensor pos = tensor_view((float *)m.pos_embed.data + C, DTYPE_F32, DEVICE_HOST,
                                        SHAPE(N, C));
        struct tensor xp = vit_forward(&m, NULL, &act, &img1, &pos, NULL);
        report_cmp("vit cpu f32 explicit pos_patch == stored ",
                   compare_f32(xp.data, x.data, nx, 0, 0, 0));
        arena_release(&act, m2);
    }

    /* vit_act_bytes is the forward's exact high-water mark: the forward runs in an
     * arena of that size with no slack and reaches it (stored grid, batch 2; a
     * 1 x 2 grid with a caller's pos-embed, batch 1) */
    for (int k = 0; k < 2; k++) {
        int64_t ph = k ? 1 : m.cfg.grid, pw = k ? 2 : m.cfg.grid, B = 2 - k, P = m.cfg.patch;
        size_t need = vit_act_bytes(&m, B, ph, pw);
        struct arena ex;
        CHECK(arena_init(&ex, ARENA_HOST, "exact", need) == 0);
        struct tensor im = tensor_view(img.data, DTYPE_F32, DEVICE_HOST, SHAPE(B, 3, ph * P, pw * P));
        struct tensor pos = tensor_view((float *)m.pos_embed.data + C, DTYPE_F32, DEVICE_HOST,
                                        SHAPE(ph * pw, C));
        vit_forward(&m, NULL, &ex, &im, k ? &pos : NULL, NULL);
        printf("vit act bytes, %lld x %lld patches, batch %lld: %zu planned, %zu used\n",
               (long long)ph, (long long)pw, (long long)B, need, ex.high_water);
        CHECK(ex.high_water == need, "vit forward high-water %zu != vit_act_bytes %zu",
              ex.high_water, need);
        arena_free(&ex);
    }

    /* GPU: CUDA fp32 and fp16 against the CPU result x */
    if (harness_gpu("GPU part")) {
        const enum dtype gdts[2] = {DTYPE_F32, DTYPE_F16};
        for (int g = 0; g < 2; g++) {
            struct weights w2;
            struct vit dm;
            struct arena dwa, dact, pst;
            struct op_ctx ctx;
            memset(&dm, 0, sizeof(dm));
            CHECK(weights_open(&w2, FIX "ss_generator.ckpt:state_dict",
                               "_base_models.condition_embedder.", gdts[g]) == 0);
            dm.cfg = m.cfg;
            CHECK(vit_bind(&dm, &w2, PREFIX, gdts[g]) == 0);
            CHECK(arena_init(&dwa, ARENA_DEVICE, "weights", weights_arena_bytes(&w2)) == 0);
            CHECK(arena_init(&pst, ARENA_PINNED, "staging", 1 << 20) == 0);
            CHECK(weights_upload(&w2, &dwa, &pst) == 0);
            CHECK(arena_init(&dact, ARENA_DEVICE, "act",
                             vit_act_bytes(&dm, 2, m.cfg.grid, m.cfg.grid) +
                             OP_WORKSPACE_DEFAULT + ((size_t)4 << 20)) == 0);
            CHECK(op_ctx_init(&ctx, &dact, OP_WORKSPACE_DEFAULT) == 0);
            struct tensor dimg = arena_tensor(&dact, DTYPE_F32, SHAPE(2, 3, S, S));
            CUDA_CHECK(cudaMemcpy(dimg.data, img.data, tensor_nbytes(&img), cudaMemcpyHostToDevice));
            struct tensor dx = vit_forward(&dm, &ctx, &dact, &dimg, NULL, NULL);
            float *hx = malloc(tensor_nbytes(&dx));
            op_ctx_synchronize(&ctx);
            CUDA_CHECK(cudaMemcpy(hx, dx.data, tensor_nbytes(&dx), cudaMemcpyDeviceToHost));
            snprintf(label, sizeof(label), "vit cuda %s vs cpu (2 images)", dtype_name(gdts[g]));
            report_cmp(label, compare_f32(hx, x.data, 2 * nx, -1, -1,
                                          g ? GPU16_NMSE : GPU32_NMSE));
            free(hx);
            op_ctx_free(&ctx);
            arena_free(&dact);
            arena_free(&pst);
            arena_free(&dwa);
            weights_close(&w2);
        }
    }
    arena_release(&act, mark);
    arena_free(&act);
    arena_free(&st);
    arena_free(&wa);
    weights_close(&w);
    ckpt_close(&ref);
    return harness_done("test_vit");
}
