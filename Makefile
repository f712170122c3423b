# Everything a fresh clone needs: `make demo` and `make test` install what they use.
SHELL := /bin/bash
# The functions' runtime, Python 3.12, where the machine has it (scripts/runtime-python.sh), else
# python3: tests then run on the interpreter Lambda runs, and the Lambda package gets its bytecode.
# (Set once: a recursive variable would run the script again wherever $(PYTHON) appears.)
ifndef PYTHON
PYTHON := $(shell bash scripts/runtime-python.sh)
endif
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(PYTHON_VERSION)
# Half again as many test workers as cores: the suite waits on its servers (DynamoDB, the
# simulator, SQS) much of the time, and a third worker on 2 cores fills that wait.
ifndef TEST_WORKERS
TEST_WORKERS := $(shell $(PYTHON) -c 'import os; print(max(2, (os.cpu_count() or 2) * 3 // 2))')
endif
NODE_STAMP := node_modules/.installed

.PHONY: install lock demo test lint lint-cfn unit integration property bench bench-quick dynalite clean

install: $(STAMP)

# Dependencies come from the hash-locked file (vulnerability databases are not reachable from
# CI, so what is installed must be exactly what was reviewed); the project itself is installed
# editable on top without resolving anything again.
$(STAMP): pyproject.toml requirements-dev.lock
	@# A venv of another Python (say 3.11, before the machine had 3.12) is built again from scratch.
	@if [ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$(PYTHON_VERSION)" ]; then \
		echo "$(VENV) is not Python $(PYTHON_VERSION): building it again"; rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Re-resolve the locks after changing dependencies in pyproject.toml (pip-tools in a throwaway
# venv): the dev lock (everything the tests and tools use), then, from the environment installed
# from it, requirements-lambda.lock: the runtime closure on Lambda with the same versions and
# hashes (scripts/lambda_lock.py), which deploy.sh installs with --require-hashes as manylinux
# wheels for the chosen architecture. No test or dev dependency can reach the Lambda package.
lock:
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet pip-tools
	.lock-venv/bin/pip-compile --quiet --generate-hashes --extra dev --strip-extras \
		--no-emit-index-url --no-emit-find-links -o requirements-dev.lock pyproject.toml
	rm -rf .lock-venv
	$(MAKE) --no-print-directory install
	$(PY) scripts/lambda_lock.py

# dynalite (npm) is the second DynamoDB backend of the integration tests; without node the
# tests run on moto alone and say so.
dynalite: $(NODE_STAMP)

$(NODE_STAMP): package.json
	@if command -v npm >/dev/null 2>&1; then npm install --no-audit --no-fund --silent && touch $(NODE_STAMP); \
	else echo "npm not found: DynamoDB integration tests will use moto only"; fi

demo: install
	-@command -v npm >/dev/null 2>&1 && $(MAKE) --no-print-directory dynalite
	$(PY) -m syncengine demo

lint: install
	$(VENV)/bin/ruff check $(wildcard recovery_instance_sync.py syncengine handlers devtools tests benchmarks scripts)
	$(VENV)/bin/ruff format --check $(wildcard recovery_instance_sync.py syncengine handlers devtools tests benchmarks scripts)
	$(VENV)/bin/lint-imports --no-cache

lint-cfn: install
	bash scripts/lint-cfn.sh

# Test workers (pytest-xdist, ``TEST_WORKERS`` above), a test file per worker at a time so a module's fixtures
# (the Lambda package build, a module's simulator) are made once; each worker starts its own
# DynamoDB servers. Coverage is combined across the workers.
test: install lint
	-@command -v npm >/dev/null 2>&1 && $(MAKE) --no-print-directory dynalite
	$(PY) -m pytest --numprocesses=$(TEST_WORKERS) --dist=loadfile --cov --cov-report=term:skip-covered

unit: install
	$(PY) -m pytest tests/unit tests/property

integration: install dynalite
	$(PY) -m pytest tests/integration

bench: install dynalite
	$(PY) -m benchmarks.run --full

bench-quick: install dynalite
	$(PY) -m benchmarks.run --quick

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .import_linter_cache .hypothesis build dist *.egg-info
