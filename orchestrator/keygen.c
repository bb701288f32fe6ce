/*
 * keygen.c - `sam3d keygen`: fresh ZeroMQ CURVE key pairs for a stage served
 * beyond loopback and for the client that calls it (design.md "Wire": tcp://
 * endpoints need CURVE keys; docs/security.md "Who may talk to a stage").
 *
 * Prints four shell assignments: the stage's secret key (S3D_CURVE_SECRET, read
 * by every sam3d-* stage, or --curve-secret) and its public key for the
 * orchestrator (S3D_CURVE_SERVERKEY); the client's secret key for the
 * orchestrator (S3D_CURVE_CLIENT_SECRET) and its public key for the stage's
 * allow-list (S3D_CURVE_CLIENT_KEY, one line of the --curve-clients file).
 * Test: tests/test_remote.sh.
 */
#include "commands.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

int cmd_keygen(int argc, char **argv)
{
    char pub[41], sec[41], cpub[41], csec[41];
    bool help = argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));

    if (argc > 1) {
        fprintf(help ? stdout : stderr,
                "usage: sam3d keygen\n"
                "Prints new CURVE key pairs as four shell lines:\n"
                "  S3D_CURVE_SECRET=...         for the machine that serves the stage\n"
                "  S3D_CURVE_SERVERKEY=...      for the machine that runs `sam3d run`\n"
                "  S3D_CURVE_CLIENT_SECRET=...  for the machine that runs `sam3d run`\n"
                "  S3D_CURVE_CLIENT_KEY=...     a line of the stage's --curve-clients file\n");
        return help ? 0 : 2;
    }
    if (!zmq_has("curve") || zmq_curve_keypair(pub, sec) != 0 ||
        zmq_curve_keypair(cpub, csec) != 0) {
        fprintf(stderr, "error: this libzmq has no CURVE support. HINT: install a libzmq "
                "built with libsodium (Debian's libzmq5 is)\n");
        return 1;
    }
    /* Z85 has no ' */
    printf("S3D_CURVE_SECRET='%s'\nS3D_CURVE_SERVERKEY='%s'\n", sec, pub);
    printf("S3D_CURVE_CLIENT_SECRET='%s'\nS3D_CURVE_CLIENT_KEY='%s'\n", csec, cpub);
    return 0;
}
