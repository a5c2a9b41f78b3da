"""The developer-support community's experts: who they are and what they know from the start.

Each expert registers its profile (`register_expert`) and loads its starter knowledge into the
shared memory, so `route` can pick it from its profile and from what it has written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from mcp_memory_server.models import MemoryIn


@dataclass(frozen=True)
class ExpertSpec:
    """One expert: its id, domain (also the tag of its knowledge), profile and knowledge file."""

    agent_id: str
    domain: str
    description: str
    skills: list[str]
    knowledge_file: str


EXPERTS: dict[str, ExpertSpec] = {
    "python_expert": ExpertSpec(
        agent_id="python_expert",
        domain="python",
        description=(
            "Python developer: the language and standard library, packaging and environments, "
            "async code, typing, and popular libraries for HTTP, data analysis and web applications."
        ),
        skills=[
            "Python language: syntax, exceptions, tracebacks, imports, classes, generators, decorators",
            "standard library: datetime, json, logging, pathlib, subprocess, multiprocessing, threading",
            "packaging and installs: pip, wheels, setuptools, pyproject.toml, poetry, uv, conda",
            "virtual environments (venv, virtualenv) and interpreter version conflicts",
            "asyncio: event loop, coroutines, tasks, async/await, concurrency bugs",
            "type hints, mypy, pyright, generics, protocols",
            "HTTP clients: requests, httpx, aiohttp, SSL certificates and timeouts in Python code",
            "pandas and numpy: DataFrame indexing, groupby, merge, dtypes, CSV and Excel I/O",
            "web frameworks: Flask, Django, FastAPI, Starlette, Jinja templates, WSGI/ASGI apps",
            "pydantic models, validation errors, settings and serialisation",
            "testing with pytest, fixtures, mocking",
            "performance, memory use and profiling of Python programs",
            "ORMs and database drivers: SQLAlchemy, Django ORM, psycopg",
        ],
        knowledge_file="python.jsonl",
    ),
    "milvus_expert": ExpertSpec(
        agent_id="milvus_expert",
        domain="milvus",
        description=(
            "Milvus vector database specialist: collections, vector indexes and similarity search, "
            "the pymilvus and other SDKs, Milvus Lite, Attu and Zilliz Cloud."
        ),
        skills=[
            "Milvus collections, schemas, fields, partitions and partition keys",
            "vector indexes: HNSW, IVF_FLAT, IVF_PQ, IVF_SQ8, DISKANN, FLAT; index build parameters",
            "similarity search: metric types L2, IP, COSINE, top-k, recall and accuracy of ANN search",
            "search with scalar filter expressions, query, iterators, hybrid and full-text (BM25) search",
            "pymilvus Python SDK and the Go, Java and Node.js Milvus SDKs: MilvusClient, errors",
            "inserting, upserting, deleting and bulk importing embeddings; flush, compaction, segments",
            "loading and releasing collections, consistency levels, memory of query nodes",
            "Milvus deployment modes: Milvus Lite, standalone, distributed cluster with etcd, MinIO, Pulsar",
            "Milvus backup, restore, migration and version upgrades",
            "Attu GUI and Zilliz Cloud managed Milvus",
            "embedding storage for RAG and semantic search with LangChain or LlamaIndex",
        ],
        knowledge_file="milvus.jsonl",
    ),
    "devops_expert": ExpertSpec(
        agent_id="devops_expert",
        domain="devops",
        description=(
            "DevOps and infrastructure engineer: containers, Kubernetes clusters, Helm, reverse "
            "proxies and ingress, CI/CD pipelines, monitoring and networking."
        ),
        skills=[
            "Docker: Dockerfile, images, builds, containers, volumes, registries, docker compose",
            "Kubernetes: pods, deployments, services, namespaces, kubectl, scheduling, pod status errors",
            "Kubernetes storage and config: PersistentVolumes, ConfigMaps, Secrets, RBAC",
            "Helm charts, releases, values and upgrades",
            "ingress controllers and reverse proxies: ingress-nginx, Traefik, nginx, load balancers",
            "TLS certificates, cert-manager, Let's Encrypt, HTTPS termination",
            "CI/CD: GitHub Actions, GitLab CI, Jenkins, self-hosted runners, pipelines",
            "monitoring and alerting: Prometheus, exporters, scraping, Alertmanager, Grafana",
            "networking: DNS, ports, firewalls, connection refused and timeouts between hosts",
            "infrastructure as code: Terraform, Ansible; cloud VMs and clusters (EKS, GKE, AKS)",
            "Linux servers, systemd services, logs and resource limits",
        ],
        knowledge_file="devops.jsonl",
    ),
}


def load_knowledge(agent_id: str) -> list[MemoryIn]:
    """The expert's starter knowledge as memories (kind "knowledge", tagged with its domain).

    Raises KeyError for an unknown expert and ValueError for a line without "content".
    """
    spec = EXPERTS[agent_id]
    text = resources.files("openagents_bridge").joinpath("knowledge", spec.knowledge_file).read_text("utf-8")
    items: list[MemoryIn] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        entry = json.loads(line)
        content = entry.get("content")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"{spec.knowledge_file} line {number}: needs a non-empty \"content\" string")
        items.append(MemoryIn(content=content, kind="knowledge", agent_id=spec.agent_id, tags=[spec.domain]))
    return items
