/*
 * test_stage_params.c - the request param and timing helpers of common/stage.h
 * (stage_param_int/float/flag, stage_now_ms, stage_sort_ms), in process: no
 * socket, a stage_req built by hand around a wire_msg. The runtime
 * (stage_rt.h) has its own test, test_stage_rt.c.
 */
#include "harness.h"
#include "stage.h"
#include "err.h"
#include "log.h"

#include <math.h>
#include <string.h>

static struct wire_msg msg;
static struct stage_opts opts = {.name = "tst"};
static struct stage_req rq;

/* A fresh request holding no params. */
static void reset(void)
{
    wire_msg_init(&msg, WIRE_REQUEST, 1);
    memset(&rq, 0, sizeof(rq));
    rq.msg = &msg;
    rq.opts = &opts;
}

static void test_int(void)
{
    int64_t v = -7;

    reset();
    CHECK(stage_param_int(&rq, "n", 5, 1, 10, &v) == 0 && v == 5, "absent -> default, got %lld",
          (long long)v);
    CHECK(wire_set_int(&msg, "n", 10) == 0);
    CHECK(stage_param_int(&rq, "n", 5, 1, 10, &v) == 0 && v == 10, "upper bound is inside");
    reset();
    CHECK(wire_set_float(&msg, "n", 3.0) == 0);
    CHECK(stage_param_int(&rq, "n", 5, 1, 10, &v) == 0 && v == 3, "integral float accepted");
    reset();
    v = -7;
    CHECK(wire_set_int(&msg, "n", 0) == 0);
    CHECK(stage_param_int(&rq, "n", 5, 1, 10, &v) == S3D_EINVAL && v == -7, "below range");
    CHECK(strstr(rq.err, "tst: param n 0 is outside [1, 10]"), "error text: %s", rq.err);
    reset();
    CHECK(wire_set_int(&msg, "n", 11) == 0);
    CHECK(stage_param_int(&rq, "n", 5, 1, 10, &v) == S3D_EINVAL && v == -7, "above range");
    reset();
    CHECK(wire_set_str(&msg, "n", "three") == 0);
    CHECK(stage_param_int(&rq, "n", 5, 1, 10, &v) == S3D_EINVAL && v == -7, "string refused");
    CHECK(strstr(rq.err, "tst: param n must be an integer"), "error text: %s", rq.err);
    reset();
    CHECK(wire_set_float(&msg, "n", 2.5) == 0);
    CHECK(stage_param_int(&rq, "n", 5, 1, 10, &v) == S3D_EINVAL && v == -7, "2.5 refused");
}

static void test_float(void)
{
    double v = -7;

    reset();
    CHECK(stage_param_float(&rq, "x", 0.5, 0, 1, &v) == 0 && v == 0.5, "absent -> default");
    CHECK(wire_set_int(&msg, "x", 1) == 0);
    CHECK(stage_param_float(&rq, "x", 0.5, 0, 1, &v) == 0 && v == 1.0, "int accepted");
    reset();
    v = -7;
    CHECK(wire_set_float(&msg, "x", 1.5) == 0);
    CHECK(stage_param_float(&rq, "x", 0.5, 0, 1, &v) == S3D_EINVAL && v == -7, "above range");
    CHECK(strstr(rq.err, "tst: param x 1.5 is outside [0, 1]"), "error text: %s", rq.err);
    reset();
    CHECK(wire_set_float(&msg, "x", NAN) == 0);
    CHECK(stage_param_float(&rq, "x", 0.5, 0, 1, &v) == S3D_EINVAL && v == -7, "NaN refused");
    reset();
    CHECK(wire_set_bool(&msg, "x", true) == 0);
    CHECK(stage_param_float(&rq, "x", 0.5, 0, 1, &v) == S3D_EINVAL, "bool refused");
    CHECK(strstr(rq.err, "tst: param x must be a number"), "error text: %s", rq.err);
}

static void test_flag(void)
{
    bool b = false;

    reset();
    CHECK(stage_param_flag(&rq, "k", true, &b) == 0 && b, "absent -> default");
    CHECK(wire_set_bool(&msg, "k", false) == 0);
    CHECK(stage_param_flag(&rq, "k", true, &b) == 0 && !b, "false");
    reset();
    CHECK(wire_set_int(&msg, "k", 1) == 0);
    CHECK(stage_param_flag(&rq, "k", false, &b) == 0 && b, "1");
    reset();
    b = true;
    CHECK(wire_set_int(&msg, "k", 2) == 0);
    CHECK(stage_param_flag(&rq, "k", false, &b) == S3D_EINVAL && b, "2 refused");
    CHECK(strstr(rq.err, "tst: param k 2 is outside [0, 1]"), "error text: %s", rq.err);
    reset();
    CHECK(wire_set_str(&msg, "k", "yes") == 0);
    CHECK(stage_param_flag(&rq, "k", false, &b) == S3D_EINVAL, "string refused");
    CHECK(strstr(rq.err, "tst: param k must be true/false or 0/1"), "error text: %s", rq.err);
}

static void test_timing(void)
{
    double ms[5] = {3, -1, 7, 2, 2}, one = 4;
    double t0 = stage_now_ms(), t1 = stage_now_ms();

    CHECK(t0 > 0 && t1 >= t0, "monotonic: %g then %g", t0, t1);
    stage_sort_ms(ms, 5);
    CHECK(ms[0] == -1 && ms[1] == 2 && ms[2] == 2 && ms[3] == 3 && ms[4] == 7, "sorted");
    stage_sort_ms(&one, 1);
    CHECK(one == 4);
}

int main(void)
{
    log_init("test_stage_params");
    test_int();
    test_float();
    test_flag();
    test_timing();
    return harness_done("test_stage_params");
}
