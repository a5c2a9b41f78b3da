# The README's commands. Every target creates .venv and installs into it when needed.
# torch comes first, pinned to the CPU wheel on local disk: any other torch request downloads GBs.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench bench-quick demo soak clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,openagents,bench]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## the shared memory hub on the embedded default (Milvus Lite + local model)
	$(VENV)/bin/mcp-memory-server serve --transport streamable-http

lint: $(STAMP)
	$(PY) -m ruff check mcp_memory_server openagents_bridge tests benchmarks examples
	$(PY) -m mypy

test: lint  ## lint, type-check and run the tests
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
