/*
 * main.c - sam3d-mesh-decode: the SLAT mesh decoder and sparse FlexiCubes as a
 * stage (stages/mesh_decode/README.md; model in meshdec.c, extraction in
 * flexicubes.c / flexicubes_cuda.cu, trunk in stages/slat_dec_net/).
 *
 *   sam3d-mesh-decode --weights slat_decoder_mesh.ckpt --once IN_DIR OUT_DIR
 *   sam3d-mesh-decode --weights slat_decoder_mesh.ckpt --listen ipc:///tmp/s3d/mesh_decode.sock
 *
 * Inputs: coords (N, 4) I32 and feats (N, 8) F32 (slat_flow.safetensors: the
 * structured latent, de-normalised). Params: resolution (64, the released
 * yaml's; the cubes are at 4 resolution), max_faces (the ceiling of one mesh),
 * keep_cubes (0; K > 0 also writes cube_feats (64 K, 101) F32, the out_layer
 * rows of the first K voxels, the FlexiCubes input, for parity checks), repeat
 * (1; > 1 runs decoder + extraction that many times and logs min / median /
 * max; S3D_PROFILE=1 adds the per-op table). The library logs the
 * memory line after the request.
 * Outputs (mesh_decode.safetensors, docs/formats.md): vertices (V, 3) F32 (the
 * official mesh's vertices: z-up object frame, in [-0.5, 0.5]), faces (F, 3)
 * I32 (the official winding), colors (V, 3) F32 in [0, 1]. The export step
 * writes mesh.glb from them. A surface with no face is an error, not an
 * empty mesh.
 */
#include "meshdec.h"
#include "stage.h"
#include "stage_warm.h"
#include "err.h"
#include "log.h"

#include <string.h>

#define MDD_RES_DEF       MDEC_RESOLUTION
#define MDD_MAX_FACES_DEF 8000000           /* ~6x a 42,000-voxel object's mesh */
#define MDD_MAX_FACES_MAX 16000000          /* what the host request arena holds */
/* device bytes of a chunk of the 64N level (meshdec_chunk_voxels): 1,800
 * voxels of the released decoder in fp16 */
#define MDD_CHUNK_BUDGET  ((size_t)64 << 20)
#define MDD_KEEP_MAX      4096              /* keep_cubes: 106 MB of cube_feats at most */

static const struct stage_param mdd_params[] = {
    {"resolution", STAGE_PARAM_INT, MDD_RES_DEF, 1, MDD_RES_DEF,
     "voxel resolution of coords (the released yaml's 64); FlexiCubes runs at 4x", NULL},
    {"max_faces", STAGE_PARAM_INT, MDD_MAX_FACES_DEF, 1, MDD_MAX_FACES_MAX,
     "the most faces one mesh may have; a larger surface is an error", NULL},
    {"keep_cubes", STAGE_PARAM_INT, 0, 0, MDD_KEEP_MAX,
     "also write cube_feats: the 101 out_layer channels of the cubes of the first K voxels "
     "(64 K rows, the FlexiCubes input; for parity checks)", NULL},
    STAGE_PARAM_REPEAT,
    {NULL},
};

/* load / unload: meshdec_load and meshdec_free on the model (stage.h) */
STAGE_MODEL(mdd, struct meshdec_model, meshdec_load, meshdec_free);

/* A request's decode: its operands and the job of the last pass, whose mesh
 * stays in rt->act (job live) for the download. */
struct mdd_pass {
    struct meshdec_model      *m;
    struct stage_req          *rq;
    const struct tensor       *coords, *feats;
    const struct meshdec_plan *plan;
    const struct meshdec_taps *taps;        /* keep_cubes, else NULL */
    int                        res;
    int64_t                    max_faces;
    struct meshdec_job         job;
    bool                       live;
    double                     last_ms;
};

/* One decoder + extraction pass (a run of the timed loop): 0, or an error
 * after stage_fail. */
static int mdd_pass_run(struct mdd_pass *f, struct stage_rt *rt)
{
    double t0 = stage_now_ms();
    int rc;

    if (f->live)
        meshdec_job_end(&f->job);
    f->live = false;
    arena_reset(&rt->act);
    rc = meshdec_decode(f->m, rt->op, &rt->act, f->coords, f->feats, f->res, f->plan, &f->job,
                        NULL, f->taps);
    if (rc)
        return stage_fail(f->rq, rc, "mesh_decode: no room for the voxel maps and the FlexiCubes "
                          "state of %lld voxels (HINT: the log names the size; free device "
                          "memory or decode fewer voxels)", (long long)f->coords->shape[0]);
    f->live = true;
    rc = meshdec_extract(f->m, rt->op, &rt->act, &f->job, f->max_faces);
    if (rc == S3D_ENOMEM) {             /* a larger surface than any before: grow act */
        if ((rc = stage_act(f->rq, f->job.fc.need_scratch)))
            return rc;
        rc = meshdec_extract(f->m, rt->op, &rt->act, &f->job, f->max_faces);
    }
    if (rc == S3D_EINVAL)
        return stage_fail(f->rq, rc, "mesh_decode: the surface has %lld faces, more than "
                          "max_faces %lld (HINT: raise it with --param max_faces=N, up to %d, "
                          "or check the latent)", (long long)f->job.fc.cnt.n_faces,
                          (long long)f->max_faces, MDD_MAX_FACES_MAX);
    ASSERT(rc == 0);
    f->last_ms = stage_now_ms() - t0;
    return 0;
}

static int mdd_stage_run(void *p, struct stage_req *rq)
{
    struct meshdec_model *m = p;
    char msg[WIRE_ERR_MAX - 32];
    int rc;

    const struct tensor *coords, *feats;
    if ((rc = stage_input_slat(rq, &coords, &feats)))
        return rc;
    int res = (int)stage_get_int(rq, "resolution");
    if ((rc = meshdec_check_inputs(m, coords, feats, res, msg, sizeof(msg))))
        return stage_fail(rq, rc, "%s", msg);
    int64_t N = coords->shape[0];

    struct meshdec_plan plan;
    meshdec_plan_make(&plan, coords, meshdec_chunk_voxels(m, MDD_CHUNK_BUDGET));
    struct mdd_pass f = {.m = m, .rq = rq, .coords = coords, .feats = feats, .plan = &plan,
                         .res = res, .max_faces = stage_get_int(rq, "max_faces")};
    struct meshdec_taps taps = {0};
    int64_t keep = stage_get_int(rq, "keep_cubes");
    keep = keep < N ? keep : N;
    if (keep > 0) {
        struct tensor *cf = stage_output(rq, "cube_feats", DTYPE_F32, SHAPE(64 * keep, FC_CH));
        if (!cf) {
            meshdec_plan_free(&plan);
            return S3D_ENOMEM;                  /* stage_output said why */
        }
        taps.out = cf->data;
        taps.out_rows = 64 * keep;
        f.taps = &taps;
    }
    struct stage_loop L;
    if (!(rc = stage_act(rq, meshdec_act_bytes(m, &plan)))) {
        for (stage_loop(rq, "mesh_decode forward", &L); stage_loop_next(&L);)
            if ((rc = mdd_pass_run(&f, rq->rt)))
                break;
        rc = stage_loop_end(&L, rc);
    }
    const struct fc_counts *n = &f.job.fc.cnt;
    if (!rc && n->n_faces == 0)
        rc = stage_fail(rq, S3D_ESHAPE, "mesh_decode: the decoded surface is empty: the SDF on "
                        "the %lld voxels has no sign change (%lld of %lld cube corners inside) "
                        "(HINT: check that coords and feats are the structured latent of "
                        "slat_flow.safetensors and the weights slat_decoder_mesh.ckpt)",
                        (long long)N, (long long)n->n_neg, (long long)n->n_verts);
    if (!rc) {
        int64_t V = n->n_vd, F = n->n_faces;
        struct tensor *v = stage_output(rq, "vertices", DTYPE_F32, SHAPE(V, 3));
        struct tensor *fa = stage_output(rq, "faces", DTYPE_I32, SHAPE(F, 3));
        struct tensor *c = stage_output(rq, "colors", DTYPE_F32, SHAPE(V, 3));
        if (!v || !fa || !c)
            rc = S3D_ENOMEM;                    /* stage_output said which */
        else
            meshdec_download(&f.job, rq->rt->op, v, fa, c);
    }
    if (!rc) {
        const struct meshdec_job *j = &f.job;
        double last = f.last_ms;
        log_info("mesh_decode: %lld voxels -> %lld vertices, %lld faces (%s; %lld corners, %lld "
                 "surface cubes, %lld quads); %d chunks (largest %lld voxels, table %lld); "
                 "%.1f ms (maps + state %.1f, trunk %.1f, head %.1f, extraction %.1f): %.3f "
                 "TFLOP at %.1f TFLOP/s; state %.1f MB; repeat %d: %.2f / %.2f / %.2f ms "
                 "min / median / max", (long long)N, (long long)n->n_vd, (long long)n->n_faces,
                 dtype_name(m->ct), (long long)n->n_verts, (long long)n->n_surf,
                 (long long)n->n_quads, plan.n, (long long)plan.max_c, (long long)plan.max_l,
                 last, j->ms_geom, j->ms_trunk, j->ms_head, j->ms_extract, j->flops / 1e12,
                 last > 0 ? j->flops / 1e9 / last : 0.0, m->state.size / 1e6, L.tm.n,
                 L.tm.min, L.tm.median, L.tm.max);
    }
    if (f.live)
        meshdec_job_end(&f.job);
    meshdec_plan_free(&plan);
    return rc;
}

/* Warm-up (stage_ops.warm): one decode, extraction and download of a typical
 * voxel set (stage_warm_voxels) with made-up latents. */
static int mdd_stage_warm(void *p, struct stage_rt *rt, struct arena *host)
{
    struct meshdec_model *m = p;
    struct tensor coords, feats, v, fa, c;
    struct meshdec_plan plan;
    struct meshdec_job job;
    char msg[256];
    int rc;

    if ((rc = stage_warm_voxels(rt, host, MDD_RES_DEF, &coords)) ||
        (rc = stage_warm_noise(host, SHAPE(coords.shape[0], m->trunk.cfg.in_ch), &feats)))
        return rc;
    if ((rc = meshdec_check_inputs(m, &coords, &feats, MDD_RES_DEF, msg, sizeof(msg))))
        return log_error_to(rc, NULL, 0, "warm-up: %s", msg);
    meshdec_plan_make(&plan, &coords, meshdec_chunk_voxels(m, MDD_CHUNK_BUDGET));
    if ((rc = stage_rt_act(rt, meshdec_act_bytes(m, &plan))) ||
        (rc = meshdec_decode(m, rt->op, &rt->act, &coords, &feats, MDD_RES_DEF, &plan, &job,
                             NULL, NULL))) {
        meshdec_plan_free(&plan);
        return rc;
    }
    rc = meshdec_extract(m, rt->op, &rt->act, &job, MDD_MAX_FACES_DEF);
    if (rc == S3D_ENOMEM && !(rc = stage_rt_act(rt, job.fc.need_scratch)))
        rc = meshdec_extract(m, rt->op, &rt->act, &job, MDD_MAX_FACES_DEF);
    int64_t V = job.fc.cnt.n_vd, F = job.fc.cnt.n_faces;
    if (!rc && !(rc = stage_warm_tensor(host, DTYPE_F32, SHAPE(V, 3), &v)) &&
        !(rc = stage_warm_tensor(host, DTYPE_I32, SHAPE(F, 3), &fa)) &&
        !(rc = stage_warm_tensor(host, DTYPE_F32, SHAPE(V, 3), &c)))
        meshdec_download(&job, rt->op, &v, &fa, &c);
    meshdec_job_end(&job);
    meshdec_plan_free(&plan);
    return rc;
}

int main(int argc, char **argv)
{
    static struct meshdec_model model;
    const struct stage_ops ops = {
        .name = "mesh_decode",
        .params = mdd_params,
        SLD_STAGE_OPS,
        /* the outputs at max_faces: 12 B a face + 24 B a vertex (V ~ F / 2) */
        .arena_bytes = (size_t)512 << 20,
        STAGE_MODEL_OPS(mdd),
        .run = mdd_stage_run,
        .warm = mdd_stage_warm,
    };

    return stage_main(&ops, &model, argc, argv);
}
