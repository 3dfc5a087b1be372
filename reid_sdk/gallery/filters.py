"""EntryFilter: which entries a search may return or a removal deletes, independent of the backend.

Each backend translates it into its own query language (SQL for SQLite, a filter expression for Milvus);
the contract tests check that both select the same entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EntryFilter:
    """Conditions that all hold: camera in ``cameras``, camera not in ``exclude_cameras``, identity in
    ``identities``, ``since <= timestamp <= until`` and ``timestamp < before``.

    None among the labels stands for "no label": entries without a camera pass ``exclude_cameras``
    unless it holds None, and pass ``cameras`` only if it does. Entries without a timestamp fail
    every time bound.
    """

    cameras: tuple[Any, ...] | None = None
    exclude_cameras: tuple[Any, ...] = ()
    identities: tuple[Any, ...] | None = None
    since: float | None = None
    until: float | None = None
    before: float | None = None

    @property
    def is_empty(self) -> bool:
        return (self.cameras is None and not self.exclude_cameras and self.identities is None
                and self.since is None and self.until is None and self.before is None)

