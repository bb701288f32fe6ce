#!/usr/bin/env python3
"""fatbin_keep.py SO OUT SM - zero the device code of every fatbin entry in SO's .nv_fatbin
section except the SASS (cubin) for sm_SM, and write OUT.

Why: spconv-cu126's core_cc is 284 MB of cubins for sm_50..sm_90 plus PTX; the GPU machine
only runs sm_90, and a device call carries at most 64 MiB. The zeroed payloads keep every
header, offset and size (the runtime still finds the sm_90 cubin where it was) and compress to
nothing: the whole carried spconv + cumm becomes ~7 MB of xz.

Fatbin layout (as read here): a container header (u32 magic 0xBA55ED50, u16 version, u16
header size, u64 size of the entries), then entries (u16 kind: 1 PTX, 2 cubin; u16 version;
u32 header size; u64 padded payload size; ... u32 sm at byte 28), the payload after the header.
"""
import struct
import sys


def sections(b):
    shoff, = struct.unpack_from("<Q", b, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", b, 0x3A)
    sh = [struct.unpack_from("<IIQQQQIIQQ", b, shoff + i * shentsize) for i in range(shnum)]
    stro = sh[shstrndx][4]
    return {b[stro + s[0]:b.index(b"\0", stro + s[0])].decode(): (s[4], s[5]) for s in sh}


def entries(b, off, size):
    p, end = off, off + size
    while p + 16 <= end:
        magic, _, hsz, fsz = struct.unpack_from("<IHHQ", b, p)
        if magic != 0xBA55ED50:
            p += 8
            continue
        q, qe = p + hsz, p + hsz + fsz
        while q < qe:
            kind, _, ehs, padded = struct.unpack_from("<HHIQ", b, q)
            sm, = struct.unpack_from("<I", b, q + 28)
            yield q + ehs, padded, kind, sm
            q += ehs + padded
        p = qe


def main():
    src, dst, keep = sys.argv[1], sys.argv[2], int(sys.argv[3])
    b = bytearray(open(src, "rb").read())
    off, size = sections(b)[".nv_fatbin"]
    kept = zeroed = 0
    for start, n, kind, sm in entries(b, off, size):
        if kind == 2 and sm == keep:
            kept += n
        else:
            b[start:start + n] = bytes(n)
            zeroed += n
    if not kept:
        sys.exit(f"error: no sm_{keep} cubin in {src}: nothing would run")
    open(dst, "wb").write(b)
    print(f"{src}: kept {kept / 1e6:.1f} MB of sm_{keep} cubins, zeroed {zeroed / 1e6:.1f} MB")


main()
