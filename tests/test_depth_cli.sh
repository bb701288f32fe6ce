#!/usr/bin/env bash
# test_depth_cli.sh - sam3d-depth through its real CLI (--once, CPU, tiny MoGe
# weights tests/fixtures/moge_tiny/model.pt):
#  1. the fixture's own image (96x54, written back to PNG): points, valid and
#     intrinsics equal the official MoGeModel.infer dump (points within 1e-5
#     relative over valid pixels, NaN exactly where invalid, mask identical);
#     the token budget 36 comes from the checkpoint's model_config;
#  2. the real example image (human_object, 1600x898 RGBA PNG + mask): every
#     output has its documented name, dtype and shape, points are NaN exactly
#     where valid is 0, the preprocessed tensors are in range; num_tokens and
#     repeat params are honoured;
#  3. refusals with one clear error line: a mask of another size, an empty
#     mask, a file that is not an image (as the image, the mask or both: the
#     mask decodes beside MoGe), the wrong checkpoint, a missing param, a bad
#     num_tokens; nothing is left in the output folder.
# Python (stdlib only) writes the PNG inputs and reads the safetensors outputs.
set -u
build=${BUILD:-build}
bin=$build/sam3d-depth
fx=tests/fixtures/moge_tiny
ex=examples/human_object
. "$(dirname "$0")/lib.sh"
need_exec "" "$bin"
need_python3 "to write the PNG inputs"
test_tmp

cat >"$tmp/st.py" <<'PY'
import json, math, struct, sys, zlib
from array import array
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()}
def vals(t):
    dt, sh, raw = t
    return array("f", raw) if dt == "F32" else array("B", raw)
def png(path, w, h, ch, pix):          # 8-bit gray (ch 1) or RGB (ch 3), pix row-major bytes
    rows = b"".join(b"\0" + bytes(pix[y * w * ch:(y + 1) * w * ch]) for y in range(h))
    def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, {1: 0, 3: 2}[ch], 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
cmd = sys.argv[1]
if cmd == "fixture_png":               # ref.safetensors image (3,H,W) f32 = u8/255 -> PNG; box mask
    ref, out = load(sys.argv[2]), sys.argv[3]
    _, (C, H, W), _ = ref["image"]; im = vals(ref["image"])
    pix = [int(round(im[c * H * W + q] * 255)) for q in range(H * W) for c in range(3)]
    assert all(abs(pix[3 * q + c] / 255 - im[c * H * W + q]) < 1e-7 for q in range(H * W) for c in range(3))
    png(out + "/image.png", W, H, 3, pix)
    png(out + "/mask.png", W, H, 1, [1 if (H // 4 <= q // W < 3 * H // 4 and W // 3 <= q % W < 2 * W // 3) else 0 for q in range(H * W)])
elif cmd == "png":                     # png PATH W H VALUE: constant gray
    w, h, v = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    png(sys.argv[2], w, h, 1, [v] * (w * h))
elif cmd == "parity":                  # parity OUT REF: points/valid/intrinsics vs the dump
    o, r = load(sys.argv[2]), load(sys.argv[3])
    _, (H, W, _), _ = o["points"]; HW = H * W
    p, v, rp, rm = vals(o["points"]), vals(o["valid"]), vals(r["pointmap"]), vals(r["mask"])
    bad = sum(v[q] != rm[q] for q in range(HW))
    num = den = 0.0; nan_ok = True
    for q in range(HW):
        for c in range(3):
            a, b = p[3 * q + c], rp[c * HW + q]
            if v[q]: num += (a - b) ** 2; den += b * b
            else: nan_ok &= math.isnan(a) and math.isnan(b)
    rel = math.sqrt(num / den)
    k, rk = vals(o["intrinsics"]), vals(r["intrinsics"])
    krel = math.sqrt(sum((a - b) ** 2 for a, b in zip(k, rk)) / sum(b * b for b in rk))
    print(f"points rel_l2 {rel:.2e} over {sum(v)} valid pixels, {bad} mask differences, intrinsics rel {krel:.2e}, NaN where invalid: {nan_ok}")
    sys.exit(0 if rel < 1e-5 and bad == 0 and krel < 1e-5 and nan_ok else 1)
elif cmd == "layout":                  # layout OUT H W: names, dtypes, shapes, ranges
    o, H, W, S = load(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), 518
    want = {"points": ("F32", [H, W, 3]), "valid": ("U8", [H, W]), "intrinsics": ("F32", [3, 3]),
            "focal": ("F32", [1]), "shift": ("F32", [1]),
            "image": ("F32", [1, 3, S, S]), "rgb_image": ("F32", [1, 3, S, S]),
            "mask": ("F32", [1, 1, S, S]), "rgb_image_mask": ("F32", [1, 1, S, S]),
            "pointmap": ("F32", [1, 3, S, S]), "rgb_pointmap": ("F32", [1, 3, S, S]),
            "pointmap_scale": ("F32", [1, 3]), "pointmap_shift": ("F32", [1, 3])}
    errs = [f"{k}: {o[k][:2] if k in o else 'missing'} != {w}" for k, w in want.items() if k not in o or tuple(o[k][:2]) != (w[0], w[1])]
    errs += [f"unexpected {k}" for k in o if k not in want]
    if errs: print("\n".join(errs)); sys.exit(1)
    p, v = vals(o["points"]), vals(o["valid"])
    nv = sum(v)
    if not all((v[q] and all(math.isfinite(p[3 * q + c]) for c in range(3))) or (not v[q] and all(math.isnan(p[3 * q + c]) for c in range(3))) for q in range(H * W)):
        errs.append("points must be finite where valid and NaN elsewhere")
    k = vals(o["intrinsics"])
    if not (k[2] == 0.5 and k[5] == 0.5 and k[8] == 1 and k[0] > 0 and k[4] > 0 and vals(o["focal"])[0] > 0):
        errs.append(f"intrinsics {list(k)}")
    for n in ("image", "rgb_image"):
        x = vals(o[n])
        if not all(0 <= a <= 1 for a in x): errs.append(f"{n} outside [0, 1]")
    for n in ("mask", "rgb_image_mask"):
        x = vals(o[n])
        if not all(a in (0.0, 1.0) for a in x) or sum(x) == 0: errs.append(f"{n} not a nonempty 0/1 mask")
    pm = vals(o["pointmap"])
    if sum(1 for a in pm if math.isfinite(a)) == 0: errs.append("pointmap has no finite point")
    if not vals(o["pointmap_scale"])[0] > 0: errs.append("pointmap_scale not positive")
    print(f"{len(o)} tensors as documented; {nv} of {H * W} pixels valid; focal {vals(o['focal'])[0]:.4f}")
    if errs: print("\n".join(errs)); sys.exit(1)
PY
st() { python3 "$tmp/st.py" "$@"; }
# 1. parity with the official dump through the CLI
mkdir -p "$tmp/fx/in" "$tmp/fx/out"
st fixture_png "$fx/ref.safetensors" "$tmp/fx/in" || bad "write fixture PNGs"
if "$bin" --weights "$fx/model.pt" --device cpu --once "$tmp/fx/in" "$tmp/fx/out" \
    --param image="$tmp/fx/in/image.png" --param mask="$tmp/fx/in/mask.png" 2>"$tmp/fx/log"; then
    ok "--once on the fixture image"
    grep -q "budget 36)" "$tmp/fx/log" && ok "token budget 36 read from model_config" ||
        { bad "token budget not read from model_config"; grep "depth:" "$tmp/fx/log"; }
    st parity "$tmp/fx/out/depth.safetensors" "$fx/ref.safetensors" &&
        ok "points, valid, intrinsics equal the official MoGeModel.infer" ||
        bad "differs from the official MoGe dump"
else
    bad "--once on the fixture image"; tail -5 "$tmp/fx/log"
fi

# 1b. stream_blocks=1: the encoder's blocks in host memory, copied into two device slots
#     before they run (common/stage_blocks.h): the same bytes
mkdir -p "$tmp/fx/sb"
if "$bin" --weights "$fx/model.pt" --device cpu --once "$tmp/fx/in" "$tmp/fx/sb" \
    --param image="$tmp/fx/in/image.png" --param mask="$tmp/fx/in/mask.png" \
    --param stream_blocks=1 2>"$tmp/fx/sb.log" &&
    same_tensors "$tmp/fx/sb/depth.safetensors" "$tmp/fx/out/depth.safetensors" &&
    grep -q "streamed from the host memory through 2 device slots" "$tmp/fx/sb.log"; then
    ok "stream_blocks=1: same output as the blocks resident"
else
    bad "stream_blocks=1"; tail -3 "$tmp/fx/sb.log"
fi

# 2. the real example image, full size
if [ -f "$ex/image.png" ] && [ -f "$ex/0.png" ]; then
    mkdir -p "$tmp/ex/in" "$tmp/ex/out" "$tmp/ex/out2"
    cp "$ex/image.png" "$tmp/ex/in/image.png"
    cp "$ex/0.png" "$tmp/ex/in/mask.png"
    if "$bin" --weights "$fx/model.pt" --device cpu --once "$tmp/ex/in" "$tmp/ex/out" \
        --param image="$tmp/ex/in/image.png" --param mask="$tmp/ex/in/mask.png" 2>"$tmp/ex/log"; then
        ok "--once on $ex (1600x898): $(grep -o 'MoGe [0-9.]* ms median' "$tmp/ex/log"), $(grep -o 'preprocessing [0-9.]* ms' "$tmp/ex/log")"
        st layout "$tmp/ex/out/depth.safetensors" 898 1600 && ok "outputs as documented" ||
            bad "outputs not as documented"
    else
        bad "--once on $ex"; tail -5 "$tmp/ex/log"
    fi
    if "$bin" --weights "$fx/model.pt" --device cpu --once "$tmp/ex/in" "$tmp/ex/out2" \
        --param image="$tmp/ex/in/image.png" --param mask="$tmp/ex/in/mask.png" \
        --param num_tokens=20 --param repeat=3 2>"$tmp/ex/log2" &&
        grep -q "budget 20): MoGe [0-9.]* ms median of 3" "$tmp/ex/log2"; then
        ok "num_tokens=20 and repeat=3 honoured"
    else
        bad "num_tokens / repeat params"; grep "depth:\| E " "$tmp/ex/log2"
    fi
else
    echo "note: $ex not found: full-size example part skipped"
fi

# 3. refusals: refused NAME WEIGHTS IMAGE MASK SUBSTRING [extra args]
refused() {
    local name=$1 w=$2 im=$3 mk=$4 sub=$5
    shift 5
    mkdir -p "$tmp/r_out"
    if "$bin" --weights "$w" --device cpu --once "$tmp/fx/in" "$tmp/r_out" \
        --param image="$im" --param mask="$mk" "$@" 2>"$tmp/r_err"; then
        bad "$name: accepted"
    elif [ -n "$(ls -A "$tmp/r_out")" ]; then
        bad "$name: refused, but left $(ls "$tmp/r_out") in the output folder"
    elif grep -q " E .*$sub" "$tmp/r_err"; then
        ok "$name: refused ($(grep -m1 " E .*$sub" "$tmp/r_err" | sed 's/.* E [0-9:.]* //' | cut -c1-150))"
    else
        bad "$name: no error line with '$sub'"; cat "$tmp/r_err"
    fi
}
st png "$tmp/fx/in/small.png" 10 10 1
st png "$tmp/fx/in/empty.png" 96 54 0
echo "not an image" >"$tmp/fx/in/text.png"
I=$tmp/fx/in/image.png M=$tmp/fx/in/mask.png
refused "mask of another size" "$fx/model.pt" "$I" "$tmp/fx/in/small.png" "small.png"
refused "empty mask" "$fx/model.pt" "$I" "$tmp/fx/in/empty.png" "empty.png"
refused "not an image" "$fx/model.pt" "$tmp/fx/in/text.png" "$M" "text.png"
# the mask decodes beside the image and MoGe: its errors still name it, the image's name the image
refused "mask not an image" "$fx/model.pt" "$I" "$tmp/fx/in/text.png" "mask '.*text.png"
refused "image and mask not images" "$fx/model.pt" "$tmp/fx/in/text.png" "$tmp/fx/in/text.png" \
    "cannot read the image"
refused "wrong checkpoint" tests/fixtures/cond_ss_tiny/ss_generator.ckpt "$I" "$M" "ss_generator.ckpt"
refused "num_tokens 0" "$fx/model.pt" "$I" "$M" "num_tokens" --param num_tokens=0
mkdir -p "$tmp/r_out"
if "$bin" --weights "$fx/model.pt" --device cpu --once "$tmp/fx/in" "$tmp/r_out" \
    --param image="$I" 2>"$tmp/r_err"; then
    bad "missing mask param: accepted"
elif grep -q " E .*mask" "$tmp/r_err"; then
    ok "missing mask param: refused"
else
    bad "missing mask param: no error line"; cat "$tmp/r_err"
fi
exit $fail
