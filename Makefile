# Two commands matter: `make run` and `make test`. Everything else here serves them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# A native llama.cpp build dies with "Illegal instruction" on these machines.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

# Tests run against the real services, never SQLite (except the embedded-default tests,
# which start their own subprocess with no DATABASE_URL).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/switchboard
TEST_REDIS_URL ?= redis://127.0.0.1:6379/1
TEST_ENV := DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	SECRET_KEY=test-only-secret-key-not-for-production DEBUG=0 SECURE_SSL_REDIRECT=0 \
	ALLOWED_HOSTS=testserver,127.0.0.1,localhost SWITCHBOARD_DATA_DIR=$(CURDIR)/var/test

.PHONY: run test install install-test services chromium lint pytest proto

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==26.3
	$(PY) -m pip install -q -e '.[llm]'
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[llm,test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_builtin_blocks
	$(PY) -m uvicorn webapp.asgi:application --host $(HOST) --port $(PORT) \
		--loop uvloop --http httptools --ws websockets-sansio --no-access-log --lifespan on \
		--timeout-graceful-shutdown 10

services:
	@bash .ci/services.sh

# The browser tests' Chromium (Debian's package; Playwright drives it, it downloads no browser).
chromium:
	@bash .ci/chromium.sh

lint: install-test
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache

# `make pytest ARGS="tests/registry -x"` runs part of the suite with the test environment.
pytest: install-test services
	$(TEST_ENV) $(PY) -m pytest $(ARGS)

test: install-test services chromium lint
	$(TEST_ENV) $(PY) -m pytest

# Regenerate the committed gRPC stubs after editing inference/protos/*.proto.
proto: install-test
	$(PY) -m grpc_tools.protoc -I inference/protos --python_out=inference/grpc_gen \
		--pyi_out=inference/grpc_gen --grpc_python_out=inference/grpc_gen inference/protos/*.proto
	sed -i -E 's/^import (\w+_pb2) as /from inference.grpc_gen import \1 as /' inference/grpc_gen/*_pb2_grpc.py
