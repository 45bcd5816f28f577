# lifeboat.ops: every entry point sets up what it needs (apt packages, Go-built test servers, a Python venv).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV = $(shell scripts/testbed/venv.sh)
STATE ?= $(or $(LIFEBOAT_TESTBED_DIR),/tmp/lifeboat-testbed)
PYTEST_ARGS ?=

.PHONY: demo demo-down test packages testbed testbed-down seed sanity lint unit integration bench molecule images

## demo: start the throwaway PostgreSQL and FerretDB with sample data and a Docker app (PostgreSQL 17 container, app
## volume), back them up, restore under new names; `make demo-down` removes the app, `make testbed-down` all
demo: testbed seed images
	scripts/demo.sh

demo-down:
	scripts/demo.sh --down

## test: the whole suite, as CI runs it (molecule beside the others: scripts/ci/test.sh)
test:
	scripts/ci/test.sh

testbed:
	scripts/testbed/up.sh

testbed-down:
	scripts/testbed/down.sh

seed: testbed
	source $(STATE)/env.sh && env -u LIFEBOAT_RUN_ID $(VENV)/bin/python scripts/testbed/seed.py

sanity:
	scripts/ci/sanity.sh

lint:
	scripts/ci/lint.sh

packages:
	scripts/testbed/packages.sh

unit: packages
	$(VENV)/bin/python -m pytest tests/unit $(PYTEST_ARGS)

## images: the container test bed's images (PostgreSQL 17, FerretDB with mongo-tools, an app), built or loaded once
images:
	scripts/testbed/images.sh >/dev/null

integration: testbed images
	source $(STATE)/env.sh && $(VENV)/bin/python -m pytest tests/integration $(PYTEST_ARGS)

## bench-validate: migration_validate's full comparison against raw per-side hashes (not a test); own test bed
.PHONY: bench-validate
bench-validate:
	$(VENV)/bin/python bench/bench_validate.py

## bench-reladiff: migration_validate (library and module) against reladiff from PyPI, 1 M and 5 M rows (not a test)
.PHONY: bench-reladiff
bench-reladiff:
	$(VENV)/bin/python bench/bench_reladiff.py

## molecule: the roles' scenarios in systemd containers (starts the Docker engine, builds the image, its own servers)
molecule:
	scripts/ci/molecule.sh

## bench: benchmarks against the raw tools (not tests; prints ratios); starts a test bed of its own
bench:
	$(VENV)/bin/python bench/bench_dump.py
	$(VENV)/bin/python bench/bench_verify.py
