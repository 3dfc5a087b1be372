"""A gallery ingest on Ray Data: the units of :mod:`reid_sdk.search.units` read on CPU tasks, extracted on an actor
pool, written by the driver.

The dataset has one row per unit; ``flat_map`` runs :func:`~reid_sdk.search.units.read_unit` on CPU tasks (one
unit each) and yields its chunks; ``map_batches`` hands each chunk to one of ``workers`` actors, each holding one
extractor (any engine: ONNX Runtime, OpenVINO, TensorRT, torch; ``gpus_per_worker`` GPUs each); the driver
iterates over the results and writes them through :func:`~reid_sdk.search.gallery_writer.run_units`, the same
single writer as the one-process path (FAISS + SQLite, or Milvus). Rows carry their unit and chunk pickled: the
same objects both paths pass, whatever Arrow would make of crops of many sizes.

Ray restarts an actor that dies (its process killed, a node lost) and retries its chunk; an extractor that raises
stops the job with its error (:class:`~reid_sdk.scale.errors.RayJobFailed`), after the entries written so far are
saved. A chunk delivered twice (a retried task) is written once: the writer drops keys it has written. Every node
must see the model and the data at the same absolute paths (a shared file system) and have reid-sdk installed.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk._utils.optional import require
from reid_sdk.scale.errors import RayJobFailed
from reid_sdk.search.gallery_writer import GalleryTarget, IngestSummary, ModelFacts, run_units
from reid_sdk.search.units import Chunk, ExtractedChunk, ImageShard, UnitDone, WorkUnit, extract_chunk, read_unit

logger = logging.getLogger(__name__)

READ_CPUS = 1.0  # a CPU task reading one unit (decoding, cropping, weighing)
CONNECT_TIMEOUT_S = 15.0  # how long a cluster joined by address has to answer


@dataclass(frozen=True)
class ExtractorFactory:
    """Opens ``FeatureExtractor(model, batch_size=..., **options)``: what each actor (and the model check before the
    job) calls. Any picklable callable returning an extractor can stand in for it (a custom model, a test's)."""

    model: str
    batch_size: int = 64
    options: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self) -> Any:
        from reid_sdk.inference.extractor import FeatureExtractor

        return FeatureExtractor(self.model, batch_size=self.batch_size, **self.options)


@dataclass(frozen=True)
class _ExtractionFailed:
    """An actor's extractor raised on a chunk: the error, passed to the driver as a result (Ray Data would pass on
    only its traceback as text), which stops the job."""

    unit: int
    error: str


class _ExtractActor:
    """One actor of the pool: one extractor, used for every chunk it is handed (a batch of one row)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.extractor = factory()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"unit": batch["unit"], "payload": _objects([pickle.dumps(self._extract(pickle.loads(payload)))
                                                            for payload in batch["payload"]])}

    def _extract(self, item: Chunk | UnitDone) -> ExtractedChunk | UnitDone | _ExtractionFailed:
        if not isinstance(item, Chunk):
            return item
        try:
            return extract_chunk(self.extractor, item)
        except Exception as error:  # noqa: BLE001 - any extractor error stops the job, named
            return _ExtractionFailed(item.unit, f"{type(error).__name__}: {error}")


def _read_rows(row: dict[str, Any], input_size: tuple[int, int], batch_size: int) -> Iterator[dict[str, Any]]:
    """The chunks and end of one unit, as rows (a CPU task)."""
    unit = pickle.loads(row["payload"])
    for item in read_unit(int(row["unit"]), unit, input_size, batch_size):
        yield {"unit": row["unit"], "payload": pickle.dumps(item)}


def _objects(values: list[bytes]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _facts(factory: Callable[[], Any]) -> ModelFacts:
    return ModelFacts.of(factory())


def _absolute(unit: WorkUnit) -> WorkUnit:
    """The unit with absolute paths: a worker's working directory is not the driver's."""
    if isinstance(unit, ImageShard):
        return ImageShard(tuple(replace(record, frames=tuple(Path(p).absolute() for p in record.frames))
                                for record in unit.records))
    return replace(unit, video=unit.video.absolute(), tracks=unit.tracks.absolute(),
                   identities=None if unit.identities is None else unit.identities.absolute())


def ingest(units: Sequence[WorkUnit], model: str | Path | Callable[[], Any], target: GalleryTarget, *,
           extractor_options: Mapping[str, Any] | None = None, address: str | None = None, workers: int = 1,
           gpus_per_worker: float = 0.0, cpus_per_worker: float = 1.0, batch_size: int = 64,
           progress: str = "none", connect_timeout_s: float = CONNECT_TIMEOUT_S) -> IngestSummary:
    """Run a work list (see :mod:`reid_sdk.search.units`) on Ray and write it to ``target``.

    ``model`` is a model file every actor opens with ``extractor_options`` (device, backend, ...), or a picklable
    callable returning an extractor. ``address`` joins a running cluster (``auto``, ``head:6379``,
    ``ray://head:10001``; a ``host:port`` that does not answer as one within ``connect_timeout_s`` is a
    ConnectionError naming it); without it a Ray already started in this process is used, else a local one is
    started for the run. ``workers``
    actors reserve ``gpus_per_worker`` GPUs and ``cpus_per_worker`` CPUs each; reading takes one CPU per unit at a
    time. ``batch_size``: crops per chunk and per forward pass. The target, its resume and the result are those of
    :func:`~reid_sdk.search.gallery_writer.ingest_units`, the one-process path.

    Example:
        ```python
        from reid_sdk.scale import ingest
        from reid_sdk.search.gallery_writer import GalleryTarget
        from reid_sdk.search.units import VideoUnit

        units = [VideoUnit(Path(f"site/c{n}.avi"), Path(f"site/c{n}.txt"), camera=f"c{n}") for n in range(1, 101)]
        summary = ingest(units, "model.onnx", GalleryTarget("http://milvus:19530", append=True, resume=True),
                         address="auto", workers=8, gpus_per_worker=1)
        print(summary.added, summary.failed, f"{summary.crops_per_s:.0f} crops/s")
        ```
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    if not gpus_per_worker >= 0 or not cpus_per_worker >= 0:
        raise ValueError(f"gpus_per_worker and cpus_per_worker must be >= 0, got {gpus_per_worker}, {cpus_per_worker}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ray = require("ray", "ray")
    factory = model if callable(model) else ExtractorFactory(str(Path(model).absolute()), batch_size,
                                                              dict(extractor_options or {}))
    started_here = _connect(ray, address, connect_timeout_s)
    try:
        _check_room(ray, workers, gpus_per_worker, cpus_per_worker, strict=address is None)
        facts = _model_facts(ray, factory, gpus_per_worker, cpus_per_worker)
        pool = {"workers": workers, "num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker or None}
        return run_units(units, target, facts,
                         lambda planned: _items(ray, planned, factory, facts, batch_size, pool), progress)
    finally:
        if started_here:
            ray.shutdown()


def _connect(ray: Any, address: str | None, timeout_s: float) -> bool:
    """Join ``address``, or use the Ray of this process, or start a local one; True when started here."""
    if ray.is_initialized():
        if address is not None:
            logger.warning("Ray is already running in this process: address %s is not joined", address)
        return False
    if address is not None:
        _check_answers(address, timeout_s)
    ray.init(address=address, include_dashboard=False if address is None else None, logging_level=logging.WARNING,
             log_to_driver=True)
    return True


def _check_answers(address: str, timeout_s: float) -> None:
    """Refuse a ``host:port`` address where nothing answers as a Ray cluster (its GCS or Ray Client server, both
    gRPC) within ``timeout_s``: ``ray.init`` retries such an address for ever, inside native code where SIGTERM and
    Ctrl-C go unheard. ``auto`` (found by Ray itself) and a TLS cluster (``RAY_USE_TLS``) are left to Ray."""
    host, separator, port = address.split("://", 1)[-1].rpartition(":")
    if not separator or not port.isdigit():
        return  # auto, or a form Ray parses and refuses itself
    logger.info("joining the Ray cluster at %s", address)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise ConnectionError(f"cannot reach a Ray cluster at {address}: {error.strerror or error}") from None
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return
    grpc = require("grpc", "ray")  # Ray's own dependency
    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise ConnectionError(f"nothing at {address} answered as a Ray cluster within {timeout_s:g} s: is it the "
                              "address of a Ray head (ray start --head prints it)?") from None
    finally:
        channel.close()


def _check_room(ray: Any, workers: int, gpus_per_worker: float, cpus_per_worker: float, strict: bool) -> None:
    """Refuse an actor pool the cluster cannot hold beside one reading task (it would wait forever); on a cluster
    joined by address only warn: an autoscaler may add nodes."""
    have = ray.cluster_resources()
    problems = []
    if workers * cpus_per_worker + READ_CPUS > have.get("CPU", 0.0):
        problems.append(f"{workers} workers x {cpus_per_worker:g} CPUs + {READ_CPUS:g} CPU to read units need "
                        f"{workers * cpus_per_worker + READ_CPUS:g} CPUs, the Ray cluster has {have.get('CPU', 0):g}")
    if workers * gpus_per_worker > have.get("GPU", 0.0):
        problems.append(f"{workers} workers x {gpus_per_worker:g} GPUs need {workers * gpus_per_worker:g} GPUs, the "
                        f"Ray cluster has {have.get('GPU', 0):g}")
    if not problems:
        return
    message = "; ".join(problems)
    if strict:
        raise ValueError(f"{message}: use fewer workers, or fewer CPUs / GPUs per worker")
    logger.warning("%s: the job waits until the cluster has them", message)


def _model_facts(ray: Any, factory: Callable[[], Any], gpus: float, cpus: float) -> ModelFacts:
    """Open the model once on a worker like the actors' (the driver may have no GPU): its dim, id and input size. A
    model that cannot be opened raises its own error here, before any unit is read."""
    task = ray.remote(num_cpus=cpus, num_gpus=gpus or None, max_retries=0)(_facts)
    try:
        return ray.get(task.remote(factory))
    except ray.exceptions.RayTaskError as error:
        raise error.cause from None


def _items(ray: Any, units: list[WorkUnit], factory: Callable[[], Any], facts: ModelFacts, batch_size: int,
           pool: dict[str, Any]) -> Iterator[ExtractedChunk | UnitDone]:
    """The Ray Data pipeline over ``units``, as the writer's items. Ray Data restarts a dead actor and retries its
    chunk by default (``max_restarts`` and ``max_task_retries`` -1)."""
    data = require("ray.data", "ray")
    data.DataContext.get_current().enable_progress_bars = False  # the writer reports units, entries and crops/s
    rows = [{"unit": number, "payload": pickle.dumps(_absolute(unit))} for number, unit in enumerate(units)]
    dataset = (data.from_items(rows, override_num_blocks=len(rows))
               .flat_map(_read_rows, fn_kwargs={"input_size": facts.input_size, "batch_size": batch_size},
                         num_cpus=READ_CPUS)
               .map_batches(_ExtractActor, fn_constructor_kwargs={"factory": factory}, batch_size=1,
                            batch_format="numpy", compute=data.ActorPoolStrategy(size=pool["workers"]),
                            num_cpus=pool["num_cpus"], num_gpus=pool["num_gpus"]))
    try:
        for row in dataset.iter_rows():
            item = pickle.loads(row["payload"])
            if isinstance(item, _ExtractionFailed):
                raise RayJobFailed(f"a Ray worker failed on {units[item.unit].name}: {item.error}")
            yield item
    except ray.exceptions.RayError as error:  # a reading task raised, or Ray itself failed
        raise RayJobFailed(f"the Ray job failed: {_first_error_line(str(error))}") from error


def _first_error_line(text: str) -> str:
    """The ``Type: message`` line of the first exception in a Ray error's text (tracebacks, then causes)."""
    block = text.split("\nThe above exception was the direct cause")[0]
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
