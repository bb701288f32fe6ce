"""stmin.py - the smallest safetensors reader/writer (Python stdlib only), for the CLI test
scripts that cut inputs out of fixtures and check artifacts without torch.

  read(path)           -> {name: [dtype, shape, raw bytes]}  (__metadata__ dropped)
  write(path, tensors) <- the same mapping, in insertion order, header padded to 8 bytes
  values(dtype, raw)   -> array of F32 ("f") or I32 ("i") values
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
