"""The shared-memory OpenAgents mod: list `openagents_bridge.memory` in a network's mods and every
agent that joins gets the memory tools (remember, recall, route, ...) executed by the hub.

The network's `hub_url` config names the hub (default: MEMORY_HUB_URL, or the hub advertised
beside the default database); an agent's adapter can also be given one directly.
"""

MOD_NAME = "openagents_bridge.memory"
