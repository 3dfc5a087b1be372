"""The errors a gallery raises on any backend, importable without FAISS or pymilvus."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)  # what the user must fix on the folder itself


class ModelMismatchError(ValueError):
    """A gallery is used with features of another model than the one that built it."""


class CorruptGalleryError(ValueError):
    """A gallery file is damaged, missing or does not match its manifest."""


class GalleryChangedError(RuntimeError):
    """Another process changed the gallery on disk in a way this save cannot merge: reopen it."""


def unknown_entries(missing: list[int]) -> KeyError:
    """The error of a read naming ids that no entry has (removed, or never added): the first ten of them."""
    more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
    return KeyError(f"no gallery entries with ids {missing[:10]}{more}: they were removed or never added")


def unwritable(folder: Path | str, code: int, hint: str = "") -> OSError:
    """The error of a folder this process may not write in (``code``: no permission, a read-only file system),
    naming both, and ``hint`` (what to do) when given; a PermissionError where the permission is missing."""
    return OSError(code, f"cannot write in {folder}: {os.strerror(code).lower()}{f' ({hint})' if hint else ''}")


@contextmanager
def writing_in(folder: Path | str, hint: str = "") -> Iterator[None]:
    """Re-raise a missing permission or a read-only file system met by the block as :func:`unwritable` ``folder``
    (with ``hint``): the OS names a lock or temporary file, the user must fix the folder."""
    try:
        yield
    except OSError as error:
        if error.errno not in NOT_WRITABLE:
            raise
        raise unwritable(folder, error.errno, hint) from error
