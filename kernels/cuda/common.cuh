/*
 * common.cuh - what every .cu file in kernels/cuda shares: CUBLAS_CHECK and
 * CUDNN_CHECK with symbolic names, the end-of-op check (S3D_SYNC), and fp32
 * loads/stores of F32/F16/BF16 elements (templates on the element type, plus a
 * run-time dtype switch for small parameter vectors).
 */
#ifndef S3D_KERNELS_CUDA_COMMON_CUH
#define S3D_KERNELS_CUDA_COMMON_CUH

#include "check.h"
#include "log.h"
#include "ops.h"
#include "prof.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cudnn.h>

#define CUBLAS_CHECK(expr) do {                                             \
        cublasStatus_t st_ = (expr);                                        \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                   \
            s3d_fatal(__FILE__, __LINE__, #expr, cublas_status_name(st_),   \
                      "cuBLAS call failed");                                \
    } while (0)

#define CUDNN_CHECK(expr) do {                                              \
        cudnnStatus_t st_ = (expr);                                         \
        if (st_ != CUDNN_STATUS_SUCCESS)                                    \
            s3d_fatal(__FILE__, __LINE__, #expr, cudnnGetErrorString(st_),  \
                      "cuDNN call failed");                                 \
    } while (0)

/* The per-context GEMM algorithm cache (gemm.cu), made and freed with the op
 * context (ctx.cu). */
struct op_gemm *gemm_cache_new(void);
void            gemm_cache_free(struct op_gemm *g);

/* Symbolic name of a cuBLAS status ("CUBLAS_STATUS_NOT_SUPPORTED"). */
static inline const char *cublas_status_name(cublasStatus_t st)
{
    switch (st) {
    case CUBLAS_STATUS_SUCCESS:          return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:  return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:     return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:    return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:    return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:    return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:   return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:    return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:    return "CUBLAS_STATUS_LICENSE_ERROR";
    default:                             return "CUBLAS_STATUS_?";
    }
}

/* After queuing an op's kernels: check the launch, and under S3D_SYNC wait for
 * the op and log its name, so an asynchronous fault names the right op; under
 * S3D_PROFILE tag the op's device time (kernels/prof.h). */
static inline void op_done(const struct op_ctx *ctx, const char *op)
{
    CUDA_CHECK(cudaGetLastError());
    if (op_prof_on)
        op_prof_record(ctx, op);
    if (ctx->sync) {
        CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
        log_info("S3D_SYNC: op %s ok", op);
    }
}

/* Grid size for n items at `per_block` items per block, capped for grid-stride loops. */
static inline unsigned grid_for(int64_t n, int64_t per_block)
{
    int64_t g = (n + per_block - 1) / per_block;

    return (unsigned)(g < 1 ? 1 : g > 65535 * 16 ? 65535 * 16 : g);
}

// ----------------------------------------------------------------------------
// element access in fp32

__device__ __forceinline__ float to_f32(float v)         { return v; }
__device__ __forceinline__ float to_f32(__half v)        { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v)
{
    return __float2bfloat16_rn(v);
}

/* 8 consecutive elements of T at p as fp32 (p 16-byte aligned: one 16-byte load of a
 * 2-byte T, two of float), and 8 values rounded into T the same way. */
template <typename T>
__device__ __forceinline__ void load8_f32(const T *p, float out[8])
{
    if constexpr (sizeof(T) == 4) {
        float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
        out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w;
        out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
    } else {
        uint4    u = *(const uint4 *)p;
        const T *e = (const T *)&u;
#pragma unroll
        for (int k = 0; k < 8; k++)
            out[k] = to_f32(e[k]);
    }
}

template <typename T>
__device__ __forceinline__ void store8_f32(T *p, const float v[8])
{
    if constexpr (sizeof(T) == 4) {
        ((float4 *)p)[0] = make_float4(v[0], v[1], v[2], v[3]);
        ((float4 *)p)[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
        uint4 u;
        T    *e = (T *)&u;
#pragma unroll
        for (int k = 0; k < 8; k++)
            e[k] = from_f32<T>(v[k]);
        *(uint4 *)p = u;
    }
}

/* Element i of a buffer whose dtype is known only at run time (uniform branch). */
__device__ __forceinline__ float load_dt(const void *p, enum dtype dt, int64_t i)
{
    switch (dt) {
    case DTYPE_F16:  return __half2float(((const __half *)p)[i]);
    case DTYPE_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    default:         return ((const float *)p)[i];
    }
}

__device__ __forceinline__ void store_dt(void *p, enum dtype dt, int64_t i, float v)
{
    switch (dt) {
    case DTYPE_F16:  ((__half *)p)[i] = __float2half_rn(v); break;
    case DTYPE_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v); break;
    default:         ((float *)p)[i] = v; break;
    }
}

/* Calls F<Tx, Ty>::run(args...) for the run-time dtypes of x and y (F32/F16/BF16). */
#define DISPATCH_1(dt, T, ...) do {                                         \
        switch (dt) {                                                       \
        case DTYPE_F32:  { typedef float T;         __VA_ARGS__; } break;   \
        case DTYPE_F16:  { typedef __half T;        __VA_ARGS__; } break;   \
        case DTYPE_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;   \
        default: ASSERT(!"dtype not F32/F16/BF16");                         \
        }                                                                   \
    } while (0)

#define DISPATCH_2(dtx, Tx, dty, Ty, ...) \
    DISPATCH_1(dtx, Tx, DISPATCH_1(dty, Ty, __VA_ARGS__))

// ----------------------------------------------------------------------------
// reductions

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every
 * thread gets the result. red holds 32 floats of shared memory. */
__device__ __forceinline__ float block_sum(float v, float *red)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;

    v = warp_sum(v);
    __syncthreads();                       /* red may still be read by a previous call */
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float *red)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;

    v = warp_max(v);
    __syncthreads();
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    return warp_max(v);
}

#endif
