/*
 * runopts.h - the options `sam3d run`, `sam3d stage`, `sam3d batch` and `sam3d
 * serve` share (parsed in run.c), and the signal flag that stops them.
 */
#ifndef S3D_RUNOPTS_H
#define S3D_RUNOPTS_H

#include "engine.h"
#include "export.h"
#include "progress.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

/* What the command line of run / stage / batch / serve gives. */
struct run_args {
    struct engine_opts o;
    const char        *out_dir;
    bool               keep_job;
    enum progress_mode progress;                 /* --quiet, --json; else by the terminal */
    int                n_param;                  /* --param: KEY=VALUE (stage), STAGE.KEY=VALUE */
    const char        *param[JOB_MAX_SET];
    const char        *seed, *steps, *cfg;       /* --seed, --steps, --cfg (cli.h) */
    struct export_opts export;                   /* sam3d run: the export step at its end */
    const char        *preset;                   /* sam3d run --preset NAME (preset.h) */
};

/* Set by SIGINT/SIGTERM once run_install_signals ran; engine_opts.interrupted. */
extern volatile sig_atomic_t run_interrupted;

/* Defaults: timeout 600 s, 1 retry, budget from the free memory, the export's
 * default files, o.interrupted = &run_interrupted. */
void run_args_init(struct run_args *r);
/* SIGINT/SIGTERM set run_interrupted; SIGPIPE ignored. */
void run_install_signals(void);
/* Options common to run, stage, batch and serve (--weights, --out, --device,
 * --precision, --timeout, --retries, --vram-budget, -q, --json, ...). Returns 1
 * when argv[*i] (and its value) was consumed, 0 when unknown, -1 on a bad
 * value (printed). */
int  run_common_opt(struct run_args *r, int argc, char **argv, int *i);
/* The options of the runs that end with the export step: --preset NAME,
 * --outputs LIST, --placed, and the settings of cli.h (--seed, --steps, --cfg,
 * --gaussians, --param STAGE.KEY=VALUE, --stage-weights). Returns as run_common_opt. */
int  run_output_opt(struct run_args *r, int argc, char **argv, int *i);
/* run_common_opt, then (export_step) run_output_opt. Returns as they do. */
int  run_opt(struct run_args *r, bool export_step, int argc, char **argv, int *i);

/* One subcommand's command line (run, stage, batch, serve) for run_parse. */
struct run_cmd {
    bool        export_step;          /* also run_output_opt (run, batch, serve) */
    const char *version;              /* --version prints cli_print_version(version); NULL:
                                       * the command has no --version */
    void      (*usage)(FILE *f);      /* --help / -h: to stdout */
    /* The command's own options and operands: 1 when argv[*i] (and its value, *i
     * moved past it) was taken, 0 when it is not one of them, RUN_PARSE_USAGE after
     * printing a bad value, RUN_PARSE_FAIL after logging a failure. */
    int       (*own)(void *user, struct run_args *r, int argc, char **argv, int *i);
    void       *user;
};

#define RUN_PARSE_USAGE  (-1) /* own: a bad value, printed */
#define RUN_PARSE_FAIL   (-2) /* own: a failure, logged */
#define RUN_PARSED       (-1) /* run_parse: every argument taken, go on */

/* The option loop of the commands: run_args_init(r), then each argv[i] (i >= 1)
 * goes to run_opt(r, c->export_step), then --help/-h, --version, then c->own;
 * what none takes is "error: unknown option or missing value: ARG".
 * RUN_PARSED when every argument was taken (the caller checks what is
 * required), else the command's exit code: 0 after --help (c->usage to
 * stdout) or --version, 2 after a usage error (printed, then c->usage to
 * stderr), 1 when own failed. */
int  run_parse(struct run_args *r, int argc, char **argv, const struct run_cmd *c);

#endif
