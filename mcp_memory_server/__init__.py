"""One shared, long-term memory for every AI agent, served over MCP and stored in Milvus."""

__version__ = "0.1.0"
