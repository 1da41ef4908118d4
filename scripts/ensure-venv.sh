#!/usr/bin/env bash
# Create .venv from requirements.lock and install this project into it (editable).
# Skipped when the lock and pyproject.toml have not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
stamp_value=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
stamp=.venv/.installed
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$stamp_value" ]; then
  exit 0
fi
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  scripts/apt-install.sh python3-venv
fi
echo "==> installing the Python environment into .venv (a cold install takes several minutes)" >&2
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >&2
.venv/bin/python -m pip install -q -r requirements.lock >&2
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . >&2
echo "$stamp_value" > "$stamp"
