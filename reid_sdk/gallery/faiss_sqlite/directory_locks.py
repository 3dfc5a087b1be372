"""Processes sharing one gallery directory coordinate through filelock locks kept in ``ROOT/.lock/``.

- ``save.lock`` (FileLock): one save at a time, across processes.
- ``readers.lock`` (filelock's SQLite ReadWriteLock): a process loading a generation holds it shared; a saver
  deletes superseded generations only when it can take it exclusively without waiting, so a reader never
  sees its files vanish. Files left behind are deleted by a later save.
- ``ids.lock`` + ``ids.next``: entry ids are reserved from a shared counter, so two processes adding to the
  same gallery never hand out the same id and their saves can be merged.

The OS releases every one of these locks when its process dies, so a killed process blocks nobody.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from filelock import FileLock, ReadWriteLock, Timeout

logger = logging.getLogger(__name__)

LOCK_DIR = ".lock"
LOCK_TIMEOUT_S = 600.0  # a save of a very large gallery can take minutes; waiting longer means something is stuck


def _lock_file(root: Path, name: str) -> Path:
    folder = root / LOCK_DIR
    folder.mkdir(exist_ok=True)
    return folder / name


def save_lock(root: Path) -> FileLock:
    """The lock every save of ``root`` holds (a context manager)."""
    return FileLock(_lock_file(root, "save.lock"), timeout=LOCK_TIMEOUT_S)


@contextmanager
def reading(root: Path) -> Iterator[None]:
    """Hold a shared reader lease on ``root`` while loading its files.

    A gallery on a read-only file system has no saver to guard against, so it is read without a lease.
    """
    try:
        lock = ReadWriteLock(_lock_file(root, "readers.lock"), timeout=LOCK_TIMEOUT_S, is_singleton=False)
    except (OSError, sqlite3.Error) as error:
        logger.debug("reading %s without a reader lease (%s): nothing can save into it", root, error)
        yield
        return
    with closing(lock), lock.read_lock():
        yield


@contextmanager
def unless_read(root: Path) -> Iterator[bool]:
    """Yield True while holding ``root``'s reader lock exclusively, or False at once when a reader holds it."""
    with closing(ReadWriteLock(_lock_file(root, "readers.lock"), is_singleton=False)) as lock:
        try:
            lock.acquire_write(blocking=False)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()


def reserve_ids(root: Path, count: int, floor: int) -> int:
    """The first of ``count`` consecutive ids that no other process of ``root`` has taken, at least ``floor``.

    The counter is replaced atomically but not fsynced: after a power loss it may be stale, which is why
    callers pass the manifest's ``next_id`` as ``floor``.
    """
    counter = _lock_file(root, "ids.next")
    with FileLock(_lock_file(root, "ids.lock"), timeout=LOCK_TIMEOUT_S):
        try:
            current = int(counter.read_text())
        except (FileNotFoundError, ValueError):
            current = 0
        first = max(current, floor)
        staging = counter.with_name("ids.next.tmp")
        staging.write_text(str(first + count))
        os.replace(staging, counter)
    return first
