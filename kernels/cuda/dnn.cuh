/*
 * dnn.cuh - the cuDNN state an op context owns (ctx->dnn, struct op_dnn):
 * one handle, created on the first convolution and bound to ctx->stream, and
 * one algorithm cache, keyed by each op's problem description. Private to
 * kernels/cuda (cudnn.cu implements it; cudnn.cu and conv3d.cu use it), so
 * no file keeps cuDNN state in globals and two contexts never share a handle.
 *
 *     cudnnHandle_t h = dnn_begin(ctx);          locks ctx's state
 *     const struct dnn_algo *a = dnn_find(ctx, &key, sizeof(key));
 *     if (!a) { ... dnn_pick(h, ...) ...; a = dnn_store(ctx, &key, sizeof(key), algo, ws, direct); }
 *     ... cudnnConvolutionForward(h, ...) ...
 *     dnn_end(ctx);
 */
#ifndef S3D_KERNELS_CUDA_DNN_CUH
#define S3D_KERNELS_CUDA_DNN_CUH

#include "common.cuh"

#include <pthread.h>

#define DNN_KEY_BYTES 128           /* the largest problem key of an op */
#define DNN_CACHE     128           /* entries, replaced round-robin */

struct dnn_algo {
    unsigned char             key[DNN_KEY_BYTES];
    size_t                    key_len;
    cudnnConvolutionFwdAlgo_t algo;
    size_t                    ws;        /* workspace bytes of algo */
    bool                      direct;    /* no cuDNN algorithm: the op's own kernel */
    bool                      valid;
};

struct op_dnn {
    pthread_mutex_t lock;
    cudnnHandle_t   handle;              /* NULL until the first convolution */
    struct dnn_algo cache[DNN_CACHE];
    int             next;
};

/* New zeroed state for op_ctx_init (host memory; no cuDNN call yet). */
struct op_dnn *dnn_new(void);
/* Destroy the handle (if created) and free; NULL-safe. */
void dnn_free(struct op_dnn *d);

/* Lock ctx's cuDNN state; its handle, created on first use, set to ctx->stream. */
cudnnHandle_t dnn_begin(const struct op_ctx *ctx);
void          dnn_end(const struct op_ctx *ctx);
/* With the state locked: the cached entry for key (len <= DNN_KEY_BYTES bytes,
 * compared bytewise: zero the key struct first), or NULL; dnn_store adds one. */
const struct dnn_algo *dnn_find(const struct op_ctx *ctx, const void *key, size_t len);
const struct dnn_algo *dnn_store(const struct op_ctx *ctx, const void *key, size_t len,
                                 cudnnConvolutionFwdAlgo_t algo, size_t ws, bool direct);

/* The first deterministic forward algorithm of cuDNN's v7 heuristics whose
 * workspace fits cap bytes; false when there is none. */
bool dnn_pick(cudnnHandle_t h, cudnnTensorDescriptor_t xd, cudnnFilterDescriptor_t wd,
              cudnnConvolutionDescriptor_t cd, cudnnTensorDescriptor_t yd, size_t cap,
              cudnnConvolutionFwdAlgo_t *algo);
/* cuDNN's data type for F32/F16/BF16. */
cudnnDataType_t dnn_dtype(enum dtype dt);
/* The free space of a device scratch arena a workspace may take (a 256-byte
 * multiple, leaving room for alignment). */
size_t dnn_ws_cap(const struct arena *scratch);

#endif
