/*
 * preset.c - the named pipeline settings of `--preset`. See preset.h.
 */
#include "preset.h"

#include "err.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

struct preset_param {
    const char *stage, *key, *val;
};

static const struct preset_param fast[] = {
    {"ss_flow",   "shortcut", "1"},      /* d = 1/steps, CFG strength 0 */
    {"ss_flow",   "steps",    "4"},
    {"ss_flow",   "cfg",      "0"},      /* implied by shortcut; stated for the report */
    {"slat_flow", "steps",    "4"},
    {"slat_flow", "cfg",      "0"},      /* use_stage2_distillation: strength 0 */
};

static const struct {
    const char                *name;
    const struct preset_param *p;
    int                        n;
} presets[] = {
    {"default", NULL, 0},
    {"fast",    fast, (int)(sizeof(fast) / sizeof(fast[0]))},
};

#define N_PRESETS ((int)(sizeof(presets) / sizeof(presets[0])))

bool preset_known(const char *name)
{
    for (int i = 0; i < N_PRESETS; i++)
        if (name && !strcmp(presets[i].name, name))
            return true;
    return false;
}

const char *preset_names(void)
{
    static char list[128];

    if (!list[0])
        for (int i = 0; i < N_PRESETS; i++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
                     presets[i].name);
    return list;
}

int preset_apply(const char *name, const struct engine *e, struct job *j)
{
    for (int i = 0; i < N_PRESETS; i++) {
        if (strcmp(presets[i].name, name))
            continue;
        for (int k = 0; k < presets[i].n; k++) {
            const struct preset_param *p = &presets[i].p[k];
            const struct pipe_stage *ps = pipeline_find(&e->pipe, p->stage);

            if (ps && job_set_param(j, (int)(ps - e->pipe.stages), p->key, p->val) != 0)
                return S3D_EINVAL;
        }
        return 0;
    }
    log_error("--preset '%s': no such preset (%s)", name, preset_names());
    return S3D_EINVAL;
}
