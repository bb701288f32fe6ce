/*
 * echo_stage.c - a test stage built on the stage library (common/stage.h), so the
 * serve loop, --once, --check-weights and the orchestrator can be tested without
 * a model. Built as build/tests/tools/echo_stage.
 *
 * load:  reads the --weights file (any file, must be non-empty) into memory.
 * run:   every input tensor comes back as output "<prefix><name>", float dtypes
 *        multiplied by param scale (default 1, computed in double and rounded to
 *        the dtype), others copied. Param "file" (a path inside the job dir) adds
 *        output "file_bytes" (U8, the file's bytes).
 * Busy: "work_ms" (int: work that long, a progress point every 20 ms: it beats).
 * Output file written ahead: "write_ahead" (int N: stage_write_ahead once every output
 * is made, the first N on its thread), "late_output" (flag: one more output after it,
 * which must fail), "fail_after" (string: fail after that).
 * Fault params: "fail" (string: reply with that error), "sleep_ms" (int: sleep
 * before answering), "abort" (bool: abort()), "crash_marker" (a file name in the
 * job dir: abort() the first time, when the file does not exist yet, creating it).
 * Start-up: env S3D_ECHO_START_MS (int) sleeps that long before serving, as a
 * real stage spends loading its libraries and the CUDA driver.
 * Stage name: from env S3D_ECHO_NAME (default "echo"), so one binary can play
 * several pipeline stages; its outputs are "<name>[_<tag>].safetensors". It
 * accepts 1 MiB of inline tensors a request (stage_ops.max_input_bytes).
 * Fake device memory (with the fake NVML of tests/tools/so/fake_nvml.c): when
 * S3D_FAKE_NVML_DIR is set, the stage "holds" 1 MiB (its context) from its
 * first load on, plus its weights file's size while loaded, plus param
 * act_bytes (int) from the run that asked for them until unload, written to
 * the file $S3D_FAKE_NVML_DIR/<pid> as the driver would show it. Param
 * stream_blocks (stage.h STAGE_PARAM_STREAM_BLOCKS): loaded with it, the stage
 * "holds" a quarter of its weights file (the rest "streamed" from host memory);
 * status answers stream_blocks and loads (loads since start: a request with the
 * other placement reloads).
 * Warm-up (stage_ops.warm; the library calls it on the host only with
 * S3D_WARMUP=all): takes 1 MiB of the host arena it is given; status answers
 * warms (warm-ups since start).
 */
#include "beat.h"
#include "err.h"
#include "log.h"
#include "stage.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct echo {
    unsigned char *weights;   /* the weights file's bytes while loaded */
    size_t         n_weights;
    bool           had_context;
    int64_t        act_bytes; /* fake activation memory held until unload */
    bool           streamed;  /* loaded with rt->stream_blocks: a quarter on the "device" */
    int            loads;
    int            warms;
};

#define FAKE_CONTEXT_BYTES (1 << 20)

/* Publish what this process "holds on the device" for the fake NVML. */
static void fake_devmem(const struct echo *e)
{
    const char *dir = getenv("S3D_FAKE_NVML_DIR");
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    FILE *f;

    if (!dir || !*dir || !e->had_context)
        return;
    snprintf(path, sizeof(path), "%s/%d", dir, (int)getpid());
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "%lld\n", (long long)(FAKE_CONTEXT_BYTES + e->n_weights / (e->streamed ? 4 : 1) +
                                     e->act_bytes));
    if (fclose(f) == 0)
        rename(tmp, path);
}

static int echo_load(void *model, struct stage_rt *rt)
{
    const struct stage_opts *o = rt->opts;
    struct echo *e = model;
    struct stat st;
    FILE *f;

    if (!o->weights)
        return 0;
    f = fopen(o->weights, "rb");
    if (!f || fstat(fileno(f), &st) != 0 || st.st_size == 0) {
        log_error("echo: weights '%s': %s. HINT: any non-empty file will do",
                  o->weights, f ? "empty file" : strerror(errno));
        if (f)
            fclose(f);
        return S3D_EIO;
    }
    e->weights = malloc((size_t)st.st_size);
    ASSERT(e->weights);
    e->n_weights = fread(e->weights, 1, (size_t)st.st_size, f);
    fclose(f);
    e->had_context = true;
    e->streamed = rt->stream_blocks;
    e->loads++;
    fake_devmem(e);
    return 0;
}

static void echo_unload(void *model)
{
    struct echo *e = model;

    free(e->weights);
    e->weights = NULL;
    e->n_weights = 0;
    e->act_bytes = 0;
    fake_devmem(e);
}

/* The warm-up: counted, and it must find the host arena it was promised. */
static int echo_warm(void *model, struct stage_rt *rt, struct arena *host)
{
    struct echo *e = model;

    if (!e->weights || !rt || !arena_alloc(host, 1u << 20))
        return S3D_EINVAL;
    e->warms++;
    return 0;
}

static void echo_status(void *model, struct wire_msg *rep)
{
    struct echo *e = model;

    ASSERT(wire_set_int(rep, "weights_bytes", (int64_t)e->n_weights) == 0);
    ASSERT(wire_set_bool(rep, "stream_blocks", e->streamed) == 0);
    ASSERT(wire_set_int(rep, "loads", e->loads) == 0);
    ASSERT(wire_set_int(rep, "warms", e->warms) == 0);
}

static const struct stage_param echo_params[] = {
    {"scale", STAGE_PARAM_FLOAT, 1.0, -1e30, 1e30, "multiply float inputs by this", NULL},
    {"prefix", STAGE_PARAM_STRING, 0, 0, 0, "prepended to every output name", "\"\""},
    {"file", STAGE_PARAM_PATH, 0, 0, 0, "(optional) its bytes become output file_bytes", NULL},
    {"fail", STAGE_PARAM_STRING, 0, 0, 0, "reply with this error", "none"},
    {"sleep_ms", STAGE_PARAM_INT, 0, 0, 1e9, "sleep before answering", NULL},
    {"abort", STAGE_PARAM_FLAG, 0, 0, 1, "abort() (a crash)", NULL},
    {"crash_marker", STAGE_PARAM_STRING, 0, 0, 0,
     "a file name in the job directory: abort() once, creating it", "none"},
    {"act_bytes", STAGE_PARAM_INT, 0, 0, 1e15, "pretend this many activation bytes", NULL},
    {"work_ms", STAGE_PARAM_INT, 0, 0, 3600000,
     "work this long, reaching a progress point every 20 ms (common/beat.h): busy, not hung",
     NULL},
    {"write_ahead", STAGE_PARAM_INT, -1, -1, 1e6,
     "start the output file when the outputs are made (stage_write_ahead), the first N "
     "of them written on its thread; -1: at the end as usual", NULL},
    {"fail_after", STAGE_PARAM_STRING, 0, 0, 0,
     "reply with this error after the outputs are made (and written ahead)", "none"},
    {"late_output", STAGE_PARAM_FLAG, 0, 0, 1,
     "declare one more output after write_ahead (must fail)", NULL},
    STAGE_PARAM_STREAM_BLOCKS,
    {NULL},
};

/* The write-ahead checks (params write_ahead, late_output, fail_after): after every
 * output is made. */
static int echo_finish(struct stage_req *rq)
{
    int64_t wa = stage_get_int(rq, "write_ahead");
    const char *fail_after = stage_get_str(rq, "fail_after", NULL);
    int rc;

    if (wa >= 0 && (rc = stage_write_ahead(rq, (int)(wa < rq->n_out ? wa : rq->n_out))))
        return rc;
    if (stage_get_flag(rq, "late_output") && !stage_output(rq, "late", DTYPE_U8, SHAPE(1)))
        return S3D_EINVAL;               /* stage_output set the reply */
    if (fail_after)
        return stage_fail(rq, S3D_EINVAL, "%s", fail_after);
    return 0;
}

static int echo_run(void *model, struct stage_req *rq)
{
    const char *fail = stage_get_str(rq, "fail", NULL);
    const char *prefix = stage_get_str(rq, "prefix", "");
    const char *marker = stage_get_str(rq, "crash_marker", NULL);
    int64_t sleep_ms = stage_get_int(rq, "sleep_ms"), work_ms = stage_get_int(rq, "work_ms");
    double scale = stage_get_float(rq, "scale");
    char path[PATH_MAX];

    struct echo *e = model;
    int64_t act = stage_get_int(rq, "act_bytes");

    if (act > e->act_bytes) {
        e->act_bytes = act;
        fake_devmem(e);
    }
    if (sleep_ms > 0) {
        struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};

        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    for (int64_t w = 0; w < work_ms; w += 20) {
        struct timespec ts = {0, 20 * 1000000L};

        nanosleep(&ts, NULL);
        beat_progress();
    }
    if (stage_get_flag(rq, "abort"))
        abort();
    if (marker && rq->in_dir) {
        char want[PATH_MAX];

        snprintf(want, sizeof(want), "%s/%s", rq->in_dir, marker);
        if (access(want, F_OK) != 0) {
            int fd = open(want, O_WRONLY | O_CREAT | O_EXCL, 0600);

            if (fd >= 0)
                close(fd);
            log_warn("echo: crash_marker '%s' absent: crashing as asked", marker);
            abort();
        }
    }
    if (fail)
        return stage_fail(rq, S3D_EINVAL, "%s", fail);
    for (int i = 0; i < rq->n_in; i++) {
        const struct tensor *in = &rq->in[i].t;
        struct tensor *out;
        char name[WIRE_KEY_MAX];
        size_t n = (size_t)tensor_numel(in);

        if ((size_t)snprintf(name, sizeof(name), "%s%s", prefix, rq->in[i].desc->name) >=
            sizeof(name))
            return stage_fail(rq, S3D_EINVAL, "output name '%s%s' too long", prefix,
                              rq->in[i].desc->name);
        out = stage_output(rq, name, in->dtype, in->shape, in->ndim);
        if (!out)
            return S3D_ENOMEM;
        if (dtype_is_float(in->dtype) && scale != 1.0) {
            for (size_t k = 0; k < n; k++)
                dtype_set(out->data, out->dtype, k, dtype_get(in->data, in->dtype, k) * scale);
        } else {
            memcpy(out->data, in->data, tensor_nbytes(in));
        }
    }
    if (stage_param_given(rq, "file")) {
        struct tensor *out;
        FILE *f;
        long len;
        int rc = stage_param_path(rq, "file", path, sizeof(path));

        if (rc)
            return rc;
        f = fopen(path, "rb");
        if (!f || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
            fseek(f, 0, SEEK_SET) != 0) {
            if (f)
                fclose(f);
            return stage_fail(rq, S3D_EIO, "cannot read '%s'", path);
        }
        out = stage_output(rq, "file_bytes", DTYPE_U8, SHAPE(len));
        if (!out) {
            fclose(f);
            return S3D_ENOMEM;
        }
        if (fread(out->data, 1, (size_t)len, f) != (size_t)len) {
            fclose(f);
            return stage_fail(rq, S3D_EIO, "short read on '%s'", path);
        }
        fclose(f);
    }
    return echo_finish(rq);
}

int main(int argc, char **argv)
{
    static struct echo model;
    const char *name = getenv("S3D_ECHO_NAME");
    struct stage_ops ops = {
        .name        = (name && *name) ? name : "echo",
        .arena_bytes = 64u << 20,
        .params      = echo_params,
        .max_input_bytes = 1u << 20,     /* small, so tests can cross it */
        .load        = echo_load,
        .unload      = echo_unload,
        .run         = echo_run,
        .status      = echo_status,
        .warm        = echo_warm,
    };

    const char *start = getenv("S3D_ECHO_START_MS");
    if (start && atoi(start) > 0) {
        struct timespec ts = {atoi(start) / 1000, (atoi(start) % 1000) * 1000000L};

        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    return stage_main(&ops, &model, argc, argv);
}
