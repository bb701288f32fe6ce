/*
 * fuzz_flatten.c - libFuzzer target: the flattening of DAG-shaped pickled
 * objects (torchzip.c scan/flatten and their budgets) behind a valid torch zip.
 *
 * The input is a small program, not a pickle: each byte picks an operation that
 * appends opcodes building one more memoised object from earlier ones (so the
 * object graph is a DAG, with cycles when a list is appended to one it holds):
 *   0 empty list    1 list of two earlier objects   2 dict {"a": x, "b": y}
 *   3 a tensor leaf (shape and strides from the next bytes, stride 0 allowed)
 *   4 append x to earlier list y (cycles)            5 tuple (x, y)
 *   6 dict {int key: x}                               7 one raw byte (parser paths)
 * x and y are earlier objects chosen by the next bytes. The root is
 * {"root": the last object}. Whatever parses is gathered (the first elements of
 * each tensor), never hashed in full: the budgets bound the work, not the input.
 * Any input must return quickly: run with -timeout (make fuzz uses 10 s).
 *   make fuzz FUZZ_SECONDS=10   (or: build/fuzz/fuzz_flatten tests/fuzz/corpus/fuzz_flatten)
 */
#include "ckpt.h"
#include "zipbuild.h"

#include <stdlib.h>
#include <string.h>

#define MAX_OBJ 4096

struct prog {
    const uint8_t *p;
    size_t         n, pos;
};

static uint8_t next(struct prog *g)
{
    return g->pos < g->n ? g->p[g->pos++] : 0;
}

static uint32_t pick(struct prog *g, uint32_t n_obj)
{
    uint32_t v = next(g);

    v = v << 8 | next(g);
    return n_obj ? v % n_obj : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct prog g = {data, size, 0};
    struct zbuf b = {0};
    uint32_t n_obj = 0;
    uint8_t *zip;
    size_t zlen;
    struct ckpt c;

    zb_put(&b, "\x80\x02", 2);
    while (g.pos < g.n && n_obj < MAX_OBJ) {
        uint8_t op = next(&g) % 8;
        uint32_t x = pick(&g, n_obj), y = pick(&g, n_obj);
        bool made = true;

        switch (op) {
        case 0:
            zb_byte(&b, ']');
            break;
        case 1:
        case 5:
            if (!n_obj) {
                zb_byte(&b, ')');
                break;
            }
            zb_byte(&b, op == 1 ? ']' : '(');
            if (op == 1)
                zb_byte(&b, '(');
            pk_get(&b, x);
            pk_get(&b, y);
            zb_byte(&b, op == 1 ? 'e' : 't');
            break;
        case 2:
        case 6:
            zb_byte(&b, '}');
            if (!n_obj)
                break;
            zb_byte(&b, '(');
            if (op == 2) {
                pk_str(&b, "a");
                pk_get(&b, x);
                pk_str(&b, "b");
                pk_get(&b, y);
            } else {
                pk_int(&b, next(&g));
                pk_get(&b, x);
            }
            zb_byte(&b, 'u');
            break;
        case 3: {
            int64_t shape[3], stride[3];
            int ndim = next(&g) % 4;
            char key[2] = {(char)('0' + next(&g) % 4), 0};

            for (int d = 0; d < ndim; d++) {
                uint8_t s = next(&g);

                shape[d] = s & 0x80 ? (int64_t)1 << (s & 0x3f) : s & 0x1f;
                stride[d] = (next(&g) % 4 == 0) ? 0 : 1 + (next(&g) & 7);
            }
            pk_tensor(&b, key, 16, next(&g) % 4, ndim, shape, stride);
            break;
        }
        case 4:
            made = false;
            if (n_obj) {
                pk_get(&b, y);
                pk_get(&b, x);
                zb_byte(&b, 'a');
                zb_byte(&b, '0');
            }
            break;
        default:
            made = false;
            zb_byte(&b, next(&g));
            break;
        }
        if (made) {
            pk_put(&b, n_obj++);
            zb_byte(&b, '0');
        }
    }
    zb_byte(&b, '}');
    zb_byte(&b, '(');
    pk_str(&b, "root");
    if (n_obj)
        pk_get(&b, n_obj - 1);
    else
        zb_byte(&b, 'N');
    zb_put(&b, "u.", 2);
    zip = torch_zip(b.p, b.n, 4, 64, &zlen);
    if (ckpt_open_mem(&c, zip, zlen, "fuzz.pt", NULL) == 0) {
        for (int i = 0; i < c.n_entries; i++) {
            uint8_t out[16 * 8];
            int64_t n = ckpt_entry_numel(&c.entries[i]);

            ckpt_gather(&c.entries[i], 0, n < 16 ? n : 16, out);
        }
        ckpt_close(&c);
    }
    free(zip);
    zb_free(&b);
    return 0;
}
