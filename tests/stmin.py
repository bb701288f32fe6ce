"""stmin.py - the smallest safetensors reader/writer (Python stdlib only), for the CLI test
scripts that cut inputs out of fixtures and check artifacts without torch.

  read(path)           -> {name: [dtype, shape, raw bytes]}  (__metadata__ dropped)
  write(path, tensors) <- the same mapping, in insertion order, header padded to 8 bytes
  values(dtype, raw)   -> array of F32 ("f") or I32 ("i") values
  latent_case(t, how)  -> coords + feats of t, or a bad-input case of the decoder stages
"""
import json
import struct
from array import array


def read(path):
    raw = open(path, "rb").read()
    hl = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + hl])
    head.pop("__metadata__", None)
    base = 8 + hl
    return {k: [e["dtype"], e["shape"], raw[base + e["data_offsets"][0]:base + e["data_offsets"][1]]]
            for k, e in head.items()}


def write(path, tensors):
    head, blob = {}, bytearray()
    for k, (dt, shape, data) in tensors.items():
        head[k] = {"dtype": dt, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    hj = json.dumps(head).encode()
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + bytes(blob))


def values(dt, data):
    return array("f" if dt == "F32" else "i", data)


def latent_case(t, how="", res=64):
    """The structured latent of t (coords + feats, as slat_flow.safetensors holds them), or one
    of the decoder stages' bad-input cases: "wide" (7 latent channels), "rows" (one feats row
    fewer than coords), "range" (x = res in the last row), "empty" (no voxel), "nofeats"."""
    c, f = t["coords"], t["feats"]
    if how == "wide":
        v = array("f", f[2]); n = f[1][0]
        f = ["F32", [n, 7], array("f", [v[i * 8 + j] for i in range(n) for j in range(7)]).tobytes()]
    elif how == "rows":
        f = ["F32", [f[1][0] - 1, 8], f[2][:-32]]
    elif how == "range":
        v = array("i", c[2]); v[-3] = res; c = ["I32", c[1], v.tobytes()]
    elif how == "empty":
        c, f = ["I32", [0, 4], b""], ["F32", [0, 8], b""]
    return {"coords": c} if how == "nofeats" else {"coords": c, "feats": f}
