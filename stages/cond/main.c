/*
 * main.c - sam3d-cond: the condition fuser as a stage (stages/cond/README.md).
 *
 *   sam3d-cond --weights ss_generator.ckpt --once IN_DIR OUT_DIR
 *   sam3d-cond --weights slat_generator.ckpt --listen ipc:///tmp/s3d/cond_slat.sock
 *
 * Inputs (docs/formats.md, "cond"): image, rgb_image (1,3,H,W), mask,
 * rgb_image_mask (1,1,H,W), SS also pointmap, rgb_pointmap (1,3,H,W); all
 * F32; any H, W (518 from the preprocessor), resized inside as the
 * reference's embedders do. Output: cond_ss or cond_slat (1, n, C) F16 (F32
 * with --precision fp32 or --device cpu).
 * Param repeat (optional, int in [1, 1000]): run the forward that many times and
 * log the median (warm timing for benchmarks; the output is the last run's);
 * the library's memory line gives the arenas' device peak (weights +
 * activation high-water, comparable to torch.cuda.max_memory_allocated).
 */
#include "cond_net/cond.h"
#include "err.h"
#include "log.h"
#include "stage.h"
#include "stage_warm.h"

#include <stdlib.h>
#include <string.h>

/* load / unload: cond_load and cond_free on the model (stage.h) */
STAGE_MODEL_STREAM(cond, struct cond_model, cond_load, cond_free);

/* repeat (stage.h) and stream_blocks: the DINO towers' 48 blocks streamed from
 * host memory through STAGE_STREAM_SLOTS device slots (what `sam3d run
 * --vram-budget` picks where it lets a neighbour stage load beside this one) */
static const struct stage_param cond_params[] = {
    STAGE_PARAM_REPEAT,
    STAGE_PARAM_STREAM_BLOCKS,
    {NULL},
};

static int cond_stage_run(void *p, struct stage_req *rq)
{
    const struct cond_model *m = p;
    bool ss = m->variant == COND_SS;
    /* any H, W: each embedder resizes to its own input size as the reference does */
    struct cond_inputs in = {
        .image = stage_input(rq, "image", DTYPE_F32, SHAPE(1, 3, -1, -1)),
        .rgb_image = stage_input(rq, "rgb_image", DTYPE_F32, SHAPE(1, 3, -1, -1)),
        .mask = stage_input(rq, "mask", DTYPE_F32, SHAPE(1, 1, -1, -1)),
        .rgb_image_mask = stage_input(rq, "rgb_image_mask", DTYPE_F32, SHAPE(1, 1, -1, -1)),
    };
    char tms[96];
    int rc;

    if (!in.image || !in.rgb_image || !in.mask || !in.rgb_image_mask)
        return S3D_ESHAPE;                    /* stage_input already set the reply */
    if (ss) {
        in.pointmap = stage_input(rq, "pointmap", DTYPE_F32, SHAPE(1, 3, -1, -1));
        in.rgb_pointmap = stage_input(rq, "rgb_pointmap", DTYPE_F32, SHAPE(1, 3, -1, -1));
        if (!in.pointmap || !in.rgb_pointmap)
            return S3D_ESHAPE;
    }
    if (cond_check_inputs(m, &in))
        return stage_fail(rq, S3D_ESHAPE, "cond: inputs not contiguous F32 (see the log)");
    struct tensor *out = stage_output(rq, ss ? "cond_ss" : "cond_slat", m->gemm_dt,
                                      SHAPE(1, m->n_tokens, m->dim));
    if (!out)
        return S3D_ENOMEM;
    if ((rc = stage_act(rq, cond_act_bytes(m))))
        return rc;
    struct stage_loop L;
    for (stage_loop(rq, "cond forward", &L); stage_loop_next(&L);)
        cond_forward(m, L.rt->op, &L.rt->act, &in, out);  /* ends with the output's download */
    stage_loop_end(&L, 0);
    log_info("cond: forward %s; %s (1, %lld, %d) %s", stage_timing_str(&L.tm, tms, sizeof(tms)),
             ss ? "cond_ss" : "cond_slat", (long long)m->n_tokens, m->dim,
             dtype_name(m->gemm_dt));
    return 0;
}

/* Warm-up (stage_ops.warm): one forward on zeroed inputs at the preprocessor's size. */
static int cond_stage_warm(void *p, struct stage_rt *rt, struct arena *host)
{
    const struct cond_model *m = p;
    int64_t S = m->input_size;          /* the depth stage's crops are this size (518) */
    struct tensor img, rgb, msk, rmsk, pm, rpm, out;
    struct cond_inputs in = {&img, &rgb, &msk, &rmsk, NULL, NULL};
    int rc;

    if ((rc = stage_warm_tensor(host, DTYPE_F32, SHAPE(1, 3, S, S), &img)) ||
        (rc = stage_warm_tensor(host, DTYPE_F32, SHAPE(1, 3, S, S), &rgb)) ||
        (rc = stage_warm_tensor(host, DTYPE_F32, SHAPE(1, 1, S, S), &msk)) ||
        (rc = stage_warm_tensor(host, DTYPE_F32, SHAPE(1, 1, S, S), &rmsk)) ||
        (rc = stage_warm_tensor(host, m->gemm_dt, SHAPE(1, m->n_tokens, m->dim), &out)))
        return rc;
    if (m->variant == COND_SS) {
        if ((rc = stage_warm_tensor(host, DTYPE_F32, SHAPE(1, 3, S, S), &pm)) ||
            (rc = stage_warm_tensor(host, DTYPE_F32, SHAPE(1, 3, S, S), &rpm)))
            return rc;
        in.pointmap = &pm;
        in.rgb_pointmap = &rpm;
    }
    if ((rc = stage_rt_act(rt, cond_act_bytes(m))))
        return rc;
    cond_forward(m, rt->op, &rt->act, &in, &out);
    return 0;
}

int main(int argc, char **argv)
{
    static struct cond_model model;
    const struct stage_ops ops = {
        .name = "cond",
        .params = cond_params,
        /* image, rgb_image, pointmap, rgb_pointmap (1, 3, S, S), two masks (1, 1, S, S) F32:
         * 15 MB at S = 518; 64 MiB also takes inputs up to 1036 square */
        .max_input_bytes = (size_t)64 << 20,
        .workspace_bytes = OP_WORKSPACE_DEFAULT,
        STAGE_MODEL_OPS(cond),
        .run = cond_stage_run,
        .warm = cond_stage_warm,
    };

    return stage_main(&ops, &model, argc, argv);
}
