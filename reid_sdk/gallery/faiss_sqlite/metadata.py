"""SQLite metadata of gallery entries: identity, camera, timestamp, track id, JSON metadata.

The live database is in memory behind one lock (sqlite3 connections are not safe
to share between threads unguarded); ``dump``/``load`` copy it to and from a file
with SQLite's online backup API, so a saved file is always a complete snapshot.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk.gallery.entries import EntryRow
from reid_sdk.gallery.errors import CorruptGalleryError
from reid_sdk.gallery.filters import EntryFilter

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
"""
# identity, camera and track_id have no declared type, so SQLite keeps the Python type (int stays int, str stays str).

_COLUMNS = "id, identity, camera, timestamp, track_id, metadata"
_SQLITE_FULL = 13  # "database or disk is full" (sqlite3.SQLITE_FULL from Python 3.11)
_ID_LIST = "SELECT value FROM json_each(?)"


def _json_ids(ids: Iterable[int]) -> str:
    return json.dumps([int(i) for i in ids])


def _in(column: str, values: Sequence[Any], params: list[Any]) -> str:
    """The column holds one of ``values``, None meaning no label."""
    labels = [value for value in values if value is not None]
    params.extend(labels)
    condition = f"{column} IN ({','.join('?' * len(labels))})"
    return f"({condition} OR {column} IS NULL)" if None in values else condition


def _not_in(column: str, values: Sequence[Any], params: list[Any]) -> str:
    """The column holds none of ``values``: unlabelled entries pass unless None is one of them."""
    condition = _in(column, values, params)
    return f"NOT {condition}" if None in values else f"({column} IS NULL OR NOT {condition})"


def where(entry_filter: EntryFilter) -> tuple[str, list[Any]]:
    """The SQL condition selecting the entries of ``entry_filter``, and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if entry_filter.cameras is not None:
        clauses.append(_in("camera", entry_filter.cameras, params))
    if entry_filter.exclude_cameras:
        clauses.append(_not_in("camera", entry_filter.exclude_cameras, params))
    if entry_filter.identities is not None:
        clauses.append(_in("identity", entry_filter.identities, params))
    for bound, operator in ((entry_filter.since, ">="), (entry_filter.until, "<="), (entry_filter.before, "<")):
        if bound is not None:
            clauses.append(f"timestamp {operator} ?")
            params.append(float(bound))
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
        """Copy a saved database file into a fresh in-memory store; CorruptGalleryError if it is not one."""
        memory = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                source.backup(memory)
            finally:
                source.close()
            memory.execute(f"SELECT {_COLUMNS} FROM entries LIMIT 0")
            return cls(memory)
        except sqlite3.Error as error:
            memory.close()
            raise CorruptGalleryError(f"{path} is not a readable gallery metadata database: {error}") from error

    def dump(self, path: Path) -> None:
        """Write a complete snapshot to ``path`` (a new or empty file).

        The rollback journal stays in memory: the file is a temporary that only a finished dump replaces the
        real one with, so a journal file beside it would only be litter after a crash. A full disk is an OSError
        (ENOSPC) naming ``path``, as any other writer's.
        """
        target = sqlite3.connect(path)
        try:
            target.execute("PRAGMA journal_mode=MEMORY")
            with self._lock:
                self._conn.backup(target)
        except sqlite3.OperationalError as error:
            code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+; before, only the message tells
            if code != _SQLITE_FULL and (code is not None or "disk is full" not in str(error)):
                raise
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from error
        finally:
            target.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def insert(self, ids: np.ndarray, rows: Sequence[EntryRow]) -> None:
        values = ((int(i), r.identity, r.camera, r.timestamp, r.track_id, json.dumps(r.metadata))
                  for i, r in zip(ids, rows))
        with self._lock, self._conn:
            self._conn.executemany(f"INSERT INTO entries({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", values)
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
        """Entry ids matching an SQL condition, as sorted int64."""
        with self._lock:
            rows = self._conn.execute(f"SELECT id FROM entries WHERE {condition} ORDER BY id", params).fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def existing(self, ids: Iterable[int]) -> np.ndarray:
        return self.ids(f"id IN ({_ID_LIST})", (_json_ids(ids),))

    def rows(self, ids: Iterable[int]) -> dict[int, EntryRow]:
        """{id: row} for the ids that exist."""
        with self._lock:
            found = self._conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE id IN ({_ID_LIST})",
                                       (_json_ids(ids),)).fetchall()
        return {row[0]: EntryRow(row[1], row[2], row[3], row[4], json.loads(row[5])) for row in found}
