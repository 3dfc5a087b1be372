"""Atomic, crash-safe, checksummed generations of a gallery directory.

Layout: ``manifest.json`` names the files of the current generation (``g000007.vectors.faiss``,
``g000007.metadata.sqlite``, ...) with their sizes and SHA-256. A save writes each of the next generation's
files atomically (:mod:`reid_sdk._utils.atomic_file`: a temporary, fsync, rename, folder fsync), then replaces
the manifest the same way; the manifest rename is the commit point. A crash before it leaves the previous
manifest and its files untouched; a crash after it leaves the new generation complete. Superseded files and
the temporaries of interrupted saves are deleted once no reader is loading them
(see :mod:`reid_sdk.gallery.faiss_sqlite.directory_locks`); opening a gallery deletes such temporaries too.

The manifest also records the gallery's ``lineage`` (a random id given at creation, kept by every
save) so a save can tell a newer generation of its own gallery (merge) from another gallery (refuse).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from reid_sdk._utils.atomic_file import atomic_path, atomic_write, temporary_target
from reid_sdk.gallery.errors import CorruptGalleryError, writing_in
from reid_sdk.gallery.faiss_sqlite.directory_locks import LOCK_DIR, unless_read, unless_saving
from reid_sdk.gallery.faiss_sqlite.integrity import (GENERATION_FILE, confined_file, document_checksum,
                                                     file_sha256, verify_file)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2
_TEMPORARY_OF_0_1 = re.compile(r"^(.+)\.tmp(?:-journal)?$")  # reid-sdk 0.1 staged NAME as NAME.tmp


@dataclass(frozen=True)
class StoredFile:
    """One file of a generation: its name in the gallery directory, size and SHA-256."""

    file: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a committed generation holds; ``files`` maps a role (``vectors.faiss``, ...) to its file."""

    lineage: str
    generation: int
    dim: int
    config: dict[str, Any]
    model_id: str | None
    entries: int
    vectors: int
    next_id: int
    files: dict[str, StoredFile] = field(default_factory=dict)


def _is_leftover(name: str) -> bool:
    """Whether ``name`` is the temporary (or its SQLite journal) of a generation file or manifest that an interrupted
    save left behind, named as now or as reid-sdk 0.1 named them."""
    old = _TEMPORARY_OF_0_1.match(name)
    target = temporary_target(name) or (old.group(1) if old else None)
    return target is not None and (target == MANIFEST or GENERATION_FILE.match(target) is not None)


def _parse(document: Any, root: Path, path: Path) -> Manifest:
    """A Manifest from the JSON document; CorruptGalleryError naming ``path`` for anything malformed."""
    if not isinstance(document, dict):
        raise CorruptGalleryError(f"{path} is not a gallery manifest (a JSON object)")
    if document.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: unsupported gallery format {document.get('format')!r} "
                         f"(this reid-sdk reads format {MANIFEST_FORMAT}; rebuild older galleries)")
    if document.get("checksum") != document_checksum(document):
        raise CorruptGalleryError(f"{path} does not match its own checksum: it is damaged or was edited")
    try:
        files = {role: StoredFile(confined_file(root, entry["file"], path).name, int(entry["bytes"]),
                                  str(entry["sha256"]))
                 for role, entry in document["files"].items()}
        manifest = Manifest(lineage=str(document["lineage"]), generation=int(document["generation"]),
                            dim=int(document["dim"]), config=dict(document["config"]),
                            model_id=document["model_id"], entries=int(document["entries"]),
                            vectors=int(document["vectors"]), next_id=int(document["next_id"]), files=files)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CorruptGalleryError(f"{path} is not a valid gallery manifest: {error!r}") from error
    if manifest.model_id is not None and not isinstance(manifest.model_id, str):
        raise CorruptGalleryError(f"{path}: model_id must be a string or null")
    return manifest


def find_manifest(root: Path) -> Manifest | None:
    """The committed manifest of ``root``, or None when ``root`` holds no gallery."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptGalleryError(f"{path} is not valid JSON: {error}") from error
    return _parse(document, Path(root), path)


def read_manifest(root: Path) -> Manifest:
    """The committed manifest of a gallery directory; clear errors for a bad path or a damaged gallery."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no gallery at {root}: the directory does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a gallery directory (a gallery is a directory with {MANIFEST})")
    manifest = find_manifest(root)
    if manifest is None:
        raise FileNotFoundError(f"no gallery at {root}: {MANIFEST} is missing")
    return manifest


def verified_files(root: Path, manifest: Manifest) -> dict[str, Path]:
    """Paths of the generation's files by role, each checked against its size and SHA-256."""
    paths = {}
    for role, stored in manifest.files.items():
        path = Path(root) / stored.file
        verify_file(path, stored.sha256, stored.bytes)
        paths[role] = path
    return paths


def check_target(root: Path) -> None:
    """Refuse to save into a file, or into a non-empty directory that holds no gallery files."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"cannot save a gallery to {root}: it is a file, not a directory")
    if not root.is_dir() or (root / MANIFEST).exists():
        return
    foreign = [p.name for p in root.iterdir()
               if p.name != LOCK_DIR and not GENERATION_FILE.match(p.name) and not _is_leftover(p.name)]
    if foreign:
        examples = ", ".join(sorted(foreign)[:3]) + (", ..." if len(foreign) > 3 else "")
        raise FileExistsError(f"cannot save a gallery into {root}: it holds other files ({examples}); "
                              "choose an empty or new directory")


def write_generation(root: Path, writers: Mapping[str, Callable[[Path], None]], manifest: Manifest) -> Manifest:
    """Commit ``manifest.generation`` of ``root`` (``writers[role](path)`` writes each file); returns the manifest.

    A full disk is an OSError naming the file, a folder this process may not write in one naming the folder; the
    files written before the failure are deleted (nothing names them, and a full disk needs their space).
    """
    root = Path(root)
    files: dict[str, StoredFile] = {}
    with writing_in(root):
        root.mkdir(parents=True, exist_ok=True)
        try:
            for role, write in writers.items():
                final = root / f"g{manifest.generation:06d}.{role}"
                with atomic_path(final) as staging:
                    write(staging)
                    files[role] = StoredFile(final.name, staging.stat().st_size, file_sha256(staging))
        except BaseException:
            for stored in files.values():
                (root / stored.file).unlink(missing_ok=True)
            raise
        committed = replace(manifest, files=files)
        document = {**asdict(committed), "format": MANIFEST_FORMAT}
        document["checksum"] = document_checksum(document)
        with atomic_write(root / MANIFEST) as handle:
            handle.write(json.dumps(document, indent=2, sort_keys=True).encode())
    return committed


def remove_stale(root: Path, manifest: Manifest) -> int:
    """Delete files of other generations and leftovers of interrupted saves, unless a reader is loading.

    Returns how many files were deleted (0 when a reader held the lease: a later save retries).
    """
    keep = {stored.file for stored in manifest.files.values()}
    with unless_read(root) as idle:
        if not idle:
            return 0
        stale = [p for p in Path(root).iterdir()
                 if p.name not in keep and (GENERATION_FILE.match(p.name) or _is_leftover(p.name))]
        for path in stale:
            path.unlink(missing_ok=True)
    return len(stale)


def remove_leftovers(root: Path) -> int:
    """Delete the temporaries of interrupted saves, unless a save is under way (they are its own) or the directory
    is read-only; returns how many were deleted."""
    with unless_saving(root) as idle:
        if not idle:
            return 0
        leftovers = [p for p in Path(root).iterdir() if _is_leftover(p.name)]
        for path in leftovers:
            path.unlink(missing_ok=True)
    return len(leftovers)
