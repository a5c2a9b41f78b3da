"""The glossary `route` reads technical names with: which names a question is found to contain, the
file format and its errors, the shipped file's rules, and MEMORY_GLOSSARY through the MCP tools on
real Milvus Lite and the real embedder."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp.shared.memory import create_connected_server_and_client_session

from mcp_memory_server import glossary
from mcp_memory_server.config import Settings, load_settings
from mcp_memory_server.errors import ConfigError
from mcp_memory_server.memory import Runtime
from mcp_memory_server.server import build_server
from tests.conftest import call

GLOSSARY = glossary.Glossary({
    "CrashLoopBackOff": "Kubernetes pod status: a container keeps crashing.",
    "docker compose": "Docker tool running multi-container applications.",
    "docker-compose": "Docker tool running multi-container applications.",
    "ConfigMap": "Kubernetes object holding configuration.",
    "requirements.txt": "Python file listing a project's dependencies.",
    "IVF_PQ": "Vector index type with product quantization.",
    "Apache Spark": "Distributed data processing engine.",
    "Spark SQL": "Apache Spark's SQL module.",
    "=ACID": "Database transaction guarantees.",
    "$group": "MongoDB aggregation stage.",
    "--no-cache-dir": "pip option.",
})


def test_names_are_found_case_insensitively_as_whole_words_with_plurals_each_once_in_order() -> None:
    text = "crashloopbackoff again; my ConfigMaps and requirements.txt, then CrashLoopBackOff, ivf_pq."
    assert GLOSSARY.explain(text) == [
        ("crashloopbackoff", "Kubernetes pod status: a container keeps crashing."),
        ("ConfigMaps", "Kubernetes object holding configuration."),
        ("requirements.txt", "Python file listing a project's dependencies."),
        ("ivf_pq", "Vector index type with product quantization.")]
    assert GLOSSARY.explain("IVF_PQX and preCrashLoopBackOff and requirements.txtx") == []
    assert GLOSSARY.explain("We run docker  compose up, or docker-compose up") == [
        ("docker  compose", "Docker tool running multi-container applications.")]


def test_an_exact_name_matches_only_as_written_and_punctuated_names_only_when_still_specific() -> None:
    assert [n for n, _ in GLOSSARY.explain("Is this update ACID?")] == ["ACID"]
    assert GLOSSARY.explain("Can acid rain damage a car?") == []
    assert GLOSSARY.explain("Which group should I join?") == []  # "$group" would match any "group"
    assert [n for n, _ in GLOSSARY.explain("pip install --no-cache-dir fails")] == ["no-cache-dir"]
    assert [n for n, _ in GLOSSARY.explain("see docker-compose.yml and pandas.ConfigMap")] == [
        "docker-compose", "ConfigMap"]  # a dotted token without a name of its own is read by its parts


def test_the_longest_name_wins_where_names_overlap_and_the_limit_holds() -> None:
    assert GLOSSARY.explain("Apache Spark SQL joins") == [("Apache Spark", "Distributed data processing engine.")]
    assert GLOSSARY.explain("Spark SQL joins") == [("Spark SQL", "Apache Spark's SQL module.")]
    assert [name for name, _ in GLOSSARY.explain("CrashLoopBackOff ConfigMap IVF_PQ", limit=2)] == [
        "CrashLoopBackOff", "ConfigMap"]


def test_a_malformed_glossary_line_is_refused_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "mine.tsv"
    path.write_text("# ours\nGoodName\tA tool.\nBadName without a tab\n", "utf-8")
    with pytest.raises(ConfigError, match=r"mine\.tsv:3: expected 'name\|alias<TAB>definition'"):
        glossary.load(path)
    with pytest.raises(ConfigError, match="cannot read it"):
        glossary.load(tmp_path / "missing.tsv")


def test_a_malformed_memory_glossary_stops_the_settings_with_its_line(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mine.tsv"
    path.write_text("BadName without a tab\n", "utf-8")
    monkeypatch.setenv("MEMORY_GLOSSARY", str(path))
    with pytest.raises(ConfigError, match=r"MEMORY_GLOSSARY: .*mine\.tsv:1: expected"):
        load_settings()


def test_the_shipped_glossary_parses_and_names_its_field_for_each_name() -> None:
    shipped = glossary.load()
    assert len(shipped) >= 1000
    assert shipped.explain("kubectl says ImagePullBackOff")[0][1].startswith("Kubernetes")
    # everyday questions gain no definition: the glossary holds no ordinary English words
    for text in ("How should I react when my teenager slams the door?", "Where do I buy a helm for my sailboat?",
                 "Is a pet python snake easy to keep?", "What's the best index fund for beginners?",
                 "How do I ship a container of furniture overseas?", "Can you recommend a poetry collection?"):
        assert shipped.explain(text) == [], text


# -- through the tools ---------------------------------------------------------------------------

COMMUNITY = "shop"
EXPERTS = {
    "db_expert": ("I look after our databases.", ["PostgreSQL", "slow queries", "backups and replication"]),
    "web_expert": ("I build our web front end.", ["React and TypeScript", "CSS layout", "browser bugs"]),
}
INVENTED = "Zorblax shows error 42 on start"  # a name no embedder has seen


async def first_choices(settings: Settings, questions: list[str]) -> list[str | None]:
    """Register the experts and route each question through the MCP tools of a fresh server."""
    runtime = Runtime(settings)
    async with runtime.running(own=True):
        await runtime.wait_ready()
        async with create_connected_server_and_client_session(build_server(runtime)) as client:
            for agent_id, (description, skills) in EXPERTS.items():
                await call(client, "register_expert", agent_id=agent_id, description=description, skills=skills,
                           community=COMMUNITY)
            chosen = []
            for question in questions:
                routed = await call(client, "route", question=question, community=COMMUNITY)
                chosen.append(routed["experts"][0]["agent_id"] if routed["experts"] else None)
                told = [m for m in routed["experts"] if "(glossary)" in m["reason"]]
                assert len(told) == (len(routed["experts"]) if "Zorblax" in question and settings.memory_glossary
                                     else 0), routed  # the reason says which names were read with a definition
            return chosen


@pytest.mark.anyio
async def test_a_name_defined_in_memory_glossary_routes_its_question_to_the_expert_of_that_field(
        settings: Settings, tmp_path: Path) -> None:
    plain = "Our nightly backup of the orders table fails"
    without = await first_choices(settings, [INVENTED, plain])
    assert without[0] != "db_expert"  # the name alone is noise to the embedder: not read as a database's
    extra = tmp_path / "ours.tsv"
    extra.write_text("Zorblax|zorblax replica\tPostgreSQL streaming replication standby of our database.\n", "utf-8")
    defined = settings.model_copy(update={"milvus_uri": str(tmp_path / "other.db"), "memory_glossary": extra})
    assert await first_choices(defined, [INVENTED, plain]) == ["db_expert", without[1]]
    assert without[1] == "db_expert"  # a question without a glossary name is routed as before
