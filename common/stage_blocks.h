/*
 * stage_blocks.h - a model's repeated blocks (the flow transformers' 24 DiT
 * blocks) either resident on the device like every other weight, or streamed:
 * kept in pinned host memory (in the device dtype, fp16 by default) and
 * copied block by block into k device slots just before they run, so that
 * the device holds k blocks instead of all of them (issue 16's `--vram-budget
 * 2G`). The stage param stream_blocks (stage.h STAGE_PARAM_STREAM_BLOCKS)
 * chooses at load; the orchestrator sets it when a budget is below the
 * stage's resident need (the variant rows of pipelines/sam3d_objects.needs, orchestrator/budget.h).
 *
 * Layout: the model binds its other weights first, then the blocks, block by
 * block, every block the same tensors in the same order and shapes (one
 * struct of `struct tensor` members per block, in an array). Streaming
 * uploads binds [0, first) into the model's weights arena as usual and the
 * blocks' binds into one host arena where block i lies at i * block_bytes;
 * slot j of the device arena has the same layout, so block i's tensors in a
 * slot are its host tensors moved by a fixed offset (the slot's views, made
 * once at load).
 *
 * Schedule (stage_blocks_get, the same on the host and the device): block i
 * is in some slot or is copied into the next one now; then blocks i + 1 ..
 * i + k - 1 (wrapping to 0 at the end: the next evaluation starts there) are
 * queued into the other slots, which hold blocks that already ran. Work on
 * block i is queued after its copy. On the host the copies are memcpy at
 * that point, so a wrong slot or a stale block changes the output: the tests
 * compare streamed and resident outputs bit for bit (tests/test_ss_flow.c,
 * tests/test_slat_flow.c). On CUDA the copies run on a copy stream of their
 * own from the pinned copy (cudaMemcpyAsync), so the copy of block i + 1
 * overlaps the work on block i: a copy into slot j first waits for an event
 * recorded on the op context's stream after the work queued so far (which
 * includes every use of the block slot j held), and the work on a block waits
 * for its slot's copy event before its first op. Nothing blocks the host.
 */
#ifndef S3D_STAGE_BLOCKS_H
#define S3D_STAGE_BLOCKS_H

#include "arena.h"
#include "ops.h"
#include "tensor.h"
#include "weights.h"

#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define STAGE_BLOCKS_MAX_SLOTS 8

/* Which block each slot holds (a model's forward takes the model const; this
 * part changes as blocks come and go, so it lives apart, allocated at load). */
struct stage_blocks_slots {
    int           held[STAGE_BLOCKS_MAX_SLOTS];  /* block in (or copied into) slot j, -1 */
    int           next;                          /* the slot a block not held goes to */
    long long     copies;                        /* blocks copied since load (logs, tests) */
    bool          cuda;                          /* slots on the device: the copy stream */
    cudaStream_t  copy;                          /* CUDA: the copies, beside the work */
    cudaEvent_t   ready[STAGE_BLOCKS_MAX_SLOTS]; /* CUDA: slot j's copy done */
    cudaEvent_t   freed[STAGE_BLOCKS_MAX_SLOTS]; /* CUDA: the work on slot j's last block done */
    bool          pending[STAGE_BLOCKS_MAX_SLOTS]; /* ready[j] not yet waited for by the work */
    struct tensor views[];                       /* k x n_tens: each slot's tensors */
};

struct stage_blocks {
    int                  n_blocks;     /* N */
    int                  n_tens;       /* tensors per block (its struct / sizeof(struct tensor)) */
    size_t               stride;       /* bytes between the blocks' structs in the model */
    const struct tensor *home;         /* block 0's struct: block i's at (char *)home + i * stride */
    int                  slots;        /* k device slots; 0: resident (home is on the device) */
    size_t               block_bytes;  /* one block in the host copy and in a slot */
    struct arena         host;         /* streaming: the N blocks (PINNED on CUDA, else HOST) */
    struct arena         dev;          /* streaming: k slots (DEVICE on CUDA, else HOST) */
    struct stage_blocks_slots *s;      /* streaming: the slots' state; NULL resident */
};

/* Load w's binds: binds [0, first) into *weights (a new "weights" arena on
 * dev) and binds [first, w->n_binds) - n_blocks blocks of n_tens tensors each,
 * block i's struct at (char *)blocks + i * stride - either into *weights too
 * (slots 0: resident) or, with slots in [2, STAGE_BLOCKS_MAX_SLOTS], into a
 * pinned host arena with `slots` block slots on dev (the layout above). The
 * bound tensors of the blocks then point into the host copy: use them only
 * through stage_blocks_get. Then warns about unused tensors
 * (weights_report_unused). Resident, a block may leave tensors of its struct
 * unbound (an optional part); streamed, every block binds all of them. 0, or a negative s3d_err (logged; S3D_ESHAPE when
 * the blocks do not share one layout) with nothing left allocated. */
int  stage_blocks_load(struct stage_blocks *b, struct weights *w, struct arena *weights,
                       enum device dev, int first, void *blocks, size_t stride, int n_blocks,
                       int slots);
/* Free the host copy and the slots (not *weights: the model frees it).
 * NULL-safe, idempotent. */
void stage_blocks_free(struct stage_blocks *b);

/* Block i's struct (cast it to the model's block type) for work queued on ctx
 * (NULL on the host) after this call; valid until the next k - 1 calls. Queues
 * its copy if no slot holds it, then the next blocks' copies (the schedule
 * above). Resident: (char *)home + i * stride. */
const void *stage_blocks_get(const struct stage_blocks *b, const struct op_ctx *ctx, int i);

/* Bytes the device holds for the blocks: all of them resident, k slots streamed. */
size_t stage_blocks_device_bytes(const struct stage_blocks *b);

#ifdef __cplusplus
}
#endif
#endif
