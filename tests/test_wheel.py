"""One package: the built wheel, installed with pip into a fresh venv with no network, gives a
working `mcp-memory-server` (stdio round trip with the local embedder) and nothing of the dev,
OpenAgents or benchmark extras.

Its dependencies come from a wheelhouse repacked from this environment's installed distributions
(their files as installed, with the tags they were installed with), so that pip resolves the
wheel's requirements exactly as it would from an index, offline, on any machine that ran
`make test` (no cache, mirror or download involved)."""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata as metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mcp_memory_server import __version__
from tests.conftest import call

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

EXTRAS = {"pytest", "hypothesis", "ruff", "mypy", "selenium", "openagents", "matplotlib"}  # the extras' packages


def build_wheel(repo: Path, work: Path) -> Path:
    """The project's wheel, built from a copy of its sources (the tree stays clean)."""
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, source / name)
    for name in ("mcp_memory_server", "openagents_bridge"):
        shutil.copytree(repo / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(work / "dist"), str(source)], check=True, timeout=600, env=_offline_pip())
    (wheel,) = (work / "dist").glob("mcp_memory_server-*.whl")
    return wheel


def requirements_closure(wheel: Path) -> list[metadata.Distribution]:
    """The installed distributions the wheel's requirements (no extras) need, transitively."""
    with zipfile.ZipFile(wheel) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [line.split(":", 1)[1].strip() for line in whl.read(meta).decode().splitlines()
                    if line.startswith("Requires-Dist:")]
    found: dict[str, metadata.Distribution] = {}
    pending = [(Requirement(r), "") for r in requires]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        dist = metadata.distribution(name)
        for wanted in [""] + sorted(requirement.extras):
            key = f"{name}[{wanted}]"
            if key not in found:
                found[key] = dist
                pending += [(Requirement(r), wanted) for r in dist.requires or ()]
    return list({canonicalize_name(d.metadata["Name"]): d for d in found.values()}.values())


def repack(dist: metadata.Distribution, wheelhouse: Path) -> None:
    """`dist`'s installed files as a wheel (scripts and data outside site-packages left out:
    pip writes console scripts anew from entry_points.txt)."""
    site = Path(str(dist.locate_file("")))
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")] or ["py3-none-any"]
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    info = next(str(f).split("/")[0] for f in dist.files or () if str(f).split("/")[0].endswith(".dist-info"))
    record = io.StringIO()
    rows = csv.writer(record)
    parts = [sorted({tag.split("-")[i] for tag in tags}) for i in range(3)]  # py2.py3-none-any: all of them
    tag = "-".join(".".join(part) for part in parts)
    with zipfile.ZipFile(wheelhouse / f"{name}-{dist.version}-{tag}.whl", "w", zipfile.ZIP_STORED) as whl:
        for entry in dist.files or ():
            path = str(entry)
            if path.startswith("..") or path.endswith((".pyc", "/RECORD", "/INSTALLER", "/REQUESTED",
                                                         "/direct_url.json")):
                continue
            data = (site / path).read_bytes()
            arcname = path
            whl.writestr(arcname, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.writerow([arcname, f"sha256={digest}", len(data)])
        rows.writerow([f"{info}/RECORD", "", ""])
        whl.writestr(f"{info}/RECORD", record.getvalue())


def _offline_pip() -> dict[str, str]:
    """pip without any configured index, mirror or wheel directory: only what the command names."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHONPATH"))}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


async def test_the_built_wheel_installs_offline_and_serves_a_stdio_round_trip(repo_root: Path, tmp_path: Path) -> None:
    wheel = build_wheel(repo_root, tmp_path)
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    for dist in requirements_closure(wheel):
        repack(dist, wheelhouse)
    venv = tmp_path / "venv"
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    subprocess.run([str(base_python), "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    installed = subprocess.run([python, "-m", "pip", "install", "-q", "--no-compile", "--no-index",
                                "--find-links", str(wheelhouse), str(wheel)],
                               capture_output=True, text=True, timeout=900, env=_offline_pip())
    assert installed.returncode == 0, installed.stderr[-3000:]
    listed = subprocess.run([python, "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, timeout=120, env=_offline_pip())
    names = {canonicalize_name(p["name"]) for p in json.loads(listed.stdout)}
    assert "mcp-memory-server" in names and "torch" in names and "sentence-transformers" in names
    assert not names & EXTRAS, names & EXTRAS

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHONPATH", "MILVUS_", "MEMORY_", "EMBEDDING_", "OPENAI_"))}
    env["MILVUS_URI"] = str(tmp_path / "wheel.db")
    where = subprocess.run([python, "-c", "import mcp_memory_server; print(mcp_memory_server.__file__)"],
                           capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where  # the installed wheel, not these sources
    server = StdioServerParameters(command=str(venv / "bin" / "mcp-memory-server"),
                                   args=["serve", "--transport", "stdio"], env=env, cwd=str(tmp_path))
    with anyio.fail_after(300):
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            assert (await session.initialize()).serverInfo.version == __version__
            stored = await call(session, "remember", content="installed from the wheel, offline", community="pkg")
            hits = (await call(session, "recall", query="how was it installed?", community="pkg"))["hits"]
            assert hits[0]["id"] == stored["id"]


def test_make_run_installs_the_package_alone_and_torchs_cpu_build(repo_root: Path, tmp_path: Path) -> None:
    planned = subprocess.run(["make", "-n", "run", f"VENV={tmp_path / 'venv'}"], cwd=repo_root,
                             capture_output=True, text=True, timeout=60)
    assert planned.returncode == 0, planned.stderr
    installs = [line for line in planned.stdout.splitlines() if "pip install" in line]
    assert any(line.rstrip().endswith("pip install -q -e .") for line in installs), installs
    assert not any("[dev" in line or "openagents" in line or "bench" in line for line in installs), installs
    torch = next(i for i, line in enumerate(installs) if "torch==" in line)
    assert torch < next(i for i, line in enumerate(installs) if line.rstrip().endswith("-e ."))  # torch first
    assert "--index-url https://download.pytorch.org/whl/cpu" in planned.stdout  # not PyPI's CUDA build
