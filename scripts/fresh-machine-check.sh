#!/usr/bin/env bash
# Reproduce a newcomer's fresh Debian 12 machine on a development box, then do what the README tells
# them to: a green CI on a machine where packages were once installed by hand proves nothing about
# the install steps; this does. Run it after any change to scripts/, the Makefile, the lock or the stack.
#
#   scripts/fresh-machine-check.sh [--purge-docker] [--python PATH] [--keep]
#
# 1. stops the local stack (whichever checkout started it) and removes the emulator's containers;
# 2. purges the Debian packages the project installs (docker-registry, debootstrap, chromium; with --purge-docker
#    also docker.io, after stopping dockerd) and the apt-update marker;
# 3. removes the project's images (serving, base), the local registry's data, wheelhouse and state;
# 4. clones this repository's HEAD (committed work only) into a temporary folder, and there, with the
#    venv built from Debian's /usr/bin/python3 (or --python):
#    `make demo` (a real release), `make demo` again (must upload 0 bytes and build no image), and a
#    fast subset of the tests;
# 5. stops the stack the clone started and prints one result line, `fresh-machine-check: PASS|FAIL …`.
#
# The clone is removed on success and kept on failure (--keep keeps it either way). Not part of CI: it
# takes 15-30 minutes on a machine that must download the wheels again.
set -uo pipefail

purge_docker=0
python=/usr/bin/python3
keep=0
while (($#)); do
    case $1 in
        --purge-docker) purge_docker=1 ;;
        --python) python=$2; shift ;;
        --keep) keep=1 ;;
        -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

repo=$(cd "$(dirname "$0")/.." && pwd)
started=$SECONDS
result() {  # verdict, detail
    echo "fresh-machine-check: $1 ($2; $(( (SECONDS - started) / 60 )) min; $("$python" --version 2>&1); commit ${tested:-$(git -C "$repo" rev-parse --short HEAD)})"
}
step() { echo "==> fresh-machine-check: $*" >&2; }

# -- 1. stop the local stack ----------------------------------------------------------------------------
step "stopping the local stack"
for port in 5000 4566 4577 4578 4588; do
    for pid in $(ss -Hltnp "sport = :$port" 2>/dev/null | grep -oE 'pid=[0-9]+' | cut -d= -f2 | sort -u); do
        # Each part runs in its own session (stack.py starts it so): end the whole group.
        kill -TERM -- "-$(ps -o sid= -p "$pid" | tr -d ' ')" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    done
done
deadline=$((SECONDS + 30))
while ss -Hltn '( sport = :5000 or sport = :4566 or sport = :4577 or sport = :4578 or sport = :4588 )' | grep -q .; do
    if ((SECONDS >= deadline)); then
        result FAIL "a stack port is still taken after 30 s: $(ss -Hltnp '( sport = :4566 or sport = :4577 )' | head -n 2)"
        exit 1
    fi
    sleep 1
done
if docker info >/dev/null 2>&1; then
    ids=$(docker ps -aq --filter label=sagemaker-release.emulator=1)
    [ -z "$ids" ] || docker rm -f $ids >/dev/null
fi

# -- 2. purge the Debian packages the project installs ------------------------------------------------
packages=(docker-registry debootstrap chromium)
if ((purge_docker)); then
    step "stopping dockerd"
    pkill -TERM -x dockerd 2>/dev/null
    deadline=$((SECONDS + 30))
    while pgrep -x dockerd >/dev/null && ((SECONDS < deadline)); do sleep 1; done
    pkill -TERM -x containerd 2>/dev/null
    packages+=(docker.io containerd runc)
fi
installed=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && installed+=("$pkg")
done
if ((${#installed[@]})); then
    step "purging ${installed[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${installed[@]}" >/dev/null || {
        result FAIL "apt-get purge ${installed[*]} failed"
        exit 1
    }
fi
rm -f /var/lib/apt/.sagemaker-release-updated

# -- 3. remove the project's images and state ---------------------------------------------------------
if docker info >/dev/null 2>&1; then
    step "removing the project's images"
    images=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep -E '^(sagemaker-release/|127\.0\.0\.1:5000/)' || true)
    [ -z "$images" ] || docker rmi -f $images >/dev/null
fi
rm -rf "$repo/.state" "$repo/container/wheelhouse"

# -- 4. a new user's clone ------------------------------------------------------------------------------
clone=$(mktemp -d /tmp/sagemaker-release-fresh.XXXXXX)
step "cloning $repo into $clone"
git clone -q "$repo" "$clone" || { result FAIL "git clone failed"; exit 1; }
# The commit the clone holds: the checkout may move on while the check runs.
tested=$(git -C "$clone" rev-parse --short HEAD)
cd "$clone" || exit 1
log=$clone/fresh-machine-check.log
export PYTHON=$python

finish() {  # verdict, detail
    step "stopping the stack the clone started"
    [ -x .venv/bin/python ] && .venv/bin/python -m emulator down registry moto sagemaker hub >>"$log" 2>&1
    if [ "$1" = PASS ] && ((keep == 0)); then
        rm -rf "$clone"
    else
        echo "the clone and its log stay at $clone (log: $log)" >&2
    fi
    result "$1" "$2"
    [ "$1" = PASS ]
    exit
}

summary_of() {  # the release's JSON summary line in a demo log
    grep -E '^\{"release_id"' "$1" | tail -n 1
}

step "make demo (first run; log: $log)"
first_start=$SECONDS
make demo >"$clone/demo-1.log" 2>&1 || { tail -n 30 "$clone/demo-1.log" >&2; finish FAIL "first make demo failed"; }
first=$((SECONDS - first_start))
venv_python=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')
[ "$(readlink -f "$venv_python")" = "$(readlink -f "$python")" ] \
    || finish FAIL "the venv was built from $venv_python, not $python"
status=$(summary_of "$clone/demo-1.log" | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["status"])')
[ "$status" = succeeded ] || finish FAIL "first demo release ended $status"

step "make demo (second run: nothing to upload or build)"
second_start=$SECONDS
make demo >"$clone/demo-2.log" 2>&1 || { tail -n 30 "$clone/demo-2.log" >&2; finish FAIL "second make demo failed"; }
second=$((SECONDS - second_start))
read -r uploaded built < <(summary_of "$clone/demo-2.log" \
    | .venv/bin/python -c 'import json,sys; s=json.load(sys.stdin); print(s["uploaded_bytes"], s["image_built"])')
[ "$uploaded" = 0 ] && [ "$built" = False ] \
    || finish FAIL "second demo uploaded $uploaded bytes and built an image: $built (want 0 and False)"

step "fast tests: tests/unit and the stack's own command line"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/unit tests/emulator/test_stack_cli.py >"$clone/tests.log" 2>&1 \
    || { tail -n 30 "$clone/tests.log" >&2; finish FAIL "fast tests failed: $(grep -E '[0-9]+ (passed|failed)' "$clone/tests.log" | tail -n 1)"; }
# pytest's closing line, not whatever a library logged at exit after it.
tests=$(grep -E '[0-9]+ (passed|failed)' "$clone/tests.log" | tail -n 1 | tr -d '=' | xargs)

# `make test` installs the browser the UI tests drive; here the install and Playwright's launch of it.
step "the UI tests' browser: scripts/ensure-chromium.sh, then Playwright opens a page in it"
scripts/ensure-chromium.sh >"$clone/chromium.log" 2>&1 \
    || { tail -n 20 "$clone/chromium.log" >&2; finish FAIL "scripts/ensure-chromium.sh failed"; }
.venv/bin/python - >>"$clone/chromium.log" 2>&1 <<'PY' || { tail -n 20 "$clone/chromium.log" >&2; finish FAIL "Playwright could not drive /usr/bin/chromium"; }
from playwright.sync_api import sync_playwright

with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
    page = browser.new_page()
    page.set_content("<h1>fresh</h1>")
    assert page.inner_text("h1") == "fresh"
    browser.close()
PY
finish PASS "demo ${first}s then ${second}s with 0 bytes uploaded and no build; tests: $tests"
