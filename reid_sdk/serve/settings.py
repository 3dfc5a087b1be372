"""ServeSettings: what one reid-serve process serves and how (gallery, keys, audit, media, retention, limits)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reid_sdk.serve.uploads import UploadLimits


@dataclass(frozen=True)
class ServeSettings:
    """One service process.

    ``gallery``: a directory (FAISS + SQLite), ``milvus-lite:FILE.db`` or ``http://host:19530``. ``keys_file``: the
    API keys (``reid-serve keys add``). ``audit_file``: this process's audit trail (JSON lines, rotated at
    ``audit_max_bytes``, ``audit_backups`` kept). ``media_roots``: folders whose images and videos thumbnails may be
    cut from; ``crop_dir``: where crops added through the API are kept (a media root too). ``read_only``: refuse
    writes and reload the gallery every ``refresh_s`` seconds when another process saved it (the several-readers,
    one-writer deployment). ``max_age_s``: retention, entries older than this (by timestamp, Unix seconds) are
    removed at start-up and every ``retention_every_s`` by the writer. ``k_max``: the most results one search returns.
    ``camera_standardise``: as :class:`~reid_sdk.search.ReIDIndex` takes it (None: on where entries have cameras).
    """

    gallery: str
    keys_file: Path
    audit_file: Path
    media_roots: tuple[Path, ...] = ()
    crop_dir: Path | None = None
    read_only: bool = False
    refresh_s: float = 30.0
    max_age_s: float | None = None
    retention_every_s: float = 3600.0
    k_max: int = 100
    limits: UploadLimits = field(default_factory=UploadLimits)
    audit_max_bytes: int = 10 << 20
    audit_backups: int = 10
    camera_standardise: bool | None = None

    def __post_init__(self) -> None:
        for name in ("refresh_s", "retention_every_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.max_age_s is not None and not self.max_age_s > 0:
            raise ValueError(f"the maximum age must be > 0 seconds, got {self.max_age_s}")
        if self.k_max < 1:
            raise ValueError(f"k_max must be >= 1, got {self.k_max}")
        if self.read_only and self.crop_dir is not None:
            raise ValueError("a read-only worker adds no crops: give crop_dir to the writer only")

    @property
    def thumbnail_roots(self) -> tuple[Path, ...]:
        """The folders thumbnails may be read from."""
        return self.media_roots + ((self.crop_dir,) if self.crop_dir is not None else ())
