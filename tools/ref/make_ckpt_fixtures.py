#!/usr/bin/env python3
"""Write the checkpoint-reader fixtures into tests/fixtures/ckpt/ (tiny; committed).

Development only. Run from the repository root:  python3 tools/ref/make_ckpt_fixtures.py

For every checkpoint X it writes
  X                      the file itself (torch.save zip, legacy torch, or safetensors)
  X.inspect              the expected `sam3d inspect --sha256 X` listing, computed here in
                         Python: every tensor in nested dicts/lists/tuples, names joined with
                         '.', sorted bytewise, `name<TAB>dtype<TAB>[d0,...]<TAB>sha256`, the
                         hash over t.contiguous() bytes (bf16/f16 through .view(int16)).
  X.ref.safetensors      the same tensors, contiguous, written by the safetensors package
                         (only for torch files), so the C tests compare bytes bit for bit
                         through an independent reader.
Also a few expected listings for FILE:KEY selections (X.KEY.inspect) and raw pickles for
the unpickler tests (hostile_*.pkl, which call os.system through REDUCE if ever executed).
"""
import collections
import hashlib
import io
import os
import pickle
import sys
import zipfile

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
                   "ckpt")
OUT = os.path.normpath(OUT)
MARKER = "/tmp/s3d_pickle_pwned_marker"

DT = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
      torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
      torch.uint8: "U8", torch.bool: "BOOL"}


class HyperCfg:
    """Stands in for a Lightning hyper-parameter object (a class the reader cannot import)."""

    def __init__(self):
        self.lr = 1e-4
        self.name = "tiny"
        self.sizes = [1, 2, 3]


class Hostile:
    """Calls os.system when unpickled by Python; the C reader must never execute it."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def flatten(obj, prefix, out):
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, f"{prefix}.{i}" if prefix else str(i), out)
    return out


def sha(t):
    t = t.detach().contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def listing(tensors):
    lines = []
    for name in sorted(tensors, key=lambda s: s.encode()):
        t = tensors[name]
        shape = "[" + ",".join(str(d) for d in t.shape) + "]"
        lines.append(f"{name}\t{DT[t.dtype]}\t{shape}\t{sha(t)}\n")
    return "".join(lines)


def write_listing(path, tensors):
    with open(path, "w") as f:
        f.write(listing(tensors))


def ref_safetensors(path, tensors):
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, path)


def torch_fixture(name, obj, keys=()):
    path = os.path.join(OUT, name)
    torch.save(obj, path)
    flat = flatten(obj, "", {})
    write_listing(path + ".inspect", flat)
    ref_safetensors(path + ".ref.safetensors", flat)
    for key in keys:
        sub = obj
        for part in key.split("."):
            sub = sub[int(part)] if isinstance(sub, (list, tuple)) else sub[part]
        write_listing(f"{path}.{key}.inspect", flatten(sub, "", {}))


def write_zip64(src, dst):
    """Re-pack a torch zip as stored entries with every size and offset in zip64 extra fields
    (0xFFFFFFFF in the 32-bit fields) and a zip64 end record, as torch writes files > 4 GiB."""
    import struct
    with zipfile.ZipFile(src) as zin:
        entries = [(i.filename.encode(), zin.read(i.filename)) for i in zin.infolist()]
    out = bytearray()
    central = bytearray()
    for name, data in entries:
        ofs = len(out)
        crc = zipfile.crc32(data) & 0xFFFFFFFF
        z64 = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        pad = (-(ofs + 30 + len(name) + len(z64) + 4)) % 64     # 64-byte aligned data
        extra = z64 + struct.pack("<HH", 0x4246, pad) + b"Z" * pad
        out += struct.pack("<IHHHHHIIIHH", 0x04034b50, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF,
                           0xFFFFFFFF, len(name), len(extra)) + name + extra + data
        cz64 = struct.pack("<HHQQQ", 1, 24, len(data), len(data), ofs)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 45, 45, 0, 0, 0, 0, crc,
                               0xFFFFFFFF, 0xFFFFFFFF, len(name), len(cz64), 0, 0, 0, 0,
                               0xFFFFFFFF) + name + cz64
    cd_ofs = len(out)
    out += central
    z64_ofs = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064b50, 44, 45, 45, 0, 0, len(entries), len(entries),
                       len(central), cd_ofs)
    out += struct.pack("<IIQI", 0x07064b50, 0, z64_ofs, 1)
    out += struct.pack("<IHHHHIIH", 0x06054b50, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                       0xFFFFFFFF, 0)
    with open(dst, "wb") as f:
        f.write(out)


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(1234)

    def rnd(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=g).to(dtype)

    # 1. plain state dict, as model.state_dict() gives (an OrderedDict of Parameters' data)
    lin = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.LayerNorm(3))
    with torch.no_grad():
        for p in lin.parameters():
            p.copy_(rnd(*p.shape))
    torch_fixture("plain.pt", lin.state_dict())

    # 2. Lightning-style: nested dicts, hyper_parameters holding a class instance and an
    #    OrderedDict, every dtype, views, shared storage, 0-d, empty, a list, a Parameter
    base = torch.arange(40, dtype=torch.float32).reshape(5, 8) * 0.25 - 3
    shared = rnd(64)
    lightning = {
        "epoch": 7,
        "global_step": 1234,
        "pytorch-lightning_version": "2.1.0",
        "state_dict": collections.OrderedDict([
            ("blocks.0.norm1.weight", rnd(8)),
            ("blocks.0.attn.qkv.weight", rnd(24, 8)),
            ("blocks.0.attn.qkv.bias", rnd(24, dtype=torch.bfloat16)),
            ("blocks.1.mlp.fc1.weight", rnd(6, 8, dtype=torch.float16)),
            ("blocks.1.param", torch.nn.Parameter(rnd(3, 2))),
            ("pos_f64", rnd(2, 3, dtype=torch.float64)),
            ("ids_i64", torch.arange(-3, 9, dtype=torch.int64).reshape(3, 4)),
            ("ids_i32", torch.tensor([1, -2, 2147483647], dtype=torch.int32)),
            ("ids_i16", torch.tensor([-32768, 5], dtype=torch.int16)),
            ("ids_i8", torch.tensor([-128, 127, 0], dtype=torch.int8)),
            ("bytes_u8", torch.tensor([0, 200, 255], dtype=torch.uint8)),
            ("mask_bool", torch.tensor([[True, False], [False, True]])),
            ("transposed", base.t()),                       # (8,5) stride (1,8)
            ("sliced", base[1:4, 2:7:2]),                   # offset and stride 2
            ("share_a", shared[4:20].view(4, 4)),           # one storage, two offsets
            ("share_b", shared[32:40]),
            ("scalar", torch.tensor(3.5)),
            ("scalar_i64", torch.tensor(42, dtype=torch.int64)),
            ("empty", torch.zeros(0, 3)),
            ("expanded", rnd(1, 3).expand(4, 3)),           # stride 0
        ]),
        "optimizer_states": [{"state": {0: {"exp_avg": rnd(4)}}, "param_groups": [{"lr": 0.1}]}],
        "lists": {"layers": [rnd(2), (rnd(1, 2), {"deep": rnd(3)})]},
        "hyper_parameters": {
            "cfg": HyperCfg(),
            "ordered": collections.OrderedDict([("a", 1), ("b", [1.5, "x"])]),
            "device": torch.device("cpu"),
            "dtype": torch.float16,
            "nothing": None,
            "flags": {True, False},
            "raw": b"\x00\x01bytes",
        },
    }
    torch_fixture("lightning.ckpt", lightning, keys=("state_dict", "lists.layers"))

    # 3. MoGe-style container: {'model_config': {...}, 'model': state_dict}
    torch_fixture("moge_like.pt", {"model_config": {"encoder": "dinov2_vitl14", "num_tokens": 1},
                                   "model": collections.OrderedDict(
                                       [("head.weight", rnd(4, 2)), ("head.bias", rnd(4))])},
                  keys=("model",))

    # 4. a bare tensor / bare list at the top
    torch_fixture("bare_list.pt", [rnd(2, 2), rnd(3, dtype=torch.bfloat16)])

    # 5. legacy (pre-1.6) format
    torch.save({"w": rnd(2)}, os.path.join(OUT, "legacy.pt"),
               _use_new_zipfile_serialization=False)

    # 6. hostile zip: torch.save of an object whose __reduce__ is os.system
    torch.save({"w": rnd(2), "evil": Hostile()}, os.path.join(OUT, "hostile.pt"))
    # and a hostile zip whose top-level object is the os.system call itself
    torch.save(Hostile(), os.path.join(OUT, "hostile_root.pt"))
    for proto in (2, 4):
        with open(os.path.join(OUT, f"hostile_p{proto}.pkl"), "wb") as f:
            pickle.dump({"x": [1, 2], "evil": Hostile()}, f, protocol=proto)

    # 6b. plain pickles of every value type the unpickler knows, protocols 2, 4 and 5
    #     (tests/test_pickle.c checks each value), and a torch file with a cycle
    shared = [7, 8]
    values = {"ints": [0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31, 2**63 - 1, -2**63],
              "big": 2**70, "f": 1.5, "neg_f": -0.25, "s": "h\u00e9llo", "b": b"\x00\xffz",
              "t": (1, 2, 3), "t0": (), "t1": ("x",), "set": {5}, "fs": frozenset({6}),
              "none": None, "bools": [True, False], "shared": (shared, shared),
              "obj": HyperCfg(), "od": collections.OrderedDict([("k", 1)]),
              "long_list": list(range(1200))}
    for proto in (2, 4, 5):
        with open(os.path.join(OUT, f"types_p{proto}.pkl"), "wb") as f:
            pickle.dump(values, f, protocol=proto)
    cyc = []
    cyc.append(cyc)
    torch.save({"w": rnd(2), "cycle": cyc}, os.path.join(OUT, "cycle.pt"))

    # 7. a deflate-compressed copy of plain.pt (the reader accepts only stored entries)
    src = os.path.join(OUT, "plain.pt")
    with zipfile.ZipFile(src) as zin, \
            zipfile.ZipFile(os.path.join(OUT, "compressed.pt"), "w",
                            compression=zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))

    # 8. the same archive re-packed with zip64 records (same expected listing as plain.pt)
    write_zip64(src, os.path.join(OUT, "zip64.pt"))
    chk = torch.load(os.path.join(OUT, "zip64.pt"), weights_only=True)
    assert all(torch.equal(chk[k], v) for k, v in lin.state_dict().items())

    # 9. safetensors, every dtype, with metadata; and the expected listing
    st = {
        "a.f32": rnd(3, 4), "a.f16": rnd(5, dtype=torch.float16),
        "b.bf16": rnd(2, 2, dtype=torch.bfloat16), "b.f64": rnd(3, dtype=torch.float64),
        "c.i64": torch.tensor([-1, 2**40], dtype=torch.int64),
        "c.i32": torch.tensor([7], dtype=torch.int32), "c.i16": torch.tensor([-5, 5], dtype=torch.int16),
        "c.i8": torch.tensor([-1], dtype=torch.int8), "c.u8": torch.tensor([9, 8], dtype=torch.uint8),
        "c.bool": torch.tensor([True, False, True]), "scalar": torch.tensor(2.0),
        "empty": torch.zeros(2, 0),
    }
    path = os.path.join(OUT, "all_dtypes.safetensors")
    save_file(st, path, metadata={"format": "pt", "note": "fixture \"quoted\""})
    write_listing(path + ".inspect", st)
    write_listing(path + ".c.inspect", {k[2:]: v for k, v in st.items() if k.startswith("c.")})

    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, into {OUT}")
    if os.path.exists(MARKER):
        print(f"note: {MARKER} exists (created by an earlier Python load?)", file=sys.stderr)


if __name__ == "__main__":
    main()
