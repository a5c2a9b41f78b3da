"""The memory's vocabulary: tool inputs and outputs, the stored record, and the limits of the schema.

The input models ARE the tools' argument schemas: `server.py` declares each MCP tool from one of
them, the hub client sends them, the service takes them, and the OpenAgents bridge reads its
schemas from the same tools. A field is written once: `base.py` (the stored record, its id, the
schema's limits), `inputs.py` (the tools' arguments), `outputs.py` (their results).
"""

from .base import (
    LATEST_LIMIT,
    LATEST_MAX,
    MAX_AGENT_ID_BYTES,
    MAX_COMMUNITY_BYTES,
    MAX_CONTENT_BYTES,
    MAX_ID_CHARS,
    MAX_KIND_BYTES,
    MAX_TAG_BYTES,
    MAX_TAGS,
    MAX_TTL_SECONDS,
    RECALL_K,
    ROUTE_K,
    IndexedMemory,
    MemoryRecord,
    SearchMode,
    memory_id,
)
from .inputs import (
    CommunityArg,
    ForgetIn,
    InputT,
    LatestIn,
    MemoryIn,
    NoInput,
    RecallIn,
    RegisterExpertIn,
    RememberManyIn,
    RouteIn,
    TagsArg,
    ThreadArg,
    ToolInput,
    UpdateIn,
    with_limits,
)
from .outputs import (
    Communities,
    CommunityStats,
    Expert,
    ExpertMatch,
    ExpertProfile,
    Experts,
    Forgotten,
    Hit,
    Latest,
    Recalled,
    Remembered,
    RememberedMany,
    Routed,
    Stats,
    StoredMemory,
    Updated,
)

__all__ = [
    'Communities', 'CommunityArg', 'CommunityStats', 'Expert', 'ExpertMatch', 'ExpertProfile', 'Experts', 'ForgetIn',
    'Forgotten', 'Hit', 'IndexedMemory', 'InputT', 'LATEST_LIMIT', 'LATEST_MAX', 'Latest', 'LatestIn',
    'MAX_AGENT_ID_BYTES', 'MAX_COMMUNITY_BYTES', 'MAX_CONTENT_BYTES', 'MAX_ID_CHARS', 'MAX_KIND_BYTES', 'MAX_TAGS',
    'MAX_TAG_BYTES', 'MAX_TTL_SECONDS', 'MemoryIn', 'MemoryRecord', 'NoInput', 'RECALL_K', 'ROUTE_K', 'RecallIn',
    'Recalled', 'RegisterExpertIn', 'RememberManyIn', 'Remembered', 'RememberedMany', 'RouteIn', 'Routed',
    'SearchMode', 'Stats', 'StoredMemory', 'TagsArg', 'ThreadArg', 'ToolInput', 'UpdateIn', 'Updated', 'memory_id',
    'with_limits',
]
