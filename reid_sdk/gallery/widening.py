"""Widening a filtered approximate search until every query has the results that exist.

An IVF probe or an HNSW beam sees only part of the gallery; when a restrictive filter leaves few
candidates there, fewer than k come back although k exist. The short queries are searched again
with four times the effort (nprobe, efSearch) until they are full or the search is exhaustive.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SearchOnce = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def search_widening(search_once: SearchOnce, queries: np.ndarray, expected: int, effort: int,
                    max_effort: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of ``search_once(queries, effort)``, re-run on rows with fewer than ``expected`` hits."""
    scores, ids = search_once(queries, effort)
    while expected and effort < max_effort:
        short = ids[:, expected - 1] < 0
        if not short.any():
            break
        effort = min(effort * 4, max_effort)
        scores[short], ids[short] = search_once(queries[short], effort)
    return scores, ids
