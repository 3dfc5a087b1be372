"""The Milvus backend (pymilvus): one collection per gallery, on Milvus Lite, a standalone server or a cluster.

Fields: ``id`` (INT64, Milvus's auto id: unique, stable, never reused), ``vector`` (FLOAT_VECTOR,
inner product on normalised vectors), identity / camera / track id as one INT64 and one VARCHAR field
each (a label keeps its type, as in SQLite: camera 2 is not camera "2"), ``timestamp`` (DOUBLE) and
``metadata`` (JSON). The gallery's dim, index config and model identity are a collection property.
On Milvus Lite (one process at a time, so one writer) the property also records the entry count at each
save and close; opening checks it, so a collection changed behind reid-sdk's back is refused
(CorruptGalleryError), and between the first write and the next save or close it records none. A server
has many writers and no atomic counter: there the count is not recorded.
Filters become Milvus boolean expressions; every write is durable once Milvus acknowledges it, and
``save`` flushes. Index types: flat = FLAT, ivf = IVF_FLAT, hnsw = HNSW, ivfpq = IVF_PQ (a server only;
Milvus Lite has no IVF_PQ).

A gallery created with ``overwrite`` over an existing one is built aside, in a collection of its own, and takes the
old one's place at its first ``save`` (the old one renamed aside, the new one renamed in, the old one dropped):
closed before that (Ctrl-C, a full disk, a failed model), it is dropped and the old gallery stays as it was, as a
FAISS gallery's does. A save stopped between the renames puts the old one back; a process killed there leaves both
aside, and the next open completes the replacement.

Camera standardisation: the handle keeps the per-camera statistics of the collection's vectors as it writes, and
records them in the property at each save and close. Opening uses them where the entry count is recorded and
matches (Milvus Lite); otherwise (a server, whose other writers it cannot follow, or a count left unknown, or a
gallery written before they were kept) it counts them from every stored vector: O(N * D) read once. Standardised
searches are exact and local: every entry's standardised vector is held in memory (N * D float32) and searched by
one matrix product per batch of queries, the filter's ids asked of Milvus; the copy is rebuilt (all vectors read
again) at the first standardised search after the statistics changed. Fine for Milvus Lite sizes; a large server
gallery should search with camera standardisation off.

pymilvus and Milvus Lite log each failed call with its traceback: opening a gallery sets their loggers to CRITICAL
(the errors reach the caller as exceptions, those of Milvus Lite's files translated: a full disk, a folder it may
not write in, a damaged file). Milvus Lite writes in its folder (a lock) even to search: a gallery on a read-only
mount cannot be opened; FAISS galleries open read-only.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk._utils.atomic_file import DiskFullError
from reid_sdk._utils.optional import require
from reid_sdk.gallery.camera_statistics import CameraStatistics
from reid_sdk.gallery.config import GalleryConfig
from reid_sdk.gallery.entries import EntryRow
from reid_sdk.gallery.errors import NOT_WRITABLE, CorruptGalleryError, unknown_entries, unwritable, writing_in
from reid_sdk.gallery.filters import EntryFilter
from reid_sdk.gallery.location import GalleryLocation, parse_location
from reid_sdk.gallery.widening import search_widening

logger = logging.getLogger(__name__)

PROPERTY = "reid_sdk.gallery"
PROPERTY_FORMAT = 1
LABELS = ("identity", "camera", "track_id")
MAX_LABEL_CHARS = 1024
MAX_TOP_K = 16384           # Milvus's limit on k (and on a query's result window)
DEFAULT_NLIST = 1024        # IVF cells when the config leaves nlist to the data (Milvus builds per segment)
_REQUEST_BYTES = 32 << 20   # stay well below gRPC's 64 MiB message limit
_INDEX_TYPES = {"flat": "FLAT", "ivf": "IVF_FLAT", "hnsw": "HNSW", "ivfpq": "IVF_PQ"}
_OS_ERROR = re.compile(r"\[errno (\d+)\][^']*(?:'([^']+)')?", re.IGNORECASE)  # an OSError Milvus Lite passes on
_BUILDING = "_reid_sdk_building"  # suffix of the collection an overwriting gallery is built in
_REPLACED = "_reid_sdk_replaced"  # suffix of the old collection while the new one is renamed in
_LOGGERS = ("pymilvus", "milvus_lite")
READ_ONLY_HINT = ("Milvus Lite writes a lock in its folder even to search: copy the gallery to a folder it may write "
                  "in, or serve a FAISS gallery, which opens read-only")


@functools.cache
def _quiet_logs() -> None:
    """Set pymilvus's and Milvus Lite's loggers to CRITICAL, once: they log each failed call with its traceback, and
    the caller gets the error itself (pymilvus sets its loggers up when imported, so after the import)."""
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


# -- Milvus Lite's files -------------------------------------------------------------------------------------------
def _lite_folder(location: GalleryLocation) -> Path:
    """The folder Milvus Lite writes in: its .db folder, or the one to hold it."""
    return location.path if location.path.is_dir() else location.path.parent


@contextlib.contextmanager
def _lite_errors(location: GalleryLocation, reading: bool = False) -> Iterator[None]:
    """Re-raise what a Milvus Lite gallery's pymilvus errors mean: a full disk (naming the file) or a folder it may
    not write in as OSError, and while ``reading`` its files anything else as CorruptGalleryError naming what to
    restore. A server's errors pass unchanged."""
    pymilvus = require("pymilvus", "milvus")
    try:
        yield
    except pymilvus.MilvusException as error:
        if location.path is None:
            raise
        message = getattr(error, "message", str(error))
        found = _OS_ERROR.search(message)
        code = int(found[1]) if found else None
        if code in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(Path(found[2] or location.path)) from error
        if code in NOT_WRITABLE:
            raise unwritable(_lite_folder(location), code) from error
        if not reading:
            raise
        raise CorruptGalleryError(f"the Milvus Lite gallery {location.text} cannot be read ({message}): restore "
                                  f"{location.path} from a copy, or build the gallery again with overwrite") from error


# -- filter expressions --------------------------------------------------------------------------------------------
def _unlabelled(name: str) -> str:
    return f"({name}_int is null and {name}_str is null)"


def _label_in(name: str, values: Sequence[Any]) -> str:
    """Milvus expression: the label is one of ``values`` (ints match the INT64 field, strings the VARCHAR,
    None an entry without the label)."""
    ints = [str(int(v)) for v in values if isinstance(v, int)]
    texts = [json.dumps(v, ensure_ascii=False) for v in values if isinstance(v, str)]
    unlabelled = f" or {_unlabelled(name)}" if None in values else ""
    return f"({name}_int in [{', '.join(ints)}] or {name}_str in [{', '.join(texts)}]{unlabelled})"


def _label_not_in(name: str, values: Sequence[Any]) -> str:
    """Milvus expression: the label is none of ``values``; unlabelled entries pass unless None is one of them."""
    condition = f"not {_label_in(name, values)}"
    return condition if None in values else f"({_unlabelled(name)} or {condition})"


def expression(entry_filter: EntryFilter) -> str:
    """The Milvus boolean expression selecting the entries of ``entry_filter`` ("" selects all)."""
    clauses = []
    if entry_filter.cameras is not None:
        clauses.append(_label_in("camera", entry_filter.cameras))
    if entry_filter.exclude_cameras:
        clauses.append(_label_not_in("camera", entry_filter.exclude_cameras))
    if entry_filter.identities is not None:
        clauses.append(_label_in("identity", entry_filter.identities))
    for bound, operator in ((entry_filter.since, ">="), (entry_filter.until, "<="), (entry_filter.before, "<")):
        if bound is not None:
            clauses.append(f"timestamp {operator} {float(bound)!r}")
    return " and ".join(clauses)


def _id_list(ids: Sequence[int]) -> str:
    return f"id in [{', '.join(str(int(i)) for i in ids)}]"


# -- rows ----------------------------------------------------------------------------------------------------------
def _label_fields(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str) and len(value) > MAX_LABEL_CHARS:
        raise ValueError(f"{name} labels are limited to {MAX_LABEL_CHARS} characters in a Milvus gallery, "
                         f"got {len(value)}")
    return {f"{name}_int": value if isinstance(value, int) else None,
            f"{name}_str": value if isinstance(value, str) else None}


def _entity(vector: np.ndarray, row: EntryRow) -> dict[str, Any]:
    entity: dict[str, Any] = {"vector": vector, "timestamp": row.timestamp, "metadata": row.metadata}
    for name in LABELS:
        entity.update(_label_fields(name, getattr(row, name)))
    return entity


def _row(entity: dict[str, Any]) -> EntryRow:
    labels = {name: entity[f"{name}_int"] if entity[f"{name}_int"] is not None else entity[f"{name}_str"]
              for name in LABELS}
    return EntryRow(labels["identity"], labels["camera"], entity["timestamp"], labels["track_id"],
                    dict(entity["metadata"] or {}))


_ROW_FIELDS = [f"{name}_{kind}" for name in LABELS for kind in ("int", "str")] + ["timestamp", "metadata"]


class MilvusBackend:
    """A gallery stored in one Milvus collection; see the module docstring for the schema."""

    def __init__(self, client: Any, location: GalleryLocation, dim: int, config: GalleryConfig,
                 model_id: str | None) -> None:
        self.dim = dim
        self.model_id = model_id
        self._client = client
        self._where = location
        self._name = location.collection
        self._replaces: str | None = None  # the collection an overwriting gallery replaces at its first save
        self._config = config
        self._lite = location.path is not None  # Milvus Lite: the entry count is recorded and checked
        self._recorded: int | None = None       # the count the property holds; None: unknown (written since)
        self._wrote = False                     # this handle wrote since it last recorded the count
        self._count_lock = threading.RLock()
        self._statistics = CameraStatistics(dim, config.camera_shrinkage)
        self._standardised: tuple[int, np.ndarray, np.ndarray] | None = None  # (statistics version, ids, vectors)
        self._standardised_lock = threading.Lock()

    # -- connection ---------------------------------------------------------------------------------------------
    @staticmethod
    def _connect(location: GalleryLocation, reading: bool = False) -> Any:
        """A client of ``location`` (its loggers quieted); ``reading``: to open an existing gallery."""
        pymilvus = require("pymilvus", "milvus")
        _quiet_logs()
        if location.path is not None:
            with writing_in(location.path.parent.parent):  # a folder it may not create is named, like any other
                location.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return pymilvus.MilvusClient(uri=location.client_uri, token=location.token)
        except pymilvus.MilvusException as error:
            if location.path is not None:  # Milvus Lite must write in its folder, even to search
                with writing_in(_lite_folder(location), READ_ONLY_HINT if reading else ""):
                    tempfile.TemporaryFile(dir=_lite_folder(location)).close()
            hint = (" (Milvus Lite serves a file to one process at a time: several processes need a Milvus server)"
                    if location.path is not None else "")
            raise ConnectionError(f"cannot reach the Milvus gallery at {location.text}: {error}{hint}") from error

    @classmethod
    def create(cls, location: GalleryLocation, dim: int, config: GalleryConfig, model_id: str | None = None,
               overwrite: bool = False) -> MilvusBackend:
        """A new, empty collection; FileExistsError if it exists, unless ``overwrite``: then the new gallery is built
        aside and replaces the old one at its first save (see the module docstring)."""
        if config.index == "ivfpq" and location.path is not None:
            raise ValueError("Milvus Lite has no IVF_PQ index: use index 'flat', 'ivf' or 'hnsw', or a Milvus server")
        client = cls._connect(location)
        try:
            backend = cls(client, location, dim, config, model_id)
            with _lite_errors(location, reading=True):
                if overwrite:
                    backend._name = f"{location.collection}{_BUILDING}"
                    backend._replaces = location.collection
                    client.drop_collection(backend._name)  # a killed build's (Milvus drops an absent one quietly)
                elif client.has_collection(location.collection):
                    raise FileExistsError(f"a gallery already exists at {location.text}: open it with "
                                          "Gallery.open, or pass overwrite=True to replace it")
            if backend._lite:
                backend._recorded = 0
            with _lite_errors(location):
                backend._create_collection()
        except BaseException:
            client.close()
            raise
        return backend

    @classmethod
    def open(cls, location: GalleryLocation, **search_params: Any) -> MilvusBackend:
        """The gallery in an existing collection, with ``search_params`` overriding its saved query settings."""
        if location.path is not None and not location.path.exists():
            raise FileNotFoundError(f"no gallery at {location.text}: {location.path} does not exist")
        client = cls._connect(location, reading=True)
        try:
            with _lite_errors(location, reading=True):
                if not (client.has_collection(location.collection) or cls._finish_replacing(client, location)):
                    raise FileNotFoundError(f"no gallery at {location.text}: Milvus has no collection "
                                            f"{location.collection!r}")
                described = client.describe_collection(location.collection).get("properties", {})
                try:
                    info = json.loads(described[PROPERTY])
                    config = GalleryConfig.from_dict(info["config"]).with_search_params(**search_params)
                    dim, model_id = int(info["dim"]), info["model_id"]
                except (KeyError, TypeError, json.JSONDecodeError) as error:
                    raise ValueError(f"collection {location.collection!r} at {location.text} is not a reid-sdk "
                                     f"gallery (its {PROPERTY} property is missing or malformed: {error!r})") from error
                if info.get("format") != PROPERTY_FORMAT:
                    raise ValueError(f"{location.text}: unsupported gallery format {info.get('format')!r} "
                                     f"(this reid-sdk reads format {PROPERTY_FORMAT})")
                client.load_collection(location.collection)
                backend = cls(client, location, dim, config, model_id)
                if backend._lite:
                    backend._check_count(info.get("entries"))
                backend._statistics = backend._saved_statistics(info.get("camera_statistics"))
        except BaseException:
            client.close()
            raise
        return backend

    def _check_count(self, recorded: int | None) -> None:
        """Count the entries and refuse a collection holding another number than reid-sdk recorded."""
        entries = len(self)
        if recorded is None and entries:
            logger.warning("%s was not saved or closed after its last writes: its %d entries cannot be checked "
                           "against a recorded count", self._where.text, entries)
        elif recorded is not None and recorded != entries:
            raise CorruptGalleryError(f"the Milvus gallery {self._where.text} holds {entries} entries but "
                                      f"reid-sdk recorded {recorded}: entries were added or deleted outside reid-sdk, "
                                      "or its data was lost; restore the file from a copy or rebuild the gallery")
        self._recorded = recorded

    def _saved_statistics(self, saved: dict[str, Any] | None) -> CameraStatistics:
        """The recorded camera statistics where the recorded entry count vouches for them, else counted afresh."""
        if saved is not None and self._recorded is not None:
            try:
                return CameraStatistics.from_dict(saved, self._config.camera_shrinkage)
            except ValueError as error:
                raise CorruptGalleryError(f"the Milvus gallery {self._where.text} records damaged camera statistics: "
                                          f"{error}") from error
        ids = self.ids()
        rows = self.rows(ids)
        logger.info("counting the camera statistics of %s from its %d stored vectors", self._where.text, len(ids))
        statistics = CameraStatistics(self.dim, self._config.camera_shrinkage)
        statistics.add(self.vectors(ids), [rows[int(i)].camera for i in ids])
        return statistics

    def _properties(self) -> dict[str, str]:
        info = {"format": PROPERTY_FORMAT, "dim": self.dim, "config": self._config.to_dict(), "model_id": self.model_id,
                "entries": self._recorded,
                "camera_statistics": self._statistics.to_dict() if self._recorded is not None else None}
        return {PROPERTY: json.dumps(info, sort_keys=True)}

    def _write_properties(self) -> None:
        with self._count_lock, _lite_errors(self._where):
            self._client.alter_collection_properties(self._name, properties=self._properties())

    def _record_count(self) -> None:
        """Milvus Lite: count the entries now and record the count in the property (at save, and at a close that
        follows writes). Counted, never tracked: another handle or thread may have written meanwhile."""
        if self._lite:
            with self._count_lock:
                self._recorded, self._wrote = len(self), False
                self._write_properties()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Around a write: on Milvus Lite the recorded count is voided first (a crash mid-write then leaves
        "unknown", never a wrong count), and writes and recordings take turns."""
        if not self._lite:
            yield
            return
        with self._count_lock:
            self._recorded, self._wrote = None, True
            self._write_properties()
            yield

    def _create_collection(self) -> None:
        pymilvus = require("pymilvus", "milvus")
        types = pymilvus.DataType
        schema = self._client.create_schema(auto_id=True, enable_dynamic_field=False)
        schema.add_field("id", types.INT64, is_primary=True)
        schema.add_field("vector", types.FLOAT_VECTOR, dim=self.dim)
        for name in LABELS:
            schema.add_field(f"{name}_int", types.INT64, nullable=True)
            schema.add_field(f"{name}_str", types.VARCHAR, max_length=MAX_LABEL_CHARS, nullable=True)
        schema.add_field("timestamp", types.DOUBLE, nullable=True)
        schema.add_field("metadata", types.JSON)
        index_params = self._client.prepare_index_params()
        index_params.add_index("vector", index_type=_INDEX_TYPES[self._config.index], metric_type="IP",
                               params=self._build_params())
        self._client.create_collection(self._name, schema=schema, index_params=index_params,
                                       consistency_level="Strong", properties=self._properties())

    def _build_params(self) -> dict[str, int]:
        config = self._config
        nlist = config.nlist or DEFAULT_NLIST
        if config.index == "ivf":
            return {"nlist": nlist}
        if config.index == "hnsw":
            return {"M": config.hnsw_m, "efConstruction": config.ef_construction}
        if config.index == "ivfpq":
            return {"nlist": nlist, "m": config.resolved_pq_m(self.dim), "nbits": config.pq_nbits}
        return {}

    # -- properties ---------------------------------------------------------------------------------------------
    @property
    def config(self) -> GalleryConfig:
        return self._config

    @property
    def location(self) -> str:
        return self._where.text

    @property
    def is_trained(self) -> bool:
        return True  # Milvus trains its own index, per segment

    def __len__(self) -> int:
        return self.count(EntryFilter())

    @property
    def camera_statistics(self) -> CameraStatistics:
        return self._statistics

    def tune(self, **search_params: Any) -> None:
        self._config = self._config.with_search_params(**search_params)
        self._statistics.shrinkage = self._config.camera_shrinkage

    def set_model_id(self, model_id: str) -> None:
        self.model_id = model_id
        self._write_properties()

    # -- writing ------------------------------------------------------------------------------------------------
    def train(self, vectors: np.ndarray) -> None:
        """Nothing to do: Milvus trains its index when it builds a segment."""

    def add(self, vectors: np.ndarray, rows: list[EntryRow]) -> np.ndarray:
        entities = [_entity(vector, row) for vector, row in zip(vectors, rows)]
        per_request = max(1, _REQUEST_BYTES // (4 * self.dim + 1024))
        with self._writing(), _lite_errors(self._where):
            ids = [self._client.insert(self._name, entities[start : start + per_request])["ids"]
                   for start in range(0, len(entities), per_request)]
            self._statistics.add(vectors, [row.camera for row in rows])
        return np.concatenate([np.asarray(chunk, dtype=np.int64) for chunk in ids])

    def remove_ids(self, ids: np.ndarray) -> int:
        existing = self._existing(ids)
        if len(existing):
            rows, vectors = self.rows(existing), self.vectors(existing)
            with self._writing(), _lite_errors(self._where):
                self._client.delete(self._name, ids=existing.tolist())
                self._statistics.remove(vectors, [rows[int(i)].camera for i in existing])
        return len(existing)

    def remove_where(self, entry_filter: EntryFilter) -> int:
        return self.remove_ids(self._query_ids(expression(entry_filter)))

    # -- reading ------------------------------------------------------------------------------------------------
    def count(self, entry_filter: EntryFilter) -> int:
        result = self._client.query(self._name, filter=expression(entry_filter), output_fields=["count(*)"])
        return int(result[0]["count(*)"])

    def _query_ids(self, expr: str) -> np.ndarray:
        """Ids of every entry matching ``expr``, sorted (paged when more than one query's result window)."""
        found = [entity["id"] for entity in self._client.query(self._name, filter=expr, output_fields=["id"],
                                                                limit=MAX_TOP_K)]
        if len(found) < MAX_TOP_K:
            return np.sort(np.asarray(found, dtype=np.int64))
        iterator = self._client.query_iterator(self._name, batch_size=MAX_TOP_K, filter=expr, output_fields=["id"])
        found = []
        try:
            while batch := iterator.next():
                found.extend(entity["id"] for entity in batch)
        finally:
            iterator.close()
        return np.sort(np.asarray(found, dtype=np.int64))

    def _query(self, ids: np.ndarray, fields: list[str]) -> Iterator[dict[str, Any]]:
        for start in range(0, len(ids), MAX_TOP_K):
            yield from self._client.query(self._name, filter=_id_list(ids[start : start + MAX_TOP_K]),
                                          output_fields=["id", *fields])

    def _existing(self, ids: np.ndarray) -> np.ndarray:
        return np.sort(np.fromiter((entity["id"] for entity in self._query(ids, [])), dtype=np.int64))

    def search(self, vectors: np.ndarray, k: int, entry_filter: EntryFilter) -> tuple[np.ndarray, np.ndarray]:
        """Top-k, counting the entries that pass the filter only when k is beyond Milvus's limit or some
        query came back short (then k is clamped to that count and short queries search wider)."""
        expr = expression(entry_filter)
        if k > MAX_TOP_K:
            k = min(k, self.count(entry_filter))
            if k > MAX_TOP_K:
                raise ValueError(f"Milvus returns at most {MAX_TOP_K} results per query, asked for {k}")
        if k:
            scores, ids = self._search_once(vectors, k, expr, self._effort_range(k)[0])
            if (ids[:, -1] >= 0).all():
                return scores, ids
        available = self.count(entry_filter)
        k = min(k, available)
        if k < 1:
            return np.empty((len(vectors), 0), np.float32), np.empty((len(vectors), 0), np.int64)
        effort, max_effort = self._effort_range(available)
        return search_widening(lambda rows, e: self._search_once(rows, k, expr, e), vectors, k, effort, max_effort)

    def _effort_range(self, available: int) -> tuple[int, int]:
        """Starting and exhaustive query effort: IVF nprobe up to nlist, HNSW ef up to the entries available."""
        config = self._config
        if config.index in ("ivf", "ivfpq"):
            nlist = config.nlist or DEFAULT_NLIST
            return min(config.nprobe, nlist), nlist
        if config.index == "hnsw":
            return config.ef_search, max(config.ef_search, min(available, MAX_TOP_K))
        return 0, 0

    def _search_once(self, queries: np.ndarray, k: int, expr: str, effort: int) -> tuple[np.ndarray, np.ndarray]:
        params = {"nprobe": effort} if self._config.index in ("ivf", "ivfpq") else (
            {"ef": max(effort, k)} if self._config.index == "hnsw" else {})
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        per_request = max(1, _REQUEST_BYTES // (4 * self.dim + 16 * k))
        for start in range(0, len(queries), per_request):
            hits = self._client.search(self._name, data=list(queries[start : start + per_request]), limit=k,
                                       filter=expr, output_fields=["id"],
                                       search_params={"metric_type": "IP", "params": params})
            for row, found in enumerate(hits, start=start):
                ids[row, : len(found)] = [hit["id"] for hit in found]
                scores[row, : len(found)] = [hit["distance"] for hit in found]
        return scores, ids

    def search_standardised(self, vectors: np.ndarray, k: int,
                            entry_filter: EntryFilter) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the in-memory standardised vectors of the entries that pass the filter."""
        ids, standardised = self._standardised_entries()
        if not entry_filter.is_empty:
            kept = np.isin(ids, self._query_ids(expression(entry_filter)))
            ids, standardised = ids[kept], standardised[kept]
        k = min(k, len(ids))
        scores = vectors @ standardised.T
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k] if 0 < k < len(ids) else np.tile(
            np.arange(k), (len(vectors), 1))
        order = np.take_along_axis(best, np.argsort(-np.take_along_axis(scores, best, 1), axis=1, kind="stable"), 1)
        return np.take_along_axis(scores, order, 1).astype(np.float32), ids[order]

    def standardised_vectors(self, ids: np.ndarray) -> np.ndarray:
        stored_ids, standardised = self._standardised_entries()
        positions = np.searchsorted(stored_ids, ids)
        return standardised[np.minimum(positions, len(stored_ids) - 1)]

    def _standardised_entries(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted ids, their standardised vectors) of every entry, read again when the statistics changed since."""
        with self._standardised_lock:
            version = self._statistics.version
            if self._standardised is None or self._standardised[0] != version:
                ids = self.ids()
                rows = self.rows(ids)
                standardised = self._statistics.standardise(self.vectors(ids), [rows[int(i)].camera for i in ids])
                self._standardised = (version, ids, standardised)
            return self._standardised[1], self._standardised[2]

    def rows(self, ids: np.ndarray) -> dict[int, EntryRow]:
        return {int(entity["id"]): _row(entity) for entity in self._query(np.asarray(ids), _ROW_FIELDS)}

    def ids(self) -> np.ndarray:
        return self._query_ids("")

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        found = {int(entity["id"]): entity["vector"] for entity in self._query(ids, ["vector"])}
        missing = sorted({int(i) for i in ids if int(i) not in found})
        if missing:
            raise unknown_entries(missing)
        return np.asarray([found[int(i)] for i in ids], dtype=np.float32).reshape(len(ids), self.dim)

    # -- persistence --------------------------------------------------------------------------------------------
    def save(self, location: str | Path | None = None, overwrite: bool = False) -> str:
        """Flush to durable storage and record the query settings (and on Milvus Lite the entry count);
        a Milvus gallery stays where it is."""
        if location is not None and parse_location(location) != self._where:
            raise ValueError(f"a Milvus gallery lives in its collection ({self._where.text}); it cannot be saved to "
                             f"{location}: build a new gallery there")
        try:
            with _lite_errors(self._where):
                self._client.flush(self._name)
                self._record_count()
                if self._replaces is not None:
                    self._take_place()
        except BaseException:
            self._wrote = False  # after a failed flush Milvus Lite counts stale entries: leave the count unknown
            raise
        return self._where.text

    def _take_place(self) -> None:
        """Rename this gallery, built aside, to the collection it replaces: the old one renamed aside first (a
        damaged one Milvus cannot read is dropped at once), then dropped."""
        pymilvus = require("pymilvus", "milvus")
        target, replaced = self._replaces, f"{self._replaces}{_REPLACED}"
        self._client.drop_collection(replaced)  # a swap killed midway left it: this save's target is the new one
        try:
            old = self._client.has_collection(target)
            if old:
                self._client.rename_collection(target, replaced)
        except pymilvus.MilvusException:  # one it cannot read any more: it is replaced, so dropped unread
            self._client.drop_collection(target)
            old = False
        try:
            self._client.rename_collection(self._name, target)
        except BaseException:  # the old gallery back in its place; this one stays aside, dropped at close
            if old:
                self._client.rename_collection(replaced, target)
            raise
        self._name, self._replaces = target, None
        self._client.load_collection(target)
        if old:
            self._client.drop_collection(replaced)

    @staticmethod
    def _finish_replacing(client: Any, location: GalleryLocation) -> bool:
        """Complete a replacement a killed process left between its renames (the old gallery renamed aside, the new
        one saved but not renamed in, so ``location`` has no collection); True when there was one."""
        target = location.collection
        building, replaced = f"{target}{_BUILDING}", f"{target}{_REPLACED}"
        if not (client.has_collection(building) and client.has_collection(replaced)):
            return False
        client.rename_collection(building, target)
        client.drop_collection(replaced)
        logger.warning("%s: completed the replacement of the gallery that a stopped build with overwrite had saved",
                       location.text)
        return True

    def close(self) -> None:
        """Record the entry count after this handle's writes (Milvus Lite) and disconnect; an overwriting gallery
        never saved is dropped, and the gallery it was to replace stays as it was."""
        try:
            if self._replaces is not None:
                with _lite_errors(self._where):
                    self._client.drop_collection(self._name)
            elif self._wrote:
                self._record_count()
        finally:
            self._client.close()
