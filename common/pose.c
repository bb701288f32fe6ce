/*
 * pose.c - pose decoding (the official ScaleShiftInvariant pose decoder) and
 * placement of points and Gaussians in the camera frame. See pose.h.
 * Test: tests/test_pose.c (the official decoder and make_scene on
 * tests/fixtures/outputs_tiny).
 */
#include "pose.h"

#include "err.h"
#include "outfile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ROTATION_6D_MEAN / ROTATION_6D_STD, inference_utils.py:49-68 */
static const double MEAN6[6] = {
    -0.06366084883674913, 0.008438224692279752, 0.00017084786438302483,
    0.0007126610473540038, -0.0030916726538816417, 0.5166093753457688,
};
static const double STD6[6] = {
    0.6656971967514863, 0.6787012271867754, 0.30345010594844524,
    0.4394504420678794, 0.39817973931717104, 0.6176286868761914,
};

/* F.normalize(v, dim=-1): v / max(|v|, 1e-12) */
static void normalize3(double v[3])
{
    double n = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);

    n = n > 1e-12 ? n : 1e-12;
    for (int i = 0; i < 3; i++)
        v[i] /= n;
}

static void standardize(double q[4])       /* pytorch3d standardize_quaternion */
{
    if (q[0] < 0)
        for (int i = 0; i < 4; i++)
            q[i] = -q[i];
}

void pose_quat_to_matrix(const double q[4], double R[9])
{
    double r = q[0], i = q[1], j = q[2], k = q[3];
    double two_s = 2.0 / (r * r + i * i + j * j + k * k);

    R[0] = 1 - two_s * (j * j + k * k);
    R[1] = two_s * (i * j - k * r);
    R[2] = two_s * (i * k + j * r);
    R[3] = two_s * (i * j + k * r);
    R[4] = 1 - two_s * (i * i + k * k);
    R[5] = two_s * (j * k - i * r);
    R[6] = two_s * (i * k - j * r);
    R[7] = two_s * (j * k + i * r);
    R[8] = 1 - two_s * (i * i + j * j);
}

/* The candidate with the largest |q_c| is taken (the best conditioned; the
 * first on a tie, as torch.argmax), divided by 2 max(|q_c|, 0.1). */
void pose_matrix_to_quat(const double R[9], double q[4])
{
    double m00 = R[0], m01 = R[1], m02 = R[2], m10 = R[3], m11 = R[4], m12 = R[5];
    double m20 = R[6], m21 = R[7], m22 = R[8];
    double d[4] = {1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                   1 - m00 - m11 + m22};
    double cand[4][4] = {
        {d[0], m21 - m12, m02 - m20, m10 - m01},
        {m21 - m12, d[1], m10 + m01, m02 + m20},
        {m02 - m20, m10 + m01, d[2], m12 + m21},
        {m10 - m01, m20 + m02, m21 + m12, d[3]},
    };
    double qa[4];
    int best = 0;

    for (int c = 0; c < 4; c++) {
        qa[c] = d[c] > 0 ? sqrt(d[c]) : 0;     /* _sqrt_positive_part */
        cand[c][c] = qa[c] * qa[c];            /* q_abs ** 2, not d itself */
        if (qa[c] > qa[best])
            best = c;
    }
    for (int i = 0; i < 4; i++)
        q[i] = cand[best][i] / (2.0 * (qa[best] > 0.1 ? qa[best] : 0.1));
    standardize(q);
}

void pose_quat_multiply(const double a[4], const double b[4], double o[4])
{
    o[0] = a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3];
    o[1] = a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2];
    o[2] = a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1];
    o[3] = a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0];
    standardize(o);
}

/* C = A B for 4x4 row-major matrices */
static void mat4_mul(const double A[16], const double B[16], double C[16])
{
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double s = 0;

            for (int k = 0; k < 4; k++)
                s += A[4 * i + k] * B[4 * k + j];
            C[4 * i + j] = s;
        }
}

/* Transform3d matrices (row vectors: [p, 1] @ M): Scale = diag(s, 1), Rotate
 * holds R as given in [:3, :3], Translate holds t in row 3. M = M . X. */
static void compose_scale(double M[16], const double s[3])
{
    double X[16] = {0}, T[16];

    X[0] = s[0], X[5] = s[1], X[10] = s[2], X[15] = 1;
    mat4_mul(M, X, T);
    memcpy(M, T, sizeof(T));
}

static void compose_rotate(double M[16], const double R[9])
{
    double X[16] = {0}, T[16];

    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            X[4 * i + j] = R[3 * i + j];
    X[15] = 1;
    mat4_mul(M, X, T);
    memcpy(M, T, sizeof(T));
}

static void compose_translate(double M[16], const double t[3])
{
    double X[16] = {0}, T[16];

    X[0] = X[5] = X[10] = X[15] = 1;
    X[12] = t[0], X[13] = t[1], X[14] = t[2];
    mat4_mul(M, X, T);
    memcpy(M, T, sizeof(T));
}

void pose_decode(const struct pose_latents *in, struct pose *out)
{
    double a[6], b1[3], b2[3], b3[3], R0[9], q0[4], R[9], M[16] = {0}, Rn[9], q[4];
    double s_obj[3], t_obj[3], s_sc[3], c_sc[3], s[3], dot = 0, mean;

    for (int i = 0; i < 6; i++)
        a[i] = (double)in->r6[i] * STD6[i] + MEAN6[i];
    memcpy(b1, a, sizeof(b1));
    normalize3(b1);
    for (int i = 0; i < 3; i++)
        dot += b1[i] * a[3 + i];
    for (int i = 0; i < 3; i++)
        b2[i] = a[3 + i] - dot * b1[i];
    normalize3(b2);
    b3[0] = b1[1] * b2[2] - b1[2] * b2[1];
    b3[1] = b1[2] * b2[0] - b1[0] * b2[2];
    b3[2] = b1[0] * b2[1] - b1[1] * b2[0];
    for (int i = 0; i < 3; i++) {               /* torch.stack([b1, b2, b3], dim=-1) */
        R0[3 * i + 0] = b1[i];
        R0[3 * i + 1] = b2[i];
        R0[3 * i + 2] = b3[i];
    }
    pose_matrix_to_quat(R0, q0);

    for (int i = 0; i < 3; i++) {
        s_obj[i] = exp((double)in->scale[i]);
        t_obj[i] = in->translation[i];
        s_sc[i] = in->pointmap_scale[i];
        c_sc[i] = in->pointmap_shift[i];
    }
    pose_quat_to_matrix(q0, R);
    M[0] = M[5] = M[10] = M[15] = 1;            /* Transform3d() */
    compose_scale(M, s_obj);                    /* compose_transform(scale, rotation, t) */
    compose_rotate(M, R);
    compose_translate(M, t_obj);
    compose_scale(M, s_sc);                     /* ssi_to_metric: scale(s).translate(c) */
    compose_translate(M, c_sc);

    for (int i = 0; i < 3; i++) {               /* decompose_transform */
        s[i] = sqrt(M[4 * i] * M[4 * i] + M[4 * i + 1] * M[4 * i + 1] +
                    M[4 * i + 2] * M[4 * i + 2]);
        for (int j = 0; j < 3; j++)
            Rn[3 * i + j] = M[4 * i + j] / s[i];
    }
    pose_matrix_to_quat(Rn, q);
    mean = (s[0] + s[1] + s[2]) / 3.0 * in->downsample_factor;
    for (int i = 0; i < 4; i++)
        out->rotation[i] = (float)q[i];
    for (int i = 0; i < 3; i++) {
        out->translation[i] = (float)M[12 + i];
        out->scale[i] = (float)mean;
    }
}

/* the pose as doubles: R (row-major), t, s */
static void pose_parts(const struct pose *p, double R[9], double t[3], double s[3])
{
    double q[4];

    for (int i = 0; i < 4; i++)
        q[i] = p->rotation[i];
    pose_quat_to_matrix(q, R);
    for (int i = 0; i < 3; i++) {
        t[i] = p->translation[i];
        s[i] = p->scale[i];
    }
}

void pose_apply_points(const struct pose *p, float *xyz, int64_t n)
{
    double R[9], t[3], s[3];

    pose_parts(p, R, t, s);
    for (int64_t m = 0; m < n; m++) {
        float *v = xyz + 3 * m;
        double x = s[0] * v[0], y = s[1] * v[1], z = s[2] * v[2];

        for (int j = 0; j < 3; j++)             /* row vector: (x, y, z) @ R + t */
            v[j] = (float)(x * R[j] + y * R[3 + j] + z * R[6 + j] + t[j]);
    }
}

void pose_place_gaussians(const struct pose *p, struct gaussians *g, double min_kernel)
{
    double qc[4] = {p->rotation[0], -p->rotation[1], -p->rotation[2], -p->rotation[3]};
    double sp = p->scale[0];
    double floor_ = min_kernel * sp * 1.1;      /* (mininum_kernel_size * s) * 1.1 */

    pose_apply_points(p, g->xyz, g->n);
    for (int64_t m = 0; m < g->n; m++) {
        float *r = g->rotation + 4 * m, *sc = g->scale + 3 * m;
        double q[4], o[4], nrm = 0;

        for (int i = 0; i < 4; i++)
            nrm += (double)r[i] * r[i];
        nrm = sqrt(nrm);
        nrm = nrm > 1e-12 ? nrm : 1e-12;        /* get_rotation: F.normalize */
        for (int i = 0; i < 4; i++)
            q[i] = r[i] / nrm;
        pose_quat_multiply(qc, q, o);
        for (int i = 0; i < 4; i++)
            r[i] = (float)o[i];
        for (int i = 0; i < 3; i++) {
            double v = exp((double)sc[i]) * p->scale[i];

            sc[i] = (float)log(v > floor_ ? v : floor_);
        }
    }
}

int pose_write_json(int dirfd, const char *name, const char *label, const struct pose *p,
                    int downsample_factor)
{
    struct outfile *f = malloc(sizeof(*f));
    int rc = S3D_EIO;

    if (!f || outfile_open(f, dirfd, name, label) != 0)
        goto out_free;
    outfile_printf(f,
        "{\n"
        "  \"rotation\": [%.9g, %.9g, %.9g, %.9g],\n"
        "  \"translation\": [%.9g, %.9g, %.9g],\n"
        "  \"scale\": [%.9g, %.9g, %.9g],\n"
        "  \"downsample_factor\": %d,\n"
        "  \"rotation_order\": \"wxyz\",\n"
        "  \"frame\": \"PyTorch3D camera frame of the input image: x left, y up, z forward "
        "(into the scene), in the units of the depth stage's point map\",\n"
        "  \"object_frame\": \"z-up object frame of splat.ply and of the mesh decoder (a "
        "mesh.glb vertex (x, y, z) is the object point (x, -z, y))\",\n"
        "  \"apply\": \"p_cam = (scale * p_obj) @ R + translation, row vectors, R = "
        "quaternion_to_matrix(rotation) (pytorch3d)\"\n"
        "}\n",
        p->rotation[0], p->rotation[1], p->rotation[2], p->rotation[3],
        p->translation[0], p->translation[1], p->translation[2],
        p->scale[0], p->scale[1], p->scale[2], downsample_factor);
    rc = outfile_commit(f);
out_free:
    free(f);
    return rc;
}
