/*
 * devmem.h - device memory as the driver sees it, for the orchestrator's VRAM
 * budget and report.json (issue 13: "the process-level device peak").
 *
 * Three methods, chosen at devmem_open:
 *   nvml        libnvidia-ml.so.1 opened with dlopen at run time (so nothing
 *               breaks where it is absent; S3D_NVML_LIB names another file).
 *               A sampler thread reads each watched process's used device
 *               memory (nvmlDeviceGetComputeRunningProcesses: CUDA context,
 *               arenas, library workspaces, as nvidia-smi shows it) and each
 *               device's used memory every DEVMEM_SAMPLE_MS. Where NVML cannot
 *               see our pids (a container's PID namespace) the per-process
 *               figures are unknown and the device's used memory minus what
 *               was used at devmem_open stands for our processes together.
 *   cuda-probe  no NVML: a short-lived child process (fork, cudaMemGetInfo,
 *               exit) reads a device's free memory on request; the engine
 *               takes the free-memory delta around each stage's turn.
 *   none        no usable CUDA device: every figure is 0.
 *
 * The orchestrator itself never creates a CUDA context: with NVML it only
 * asks the CUDA runtime for PCI bus ids (no context) to map cuda:N to the NVML
 * device; without NVML it never calls CUDA in its own process at all (the
 * probe runs in a forked child, which is why nothing may initialise CUDA in
 * the orchestrator before devmem_open).
 *
 * Thread safety: the sampler thread and the caller share the watch table
 * under a mutex; every function here may be called from the caller's thread.
 * Test: tests/test_budget.sh (a fake NVML library, tests/tools/so/fake_nvml.c).
 */
#ifndef S3D_DEVMEM_H
#define S3D_DEVMEM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define DEVMEM_MAX_DEVICES 16
#define DEVMEM_MAX_WATCH   32
#define DEVMEM_SAMPLE_MS   20

enum devmem_method { DEVMEM_NONE, DEVMEM_NVML, DEVMEM_PROBE };

struct devmem;

/* Open the best method available; never fails (DEVMEM_NONE at worst). The
 * sampler thread starts with the first devmem_watch. Returns NULL only when
 * out of memory (an internal fault: ASSERTed). */
struct devmem *devmem_open(void);
void devmem_close(struct devmem *d);                   /* NULL-safe; joins the sampler */

enum devmem_method devmem_method(const struct devmem *d);
const char *devmem_method_name(enum devmem_method m);  /* "nvml", "cuda-probe", "none" */
/* Number of CUDA devices the stages can use (0: run everything on the CPU). */
int  devmem_device_count(const struct devmem *d);

/* Free and total bytes of cuda:dev now (NVML, or a probe child). 0, or
 * S3D_EDEVICE when the device does not exist or cannot be asked. */
int  devmem_device_free(struct devmem *d, int dev, int64_t *free_b, int64_t *total_b);

/* The GPU's name ("NVIDIA H100 80GB HBM3") and the driver's version ("550.54.15")
 * of cuda:dev, as NVML tells them. 0, or S3D_EDEVICE without NVML (or where
 * it cannot say). */
int  devmem_gpu_info(struct devmem *d, int dev, char *name, size_t name_len, char *driver,
                     size_t driver_len);

/* Start sampling process pid on cuda:dev (replaces an entry of the same pid). */
void devmem_watch(struct devmem *d, pid_t pid, int dev);
void devmem_unwatch(struct devmem *d, pid_t pid);
/* Restart pid's window: its window peak becomes its current use. */
void devmem_mark(struct devmem *d, pid_t pid);
/* Take one sample now (besides the thread's), so a figure read next is fresh. */
void devmem_sample(struct devmem *d);

/* pid's device bytes now and its peak since its last devmem_mark. false when
 * the driver does not show that process (no NVML, or another PID namespace). */
bool devmem_process(struct devmem *d, pid_t pid, int64_t *now_b, int64_t *window_peak_b);

/* Our processes on cuda:dev together: their sum (per-process figures) or the
 * device's used bytes minus those used at open (when pids are not visible),
 * now and at its peak since devmem_open. false without NVML. *per_process says
 * which of the two it is. */
bool devmem_ours(struct devmem *d, int dev, int64_t *now_b, int64_t *peak_b, bool *per_process);

#endif
