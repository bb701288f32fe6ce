/*
 * multi.h - many jobs through one engine's warm stages: `sam3d batch LIST`
 * (image/mask pairs) and `sam3d run --mask A --mask B ...` (many objects of
 * one image).
 *
 * Every stage process starts and loads its weights once (the VRAM budget
 * permitting: engine.h) and serves every job. Consecutive jobs overlap: stage
 * k of job i+1 runs while stage k+1 of job i runs (engine_opts.overlap), with
 * at most MULTI_WINDOW jobs in flight, so at most that many job directories
 * hold artifacts at once. Each job writes OUT/<name>/ as `sam3d run` writes
 * OUT/ (artifacts/, report.json, the exported files) as soon as it ends;
 * OUT/summary.json lists every job and the throughput (objects per minute)
 * and every stage's process starts and weight loads (docs/formats.md).
 *
 * Many objects of one image (same_image): MoGe runs once. The first object's
 * depth artifact is linked into the other jobs' directories as
 * input_depth.safetensors and their depth requests take its point map as
 * inputs (stages/depth: reuse_points), so only the preprocessing runs again
 * with each mask. OUT/scene.glb then holds every object's mesh placed by its
 * pose (export_scene), when the mesh decoder ran.
 */
#ifndef S3D_MULTI_H
#define S3D_MULTI_H

#include "runopts.h"

#define MULTI_WINDOW 2              /* jobs in flight at once */

struct multi_item {
    const char *image, *mask;       /* the user's files */
    char        name[64];           /* OUT/<name>/: unique, a plain file name */
};

/* Run items[0..n) with a's options into a->out_dir. what: "batch" or
 * "objects" (log lines and summary.json). Returns the exit status: 0 every
 * job complete, 3 every job ran the stages that are built, 1 a job failed
 * (the others still ran), 130 interrupted. */
int multi_run(struct run_args *a, struct multi_item *items, int n, bool same_image,
              const char *what);

/* A unique plain name for item k from path's file name without its
 * extension ("<k>_<stem>" when with_index), into it->name. */
void multi_name(struct multi_item *items, int k, const char *path, bool with_index);

#endif
