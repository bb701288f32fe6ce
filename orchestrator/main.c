/*
 * main.c - `sam3d`, the orchestrator: dispatches to a subcommand.
 */
#include "cli.h"
#include "commands.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"run",           cmd_run,           "run the pipeline on an image and a mask"},
    {"stage",         cmd_stage,         "re-run one stage on an existing job directory"},
    {"export",        cmd_export,        "write splat.ply, mesh.glb, pose.json, preview.png from artifacts"},
    {"batch",         cmd_batch,         "run a list of image/mask pairs through warm stages"},
    {"serve",         cmd_serve,         "keep the stages warm and run the jobs clients submit"},
    {"bench",         cmd_bench,         "time the pipeline per stage, cold and warm"},
    {"inspect",       cmd_inspect,       "list the tensors of a checkpoint"},
    {"check-weights", cmd_check_weights, "bind every stage's weights without running"},
    {"keygen",        cmd_keygen,        "a CURVE key pair for stages served over tcp://"},
    {"devmem-probe",  cmd_devmem_probe,  NULL},     /* internal: devmem.c's probe child */
};

static void usage(FILE *f)
{
    fprintf(f, "usage: sam3d COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (commands[i].help)
            fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`sam3d COMMAND --help` describes each command; `sam3d --version` (-V) prints "
            "the version.\n");
}

int main(int argc, char **argv)
{
    log_init("sam3d");
    cli_normalize(&argc, &argv);          /* --opt=VALUE and the short forms, for every command */
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        cli_print_version(NULL);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "error: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
