/*
 * devmem.c - device memory as the driver sees it: NVML through dlopen, or a
 * probe child, or nothing. Contract: devmem.h.
 *
 * The NVML declarations below are the few this file needs, copied from the
 * layout nvml.h documents (the header is not part of the CUDA toolkit):
 * nvmlProcessInfo_t of nvmlDeviceGetComputeRunningProcesses_v3/_v2 is
 * {pid, usedGpuMemory, gpuInstanceId, computeInstanceId}; the unversioned
 * function fills the older {pid, usedGpuMemory}.
 */
#include "devmem.h"

#include "err.h"
#include "log.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------- NVML ABI

typedef struct nvml_device *nvml_dev;          /* nvmlDevice_t */
typedef int nvml_ret;                          /* nvmlReturn_t: 0 = NVML_SUCCESS */
#define NVML_OK                 0
#define NVML_INSUFFICIENT_SIZE  7
#define NVML_VALUE_NA           (~0ULL)        /* NVML_VALUE_NOT_AVAILABLE */

struct nvml_memory { unsigned long long total, free, used; };
struct nvml_proc_v1 { unsigned int pid; unsigned long long used; };
struct nvml_proc_v2 { unsigned int pid; unsigned long long used; unsigned int gi, ci; };

struct nvml_api {
    void     *lib;
    nvml_ret (*init)(void);
    nvml_ret (*shutdown)(void);
    nvml_ret (*count)(unsigned int *);
    nvml_ret (*by_index)(unsigned int, nvml_dev *);
    nvml_ret (*by_pci)(const char *, nvml_dev *);          /* optional */
    nvml_ret (*by_uuid)(const char *, nvml_dev *);         /* optional */
    nvml_ret (*memory)(nvml_dev, struct nvml_memory *);
    nvml_ret (*procs)(nvml_dev, unsigned int *, void *);
    bool      procs_v1;                                    /* procs fills nvml_proc_v1 */
    nvml_ret (*name)(nvml_dev, char *, unsigned int);      /* optional */
    nvml_ret (*driver)(char *, unsigned int);              /* optional */
};

// ---------------------------------------------------------------- state

struct watch {
    pid_t   pid;           /* 0: free slot */
    int     dev;
    bool    seen;          /* NVML listed it in the last sample */
    int64_t now, window_peak;
};

struct device {
    nvml_dev h;            /* NULL: not mapped to NVML */
    int64_t  base_used;    /* used bytes at devmem_open */
    bool     visible;      /* a watched pid was ever listed on it */
    int64_t  sum_now, sum_peak, delta_now, delta_peak;
};

struct devmem {
    enum devmem_method method;
    int                n_dev;
    struct nvml_api    nv;
    struct device      dev[DEVMEM_MAX_DEVICES];
    pthread_mutex_t    mu;             /* the watch table and the device figures */
    pthread_mutex_t    smu;            /* one sample at a time (list is shared) */
    pthread_t          thread;
    bool               thread_on;
    volatile int       stop;
    struct watch       w[DEVMEM_MAX_WATCH];
    struct nvml_proc_v2 list[DEVMEM_MAX_DEVICES][256];   /* a sample's process lists */
};

const char *devmem_method_name(enum devmem_method m)
{
    return m == DEVMEM_NVML ? "nvml" : m == DEVMEM_PROBE ? "cuda-probe" : "none";
}

enum devmem_method devmem_method(const struct devmem *d)
{
    return d ? d->method : DEVMEM_NONE;
}

int devmem_device_count(const struct devmem *d)
{
    return d ? d->n_dev : 0;
}

// ---------------------------------------------------------------- NVML opening

static void *sym(void *lib, const char *a, const char *b)
{
    void *p = dlsym(lib, a);

    return p || !b ? p : dlsym(lib, b);
}

static bool nvml_load(struct nvml_api *nv)
{
    const char *path = getenv("S3D_NVML_LIB");

    memset(nv, 0, sizeof(*nv));
    nv->lib = dlopen(path && *path ? path : "libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!nv->lib) {
        log_debug("devmem: no NVML (%s)", dlerror());
        return false;
    }
    *(void **)&nv->init = sym(nv->lib, "nvmlInit_v2", "nvmlInit");
    *(void **)&nv->shutdown = sym(nv->lib, "nvmlShutdown", NULL);
    *(void **)&nv->count = sym(nv->lib, "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount");
    *(void **)&nv->by_index = sym(nv->lib, "nvmlDeviceGetHandleByIndex_v2",
                                  "nvmlDeviceGetHandleByIndex");
    *(void **)&nv->by_pci = sym(nv->lib, "nvmlDeviceGetHandleByPciBusId_v2",
                                "nvmlDeviceGetHandleByPciBusId");
    *(void **)&nv->by_uuid = sym(nv->lib, "nvmlDeviceGetHandleByUUID", NULL);
    *(void **)&nv->memory = sym(nv->lib, "nvmlDeviceGetMemoryInfo", NULL);
    *(void **)&nv->name = sym(nv->lib, "nvmlDeviceGetName", NULL);
    *(void **)&nv->driver = sym(nv->lib, "nvmlSystemGetDriverVersion", NULL);
    *(void **)&nv->procs = sym(nv->lib, "nvmlDeviceGetComputeRunningProcesses_v3",
                               "nvmlDeviceGetComputeRunningProcesses_v2");
    if (!nv->procs) {
        *(void **)&nv->procs = sym(nv->lib, "nvmlDeviceGetComputeRunningProcesses", NULL);
        nv->procs_v1 = true;
    }
    if (!nv->init || !nv->shutdown || !nv->count || !nv->by_index || !nv->memory ||
        !nv->procs || nv->init() != NVML_OK) {
        log_warn("devmem: '%s' lacks the functions needed or did not initialise; device "
                 "memory is measured without it", path && *path ? path : "libnvidia-ml.so.1");
        dlclose(nv->lib);
        nv->lib = NULL;
        return false;
    }
    return true;
}

/* The NVML device behind cuda:i: by PCI bus id when the CUDA runtime answers
 * (it creates no context for this), else through CUDA_VISIBLE_DEVICES (an index
 * or a GPU UUID), else index i. */
static nvml_dev nvml_for_cuda(struct nvml_api *nv, int i, bool cuda_ok)
{
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    char bus[64], item[128];
    nvml_dev h = NULL;

    if (cuda_ok && nv->by_pci && cudaDeviceGetPCIBusId(bus, sizeof(bus), i) == cudaSuccess &&
        nv->by_pci(bus, &h) == NVML_OK)
        return h;
    (void)cudaGetLastError();
    if (vis && *vis) {
        const char *p = vis;

        for (int k = 0; k < i && p; k++) {
            p = strchr(p, ',');
            p = p ? p + 1 : NULL;
        }
        if (!p)
            return NULL;
        snprintf(item, sizeof(item), "%.*s", (int)strcspn(p, ","), p);
        if (!strncmp(item, "GPU-", 4))
            return nv->by_uuid && nv->by_uuid(item, &h) == NVML_OK ? h : NULL;
        char *end;
        long n = strtol(item, &end, 10);
        return !*end && n >= 0 && nv->by_index((unsigned)n, &h) == NVML_OK ? h : NULL;
    }
    return nv->by_index((unsigned)i, &h) == NVML_OK ? h : NULL;
}

// ---------------------------------------------------------------- the probe child

/* Run `<this executable> devmem-probe DEV`; it prints "count free total". */
static int probe(int dev, int *count, int64_t *free_b, int64_t *total_b)
{
    char exe[PATH_MAX], arg[16], buf[128];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    size_t got = 0;
    int fds[2], status = 0;
    long long c = 0, f = 0, t = 0;
    pid_t pid;

    if (n <= 0 || pipe(fds) != 0)
        return S3D_EIO;
    exe[n] = 0;
    snprintf(arg, sizeof(arg), "%d", dev);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return S3D_EIO;
    }
    if (pid == 0) {
        char *argv[] = {exe, "devmem-probe", arg, NULL};

        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(exe, argv);
        _exit(127);
    }
    close(fds[1]);
    for (;;) {
        struct pollfd p = {fds[0], POLLIN, 0};
        int r = poll(&p, 1, 30000);

        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            break;
        }
        n = read(fds[0], buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == sizeof(buf) - 1)
            break;
    }
    buf[got] = 0;
    close(fds[0]);
    kill(pid, SIGKILL);                     /* no-op once it has exited */
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (sscanf(buf, "%lld %lld %lld", &c, &f, &t) != 3)
        return S3D_EDEVICE;
    *count = (int)c;
    *free_b = f;
    *total_b = t;
    return t > 0 ? 0 : S3D_EDEVICE;
}

int cmd_devmem_probe(int argc, char **argv)
{
    size_t f = 0, t = 0;
    int n = 0, dev = argc > 1 ? atoi(argv[1]) : 0;

    if (cudaGetDeviceCount(&n) != cudaSuccess)
        n = 0;
    if (n > 0 && dev >= 0 && dev < n &&
        (cudaSetDevice(dev) != cudaSuccess || cudaMemGetInfo(&f, &t) != cudaSuccess))
        f = t = 0;
    printf("%d %lld %lld\n", n, (long long)f, (long long)t);
    return 0;
}

// ---------------------------------------------------------------- sampling

static void sample(struct devmem *d)
{
    struct nvml_proc_v2 (*list)[256] = d->list;
    unsigned int n_list[DEVMEM_MAX_DEVICES] = {0};
    int64_t used[DEVMEM_MAX_DEVICES];
    bool want[DEVMEM_MAX_DEVICES] = {false};

    pthread_mutex_lock(&d->smu);
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < DEVMEM_MAX_WATCH; i++)
        if (d->w[i].pid && d->w[i].dev >= 0 && d->w[i].dev < d->n_dev)
            want[d->w[i].dev] = true;
    pthread_mutex_unlock(&d->mu);
    for (int k = 0; k < d->n_dev; k++) {            /* NVML is thread-safe: no lock held */
        struct nvml_memory m;
        unsigned int cnt = 256;

        used[k] = -1;
        if (!want[k] || !d->dev[k].h)
            continue;
        if (d->nv.memory(d->dev[k].h, &m) == NVML_OK)
            used[k] = (int64_t)m.used;
        if (d->nv.procs_v1) {
            struct nvml_proc_v1 v1[256];

            if (d->nv.procs(d->dev[k].h, &cnt, v1) != NVML_OK)
                cnt = 0;
            for (unsigned j = 0; j < cnt; j++) {
                list[k][j].pid = v1[j].pid;
                list[k][j].used = v1[j].used;
            }
        } else if (d->nv.procs(d->dev[k].h, &cnt, list[k]) != NVML_OK) {
            cnt = 0;                /* NVML_INSUFFICIENT_SIZE: > 256 processes, give up */
        }
        n_list[k] = cnt;
    }
    pthread_mutex_lock(&d->mu);
    for (int k = 0; k < d->n_dev; k++)
        d->dev[k].sum_now = 0;
    for (int i = 0; i < DEVMEM_MAX_WATCH; i++) {
        struct watch *w = &d->w[i];
        int k = w->dev;

        if (!w->pid || k < 0 || k >= d->n_dev || !want[k] || !d->dev[k].h)
            continue;
        w->seen = false;
        w->now = 0;                 /* not listed: no context yet, or not visible */
        for (unsigned j = 0; j < n_list[k]; j++)
            if ((pid_t)list[k][j].pid == w->pid && list[k][j].used != NVML_VALUE_NA) {
                w->seen = true;
                w->now = (int64_t)list[k][j].used;
            }
        if (w->now > w->window_peak)
            w->window_peak = w->now;
        if (w->seen)
            d->dev[k].visible = true;
        d->dev[k].sum_now += w->now;
    }
    for (int k = 0; k < d->n_dev; k++) {
        struct device *v = &d->dev[k];

        if (v->sum_now > v->sum_peak)
            v->sum_peak = v->sum_now;
        if (used[k] >= 0) {
            v->delta_now = used[k] > v->base_used ? used[k] - v->base_used : 0;
            if (v->delta_now > v->delta_peak)
                v->delta_peak = v->delta_now;
        }
    }
    pthread_mutex_unlock(&d->mu);
    pthread_mutex_unlock(&d->smu);
}

static void *sampler(void *arg)
{
    struct devmem *d = arg;
    struct timespec ts = {0, DEVMEM_SAMPLE_MS * 1000000L};

    while (!d->stop) {
        sample(d);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

void devmem_sample(struct devmem *d)
{
    if (d && d->method == DEVMEM_NVML)
        sample(d);
}

// ---------------------------------------------------------------- public

struct devmem *devmem_open(void)
{
    struct devmem *d = calloc(1, sizeof(*d));
    int64_t f, t;
    int n = 0;

    ASSERT(d);
    pthread_mutex_init(&d->mu, NULL);
    pthread_mutex_init(&d->smu, NULL);
    if (nvml_load(&d->nv)) {
        unsigned int nn = 0;
        bool cuda_ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;

        (void)cudaGetLastError();
        if (!cuda_ok)                   /* no runtime answer: trust NVML's list */
            n = d->nv.count(&nn) == NVML_OK ? (int)nn : 0;
        d->n_dev = n < DEVMEM_MAX_DEVICES ? n : DEVMEM_MAX_DEVICES;
        for (int i = 0; i < d->n_dev; i++) {
            struct nvml_memory m;

            d->dev[i].h = nvml_for_cuda(&d->nv, i, cuda_ok);
            if (d->dev[i].h && d->nv.memory(d->dev[i].h, &m) == NVML_OK)
                d->dev[i].base_used = (int64_t)m.used;
        }
        d->method = DEVMEM_NVML;
    } else if (probe(0, &n, &f, &t) == 0 || n > 0) {
        d->n_dev = n < DEVMEM_MAX_DEVICES ? n : DEVMEM_MAX_DEVICES;
        d->method = d->n_dev > 0 ? DEVMEM_PROBE : DEVMEM_NONE;
    }
    log_debug("devmem: %s, %d CUDA device(s)", devmem_method_name(d->method), d->n_dev);
    return d;
}

int devmem_gpu_info(struct devmem *d, int dev, char *name, size_t name_len, char *driver,
                    size_t driver_len)
{
    char n[96] = "", v[80] = "";

    if (!d || d->method != DEVMEM_NVML || dev < 0 || dev >= d->n_dev || !d->dev[dev].h ||
        !d->nv.name || !d->nv.driver || d->nv.name(d->dev[dev].h, n, sizeof(n)) != NVML_OK ||
        d->nv.driver(v, sizeof(v)) != NVML_OK)
        return S3D_EDEVICE;
    n[sizeof(n) - 1] = v[sizeof(v) - 1] = 0;
    snprintf(name, name_len, "%s", n);
    snprintf(driver, driver_len, "%s", v);
    return 0;
}

void devmem_close(struct devmem *d)
{
    if (!d)
        return;
    if (d->thread_on) {
        d->stop = 1;
        pthread_join(d->thread, NULL);
    }
    if (d->nv.lib) {
        d->nv.shutdown();
        dlclose(d->nv.lib);
    }
    pthread_mutex_destroy(&d->mu);
    pthread_mutex_destroy(&d->smu);
    free(d);
}

int devmem_device_free(struct devmem *d, int dev, int64_t *free_b, int64_t *total_b)
{
    struct nvml_memory m;
    int n;

    if (!d || dev < 0 || dev >= d->n_dev)
        return S3D_EDEVICE;
    if (d->method == DEVMEM_NVML && d->dev[dev].h) {
        if (d->nv.memory(d->dev[dev].h, &m) != NVML_OK)
            return S3D_EDEVICE;
        *free_b = (int64_t)m.free;
        *total_b = (int64_t)m.total;
        return 0;
    }
    return probe(dev, &n, free_b, total_b);
}

void devmem_watch(struct devmem *d, pid_t pid, int dev)
{
    struct watch *slot = NULL;

    if (!d || d->method != DEVMEM_NVML || pid <= 0)
        return;
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < DEVMEM_MAX_WATCH && !slot; i++)
        if (d->w[i].pid == pid)
            slot = &d->w[i];
    for (int i = 0; i < DEVMEM_MAX_WATCH && !slot; i++)
        if (!d->w[i].pid)
            slot = &d->w[i];
    if (slot) {
        memset(slot, 0, sizeof(*slot));
        slot->pid = pid;
        slot->dev = dev;
    }
    pthread_mutex_unlock(&d->mu);
    if (!slot)
        log_warn("devmem: more than %d stage processes to watch; pid %d is not measured",
                 DEVMEM_MAX_WATCH, (int)pid);
    if (!d->thread_on && pthread_create(&d->thread, NULL, sampler, d) == 0)
        d->thread_on = true;
}

/* pid's watch slot: cleared (unwatch) or its window restarted (mark). */
static void slot_update(struct devmem *d, pid_t pid, bool clear)
{
    if (!d || d->method != DEVMEM_NVML)
        return;
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < DEVMEM_MAX_WATCH; i++) {
        struct watch *w = &d->w[i];
        if (w->pid != pid)
            continue;
        if (clear)
            memset(w, 0, sizeof(*w));
        else
            w->window_peak = w->now;
    }
    pthread_mutex_unlock(&d->mu);
}

void devmem_unwatch(struct devmem *d, pid_t pid)
{
    slot_update(d, pid, true);
}

void devmem_mark(struct devmem *d, pid_t pid)
{
    slot_update(d, pid, false);
}

bool devmem_process(struct devmem *d, pid_t pid, int64_t *now_b, int64_t *window_peak_b)
{
    bool ok = false;

    if (!d || d->method != DEVMEM_NVML)
        return false;
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < DEVMEM_MAX_WATCH; i++) {
        const struct watch *w = &d->w[i];

        if (w->pid != pid || w->dev < 0 || w->dev >= d->n_dev || !d->dev[w->dev].visible)
            continue;
        *now_b = w->now;
        *window_peak_b = w->window_peak;
        ok = true;
    }
    pthread_mutex_unlock(&d->mu);
    return ok;
}

bool devmem_ours(struct devmem *d, int dev, int64_t *now_b, int64_t *peak_b, bool *per_process)
{
    if (!d || d->method != DEVMEM_NVML || dev < 0 || dev >= d->n_dev || !d->dev[dev].h)
        return false;
    pthread_mutex_lock(&d->mu);
    *per_process = d->dev[dev].visible;
    *now_b = *per_process ? d->dev[dev].sum_now : d->dev[dev].delta_now;
    *peak_b = *per_process ? d->dev[dev].sum_peak : d->dev[dev].delta_peak;
    pthread_mutex_unlock(&d->mu);
    return true;
}
