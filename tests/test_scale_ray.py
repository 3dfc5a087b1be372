"""Ingest on Ray Data (reid_sdk.scale) against the one-process path, on a 2-CPU local Ray cluster and tiny rendered
data: the same gallery, a killed or failing worker and a resumed re-run give no duplicate and no gap, bad units are
counted and listed, Milvus Lite as the sink, and the reid-index flags."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this test module

from reid_sdk.cli.index import main  # noqa: E402
from reid_sdk.gallery import Gallery  # noqa: E402
from reid_sdk.inference.extractor import FeatureExtractor  # noqa: E402
from reid_sdk.scale import ExtractorFactory, RayJobFailed, ingest  # noqa: E402
from reid_sdk.search.gallery_writer import GalleryTarget, ingest_units  # noqa: E402
from reid_sdk.search.sources import folder_records  # noqa: E402
from reid_sdk.search.units import VideoUnit, image_units  # noqa: E402
from reid_sdk.synthetic.video import VideoSetConfig, render_videos  # noqa: E402
from tests.helpers import random_crops, tiny_model  # noqa: E402
from tests.test_cli_index import write_market_folder  # noqa: E402

# Ray Data's own context sets fields it deprecated itself, on every run
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
BATCH = 4
RAY_OPTIONS = {"workers": 2, "cpus_per_worker": 0.5, "batch_size": BATCH}  # 2 actors + 1 reading task on 2 CPUs


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@dataclass(frozen=True)
class Work:
    model: Path
    units: list  # two folders of images (one unreadable file), two camera videos, a video without its tracks
    videos: list
    site: Path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Work:
    from reid_sdk.export.onnx_export import export_onnx
    from reid_sdk.model import save_checkpoint

    root = tmp_path_factory.mktemp("scale")
    model = export_onnx(save_checkpoint(tiny_model(), root / "tiny.pt"), root / "tiny.onnx")
    crops = random_crops(10, seed=11, min_size=40)
    write_market_folder(root / "images" / "day1", crops[:6])
    write_market_folder(root / "images" / "day2", crops[6:], first_pid=20)
    (root / "images" / "day2" / "0099_c1s1_000001_01.jpg").write_bytes(b"")  # unreadable: skipped, counted
    videos = render_videos(root / "site", VideoSetConfig(seed=5, num_cameras=2, walkers=2, passers_by=1,
                                                         cameras_per_walker=(2, 2), frames=40, frame_size=(120, 160)))
    video_units = [VideoUnit(v.video, v.tracks, v.camera, v.identities) for v in videos]
    bad = VideoUnit(videos[0].video, root / "missing.txt", "c9")
    return Work(model, [*image_units(folder_records(root / "images"), shard_size=4), *video_units, bad], videos,
                root / "site")


def stored(location) -> dict[str, tuple]:
    """{key: (identity, camera, timestamp, track id, metadata, vector)} of every entry; duplicates fail here."""
    gallery = Gallery.open(location)
    try:
        ids = gallery.ids()
        rows, vectors = gallery.rows(ids), gallery.vectors(ids)
    finally:
        gallery.close()
    entries = {}
    for entry_id, vector in zip(ids, vectors):
        row = rows[int(entry_id)]
        assert row.metadata["key"] not in entries, f"duplicate entry {row.metadata['key']}"
        entries[row.metadata["key"]] = (*row[:4], row.metadata, vector)
    return entries


def assert_same_entries(found: dict, expected: dict) -> None:
    assert sorted(found) == sorted(expected)
    for key, (*labels, vector) in found.items():
        assert labels == list(expected[key][:-1]), key
        np.testing.assert_allclose(vector, expected[key][-1], atol=1e-5)


@pytest.fixture(scope="module")
def one_process(work, tmp_path_factory):
    """The gallery the one-process path makes of the work list, and its summary."""
    location = tmp_path_factory.mktemp("one-process") / "gallery"
    summary = ingest_units(work.units, FeatureExtractor(work.model, batch_size=BATCH), GalleryTarget(location),
                           batch_size=BATCH)
    return stored(location), summary


class FailingOnce:
    """A test extractor factory: the first actor to extract a chunk while ``marker`` is absent creates it, then
    raises (``how="raise"``) or kills its own process (``how="exit"``, as the OOM killer would)."""

    def __init__(self, model: Path, marker: Path, how: str) -> None:
        self.factory, self.marker, self.how = ExtractorFactory(str(model), BATCH), marker, how

    def __call__(self):
        extractor = self.factory()
        marker, how, real_extract = self.marker, self.how, extractor.extract

        def extract(crops):
            if not marker.exists():
                marker.touch()
                if how == "exit":
                    os._exit(1)
                raise RuntimeError("injected worker failure")
            return real_extract(crops)

        extractor.extract = extract
        return extractor


def test_ray_gives_the_one_process_gallery_and_counts_bad_units(ray_cluster, work, one_process, tmp_path):
    expected, local = one_process
    summary = ingest(work.units, work.model, GalleryTarget(tmp_path / "g"), **RAY_OPTIONS)
    assert_same_entries(stored(tmp_path / "g"), expected)
    assert len(expected) == 10 + 2 + 3  # 10 readable images; the 2 walkers' tracks in c1, and a passer-by's in c2
    bad = work.units[-1]
    for result in (summary, local):
        assert (result.units, result.done, result.added, result.entries) == (len(work.units), len(work.units) - 1,
                                                                              15, 15)
        assert [name for name, _ in result.failed] == [bad.name] and "missing.txt" in result.failed[0][1]
        assert [Path(path).name for path in result.skipped_files] == ["0099_c1s1_000001_01.jpg"]
        assert [(unit.camera, report.used) for unit, report in result.videos] == [("c1", 2), ("c2", 3)]
        assert result.crops > 15 and result.duplicates == 0


def test_a_killed_worker_is_replaced_and_its_chunk_retried(ray_cluster, work, one_process, tmp_path):
    factory = FailingOnce(work.model, tmp_path / "killed", how="exit")
    summary = ingest(work.units, factory, GalleryTarget(tmp_path / "g"), **RAY_OPTIONS)
    assert (tmp_path / "killed").exists() and summary.added == 15
    assert_same_entries(stored(tmp_path / "g"), one_process[0])


def test_a_failing_worker_stops_the_job_and_a_resumed_run_adds_the_rest(ray_cluster, work, one_process, tmp_path):
    factory = FailingOnce(work.model, tmp_path / "raised", how="raise")
    with pytest.raises(RayJobFailed, match="a Ray worker failed on .*: RuntimeError: injected worker failure"):
        ingest(work.units, factory, GalleryTarget(tmp_path / "g", save_every_s=None), **RAY_OPTIONS)
    kept = stored(tmp_path / "g") if (tmp_path / "g").exists() else {}  # what was written before the failure
    assert len(kept) < 15
    summary = ingest(work.units, work.model, GalleryTarget(tmp_path / "g", resume=True), **RAY_OPTIONS)
    assert (summary.already_present, summary.added) == (len(kept), 15 - len(kept))
    assert_same_entries(stored(tmp_path / "g"), one_process[0])
    again = ingest_units(work.units, FeatureExtractor(work.model, batch_size=BATCH),
                         GalleryTarget(tmp_path / "g", resume=True), batch_size=BATCH)
    assert (again.already_present, again.added, again.entries) == (15, 0, 15)  # the one-process path resumes alike


def test_reid_index_ingests_a_site_on_ray_into_milvus_lite_and_resumes(ray_cluster, work, one_process, tmp_path,
                                                                       capsys):
    pytest.importorskip("milvus_lite")
    gallery = f"milvus-lite:{tmp_path / 'g.db'}"
    args = ["ingest", "--model", str(work.model), "--site", str(work.site), "--gallery", gallery, "--engine", "ray",
            "--workers", "1", "--batch-size", str(BATCH), "--progress", "none"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{used} of {used} tracks of {video.video} (camera {video.camera}) added"
                   for used, video in zip((2, 3), work.videos)] + [f"{gallery} holds 5 entries"]
    videos = {key: entry for key, entry in one_process[0].items() if " track=" in key}
    assert_same_entries(stored(gallery), videos)
    assert main([*args, "--resume"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"0 of {used} tracks of {video.video} (camera {video.camera}) added; left out: {used} already in the gallery"
        for used, video in zip((2, 3), work.videos)] + [f"{gallery} holds 5 entries"]


def test_ray_options_need_the_ray_engine(work, capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        main(["build", "--model", str(work.model), "--images", str(tmp_path), "--out", str(tmp_path / "g"),
              "--workers", "2"])
    assert stop.value.code == 2 and "--workers need --engine ray" in capsys.readouterr().err


def test_a_pool_the_local_cluster_cannot_hold_is_refused(ray_cluster, work, tmp_path):
    with pytest.raises(ValueError, match="3 workers x 1 CPUs .* the Ray cluster has 2"):
        ingest(work.units, work.model, GalleryTarget(tmp_path / "g"), workers=3)


def test_a_model_the_workers_cannot_open_is_refused_before_any_unit_is_read(ray_cluster, work, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an ONNX model")
    with pytest.raises(ValueError, match="broken.onnx"):
        ingest(work.units, broken, GalleryTarget(tmp_path / "g"), **RAY_OPTIONS)
    assert not (tmp_path / "g").exists()


def start_build_on(address: str, tmp_path: Path, stderr) -> subprocess.Popen:
    """``reid-index build --engine ray --address ADDRESS`` of one crop, in a process of its own (the model file is
    opened only once Ray is joined)."""
    write_market_folder(tmp_path / "images", random_crops(1, seed=12, min_size=40))
    return subprocess.Popen([sys.executable, "-m", "reid_sdk.cli.index", "build", "--model", str(tmp_path / "m.onnx"),
                             "--images", str(tmp_path / "images"), "--out", str(tmp_path / "g"), "--engine", "ray",
                             "--address", address], stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def test_an_address_where_no_ray_cluster_listens_is_one_line_naming_it(tmp_path):
    process = start_build_on("127.0.0.1:1", tmp_path, subprocess.PIPE)
    _, error = process.communicate(timeout=240)  # a guard against the hang, not a timing
    assert process.returncode == 2 and "Traceback" not in error
    assert error.splitlines()[-1] == "reid-index: error: cannot reach a Ray cluster at 127.0.0.1:1: Connection refused"


def test_sigterm_ends_a_build_waiting_for_an_address_that_does_not_answer(tmp_path):
    silent = socket.socket()  # accepts connections (the kernel does) and never answers: no Ray GCS
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    address = f"127.0.0.1:{silent.getsockname()[1]}"
    log = tmp_path / "stderr.txt"
    with silent, open(log, "w") as stderr:
        process = start_build_on(address, tmp_path, stderr)
        try:
            for _ in range(2400):  # up to 240 s to start: a guard against a process that never gets there
                if f"joining the Ray cluster at {address}" in log.read_text() or process.poll() is not None:
                    break
                time.sleep(0.1)
            assert process.poll() is None, log.read_text()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=120) != 0  # a guard against the hang: SIGTERM was unheard before
        finally:
            process.kill()
            process.wait()
