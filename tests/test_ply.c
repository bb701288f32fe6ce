/*
 * test_ply.c - common/ply.c and common/outfile.c:
 *
 * 1. splat.ply bytes: the records of the official Gaussian.save_ply files
 *    (tests/fixtures/gs_decoder_tiny/{g32,g4}/splat.ply) split into the five
 *    gs_decode arrays and written again are byte-identical to them (header,
 *    property order, 68-byte records); so is the file written from the
 *    export fixture's artifact (outputs_tiny/job/gs_decode.safetensors, the
 *    g4 records as the gs_decode stage stores them).
 * 2. mesh.ply: the header text and the 16-byte vertex / 13-byte face records.
 * 3. outfile: a symlink planted under the name is replaced, never written
 *    through; an unwritable directory is one S3D_EIO and leaves no file;
 *    the mode is 0644 less the umask; no temporary is left behind.
 */
#include "harness.h"
#include "ckpt.h"
#include "err.h"
#include "ply.h"
#include "safetensors.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GS "tests/fixtures/gs_decoder_tiny/"

static char dir[] = "/tmp/s3d_test_ply_XXXXXX";
static int dfd = -1;

static const char *names[5] = {"xyz", "f_dc", "opacity", "scale", "rotation"};
static const int dims[5] = {3, 3, 1, 3, 4}, col[5] = {0, 6, 9, 10, 13};

/* bytes of dir/name, malloc'ed */
static char *out_bytes(const char *name, size_t *len)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return read_file(path, len);
}

static void write_compare(const char *label, const struct gaussians *g, const char *ref_path)
{
    size_t la, lb;
    char *a, *b;

    CHECK(ply_write_gaussians(dfd, "splat.ply", "splat.ply", g) == 0, "%s: write", label);
    a = out_bytes("splat.ply", &la);
    b = read_file(ref_path, &lb);
    CHECK(a && b && la == lb && !memcmp(a, b, la), "%s: %zu bytes vs %zu of the official file",
          label, la, lb);
    printf("%-44s %zu bytes, identical to %s: %s\n", label, la, ref_path,
           a && b && la == lb && !memcmp(a, b, la) ? "yes" : "NO");
    free(a);
    free(b);
}

/* 1a. the official records, split and written again */
static void test_official_records(const char *set)
{
    char path[256], label[64];
    size_t len;
    char *raw, *end;
    long long M = -1;
    float *a[5];

    snprintf(path, sizeof(path), GS "%s/splat.ply", set);
    raw = read_file(path, &len);
    CHECK(raw != NULL, "%s", path);
    if (!raw)
        return;
    end = memmem(raw, len, "end_header\n", 11);
    CHECK(end && sscanf(raw, "ply\nformat binary_little_endian 1.0\nelement vertex %lld", &M) == 1);
    if (!end || M < 0) {
        free(raw);
        return;
    }
    for (int i = 0; i < 5; i++) {
        a[i] = malloc(sizeof(float) * (size_t)M * dims[i]);
        for (long long m = 0; m < M; m++)
            memcpy(a[i] + m * dims[i], end + 11 + m * 68 + col[i] * 4, 4 * dims[i]);
    }
    snprintf(label, sizeof(label), "%s: official records written again", set);
    write_compare(label, &(struct gaussians){M, a[0], a[1], a[2], a[3], a[4]}, path);
    for (int i = 0; i < 5; i++)
        free(a[i]);
    free(raw);
}

/* 1b. from the artifact, as export does */
static void test_artifact(void)
{
    struct ckpt c;
    float *a[5];
    int64_t M;

    if (safetensors_open(&c, "tests/fixtures/outputs_tiny/job/gs_decode.safetensors") != 0) {
        CHECK(0, "artifact");
        return;
    }
    M = ckpt_find(&c, "xyz")->shape[0];
    for (int i = 0; i < 5; i++)
        a[i] = (float *)ckpt_find(&c, names[i])->data;
    write_compare("g4: from gs_decode.safetensors", &(struct gaussians){M, a[0], a[1], a[2],
                  a[3], a[4]}, GS "g4/splat.ply");
    ckpt_close(&c);
}

static void test_mesh_ply(void)
{
    static const char header[] =
        "ply\nformat binary_little_endian 1.0\nelement vertex 4\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
        "element face 2\nproperty list uchar int vertex_indices\nend_header\n";
    float pos[12] = {0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, -1.5f};
    uint32_t faces[6] = {0, 1, 2, 0, 2, 3};
    uint8_t rgba[16] = {255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 9, 8, 7, 255};
    struct tri_mesh m = {4, 2, pos, faces, rgba};
    size_t len, h = sizeof(header) - 1;
    char *b;

    CHECK(ply_write_mesh(dfd, "mesh.ply", "mesh.ply", &m) == 0);
    b = out_bytes("mesh.ply", &len);
    CHECK(b && len == h + 4 * 16 + 2 * 13, "mesh.ply %zu bytes", len);
    if (b && len == h + 4 * 16 + 2 * 13) {
        float z;
        int32_t i3;

        CHECK(!memcmp(b, header, h), "mesh.ply header");
        memcpy(&z, b + h + 3 * 16 + 8, 4);
        CHECK(z == -1.5f, "vertex 3 z = %g", z);
        CHECK(!memcmp(b + h + 3 * 16 + 12, rgba + 12, 4), "vertex 3 colour");
        memcpy(&i3, b + h + 4 * 16 + 13 + 1 + 8, 4);
        CHECK(b[h + 4 * 16] == 3 && b[h + 4 * 16 + 13] == 3 && i3 == 3, "faces");
        printf("mesh.ply: header and 16 + 13 byte records as documented\n");
    }
    free(b);
}

static int count_entries(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    while (d && (e = readdir(d)))
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static void test_outfile(void)
{
    char victim[256], link[256];
    float one[3] = {1, 2, 3}, q[4] = {1, 0, 0, 0}, o = 0.5f;
    struct gaussians g = {1, one, one, &o, one, q};
    struct stat st;
    mode_t mask;
    int bad;
    char *v;
    size_t len;

    /* a symlink under the name: replaced by the new file, its target untouched */
    snprintf(victim, sizeof(victim), "%s/victim", dir);
    snprintf(link, sizeof(link), "%s/link.ply", dir);
    CHECK(write_file(victim, "keep", 4) == 0 && symlink(victim, link) == 0);
    CHECK(ply_write_gaussians(dfd, "link.ply", link, &g) == 0);
    v = read_file(victim, &len);
    CHECK(v && len == 4 && !memcmp(v, "keep", 4), "the symlink's target was written");
    free(v);
    CHECK(lstat(link, &st) == 0 && S_ISREG(st.st_mode), "link.ply is not a regular file now");
    mask = umask(0);
    umask(mask);
    CHECK((st.st_mode & 0777) == (0644 & ~mask), "mode %o", st.st_mode & 0777);

    /* an unwritable directory (a file descriptor that is not one): S3D_EIO, nothing left */
    bad = open(victim, O_RDONLY);
    fprintf(stderr, "expected error follows:\n");
    CHECK(ply_write_gaussians(bad, "x.ply", "x.ply", &g) == S3D_EIO);
    close(bad);
    CHECK(count_entries() == 4, "entries: %d (splat.ply mesh.ply victim link.ply)",
          count_entries());
    printf("outfile: symlink replaced not followed, mode %o, S3D_EIO without a directory, "
           "no temporary left\n", st.st_mode & 0777);
}

int main(void)
{
    CHECK(mkdtemp(dir) != NULL);
    dfd = open(dir, O_RDONLY | O_DIRECTORY);
    CHECK(dfd >= 0);
    test_official_records("g32");
    test_official_records("g4");
    test_artifact();
    test_mesh_ply();
    test_outfile();
    {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        CHECK(system(cmd) == 0);
    }
    close(dfd);
    return harness_done("test_ply");
}
