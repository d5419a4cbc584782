# Entry points. `make up` runs the service locally, `make test` runs every test; both install
# what they need first (scripts/bootstrap.sh) and are idempotent.
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST_ARGS ?=
# The folder make was started in, for the scripts (scripts/caller-dir.sh): `make -C <checkout> up
# RUN_DIR=myrun` from another folder means that folder's myrun. make -C changes folder but leaves
# the shell's PWD as it was, and turns on -w, which MAKEFLAGS then shows; without it this is the
# checkout, as PWD may be stale (a program that starts make in a folder without a shell leaves its own).
MAKE_C_GIVEN := $(findstring w,$(filter-out -%,$(firstword $(MAKEFLAGS))))
export UP_CALLER_DIR := $(if $(and $(MAKE_C_GIVEN),$(filter /%,$(PWD))),$(PWD),$(CURDIR))

.PHONY: setup test lint up down data bench chaos observe lock clean images

setup:
	@scripts/bootstrap.sh

# The lint gate first (seconds), then every test. The 25 slowest are listed at the end, so every CI log
# shows where its time goes (a run takes most of CI's time limit on 2 cores).
test: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/pytest --durations=25 $(PYTEST_ARGS)

# ruff (lint rules in pyproject.toml, and the formatter's check) over the whole tree, mypy over services/
# and shared/.
lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

# Fault, load and fuzz tests at full size (1,000-job kill loop, 10,000-job load); figures are printed
# and written to .run/chaos-report.json. `make test` runs the same tests, scaled down when CI=true.
chaos: setup
	CHAOS_FULL=1 .venv/bin/pytest -m chaos -v $(PYTEST_ARGS)

up: setup
	@scripts/up.sh

observe: setup
	@scripts/observe.sh

down:
	@scripts/down.sh

# uv comes from PATH, else the copy `make setup` put in .tools/bin
lock: setup
	$(UV) lock

# Both images with buildah (docs/images.md); PYTHON_IMAGE=local builds a Debian base offline first.
images:
	@PYTHON_IMAGE='$(PYTHON_IMAGE)' IMAGE_TAG='$(IMAGE_TAG)' scripts/build-images.sh

# Benchmarks (issue 6): not part of `make test`. Installs the peers (RQ, Celery, Dramatiq) from the
# `bench` dependency group (make setup syncs every group, so the bench harness tests run in CI), runs every bench/bench_*.py and rewrites docs/benchmarks.md.
# BENCH_QUICK=1 for a short pass; BENCH_ONLY=peers,api for a subset.
UV ?= $(shell command -v uv || echo .tools/bin/uv)
bench: setup
	$(PY) -m bench.run_all

# A stack `make up` runs under .run is stopped first: removing its pid files left it running with
# nothing `make down` could find (its ports held, its Redis writing into a deleted folder).
clean:
	@if compgen -G '.run/pids/*.pid' >/dev/null; then RUN_DIR='$(CURDIR)/.run' scripts/down.sh; fi
	rm -rf .run .venv .tools .pytest_cache

# The full-size synthetic dataset (432,444 rows, the real file's size; deterministic, gitignored).
data: setup
	@test -f data/full/traffic_incidents.csv || .venv/bin/jobqueue data generate --rows 432444 --output data/full/traffic_incidents.csv
