"""The audit trail: one JSON line per search, export, ingest, erasure and retention run, appended and rotated.

Each record says who (the key's name and role), when (UTC), what (the action, the query: an entry, a track or the
SHA-256 of an uploaded crop, never the image), which filters and how many results, with the entry ids returned (so
"who searched for whom" can be answered). Rotation is the standard library's RotatingFileHandler: ``audit.jsonl``,
then ``audit.jsonl.1`` ... ``.N``, oldest dropped. One process writes one file: give each service worker its own.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from reid_sdk.serve.keys import Caller

SYSTEM = Caller("reid-serve", "admin")  # who retention runs as


class AuditLog:
    """Append-only JSON-lines audit file, rotated at ``max_bytes`` keeping ``backups`` old files.

    Example:
        ```python
        audit = AuditLog(Path("audit/audit.jsonl"))
        audit.record(Caller("alice", "search"), "search", query={"entry": 12}, results=10)
        print(audit.read(limit=5)[-1]["who"])   # alice
        ```
    """

    def __init__(self, path: Path, max_bytes: int = 10 << 20, backups: int = 10) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.backups = backups
        self._handler = RotatingFileHandler(self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._lock = threading.Lock()

    def record(self, caller: Caller, action: str, **details: Any) -> None:
        """Append one record (flushed before returning)."""
        line = json.dumps({"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "who": caller.name,
                           "role": caller.role, "action": action, **details}, default=str, allow_nan=False)
        with self._lock:
            self._handler.emit(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))

    def read(self, limit: int = 100, action: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` records (of ``action``, when given), oldest first, across the rotated files."""
        files = [self.path.with_name(f"{self.path.name}.{n}") for n in range(self.backups, 0, -1)] + [self.path]
        records: list[dict[str, Any]] = []
        with self._lock:
            for path in files:
                if path.is_file():
                    records += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        if action is not None:
            records = [record for record in records if record["action"] == action]
        return records[-limit:] if limit else []

    def close(self) -> None:
        self._handler.close()
