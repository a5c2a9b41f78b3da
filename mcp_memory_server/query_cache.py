"""The vectors of recent recall queries, so that a repeated query skips the model.

Agents repeat themselves (the same question before each answer, the same lookup by several agents):
a hit costs a dictionary lookup instead of a model call (6-10 ms of MiniLM on a quiet core, tens of
ms on a busy one, a network round trip with an API). A query's vector depends only on its text and
the embedder, which is fixed for the life of a service, so entries never go stale. Vectors are kept
as float32 arrays: 4,096 entries of 384 dimensions are ~6 MB (Python float lists would be ~50 MB).
Thread-safe: read on the event loop, filled from worker threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import numpy.typing as npt


class QueryCache:
    """A bounded LRU map of query text -> unit vector. `size` 0 keeps nothing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._vectors: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, query: str) -> list[float] | None:
        """The cached vector of `query` (now the most recently used), or None."""
        with self._lock:
            vector = self._vectors.get(query)
            if vector is None:
                return None
            self._vectors.move_to_end(query)
        return vector.tolist()  # type: ignore[no-any-return]

    def put(self, query: str, vector: list[float]) -> None:
        """Remember `query`'s vector, dropping the least recently used entry beyond `size`."""
        if self.size <= 0:
            return
        array = np.asarray(vector, dtype=np.float32)
        with self._lock:
            self._vectors[query] = array
            self._vectors.move_to_end(query)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
