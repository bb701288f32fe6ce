/*
 * json_min.h - the JSON subset a safetensors header needs, parsed into a flat
 * node array (jsmn style): objects, arrays, strings, numbers, true/false/null.
 *
 * Nodes are stored in document order; an object's children alternate key,
 * value; node.next is the index just past the node's subtree, so siblings are
 * walked with i = nodes[i].next. Strings stay in the source text until
 * json_string() decodes them (escapes, \uXXXX incl. surrogate pairs -> UTF-8).
 * Nesting is limited to JSON_MAX_DEPTH; the parser never recurses deeper.
 */
#ifndef S3D_JSON_MIN_H
#define S3D_JSON_MIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 64

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json_node {
    enum json_type type;
    size_t start;      /* byte offset of the value in the text (strings: after the quote) */
    size_t end;        /* one past the value (strings: the closing quote) */
    int    size;       /* OBJECT: number of key/value pairs; ARRAY: elements; else 0 */
    int    next;       /* index of the node after this subtree */
};

struct json_doc {
    const char       *text;    /* borrowed; must outlive the doc */
    size_t            len;
    struct json_node *nodes;   /* malloc'ed, n entries; nodes[0] is the root */
    int               n;
};

/* Parse text[0..len) (one value, surrounding whitespace allowed). Returns 0, or
 * S3D_EFORMAT with a reason ("offset 17: expected ':'") in err[errlen]; nothing
 * is logged. The doc borrows text; free it with json_free. */
int  json_parse(struct json_doc *doc, const char *text, size_t len, char *err, size_t errlen);
void json_free(struct json_doc *doc);

/* Decode string node i into buf (NUL-terminated). Returns the decoded length, or
 * -1 when node i is not a string, contains NUL, or does not fit in cap bytes. */
long json_string(const struct json_doc *doc, int i, char *buf, size_t cap);
/* Node i as an exact non-negative or negative integer (no fraction/exponent,
 * fits in int64). */
bool json_int64(const struct json_doc *doc, int i, int64_t *out);
/* In object node obj, the value node for key, or -1. */
int  json_object_get(const struct json_doc *doc, int obj, const char *key);

/* Byte c as it stands inside a JSON string literal: '"' and '\\' escaped,
 * control characters as \u00XX, any other byte as it is (UTF-8 passes through).
 * out gets it NUL-terminated; returns its length (1, 2 or 6). */
int  json_escape_byte(char out[7], unsigned char c);

#endif
