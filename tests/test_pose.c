/*
 * test_pose.c - common/pose.c against the official code on
 * tests/fixtures/outputs_tiny (tools/ref/dump_outputs.py):
 *
 * 1. pose_decode on 8 cases of pose latents (pose.safetensors) against the
 *    official pose_decoder("ScaleShiftInvariant") + the pipeline's
 *    downsample factor: rotation, translation, scale within 1e-6. Case 1 is a
 *    half turn (w = 0 up to rounding), where q and -q are the same rotation:
 *    compared up to sign when |w| < 1e-6.
 * 2. The quaternion helpers by hand: identity, a quarter turn, the
 *    matrix -> quaternion -> matrix round trip, standardisation (w >= 0).
 * 3. pose_place_gaussians on the job's Gaussians (job/gs_decode.safetensors)
 *    with the job's pose against the official make_scene + save_ply
 *    (placed_splat.ply); pose_apply_points on the mesh vertices against the
 *    official compose_transform + transform_points (placed.safetensors).
 * 4. pose.json: written, parsed back (json_min), values exact to the float.
 */
#include "harness.h"
#include "ckpt.h"
#include "err.h"
#include "json_min.h"
#include "pose.h"
#include "safetensors.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FX "tests/fixtures/outputs_tiny/"

/* double vs the reference's fp32 chain: a few fp32 ulps of values up to ~4 */
static const double POSE_TOL = 1e-6;
/* placement: double vs fp32 bmm and the from_xyz / from_scaling / from_rotation
 * round trips of the reference (their rounding) */
static const double PLACE_ATOL = 2e-6, PLACE_RTOL = 2e-6;

static const float *f32(const struct ckpt *c, const char *name, int64_t numel)
{
    const struct ckpt_entry *e = ckpt_find(c, name);

    if (!e || e->dtype != DTYPE_F32 || ckpt_entry_numel(e) != numel) {
        CHECK(0, "%s: no F32 tensor '%s' of %lld elements", c->path, name, (long long)numel);
        return NULL;
    }
    return (const float *)e->data;
}

static void latents_of(const struct ckpt *c, int k, int K, struct pose_latents *in)
{
    const float *r6 = f32(c, "r6", 6 * K), *sc = f32(c, "scale_latent", 3 * K);
    const float *tr = f32(c, "translation_latent", 3 * K), *ts = f32(c, "translation_scale", K);
    const float *ps = f32(c, "pointmap_scale", 3 * K), *pc = f32(c, "pointmap_shift", 3 * K);
    const struct ckpt_entry *df = ckpt_find(c, "downsample_factor");

    memcpy(in->r6, r6 + 6 * k, sizeof(in->r6));
    memcpy(in->scale, sc + 3 * k, sizeof(in->scale));
    memcpy(in->translation, tr + 3 * k, sizeof(in->translation));
    in->translation_scale = ts[k];
    memcpy(in->pointmap_scale, ps + 3 * k, sizeof(in->pointmap_scale));
    memcpy(in->pointmap_shift, pc + 3 * k, sizeof(in->pointmap_shift));
    in->downsample_factor = ((const int32_t *)df->data)[k];
}

static double maxdiff(const float *a, const float *b, int n, double sign)
{
    double m = 0;

    for (int i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - sign * b[i]));
    return m;
}

static void test_decode(void)
{
    struct ckpt c;
    int K;

    if (safetensors_open(&c, FX "pose.safetensors") != 0) {
        CHECK(0, "cannot open the pose fixture");
        return;
    }
    K = (int)ckpt_find(&c, "rotation")->shape[0];
    CHECK(K == 8, "K = %d", K);
    for (int k = 0; k < K; k++) {
        struct pose_latents in;
        struct pose p;
        const float *rq = f32(&c, "rotation", 4 * K) + 4 * k;
        const float *rt = f32(&c, "translation", 3 * K) + 3 * k;
        const float *rs = f32(&c, "scale", 3 * K) + 3 * k;
        double dq, dt, ds;

        latents_of(&c, k, K, &in);
        pose_decode(&in, &p);
        dq = maxdiff(p.rotation, rq, 4, 1);
        if (fabs(rq[0]) < 1e-6)                       /* w ~ 0: q and -q */
            dq = fmin(dq, maxdiff(p.rotation, rq, 4, -1));
        dt = maxdiff(p.translation, rt, 3, 1);
        ds = maxdiff(p.scale, rs, 3, 1);
        printf("pose case %d (df %d): q (%+.6f %+.6f %+.6f %+.6f) max diff rotation %.1e "
               "translation %.1e scale %.1e\n", k, in.downsample_factor, p.rotation[0],
               p.rotation[1], p.rotation[2], p.rotation[3], dq, dt, ds);
        CHECK(dq <= POSE_TOL && dt <= POSE_TOL && ds <= POSE_TOL, "case %d", k);
        CHECK(p.rotation[0] >= 0, "case %d: w < 0", k);
        CHECK(p.scale[0] == p.scale[1] && p.scale[1] == p.scale[2], "case %d: scale", k);
    }
    ckpt_close(&c);
}

static void test_quaternions(void)
{
    const double s2 = sqrt(0.5);
    double id[4] = {1, 0, 0, 0}, qz[4] = {s2, 0, 0, s2}, R[9], q[4], o[4];
    double neg[4] = {-0.5, 0.5, -0.5, 0.5};

    pose_quat_to_matrix(id, R);
    CHECK(R[0] == 1 && R[4] == 1 && R[8] == 1 && R[1] == 0 && R[5] == 0, "identity");
    pose_quat_to_matrix(qz, R);                /* quarter turn about z: x -> y */
    CHECK(fabs(R[0]) < 1e-15 && fabs(R[1] + 1) < 1e-15 && fabs(R[3] - 1) < 1e-15 &&
          fabs(R[8] - 1) < 1e-15, "quarter turn %g %g %g %g", R[0], R[1], R[3], R[8]);
    pose_matrix_to_quat(R, q);
    CHECK(fabs(q[0] - s2) < 1e-15 && fabs(q[3] - s2) < 1e-15 && q[1] == 0 && q[2] == 0,
          "matrix -> quaternion %g %g %g %g", q[0], q[1], q[2], q[3]);
    pose_quat_to_matrix(neg, R);               /* -q: the same matrix, standardised back */
    pose_matrix_to_quat(R, q);
    CHECK(fabs(q[0] - 0.5) < 1e-15 && fabs(q[1] + 0.5) < 1e-15 && fabs(q[2] - 0.5) < 1e-15 &&
          fabs(q[3] + 0.5) < 1e-15, "standardised %g %g %g %g", q[0], q[1], q[2], q[3]);
    pose_quat_multiply(qz, qz, o);             /* two quarter turns: a half turn about z */
    CHECK(fabs(o[0]) < 1e-15 && fabs(o[3] - 1) < 1e-15, "qz * qz = %g %g %g %g", o[0], o[1],
          o[2], o[3]);
    o[0] = -1e-3;
    pose_quat_multiply(id, (double[4]){-0.6, 0, 0.8, 0}, o);
    CHECK(o[0] == 0.6 && o[2] == -0.8, "multiply standardises: %g %g", o[0], o[2]);
    printf("quaternion helpers: identity, quarter turn, round trip, standardisation ok\n");
}

/* job's pose: ss_flow + ss_decode of the job directory (what export reads) */
static int job_pose(struct pose *p)
{
    struct ckpt f, d;
    struct pose_latents in;
    int rc = -1;

    if (safetensors_open(&f, FX "job/ss_flow.safetensors") != 0)
        return -1;
    if (safetensors_open(&d, FX "job/ss_decode.safetensors") != 0)
        goto out_f;
    memcpy(in.r6, f32(&f, "6drotation_normalized", 6), sizeof(in.r6));
    memcpy(in.scale, f32(&f, "scale", 3), sizeof(in.scale));
    memcpy(in.translation, f32(&f, "translation", 3), sizeof(in.translation));
    in.translation_scale = *f32(&f, "translation_scale", 1);
    memcpy(in.pointmap_scale, f32(&f, "pointmap_scale", 3), sizeof(in.pointmap_scale));
    memcpy(in.pointmap_shift, f32(&f, "pointmap_shift", 3), sizeof(in.pointmap_shift));
    in.downsample_factor = *(const int32_t *)ckpt_find(&d, "downsample_factor")->data;
    pose_decode(&in, p);
    rc = 0;
    ckpt_close(&d);
out_f:
    ckpt_close(&f);
    return rc;
}

/* records of a save_ply file: malloc'ed (M, 17) */
static float *ply_records(const char *path, int64_t *M)
{
    size_t len;
    char *raw = read_file(path, &len), *end;
    float *rec = NULL;

    if (!raw)
        return NULL;
    end = memmem(raw, len, "end_header\n", 11);
    if (end && sscanf(raw, "ply\nformat binary_little_endian 1.0\nelement vertex %lld",
                      (long long *)M) == 1) {
        size_t off = (size_t)(end - raw) + 11;

        if (len - off == (size_t)*M * 68) {
            rec = malloc(len - off);
            memcpy(rec, raw + off, len - off);
        }
    }
    free(raw);
    return rec;
}

static void test_place(void)
{
    static const char *names[5] = {"xyz", "f_dc", "opacity", "scale", "rotation"};
    static const int dims[5] = {3, 3, 1, 3, 4}, col[5] = {0, 6, 9, 10, 13};
    struct ckpt g, m, pl;
    struct pose p;
    struct gaussians gs;
    float *a[5], *ref;
    int64_t M, V;

    CHECK(job_pose(&p) == 0, "job pose");
    if (safetensors_open(&g, FX "job/gs_decode.safetensors") != 0) {
        CHECK(0, "job gs_decode");
        return;
    }
    M = ckpt_find(&g, "xyz")->shape[0];
    ref = ply_records(FX "placed_splat.ply", &V);
    CHECK(ref && V == M, "placed_splat.ply records");
    for (int i = 0; i < 5; i++) {
        a[i] = malloc(sizeof(float) * M * dims[i]);
        memcpy(a[i], f32(&g, names[i], M * dims[i]), sizeof(float) * M * dims[i]);
    }
    gs = (struct gaussians){M, a[0], a[1], a[2], a[3], a[4]};
    pose_place_gaussians(&p, &gs, 0.0009);
    for (int i = 0; ref && i < 5; i++) {
        float *col_ref = malloc(sizeof(float) * M * dims[i]);
        char label[64];

        for (int64_t r = 0; r < M; r++)
            for (int j = 0; j < dims[i]; j++)
                col_ref[r * dims[i] + j] = ref[r * 17 + col[i] + j];
        snprintf(label, sizeof(label), "placed %-8s vs make_scene+save_ply", names[i]);
        report_cmp(label, compare_f32(a[i], col_ref, (size_t)(M * dims[i]), PLACE_ATOL,
                                      PLACE_RTOL, -1));
        free(col_ref);
    }
    for (int i = 0; i < 5; i++)
        free(a[i]);
    free(ref);
    ckpt_close(&g);

    if (safetensors_open(&m, FX "job/mesh_decode.safetensors") != 0 ||
        safetensors_open(&pl, FX "placed.safetensors") != 0) {
        CHECK(0, "mesh fixtures");
        return;
    }
    V = ckpt_find(&m, "vertices")->shape[0];
    a[0] = malloc(sizeof(float) * 3 * V);
    memcpy(a[0], f32(&m, "vertices", 3 * V), sizeof(float) * 3 * V);
    pose_apply_points(&p, a[0], V);
    report_cmp("placed mesh vertices vs compose_transform.transform_points",
               compare_f32(a[0], f32(&pl, "vertices", 3 * V), (size_t)(3 * V), PLACE_ATOL,
                           PLACE_RTOL, -1));
    free(a[0]);
    ckpt_close(&m);
    ckpt_close(&pl);
}

static void test_json(void)
{
    char dir[] = "/tmp/s3d_test_pose_XXXXXX", path[128], err[128];
    struct pose p = {{0.5f, -0.5f, 0.5f, 0.5f}, {0.1f, -2.25f, 3.0f}, {0.3f, 0.3f, 0.3f}};
    struct json_doc doc;
    size_t len;
    char *text;
    int dfd;

    CHECK(mkdtemp(dir) != NULL);
    dfd = open(dir, O_RDONLY | O_DIRECTORY);
    CHECK(pose_write_json(dfd, "pose.json", "pose.json", &p, 2) == 0);
    snprintf(path, sizeof(path), "%s/pose.json", dir);
    text = read_file(path, &len);
    CHECK(text && json_parse(&doc, text, len, err, sizeof(err)) == 0, "parse: %s", err);
    if (text) {
        static const char *keys[3] = {"rotation", "translation", "scale"};
        const float *want[3] = {p.rotation, p.translation, p.scale};
        int n[3] = {4, 3, 3};

        for (int k = 0; k < 3; k++) {
            int arr = json_object_get(&doc, 0, keys[k]), e;

            CHECK(arr > 0 && doc.nodes[arr].type == JSON_ARRAY && doc.nodes[arr].size == n[k],
                  "%s", keys[k]);
            e = arr + 1;
            for (int j = 0; arr > 0 && j < n[k]; j++, e = doc.nodes[e].next)
                CHECK((float)strtod(text + doc.nodes[e].start, NULL) == want[k][j],
                      "%s[%d] does not read back", keys[k], j);
        }
        CHECK(json_object_get(&doc, 0, "frame") > 0 && json_object_get(&doc, 0, "apply") > 0);
        json_free(&doc);
        printf("pose.json: parsed back, values exact\n");
    }
    free(text);
    unlink(path);
    close(dfd);
    rmdir(dir);
}

int main(void)
{
    test_decode();
    test_quaternions();
    test_place();
    test_json();
    return harness_done("test_pose");
}
