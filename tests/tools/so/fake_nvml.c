/*
 * fake_nvml.c - a stand-in for libnvidia-ml.so.1 with the few functions
 * orchestrator/devmem.c uses, so the VRAM budget is tested on machines without
 * a GPU (tests/test_budget.sh loads it with S3D_NVML_LIB). Built as
 * build/tests/tools/libfake_nvml.so.
 *
 * One device. Processes "use device memory" by writing their byte count into
 * the file $S3D_FAKE_NVML_DIR/<pid> (the echo stage does, tests/tools/
 * echo_stage.c); files of processes that have ended are ignored. The device
 * has $S3D_FAKE_NVML_TOTAL bytes (default 1 GiB), of which
 * $S3D_FAKE_NVML_BASE (default 0) are used by others. With
 * S3D_FAKE_NVML_HIDE_PIDS=1 the process list shows other pids (as NVML does
 * from inside a container's PID namespace), so only the device's used memory
 * tells anything. S3D_FAKE_NVML_CALL_MS (default 0) makes each process-list
 * call take that long, as a slow driver's does.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

struct fake_memory { unsigned long long total, free, used; };
struct fake_proc { unsigned int pid; unsigned long long used; unsigned int gi, ci; };

static long long env_size(const char *name, long long def)
{
    const char *v = getenv(name);

    return v && *v ? atoll(v) : def;
}

/* Is pid a live process (not a zombie)? */
static int alive(long pid)
{
    char path[64], buf[256], *p;
    FILE *f;
    int ok = 0;

    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return 0;
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')) && p[1] == ' ')
        ok = p[2] != 'Z' && p[2] != 'X';
    fclose(f);
    return ok;
}

/* Fill up to cap entries of the processes' files; returns how many there are. */
static unsigned int scan(struct fake_proc *out, unsigned int cap, unsigned long long *sum)
{
    const char *dir = getenv("S3D_FAKE_NVML_DIR");
    int hide = getenv("S3D_FAKE_NVML_HIDE_PIDS") && atoi(getenv("S3D_FAKE_NVML_HIDE_PIDS"));
    struct dirent *e;
    unsigned int n = 0;
    DIR *d;

    *sum = 0;
    if (!dir || !(d = opendir(dir)))
        return 0;
    while ((e = readdir(d))) {
        char path[4096], *end;
        long pid = strtol(e->d_name, &end, 10);
        long long bytes = 0;
        FILE *f;

        if (*end || pid <= 0 || !alive(pid))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        f = fopen(path, "r");
        if (!f)
            continue;
        if (fscanf(f, "%lld", &bytes) != 1)
            bytes = 0;
        fclose(f);
        *sum += (unsigned long long)bytes;
        if (n < cap && out) {
            out[n].pid = (unsigned int)(hide ? pid + 1000000 : pid);
            out[n].used = (unsigned long long)bytes;
            out[n].gi = out[n].ci = 0;
        }
        n++;
    }
    closedir(d);
    return n;
}

int nvmlInit_v2(void) { return 0; }
int nvmlShutdown(void) { return 0; }

int nvmlSystemGetDriverVersion(char *v, unsigned int len)
{
    return snprintf(v, len, "%s", "555.42.fake") < (int)len ? 0 : 7;   /* INSUFFICIENT_SIZE */
}

int nvmlDeviceGetName(void *dev, char *name, unsigned int len)
{
    (void)dev;
    return snprintf(name, len, "%s", "Fake NVML GPU") < (int)len ? 0 : 7;
}

int nvmlDeviceGetCount_v2(unsigned int *count)
{
    *count = 1;
    return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **dev)
{
    if (index != 0)
        return 2;                       /* NVML_ERROR_INVALID_ARGUMENT */
    *dev = (void *)1;
    return 0;
}

int nvmlDeviceGetMemoryInfo(void *dev, struct fake_memory *m)
{
    unsigned long long sum;

    (void)dev;
    scan(NULL, 0, &sum);
    m->total = (unsigned long long)env_size("S3D_FAKE_NVML_TOTAL", 1LL << 30);
    m->used = (unsigned long long)env_size("S3D_FAKE_NVML_BASE", 0) + sum;
    m->free = m->used < m->total ? m->total - m->used : 0;
    return 0;
}

int nvmlDeviceGetComputeRunningProcesses_v3(void *dev, unsigned int *count,
                                            struct fake_proc *procs)
{
    unsigned long long sum;
    unsigned int n = scan(procs, *count, &sum);
    long long ms = env_size("S3D_FAKE_NVML_CALL_MS", 0);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    (void)dev;
    if (ms > 0)
        nanosleep(&ts, NULL);
    if (n > *count) {
        *count = n;
        return 7;                       /* NVML_ERROR_INSUFFICIENT_SIZE */
    }
    *count = n;
    return 0;
}
