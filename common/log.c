/*
 * log.c - leveled stderr logging and s3d_fatal(). See log.h.
 */
#define _POSIX_C_SOURCE 200809L
#include "log.h"
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char           log_name[32] = "sam3d";
static enum log_level log_level    = LOG_INFO;

static enum log_level log_level_from_env(void)
{
    const char *s = getenv("S3D_LOG");

    if (!s)
        return LOG_INFO;
    if (!strcmp(s, "debug"))
        return LOG_DEBUG;
    if (!strcmp(s, "warn"))
        return LOG_WARN;
    if (!strcmp(s, "error"))
        return LOG_ERROR;
    return LOG_INFO;
}

void log_init(const char *name)
{
    snprintf(log_name, sizeof(log_name), "%s", name ? name : "sam3d");
    log_level = log_level_from_env();
}

void log_set_level(enum log_level level) { log_level = level; }

bool log_enabled(enum log_level level) { return level >= log_level; }

/* Length of the valid UTF-8 sequence at s (2..4), or 0. */
static int utf8_len(const unsigned char *s)
{
    int n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;

    if (s[0] >= 0xf5)
        return 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((n == 3 && s[0] == 0xe0 && s[1] < 0xa0) || (n == 3 && s[0] == 0xed && s[1] >= 0xa0) ||
        (n == 4 && s[0] == 0xf0 && s[1] < 0x90) || (n == 4 && s[0] == 0xf4 && s[1] >= 0x90))
        return 0;                              /* overlong, surrogate, past U+10FFFF */
    return n;
}

size_t log_escape(char *out, size_t len, const char *s, int flags)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;

    if (!len)
        return 0;
    while (*p) {
        char esc[8];
        const char *piece = esc;
        size_t pl;
        int u = *p >= 0x80 ? utf8_len(p) : 0;

        if (*p == '\\' && (flags & LOG_ESCAPE_BACKSLASH)) {
            piece = "\\\\";
            pl = 2;
        } else if (*p == '\n' || *p == '\t' || *p == '\r') {
            esc[0] = '\\';
            esc[1] = *p == '\n' ? 'n' : *p == '\t' ? 't' : 'r';
            pl = 2;
        } else if (*p < 0x20 || *p == 0x7f || (*p >= 0x80 && !u) ||
                   (u == 2 && p[0] == 0xc2 && p[1] < 0xa0)) {
            snprintf(esc, sizeof(esc), "\\x%02x", *p);   /* C1 as UTF-8: its lead byte */
            pl = 4;
        } else {
            piece = (const char *)p;
            pl = u ? (size_t)u : 1;
        }
        if (o + pl >= len)
            break;
        memcpy(out + o, piece, pl);
        o += pl;
        p += piece == (const char *)p ? pl : 1;
    }
    out[o] = 0;
    return o;
}

static void log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
    static const char letters[] = "DIWE";
    struct timeval tv;
    struct tm tm;
    char line[4096], msg[3072];
    int n;

    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "[%s %d] %c %02d:%02d:%02d.%03d ", log_name,
                 (int)getpid(), letters[level], tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000));
    if (n < 0)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = (int)strlen(msg);
    if (n && msg[n - 1] == '\n')
        msg[n - 1] = 0;
    n = (int)strlen(line);
    log_escape(line + n, sizeof(line) - (size_t)n - 1, msg, 0);
    n = (int)strlen(line);
    if (n == 0 || line[n - 1] != '\n') {
        line[n++] = '\n';
        line[n] = 0;
    }
    fputs(line, stderr);   /* one write per line keeps lines whole across processes */
    fflush(stderr);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    if (level < log_level)
        return;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}

int log_error_to(int code, char *err, size_t len, const char *fmt, ...)
{
    char buf[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err ? err : buf, err ? len : sizeof(buf), fmt, ap);
    va_end(ap);
    if (!err)
        log_error("%s", buf);
    return code;
}

void s3d_fatal(const char *file, int line, const char *expr, const char *name,
               const char *detail)
{
    log_msg(LOG_ERROR, "FATAL %s:%d: %s failed: %s (%s)", file, line, expr,
            name ? name : "?", detail ? detail : "");
    abort();
}

const char *s3d_strerror(int err)
{
    static const char *names[S3D_ERR_COUNT] = {
        "S3D_OK", "S3D_EIO", "S3D_EFORMAT", "S3D_ESHAPE", "S3D_EPROTO",
        "S3D_ENOMEM", "S3D_EINVAL", "S3D_ETIMEOUT", "S3D_ENOTFOUND", "S3D_EDEVICE",
    };

    if (err > 0 || -err >= S3D_ERR_COUNT)
        return "S3D_E?";
    return names[-err];
}
