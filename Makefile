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

.PHONY: help install demo test test-fast test-py312 fuzz lint bench synth wheels contract clean

help:
	@echo "make demo   - run the whole pipeline offline on the sample photos (results in demo-out/)"
	@echo "make test   - run the whole test suite (unit, handlers, infra, end-to-end)"
	@echo "make test-py312 - the runtime package's tests on Python 3.12 (Lambda's runtime), if installed"
	@echo "make fuzz   - the property-based tests with many more examples (hypothesis profile 'fuzz'; minutes)"
	@echo "make lint   - ruff on all code, cfn-lint and checkov on the synthesized template (infra/checks.py)"
	@echo "make synth  - synthesize the CDK app offline (cdk.out/)"
	@echo "make wheels - download the function's wheels into build/wheelhouse, for synth without the index"
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

# checkov pins packaging<24 (pytest needs >=24) and an old boto3: it gets a venv of its own.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV ?= $(VENV)/checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
$(CHECKOV):
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --disable-pip-version-check checkov==$(CHECKOV_VERSION)

# ruff, then one synth of the default configuration checked by cfn-lint and checkov (infra/lint.py);
# every accepted finding is acknowledged, with its reason, in infra/checks.py (cdk-nag's: infra/nag.py).
lint: $(STAMP) $(CHECKOV)
	$(PY) -m ruff check .
	$(PY) -m infra.lint --checkov $(CHECKOV)

synth: install
	npx cdk synth --quiet

# The function's wheels for cdk.json's architecture and pythonVersion (override: WHEEL_ARCH=x86_64 WHEEL_PYVER=3.13), so
# a machine without the package index can synth: PIP_NO_INDEX=1 PIP_FIND_LINKS=$$PWD/build/wheelhouse.
WHEELHOUSE ?= build/wheelhouse
WHEEL_ARCH ?= $(shell $(PYTHON) -c "import json; print(json.load(open('cdk.json'))['context']['architecture'])")
WHEEL_PYVER ?= $(shell $(PYTHON) -c "import json; print(json.load(open('cdk.json'))['context']['pythonVersion'])")
PIP_ARCH = $(if $(filter arm64,$(WHEEL_ARCH)),aarch64,x86_64)
wheels:
	$(PYTHON) -m pip download -q --disable-pip-version-check -r lambda_src/requirements.txt -d $(WHEELHOUSE) \
		--platform manylinux_2_28_$(PIP_ARCH) --platform manylinux2014_$(PIP_ARCH) --implementation cp \
		--python-version $(WHEEL_PYVER) --only-binary=:all:
	@echo "offline synth: PIP_NO_INDEX=1 PIP_FIND_LINKS=$$PWD/$(WHEELHOUSE) npx cdk synth"

bench: $(STAMP)
	$(PY) -m bench.run_all $(BENCH_ARGS)

# Runs an external checker of the local stack's behaviour (not part of this repository): give its path.
# A client's-eye check of the local stack kept outside this repository (the team's shared folder by default).
CONTRACT_CHECK ?= $(wildcard ../shared/contract/check_local_stack.py)
contract: $(STAMP)
	@test -n "$(CONTRACT_CHECK)" || { echo "make contract CONTRACT_CHECK=path/to/check_local_stack.py (an external checker)"; exit 2; }
	$(PY) $(CONTRACT_CHECK)

clean:
	rm -rf cdk.out demo-out .pytest_cache build/wheelhouse
