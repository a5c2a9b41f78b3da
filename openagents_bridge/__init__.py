"""OpenAgents agents that use the shared memory hub."""
