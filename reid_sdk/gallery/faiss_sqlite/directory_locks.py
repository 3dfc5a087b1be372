"""Processes sharing one gallery directory coordinate through filelock locks kept in ``ROOT/.lock/``.

- ``save.lock`` (FileLock): one save at a time, across processes.
- ``readers.lock`` (filelock's SQLite ReadWriteLock): a process loading a generation holds it shared; a saver
  deletes superseded generations only when it can take it exclusively without waiting, so a reader never
  sees its files vanish. Files left behind are deleted by a later save.
- ``ids.lock`` + ``ids.next``: entry ids are reserved from a shared counter, so two processes adding to the
  same gallery never hand out the same id and their saves can be merged.

The OS releases every one of these locks when its process dies, so a killed process blocks nobody. A lock file
that is no lock at all (a file where ``.lock/`` belongs, a readers.lock that is no SQLite database) is a
CorruptGalleryError naming it; an overwrite replaces it (:func:`check_locks`).
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from filelock import FileLock, ReadWriteLock, Timeout

from reid_sdk.gallery.errors import CorruptGalleryError

logger = logging.getLogger(__name__)

LOCK_DIR = ".lock"
READERS_LOCK = "readers.lock"
LOCK_TIMEOUT_S = 600.0  # a save of a very large gallery can take minutes; waiting longer means something is stuck


def _lock_file(root: Path, name: str) -> Path:
    """``root/.lock/name``, making the folder if missing; CorruptGalleryError when a file has the folder's name."""
    folder = root / LOCK_DIR
    try:
        folder.mkdir(exist_ok=True)
    except FileExistsError as error:
        raise CorruptGalleryError(f"{folder} should be the folder of the gallery's locks but is a file: remove it "
                                  "(it holds no gallery data)") from error
    return folder / name


def _not_a_lock(path: Path, error: Exception) -> CorruptGalleryError:
    return CorruptGalleryError(f"{path} is not a lock database ({error}): remove it (it holds no gallery data)")


def _readers_lock(root: Path) -> tuple[ReadWriteLock, Path]:
    """filelock's SQLite readers-writer lock of ``root``, and its file."""
    path = _lock_file(root, READERS_LOCK)
    try:
        return ReadWriteLock(path, timeout=LOCK_TIMEOUT_S, is_singleton=False), path
    except ValueError as error:  # filelock refuses a file whose SQLite header it does not know
        raise _not_a_lock(path, error) from error


def _acquire(lock: ReadWriteLock, path: Path, exclusive: bool) -> None:
    """Take ``lock`` shared (waiting for a saver's clean-up) or exclusive (Timeout at once when a reader holds it)."""
    try:
        if exclusive:
            lock.acquire_write(blocking=False)
        else:
            lock.acquire_read()
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as error:  # "file is not a database"
        raise _not_a_lock(path, error) from error


def save_lock(root: Path) -> FileLock:
    """The lock every save of ``root`` holds (a context manager)."""
    return FileLock(_lock_file(root, "save.lock"), timeout=LOCK_TIMEOUT_S)


@contextmanager
def reading(root: Path) -> Iterator[None]:
    """Hold a shared reader lease on ``root`` while loading its files.

    A gallery on a read-only file system has no saver to guard against, so it is read without a lease.
    """
    try:
        lock, path = _readers_lock(root)
    except (OSError, sqlite3.OperationalError) as error:
        logger.debug("reading %s without a reader lease (%s): nothing can save into it", root, error)
        yield
        return
    with closing(lock):
        _acquire(lock, path, exclusive=False)
        try:
            yield
        finally:
            lock.release()


@contextmanager
def unless_read(root: Path) -> Iterator[bool]:
    """Yield True while holding ``root``'s reader lock exclusively, or False at once when a reader holds it."""
    lock, path = _readers_lock(root)
    with closing(lock):
        try:
            _acquire(lock, path, exclusive=True)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()


@contextmanager
def unless_saving(root: Path) -> Iterator[bool]:
    """Yield True while holding ``root``'s save lock, or False at once when a save holds it or it cannot be taken
    (a read-only directory)."""
    try:
        held = save_lock(root).acquire(blocking=False)
    except OSError:  # filelock's Timeout (a save is under way) is one too
        yield False
        return
    with held:
        yield True


def check_locks(root: Path, replace_damaged: bool) -> None:
    """Make sure the locks of ``root`` work before a save writes anything.

    A file where the lock folder belongs, or a readers.lock that is no lock database, raises CorruptGalleryError
    naming it; with ``replace_damaged`` (an overwrite) it is deleted instead, to be made afresh: no process can hold
    a lock in it.
    """
    try:
        with unless_read(root):
            return
    except CorruptGalleryError as error:
        if not replace_damaged:
            raise
        logger.warning("replacing a damaged lock: %s", error)
    folder = root / LOCK_DIR
    if folder.is_dir():
        (folder / READERS_LOCK).unlink(missing_ok=True)
    else:
        folder.unlink()


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
