/*
 * remote.c - inline inputs and outputs for stages served elsewhere. See remote.h.
 * Test: tests/test_orchestrator.sh ("remote stage").
 */
#include "remote.h"

#include "err.h"
#include "safetensors.h"

#include <stdio.h>
#include <string.h>

void remote_inputs_close(struct remote_inputs *in)
{
    for (int i = 0; i < in->n; i++)
        ckpt_close(&in->files[i]);
    in->n = 0;
}

int remote_add_inputs(struct wire_msg *m, const struct pipe_stage *ps, const char *job,
                      struct remote_inputs *in, char *err, size_t err_len)
{
    in->n = 0;
    for (int i = 0; i < ps->n_inputs; i++) {
        const struct pipe_input *pi = &ps->inputs[i];
        struct ckpt *c = &in->files[in->n];
        const struct ckpt_entry *e;
        struct tensor view;
        char path[PATH_MAX + WIRE_KEY_MAX];

        snprintf(path, sizeof(path), "%s/%s", job, pi->file);
        for (int j = 0; j < in->n; j++)         /* several inputs from one artifact: map once */
            if (!strcmp(in->files[j].path, path))
                c = &in->files[j];
        if (c == &in->files[in->n]) {
            memset(c, 0, sizeof(*c));
            if (ckpt_open(c, path, CKPT_QUIET) != 0 || c->format != CKPT_SAFETENSORS) {
                snprintf(err, err_len, "input artifact '%s' is missing or unreadable (it comes "
                         "from an earlier stage; re-run that one)", pi->file);
                ckpt_close(c);
                return S3D_ENOTFOUND;
            }
            in->n++;
        }
        e = ckpt_find(c, pi->key);
        if (!e) {
            snprintf(err, err_len, "artifact '%s' has no tensor '%s'", pi->file, pi->key);
            return S3D_ENOTFOUND;
        }
        view = ckpt_entry_tensor(e);
        if (!tensor_is_contiguous(&view)) {
            snprintf(err, err_len, "artifact '%s' tensor '%s' is not contiguous", pi->file,
                     pi->key);
            return S3D_EFORMAT;
        }
        (void)wire_add_frame(m, pi->name, e->dtype, e->shape, e->ndim, e->data);
    }
    return 0;
}

int remote_write_outputs(const struct wire_msg *rep, const char *path, char *err,
                         size_t err_len)
{
    struct st_write_item items[WIRE_MAX_TENSORS];
    const char *meta[2 * WIRE_MAX_PARAMS];
    int n = 0, n_meta = 0;

    for (int i = 0; i < rep->n_tensors; i++) {
        const struct wire_tensor *w = &rep->tensors[i];

        if (w->frame < 0 || !w->data) {
            snprintf(err, err_len, "the stage answered output '%s' as a file on its own "
                     "machine, not inline", w->name);
            return S3D_EPROTO;
        }
        items[n].name = w->name;
        items[n].t = tensor_view((void *)w->data, w->dtype, DEVICE_HOST, w->shape, w->ndim);
        n++;
    }
    if (n == 0) {
        snprintf(err, err_len, "the stage answered without outputs");
        return S3D_EPROTO;
    }
    for (int i = 0; i < rep->n_params; i++)     /* the stage's meta_KEY fields: __metadata__ */
        if (rep->params[i].type == WIRE_STR && !strncmp(rep->params[i].key, "meta_", 5) &&
            rep->params[i].key[5]) {
            meta[2 * n_meta] = rep->params[i].key + 5;
            meta[2 * n_meta++ + 1] = rep->params[i].s;
        }
    if (safetensors_write(path, items, n, meta, n_meta) != 0) {
        snprintf(err, err_len, "cannot write the outputs to '%s'", path);
        return S3D_EIO;
    }
    return 0;
}
