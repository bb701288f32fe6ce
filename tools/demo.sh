#!/usr/bin/env bash
# demo.sh - run the sam3d pipeline on an example image and show what it produced
# (`make demo` calls it after building: tools/demo.sh BUILD_DIR).
#
#   tools/demo.sh [BUILD_DIR]                                  (default: build)
#
# Environment (the names before S3D_* - SAM3D_WEIGHTS, DEMO_IMAGE, DEMO_MASK, DEMO_MOGE,
# DEMO_DEVICE, DEMO_OUT, DEMO_PRESET - still work, with a line saying the new name):
#   S3D_DEMO_IMAGE, S3D_DEMO_MASK   the input (default examples/human_object/{image,0}.png,
#                           relative to the repository root)
#   S3D_WEIGHTS=DIR         the official weights (ss_generator.ckpt, slat_generator.ckpt, ...
#                           and MoGe at DIR/moge-vitl/model.pt, or S3D_DEMO_MOGE=FILE). Without
#                           it the demo assembles a tiny RANDOM-weight model in the official file
#                           layout from the committed test fixtures into BUILD/demo-weights/;
#                           its numbers mean nothing and every result line says so.
#   S3D_DEMO_DEVICE         passed as --device (cpu, cuda:N); default: each stage picks
#                           cuda:0 when a GPU is usable, else its CPU path
#   S3D_DEMO_OUT            output directory (default BUILD/demo-out)
#   S3D_DEMO_PRESET         passed as --preset (default: fast with the tiny random model, so
#                           the CPU path's 38 SLAT flow evaluations over ~15k voxels do not
#                           take minutes; none with S3D_WEIGHTS: the pipeline's settings;
#                           set and empty: none)
#
# It runs `BUILD/sam3d run ... --out S3D_DEMO_OUT`, then lists the artifacts (name, dtype, shape
# via `sam3d inspect`), the per-stage wall time and peak memory from report.json, and the
# stages that are still to come. Exit status: 0 when the run completed or ran every stage
# that exists (sam3d's exit 3), else sam3d's exit status.
set -u
cd "$(dirname "$0")/.." || exit 1
build=${1:-build}
sam3d=$build/sam3d
for pair in SAM3D_WEIGHTS:S3D_WEIGHTS DEMO_IMAGE:S3D_DEMO_IMAGE DEMO_MASK:S3D_DEMO_MASK \
            DEMO_MOGE:S3D_DEMO_MOGE DEMO_DEVICE:S3D_DEMO_DEVICE DEMO_OUT:S3D_DEMO_OUT \
            DEMO_PRESET:S3D_DEMO_PRESET; do
    old=${pair%%:*} new=${pair#*:}
    if [ -n "${!old+set}" ] && [ -z "${!new+set}" ]; then
        echo "demo: $old is deprecated: read as $new (set $new instead)"
        printf -v "$new" '%s' "${!old}"
    fi
done
image=${S3D_DEMO_IMAGE:-examples/human_object/image.png}
mask=${S3D_DEMO_MASK:-examples/human_object/0.png}
out=${S3D_DEMO_OUT:-$build/demo-out}

die() { echo "demo: error: $*" >&2; exit 1; }

[ -x "$sam3d" ] || die "$sam3d is not built (HINT: make demo, or make all first)"
for f in "$image" "$mask"; do
    [ -r "$f" ] || die "cannot read '$f' (HINT: set S3D_DEMO_IMAGE=IMG S3D_DEMO_MASK=MASK)"
done

# ---------------------------------------------------------------- weights
tag=""                    # prefix of every line that could be mistaken for a real result
if [ -n "${S3D_WEIGHTS:-}" ]; then
    weights=$S3D_WEIGHTS
    moge=${S3D_DEMO_MOGE:-$weights/moge-vitl/model.pt}
    [ -d "$weights" ] || die "S3D_WEIGHTS='$weights' is not a directory (README: Getting the official weights)"
    echo "demo: official weights from $weights (MoGe: $moge)"
else
    weights=$build/demo-weights
    moge=$weights/moge-vitl/model.pt
    fx=tests/fixtures
    mkdir -p "$weights/moge-vitl" || die "cannot create $weights"
    # the same official containers, with tiny configurations and random weights that chain:
    # ss_generator.ckpt holds the SS condition embedder (sam3d-cond: tokens of width 128) AND
    # the SS flow generator (sam3d-ss-flow: condition width 128), as the released file does;
    # the SS decoder is convolutional (any latent grid: 8^3 here -> 32^3 occupancy);
    # slat_generator.ckpt holds the SLAT condition embedder (tokens of width 64) AND the SLAT
    # flow generator (condition width 64, any voxels at 64^3); the Gaussian and mesh decoders
    # read any voxels at 64^3 with 8 latent channels
    if ! cp "$fx/moge_tiny/model.pt" "$moge" ||
       ! cp "$fx/cond_ss_tiny/ss_generator.ckpt" "$fx/cond_slat_tiny/slat_generator.ckpt" \
            "$fx/ss_decoder_tiny/ss_decoder.ckpt" "$fx/gs_decoder_tiny/g32/slat_decoder_gs.ckpt" \
            "$fx/mesh_decoder_tiny/slat_decoder_mesh.ckpt" "$weights/"; then
        die "cannot assemble the tiny model from $fx (HINT: run from a complete checkout)"
    fi
    tag="[RANDOM WEIGHTS] "
    echo "demo: S3D_WEIGHTS is not set: using a tiny RANDOM-weight model in the official file"
    echo "demo: layout ($weights: moge-vitl/model.pt, ss_generator.ckpt, slat_generator.ckpt,"
    echo "demo: ss_decoder.ckpt, slat_decoder_gs.ckpt, slat_decoder_mesh.ckpt, from tests/fixtures)."
    echo "demo: It exercises every built stage end to end; its outputs are NOT a reconstruction."
    echo "demo: Set S3D_WEIGHTS=DIR for real results."
fi

# ---------------------------------------------------------------- run
mkdir -p "$out" || die "cannot create $out"
# only what an earlier demo run wrote there (S3D_DEMO_OUT may be a directory with other files)
rm -rf "$out/artifacts" "$out/report.json" "$out/sam3d.log" "$out"/*.ply "$out"/*.glb "$out/pose.json" \
    "$out/preview.png"
args=(run --image "$image" --mask "$mask" --weights "$weights" --moge "$moge" --out "$out")
[ -n "${S3D_DEMO_DEVICE:-}" ] && args+=(--device "$S3D_DEMO_DEVICE")
preset=${S3D_DEMO_PRESET-$([ -n "$tag" ] && echo fast)}
[ -n "$preset" ] && args+=(--preset "$preset")
echo "demo: $sam3d ${args[*]}"
echo "demo: (stage logs in $out/sam3d.log)"
"$sam3d" "${args[@]}" 2>"$out/sam3d.log.tmp"
rc=$?
mv "$out/sam3d.log.tmp" "$out/sam3d.log"
case $rc in
0) echo "demo: ${tag}sam3d run completed every stage" ;;
3) echo "demo: ${tag}sam3d run ran every stage that is built (exit 3: later stages do not exist yet)" ;;
*) echo "demo: sam3d run failed (exit $rc); the end of $out/sam3d.log:" >&2
   tail -15 "$out/sam3d.log" >&2
   exit $rc ;;
esac

# ---------------------------------------------------------------- what it produced
echo
echo "${tag}artifacts in $out/artifacts (name dtype shape):"
shopt -s nullglob
for f in "$out"/artifacts/*.safetensors; do
    echo "  ${tag}$(basename "$f")"
    "$sam3d" inspect "$f" | sed "s/^/      ${tag}/"
done
for f in "$out"/*.ply "$out"/*.glb "$out"/pose.json "$out"/preview.png; do
    [ -e "$f" ] || continue
    echo "  ${tag}$(basename "$f") ($(wc -c <"$f") bytes)"
done

# report.json (orchestrator/run.c write_report): one line per stage
#   {"name": "depth", "exe": "...", "state": "done", "wall_ms": 1.0, "load_ms": ..., "run_ms": ...,
#    "peak_bytes": N, "resident_bytes": N, "host_peak_bytes": N, "rss_peak_bytes": N, ...
echo
status=$(sed -n 's/^  "status": "\([a-z ]*\)".*/\1/p' "$out/report.json")
total=$(sed -n 's/^  "wall_ms": \([0-9.]*\).*/\1/p' "$out/report.json")
echo "${tag}report.json: $status, $total ms in all (peak device: the stage's device arenas;"
echo "${tag}peak host: its process's peak resident set, docs/formats.md)"
awk -v tag="$tag" '
function field(k,   m) {
    if (match($0, "\"" k "\": (\"[^\"]*\"|[-0-9.]+|true|false)")) {
        m = substr($0, RSTART + length(k) + 4, RLENGTH - length(k) - 4); gsub(/"/, "", m); return m
    }
    return ""
}
function mb(b) { return sprintf("%.1f MB", b / 1e6) }
/^    \{"name": / {
    name = field("name"); state = field("state")
    if (state == "done")        # printed with the next line: whether it loaded ahead
        line = sprintf("  %s%-12s %-8s wall %9.1f ms (load %.1f%%s, run %.1f)  peak device %s, " \
                       "host %s\n", tag, name, state, field("wall_ms"), field("load_ms"), \
                       field("run_ms"), mb(field("peak_bytes")), mb(field("rss_peak_bytes")))
    else
        todo = todo sprintf("  %-12s %s (%s)\n", name, state, field("exe"))
}
/^     "warm": / && line != "" {
    printf line, field("preloaded") == "true" ? " ahead" : ""
    line = ""
}
END {
    if (todo != "") { print ""; printf "stages still to come:\n%s", todo }
}' "$out/report.json"
echo
echo "demo: ${tag}outputs in $out (report.json, artifacts/, sam3d.log)"
exit 0
