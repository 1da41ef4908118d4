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
  apt-get update -qq >&2 || { echo "apt-get update failed; is a Debian mirror reachable?" >&2; exit 1; }
  touch "$marker"
fi
echo "==> installing ${missing[*]} (Debian)" >&2
# apt's progress is noise on success; on failure its last lines are the error.
log=$(mktemp /tmp/sagemaker-release-apt.XXXXXX.log)
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  echo "apt-get install ${missing[*]} failed; last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
rm -f "$log"
