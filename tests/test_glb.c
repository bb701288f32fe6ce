/*
 * test_glb.c - common/glb.c:
 *
 * 1. The to_glb conversions by hand: the axis change (x, y, z) -> (x, z, -y)
 *    with numpy's signed zeros; trimesh's RGBA8 rounding (half to even,
 *    clipped, NaN/inf -> 0, alpha 255).
 * 2. The mesh of the export fixture (outputs_tiny/job/mesh_decode.safetensors,
 *    the official FlexiCubes mesh) through the to_glb path: the file passes a
 *    structural glTF 2.0 check (glb_validate below: header, chunk types and
 *    lengths, 4-byte alignment and padding, accessors inside their buffer
 *    views, views inside the buffer, index range, POSITION min/max equal to
 *    the data, COLOR_0 uint8 normalised) and its BIN chunk is byte-identical
 *    to the one trimesh wrote for the official to_glb mesh
 *    (outputs_tiny/mesh.glb), whose accessors have the same types and counts.
 * 3. The validator rejects broken files (truncated, a bad index, bad padding).
 *
 * `test_glb FILE...` instead runs only the structural check on each FILE (for
 * the shell tests of the stages whose artifacts become mesh.glb): one line per
 * file, exit 0 when every one passes.
 */
#include "harness.h"
#include "ckpt.h"
#include "err.h"
#include "glb.h"
#include "json_min.h"
#include "safetensors.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FX "tests/fixtures/outputs_tiny/"

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return v;
}

/* The JSON and BIN chunks of a GLB; false with a reason when the container is broken. */
static bool glb_chunks(const uint8_t *b, size_t len, const uint8_t **json, size_t *jlen,
                       const uint8_t **bin, size_t *blen, char *why, size_t wl)
{
    if (len < 28 || rd32(b) != 0x46546C67u || rd32(b + 4) != 2 || rd32(b + 8) != len) {
        snprintf(why, wl, "header (magic, version 2, length %zu)", len);
        return false;
    }
    *jlen = rd32(b + 12);
    if (rd32(b + 16) != 0x4E4F534Au || *jlen % 4 || 20 + *jlen + 8 > len) {
        snprintf(why, wl, "JSON chunk");
        return false;
    }
    *json = b + 20;
    *blen = rd32(b + 20 + *jlen);
    if (rd32(b + 24 + *jlen) != 0x004E4942u || *blen % 4 || 28 + *jlen + *blen != len) {
        snprintf(why, wl, "BIN chunk");
        return false;
    }
    *bin = b + 28 + *jlen;
    return true;
}

static int64_t jint(const struct json_doc *d, int obj, const char *key, int64_t dflt)
{
    int i = json_object_get(d, obj, key);
    int64_t v;

    return i > 0 && json_int64(d, i, &v) ? v : dflt;
}

static int jarr(const struct json_doc *d, const char *key, int k)   /* element k of a top array */
{
    int i = json_object_get(d, 0, key);

    if (i <= 0 || d->nodes[i].type != JSON_ARRAY || k >= d->nodes[i].size)
        return -1;
    for (i++; k > 0; k--)
        i = d->nodes[i].next;
    return i;
}

static double jnum(const struct json_doc *d, int arr, int k)
{
    int i = arr + 1;

    for (; k > 0; k--)
        i = d->nodes[i].next;
    return strtod(d->text + d->nodes[i].start, NULL);
}

/* Structural glTF 2.0 check of a one-mesh GLB as glb.h writes it (and trimesh). */
static bool glb_validate(const uint8_t *b, size_t len, char *why, size_t wl)
{
    const uint8_t *json, *bin;
    size_t jlen, blen;
    struct json_doc d;
    char err[128];
    int prim, attrs, acc[3];
    bool ok = false;

    if (!glb_chunks(b, len, &json, &jlen, &bin, &blen, why, wl))
        return false;
    if (json_parse(&d, (const char *)json, jlen, err, sizeof(err)) != 0) {
        snprintf(why, wl, "JSON: %s", err);
        return false;
    }
    prim = jarr(&d, "meshes", 0);
    prim = prim > 0 ? json_object_get(&d, prim, "primitives") : -1;
    prim = prim > 0 ? prim + 1 : -1;
    attrs = prim > 0 ? json_object_get(&d, prim, "attributes") : -1;
    if (attrs <= 0 || jint(&d, prim, "mode", 4) != 4) {
        snprintf(why, wl, "no triangle primitive");
        goto out;
    }
    acc[0] = (int)jint(&d, prim, "indices", -1);
    acc[1] = (int)jint(&d, attrs, "POSITION", -1);
    acc[2] = (int)jint(&d, attrs, "COLOR_0", -1);
    {
        static const int want_ct[3] = {5125, 5126, 5121}, want_nc[3] = {1, 3, 4};
        static const char *want_ty[3] = {"SCALAR", "VEC3", "VEC4"};
        int64_t count[3];
        const uint8_t *data[3];
        int buf0 = jarr(&d, "buffers", 0);

        if (buf0 < 0 || jint(&d, buf0, "byteLength", -1) > (int64_t)blen ||
            (int64_t)blen - jint(&d, buf0, "byteLength", -1) > 3) {
            snprintf(why, wl, "buffer 0 length vs the BIN chunk %zu", blen);
            goto out;
        }
        for (int k = 0; k < 3; k++) {
            int a = jarr(&d, "accessors", acc[k]), v, t;
            int64_t bv, off, vlen, aoff, need;
            char ty[16] = "";

            if (a < 0) {
                snprintf(why, wl, "accessor %d missing", acc[k]);
                goto out;
            }
            bv = jint(&d, a, "bufferView", -1);
            v = jarr(&d, "bufferViews", (int)bv);
            t = json_object_get(&d, a, "type");
            if (t > 0)
                json_string(&d, t, ty, sizeof(ty));
            count[k] = jint(&d, a, "count", -1);
            if (v < 0 || jint(&d, a, "componentType", -1) != want_ct[k] || strcmp(ty, want_ty[k]) ||
                count[k] < 1) {
                snprintf(why, wl, "accessor %d: view, componentType, type or count", k);
                goto out;
            }
            off = jint(&d, v, "byteOffset", 0);
            vlen = jint(&d, v, "byteLength", -1);
            aoff = jint(&d, a, "byteOffset", 0);
            need = count[k] * want_nc[k] * (k == 2 ? 1 : 4);
            if (jint(&d, v, "buffer", -1) != 0 || off < 0 || off % 4 || vlen < need - aoff ||
                off + vlen > (int64_t)blen || aoff + need > vlen) {
                snprintf(why, wl, "accessor %d outside its view or the buffer", k);
                goto out;
            }
            data[k] = bin + off + aoff;
        }
        if (count[0] % 3 || count[1] != count[2]) {
            snprintf(why, wl, "counts: %lld indices, %lld positions, %lld colours",
                     (long long)count[0], (long long)count[1], (long long)count[2]);
            goto out;
        }
        {
            int pa = jarr(&d, "accessors", acc[1]), ca = jarr(&d, "accessors", acc[2]);
            int mn = json_object_get(&d, pa, "min"), mx = json_object_get(&d, pa, "max");
            int norm = json_object_get(&d, ca, "normalized");
            float lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};

            for (int64_t i = 0; i < count[0]; i++)
                if (rd32(data[0] + 4 * i) >= (uint64_t)count[1]) {
                    snprintf(why, wl, "index %lld = %u out of range", (long long)i,
                             rd32(data[0] + 4 * i));
                    goto out;
                }
            for (int64_t i = 0; i < count[1]; i++)
                for (int j = 0; j < 3; j++) {
                    float p;

                    memcpy(&p, data[1] + 12 * i + 4 * j, 4);
                    lo[j] = fminf(lo[j], p);
                    hi[j] = fmaxf(hi[j], p);
                }
            if (mn <= 0 || mx <= 0 || norm <= 0 || d.nodes[norm].type != JSON_BOOL ||
                strncmp(d.text + d.nodes[norm].start, "true", 4)) {
                snprintf(why, wl, "POSITION min/max or COLOR_0 normalized missing");
                goto out;
            }
            for (int j = 0; j < 3; j++)
                if ((float)jnum(&d, mn, j) != lo[j] || (float)jnum(&d, mx, j) != hi[j]) {
                    snprintf(why, wl, "POSITION min/max[%d] %g %g, data %g %g", j,
                             jnum(&d, mn, j), jnum(&d, mx, j), lo[j], hi[j]);
                    goto out;
                }
        }
    }
    for (size_t i = jlen; i > 0 && json[i - 1] != '}'; i--)
        if (json[i - 1] != ' ') {
            snprintf(why, wl, "JSON padding is not spaces");
            goto out;
        }
    ok = true;
out:
    json_free(&d);
    return ok;
}

static void test_conversions(void)
{
    float in[6] = {1, 2, 3, -1, 0, -2}, out[6];
    float rgb[24] = {0.5f, 0.1f, 1.0f, NAN, INFINITY, -INFINITY, -0.2f, 1.3f, 0.0f,
                     0.2f, 0.3f, 0.7f, 1.0f / 255, 127.49f / 255, 0.99f, 0, 0, 0,
                     0.002f, 0.998f, 0.6f, 0.4f, 0.8f, 0.9f};
    uint8_t rgba[32];
    /* numpy: np.clip(np.float32(c) * 255, 0, 255).round().astype(np.uint8) */
    static const uint8_t want[32] = {128, 26, 255, 255, 0, 0, 0, 255, 0, 255, 0, 255,
                                     51, 76, 178, 255, 1, 127, 252, 255, 0, 0, 0, 255,
                                     1, 254, 153, 255, 102, 204, 230, 255};

    glb_zup_to_yup(in, out, 2);
    CHECK(out[0] == 1 && out[1] == 3 && out[2] == -2, "(1,2,3) -> (%g,%g,%g)", out[0], out[1],
          out[2]);
    CHECK(out[3] == -1 && out[4] == -2 && out[5] == 0 && signbit(out[5]),
          "(-1,0,-2) -> (%g,%g,%g): numpy gives -0.0 for -0 + -0 + -0", out[3], out[4], out[5]);
    glb_colors_rgba8(rgb, rgba, 8);
    CHECK(!memcmp(rgba, want, 32), "RGBA8 %u %u %u %u / %u %u %u / %u %u / %u %u %u / %u %u %u",
          rgba[0], rgba[1], rgba[2], rgba[3], rgba[4], rgba[5], rgba[6], rgba[8], rgba[9],
          rgba[12], rgba[13], rgba[14], rgba[16], rgba[17], rgba[18]);
    printf("to_glb conversions: axis change with signed zeros, trimesh RGBA8 rounding ok\n");
}

/* the fixture mesh through the to_glb path, as export writes it */
static void test_fixture_mesh(int dfd, const char *dir)
{
    struct ckpt c;
    const struct ckpt_entry *ev, *ef, *ec;
    const uint8_t *j1, *b1, *j2, *b2;
    size_t l1, l2, jl1, bl1, jl2, bl2;
    char path[256], why[256];
    uint8_t *mine, *ref;
    struct tri_mesh m;
    int64_t V, F;

    if (safetensors_open(&c, FX "job/mesh_decode.safetensors") != 0) {
        CHECK(0, "mesh artifact");
        return;
    }
    ev = ckpt_find(&c, "vertices");
    ef = ckpt_find(&c, "faces");
    ec = ckpt_find(&c, "colors");
    V = ev->shape[0];
    F = ef->shape[0];
    m = (struct tri_mesh){V, F, malloc(12 * V), malloc(12 * F), malloc(4 * V)};
    glb_zup_to_yup((const float *)ev->data, m.positions, V);
    memcpy(m.faces, ef->data, 12 * F);                  /* I32 >= 0 as uint32 */
    glb_colors_rgba8((const float *)ec->data, m.colors, V);
    CHECK(glb_write_mesh(dfd, "mesh.glb", "mesh.glb", &m) == 0);
    snprintf(path, sizeof(path), "%s/mesh.glb", dir);
    mine = read_file(path, &l1);
    ref = read_file(FX "mesh.glb", &l2);
    CHECK(mine && ref);
    if (mine && ref) {
        bool v1 = glb_validate(mine, l1, why, sizeof(why));

        CHECK(v1, "ours: %s", why);
        CHECK(glb_validate(ref, l2, why, sizeof(why)), "trimesh's: %s", why);
        CHECK(glb_chunks(mine, l1, &j1, &jl1, &b1, &bl1, why, sizeof(why)) &&
              glb_chunks(ref, l2, &j2, &jl2, &b2, &bl2, why, sizeof(why)));
        CHECK(bl1 == bl2 && !memcmp(b1, b2, bl1), "BIN chunks differ (%zu vs %zu bytes)", bl1,
              bl2);
        printf("mesh.glb: %lld vertices, %lld faces, %zu bytes; valid: %s; BIN chunk (%zu "
               "bytes) identical to trimesh's export of the official to_glb mesh: %s\n",
               (long long)V, (long long)F, l1, v1 ? "yes" : "NO", bl1,
               bl1 == bl2 && !memcmp(b1, b2, bl1) ? "yes" : "NO");

        /* 3. the validator catches broken files */
        CHECK(!glb_validate(mine, l1 - 4, why, sizeof(why)), "truncated file accepted");
        {
            uint8_t *bad = malloc(l1);
            uint32_t big = (uint32_t)V;

            memcpy(bad, mine, l1);
            memcpy((uint8_t *)b1 - mine + bad + 40, &big, 4);     /* index 10 = V */
            CHECK(!glb_validate(bad, l1, why, sizeof(why)), "index V accepted");
            printf("validator: bad index -> %s\n", why);
            memcpy(bad, mine, l1);
            bad[20 + jl1 - 1] = 'x';                               /* JSON padding */
            CHECK(!glb_validate(bad, l1, why, sizeof(why)) || jl1 == 0 ||
                  mine[20 + jl1 - 1] == '}', "bad padding accepted");
            free(bad);
        }
    }
    free(mine);
    free(ref);
    free(m.positions);
    free(m.faces);
    free(m.colors);
    ckpt_close(&c);
    unlink(path);
}

/* The structural check alone on the files named. */
static int validate_files(int n, char **files)
{
    int bad = 0;

    for (int i = 0; i < n; i++) {
        size_t len = 0;
        char why[256] = "";
        uint8_t *b = read_file(files[i], &len);
        bool ok = b && glb_validate(b, len, why, sizeof(why));

        printf("%s: %s%s\n", files[i], ok ? "valid glTF 2.0 GLB" : "INVALID: ",
               ok ? "" : b ? why : "unreadable");
        bad += !ok;
        free(b);
    }
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    char dir[] = "/tmp/s3d_test_glb_XXXXXX";
    int dfd;

    if (argc > 1)
        return validate_files(argc - 1, argv + 1);

    test_conversions();
    CHECK(mkdtemp(dir) != NULL);
    dfd = open(dir, O_RDONLY | O_DIRECTORY);
    test_fixture_mesh(dfd, dir);
    close(dfd);
    rmdir(dir);
    return harness_done("test_glb");
}
