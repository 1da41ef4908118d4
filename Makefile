# Two commands for a newcomer: `make demo` and `make test`. Every target installs what it needs
# (venv, Docker Engine, base image, wheelhouse, local stack) and skips what is already in place.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
export PATH := $(CURDIR)/.venv/bin:$(PATH)
# Prefect's telemetry cannot reach its host from an offline machine and logs an error for it.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: help setup venv docker base-image wheelhouse image up down status env demo test test-unit lint bench lock fresh-check

help:
	@echo "make demo    release all-MiniLM-L6-v2 to a real-time endpoint on the local stack"
	@echo "make test    run the whole test suite (unit, container, emulator, end to end)"
	@echo "make image   build the serving image; prints its reference last"
	@echo "make up | down | status | env    the local stack (Docker, registry, moto, SageMaker emulator, Hub)"
	@echo "make bench   benchmarks, each against a baseline measured in the same run"
	@echo "make lint    ruff, mypy and the import contracts (ARCHITECTURE.md)"

venv:
	@scripts/ensure-venv.sh

docker:
	@scripts/ensure-docker.sh

base-image: docker
	@scripts/ensure-base-image.sh

wheelhouse: venv
	@scripts/fill-wheelhouse.sh

setup: venv docker wheelhouse

image: venv
	@scripts/build-image.sh

up: venv docker
	@$(PY) -m emulator up

down: venv
	@$(PY) -m emulator down

status: venv
	@$(PY) -m emulator status

env: venv
	@$(PY) -m emulator env

# Each step's own failure stops the demo: a command substitution is assigned on its own line, because
# `export X=$$(cmd)` and `eval "$$(cmd)"` both succeed when cmd fails.
demo: venv docker wheelhouse
	@set -euo pipefail; \
	  exports=$$($(PY) -m emulator up); \
	  eval "$$exports"; \
	  $(PY) -m flows.release --config releases/demo.yaml; \
	  $(PY) scripts/invoke-endpoint.py demo-embedder "The release is live." "Nothing it created was left behind."

test: venv
	@set -euo pipefail; \
	  scripts/ensure-chromium.sh; \
	  image=$$(scripts/build-image.sh | tail -n 1); \
	  base=$$(scripts/ensure-base-image.sh | tail -n 1); \
	  export SERVING_IMAGE=$$image SAGEMAKER_RELEASE_BASE_IMAGE=$$base; \
	  PY=$(PY) scripts/run-tests.sh $(PYTEST_ARGS)

test-unit: venv
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: venv
	@$(PY) -m ruff check . && $(PY) -m ruff format --check . && $(PY) -m mypy flows tasks emulator container && \
	  PYTHONPATH=container .venv/bin/lint-imports --no-cache

bench: venv
	@set -euo pipefail; for b in bench/*.py; do echo "==> $$b"; $(PY) $$b; done

# A newcomer's fresh machine, reproduced here (see CONTRIBUTING.md); not part of CI.
fresh-check:
	@scripts/fresh-machine-check.sh $(FRESH_CHECK_ARGS)

# Re-resolve the pinned set from pyproject.toml (maintainers only; `make venv` installs the lock).
lock:
	@rm -rf /tmp/sagemaker-release-lock && python3 -m venv /tmp/sagemaker-release-lock && \
	  /tmp/sagemaker-release-lock/bin/pip install -q -U pip && \
	  /tmp/sagemaker-release-lock/bin/pip install -q -r container/requirements.txt -e '.[local,dev]' && \
	  /tmp/sagemaker-release-lock/bin/pip freeze --exclude-editable > requirements.lock
