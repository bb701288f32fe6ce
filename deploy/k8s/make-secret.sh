#!/usr/bin/env bash
# make-secret.sh [SAM3D] - the Secret sam3d-curve that deploy/k8s/sam3d.yaml reads: one CURVE
# key pair for the stages (stage-secret, stage-public) and one for the orchestrator
# (client-secret, client-public; the stages answer only client-public). Keys come from
# `sam3d keygen` (SAM3D: the sam3d binary, default sam3d on PATH); nothing is written to disk.
# Pass --dry-run=client -o yaml through KUBECTL_ARGS to see the object instead of creating it.
set -euo pipefail
sam3d=${1:-sam3d}
eval "$("$sam3d" keygen)"
kubectl create secret generic sam3d-curve ${KUBECTL_ARGS:-} \
    --from-literal=stage-secret="$S3D_CURVE_SECRET" \
    --from-literal=stage-public="$S3D_CURVE_SERVERKEY" \
    --from-literal=client-secret="$S3D_CURVE_CLIENT_SECRET" \
    --from-literal=client-public="$S3D_CURVE_CLIENT_KEY"
