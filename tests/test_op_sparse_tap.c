/*
 * test_op_sparse_tap.c - op_sparse_conv3_tap, the tap-wise submanifold conv
 * (kernels/ops_sparse.h).
 *
 * CPU part: sparse_conv3_tapmajor against the index formula; the op against
 * op_sparse_conv3_cpu (the conv's reference, itself checked against spconv in
 * test_op_sparse) on a shell-like voxel set at 24^3: (a) the plain conv (nbr the
 * set's own map, Tx = T); (b) the conv of the x2-upsampled input, given as x at
 * the M parent rows and the neighbour map composed with the parent index (the
 * SLAT flow's out_blocks.0 conv1) against op_sparse_conv3_cpu on the gathered
 * (T, Cin) rows; with and without a bias, F32 and F16.
 * CUDA part: the CUDA op against the CPU op, F16 -> F16 and F16 -> F32, with
 * the scratch holding all 27 taps' Z (one GEMM) and only a few (several groups
 * and the fp32 accumulator); guard bytes after every output.
 */
#include "arena.h"
#include "check.h"
#include "harness.h"
#include "log.h"
#include "op_harness.h"
#include "ops_sparse.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct op_tol TOL_CPU[] = {
    {DTYPE_F32, 2e-5, 2e-5, -1, "fp32 sums of 27*Cin terms in another grouping"},
    {DTYPE_F16, 2e-3, 2e-3, -1, "one fp16 rounding of the output, either side of a tie"},
};
static const struct op_tol TOL_GPU[] = {
    {DTYPE_F32, 1e-4, 1e-4, -1, "fp32, cuBLASLt's summation order inside each Z"},
    {DTYPE_F16, 2e-3, 4e-3, -1, "fp16 output, one rounding either side of a tie"},
};
#define NT(t) (sizeof(t) / sizeof((t)[0]))

/* A bumpy spherical shell in [0, R)^3 (b = 0), lexicographic: coords malloc'ed (T, 4). */
static int32_t *shell(int R, float r0, float thick, int64_t *T)
{
    int32_t *c = malloc(sizeof(int32_t) * 4 * (size_t)R * R * R);
    int64_t n = 0;
    ASSERT(c);
    for (int x = 0; x < R; x++)
        for (int y = 0; y < R; y++)
            for (int z = 0; z < R; z++) {
                float dx = x - R / 2.0f, dy = y - R / 2.0f, dz = z - R / 2.0f;
                float d = sqrtf(dx * dx + dy * dy + dz * dz) + 0.7f * sinf(0.9f * (float)x);
                if (fabsf(d - r0) < thick) {
                    int32_t row[4] = {0, x, y, z};
                    memcpy(c + 4 * n++, row, sizeof(row));
                }
            }
    *T = n;
    return c;
}

/* One voxel set and its conv operands (host). */
struct tcase {
    int64_t  T, M, Cin, Cout;
    int32_t *nbr;      /* (T, 27) the set's own map */
    int32_t *up;       /* (T, 27) nbr composed with parent: rows of the M parents */
    int32_t *parent;   /* (T) */
    float   *xp;       /* (M, Cin) parent features */
    float   *xt;       /* (T, Cin) features at the sites (the plain case) */
    float   *w;        /* (Cout, 27, Cin) KRSC */
    float   *b;        /* (Cout) */
};

static void make_case(struct tcase *c, int R, int64_t Cin, int64_t Cout, uint64_t seed)
{
    struct rng r;
    int64_t T;
    int32_t *co = shell(R, R * 0.35f, 1.3f, &T);
    c->T = T;
    c->Cin = Cin;
    c->Cout = Cout;
    c->nbr = malloc(sizeof(int32_t) * (size_t)T * SPARSE_K3);
    c->up = malloc(sizeof(int32_t) * (size_t)T * SPARSE_K3);
    c->parent = malloc(sizeof(int32_t) * (size_t)T);
    int32_t *pc = malloc(sizeof(int32_t) * 4 * (size_t)T), *ch = malloc(sizeof(int32_t) * 8 * (size_t)T);
    ASSERT(c->nbr && c->up && c->parent && pc && ch);
    struct tensor tco = tensor_view(co, DTYPE_I32, DEVICE_HOST, SHAPE(T, 4));
    struct tensor tn = tensor_view(c->nbr, DTYPE_I32, DEVICE_HOST, SHAPE(T, SPARSE_K3));
    struct tensor tpc = tensor_view(pc, DTYPE_I32, DEVICE_HOST, SHAPE(T, 4));
    struct tensor tpa = tensor_view(c->parent, DTYPE_I32, DEVICE_HOST, SHAPE(T));
    struct tensor tch = tensor_view(ch, DTYPE_I32, DEVICE_HOST, SHAPE(T, 8));
    op_sparse_nbr_cpu(&tn, &tco);
    c->M = op_sparse_down_index_cpu(&tpc, &tpa, &tch, &tco, R);
    for (int64_t i = 0; i < T * SPARSE_K3; i++)
        c->up[i] = c->nbr[i] >= 0 ? c->parent[c->nbr[i]] : -1;

    rng_seed(&r, seed);
    c->xp = malloc(sizeof(float) * (size_t)(c->M * Cin));
    c->xt = malloc(sizeof(float) * (size_t)(T * Cin));
    c->w = malloc(sizeof(float) * (size_t)(Cout * SPARSE_K3 * Cin));
    c->b = malloc(sizeof(float) * (size_t)Cout);
    ASSERT(c->xp && c->xt && c->w && c->b);
    fill_normal(&r, c->xp, (size_t)(c->M * Cin), 1.0f);
    fill_normal(&r, c->xt, (size_t)(T * Cin), 1.0f);
    fill_normal(&r, c->w, (size_t)(Cout * SPARSE_K3 * Cin), 1.0f / sqrtf((float)(9 * Cin)));
    fill_normal(&r, c->b, (size_t)Cout, 0.5f);
    free(co);
    free(pc);
    free(ch);
}

static void free_case(struct tcase *c)
{
    free(c->nbr), free(c->up), free(c->parent), free(c->xp), free(c->xt), free(c->w), free(c->b);
}

/* The op (tap-major weights) on host or device; y (T, Cout) of ydt into out.
 * scratch_taps: the device scratch holds Z for that many taps (27: one group). */
static void run_tap(const struct tcase *c, bool upsampled, bool bias, enum dtype dt,
                    enum dtype ydt, float *out, struct arena *a, const struct op_ctx *ctx,
                    int scratch_taps)
{
    int64_t Tx = upsampled ? c->M : c->T;
    float *wt = malloc(sizeof(float) * (size_t)(SPARSE_K3 * c->Cout * c->Cin));
    ASSERT(wt);
    sparse_conv3_tapmajor(wt, c->w, DTYPE_F32, c->Cout, c->Cin);
    struct tensor hx = ot_host(dt, SHAPE(Tx, c->Cin), upsampled ? c->xp : c->xt);
    struct tensor hw = ot_host(dt, SHAPE(SPARSE_K3, c->Cout, c->Cin), wt);
    struct tensor hb = ot_host(dt, SHAPE(c->Cout), c->b);
    struct tensor hy = ot_host(ydt, SHAPE(c->T, c->Cout), NULL);
    struct tensor hn = ot_host(DTYPE_I32, SHAPE(c->T, SPARSE_K3), NULL);
    memcpy(hn.data, upsampled ? c->up : c->nbr, tensor_nbytes(&hn));
    free(wt);
    if (!ctx) {
        op_sparse_conv3_tap_cpu(&hy, &hx, &hw, bias ? &hb : NULL, &hn);
        CHECK(ot_guard_ok(&hy), "guard after y");
        ot_to_f32(&hy, out);
    } else {
        size_t mark = arena_mark(a);
        struct tensor x = ot_dev(a, &hx), w = ot_dev(a, &hw), b = ot_dev(a, &hb);
        struct tensor y = ot_dev(a, &hy), n = ot_dev(a, &hn);
        struct arena s;
        size_t sb = op_sparse_conv3_tap_scratch_bytes(c->T, Tx, c->Cout, scratch_taps);
        CHECK(arena_init(&s, ARENA_DEVICE, "tap scratch", sb + ARENA_ALIGN) == 0, "scratch");
        op_sparse_conv3_tap_cuda(ctx, &s, &y, &x, &w, bias ? &b : NULL, &n);
        op_ctx_synchronize(ctx);
        CHECK(ot_guard_ok(&y), "guard after y");
        ot_to_f32(&y, out);
        arena_free(&s);
        arena_release(a, mark);
    }
    ot_free(&hx), ot_free(&hw), ot_free(&hb), ot_free(&hy), ot_free(&hn);
}

/* The reference: op_sparse_conv3_cpu on the (gathered) site features. */
static void run_ref(const struct tcase *c, bool upsampled, bool bias, enum dtype dt,
                    enum dtype ydt, float *out)
{
    float *xs = c->xt;
    if (upsampled) {
        xs = malloc(sizeof(float) * (size_t)(c->T * c->Cin));
        ASSERT(xs);
        for (int64_t p = 0; p < c->T; p++)
            memcpy(xs + p * c->Cin, c->xp + c->parent[p] * c->Cin, sizeof(float) * (size_t)c->Cin);
    }
    struct tensor hx = ot_host(dt, SHAPE(c->T, c->Cin), xs);
    struct tensor hw = ot_host(dt, SHAPE(c->Cout, 3, 3, 3, c->Cin), c->w);
    struct tensor hb = ot_host(dt, SHAPE(c->Cout), c->b);
    struct tensor hy = ot_host(ydt, SHAPE(c->T, c->Cout), NULL);
    struct tensor hn = ot_host(DTYPE_I32, SHAPE(c->T, SPARSE_K3), NULL);
    memcpy(hn.data, c->nbr, tensor_nbytes(&hn));
    op_sparse_conv3_cpu(&hy, &hx, &hw, bias ? &hb : NULL, &hn);
    ot_to_f32(&hy, out);
    ot_free(&hx), ot_free(&hw), ot_free(&hb), ot_free(&hy), ot_free(&hn);
    if (upsampled)
        free(xs);
}

static void test_tapmajor(void)
{
    const int64_t Co = 3, Ci = 5;
    int32_t src[3 * 27 * 5], dst[3 * 27 * 5];
    for (int i = 0; i < 3 * 27 * 5; i++)
        src[i] = i;
    sparse_conv3_tapmajor(dst, src, DTYPE_I32, Co, Ci);
    bool ok = true;
    for (int k = 0; k < 27; k++)
        for (int o = 0; o < Co; o++)
            for (int i = 0; i < Ci; i++)
                ok = ok && dst[(k * Co + o) * Ci + i] == src[(o * 27 + k) * Ci + i];
    CHECK(ok, "sparse_conv3_tapmajor: dst[k][o][i] == src[o][k][i]");
}

static void test_cpu(void)
{
    struct tcase c;
    char label[160];

    make_case(&c, 24, 48, 16, 7);
    log_info("CPU case: %lld sites -> %lld parents, Cin %lld, Cout %lld", (long long)c.T,
             (long long)c.M, (long long)c.Cin, (long long)c.Cout);
    float *out = malloc(sizeof(float) * (size_t)(c.T * c.Cout));
    float *ref = malloc(sizeof(float) * (size_t)(c.T * c.Cout));
    const enum dtype dts[2] = {DTYPE_F32, DTYPE_F16};
    for (int up = 0; up < 2; up++)
        for (int bias = 0; bias < 2; bias++)
            for (int d = 0; d < 2; d++) {
                run_tap(&c, up, bias, dts[d], dts[d], out, NULL, NULL, SPARSE_K3);
                run_ref(&c, up, bias, dts[d], dts[d], ref);
                snprintf(label, sizeof(label), "cpu tap~conv3 %s%s %s",
                         up ? "upsampled (composed map)" : "plain", bias ? " +b" : "",
                         dtype_name(dts[d]));
                ot_report(label, out, ref, (size_t)(c.T * c.Cout), TOL_CPU, NT(TOL_CPU), dts[d]);
            }
    free(out);
    free(ref);
    free_case(&c);
}

static void test_gpu(void)
{
    struct arena  a;
    struct op_ctx ctx;
    struct tcase  c;
    char          label[160];

    if (!ot_gpu_begin(&a, &ctx, (size_t)256 << 20)) {
        CHECK(0, "GPU set-up failed");
        return;
    }
    make_case(&c, 28, 256, 128, 11);
    log_info("GPU case: %lld sites -> %lld parents, Cin %lld, Cout %lld", (long long)c.T,
             (long long)c.M, (long long)c.Cin, (long long)c.Cout);
    float *out = malloc(sizeof(float) * (size_t)(c.T * c.Cout));
    float *ref = malloc(sizeof(float) * (size_t)(c.T * c.Cout));
    const int taps[3] = {SPARSE_K3, 5, 1};
    const enum dtype ydts[2] = {DTYPE_F16, DTYPE_F32};
    float *ref32 = malloc(sizeof(float) * (size_t)(c.T * c.Cout));
    ASSERT(out && ref && ref32);
    for (int up = 0; up < 2; up++) {
        /* the CPU op once (F32 output); its F16 rounding is the F16 reference */
        run_tap(&c, up, true, DTYPE_F16, DTYPE_F32, ref32, NULL, NULL, SPARSE_K3);
        for (int t = 0; t < 3; t++)
            for (int d = 0; d < 2; d++) {
                run_tap(&c, up, true, DTYPE_F16, ydts[d], out, &a, &ctx, taps[t]);
                memcpy(ref, ref32, sizeof(float) * (size_t)(c.T * c.Cout));
                ot_round(ref, (size_t)(c.T * c.Cout), ydts[d]);
                snprintf(label, sizeof(label), "cuda~cpu %s F16 -> %s, scratch for %d taps",
                         up ? "upsampled" : "plain", dtype_name(ydts[d]), taps[t]);
                ot_report(label, out, ref, (size_t)(c.T * c.Cout), TOL_GPU, NT(TOL_GPU), ydts[d]);
            }
    }
    free(out);
    free(ref);
    free(ref32);
    free_case(&c);
    ot_gpu_end(&a, &ctx);
}

int main(void)
{
    log_init("test_op_sparse_tap");
    ot_print_tols(TOL_GPU, NT(TOL_GPU));
    test_tapmajor();
    test_cpu();
    ot_skip_without_gpu("test_op_sparse_tap");
    test_gpu();
    return harness_done("test_op_sparse_tap");
}
