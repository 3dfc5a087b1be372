"""SQLite metadata of gallery entries: identity, camera, timestamp, track id, JSON metadata.

The live database is in memory behind one lock (sqlite3 connections are not safe
to share between threads unguarded); ``dump``/``load`` copy it to and from a file
with SQLite's online backup API, so a saved file is always a complete snapshot.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    identity,
    camera,
    timestamp REAL,
    track_id,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS entries_identity ON entries(identity);
CREATE INDEX IF NOT EXISTS entries_camera ON entries(camera);
CREATE INDEX IF NOT EXISTS entries_timestamp ON entries(timestamp);
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value);
"""
# identity, camera and track_id have no declared type, so SQLite keeps the Python type (int stays int, str stays str).

_ID_LIST = "SELECT value FROM json_each(?)"


def _json_ids(ids: Iterable[int]) -> str:
    return json.dumps([int(i) for i in ids])


@dataclass(frozen=True)
class SearchFilter:
    """Which entries a search may return: by camera and by time (``since <= timestamp <= until``).

    Entries without a camera are kept by ``exclude_cameras``; entries without a
    timestamp are dropped by any time bound.
    """

    cameras: tuple[Any, ...] | None = None
    exclude_cameras: tuple[Any, ...] = ()
    since: float | None = None
    until: float | None = None

    @property
    def is_empty(self) -> bool:
        return self.cameras is None and not self.exclude_cameras and self.since is None and self.until is None

    def where(self) -> tuple[str, list[Any]]:
        """SQL condition and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.cameras is not None:
            clauses.append(f"camera IN ({','.join('?' * len(self.cameras))})")
            params.extend(self.cameras)
        if self.exclude_cameras:
            clauses.append(f"(camera IS NULL OR camera NOT IN ({','.join('?' * len(self.exclude_cameras))}))")
            params.extend(self.exclude_cameras)
        if self.since is not None:
            clauses.append("timestamp >= ?")
            params.append(float(self.since))
        if self.until is not None:
            clauses.append("timestamp <= ?")
            params.append(float(self.until))
        return " AND ".join(clauses) or "1", params


class MetadataStore:
    """Entry rows keyed by the FAISS id; one in-memory connection guarded by a lock."""

    def __init__(self, connection: sqlite3.Connection | None = None) -> None:
        self._conn = connection or sqlite3.connect(":memory:", check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._conn:
            self._conn.executescript(_SCHEMA)
            self._rows = int(self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    @classmethod
    def load(cls, path: Path) -> MetadataStore:
        """Copy a saved database file into a fresh in-memory store."""
        memory = sqlite3.connect(":memory:", check_same_thread=False)
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            source.backup(memory)
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{path} is not a readable gallery metadata database: {error}") from error
        finally:
            source.close()
        return cls(memory)

    def dump(self, path: Path) -> None:
        """Write a complete snapshot to ``path`` (which must not exist)."""
        target = sqlite3.connect(path)
        try:
            with self._lock:
                self._conn.backup(target)
        finally:
            target.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def get_info(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._conn.execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    def set_info(self, key: str, value: Any) -> None:
        with self._lock, self._conn:
            self._conn.execute("INSERT OR REPLACE INTO info(key, value) VALUES (?, ?)", (key, value))

    def insert(self, ids: np.ndarray, identities: Sequence[Any], cameras: Sequence[Any],
               timestamps: Sequence[float | None], track_ids: Sequence[Any], metadata: Sequence[str]) -> None:
        rows = zip((int(i) for i in ids), identities, cameras, timestamps, track_ids, metadata)
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT INTO entries(id, identity, camera, timestamp, track_id, metadata) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._rows += len(ids)

    def delete(self, ids: Iterable[int]) -> None:
        with self._lock, self._conn:
            self._rows -= self._conn.execute(f"DELETE FROM entries WHERE id IN ({_ID_LIST})", (_json_ids(ids),)).rowcount

    def __len__(self) -> int:
        """Number of entries (kept in memory: searches need it and COUNT(*) is O(N))."""
        return self._rows

    def count(self, condition: str, params: Sequence[Any] = ()) -> int:
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM entries WHERE {condition}", params).fetchone()[0])

    def ids(self, condition: str = "1", params: Sequence[Any] = ()) -> np.ndarray:
        """Entry ids matching an SQL condition, as int64."""
        with self._lock:
            rows = self._conn.execute(f"SELECT id FROM entries WHERE {condition}", params).fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def existing(self, ids: Iterable[int]) -> np.ndarray:
        return self.ids(f"id IN ({_ID_LIST})", (_json_ids(ids),))

    def rows(self, ids: Iterable[int]) -> dict[int, tuple[Any, Any, float | None, Any, dict[str, Any]]]:
        """{id: (identity, camera, timestamp, track_id, metadata dict)} for the ids that exist."""
        with self._lock:
            found = self._conn.execute(
                f"SELECT id, identity, camera, timestamp, track_id, metadata FROM entries WHERE id IN ({_ID_LIST})",
                (_json_ids(ids),),
            ).fetchall()
        return {row[0]: (row[1], row[2], row[3], row[4], json.loads(row[5])) for row in found}
