# The README's two commands: `make demo` and `make test`. Both install what they need themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
# Tests and the demo never touch a real AWS account.
export AWS_EC2_METADATA_DISABLED := true

.PHONY: help install demo test test-fast test-py312 fuzz lint bench synth contract clean

help:
	@echo "make demo   - run the whole pipeline offline on the sample photos (results in demo-out/)"
	@echo "make test   - run the whole test suite (unit, handlers, infra, end-to-end)"
	@echo "make test-py312 - the runtime package's tests on Python 3.12 (Lambda's runtime), if installed"
	@echo "make fuzz   - the property-based tests with many more examples (hypothesis profile 'fuzz'; minutes)"
	@echo "make lint   - ruff check on all code (rules in pyproject.toml; CI runs it after the tests)"
	@echo "make synth  - synthesize the CDK app offline (cdk.out/)"
	@echo "make bench  - run the benchmarks under bench/ (results in bench/results/)"

install: $(STAMP) node_modules/.package-lock.json

$(STAMP): requirements-dev.txt requirements-test.txt lambda_src/requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

demo: $(STAMP)
	$(VENV)/bin/img2img demo

test: install
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

# Lambda runs Python 3.12/3.13: run the runtime package's tests on 3.12 too, where it is installed.
PY312 ?= $(shell for p in $$(ls $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12 2>/dev/null) python3.12; do "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && echo "$$p" && break; done)
test-py312:
	@if [ -z "$(PY312)" ]; then echo "python3.12 not found: skipping the 3.12 run"; exit 0; fi; \
	set -e; test -x .venv312/bin/python || $(PY312) -m venv .venv312; \
	.venv312/bin/python -m pip install -q --disable-pip-version-check -r requirements-test.txt; \
	.venv312/bin/python -m pytest -n 2 -p no:cacheprovider tests/unit tests/handlers $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -m "not e2e and not infra" $(PYTEST_ARGS)

# The property-based tests (hypothesis) with the large `fuzz` profile of tests/conftest.py instead of `ci`.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -n 2 -m "not e2e and not infra" -k "properties or fuzz" tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

synth: install
	npx cdk synth --quiet

bench: $(STAMP)
	$(PY) -m bench.run_all $(BENCH_ARGS)

# Runs an external checker of the local stack's behaviour (not part of this repository): give its path.
# A client's-eye check of the local stack kept outside this repository (the team's shared folder by default).
CONTRACT_CHECK ?= $(wildcard ../shared/contract/check_local_stack.py)
contract: $(STAMP)
	@test -n "$(CONTRACT_CHECK)" || { echo "make contract CONTRACT_CHECK=path/to/check_local_stack.py (an external checker)"; exit 2; }
	$(PY) $(CONTRACT_CHECK)

clean:
	rm -rf cdk.out demo-out .pytest_cache
