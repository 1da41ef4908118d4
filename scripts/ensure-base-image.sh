#!/usr/bin/env bash
# Print (last line) the base image the serving image builds FROM.
# The default is a public slim Python image for real users. When it is neither present nor pullable
# (no public registry reachable here), build a Debian bookworm rootfs with debootstrap and import it.
#   scripts/ensure-base-image.sh            find, pull or build it
#   scripts/ensure-base-image.sh --present  only print one already on this engine (exit 1 if none)
set -euo pipefail
cd "$(dirname "$0")/.."
want="${BASE_IMAGE:-python:3.11-slim}"
local_base="${LOCAL_BASE_IMAGE:-sagemaker-release/base:bookworm}"

if docker image inspect "$want" >/dev/null 2>&1; then echo "$want"; exit 0; fi
if docker image inspect "$local_base" >/dev/null 2>&1; then echo "$local_base"; exit 0; fi
[ "${1:-}" != "--present" ] || exit 1
if timeout 30 docker pull -q "$want" >/dev/null 2>&1; then echo "$want"; exit 0; fi

echo "==> $want cannot be pulled; building $local_base with debootstrap (about a minute)" >&2
mkdir -p .state/logs
scripts/apt-install.sh debootstrap
rootfs=$(mktemp -d /tmp/sagemaker-release-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
mirror=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
[ -n "$mirror" ] || mirror=$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" \
  > .state/logs/debootstrap.log 2>&1 || { tail -n 20 .state/logs/debootstrap.log >&2; exit 1; }
# `docker import` has no quiet flag: its one line of output (the image id) is not ours to print.
tar -C "$rootfs" -c . | docker import - "$local_base" >/dev/null
echo "$local_base"
