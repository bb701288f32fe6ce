/*
 * check.h - CUDA_CHECK: abort with file, line, expression and the symbolic
 * CUDA error. For internal faults only (see style: the cellular wall).
 * cuBLAS and cuDNN checks live in kernels/cuda/common.cuh.
 */
#ifndef S3D_CHECK_H
#define S3D_CHECK_H

#include "log.h"

#include <cuda_runtime_api.h>

#define CUDA_CHECK(expr) do {                                               \
        cudaError_t err_ = (expr);                                          \
        if (err_ != cudaSuccess)                                            \
            s3d_fatal(__FILE__, __LINE__, #expr, cudaGetErrorName(err_),    \
                      cudaGetErrorString(err_));                            \
    } while (0)

#endif
