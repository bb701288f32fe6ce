/*
 * pickle.c - restricted unpickler (interprets, never executes). See pickle.h.
 *
 * A stack machine like CPython's Lib/pickle.py _Unpickler: a value stack, a
 * stack of MARK positions and a memo. Every value is allocated here, in slabs
 * listed in pk->slabs; containers hold pointers, so memo aliasing behaves as in
 * Python. Every allocation is charged against pk->limit first (pickle.h).
 */
#include "pickle.h"
#include "err.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PK_MAX_MEMO  (1 << 22)     /* memo indices above this are refused */
#define PK_SLAB      256           /* values per slab */
#define PK_SMALL_MIN (-5)          /* shared small ints, as CPython's */
#define PK_SMALL_MAX 256

struct pk_slab {
    struct pk_slab  *next;
    int              n;
    struct pk_value  v[PK_SLAB];
};

struct unpickler {
    struct pickle    *pk;
    const uint8_t    *buf;
    size_t            len, pos;
    size_t            op_pos;      /* offset of the current opcode, for messages */
    bool              over;        /* the last failed allocation hit pk->limit */
    struct pk_value **stack;
    int               sp, scap;
    int              *marks;
    int               nm, mcap;
    struct pk_value **memo;
    int               memo_cap;
    uint64_t          memo_count;  /* distinct keys stored (MEMOIZE uses it, like len(memo)) */
    struct pk_value  *none, *bools[2], *small[PK_SMALL_MAX - PK_SMALL_MIN + 1];   /* shared */
};

static const char *const type_names[PK_TYPE_COUNT] = {
    "mark", "None", "bool", "int", "float", "str", "bytes", "tuple", "list", "set",
    "dict", "global", "opaque", "persistent id", "tensor",
};
_Static_assert(sizeof(type_names) / sizeof(type_names[0]) == PK_TYPE_COUNT, "type_names");

const char *pk_type_name(enum pk_type t)
{
    return (unsigned)t < PK_TYPE_COUNT ? type_names[t] : "?";
}

static int fail(struct unpickler *u, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(u->pk->err, sizeof(u->pk->err), "pickle offset %zu: ", u->op_pos);

    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(u->pk->err))
        vsnprintf(u->pk->err + n, sizeof(u->pk->err) - (size_t)n, fmt, ap);
    va_end(ap);
    return S3D_EFORMAT;
}

/* An allocation failed: over the input's memory limit (a hostile or broken
 * pickle: EFORMAT) or the machine is out of memory. */
static int oom(struct unpickler *u)
{
    if (u->over)
        return fail(u, "needs more than %zu bytes of memory, the limit for a %zu-byte pickle "
                    "(%d bytes a byte + %u; HINT: the file is corrupt or hostile; re-save it "
                    "with torch.save)", u->pk->limit, u->len, PICKLE_MEM_PER_BYTE,
                    PICKLE_MEM_BASE);
    snprintf(u->pk->err, sizeof(u->pk->err), "out of memory unpickling");
    return S3D_ENOMEM;
}

/* Count n more bytes against the limit; false (u->over set) when they do not fit. */
static bool charge(struct unpickler *u, size_t n)
{
    struct pickle *pk = u->pk;

    if (n > pk->limit - pk->bytes) {
        u->over = true;
        return false;
    }
    pk->bytes += n;
    return true;
}

/* Make *p (an array of *cap elements of elem bytes) hold at least need, charged. */
static bool grow(struct unpickler *u, void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return true;
    int nc = *cap ? *cap : 4;

    while (nc < need) {
        if (nc > (1 << 28))
            return false;
        nc *= 2;
    }
    if (!charge(u, (size_t)(nc - *cap) * elem))
        return false;
    void *np = realloc(*p, (size_t)nc * elem);

    if (!np)
        return false;
    *p = np;
    *cap = nc;
    return true;
}

static void *alloc(struct unpickler *u, size_t n)
{
    return charge(u, n) ? malloc(n) : NULL;
}

static struct pk_value *new_value(struct unpickler *u, enum pk_type t)
{
    struct pickle *pk = u->pk;
    struct pk_value *v;

    if (!pk->slabs || pk->slabs->n == PK_SLAB) {
        struct pk_slab *sl = alloc(u, sizeof(*sl));

        if (!sl)
            return NULL;
        sl->next = pk->slabs;
        sl->n = 0;
        pk->slabs = sl;
    }
    v = &pk->slabs->v[pk->slabs->n++];
    memset(v, 0, sizeof(*v));
    v->type = t;
    pk->n_values++;
    return v;
}

static bool add_item(struct unpickler *u, struct pk_value *c, struct pk_value *x)
{
    if (!grow(u, (void **)&c->items, &c->cap, c->n + 1, sizeof(*c->items)))
        return false;
    c->items[c->n++] = x;
    return true;
}

/* A fresh container of type t holding x[0..n) (exactly sized). */
static struct pk_value *new_container(struct unpickler *u, enum pk_type t,
                                      struct pk_value *const *x, int n)
{
    struct pk_value *c = new_value(u, t);

    if (!c || (n && !(c->items = alloc(u, (size_t)n * sizeof(*c->items)))))
        return NULL;
    if (n)
        memcpy(c->items, x, (size_t)n * sizeof(*c->items));
    c->n = c->cap = n;
    return c;
}

static int push(struct unpickler *u, struct pk_value *v)
{
    if (!v || !grow(u, (void **)&u->stack, &u->scap, u->sp + 1, sizeof(*u->stack)))
        return oom(u);
    u->stack[u->sp++] = v;
    return 0;
}

static struct pk_value *pop(struct unpickler *u)
{
    int floor = u->nm ? u->marks[u->nm - 1] : 0;

    return u->sp > floor ? u->stack[--u->sp] : NULL;
}

static struct pk_value *top(struct unpickler *u)
{
    int floor = u->nm ? u->marks[u->nm - 1] : 0;

    return u->sp > floor ? u->stack[u->sp - 1] : NULL;
}

/* Pop everything above the last MARK into a fresh container of type t. */
static int pop_mark_into(struct unpickler *u, enum pk_type t, struct pk_value **out)
{
    struct pk_value *c;
    int base;

    if (!u->nm)
        return fail(u, "no MARK on the stack");
    base = u->marks[--u->nm];
    c = new_container(u, t, u->stack + base, u->sp - base);
    if (!c)
        return oom(u);
    u->sp = base;
    *out = c;
    return 0;
}

static int need(struct unpickler *u, size_t n)
{
    if (u->len - u->pos < n)
        return fail(u, "truncated (needs %zu more bytes)", n);
    return 0;
}

static uint64_t rd_le(const uint8_t *p, int n)
{
    uint64_t v = 0;

    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int push_str(struct unpickler *u, enum pk_type t, size_t n)
{
    struct pk_value *v;
    int rc;

    if ((rc = need(u, n)))
        return rc;
    v = new_value(u, t);
    if (!v || !(v->s = alloc(u, n + 1)))
        return oom(u);
    memcpy(v->s, u->buf + u->pos, n);
    v->s[n] = 0;
    v->len = n;
    u->pos += n;
    return push(u, v);
}

/* Push an int or bool. Immutable small values are made once per load and shared,
 * as CPython shares None, True, False and the ints -5..256: a list of small ints
 * then costs a pointer per item. */
static int push_int(struct unpickler *u, enum pk_type t, int64_t i)
{
    struct pk_value **slot = NULL, *v;

    if (t == PK_BOOL)
        slot = &u->bools[i != 0];
    else if (t == PK_NONE)
        slot = &u->none;
    else if (i >= PK_SMALL_MIN && i <= PK_SMALL_MAX)
        slot = &u->small[i - PK_SMALL_MIN];
    if (slot && *slot)
        return push(u, *slot);
    if (!(v = new_value(u, t)))
        return oom(u);
    v->i = i;
    if (slot)
        *slot = v;
    return push(u, v);
}

static int push_opaque(struct unpickler *u, const char *what, const char *suffix)
{
    struct pk_value *v = new_value(u, PK_OPAQUE);
    size_t n = strlen(what) + strlen(suffix) + 1;

    if (!v || !(v->s = alloc(u, n)))
        return oom(u);
    snprintf(v->s, n, "%s%s", what, suffix);
    v->len = n - 1;
    return push(u, v);
}

/* Little-endian two's complement of n bytes (LONG1/LONG4). */
static int push_long(struct unpickler *u, size_t n)
{
    int rc;
    int64_t v = 0;

    if ((rc = need(u, n)))
        return rc;
    if (n > 8) {
        u->pos += n;
        return push_opaque(u, "int wider than 64 bits", "");
    }
    if (n) {
        uint64_t x = rd_le(u->buf + u->pos, (int)n);

        if (n < 8 && (x >> (8 * n - 1)) & 1)
            x |= ~0ull << (8 * n);
        memcpy(&v, &x, 8);
    }
    u->pos += n;
    return push_int(u, PK_INT, v);
}

/* The bytes up to '\n' (protocol-0 arguments); returns its length or -1. */
static long read_line(struct unpickler *u, const char **s)
{
    const uint8_t *nl = memchr(u->buf + u->pos, '\n', u->len - u->pos);
    long n;

    if (!nl)
        return -1;
    *s = (const char *)u->buf + u->pos;
    n = (long)(nl - (u->buf + u->pos));
    u->pos += (size_t)n + 1;
    return n;
}

static int make_global(struct unpickler *u, const char *mod, size_t ml, const char *name,
                       size_t nl)
{
    struct pk_value *v = new_value(u, PK_GLOBAL);

    if (!v || !(v->s = alloc(u, ml + nl + 2)))
        return oom(u);
    memcpy(v->s, mod, ml);
    v->s[ml] = '.';
    memcpy(v->s + ml + 1, name, nl);
    v->s[ml + nl + 1] = 0;
    v->len = ml + nl + 1;
    if (strlen(v->s) != v->len)
        return fail(u, "NUL byte in a global name");
    return push(u, v);
}

static int memo_put(struct unpickler *u, uint64_t idx)
{
    struct pk_value *v = top(u);

    if (!v)
        return fail(u, "memo store with an empty stack");
    if (idx >= PK_MAX_MEMO || idx > u->len)   /* Python's pickler numbers memo slots 0, 1, ... */
        return fail(u, "memo index %llu too large", (unsigned long long)idx);
    if ((int)idx >= u->memo_cap) {
        int old = u->memo_cap;

        if (!grow(u, (void **)&u->memo, &u->memo_cap, (int)idx + 1, sizeof(*u->memo)))
            return oom(u);
        memset(u->memo + old, 0, (size_t)(u->memo_cap - old) * sizeof(*u->memo));
    }
    if (!u->memo[idx])
        u->memo_count++;
    u->memo[idx] = v;
    return 0;
}

static int memo_get(struct unpickler *u, uint64_t idx)
{
    if (idx >= (uint64_t)u->memo_cap || !u->memo[idx])
        return fail(u, "memo key %llu was never stored", (unsigned long long)idx);
    return push(u, u->memo[idx]);
}

/* The memo index argument of PUT/GET (text line), BINPUT/BINGET (1 byte) or
 * LONG_BINPUT/LONG_BINGET (4 bytes). */
static int memo_arg(struct unpickler *u, uint8_t op, uint64_t *idx)
{
    char tmp[24], *end;
    const char *s;
    long n;
    int rc;

    if (op == 'p' || op == 'g') {
        if ((n = read_line(u, &s)) <= 0 || n >= (long)sizeof(tmp))
            return fail(u, "bad memo index line");
        memcpy(tmp, s, (size_t)n);
        tmp[n] = 0;
        *idx = strtoull(tmp, &end, 10);
        return *end ? fail(u, "bad memo index line") : 0;
    }
    n = op == 'q' || op == 'h' ? 1 : 4;
    if ((rc = need(u, (size_t)n)))
        return rc;
    *idx = rd_le(u->buf + u->pos, (int)n);
    u->pos += (size_t)n;
    return 0;
}

static bool is_int_tuple(const struct pk_value *t, int max)
{
    if (!t || t->type != PK_TUPLE || t->n > max)
        return false;
    for (int i = 0; i < t->n; i++)
        if (t->items[i]->type != PK_INT)
            return false;
    return true;
}

/* Apply a whitelisted callable f to the argument tuple a; anything else -> opaque. */
static int apply(struct unpickler *u, struct pk_value *f, struct pk_value *a, int depth)
{
    const char *fn = f->type == PK_GLOBAL ? f->s : NULL;
    struct pk_value *v;

    if (!fn || a->type != PK_TUPLE)
        return push_opaque(u, f->type == PK_GLOBAL || f->type == PK_OPAQUE ? f->s :
                           pk_type_name(f->type), "()");
    if (!strcmp(fn, "collections.OrderedDict") && a->n == 0)
        return push(u, new_value(u, PK_DICT));
    if (!strcmp(fn, "torch._utils._rebuild_tensor_v2")) {
        struct pk_value *st, *off, *size, *stride;

        if (a->n < 4)
            return fail(u, "_rebuild_tensor_v2 with %d arguments", a->n);
        st = a->items[0]; off = a->items[1]; size = a->items[2]; stride = a->items[3];
        if (st->type != PK_PERSID || off->type != PK_INT ||
            !is_int_tuple(size, TENSOR_MAX_DIMS) || !is_int_tuple(stride, TENSOR_MAX_DIMS) ||
            size->n != stride->n)
            return fail(u, "_rebuild_tensor_v2 arguments are not (storage, offset, size, "
                        "stride) with at most %d dimensions", TENSOR_MAX_DIMS);
        v = new_value(u, PK_TENSOR);
        if (!v || !(v->tensor = alloc(u, sizeof(*v->tensor))))
            return oom(u);
        memset(v->tensor, 0, sizeof(*v->tensor));
        v->tensor->storage = st;
        v->tensor->offset = off->i;
        v->tensor->ndim = size->n;
        for (int i = 0; i < size->n; i++) {
            v->tensor->shape[i] = size->items[i]->i;
            v->tensor->stride[i] = stride->items[i]->i;
        }
        return push(u, v);
    }
    if (!strcmp(fn, "torch._utils._rebuild_parameter") ||
        !strcmp(fn, "torch._utils._rebuild_parameter_with_state")) {
        if (a->n < 1 || a->items[0]->type != PK_TENSOR)
            return fail(u, "%s without a tensor argument", fn);
        return push(u, a->items[0]);
    }
    if (!strcmp(fn, "torch._tensor._rebuild_from_type_v2") && depth == 0) {
        if (a->n < 3 || a->items[2]->type != PK_TUPLE)
            return fail(u, "_rebuild_from_type_v2 arguments are not (func, type, args, ...)");
        return apply(u, a->items[0], a->items[2], depth + 1);
    }
    return push_opaque(u, fn, "()");
}

static int setitems(struct unpickler *u, struct pk_value *d, struct pk_value **kv, int n)
{
    if (n % 2)
        return fail(u, "SETITEMS with an odd number of items");
    if (d->type == PK_OPAQUE)
        return 0;                               /* state of an inert object: dropped */
    if (d->type != PK_DICT)
        return fail(u, "SETITEM on a %s", pk_type_name(d->type));
    for (int i = 0; i < n; i++)
        if (!add_item(u, d, kv[i]))
            return oom(u);
    return 0;
}

static int appends(struct unpickler *u, struct pk_value *l, struct pk_value **x, int n,
                   bool set)
{
    if (l->type == PK_OPAQUE)
        return 0;
    if (l->type != (set ? PK_SET : PK_LIST))
        return fail(u, "%s on a %s", set ? "ADDITEMS" : "APPEND", pk_type_name(l->type));
    for (int i = 0; i < n; i++)
        if (!add_item(u, l, x[i]))
            return oom(u);
    return 0;
}

static int run(struct unpickler *u)
{
    for (;;) {
        struct pk_value *a = NULL, *b = NULL, *c = NULL;
        const char *s;
        long n;
        int rc = 0;
        uint8_t op;

        u->op_pos = u->pos;
        if (u->pos >= u->len)
            return fail(u, "truncated (no STOP opcode)");
        op = u->buf[u->pos++];
        switch (op) {
        case 0x80:                                       /* PROTO */
            if ((rc = need(u, 1)))
                return rc;
            if (u->buf[u->pos] > 5)
                return fail(u, "unsupported pickle protocol %d", u->buf[u->pos]);
            u->pos++;
            break;
        case 0x95:                                       /* FRAME: framing is a hint */
            if ((rc = need(u, 8)))
                return rc;
            u->pos += 8;
            break;
        case '.':                                        /* STOP */
            if (!(a = pop(u)))
                return fail(u, "STOP with an empty stack");
            u->pk->root = a;
            return 0;
        case '(':                                        /* MARK */
            if (!grow(u, (void **)&u->marks, &u->mcap, u->nm + 1, sizeof(*u->marks)))
                return oom(u);
            u->marks[u->nm++] = u->sp;
            break;
        case '0':                                        /* POP */
            if (!pop(u))
                return fail(u, "POP with an empty stack");
            break;
        case '1':                                        /* POP_MARK */
            if (!u->nm)
                return fail(u, "POP_MARK without MARK");
            u->sp = u->marks[--u->nm];
            break;
        case '2':                                        /* DUP */
            if (!(a = top(u)))
                return fail(u, "DUP with an empty stack");
            rc = push(u, a);
            break;
        case 'N': rc = push_int(u, PK_NONE, 0); break;
        case 0x88: rc = push_int(u, PK_BOOL, 1); break;  /* NEWTRUE */
        case 0x89: rc = push_int(u, PK_BOOL, 0); break;  /* NEWFALSE */
        case 'J':                                        /* BININT */
            if ((rc = need(u, 4)))
                return rc;
            rc = push_int(u, PK_INT, (int32_t)rd_le(u->buf + u->pos, 4));
            u->pos += 4;
            break;
        case 'K':                                        /* BININT1 */
            if ((rc = need(u, 1)))
                return rc;
            rc = push_int(u, PK_INT, u->buf[u->pos++]);
            break;
        case 'M':                                        /* BININT2 */
            if ((rc = need(u, 2)))
                return rc;
            rc = push_int(u, PK_INT, (int64_t)rd_le(u->buf + u->pos, 2));
            u->pos += 2;
            break;
        case 0x8a:                                       /* LONG1 */
            if ((rc = need(u, 1)))
                return rc;
            n = u->buf[u->pos++];
            rc = push_long(u, (size_t)n);
            break;
        case 0x8b: {                                     /* LONG4 */
            int32_t n4;

            if ((rc = need(u, 4)))
                return rc;
            n4 = (int32_t)rd_le(u->buf + u->pos, 4);
            u->pos += 4;
            if (n4 < 0)
                return fail(u, "LONG4 with a negative length");
            rc = push_long(u, (size_t)n4);
            break;
        }
        case 'I':                                        /* INT (protocol 0) */
        case 'L': {                                      /* LONG (protocol 0) */
            char tmp[32], *end;
            long long x;

            if ((n = read_line(u, &s)) < 0 || n >= (long)sizeof(tmp))
                return fail(u, "bad text integer");
            memcpy(tmp, s, (size_t)n);
            tmp[n] = 0;
            if (n && tmp[n - 1] == 'L')
                tmp[n - 1] = 0;
            if (op == 'I' && (!strcmp(tmp, "00") || !strcmp(tmp, "01"))) {
                rc = push_int(u, PK_BOOL, tmp[1] == '1');
                break;
            }
            x = strtoll(tmp, &end, 10);
            if (!tmp[0] || *end)
                return fail(u, "bad text integer");
            rc = push_int(u, PK_INT, x);
            break;
        }
        case 'F': {                                      /* FLOAT (protocol 0) */
            char tmp[64], *end;

            if ((n = read_line(u, &s)) < 0 || n >= (long)sizeof(tmp))
                return fail(u, "bad text float");
            memcpy(tmp, s, (size_t)n);
            tmp[n] = 0;
            if (!(a = new_value(u, PK_FLOAT)))
                return oom(u);
            a->f = strtod(tmp, &end);
            if (!tmp[0] || *end)
                return fail(u, "bad text float");
            rc = push(u, a);
            break;
        }
        case 'G': {                                      /* BINFLOAT, big-endian */
            uint64_t x = 0;

            if ((rc = need(u, 8)))
                return rc;
            for (int i = 0; i < 8; i++)
                x = x << 8 | u->buf[u->pos + (size_t)i];
            u->pos += 8;
            if (!(a = new_value(u, PK_FLOAT)))
                return oom(u);
            memcpy(&a->f, &x, 8);
            rc = push(u, a);
            break;
        }
        case 'T':                                        /* BINSTRING */
        case 'X':                                        /* BINUNICODE */
        case 'B':                                        /* BINBYTES */
            if ((rc = need(u, 4)))
                return rc;
            n = (long)rd_le(u->buf + u->pos, 4);
            u->pos += 4;
            rc = push_str(u, op == 'B' ? PK_BYTES : PK_STR, (size_t)n);
            break;
        case 'U':                                        /* SHORT_BINSTRING */
        case 0x8c:                                       /* SHORT_BINUNICODE */
        case 'C':                                        /* SHORT_BINBYTES */
            if ((rc = need(u, 1)))
                return rc;
            n = u->buf[u->pos++];
            rc = push_str(u, op == 'C' ? PK_BYTES : PK_STR, (size_t)n);
            break;
        case 0x8d:                                       /* BINUNICODE8 */
        case 0x8e:                                       /* BINBYTES8 */
        case 0x96: {                                     /* BYTEARRAY8 */
            uint64_t n8;

            if ((rc = need(u, 8)))
                return rc;
            n8 = rd_le(u->buf + u->pos, 8);
            u->pos += 8;
            if (n8 > u->len - u->pos)
                return fail(u, "truncated (string of %llu bytes)", (unsigned long long)n8);
            rc = push_str(u, op == 0x8d ? PK_STR : PK_BYTES, (size_t)n8);
            break;
        }
        case ')': rc = push(u, new_value(u, PK_TUPLE)); break;   /* EMPTY_TUPLE */
        case ']': rc = push(u, new_value(u, PK_LIST)); break;    /* EMPTY_LIST */
        case '}': rc = push(u, new_value(u, PK_DICT)); break;    /* EMPTY_DICT */
        case 0x8f: rc = push(u, new_value(u, PK_SET)); break;    /* EMPTY_SET */
        case 't':                                        /* TUPLE */
        case 'l':                                        /* LIST */
        case 'd':                                        /* DICT */
        case 0x91:                                       /* FROZENSET */
            if ((rc = pop_mark_into(u, op == 't' ? PK_TUPLE : op == 'l' ? PK_LIST :
                                    op == 'd' ? PK_DICT : PK_SET, &a)))
                return rc;
            if (op == 'd' && a->n % 2)
                return fail(u, "DICT with an odd number of items");
            rc = push(u, a);
            break;
        case 0x85: case 0x86: case 0x87: {               /* TUPLE1..3 */
            int k = op - 0x84;
            int floor = u->nm ? u->marks[u->nm - 1] : 0;

            if (u->sp - floor < k)
                return fail(u, "TUPLE%d with %d items on the stack", k, u->sp - floor);
            if (!(a = new_container(u, PK_TUPLE, u->stack + u->sp - k, k)))
                return oom(u);
            u->sp -= k;
            rc = push(u, a);
            break;
        }
        case 'a':                                        /* APPEND */
            if (!(b = pop(u)) || !(a = top(u)))
                return fail(u, "APPEND needs a list and a value");
            rc = appends(u, a, &b, 1, false);
            break;
        case 'e':                                        /* APPENDS */
        case 0x90:                                       /* ADDITEMS */
        case 'u': {                                      /* SETITEMS */
            int base;

            if (!u->nm)
                return fail(u, "no MARK on the stack");
            base = u->marks[--u->nm];
            if (base == 0 || !(a = u->stack[base - 1]) ||
                (u->nm && u->marks[u->nm - 1] > base - 1))
                return fail(u, "nothing to add items to");
            if (op == 'u')
                rc = setitems(u, a, u->stack + base, u->sp - base);
            else
                rc = appends(u, a, u->stack + base, u->sp - base, op == 0x90);
            u->sp = base;
            break;
        }
        case 's':                                        /* SETITEM */
            if (!(c = pop(u)) || !(b = pop(u)) || !(a = top(u)))
                return fail(u, "SETITEM needs a dict, a key and a value");
            {
                struct pk_value *kv[2] = {b, c};

                rc = setitems(u, a, kv, 2);
            }
            break;
        case 'c': {                                      /* GLOBAL "module\nname\n" */
            const char *mod, *name;
            long ml, nl;

            if ((ml = read_line(u, &mod)) < 0 || (nl = read_line(u, &name)) < 0)
                return fail(u, "truncated GLOBAL");
            rc = make_global(u, mod, (size_t)ml, name, (size_t)nl);
            break;
        }
        case 0x93:                                       /* STACK_GLOBAL */
            if (!(b = pop(u)) || !(a = pop(u)) || a->type != PK_STR || b->type != PK_STR)
                return fail(u, "STACK_GLOBAL needs two strings");
            rc = make_global(u, a->s, a->len, b->s, b->len);
            break;
        case 'R':                                        /* REDUCE */
            if (!(b = pop(u)) || !(a = pop(u)))
                return fail(u, "REDUCE needs a callable and arguments");
            rc = apply(u, a, b, 0);
            break;
        case 'b':                                        /* BUILD: never runs __setstate__ */
            if (!(b = pop(u)) || !(a = top(u)))
                return fail(u, "BUILD needs an object and a state");
            break;
        case 0x81:                                       /* NEWOBJ cls args */
            if (!(b = pop(u)) || !(a = pop(u)))
                return fail(u, "NEWOBJ needs a class and arguments");
            rc = push_opaque(u, a->type == PK_GLOBAL ? a->s : pk_type_name(a->type),
                             ".__new__()");
            break;
        case 0x92:                                       /* NEWOBJ_EX cls args kwargs */
            if (!(c = pop(u)) || !(b = pop(u)) || !(a = pop(u)))
                return fail(u, "NEWOBJ_EX needs a class, arguments and keywords");
            rc = push_opaque(u, a->type == PK_GLOBAL ? a->s : pk_type_name(a->type),
                             ".__new__()");
            break;
        case 'Q':                                        /* BINPERSID */
            if (!(a = pop(u)))
                return fail(u, "BINPERSID with an empty stack");
            if (!(b = new_container(u, PK_PERSID, &a, 1)))
                return oom(u);
            rc = push(u, b);
            break;
        case 'p':                                        /* PUT (protocol 0) */
        case 'q':                                        /* BINPUT */
        case 'r': {                                      /* LONG_BINPUT */
            uint64_t idx;

            if ((rc = memo_arg(u, op, &idx)))
                return rc;
            rc = memo_put(u, idx);
            break;
        }
        case 0x94:                                       /* MEMOIZE */
            rc = memo_put(u, u->memo_count);
            break;
        case 'g':                                        /* GET (protocol 0) */
        case 'h':                                        /* BINGET */
        case 'j': {                                      /* LONG_BINGET */
            uint64_t idx;

            if ((rc = memo_arg(u, op, &idx)))
                return rc;
            rc = memo_get(u, idx);
            break;
        }
        default:
            return fail(u, "unsupported pickle opcode 0x%02x (HINT: re-save the file with "
                        "torch.save, which emits only supported opcodes)", op);
        }
        if (rc)
            return rc;
    }
}

int pickle_load(struct pickle *pk, const uint8_t *buf, size_t len)
{
    struct unpickler u = {0};
    int rc;

    memset(pk, 0, sizeof(*pk));
    pk->limit = len > (SIZE_MAX - PICKLE_MEM_BASE) / PICKLE_MEM_PER_BYTE ? SIZE_MAX :
                len * PICKLE_MEM_PER_BYTE + PICKLE_MEM_BASE;
    u.pk = pk;
    u.buf = buf;
    u.len = len;
    rc = run(&u);
    free(u.stack);
    free(u.marks);
    free(u.memo);
    pk->bytes -= ((size_t)u.scap * sizeof(*u.stack) + (size_t)u.mcap * sizeof(*u.marks) +
                  (size_t)u.memo_cap * sizeof(*u.memo));
    if (rc) {
        char err[sizeof(pk->err)];

        memcpy(err, pk->err, sizeof(err));
        pickle_free(pk);
        memcpy(pk->err, err, sizeof(err));
    }
    return rc;
}

void pickle_free(struct pickle *pk)
{
    if (!pk)
        return;
    while (pk->slabs) {
        struct pk_slab *sl = pk->slabs;

        for (int i = 0; i < sl->n; i++) {
            free(sl->v[i].s);
            free(sl->v[i].items);
            free(sl->v[i].tensor);
        }
        pk->slabs = sl->next;
        free(sl);
    }
    memset(pk, 0, sizeof(*pk));
}
