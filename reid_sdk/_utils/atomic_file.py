"""Crash-safe file writes: write a temporary beside the target, fsync it, rename it over the target, fsync the folder.

After a crash the target holds either its previous content or the new one, never a mix; the folder fsync makes
the rename itself durable. Temporaries are named ``.NAME.RANDOM.tmp`` so a crash's leftovers can be recognised
(:func:`temporary_target`) and removed.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_TEMPORARY = re.compile(r"^\.(.+)\.[0-9a-f]+\.tmp$")


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _new_temporary(path: Path) -> Path:
    """An empty file beside ``path`` with a fresh name, created with the default permissions (umask applies)."""
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return temporary
        except FileExistsError:
            continue


def temporary_target(name: str) -> str | None:
    """The file name that the temporary called ``name`` was to replace; None when ``name`` is no temporary."""
    match = _TEMPORARY.match(name)
    return match.group(1) if match else None


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; what the block writes there replaces ``path`` once it succeeds.

    For writers that take a file name (FAISS, SQLite). A crash or exception midway leaves the previous file
    untouched and no temporary behind.
    """
    path = Path(path)
    temporary = _new_temporary(path)
    try:
        yield temporary
        _fsync(temporary, os.O_RDWR)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync(path.parent, os.O_RDONLY)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary handle whose content replaces ``path`` only once the block succeeds (see :func:`atomic_path`)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        yield handle
