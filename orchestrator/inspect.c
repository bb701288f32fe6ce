/*
 * inspect.c - `sam3d inspect [--sha256] FILE[:KEY]`: list a checkpoint's tensors
 * (format: common/ckpt_list.h, design.md "Inspecting checkpoints").
 */
#include "ckpt_list.h"
#include "commands.h"

#include <stdio.h>
#include <string.h>

static void inspect_usage(FILE *f)
{
    fprintf(f, "usage: sam3d inspect [--sha256] FILE[:KEY]\n"
               "  Lists every tensor of a .safetensors/.pt/.pth/.ckpt file, sorted by name:\n"
               "  name<TAB>dtype<TAB>[shape], plus the sha256 of its contents with --sha256.\n"
               "  :KEY starts at that key (e.g. model.ckpt:state_dict), names relative to it.\n");
}

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    bool sha = false;
    char err[600];

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sha256")) {
            sha = true;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            inspect_usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "error: inspect: unknown option '%s'\n", argv[i]);
            inspect_usage(stderr);
            return 2;
        } else if (path) {
            fprintf(stderr, "error: inspect: one FILE only ('%s' and '%s')\n", path, argv[i]);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        inspect_usage(stderr);
        return 2;
    }
    if (ckpt_list(stdout, path, sha, err, sizeof(err))) {
        fflush(stdout);
        fprintf(stderr, "error: %s: %s\n", path, err);
        return 1;
    }
    if (fflush(stdout)) {
        fprintf(stderr, "error: %s: cannot write the listing\n", path);
        return 1;
    }
    return 0;
}
