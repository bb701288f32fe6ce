/*
 * ckpt_list.h - the `sam3d inspect` listing (design.md "Inspecting checkpoints").
 *
 * One line per tensor, sorted bytewise by name, tab-separated:
 *     name<TAB>dtype<TAB>[d0,d1,...]            ([] for a 0-d tensor)
 * Names are printed through log_escape(LOG_ESCAPE_BACKSLASH): a newline, a tab,
 * a terminal escape or a backslash in a name shows as \n, \t, \x1b, \\, so a
 * hostile file cannot forge listing lines.
 * and with sha256 a fourth column: the hex SHA-256 of the tensor's logical
 * contents, elements in row-major order as little-endian bytes of the stored
 * dtype (a transposed or sliced view hashes what it shows, not its storage).
 */
#ifndef S3D_CKPT_LIST_H
#define S3D_CKPT_LIST_H

#include "ckpt.h"

#include <stdbool.h>
#include <stdio.h>

/* Print the listing of an open checkpoint to out. */
void ckpt_list_entries(FILE *out, const struct ckpt *c, bool sha256);
/* Hex SHA-256 of entry e's logical contents into hex[65]. */
void ckpt_entry_sha256(const struct ckpt_entry *e, char hex[65]);
/* Open path_key ("FILE" or "FILE:KEY") and print its listing. Returns 0, or a
 * negative s3d_err with the reason (no file name) in err[errlen]; nothing is
 * logged, so a CLI prints exactly one "error: FILE: reason" line. */
int  ckpt_list(FILE *out, const char *path_key, bool sha256, char *err, size_t errlen);

#endif
