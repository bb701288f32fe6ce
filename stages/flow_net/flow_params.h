/*
 * flow_params.h - the request params the two flow stages (sam3d-ss-flow,
 * sam3d-slat-flow) both take with the same meaning, as entries of their
 * stage_param tables (common/stage.h): the Euler step count, the noise seed
 * and the time rescale (the official FlowMatching / ShortCut samplers,
 * sam3d_objects/model/backbone/generator/; each stage's default from the
 * released pipeline.yaml).
 */
#ifndef S3D_FLOW_PARAMS_H
#define S3D_FLOW_PARAMS_H

#include "stage.h"

#define FLOW_MAX_STEPS 1000

#define FLOW_PARAM_STEPS \
    {"steps", STAGE_PARAM_INT, 25, 1, FLOW_MAX_STEPS, "Euler steps (the pipeline's 25)", NULL}
#define FLOW_PARAM_SEED \
    {"seed", STAGE_PARAM_INT, 42, 0, 9e15, "the noise seed (our generator, not PyTorch's)", NULL}
#define FLOW_PARAM_RESCALE_T(def) \
    {"rescale_t", STAGE_PARAM_FLOAT, def, 1e-6, 1e6, "time rescale r: t / (1 + (r-1)(1-t))", NULL}

#endif
