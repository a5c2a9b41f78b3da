"""The OpenAI-compatible embedding option, against a small local OpenAI-compatible server, and the
checks that keep a collection and its embedder in agreement."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from mcp import ClientSession
from mcp.shared.memory import create_connected_server_and_client_session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_memory_server.cli import main
from mcp_memory_server.config import Settings
from mcp_memory_server.embeddings import build_embedder
from mcp_memory_server.memory import Runtime
from mcp_memory_server.server import build_server
from tests.conftest import call, call_error, free_port
from tests.procs import SERVER, server_env

pytestmark = pytest.mark.anyio

DIM = 16
KEY = "sk-test-local"


def bag_of_words_vector(text: str) -> list[float]:
    """Deterministic embedding: hashed bag of words, so shared words mean similar vectors."""
    vector = [0.0] * DIM
    for word in text.lower().split():
        digest = hashlib.sha256(word.strip(".,?!").encode()).digest()
        vector[digest[0] % DIM] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class FakeOpenAI:
    """A local OpenAI-compatible /v1/embeddings endpoint that records what it was sent."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_with: int | None = None

    async def embeddings(self, request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        body = await request.json()
        self.requests.append(body)
        if self.fail_with:
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=self.fail_with)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": bag_of_words_vector(t)} for i, t in enumerate(inputs)]
        return JSONResponse({"object": "list", "data": list(reversed(data)), "model": body["model"],
                             "usage": {"prompt_tokens": 1, "total_tokens": 1}})


@pytest.fixture
def openai_server() -> Iterator[tuple[str, FakeOpenAI]]:
    fake = FakeOpenAI()
    app = Starlette(routes=[Route("/v1/embeddings", fake.embeddings, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "fake OpenAI server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{server.config.port}/v1", fake
    server.should_exit = True
    thread.join(10)


@pytest.fixture
async def openai_client(tmp_path: Path, openai_server: tuple[str, FakeOpenAI]) -> AsyncIterator[ClientSession]:
    base_url, _ = openai_server
    settings = Settings(milvus_uri=str(tmp_path / "oa.db"), embedding_provider="openai",
                        embedding_model="text-embedding-3-small", embedding_dimension=DIM,
                        openai_api_key=KEY, openai_base_url=base_url)
    runtime = Runtime(settings)
    async with runtime.running(own=True), create_connected_server_and_client_session(build_server(runtime)) as s:
        yield s


async def test_openai_compatible_embeddings_store_and_recall(
    openai_client: ClientSession, openai_server: tuple[str, FakeOpenAI]
) -> None:
    _, fake = openai_server
    await call(openai_client, "remember_many", memories=[
        {"content": "kubernetes pods restart after OOM kills"},
        {"content": "python dataclasses support slots"},
    ])
    hits = (await call(openai_client, "recall", query="why do pods restart", mode="semantic", k=1))["hits"]
    assert hits[0]["content"] == "kubernetes pods restart after OOM kills"
    stats = await call(openai_client, "stats")
    assert stats["embedder"] == "openai:text-embedding-3-small" and stats["dimension"] == DIM
    assert fake.requests[0] == {"model": "text-embedding-3-small", "input": [
        "kubernetes pods restart after OOM kills", "python dataclasses support slots"], "dimensions": DIM}


async def test_an_embedding_api_failure_is_a_tool_error_and_stores_nothing(
    openai_client: ClientSession, openai_server: tuple[str, FakeOpenAI]
) -> None:
    _, fake = openai_server
    await call(openai_client, "remember", content="stored before the outage")
    fake.fail_with = 503
    message = await call_error(openai_client, "remember", content="written during the outage")
    assert "embedding API answered HTTP 503" in message
    fake.fail_with = None
    assert (await call(openai_client, "stats"))["total"] == 1
    assert (await call(openai_client, "remember", content="written during the outage"))["duplicate"] is False


async def test_a_collection_built_with_another_dimension_is_refused_naming_both(tmp_path: Path) -> None:
    db = str(tmp_path / "dims.db")
    first = Runtime(Settings(milvus_uri=db))  # local model: 384
    async with first.running(own=True):
        await first.wait_ready()
    second = Runtime(Settings(milvus_uri=db, embedding_provider="openai", embedding_dimension=1536,
                              openai_api_key="unused"))
    async with second.running(own=True), create_connected_server_and_client_session(build_server(second)) as s:
        message = await call_error(s, "recall", query="anything")
    assert "384" in message and "1536" in message and "agent_memory" in message


@pytest.mark.parametrize("base_url, key, warned", [
    ("https://api.openai.com/v1", None, True),
    ("https://embeddings.example.org/v1", None, True),
    ("https://api.openai.com/v1", "sk-set", False),
    ("http://127.0.0.1:8080/v1", None, False),  # a local server may need no key
    ("http://localhost:11434/v1", None, False),
    ("http://[::1]:8080/v1", None, False),
])
def test_openai_without_a_key_warns_at_start_naming_the_key(base_url: str, key: str | None, warned: bool,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    build_embedder(Settings(embedding_provider="openai", openai_base_url=base_url, openai_api_key=key)).close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("OPENAI_API_KEY is not set" in w for w in warnings) is warned, warnings


def test_doctor_names_the_missing_openai_key_without_calling_the_api(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "MEMORY_AUTH_FILE", "MEMORY_AUTH_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MILVUS_URI", settings.milvus_uri)
    monkeypatch.setenv("EMBEDDING_PROVIDER", "openai")
    monkeypatch.setenv("EMBEDDING_DIMENSION", str(DIM))
    assert main(["doctor"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert "OPENAI_API_KEY is not set" in report["memory"]["embedder"]["error"]
    assert report["memory"]["embedder"]["works"] is False and report["memory"]["store"]["reachable"]


def test_the_stats_command_does_not_load_the_embedding_model(tmp_path: Path) -> None:
    done = subprocess.run([*SERVER, "stats"], env={**server_env(tmp_path / "stats.db"), "PYTHONPROFILEIMPORTTIME": "1"},
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["total"] == 0
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "pymilvus" in imported  # the import log works: stats opened the store
    assert "sentence_transformers" not in imported and "torch" not in imported
