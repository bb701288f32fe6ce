/*
 * procs.h - spawning and reaping stage processes.
 *
 * A child gets PR_SET_PDEATHSIG(SIGTERM) and the read end of a pipe whose
 * write end only this process holds (its number in env S3D_PARENT_FD): when
 * the orchestrator dies, even by SIGKILL, the pipe reads EOF and the stage's
 * serve loop, which polls it, exits whatever it was doing (common/stage.h). No
 * orphans. Its stdin is /dev/null; stdout and stderr are inherited (stages log
 * to stderr).
 */
#ifndef S3D_PROCS_H
#define S3D_PROCS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct proc {
    pid_t pid;          /* 0 when not running */
    int   status;       /* waitpid status once reaped */
    bool  reaped;
    long  max_rss_kb;   /* its peak resident set (wait4 ru_maxrss) once reaped, else 0 */
    int   watch_fd;     /* write end of its watch pipe while it runs, else -1 */
};

/* Start argv[0] (a path) with argv. Returns 0 or S3D_EIO (logged). exec failure
 * shows up as the child exiting with status 127. */
int  proc_spawn(struct proc *p, char *const argv[]);
/* Still running? Reaps it (without blocking) when it has ended. */
bool proc_alive(struct proc *p);
/* SIGTERM, wait up to grace_ms, then SIGKILL; always reaps. No-op when not running. */
void proc_stop(struct proc *p, int grace_ms);
/* Its peak resident set in bytes: VmHWM while it runs, ru_maxrss once reaped; 0 unknown. */
long long proc_rss_peak(const struct proc *p);
/* "running", "stopped (SIGSTOP or a debugger), not answering", "exited with
 * status 1", "killed by SIGABRT" into buf; returns buf. */
const char *proc_describe(const struct proc *p, char *buf, size_t len);

#endif
