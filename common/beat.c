/*
 * beat.c - a busy stage's sign of life. Contract: beat.h.
 */
#include "beat.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int                 beat_fd = -1;
static _Atomic uint64_t    beat_count;
static _Atomic int64_t     beat_last_ms;

static int64_t coarse_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int beat_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0) {
        log_error("--beat '%s': %s (HINT: the file is made by sam3d, which passes this option "
                  "itself; leave it out when starting a stage by hand)", path, strerror(errno));
        return S3D_EIO;
    }
    beat_fd = fd;
    atomic_store(&beat_last_ms, coarse_ms());
    return 0;
}

void beat_progress(void)
{
    uint64_t n;
    int64_t now, last;

    if (beat_fd < 0)
        return;
    n = atomic_fetch_add_explicit(&beat_count, 1, memory_order_relaxed) + 1;
    now = coarse_ms();
    last = atomic_load_explicit(&beat_last_ms, memory_order_relaxed);
    if (now - last < BEAT_PERIOD_MS ||
        !atomic_compare_exchange_strong_explicit(&beat_last_ms, &last, now,
                                                 memory_order_relaxed, memory_order_relaxed))
        return;
    if (pwrite(beat_fd, &n, sizeof(n), 0) != (ssize_t)sizeof(n))
        log_debug("beat: write failed: %s", strerror(errno));
}

int beat_create(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);

    return fd;
}

uint64_t beat_read(int fd)
{
    uint64_t n = 0;

    if (fd < 0 || pread(fd, &n, sizeof(n), 0) != (ssize_t)sizeof(n))
        return 0;
    return n;
}
