"""Match: one search result, the gallery entry and its similarity to the query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Match:
    """A gallery entry returned by a search; ``score`` is the cosine similarity (higher is closer)."""

    identity: Any
    camera: Any
    score: float
    entry_id: int
    timestamp: float | None
    track_id: Any
    metadata: dict[str, Any]
