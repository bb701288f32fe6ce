/*
 * export.c - `sam3d export` and the export step of `sam3d run`: splat.ply,
 * mesh.glb (mesh.ply), pose.json and preview.png from the artifacts. See
 * export.h; the writers are in common/{ply,glb,pose,preview}.c.
 * Test: tests/test_export.sh.
 */
#include "commands.h"
#include "export.h"

#include "ckpt.h"
#include "err.h"
#include "glb.h"
#include "gs_decode/gs_head.h"
#include "image.h"
#include "log.h"
#include "outfile.h"
#include "ply.h"
#include "pose.h"
#include "preview.h"
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name;
    unsigned    bit;
} outputs[] = {
    {"splat", EXPORT_SPLAT}, {"mesh", EXPORT_MESH}, {"pose", EXPORT_POSE},
    {"preview", EXPORT_PREVIEW}, {"mesh_ply", EXPORT_MESH_PLY},
};

bool export_parse_outputs(const char *list, unsigned *what)
{
    const char *p = list;

    *what = 0;
    while (*p) {
        size_t n = strcspn(p, ",");
        size_t i;

        for (i = 0; i < sizeof(outputs) / sizeof(outputs[0]); i++)
            if (strlen(outputs[i].name) == n && !strncmp(p, outputs[i].name, n))
                break;
        if (i == sizeof(outputs) / sizeof(outputs[0])) {
            log_error("--outputs: unknown output '%.*s' (HINT: a comma-separated list of "
                      "splat, mesh, pose, preview, mesh_ply)", (int)n, p);
            return false;
        }
        *what |= outputs[i].bit;
        p += n + (p[n] == ',');
    }
    if (!*what)
        log_error("--outputs: empty list (HINT: e.g. --outputs splat,pose)");
    return *what != 0;
}

// ---------------------------------------------------------------- reading artifacts

struct artifact {
    char        path[PATH_MAX];
    bool        present;       /* the file exists (and opened) */
    struct ckpt c;
};

/* Open dir/name if it exists: 0 (present or absent), or an error (logged). */
static int artifact_open(struct artifact *a, const char *dir, const char *name)
{
    memset(a, 0, sizeof(*a));
    snprintf(a->path, sizeof(a->path), "%s/%s", dir, name);
    if (access(a->path, F_OK) != 0)
        return errno == ENOENT ? 0 : (log_error("%s: %s", a->path, strerror(errno)), S3D_EIO);
    if (safetensors_open(&a->c, a->path) != 0)
        return S3D_EFORMAT;
    a->present = true;
    return 0;
}

static void artifact_close(struct artifact *a)
{
    if (a->present)
        ckpt_close(&a->c);
    a->present = false;
}

/* Tensor name of a as dtype with ndim dims; shape[d] >= 0 must match, -1 is
 * filled in. Logs and returns NULL when it is missing or different. */
static const void *tensor_of(const struct artifact *a, const char *name, enum dtype dt,
                             int ndim, int64_t *shape)
{
    const struct ckpt_entry *e = ckpt_find(&a->c, name);
    bool ok = e && e->dtype == dt && e->ndim == ndim;
    char want[96] = "", got[96] = "";

    for (int d = 0; ok && d < ndim; d++)
        ok = shape[d] < 0 || shape[d] == e->shape[d];
    if (ok) {
        for (int d = 0; d < ndim; d++)
            shape[d] = e->shape[d];
        return e->data;                      /* safetensors: contiguous */
    }
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            snprintf(want + strlen(want), sizeof(want) - strlen(want), "%sN", d ? "," : "");
        else
            snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%lld", d ? "," : "",
                     (long long)shape[d]);
    }
    if (e)
        for (int d = 0; d < e->ndim; d++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%lld", d ? "," : "",
                     (long long)e->shape[d]);
    if (!e)
        log_error("%s: no tensor '%s' (HINT: the artifact is from another version or stage; "
                  "re-run that stage)", a->path, name);
    else
        log_error("%s: tensor '%s' is %s (%s), expected %s (%s) (HINT: re-run the stage that "
                  "wrote it)", a->path, name, dtype_name(e->dtype), got, dtype_name(dt), want);
    return NULL;
}

/* n floats, all finite, or a logged error */
static bool finite_or_log(const struct artifact *a, const char *name, const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) {
            log_error("%s: tensor '%s' holds a non-finite value at element %lld (HINT: the "
                      "stage that wrote it diverged; re-run it, or with --precision fp32)",
                      a->path, name, (long long)i);
            return false;
        }
    return true;
}

// ---------------------------------------------------------------- the pose

/* The pose from ss_flow (+ its point-map normalisation, else depth's) and
 * ss_decode's downsample factor. */
static int read_pose(struct artifact *flow, struct artifact *dec, struct artifact *depth,
                     struct pose *p, int *df)
{
    static const struct {
        const char *name;
        int         ndim, n;
    } lat[4] = {{"6drotation_normalized", 3, 6}, {"scale", 3, 3}, {"translation", 3, 3},
                {"translation_scale", 3, 1}};
    struct pose_latents in;
    float *dst[4] = {in.r6, in.scale, in.translation, &in.translation_scale};
    struct artifact *norm = ckpt_find(&flow->c, "pointmap_scale") ? flow : depth;
    const float *v;
    const int32_t *f;

    for (int i = 0; i < 4; i++) {
        int64_t shape[3] = {1, 1, lat[i].n};

        if (!(v = tensor_of(flow, lat[i].name, DTYPE_F32, 3, shape)) ||
            !finite_or_log(flow, lat[i].name, v, lat[i].n))
            return S3D_ESHAPE;
        memcpy(dst[i], v, sizeof(float) * lat[i].n);
    }
    if (!norm->present) {
        log_error("%s has no pointmap_scale / pointmap_shift and there is no depth.safetensors "
                  "beside it (HINT: export needs the depth artifact for the pose)", flow->path);
        return S3D_ENOTFOUND;
    }
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "pointmap_shift" : "pointmap_scale";
        int64_t shape[2] = {1, 3};

        if (!(v = tensor_of(norm, name, DTYPE_F32, 2, shape)) || !finite_or_log(norm, name, v, 3))
            return S3D_ESHAPE;
        memcpy(i ? in.pointmap_shift : in.pointmap_scale, v, sizeof(float) * 3);
    }
    {
        int64_t shape[1] = {1};

        if (!(f = tensor_of(dec, "downsample_factor", DTYPE_I32, 1, shape)))
            return S3D_ESHAPE;
    }
    if (*f < 1 || *f > 64 || !(in.pointmap_scale[0] > 0)) {
        log_error("%s / %s: downsample_factor %d, pointmap_scale %g: not a pose (HINT: re-run "
                  "the stages that wrote them)", dec->path, norm->path, *f, in.pointmap_scale[0]);
        return S3D_EFORMAT;
    }
    in.downsample_factor = *df = *f;
    pose_decode(&in, p);
    return 0;
}

// ---------------------------------------------------------------- the Gaussians

struct gs_buf {
    struct gaussians g;
    float           *mem;
};

static int read_gaussians(const struct artifact *a, struct gs_buf *b)
{
    static const char *names[5] = {"xyz", "f_dc", "opacity", "scale", "rotation"};
    static const int dims[5] = {3, 3, 1, 3, 4};
    float **dst[5] = {&b->g.xyz, &b->g.f_dc, &b->g.opacity, &b->g.scale, &b->g.rotation};
    int64_t M = -1;
    size_t off = 0;

    memset(b, 0, sizeof(*b));
    for (int i = 0; i < 5; i++) {
        int64_t shape[2] = {M, dims[i]};

        if (!tensor_of(a, names[i], DTYPE_F32, 2, shape))
            return S3D_ESHAPE;
        M = shape[0];
    }
    if (M < 1) {
        log_error("%s: no Gaussians (HINT: the decoder got no voxels; check the mask)", a->path);
        return S3D_EFORMAT;
    }
    b->mem = malloc(sizeof(float) * 14 * (size_t)M);
    if (!b->mem) {
        log_error("%s: out of memory for %lld Gaussians", a->path, (long long)M);
        return S3D_ENOMEM;
    }
    b->g.n = M;
    for (int i = 0; i < 5; i++) {
        int64_t shape[2] = {M, dims[i]};
        const float *v = tensor_of(a, names[i], DTYPE_F32, 2, shape);

        *dst[i] = b->mem + off;
        memcpy(*dst[i], v, sizeof(float) * (size_t)M * dims[i]);
        off += (size_t)M * dims[i];
        if (i != 2 && !finite_or_log(a, names[i], *dst[i], M * dims[i]))   /* opacity: +-inf ok */
            return S3D_EFORMAT;
    }
    return 0;
}

// ---------------------------------------------------------------- the mesh

struct mesh_buf {
    struct tri_mesh m;
    void           *mem;
};

/* The mesh artifact as to_glb turns it into a file: y-up positions (or placed
 * in the camera frame with p), RGBA8 colours. */
static int read_mesh(const struct artifact *a, const struct pose *placed, struct mesh_buf *b)
{
    int64_t vs[2] = {-1, 3}, fs[2] = {-1, 3}, cs[2] = {-1, 3};
    const float *v = tensor_of(a, "vertices", DTYPE_F32, 2, vs), *col;
    const int32_t *f = tensor_of(a, "faces", DTYPE_I32, 2, fs);
    int64_t V = vs[0], F = fs[0];

    memset(b, 0, sizeof(*b));
    if (!v || !f)
        return S3D_ESHAPE;
    cs[0] = V;
    if (!(col = tensor_of(a, "colors", DTYPE_F32, 2, cs)))
        return S3D_ESHAPE;
    if (V < 1 || F < 1 || V > INT32_MAX) {
        log_error("%s: %lld vertices and %lld faces: %s (HINT: the mesh decoder found no "
                  "surface; check the mask)", a->path, (long long)V, (long long)F,
                  V > INT32_MAX ? "over 2^31 vertices" : "an empty mesh");
        return S3D_EFORMAT;
    }
    if (!finite_or_log(a, "vertices", v, 3 * V))
        return S3D_EFORMAT;
    for (int64_t i = 0; i < 3 * F; i++)
        if (f[i] < 0 || f[i] >= V) {
            log_error("%s: face %lld uses vertex %d of %lld (HINT: a corrupt artifact; re-run "
                      "the mesh_decode stage)", a->path, (long long)(i / 3), f[i], (long long)V);
            return S3D_EFORMAT;
        }
    b->mem = malloc((size_t)V * 16 + (size_t)F * 12);
    if (!b->mem) {
        log_error("%s: out of memory for %lld vertices", a->path, (long long)V);
        return S3D_ENOMEM;
    }
    b->m = (struct tri_mesh){V, F, b->mem, (uint32_t *)((float *)b->mem + 3 * V),
                             (uint8_t *)b->mem + (size_t)V * 12 + (size_t)F * 12};
    if (placed) {
        memcpy(b->m.positions, v, sizeof(float) * 3 * V);
        pose_apply_points(placed, b->m.positions, V);
    } else {
        glb_zup_to_yup(v, b->m.positions, V);
    }
    memcpy(b->m.faces, f, sizeof(uint32_t) * 3 * F);
    glb_colors_rgba8(col, b->m.colors, V);
    return 0;
}

// ---------------------------------------------------------------- the step

/* The image size of the depth artifact: valid (H, W), else points (H, W, 3). */
static bool image_size(const struct artifact *d, int *w, int *h)
{
    const struct ckpt_entry *e = ckpt_find(&d->c, "valid");

    if (!e || e->ndim != 2)
        e = ckpt_find(&d->c, "points");
    if (!e || e->ndim < 2 || e->shape[0] < 1 || e->shape[1] < 1 || e->shape[0] > INT_MAX ||
        e->shape[1] > INT_MAX) {
        log_error("%s: no 'valid' (H, W) or 'points' (H, W, 3) to size the preview (HINT: "
                  "re-run the depth stage)", d->path);
        return false;
    }
    *h = (int)e->shape[0];
    *w = (int)e->shape[1];
    return true;
}

/* preview.png's bytes: g placed with p, seen through depth's camera. 0 with
 * *png (malloc'ed, *len bytes) of a *w x *h image, or an error (logged). */
static int render_preview(const struct gaussians *g, const struct pose *p,
                          const struct artifact *depth, unsigned char **png, size_t *len, int *w,
                          int *h)
{
    int64_t ks[2] = {3, 3};
    const float *K = tensor_of(depth, "intrinsics", DTYPE_F32, 2, ks);
    float Kp[9];
    struct image im;
    int iw, ih, rc;

    if (!K || !image_size(depth, &iw, &ih))
        return S3D_ESHAPE;
    if (preview_camera(K, iw, ih, Kp))
        log_warn("%s: the depth stage's camera is unusable (fx %g, fy %g, centre %g, %g): "
                 "drawing the preview with a 60-degree field of view instead", depth->path,
                 K[0], K[4], K[2], K[5]);
    rc = preview_render(g, p, Kp, iw, ih, PREVIEW_SIDE, &im);
    if (rc)
        return rc;
    *w = im.w;
    *h = im.h;
    rc = image_encode_png(&im, png, len);
    image_free(&im);
    return rc;
}

/* preview.png into dfd: the early one's bytes when it made them, else drawn now. */
static int write_preview(int dfd, const char *label, const struct gaussians *g,
                         const struct pose *p, const struct artifact *depth,
                         struct export_early *early)
{
    struct outfile *f;
    unsigned char *png = NULL;
    size_t len = 0;
    int w = 0, h = 0, rc;
    bool ahead;

    export_early_join(early);
    ahead = early && early->started && early->rc == 0 && early->png;
    if (ahead) {
        png = early->png;
        len = early->len;
        w = early->w;
        h = early->h;
        rc = 0;
    } else {
        rc = render_preview(g, p, depth, &png, &len, &w, &h);
    }
    if (!rc) {
        f = malloc(sizeof(*f));
        rc = S3D_ENOMEM;
        if (f && (rc = outfile_open(f, dfd, "preview.png", label)) == 0) {
            outfile_write(f, png, len);
            rc = outfile_commit(f);
        }
        free(f);
    }
    if (!ahead)
        free(png);
    if (!rc)
        log_info("wrote %s (%dx%d: the input camera | the side%s)", label, w, h,
                 ahead ? "; drawn ahead, as gs_decode finished" : "");
    return rc;
}

#define EXPORT_PLACEABLE (EXPORT_SPLAT | EXPORT_MESH | EXPORT_MESH_PLY)

/* The artifacts output bit needs that are absent (text for messages); NULL
 * when it can be written. placed: the splat and meshes need the pose too. */
static const char *missing(unsigned bit, const struct artifact *gs, const struct artifact *mesh,
                           bool have_pose, const struct artifact *depth, bool placed)
{
    bool need_pose = (bit & (EXPORT_POSE | EXPORT_PREVIEW)) || (placed && (bit & EXPORT_PLACEABLE));

    if ((bit & (EXPORT_SPLAT | EXPORT_PREVIEW)) && !gs->present)
        return "gs_decode.safetensors";
    if ((bit & (EXPORT_MESH | EXPORT_MESH_PLY)) && !mesh->present)
        return "mesh_decode.safetensors";
    if (need_pose && !have_pose)
        return "ss_flow.safetensors + ss_decode.safetensors (the pose)";
    if ((bit & EXPORT_PREVIEW) && !depth->present)
        return "depth.safetensors (the camera)";
    return NULL;
}

/* One file written (r == 0: counted) or failed (the first error kept). */
static void tally(int r, int *rc, int *n_written)
{
    if (r)
        *rc = *rc ? *rc : r;
    else
        (*n_written)++;
}

/* The meshes of an export (mesh.glb, mesh.ply), written on a thread of their
 * own while the Gaussians' files are written (export_outputs joins it). */
struct mesh_part {
    const struct artifact *mesh;
    const struct pose     *placed;        /* place with it, or NULL */
    const char            *out_dir;
    int                    dfd;
    bool                   glb, ply;      /* wanted */
    struct mesh_buf        mb;
    int                    rc, n_written;
};

static void *write_meshes(void *arg)
{
    struct mesh_part *m = arg;
    char label[PATH_MAX + 32];
    int r = read_mesh(m->mesh, m->placed, &m->mb);

    if (r) {
        tally(r, &m->rc, &m->n_written);
        return NULL;
    }
    if (m->glb) {
        snprintf(label, sizeof(label), "%s/mesh.glb", m->out_dir);
        r = glb_write_mesh(m->dfd, "mesh.glb", label, &m->mb.m);
        if (!r)
            log_info("wrote %s (%lld vertices, %lld faces, %s frame)", label,
                     (long long)m->mb.m.n_vertices, (long long)m->mb.m.n_faces,
                     m->placed ? "camera" : "y-up object");
        tally(r, &m->rc, &m->n_written);
    }
    if (m->ply) {
        snprintf(label, sizeof(label), "%s/mesh.ply", m->out_dir);
        r = ply_write_mesh(m->dfd, "mesh.ply", label, &m->mb.m);
        if (!r)
            log_info("wrote %s", label);
        tally(r, &m->rc, &m->n_written);
    }
    return NULL;
}

/* splat.ply of an export, in the object frame, written on a thread of its own
 * while the preview renders from the same (unchanged) Gaussians. */
struct splat_part {
    const struct gaussians *g;
    const char             *out_dir;
    int                     dfd;
    int                     rc, n_written;
};

static void *write_splat(void *arg)
{
    struct splat_part *s = arg;
    char label[PATH_MAX + 32];
    int r;

    snprintf(label, sizeof(label), "%s/splat.ply", s->out_dir);
    r = ply_write_gaussians(s->dfd, "splat.ply", label, s->g);
    if (!r)
        log_info("wrote %s (%lld Gaussians, object frame)", label, (long long)s->g->n);
    tally(r, &s->rc, &s->n_written);
    return NULL;
}

// ---------------------------------------------------------------- the preview drawn ahead

static void *early_main(void *arg)
{
    struct export_early *x = arg;
    struct artifact gs, mesh, flow, dec, depth;
    struct gs_buf g = {0};
    struct pose pose = {{1, 0, 0, 0}, {0, 0, 0}, {1, 1, 1}};
    bool have_pose = false;
    int df = 1;

    memset(&mesh, 0, sizeof(mesh));
    memset(&flow, 0, sizeof(flow));
    memset(&dec, 0, sizeof(dec));
    memset(&depth, 0, sizeof(depth));
    x->rc = S3D_EFORMAT;
    if (artifact_open(&gs, x->dir, "gs_decode.safetensors") ||
        artifact_open(&flow, x->dir, "ss_flow.safetensors") ||
        artifact_open(&dec, x->dir, "ss_decode.safetensors") ||
        artifact_open(&depth, x->dir, "depth.safetensors"))
        goto out;
    if (flow.present && dec.present) {
        if ((x->rc = read_pose(&flow, &dec, &depth, &pose, &df)))
            goto out;
        have_pose = true;
    }
    x->rc = S3D_ENOTFOUND;              /* the export step says what is missing */
    if (missing(EXPORT_PREVIEW, &gs, &mesh, have_pose, &depth, false))
        goto out;
    if (!(x->rc = read_gaussians(&gs, &g)))
        x->rc = render_preview(&g.g, &pose, &depth, &x->png, &x->len, &x->w, &x->h);
out:
    free(g.mem);
    artifact_close(&gs);
    artifact_close(&flow);
    artifact_close(&dec);
    artifact_close(&depth);
    return NULL;
}

void export_early_artifact(struct export_early *x, const char *job_dir, const char *name)
{
    if (!x || !x->want || x->started || strcmp(name, "gs_decode.safetensors"))
        return;
    snprintf(x->dir, sizeof(x->dir), "%s", job_dir);
    x->joined = false;
    x->started = pthread_create(&x->tid, NULL, early_main, x) == 0;
}

void export_early_join(struct export_early *x)
{
    if (x && x->started && !x->joined) {
        pthread_join(x->tid, NULL);
        x->joined = true;
    }
}

void export_early_discard(struct export_early *x)
{
    if (!x)
        return;
    export_early_join(x);
    free(x->png);
    x->png = NULL;
    x->len = 0;
    x->started = x->joined = false;
}

int export_outputs(const char *art_dir, const char *out_dir, const struct export_opts *o)
{
    struct artifact gs, mesh, flow, dec, depth;
    struct gs_buf g = {0};
    struct mesh_part mp = {0};
    struct pose pose = {{1, 0, 0, 0}, {0, 0, 0}, {1, 1, 1}};
    pthread_t mesh_tid;
    bool mesh_thread = false;
    char label[PATH_MAX + 32];
    bool have_pose = false;
    int rc = 0, r, df = 1, dfd = -1, n_written = 0;

    if (artifact_open(&gs, art_dir, "gs_decode.safetensors") ||
        artifact_open(&mesh, art_dir, "mesh_decode.safetensors") ||
        artifact_open(&flow, art_dir, "ss_flow.safetensors") ||
        artifact_open(&dec, art_dir, "ss_decode.safetensors") ||
        artifact_open(&depth, art_dir, "depth.safetensors")) {
        rc = S3D_EFORMAT;
        goto out_close;
    }
    if (flow.present && dec.present) {
        rc = read_pose(&flow, &dec, &depth, &pose, &df);
        if (rc)
            goto out_close;
        have_pose = true;
    }
    for (size_t i = 0; i < sizeof(outputs) / sizeof(outputs[0]); i++) {
        unsigned bit = outputs[i].bit;
        const char *why = (o->what & bit) ? missing(bit, &gs, &mesh, have_pose, &depth,
                                                    o->placed) : NULL;

        if (!why)
            continue;
        /* asked for by name, or --placed on an artifact that is there without its pose */
        if (o->asked || ((bit & EXPORT_PLACEABLE) && o->placed &&
                         !missing(bit, &gs, &mesh, have_pose, &depth, false))) {
            log_error("%s: no %s in %s, needed for --outputs %s%s (HINT: run the stages up to "
                      "it, or leave it out)", outputs[i].name, why, art_dir, outputs[i].name,
                      o->placed ? " --placed" : "");
            rc = S3D_ENOTFOUND;
            goto out_close;
        }
        log_info("%s: skipped (no %s in %s)", outputs[i].name, why, art_dir);
    }
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        log_error("--out '%s': %s", out_dir, strerror(errno));
        rc = S3D_EIO;
        goto out_close;
    }
    dfd = open(out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        log_error("--out '%s': %s (HINT: give a directory)", out_dir, strerror(errno));
        rc = S3D_EIO;
        goto out_close;
    }
#define WANT(bit) ((o->what & (bit)) && !missing(bit, &gs, &mesh, have_pose, &depth, o->placed))
#define LABEL(name) (snprintf(label, sizeof(label), "%s/%s", out_dir, name), label)
    if (WANT(EXPORT_POSE)) {
        r = pose_write_json(dfd, "pose.json", LABEL("pose.json"), &pose, df);
        if (!r)
            log_info("wrote %s (rotation %.4f %.4f %.4f %.4f, translation %.4f %.4f %.4f, "
                     "scale %.4f)", label, pose.rotation[0], pose.rotation[1], pose.rotation[2],
                     pose.rotation[3], pose.translation[0], pose.translation[1],
                     pose.translation[2], pose.scale[0]);
        tally(r, &rc, &n_written);
    }
    mp = (struct mesh_part){.mesh = &mesh, .placed = o->placed ? &pose : NULL,
                            .out_dir = out_dir, .dfd = dfd, .glb = WANT(EXPORT_MESH),
                            .ply = WANT(EXPORT_MESH_PLY)};
    if (mp.glb || mp.ply)               /* beside the Gaussians' files; here without a thread */
        mesh_thread = pthread_create(&mesh_tid, NULL, write_meshes, &mp) == 0;
    if ((mp.glb || mp.ply) && !mesh_thread)
        write_meshes(&mp);
    if (WANT(EXPORT_SPLAT) || WANT(EXPORT_PREVIEW)) {
        struct splat_part sp = {&g.g, out_dir, dfd, 0, 0};
        pthread_t splat_tid;
        bool splat_thread = false;

        r = read_gaussians(&gs, &g);
        if (r)
            tally(r, &rc, &n_written);
        /* in the object frame splat.ply reads what the preview reads: beside it */
        if (!r && WANT(EXPORT_SPLAT) && WANT(EXPORT_PREVIEW) && !o->placed)
            splat_thread = pthread_create(&splat_tid, NULL, write_splat, &sp) == 0;
        if (!r && WANT(EXPORT_PREVIEW))          /* first: it places them itself */
            tally(write_preview(dfd, LABEL("preview.png"), &g.g, &pose, &depth, o->early), &rc,
                  &n_written);
        if (splat_thread) {
            pthread_join(splat_tid, NULL);
            rc = rc ? rc : sp.rc;
            n_written += sp.n_written;
        } else if (!r && WANT(EXPORT_SPLAT)) {
            int w;

            if (o->placed)
                pose_place_gaussians(&pose, &g.g, GS_KERNEL_3D);
            w = ply_write_gaussians(dfd, "splat.ply", LABEL("splat.ply"), &g.g);
            if (!w)
                log_info("wrote %s (%lld Gaussians, %s frame)", label, (long long)g.g.n,
                         o->placed ? "camera" : "object");
            tally(w, &rc, &n_written);
        }
    }
    if (mesh_thread)
        pthread_join(mesh_tid, NULL);
    rc = rc ? rc : mp.rc;
    n_written += mp.n_written;
#undef WANT
#undef LABEL
    if (!rc && !n_written && o->allow_empty) {
        log_info("export: no artifact to write files from yet in %s", art_dir);
    } else if (!rc && !n_written) {
        log_error("nothing to export: %s holds none of gs_decode, mesh_decode, ss_flow + "
                  "ss_decode .safetensors (HINT: --job names a kept job directory or the "
                  "artifacts/ of a run's --out)", art_dir);
        rc = S3D_ENOTFOUND;
    }
out_close:
    export_early_discard(o->early);
    free(g.mem);
    free(mp.mb.mem);
    if (dfd >= 0)
        close(dfd);
    artifact_close(&gs);
    artifact_close(&mesh);
    artifact_close(&flow);
    artifact_close(&dec);
    artifact_close(&depth);
    return rc;
}

// ---------------------------------------------------------------- scene.glb

/* Object k of a scene: its mesh placed in the camera frame by its pose. */
static int scene_object(const char *art_dir, struct mesh_buf *mb)
{
    struct artifact mesh, flow, dec, depth;
    struct pose pose;
    int rc, df;

    memset(mb, 0, sizeof(*mb));
    if ((rc = artifact_open(&mesh, art_dir, "mesh_decode.safetensors")) ||
        (rc = artifact_open(&flow, art_dir, "ss_flow.safetensors")) ||
        (rc = artifact_open(&dec, art_dir, "ss_decode.safetensors")) ||
        (rc = artifact_open(&depth, art_dir, "depth.safetensors")))
        goto out;
    if (!mesh.present || !flow.present || !dec.present) {
        log_info("scene.glb: %s has no %s: left out", art_dir,
                 !mesh.present ? "mesh_decode.safetensors" : "pose (ss_flow + ss_decode)");
        rc = S3D_ENOTFOUND;
        goto out;
    }
    if (!(rc = read_pose(&flow, &dec, &depth, &pose, &df)))
        rc = read_mesh(&mesh, &pose, mb);
out:
    artifact_close(&mesh);
    artifact_close(&flow);
    artifact_close(&dec);
    artifact_close(&depth);
    return rc;
}

int export_scene(const char *const *art_dirs, int n, const char *out_dir)
{
    struct mesh_buf *mb = calloc((size_t)n, sizeof(*mb));
    struct tri_mesh all = {0};
    char label[PATH_MAX + 32];
    int64_t V = 0, F = 0, v0 = 0, f0 = 0;
    int rc = 0, used = 0, dfd = -1;

    ASSERT(mb);
    for (int k = 0; k < n; k++)
        if (scene_object(art_dirs[k], &mb[k]) == 0) {
            V += mb[k].m.n_vertices;
            F += mb[k].m.n_faces;
            used++;
        }
    if (!used) {
        log_info("scene.glb: not written (no object has a mesh and a pose yet)");
        rc = S3D_ENOTFOUND;
        goto out;
    }
    if (V > UINT32_MAX || !(all.positions = malloc(sizeof(float) * 3 * (size_t)V)) ||
        !(all.faces = malloc(sizeof(uint32_t) * 3 * (size_t)F)) ||
        !(all.colors = malloc(4 * (size_t)V))) {
        log_error("scene.glb: out of memory for %lld vertices", (long long)V);
        rc = S3D_ENOMEM;
        goto out;
    }
    for (int k = 0; k < n; k++) {           /* concatenated; face indices shifted */
        const struct tri_mesh *m = &mb[k].m;

        memcpy(all.positions + 3 * v0, m->positions, sizeof(float) * 3 * (size_t)m->n_vertices);
        memcpy(all.colors + 4 * v0, m->colors, 4 * (size_t)m->n_vertices);
        for (int64_t i = 0; i < 3 * m->n_faces; i++)
            all.faces[3 * f0 + i] = m->faces[i] + (uint32_t)v0;
        v0 += m->n_vertices;
        f0 += m->n_faces;
    }
    all.n_vertices = V;
    all.n_faces = F;
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        log_error("'%s': %s", out_dir, strerror(errno));
        rc = S3D_EIO;
        goto out;
    }
    if ((dfd = open(out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        log_error("'%s': %s", out_dir, strerror(errno));
        rc = S3D_EIO;
        goto out;
    }
    snprintf(label, sizeof(label), "%s/scene.glb", out_dir);
    rc = glb_write_mesh(dfd, "scene.glb", label, &all);
    if (!rc)
        log_info("wrote %s (%d of %d objects placed in the camera frame, %lld vertices, %lld "
                 "faces)", label, used, n, (long long)V, (long long)F);
out:
    if (dfd >= 0)
        close(dfd);
    for (int k = 0; k < n; k++)
        free(mb[k].mem);
    free(mb);
    free(all.positions);
    free(all.faces);
    free(all.colors);
    return rc;
}

// ---------------------------------------------------------------- sam3d export

static void usage_export(FILE *f)
{
    fprintf(f,
        "usage: sam3d export --job DIR --out DIR [--outputs LIST] [--placed]\n"
        "       sam3d export --scene DIR [--scene DIR ...] --out DIR\n"
        "Writes the files a user opens from the artifacts of a run: DIR is a job directory\n"
        "kept with `sam3d run --keep-job`, or a run's --out folder (its artifacts/ is used).\n"
        "  --outputs LIST  comma-separated, from: splat (splat.ply), mesh (mesh.glb), pose\n"
        "                  (pose.json), preview (preview.png), mesh_ply (mesh.ply). Default:\n"
        "                  splat,mesh,pose,preview, each when its artifacts are there; a\n"
        "                  named output whose artifacts are missing is an error\n"
        "  --placed        splat.ply and the meshes in the camera frame of the input image\n"
        "                  (pose.json applied) instead of the object frame\n"
        "  --scene DIR     (repeatable) OUT/scene.glb: the mesh of each DIR (artifacts, or\n"
        "                  a run's --out) placed in the camera frame by its pose, one file\n"
        "exit status: 0 written, 1 failed (one error line each), 2 usage\n");
}

/* A run's --out folder stands for its artifacts/ (when the folder itself holds
 * none): the directory to read, in art[PATH_MAX + 32]. */
static const char *artifacts_of(const char *dir, char *art)
{
    char probe[PATH_MAX + 32];
    struct stat st;

    snprintf(art, PATH_MAX + 32, "%s", dir);
    snprintf(probe, sizeof(probe), "%s/ss_flow.safetensors", dir);
    if (access(probe, F_OK) != 0) {
        snprintf(probe, sizeof(probe), "%s/artifacts", dir);
        if (stat(probe, &st) == 0 && S_ISDIR(st.st_mode))
            snprintf(art, PATH_MAX + 32, "%s", probe);
    }
    return art;
}

int cmd_export(int argc, char **argv)
{
    const char *job = NULL, *out = NULL, *scene[64];
    struct export_opts o = {.what = EXPORT_DEFAULT};
    char scene_art[64][PATH_MAX + 32];
    int n_scene = 0;
    char art[PATH_MAX + 32];
    struct stat st;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage_export(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--job") && i + 1 < argc) {
            job = argv[++i];
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--scene") && i + 1 < argc && n_scene < 64) {
            scene[n_scene] = artifacts_of(argv[++i], scene_art[n_scene]);
            n_scene++;
        } else if (!strcmp(argv[i], "--outputs") && i + 1 < argc) {
            if (!export_parse_outputs(argv[++i], &o.what))
                return 2;
            o.asked = true;
        } else if (!strcmp(argv[i], "--placed")) {
            o.placed = true;
        } else {
            fprintf(stderr, "error: unknown option or missing value: %s\n", argv[i]);
            usage_export(stderr);
            return 2;
        }
    }
    if (n_scene && out && !job)
        return export_scene(scene, n_scene, out) ? 1 : 0;
    if (!job || !out) {
        fprintf(stderr, "error: --job (or --scene) and --out are required\n");
        usage_export(stderr);
        return 2;
    }
    if (stat(job, &st) != 0 || !S_ISDIR(st.st_mode)) {
        log_error("--job '%s' is not a directory (HINT: a job kept with `sam3d run --keep-job`, "
                  "or a run's --out folder)", job);
        return 1;
    }
    return export_outputs(artifacts_of(job, art), out, &o) ? 1 : 0;
}
