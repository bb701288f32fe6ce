/*
 * gemm.cu - op_linear_cuda: y = x @ w^T (+ b) (+ y) through cuBLASLt. See ops.h.
 *
 * Row-major y(M, N) = x(M, K) w(N, K)^T is, read column-major, y^T = w x^T:
 * A = w as a column-major (K, N) matrix with op T, B = x as column-major (K, M)
 * with op N, D = y^T column-major (N, M). Compute type fp32 (CUBLAS_COMPUTE_32F:
 * no TF32 for F32 inputs, fp32 accumulation for F16/BF16). The bias is a
 * cuBLASLt epilogue when its dtype equals y's (cuBLASLt's default bias type),
 * else a separate op_add_bias. The chosen algorithm is cached per problem
 * (shape, dtypes, epilogue, beta, pointer alignments) in the op context, with
 * the descriptors it was chosen for.
 * op_linear_gelu_cuda: the same with the GELU_BIAS (or GELU) epilogue, whose
 * GELU is the tanh form; without such a kernel, with a bias of another dtype
 * than y or with S3D_GEMM_EPILOGUE=0 (to measure the difference), the GEMM
 * and then op_act_cuda.
 */
#include "common.cuh"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct gemm_key {
    int64_t  M, N, K;
    int      xt, yt;          /* enum dtype of x/w and y */
    int      bias, beta;      /* fused bias epilogue, accumulate */
    int      gelu;            /* GELU epilogue */
    uint32_t align[4];        /* A, B, C, bias alignment in bytes */
    size_t   ws;              /* workspace bytes offered */
};

/* One cached problem: its algorithm and the matmul descriptor and matrix
 * layouts it was chosen for, made once (only the bias pointer changes between
 * calls: set under the cache's lock just before cublasLtMatmul queues the
 * GEMM; the SS flow issues ~14.5k GEMMs a request, each of which made and
 * destroyed four descriptors before). */
struct gemm_entry {
    struct gemm_key         key;
    cublasLtMatmulAlgo_t    algo;
    cublasLtMatmulDesc_t    op;
    cublasLtMatrixLayout_t  la, lb, lc;
    bool                    valid;
};

#define GEMM_CACHE 64

/* The algorithm cache of one op context (ctx->gemm): algorithms belong to the
 * context's device and workspace, so contexts never share one. */
struct op_gemm {
    pthread_mutex_t   lock;
    struct gemm_entry cache[GEMM_CACHE];
    int               next;
    int               last;           /* the entry found last: looked at first */
};

struct op_gemm *gemm_cache_new(void)
{
    struct op_gemm *g = (struct op_gemm *)calloc(1, sizeof(*g));

    ASSERT(g);
    ASSERT(pthread_mutex_init(&g->lock, NULL) == 0);
    return g;
}

static void destroy_problem(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t la,
                            cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc)
{
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lc));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(lb));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(la));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(op));
}

static void entry_clear(struct gemm_entry *e)
{
    if (e->valid)
        destroy_problem(e->op, e->la, e->lb, e->lc);
    e->valid = false;
}

void gemm_cache_free(struct op_gemm *g)
{
    if (!g)
        return;
    for (int i = 0; i < GEMM_CACHE; i++)
        entry_clear(&g->cache[i]);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

static cudaDataType_t cuda_dtype(enum dtype dt)
{
    switch (dt) {
    case DTYPE_F32:  return CUDA_R_32F;
    case DTYPE_F16:  return CUDA_R_16F;
    case DTYPE_BF16: return CUDA_R_16BF;
    default:         ASSERT(!"gemm dtype not F32/F16/BF16");
    }
    return CUDA_R_32F;
}

/* Largest power of two (at most 256) dividing the address. */
static uint32_t ptr_align(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uint32_t  al = 256;

    while (al > 1 && (a & (al - 1)))
        al >>= 1;
    return al;
}

/* The entry of key k, or NULL; call with g->lock held. */
static struct gemm_entry *cache_find(struct op_gemm *g, const struct gemm_key *k)
{
    struct gemm_entry *e = &g->cache[g->last];

    if (e->valid && memcmp(&e->key, k, sizeof(*k)) == 0)
        return e;
    for (int i = 0; i < GEMM_CACHE; i++) {
        e = &g->cache[i];
        if (e->valid && memcmp(&e->key, k, sizeof(*k)) == 0) {
            g->last = i;
            return e;
        }
    }
    return NULL;
}

/* A new entry for k holding the made descriptors and algo (the oldest entry's
 * descriptors destroyed); call with g->lock held. */
static struct gemm_entry *cache_put(struct op_gemm *g, const struct gemm_key *k,
                                    const cublasLtMatmulAlgo_t *algo, cublasLtMatmulDesc_t op,
                                    cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                                    cublasLtMatrixLayout_t lc)
{
    struct gemm_entry *e = &g->cache[g->next];

    entry_clear(e);
    g->last = g->next;
    g->next = (g->next + 1) % GEMM_CACHE;
    e->key = *k;
    e->algo = *algo;
    e->op = op;
    e->la = la;
    e->lb = lb;
    e->lc = lc;
    e->valid = true;
    return e;
}

/* The descriptors of a problem: op (transposes, the epilogue) and the three
 * layouts. Returns false, having made nothing that is left, when gelu and
 * cuBLASLt has no kernel for it; else *algo is the heuristic's first choice. */
static bool make_problem(const struct op_ctx *ctx, const struct gemm_key *key, enum dtype xdt,
                         enum dtype ydt, bool fuse_bias, bool gelu, cublasLtMatmulDesc_t *op,
                         cublasLtMatrixLayout_t *la, cublasLtMatrixLayout_t *lb,
                         cublasLtMatrixLayout_t *lc, cublasLtMatmulAlgo_t *algo)
{
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cudaDataType_t    xt = cuda_dtype(xdt), yt = cuda_dtype(ydt);
    int64_t           M = key->M, N = key->N, K = key->K;

    CUBLAS_CHECK(cublasLtMatmulDescCreate(op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    if (fuse_bias || gelu) {
        cublasLtEpilogue_t epi = !gelu ? CUBLASLT_EPILOGUE_BIAS
                                       : fuse_bias ? CUBLASLT_EPILOGUE_GELU_BIAS
                                                   : CUBLASLT_EPILOGUE_GELU;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(*op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                    sizeof(epi)));
    }
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(la, xt, (uint64_t)K, (uint64_t)N, K));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(lb, xt, (uint64_t)K, (uint64_t)M, K));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(lc, yt, (uint64_t)N, (uint64_t)M, N));

    cublasLtMatmulPreference_t      pref;
    cublasLtMatmulHeuristicResult_t res;
    int                             nres = 0;
    size_t                          ws = ctx->workspace_size;

    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key->align[0], sizeof(uint32_t)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key->align[1], sizeof(uint32_t)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key->align[2], sizeof(uint32_t)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key->align[2], sizeof(uint32_t)));
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(ctx->lt, *op, *la, *lb, *lc, *lc, pref, 1,
                                                       &res, &nres);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (gelu && (st != CUBLAS_STATUS_SUCCESS || nres < 1)) {
        destroy_problem(*op, *la, *lb, *lc);
        return false;                       /* the caller runs the unfused pair */
    }
    CUBLAS_CHECK(st);
    if (nres < 1)
        s3d_fatal(__FILE__, __LINE__, "cublasLtMatmulAlgoGetHeuristic", "no algorithm",
                  "cuBLASLt found no kernel for this GEMM");
    *algo = res.algo;
    return true;
}

/* The GEMM through cuBLASLt, the bias fused when its dtype is y's, with the
 * GELU epilogue when gelu (then b is NULL or of y's dtype). Returns false,
 * having queued nothing, only when gelu and cuBLASLt has no kernel for it. */
static bool lt_linear(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                      const struct tensor *w, const struct tensor *b, bool accumulate,
                      bool gelu, int64_t M, int64_t N, int64_t K)
{
    bool fuse_bias = b && b->dtype == y->dtype;
    struct gemm_key key;
    memset(&key, 0, sizeof(key));   /* padding too: the key is compared with memcmp */
    key.M = M;
    key.N = N;
    key.K = K;
    key.xt = x->dtype;
    key.yt = y->dtype;
    key.bias = fuse_bias;
    key.beta = accumulate;
    key.gelu = gelu;
    key.align[0] = ptr_align(w->data);
    key.align[1] = ptr_align(x->data);
    key.align[2] = ptr_align(y->data);
    key.align[3] = fuse_bias ? ptr_align(b->data) : 256;
    key.ws = ctx->workspace_size;

    struct op_gemm    *g = ctx->gemm;
    struct gemm_entry *e;

    pthread_mutex_lock(&g->lock);
    if (!(e = cache_find(g, &key))) {
        cublasLtMatmulDesc_t   op;
        cublasLtMatrixLayout_t la, lb, lc;
        cublasLtMatmulAlgo_t   algo;

        if (!make_problem(ctx, &key, x->dtype, y->dtype, fuse_bias, gelu, &op, &la, &lb, &lc,
                          &algo)) {
            pthread_mutex_unlock(&g->lock);
            return false;
        }
        e = cache_put(g, &key, &algo, op, la, lb, lc);
    }
    if (fuse_bias)
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &b->data, sizeof(b->data)));
    float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    CUBLAS_CHECK(cublasLtMatmul(ctx->lt, e->op, &alpha, w->data, e->la, x->data, e->lb, &beta,
                                y->data, e->lc, y->data, e->lc, &e->algo, ctx->workspace,
                                ctx->workspace_size, ctx->stream));
    pthread_mutex_unlock(&g->lock);
    op_done(ctx, gelu ? "linear_gelu" : "linear");

    if (b && !fuse_bias)
        op_add_bias_cuda(ctx, y, y, b);
    return true;
}

void op_linear_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                    const struct tensor *w, const struct tensor *b, bool accumulate)
{
    int64_t M, N, K;

    op_check_linear(y, x, w, b, DEVICE_CUDA, &M, &N, &K);
    if (M == 0 || N == 0)
        return;
    ASSERT(K > 0);
    lt_linear(ctx, y, x, w, b, accumulate, false, M, N, K);
}

/* S3D_GEMM_EPILOGUE=0 turns the GELU epilogue off (read once). */
static bool epilogue_on(void)
{
    static int on = -1;

    if (on < 0) {
        const char *e = getenv("S3D_GEMM_EPILOGUE");
        on = !(e && !strcmp(e, "0"));
    }
    return on;
}

void op_linear_gelu_cuda(const struct op_ctx *ctx, struct tensor *y, const struct tensor *x,
                         const struct tensor *w, const struct tensor *b)
{
    int64_t M, N, K;

    op_check_linear(y, x, w, b, DEVICE_CUDA, &M, &N, &K);
    if (M == 0 || N == 0)
        return;
    ASSERT(K > 0);
    if (epilogue_on() && (!b || b->dtype == y->dtype) &&
        lt_linear(ctx, y, x, w, b, false, true, M, N, K))
        return;
    lt_linear(ctx, y, x, w, b, false, false, M, N, K);
    op_act_cuda(ctx, y, y, OP_ACT_GELU_TANH);
}
