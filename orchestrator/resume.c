/*
 * resume.c - which stages of a kept job need not run again (engine.h,
 * engine_resume): `sam3d run --job DIR` continues from the last complete
 * artifact.
 *
 * An artifact counts as complete only when it is a readable safetensors file
 * (the header parses, every tensor lies inside the file: safetensors_open),
 * it holds every tensor a later stage's input line reads from it, and it is
 * not older than any artifact it was made from (a stage re-run with `sam3d
 * stage` makes everything after it stale). Stages write their artifacts under
 * a temporary name and rename them into place (common/stage.c), so a stage
 * killed mid-request leaves the previous state, never half a file. The kept
 * stages are a prefix of the job's stages: from the first stage whose
 * artifact fails a check, every stage runs again.
 */
#include "engine.h"

#include "err.h"
#include "log.h"
#include "report.h"
#include "safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static bool newer_or_same(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec >= b->tv_nsec);
}

/* Is stage s's artifact in j complete for the stages after it? why gets the
 * reason when not; t's outputs are filled from the file when it is. */
static bool artifact_ok(const struct engine *e, const struct job *j, int s, struct turn *t,
                        char *why, size_t why_len)
{
    const struct pipe_stage *ps = e->rt[s].ps;
    char path[PATH_MAX + WIRE_KEY_MAX];
    struct stat st, in;
    struct ckpt c;

    snprintf(path, sizeof(path), "%s/%s", j->dir.path, ps->out);
    if (stat(path, &st) != 0) {
        snprintf(why, why_len, "%s: %s", ps->out, strerror(errno));
        return false;
    }
    if (safetensors_open(&c, path) != 0) {
        snprintf(why, why_len, "%s is not a complete safetensors file", ps->out);
        return false;
    }
    for (int k = s + 1; k < e->n_rt; k++)          /* what the later stages read from it */
        for (int i = 0; i < e->rt[k].ps->n_inputs; i++) {
            const struct pipe_input *pi = &e->rt[k].ps->inputs[i];

            if (!strcmp(pi->file, ps->out) && !ckpt_find(&c, pi->key)) {
                snprintf(why, why_len, "%s has no tensor '%s' (stage %s reads it)", ps->out,
                         pi->key, e->rt[k].ps->name);
                ckpt_close(&c);
                return false;
            }
        }
    t->n_out = 0;
    for (int i = 0; i < c.n_entries && t->n_out < WIRE_MAX_TENSORS; i++) {
        const struct ckpt_entry *ce = &c.entries[i];
        struct out_desc *o = &t->out[t->n_out++];

        snprintf(o->name, sizeof(o->name), "%s", ce->name);
        o->dtype = ce->dtype;
        o->ndim = ce->ndim;
        memcpy(o->shape, ce->shape, sizeof(o->shape));
        o->nbytes = dtype_size(ce->dtype);
        for (int d = 0; d < ce->ndim; d++)
            o->nbytes *= (size_t)ce->shape[d];
    }
    ckpt_close(&c);
    for (int i = 0; i < ps->n_inputs; i++) {       /* made after what it was made from */
        char ip[PATH_MAX + WIRE_KEY_MAX];

        snprintf(ip, sizeof(ip), "%s/%s", j->dir.path, ps->inputs[i].file);
        if (stat(ip, &in) == 0 && !newer_or_same(&st.st_mtim, &in.st_mtim)) {
            snprintf(why, why_len, "%s is older than its input %s (stale: made before that "
                     "one was re-made)", ps->out, ps->inputs[i].file);
            return false;
        }
    }
    return true;
}

int engine_resume(struct engine *e, struct job *j)
{
    char why[WIRE_ERR_MAX] = "";
    int s;

    for (s = j->first; s <= j->last; s++) {
        struct turn *t = &j->turn[s];

        if (!artifact_ok(e, j, s, t, why, sizeof(why)))
            break;
        t->state = TURN_KEPT;
        if (report_copy_artifact(e, j, s) != 0)
            return S3D_EIO;
        log_info("resume: stage %s kept (%s complete, %d tensors)", e->rt[s].ps->name,
                 e->rt[s].ps->out, t->n_out);
    }
    j->next = s;
    if (s <= j->last)
        log_info("resume: from stage %s (%s)", e->rt[s].ps->name, why);
    else
        log_info("resume: every stage's artifact is complete; nothing to run");
    return 0;
}
