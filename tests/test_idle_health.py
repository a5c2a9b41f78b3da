"""`/health` and `mcp-memory-server doctor`: store, embedder and index state, cheaply."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from mcp_memory_server.cli import loop_options, main
from mcp_memory_server.config import Settings
from tests.conftest import Hub
from tests.hub_sessions import ADMIN, ALPHA, auth_hub, bearer


def test_health_reports_store_embedder_and_index_without_scanning(hub: Hub) -> None:
    service = hub.runtime.service
    assert service is not None
    service.store.scan = None  # type: ignore[assignment, method-assign]  # a scan would now fail
    body = httpx.get(f"{hub.base}/health", timeout=30).json()
    assert body["ok"] is True and body["role"] == "owner"
    assert body["event_loop"] == "uvloop"  # a dependency, which uvicorn picks by itself
    assert body["store"]["reachable"] and body["store"]["rows"] == 0 and body["store"]["load_state"] == "Loaded"
    assert body["index"]["type"] == "HNSW"
    assert body["store"]["keyword_search_reads"] == "the communities' buckets only"  # lite_scope
    assert body["store"]["search_row_checks"] == "each segment's key index"  # lite_masks
    assert body["store"]["searches_reach"] == "the engine directly"  # lite.LiteDatabase.search
    assert {k: body["embedder"][k] for k in ("name", "dimension")} == {"name": "local:all-MiniLM-L6-v2",
                                                                      "dimension": 384}
    deadline = time.monotonic() + 120
    while not body["embedder"]["loaded"] and time.monotonic() < deadline:  # the warm-up loads it
        time.sleep(0.2)
        body = httpx.get(f"{hub.base}/health", timeout=30).json()
    # the local model's own pass gives encode's vectors here (embeddings._direct_forward)
    assert body["embedder"] == {"name": "local:all-MiniLM-L6-v2", "dimension": 384, "loaded": True,
                                "model_calls": "its own forward pass"}


def test_serve_runs_on_uvloop_unless_told_not_to() -> None:
    assert loop_options(Settings()) == {"use_uvloop": True}
    assert loop_options(Settings(memory_uvloop=False)) == {"use_uvloop": False}


def test_health_is_503_when_the_store_does_not_answer(hub: Hub) -> None:
    service = hub.runtime.service
    assert service is not None
    service.store.close()
    response = httpx.get(f"{hub.base}/health", timeout=30)
    assert response.status_code == 503
    assert response.json()["store"]["reachable"] is False


def test_doctor_opens_the_store_and_embeds_a_probe(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MILVUS_URI", settings.milvus_uri)
    assert main(["doctor"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["memory"]["embedder"]["works"] and report["memory"]["store"]["reachable"]
    assert report["auth"]["tokens"] == 0 and report["limits"]["k"] == 100


def test_doctor_asks_a_running_hub_with_its_token(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with auth_hub(settings) as hub:
        monkeypatch.setenv("MEMORY_HUB_URL", hub.url)
        monkeypatch.setenv("MEMORY_HUB_TOKEN", ADMIN)
        assert main(["doctor"]) == 0
        assert json.loads(capsys.readouterr().out)["hub"]["store"]["reachable"]
        monkeypatch.setenv("MEMORY_HUB_TOKEN", ALPHA)  # not an admin: the hub's health, without its details
        assert main(["doctor"]) == 0
        assert json.loads(capsys.readouterr().out)["hub"] == {"url": hub.url, "status": 200, "ok": True}
        monkeypatch.setenv("MEMORY_HUB_TOKEN", "wrong-token-0123456789abcdef")
        assert main(["doctor"]) == 1
        assert json.loads(capsys.readouterr().out)["hub"]["status"] == 401
        assert httpx.get(f"{hub.base}/health", headers=bearer(ALPHA), timeout=30).json()["ok"]


def test_doctor_reports_a_broken_token_file(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tokens.yaml").write_text("tokens: [not, a, mapping]\n")
    monkeypatch.setenv("MILVUS_URI", settings.milvus_uri)
    monkeypatch.setenv("MEMORY_AUTH_FILE", str(tmp_path / "tokens.yaml"))
    assert main(["doctor"]) == 1
    assert "expected a mapping" in json.loads(capsys.readouterr().out)["auth"]["error"]


def test_health_refuses_a_foreign_host_header(hub: Hub) -> None:
    assert httpx.get(f"{hub.base}/health", headers={"Host": "evil.example"}, timeout=30).status_code == 421
    assert httpx.get(f"{hub.base}/health", timeout=30).json()["store"]["uri"] == hub.settings.milvus_uri
