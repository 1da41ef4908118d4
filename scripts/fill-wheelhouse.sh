#!/usr/bin/env bash
# Download the serving container's wheels on the host: inside `docker build` the package index is
# not reachable here, so the Dockerfile installs with --no-index from container/wheelhouse.
# Skipped when container/requirements.txt has not changed since the last fill. A refill downloads into
# a fresh folder and then replaces the wheelhouse, so wheels of an older requirements.txt never linger
# (pip would otherwise pick a stale, newer transitive wheel at build time).
set -euo pipefail
cd "$(dirname "$0")/.."
req=container/requirements.txt
dest=container/wheelhouse
stamp_value=$(sha256sum "$req" | cut -c1-16)
if [ "$(cat "$dest/.filled" 2>/dev/null)" = "$stamp_value" ]; then
  exit 0
fi
echo "==> filling $dest from $req" >&2
# Outside container/: a half-filled folder must never be part of a build context.
mkdir -p .state
fresh=$(mktemp -d .state/wheelhouse.XXXXXX)
trap 'rm -rf "$fresh"' EXIT
chmod 755 "$fresh"
.venv/bin/python -m pip download -q --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -r "$req" -d "$fresh" >&2
echo "$stamp_value" > "$fresh/.filled"
rm -rf "$dest"
mv "$fresh" "$dest"
