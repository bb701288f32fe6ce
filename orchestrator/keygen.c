/*
 * keygen.c - `sam3d keygen`: a fresh ZeroMQ CURVE key pair for a stage served
 * beyond loopback (design.md "Wire": tcp:// endpoints need CURVE keys).
 *
 * Prints two shell assignments: the secret key for the stage's machine
 * (S3D_CURVE_SECRET, read by every sam3d-* stage, or --curve-secret) and the
 * public key for the orchestrator's machine (S3D_CURVE_SERVERKEY, read by
 * `sam3d run` for its tcp:// endpoints). Test: tests/test_remote.sh.
 */
#include "commands.h"

#include <stdio.h>
#include <string.h>
#include <zmq.h>

int cmd_keygen(int argc, char **argv)
{
    char pub[41], sec[41];

    (void)argv;
    if (argc > 1) {
        fprintf(argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ?
                stdout : stderr,
                "usage: sam3d keygen\n"
                "Prints a new CURVE key pair as two shell lines:\n"
                "  S3D_CURVE_SECRET=...     for the machine that serves the stage\n"
                "  S3D_CURVE_SERVERKEY=...  for the machine that runs `sam3d run`\n");
        return argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
    }
    if (!zmq_has("curve") || zmq_curve_keypair(pub, sec) != 0) {
        fprintf(stderr, "error: this libzmq has no CURVE support. HINT: install a libzmq "
                "built with libsodium (Debian's libzmq5 is)\n");
        return 1;
    }
    printf("S3D_CURVE_SECRET='%s'\nS3D_CURVE_SERVERKEY='%s'\n", sec, pub);   /* Z85 has no ' */
    return 0;
}
