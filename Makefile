# The README's commands. Every target creates .venv and installs into it when needed.
# torch comes first, pinned to the CPU wheel on local disk: any other torch request downloads GBs.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench bench-quick demo soak screenshots clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,openagents,bench]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## the shared memory hub on the embedded default (Milvus Lite + local model)
	$(VENV)/bin/mcp-memory-server serve --transport streamable-http

demo: $(STAMP)  ## the developer-support community end to end, offline (see README)
	$(PY) -m openagents_bridge.demo

lint: $(STAMP)
	$(PY) -m ruff check mcp_memory_server openagents_bridge tests benchmarks examples
	$(PY) -m mypy

test: lint  ## lint, type-check and run the tests
	$(PY) -m pytest -q

soak: $(STAMP)  ## long variants: 30 min idle, 32 clients x 1000 operations (SOAK_IDLE_SECONDS, SOAK_CLIENTS, SOAK_OPERATIONS)
	$(PY) -m pytest -q -s -m soak

# mem0 (the peer in `make bench`) pins protobuf<7, which conflicts with the grpcio-tools this venv
# needs; it runs fine with protobuf 7, so it is installed without its pins, beside the project.
PEER := $(VENV)/.bench-peer
$(PEER): $(STAMP)
	$(PY) -m pip install -q posthog pytz qdrant-client sqlalchemy
	$(PY) -m pip install -q --no-deps mem0ai==2.2.1
	touch $(PEER)

bench: $(STAMP) $(PEER)  ## every benchmark at full size (~30 min): benchmarks/results/{*.json,summary.md,*.png}
	$(PY) -m benchmarks

bench-quick: $(STAMP) $(PEER)  ## the same at small sizes (a few minutes): benchmarks/results/quick/
	$(PY) -m benchmarks --quick

screenshots: $(STAMP)  ## the README's pictures of the web view (docs/screenshots/; needs chromium + chromium-driver)
	$(PY) -m benchmarks.screenshots

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
