"""Locating a dataset root (with its optional extra sub-folder) and reporting layout errors clearly."""

from __future__ import annotations

from pathlib import Path


class DatasetLayoutError(ValueError):
    """The folder exists but does not hold the expected dataset layout (or holds no images)."""


def resolve_root(root: str | Path, required: tuple[str, ...], layout: str) -> Path:
    """The folder holding all ``required`` entries: ``root`` itself or one sub-folder of it.

    Real archives often unpack into an extra folder (``Market-1501-v15.09.15/``); both are accepted.
    Raises FileNotFoundError when ``root`` is missing and DatasetLayoutError when neither matches, naming what the
    most complete of them lacks.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist or is not a folder; expected {layout}")
    candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    missing = {candidate: [name for name in required if not (candidate / name).exists()] for candidate in candidates}
    closest = min(candidates, key=lambda candidate: len(missing[candidate]))  # root itself on a tie
    if not missing[closest]:
        return closest
    raise DatasetLayoutError(f"{closest} does not hold the expected layout (missing {', '.join(missing[closest])}); "
                             f"expected {layout}")


def require_records(records: list, root: Path, layout: str) -> None:
    """Raise DatasetLayoutError naming the layout when a loader found no usable images at all."""
    if not records:
        raise DatasetLayoutError(f"no usable images found under {root}; expected {layout}")
