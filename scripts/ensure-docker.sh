#!/usr/bin/env bash
# Make a Docker Engine answer on this machine: install Debian's docker.io if there is no dockerd,
# start dockerd in the background if `docker info` fails, and wait for it (with a timeout).
# Skips every step that is already done. The pid of a dockerd started here is written to
# .state/pids/dockerd.pid so `python -m emulator down` can stop what `up` started.
set -euo pipefail
cd "$(dirname "$0")/.."
state=.state
mkdir -p "$state/pids" "$state/logs"

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "==> installing Docker Engine (Debian docker.io)" >&2
  scripts/apt-install.sh docker.io
fi
if ! command -v docker >/dev/null 2>&1; then
  echo "docker CLI missing after installing docker.io" >&2
  exit 1
fi

echo "==> starting dockerd (log: $state/logs/dockerd.log)" >&2
# setsid: the engine must outlive the make/pytest process that started it.
setsid dockerd >"$state/logs/dockerd.log" 2>&1 < /dev/null &
echo $! > "$state/pids/dockerd.pid"

deadline=$((SECONDS + ${DOCKER_START_TIMEOUT:-90}))
until docker info >/dev/null 2>&1; do
  if (( SECONDS >= deadline )); then
    echo "dockerd did not answer within ${DOCKER_START_TIMEOUT:-90}s; last log lines:" >&2
    tail -n 20 "$state/logs/dockerd.log" >&2
    exit 1
  fi
  sleep 1
done
echo "==> Docker Engine is up" >&2
