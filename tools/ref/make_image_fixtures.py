#!/usr/bin/env python3
"""Make the image-decoding fixtures of tests/test_image.c (development only).

Writes small PNG and JPEG files of every variant common/image.c supports into
tests/fixtures/images/, and for each the pixels that PIL gives, by the rules of
common/image.h:

  <name>.rgb    (h, w, 3) uint8: np.array(im)[..., :3] for RGB/RGBA files (the
                reference's load_image), PIL's convert("RGB") for other modes,
                except 16-bit gray ("I;16"): the high byte (documented deviation).
  <name>.mask   (h, w) uint8 0/1: the reference's load_mask exactly
                (np.array(im).astype(np.uint8) > 0, last channel if 3-D).
  manifest.txt  one line per file: "<file> <w> <h> <PIL mode>".

It also hashes PIL's decoding of the real example images (examples/, or a folder laid out like it: examples/README.md),
which are too large to commit as pixels: examples.txt holds lines
"<relpath> rgb|mask <w> <h> <crc32 hex of the bytes above>".

PNG variants PIL cannot write (16-bit RGB/RGBA/LA, 2/4-bit gray, interlaced,
palette with tRNS at 2 bits) are encoded by hand below (zlib + chunks); PIL
decodes them to make the expected values, so PIL stays the judge.

Usage: python3 tools/ref/make_image_fixtures.py [--examples DIR]
"""
import argparse
import io
import os
import struct
import zlib

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "images")

EXAMPLES = [  # (relpath, kind)
    ("human_object/image.png", "rgb"),
    ("human_object/0.png", "mask"),
    ("socrates/image.png", "rgb"),      # really a JPEG
    ("socrates/0.png", "mask"),
    ("socrates/5.png", "mask"),
    ("fencers/image.png", "rgb"),       # really a JPEG, 5120x2880
    ("fencers/0.png", "mask"),
]


def expected_rgb(im):
    a = np.array(im)
    if im.mode in ("RGB", "RGBA"):
        return a.astype(np.uint8)[..., :3]
    if im.mode == "I;16":
        return np.repeat((a >> 8).astype(np.uint8)[..., None], 3, axis=2)
    return np.array(im.convert("RGB"))


def expected_mask(im):
    m = np.array(im).astype(np.uint8) > 0        # notebook/inference.py:351-356
    if m.ndim == 3:
        m = m[..., -1]
    return m.astype(np.uint8)


def png_chunk(tag, data):
    c = struct.pack(">I", len(data)) + tag + data
    return c + struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff)


def png_raw(w, h, depth, ctype, rows, plte=None, trns=None, interlace=0):
    """rows: list of bytes per scanline (already packed), non-interlaced only unless
    interlace=1, where rows is a callable giving packed pass scanlines."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace)
    raw = b"".join(b"\x00" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    if plte is not None:
        out += png_chunk(b"PLTE", plte)
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    out += png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b"")
    return out


def pack_bits(vals, depth):
    """Pack a row of small ints MSB first."""
    per = 8 // depth
    out = bytearray()
    for i in range(0, len(vals), per):
        b = 0
        for j in range(per):
            v = vals[i + j] if i + j < len(vals) else 0
            b |= (int(v) & ((1 << depth) - 1)) << (8 - depth * (j + 1))
        out.append(b)
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def png_interlaced_rgb8(a):
    """Adam7-interlaced 8-bit RGB PNG of a (h, w, 3) uint8 array."""
    h, w, _ = a.shape
    raw = b""
    for x0, y0, dx, dy in ADAM7:
        sub = a[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        raw += b"".join(b"\x00" + r.tobytes() for r in sub)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
            png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


def photo(rng, h, w, c):
    """A smooth, photo-like image (upsampled noise) so JPEG has real content."""
    small = rng.integers(0, 256, size=(max(2, h // 6), max(2, w // 6), c), dtype=np.uint8)
    im = Image.fromarray(small if c > 1 else small[..., 0])
    im = im.resize((w, h), Image.BICUBIC)
    a = np.array(im)
    noise = rng.integers(-12, 13, size=a.shape)
    return np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", default=os.path.join(ROOT, "examples"))
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240602)
    files = {}
    W, H = 37, 23                                     # odd sizes: edges of MCUs and rows

    rgb = photo(rng, H, W, 3)
    gray = photo(rng, H, W, 1)
    alpha = (rng.random((H, W)) > 0.5).astype(np.uint8) * rng.integers(1, 256, (H, W)).astype(np.uint8)

    def pil_png(im, **kw):
        b = io.BytesIO()
        im.save(b, format="PNG", **kw)
        return b.getvalue()

    files["gray8.png"] = pil_png(Image.fromarray(gray))
    files["gray_alpha8.png"] = pil_png(Image.fromarray(np.dstack([gray, alpha]), "LA"))
    files["rgb8.png"] = pil_png(Image.fromarray(rgb))
    files["rgba8.png"] = pil_png(Image.fromarray(np.dstack([rgb, alpha])))
    files["bilevel1.png"] = pil_png(Image.fromarray(gray > 128))
    pal = Image.fromarray(rgb).quantize(colors=13)
    files["palette8.png"] = pil_png(pal)
    files["palette8_trns.png"] = pil_png(pal, transparency=3)
    files["palette4.png"] = pil_png(pal, bits=4)
    g16 = (gray.astype(np.uint16) * 257 + rng.integers(0, 257, (H, W))).astype(np.uint16)
    g16[0, :4] = [0, 256, 512, 65280]                 # nonzero with a zero low byte
    files["gray16.png"] = pil_png(Image.fromarray(g16))

    # hand-encoded variants
    rgb16 = rgb.astype(np.uint16) * 257 + rng.integers(0, 257, rgb.shape).astype(np.uint16)
    a16 = alpha.astype(np.uint16) * 256 + rng.integers(0, 256, alpha.shape).astype(np.uint16)
    a16[1, :3] = [0, 255, 256]                        # low alpha: high byte 0
    files["rgb16.png"] = png_raw(W, H, 16, 2, [r.astype(">u2").tobytes() for r in rgb16])
    files["rgba16.png"] = png_raw(W, H, 16, 6, [np.dstack([rgb16, a16])[y].astype(">u2").tobytes()
                                                 for y in range(H)])
    files["gray_alpha16.png"] = png_raw(W, H, 16, 4, [np.dstack([g16, a16])[y].astype(">u2").tobytes()
                                                       for y in range(H)])
    for d in (2, 4):
        v = (gray.astype(int) >> (8 - d))
        files[f"gray{d}.png"] = png_raw(W, H, d, 0, [pack_bits(r, d) for r in v])
    idx2 = rng.integers(0, 4, (H, W))
    plte = bytes(rng.integers(0, 256, 4 * 3, dtype=np.uint8))
    files["palette2_trns.png"] = png_raw(W, H, 2, 3, [pack_bits(r, 2) for r in idx2],
                                         plte=plte, trns=bytes([0, 128]))
    files["rgb8_interlaced.png"] = png_interlaced_rgb8(rgb)
    files["rgb8_trns.png"] = png_raw(W, H, 8, 2, [r.tobytes() for r in rgb],
                                     trns=struct.pack(">HHH", *map(int, rgb[0, 0])))

    # JPEG variants (Pillow's libjpeg-turbo writes them; decoding is what is tested)
    def pil_jpeg(im, **kw):
        b = io.BytesIO()
        im.save(b, format="JPEG", **kw)
        return b.getvalue()

    files["jpeg_gray.jpg"] = pil_jpeg(Image.fromarray(gray), quality=90)
    files["jpeg_444.jpg"] = pil_jpeg(Image.fromarray(rgb), quality=92, subsampling=0)
    files["jpeg_422.jpg"] = pil_jpeg(Image.fromarray(rgb), quality=85, subsampling=1)
    files["jpeg_420.jpg"] = pil_jpeg(Image.fromarray(rgb), quality=75, subsampling=2)
    files["jpeg_420_progressive.png"] = pil_jpeg(Image.fromarray(rgb), quality=80,
                                                 progressive=True)   # a JPEG named .png
    files["jpeg_cmyk.jpg"] = pil_jpeg(Image.fromarray(np.dstack([rgb, gray]), "CMYK"), quality=90)

    manifest = []
    for name in sorted(files):
        path = os.path.join(OUT, name)
        with open(path, "wb") as f:
            f.write(files[name])
        im = Image.open(path)
        er, em = expected_rgb(im), expected_mask(im)
        assert er.shape == (im.height, im.width, 3) and em.shape == (im.height, im.width)
        stem = os.path.splitext(name)[0]
        er.tofile(os.path.join(OUT, stem + ".rgb"))
        em.tofile(os.path.join(OUT, stem + ".mask"))
        manifest.append(f"{name} {im.width} {im.height} {im.mode}")
        print(f"{name:28s} {im.mode:5s} {im.width}x{im.height} mask_nonzero={int(em.sum())}")
    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")

    lines = []
    if os.path.isdir(args.examples):
        for rel, kind in EXAMPLES:
            im = Image.open(os.path.join(args.examples, rel))
            data = (expected_rgb(im) if kind == "rgb" else expected_mask(im)).tobytes()
            h = zlib.crc32(data) & 0xffffffff
            lines.append(f"{rel} {kind} {im.width} {im.height} {h:08x}")
            print(lines[-1])
        with open(os.path.join(OUT, "examples.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    else:
        print(f"examples not found at {args.examples}; examples.txt left as it was")


if __name__ == "__main__":
    main()
