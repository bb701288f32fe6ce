#!/usr/bin/env bash
# sam3d-array.sh - a list of images on a Slurm cluster: a job array, each task one GPU running
# `sam3d batch` on its slice of the list (its stages start and load once for the slice).
#
#   sbatch --array=0-$(( ($(grep -cv '^\s*\(#\|$\)' list.txt) + 15) / 16 - 1 )) \
#       deploy/slurm/sam3d-array.sh list.txt /shared/sam3d-weights /shared/out
#
# LIST: "IMAGE MASK" lines (sam3d batch's format; relative paths from LIST's folder).
# Task k takes the jobs k*CHUNK .. k*CHUNK+CHUNK-1 (CHUNK, default 16) and writes
# OUT/task<k>/ (one folder per job, summary.json). Env: SAM3D (the sam3d binary, default
# sam3d on PATH), CHUNK, S3D_JOB_ROOT (default: node-local /dev/shm), extra sam3d batch
# options in SAM3D_ARGS (e.g. "--preset fast --vram-budget 12G").
#SBATCH --job-name=sam3d
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=04:00:00
#SBATCH --output=sam3d-%A_%a.log
set -euo pipefail
list=${1:?usage: sam3d-array.sh LIST WEIGHTS_DIR OUT_DIR}
weights=${2:?usage: sam3d-array.sh LIST WEIGHTS_DIR OUT_DIR}
out=${3:?usage: sam3d-array.sh LIST WEIGHTS_DIR OUT_DIR}
task=${SLURM_ARRAY_TASK_ID:?run it with sbatch --array=0-N}
chunk=${CHUNK:-16}
sam3d=${SAM3D:-sam3d}
dir=$(cd "$(dirname "$list")" && pwd)
mkdir -p "$out/task$task"
slice=$out/task$task/list.txt
# the task's jobs, paths made absolute (the slice lives elsewhere than LIST)
grep -v '^\s*\(#\|$\)' "$list" | sed -n "$((task * chunk + 1)),$((task * chunk + chunk))p" |
    while read -r image mask; do
        case $image in /*) ;; *) image=$dir/$image ;; esac
        case $mask in /*) ;; *) mask=$dir/$mask ;; esac
        printf '%s %s\n' "$image" "$mask"
    done >"$slice"
if [ ! -s "$slice" ]; then
    echo "task $task: no jobs (the list has fewer than $((task * chunk + 1)))"; exit 0
fi
# shellcheck disable=SC2086  # SAM3D_ARGS is a list of options
exec "$sam3d" batch "$slice" --weights "$weights" --out "$out/task$task" ${SAM3D_ARGS:-}
