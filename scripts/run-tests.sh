#!/usr/bin/env bash
# The whole suite as `make test` runs it: two pytest runs side by side, one of them on the local stack.
#
#   scripts/run-tests.sh [pytest args...]   # args go to every run (e.g. -x, -k expr)
#
# tests/e2e and tests/emulator spend most of their time waiting on containers, alarm periods and bakes,
# not on the CPU, and tests/unit + tests/container need no stack, so those run alongside. Each run has
# its own Prefect home (their ephemeral API servers would otherwise share one SQLite file). The stack is started here, before the runs, so that no run's `stack` fixture owns it and
# stops it under the others; it is stopped here at the end if it was not up before. Any run failing, or
# collecting no test at all (pytest exits 5), fails the whole.
set -uo pipefail

PY=${PY:-.venv/bin/python}
root=$(pwd)
logs="$root/.state/logs"
mkdir -p "$logs"

# name | its folders and files of tests/ (pytest arguments). The first runs in the foreground; the others'
# output follows at the end. (e2e and emulator as two more runs at once saved 4 more minutes, but made the
# guardrail tests' step timing flaky on 2 cores.) The second run takes, after the unit tests, the stack
# tests that wait on Prefect servers, workers and private emulators rather than on the shared
# emulator's timing: each run then takes about the same time.
moved=(
    tests/e2e/test_approval.py tests/e2e/test_deployments.py tests/e2e/test_fleet.py
    tests/e2e/test_release_scaling.py tests/emulator/test_async_autoscaling.py tests/emulator/test_restart.py
)
runs=(
    "stack|tests/e2e tests/emulator ${moved[*]/#/--ignore=}"
    "unit-container|tests/unit tests/container tests/ui ${moved[*]}"
)
# A folder of tests/ that no run names would never run, and nothing would say so.
for dir in tests/*/; do
    dir=${dir%/}
    [[ -n $(find "$dir" -name 'test_*.py' -print -quit) ]] || continue
    if [[ " ${runs[*]#*|} " != *" $dir "* ]]; then
        echo "run-tests.sh: $dir is in no run: add it to one in runs=(...)" >&2
        exit 2
    fi
done

before=$("$PY" -c "from emulator import stack; print(' '.join(stack.running_parts()))") || exit 1
# The tests share one fake account: give it room for their endpoints (a new AWS account's default is
# 10 instances of each type; a stack that was already up keeps its own setting).
SAGEMAKER_EMULATOR_INSTANCE_QUOTA=${SAGEMAKER_EMULATOR_INSTANCE_QUOTA:-40} "$PY" -m emulator up >/dev/null || exit 1
started=()
for part in $("$PY" -c "from emulator import stack; print(' '.join(stack.PART_NAMES))"); do
    [[ " $before " == *" $part "* ]] || started+=("$part")
done

pids=()
stop_all() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    if ((${#started[@]})); then "$PY" -m emulator down "${started[@]}" >&2; fi
}
# Whatever ends this script (Ctrl-C, a CI timeout, the end) ends the other runs and the stack it started.
trap stop_all EXIT

run_pytest() {  # name, pytest arguments...
    local name=$1
    shift
    # shellcheck disable=SC2086  # the folders of a run are separate arguments
    PREFECT_HOME="$root/.state/prefect-home-$name" "$PY" -m pytest "$@"
}

for run in "${runs[@]:1}"; do
    name=${run%%|*}
    echo "==> ${run#*|}: alongside (output at the end; log: $logs/test-$name.log)" >&2
    # shellcheck disable=SC2086
    run_pytest "$name" ${run#*|} "$@" >"$logs/test-$name.log" 2>&1 &
    pids+=($!)
done
first=${runs[0]}
echo "==> ${first#*|}" >&2
# shellcheck disable=SC2086
run_pytest "${first%%|*}" ${first#*|} "$@"
codes=("$?")
for pid in "${pids[@]}"; do
    wait "$pid"
    codes+=("$?")
done
pids=()

summary=""
failed=0
for i in "${!runs[@]}"; do
    name=${runs[$i]%%|*}
    if ((i > 0)); then
        echo
        echo "==> ${runs[$i]#*|} (exit ${codes[$i]}):"
        cat "$logs/test-$name.log"
    fi
    summary+=" $name: exit ${codes[$i]};"
    if ((codes[i] != 0 && failed == 0)); then failed=${codes[$i]}; fi
done
echo
echo "==>${summary}"
exit "$failed"
