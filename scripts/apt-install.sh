#!/usr/bin/env bash
# apt-get install the named Debian packages that are not installed yet; `apt-get update` runs once
# per machine before the first install (package lists on a new machine may be empty or stale).
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
(( ${#missing[@]} == 0 )) && exit 0
marker=/var/lib/apt/.sagemaker-release-updated
if [ ! -e "$marker" ]; then
  apt-get update -qq
  touch "$marker"
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
