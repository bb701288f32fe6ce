/*
 * procs.c - fork/exec, liveness and stopping of stage processes. See procs.h.
 */
#include "procs.h"

#include "err.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int proc_spawn(struct proc *p, char *const argv[])
{
    pid_t parent = getpid();
    pid_t pid;
    int watch[2];

    char watch_env[32], **envp;
    int n_env = 0;

    memset(p, 0, sizeof(*p));
    p->watch_fd = -1;
    if (pipe2(watch, O_CLOEXEC) != 0) {
        log_error("cannot start '%s': pipe: %s", argv[0], strerror(errno));
        return S3D_EIO;
    }
    /* the child's environment, built before fork (no allocation between fork and exec) */
    while (environ[n_env])
        n_env++;
    envp = calloc((size_t)n_env + 2, sizeof(*envp));
    if (!envp) {
        close(watch[0]);
        close(watch[1]);
        return S3D_ENOMEM;
    }
    snprintf(watch_env, sizeof(watch_env), "S3D_PARENT_FD=%d", watch[0]);
    for (int i = 0, k = 0; i < n_env; i++)
        if (strncmp(environ[i], "S3D_PARENT_FD=", 14))
            envp[k++] = environ[i];
    for (int k = 0;; k++)
        if (!envp[k]) {
            envp[k] = watch_env;
            break;
        }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        log_error("cannot start '%s': fork: %s", argv[0], strerror(errno));
        free(envp);
        close(watch[0]);
        close(watch[1]);
        return S3D_EIO;
    }
    if (pid == 0) {
        int fd = open("/dev/null", O_RDONLY);
        sigset_t none;

        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)          /* the parent died before prctl */
            _exit(1);
        /* the read end of the watch pipe stays open across exec: EOF = parent gone */
        close(watch[1]);
        fcntl(watch[0], F_SETFD, 0);
        if (fd >= 0) {
            dup2(fd, 0);
            close(fd);
        }
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        execve(argv[0], argv, envp);
        fprintf(stderr, "error: cannot execute '%s': %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    free(envp);
    close(watch[0]);
    p->pid = pid;
    p->watch_fd = watch[1];               /* closed when the child is reaped, or with us */
    return 0;
}

/* The child is gone: drop our end of its watch pipe. */
static void reaped(struct proc *p)
{
    p->reaped = true;
    if (p->watch_fd >= 0) {
        close(p->watch_fd);
        p->watch_fd = -1;
    }
}

bool proc_alive(struct proc *p)
{
    struct rusage ru;
    pid_t r;

    if (p->pid <= 0 || p->reaped)
        return false;
    memset(&ru, 0, sizeof(ru));
    r = wait4(p->pid, &p->status, WNOHANG, &ru);
    if (r == 0)
        return true;
    reaped(p);             /* ended (or not our child any more) */
    if (r == p->pid)
        p->max_rss_kb = ru.ru_maxrss;
    return false;
}

void proc_stop(struct proc *p, int grace_ms)
{
    struct timespec ts = {0, 10 * 1000000L};

    if (!proc_alive(p))
        return;
    kill(p->pid, SIGTERM);
    for (int waited = 0; waited < grace_ms; waited += 10) {
        if (!proc_alive(p))
            return;
        nanosleep(&ts, NULL);
    }
    kill(p->pid, SIGKILL);
    struct rusage ru;
    memset(&ru, 0, sizeof(ru));
    while (wait4(p->pid, &p->status, 0, &ru) < 0 && errno == EINTR)
        ;
    reaped(p);
    p->max_rss_kb = ru.ru_maxrss;
}

/* The state letter of a live process (/proc/PID/stat: R S D T t Z ...), or 0. */
static char proc_state(pid_t pid)
{
    char path[64], line[512], *rp;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return 0;
    rp = fgets(line, sizeof(line), f) ? strrchr(line, ')') : NULL;   /* comm may hold ')' */
    fclose(f);
    return rp && rp[1] == ' ' ? rp[2] : 0;
}

long long proc_rss_peak(const struct proc *p)
{
    char path[64], line[256];
    long long kb = 0;
    FILE *f;

    if (p->pid <= 0)
        return 0;
    if (p->reaped)
        return (long long)p->max_rss_kb * 1024;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)p->pid);
    f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %lld kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

const char *proc_describe(const struct proc *p, char *buf, size_t len)
{
    char st = p->pid > 0 && !p->reaped ? proc_state(p->pid) : 0;

    if (p->pid <= 0)
        snprintf(buf, len, "not started");
    else if (!p->reaped && (st == 'T' || st == 't'))
        snprintf(buf, len, "stopped (SIGSTOP or a debugger), not answering");
    else if (!p->reaped)
        snprintf(buf, len, "running");
    else if (WIFEXITED(p->status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(p->status));
    else if (WIFSIGNALED(p->status))
        snprintf(buf, len, "killed by SIG%s", sigabbrev_np(WTERMSIG(p->status)) ?
                 sigabbrev_np(WTERMSIG(p->status)) : "?");
    else
        snprintf(buf, len, "ended");
    return buf;
}
