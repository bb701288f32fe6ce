/*
 * stage_blocks.c - resident or streamed model blocks. Contract: stage_blocks.h.
 * Tests: tests/test_ss_flow.c, tests/test_slat_flow.c (streamed = resident,
 * bit for bit, on deeper copies of the tiny checkpoints).
 */
#include "stage_blocks.h"

#include "check.h"
#include "err.h"
#include "log.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const struct tensor *block_tens(const struct stage_blocks *b, int i)
{
    return (const struct tensor *)((const char *)b->home + (size_t)i * b->stride);
}

/* Every block's tensors are block 0's (dtype, shape, strides) moved by
 * i * block_bytes in the host copy: then a slot can hold any of them. */
static bool same_layout(const struct stage_blocks *b, const char *path)
{
    const struct tensor *t0 = block_tens(b, 0);
    const char *base = b->host.base;

    for (int i = 0; i < b->n_blocks; i++) {
        const struct tensor *t = block_tens(b, i);
        for (int k = 0; k < b->n_tens; k++) {
            const char *d = t[k].data, *d0 = t0[k].data;
            if (!d || d < base || d >= base + b->host.used || d - d0 !=
                (ptrdiff_t)((size_t)i * b->block_bytes) || t[k].dtype != t0[k].dtype ||
                t[k].ndim != t0[k].ndim ||
                memcmp(t[k].shape, t0[k].shape, sizeof(t0[k].shape[0]) * (size_t)t0[k].ndim) ||
                memcmp(t[k].stride, t0[k].stride, sizeof(t0[k].stride[0]) * (size_t)t0[k].ndim)) {
                log_error("%s: block %d's tensor %d does not have block 0's layout, so its "
                          "blocks cannot be streamed (HINT: run the stage with "
                          "stream_blocks=0)", path, i, k);
                return false;
            }
        }
    }
    return true;
}

int stage_blocks_load(struct stage_blocks *b, struct weights *w, struct arena *weights,
                      enum device dev, int first, void *blocks, size_t stride, int n_blocks,
                      int slots)
{
    bool cuda = dev == DEVICE_CUDA;
    int nb = w->n_binds - first, rc;

    ASSERT(stride % sizeof(struct tensor) == 0 && n_blocks >= 1 && first >= 0 && nb >= 0);
    ASSERT(slots == 0 || (slots >= 2 && slots <= STAGE_BLOCKS_MAX_SLOTS));
    if (slots && nb != n_blocks * (int)(stride / sizeof(struct tensor))) {
        log_error("%s: its blocks do not bind every tensor of their struct (%d binds for %d "
                  "blocks of %d), so they cannot be streamed (HINT: run the stage with "
                  "stream_blocks=0)", w->source, nb, n_blocks,
                  (int)(stride / sizeof(struct tensor)));
        return S3D_ESHAPE;
    }
    memset(b, 0, sizeof(*b));
    b->n_blocks = n_blocks;
    b->n_tens = (int)(stride / sizeof(struct tensor));
    b->stride = stride;
    b->home = blocks;
    b->slots = slots <= n_blocks ? slots : n_blocks > 2 ? n_blocks : 2;   /* no more than used */
    b->block_bytes = weights_binds_bytes(w, first, nb) / (size_t)n_blocks;
    if (!slots)
        return weights_load_arena(w, weights, dev);
    if ((rc = weights_load_binds(w, 0, first, weights, cuda ? ARENA_DEVICE : ARENA_HOST,
                                 "weights")))
        return rc;
    if ((rc = weights_load_binds(w, first, nb, &b->host, cuda ? ARENA_PINNED : ARENA_HOST,
                                 "blocks (host)")))
        goto fail;
    if (!same_layout(b, w->source)) {
        rc = S3D_ESHAPE;
        goto fail;
    }
    if ((rc = arena_init(&b->dev, cuda ? ARENA_DEVICE : ARENA_HOST, "block slots",
                         (size_t)b->slots * b->block_bytes)))
        goto fail;
    b->s = malloc(sizeof(*b->s) + sizeof(struct tensor) * (size_t)(b->slots * b->n_tens));
    if (!b->s) {
        rc = S3D_ENOMEM;
        goto fail;
    }
    memset(b->s, 0, sizeof(*b->s));
    for (int j = 0; j < STAGE_BLOCKS_MAX_SLOTS; j++)
        b->s->held[j] = -1;
    if (cuda) {
        b->s->cuda = true;
        CUDA_CHECK(cudaStreamCreateWithFlags(&b->s->copy, cudaStreamNonBlocking));
        for (int j = 0; j < b->slots; j++) {
            CUDA_CHECK(cudaEventCreateWithFlags(&b->s->ready[j], cudaEventDisableTiming));
            CUDA_CHECK(cudaEventCreateWithFlags(&b->s->freed[j], cudaEventDisableTiming));
        }
    }
    const struct tensor *t0 = block_tens(b, 0);
    for (int j = 0; j < b->slots; j++)
        for (int k = 0; k < b->n_tens; k++) {
            struct tensor *v = &b->s->views[j * b->n_tens + k];
            *v = t0[k];
            v->data = b->dev.base + (size_t)j * b->block_bytes +
                      (size_t)((const char *)t0[k].data - b->host.base);
            v->device = cuda ? DEVICE_CUDA : DEVICE_HOST;
        }
    weights_report_unused(w, "");
    log_info("%d blocks of %.1f MB streamed from %s host memory through %d device slots "
             "(%.1f MB on the device instead of %.1f MB)", n_blocks, b->block_bytes / 1e6,
             cuda ? "pinned" : "the", b->slots, (double)b->dev.size / 1e6,
             (double)b->host.size / 1e6);
    return 0;
fail:
    stage_blocks_free(b);
    arena_free(weights);
    return rc;
}

void stage_blocks_free(struct stage_blocks *b)
{
    if (!b)
        return;
    if (b->s && b->s->cuda) {              /* no copy may still write a slot */
        CUDA_CHECK(cudaStreamSynchronize(b->s->copy));
        for (int j = 0; j < b->slots; j++) {
            CUDA_CHECK(cudaEventDestroy(b->s->ready[j]));
            CUDA_CHECK(cudaEventDestroy(b->s->freed[j]));
        }
        CUDA_CHECK(cudaStreamDestroy(b->s->copy));
    }
    arena_free(&b->dev);
    arena_free(&b->host);
    free(b->s);
    b->s = NULL;
    b->slots = 0;
}

size_t stage_blocks_device_bytes(const struct stage_blocks *b)
{
    return b->slots ? b->dev.size : b->block_bytes * (size_t)b->n_blocks;
}

/* Queue block i's copy into slot j: after the work queued so far on ctx (which
 * includes the last use of the block slot j held), before the work on block i
 * (stage_blocks_get makes that wait for ready[j]). */
static void copy_in(const struct stage_blocks *b, const struct op_ctx *ctx, int i, int j)
{
    struct stage_blocks_slots *s = b->s;
    char *dst = b->dev.base + (size_t)j * b->block_bytes;
    const char *src = b->host.base + (size_t)i * b->block_bytes;

    if (!s->cuda) {
        memcpy(dst, src, b->block_bytes);
    } else {
        ASSERT(ctx);
        if (s->held[j] >= 0) {
            CUDA_CHECK(cudaEventRecord(s->freed[j], ctx->stream));
            CUDA_CHECK(cudaStreamWaitEvent(s->copy, s->freed[j], 0));
        }
        CUDA_CHECK(cudaMemcpyAsync(dst, src, b->block_bytes, cudaMemcpyHostToDevice, s->copy));
        CUDA_CHECK(cudaEventRecord(s->ready[j], s->copy));
        s->pending[j] = true;
    }
    s->held[j] = i;
    s->copies++;
}

/* The slot holding block i, or -1. */
static int slot_of(const struct stage_blocks *b, int i)
{
    for (int j = 0; j < b->slots; j++)
        if (b->s->held[j] == i)
            return j;
    return -1;
}

const void *stage_blocks_get(const struct stage_blocks *b, const struct op_ctx *ctx, int i)
{
    int j;

    ASSERT(i >= 0 && i < b->n_blocks);
    if (!b->slots)
        return block_tens(b, i);
    if ((j = slot_of(b, i)) < 0) {
        j = b->s->next;
        copy_in(b, ctx, i, j);
    }
    if (b->s->pending[j]) {                     /* the work on block i after its copy */
        CUDA_CHECK(cudaStreamWaitEvent(ctx->stream, b->s->ready[j], 0));
        b->s->pending[j] = false;
    }
    /* the next blocks into the slots after j (never j itself: block i runs from it) */
    for (int d = 1; d < b->slots; d++) {
        int nx = (i + d) % b->n_blocks, jx = (j + d) % b->slots;
        if (nx == i)
            break;                              /* fewer blocks than slots */
        if (slot_of(b, nx) < 0)
            copy_in(b, ctx, nx, jx);
    }
    b->s->next = (j + 1) % b->slots;
    return &b->s->views[j * b->n_tens];
}
