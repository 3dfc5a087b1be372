"""Atomic, crash-safe saving of a gallery directory.

Layout: ``manifest.json`` names the files of the current generation
(``g000007.vectors.faiss``, ``g000007.metadata.sqlite``, ...). A save writes the
next generation's files under temporary names, fsyncs them, renames them into
place, then replaces the manifest the same way; the manifest rename is the
commit point. A crash before it leaves the previous manifest and its files
untouched; a crash after it leaves the new generation complete. Files of older
generations and leftovers of interrupted saves are deleted after the commit.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_GENERATION_FILE = re.compile(r"^g\d{6,}\.")


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_manifest(root: Path) -> dict[str, Any]:
    """The committed manifest of a gallery directory; clear errors for a bad path or a foreign format."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no gallery at {root}: the directory does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a gallery directory (a gallery is a directory with {MANIFEST})")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"no gallery at {root}: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{manifest_path} is not valid JSON: {error}") from error
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"{manifest_path}: unsupported gallery format {manifest.get('format')!r} "
                         f"(this reid-sdk reads format {FORMAT_VERSION})")
    for name in manifest["files"].values():
        if not (root / name).is_file():
            raise FileNotFoundError(f"gallery {root} is incomplete: {name} named by {MANIFEST} is missing")
    return manifest


def write_generation(root: Path, writers: Mapping[str, Callable[[Path], None]], manifest: Mapping[str, Any]) -> int:
    """Write the next generation of ``root``: each ``writers[name](path)`` writes one file. Returns the generation."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"cannot save a gallery to {root}: it is a file, not a directory")
    root.mkdir(parents=True, exist_ok=True)
    previous = json.loads((root / MANIFEST).read_text()) if (root / MANIFEST).is_file() else {}
    generation = int(previous.get("generation", 0)) + 1
    files: dict[str, str] = {}
    for name, write in writers.items():
        final = root / f"g{generation:06d}.{name}"
        staging = root / f"{final.name}.tmp"
        staging.unlink(missing_ok=True)
        write(staging)
        _fsync_file(staging)
        os.replace(staging, final)
        files[name] = final.name
    _fsync_dir(root)
    committed = {**manifest, "format": FORMAT_VERSION, "generation": generation, "files": files}
    staging = root / f"{MANIFEST}.tmp"
    staging.write_text(json.dumps(committed, indent=2, sort_keys=True))
    _fsync_file(staging)
    os.replace(staging, root / MANIFEST)
    _fsync_dir(root)
    _remove_stale(root, keep=set(files.values()))
    return generation


def _remove_stale(root: Path, keep: set[str]) -> None:
    """Delete files of older generations and of interrupted saves."""
    for path in root.iterdir():
        if path.name not in keep and (_GENERATION_FILE.match(path.name) or path.name == f"{MANIFEST}.tmp"):
            path.unlink(missing_ok=True)
