/*
 * export.h - the export step: the files a user opens, written from the
 * stages' artifacts (docs/formats.md "Outputs"):
 *
 *   splat.ply    gs_decode.safetensors                  (ply.h: the official save_ply layout)
 *   mesh.glb     mesh_decode.safetensors                (glb.h: the official to_glb mesh)
 *   mesh.ply     mesh_decode.safetensors, on request    (ply.h)
 *   pose.json    ss_flow + ss_decode (+ depth) .safetensors   (pose.h)
 *   preview.png  gs_decode + the pose + depth.safetensors (preview.h)
 *
 * `sam3d export --job DIR --out DIR` runs it on a kept job directory or a
 * run's --out folder (its artifacts/), and `sam3d run` runs it at its end on
 * the artifacts it copied out. With placed, splat.ply and the meshes are
 * written in the camera frame (pose.h: pose_place_gaussians,
 * pose_apply_points) instead of the object frame.
 */
#ifndef S3D_EXPORT_H
#define S3D_EXPORT_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

enum export_what {
    EXPORT_SPLAT    = 1 << 0,
    EXPORT_MESH     = 1 << 1,
    EXPORT_POSE     = 1 << 2,
    EXPORT_PREVIEW  = 1 << 3,
    EXPORT_MESH_PLY = 1 << 4,
};
#define EXPORT_DEFAULT (EXPORT_SPLAT | EXPORT_MESH | EXPORT_POSE | EXPORT_PREVIEW)

/* preview.png drawn ahead: it needs only gs_decode's, the pose's and the depth
 * artifacts, so a job whose export wants it (want, set by the job's owner)
 * draws it on a thread of its own as soon as gs_decode.safetensors is complete
 * in the job directory (export_early_artifact, from the engine as each turn
 * ends), while the mesh decoder runs; the export step then writes those PNG
 * bytes instead of drawing them again (and draws them itself when the early
 * one was not made or failed: the same error then reaches the user). The
 * job's end does not wait for it: the export step joins it only when it
 * writes preview.png, with splat.ply and mesh.glb being written beside it; the
 * job's owner discards it once the export is over (before the job directory
 * it reads is removed), and the engine at once for a failed job. */
struct export_early {
    bool           want;        /* the export will write preview.png: draw it ahead */
    bool           started;     /* the thread was started (joined when joined) */
    bool           joined;
    pthread_t      tid;
    char           dir[PATH_MAX];  /* the job directory it reads */
    int            rc;          /* after the join: 0 when png holds preview.png */
    unsigned char *png;
    size_t         len;
    int            w, h;
};

/* Artifact `name` of the job in job_dir is complete: the early preview starts
 * with gs_decode.safetensors (x NULL, not wanted or started: nothing). */
void export_early_artifact(struct export_early *x, const char *job_dir, const char *name);
/* Wait for the early preview's thread, if any (NULL-safe; idempotent). */
void export_early_join(struct export_early *x);
/* Join, then free what it drew (NULL-safe); x can be wanted again. */
void export_early_discard(struct export_early *x);

struct export_opts {
    struct export_early *early;  /* preview.png drawn ahead, or NULL (export_outputs
                                  * discards it when done) */
    unsigned what;       /* EXPORT_* */
    bool     asked;      /* what was named by the user: a missing artifact is an error
                          * (else each file is written only when its artifacts exist) */
    bool     placed;     /* splat and meshes in the camera frame */
    bool     allow_empty; /* no artifact to export is not an error (sam3d run stopped early) */
};

/* Parse "splat,mesh,pose,preview,mesh_ply" into *what. false (and one error
 * line naming the word) on an unknown name or an empty list. */
bool export_parse_outputs(const char *list, unsigned *what);

/* Write the files of o->what found in art_dir (a directory of artifacts) into
 * out_dir (created if missing). Each file is written whole or not at all
 * (outfile.h); a failure of one does not stop the others. Returns 0, or
 * S3D_ENOTFOUND (nothing to export unless allow_empty / an asked-for artifact
 * absent), or the first other error (each logged with the file and a HINT). */
int export_outputs(const char *art_dir, const char *out_dir, const struct export_opts *o);

/* OUT/scene.glb: the meshes of every art_dirs[k] that holds a mesh and a pose
 * (mesh_decode, ss_flow, ss_decode, depth .safetensors), each placed in the
 * camera frame by its own pose (pose_apply_points, as --placed), in one mesh
 * (faces re-indexed, vertex colours kept). The others are left out with a log
 * line. 0, S3D_ENOTFOUND (no object had a mesh: nothing written, logged at
 * info) or an error (logged). */
int export_scene(const char *const *art_dirs, int n, const char *out_dir);

#endif
