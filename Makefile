# ptc-sync developer commands. Every target builds what it needs: a fresh machine runs
#   make demo   # the sync on a local testbed (real registry + emulated ECR), no AWS account
#   make test   # lint, type checks and the whole test suite
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# sam finds python3.13 on PATH: the venv's interpreter is one
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0

.PHONY: help
help:
	@echo "make demo        run the sync locally on the testbed (registry on loopback + emulated ECR)"
	@echo "make test        ruff, mypy and pytest (what CI runs, with validate and build)"
	@echo "make test-fast   the fast tier: tests/fast on in-memory fakes (no sockets) and the pure unit tests"
	@echo "make lint        ruff check and ruff format --check"
	@echo "make format      ruff format and ruff check --fix"
	@echo "make typecheck   mypy --strict on the shared package"
	@echo "make validate    sam validate --lint"
	@echo "make build       sam build (python3.13, arm64)"
	@echo "make bench       registry client benchmark"
	@echo "make bench-sync  one scheduled run over 500 cached tags, 5% stale: time and calls"
	@echo "make bench-scale the fan-out over 10,000 cached tags in 2,000 repositories: time, memory, requests"
	@echo "make bench-planner the planner alone: 20,000 repositories at 30 ms per AWS call, wall time and memory"
	@echo "make scan        cfn-lint and checkov (own venv) on template.yaml; suppressions live in Metadata"
	@echo "make clean       remove the venv and build output"
	@echo "make e2e         opt-in: deploy a throwaway stack to your AWS account, selftest, one sync, delete (docs/e2e.md)"

$(STAMP): pyproject.toml
	@py=$$(scripts/find-python313) && echo "creating $(VENV) with $$py" && "$$py" -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

.PHONY: venv system-deps
venv: $(STAMP)
system-deps:
	@scripts/ensure-system-deps

.PHONY: lint format typecheck
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
typecheck: $(STAMP)
	$(VENV)/bin/mypy

.PHONY: test pytest
test: lint typecheck pytest
# the 25 slowest tests are listed at the end, so a suite that grows slower says where
pytest: $(STAMP) system-deps
	$(VENV)/bin/pytest --durations=25 $(PYTEST_ARGS)

.PHONY: validate build
validate: $(STAMP)
	$(VENV)/bin/sam validate --lint --region us-east-1
build: $(STAMP)
	$(VENV)/bin/sam build

.PHONY: demo bench bench-sync
demo: $(STAMP) system-deps
	$(PY) -m testbed.demo
bench: $(STAMP) system-deps
	$(PY) -m bench.registry_check
bench-sync: $(STAMP) system-deps
	$(PY) -m bench.sync_run

.PHONY: bench-scale bench-planner
bench-scale: $(STAMP) system-deps
	$(PY) -m bench.scale
# the planner alone: 20,000 repositories / 100,000 tags with 30 ms per AWS call (a stand-in for ECR)
bench-planner: $(STAMP)
	$(PY) -m bench.planner_scale

# Policy-as-code scan of template.yaml: cfn-lint, then checkov in a venv of its own (checkov pins
# boto3/botocore 1.35 and packaging 23, which aws-sam-cli and moto in .venv cannot share). Every
# suppression is a checkov skip in the resource's Metadata, with its reason. --skip-download keeps
# checkov off the network (it would fetch guidelines from its vendor's API).
# inside .venv: ignored by git and ruff, and removed with it
SCAN_VENV := $(VENV)/scan
CHECKOV_VERSION := 3.3.30
SCAN_STAMP := $(SCAN_VENV)/.installed-$(CHECKOV_VERSION)

$(SCAN_STAMP):
	@py=$$(scripts/find-python313) && "$$py" -m venv --clear $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install --quiet "checkov==$(CHECKOV_VERSION)"
	@touch $@

.PHONY: scan
scan: $(STAMP) $(SCAN_STAMP)
	$(VENV)/bin/cfn-lint template.yaml
	$(SCAN_VENV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --compact --quiet

.PHONY: clean
clean:
	rm -rf $(VENV) .aws-sam .mypy_cache .ruff_cache

# The fast tier: tests/fast (in-memory fakes of ECR, state, journal, queue and notifier from
# tests/fakes.py; a conftest makes any socket connect fail) and the pure unit tests. Seconds, no
# registry, no moto. `make test` runs these too (they are part of the pytest suite).
FAST_TESTS := tests/fast tests/unit/test_semver.py tests/unit/test_semver_and_work.py \
	tests/unit/test_decisions.py tests/unit/test_redact.py tests/unit/test_settings.py \
	tests/registry/test_parsing.py tests/registry/test_upstream.py

.PHONY: test-fast
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q $(FAST_TESTS) $(PYTEST_ARGS)

# The opt-in end-to-end suite (docs/e2e.md): with real AWS credentials and PTC_E2E_CONFIRM=yes it
# deploys a uniquely named stack, runs the selftest and one sync, and deletes the stack; skipped with
# a one-line reason otherwise, never in CI. --confcutdir keeps tests/conftest.py, which swaps the
# environment's AWS credentials for fake ones, out of it.
.PHONY: e2e
e2e: $(STAMP)
	$(VENV)/bin/pytest -m e2e --confcutdir=tests/e2e tests/e2e $(PYTEST_ARGS)

# Every function imported from the built artifact (.aws-sam/build) in a clean interpreter with only
# its code and the layer on the path, each import timed; on a machine that is not arm64 the layer is
# built again for the host into a temporary directory (scripts/check-artifact says how).
.PHONY: check-artifact
check-artifact: $(STAMP)
	$(PY) scripts/check-artifact $(CHECK_ARTIFACT_ARGS)
