"""The community's network.yaml and the config the launcher derives from it."""

from __future__ import annotations

import yaml

from openagents_bridge.community import network_config, network_yaml
from openagents_bridge.experts import EXPERTS
from openagents_bridge.memory import MOD_NAME

CHANNELS = {"general", "coordination", "python_channel", "milvus_channel", "devops_channel"}


def test_network_yaml_serves_http_on_loopback_8700_with_the_channels_and_the_memory_mod() -> None:
    network = yaml.safe_load(network_yaml())["network"]
    (http,) = [t for t in network["transports"] if t["type"] == "http"]
    assert http["config"]["host"] == "127.0.0.1" and http["config"]["port"] == 8700
    mods = {m["name"]: m for m in network["mods"]}
    channels = {c["name"] for c in mods["openagents.mods.workspace.messaging"]["config"]["default_channels"]}
    assert channels == CHANNELS
    assert MOD_NAME in mods
    assert {f"{spec.domain}_channel" for spec in EXPERTS.values()} <= channels


def test_the_launcher_moves_the_port_and_names_the_hub_without_touching_the_yaml() -> None:
    before = network_yaml()
    config = network_config(port=18765, hub_url="http://127.0.0.1:9999/mcp")
    assert network_yaml() == before
    (http,) = [t for t in config.transports if t.type == "http"]
    assert http.config["port"] == 18765 and http.config["host"] == "127.0.0.1"
    (memory,) = [m for m in config.mods if m.name == MOD_NAME]
    assert memory.config["hub_url"] == "http://127.0.0.1:9999/mcp"
