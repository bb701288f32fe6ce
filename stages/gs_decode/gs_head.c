/*
 * gs_head.c - CPU reference of the Gaussian head transform. See gs_head.h.
 */
#include "gs_head.h"
#include "log.h"
#include "ops_sparse.h"

#include <math.h>

void gs_head_consts(struct gs_consts *k)
{
    float sb = GS_SCALING_BIAS, ob = GS_OPACITY_BIAS;

    /* softplus_inverse_scaling_activation: x + log(-expm1(-x)) (gaussian_model.py:250-251) */
    k->scale_bias = sb + logf(-expm1f(-sb));
    /* inverse_sigmoid: log(x / (1 - x)) (general_utils.py:20-21) */
    k->opacity_bias = logf(ob / (1.0f - ob));
    /* self.mininum_kernel_size ** 2: a Python float, added to an fp32 tensor */
    k->kernel2 = (float)(GS_KERNEL_3D * GS_KERNEL_3D);
}

int gs_head_check(const struct gs_arrays *out, const struct tensor *raw,
                  const struct tensor *coords, const struct tensor *perturb, enum device dev)
{
    op_check_dense("gs_head.raw", raw, dev);
    op_check_dense("gs_head.perturb", perturb, dev);
    ASSERT(raw->dtype == DTYPE_F32 && perturb->dtype == DTYPE_F32 && raw->ndim == 2 &&
           perturb->ndim == 2 && perturb->shape[1] == 3);
    int64_t rows = raw->shape[0], G = perturb->shape[0];
    ASSERT(G >= 1 && raw->shape[1] == GS_CHANNELS * G);
    sparse_check_i32("gs_head.coords", coords, dev, rows, 4);
    const struct tensor *o[5] = {&out->xyz, &out->f_dc, &out->opacity, &out->scale, &out->rotation};
    const int d[5] = {3, 3, 1, 3, 4};
    for (int i = 0; i < 5; i++) {
        op_check_dense("gs_head.out", o[i], dev);
        ASSERT(o[i]->dtype == DTYPE_F32 && tensor_numel(o[i]) == rows * G * d[i]);
    }
    return (int)G;
}

static float softplus(float x)
{
    return x > 20.0f ? x : log1pf(expf(x));       /* torch: beta 1, threshold 20 */
}

void gs_head_cpu(const struct gs_arrays *out, const struct tensor *raw,
                 const struct tensor *coords, const struct tensor *perturb)
{
    int G = gs_head_check(out, raw, coords, perturb, DEVICE_HOST);
    int64_t rows = raw->shape[0];
    const float *r = raw->data, *P = perturb->data;
    const int32_t *c = coords->data;
    float *xyz = out->xyz.data, *fdc = out->f_dc.data, *op = out->opacity.data;
    float *sc = out->scale.data, *rot = out->rotation.data;
    struct gs_consts k;

    gs_head_consts(&k);
    for (int64_t v = 0; v < rows; v++) {
        const float *rv = r + v * GS_CHANNELS * G;
        for (int g = 0; g < G; g++) {
            int64_t m = v * G + g;
            for (int j = 0; j < 3; j++) {
                float ctr = ((float)c[v * 4 + 1 + j] + 0.5f) / (float)GS_RESOLUTION;
                float off = tanhf(rv[g * 3 + j] + P[g * 3 + j]) / (float)GS_RESOLUTION * 0.5f *
                            GS_VOXEL_SIZE;
                xyz[m * 3 + j] = (ctr + off) + -0.5f;
                fdc[m * 3 + j] = rv[3 * G + g * 3 + j];
                float s = softplus(rv[6 * G + g * 3 + j] + k.scale_bias);
                sc[m * 3 + j] = logf(sqrtf(s * s + k.kernel2));
            }
            for (int j = 0; j < 4; j++)
                rot[m * 4 + j] = rv[9 * G + g * 4 + j] * GS_LR_ROTATION + (j == 0 ? 1.0f : 0.0f);
            float o = 1.0f / (1.0f + expf(-(rv[13 * G + g] + k.opacity_bias)));
            op[m] = logf(o / (1.0f - o));
        }
    }
}
