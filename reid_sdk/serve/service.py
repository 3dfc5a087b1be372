"""SearchService: the gallery and the model behind reid-serve, without HTTP.

It searches by crop, by entry and by track with filters, adds crops and videos with tracks, erases entries and
enforces retention. Every write takes one lock and is saved before it returns, so an acknowledged entry is durable;
the save is the gallery's own (an inter-process lock, merging what another process such as ``reid-index ingest``
committed meanwhile), so the service and a command-line ingest never corrupt each other. A read-only service
reloads a FAISS + SQLite gallery when another process saved a newer generation.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from reid_sdk._utils.atomic_file import atomic_path
from reid_sdk.gallery import Gallery, Match
from reid_sdk.gallery.location import parse_location
from reid_sdk.search.index import ReIDIndex
from reid_sdk.serve.catalog import TrackCatalog
from reid_sdk.serve.settings import ServeSettings
from reid_sdk.serve.thumbnails import confined, entry_image, thumbnail_jpeg

logger = logging.getLogger(__name__)

_ROWS_PER_READ = 10_000
_EARLIEST_UNIX_TIME = 946_684_800.0  # 2000-01-01: older timestamps are times into a video, not dates


class ReadOnlyError(RuntimeError):
    """A write sent to a read-only worker."""


class NoModel:
    """The extractor of a service started without a model: searches by entry and by track work, crops do not."""

    model_id = None

    def __init__(self, feature_dim: int) -> None:
        self.feature_dim = feature_dim

    def extract(self, crops: Any) -> np.ndarray:
        raise ValueError("this service runs no model: start it with --model to search or add by crop")


@dataclass(frozen=True)
class SearchRequest:
    """How to search: ``k`` results; only ``cameras`` (their text, as the gallery lists them; None: all); timestamps
    in [``since``, ``until``]; without the query's own camera (``exclude_own_camera``); k-reciprocal ``rerank``."""

    k: int = 10
    cameras: tuple[str, ...] | None = None
    since: float | None = None
    until: float | None = None
    exclude_own_camera: bool = True
    rerank: bool = False


class SearchService:
    """The gallery (and model) one reid-serve process serves; thread-safe.

    Example:
        ```python
        service = SearchService(ServeSettings("gallery/", Path("keys.json"), Path("audit.jsonl")), extractor)
        matches = service.search_track("c1:7", SearchRequest(k=5))
        service.erase_track("c1:7")
        ```
    """

    def __init__(self, settings: ServeSettings, extractor: Any = None) -> None:
        self.settings = settings
        self._location = parse_location(settings.gallery)
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._extractor = extractor
        self._retired: ReIDIndex | None = None  # the index a reload replaced: closed at the next reload
        self.index, self.catalog = self._load()
        self._stamp = self._generation_stamp()
        if settings.max_age_s is not None and not settings.read_only:
            self._check_absolute_times()

    def _load(self) -> tuple[ReIDIndex, TrackCatalog]:
        gallery = Gallery.open(self.settings.gallery)
        try:
            index = ReIDIndex(self._extractor or NoModel(gallery.dim), gallery, self.settings.camera_standardise)
            return index, TrackCatalog.of(gallery)
        except BaseException:
            gallery.close()
            raise

    @property
    def gallery(self) -> Gallery:
        return self.index.gallery

    @property
    def has_model(self) -> bool:
        return self._extractor is not None

    def camera_label(self, text: str) -> Any:
        """The stored camera label written ``text`` (camera 2 for "2" when the gallery has it), else ``text``: a new
        camera."""
        try:
            return self.catalog.camera(text)
        except ValueError:
            return text

    # -- reading ------------------------------------------------------------------------------------------------
    def _filters(self, request: SearchRequest, query_camera: Any) -> dict[str, Any]:
        if not 1 <= request.k <= self.settings.k_max:
            raise ValueError(f"k must be between 1 and {self.settings.k_max}, got {request.k}")
        if request.since is not None and request.until is not None and request.since > request.until:
            raise ValueError(f"since ({request.since}) is after until ({request.until})")
        cameras = None if request.cameras is None else [self.catalog.camera(text) for text in request.cameras]
        if cameras == []:
            raise ValueError("cameras is empty: leave it out to search every camera")
        filters: dict[str, Any] = {"cameras": cameras, "since": request.since, "until": request.until,
                                   "query_camera": query_camera}
        if request.exclude_own_camera and query_camera is not None:
            filters["exclude_camera"] = query_camera
        return filters

    def _search(self, feature: np.ndarray, request: SearchRequest, query_camera: Any,
                leave_out: Sequence[int] = ()) -> list[Match]:
        filters = self._filters(request, query_camera)
        index = self.index
        found = index.search_features(feature[None], request.k + len(leave_out), request.rerank, **filters)[0]
        excluded = set(leave_out)
        return [match for match in found if match.entry_id not in excluded][: request.k]

    def search_crop(self, crop: np.ndarray, request: SearchRequest, camera: str | None = None) -> list[Match]:
        """Matches of an uploaded crop; ``camera`` (its text), when given, is the camera that saw it."""
        query_camera = None if camera is None else self.catalog.camera(camera)
        return self._search(self.index.extractor.extract([crop])[0], request, query_camera)

    def search_entry(self, entry_id: int, request: SearchRequest) -> list[Match]:
        """Matches of a stored entry (itself left out); KeyError for an unknown entry."""
        track = self.catalog.track_of(entry_id)
        return self._search(self.gallery.vectors([entry_id])[0], request, track.camera, [entry_id])

    def search_track(self, name: str, request: SearchRequest) -> list[Match]:
        """Matches of a track ``CAMERA:TRACK_ID`` (the mean of its entries' features; its own entries left out)."""
        track = self.catalog.track(name)
        feature = self.gallery.vectors(track.entry_ids).mean(axis=0)
        return self._search(feature / np.linalg.norm(feature), request, track.camera, track.entry_ids)

    def thumbnail(self, entry_id: int) -> bytes:
        """A JPEG thumbnail of an entry; KeyError when the entry or its picture (under the media roots) is missing."""
        row = self.gallery.rows([entry_id]).get(int(entry_id))
        image = None if row is None else entry_image(row.metadata, self.settings.thumbnail_roots)
        if image is None:
            raise KeyError(f"entry {entry_id} has no picture the service may show")
        return thumbnail_jpeg(image)

    # -- writing ------------------------------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.settings.read_only:
            raise ReadOnlyError("this worker is read-only: send writes to the writer process")

    def _keep_crop(self, crop: np.ndarray) -> str | None:
        """Write an added crop into ``crop_dir`` (named by its content's SHA-256) and return its path."""
        if self.settings.crop_dir is None:
            return None
        ok, encoded = cv2.imencode(".png", crop)
        if not ok:
            raise ValueError("the crop could not be encoded")
        data = encoded.tobytes()
        path = self.settings.crop_dir / f"{hashlib.sha256(data).hexdigest()}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            with atomic_path(path) as temporary:
                temporary.write_bytes(data)
        return str(path.resolve())

    def add_crops(self, crops: Sequence[np.ndarray], camera: Any, track_id: Any = None, timestamp: float | None = None,
                  identity: Any = None) -> list[int]:
        """Add crops (one entry each, with the labels given), saved before it returns; the new entry ids."""
        self._writable()
        with self._write_lock:
            paths = [self._keep_crop(crop) for crop in crops]
            metadata = [{"source": "reid-serve", **({"path": path} if path else {})} for path in paths]
            ids = self.index.add(list(crops), identity=identity, camera=camera, timestamp=timestamp,
                                 track_id=track_id, metadata=metadata)
            self.gallery.save()
            self.catalog.add(self.gallery.rows(ids).items())
        return [int(i) for i in ids]

    def add_video(self, video: str, tracks: str, camera: Any, start_time: float = 0.0) -> dict[int, int]:
        """Add one entry per track of a video under the media roots (MOT tracks file there too); {track: entry}."""
        self._writable()
        paths = [confined(path, self.settings.media_roots) for path in (video, tracks)]
        if None in paths:
            raise ValueError("video and tracks must be files under the service's media roots")
        with self._write_lock:
            added = self.index.add_tracks(paths[0], paths[1], camera, start_time=start_time)
            self.gallery.save()
            self.catalog.add(self.gallery.rows(list(added.values())).items())
        return added

    def _remove(self, ids: Sequence[int], remove: Callable[[], int] | None = None) -> int:
        """Remove ``ids`` (by ``remove()`` when given, the gallery's own selection of the same entries), save,
        forget them and delete the crops the service kept for them."""
        rows = self.gallery.rows(ids)
        removed = remove() if remove is not None else self.gallery.remove(ids)
        self.gallery.save()
        self.catalog.remove(ids)
        for row in rows.values():
            kept = confined(row.metadata.get("path"), (self.settings.crop_dir,)) if self.settings.crop_dir else None
            if kept is not None:
                kept.unlink(missing_ok=True)
        return removed

    def erase_entries(self, entry_ids: Sequence[int]) -> int:
        """Erase entries by id (unknown ids are ignored); how many were removed."""
        self._writable()
        with self._write_lock:
            return self._remove([int(i) for i in entry_ids])

    def erase_track(self, name: str) -> list[int]:
        """Erase every entry of a track ``CAMERA:TRACK_ID``; the ids removed."""
        self._writable()
        with self._write_lock:
            ids = list(self.catalog.track(name).entry_ids)
            self._remove(ids)
        return ids

    def _timestamps(self) -> dict[int, float]:
        """{entry id: timestamp} of every timed entry."""
        ids, times = self.gallery.ids(), {}
        for start in range(0, len(ids), _ROWS_PER_READ):
            times.update({i: row.timestamp for i, row in self.gallery.rows(ids[start : start + _ROWS_PER_READ]).items()
                          if row.timestamp is not None})
        return times

    def _check_absolute_times(self) -> None:
        early = [t for t in self._timestamps().values() if t < _EARLIEST_UNIX_TIME]
        if early:
            raise ValueError(f"retention needs Unix timestamps, but {len(early)} entries of {self.settings.gallery} "
                             f"are timed before 2000 (e.g. {min(early):g} s, a time into a video): give those "
                             "galleries entries with dates (reid-index ingest --start-time) or run without a maximum "
                             "age")

    def apply_retention(self, now: float | None = None) -> list[int]:
        """Remove the entries older than the maximum age (``Gallery.remove_before``); the ids removed."""
        self._writable()
        if self.settings.max_age_s is None:
            return []
        cutoff = (time.time() if now is None else now) - self.settings.max_age_s
        with self._write_lock:
            old = [i for i, t in self._timestamps().items() if t < cutoff]
            if old:
                self._remove(old, lambda: self.gallery.remove_before(cutoff))
        return old

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def _generation_stamp(self) -> int | None:
        """The FAISS gallery's manifest modification time (a save replaces it); None for Milvus (always live)."""
        if self._location.backend != "faiss":
            return None
        try:
            return (self._location.path / "manifest.json").stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def refresh(self) -> bool:
        """Reload the gallery when another process saved a newer generation (read-only workers); whether it did."""
        stamp = self._generation_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        index, catalog = self._load()
        with self._state_lock:
            if self._retired is not None:
                self._retired.gallery.close()
            self._retired, self.index, self.catalog, self._stamp = self.index, index, catalog, stamp
        logger.info("reloaded %s: %d entries", self.settings.gallery, len(index))
        return True

    def close(self) -> None:
        """Wait for the write under way (every write is saved when it returns), then release the gallery."""
        with self._write_lock, self._state_lock:
            if self._retired is not None:
                self._retired.gallery.close()
            self.gallery.close()
