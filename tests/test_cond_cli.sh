#!/usr/bin/env bash
# test_cond_cli.sh - sam3d-cond through its real CLI (--once) on the tiny
# fixtures: SS and SLAT outputs equal the official fuser's 'cond' (relative L2
# below 1e-5, fp32 on the CPU), the SS output holds cond_ss alone (the pose
# decoder reads pointmap_scale/shift from depth.safetensors), and bad inputs (the wrong checkpoint, a missing tensor, a wrong shape)
# exit non-zero with one clear error line naming the problem; param repeat
# reruns the forward (same output, median logged); stream_blocks=1 (the DINO
# blocks streamed from host memory) gives the same bytes.
# Inputs are cut out of the fixture dumps with a stdlib-only Python helper.
set -u
build=${BUILD:-build}
bin=$build/sam3d-cond
. "$(dirname "$0")/lib.sh"
need_exec "" "$bin"
need_python3 "to cut the fixture inputs"
test_tmp

# st.py cut SRC DST name[=newname] ...   |   st.py cmp OUT name REF refname tol
cat >"$tmp/st.py" <<'PY'
import json, struct, sys, math
from array import array
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()}
def save(p, t):
    h, off, data = {}, 0, b""
    for k, (dt, sh, raw) in t.items():
        h[k] = {"dtype": dt, "shape": sh, "data_offsets": [off, off + len(raw)]}; off += len(raw); data += raw
    hj = json.dumps(h).encode(); hj += b" " * (-len(hj) % 8)
    open(p, "wb").write(struct.pack("<Q", len(hj)) + hj + data)
def floats(dt, raw):
    if dt == "F32": return array("f", raw).tolist()
    if dt == "F16": return [struct.unpack_from("<e", raw, 2 * i)[0] for i in range(len(raw) // 2)]
    raise SystemExit("dtype " + dt)
if sys.argv[1] == "cut":
    src = load(sys.argv[2]); out = {}
    for a in sys.argv[4:]:
        name, _, new = a.partition("="); out[new or name] = src[name]
    save(sys.argv[3], out)
else:
    _, _, outp, name, refp, refname, tol = sys.argv
    o, r = load(outp)[name], load(refp)[refname]
    if o[1] != r[1]: print("shape", o[1], "vs", r[1]); sys.exit(1)
    a, b = floats(o[0], o[2]), floats(r[0], r[2])
    num = sum((x - y) ** 2 for x, y in zip(a, b)); den = sum(y * y for y in b)
    rel = math.sqrt(num / den) if den else math.sqrt(num)
    print(f"{name} {o[0]} {o[1]} rel_l2 {rel:.2e} (tol {tol})"); sys.exit(0 if rel <= float(tol) else 1)
PY
st() { python3 "$tmp/st.py" "$@"; }
ins="image rgb_image mask rgb_image_mask"
ss_ins="$ins pointmap rgb_pointmap"

for v in ss slat; do
    fx=tests/fixtures/cond_${v}_tiny
    mkdir -p "$tmp/$v/in" "$tmp/$v/out"
    if [ $v = ss ]; then list=$ss_ins; else list=$ins; fi
    # shellcheck disable=SC2086
    st cut "$fx/ref.safetensors" "$tmp/$v/in/inputs.safetensors" $list || { bad "cut $v inputs"; continue; }
    if "$bin" --weights "$fx/${v}_generator.ckpt" --device cpu --once "$tmp/$v/in" "$tmp/$v/out" \
        2>"$tmp/$v/log"; then
        ok "--once $v"
    else
        bad "--once $v"; tail -5 "$tmp/$v/log"; continue
    fi
    if st cmp "$tmp/$v/out/cond.safetensors" "cond_$v" "$fx/ref.safetensors" cond 1e-5; then
        ok "cond_$v equals the official fuser"
    else
        bad "cond_$v differs from the official fuser"
    fi
    if python3 -c 'import json, struct, sys; r = open(sys.argv[1], "rb").read()
h = json.loads(r[8:8 + struct.unpack("<Q", r[:8])[0]]); h.pop("__metadata__", None)
sys.exit(0 if sorted(h) == [sys.argv[2]] else 1)' "$tmp/$v/out/cond.safetensors" "cond_$v"; then
        ok "cond.safetensors holds cond_$v alone (nothing passed through)"
    else
        bad "cond.safetensors holds more than cond_$v"
    fi
done

# param repeat: the forward runs N times (warm timing), the output is unchanged and the
# median and the memory line are logged; a repeat outside [1, 1000] is refused
v=slat
mkdir -p "$tmp/rep"
if "$bin" --weights tests/fixtures/cond_${v}_tiny/${v}_generator.ckpt --device cpu --param repeat=3 \
    --once "$tmp/$v/in" "$tmp/rep" 2>"$tmp/rep.log" &&
    same_tensors "$tmp/rep/cond.safetensors" "$tmp/$v/out/cond.safetensors" &&
    grep -q "forward .* ms median of 3" "$tmp/rep.log" && grep -q "memory: " "$tmp/rep.log"; then
    ok "repeat=3: same output, $(grep -o 'forward .* ms median of 3' "$tmp/rep.log")"
else
    bad "repeat=3"; tail -5 "$tmp/rep.log"
fi
if "$bin" --weights tests/fixtures/cond_${v}_tiny/${v}_generator.ckpt --device cpu --param repeat=0 \
    --once "$tmp/$v/in" "$tmp/rep" 2>"$tmp/rep.log"; then
    bad "repeat=0 accepted"
elif grep -q "repeat 0 is outside" "$tmp/rep.log"; then
    ok "repeat=0 refused"
else
    bad "repeat=0: no error line"; cat "$tmp/rep.log"
fi

# stream_blocks=1: the DINO towers' blocks in host memory, copied into two device slots
# before they run (common/stage_blocks.h): the same bytes, for both variants
for v in ss slat; do
    mkdir -p "$tmp/sb_$v"
    if "$bin" --weights tests/fixtures/cond_${v}_tiny/${v}_generator.ckpt --device cpu \
        --param stream_blocks=1 --once "$tmp/$v/in" "$tmp/sb_$v" 2>"$tmp/sb_$v.log" &&
        same_tensors "$tmp/sb_$v/cond.safetensors" "$tmp/$v/out/cond.safetensors" &&
        grep -q "4 blocks of .* streamed from the host memory through 2 device slots" "$tmp/sb_$v.log"; then
        ok "stream_blocks=1 $v: same output as the blocks resident"
    else
        bad "stream_blocks=1 $v"; tail -3 "$tmp/sb_$v.log"
    fi
done

# refused() NAME WEIGHTS INDIR SUBSTRING: non-zero exit and an error line containing SUBSTRING
refused() {
    mkdir -p "$tmp/r_out"
    if "$bin" --weights "$2" --device cpu --once "$3" "$tmp/r_out" 2>"$tmp/r_err"; then
        bad "$1: accepted"
    elif grep -q " E .*$4" "$tmp/r_err"; then
        ok "$1: refused ($(grep -m1 " E " "$tmp/r_err" | sed 's/.* E [0-9:.]* //'))"
    else
        bad "$1: no error line with '$4'"; cat "$tmp/r_err"
    fi
}
fx=tests/fixtures/cond_ss_tiny
refused "wrong checkpoint (MoGe)" tests/fixtures/moge_tiny/model.pt "$tmp/ss/in" "model.pt"
mkdir -p "$tmp/miss" "$tmp/shape"
# shellcheck disable=SC2086
st cut "$fx/ref.safetensors" "$tmp/miss/inputs.safetensors" image rgb_image rgb_image_mask pointmap rgb_pointmap pointmap_scale pointmap_shift
refused "missing tensor" "$fx/ss_generator.ckpt" "$tmp/miss" "mask"
# shellcheck disable=SC2086
st cut "$fx/ref.safetensors" "$tmp/shape/inputs.safetensors" image=rgb_image mask=image mask rgb_image_mask pointmap rgb_pointmap pointmap_scale pointmap_shift
refused "wrong input shape" "$fx/ss_generator.ckpt" "$tmp/shape" "image"
exit $fail
