#!/usr/bin/env bash
# The whole suite as `make test` runs it: two pytest runs side by side.
#
#   scripts/run-tests.sh [pytest args...]   # args go to both runs (e.g. -x, -k expr)
#
# The local-stack layers (every tests/* folder but unit and container) spend most of their time waiting
# on containers, alarm periods and bakes, not on the CPU; the unit and container layers need no stack.
# Run back to back they took 18 min; side by side the suite ends with the stack layers. Each run has its
# own Prefect home (their ephemeral API servers would otherwise share one SQLite file). Either run
# failing, or collecting no test at all (pytest exits 5), fails the whole.
set -uo pipefail

PY=${PY:-.venv/bin/python}
root=$(pwd)
logs="$root/.state/logs"
mkdir -p "$logs"

alongside=(tests/unit tests/container)
# The stack run is `tests` minus those, not a list of folders: given several folders, pytest loads their
# conftest.py files up front, and the last one loaded shadows the others as the module `conftest`.
stack_layers=(tests --ignore=tests/unit --ignore=tests/container)

log="$logs/test-unit-container.log"
echo "==> ${alongside[*]} run alongside the stack layers (output at the end; log: $log)" >&2
PREFECT_HOME="$root/.state/prefect-home-unit" "$PY" -m pytest "${alongside[@]}" "$@" >"$log" 2>&1 &
alongside_pid=$!
# Whatever ends this script (Ctrl-C, a CI timeout) ends the other run too.
trap 'kill "$alongside_pid" 2>/dev/null' EXIT

echo "==> tests (but unit and container)" >&2
PREFECT_HOME="$root/.state/prefect-home-stack" "$PY" -m pytest "${stack_layers[@]}" "$@"
stack_rc=$?

wait "$alongside_pid"
alongside_rc=$?
trap - EXIT
echo
echo "==> ${alongside[*]} (exit $alongside_rc):"
cat "$log"
echo
echo "==> stack layers: exit $stack_rc; ${alongside[*]}: exit $alongside_rc"
if ((stack_rc != 0)); then
    exit "$stack_rc"
fi
exit "$alongside_rc"
