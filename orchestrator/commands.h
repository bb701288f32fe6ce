/*
 * commands.h - the subcommands of `sam3d`. Each takes the arguments after its
 * name (argv[0] is the subcommand) and returns the process exit code:
 * 0 success, 1 an external fault (one "error:" line already printed), 2 usage.
 */
#ifndef S3D_COMMANDS_H
#define S3D_COMMANDS_H

int cmd_inspect(int argc, char **argv);        /* inspect.c: list checkpoint tensors */
int cmd_run(int argc, char **argv);            /* run.c: the whole pipeline */
int cmd_stage(int argc, char **argv);          /* run.c: re-run one stage on a job dir */
int cmd_batch(int argc, char **argv);          /* batch.c: a list of image/mask pairs, warm */
int cmd_serve(int argc, char **argv);          /* serve.c: warm stages for local clients */
int cmd_bench(int argc, char **argv);          /* bench.c: the pipeline timed, cold and warm */
int cmd_check_weights(int argc, char **argv);  /* check_weights.c: bind every stage */
int cmd_keygen(int argc, char **argv);         /* keygen.c: a CURVE key pair */
int cmd_devmem_probe(int argc, char **argv);   /* devmem.c: free device memory, for a parent */
int cmd_export(int argc, char **argv);         /* export.c: splat.ply, mesh.glb, pose.json, preview.png */

#endif
