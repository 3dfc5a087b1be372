"""Integrity of a saved gallery: SHA-256 of every file, a checksum of the manifest itself, confined file names.

Bit rot, a truncated copy or a hand-edited manifest must surface as one clear error naming the file,
never as a FAISS abort, a raw SQLite error or silently absurd scores.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from reid_sdk.gallery.errors import CorruptGalleryError

_CHUNK = 1 << 20
# The only names a manifest may list: plain file names of one generation, never a path.
GENERATION_FILE = re.compile(r"^g(\d{6,})\.(vectors\.faiss|rescore\.faiss|metadata\.sqlite|camera_statistics\.json)$")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, sha256: str, size: int) -> None:
    """CorruptGalleryError unless ``path`` exists with exactly this size and SHA-256."""
    if not path.is_file():
        raise CorruptGalleryError(f"gallery file {path} named by the manifest is missing")
    actual = path.stat().st_size
    if actual != size:
        raise CorruptGalleryError(f"gallery file {path} has {actual} bytes, the manifest says {size}: it is damaged")
    if file_sha256(path) != sha256:
        raise CorruptGalleryError(f"gallery file {path} does not match its SHA-256 in the manifest: it is damaged")


def confined_file(root: Path, name: Any, manifest: Path) -> Path:
    """``root / name`` for a generation file name; CorruptGalleryError for anything else (paths, ``..``)."""
    if not isinstance(name, str) or not GENERATION_FILE.match(name):
        raise CorruptGalleryError(f"{manifest} names {name!r}, which is not a gallery file of this directory")
    return root / name


def document_checksum(document: dict[str, Any]) -> str:
    """SHA-256 of a JSON document's canonical form, without its own ``checksum`` key."""
    body = {key: value for key, value in document.items() if key != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
