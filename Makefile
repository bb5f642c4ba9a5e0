# fogwire developer entry points. Every recipe runs under bash -euo pipefail.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.PHONY: help setup services stop-services test test-fast lint pytest isolated fix demo demo-fleet wheels stubs bench docs clean distclean

PY := .venv/bin/python

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## Debian packages, podman drop-ins, .venv (idempotent; seconds when nothing changed)
	@scripts/setup.sh

services: setup ## start the harness services (registry, dockerd, podman, containerd) and push the test images
	@$(PY) -m harness.services start
	@$(PY) -m harness.services images >/dev/null

stop-services: ## stop the harness services and unmount what they left
	@if [[ -x $(PY) ]]; then $(PY) -m harness.services stop; else python3 -m harness.services stop; fi

test: setup services lint pytest isolated ## everything CI runs: lint, mypy, pytest, per-distribution isolated tests

test-fast: setup ## the unit layer only, in seconds, with every harness service forbidden
	@FOGWIRE_FORBID_SERVICES=1 scripts/pytest.sh -q -m unit -p no:cacheprovider

lint: setup ## ruff check + ruff format --check, mypy --strict over core and every plugin
	@scripts/lint.sh

pytest: setup ## pytest over core/tests, plugins/*/tests and tests in .venv
	@scripts/pytest.sh

isolated: setup ## each distribution's tests in a venv of its own (.venv-iso/<dist>)
	@scripts/isolated-tests.sh

fix: setup ## ruff format + ruff check --fix over the Python trees
	@paths=(); for d in core plugins tests harness bench scripts; do [[ -d $$d ]] && paths+=($$d); done; \
	  .venv/bin/ruff format "$${paths[@]}"; .venv/bin/ruff check --fix "$${paths[@]}"

demo: setup ## the demo (scripts/demo.sh)
	@scripts/demo.sh

demo-fleet: setup ## a node joins a (stand-in) ioFog controller, is managed through it, and leaves
	@.venv/bin/python scripts/demo_fleet.py

bench: services ## every benchmark and one table: figure, ours, peer, ratio, goal, met (BENCH_ARGS=--quick for the fast ones)
	@.venv/bin/python bench/run_all.py $(BENCH_ARGS)

docs: setup ## regenerate docs/cli.md's reference from the argument parsers
	@.venv/bin/python scripts/cli_docs.py

wheels: setup ## build every distribution's wheel into dist/
	@scripts/wheels.sh

stubs: setup ## regenerate the containerd plugin's committed *_pb2.py/.pyi from its protos (pinned grpcio-tools)
	@$(PY) scripts/regen-containerd-stubs.py

clean: stop-services ## stop services, remove build output, caches and the harness state
	rm -rf dist build .pytest_cache .mypy_cache .ruff_cache
	@h="$${FOGWIRE_HARNESS_DIR:-/tmp/fogwire-harness}"; \
	  if grep -qF " $$h/" /proc/self/mountinfo; then echo "clean: mounts left under $$h; not removing it" >&2; \
	  else rm -rf "$$h"; fi
	find . -path ./.venv -prune -o -path ./.venv-iso -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -type d -print0 | xargs -0 rm -rf

distclean: clean ## clean, and remove .venv, .venv-iso and .cache (the next setup is cold)
	rm -rf .venv .venv-iso .cache
