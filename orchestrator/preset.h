/*
 * preset.h - named settings of the pipeline (`sam3d run --preset NAME`, `sam3d
 * bench --preset NAME`): request params set on a job for the stages of the
 * pipeline that have them; params given one by one afterwards still win.
 *
 *   default   the pipeline file as it is: the official defaults (SS flow 25
 *             steps with CFG 7, SLAT flow 25 steps with CFG 1)
 *   fast      the official shortcut (distillation) mode of both flow models
 *             with 4 steps each, as InferencePipeline.run offers it
 *             (use_stage1_distillation / use_stage2_distillation,
 *             stage1_inference_steps / stage2_inference_steps: sam-3d-objects
 *             pipeline/inference_pipeline.py:476-520, 642-658, 721-740):
 *             ss_flow shortcut=1 steps=4 (d = 1/4, no CFG: 4 evaluations
 *             instead of 44), slat_flow steps=4 cfg=0 (4 instead of 38). Four
 *             steps is the distilled setting the SAM 3D paper reports.
 * Test: tests/test_orchestrator.sh (--preset), tests/test_bench.sh.
 */
#ifndef S3D_PRESET_H
#define S3D_PRESET_H

#include "engine.h"

#include <stdbool.h>

/* True when name is a preset ("default", "fast"). */
bool        preset_known(const char *name);
/* The preset names for messages: "default, fast". */
const char *preset_names(void);
/* Set preset name's params on j for the stages of e's pipeline that exist
 * (a stage the pipeline lacks is skipped). 0, or S3D_EINVAL (unknown name or
 * j's override table full; logged). */
int         preset_apply(const char *name, const struct engine *e, struct job *j);

#endif
