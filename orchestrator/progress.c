/*
 * progress.c - live lines, plain lines, quiet, JSON events. Contract: progress.h.
 *
 * tty mode moves fd 2 (ours, and the stages' that inherit it) onto a pipe; a
 * pump thread copies every line to the log file and shows warnings, errors and
 * anything that is not a log line on the terminal above the live lines. The
 * terminal is written through its own descriptor, under one mutex.
 */
#include "progress.h"

#include "budget.h"
#include "log.h"
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIVE        PIPE_MAX_STAGES
#define REDRAW_MS       200
#define PLAIN_STEP_MS   5000

struct live {                     /* a turn in flight */
    const struct job *job;
    int     stage, index, of;     /* pipeline index; k of n within the job */
    char    name[PIPE_NAME_MAX];
    double  t0, eta_ms, last_plain;
    int     step, steps;
};

struct progress {
    enum progress_mode mode;
    FILE           *tty;          /* tty mode: the terminal */
    int             tty_fd, saved_err, log_fd, pipe_rd;
    pthread_t       pump;
    bool            pump_on;
    volatile int    pump_stop;
    pthread_mutex_t mu;
    int             n_live, drawn;
    struct live     live[MAX_LIVE];
    double          last_draw;
    bool            many_jobs;    /* name the job on every line */
};

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *secs(double ms, char *buf, size_t len)
{
    if (ms < 10000)
        snprintf(buf, len, "%.1f s", ms / 1000);
    else if (ms < 120000)
        snprintf(buf, len, "%.0f s", ms / 1000);
    else
        snprintf(buf, len, "%ld min %02ld s", (long)(ms / 60000), (long)(ms / 1000) % 60);
    return buf;
}

// ---------------------------------------------------------------- tty drawing

/* Erase the live lines drawn last (the cursor sits below them). Under mu. */
static void erase_live(struct progress *p)
{
    for (; p->drawn > 0; p->drawn--)
        fputs("\033[1A\033[2K", p->tty);
}

static void live_text(const struct progress *p, const struct live *l, char *out, size_t len)
{
    char a[32], b[32];
    double el = now_ms() - l->t0, eta = 0;
    size_t n;

    n = (size_t)snprintf(out, len, "  %s%s[%d/%d] %-12s %s", p->many_jobs ? l->job->name : "",
                         p->many_jobs ? " " : "", l->index, l->of, l->name, secs(el, a, sizeof(a)));
    if (l->steps > 0 && n < len)
        n += (size_t)snprintf(out + n, len - n, "  step %d/%d", l->step, l->steps);
    if (l->steps > 0 && l->step > 0)
        eta = el / l->step * (l->steps - l->step);
    else if (l->eta_ms > el)
        eta = l->eta_ms - el;
    if (eta > 0 && n < len)
        snprintf(out + n, len - n, "  ETA %s", secs(eta, b, sizeof(b)));
}

static void draw_live(struct progress *p)
{
    char line[256];

    for (int i = 0; i < p->n_live; i++) {
        live_text(p, &p->live[i], line, sizeof(line));
        fprintf(p->tty, "%s\n", line);
        p->drawn++;
    }
    fflush(p->tty);
    p->last_draw = now_ms();
}

/* A line that stays, above the live ones. Under mu. */
static void tty_line(struct progress *p, const char *text, size_t len)
{
    erase_live(p);
    fwrite(text, 1, len, p->tty);
    if (!len || text[len - 1] != '\n')
        fputc('\n', p->tty);
    draw_live(p);
}

// ---------------------------------------------------------------- the log pump

/* Log lines are "[name pid] L HH:MM:SS.mmm ..."; show W and E ones, and any
 * line that is not a log line (a crash message, a plain "sam3d: ..."). */
static bool show_on_tty(const char *s, size_t n)
{
    const char *close = memchr(s, ']', n);

    if (n == 0 || s[0] != '[' || !close || close + 3 > s + n)
        return n > 0;
    return close[1] == ' ' && (close[2] == 'W' || close[2] == 'E');
}

static void *pump(void *arg)
{
    struct progress *p = arg;
    char buf[16384];
    size_t have = 0;

    for (;;) {
        struct pollfd pf = {p->pipe_rd, POLLIN, 0};
        int r = poll(&pf, 1, 100);
        ssize_t n;

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (p->pump_stop)
                break;
            continue;
        }
        n = read(p->pipe_rd, buf + have, sizeof(buf) - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        for (;;) {
            char *nl = memchr(buf, '\n', have);
            size_t len = nl ? (size_t)(nl - buf) + 1 : have == sizeof(buf) ? have : 0;

            if (!len)
                break;
            if (write(p->log_fd, buf, len) < 0) {
                /* the log file is gone or full: the terminal still gets what matters */
            }
            if (show_on_tty(buf, len)) {
                pthread_mutex_lock(&p->mu);
                tty_line(p, buf, len);
                pthread_mutex_unlock(&p->mu);
            }
            memmove(buf, buf + len, have - len);
            have -= len;
        }
    }
    if (have && write(p->log_fd, buf, have) < 0) {
        /* nothing more to do */
    }
    return NULL;
}

/* tty mode: fd 2 to a pipe the pump reads; the terminal kept on its own fd. */
static bool start_tty(struct progress *p, const char *log_path)
{
    int fds[2];

    p->log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (p->log_fd < 0) {
        log_warn("cannot write the log to '%s' (%s): it stays on the terminal", log_path,
                 strerror(errno));
        return false;
    }
    p->tty_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
    p->saved_err = fcntl(2, F_DUPFD_CLOEXEC, 3);
    if (p->tty_fd < 0 || p->saved_err < 0 || pipe2(fds, O_CLOEXEC) != 0 ||
        !(p->tty = fdopen(p->tty_fd, "w")))
        goto out_fail;
    fflush(stderr);
    dup2(fds[1], 2);                    /* fd 2 is inherited by the stages (no CLOEXEC) */
    close(fds[1]);
    p->pipe_rd = fds[0];
    if (pthread_create(&p->pump, NULL, pump, p) != 0) {
        dup2(p->saved_err, 2);
        close(p->pipe_rd);
        goto out_fail;
    }
    p->pump_on = true;
    fprintf(p->tty, "sam3d: log in %s\n", log_path);
    fflush(p->tty);
    return true;
out_fail:
    close(p->log_fd);
    return false;
}

// ---------------------------------------------------------------- public

struct progress *progress_open(enum progress_mode mode, const char *log_path)
{
    struct progress *p = calloc(1, sizeof(*p));

    ASSERT(p);
    pthread_mutex_init(&p->mu, NULL);
    p->log_fd = p->tty_fd = p->saved_err = p->pipe_rd = -1;
    if (mode == PROGRESS_AUTO)
        mode = isatty(2) ? PROGRESS_TTY : PROGRESS_PLAIN;
    if (mode == PROGRESS_TTY && (!log_path || !start_tty(p, log_path)))
        mode = PROGRESS_PLAIN;
    if (mode == PROGRESS_QUIET) {
        const char *lv = getenv("S3D_LOG");

        if (!lv || !*lv) {
            setenv("S3D_LOG", "warn", 1);           /* the stages started from now on */
            log_set_level(LOG_WARN);
        }
    }
    p->mode = mode;
    return p;
}

void progress_close(struct progress *p)
{
    if (!p)
        return;
    if (p->pump_on) {
        pthread_mutex_lock(&p->mu);
        erase_live(p);
        fflush(p->tty);
        pthread_mutex_unlock(&p->mu);
        fflush(stderr);
        dup2(p->saved_err, 2);          /* drops our write end of the pipe */
        p->pump_stop = 1;
        pthread_join(p->pump, NULL);
        close(p->pipe_rd);
        close(p->log_fd);
    }
    if (p->tty)
        fclose(p->tty);
    if (p->saved_err >= 0)
        close(p->saved_err);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

void progress_say(struct progress *p, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(text))
        n = sizeof(text) - 1;
    switch (p->mode) {
    case PROGRESS_TTY:
        pthread_mutex_lock(&p->mu);
        tty_line(p, text, (size_t)n);
        pthread_mutex_unlock(&p->mu);
        break;
    case PROGRESS_JSON:
        printf("{\"event\": \"message\", \"text\": ");
        report_json_str(stdout, text);
        printf("}\n");
        fflush(stdout);
        break;
    default:
        fprintf(stderr, "%s\n", text);
    }
}

static void json_event(const char *event, const struct engine_event *ev, const char *extra)
{
    printf("{\"event\": \"%s\", \"job\": ", event);
    report_json_str(stdout, ev->job->name);
    printf(", \"job_id\": %d", ev->job->id);
    if (ev->stage >= 0) {
        printf(", \"stage\": ");
        report_json_str(stdout, ev->name);
        printf(", \"index\": %d, \"of\": %d", ev->stage - ev->job->first + 1, ev->n_stages);
    }
    printf("%s}\n", extra);
    fflush(stdout);
}

static struct live *find_live(struct progress *p, const struct engine_event *ev)
{
    for (int i = 0; i < p->n_live; i++)
        if (p->live[i].job == ev->job && p->live[i].stage == ev->stage)
            return &p->live[i];
    return NULL;
}

/* The line that stays when a turn ends. */
static void done_text(const struct progress *p, const struct engine_event *ev, char *out,
                      size_t len)
{
    const struct turn *t = &ev->job->turn[ev->stage];
    char a[32], b[32];
    size_t n;

    n = (size_t)snprintf(out, len, "  %s%s[%d/%d] %-12s %s %s", p->many_jobs ? ev->job->name : "",
                         p->many_jobs ? " " : "", ev->stage - ev->job->first + 1, ev->n_stages,
                         ev->name, turn_state_name(t->state), secs(t->wall_ms, a, sizeof(a)));
    if (t->state == TURN_DONE && n < len) {
        n += (size_t)snprintf(out + n, len - n, "%s", t->warm ? " (warm" : " (load");
        if (!t->warm && n < len)
            n += (size_t)snprintf(out + n, len - n, " %s", secs(t->load_ms, a, sizeof(a)));
        if (t->restarts && n < len)
            n += (size_t)snprintf(out + n, len - n, ", %d restart%s", t->restarts,
                                  t->restarts > 1 ? "s" : "");
        if (t->dev_bytes > 0 && n < len)
            n += (size_t)snprintf(out + n, len - n, ", %s on the GPU",
                                  budget_size_str(t->dev_bytes, b, sizeof(b)));
        if (n < len)
            snprintf(out + n, len - n, ")");
    } else if (t->error[0] && n < len) {
        snprintf(out + n, len - n, ": %s", t->error);
    }
}

void progress_event(void *arg, const struct engine_event *ev)
{
    struct progress *p = arg;
    struct live *l;
    char line[1024], extra[512], a[32];
    const struct turn *t = ev->stage >= 0 ? &ev->job->turn[ev->stage] : NULL;

    if (ev->kind == EV_JOB_START && ev->job->id > 1)
        p->many_jobs = true;
    if (p->mode == PROGRESS_JSON) {
        switch (ev->kind) {
        case EV_JOB_START:  json_event("job_start", ev, ""); break;
        case EV_STAGE_START:
            snprintf(extra, sizeof(extra), ", \"eta_ms\": %.0f", ev->eta_ms);
            json_event("stage_start", ev, extra);
            break;
        case EV_STAGE_STEP:
            snprintf(extra, sizeof(extra), ", \"step\": %d, \"steps\": %d", ev->step, ev->steps);
            json_event("stage_step", ev, extra);
            break;
        case EV_STAGE_RETRY:
            snprintf(extra, sizeof(extra), ", \"attempt\": %d", t->attempt + 1);
            json_event("stage_retry", ev, extra);
            break;
        case EV_STAGE_DONE:
            snprintf(extra, sizeof(extra), ", \"state\": \"%s\", \"wall_ms\": %.1f, "
                     "\"warm\": %s, \"device_bytes\": ", turn_state_name(t->state),
                     t->wall_ms, t->warm ? "true" : "false");
            if (t->dev_bytes >= 0)
                snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), "%lld",
                         (long long)t->dev_bytes);
            else
                strcat(extra, "null");
            json_event("stage_done", ev, extra);
            break;
        case EV_JOB_DONE:
            snprintf(extra, sizeof(extra), ", \"status\": \"%s\", \"code\": %d, "
                     "\"wall_ms\": %.1f", report_status(ev->job->code), ev->job->code,
                     ev->job->wall_ms);
            json_event("job_done", ev, extra);
            break;
        }
        return;
    }
    if (p->mode == PROGRESS_QUIET)
        return;
    pthread_mutex_lock(&p->mu);
    switch (ev->kind) {
    case EV_JOB_START:
    case EV_STAGE_RETRY:
        break;
    case EV_STAGE_START:
        if (p->n_live == MAX_LIVE)
            break;
        l = &p->live[p->n_live++];
        memset(l, 0, sizeof(*l));
        l->job = ev->job;
        l->stage = ev->stage;
        l->index = ev->stage - ev->job->first + 1;
        l->of = ev->n_stages;
        snprintf(l->name, sizeof(l->name), "%s", ev->name);
        l->t0 = l->last_plain = now_ms();
        l->eta_ms = ev->eta_ms;
        if (p->mode == PROGRESS_TTY) {
            erase_live(p);
            draw_live(p);
        } else {
            fprintf(stderr, "sam3d: %s%s[%d/%d] %s started%s%s\n", p->many_jobs ? ev->job->name
                    : "", p->many_jobs ? " " : "", l->index, l->of, l->name,
                    ev->eta_ms > 0 ? ", ETA " : "", ev->eta_ms > 0 ? secs(ev->eta_ms, a,
                                                                         sizeof(a)) : "");
        }
        break;
    case EV_STAGE_STEP:
        if (!(l = find_live(p, ev)))
            break;
        l->step = ev->step;
        l->steps = ev->steps;
        if (p->mode == PROGRESS_PLAIN && now_ms() - l->last_plain >= PLAIN_STEP_MS) {
            live_text(p, l, line, sizeof(line));
            fprintf(stderr, "sam3d:%s\n", line + 1);
            l->last_plain = now_ms();
        }
        break;
    case EV_STAGE_DONE:
        if ((l = find_live(p, ev)))
            *l = p->live[--p->n_live];
        done_text(p, ev, line, sizeof(line));
        if (p->mode == PROGRESS_TTY)
            tty_line(p, line, strlen(line));
        else
            fprintf(stderr, "sam3d:%s\n", line + 1);
        break;
    case EV_JOB_DONE:
        snprintf(line, sizeof(line), "sam3d: %s%s%s in %s%s%.600s", p->many_jobs ? ev->job->name
                 : "", p->many_jobs ? " " : "", report_status(ev->job->code),
                 secs(ev->job->wall_ms, a, sizeof(a)), ev->job->out_dir[0] ? " -> " : "",
                 ev->job->out_dir);
        if (p->mode == PROGRESS_TTY)
            tty_line(p, line, strlen(line));
        else
            fprintf(stderr, "%s\n", line);
        break;
    }
    pthread_mutex_unlock(&p->mu);
}

void progress_tick(void *arg)
{
    struct progress *p = arg;

    if (p->mode != PROGRESS_TTY || !p->n_live || now_ms() - p->last_draw < REDRAW_MS)
        return;
    pthread_mutex_lock(&p->mu);
    erase_live(p);
    draw_live(p);
    pthread_mutex_unlock(&p->mu);
}
