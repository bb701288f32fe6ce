/*
 * test_stage_rt.c - the stage runtime (common/stage_rt.h) in process: device
 * and compute dtype from the options, an unusable device as one error and
 * S3D_EDEVICE (never an abort), the activation arena kept or grown, the
 * repeat loop (runs, timings, the first error stops it), stage_act's reply
 * text, the timing string, cuDNN's handle made on a thread beside a load
 * (stage_rt_dnn_begin/end: no thread on the host; on CUDA a convolution then
 * runs on the handle it made). The cuda:0 cases run only with a GPU.
 */
#include "harness.h"
#include "err.h"
#include "log.h"
#include "ops_conv.h"
#include "ops_copy.h"
#include "stage.h"
#include "stage_warm.h"

#include <stdio.h>
#include <string.h>

static void test_host(void)
{
    struct stage_opts o = {.name = "tst", .device = -1, .precision = STAGE_FP16};
    struct stage_rt rt;

    CHECK(stage_rt_init(&rt, &o, OP_WORKSPACE_DEFAULT) == 0);
    CHECK(rt.device == DEVICE_HOST && rt.compute_dt == DTYPE_F32 && rt.op == NULL,
          "cpu computes in F32 with no op context");
    CHECK(rt.work.size == 0, "no device workspace on the host");
    CHECK(stage_rt_act(&rt, 1000) == 0 && rt.act.size == arena_round(1000) &&
          rt.act.kind == ARENA_HOST);
    char *base = rt.act.base;
    arena_alloc(&rt.act, 100);
    CHECK(stage_rt_act(&rt, 500) == 0 && rt.act.base == base && rt.act.used == 0,
          "a smaller request keeps the arena, empty");
    CHECK(stage_rt_act(&rt, 5000) == 0 && rt.act.size == arena_round(5000), "grown");
    stage_rt_log_memory(&rt);
    stage_rt_dnn_begin(&rt);
    CHECK(!rt.dnn_on, "no cuDNN thread on the host");
    stage_rt_dnn_end(&rt);
    stage_rt_free(&rt);
    CHECK(rt.act.base == NULL && rt.act.size == 0);
    stage_rt_free(&rt);                          /* idempotent */
}

/* cuDNN's handle made on stage_rt_dnn_begin's thread serves a 3x3 convolution
 * on rt's stream: the same numbers as the CPU op (small integers: exact). */
static void check_dnn_prepared(struct stage_rt *rt)
{
    float xh[25], wh[9], bh[1] = {2}, yh[9], yc[9];
    struct tensor hx = tensor_view(xh, DTYPE_F32, DEVICE_HOST, SHAPE(1, 1, 5, 5));
    struct tensor hw = tensor_view(wh, DTYPE_F32, DEVICE_HOST, SHAPE(1, 1, 3, 3));
    struct tensor hb = tensor_view(bh, DTYPE_F32, DEVICE_HOST, SHAPE(1));
    struct tensor hy = tensor_view(yh, DTYPE_F32, DEVICE_HOST, SHAPE(1, 1, 3, 3));
    struct tensor hc = tensor_view(yc, DTYPE_F32, DEVICE_HOST, SHAPE(1, 1, 3, 3));

    for (int i = 0; i < 25; i++)
        xh[i] = (float)(i % 7 - 3);
    for (int i = 0; i < 9; i++)
        wh[i] = (float)(i % 3 - 1);
    stage_rt_dnn_begin(rt);
    CHECK(rt->dnn_on, "cuDNN's handle is made on a thread of its own");
    stage_rt_dnn_end(rt);
    CHECK(!rt->dnn_on, "joined");
    CHECK(stage_rt_act(rt, 1 << 20) == 0);
    struct tensor x = arena_tensor(&rt->act, DTYPE_F32, SHAPE(1, 1, 5, 5));
    struct tensor w = arena_tensor(&rt->act, DTYPE_F32, SHAPE(1, 1, 3, 3));
    struct tensor b = arena_tensor(&rt->act, DTYPE_F32, SHAPE(1));
    struct tensor y = arena_tensor(&rt->act, DTYPE_F32, SHAPE(1, 1, 3, 3));
    op_upload(rt->op, &x, &hx);
    op_upload(rt->op, &w, &hw);
    op_upload(rt->op, &b, &hb);
    op_conv2d_cuda(rt->op, &rt->act, &y, &x, &w, &b, 1, 0, OP_PAD_ZEROS, false);
    op_download(rt->op, &hy, &y);
    op_ctx_synchronize(rt->op);
    op_conv2d_cpu(&hc, &hx, &hw, &hb, 1, 0, OP_PAD_ZEROS, false);
    CHECK(!memcmp(yh, yc, sizeof(yh)), "a convolution on the prepared handle = the CPU op");
}

static void test_bad_device(void)
{
    struct stage_opts o = {.name = "tst", .device = 63, .precision = STAGE_FP16};
    struct stage_rt rt;

    /* no such device here (no GPU at all, or fewer than 64): an error, not an abort */
    CHECK(stage_rt_init(&rt, &o, OP_WORKSPACE_DEFAULT) == S3D_EDEVICE, "cuda:63 refused");
    CHECK(rt.op == NULL && rt.work.base == NULL, "nothing held after a refusal");
}

static void test_cuda(void)
{
    struct stage_opts o = {.name = "tst", .device = 0, .precision = STAGE_FP16};
    struct stage_rt rt;
    int cur = -1;

    if (!s3d_cuda_available()) {
        printf("stage_rt cuda:0 not checked: no CUDA device\n");
        return;
    }
    CHECK(stage_rt_init(&rt, &o, OP_WORKSPACE_DEFAULT) == 0);
    CHECK(rt.device == DEVICE_CUDA && rt.compute_dt == DTYPE_F16 && rt.op == &rt.ctx,
          "cuda:0 fp16");
    CHECK(rt.ctx.workspace && rt.ctx.workspace_size == OP_WORKSPACE_DEFAULT &&
          rt.work.used == OP_WORKSPACE_DEFAULT, "the workspace comes from rt.work");
    CHECK(cudaGetDevice(&cur) == cudaSuccess && cur == 0, "cuda:0 is current");
    CHECK(stage_rt_act(&rt, 1 << 20) == 0 && rt.act.kind == ARENA_DEVICE);
    stage_rt_log_memory(&rt);
    stage_rt_free(&rt);
    o.precision = STAGE_FP32;
    CHECK(stage_rt_init(&rt, &o, 0) == 0);
    check_dnn_prepared(&rt);
    stage_rt_free(&rt);
    CHECK(stage_rt_init(&rt, &o, 0) == 0 && rt.compute_dt == DTYPE_F32 && rt.work.size == 0,
          "cuda:0 fp32, no workspace");
    stage_rt_free(&rt);
}

/* A loop of repeat runs that fails at run fail_at (-1: never): how many ran. */
static int loop(struct stage_rt *rt, int repeat, int fail_at, struct stage_timing *tm, int *rc)
{
    struct stage_loop L;
    int calls = 0;

    *rc = 0;
    for (stage_rt_loop(rt, "t", repeat, &L); stage_loop_next(&L);)
        if (calls++ == fail_at) {
            *rc = S3D_EINVAL;
            break;
        }
    *rc = stage_loop_end(&L, *rc);
    if (!*rc)
        *tm = L.tm;
    return calls;
}

static void test_repeat(void)
{
    struct stage_opts o = {.name = "tst", .device = -1};
    struct stage_rt rt;
    struct stage_timing tm = {0};
    char buf[96];
    int rc, calls;

    CHECK(stage_rt_init(&rt, &o, 0) == 0);
    calls = loop(&rt, 5, -1, &tm, &rc);
    CHECK(rc == 0 && calls == 5 && tm.n == 5, "rc %d, %d runs, tm.n %d", rc, calls, tm.n);
    CHECK(tm.min <= tm.median && tm.median <= tm.max && tm.min >= 0);
    CHECK(strstr(stage_timing_str(&tm, buf, sizeof(buf)), "median of 5 (min "), "%s", buf);
    tm.n = 0;
    calls = loop(&rt, 4, 1, &tm, &rc);
    CHECK(rc == S3D_EINVAL && calls == 2 && tm.n == 0,
          "the first error stops the loop and gives no timings");
    calls = loop(&rt, 1, -1, &tm, &rc);
    CHECK(rc == 0 && calls == 1 && tm.n == 1 && tm.min == tm.max, "one run");
    tm.n = 1;
    tm.median = 3.25;
    CHECK(!strcmp(stage_timing_str(&tm, buf, sizeof(buf)), "3.25 ms"), "%s", buf);

    /* stage_loop runs param repeat (checked against the table); stage_act names the
     * size in the reply */
    static struct wire_msg msg;
    static struct stage_req rq;
    wire_msg_init(&msg, WIRE_REQUEST, 1);
    memset(&rq, 0, sizeof(rq));
    rq.msg = &msg;
    rq.opts = &o;
    rq.rt = &rt;
    rq.params = stage_params_repeat;
    CHECK(wire_set_int(&msg, "repeat", 3) == 0);
    CHECK(stage_params_check(&rq) == 0);
    struct stage_loop L;
    calls = 0;
    for (stage_loop(&rq, "t", &L); stage_loop_next(&L);)
        calls++;
    CHECK(stage_loop_end(&L, 0) == 0 && calls == 3 && L.tm.n == 3);
    CHECK(wire_set_int(&msg, "repeat", 0) == 0);
    CHECK(stage_params_check(&rq) == S3D_EINVAL &&
          strstr(rq.err, "param repeat 0 is outside [1, 1000]"), "%s", rq.err);
    CHECK(stage_act(&rq, (size_t)1 << 62) == S3D_ENOMEM &&
          strstr(rq.err, "cannot reserve") && strstr(rq.err, "HINT"), "%s", rq.err);
    stage_rt_free(&rt);
}

/* The warm-ups' made-up inputs (stage_warm.h): the shell is a valid voxel set of
 * about the asked size (unique rows (0, x, y, z) in increasing order, inside the
 * grid), the noise is in [-1, 1) and the same every time, tensors are zeroed,
 * and a full arena is an error, not an abort. */
static void test_warm_inputs(void)
{
    struct arena a;
    struct tensor c, n1, n2, z;

    CHECK(arena_init(&a, ARENA_HOST, "warm", (size_t)8 << 20) == 0);
    for (int k = 0; k < 3; k++) {
        static const int res[3] = {64, 64, 32};
        static const int64_t want[3] = {30000, 512, 2000};
        arena_reset(&a);
        CHECK(stage_warm_shell(&a, res[k], want[k], &c) == 0);
        int64_t N = c.shape[0];
        CHECK(c.dtype == DTYPE_I32 && c.ndim == 2 && c.shape[1] == 4);
        CHECK(N > want[k] * 9 / 10 && N < want[k] * 11 / 10, "res %d: %lld voxels for %lld",
              res[k], (long long)N, (long long)want[k]);
        const int32_t *r = c.data;
        bool ok = true;
        for (int64_t i = 0; i < N; i++) {
            const int32_t *p = r + 4 * i;
            ok &= p[0] == 0 && p[1] >= 0 && p[1] < res[k] && p[2] >= 0 && p[2] < res[k] &&
                  p[3] >= 0 && p[3] < res[k];
            if (i)
                ok &= memcmp(p - 4, p, 16) != 0 &&
                      (p[-3] < p[1] || (p[-3] == p[1] && (p[-2] < p[2] ||
                                                          (p[-2] == p[2] && p[-1] < p[3]))));
        }
        CHECK(ok, "res %d: rows out of the grid, repeated or out of order", res[k]);
    }
    CHECK(stage_warm_shell(&a, 2, 10, &c) == S3D_EINVAL);
    arena_reset(&a);
    CHECK(stage_warm_noise(&a, SHAPE(1000, 8), &n1) == 0 &&
          stage_warm_noise(&a, SHAPE(1000, 8), &n2) == 0);
    const float *x = n1.data;
    bool in = true;
    double sum = 0;
    for (int i = 0; i < 8000; i++) {
        in &= x[i] >= -1.0f && x[i] < 1.0f;
        sum += x[i];
    }
    CHECK(in && memcmp(n1.data, n2.data, 8000 * sizeof(float)) == 0 && sum / 8000 > -0.05 &&
          sum / 8000 < 0.05, "noise: in range %d, mean %g", in, sum / 8000);
    CHECK(stage_warm_tensor(&a, DTYPE_F16, SHAPE(3, 5), &z) == 0 && z.device == DEVICE_HOST);
    for (int i = 0; i < 15; i++)
        CHECK(((const uint16_t *)z.data)[i] == 0);
    CHECK(stage_warm_tensor(&a, DTYPE_F32, SHAPE(4, 1 << 20), &z) == S3D_ENOMEM);
    arena_free(&a);
}

int main(void)
{
    log_init("test_stage_rt");
    test_host();
    test_bad_device();
    test_cuda();
    test_repeat();
    test_warm_inputs();
    return harness_done("test_stage_rt");
}
