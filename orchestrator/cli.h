/*
 * cli.h - what makes every `sam3d` command line behave the same way, and the
 * job settings users change without editing the pipeline file (issue 14).
 *
 * cli_normalize (main.c, before a subcommand parses): `--opt=VALUE` becomes
 * `--opt VALUE`, and the short forms become their long options (-i --image,
 * -m --mask, -w --weights, -o --out, -s --seed, -d --device, -p --param,
 * -v --verbose, -V --version; -q and -h are the commands' own). So every
 * subcommand takes `--opt VALUE`, `--opt=VALUE` and the short forms alike.
 *
 * The settings (parsed by cli_setting_opt for run, batch and serve; applied to
 * each job by cli_apply, the pipeline file keeping the defaults):
 *   --seed N          every stage with a `param seed` line (ss_flow, slat_flow)
 *   --steps N[,M]     every stage with a `param steps` line: one value for all,
 *   --cfg X[,Y]       or one each in pipeline order (ss_flow, slat_flow)
 *   --gaussians 32|4  Gaussians per voxel: the gs_decode stage's weights
 *                     (slat_decoder_gs.ckpt or slat_decoder_gs_4.ckpt, the two
 *                     official decoders)
 *   --param STAGE.KEY=VALUE   any request param of one stage (`sam3d stage`:
 *                     KEY=VALUE of its stage); the stage checks the key and the
 *                     range and names the known ones (`sam3d-STAGE --help`)
 *   --stage-weights NAME=FILE one stage's weights, relative to --weights DIR
 * Test: tests/test_run_cli.sh.
 */
#ifndef S3D_CLI_H
#define S3D_CLI_H

#include "runopts.h"

#include <time.h>

/* Rewrite *argv (from index 1) as described above; the new vector is static
 * storage for the process's life. */
void cli_normalize(int *argc, char ***argv);

/* The settings options (a = argv[*i], its value argv[*i + 1]): --seed, --steps,
 * --cfg, --gaussians, --param, --stage-weights. Returns 1 consumed, 0 not one of
 * them, -1 a bad value (one "error:" line printed). */
int  cli_setting_opt(struct run_args *r, int argc, char **argv, int *i);

/* Add the NAME=VALUE override v of one stage under option kind (--endpoint,
 * --stage-device, --stage-weights, --gaussians; engine.c apply_overrides checks
 * NAME). 1, or -1 after one "error:" line (not NAME=VALUE, or too many). */
int  cli_add_override(struct run_args *r, const char *kind, const char *v);

/* The usage lines of the settings. */
#define CLI_SETTINGS_HELP                                                                      \
    "  -s, --seed N         the noise seed of both flows (pipeline default 42)\n"             \
    "  --steps N[,M]        flow steps: one value for both flows, or SS,SLAT (default 25,25)\n" \
    "  --cfg X[,Y]          guidance strength: both flows, or SS,SLAT (default 7,1)\n"        \
    "  --gaussians 32|4     Gaussians per voxel (the official slat_decoder_gs.ckpt: 32, the\n" \
    "                       default, or slat_decoder_gs_4.ckpt: 4)\n"                        \
    "  -p, --param STAGE.KEY=VALUE  any request param of one stage (repeatable;\n"           \
    "                       `sam3d-STAGE --help` lists them with range and default)\n"        \
    "  --stage-weights NAME=FILE  one stage's weights, relative to --weights DIR\n"           \
    "  (these win over --preset; the pipeline file keeps the defaults; every option\n"         \
    "  takes --opt VALUE or --opt=VALUE)\n"

/* Apply the settings of r to job j: the preset, then --seed/--steps/--cfg, then
 * each --param (the later wins). stage >= 0 (`sam3d stage`): --param is
 * KEY=VALUE of that stage. 0, or S3D_EINVAL after one error line naming the
 * option. */
int  cli_apply(const struct run_args *r, const struct engine *e, struct job *j, int stage);

/* The command line as given (before cli_normalize) and when the process
 * started, for the report (report.c); argc 0 when cli_normalize never ran. */
void cli_invocation(int *argc, char *const **argv, time_t *start);

/* "sam3d 0.1.0 (git ...)" (cmd NULL) or "sam3d run 0.1.0 (git ...)" to stdout. */
void cli_print_version(const char *cmd);

#endif
