"""Rank-list pictures of an evaluation, like torchreid's visrank and fast-reid's visualiser.

One PNG per query: the query, then its top-k gallery entries by the distance that was scored, each bordered
green (same identity) or red (another), captioned ``identity / camera`` and distance. As in the Market-1501
protocol, gallery entries of the query's identity in the query's camera are not shown: they do not count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk.datasets.files import read_image
from reid_sdk.datasets.records import record_paths
from reid_sdk.evaluation.on_dataset import Retrieval
from reid_sdk.visualize.tiles import Tile, label, render_row, verdict, with_title, write_image


def _crop(record: Any) -> np.ndarray | None:
    """The record's image, or a tracklet's middle frame."""
    paths = record_paths(record, 3)
    return read_image(paths[len(paths) // 2]) if paths else None


def rank_list(retrieval: Retrieval, query: int, k: int = 10) -> np.ndarray:
    """The rank-list picture (BGR) of query number ``query``."""
    q, g = retrieval.query, retrieval.gallery
    if not 0 <= query < len(q.records):
        raise ValueError(f"query {query} outside 0..{len(q.records) - 1}")
    order = np.argsort(retrieval.distances[query], kind="stable")
    counted = order[~((g.pids[order] == q.pids[query]) & (g.cameras[order] == q.cameras[query]))][:k]
    tiles = [Tile(_crop(g.records[j]), (label(g.pids[j], g.cameras[j]), f"d {retrieval.distances[query, j]:.3f}"),
                  verdict(q.pids[query], g.pids[j])) for j in counted]
    row = render_row(Tile(_crop(q.records[query]), (label(q.pids[query], q.cameras[query]), "query"), "query"), tiles)
    distance = "re-ranked distance" if retrieval.details.get("rerank") else "cosine distance"
    return with_title(row, f"query {query + 1} of {len(q.records)}: top {len(tiles)} by {distance} "
                           "(identity / camera, distance)")


def write_rank_lists(retrieval: Retrieval, folder: str | Path, count: int, k: int = 10) -> list[Path]:
    """Rank lists of ``count`` queries spread evenly over the query split, written as PNGs into ``folder``."""
    if count < 1 or k < 1:
        raise ValueError(f"need at least one query and one rank to draw, got {count} queries, k={k}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    total = len(retrieval.query.records)
    written = []
    for query in np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int)):
        pid, camera = retrieval.query.pids[query], retrieval.query.cameras[query]
        path = folder / f"query{query + 1:05d}_{pid}_c{camera}.png"
        written.append(write_image(rank_list(retrieval, int(query), k), path))
    return written
