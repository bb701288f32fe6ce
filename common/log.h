/*
 * log.h - leveled logging to stderr, and the one reporter for internal faults.
 *
 * Line format: "[<stage> <pid>] <L> HH:MM:SS.mmm <message>" with L one of
 * D I W E. The level comes from S3D_LOG=debug|info|warn|error (default info).
 * Stages leave stdout unused; nothing is logged per element or per kernel.
 * Messages often quote what a file or a client sent (a tensor name, a path):
 * every line is written through log_escape(), so none can forge a line of its
 * own or send terminal escapes.
 */
#ifndef S3D_LOG_H
#define S3D_LOG_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Set the name printed in every line (e.g. "depth", "sam3d"); reads S3D_LOG. */
void log_init(const char *name);
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

/* Copy the NUL-terminated s into out[len] (always NUL-terminated, cut when out
 * is short) with every byte that a terminal would act on written visibly:
 * C0 controls and DEL as \n \t \r or \xHH, UTF-8 encoded C1 controls
 * (U+0080..U+009F) and bytes that are not valid UTF-8 as \xHH. With
 * LOG_ESCAPE_BACKSLASH a backslash becomes "\\" too (listings, where the text
 * must read back unambiguously). Returns the length written. */
#define LOG_ESCAPE_BACKSLASH 1
size_t log_escape(char *out, size_t len, const char *s, int flags);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* Report one bad input: formatted into err (len bytes) when err is not NULL
 * (the caller puts it in a reply), else logged at error level. Returns code. */
int log_error_to(int code, char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Internal fault: log file, line, failing expression and symbolic error, then abort(). */
#ifdef __cplusplus
[[noreturn]]
#else
_Noreturn
#endif
void s3d_fatal(const char *file, int line, const char *expr, const char *name,
               const char *detail);

/* Broken invariant between our own pieces of code (never for user input). */
#define ASSERT(cond) do {                                                   \
        if (!(cond))                                                        \
            s3d_fatal(__FILE__, __LINE__, #cond, "ASSERT", "invariant broken"); \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
