/*
 * test_pickle.c - the restricted unpickler: every value type Python writes with
 * protocols 2, 4 and 5 (fixtures), hand-assembled opcode sequences, hostile
 * pickles (os.system through REDUCE: parsed into inert values, never run), and
 * one malformed input per error branch.
 */
#include "ckpt_testutil.h"
#include "err.h"
#include "harness.h"
#include "log.h"
#include "pickle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct pk_value *get(const struct pk_value *d, const char *key)
{
    for (int i = 0; d && d->type == PK_DICT && i + 1 < d->n; i += 2)
        if (d->items[i]->type == PK_STR && !strcmp(d->items[i]->s, key))
            return d->items[i + 1];
    return NULL;
}

static void test_types(int proto)
{
    static const int64_t ints[] = {0, 1, -1, 255, 256, 65535, 65536, -2147483648LL, 2147483648LL,
                                   INT64_MAX, INT64_MIN};
    char name[32];
    size_t n;
    uint8_t *buf;
    struct pickle pk;
    const struct pk_value *r, *v;

    snprintf(name, sizeof(name), "types_p%d.pkl", proto);
    buf = read_file(fixture(name), &n);
    if (!buf) {
        CHECK(0, "missing %s", name);
        return;
    }
    CHECK(pickle_load(&pk, buf, n) == 0, "%s: %s", name, pk.err);
    r = pk.root;
    CHECK(r && r->type == PK_DICT && r->n == 2 * 17, "%s: root dict of 17", name);
    v = get(r, "ints");
    CHECK(v && v->type == PK_LIST && v->n == 11);
    for (int i = 0; v && i < v->n && i < 11; i++)
        CHECK(v->items[i]->type == PK_INT && v->items[i]->i == ints[i], "%s ints[%d]", name, i);
    v = get(r, "big");
    CHECK(v && v->type == PK_OPAQUE, "2**70 is opaque");
    CHECK((v = get(r, "f")) && v->type == PK_FLOAT && v->f == 1.5);
    CHECK((v = get(r, "neg_f")) && v->type == PK_FLOAT && v->f == -0.25);
    CHECK((v = get(r, "s")) && v->type == PK_STR && !strcmp(v->s, "h\xc3\xa9llo"));
    CHECK((v = get(r, "b")) && (v->type == PK_BYTES || v->type == PK_OPAQUE));
    if (proto >= 3)
        CHECK(v && v->type == PK_BYTES && v->len == 3 && !memcmp(v->s, "\x00\xffz", 3));
    CHECK((v = get(r, "t")) && v->type == PK_TUPLE && v->n == 3 && v->items[2]->i == 3);
    CHECK((v = get(r, "t0")) && v->type == PK_TUPLE && v->n == 0);
    CHECK((v = get(r, "t1")) && v->type == PK_TUPLE && v->n == 1 && !strcmp(v->items[0]->s, "x"));
    v = get(r, "set");
    CHECK(v && (proto >= 4 ? v->type == PK_SET && v->n == 1 && v->items[0]->i == 5
                           : v->type == PK_OPAQUE), "%s set", name);
    v = get(r, "fs");
    CHECK(v && (proto >= 4 ? v->type == PK_SET && v->n == 1 && v->items[0]->i == 6
                           : v->type == PK_OPAQUE), "%s frozenset", name);
    CHECK((v = get(r, "none")) && v->type == PK_NONE);
    CHECK((v = get(r, "bools")) && v->n == 2 && v->items[0]->type == PK_BOOL &&
          v->items[0]->i == 1 && v->items[1]->i == 0);
    CHECK((v = get(r, "shared")) && v->n == 2 && v->items[0] == v->items[1] &&
          v->items[0]->type == PK_LIST && v->items[0]->n == 2, "memo keeps identity");
    CHECK((v = get(r, "obj")) && v->type == PK_OPAQUE && strstr(v->s, "HyperCfg"),
          "class instance is opaque: %s", v ? v->s : "");
    CHECK((v = get(r, "od")) && v->type == PK_DICT && v->n == 2 && !strcmp(v->items[0]->s, "k"));
    CHECK((v = get(r, "long_list")) && v->type == PK_LIST && v->n == 1200 &&
          v->items[1199]->i == 1199);
    pickle_free(&pk);
    {   /* every truncation fails */
        int fails = 0;

        for (size_t k = 0; k < n; k++) {
            fails += pickle_load(&pk, buf, k) != 0;
            pickle_free(&pk);
        }
        CHECK(fails == (int)n, "%d of %zu truncations refused", fails, n);
    }
    free(buf);
    printf("%s: every value as Python wrote it; all truncations refused\n", name);
}

static void test_hostile(void)
{
    static const char *files[] = {"hostile_p2.pkl", "hostile_p4.pkl"};

    unlink(PWNED_MARKER);
    for (int f = 0; f < 2; f++) {
        size_t n;
        uint8_t *buf = read_file(fixture(files[f]), &n);
        struct pickle pk;
        const struct pk_value *v;

        CHECK(buf && pickle_load(&pk, buf, n) == 0, "%s", files[f]);
        v = get(pk.root, "evil");
        CHECK(v && v->type == PK_OPAQUE && strstr(v->s, "system()"), "%s: %s", files[f],
              v ? v->s : "");
        v = get(pk.root, "x");
        CHECK(v && v->type == PK_LIST && v->n == 2);
        pickle_free(&pk);
        free(buf);
    }
    CHECK(access(PWNED_MARKER, F_OK) != 0, "os.system was never called");
    printf("hostile pickles: os.system REDUCE parsed as an inert value, nothing executed\n");
}

struct hand {
    const char *what;
    const char *bytes;
    size_t      len;        /* 0: strlen */
    const char *expect;     /* NULL: must parse; else substring of the error */
};

static void test_hand(void)
{
    static const struct hand cases[] = {
        {"os.system via REDUCE", "cos\nsystem\nX\x05\0\0\0touch\x85R.", 24, NULL},
        {"protocol-0 numbers", "(I42\nI01\nL-5L\nF0.5\nt.", 0, NULL},
        {"PUT/GET text memo", "]p0\ng0\n\x86.", 0, NULL},
        {"POP_MARK", "(K\x01K\x02" "1N.", 0, NULL},
        {"DUP", "K\x07" "2\x86.", 0, NULL},
        {"FROZENSET", "\x80\x04(K\x01\x91.", 0, NULL},
        {"NEWOBJ_EX", "c__main__\nC\n)}\x92.", 0, NULL},
        {"BUILD keeps opaque", "c__main__\nC\n)\x81}b.", 0, NULL},
        {"BYTEARRAY8", "\x96\x02\0\0\0\0\0\0\0ab.", 13, NULL},
        {"cyclic list", "\x80\x02]q\x00h\x00" "a.", 9, NULL},
        {"MEMOIZE + STACK_GLOBAL", "\x80\x04\x95\x10\0\0\0\0\0\0\0\x8c\x05torch\x94\x8c\x04"
         "Size\x94\x93\x94.", 34, NULL},
        {"empty input", "", 0, "truncated"},
        {"no STOP", "N", 0, "no STOP"},
        {"STOP on empty stack", ".", 0, "empty stack"},
        {"pop across a MARK", "K\x01(.", 0, "empty stack"},
        {"TUPLE without MARK", "\x80\x02K\x01t.", 0, "no MARK"},
        {"TUPLE2 short", "K\x01\x86.", 0, "TUPLE2"},
        {"SETITEM on a list", "]K\x01K\x02s.", 0, "SETITEM on a list"},
        {"APPEND on an int", "K\x01K\x02" "a.", 0, "APPEND on a int"},
        {"SETITEMS odd", "}(K\x01u.", 0, "odd"},
        {"SETITEMS on nothing", "(K\x01K\x02u.", 0, "nothing to add"},
        {"DICT odd", "(K\x01" "d.", 0, "odd"},
        {"EXT1", "\x82\x01.", 0, "opcode 0x82"},
        {"INST", "i__main__\nC\n.", 0, "opcode 0x69"},
        {"STRING (protocol 0)", "S'a'\n.", 0, "opcode 0x53"},
        {"unknown opcode", "\xff", 0, "opcode 0xff"},
        {"protocol 6", "\x80\x06N.", 0, "protocol 6"},
        {"LONG4 negative length", "\x8b\xff\xff\xff\xff.", 0, "negative"},
        {"BINUNICODE8 huge", "\x8d\xff\xff\xff\xff\xff\xff\xff\x7f.", 10, "truncated"},
        {"BINUNICODE past end", "X\x10\0\0\0ab.", 8, "truncated"},
        {"memo key never stored", "h\x05.", 0, "never stored"},
        {"memo index too large", "N\x72\xff\xff\xff\xff.", 0, "too large"},
        {"PUT on empty stack", "q\x01.", 0, "empty stack"},
        {"STACK_GLOBAL non-strings", "K\x01K\x02\x93.", 0, "two strings"},
        {"GLOBAL truncated", "cos\nsys", 0, "truncated GLOBAL"},
        {"bad _rebuild_tensor_v2", "ctorch._utils\n_rebuild_tensor_v2\n)R.", 0, "0 arguments"},
        {"bad _rebuild_parameter", "ctorch._utils\n_rebuild_parameter\nK\x01\x85R.", 0,
         "without a tensor"},
        {"bad text int", "Iabc\n.", 0, "bad text integer"},
        {"BINPERSID empty", "Q.", 0, "empty stack"},
        {"REDUCE short", "K\x01R.", 0, "REDUCE"},
        {"NEWOBJ short", "K\x01\x81.", 0, "NEWOBJ"},
        {"BUILD short", "K\x01" "b.", 0, "BUILD"},
    };
    int nok = 0;

    unlink(PWNED_MARKER);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct hand *h = &cases[i];
        size_t len = h->len ? h->len : strlen(h->bytes);
        struct pickle pk;
        int rc = pickle_load(&pk, (const uint8_t *)h->bytes, len);

        if (!h->expect) {
            CHECK(rc == 0, "%s: %s", h->what, pk.err);
        } else {
            CHECK(rc == S3D_EFORMAT && strstr(pk.err, h->expect) && !pk.root,
                  "%s: rc %d '%s' (want '%s')", h->what, rc, pk.err, h->expect);
        }
        if (rc == 0 && i == 0)
            CHECK(pk.root->type == PK_OPAQUE && !strcmp(pk.root->s, "os.system()"));
        if (rc == 0 && i == 1)
            CHECK(pk.root->n == 4 && pk.root->items[0]->i == 42 &&
                  pk.root->items[1]->type == PK_BOOL && pk.root->items[2]->i == -5 &&
                  pk.root->items[3]->f == 0.5);
        if (rc == 0 && i == 2)
            CHECK(pk.root->items[0] == pk.root->items[1]);
        if (rc == 0 && i == 9)
            CHECK(pk.root->type == PK_LIST && pk.root->n == 1 && pk.root->items[0] == pk.root);
        if (rc == 0 && i == 10)
            CHECK(pk.root->type == PK_GLOBAL && !strcmp(pk.root->s, "torch.Size"));
        nok += (rc == 0) == !h->expect;
        pickle_free(&pk);
    }
    pickle_free(NULL);
    CHECK(access(PWNED_MARKER, F_OK) != 0);
    printf("hand-assembled pickles: %d of %zu behave as expected\n", nok,
           sizeof(cases) / sizeof(cases[0]));
}

/* Finding 5: memory is charged per opcode against a limit proportional to the
 * input: 2 MB of EMPTY_LIST (each one a fresh value) fails at the limit; the same
 * length of small ints (shared, like CPython's) parses. */
static void test_memory_limit(void)
{
    size_t n = 2u << 20;
    uint8_t *buf = malloc(n + 4);
    struct pickle pk;
    int rc;

    if (!buf) {
        CHECK(0, "out of memory");
        return;
    }
    buf[0] = 0x80;
    buf[1] = 2;
    memset(buf + 2, ']', n);
    buf[n + 2] = '.';
    rc = pickle_load(&pk, buf, n + 3);
    CHECK(rc == S3D_EFORMAT && strstr(pk.err, "needs more than") && strstr(pk.err, "limit"),
          "2 MB of EMPTY_LIST: rc %d %s", rc, pk.err);
    printf("2 MB of EMPTY_LIST: %s\n", pk.err);
    {   /* "(" then n/2 - 2 BININT1 "K x", "l", "." */
        size_t k = 3;

        buf[2] = '(';
        for (; k + 2 < n + 2; k += 2) {
            buf[k] = 'K';
            buf[k + 1] = (uint8_t)k;
        }
        buf[k++] = 'l';
        buf[k++] = '.';
        n = k - 3;
    }
    rc = pickle_load(&pk, buf, n + 3);
    CHECK(rc == 0 && pk.root->type == PK_LIST && pk.bytes < 8 * n, "a list of 1M small ints: "
          "rc %d %s, %zu bytes held", rc, pk.err, pk.bytes);
    printf("a list of %d small ints (%zu-byte pickle): %zu bytes held (%.1f a byte)\n",
           rc ? 0 : pk.root->n, n + 3, pk.bytes, (double)pk.bytes / (double)(n + 3));
    pickle_free(&pk);
    free(buf);
}

int main(void)
{
    log_init("test_pickle");
    test_types(2);
    test_types(4);
    test_types(5);
    test_hostile();
    test_hand();
    test_memory_limit();
    return harness_done("test_pickle");
}
