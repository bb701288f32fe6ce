/*
 * test_ss_flow.c - the SS flow network and sampler (stages/ss_flow_net/) on
 * the CPU against the official modules on the tiny fixture
 * (tests/fixtures/ss_flow_tiny, tools/ref/dump_ss_flow.py: width 128, 2 heads,
 * 1 block, MLP ratio 1, cond width 128 x 96 tokens, 8^3 shape tokens). The
 * weights are the generator half of tests/fixtures/cond_ss_tiny/ss_generator.ckpt,
 * which also holds the tiny condition embedder, as the released file does.
 *
 * 1. Config detection from the checkpoint.
 * 2. One evaluation (eval.safetensors): t/d embeddings, block-0 input and
 *    sub-module outputs per stream, block output, the five velocities, for the
 *    conditional and the unconditional (condition x 0) pass.
 * 3. The time grid bit for bit (t_seq, step.k.t); the Euler update replayed
 *    with the reference velocities reproduces every stored x and final bit for
 *    bit; then the whole 25-step sampler (44 evaluations) from the fixture's
 *    noise: per-step velocities and the final latents. The official shortcut
 *    (distillation) mode, 4 steps (sampler_shortcut.safetensors: d = 1/4, no
 *    CFG): grid, per-step velocities and final latents.
 * 4. Bad inputs (missing/mis-shaped condition and latents), wrong checkpoints.
 * 5. GPU (skipped without one): CUDA fp32 and fp16 forward and sampler vs CPU.
 */
#include "harness.h"
#include "arena.h"
#include "ckpt_testutil.h"
#include "ckpt.h"
#include "err.h"
#include "log.h"
#include "ss_flow_net/ssflow.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIR "tests/fixtures/ss_flow_tiny"
#define CKPT "tests/fixtures/cond_ss_tiny/ss_generator.ckpt"   /* embedder + generator */

/* fp32 CPU vs PyTorch CPU fp32: summation order only. */
static const double ATOL = 1e-5, RTOL = 1e-4, NMSE = 1e-8;    /* rel L2 <= 1e-4 */
/* CUDA fp32 vs CPU: order only; fp16: fp16 GEMMs/attention, fp16 velocities. */
static const double GPU32_NMSE = 1e-10, GPU16_NMSE = 1e-4;
/* The fp16 path on the host against fp32: fp16 GEMM inputs/outputs, fp16 velocities. */
static const double HOST16_NMSE = 1e-5;
/* The fp16 path on the host against the official module under fp16 autocast. */
static const double AUTOCAST_NMSE = 1e-6;
/* 25 steps of fp16 against the fp32 CPU run: the errors of 44 evaluations add up. */
static const double GPU16_SAMPLE_NMSE = 1e-3;

static const struct tensor *ref(const struct ckpt *r, const char *name, struct tensor *buf)
{
    const struct ckpt_entry *e = ckpt_find(r, name);

    CHECK(e != NULL, "fixture tensor %s", name);
    if (!e)
        return NULL;
    *buf = ckpt_entry_tensor(e);
    return buf;
}

/* Compare n floats at out with fixture tensor name (from element off). */
static void cmp_ref(const struct ckpt *r, const char *name, const float *out, int64_t off, int64_t n,
                    const char *label)
{
    struct tensor t;
    char lab[160];

    if (!ref(r, name, &t))
        return;
    CHECK(t.dtype == DTYPE_F32 && tensor_numel(&t) >= off + n, "%s size", name);
    snprintf(lab, sizeof(lab), "%-44s", label ? label : name);
    report_cmp(lab, compare_f32(out, (const float *)t.data + off, (size_t)n, ATOL, RTOL, NMSE));
}

/* Velocity buffers matching the model's latents. */
struct lat {
    float        *buf;
    struct tensor t[SSF_N_LATENT];
    struct tensor *p[SSF_N_LATENT];
    int64_t       off[SSF_N_LATENT + 1];
};

static void lat_init(struct lat *L, const struct ssflow_config *g)
{
    L->off[0] = 0;
    for (int l = 0; l < SSF_N_LATENT; l++)
        L->off[l + 1] = L->off[l] + g->ntok[l] * g->cin[l];
    L->buf = calloc((size_t)L->off[SSF_N_LATENT], sizeof(float));
    ASSERT(L->buf);
    for (int l = 0; l < SSF_N_LATENT; l++) {
        L->t[l] = tensor_view(L->buf + L->off[l], DTYPE_F32, DEVICE_HOST,
                              SHAPE(1, g->ntok[l], g->cin[l]));
        L->p[l] = &L->t[l];
    }
}

/* Copy fixture tensors prefix<latent> into L; false when one is missing. */
static bool lat_load(struct lat *L, const struct ckpt *r, const char *prefix)
{
    char name[96];
    struct tensor t;

    for (int l = 0; l < SSF_N_LATENT; l++) {
        snprintf(name, sizeof(name), "%s%s", prefix, ssflow_latent_name[l]);
        if (!ref(r, name, &t) || tensor_numel(&t) != tensor_numel(&L->t[l]))
            return false;
        memcpy(L->t[l].data, t.data, tensor_nbytes(&t));
    }
    return true;
}

/* Everything one device/precision needs to evaluate the model. */
struct runner {
    struct ssflow_model m;
    struct arena        act;
    struct op_ctx       ctx;
    const struct op_ctx *c;
    bool                ok;
};

static bool runner_init(struct runner *R, enum device dev, enum dtype gd, int64_t n_cond)
{
    memset(R, 0, sizeof(*R));
    if (ssflow_load(&R->m, CKPT, dev, gd, 0) != 0) {
        CHECK(0, "ssflow_load %s %s", dev == DEVICE_CUDA ? "cuda" : "cpu", dtype_name(gd));
        return false;
    }
    size_t ws = dev == DEVICE_CUDA ? OP_WORKSPACE_DEFAULT : 0;
    CHECK(arena_init(&R->act, dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act",
                     ssflow_sample_bytes(&R->m, n_cond, false) +
                     ssflow_cond_bytes(&R->m, n_cond, true) + ws) == 0);
    if (dev == DEVICE_CUDA) {
        CHECK(op_ctx_init(&R->ctx, &R->act, ws) == 0);
        R->c = &R->ctx;
    }
    R->ok = true;
    return true;
}

static void runner_free(struct runner *R)
{
    if (R->c)
        op_ctx_free(&R->ctx);
    arena_free(&R->act);
    ssflow_free(&R->m);
}

/* Evaluate once (cond or uncond when cond is NULL) into v; cache_kv: project
 * the condition's K/V up front (ssflow_put_cond) instead of inside. */
static void eval_once(struct runner *R, struct lat *x, const struct tensor *cond, float t, float d,
                      struct lat *v, const struct ssflow_taps *taps, bool cache_kv)
{
    size_t mark = arena_mark(&R->act);
    struct ssflow_cond c;
    const struct tensor *xc[SSF_N_LATENT];

    for (int l = 0; l < SSF_N_LATENT; l++)
        xc[l] = x->p[l];
    if (cond)
        ssflow_put_cond(&R->m, R->c, &R->act, cond, cache_kv, &c);
    ssflow_forward(&R->m, R->c, &R->act, xc, t, d, cond ? &c : NULL, v->p, taps);
    CHECK(R->act.high_water <= R->act.size);
    arena_release(&R->act, mark);
}

// ----------------------------------------------------------------------------
// 2. one evaluation

static void test_eval(struct runner *R, const struct ckpt *E, float **vcond_out)
{
    const struct ssflow_config *g = &R->m.cfg;
    int64_t C = g->dim, T = g->n_tok, Ns = g->n_shape, P = T - Ns;
    struct tensor tt, dt, ct;
    struct lat x, v;
    float *te = malloc(sizeof(float) * (size_t)C), *de = malloc(sizeof(float) * (size_t)C);
    float *tin = malloc(sizeof(float) * (size_t)(T * C)), *sa = malloc(sizeof(float) * (size_t)(T * C));
    float *ca = malloc(sizeof(float) * (size_t)(T * C)), *ml = malloc(sizeof(float) * (size_t)(T * C));
    float *bo = malloc(sizeof(float) * (size_t)(T * C));
    struct ssflow_taps taps = {.block = 0, .t_emb = te, .d_emb = de, .tokens_in = tin,
                               .self_attn = sa, .cross_attn = ca, .mlp = ml, .block_out = bo};
    char name[96];

    ASSERT(te && de && tin && sa && ca && ml && bo);
    lat_init(&x, g);
    lat_init(&v, g);
    if (!lat_load(&x, E, "x.") || !ref(E, "t", &tt) || !ref(E, "d", &dt) || !ref(E, "cond", &ct))
        goto out;
    CHECK(ssflow_check_cond(&R->m, &ct, "cond", NULL, 0) == 0);
    CHECK(ssflow_check_latents(&R->m, (const struct tensor *const *)x.p, "x.", NULL, 0) == 0);
    float t = *(const float *)tt.data, d = *(const float *)dt.data;
    printf("eval at t*1000 = %.4f, d = %g\n", (double)t, (double)d);

    eval_once(R, &x, &ct, t, d, &v, &taps, false);
    cmp_ref(E, "cond.t_embedder", te, 0, C, NULL);
    cmp_ref(E, "cond.d_embedder", de, 0, C, NULL);
    cmp_ref(E, "cond.tokens_in.6drotation_normalized", tin + Ns * C, 0, P * C, NULL);
    cmp_ref(E, "cond.blocks.0.self_attn.shape", sa, 0, Ns * C, NULL);
    cmp_ref(E, "cond.blocks.0.self_attn.6drotation_normalized", sa + Ns * C, 0, P * C, NULL);
    cmp_ref(E, "cond.blocks.0.cross_attn.6drotation_normalized", ca + Ns * C, 0, P * C, NULL);
    cmp_ref(E, "cond.blocks.0.mlp.6drotation_normalized", ml + Ns * C, 0, P * C, NULL);
    if (g->depth == 1) {
        cmp_ref(E, "cond.blocks.0.shape", bo, 0, Ns * C, NULL);
        cmp_ref(E, "cond.blocks.0.6drotation_normalized", bo + Ns * C, 0, P * C, NULL);
    }
    for (int l = 0; l < SSF_N_LATENT; l++) {
        snprintf(name, sizeof(name), "cond.v.%s", ssflow_latent_name[l]);
        cmp_ref(E, name, v.p[l]->data, 0, tensor_numel(v.p[l]), NULL);
    }
    size_t nv = (size_t)v.off[SSF_N_LATENT];
    *vcond_out = malloc(sizeof(float) * nv);
    memcpy(*vcond_out, v.buf, sizeof(float) * nv);
    /* K/V projected once up front (the sampler's default): the same bytes */
    eval_once(R, &x, &ct, t, d, &v, NULL, true);
    CHECK(memcmp(v.buf, *vcond_out, sizeof(float) * nv) == 0, "cached K/V: same velocities");

    /* the unconditional pass: condition x 0 (one bias key, spec §10.3) */
    taps = (struct ssflow_taps){.block = 0, .t_emb = te, .d_emb = de};
    eval_once(R, &x, NULL, t, d, &v, &taps, false);
    cmp_ref(E, "uncond.t_embedder", te, 0, C, NULL);
    cmp_ref(E, "uncond.d_embedder", de, 0, C, NULL);
    for (int l = 0; l < SSF_N_LATENT; l++) {
        snprintf(name, sizeof(name), "uncond.v.%s", ssflow_latent_name[l]);
        cmp_ref(E, name, v.p[l]->data, 0, tensor_numel(v.p[l]), NULL);
    }
    /* control: the unconditional output must differ from the conditional one */
    struct cmp cc = compare_f32(v.buf, *vcond_out, nv, ATOL, RTOL, NMSE);
    printf("control: uncond vs cond velocities rel_l2 %.2e (must differ)\n", cc.rel_l2);
    CHECK(!cc.ok && cc.rel_l2 > 1e-2);
out:
    free(x.buf);
    free(v.buf);
    free(te), free(de), free(tin), free(sa), free(ca), free(ml), free(bo);
}

// ----------------------------------------------------------------------------
// 3. sampler

struct step_ctx {
    const struct ckpt *S;
    bool               replay;       /* substitute the reference velocities */
    int                n_steps, n_cfg;
    double             worst_v;      /* largest per-step velocity rel L2 */
    int                bad_x;        /* replay: inputs that differ bit-wise */
    bool               bad_t;
};

static void on_step(void *user, int k, float t1000, bool cfg, const struct tensor *const x[SSF_N_LATENT],
                    struct tensor *const v[SSF_N_LATENT])
{
    struct step_ctx *s = user;
    char name[96];
    struct tensor r;

    s->n_steps++;
    s->n_cfg += cfg;
    snprintf(name, sizeof(name), "step.%d.t", k);
    if (ref(s->S, name, &r) && *(const float *)r.data != t1000) {
        printf("step %d: t*1000 %.9g, reference %.9g\n", k, (double)t1000, (double)*(float *)r.data);
        s->bad_t = true;
    }
    for (int l = 0; l < SSF_N_LATENT; l++) {
        const struct ckpt_entry *e;
        snprintf(name, sizeof(name), "step.%d.x.%s", k, ssflow_latent_name[l]);
        if (s->replay && (e = ckpt_find(s->S, name)) &&
            memcmp(e->data, x[l]->data, tensor_nbytes(x[l])) != 0)
            s->bad_x++;
        snprintf(name, sizeof(name), "step.%d.v.%s", k, ssflow_latent_name[l]);
        if (!ref(s->S, name, &r) || tensor_numel(&r) != tensor_numel(v[l]))
            continue;
        if (s->replay) {
            memcpy(v[l]->data, r.data, tensor_nbytes(&r));
            continue;
        }
        size_t n = (size_t)tensor_numel(&r);
        float *rf = malloc(sizeof(float) * n);          /* the fp16 dumps store v as F16 */
        ASSERT(rf);
        dtype_convert(rf, DTYPE_F32, r.data, r.dtype, n);
        struct cmp c = compare_f32(v[l]->data, rf, n, -1, -1, -1);
        free(rf);
        if (c.rel_l2 > s->worst_v)
            s->worst_v = c.rel_l2;
    }
}

/* Run the sampler from the fixture's noise into x; returns evaluations. */
static int run_sampler(struct runner *R, const struct ckpt *S, struct lat *x, struct step_ctx *sc,
                       bool cache_kv)
{
    struct ssflow_sampler sp;
    struct tensor ct;

    ssflow_sampler_defaults(&sp);
    sp.cache_kv = cache_kv;
    if (!lat_load(x, S, "noise.") || !ref(S, "cond", &ct))
        return -1;
    return ssflow_sample(&R->m, R->c, &R->act, &ct, x->p, &sp, sc ? on_step : NULL, sc);
}

static void test_sampler(struct runner *R, const struct ckpt *S, float **final_out)
{
    struct ssflow_sampler sp;
    struct tensor ts;
    struct lat x;
    char name[96];
    int bad = 0;

    ssflow_sampler_defaults(&sp);
    if (ref(S, "t_seq", &ts)) {
        CHECK(ts.dtype == DTYPE_F64 && tensor_numel(&ts) == sp.steps + 1);
        for (int k = 0; k <= sp.steps && k < tensor_numel(&ts); k++)
            bad += ssflow_time(&sp, k) != ((const double *)ts.data)[k];
        printf("time grid: %d of %d values differ from t_seq (float64, bit for bit)\n", bad,
               sp.steps + 1);
        CHECK(bad == 0);
    }
    lat_init(&x, &R->m.cfg);

    /* replay: the reference velocities through our update reproduce every x bit for bit */
    struct step_ctx rp = {.S = S, .replay = true};
    int ev = run_sampler(R, S, &x, &rp, true);
    int bad_final = 0;
    for (int l = 0; l < SSF_N_LATENT; l++) {
        const struct ckpt_entry *e;
        snprintf(name, sizeof(name), "final.%s", ssflow_latent_name[l]);
        e = ckpt_find(S, name);
        CHECK(e != NULL, "%s", name);
        bad_final += e && memcmp(e->data, x.t[l].data, tensor_nbytes(&x.t[l])) != 0;
    }
    printf("replay: %d evaluations, %d steps (%d with CFG), %d stored inputs and %d finals differ "
           "bit-wise\n", ev, rp.n_steps, rp.n_cfg, rp.bad_x, bad_final);
    CHECK(ev == 44 && rp.n_steps == 25 && rp.n_cfg == 19 && rp.bad_x == 0 && bad_final == 0 &&
          !rp.bad_t);

    /* the real run */
    struct step_ctx sc = {.S = S};
    ev = run_sampler(R, S, &x, &sc, true);
    printf("sampler: %d evaluations; worst per-step velocity rel_l2 %.2e\n", ev, sc.worst_v);
    CHECK(ev == 44 && sc.worst_v <= 1e-4 && !sc.bad_t);
    for (int l = 0; l < SSF_N_LATENT; l++) {
        snprintf(name, sizeof(name), "final.%s", ssflow_latent_name[l]);
        cmp_ref(S, name, x.t[l].data, 0, tensor_numel(&x.t[l]), NULL);
    }
    /* without the K/V cache: the same bytes */
    struct lat y;
    lat_init(&y, &R->m.cfg);
    CHECK(run_sampler(R, S, &y, NULL, false) == 44);
    CHECK(memcmp(y.buf, x.buf, sizeof(float) * (size_t)x.off[SSF_N_LATENT]) == 0,
          "sampler without the K/V cache: the same final latents");
    free(y.buf);
    *final_out = x.buf;
}

/* The official shortcut (distillation) sampler: use_stage1_distillation with
 * 4 steps (d = 1/4 fed as 250, CFG strength 0), from the same noise. */
static void test_shortcut(struct runner *R)
{
    struct ssflow_sampler sp;
    struct tensor ts, ct;
    struct ckpt S;
    struct lat x;
    char name[96];
    int bad = 0;

    if (ckpt_open(&S, DIR "/sampler_shortcut.safetensors", 0)) {
        CHECK(0, "fixture unreadable (tools/ref/dump_ss_flow.py --size tiny --shortcut 4)");
        return;
    }
    ssflow_sampler_defaults(&sp);
    sp.steps = 4;
    ssflow_sampler_shortcut(&sp);
    CHECK(sp.d == 0.25 && sp.cfg == 0.0, "shortcut: d = 1/steps, no CFG");
    if (ref(&S, "t_seq", &ts)) {
        CHECK(ts.dtype == DTYPE_F64 && tensor_numel(&ts) == sp.steps + 1);
        for (int k = 0; k <= sp.steps && k < tensor_numel(&ts); k++)
            bad += ssflow_time(&sp, k) != ((const double *)ts.data)[k];
        CHECK(bad == 0, "shortcut time grid bit for bit (%d differ)", bad);
    }
    lat_init(&x, &R->m.cfg);
    struct step_ctx sc = {.S = &S};
    int ev = -1;
    if (lat_load(&x, &S, "noise.") && ref(&S, "cond", &ct))
        ev = ssflow_sample(&R->m, R->c, &R->act, &ct, x.p, &sp, on_step, &sc);
    printf("shortcut sampler (4 steps, d = 1/4): %d evaluations, %d with CFG; worst per-step "
           "velocity rel_l2 %.2e\n", ev, sc.n_cfg, sc.worst_v);
    CHECK(ev == 4 && sc.n_steps == 4 && sc.n_cfg == 0 && sc.worst_v <= 1e-4 && !sc.bad_t);
    for (int l = 0; l < SSF_N_LATENT; l++) {
        snprintf(name, sizeof(name), "final.%s", ssflow_latent_name[l]);
        cmp_ref(&S, name, x.t[l].data, 0, tensor_numel(&x.t[l]), NULL);
    }
    free(x.buf);
    ckpt_close(&S);
}

// ----------------------------------------------------------------------------
// 4. bad inputs

static void test_bad(struct runner *R, const struct ckpt *E)
{
    struct ssflow_model m;
    struct tensor ct, bad;
    struct lat x;

    lat_init(&x, &R->m.cfg);
    if (!ref(E, "cond", &ct) || !lat_load(&x, E, "x."))
        goto out;
    printf("expect 5 error lines (bad inputs):\n");
    CHECK(ssflow_check_cond(&R->m, NULL, "cond_ss", NULL, 0) == S3D_ENOTFOUND);
    bad = tensor_view(ct.data, DTYPE_F32, DEVICE_HOST, SHAPE(1, 192, 32));    /* wrong width */
    CHECK(ssflow_check_cond(&R->m, &bad, "cond_ss", NULL, 0) == S3D_ESHAPE);
    bad = tensor_view(ct.data, DTYPE_I32, DEVICE_HOST, SHAPE(1, 96, 128));    /* wrong dtype */
    CHECK(ssflow_check_cond(&R->m, &bad, "cond_ss", NULL, 0) == S3D_ESHAPE);
    const struct tensor **xs = (const struct tensor **)x.p;
    xs[SSF_SCALE] = NULL;
    CHECK(ssflow_check_latents(&R->m, xs, "noise.", NULL, 0) == S3D_ENOTFOUND);
    xs[SSF_SCALE] = &x.t[SSF_SCALE];
    bad = tensor_view(x.t[SSF_SHAPE].data, DTYPE_F32, DEVICE_HOST, SHAPE(1, 256, 16));
    xs[SSF_SHAPE] = &bad;
    CHECK(ssflow_check_latents(&R->m, xs, "noise.", NULL, 0) == S3D_ESHAPE);
    /* with a buffer the line goes there (for the stage's error reply), not to the log */
    char msg[256] = "";
    CHECK(ssflow_check_latents(&R->m, xs, "noise.", msg, sizeof(msg)) == S3D_ESHAPE &&
          strstr(msg, "'noise.shape' is F32 [1,256,16], expected F32 [1,512,8]"), "%s", msg);
    printf("expect error lines (wrong checkpoints):\n");
    CHECK(ssflow_load(&m, "tests/fixtures/moge_tiny/model.pt", DEVICE_HOST, DTYPE_F32, 0) < 0,
          "MoGe checkpoint refused");
    CHECK(ssflow_load(&m, "tests/fixtures/cond_slat_tiny/slat_generator.ckpt", DEVICE_HOST, DTYPE_F32, 0) < 0,
          "a checkpoint without the generator (the SLAT condition embedder only) refused");
    CHECK(ssflow_load(&m, "tests/fixtures/no_such.ckpt", DEVICE_HOST, DTYPE_F32, 0) < 0);
out:
    free(x.buf);
}

// ----------------------------------------------------------------------------
// 5. the fp16 path on the host (the GPU default's rounding points, CPU ops)

static void test_f16_host(const struct ckpt *E, const struct ckpt *S, const float *vcond32,
                          const float *final32)
{
    struct runner R;
    struct tensor tt, dt, ct;
    struct lat x, v;

    if (!runner_init(&R, DEVICE_HOST, DTYPE_F16, 96))
        return;
    lat_init(&x, &R.m.cfg);
    lat_init(&v, &R.m.cfg);
    size_t n = (size_t)v.off[SSF_N_LATENT];
    if (lat_load(&x, E, "x.") && ref(E, "t", &tt) && ref(E, "d", &dt) && ref(E, "cond", &ct)) {
        eval_once(&R, &x, &ct, *(float *)tt.data, *(float *)dt.data, &v, NULL, false);
        int not16 = 0;
        for (size_t i = 0; i < n; i++)
            not16 += f16_to_f32(f32_to_f16(v.buf[i])) != v.buf[i];
        printf("cpu f16: %d of %zu velocities are not fp16 values\n", not16, n);
        CHECK(not16 == 0, "velocities are fp16 (the reference's out_layer under autocast)");
        report_cmp("cpu f16 cond velocities vs cpu f32          ",
                   compare_f32(v.buf, vcond32, n, -1, -1, HOST16_NMSE));
    }
    CHECK(run_sampler(&R, S, &x, NULL, true) == 44);
    report_cmp("cpu f16 sampler final vs cpu f32            ",
               compare_f32(x.buf, final32, n, -1, -1, HOST16_NMSE));

    /* optional: against the official module under fp16 autocast (same seed, so the same
     * weights): tools/ref/dump_ss_flow.py --size tiny --precision fp16 --device cpu
     * --noise tests/fixtures/ss_flow_tiny/sampler.safetensors --out DIR */
    const char *dir16 = getenv("S3D_SSF_F16_REF");
    struct ckpt E16, S16;
    char p16[512];
    if (!dir16) {
        printf("fp16 autocast reference: not given (S3D_SSF_F16_REF=DIR, see the comment)\n");
        goto out;
    }
    snprintf(p16, sizeof(p16), "%s/eval.safetensors", dir16);
    CHECK(ckpt_open(&E16, p16, 0) == 0, "%s", p16);
    snprintf(p16, sizeof(p16), "%s/sampler.safetensors", dir16);
    CHECK(ckpt_open(&S16, p16, 0) == 0, "%s", p16);
    if (harness_failures)
        goto out;
    for (int pass = 0; pass < 2 && lat_load(&x, &E16, "x."); pass++) {
        const char *tag = pass ? "uncond" : "cond";
        char name[96], lab[128];
        eval_once(&R, &x, pass ? NULL : &ct, *(float *)tt.data, *(float *)dt.data, &v, NULL, false);
        for (int l = 0; l < SSF_N_LATENT; l++) {
            struct tensor r;
            snprintf(name, sizeof(name), "%s.v.%s", tag, ssflow_latent_name[l]);
            snprintf(lab, sizeof(lab), "cpu f16 vs autocast %s", name);
            if (ref(&E16, name, &r))
                report_cmp(lab, compare_f32(v.p[l]->data, r.data, (size_t)tensor_numel(&r), -1, -1,
                                            AUTOCAST_NMSE));
        }
    }
    {
        struct step_ctx sc = {.S = &S16};
        struct ssflow_sampler sp;
        struct tensor c16;
        ssflow_sampler_defaults(&sp);
        if (lat_load(&x, &S16, "noise.") && ref(&S16, "cond", &c16))
            ssflow_sample(&R.m, NULL, &R.act, &c16, x.p, &sp, on_step, &sc);
        printf("cpu f16 vs autocast sampler: worst per-step velocity rel_l2 %.2e\n", sc.worst_v);
        for (int l = 0; l < SSF_N_LATENT; l++) {
            char name[96], lab[128];
            struct tensor r;
            snprintf(name, sizeof(name), "final.%s", ssflow_latent_name[l]);
            snprintf(lab, sizeof(lab), "cpu f16 vs autocast %s", name);
            if (ref(&S16, name, &r))
                report_cmp(lab, compare_f32(x.p[l]->data, r.data, (size_t)tensor_numel(&r), -1, -1,
                                            AUTOCAST_NMSE));
        }
    }
    ckpt_close(&E16);
    ckpt_close(&S16);
out:
    free(x.buf);
    free(v.buf);
    runner_free(&R);
}

// ----------------------------------------------------------------------------
// 6. GPU

static void test_gpu(const struct ckpt *E, const struct ckpt *S, const float *vcond_cpu,
                     const float *final_cpu)
{
    const enum dtype gdts[2] = {DTYPE_F32, DTYPE_F16};

    for (int i = 0; i < 2; i++) {
        struct runner R;
        struct tensor tt, dt, ct;
        struct lat x, v;
        char lab[96];

        if (!runner_init(&R, DEVICE_CUDA, gdts[i], 96))
            continue;
        lat_init(&x, &R.m.cfg);
        lat_init(&v, &R.m.cfg);
        if (lat_load(&x, E, "x.") && ref(E, "t", &tt) && ref(E, "d", &dt) && ref(E, "cond", &ct)) {
            eval_once(&R, &x, &ct, *(float *)tt.data, *(float *)dt.data, &v, NULL, false);
            snprintf(lab, sizeof(lab), "cuda %s cond velocities vs cpu", dtype_name(gdts[i]));
            report_cmp(lab, compare_f32(v.buf, vcond_cpu, (size_t)v.off[SSF_N_LATENT], -1, -1,
                                        i ? GPU16_NMSE : GPU32_NMSE));
        }
        int ev = run_sampler(&R, S, &x, NULL, true);
        CHECK(ev == 44);
        snprintf(lab, sizeof(lab), "cuda %s sampler final vs cpu", dtype_name(gdts[i]));
        report_cmp(lab, compare_f32(x.buf, final_cpu, (size_t)x.off[SSF_N_LATENT], -1, -1,
                                    i ? GPU16_SAMPLE_NMSE : GPU32_NMSE * 100));
        printf("  cuda %s: activation arena peak %.2f MB of %.2f MB\n", dtype_name(gdts[i]),
               R.act.high_water / 1e6, R.act.size / 1e6);
        free(x.buf);
        free(v.buf);
        runner_free(&R);
    }
}

// ----------------------------------------------------------------------------
// 7. blocks streamed from host memory (common/stage_blocks.h)

/* A 5-block copy of the fixture's generator (block i = block 0 x (1 + i/8)):
 * the sampler's final latents with the blocks resident, streamed through 2
 * slots and through 3 slots with the K/V cache (its projection walks the
 * blocks too) are the same bytes, on dev in gd. */
static void test_stream(const struct ckpt *S, const char *deep, enum device dev, enum dtype gd)
{
    const int slots[3] = {0, 2, 3};
    float *first = NULL;
    size_t nb = 0;
    struct tensor ct;

    if (!ref(S, "cond", &ct))
        return;
    for (int r = 0; r < 3; r++) {
        struct ssflow_model *m = calloc(1, sizeof(*m));
        struct ssflow_sampler sp;
        struct op_ctx ctx;
        const struct op_ctx *c = NULL;
        struct arena act;
        struct lat x;
        size_t ws = dev == DEVICE_CUDA ? OP_WORKSPACE_DEFAULT : 0;

        ASSERT(m);
        if (ssflow_load(m, deep, dev, gd, slots[r]) != 0) {
            CHECK(0, "load the 5-block copy with %d slots", slots[r]);
            free(m);
            break;
        }
        CHECK(m->cfg.depth == 5 && m->blk.slots == slots[r]);
        ssflow_sampler_defaults(&sp);
        sp.steps = 4;
        sp.cache_kv = slots[r] == 3;
        CHECK(arena_init(&act, dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act",
                         ssflow_sample_bytes(m, ct.shape[1], sp.cache_kv) + ws) == 0);
        if (dev == DEVICE_CUDA) {
            CHECK(op_ctx_init(&ctx, &act, ws) == 0);
            c = &ctx;
        }
        lat_init(&x, &m->cfg);
        ssflow_noise(7, x.p);
        int ev = ssflow_sample(m, c, &act, &ct, x.p, &sp, NULL, NULL);
        nb = sizeof(float) * (size_t)x.off[SSF_N_LATENT];
        long long copies = m->blk.s ? m->blk.s->copies : 0;
        printf("%s %s, 5 blocks, %s: %d evaluations, %lld block copies\n",
               dev == DEVICE_CUDA ? "cuda" : "cpu", dtype_name(gd),
               slots[r] ? (slots[r] == 2 ? "streamed through 2 slots" :
                           "streamed through 3 slots, K/V cached") : "resident", ev, copies);
        /* every block once per pass over the blocks (a step: its one or two evaluations
         * go through the blocks together; the K/V projection), and the first k - 1 once
         * more: the end of a pass fetches the next one's */
        CHECK(!slots[r] || copies == 5LL * (sp.steps + sp.cache_kv) + slots[r] - 1,
              "block copies %lld", copies);
        /* a CFG step's two evaluations block by block (ssflow_forward_cfg) = the two
         * evaluations one after the other, bytes */
        {
            struct ssflow_cond cc;
            struct lat a, u, ja, ju;
            size_t mk = arena_mark(&act);
            lat_init(&a, &m->cfg);
            lat_init(&u, &m->cfg);
            lat_init(&ja, &m->cfg);
            lat_init(&ju, &m->cfg);
            ssflow_put_cond(m, c, &act, &ct, sp.cache_kv, &cc);
            const struct tensor *xc[SSF_N_LATENT];
            for (int l = 0; l < SSF_N_LATENT; l++)
                xc[l] = x.p[l];
            ssflow_forward(m, c, &act, xc, 400.0f, 0.0f, &cc, a.p, NULL);
            ssflow_forward(m, c, &act, xc, 400.0f, 0.0f, NULL, u.p, NULL);
            ssflow_forward_cfg(m, c, &act, xc, 400.0f, 0.0f, &cc, ja.p, ju.p);
            CHECK(memcmp(a.buf, ja.buf, nb) == 0 && memcmp(u.buf, ju.buf, nb) == 0,
                  "%d slots: ssflow_forward_cfg = two ssflow_forward, bytes", slots[r]);
            CHECK(act.high_water <= act.size);
            arena_release(&act, mk);
            free(a.buf), free(u.buf), free(ja.buf), free(ju.buf);
        }
        if (!first)
            first = x.buf;
        else {
            CHECK(memcmp(x.buf, first, nb) == 0, "%s %s, %d slots: the resident run's bytes",
                  dev == DEVICE_CUDA ? "cuda" : "cpu", dtype_name(gd), slots[r]);
            free(x.buf);
        }
        if (c)
            op_ctx_free(&ctx);
        arena_free(&act);
        ssflow_free(m);
        free(m);
    }
    free(first);
}

int main(void)
{
    struct ckpt E, S;
    struct runner R;
    float *vcond = NULL, *final = NULL;

    log_init("test_ss_flow");
    if (ckpt_open(&E, DIR "/eval.safetensors", 0) || ckpt_open(&S, DIR "/sampler.safetensors", 0)) {
        CHECK(0, "fixture unreadable (tools/ref/dump_ss_flow.py --size tiny)");
        return harness_done("test_ss_flow");
    }
    if (runner_init(&R, DEVICE_HOST, DTYPE_F32, 96)) {
        const struct ssflow_config *g = &R.m.cfg;
        printf("config: width %d, %d heads, %d blocks, MLP %d, cond %d, %lld + %lld tokens\n",
               g->dim, g->heads, g->depth, g->mlp, g->cond_dim, (long long)g->n_shape,
               (long long)(g->n_tok - g->n_shape));
        CHECK(g->dim == 128 && g->heads == 2 && g->depth == 1 && g->mlp == 128 &&
              g->cond_dim == 128 && g->n_shape == 512 && g->n_tok == 516);
        CHECK(g->cin[SSF_ROT] == 6 && g->cin[SSF_SCALE] == 3 && g->cin[SSF_SHAPE] == 8 &&
              g->cin[SSF_TRANS] == 3 && g->cin[SSF_TSCALE] == 1);
        CHECK(g->row[SSF_ROT] == 512 && g->row[SSF_TRANS] == 513 && g->row[SSF_SCALE] == 514 &&
              g->row[SSF_TSCALE] == 515, "pose rows: rotation, translation, scale, translation_scale");
        test_eval(&R, &E, &vcond);
        test_sampler(&R, &S, &final);
        test_shortcut(&R);
        test_bad(&R, &E);
        {
            char dir[] = "/tmp/s3d_ssf_deep_XXXXXX", deep[64];
            CHECK(mkdtemp(dir) != NULL);
            if (dir[strlen(dir) - 1] != 'X') {
                snprintf(deep, sizeof(deep), "%s/deep.safetensors", dir);
                CHECK(deepen_blocks(CKPT, "state_dict", SSF_PREFIX, 5, deep) == 0);
                test_stream(&S, deep, DEVICE_HOST, DTYPE_F32);
                test_stream(&S, deep, DEVICE_HOST, DTYPE_F16);
                if (s3d_cuda_available())
                    test_stream(&S, deep, DEVICE_CUDA, DTYPE_F16);
                unlink(deep);
                rmdir(dir);
            }
        }
        printf("  cpu f32: activation arena peak %.2f MB of %.2f MB\n", R.act.high_water / 1e6,
               R.act.size / 1e6);
        runner_free(&R);
    }

    /* activation bytes at the released size (no weights needed: sizes only) */
    {
        static struct ssflow_model full;
        struct ssflow_config *g = &full.cfg;
        const int cin[SSF_N_LATENT] = {6, 3, 8, 3, 1};
        *g = (struct ssflow_config){.dim = 1024, .heads = 16, .depth = 24, .mlp = 4096,
                                    .cond_dim = 1024, .n_shape = 4096, .n_tok = 4100};
        for (int l = 0; l < SSF_N_LATENT; l++) {
            g->cin[l] = cin[l];
            g->ntok[l] = l == SSF_SHAPE ? 4096 : 1;
        }
        full.gemm_dt = DTYPE_F16;
        double cfg = ssflow_cfg_extra_bytes(&full) / 1e6;
        double mb = ssflow_sample_bytes(&full, 7528, false) / 1e6 - cfg;
        double kv = (ssflow_sample_bytes(&full, 7528, true) - ssflow_act_bytes(&full, 1)) / 1e6 -
                    cfg;
        printf("released config, fp16, 7528 condition tokens: %.1f MB of activations + condition "
               "(+ %.1f MB: a CFG step's second stream); with the K/V cache %.1f MB (condition + "
               "K/V) + %.1f MB\n", mb, cfg, kv, ssflow_act_bytes(&full, 1) / 1e6);
        CHECK(mb > 140 && mb < 150, "README's memory figure");
        CHECK(cfg > 16.7 && cfg < 16.9, "README's second stream (4100 x 1024 F32)");
        CHECK(kv > 1490 && kv < 1500, "README's K/V cache figure");
    }

    /* our noise: deterministic per seed, N(0, 1)-like, different seeds differ */
    {
        float a[4096], b[4096];
        struct tensor ta[SSF_N_LATENT], tb[SSF_N_LATENT];
        struct tensor *pa[SSF_N_LATENT], *pb[SSF_N_LATENT];
        const int64_t n[SSF_N_LATENT] = {6, 3, 4072, 3, 1};     /* sums to 4085 */
        int64_t off = 0;
        for (int l = 0; l < SSF_N_LATENT; l++) {
            ta[l] = tensor_view(a + off, DTYPE_F32, DEVICE_HOST, SHAPE(1, 1, n[l]));
            tb[l] = tensor_view(b + off, DTYPE_F32, DEVICE_HOST, SHAPE(1, 1, n[l]));
            pa[l] = &ta[l];
            pb[l] = &tb[l];
            off += n[l];
        }
        ssflow_noise(42, pa);
        ssflow_noise(42, pb);
        CHECK(memcmp(a, b, sizeof(float) * (size_t)off) == 0, "same seed, same noise");
        double s1 = 0, s2 = 0;
        for (int64_t i = 0; i < off; i++) {
            s1 += a[i];
            s2 += (double)a[i] * a[i];
        }
        double mean = s1 / off, var = s2 / off - mean * mean;
        printf("noise seed 42: mean %.4f, variance %.4f over %lld draws\n", mean, var, (long long)off);
        CHECK(fabs(mean) < 0.05 && fabs(var - 1.0) < 0.07);
        ssflow_noise(43, pb);
        CHECK(memcmp(a, b, sizeof(float) * (size_t)off) != 0, "another seed, other noise");
    }

    if (vcond && final)
        test_f16_host(&E, &S, vcond, final);
    if (harness_gpu("GPU part") && vcond && final) {
        test_gpu(&E, &S, vcond, final);
    }
    free(vcond);
    free(final);
    ckpt_close(&E);
    ckpt_close(&S);
    return harness_done("test_ss_flow");
}
