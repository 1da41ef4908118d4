#!/usr/bin/env bash
# Install Debian's chromium for the browser tests (tests/ui): Playwright drives it through its
# executable_path, because Playwright's own browser download needs the internet. Skipped when
# /usr/bin/chromium is there.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/bin/chromium ] && exit 0
scripts/apt-install.sh chromium
if [ ! -x /usr/bin/chromium ]; then
  echo "Debian's chromium is installed but /usr/bin/chromium is missing; reinstall it (apt-get install --reinstall chromium)" >&2
  exit 1
fi
