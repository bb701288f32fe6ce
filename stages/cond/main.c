/*
 * main.c - sam3d-cond: the condition fuser as a stage (stages/cond/README.md).
 *
 *   sam3d-cond --weights ss_generator.ckpt --once IN_DIR OUT_DIR
 *   sam3d-cond --weights slat_generator.ckpt --listen ipc:///tmp/s3d/cond_slat.sock
 *
 * Inputs (docs/formats.md, "cond"): image, rgb_image (1,3,H,W), mask,
 * rgb_image_mask (1,1,H,W), SS also pointmap, rgb_pointmap (1,3,H,W),
 * pointmap_scale, pointmap_shift (1,3); all F32; any H, W (518 from the
 * preprocessor), resized inside as the reference's embedders do. Outputs: cond_ss or cond_slat
 * (1, n, C) F16 (F32 with --precision fp32 or --device cpu), and for SS the
 * pointmap_scale/shift passed through for the pose decoder.
 * Param repeat (optional, int in [1, 1000]): run the forward that many times and
 * log the median (warm timing for benchmarks; the output is the last run's) and
 * the device peak of the arenas (weights + activation high-water, comparable to
 * torch.cuda.max_memory_allocated).
 */
#include "model.h"
#include "stage.h"
#include "check.h"
#include "err.h"
#include "log.h"
#include "prof.h"

#include <stdlib.h>
#include <string.h>

#define COND_MAX_REPEAT 1000

struct cond_stage {
    struct cond_model m;
    struct arena      act;     /* activations, sized by cond_act_bytes (+ cuBLAS workspace) */
    struct op_ctx     ctx;
    bool              loaded;
};

static int cond_stage_load(void *p, const struct stage_opts *o)
{
    struct cond_stage *s = p;
    enum dtype gd;
    int rc;

    if (s->loaded)
        return 0;
    enum device dev = stage_use_device(o, &gd);
    size_t ws = dev == DEVICE_CUDA ? OP_WORKSPACE_DEFAULT : 0;
    if ((rc = cond_load(&s->m, o->weights, dev, gd)))
        return rc;
    rc = arena_init(&s->act, dev == DEVICE_CUDA ? ARENA_DEVICE : ARENA_HOST, "act",
                    cond_act_bytes(&s->m) + ws);
    if (!rc && dev == DEVICE_CUDA)
        rc = op_ctx_init(&s->ctx, &s->act, ws);
    if (rc) {
        arena_free(&s->act);
        cond_free(&s->m);
        return rc;
    }
    s->loaded = true;
    return 0;
}

static void cond_stage_unload(void *p)
{
    struct cond_stage *s = p;

    op_ctx_free(&s->ctx);
    arena_free(&s->act);
    cond_free(&s->m);
    memset(s, 0, sizeof(*s));
}

/* cond_forward repeat times (each ends with the output's device-to-host copy,
 * so wall time is device time); logs min/median/max and the arena peak. Under
 * S3D_PROFILE=1 also the per-op table over the warm forwards (all but the
 * first when repeat > 1). */
static int cond_run_timed(struct cond_stage *s, struct stage_req *rq, const struct cond_inputs *in,
                          struct tensor *out, int repeat)
{
    const struct cond_model *m = &s->m;
    double *ms = calloc((size_t)repeat, sizeof(*ms));

    if (!ms)
        return stage_fail(rq, S3D_ENOMEM, "cond: out of host memory");
    for (int k = 0; k < repeat; k++) {
        double t0 = stage_now_ms();
        if (m->device == DEVICE_CUDA)
            op_prof_begin(&s->ctx);
        cond_forward(m, m->device == DEVICE_CUDA ? &s->ctx : NULL, &s->act, in, out);
        if (m->device == DEVICE_CUDA)
            op_prof_end(&s->ctx, k > 0 || repeat == 1);
        ms[k] = stage_now_ms() - t0;
    }
    op_prof_report(stderr, "cond forward");
    stage_sort_ms(ms, repeat);
    log_info("cond: forward %.2f ms median of %d (min %.2f, max %.2f); device peak %.1f MiB "
             "(arenas: weights %.1f + activations high-water %.1f), resident %.1f MiB", ms[repeat / 2],
             repeat, ms[0], ms[repeat - 1], arena_device_peak() / 1048576.0,
             m->weights.used / 1048576.0, s->act.high_water / 1048576.0,
             arena_device_resident() / 1048576.0);
    free(ms);
    return 0;
}

static int cond_stage_run(void *p, struct stage_req *rq)
{
    struct cond_stage *s = p;
    const struct cond_model *m = &s->m;
    bool ss = m->variant == COND_SS;
    /* any H, W: each embedder resizes to its own input size as the reference does */
    struct cond_inputs in = {
        .image = stage_input(rq, "image", DTYPE_F32, SHAPE(1, 3, -1, -1)),
        .rgb_image = stage_input(rq, "rgb_image", DTYPE_F32, SHAPE(1, 3, -1, -1)),
        .mask = stage_input(rq, "mask", DTYPE_F32, SHAPE(1, 1, -1, -1)),
        .rgb_image_mask = stage_input(rq, "rgb_image_mask", DTYPE_F32, SHAPE(1, 1, -1, -1)),
    };
    const char *side[2] = {"pointmap_scale", "pointmap_shift"};

    int64_t repeat;
    int rc;

    if ((rc = stage_param_int(rq, "repeat", 1, 1, COND_MAX_REPEAT, &repeat)))
        return rc;
    if (!in.image || !in.rgb_image || !in.mask || !in.rgb_image_mask)
        return S3D_ESHAPE;                    /* stage_input already set the reply */
    if (ss) {
        in.pointmap = stage_input(rq, "pointmap", DTYPE_F32, SHAPE(1, 3, -1, -1));
        in.rgb_pointmap = stage_input(rq, "rgb_pointmap", DTYPE_F32, SHAPE(1, 3, -1, -1));
        if (!in.pointmap || !in.rgb_pointmap)
            return S3D_ESHAPE;
        for (int i = 0; i < 2; i++) {        /* passed through for the pose decoder */
            const struct tensor *t = stage_input(rq, side[i], DTYPE_F32, SHAPE(1, 3));
            struct tensor *o = t ? stage_output(rq, side[i], DTYPE_F32, SHAPE(1, 3)) : NULL;
            if (!o)
                return S3D_ESHAPE;
            tensor_copy_contiguous(o->data, t);
        }
    }
    if (cond_check_inputs(m, &in))
        return stage_fail(rq, S3D_ESHAPE, "cond: inputs not contiguous F32 (see the log)");
    struct tensor *out = stage_output(rq, ss ? "cond_ss" : "cond_slat", m->gemm_dt,
                                      SHAPE(1, m->n_tokens, m->dim));
    if (!out)
        return S3D_ENOMEM;
    return cond_run_timed(s, rq, &in, out, (int)repeat);
}

int main(int argc, char **argv)
{
    static struct cond_stage model;
    const struct stage_ops ops = {
        .name = "cond",
        .load = cond_stage_load,
        .unload = cond_stage_unload,
        .run = cond_stage_run,
    };

    return stage_main(&ops, &model, argc, argv);
}
