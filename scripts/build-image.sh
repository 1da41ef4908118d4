#!/usr/bin/env bash
# Build the serving image from container/ and print its reference as the last line.
# The tag is the hash of the build context, so an unchanged context gives the same tag and the build
# is skipped outright when that tag already exists.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-docker.sh
base=$(scripts/ensure-base-image.sh | tail -n 1)
# One fill-and-build at a time on this machine: `make test` of several people may start it together.
mkdir -p .state
exec 9>.state/build-image.lock
if ! flock -w "${IMAGE_BUILD_LOCK_TIMEOUT:-1800}" 9; then
  echo "another build held .state/build-image.lock for ${IMAGE_BUILD_LOCK_TIMEOUT:-1800}s; is one stuck?" >&2
  exit 1
fi
scripts/fill-wheelhouse.sh
repo=${IMAGE_REPO:-sagemaker-release/serving}
digest=$( (echo "$base"; cd container && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-12)
ref="$repo:$digest"
if docker image inspect "$ref" >/dev/null 2>&1; then
  echo "==> $ref is already built" >&2
else
  echo "==> building $ref FROM $base" >&2
  # SageMaker pulls Docker v2 schema 2 images only (tasks/image/build.py builds the same way). buildx
  # 0.10+ adds a provenance attestation, which makes the pushed image an OCI index: it is turned off.
  # Without buildx, an engine with the containerd image store would keep the build as an OCI image.
  if docker buildx version >/dev/null 2>&1; then
    build=(docker buildx build --load)
    if docker buildx build --help 2>/dev/null | grep -q -- '--provenance'; then
      build+=(--provenance=false)
    fi
  elif docker info -f '{{range .DriverStatus}}{{index . 1}} {{end}}' 2>/dev/null \
      | grep -q 'io.containerd.snapshotter'; then
    echo "the docker engine uses the containerd image store, where docker build makes an OCI image" \
      "SageMaker refuses; install the buildx plugin (apt-get install docker-buildx) or disable the" \
      'store ("features": {"containerd-snapshotter": false} in /etc/docker/daemon.json)' >&2
    exit 1
  else
    build=(docker build)
  fi
  "${build[@]}" --build-arg BASE_IMAGE="$base" -t "$ref" container >&2
fi
docker tag "$ref" "$repo:latest"
echo "$ref"
