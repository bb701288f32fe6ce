/*
 * stage_opts.c - the command line of every stage executable: getopt_long
 * (--opt value, --opt=value, short forms), --help with the stage's request
 * params, --version. Contract: stage.h. Tests: tests/test_stage.c (through
 * echo_stage) and tests/test_stage_cli.sh (the real stages).
 */
#include "stage.h"

#include "err.h"
#include "log.h"
#include "version.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage_lines(FILE *f, const char *exe)
{
    fprintf(f,
        "usage: %s --weights FILE[:KEY] --listen ENDPOINT [options]\n"
        "       %s --weights FILE --once IN_DIR OUT_DIR [--param KEY=VALUE ...] [options]\n"
        "       %s --weights FILE --check-weights [options]\n",
        exe, exe, exe);
}

static void help(FILE *f, const struct stage_ops *ops, const char *exe)
{
    usage_lines(f, exe);
    fprintf(f,
        "\n"
        "The %s stage of sam3d: serves requests on --listen (the orchestrator starts it),\n"
        "or runs one request from files with --once (stages/README.md).\n"
        "\n"
        "options (--opt VALUE or --opt=VALUE):\n"
        "  -w, --weights FILE[:KEY]  checkpoint to read (KEY: sub-dictionary / name prefix)\n"
        "  -l, --listen ENDPOINT     ZeroMQ REP endpoint, e.g. ipc:///dev/shm/s3d-1-0/%s.sock;\n"
        "                            tcp:// beyond loopback and ipc://@ need --curve-secret\n"
        "      --once IN_DIR OUT_DIR run one request: inputs are every tensor of\n"
        "                            IN_DIR/*.safetensors, the output goes to OUT_DIR/%s.safetensors\n"
        "  -p, --param KEY=VALUE     a request param for --once (listed below)\n"
        "  -d, --device DEV          cuda:N, cuda (= cuda:0), cpu, or auto (the default: cuda:0\n"
        "                            when a GPU is usable, else the CPU, said in the log)\n"
        "      --precision P         fp16 (default) or fp32: weights and activations on the GPU;\n"
        "                            the CPU path always computes in fp32\n"
        "      --check-weights       bind every weight, report, exit 0/1 without running\n"
        "      --curve-secret Z85    CURVE server secret key (or env S3D_CURVE_SECRET)\n"
        "      --curve-clients FILE  with CURVE: the client public keys answered, one Z85 key\n"
        "                            a line (or env S3D_CURVE_CLIENTS; `sam3d keygen`)\n"
        "      --beat FILE           (sam3d passes it) write the count of progress points to\n"
        "                            FILE while busy, so a long request is not taken for a hang\n"
        "  -v, --verbose             debug log lines (as S3D_LOG=debug)\n"
        "  -q, --quiet               warnings and errors only (as S3D_LOG=warn)\n"
        "  -V, --version             print the version and exit\n"
        "  -h, --help                this text\n"
        "\n"
        "request params (--param KEY=VALUE with --once; `param` lines of the pipeline file):\n",
        ops->name, ops->name, ops->name);
    stage_params_help(f, ops->params);
    fprintf(f, "\nexit status: 0 done, 1 failed (one error line says why), 2 usage error\n");
}

static int bad_opt(const char *exe, const char *fmt, const char *arg)
{
    fprintf(stderr, "%s: error: ", exe);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    usage_lines(stderr, exe);
    fprintf(stderr, "Try '%s --help' for every option and request param.\n", exe);
    return S3D_EINVAL;
}

/* --device: cpu, cuda, cuda:N or auto (device_set false). */
static int parse_device(struct stage_opts *o, const char *v, bool *device_set)
{
    char *end;

    *device_set = true;
    if (!strcmp(v, "cpu")) {
        o->device = -1;
    } else if (!strcmp(v, "cuda")) {
        o->device = 0;
    } else if (!strcmp(v, "auto")) {
        *device_set = false;
    } else if (!strncmp(v, "cuda:", 5) && v[5] >= '0' && v[5] <= '9') {
        long n = strtol(v + 5, &end, 10);
        if (*end || n > 64)
            return S3D_EINVAL;
        o->device = (int)n;
    } else {
        return S3D_EINVAL;
    }
    return 0;
}

enum { OPT_ONCE = 256, OPT_PRECISION, OPT_CHECK, OPT_CURVE, OPT_CLIENTS, OPT_BEAT };

int stage_parse_opts(struct stage_opts *o, const struct stage_ops *ops, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"weights", required_argument, NULL, 'w'},
        {"listen", required_argument, NULL, 'l'},
        {"param", required_argument, NULL, 'p'},
        {"device", required_argument, NULL, 'd'},
        {"once", required_argument, NULL, OPT_ONCE},
        {"precision", required_argument, NULL, OPT_PRECISION},
        {"check-weights", no_argument, NULL, OPT_CHECK},
        {"curve-secret", required_argument, NULL, OPT_CURVE},
        {"curve-clients", required_argument, NULL, OPT_CLIENTS},
        {"beat", required_argument, NULL, OPT_BEAT},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *env = getenv("S3D_CURVE_SECRET"), *cenv = getenv("S3D_CURVE_CLIENTS");
    const char *slash = argc > 0 ? strrchr(argv[0], '/') : NULL;
    const char *exe = slash ? slash + 1 : argc > 0 ? argv[0] : ops->name;
    bool device_set = false;
    int c;

    memset(o, 0, sizeof(*o));
    o->name = ops->name;
    o->exe = exe;
    o->precision = STAGE_FP16;
    o->curve_secret = (env && *env) ? env : NULL;
    o->curve_clients = (cenv && *cenv) ? cenv : NULL;
    optind = 0;                     /* a full re-initialisation of GNU getopt */
    opterr = 0;                     /* our messages, not getopt's */
    while ((c = getopt_long(argc, argv, "+:w:l:p:d:vqVh", longopts, NULL)) != -1) {
        switch (c) {
        case 'w': o->weights = optarg; break;
        case 'l': o->listen = optarg; break;
        case OPT_CURVE: o->curve_secret = optarg; break;
        case OPT_CLIENTS: o->curve_clients = optarg; break;
        case OPT_CHECK: o->check_weights = true; break;
        case OPT_BEAT: o->beat = optarg; break;
        case 'v': log_set_level(LOG_DEBUG); break;
        case 'q': log_set_level(LOG_WARN); break;
        case 'h':
            help(stdout, ops, exe);
            return 1;
        case 'V':
            printf("%s %s\n", exe, s3d_version());
            return 1;
        case OPT_ONCE:
            if (optind >= argc)
                return bad_opt(exe, "%s needs IN_DIR and OUT_DIR", "--once");
            o->once_in = optarg;
            o->once_out = argv[optind++];
            break;
        case 'p':
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return bad_opt(exe, "--param wants KEY=VALUE, got '%s'", optarg);
            if (o->n_params >= WIRE_MAX_PARAMS)
                return bad_opt(exe, "too many --param (at most %s)", "48");
            o->params[o->n_params++] = optarg;
            break;
        case OPT_PRECISION:
            if (!strcmp(optarg, "fp16"))
                o->precision = STAGE_FP16;
            else if (!strcmp(optarg, "fp32"))
                o->precision = STAGE_FP32;
            else
                return bad_opt(exe, "--precision must be fp16 or fp32, got '%s'", optarg);
            break;
        case 'd':
            if (parse_device(o, optarg, &device_set))
                return bad_opt(exe, "--device must be cpu, cuda, cuda:N or auto, got '%s'", optarg);
            break;
        case ':':
            return bad_opt(exe, "%s needs a value", argv[optind - 1]);
        default:                    /* '?': unknown option, or a value given to a flag */
            return bad_opt(exe, "unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return bad_opt(exe, "unexpected argument '%s'", argv[optind]);
    if (o->listen && o->curve_secret && !o->curve_clients)
        return bad_opt(exe, "%s", "--curve-secret (or S3D_CURVE_SECRET) needs --curve-clients "
                       "FILE (or S3D_CURVE_CLIENTS): the public keys of the clients this stage "
                       "answers, one a line, as `sam3d keygen` prints S3D_CURVE_CLIENT_KEY");
    if (!o->check_weights && !o->once_in && !o->listen)
        return bad_opt(exe, "%s", "one of --listen ENDPOINT, --once IN_DIR OUT_DIR or "
                       "--check-weights is needed");
    if (!device_set) {
        o->device = s3d_cuda_available() ? 0 : -1;
        if (o->device < 0)
            log_info("no usable CUDA device (%s): running on the CPU reference path. HINT: "
                     "--device cuda:N requires a GPU and says why it cannot use one",
                     s3d_cuda_why_not());
    }
    return 0;
}
