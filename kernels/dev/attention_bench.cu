/*
 * attention_bench.cu - workshop for the attention kernels (llm.c dev/cuda style).
 *
 * Build and run (on the GPU machine, from the repository root):
 *     make CUDA_ARCH=90 dev && build/dev/attention_bench        all versions, all shapes
 *     build/dev/attention_bench 3 4 5                           only versions 3, 4 and 5
 *
 * Versions (kernels in kernels/cuda/attention.cuh and attention_v2.cuh, launched
 * through attn_launch_kernel, the op's own dispatch):
 *     1  simple fp32 (f16 data)  attn_simple_kernel, the fallback path
 *     2  v1 MT1 f16              attn_mma_kernel<half, 64, 1>: 4 warps x 16 rows
 *     3  v1 MT2 f16              attn_mma_kernel<half, 128, 2>: 4 warps x 2 x 16 rows
 *     4  v2 f16                  attn_v2_kernel<half, MT 2, 64-key tiles, Q in registers>
 *     5  v2b f16                 attn_v2_kernel<half, MT 2, 128-key tiles, Q from shared memory>
 *     6  v1 MT2 bf16, 7  v2 bf16, 8  v2b bf16
 *     9  v2s f16                 attn_v2_kernel<half, MT 1 (64-row blocks), 64-key tiles>
 *     10 v3 f16                  attn_wg_kernel<half>: v2 with Q K^T on wgmma (sm_90a);
 *     11 v3 bf16                 off compute capability 9.0 both run v2
 *     12 v4 f16                  attn_wgp_kernel<half>: v3 with P V on wgmma too, beside
 *     13 v4 bf16                 the next tile's softmax (sm_90a; else v2)
 *     14 split f16               attn_split_kernel + merge (attention_split.cu): blocks of
 *     15 split bf16              <= 16 queries split over the keys (else the default kernel),
 *                                the partials in a 32 MiB workspace as the op's cuBLAS one
 * The op's default ("current") is v1 with MT2 from 1024 query rows, MT1 below.
 *
 * Shapes: the flow transformers' (head size 64): DINOv2, SS flow self and
 * cross (CFG batch 2), SLAT flow self and cross at 30k voxels (M = 5941
 * tokens, 5496 condition tokens) and self at the 42k ceiling (M = 9116), a
 * short query block, and swin windows as the SLAT decoders run them (varlen
 * through a row permutation: 29,881 tokens in 313 windows of random lengths,
 * H 12; the longest is printed).
 *
 * Each version is checked before it is timed: err_cpu = max |gpu - cpu| over
 * the first and last 64 query rows of batch item 0 against op_attention_cpu
 * (dense shapes; the CPU reference is computed once per shape and dtype), and
 * d_cur = max |gpu - current| over the whole output against the current
 * kernel on the same data. Times: CUDA events, median of 20 runs after 3
 * warm-ups. TFLOP/s counts 4 B H Tq Tk 64 (QK^T and PV; windows: 4 H 64 sum
 * len^2). H100 SXM / H200 dense fp16 tensor rate ~990 TFLOP/s. Exit status 1
 * when any version is WRONG (err_cpu or d_cur over the dtype's bound).
 */
#include "cuda/attention.cuh"

#include "arena.h"
#include "log.h"
#include "ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct shape {
    const char *name;
    int         B, Tq, Tk, H;
    bool        fused;   /* q, k, v from one (B, T, 3, H, 64); else q + fused kv */
    int         nwin;    /* > 0: varlen windows over Tq tokens through a row permutation */
};

static const struct shape SHAPES[] = {
    {"dinov2 self 1374", 1, 1374, 1374, 16, true, 0},
    {"ss-flow self 4096 (cfg 2)", 2, 4096, 4096, 16, true, 0},
    {"ss-flow cross 4096x7528 (cfg 2)", 2, 4096, 7528, 16, false, 0},
    {"slat-flow self 5941", 1, 5941, 5941, 16, true, 0},
    {"slat-flow cross 5941x5496", 1, 5941, 5496, 16, false, 0},
    {"slat-flow self 9116 (42k vox)", 1, 9116, 9116, 16, true, 0},
    {"short q 4 x 4100", 1, 4, 4100, 16, false, 0},
    {"short q 4 x 7528 (pose cross)", 1, 4, 7528, 16, false, 0},
    {"windows 29881 tok / 313, H12", 1, 29881, 29881, 12, true, 313},
};
#define NSHAPES (sizeof(SHAPES) / sizeof(SHAPES[0]))

static const struct version {
    const char      *name;
    enum dtype       dt;
    enum attn_kernel kern;
    bool             mma;
} VERSIONS[] = {
    {"", DTYPE_F16, ATTN_KERNEL_DEFAULT, false},
    {"simple fp32", DTYPE_F16, ATTN_KERNEL_DEFAULT, false},
    {"v1 MT1 f16", DTYPE_F16, ATTN_KERNEL_V1_MT1, true},
    {"v1 MT2 f16", DTYPE_F16, ATTN_KERNEL_V1_MT2, true},
    {"v2 f16", DTYPE_F16, ATTN_KERNEL_V2, true},
    {"v2b f16", DTYPE_F16, ATTN_KERNEL_V2B, true},
    {"v1 MT2 bf16", DTYPE_BF16, ATTN_KERNEL_V1_MT2, true},
    {"v2 bf16", DTYPE_BF16, ATTN_KERNEL_V2, true},
    {"v2b bf16", DTYPE_BF16, ATTN_KERNEL_V2B, true},
    {"v2s f16", DTYPE_F16, ATTN_KERNEL_V2S, true},
    {"v3 f16", DTYPE_F16, ATTN_KERNEL_V3, true},
    {"v3 bf16", DTYPE_BF16, ATTN_KERNEL_V3, true},
    {"v4 f16", DTYPE_F16, ATTN_KERNEL_V4, true},
    {"v4 bf16", DTYPE_BF16, ATTN_KERNEL_V4, true},
    {"split f16", DTYPE_F16, ATTN_KERNEL_SPLIT, true},
    {"split bf16", DTYPE_BF16, ATTN_KERNEL_SPLIT, true},
};
#define NVERSIONS ((int)(sizeof(VERSIONS) / sizeof(VERSIONS[0])) - 1)

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random host data of dt (rounded, uniform in [-2, 2)), n elements. */
static void *host_random(enum dtype dt, size_t n, uint64_t seed)
{
    float *f = (float *)malloc(sizeof(float) * n);
    void  *h = malloc(n * dtype_size(dt));
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;

    for (size_t i = 0; i < n; i++)
        f[i] = (float)((double)(xorshift(&s) >> 11) / 9007199254740992.0 * 4.0 - 2.0);
    dtype_convert(h, dt, f, DTYPE_F32, n);
    free(f);
    return h;
}

/* Window offsets (nwin + 1) over T tokens (random lengths, T / nwin on
 * average; the last takes what is left) and a random permutation of the T
 * token rows; returns the longest length. */
static int make_windows(int T, int nwin, int *off, int *perm)
{
    uint64_t s = 12345;
    int      max_len = 0;

    off[0] = 0;
    for (int w = 0; w < nwin; w++) {
        int left = T - off[w], wins = nwin - w;
        int len = w + 1 == nwin ? left : 1 + (int)(xorshift(&s) % (uint64_t)(2 * left / wins));
        len = len > left - (wins - 1) ? left - (wins - 1) : len;
        off[w + 1] = off[w] + len;
        max_len = len > max_len ? len : max_len;
    }
    for (int i = 0; i < T; i++)
        perm[i] = i;
    for (int i = T - 1; i > 0; i--) {
        int j = (int)(xorshift(&s) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    return max_len;
}

/* CPU reference rows [r0, r0 + n) of batch item 0 of a dense shape, as float. */
static float *cpu_ref(const struct shape *s, enum dtype dt, const void *ha, const void *hb, int r0, int n)
{
    int64_t D = 64, H = s->H;
    struct tensor q, k, v, o;
    const int64_t sf[5] = {1, s->Tq, 3, H, D}, sq[4] = {1, s->Tq, H, D}, skv[5] = {1, s->Tk, 2, H, D};
    const int64_t so[4] = {1, n, H, D};

    if (s->fused) {
        struct tensor t = tensor_view((void *)ha, dt, DEVICE_HOST, sf, 5);
        q = op_heads_view(&t, 0);
        k = op_heads_view(&t, 1);
        v = op_heads_view(&t, 2);
    } else {
        struct tensor t = tensor_view((void *)hb, dt, DEVICE_HOST, skv, 5);
        q = tensor_view((void *)ha, dt, DEVICE_HOST, sq, 4);
        k = op_heads_view(&t, 0);
        v = op_heads_view(&t, 1);
    }
    q = tensor_slice(&q, 1, r0, n);
    void *raw = malloc((size_t)(n * H * D) * dtype_size(dt));
    o = tensor_view(raw, dt, DEVICE_HOST, so, 4);
    op_attention_cpu(&o, &q, &k, &v, 0.125f);
    float *ref = (float *)malloc(sizeof(float) * (size_t)(n * H * D));
    dtype_convert(ref, DTYPE_F32, raw, dt, (size_t)(n * H * D));
    free(raw);
    return ref;
}

/* max |a - b| over n elements of dt (NaN counts as the worst). */
static double max_diff(const void *a, const void *b, enum dtype dt, size_t n, const float *bf)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(dtype_get(a, dt, i) - (bf ? (double)bf[i] : dtype_get(b, dt, i)));
        if (!(e <= worst))
            worst = isnan(e) ? INFINITY : e;
    }
    return worst;
}

int main(int argc, char **argv)
{
    bool want[NVERSIONS + 1];
    struct arena a;
    cudaStream_t st;
    cudaEvent_t  e0, e1;
    int          wrong = 0;

    log_init("attention_bench");
    for (int v = 0; v <= NVERSIONS; v++)
        want[v] = argc == 1 && v > 0;
    for (int i = 1; i < argc; i++) {
        int v = atoi(argv[i]);
        if (v < 1 || v > NVERSIONS) {
            fprintf(stderr, "attention_bench: version '%s' is not 1..%d\n", argv[i], NVERSIONS);
            return 2;
        }
        want[v] = true;
    }
    if (!s3d_cuda_available()) {
        printf("no CUDA device\n");
        return 1;
    }
    if (arena_init(&a, ARENA_DEVICE, "bench", (size_t)4 << 30) != 0)
        return 1;
    CUDA_CHECK(cudaStreamCreate(&st));
    size_t ws_bytes = OP_WORKSPACE_DEFAULT;             /* as the op's context holds */
    void  *ws = arena_must_alloc(&a, ws_bytes);
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    printf("%-31s %-12s %9s %8s %9s %9s\n", "shape", "version", "ms", "TFLOP/s", "err_cpu", "d_cur");

    for (size_t si = 0; si < NSHAPES; si++) {
        const struct shape *s = &SHAPES[si];
        for (int di = 0; di < 2; di++) {       /* the f16 versions, then the bf16 ones */
            enum dtype dt = di ? DTYPE_BF16 : DTYPE_F16;
            bool any = false;
            for (int ver = 1; ver <= NVERSIONS; ver++)
                any |= want[ver] && VERSIONS[ver].dt == dt;
            if (!any)
                continue;
            int64_t D = 64, H = s->H;
            size_t na = s->fused ? (size_t)s->B * s->Tq * 3 * H * D : (size_t)s->B * s->Tq * H * D;
            size_t nb = s->fused ? 0 : (size_t)s->B * s->Tk * 2 * H * D;
            size_t no = (size_t)s->B * s->Tq * H * D, es = dtype_size(dt);
            size_t mark = arena_mark(&a);
            void *ha = host_random(dt, na, 1 + si), *hb = nb ? host_random(dt, nb, 100 + si) : NULL;
            char *da = (char *)arena_must_alloc(&a, na * es);
            char *db = nb ? (char *)arena_must_alloc(&a, nb * es) : NULL;
            char *dout = (char *)arena_must_alloc(&a, no * es);
            CUDA_CHECK(cudaMemcpy(da, ha, na * es, cudaMemcpyHostToDevice));
            if (nb)
                CUDA_CHECK(cudaMemcpy(db, hb, nb * es, cudaMemcpyHostToDevice));

            struct attn_params p;
            memset(&p, 0, sizeof(p));
            if (s->fused) {
                int64_t st3 = 3 * H * D;
                p.q = da;  p.k = da + H * D * es;  p.v = da + 2 * H * D * es;
                p.q_sb = p.k_sb = p.v_sb = s->Tq * st3;
                p.q_st = p.k_st = p.v_st = st3;
                p.q_sh = p.k_sh = p.v_sh = D;
            } else {
                p.q = da;  p.q_sb = (int64_t)s->Tq * H * D;  p.q_st = H * D;  p.q_sh = D;
                p.k = db;  p.v = db + H * D * es;
                p.k_sb = p.v_sb = (int64_t)s->Tk * 2 * H * D;
                p.k_st = p.v_st = 2 * H * D;
                p.k_sh = p.v_sh = D;
            }
            p.o = dout;  p.o_sb = (int64_t)s->Tq * H * D;  p.o_st = H * D;  p.o_sh = D;
            p.Tq = s->Tq;
            p.Tk = s->Tk;
            p.scale = 0.125f;
            int B = s->B, max_tq = s->Tq;
            double flop = 4.0 * s->B * s->H * (double)s->Tq * s->Tk * 64;
            if (s->nwin) {                       /* windows: varlen through a permutation */
                int *off = (int *)malloc(sizeof(int) * (size_t)(s->nwin + 1));
                int *perm = (int *)malloc(sizeof(int) * (size_t)s->Tq);
                max_tq = make_windows(s->Tq, s->nwin, off, perm);
                printf("(%s: longest window %d)\n", s->name, max_tq);
                int *doff = (int *)arena_must_alloc(&a, sizeof(int) * (size_t)(s->nwin + 1));
                int *dperm = (int *)arena_must_alloc(&a, sizeof(int) * (size_t)s->Tq);
                CUDA_CHECK(cudaMemcpy(doff, off, sizeof(int) * (size_t)(s->nwin + 1), cudaMemcpyHostToDevice));
                CUDA_CHECK(cudaMemcpy(dperm, perm, sizeof(int) * (size_t)s->Tq, cudaMemcpyHostToDevice));
                p.q_sb = p.k_sb = p.v_sb = p.o_sb = 0;
                p.q_off = p.k_off = doff;
                p.rows = dperm;
                B = s->nwin;
                flop = 0;
                for (int w = 0; w < s->nwin; w++)
                    flop += 4.0 * s->H * 64 * (double)(off[w + 1] - off[w]) * (off[w + 1] - off[w]);
                free(off);
                free(perm);
            }

            /* the current kernel's output, and the CPU reference rows (dense shapes) */
            void *cur = malloc(no * es), *hout = malloc(no * es);
            attn_launch_kernel(st, &p, dt, B, s->H, max_tq, true, ATTN_KERNEL_DEFAULT, ws,
                               ws_bytes);
            CUDA_CHECK(cudaStreamSynchronize(st));
            CUDA_CHECK(cudaMemcpy(cur, dout, no * es, cudaMemcpyDeviceToHost));
            int nv = s->Tq < 64 ? s->Tq : 64;
            float *ref0 = s->nwin ? NULL : cpu_ref(s, dt, ha, hb, 0, nv);
            float *ref1 = s->nwin ? NULL : cpu_ref(s, dt, ha, hb, s->Tq - nv, nv);
            size_t nrow = (size_t)nv * H * D;

            for (int ver = 1; ver <= NVERSIONS; ver++) {
                const struct version *vs = &VERSIONS[ver];
                if (!want[ver] || vs->dt != dt)
                    continue;
                CUDA_CHECK(cudaMemsetAsync(dout, 0xff, no * es, st));   /* NaN: no stale rows */
                attn_launch_kernel(st, &p, dt, B, s->H, max_tq, vs->mma, vs->kern, ws, ws_bytes);
                CUDA_CHECK(cudaGetLastError());
                CUDA_CHECK(cudaStreamSynchronize(st));
                CUDA_CHECK(cudaMemcpy(hout, dout, no * es, cudaMemcpyDeviceToHost));
                double err = NAN;
                if (!s->nwin) {
                    double e0v = max_diff((char *)hout, NULL, dt, nrow, ref0);
                    double e1v = max_diff((char *)hout + (size_t)(s->Tq - nv) * H * D * es, NULL, dt,
                                          nrow, ref1);
                    err = e1v > e0v || isnan(e1v) ? e1v : e0v;
                }
                double dcur = max_diff(hout, cur, dt, no, NULL);

                float times[20];
                for (int w = 0; w < 3; w++)
                    attn_launch_kernel(st, &p, dt, B, s->H, max_tq, vs->mma, vs->kern, ws, ws_bytes);
                for (int r = 0; r < 20; r++) {
                    CUDA_CHECK(cudaEventRecord(e0, st));
                    attn_launch_kernel(st, &p, dt, B, s->H, max_tq, vs->mma, vs->kern, ws, ws_bytes);
                    CUDA_CHECK(cudaEventRecord(e1, st));
                    CUDA_CHECK(cudaEventSynchronize(e1));
                    CUDA_CHECK(cudaEventElapsedTime(&times[r], e0, e1));
                }
                CUDA_CHECK(cudaGetLastError());
                for (int i = 1; i < 20; i++)         /* insertion sort for the median */
                    for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
                        float t = times[j];
                        times[j] = times[j - 1];
                        times[j - 1] = t;
                    }
                double ms = times[10];
                /* bounds: P and o rounded to the dtype (fp32 kernel: o only); d_cur also
                 * holds the current kernel's own rounding */
                double bound = dt == DTYPE_BF16 ? 6e-2 : 2e-2;
                bool bad = !(dcur <= bound) || (!s->nwin && !(err <= bound));
                wrong += bad;
                printf("%-31s %-12s %9.3f %8.1f %9.2e %9.2e%s\n", s->name, vs->name, ms,
                       flop / (ms * 1e-3) / 1e12, err, dcur, bad ? "  WRONG" : "");
                fflush(stdout);
            }
            free(ref0);
            free(ref1);
            free(cur);
            free(hout);
            free(ha);
            free(hb);
            arena_release(&a, mark);
        }
    }
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    CUDA_CHECK(cudaStreamDestroy(st));
    arena_free(&a);
    printf("attention_bench: %s\n", wrong ? "some version WRONG" : "every version within bounds");
    return wrong ? 1 : 0;
}
