/*
 * json_min.c - a small strict JSON parser for safetensors headers. See json_min.h.
 *
 * Iterative: an explicit stack of open containers (depth <= JSON_MAX_DEPTH) so a
 * hostile header cannot exhaust the C stack. RFC 8259 grammar; numbers are
 * validated but only integers are ever converted (json_int64).
 */
#include "json_min.h"
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
    const char       *s;
    size_t            len;
    size_t            pos;
    struct json_node *nodes;
    int               n, cap;
    char             *err;
    size_t            errlen;
};

static int fail(struct parser *p, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!p->errlen)
        return S3D_EFORMAT;
    n = snprintf(p->err, p->errlen, "offset %zu: ", p->pos);
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < p->errlen)
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return S3D_EFORMAT;
}

static void skip_ws(struct parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int new_node(struct parser *p, enum json_type t, size_t start)
{
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 64;
        struct json_node *nn = realloc(p->nodes, (size_t)cap * sizeof(*nn));

        if (!nn)
            return -1;
        p->nodes = nn;
        p->cap = cap;
    }
    p->nodes[p->n] = (struct json_node){t, start, start, 0, p->n + 1};
    return p->n++;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* p->pos at the opening quote; leaves pos after the closing quote. */
static int scan_string(struct parser *p, size_t *start, size_t *end)
{
    p->pos++;
    *start = p->pos;
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos];

        if (c == '"') {
            *end = p->pos++;
            return 0;
        }
        if (c < 0x20)
            return fail(p, "control character in string");
        if (c == '\\') {
            if (p->pos + 1 >= p->len)
                break;
            c = (unsigned char)p->s[p->pos + 1];
            if (c == 'u') {
                if (p->pos + 6 > p->len)
                    break;
                for (int k = 2; k < 6; k++)
                    if (hexval(p->s[p->pos + k]) < 0)
                        return fail(p, "bad \\u escape");
                p->pos += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", c) || !c)
                return fail(p, "bad escape \\%c", c);
            p->pos += 2;
            continue;
        }
        p->pos++;
    }
    return fail(p, "unterminated string");
}

static int scan_number(struct parser *p)
{
    size_t q = p->pos;

    if (q < p->len && p->s[q] == '-')
        q++;
    if (q >= p->len || p->s[q] < '0' || p->s[q] > '9')
        return fail(p, "bad number");
    if (p->s[q] == '0')
        q++;
    else
        while (q < p->len && p->s[q] >= '0' && p->s[q] <= '9')
            q++;
    if (q < p->len && p->s[q] == '.') {
        q++;
        if (q >= p->len || p->s[q] < '0' || p->s[q] > '9')
            return fail(p, "bad fraction");
        while (q < p->len && p->s[q] >= '0' && p->s[q] <= '9')
            q++;
    }
    if (q < p->len && (p->s[q] == 'e' || p->s[q] == 'E')) {
        q++;
        if (q < p->len && (p->s[q] == '+' || p->s[q] == '-'))
            q++;
        if (q >= p->len || p->s[q] < '0' || p->s[q] > '9')
            return fail(p, "bad exponent");
        while (q < p->len && p->s[q] >= '0' && p->s[q] <= '9')
            q++;
    }
    p->pos = q;
    return 0;
}

static bool match_word(struct parser *p, const char *w)
{
    size_t n = strlen(w);

    if (p->len - p->pos < n || memcmp(p->s + p->pos, w, n))
        return false;
    p->pos += n;
    return true;
}

/*
 * The grammar as a loop: stack[d] is the node index of the d-th open container.
 * Each turn reads one value (preceded by `"key":` inside an object); an opened
 * container is pushed, and value_done consumes ',' or closing brackets.
 */
int json_parse(struct json_doc *doc, const char *text, size_t len, char *err, size_t errlen)
{
    struct parser p = {text, len, 0, NULL, 0, 0, err, errlen};
    int stack[JSON_MAX_DEPTH];
    int depth = 0;
    int rc = S3D_EFORMAT;

    memset(doc, 0, sizeof(*doc));
    if (errlen)
        err[0] = 0;
    for (;;) {
        int parent = depth ? stack[depth - 1] : -1;
        bool in_obj = parent >= 0 && p.nodes[parent].type == JSON_OBJECT;
        int idx;
        char c;

        skip_ws(&p);
        if (p.pos >= len) {
            rc = fail(&p, "unexpected end of header");
            goto out_fail;
        }
        c = text[p.pos];
        if (in_obj) {          /* key ':' */
            size_t ks, ke;

            if (c != '"') {
                rc = fail(&p, "expected a key string");
                goto out_fail;
            }
            if ((rc = scan_string(&p, &ks, &ke)))
                goto out_fail;
            if ((idx = new_node(&p, JSON_STRING, ks)) < 0)
                goto out_nomem;
            p.nodes[idx].end = ke;
            skip_ws(&p);
            if (p.pos >= len || text[p.pos] != ':') {
                rc = fail(&p, "expected ':'");
                goto out_fail;
            }
            p.pos++;
            skip_ws(&p);
            if (p.pos >= len) {
                rc = fail(&p, "unexpected end of header");
                goto out_fail;
            }
            c = text[p.pos];
        }
        /* a value */
        if (c == '{' || c == '[') {
            if (depth == JSON_MAX_DEPTH) {
                rc = fail(&p, "nesting deeper than %d", JSON_MAX_DEPTH);
                goto out_fail;
            }
            if ((idx = new_node(&p, c == '{' ? JSON_OBJECT : JSON_ARRAY, p.pos)) < 0)
                goto out_nomem;
            if (parent >= 0)
                p.nodes[parent].size++;
            stack[depth++] = idx;
            p.pos++;
            skip_ws(&p);
            if (p.pos < len && (text[p.pos] == '}' || text[p.pos] == ']')) {
                if ((text[p.pos] == '}') != (c == '{')) {
                    rc = fail(&p, "mismatched bracket");
                    goto out_fail;
                }
                p.pos++;
                goto value_done_close;
            }
            continue;
        }
        if (c == '"') {
            size_t s0, s1;

            if ((rc = scan_string(&p, &s0, &s1)))
                goto out_fail;
            if ((idx = new_node(&p, JSON_STRING, s0)) < 0)
                goto out_nomem;
            p.nodes[idx].end = s1;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t s0 = p.pos;

            if ((rc = scan_number(&p)))
                goto out_fail;
            if ((idx = new_node(&p, JSON_NUMBER, s0)) < 0)
                goto out_nomem;
            p.nodes[idx].end = p.pos;
        } else {
            size_t s0 = p.pos;
            enum json_type t;

            if (match_word(&p, "true") || match_word(&p, "false"))
                t = JSON_BOOL;
            else if (match_word(&p, "null"))
                t = JSON_NULL;
            else {
                rc = fail(&p, "unexpected character 0x%02x", (unsigned char)c);
                goto out_fail;
            }
            if ((idx = new_node(&p, t, s0)) < 0)
                goto out_nomem;
            p.nodes[idx].end = p.pos;
        }
        if (parent >= 0)
            p.nodes[parent].size++;
        goto value_done;

value_done_close:
        /* the container on top of the stack just closed (empty) */
        {
            int top = stack[--depth];

            p.nodes[top].end = p.pos;
            p.nodes[top].next = p.n;
        }
value_done:
        /* after a value: ',' continues the container, or it closes, or the doc ends */
        for (;;) {
            skip_ws(&p);
            if (!depth) {
                if (p.pos != len) {
                    rc = fail(&p, "trailing bytes after the header object");
                    goto out_fail;
                }
                doc->text = text;
                doc->len = len;
                doc->nodes = p.nodes;
                doc->n = p.n;
                return 0;
            }
            if (p.pos >= len) {
                rc = fail(&p, "unexpected end of header");
                goto out_fail;
            }
            c = text[p.pos];
            if (c == ',') {
                p.pos++;
                skip_ws(&p);
                if (p.pos < len && (text[p.pos] == '}' || text[p.pos] == ']')) {
                    rc = fail(&p, "trailing comma");
                    goto out_fail;
                }
                break;
            }
            if (c == '}' || c == ']') {
                int top = stack[depth - 1];

                if ((c == '}') != (p.nodes[top].type == JSON_OBJECT)) {
                    rc = fail(&p, "mismatched bracket");
                    goto out_fail;
                }
                p.pos++;
                depth--;
                p.nodes[top].end = p.pos;
                p.nodes[top].next = p.n;
                continue;
            }
            rc = fail(&p, "expected ',' or a closing bracket");
            goto out_fail;
        }
    }
out_nomem:
    rc = S3D_ENOMEM;
    if (errlen)
        snprintf(err, errlen, "out of memory parsing JSON");
out_fail:
    free(p.nodes);
    return rc;
}

void json_free(struct json_doc *doc)
{
    if (!doc)
        return;
    free(doc->nodes);
    memset(doc, 0, sizeof(*doc));
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63));
        o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

static uint32_t hex4(const char *s)
{
    return (uint32_t)(hexval(s[0]) << 12 | hexval(s[1]) << 8 | hexval(s[2]) << 4 | hexval(s[3]));
}

long json_string(const struct json_doc *doc, int i, char *buf, size_t cap)
{
    const struct json_node *nd;
    size_t o = 0;

    if (i < 0 || i >= doc->n || doc->nodes[i].type != JSON_STRING || !cap)
        return -1;
    nd = &doc->nodes[i];
    for (size_t q = nd->start; q < nd->end;) {
        char tmp[4];
        size_t k = 1;
        char c = doc->text[q];

        if (c != '\\') {
            tmp[0] = c;
            q++;
        } else {
            c = doc->text[q + 1];
            q += 2;
            switch (c) {
            case 'b': tmp[0] = '\b'; break;
            case 'f': tmp[0] = '\f'; break;
            case 'n': tmp[0] = '\n'; break;
            case 'r': tmp[0] = '\r'; break;
            case 't': tmp[0] = '\t'; break;
            case 'u': {
                uint32_t cp = hex4(doc->text + q);

                q += 4;
                if (cp >= 0xD800 && cp < 0xDC00 && q + 6 <= nd->end &&
                    doc->text[q] == '\\' && doc->text[q + 1] == 'u') {
                    uint32_t lo = hex4(doc->text + q + 2);

                    if (lo >= 0xDC00 && lo < 0xE000) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        q += 6;
                    }
                }
                if (cp == 0)
                    return -1;
                k = put_utf8(tmp, cp);
                break;
            }
            default: tmp[0] = c; break;   /* \" \\ \/ */
            }
        }
        if (tmp[0] == 0 || o + k >= cap)
            return -1;
        memcpy(buf + o, tmp, k);
        o += k;
    }
    buf[o] = 0;
    return (long)o;
}

bool json_int64(const struct json_doc *doc, int i, int64_t *out)
{
    const struct json_node *nd;
    bool neg;
    uint64_t v = 0;
    size_t q;

    if (i < 0 || i >= doc->n || doc->nodes[i].type != JSON_NUMBER)
        return false;
    nd = &doc->nodes[i];
    q = nd->start;
    neg = doc->text[q] == '-';
    q += neg;
    if (q >= nd->end)
        return false;
    for (; q < nd->end; q++) {
        char c = doc->text[q];

        if (c < '0' || c > '9')
            return false;              /* fraction or exponent */
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(c - '0');
    }
    if (v > (uint64_t)INT64_MAX + neg)
        return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

int json_object_get(const struct json_doc *doc, int obj, const char *key)
{
    char buf[256];
    int i;

    if (obj < 0 || obj >= doc->n || doc->nodes[obj].type != JSON_OBJECT)
        return -1;
    i = obj + 1;
    for (int k = 0; k < doc->nodes[obj].size; k++) {
        int v = doc->nodes[i].next;

        if (json_string(doc, i, buf, sizeof(buf)) >= 0 && !strcmp(buf, key))
            return v;
        i = doc->nodes[v].next;
    }
    return -1;
}

int json_escape_byte(char out[7], unsigned char c)
{
    static const char hex[] = "0123456789abcdef";

    if (c == '"' || c == '\\') {
        out[0] = '\\';
        out[1] = (char)c;
        out[2] = 0;
        return 2;
    }
    if (c < 0x20) {
        memcpy(out, "\\u00", 4);
        out[4] = hex[c >> 4];
        out[5] = hex[c & 15];
        out[6] = 0;
        return 6;
    }
    out[0] = (char)c;
    out[1] = 0;
    return 1;
}
