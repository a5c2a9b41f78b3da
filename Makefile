# The README's commands. Every target creates .venv and installs into it when needed: `make run`
# only the package itself; the tests, the demo and the benchmarks also its dev, OpenAgents and
# benchmark extras.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SERVE  := $(VENV)/.installed-serve
STAMP  := $(VENV)/.installed
# torch comes first, the CPU build: PyPI's Linux wheel of torch is the CUDA build (GBs). A machine
# that keeps wheels on disk (pip's find-links, as here) has it there; elsewhere PyTorch's CPU index
# serves it. Its dependencies then come from PyPI with the package's.
TORCH       := torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install run test lint bench bench-quick demo soak wheel screenshots clean

$(SERVE): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-index --no-deps $(TORCH) 2>/dev/null || \
		$(PY) -m pip install -q --no-deps $(TORCH) --index-url $(TORCH_INDEX)
	$(PY) -m pip install -q -e .
	touch $(SERVE)

$(STAMP): $(SERVE)
	$(PY) -m pip install -q -e ".[dev,openagents,bench]"
	touch $(STAMP)

install: $(STAMP)

run: $(SERVE)  ## the shared memory hub on the embedded default (Milvus Lite + local model)
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

wheel: $(SERVE)  ## dist/mcp_memory_server-<version>-py3-none-any.whl (see README, "Install from a wheel")
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w dist .

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
