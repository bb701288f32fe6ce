/*
 * test_stage_params.c - the request param and timing helpers of common/stage.h
 * (a stage's param table: stage_params_check, stage_get_*, the --help lines;
 * stage_now_ms, stage_sort_ms), in process: no socket, a stage_req built by
 * hand around a wire_msg. The runtime
 * (stage_rt.h) has its own test, test_stage_rt.c.
 */
#include "harness.h"
#include "stage.h"
#include "err.h"
#include "log.h"

#include <math.h>
#include <string.h>

static const struct stage_param TABLE[] = {
    {"n", STAGE_PARAM_INT, 5, 1, 10, "an int", NULL},
    {"x", STAGE_PARAM_FLOAT, 0.5, 0, 1, "a float", NULL},
    {"k", STAGE_PARAM_FLAG, 1, 0, 1, "a flag", NULL},
    {"s", STAGE_PARAM_STRING, 0, 0, 0, "a string", "none"},
    {"big", STAGE_PARAM_INT, 0, 0, 9e15, "a seed-sized int", NULL},
    {"m", STAGE_PARAM_INT, 0, 1, 100, "default from the model", "the checkpoint's"},
    {NULL},
};

static struct wire_msg msg;
static struct stage_opts opts = {.name = "tst", .exe = "sam3d-tst"};
static struct stage_req rq;

/* A fresh request holding no params. */
static void reset(void)
{
    wire_msg_init(&msg, WIRE_REQUEST, 1);
    memset(&rq, 0, sizeof(rq));
    rq.msg = &msg;
    rq.opts = &opts;
    rq.params = TABLE;
}

/* reset, set one param from text as --param does, check. */
static int with(const char *key, const char *text)
{
    reset();
    CHECK(wire_set_parsed(&msg, key, text) == 0);
    return stage_params_check(&rq);
}

static void test_defaults(void)
{
    reset();
    CHECK(stage_params_check(&rq) == 0);
    CHECK(stage_get_int(&rq, "n") == 5 && stage_get_float(&rq, "x") == 0.5 &&
          stage_get_flag(&rq, "k") && !strcmp(stage_get_str(&rq, "s", "d"), "d"),
          "absent -> the table's defaults");
    CHECK(!stage_param_given(&rq, "m") && !stage_param_given(&rq, "n"));
    CHECK(with("m", "7") == 0 && stage_param_given(&rq, "m") && stage_get_int(&rq, "m") == 7);
    CHECK(with("job", "/x") == 0 && with("out", "o.safetensors") == 0, "library params known");
    CHECK(with("out", "3") == S3D_EINVAL && strstr(rq.err, "param 'out' must be a string"),
          "%s", rq.err);
    CHECK(with("n", "nil") == 0 && stage_get_int(&rq, "n") == 5, "nil -> default");
}

static void test_unknown(void)
{
    CHECK(with("sed", "7") == S3D_EINVAL, "a typo is refused");
    CHECK(strstr(rq.err, "tst: unknown param 'sed' (known: n, x, k, s, big, m, job, out)") &&
          strstr(rq.err, "`sam3d-tst --help`"), "error text: %s", rq.err);
}

static void test_int(void)
{
    CHECK(with("n", "10") == 0 && stage_get_int(&rq, "n") == 10, "upper bound is inside");
    CHECK(with("n", "3.0") == 0 && stage_get_int(&rq, "n") == 3, "integral float accepted");
    CHECK(with("n", "0") == S3D_EINVAL, "below range");
    CHECK(strstr(rq.err, "tst: param n 0 is outside [1, 10]"), "error text: %s", rq.err);
    CHECK(with("n", "11") == S3D_EINVAL, "above range");
    CHECK(with("n", "three") == S3D_EINVAL, "string refused");
    CHECK(strstr(rq.err, "tst: param n must be an integer"), "error text: %s", rq.err);
    CHECK(with("n", "2.5") == S3D_EINVAL, "2.5 refused");
    CHECK(with("big", "9000000000000000") == 0 && stage_get_int(&rq, "big") == 9000000000000000LL,
          "a large int exactly");
    CHECK(with("big", "9000000000000001") == S3D_EINVAL, "above a large bound");
}

static void test_float(void)
{
    CHECK(with("x", "1") == 0 && stage_get_float(&rq, "x") == 1.0, "int accepted");
    CHECK(with("x", "1.5") == S3D_EINVAL, "above range");
    CHECK(strstr(rq.err, "tst: param x 1.5 is outside [0, 1]"), "error text: %s", rq.err);
    reset();
    CHECK(wire_set_float(&msg, "x", NAN) == 0);
    CHECK(stage_params_check(&rq) == S3D_EINVAL, "NaN refused");
    CHECK(with("x", "true") == S3D_EINVAL, "bool refused");
    CHECK(strstr(rq.err, "tst: param x must be a number"), "error text: %s", rq.err);
}

static void test_flag(void)
{
    CHECK(with("k", "false") == 0 && !stage_get_flag(&rq, "k"), "false");
    CHECK(with("k", "1") == 0 && stage_get_flag(&rq, "k"), "1");
    CHECK(with("k", "0") == 0 && !stage_get_flag(&rq, "k"), "0");
    CHECK(with("k", "2") == S3D_EINVAL, "2 refused");
    CHECK(strstr(rq.err, "tst: param k must be true/false or 0/1"), "error text: %s", rq.err);
    CHECK(with("k", "yes") == S3D_EINVAL, "string refused");
    CHECK(with("s", "12") == S3D_EINVAL && strstr(rq.err, "param s must be a string"),
          "a number for a string: %s", rq.err);
}

static void test_help(void)
{
    char buf[4096] = {0};
    FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");

    ASSERT(f);
    stage_params_help(f, TABLE);
    fclose(f);
    CHECK(strstr(buf, "n              int 1..10, default 5") && strstr(buf, "an int"), "%s", buf);
    CHECK(strstr(buf, "x              float 0..1, default 0.5"), "%s", buf);
    CHECK(strstr(buf, "k              true/false, default true"), "%s", buf);
    CHECK(strstr(buf, "m              int 1..100, default the checkpoint's"), "%s", buf);
    CHECK(strstr(buf, "big            int 0..9000000000000000, default 0"), "%s", buf);
    CHECK(strstr(buf, "job, out"), "%s", buf);
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
    test_defaults();
    test_unknown();
    test_int();
    test_float();
    test_flag();
    test_help();
    test_timing();
    return harness_done("test_stage_params");
}
