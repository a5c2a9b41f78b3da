"""The owner of the store freezes the heap once its model is loaded (memory.freeze_heap): a full
collection of reference cycles then walks only what was made since, not the model and libraries
(~0.3 s a collection on the benchmark machine, the p99 of 16 concurrent clients)."""

from __future__ import annotations

import gc

import anyio
import pytest

from mcp_memory_server.memory import Runtime, freeze_heap

pytestmark = pytest.mark.anyio


async def test_the_heap_is_frozen_once_the_model_is_loaded(runtime: Runtime) -> None:
    service = runtime.service
    assert service is not None
    with anyio.fail_after(120):
        while not (getattr(service.embedder, "loaded", False) and gc.get_freeze_count()):
            await anyio.sleep(0.05)
    frozen = gc.get_freeze_count()
    assert frozen > 50_000  # torch, the model's modules, the MCP SDK, pymilvus and Milvus Lite
    freeze_heap()
    assert gc.get_freeze_count() == frozen  # once per process
