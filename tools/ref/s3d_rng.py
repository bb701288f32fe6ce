"""Our deterministic N(0, 1) noise (common/rng.h) in Python, stdlib only: xoshiro256** seeded
by four splitmix64 steps from the seed, Box-Muller in double (pairs: cos, then sin), each value
rounded to float32. The flow stages draw their initial noise this way from param `seed`
(SS: the five latents in the order 6drotation_normalized, scale, shape, translation,
translation_scale from one stream; SLAT: (N, 8) from its own stream), so the official sampler
can be started from the same noise (tools/ref/bench_official.py --noise ours).
tests/test_bench.sh checks it against sam3d-ss-flow: given this noise, the output equals the
seeded run's bit for bit.

  normal(seed, n) -> list of n floats (float32 values)
  normal_bytes(seed, n) -> the same as little-endian float32 bytes
  subset(seed, m, k) -> the k of range(m) sam3d-ss-decode keeps when more than max_coords = k
                        voxels remain after downsampling (stages/ss_decode_net/ssdec_post.c:
                        a Fisher-Yates shuffle of the first k places by splitmix64 steps from
                        param `seed`), ascending
  python3 tools/ref/s3d_rng.py SEED N    prints the first N values
"""
import math
import struct
import sys

M64 = (1 << 64) - 1


def _splitmix64(sm):
    """One splitmix64 step: (new state, output)."""
    sm = (sm + 0x9e3779b97f4a7c15) & M64
    z = ((sm ^ (sm >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return sm, z ^ (z >> 31)


def _state(seed):
    sm, st = seed & M64, []
    for _ in range(4):
        sm, z = _splitmix64(sm)
        st.append(z)
    return st


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


def normal_bytes(seed, n):
    st = _state(seed)

    def unif():
        r = (_rotl((st[1] * 5) & M64, 7) * 9) & M64
        t = (st[1] << 17) & M64
        st[2] ^= st[0]
        st[3] ^= st[1]
        st[1] ^= st[2]
        st[0] ^= st[3]
        st[2] ^= t
        st[3] = _rotl(st[3], 45)
        return ((r >> 11) + 1.0) * (1.0 / 9007199254740992.0)     # (0, 1], never 0

    out = bytearray()
    pack = struct.Struct("<f").pack
    for i in range(0, n, 2):
        rad = math.sqrt(-2.0 * math.log(unif()))
        a = 6.283185307179586476925 * unif()
        out += pack(rad * math.cos(a))
        if i + 1 < n:
            out += pack(rad * math.sin(a))
    return bytes(out)


def subset(seed, m, k):
    idx, sm = list(range(m)), seed & M64
    for i in range(min(k, m)):
        sm, z = _splitmix64(sm)
        j = i + z % (m - i)
        idx[i], idx[j] = idx[j], idx[i]
    return sorted(idx[:k])


def normal(seed, n):
    return list(struct.unpack(f"<{n}f", normal_bytes(seed, n)))


if __name__ == "__main__":
    print(normal(int(sys.argv[1]), int(sys.argv[2])))
