/*
 * stage_warm.c - made-up inputs for the stages' warm-ups. See stage_warm.h.
 */
#include "stage_warm.h"

#include "err.h"
#include "log.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

int stage_warm_tensor(struct arena *host, enum dtype dt, const int64_t *shape, int ndim,
                      struct tensor *t)
{
    *t = tensor_view(NULL, dt, DEVICE_HOST, shape, ndim);
    size_t bytes = tensor_nbytes(t);

    if (!(t->data = arena_alloc(host, bytes ? bytes : 1))) {
        log_error("warm-up: %zu bytes of made-up input do not fit the request arena (%zu of %zu "
                  "bytes used)", bytes, host->used, host->size);
        return S3D_ENOMEM;
    }
    memset(t->data, 0, bytes);
    return 0;
}

int stage_warm_noise(struct arena *host, const int64_t *shape, int ndim, struct tensor *t)
{
    int rc = stage_warm_tensor(host, DTYPE_F32, shape, ndim, t);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    float *x = t->data;

    if (rc)
        return rc;
    for (int64_t i = 0, n = tensor_numel(t); i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;     /* LCG, top 24 bits */
        x[i] = (float)(s >> 40) / (float)(1 << 23) - 1.0f;
    }
    return 0;
}

/* The shell: r_in <= |p - c| <= r_out around the grid's centre, r_out = 7/16 res
 * and r_in from the shell's volume 4/3 pi (r_out^3 - r_in^3) = n. */
static bool in_shell(int res, double ri2, double ro2, int x, int y, int z)
{
    double c = 0.5 * (res - 1), dx = x - c, dy = y - c, dz = z - c;
    double d2 = dx * dx + dy * dy + dz * dz;

    return d2 >= ri2 && d2 <= ro2;
}

int stage_warm_shell(struct arena *host, int res, int64_t n, struct tensor *coords)
{
    if (res < 4 || n < 1)
        return log_error_to(S3D_EINVAL, NULL, 0, "warm-up: a shell of %lld voxels in a %d^3 "
                            "grid", (long long)n, res);
    double ro = 0.4375 * res, ri3 = ro * ro * ro - 3.0 * (double)n / (4.0 * M_PI);
    double ri = ri3 > 0 ? cbrt(ri3) : 0, ri2 = ri * ri, ro2 = ro * ro;
    int64_t count = 0;

    for (int x = 0; x < res; x++)
        for (int y = 0; y < res; y++)
            for (int z = 0; z < res; z++)
                count += in_shell(res, ri2, ro2, x, y, z);
    int rc = stage_warm_tensor(host, DTYPE_I32, SHAPE(count, 4), coords);
    if (rc)
        return rc;
    int32_t *r = coords->data;
    for (int x = 0; x < res; x++)
        for (int y = 0; y < res; y++)
            for (int z = 0; z < res; z++)
                if (in_shell(res, ri2, ro2, x, y, z)) {
                    r[0] = 0, r[1] = x, r[2] = y, r[3] = z;
                    r += 4;
                }
    return 0;
}

int stage_warm_voxels(const struct stage_rt *rt, struct arena *host, int res,
                      struct tensor *coords)
{
    return stage_warm_shell(host, res, rt->device == DEVICE_CUDA ? STAGE_WARM_VOXELS
                                                                   : STAGE_WARM_VOXELS_HOST,
                            coords);
}
