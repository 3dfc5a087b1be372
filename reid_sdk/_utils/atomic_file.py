"""Crash-safe file writes: write a temporary beside the target, fsync it, rename it over the target, fsync the folder.

After a crash the target holds either its previous content or the new one, never a mix; the folder fsync makes
the rename itself durable. Temporaries are named ``.NAME.RANDOM.tmp`` so a crash's leftovers can be recognised
(:func:`temporary_target`) and removed, with the journal SQLite may keep beside one (``-journal``, ``-wal``, ``-shm``).
A write that runs out of space raises :class:`DiskFullError` naming the file, whatever the writer said (torch's zip
writer reports a short write as ``unexpected pos ...``).
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_TEMPORARY = re.compile(r"^\.(.+)\.[0-9a-f]+\.tmp(?:-journal|-wal|-shm)?$")
_NEARLY_FULL = 1 << 20  # bytes: a writer's own error with less free space than this is taken for a full disk


class DiskFullError(OSError):
    """A write that ran out of space; the message names the file (the OS's and torch's do not)."""

    def __init__(self, path: Path) -> None:
        super().__init__(errno.ENOSPC, f"no space left on device writing {path}")

    def __str__(self) -> str:
        return self.strerror


def _out_of_space(error: Exception, folder: Path) -> bool:
    """Whether ``error``, or an error it arose from, is ENOSPC; or it is a writer's RuntimeError (torch: "unexpected
    pos") while the disk holding ``folder`` is full."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            return True
        cause = cause.__cause__ or cause.__context__
    try:
        return isinstance(error, RuntimeError) and shutil.disk_usage(folder).free < _NEARLY_FULL
    except OSError:
        return False


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
    """The file name that the temporary (or its SQLite journal) called ``name`` was to replace; None when ``name``
    is neither."""
    match = _TEMPORARY.match(name)
    return match.group(1) if match else None


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; what the block writes there replaces ``path`` once it succeeds.

    For writers that take a file name (FAISS, SQLite). A crash or exception midway leaves the previous file
    untouched and no temporary behind; running out of space is a :class:`DiskFullError`.
    """
    path = Path(path)
    temporary = _new_temporary(path)
    try:
        yield temporary
        _fsync(temporary, os.O_RDWR)
        os.replace(temporary, path)
    except BaseException as error:
        full = isinstance(error, Exception) and _out_of_space(error, path.parent)  # while the temporary fills it
        temporary.unlink(missing_ok=True)
        if full:
            raise DiskFullError(path) from error
        raise
    _fsync(path.parent, os.O_RDONLY)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Yield a binary handle whose content replaces ``path`` only once the block succeeds (see :func:`atomic_path`)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        yield handle
