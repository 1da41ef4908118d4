#!/usr/bin/env bash
# Download the serving container's wheels on the host: inside `docker build` the package index is
# not reachable here, so the Dockerfile installs with --no-index from container/wheelhouse.
# Skipped when container/requirements.txt has not changed since the last fill.
set -euo pipefail
cd "$(dirname "$0")/.."
req=container/requirements.txt
dest=container/wheelhouse
stamp_value=$(sha256sum "$req" | cut -c1-16)
if [ "$(cat "$dest/.filled" 2>/dev/null)" = "$stamp_value" ]; then
  exit 0
fi
echo "==> filling $dest from $req" >&2
mkdir -p "$dest"
.venv/bin/python -m pip download -q --only-binary=:all: --python-version 3.11 --platform manylinux2014_x86_64 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -r "$req" -d "$dest" >&2
echo "$stamp_value" > "$dest/.filled"
